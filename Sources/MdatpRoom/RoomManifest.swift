// What a room is allowed to be: the manifest each room module opens with
// (Room.swift). The code installs it (RoomSandbox) and a test reads
// /proc/PID/status of the running room and compares.
import MdatpConfig
import MdatpWire

public enum RoomUser: String, Sendable, Equatable {
    case root
    case mdatp
}

/// Linux capability numbers the suite may name.
public enum Capability: Int32, Sendable, CaseIterable {
    case dacOverride = 1
    case dacReadSearch = 2
    case kill = 5
    case setpcap = 8
    case netAdmin = 12
    case sysPtrace = 19
    case sysAdmin = 21
    case sysResource = 24
    case perfmon = 38
    case bpf = 39
}

/// A descriptor a room inherits at a fixed number.
public struct FixedDescriptor: Sendable, Equatable {
    public let number: Int32
    public let role: String
    public init(_ number: Int32, _ role: String) {
        self.number = number
        self.role = role
    }
}

public struct RoomManifest: Sendable {
    public let name: String
    public let executable: String
    /// `ps` shows this title ("mdatp-collector [priv]").
    public let title: String
    /// Who the room starts as, and who it runs as once sandboxed.
    public let startsAs: RoomUser
    public let runsAs: RoomUser
    /// Capabilities held while serving (after the sandbox is in place).
    public let capabilities: [Capability]
    /// Capabilities used only during setup, before the sandbox (documented, then dropped).
    public let setupCapabilities: [Capability]
    /// seccomp allow-list (names as libseccomp knows them); everything else kills.
    public let syscalls: [String]
    /// Landlock: filesystem rights once sandboxed.
    public let readOnlyPaths: @Sendable (SuitePaths) -> [String]
    public let readWritePaths: @Sendable (SuitePaths) -> [String]
    /// Landlock: arguments whose values are directories the room may also read
    /// (the product's own files, wherever it is installed).
    public let readOnlyArguments: [String]
    public let descriptors: [FixedDescriptor]
    public let peers: [String]
    public let sends: [MessageType]
    public let receives: [MessageType]
    /// Names of the heartbeat counter slots, in order.
    public let heartbeatCounters: [String]
    /// Scheduling niceness: consumers yield the CPU to the machine's own work
    /// (their ring absorbs bursts, and a backlog shows as drops, not as latency).
    public let niceness: Int32
    /// Consumers: the event classes (bit per mdatp_event_class: process, file,
    /// network, sensitive) the collector copies into this room's ring; 0 for none.
    public let eventClasses: UInt32

    public init(name: String, executable: String, title: String, startsAs: RoomUser, runsAs: RoomUser,
                capabilities: [Capability], setupCapabilities: [Capability], syscalls: [String],
                readOnlyPaths: @escaping @Sendable (SuitePaths) -> [String], readWritePaths: @escaping @Sendable (SuitePaths) -> [String],
                descriptors: [FixedDescriptor], peers: [String], sends: [MessageType], receives: [MessageType],
                heartbeatCounters: [String], niceness: Int32 = 0, eventClasses: UInt32 = 0, readOnlyArguments: [String] = []) {
        self.name = name
        self.executable = executable
        self.title = title
        self.startsAs = startsAs
        self.runsAs = runsAs
        self.capabilities = capabilities
        self.setupCapabilities = setupCapabilities
        self.syscalls = syscalls
        self.readOnlyPaths = readOnlyPaths
        self.readWritePaths = readWritePaths
        self.readOnlyArguments = readOnlyArguments
        self.descriptors = descriptors
        self.peers = peers
        self.sends = sends
        self.receives = receives
        self.heartbeatCounters = heartbeatCounters
        self.niceness = niceness
        self.eventClasses = eventClasses
    }

    /// The capability mask /proc/PID/status must show as CapEff once serving.
    public var effectiveCapabilityMask: UInt64 {
        capabilities.reduce(0) { $0 | (1 << UInt64($1.rawValue)) }
    }
}

/// Fixed descriptor numbers shared by every room.
public enum RoomFD {
    public static let control: Int32 = 3
    /// Consumer rooms: their ring.
    public static let ringData: Int32 = 4
    public static let ringCursor: Int32 = 5
    public static let ringWake: Int32 = 6
    /// Rooms that ask the watchdog to open files for them: the request channel.
    public static let requests: Int32 = 7
    /// The scanner's fanotify exec gate, when real_time enforcement blocks execs.
    public static let execGate: Int32 = 8
    /// Collector: consumer ring i occupies 4+3i ... 6+3i.
    public static func producerRing(_ i: Int) -> (data: Int32, cursor: Int32, wake: Int32) {
        (Int32(4 + 3 * i), Int32(5 + 3 * i), Int32(6 + 3 * i))
    }
}

/// The syscalls every Swift room needs to live: memory, threads, time,
/// signals, exit, and its control channel.
public let baseSyscalls: [String] = [
    "read", "write", "close", "fstat", "newfstatat", "statx", "lseek", "mmap", "munmap", "mprotect", "mremap", "madvise", "brk",
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "futex", "sched_yield", "sched_getaffinity",
    "getpid", "gettid", "getuid", "geteuid", "getgid", "getegid", "getrandom",
    "clock_gettime", "clock_nanosleep", "nanosleep", "gettimeofday",
    "poll", "ppoll", "recvmsg", "sendmsg", "exit", "exit_group", "restart_syscall",
    "rseq", "set_robust_list", "prlimit64", "fcntl",
]

/// What a room needs to run worker threads, and only threads: clone with
/// CLONE_THREAD, clone3 answered ENOSYS (glibc then falls back to clone).
public let threadSyscalls: [String] = ["clone(threads)"]

/// What a room needs to keep a SQLite database (WAL mode) in its own directory.
public let sqliteSyscalls: [String] = [
    "openat", "pread64", "pwrite64", "fsync", "fdatasync", "ftruncate", "unlink", "unlinkat", "rename",
    "getcwd", "access", "faccessat", "faccessat2", "readlink", "fchown", "fchmod", "mkdir", "stat", "lstat",
    "flock", "uname",
]

/// What a room needs to answer a CLI client on the socket the watchdog hands it.
public let clientReplySyscalls: [String] = ["shutdown", "getsockopt", "setsockopt", "sendto", "recvfrom", "writev"]

/// The descriptors every consumer room inherits: control channel and its ring.
public let consumerDescriptors: [FixedDescriptor] = [
    FixedDescriptor(RoomFD.control, "control channel to the watchdog"),
    FixedDescriptor(RoomFD.ringData, "event ring data (read-only memfd)"),
    FixedDescriptor(RoomFD.ringCursor, "event ring cursor (read-write memfd)"),
    FixedDescriptor(RoomFD.ringWake, "event ring wakeup (eventfd)"),
]
