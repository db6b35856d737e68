// `mdatp health`: Defender's field names, computed from the status file and
// the configuration (managed values carry "[managed]").
import ArgumentParser
import Glibc
import MdatpConfig
import MdatpJSON
import MdatpSystem

struct HealthField {
    let name: String
    let value: JSON
    let managed: Bool
}

enum HealthReport {
    /// Everything `mdatp health` shows, in order.
    static func compute(status: JSON?, config: SuiteConfig?, configError: String?, nowUnix: Double) -> [HealthField] {
        var issues: [String] = []
        let rooms = status?["rooms"]?.array ?? []
        let written = status?["written_at_unix"]?.number ?? 0
        let watchdogPid = status?["watchdog"]?["pid"]?.int ?? 0
        let running = status != nil && watchdogPid > 0 && kill(pid_t(watchdogPid), 0) == 0 || (status != nil && watchdogPid > 0 && errno == EPERM)
        let stale = nowUnix - written > 120
        if status == nil || !running {
            issues.append("the suite is not running")
        } else if stale {
            issues.append("status is \(Int(nowUnix - written)) s old")
        }
        if running {
            for r in rooms {
                let name = r["name"]?.string ?? "?"
                let state = r["state"]?.string ?? "?"
                if state == "failed" {
                    issues.append("room \(name) failed: \(r["failure"]?.string ?? "")")
                } else if state != "running" {
                    issues.append("room \(name) is \(state)")
                }
            }
        }
        if let e = status?["watchdog"]?["config_error"]?.string { issues.append("configuration refused on reload: \(e)") }
        if let e = configError { issues.append("configuration invalid: \(e)") }
        let collector = rooms.first { $0["name"]?.string == "collector" }
        let sensorUp = running && collector?["state"]?.string == "running" && status?["sensor"]?["hook_family"]?.string != nil
        if running && !sensorUp && !issues.contains(where: { $0.contains("collector") }) { issues.append("the eBPF sensor is not loaded") }
        if (collector?["counters"]?["deny_table_corrupt"]?.int ?? 0) > 0 {
            issues.append("the kernel exec deny table is corrupt: exec blocking fails open")
        }
        let scannerUp = running && rooms.contains { $0["name"]?.string == "scanner" && $0["state"]?.string == "running" }
        let scannerRoom = rooms.first { $0["name"]?.string == "scanner" }
        let defsPacked = UInt64(scannerRoom?["counters"]?["definitions_version"]?.number ?? 0)
        let defsCreated = scannerRoom?["counters"]?["definitions_created_unix"]?.number ?? 0
        let defsVersion = defsPacked == 0 ? "unavailable" : (0..<4).map { String(UInt16(truncatingIfNeeded: defsPacked >> (48 - 16 * UInt64($0)))) }.joined(separator: ".")
        let expiry = Double(expiryUnix)
        if nowUnix > expiry { issues.append("this build has expired: update mdatp") }

        let c = config ?? SuiteConfig()
        func m(_ key: String) -> Bool { c.managedKeys.contains(key) }
        let drops = status?["kernel"]?["total_drops"]?.int ?? 0
        let ringDrops = (status?["rings"]?.array ?? []).reduce(0) { $0 + ($1["drops"]?.int ?? 0) }
        return [
            HealthField(name: "healthy", value: .bool(issues.isEmpty), managed: false),
            HealthField(name: "health_issues", value: .array(issues.map { .string($0) }), managed: false),
            HealthField(name: "app_version", value: .string(mdatpVersion), managed: false),
            HealthField(name: "product_expiration", value: .string(formatTime(unixNs: Int64(expiryUnix) * 1_000_000_000)), managed: false),
            HealthField(name: "real_time_protection_enabled", value: .bool(c.enforcementLevel == "real_time"), managed: m("antivirusEngine.enforcementLevel")),
            HealthField(name: "real_time_protection_available", value: .bool(scannerUp), managed: false),
            // Real-time scanning is fed by the eBPF collector's close-after-write and exec events;
            // with exec blocking, a fanotify gate holds each exec until the scanner's verdict.
            HealthField(name: "real_time_protection_subsystem",
                        value: .string(!(scannerUp && sensorUp) ? "unavailable"
                                       : (status?["sensor"]?["exec_gate"]?.string ?? "").hasPrefix("fanotify") ? "ebpf+fanotify" : "ebpf"),
                        managed: false),
            HealthField(name: "exec_gate", value: .string(status?["sensor"]?["exec_gate"]?.string ?? "unavailable"), managed: false),
            HealthField(name: "passive_mode_enabled", value: .bool(c.enforcementLevel == "passive"), managed: m("antivirusEngine.enforcementLevel")),
            HealthField(name: "behavior_monitoring", value: .string(c.behaviorMonitoring), managed: m("antivirusEngine.behaviorMonitoring")),
            HealthField(name: "cloud_enabled", value: .bool(c.cloudEnabled), managed: m("cloudService.enabled")),
            HealthField(name: "automatic_definition_update_enabled", value: .bool(c.automaticDefinitionUpdateEnabled), managed: m("cloudService.automaticDefinitionUpdateEnabled")),
            HealthField(name: "engine_version", value: .string(engineVersion), managed: false),
            HealthField(name: "definitions_version", value: .string(defsVersion), managed: false),
            HealthField(name: "definitions_updated", value: defsCreated > 0 ? .string(formatTime(unixNs: Int64(defsCreated) * 1_000_000_000)) : .string("unavailable"), managed: false),
            HealthField(name: "definitions_updated_minutes_ago", value: defsCreated > 0 ? JSON(Int((nowUnix - defsCreated) / 60)) : .null, managed: false),
            HealthField(name: "definitions_status", value: .string(scannerUp && defsPacked != 0 ? "up_to_date" : "unavailable"), managed: false),
            HealthField(name: "exec_blocking", value: .string(c.execBlockingActive ? "enabled" : "disabled"), managed: m("antivirusEngine.kernelExecBlocking")),
            HealthField(name: "supplementary_events_subsystem", value: .string(sensorUp ? "ebpf" : "unavailable"), managed: m("features.ebpfSupplementaryEventProvider")),
            HealthField(name: "sensor_hook_family", value: .string(sensorUp ? status?["sensor"]?["hook_family"]?.string ?? "" : "unavailable"), managed: false),
            HealthField(name: "edr_group_ids", value: .string(c.edrGroupIds), managed: m("edr.groupIds")),
            HealthField(name: "edr_device_tags", value: .array(c.edrTags.map { .string($0) }), managed: m("edr.tags")),
            HealthField(name: "events_dropped", value: JSON(drops + ringDrops), managed: false),
            HealthField(name: "log_level", value: .string("info"), managed: false),
        ]
    }

    static func load() -> (JSON?, SuiteConfig?, String?) {
        let p = paths()
        let status = (try? Sys.readFile(p.statusFile, limit: 16 << 20)).flatMap { try? JSON.parse($0) }
        do throws(ConfigError) {
            let c = try ConfigLoader.load(paths: p) { path in
                guard Sys.exists(path) else { return nil }
                return try? Sys.readFile(path, limit: 1 << 20)
            }
            return (status, c, nil)
        } catch {
            return (status, nil, error.description)
        }
    }
}

func humanValue(_ v: JSON) -> String {
    switch v {
    case .string(let s): return "\"\(s)\""
    case .array(let a): return "[" + a.map(humanValue).joined(separator: ", ") + "]"
    default: return v.serialized()
    }
}

struct Health: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the health of the suite (Defender's health fields).")
    @Option(name: .long, help: "Print one field's value.") var field: String?
    @OptionGroup var out: OutputOptions

    func run() throws {
        let (status, config, configError) = HealthReport.load()
        let fields = HealthReport.compute(status: status, config: config, configError: configError, nowUnix: Sys.realtimeSeconds())
        // The fields are printed either way; the exit code says whether the suite runs.
        let running = !(fields.first { $0.name == "health_issues" }?.value.array?.contains { $0.string == "the suite is not running" } ?? false)
        defer { if !running { Glibc.exit(CLIExit.notRunning) } }
        if let name = field {
            guard let f = fields.first(where: { $0.name == name }) else {
                throw CLIFailure(message: "unknown field \(name); known: \(fields.map(\.name).joined(separator: ", "))", code: CLIExit.usage)
            }
            if out.output == .json {
                print(JSON.object([(f.name, f.value)]).serialized())
            } else {
                print(humanValue(f.value) + (f.managed ? " [managed]" : ""))
            }
            return
        }
        if out.output == .json {
            var members = fields.map { ($0.name, $0.value) }
            members.append(("managed_fields", .array(fields.filter(\.managed).map { .string($0.name) })))
            print(JSON.object(members).serialized(pretty: true))
        } else {
            let width = fields.map(\.name.count).max() ?? 0
            for f in fields {
                print(f.name + String(repeating: " ", count: width - f.name.count) + " : " + humanValue(f.value) + (f.managed ? " [managed]" : ""))
            }
        }
    }
}
