// mdatp-edr: the first consumer. Runs as mdatp, no capabilities, no network,
// Landlock limited to its store; keeps a bounded process table and writes
// every event to a local SQLite store the CLI queries through the watchdog.
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
    syscalls: baseSyscalls + sqliteSyscalls + clientReplySyscalls,
    readOnlyPaths: { _ in ["/dev/urandom"] },
    readWritePaths: { p in [p.edrDir] },
    descriptors: consumerDescriptors,
    peers: ["watchdog", "collector (through the ring)", "CLI clients (sockets passed by the watchdog)"],
    sends: [.ready, .heartbeat],
    receives: [.shutdown, .selftestForbidden, .query],
    heartbeatCounters: [
        "events_received", "events_stored", "events_lost", "decode_errors", "store_errors",
        "process_table_size", "process_table_evictions", "store_rows", "store_bytes", "queries_served",
        "queries_refused",
    ],
    niceness: 10,
    eventClasses: 0b1111
)
}
