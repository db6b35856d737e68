// Control messages between the watchdog and its rooms, imsg-style: a fixed
// header, one closed enum of types, an exact (or bounded) length per type,
// and at most one descriptor. Anything else is a protocol violation, fatal
// for the peer. Every type is listed in docs/PROTOCOL.md.

public enum MessageType: UInt16, CaseIterable, Sendable {
    case ready = 1              // room -> watchdog: sandbox installed, serving
    case heartbeat = 2          // room -> watchdog: counters
    case collectorInfo = 3      // collector -> watchdog: hook choice, once after ready
    case shutdown = 10          // watchdog -> room: drain and exit 0
    case selftestForbidden = 11 // watchdog -> room: make a forbidden syscall (root asked)
    case query = 12             // watchdog -> edr, scanner: a CLI request, with the client's socket
    case openForScan = 13       // scanner -> watchdog (request channel): open this path read-only for me
    case openResult = 14        // watchdog -> scanner: 0 and the descriptor, or an errno
    case quarantine = 15        // scanner -> watchdog (request channel): move this file to quarantine
    case quarantineResult = 16  // watchdog -> scanner: 0 and the quarantine id, or an errno
    case denyExecutable = 17    // scanner -> watchdog (request channel): stop this file at exec
    case denyResult = 18        // watchdog -> scanner: 0 or an errno
    case denyUpdate = 19        // watchdog -> collector: add this identity to the kernel deny table
    case execBlocking = 20      // watchdog -> collector: turn kernel exec blocking on or off
    case loadDefinitions = 21   // watchdog -> scanner: verify and switch to the package at this path
    case definitionsResult = 22 // scanner -> watchdog: 0 and the version now in use, or an errno and why
    case importDefinitions = 23 // watchdog -> scanner: add the admin's source staged at this path to the set in use
    case denyRemove = 24        // watchdog -> collector: take this identity out of the kernel deny table
    case execCheck = 25         // watchdog -> scanner (exec gate channel): may this file run? (its descriptor attached)
    case execVerdict = 26       // scanner -> watchdog (exec gate channel): the answer to an execCheck

    /// Allowed payload length range.
    public var lengths: ClosedRange<Int> {
        switch self {
        case .ready, .shutdown, .selftestForbidden: return 0...0
        case .heartbeat: return Heartbeat.byteCount...Heartbeat.byteCount
        case .collectorInfo: return CollectorInfo.byteCount...CollectorInfo.byteCount
        case .query: return 8...(8 + Message.maxQueryBytes)
        case .openForScan: return 1...Message.maxPathBytes
        case .openResult: return 4...4
        case .quarantine: return 20...(20 + Message.maxThreatNameBytes + Message.maxPathBytes)
        case .quarantineResult: return 36...36
        case .denyExecutable, .denyUpdate, .denyRemove: return 24...24
        case .execCheck: return 12...12
        case .execVerdict: return 12...12
        case .denyResult, .execBlocking: return 4...4
        case .loadDefinitions, .importDefinitions: return 2...Message.maxPathBytes
        case .definitionsResult: return 12...(12 + 512)
        }
    }

    public enum DescriptorRule { case forbidden, required, withSuccess }

    /// Whether a descriptor must, must not, or (openResult) must exactly when status is 0, come with it.
    public var descriptor: DescriptorRule {
        switch self {
        case .query, .execCheck: return .required
        case .openResult: return .withSuccess
        default: return .forbidden
        }
    }
}

public struct ProtocolViolation: Error, CustomStringConvertible, Equatable {
    public let reason: String
    public var description: String { "protocol violation: \(reason)" }
}

public enum Message: Equatable, Sendable {
    case ready
    case heartbeat(Heartbeat)
    case collectorInfo(CollectorInfo)
    case shutdown
    case selftestForbidden
    /// A CLI request forwarded with the client's socket; uid/gid from SO_PEERCRED.
    case query(uid: UInt32, gid: UInt32, request: [UInt8])
    /// An absolute path, without NUL, at most maxPathBytes.
    case openForScan(path: [UInt8])
    /// 0 with the descriptor, else an errno.
    case openResult(status: Int32)
    /// The file at `path` must still be (dev, ino), the one the scanner read.
    case quarantine(dev: UInt64, ino: UInt64, threat: [UInt8], path: [UInt8])
    /// 0 and the id (32 hex digits), else an errno.
    case quarantineResult(status: Int32, id: String)
    /// A file identity (st_dev as stat(2) gives it, inode).
    case denyExecutable(FileIdentity)
    case denyResult(status: Int32)
    case denyUpdate(FileIdentity)
    case denyRemove(FileIdentity)
    case execCheck(token: UInt64, pid: Int32)
    case execVerdict(token: UInt64, allow: Bool)
    case execBlocking(enabled: Bool)
    case loadDefinitions(path: [UInt8])
    case importDefinitions(path: [UInt8])
    /// `version` packed as four 16-bit fields; `reason` printable ASCII.
    case definitionsResult(status: Int32, version: UInt64, reason: String)

    public static let headerBytes = 16
    public static let maxQueryBytes = 4096
    public static let maxPathBytes = 4095
    public static let maxThreatNameBytes = 512
    public static let maxBytes = headerBytes + 8 + maxQueryBytes

    public var type: MessageType {
        switch self {
        case .ready: return .ready
        case .heartbeat: return .heartbeat
        case .collectorInfo: return .collectorInfo
        case .shutdown: return .shutdown
        case .selftestForbidden: return .selftestForbidden
        case .query: return .query
        case .openForScan: return .openForScan
        case .openResult: return .openResult
        case .quarantine: return .quarantine
        case .quarantineResult: return .quarantineResult
        case .denyExecutable: return .denyExecutable
        case .denyResult: return .denyResult
        case .denyUpdate: return .denyUpdate
        case .denyRemove: return .denyRemove
        case .execCheck: return .execCheck
        case .execVerdict: return .execVerdict
        case .execBlocking: return .execBlocking
        case .loadDefinitions: return .loadDefinitions
        case .importDefinitions: return .importDefinitions
        case .definitionsResult: return .definitionsResult
        }
    }

    public func encode(pid: UInt32) -> [UInt8] {
        var payload: [UInt8] = []
        switch self {
        case .ready, .shutdown, .selftestForbidden: break
        case .heartbeat(let h): payload = h.encode()
        case .collectorInfo(let i): payload = i.encode()
        case .query(let uid, let gid, let request):
            payload.appendLE(uid)
            payload.appendLE(gid)
            payload += request.prefix(Message.maxQueryBytes)
        case .openForScan(let path):
            payload = Array(path.prefix(Message.maxPathBytes))
        case .openResult(let status):
            payload.appendLE(UInt32(bitPattern: status))
        case .quarantine(let dev, let ino, let threat, let path):
            let t = Array(threat.prefix(Message.maxThreatNameBytes))
            payload.appendLE(dev)
            payload.appendLE(ino)
            payload.appendLE(UInt32(t.count))
            payload += t
            payload += path.prefix(Message.maxPathBytes)
        case .quarantineResult(let status, let id):
            payload.appendLE(UInt32(bitPattern: status))
            var b = Array(id.utf8.prefix(32))
            while b.count < 32 { b.append(0x30) }
            payload += b
        case .denyExecutable(let f), .denyUpdate(let f), .denyRemove(let f):
            payload.appendLE(f.dev)
            payload.appendLE(f.ino)
            payload.appendLE(f.generation ?? 0)
            payload.appendLE(UInt32(f.generation == nil ? 0 : 1))
        case .execCheck(let token, let pid):
            payload.appendLE(token)
            payload.appendLE(UInt32(bitPattern: pid))
        case .execVerdict(let token, let allow):
            payload.appendLE(token)
            payload.appendLE(UInt32(allow ? 1 : 0))
        case .denyResult(let status):
            payload.appendLE(UInt32(bitPattern: status))
        case .execBlocking(let on):
            payload.appendLE(UInt32(on ? 1 : 0))
        case .loadDefinitions(let path), .importDefinitions(let path):
            payload = Array(path.prefix(Message.maxPathBytes))
        case .definitionsResult(let status, let version, let reason):
            payload.appendLE(UInt32(bitPattern: status))
            payload.appendLE(version)
            payload += Array(reason.utf8.prefix(512))
        }
        var out: [UInt8] = []
        out.reserveCapacity(Message.headerBytes + payload.count)
        out.appendLE(type.rawValue)
        out.appendLE(UInt16(0))
        out.appendLE(UInt32(payload.count))
        out.appendLE(pid)
        out.appendLE(UInt32(0))
        return out + payload
    }

    /// Decodes one received message; `hasDescriptor` says whether one came with it.
    public static func decode(_ bytes: [UInt8], hasDescriptor: Bool) throws(ProtocolViolation) -> Message {
        guard bytes.count >= headerBytes else { throw ProtocolViolation(reason: "short header (\(bytes.count) bytes)") }
        let rawType = bytes.readLE(UInt16.self, at: 0)
        let length = Int(bytes.readLE(UInt32.self, at: 4))
        guard let type = MessageType(rawValue: rawType) else { throw ProtocolViolation(reason: "unknown type \(rawType)") }
        guard length == bytes.count - headerBytes else { throw ProtocolViolation(reason: "length \(length) != \(bytes.count - headerBytes) received") }
        guard type.lengths.contains(length) else { throw ProtocolViolation(reason: "\(type) with \(length) bytes") }
        let payload = Array(bytes[headerBytes...])
        switch type.descriptor {
        case .forbidden: guard !hasDescriptor else { throw ProtocolViolation(reason: "\(type) with a descriptor") }
        case .required: guard hasDescriptor else { throw ProtocolViolation(reason: "\(type) without its descriptor") }
        case .withSuccess:
            guard (payload.readLE(UInt32.self, at: 0) == 0) == hasDescriptor else { throw ProtocolViolation(reason: "\(type) descriptor does not match its status") }
        }
        switch type {
        case .ready: return .ready
        case .shutdown: return .shutdown
        case .selftestForbidden: return .selftestForbidden
        case .heartbeat: return .heartbeat(Heartbeat(decoding: payload))
        case .collectorInfo: return .collectorInfo(CollectorInfo(decoding: payload))
        case .query:
            return .query(uid: payload.readLE(UInt32.self, at: 0), gid: payload.readLE(UInt32.self, at: 4), request: Array(payload[8...]))
        case .openForScan:
            guard payload.first == 0x2f, !payload.contains(0) else { throw ProtocolViolation(reason: "openForScan path must be absolute, without NUL") }
            return .openForScan(path: payload)
        case .openResult:
            return .openResult(status: Int32(bitPattern: payload.readLE(UInt32.self, at: 0)))
        case .quarantine:
            let n = Int(payload.readLE(UInt32.self, at: 16))
            guard n >= 1, n <= Message.maxThreatNameBytes, 20 + n < payload.count else { throw ProtocolViolation(reason: "quarantine threat name length \(n)") }
            let threat = Array(payload[20..<(20 + n)])
            let path = Array(payload[(20 + n)...])
            guard threat.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else { throw ProtocolViolation(reason: "quarantine threat name not printable") }
            guard path.first == 0x2f, !path.contains(0), path.count <= Message.maxPathBytes else { throw ProtocolViolation(reason: "quarantine path must be absolute, without NUL") }
            return .quarantine(dev: payload.readLE(UInt64.self, at: 0), ino: payload.readLE(UInt64.self, at: 8), threat: threat, path: path)
        case .quarantineResult:
            let id = payload[4...]
            guard id.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else { throw ProtocolViolation(reason: "quarantine id not hex") }
            return .quarantineResult(status: Int32(bitPattern: payload.readLE(UInt32.self, at: 0)), id: String(decoding: id, as: UTF8.self))
        case .denyExecutable, .denyUpdate, .denyRemove:
            let flags = payload.readLE(UInt32.self, at: 20)
            guard flags <= 1 else { throw ProtocolViolation(reason: "deny identity flags \(flags)") }
            let f = FileIdentity(dev: payload.readLE(UInt64.self, at: 0), ino: payload.readLE(UInt64.self, at: 8),
                                 generation: flags == 1 ? payload.readLE(UInt32.self, at: 16) : nil)
            return type == .denyExecutable ? .denyExecutable(f) : type == .denyUpdate ? .denyUpdate(f) : .denyRemove(f)
        case .denyResult:
            return .denyResult(status: Int32(bitPattern: payload.readLE(UInt32.self, at: 0)))
        case .loadDefinitions:
            guard payload.first == 0x2f, !payload.contains(0) else { throw ProtocolViolation(reason: "loadDefinitions path must be absolute") }
            return .loadDefinitions(path: payload)
        case .execCheck:
            return .execCheck(token: payload.readLE(UInt64.self, at: 0), pid: Int32(bitPattern: payload.readLE(UInt32.self, at: 8)))
        case .execVerdict:
            let v = payload.readLE(UInt32.self, at: 8)
            guard v <= 1 else { throw ProtocolViolation(reason: "execVerdict \(v)") }
            return .execVerdict(token: payload.readLE(UInt64.self, at: 0), allow: v == 1)
        case .importDefinitions:
            guard payload.first == 0x2f, !payload.contains(0) else { throw ProtocolViolation(reason: "importDefinitions path must be absolute") }
            return .importDefinitions(path: payload)
        case .definitionsResult:
            return .definitionsResult(status: Int32(bitPattern: payload.readLE(UInt32.self, at: 0)), version: payload.readLE(UInt64.self, at: 4),
                                      reason: CollectorInfo.printable(payload[12...]))
        case .execBlocking:
            let v = payload.readLE(UInt32.self, at: 0)
            guard v <= 1 else { throw ProtocolViolation(reason: "execBlocking \(v)") }
            return .execBlocking(enabled: v == 1)
        }
    }
}

/// A room's counters: a fixed vector, named per room by its manifest.
public struct Heartbeat: Equatable, Sendable {
    public static let slots = 24
    public static let byteCount = slots * 8
    public var counters: [UInt64]

    public init(_ counters: [UInt64]) {
        var c = Array(counters.prefix(Heartbeat.slots))
        while c.count < Heartbeat.slots { c.append(0) }
        self.counters = c
    }

    init(decoding p: [UInt8]) {
        counters = (0..<Heartbeat.slots).map { p.readLE(UInt64.self, at: $0 * 8) }
    }

    func encode() -> [UInt8] {
        var out: [UInt8] = []
        for c in counters { out.appendLE(c) }
        return out
    }
}

/// The collector's hook choice, reported once after ready.
public struct CollectorInfo: Equatable, Sendable {
    public static let byteCount = 1024
    public var hookFamily: String      // "tracepoint" (tp_btf + syscall tracepoints)
    public var programsAttached: UInt32
    public var createdFlagCalibrated: Bool
    public var skipped: String         // programs this kernel lacks the hook for

    public init(hookFamily: String, programsAttached: UInt32, createdFlagCalibrated: Bool, skipped: String) {
        self.hookFamily = hookFamily
        self.programsAttached = programsAttached
        self.createdFlagCalibrated = createdFlagCalibrated
        self.skipped = skipped
    }

    init(decoding p: [UInt8]) {
        programsAttached = p.readLE(UInt32.self, at: 0)
        createdFlagCalibrated = p.readLE(UInt32.self, at: 4) != 0
        hookFamily = Self.printable(p[8..<40])
        skipped = Self.printable(p[40..<1024])
    }

    func encode() -> [UInt8] {
        var out: [UInt8] = []
        out.appendLE(programsAttached)
        out.appendLE(UInt32(createdFlagCalibrated ? 1 : 0))
        out += Self.fixed(hookFamily, 32)
        out += Self.fixed(skipped, 984)
        return out
    }

    static func fixed(_ s: String, _ n: Int) -> [UInt8] {
        var b = Array(s.utf8.prefix(n))
        while b.count < n { b.append(0) }
        return b
    }

    /// Untrusted bytes to a string of printable ASCII only, up to the first NUL.
    static func printable(_ bytes: ArraySlice<UInt8>) -> String {
        var out = ""
        for b in bytes {
            if b == 0 { break }
            out.append(b >= 0x20 && b < 0x7f ? Character(UnicodeScalar(b)) : "?")
        }
        return out
    }
}

extension Array where Element == UInt8 {
    mutating func appendLE<T: FixedWidthInteger>(_ v: T) {
        var x = v.littleEndian
        for _ in 0..<MemoryLayout<T>.size {
            append(UInt8(truncatingIfNeeded: x))
            x = x >> 8
        }
    }

    func readLE<T: FixedWidthInteger>(_: T.Type, at off: Int) -> T {
        var v = T.zero
        for i in (0..<MemoryLayout<T>.size).reversed() {
            v = v << 8 | T(truncatingIfNeeded: self[off + i])
        }
        return v
    }
}

/// A file as the deny table knows it: device (glibc's st_dev), inode, and the
/// inode's generation where its filesystem reports one (FS_IOC_GETVERSION).
public struct FileIdentity: Equatable, Hashable, Sendable {
    public let dev: UInt64
    public let ino: UInt64
    public let generation: UInt32?

    public init(dev: UInt64, ino: UInt64, generation: UInt32?) {
        self.dev = dev
        self.ino = ino
        self.generation = generation
    }
}
