// mdatp-collector: the only room that touches BPF. Starts as root, loads and
// attaches the programs, fills the filter maps, then becomes the mdatp user
// with no capabilities at all and a seccomp filter, and only copies kernel
// records into the consumer rings.
import MdatpConfig

extension Rooms {
    public static let collector = RoomManifest(
    name: "collector",
    executable: "mdatp-collector",
    title: "mdatp-collector [priv]",
    startsAs: .root,
    runsAs: .mdatp,
    capabilities: [],
    // Setup only, as root: mount tracefs if absent, bpf() load, perf_event_open
    // for tracepoints (CAP_SYS_ADMIN/CAP_BPF/CAP_PERFMON), raise RLIMIT_MEMLOCK.
    setupCapabilities: [.sysAdmin, .bpf, .perfmon, .sysResource],
    syscalls: baseSyscalls + ["epoll_wait", "epoll_pwait", "epoll_pwait2"],
    readOnlyPaths: { _ in [] },
    readWritePaths: { _ in [] },
    descriptors: [
        FixedDescriptor(RoomFD.control, "control channel to the watchdog"),
        FixedDescriptor(4, "consumer ring 0: data memfd (read-write), then cursor memfd, then eventfd; ring i at 4+3i"),
    ],
    peers: ["watchdog", "every consumer room (through its ring)"],
    sends: [.ready, .heartbeat, .collectorInfo],
    receives: [.shutdown, .selftestForbidden, .denyUpdate, .denyRemove, .execBlocking],
    heartbeatCounters: [
        "kernel_process_ring_seq", "kernel_activity_ring_seq",
        "kernel_emitted_process", "kernel_emitted_file", "kernel_emitted_network", "kernel_emitted_sensitive",
        "kernel_dropped_process", "kernel_dropped_file", "kernel_dropped_network", "kernel_dropped_sensitive",
        "kernel_filtered_suite", "kernel_filtered_excluded",
        "records_copied", "records_dropped_in_consumer_rings", "records_received",
        "exec_blocked", "deny_table_corrupt", "deny_table_entries",
    ]
)
}
