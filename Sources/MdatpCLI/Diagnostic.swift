// `mdatp diagnostic status` and `sandbox-selftest`.
import ArgumentParser
import MdatpJSON
import MdatpSystem

struct Diagnostic: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Troubleshooting.", subcommands: [Status.self, SandboxSelftest.self, RealTimeProtectionStatistics.self])

    struct RealTimeProtectionStatistics: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "real-time-protection-statistics",
            abstract: "Files scanned in real time per process, and the time spent: what to exclude.")
        @Flag(name: .long, help: "Heaviest first (always so; accepted for Defender's syntax).") var sort = false
        @Option(name: .long, help: "Only the N heaviest.") var top: Int?
        @OptionGroup var out: OutputOptions

        func run() throws {
            let r = try SuiteClient.request(.object([("verb", "rtp_stats")]))
            var rows = r["counters"]?.array ?? []
            if let top { rows = Array(rows.prefix(max(0, top))) }
            if out.output == .json {
                print(JSON.object([("counters", .array(rows))]).serialized(pretty: true))
                return
            }
            for c in rows {
                print("=====================================")
                print("Process id: \(c["id"]?.int ?? 0)")
                print("Name: \(c["name"]?.string ?? "")")
                print("Path: \(c["path"]?.string ?? "")")
                print("Total files scanned: \(c["totalFilesScanned"]?.int ?? 0)")
                print("Scan time (ns): \(c["scanTimeNs"]?.int ?? 0)")
                print("Status: \(c["status"]?.string ?? "")")
            }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The watchdog's status dump: rooms, rings, kernel counters.")
        @OptionGroup var out: OutputOptions

        func run() throws {
            let s = try SuiteClient.status()
            if out.output == .json {
                print(s.serialized(pretty: true))
                return
            }
            let w = s["watchdog"]
            print("mdatp \(s["app_version"]?.string ?? "?") — watchdog pid \(w?["pid"]?.int ?? 0), up \(w?["uptime_seconds"]?.number ?? 0) s, \(w?["state"]?.string ?? "?")")
            if let e = w?["config_error"]?.string { print("configuration refused on reload: \(e)") }
            if let sensor = s["sensor"], let hooks = sensor["hook_family"]?.string {
                let skipped = sensor["not_on_this_kernel"]?.array?.compactMap(\.string) ?? []
                print("sensor: \(hooks) hooks, \(sensor["programs_attached"]?.int ?? 0) programs" + (skipped.isEmpty ? "" : " (not on this kernel: \(skipped.joined(separator: ", ")))"))
            }
            print("")
            let rooms = s["rooms"]?.array ?? []
            print(table(["ROOM", "PID", "USER", "STATE", "UPTIME", "RESTARTS", "LAST EXIT", "CAPEFF", "SECCOMP", "RSS KiB", "CPU s", "HEARTBEAT"],
                        rooms.map { r in
                            [r["name"]?.string ?? "", r["pid"]?.int.map(String.init) ?? "-", r["user"]?.string ?? "",
                             r["state"]?.string ?? "", r["uptime_seconds"]?.number.map { "\($0) s" } ?? "-",
                             String(r["restarts"]?.int ?? 0), r["last_exit"]?.string ?? "",
                             r["cap_effective"]?.string ?? "-", r["seccomp_mode"]?.int.map(String.init) ?? "-",
                             r["rss_kib"]?.int.map(String.init) ?? "-", r["cpu_seconds"]?.number.map { "\($0)" } ?? "-",
                             r["heartbeat_age_seconds"]?.number.map { "\($0) s ago" } ?? "-"]
                        }))
            print("")
            let rings = s["rings"]?.array ?? []
            print(table(["RING", "CAPACITY", "FILL", "EVENTS IN", "EVENTS OUT", "DROPS", "LAG", "GAPS SEEN"],
                        rings.map { r in
                            [r["consumer"]?.string ?? "", String(r["capacity_bytes"]?.int ?? 0), String(r["fill_bytes"]?.int ?? 0),
                             String(r["events_in"]?.int ?? 0), String(r["events_out"]?.int ?? 0), String(r["drops"]?.int ?? 0),
                             String(r["consumer_lag"]?.int ?? 0), String(r["consumer_seen_gaps"]?.int ?? 0)]
                        }))
            if let k = s["kernel"], let emitted = k["emitted"]?.members, let drops = k["drops"] {
                print("")
                print(table(["KERNEL CLASS", "EMITTED", "DROPPED"], emitted.map { [$0.0, String($0.1.int ?? 0), String(drops[$0.0]?.int ?? 0)] }))
                print("total kernel drops: \(k["total_drops"]?.int ?? 0); filtered (suite's own): \(k["filtered_suite"]?.int ?? 0); filtered (exclusions): \(k["filtered_excluded"]?.int ?? 0)")
            }
        }
    }

    struct SandboxSelftest: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "sandbox-selftest",
            abstract: "Make a room call a forbidden syscall (root; needs sensor.allowSandboxSelftest). The kernel kills it and the watchdog restarts it.")
        @Option(name: .long, help: "collector or edr") var room: String
        @OptionGroup var out: OutputOptions

        func run() throws {
            let r = try SuiteClient.request(.object([("verb", "selftest"), ("room", .string(room))]))
            if out.output == .json { print(r.serialized()) } else { print("asked \(room) (pid \(r["pid"]?.int ?? 0)) to call a forbidden syscall") }
        }
    }
}
