// mdatp-edr: the first consumer. Runs as mdatp, no capabilities, no network,
// Landlock limited to its store; keeps a bounded process table and writes
// every event to a local SQLite store the CLI queries through the watchdog.
// Executables to hash are opened by the watchdog on request, as the scanner's files.
import MdatpConfig

extension Rooms {
    public static let edr = RoomManifest(
    name: "edr",
    executable: "mdatp-edr",
    title: "mdatp-edr [sandbox]",
    startsAs: .root,
    runsAs: .mdatp,
    capabilities: [],
    setupCapabilities: [],
    // getdents64: the rule directories are listed inside the sandbox; a thread
    // hashes executables (files the watchdog opens for it on the request channel).
    syscalls: baseSyscalls + sqliteSyscalls + clientReplySyscalls + threadSyscalls + ["getdents64"],
    // Account names for events and rules, the cgroup tree for container identity;
    // the rule directories come as arguments.
    readOnlyPaths: { _ in ["/dev/urandom", "/etc/passwd", "/etc/group", "/sys/fs/cgroup"] },
    readWritePaths: { p in [p.edrDir] },
    descriptors: consumerDescriptors + [
        FixedDescriptor(RoomFD.requests, "request channel: executables opened by the watchdog, to hash"),
    ],
    peers: ["watchdog", "collector (through the ring)", "CLI clients (sockets passed by the watchdog)"],
    sends: [.ready, .heartbeat, .openForScan],
    receives: [.shutdown, .selftestForbidden, .query, .openResult],
    heartbeatCounters: [
        "events_received", "events_stored", "events_lost", "decode_errors", "store_errors",
        "process_table_size", "process_table_evictions", "store_rows", "store_bytes", "queries_served",
        "queries_refused", "sigma_rules_loaded", "sigma_rules_refused", "alerts_raised", "sigma_hits", "behaviour_hits",
        "detection_state_entries", "hashes_computed", "hash_failures", "hash_queue_drops", "hash_cache_size",
    ],
    niceness: 10,
    eventClasses: 0b1111,
    readOnlyArguments: ["shipped-rules", "rules"]
)
}
