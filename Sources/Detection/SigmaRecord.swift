// What a rule sees of an event: one record of named fields, as Sigma's Linux
// taxonomy names them (process_creation, file_*, network_connection) or as
// auditd writes them (type=EXECVE a0…, SYSCALL syscall/exe/comm/key, PATH name).
// Values are bytes; a lower-cased copy is made once per field on first use,
// so N rules testing `Image` lower it once.
import Glibc

/// Sigma log sources this sensor provides.
public enum SigmaLogSource: String, CaseIterable, Sendable {
    case processCreation = "process_creation"
    case fileEvent = "file_event"
    case fileCreate = "file_create"
    case fileDelete = "file_delete"
    case fileRename = "file_rename"
    case fileChange = "file_change"
    case networkConnection = "network_connection"
    case auditd = "auditd"

    /// Fields a rule of this source may test.
    public var fields: Set<SigmaField> {
        switch self {
        case .processCreation: return SigmaField.process.union(SigmaField.processOnly)
        case .fileEvent, .fileCreate, .fileDelete, .fileRename, .fileChange: return SigmaField.process.union(SigmaField.file)
        case .networkConnection: return SigmaField.process.union(SigmaField.network)
        case .auditd: return SigmaField.auditd
        }
    }
}

/// Every field name any log source offers.
public enum SigmaField: Int, CaseIterable, Sendable {
    // The acting process (every Sigma source).
    case image, commandLine, currentDirectory, user, processId, parentProcessId, logonId, hashes, processGuid
    // process_creation only (the new process's parent and grandparent).
    case parentImage, parentCommandLine, parentUser, grandparentImage, grandparentCommandLine, originalFileName, terminalSessionId
    // file_*
    case targetFilename, sourceFilename
    // network_connection
    case destinationIp, destinationPort, destinationHostname, sourceIp, sourcePort, initiated, netProtocol, destinationIsIpv6, sourceIsIpv6
    // auditd records
    case auditType, syscall, success, exit, exe, comm, key, name, nametype, uid, euid, auid, gid, pid, ppid, ses, tty, cwd, argc
    case mode, ouid, saddrFam, laddr, lport
    case a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15
    case a16, a17, a18, a19, a20, a21, a22, a23, a24, a25, a26, a27, a28, a29, a30, a31

    public var name: String {
        switch self {
        case .image: return "Image"
        case .commandLine: return "CommandLine"
        case .currentDirectory: return "CurrentDirectory"
        case .user: return "User"
        case .processId: return "ProcessId"
        case .parentProcessId: return "ParentProcessId"
        case .logonId: return "LogonId"
        case .hashes: return "Hashes"
        case .processGuid: return "ProcessGuid"
        case .parentImage: return "ParentImage"
        case .parentCommandLine: return "ParentCommandLine"
        case .parentUser: return "ParentUser"
        case .grandparentImage: return "GrandparentImage"
        case .grandparentCommandLine: return "GrandparentCommandLine"
        case .originalFileName: return "OriginalFileName"
        case .terminalSessionId: return "TerminalSessionId"
        case .targetFilename: return "TargetFilename"
        case .sourceFilename: return "SourceFilename"
        case .destinationIp: return "DestinationIp"
        case .destinationPort: return "DestinationPort"
        case .destinationHostname: return "DestinationHostname"
        case .sourceIp: return "SourceIp"
        case .sourcePort: return "SourcePort"
        case .initiated: return "Initiated"
        case .netProtocol: return "Protocol"
        case .destinationIsIpv6: return "DestinationIsIpv6"
        case .sourceIsIpv6: return "SourceIsIpv6"
        case .auditType: return "type"
        case .syscall: return "syscall"
        case .success: return "success"
        case .exit: return "exit"
        case .exe: return "exe"
        case .comm: return "comm"
        case .key: return "key"
        case .name: return "name"
        case .nametype: return "nametype"
        case .uid: return "uid"
        case .euid: return "euid"
        case .auid: return "auid"
        case .gid: return "gid"
        case .pid: return "pid"
        case .ppid: return "ppid"
        case .ses: return "ses"
        case .tty: return "tty"
        case .cwd: return "cwd"
        case .argc: return "argc"
        case .mode: return "mode"
        case .ouid: return "ouid"
        case .saddrFam: return "saddr_fam"
        case .laddr: return "laddr"
        case .lport: return "lport"
        default: return "a\(rawValue - SigmaField.a0.rawValue)"
        }
    }

    static let process: Set<SigmaField> = [.image, .commandLine, .currentDirectory, .user, .processId, .parentProcessId, .logonId, .hashes, .processGuid, .parentImage, .parentCommandLine]
    static let processOnly: Set<SigmaField> = [.parentUser, .grandparentImage, .grandparentCommandLine, .originalFileName, .terminalSessionId]
    static let file: Set<SigmaField> = [.targetFilename, .sourceFilename]
    static let network: Set<SigmaField> = [.destinationIp, .destinationPort, .destinationHostname, .sourceIp, .sourcePort, .initiated, .netProtocol, .destinationIsIpv6, .sourceIsIpv6]
    static let auditd: Set<SigmaField> = Set(SigmaField.allCases.filter { $0.rawValue >= SigmaField.auditType.rawValue })

    /// auditd's argument fields a0…a31 in order.
    public static func argument(_ i: Int) -> SigmaField? { SigmaField(rawValue: SigmaField.a0.rawValue + i).flatMap { $0.rawValue <= SigmaField.a31.rawValue ? $0 : nil } }

    static let byName: [String: SigmaField] = {
        var m: [String: SigmaField] = [:]
        for f in SigmaField.allCases { m[f.name] = f }
        return m
    }()
    public init?(name: String) {
        guard let f = SigmaField.byName[name] else { return nil }
        self = f
    }
}

/// One record under evaluation. Filled by the sensor, read by every rule of its source.
public final class SigmaRecord {
    public let source: SigmaLogSource
    var values: [[UInt8]?]
    var lowered: [[UInt8]?]
    var loweredDone: [Bool]
    var keywordText: [UInt8]?
    var keywordLower: [UInt8]?
    /// Fields some rule reads (nil: all). `put` skips the others without computing them.
    public var wanted: [Bool]?
    var setFields: [Int] = []

    public init(source: SigmaLogSource, wanted: [Bool]? = nil) {
        self.source = source
        self.wanted = wanted
        values = Array(repeating: nil, count: SigmaField.allCases.count)
        lowered = values
        loweredDone = Array(repeating: false, count: values.count)
    }

    /// Sets a field only if a rule reads it; the value is computed only then.
    @inline(__always)
    public func put(_ field: SigmaField, _ value: @autoclosure () -> String?) {
        if let w = wanted, !w[field.rawValue] { return }
        set(field, value().map { Array($0.utf8) })
    }

    public subscript(field: SigmaField) -> String? {
        get { values[field.rawValue].map { String(decoding: $0, as: UTF8.self) } }
        set { set(field, newValue.map { Array($0.utf8) }) }
    }

    public func set(_ field: SigmaField, _ bytes: [UInt8]?) {
        let i = field.rawValue
        if values[i] == nil && bytes != nil { setFields.append(i) }
        values[i] = bytes
        loweredDone[i] = false
        keywordText = nil
        keywordLower = nil
    }

    /// Clears the fields set (records are reused event after event).
    public func reset() {
        for i in setFields {
            values[i] = nil
            loweredDone[i] = false
        }
        setFields.removeAll(keepingCapacity: true)
        keywordText = nil
        keywordLower = nil
    }

    public func raw(_ f: SigmaField) -> [UInt8]? { values[f.rawValue] }

    func lower(_ f: SigmaField) -> [UInt8]? {
        let i = f.rawValue
        if !loweredDone[i] {
            lowered[i] = values[i].map(asciiLowered)
            loweredDone[i] = true
        }
        return lowered[i]
    }

    /// Keyword searches look at the whole record, as a log line: auditd's
    /// `type=EXECVE a0="x" …`, or every field's value for the other sources.
    func keywords(lower: Bool) -> [UInt8] {
        if keywordText == nil {
            var t: [UInt8] = []
            for f in SigmaField.allCases {
                guard let v = values[f.rawValue] else { continue }
                if !t.isEmpty { t.append(0x20) }
                if source == .auditd {
                    t += Array(f.name.utf8)
                    t.append(0x3d)
                    let quote = f.rawValue >= SigmaField.a0.rawValue || f == .exe || f == .comm || f == .name || f == .cwd || f == .key
                    if quote { t.append(0x22) }
                    t += v
                    if quote { t.append(0x22) }
                } else {
                    t += v
                }
            }
            keywordText = t
        }
        if !lower { return keywordText! }
        if keywordLower == nil { keywordLower = asciiLowered(keywordText!) }
        return keywordLower!
    }
}

@inline(__always) func asciiLowered(_ b: [UInt8]) -> [UInt8] {
    var out = b
    for i in out.indices where out[i] &- 0x41 < 26 { out[i] |= 0x20 }
    return out
}
