// The collector's life: open what it needs -> load/attach BPF -> fill maps ->
// demote and sandbox -> ready -> copy records until told to stop.
import CCollectorBPF
import CMdatpABI
import Glibc
import MdatpConfig
import MdatpRing
import MdatpRoom
import MdatpSystem
import MdatpWire

/// Which kernel records a consumer wants (by event class), from `--consumer name:classes`.
struct ConsumerRing {
    let name: String
    let producer: RingProducer
    let classMask: UInt32   // bit per mdatp_event_class
}

final class CollectorLoop {
    let bpf: OpaquePointer
    let bss: mdatp_bss_view
    var consumers: [ConsumerRing] = []
    var received: UInt64 = 0
    var copied: UInt64 = 0
    var droppedDownstream: UInt64 = 0

    init(bpf: OpaquePointer) {
        self.bpf = bpf
        bss = mdatp_bpf_bss(bpf)
    }

    /// The hot path: one kernel record -> every consumer ring that wants it.
    /// No parsing beyond the type field, no allocation.
    @inline(__always)
    func copy(_ data: UnsafeRawPointer, _ size: Int) {
        received &+= 1
        guard size >= 4 else { return }
        let type = data.loadUnaligned(as: UInt16.self)
        let cls: UInt32 = type < 10 ? 0 : type < 20 ? 1 : type < 30 ? 2 : 3
        let record = UnsafeRawBufferPointer(start: data, count: size)
        for c in consumers where c.classMask & (1 << cls) != 0 {
            if c.producer.push(record) { copied &+= 1 } else { droppedDownstream &+= 1 }
        }
    }

    func flush() {
        for c in consumers { c.producer.flushWakeup() }
    }

    var denyEntries: UInt64 = 0

    func heartbeat() -> Heartbeat {
        let k = bss.counters!.pointee
        return Heartbeat([
            k.ring_seq.0, k.ring_seq.1,
            k.class_emitted.0, k.class_emitted.1, k.class_emitted.2, k.class_emitted.3,
            k.class_dropped.0, k.class_dropped.1, k.class_dropped.2, k.class_dropped.3,
            k.filtered_suite, k.filtered_excluded,
            copied, droppedDownstream, received,
            k.exec_blocked, k.deny_corrupt, denyEntries,
        ])
    }
}

private let onRecord: mdatp_record_fn = { ctx, data, size, _ in
    let loop = Unmanaged<CollectorLoop>.fromOpaque(ctx!).takeUnretainedValue()
    loop.copy(data!, size)
    return 0
}

public enum CollectorRoom {
    static let name = "collector"

    public static func main() -> Never {
        let room = RoomStart.begin(manifest)
        let (args, paths, control, account) = (room.args, room.paths, room.control, room.account)

        // 1-2. tracefs, then BPF: open (programs this kernel lacks a hook for are left
        // out; trampolines where the kernel runs them), load.
        let probes: LoadedProbes
        do throws(BPFLoadError) {
            try BPFLoader.mountTracefs()
            probes = try BPFLoader.load(processRingBytes: args.int("process-ring-bytes", 4 << 20),
                                        activityRingBytes: args.int("activity-ring-bytes", 16 << 20),
                                        trampolines: args.string("hooks") != "tracepoint")
        } catch {
            roomFail(name, error.description, code: RoomExit.transient)
        }
        let bpf = probes.handle
        let loop = CollectorLoop(bpf: bpf)

        // 3. The suite's own processes: this one, the watchdog, and rooms already running.
        let me = UInt32(Sys.getpid())
        let watchdog = UInt32(getppid())
        var suite: Set<UInt32> = [me, watchdog]
        for pid in childrenOf(watchdog) { suite.insert(pid) }
        for pid in suite { _ = mdatp_bpf_suite_add(bpf, pid) }

        // 4. Global exclusions, resolved to identities now, applied in the kernel.
        for exe in args.all("exclude-process") {
            guard let st = try? Sys.stat(exe) else {
                roomLog(name, "excluded process \(exe) does not exist; ignored")
                continue
            }
            _ = mdatp_bpf_exclude_exe(bpf, Sys.kernelDev(UInt64(st.st_dev)), UInt64(st.st_ino))
        }
        for prefix in args.all("exclude-path") {
            let bytes = Array(prefix.utf8)
            if mdatp_bpf_exclude_prefix(bpf, bytes, bytes.count) != 0 { roomLog(name, "path exclusion \(prefix) refused") }
        }

        do throws(BPFLoadError) { try probes.attach(calibrationDir: paths.runDir) } catch {
            roomFail(name, error.description, code: RoomExit.transient)
        }
        roomLog(name, "hooks: \(probes.hookFamily)" + (probes.hookReason.isEmpty ? "" : " (\(probes.hookReason))"))
        let deny = DenyTable(slots: loop.bss.deny_table!)
        if args.flag("exec-blocking") { loop.bss.exec_blocking!.pointee = 1 }
        var watched = WatchedFiles(slots: loop.bss.watched_files!)
        watched.refresh()

        // 5. Consumer rings, inherited at fixed descriptors.
        for (i, spec) in args.all("consumer").enumerated() {
            let parts = spec.split(separator: ":")
            let fds = RoomFD.producerRing(i)
            do throws(Errno) {
                let p = try RingFiles.mapProducer(data: fds.data, cursor: fds.cursor, wake: fds.wake)
                let mask = parts.count > 1 ? UInt32(parts[1]) ?? 0xf : 0xf
                loop.consumers.append(ConsumerRing(name: String(parts[0]), producer: p, classMask: mask))
            } catch {
                roomFail(name, "consumer ring \(spec): \(error)", code: RoomExit.transient)
            }
        }
        if mdatp_bpf_rings_open(bpf, onRecord, Unmanaged.passUnretained(loop).toOpaque()) != 0 {
            roomFail(name, "cannot open the kernel rings", code: RoomExit.transient)
        }

        // 6. Demote and sandbox, then ready.
        do throws(Errno) {
            _ = try RoomSandbox.enter(manifest, account: account, paths: paths, seccompLogOnly: args.flag("seccomp-log"))
            room.ready()
            try control.send(.collectorInfo(CollectorInfo(
                hookFamily: probes.hookFamily, programsAttached: UInt32(probes.attached),
                createdFlagCalibrated: probes.createdFlagCalibrated, skipped: probes.skipped)))
        } catch {
            roomFail(name, "sandbox: \(error)", code: RoomExit.transient)
        }

        // 7. Copy until told to stop.
        var clock = HeartbeatClock(interval: args.double("heartbeat", 2))
        // The programs wake us only on a backlog; otherwise every few
        // milliseconds we take what accumulated (bounded latency, few wakeups):
        // 2 ms keeps exec -> alert well under 5 ms at the 99th percentile.
        let pollMs = Int32(args.int("poll-ms", 2))
        while true {
            let n = mdatp_bpf_rings_poll(bpf, pollMs)
            if n < 0 && n != -EINTR { roomFail(name, "kernel ring poll failed: \(n)", code: RoomExit.transient) }
            _ = mdatp_bpf_rings_consume(bpf)
            loop.flush()
            if clock.due() {
                try? control.send(.heartbeat(loop.heartbeat()))
                watched.refresh()
            }
            // Every control message waiting (deny-list replays come in thousands), bounded per turn.
            for _ in 0..<512 {
                guard let ready = try? Sys.pollReadable([control.fd], timeoutMs: 0), ready[0] else { break }
                switch room.nextControlMessage(manifest) {
                case (.shutdown, _):
                    // Drain what the kernel holds, then go.
                    _ = mdatp_bpf_rings_consume(bpf)
                    loop.flush()
                    try? control.send(.heartbeat(loop.heartbeat()))
                    exit(RoomExit.ok)
                case (.execBlocking(let on), _):
                    loop.bss.exec_blocking!.pointee = on ? 1 : 0
                    roomLog(name, "kernel exec blocking \(on ? "on" : "off")")
                case (.denyUpdate(let f), _):
                    switch deny.insert(dev: Sys.kernelDev(f.dev), ino: f.ino, generation: f.generation) {
                    case .added: loop.denyEntries &+= 1
                    case .present: break
                    case .full: roomLog(name, "deny table: no free slot for \(f.dev):\(f.ino)")
                    }
                case (.denyRemove(let f), _):
                    if deny.remove(dev: Sys.kernelDev(f.dev), ino: f.ino) { loop.denyEntries &-= 1 }
                case (let m, let fd):
                    if fd >= 0 { Sys.close(fd) }
                    roomFail(name, "\(m.type) is in the manifest but not handled", code: 1)
                }
            }
        }
    }

    /// The rooms the watchdog runs now (for restarts of the collector).
    static func childrenOf(_ ppid: UInt32) -> [UInt32] {
        guard let dir = opendir("/proc") else { return [] }
        defer { closedir(dir) }
        var out: [UInt32] = []
        while let e = readdir(dir) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            guard let pid = UInt32(name), let st = try? ProcessStatus.read(pid: pid_t(pid)) else { continue }
            if st.ppid == Int32(ppid) { out.append(pid) }
        }
        return out
    }

    /// Learns FMODE_CREATED from this kernel: open a file that is created, then
    /// the same file again; the bit that differs is the flag.
    static func calibrateCreatedFlag(_ bss: mdatp_bss_view, dir: String) -> Bool {
        let path = dir + "/.calibrate-\(Sys.getpid())"
        try? Sys.unlinkIfPresent(path)
        bss.calib_count!.pointee = 0
        bss.calib_tgid!.pointee = UInt32(Sys.getpid())
        defer {
            bss.calib_tgid!.pointee = 0
            try? Sys.unlinkIfPresent(path)
        }
        guard let a = try? Sys.open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600) else { return false }
        Sys.close(a)
        guard let b = try? Sys.open(path, O_WRONLY | O_CREAT | O_NOFOLLOW, 0o600) else { return false }
        Sys.close(b)
        guard bss.calib_count!.pointee == 2 else { return false }
        let created = bss.calib_fmode![0], existing = bss.calib_fmode![1]
        let diff = created & ~existing
        guard diff != 0 && diff & (diff - 1) == 0 else { return false }
        bss.fmode_created_mask!.pointee = diff
        return true
    }
}
