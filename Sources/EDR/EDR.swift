// The EDR room's life: map its ring -> demote and sandbox -> open the store
// -> ready -> read events in batches, enrich, store; answer queries.
import Glibc
import MdatpConfig
import MdatpEvents
import MdatpJSON
import MdatpRing
import MdatpRoom
import MdatpSystem
import MdatpWire
import Detection

public struct EDRCounters {
    var received: UInt64 = 0
    var stored: UInt64 = 0
    var decodeErrors: UInt64 = 0
    var storeErrors: UInt64 = 0
    var queries: UInt64 = 0
    var refused: UInt64 = 0
    var alerts: UInt64 = 0
}

/// Turns kernel events into store rows, keeping the process table current.
public struct Enricher {
    public var table: ProcessTable
    /// unix time = boot time + offset (re-measured now and then).
    public var bootToUnixNs: Int64
    /// cgroup id → container (nil: not looked up, as in benchmarks).
    var containers: CgroupMap?
    /// The container of the event last enriched (for detection's evidence).
    public private(set) var lastContainer: ContainerIdentity?
    /// The executable of the event last enriched's acting program, as the kernel
    /// reported it at exec (nil: not known), for its SHA-256.
    public private(set) var lastExecutable: ExecutableIdentity?

    public init(capacity: Int, bootToUnixNs: Int64) {
        table = ProcessTable(capacity: capacity)
        self.bootToUnixNs = bootToUnixNs
    }

    /// An executable modified less than this before it ran counts as written recently.
    public static let recentlyWrittenNs: Int64 = 300 * 1_000_000_000

    static let stdioNames = ["none", "file", "pipe", "socket", "char", "other", "?", "?", "?", "?", "?", "?", "?", "?", "?", "?"]

    public mutating func row(for ev: KernelEvent) -> StoredEvent {
        let h = ev.header
        var e = StoredEvent()
        e.timeNs = Int64(h.ktimeNs) &+ bootToUnixNs
        e.kernelSeq = Int64(h.seq)
        e.type = ev.kind.name
        e.pid = Int64(h.pid)
        e.tgid = Int64(h.tgid)
        e.uid = Int64(h.uid)
        e.euid = Int64(h.euid)
        e.comm = h.comm
        e.flags = Int64(h.flags)
        var d = JSONObjectWriter()
        lastExecutable = nil
        d.add("cgroup_id", h.cgroupId)
        lastContainer = containers?.container(h.cgroupId, now: Sys.monotonicSeconds())
        if let c = lastContainer {
            d.add("container_runtime", c.runtime)
            if !c.containerId.isEmpty { d.add("container_id", c.containerId) }
            if !c.podUid.isEmpty { d.add("pod_uid", c.podUid) }
        }
        switch ev.body {
        case .exec(let x):
            var record = ProcessRecord(tgid: h.tgid, ppid: x.ppid, uid: h.uid, exe: x.exe, argv: x.argv, cwd: x.cwd, startNs: x.startTimeNs)
            record.execNs = h.ktimeNs
            record.exeIdentity = ExecutableIdentity(dev: x.exeDev, ino: x.exeIno, mtimeSec: x.exeMtimeSec, mtimeNsec: x.exeMtimeNsec)
            lastExecutable = record.exeIdentity
            // An exec the LSM refused never replaced the caller's image.
            if h.flags & EventFlag.execRefused == 0 { table.exec(record) }
            e.ppid = Int64(x.ppid)
            e.exe = x.exe
            e.argv = x.argv
            e.argvText = record.argvText
            e.cwd = x.cwd
            e.mode = Int64(x.exeMode)
            d.add("gid", x.gid)
            d.add("egid", x.egid)
            d.add("login_uid", x.loginuid)
            d.add("session_id", x.sessionid)
            d.add("tty", x.tty)
            d.add("exe_dev", "\(x.exeDev >> 20):\(x.exeDev & 0xfffff)")
            d.add("exe_inode", x.exeIno)
            d.add("exe_mtime", x.exeMtimeSec)
            d.add("argc", x.argc)
            d.add("start_time_ns", Int64(x.startTimeNs) &+ bootToUnixNs)
            d.add("setuid_exec", h.flags & EventFlag.setuidExec != 0)
            // Where the program came from: gone from disk, memory only, or written just now.
            d.add("exe_deleted", h.flags & EventFlag.exeDeleted != 0)
            d.add("exe_memfd", x.exe.hasPrefix("/memfd:"))
            d.add("exe_on_tmpfs", h.flags & EventFlag.exeOnTmpfs != 0)
            let ageNs = e.timeNs &- (x.exeMtimeSec &* 1_000_000_000 &+ Int64(x.exeMtimeNsec))
            d.add("exe_written_recently", ageNs >= -1_000_000_000 && ageNs < Enricher.recentlyWrittenNs)
            d.add("stdin", Enricher.stdioNames[Int(x.stdioKind(0))])
            d.add("stdout", Enricher.stdioNames[Int(x.stdioKind(1))])
            d.add("stderr", Enricher.stdioNames[Int(x.stdioKind(2))])
            e.details = d.finish()
            parentColumns(&e)
            return e
        case .fork(let childPid, let childTgid, let start):
            table.fork(parent: h.tgid, child: childTgid, startNs: start, uid: h.uid)
            d.add("child_pid", childPid)
            d.add("child_tgid", childTgid)
        case .exit(let ppid, let code, _):
            e.ppid = Int64(ppid)
            if code & 0x7f != 0 { d.add("signal", code & 0x7f) } else { d.add("exit_code", (code >> 8) & 0xff) }
        case .file(let f):
            e.path = f.path
            e.path2 = f.path2
            e.mode = Int64(f.mode)
            e.ownerUid = f.ownerUid == .max ? -1 : Int64(f.ownerUid)
            e.ownerGid = f.ownerGid == .max ? -1 : Int64(f.ownerGid)
            if f.ino != 0 {
                d.add("inode", f.ino)
                d.add("dev", "\(f.dev >> 20):\(f.dev & 0xfffff)")
            }
        case .network(let n):
            e.proto = n.proto == 6 ? "tcp" : n.proto == 17 ? "udp" : "ip\(n.proto)"
            e.localAddress = n.localAddress
            e.localPort = Int64(n.localPort)
            e.remoteAddress = n.remoteAddress
            e.remotePort = Int64(n.remotePort)
            d.add("family", n.family == 10 ? "ipv6" : "ipv4")
            d.add("result", n.ret)
        case .sensitive(let s):
            d.add("result", s.ret)
            d.add("target_pid", s.targetPid)
            d.add("args", s.args)
            d.add("new_uid", s.newUid)
            d.add("new_euid", s.newEuid)
            d.add("new_gid", s.newGid)
            d.add("new_egid", s.newEgid)
            e.path = s.strings.first ?? ""
            if s.strings.count > 1 { e.path2 = s.strings[1] }
            if s.strings.count > 2 && !s.strings[2].isEmpty { d.add("fs_type", s.strings[2]) }
        }
        // The acting process, from the table.
        if let p = table.lookup(h.tgid) {
            if e.ppid == 0 { e.ppid = Int64(p.ppid) }
            if h.ktimeNs < p.execNs, let old = p.previous {
                e.exe = old.exe
                e.argv = old.argv
                e.argvText = old.argvText
                e.cwd = old.cwd
            } else {
                e.exe = p.exe
                e.argv = p.argv
                e.argvText = p.argvText
                e.cwd = p.cwd
                lastExecutable = p.exeIdentity
            }
        }
        if case .exit = ev.body {
            table.exit(h.tgid, atNs: h.ktimeNs)
            table.purgeExited(nowNs: h.ktimeNs)
        }
        e.details = d.finish()
        parentColumns(&e)
        return e
    }

    /// The parent's image and argv, for the hunting tables' InitiatingProcess* columns.
    mutating func parentColumns(_ e: inout StoredEvent) {
        guard e.ppid > 0, let p = table.lookup(UInt32(truncatingIfNeeded: e.ppid)) else { return }
        e.parentExe = p.exe
        e.parentArgvText = p.argvText
    }
}

public enum EDRRoom {
    static let name = "edr"
    static let batchSize = 2048

    public static func main() -> Never {
        let room = RoomStart.begin(manifest)
        let (args, paths, control) = (room.args, room.paths, room.control)
        // Read while still root (the files are the system's, not attacker input).
        let device = DeviceInfo.read()
        let seeded = ProcessSeed.read(limit: args.int("process-table-capacity", 32768))
        let cgroupRoot = CgroupMap.findRoot()
        let ring = room.mapRingAndSandbox(manifest)
        let store: EventStore
        let alerts: AlertStore
        do throws(StoreError) {
            store = try EventStore(path: paths.edrStore)
            alerts = try AlertStore(path: paths.edrDir + "/alerts.db", jsonlPath: paths.edrDir + "/alerts.jsonl")
        } catch {
            roomFail(name, "\(error)", code: RoomExit.transient)
        }
        // Rules: the shipped set, then the admin's; a refused file is listed, never fatal.
        let rules = RuleLoader.load(dirs: [args.string("shipped-rules"), args.string("rules")].compactMap { $0 })
        roomLog(name, "sigma: \(rules.rules.count) rules loaded, \(rules.refused.count) refused; \(BehaviourEngine.catalogue.count) built-in detections")
        for r in rules.refused.prefix(20) { roomLog(name, "sigma rule refused: \(r.file): \(r.reason)") }
        room.ready()

        let maxBytes = Int64(args.int("store-max-bytes", 256 << 20))
        let maxAgeNs = Int64(args.int("store-max-age-hours", 168)) * 3_600_000_000_000
        // Alerts outlive the events (an analyst comes back to them): 180 days, 100,000 at most.
        let alertMaxAgeNs: Int64 = 180 * 24 * 3_600_000_000_000
        let alertMaxCount = 100_000
        var enricher = Enricher(capacity: args.int("process-table-capacity", 32768), bootToUnixNs: bootOffset())
        for p in seeded { enricher.table.exec(p) }
        enricher.containers = CgroupMap(root: cgroupRoot)
        var pipeline = DetectionPipeline(rules: rules)
        pipeline.refreshNames(now: Sys.monotonicSeconds())
        let hasher = ExecutableHasher(requests: Channel(fd: RoomFD.requests))
        var hashFailuresLogged = 0 // the first few, with their reason; the rest are counted
        if !hasher.start() { roomFail(name, "cannot start the hashing thread", code: RoomExit.transient) }
        var hunt: HuntEngine?
        var counters = EDRCounters()
        var heartbeat = HeartbeatClock(interval: args.double("heartbeat", 2))
        var retention = HeartbeatClock(interval: 60)
        var batch: [StoredEvent] = []
        batch.reserveCapacity(batchSize)
        var draining = false

        // Rows are committed in batches: when 2048 are pending, or 20 ms after
        // the first of them arrived, so a transaction costs once per batch.
        // Alerts are written at once (rare, and their latency is what analysts see).
        let flushInterval = 0.02
        var pendingSince: Double?
        while true {
            ring.poll(max: batchSize - batch.count) { _, payload in
                counters.received &+= 1
                do throws(DecodeError) {
                    let ev = try EventDecoder.decode(payload)
                    var row = enricher.row(for: ev)
                    row.account = pipeline.userName(UInt32(truncatingIfNeeded: row.uid))
                    // Every row carries its acting program's digest (for an exec: the new image's;
                    // InitiatingProcessSHA256 for the others); a new executable is queued for hashing.
                    if let id = enricher.lastExecutable {
                        if let known = pipeline.hashes.lookup(id) {
                            row.sha256 = known // "" when it could not be hashed: stored as NULL
                        } else if case .exec(let x) = ev.body, ev.header.flags & (EventFlag.exeDeleted | EventFlag.execRefused) == 0, x.exe.hasPrefix("/") {
                            hasher.request(id, path: x.exe, sinceNs: row.timeNs)
                        }
                    }
                    for c in pipeline.run(ev, row: row, table: &enricher.table, container: enricher.lastContainer) {
                        do throws(StoreError) {
                            if case .new(let a) = try alerts.record(c, nowNs: Int64(Sys.clockNs(CLOCK_REALTIME))) {
                                counters.alerts &+= 1
                                roomLog(name, "alert \(a.alertId) [\(a.severity)] \(a.title) (\(a.source))")
                            }
                        } catch {
                            counters.storeErrors &+= 1
                            roomLog(name, "\(error)")
                        }
                    }
                    batch.append(row)
                } catch {
                    counters.decodeErrors &+= 1
                }
            }
            ring.accountTrailingDrops()
            // Digests the hashing thread finished: cached, and filled into the rows
            // of their executions (pending here, or already stored).
            for done in hasher.takeDone() {
                pipeline.hashes.insert(done.job.id, path: done.job.path, sha256: done.sha256)
                guard let sha = done.sha256 else {
                    if hashFailuresLogged < 20 {
                        hashFailuresLogged += 1
                        roomLog(name, "no SHA-256 for \(done.job.path): \(done.reason)")
                    }
                    continue
                }
                for i in batch.indices where batch[i].exe == done.job.path && batch[i].sha256.isEmpty {
                    batch[i].sha256 = sha
                }
                do throws(StoreError) { try store.setExecutableHash(path: done.job.path, sinceNs: done.job.sinceNs, sha256: sha) } catch {
                    counters.storeErrors &+= 1
                }
            }
            let now = Sys.monotonicSeconds()
            if !batch.isEmpty && pendingSince == nil { pendingSince = now }
            if batch.count >= batchSize || draining || (pendingSince.map { now - $0 >= flushInterval } ?? false) {
                flush(&batch, store, &counters)
                pendingSince = nil
            }
            if draining && !ring.isEmpty { continue }
            if draining { sendHeartbeat(control, ring, store, enricher, counters, pipeline, hasher); exit(RoomExit.ok) }
            if heartbeat.due() {
                enricher.bootToUnixNs = bootOffset()
                pipeline.refreshNames(now: now)
                sendHeartbeat(control, ring, store, enricher, counters, pipeline, hasher)
            }
            if retention.due() {
                let now = Int64(Sys.clockNs(CLOCK_REALTIME))
                do throws(StoreError) {
                    try store.enforceRetention(nowNs: now, maxAgeNs: maxAgeNs, maxBytes: maxBytes)
                    try alerts.enforceRetention(nowNs: now, maxAgeNs: alertMaxAgeNs, maxAlerts: alertMaxCount)
                } catch {
                    counters.storeErrors &+= 1
                    roomLog(name, "\(error)")
                }
            }
            let timeout = pendingSince.map { Int32(max(1, (flushInterval - (Sys.monotonicSeconds() - $0)) * 1000)) } ?? 200
            // Under a flood the ring is never empty: the control channel is still checked.
            // With rows pending, it still wakes for new events (detection should not wait for
            // the commit; the collector hands over at most every few milliseconds anyway).
            let controlReady: Bool
            if !ring.isEmpty {
                controlReady = (try? Sys.pollReadable([control.fd], timeoutMs: 0))?.first == true
            } else {
                controlReady = ring.wait(timeoutMs: timeout, extraFds: [control.fd]).first == true
            }
            guard controlReady else { continue }
            switch room.nextControlMessage(manifest) {
            case (.shutdown, _):
                draining = true
            case (.query(let uid, _, let request), let fd):
                // What is stored so far is visible to the query.
                flush(&batch, store, &counters)
                pendingSince = nil
                if hunt == nil {
                    do throws(HuntError) { hunt = try HuntEngine(events: paths.edrStore, alerts: paths.edrDir + "/alerts.db", device: device) } catch {
                        roomLog(name, "hunting: \(error)")
                    }
                }
                QueryServer.answer(fd: fd, uid: uid, request: request,
                                   context: QueryContext(store: store, alerts: alerts, rules: rules, hunt: hunt), counters: &counters)
                Sys.close(fd)
            case (let m, let fd):
                if fd >= 0 { Sys.close(fd) }
                roomFail(name, "\(m.type) is in the manifest but not handled", code: 1)
            }
        }
    }

    static func flush(_ batch: inout [StoredEvent], _ store: EventStore, _ counters: inout EDRCounters) {
        guard !batch.isEmpty else { return }
        do throws(StoreError) {
            try store.append(batch)
            counters.stored &+= UInt64(batch.count)
        } catch {
            counters.storeErrors &+= 1
            roomLog(name, "\(error)")
        }
        batch.removeAll(keepingCapacity: true)
    }

    static func bootOffset() -> Int64 {
        Int64(Sys.clockNs(CLOCK_REALTIME)) - Int64(Sys.clockNs(CLOCK_BOOTTIME))
    }

    static func sendHeartbeat(_ control: Channel, _ ring: RingConsumer, _ store: EventStore, _ e: Enricher, _ c: EDRCounters, _ p: DetectionPipeline,
                              _ h: ExecutableHasher) {
        let bytes = (try? store.sizeBytes()) ?? 0
        let hc = h.counters
        try? control.send(.heartbeat(Heartbeat([
            c.received, c.stored, ring.lostRecords, c.decodeErrors, c.storeErrors,
            UInt64(e.table.count), e.table.evictions, UInt64(store.rows), UInt64(bytes), c.queries, c.refused,
            UInt64(p.rules.rules.count), UInt64(p.rules.refused.count), c.alerts, p.counters.sigmaHits, p.counters.behaviourHits,
            UInt64(p.behaviours.stateEntries), hc.hashed, hc.failed, hc.dropped, UInt64(p.hashes.count),
        ])))
    }
}
