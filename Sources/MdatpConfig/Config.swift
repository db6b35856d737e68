// The suite's configuration: the local file, overlaid by Defender's managed
// file (whose keys win). Key names follow mdatp_managed.json where Defender
// has them; `sensor` is ours. Unknown keys and bad values are refused with an
// error naming the file and the key.
import MdatpJSON

public struct ConfigError: Error, Equatable, CustomStringConvertible {
    public let file: String
    public let key: String
    public let reason: String
    public var description: String { key.isEmpty ? "\(file): \(reason)" : "\(file): \(key): \(reason)" }
}

public enum ExclusionScope: String, Sendable, Equatable, Codable { case epp, global }

public enum Exclusion: Equatable, Sendable {
    case path(String, isDirectory: Bool, scopes: [ExclusionScope])
    case fileExtension(String, scopes: [ExclusionScope])
    case process(String, scopes: [ExclusionScope])   // Defender's excludedFileName

    public var scopes: [ExclusionScope] {
        switch self {
        case .path(_, _, let s), .fileExtension(_, let s), .process(_, let s): return s
        }
    }
}

public struct RestartPolicy: Equatable, Sendable {
    public var floorSeconds = 1.0       // never two spawns of a room closer than this
    public var capSeconds = 30.0        // back-off ceiling
    public var stableSeconds = 30.0     // ready this long: back-off resets
    public var maxDeaths = 5            // K deaths ...
    public var windowSeconds = 60.0     // ... in T seconds: failed
    public init() {}
}

public struct SensorConfig: Equatable, Sendable {
    public var processRingBytes = 4 << 20
    public var activityRingBytes = 16 << 20
    public var consumerRingBytes = 16 << 20
    public var statusIntervalSeconds = 10.0
    public var heartbeatSeconds = 2.0
    public var storeMaxBytes = 256 << 20
    public var storeMaxAgeHours = 168
    /// The EDR's process table: fixed capacity, least recently seen evicted when full.
    public var processTableCapacity = 32_768
    /// "auto": fentry and the BPF LSM where the kernel allows them, else the
    /// tracepoint family; "tracepoint": the tracepoint family only.
    public var hookFamily = "auto"
    public var restart = RestartPolicy()
    /// Debug: seccomp logs instead of killing. Root-only (the config is root's).
    public var seccompLogOnly = false
    /// Lets root trigger a forbidden syscall in a room (`mdatp diagnostic sandbox-selftest`).
    public var allowSandboxSelftest = false
    public init() {}
}

/// Defender's scheduled scans (`features.scheduledScan` and the `scheduledScan`
/// section): a quick scan every `dailyInterval` hours from `dailyTimeOfDay`
/// (minutes after local midnight; interval 0 = none), and a weekly scan of
/// `weeklyScanType` on `weeklyDayOfWeek` (0 every day, 1 Sunday … 7 Saturday,
/// 8 never) at `weeklyTimeOfDay`.
public struct ScheduledScanConfig: Equatable, Sendable {
    public var enabled = false
    public var ignoreExclusions = false
    public var lowPriority = true
    public var dailyTimeOfDay = 60
    public var dailyInterval = 0
    public var weeklyDayOfWeek = 8
    public var weeklyTimeOfDay = 60
    public var weeklyScanType = "quick"
    public init() {}
}

public struct SuiteConfig: Equatable, Sendable {
    public var enforcementLevel = "passive"
    public var behaviorMonitoring = "disabled"
    public var scanArchives = true
    public var maximumOnDemandScanThreads = 2
    public var exclusionsMergePolicy = "merge"
    public var exclusions: [Exclusion] = []
    /// threatTypeSettings: potentially_unwanted_application / archive_bomb -> block | audit | off.
    public var threatTypeSettings: [String: String] = ["potentially_unwanted_application": "audit", "archive_bomb": "audit"]
    public var allowedThreats: [String] = []
    /// Ours: in real_time enforcement, stop detected executables in the kernel at exec.
    public var kernelExecBlocking = "enabled"
    /// Ours: with exec blocking, hold every exec for the scanner's verdict (fanotify);
    /// disabled leaves the kernel's kill at exec for files already detected.
    /// Off by default for now: before two watchdog bugs were fixed (blocking sends to
    /// rooms, a receive on a reused descriptor) it held every exec on the machine twice.
    /// Opt in where a file executed the instant it is written must not run; the kernel
    /// kill at exec of detected files works either way.
    public var execGate = "disabled"
    /// Defender's offline update source; here a local directory holding a package.
    public var offlineDefinitionUpdateUrl: String?
    public var ebpfSupplementaryEventProvider = "enabled"
    public var cloudEnabled = true
    public var automaticDefinitionUpdateEnabled = true
    public var edrGroupIds = ""
    public var edrTags: [String] = []
    public var sensor = SensorConfig()
    public var scheduledScan = ScheduledScanConfig()
    /// Dotted keys whose value came from the managed file ("[managed]" in health).
    public var managedKeys: Set<String> = []
    public init() {}

    public var globalExclusions: [Exclusion] { exclusions.filter { $0.scopes.contains(.global) } }
    public var execBlockingActive: Bool { enforcementLevel == "real_time" && kernelExecBlocking == "enabled" }
    public var execGateActive: Bool { execBlockingActive && execGate == "enabled" }
}

public enum ConfigLoader {
    public static let limits: JSONLimits = {
        var l = JSONLimits()
        l.maxBytes = 1 << 20
        l.maxDepth = 16
        return l
    }()

    /// Loads both files (each optional). Throws the first problem found.
    public static func load(paths: SuitePaths, read: (String) -> [UInt8]?) throws(ConfigError) -> SuiteConfig {
        let local = try parseFile(paths.configFile, read(paths.configFile))
        let managed = try parseFile(paths.managedFile, read(paths.managedFile))
        return try merge(local: local, managed: managed)
    }

    public static func parseFile(_ name: String, _ bytes: [UInt8]?) throws(ConfigError) -> ParsedConfig {
        guard let bytes else { return ParsedConfig(file: name) }
        let json: JSON
        do throws(JSONError) { json = try JSON.parse(bytes, limits: limits) } catch {
            throw ConfigError(file: name, key: "", reason: error.description)
        }
        return try ParsedConfig(file: name, json: json)
    }

    /// Managed values win; exclusions merge unless the managed file says admin_only.
    public static func merge(local: ParsedConfig, managed: ParsedConfig) throws(ConfigError) -> SuiteConfig {
        var c = SuiteConfig()
        for (key, value) in local.values { try c.apply(key, value, file: local.file) }
        for (key, value) in managed.values {
            try c.apply(key, value, file: managed.file)
            c.managedKeys.insert(key)
        }
        let policy = managed.values.first(where: { $0.0 == "antivirusEngine.exclusionsMergePolicy" || $0.0 == "exclusionSettings.mergePolicy" })?.1.string ?? "merge"
        c.exclusionsMergePolicy = policy
        c.exclusions = policy == "admin_only" ? managed.exclusions : local.exclusions + managed.exclusions
        return c
    }
}

/// One file's validated settings: scalar keys by dotted name, exclusions apart.
public struct ParsedConfig: Sendable {
    public let file: String
    public var values: [(String, JSON)] = []
    public var exclusions: [Exclusion] = []
    /// threatTypeSettings: potentially_unwanted_application / archive_bomb -> block | audit | off.
    public var threatTypeSettings: [String: String] = ["potentially_unwanted_application": "audit", "archive_bomb": "audit"]
    public var allowedThreats: [String] = []
    /// Ours: in real_time enforcement, stop detected executables in the kernel at exec.
    public var kernelExecBlocking = "enabled"
    /// Defender's offline update source; here a local directory holding a package.
    public var offlineDefinitionUpdateUrl: String?

    init(file: String) { self.file = file }

    init(file: String, json: JSON) throws(ConfigError) {
        self.file = file
        guard let top = json.members else { throw ConfigError(file: file, key: "", reason: "must be a JSON object") }
        for (section, body) in top {
            guard let spec = Schema.sections[section] else {
                throw ConfigError(file: file, key: section, reason: "unknown key (known: \(Schema.sections.keys.sorted().joined(separator: ", ")))")
            }
            guard let members = body.members else { throw ConfigError(file: file, key: section, reason: "must be an object") }
            for (key, value) in members {
                let dotted = section + "." + key
                if dotted == "antivirusEngine.exclusions" || dotted == "exclusionSettings.exclusions" {
                    exclusions += try Schema.exclusions(value, file: file, key: dotted, defaultScopes: section == "antivirusEngine" ? [.epp] : [.global])
                    continue
                }
                if let nested = Schema.nested[dotted] {
                    guard let r = value.members else { throw ConfigError(file: file, key: dotted, reason: "must be an object") }
                    for (rk, rv) in r {
                        let rd = dotted + "." + rk
                        guard let check = nested[rk] else { throw ConfigError(file: file, key: rd, reason: "unknown key (known: \(nested.keys.sorted().joined(separator: ", ")))") }
                        if let why = check(rv) { throw ConfigError(file: file, key: rd, reason: why) }
                        values.append((rd, rv))
                    }
                    continue
                }
                guard let check = spec[key] else {
                    throw ConfigError(file: file, key: dotted, reason: "unknown key (known: \(spec.keys.sorted().joined(separator: ", ")))")
                }
                if let why = check(value) { throw ConfigError(file: file, key: dotted, reason: why) }
                values.append((dotted, value))
            }
        }
    }
}

typealias Check = @Sendable (JSON) -> String?

enum Schema {
    static func oneOf(_ allowed: [String]) -> Check {
        { v in
            guard let s = v.string, allowed.contains(s) else { return "must be one of \(allowed.map { "\"\($0)\"" }.joined(separator: ", "))" }
            return nil
        }
    }
    static let bool: Check = { $0.bool == nil ? "must be true or false" : nil }
    static let string: Check = { $0.string == nil ? "must be a string" : nil }
    static func int(_ range: ClosedRange<Int>) -> Check {
        { v in
            guard let i = v.int, range.contains(i) else { return "must be an integer in \(range.lowerBound)...\(range.upperBound)" }
            return nil
        }
    }
    static func number(_ range: ClosedRange<Double>) -> Check {
        { v in
            guard let d = v.number, range.contains(d) else { return "must be a number in \(range.lowerBound)...\(range.upperBound)" }
            return nil
        }
    }
    static let ringBytes: Check = { v in
        guard let i = v.int, i >= 65536, i <= (1 << 30), i & (i - 1) == 0 else {
            return "must be a power of two from 65536 to 1073741824"
        }
        return nil
    }
    static let tags: Check = { v in
        guard let a = v.array, a.count <= 64 else { return "must be a list of at most 64 {key, value}" }
        for t in a {
            guard t["key"]?.string == "GROUP", let value = t["value"]?.string, value.utf8.count <= 256 else {
                return "each tag must be {\"key\": \"GROUP\", \"value\": \"...\"} (only GROUP is supported)"
            }
        }
        return nil
    }
    static let enabledDisabled = oneOf(["enabled", "disabled"])
    static let threatTypeSettings: Check = { v in
        guard let a = v.array, a.count <= 8 else { return "must be a list of {key, value}" }
        for t in a {
            guard let k = t["key"]?.string, ["potentially_unwanted_application", "archive_bomb"].contains(k),
                  let value = t["value"]?.string, ["block", "audit", "off"].contains(value) else {
                return "each item must be {\"key\": \"potentially_unwanted_application\"|\"archive_bomb\", \"value\": \"block\"|\"audit\"|\"off\"}"
            }
        }
        return nil
    }
    static let allowedThreats: Check = { v in
        guard let a = v.array, a.count <= 1024, a.allSatisfy({ ($0.string?.utf8.count ?? 0) > 0 && ($0.string?.utf8.count ?? 0) <= 512 }) else {
            return "must be a list of at most 1024 threat names"
        }
        return nil
    }

    static let sections: [String: [String: Check]] = [
        "antivirusEngine": [
            "enforcementLevel": oneOf(["real_time", "on_demand", "passive"]),
            "behaviorMonitoring": enabledDisabled,
            "scanArchives": bool,
            "maximumOnDemandScanThreads": int(1...64),
            "exclusionsMergePolicy": oneOf(["merge", "admin_only"]),
            "threatTypeSettings": threatTypeSettings,
            "allowedThreats": allowedThreats,
            "kernelExecBlocking": enabledDisabled,
            "execGate": enabledDisabled,
            "offlineDefinitionUpdateUrl": { v in
                guard let s = v.string, s.utf8.count < 4096, s.utf8.allSatisfy({ $0 > 0x20 && $0 != 0x7f }),
                      s.hasPrefix("/") || s.hasPrefix("https://") || s.hasPrefix("http://") else {
                    return "must be an absolute local directory or an http(s) mirror URL"
                }
                return nil
            },
        ],
        "exclusionSettings": [
            "mergePolicy": oneOf(["merge", "admin_only"]),
        ],
        "features": [
            "ebpfSupplementaryEventProvider": enabledDisabled,
            "scheduledScan": enabledDisabled,
        ],
        "scheduledScan": [
            "ignoreExclusions": bool,
            "lowPriorityScheduledScan": bool,
        ],
        "cloudService": [
            "enabled": bool,
            "automaticDefinitionUpdateEnabled": bool,
        ],
        "edr": [
            "groupIds": string,
            "tags": tags,
        ],
        "sensor": [
            "processRingBytes": ringBytes,
            "activityRingBytes": ringBytes,
            "consumerRingBytes": ringBytes,
            "statusIntervalSeconds": number(1...3600),
            "heartbeatSeconds": number(0.5...60),
            "storeMaxBytes": int((1 << 20)...(1 << 40)),
            "storeMaxAgeHours": int(1...(24 * 365)),
            "processTableCapacity": int(256...(1 << 22)),
            "hookFamily": oneOf(["auto", "tracepoint"]),
            "seccompLogOnly": bool,
            "allowSandboxSelftest": bool,
        ],
    ]

    /// Objects inside a section, by dotted name.
    static let nested: [String: [String: Check]] = [
        "sensor.restart": restartKeys,
        "scheduledScan.dailyConfiguration": [
            "timeOfDay": int(0...1439),
            "interval": oneOf(["0", "1", "2", "3", "4", "6", "8", "12", "24"]),
        ],
        "scheduledScan.weeklyConfiguration": [
            "dayOfWeek": int(0...8),
            "timeOfDay": int(0...1439),
            "scanType": oneOf(["quick", "full"]),
        ],
    ]

    static let restartKeys: [String: Check] = [
        "floorSeconds": number(1...60),
        "capSeconds": number(1...3600),
        "stableSeconds": number(1...3600),
        "maxDeaths": int(1...100),
        "windowSeconds": number(1...86400),
    ]

    static func exclusions(_ v: JSON, file: String, key: String, defaultScopes: [ExclusionScope]) throws(ConfigError) -> [Exclusion] {
        guard let items = v.array, items.count <= 1024 else { throw ConfigError(file: file, key: key, reason: "must be a list of at most 1024 items") }
        var out: [Exclusion] = []
        for (i, item) in items.enumerated() {
            let k = "\(key)[\(i)]"
            guard let members = item.members else { throw ConfigError(file: file, key: k, reason: "must be an object") }
            for (name, _) in members where !["$type", "path", "isDirectory", "extension", "name", "scopes"].contains(name) {
                throw ConfigError(file: file, key: k + "." + name, reason: "unknown key")
            }
            var scopes = defaultScopes
            if let s = item["scopes"] {
                guard let list = s.array, !list.isEmpty else { throw ConfigError(file: file, key: k + ".scopes", reason: "must be a non-empty list of \"epp\"/\"global\"") }
                scopes = []
                for e in list {
                    guard let str = e.string, let scope = ExclusionScope(rawValue: str) else {
                        throw ConfigError(file: file, key: k + ".scopes", reason: "must contain only \"epp\" or \"global\"")
                    }
                    scopes.append(scope)
                }
            }
            switch item["$type"]?.string {
            case "excludedPath":
                guard let path = item["path"]?.string, path.hasPrefix("/"), path.utf8.count < 4096 else {
                    throw ConfigError(file: file, key: k + ".path", reason: "must be an absolute path")
                }
                let isDir = item["isDirectory"]?.bool ?? false
                if scopes.contains(.global) && (path.contains("*") || path.contains("?")) {
                    throw ConfigError(file: file, key: k + ".path", reason: "wildcards are not allowed in global scope")
                }
                if scopes.contains(.global) && path.utf8.count > 255 {
                    throw ConfigError(file: file, key: k + ".path", reason: "global path exclusions are limited to 255 bytes")
                }
                out.append(.path(path, isDirectory: isDir, scopes: scopes))
            case "excludedFileExtension":
                guard let ext = item["extension"]?.string, !ext.isEmpty, ext.utf8.count < 256 else {
                    throw ConfigError(file: file, key: k + ".extension", reason: "must be a non-empty string")
                }
                if scopes.contains(.global) { throw ConfigError(file: file, key: k + ".scopes", reason: "extension exclusions cannot be global") }
                out.append(.fileExtension(ext, scopes: scopes))
            case "excludedFileName":
                guard let name = item["name"]?.string, !name.isEmpty, name.utf8.count < 4096 else {
                    throw ConfigError(file: file, key: k + ".name", reason: "must be a non-empty string")
                }
                if scopes.contains(.global) && !name.hasPrefix("/") {
                    throw ConfigError(file: file, key: k + ".name", reason: "global process exclusions need the full path")
                }
                out.append(.process(name, scopes: scopes))
            default:
                throw ConfigError(file: file, key: k + ".$type", reason: "must be \"excludedPath\", \"excludedFileExtension\" or \"excludedFileName\"")
            }
        }
        return out
    }
}

extension SuiteConfig {
    mutating func apply(_ key: String, _ v: JSON, file: String) throws(ConfigError) {
        switch key {
        case "antivirusEngine.enforcementLevel": enforcementLevel = v.string!
        case "antivirusEngine.behaviorMonitoring": behaviorMonitoring = v.string!
        case "antivirusEngine.scanArchives": scanArchives = v.bool!
        case "antivirusEngine.maximumOnDemandScanThreads": maximumOnDemandScanThreads = v.int!
        case "antivirusEngine.exclusionsMergePolicy", "exclusionSettings.mergePolicy": exclusionsMergePolicy = v.string!
        case "antivirusEngine.threatTypeSettings":
            for t in v.array! { threatTypeSettings[t["key"]!.string!] = t["value"]!.string! }
        case "antivirusEngine.allowedThreats": allowedThreats = v.array!.compactMap(\.string)
        case "antivirusEngine.kernelExecBlocking": kernelExecBlocking = v.string!
        case "antivirusEngine.execGate": execGate = v.string!
        case "antivirusEngine.offlineDefinitionUpdateUrl": offlineDefinitionUpdateUrl = v.string!
        case "features.ebpfSupplementaryEventProvider": ebpfSupplementaryEventProvider = v.string!
        case "features.scheduledScan": scheduledScan.enabled = v.string! == "enabled"
        case "scheduledScan.ignoreExclusions": scheduledScan.ignoreExclusions = v.bool!
        case "scheduledScan.lowPriorityScheduledScan": scheduledScan.lowPriority = v.bool!
        case "scheduledScan.dailyConfiguration.timeOfDay": scheduledScan.dailyTimeOfDay = v.int!
        case "scheduledScan.dailyConfiguration.interval": scheduledScan.dailyInterval = Int(v.string!)!
        case "scheduledScan.weeklyConfiguration.dayOfWeek": scheduledScan.weeklyDayOfWeek = v.int!
        case "scheduledScan.weeklyConfiguration.timeOfDay": scheduledScan.weeklyTimeOfDay = v.int!
        case "scheduledScan.weeklyConfiguration.scanType": scheduledScan.weeklyScanType = v.string!
        case "cloudService.enabled": cloudEnabled = v.bool!
        case "cloudService.automaticDefinitionUpdateEnabled": automaticDefinitionUpdateEnabled = v.bool!
        case "edr.groupIds": edrGroupIds = v.string!
        case "edr.tags": edrTags = v.array!.compactMap { $0["value"]?.string }
        case "sensor.processRingBytes": sensor.processRingBytes = v.int!
        case "sensor.activityRingBytes": sensor.activityRingBytes = v.int!
        case "sensor.consumerRingBytes": sensor.consumerRingBytes = v.int!
        case "sensor.statusIntervalSeconds": sensor.statusIntervalSeconds = v.number!
        case "sensor.heartbeatSeconds": sensor.heartbeatSeconds = v.number!
        case "sensor.storeMaxBytes": sensor.storeMaxBytes = v.int!
        case "sensor.storeMaxAgeHours": sensor.storeMaxAgeHours = v.int!
        case "sensor.processTableCapacity": sensor.processTableCapacity = v.int!
        case "sensor.hookFamily": sensor.hookFamily = v.string!
        case "sensor.seccompLogOnly": sensor.seccompLogOnly = v.bool!
        case "sensor.allowSandboxSelftest": sensor.allowSandboxSelftest = v.bool!
        case "sensor.restart.floorSeconds": sensor.restart.floorSeconds = v.number!
        case "sensor.restart.capSeconds": sensor.restart.capSeconds = v.number!
        case "sensor.restart.stableSeconds": sensor.restart.stableSeconds = v.number!
        case "sensor.restart.maxDeaths": sensor.restart.maxDeaths = v.int!
        case "sensor.restart.windowSeconds": sensor.restart.windowSeconds = v.number!
        default: throw ConfigError(file: file, key: key, reason: "unknown key")
        }
    }
}
