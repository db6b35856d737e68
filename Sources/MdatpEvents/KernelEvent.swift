// Decoding of kernel records (bpf/include/mdatp_abi.h) into Swift values.
// The bytes come from shared memory and, before that, from attacker-chosen
// paths and argv: every length is checked against the record size, strings
// are decoded lossily, nothing is trusted to be NUL-terminated.
import CMdatpABI

public struct EventHeader: Equatable, Sendable {
    public var type: UInt16
    public var flags: UInt16
    public var size: UInt32
    public var seq: UInt64
    public var ktimeNs: UInt64
    public var pid: UInt32
    public var tgid: UInt32
    public var uid: UInt32
    public var euid: UInt32
    public var cgroupId: UInt64
    public var comm: String

    // Public: benchmarks and tools outside this module build events too.
    public init(type: UInt16, flags: UInt16, size: UInt32, seq: UInt64, ktimeNs: UInt64, pid: UInt32, tgid: UInt32, uid: UInt32, euid: UInt32,
                cgroupId: UInt64, comm: String) {
        self.type = type; self.flags = flags; self.size = size; self.seq = seq; self.ktimeNs = ktimeNs
        self.pid = pid; self.tgid = tgid; self.uid = uid; self.euid = euid; self.cgroupId = cgroupId; self.comm = comm
    }
}

public struct ExecInfo: Equatable, Sendable {
    public var ppid: UInt32
    public var gid: UInt32
    public var egid: UInt32
    public var loginuid: UInt32
    public var sessionid: UInt32
    public var exeDev: UInt32
    public var exeIno: UInt64
    public var exeMtimeSec: Int64
    public var exeMtimeNsec: UInt32
    public var exeMode: UInt32
    public var startTimeNs: UInt64
    public var argc: UInt32
    public var exe: String
    public var cwd: String
    public var tty: String
    public var argv: [String]
    /// What descriptors 0-2 were at exec: MDATP_STDIO_* per nibble (fd 0 lowest).
    public var stdio: UInt32 = 0

    public func stdioKind(_ fd: Int) -> UInt32 { (stdio >> UInt32(4 * fd)) & 0xf }

    // Public: benchmarks and tools outside this module build events too.
    public init(ppid: UInt32, gid: UInt32, egid: UInt32, loginuid: UInt32, sessionid: UInt32, exeDev: UInt32, exeIno: UInt64, exeMtimeSec: Int64,
                exeMtimeNsec: UInt32, exeMode: UInt32, startTimeNs: UInt64, argc: UInt32, exe: String, cwd: String, tty: String, argv: [String],
                stdio: UInt32 = 0) {
        self.ppid = ppid; self.gid = gid; self.egid = egid; self.loginuid = loginuid; self.sessionid = sessionid; self.exeDev = exeDev
        self.exeIno = exeIno; self.exeMtimeSec = exeMtimeSec; self.exeMtimeNsec = exeMtimeNsec; self.exeMode = exeMode
        self.startTimeNs = startTimeNs; self.argc = argc; self.exe = exe; self.cwd = cwd; self.tty = tty; self.argv = argv; self.stdio = stdio
    }
}

public struct FileInfo: Equatable, Sendable {
    public var mode: UInt32
    public var ownerUid: UInt32
    public var ownerGid: UInt32
    public var dev: UInt32
    public var ino: UInt64
    public var openFlags: UInt32
    public var path: String
    public var path2: String

    // Public: benchmarks and tools outside this module build events too.
    public init(mode: UInt32, ownerUid: UInt32, ownerGid: UInt32, dev: UInt32, ino: UInt64, openFlags: UInt32, path: String, path2: String) {
        self.mode = mode; self.ownerUid = ownerUid; self.ownerGid = ownerGid; self.dev = dev; self.ino = ino
        self.openFlags = openFlags; self.path = path; self.path2 = path2
    }
}

public struct NetInfo: Equatable, Sendable {
    public var family: UInt16
    public var proto: UInt16
    public var sockType: UInt16
    public var localPort: UInt16
    public var remotePort: UInt16
    public var ret: Int32
    public var localAddress: String
    public var remoteAddress: String

    // Public: benchmarks and tools outside this module build events too.
    public init(family: UInt16, proto: UInt16, sockType: UInt16, localPort: UInt16, remotePort: UInt16, ret: Int32, localAddress: String, remoteAddress: String) {
        self.family = family; self.proto = proto; self.sockType = sockType; self.localPort = localPort; self.remotePort = remotePort
        self.ret = ret; self.localAddress = localAddress; self.remoteAddress = remoteAddress
    }
}

public struct SensitiveInfo: Equatable, Sendable {
    public var ret: Int64
    public var args: [UInt64]
    public var targetPid: UInt32
    public var newUid: UInt32
    public var newEuid: UInt32
    public var newGid: UInt32
    public var newEgid: UInt32
    public var strings: [String]
}

public enum EventBody: Equatable, Sendable {
    case exec(ExecInfo)
    case fork(childPid: UInt32, childTgid: UInt32, childStartNs: UInt64)
    case exit(ppid: UInt32, exitCode: UInt32, startNs: UInt64)
    case file(FileInfo)
    case network(NetInfo)
    case sensitive(SensitiveInfo)
}

public struct KernelEvent: Equatable, Sendable {
    public var header: EventHeader
    public var body: EventBody
    public var kind: EventKind { EventKind(rawValue: header.type) ?? .unknown }

    // Public: benchmarks and tools outside this module build events too.
    public init(header: EventHeader, body: EventBody) {
        self.header = header
        self.body = body
    }
}

/// Event types with the names the CLI and store use.
public enum EventKind: UInt16, CaseIterable, Sendable {
    case exec = 1, fork = 2, exit = 3
    case fileCreate = 10, fileOpenWrite = 11, fileCloseWrite = 12, fileRename = 13, fileUnlink = 14, fileChmod = 15, fileChown = 16, fileOpenRead = 17
    case netConnect = 20, netAccept = 21, netBind = 22, netListen = 23
    case ptrace = 30, moduleLoad = 31, bpfLoad = 32, credChange = 33, memfdCreate = 34, mount = 35, signalSuite = 36
    case unknown = 0

    public var name: String {
        switch self {
        case .exec: return "exec"
        case .fork: return "fork"
        case .exit: return "exit"
        case .fileCreate: return "file_create"
        case .fileOpenWrite: return "file_open_write"
        case .fileCloseWrite: return "file_close_write"
        case .fileRename: return "file_rename"
        case .fileUnlink: return "file_unlink"
        case .fileChmod: return "file_chmod"
        case .fileChown: return "file_chown"
        case .fileOpenRead: return "file_open_read"
        case .netConnect: return "net_connect"
        case .netAccept: return "net_accept"
        case .netBind: return "net_bind"
        case .netListen: return "net_listen"
        case .ptrace: return "ptrace"
        case .moduleLoad: return "module_load"
        case .bpfLoad: return "bpf_load"
        case .credChange: return "cred_change"
        case .memfdCreate: return "memfd_create"
        case .mount: return "mount"
        case .signalSuite: return "signal_suite"
        case .unknown: return "unknown"
        }
    }

    /// The family a `--type` filter names: process, file, network, sensitive.
    public var family: String {
        switch rawValue {
        case 1..<10: return "process"
        case 10..<20: return "file"
        case 20..<30: return "network"
        case 30..<40: return "sensitive"
        default: return "unknown"
        }
    }
}

public struct DecodeError: Error, Equatable, CustomStringConvertible {
    public let reason: String
    public var description: String { "bad kernel record: \(reason)" }
}

/// Flags (header.flags).
public enum EventFlag {
    public static let pathTruncated: UInt16 = 0x0001
    public static let path2Truncated: UInt16 = 0x0002
    public static let argvTruncated: UInt16 = 0x0004
    public static let setuidExec: UInt16 = 0x0008
    public static let setgidExec: UInt16 = 0x0010
    public static let pathRelative: UInt16 = 0x0020
    public static let stringTruncated: UInt16 = 0x0040
    public static let execBlocked: UInt16 = 0x0080
    public static let exeDeleted: UInt16 = 0x0100
    /// Refused by the BPF LSM before the image loaded: the caller keeps running its old image.
    public static let execRefused: UInt16 = 0x0200
    /// The executable lives on tmpfs or ramfs (memory only; memfds too).
    public static let exeOnTmpfs: UInt16 = 0x0400
}

struct Reader {
    let raw: UnsafeRawBufferPointer
    func u16(_ o: Int) -> UInt16 { raw.loadUnaligned(fromByteOffset: o, as: UInt16.self) }
    func u32(_ o: Int) -> UInt32 { raw.loadUnaligned(fromByteOffset: o, as: UInt32.self) }
    func u64(_ o: Int) -> UInt64 { raw.loadUnaligned(fromByteOffset: o, as: UInt64.self) }
    func i64(_ o: Int) -> Int64 { raw.loadUnaligned(fromByteOffset: o, as: Int64.self) }
    func i32(_ o: Int) -> Int32 { raw.loadUnaligned(fromByteOffset: o, as: Int32.self) }
    func bytes(_ o: Int, _ n: Int) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: raw[o..<(o + n)]) }
    func string(_ o: Int, _ n: Int) -> String {
        let b = bytes(o, n)
        let end = b.firstIndex(of: 0) ?? n
        return String(decoding: UnsafeRawBufferPointer(rebasing: b[0..<end]), as: UTF8.self)
    }
}

public enum EventDecoder {
    static let headerSize = MemoryLayout<mdatp_event_header>.size

    public static func decode(_ raw: UnsafeRawBufferPointer) throws(DecodeError) -> KernelEvent {
        guard raw.count >= headerSize else { throw DecodeError(reason: "\(raw.count) bytes, shorter than a header") }
        let r = Reader(raw: raw)
        let declared = Int(r.u32(4))
        guard declared <= raw.count, declared >= headerSize else { throw DecodeError(reason: "declared size \(declared) of \(raw.count)") }
        let h = EventHeader(type: r.u16(0), flags: r.u16(2), size: UInt32(declared), seq: r.u64(8), ktimeNs: r.u64(16),
                            pid: r.u32(24), tgid: r.u32(28), uid: r.u32(32), euid: r.u32(36), cgroupId: r.u64(40),
                            comm: r.string(48, 16))
        let size = declared
        func need(_ fixed: Int) throws(DecodeError) {
            guard size >= fixed else { throw DecodeError(reason: "type \(h.type): \(size) bytes, fixed part needs \(fixed)") }
        }
        func strings(_ start: Int, _ lengths: [Int]) throws(DecodeError) -> [String] {
            var off = start
            var out: [String] = []
            for n in lengths {
                guard n >= 0, off + n <= size else { throw DecodeError(reason: "type \(h.type): string of \(n) at \(off) past \(size)") }
                out.append(String(decoding: r.bytes(off, n), as: UTF8.self))
                off += n
            }
            return out
        }
        switch EventKind(rawValue: h.type) ?? .unknown {
        case .exec:
            let fixed = MemoryLayout<mdatp_exec_event>.size
            try need(fixed)
            let exeLen = Int(r.u16(124)), cwdLen = Int(r.u16(126)), ttyLen = Int(r.u16(128)), argvLen = Int(r.u16(130))
            let s = try strings(fixed, [exeLen, cwdLen, ttyLen])
            let argvStart = fixed + exeLen + cwdLen + ttyLen
            guard argvStart + argvLen <= size else { throw DecodeError(reason: "exec argv past record") }
            var argv: [String] = []
            var cur: [UInt8] = []
            for b in r.bytes(argvStart, argvLen) {
                if b == 0 { argv.append(String(decoding: cur, as: UTF8.self)); cur.removeAll(keepingCapacity: true) } else { cur.append(b) }
            }
            if !cur.isEmpty { argv.append(String(decoding: cur, as: UTF8.self)) }
            let info = ExecInfo(ppid: r.u32(64), gid: r.u32(68), egid: r.u32(72), loginuid: r.u32(76), sessionid: r.u32(80),
                                exeDev: r.u32(84), exeIno: r.u64(88), exeMtimeSec: r.i64(96), exeMtimeNsec: r.u32(104),
                                exeMode: r.u32(108), startTimeNs: r.u64(112), argc: r.u32(120),
                                exe: s[0], cwd: s[1], tty: s[2], argv: argv, stdio: r.u32(132))
            return KernelEvent(header: h, body: .exec(info))
        case .fork:
            try need(MemoryLayout<mdatp_fork_event>.size)
            return KernelEvent(header: h, body: .fork(childPid: r.u32(64), childTgid: r.u32(68), childStartNs: r.u64(72)))
        case .exit:
            try need(MemoryLayout<mdatp_exit_event>.size)
            return KernelEvent(header: h, body: .exit(ppid: r.u32(64), exitCode: r.u32(68), startNs: r.u64(72)))
        case .fileCreate, .fileOpenWrite, .fileCloseWrite, .fileRename, .fileUnlink, .fileChmod, .fileChown, .fileOpenRead:
            let fixed = MemoryLayout<mdatp_file_event>.size
            try need(fixed)
            let s = try strings(fixed, [Int(r.u16(92)), Int(r.u16(94))])
            let info = FileInfo(mode: r.u32(64), ownerUid: r.u32(68), ownerGid: r.u32(72), dev: r.u32(76), ino: r.u64(80),
                                openFlags: r.u32(88), path: s[0], path2: s[1])
            return KernelEvent(header: h, body: .file(info))
        case .netConnect, .netAccept, .netBind, .netListen:
            try need(MemoryLayout<mdatp_net_event>.size)
            let family = r.u16(64)
            let info = NetInfo(family: family, proto: r.u16(66), sockType: r.u16(68), localPort: r.u16(70), remotePort: r.u16(72),
                               ret: r.i32(76), localAddress: formatAddress(family, r.bytes(80, 16)),
                               remoteAddress: formatAddress(family, r.bytes(96, 16)))
            return KernelEvent(header: h, body: .network(info))
        case .ptrace, .moduleLoad, .bpfLoad, .credChange, .memfdCreate, .mount, .signalSuite:
            let fixed = MemoryLayout<mdatp_sensitive_event>.size
            try need(fixed)
            let s = try strings(fixed, [Int(r.u16(124)), Int(r.u16(126)), Int(r.u16(128))])
            let info = SensitiveInfo(ret: r.i64(64), args: [r.u64(72), r.u64(80), r.u64(88), r.u64(96)], targetPid: r.u32(104),
                                     newUid: r.u32(108), newEuid: r.u32(112), newGid: r.u32(116), newEgid: r.u32(120),
                                     strings: s)
            return KernelEvent(header: h, body: .sensitive(info))
        case .unknown:
            throw DecodeError(reason: "unknown type \(h.type)")
        }
    }

    /// IPv4 dotted quad or RFC 5952 IPv6 text.
    public static func formatAddress(_ family: UInt16, _ b: UnsafeRawBufferPointer) -> String {
        if family == 2 { return "\(b[0]).\(b[1]).\(b[2]).\(b[3])" }
        guard family == 10 else { return "" }
        var groups: [UInt16] = []
        for i in 0..<8 { groups.append(UInt16(b[2 * i]) << 8 | UInt16(b[2 * i + 1])) }
        if groups[0...4].allSatisfy({ $0 == 0 }) && groups[5] == 0xffff {
            return "::ffff:\(b[12]).\(b[13]).\(b[14]).\(b[15])"
        }
        // Longest run of zero groups (length >= 2) becomes "::".
        var bestStart = -1, bestLen = 0, i = 0
        while i < 8 {
            if groups[i] == 0 {
                var j = i
                while j < 8 && groups[j] == 0 { j += 1 }
                if j - i > bestLen && j - i >= 2 { bestStart = i; bestLen = j - i }
                i = j
            } else { i += 1 }
        }
        func hex(_ r: ArraySlice<UInt16>) -> String { r.map { String($0, radix: 16) }.joined(separator: ":") }
        if bestStart < 0 { return hex(groups[...]) }
        return hex(groups[0..<bestStart]) + "::" + hex(groups[(bestStart + bestLen)...])
    }
}

