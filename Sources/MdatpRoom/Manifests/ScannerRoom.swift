// mdatp-scanner: the antivirus room. Runs as mdatp, no capabilities, no
// network, Landlock limited to its own state; every file it scans is opened
// by the watchdog on request (request channel, fd 7) and handed over, so the
// room itself can open nothing outside its directory.
import MdatpConfig

extension Rooms {
    public static let scanner = RoomManifest(
        name: "scanner",
        executable: "mdatp-scanner",
        title: "mdatp-scanner [sandbox]",
        startsAs: .root,
        runsAs: .mdatp,
        capabilities: [],
        setupCapabilities: [],
        syscalls: baseSyscalls + [
            // SQLite (threat history) in WAL mode on its own directory
            "openat", "pread64", "pwrite64", "fsync", "fdatasync", "ftruncate", "unlink", "unlinkat", "rename",
            "getcwd", "access", "faccessat", "faccessat2", "readlink", "fchown", "fchmod", "mkdir", "stat", "lstat",
            "flock", "uname",
            // directory listings of descriptors the watchdog opened
            "getdents64", "dup",
            // answering the CLI on the socket it is handed
            "shutdown", "getsockopt", "setsockopt", "sendto", "recvfrom", "writev",
        ],
        readOnlyPaths: { p in ["/dev/urandom", p.definitionsDir] },
        readWritePaths: { p in [p.scannerDir] },
        descriptors: [
            FixedDescriptor(RoomFD.control, "control channel to the watchdog"),
            FixedDescriptor(RoomFD.ringData, "event ring data (read-only memfd)"),
            FixedDescriptor(RoomFD.ringCursor, "event ring cursor (read-write memfd)"),
            FixedDescriptor(RoomFD.ringWake, "event ring wakeup (eventfd)"),
            FixedDescriptor(RoomFD.requests, "request channel: files opened by the watchdog"),
        ],
        peers: ["watchdog", "collector (through the ring)", "CLI clients (sockets passed by the watchdog)"],
        sends: [.ready, .heartbeat, .openForScan, .quarantine, .denyExecutable, .definitionsResult],
        receives: [.shutdown, .selftestForbidden, .query, .openResult, .quarantineResult, .denyResult, .loadDefinitions],
        heartbeatCounters: [
            "events_received", "files_scanned", "cache_hits", "threats_found", "scan_errors", "events_lost",
            "opens_refused", "queue_overflows", "signatures_loaded", "queries_served",
            "definitions_version", "definitions_created_unix", "excluded",
        ],
        niceness: 10,
        // process (exec) and file (close-after-write) events
        eventClasses: 0b0011
    )
}
