// mdatp-scanner: the antivirus room. Runs as mdatp, no capabilities, no
// network, Landlock limited to its own state; every file it scans is opened
// by the watchdog on request (request channel, fd 7) and handed over, so the
// room itself can open nothing outside its directory. On-demand scans run on
// maximumOnDemandScanThreads worker threads (threads only: no process).
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
        syscalls: baseSyscalls + sqliteSyscalls + clientReplySyscalls + threadSyscalls + [
            // directory listings of descriptors the watchdog opened
            "getdents64", "dup",
            // the inode generation of a file to deny at exec (that ioctl only)
            "ioctl(FS_IOC_GETVERSION)",
            // the compiled-database cache: files replaced by rename relative to its directory
            "renameat",
        ],
        readOnlyPaths: { p in ["/dev/urandom", p.definitionsDir] },
        readWritePaths: { p in [p.scannerDir] },
        descriptors: consumerDescriptors + [
            FixedDescriptor(RoomFD.requests, "request channel: files opened by the watchdog"),
            FixedDescriptor(RoomFD.execGate, "exec gate channel: the watchdog's fanotify exec events, answered by a thread (real_time enforcement with exec blocking only)"),
        ],
        peers: ["watchdog", "collector (through the ring)", "CLI clients (sockets passed by the watchdog)"],
        sends: [.ready, .heartbeat, .openForScan, .quarantine, .denyExecutable, .definitionsResult, .execVerdict],
        receives: [.shutdown, .selftestForbidden, .query, .openResult, .quarantineResult, .denyResult, .loadDefinitions, .importDefinitions,
                   .execCheck],
        heartbeatCounters: [
            "events_received", "files_scanned", "cache_hits", "threats_found", "scan_errors", "events_lost",
            "opens_refused", "queue_overflows", "signatures_loaded", "queries_served",
            "definitions_version", "definitions_created_unix", "excluded", "exec_gate_allowed", "exec_gate_denied",
            "exec_gate_unscanned",
        ],
        niceness: 10,
        // process (exec) and file (close-after-write) events
        eventClasses: 0b0011,
        // The package shipped with the product (re-read when an imported source joins it).
        readOnlyArguments: ["fallback-definitions"]
    )
}
