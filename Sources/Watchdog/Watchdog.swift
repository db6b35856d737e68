// mdatp-watchdog: root, small, in the foreground. Reads the config, makes
// every channel and ring, starts the rooms with their descriptors at fixed
// numbers, supervises them through the Supervisor table, writes the status
// file, and answers the CLI socket (forwarding event queries, with the
// client's socket, to the EDR room: the watchdog never decodes event content).
import Glibc
import MdatpConfig
import MdatpJSON
import MdatpRing
import MdatpRoom
import MdatpSystem
import MdatpWire

public let mdatpVersion = "101.26112.0001"

final class RoomSlot {
    let manifest: RoomManifest
    var supervision = Supervision()
    var channel: Channel?
    /// Rooms that may ask for files (openForScan): their request channel.
    var requests: Channel?
    var startedAt: Double = 0
    var lastHeartbeatAt: Double = 0
    var heartbeat: Heartbeat?
    var collectorInfo: CollectorInfo?
    /// Consumer rooms: their ring.
    var ring: ConsumerRingSlot?
    /// The scanner's exec gate channel (the watchdog's end).
    var gateChannel: Channel?
    /// Control messages the channel could not take yet (see Watchdog.post).
    var outbox: [Message] = []

    init(manifest: RoomManifest) { self.manifest = manifest }
}

final class ConsumerRingSlot {
    let consumer: String
    let descriptors: RingDescriptors
    let header: UnsafeRawPointer
    let cursor: UnsafeRawPointer

    init(consumer: String, capacity: Int) throws(Errno) {
        self.consumer = consumer
        descriptors = try RingFiles.create(name: consumer, capacity: capacity)
        (header, cursor) = try RingFiles.mapObserver(data: descriptors.data, cursor: descriptors.cursor)
    }

    var counters: RingCounters { RingView.counters(header: header, cursor: cursor) }
}

public final class Watchdog {
    let paths: SuitePaths
    var config: SuiteConfig
    let account: Account
    let binDir: String
    var supervisor: Supervisor
    var rooms: [RoomSlot] = []
    var listener: Int32 = -1
    let signals: Int32
    let startedAt = Sys.monotonicSeconds()
    var lastStatusAt: Double = 0
    var configError: String?
    var shuttingDown = false
    let quarantine: QuarantineStore
    var pendingUpdate: PendingUpdate?
    var denyList = DenyList()
    var nextScheduledScan: ScheduledRun?
    var execGateState = "off"
    var execGate: ExecGateBroker?

    init(paths: SuitePaths, config: SuiteConfig, account: Account, binDir: String, signals: Int32) {
        self.signals = signals
        self.paths = paths
        self.config = config
        self.account = account
        self.binDir = binDir
        supervisor = Supervisor(policy: config.sensor.restart)
        quarantine = QuarantineStore(dir: paths.quarantineDir)
    }

    func log(_ s: String) { roomLog("watchdog", s) }

    // MARK: setup

    func prepare() throws(Errno) {
        try Sys.mkdirs(paths.stateDir, 0o755)
        try Sys.mkdirExisting(paths.runDir, 0o755)
        try Sys.chmod(paths.runDir, 0o755)
        // The EDR store belongs to the mdatp user; only it and root read it.
        try Sys.mkdirExisting(paths.edrDir, 0o750)
        try Sys.lchown(paths.edrDir, account.uid, account.gid)
        try Sys.chmod(paths.edrDir, 0o750)
        // Where the admin drops Sigma rules (root's; the EDR reads it).
        if !Sys.exists(paths.configDir + "/rules") { try Sys.mkdirs(paths.configDir + "/rules", 0o755) }
        try quarantine.prepare()
        try prepareDefinitions()
        loadDenyList()
        for dir in [paths.scannerDir] {
            try Sys.mkdirExisting(dir, 0o750)
            try Sys.lchown(dir, account.uid, account.gid)
            try Sys.chmod(dir, 0o750)
        }
        for m in Rooms.all {
            let slot = RoomSlot(manifest: m)
            if Rooms.consumers.contains(where: { $0.name == m.name }) {
                slot.ring = try ConsumerRingSlot(consumer: m.name, capacity: config.sensor.consumerRingBytes)
            }
            rooms.append(slot)
        }
        // Anyone may connect; what they may ask is decided per request by SO_PEERCRED.
        listener = try Sys.listenUnix(paths.socket, mode: 0o666)
    }

    var collector: RoomSlot { rooms[0] }

    // MARK: spawning

    func arguments(for slot: RoomSlot) -> [String] {
        let s = config.sensor
        var argv = [slot.manifest.title, "--prefix", paths.prefix.isEmpty ? "/" : paths.prefix, "--heartbeat", "\(s.heartbeatSeconds)"]
        if s.seccompLogOnly { argv.append("--seccomp-log") }
        switch slot.manifest.name {
        case "collector":
            argv += ["--process-ring-bytes", "\(s.processRingBytes)", "--activity-ring-bytes", "\(s.activityRingBytes)",
                     "--hooks", s.hookFamily]
            if config.execBlockingActive { argv.append("--exec-blocking") }
            for r in rooms where r.ring != nil { argv += ["--consumer", "\(r.manifest.name):\(r.manifest.eventClasses)"] }
            for e in config.globalExclusions {
                switch e {
                case .path(let p, let isDir, _):
                    argv += ["--exclude-path", isDir && !p.hasSuffix("/") ? p + "/" : p]
                case .process(let p, _):
                    argv += ["--exclude-process", p]
                case .fileExtension:
                    break // refused for global scope by the config loader
                }
            }
        case "edr":
            argv += ["--store-max-bytes", "\(s.storeMaxBytes)", "--store-max-age-hours", "\(s.storeMaxAgeHours)",
                     "--process-table-capacity", "\(s.processTableCapacity)"]
            // Sigma rules: the shipped set and the admin's (each only if present: Landlock needs the path).
            if Sys.exists(binDir + "/rules") { argv += ["--shipped-rules", binDir + "/rules"] }
            if Sys.exists(paths.configDir + "/rules") { argv += ["--rules", paths.configDir + "/rules"] }
        case "scanner":
            argv += ["--definitions", activeDefinitions, "--fallback-definitions", shippedDefinitions, "--trusted-keys", trustedKeysDir,
                     "--extra-definitions", paths.definitionsExtraDir]
            // Defender's enforcement levels: only real_time scans what is written and executed.
            if config.enforcementLevel == "real_time" { argv += ["--real-time", "--remediate"] }
            for (type, action) in config.threatTypeSettings.sorted(by: { $0.key < $1.key }) { argv += ["--policy", "\(type)=\(action)"] }
            for name in config.allowedThreats { argv += ["--allowed", name] }
            if !config.scanArchives { argv.append("--no-archives") }
            argv += ["--scan-threads", "\(config.maximumOnDemandScanThreads)"]
            for e in config.exclusions where e.scopes.contains(.epp) {
                switch e {
                case .path(let p, let isDir, _): argv += ["--exclude-path", isDir && !p.hasSuffix("/") && !p.hasSuffix("*") ? p + "/" : p]
                case .fileExtension(let ext, _): argv += ["--exclude-ext", ext]
                case .process(let name, _): argv += ["--exclude-process", name]
                }
            }
        default:
            break
        }
        return argv
    }

    func descriptors(for slot: RoomSlot, controlEnd: Int32, requestsEnd: Int32?, execGate: Int32? = nil) -> [(Int32, Int32)] {
        var fds: [(Int32, Int32)] = [(controlEnd, RoomFD.control)]
        if let r = requestsEnd { fds.append((r, RoomFD.requests)) }
        if let g = execGate { fds.append((g, RoomFD.execGate)) }
        if slot.manifest.name == "collector" {
            var i = 0
            for r in rooms {
                guard let ring = r.ring else { continue }
                let t = RoomFD.producerRing(i)
                fds += [(ring.descriptors.data, t.data), (ring.descriptors.cursor, t.cursor), (ring.descriptors.wake, t.wake)]
                i += 1
            }
        } else if let ring = slot.ring {
            fds += [(ring.descriptors.dataReadOnly, RoomFD.ringData), (ring.descriptors.cursor, RoomFD.ringCursor),
                    (ring.descriptors.wake, RoomFD.ringWake)]
        }
        return fds
    }

    func spawn(_ slot: RoomSlot) {
        let now = Sys.monotonicSeconds()
        do throws(Errno) {
            let (mine, theirs) = try Sys.seqpacketPair()
            var requestPair: (Int32, Int32)?
            if slot.manifest.sends.contains(.openForScan) { requestPair = try Sys.seqpacketPair() }
            var gatePair: (Int32, Int32)?
            if execGate != nil && slot.manifest.descriptors.contains(where: { $0.number == RoomFD.execGate }) { gatePair = try Sys.seqpacketPair() }
            defer { if let (_, theirs) = gatePair { Sys.close(theirs) } }
            let gate = gatePair?.1
            let exe = binDir + "/" + slot.manifest.executable
            let pid = try Sys.spawn(exe, argv: arguments(for: slot), env: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"],
                                    fds: descriptors(for: slot, controlEnd: theirs, requestsEnd: requestPair?.1, execGate: gate))
            Sys.close(theirs)
            slot.channel.map { Sys.close($0.fd) }
            // Non-blocking: a descriptor number reused within one turn of the loop (a
            // room's channel closed and a new room's made) must not turn a stale
            // "readable" into a receive that waits forever.
            Sys.setNonBlocking(mine)
            slot.channel = Channel(fd: mine)
            slot.outbox.removeAll()
            slot.requests.map { Sys.close($0.fd) }
            slot.requests = nil
            if let (ours, room) = requestPair {
                Sys.close(room)
                Sys.setNonBlocking(ours)
                slot.requests = Channel(fd: ours)
            }
            slot.gateChannel.map { Sys.close($0.fd) }
            slot.gateChannel = gatePair.map { Sys.setNonBlocking($0.0); return Channel(fd: $0.0) }
            slot.startedAt = now
            slot.heartbeat = nil
            slot.lastHeartbeatAt = now
            feed(slot, .spawned(pid: pid, now: now))
            log("started \(slot.manifest.name) (pid \(pid))")
        } catch {
            feed(slot, .spawnFailed(reason: error.description, now: now))
        }
    }

    /// A message if one is there now; nil when nothing is (EAGAIN, EINTR); `.closed` for
    /// other errors. The watchdog's channel ends are non-blocking.
    static func receiveNow(_ ch: Channel) -> Channel.Received? {
        do throws(Errno) { return try ch.receive() } catch {
            return error.code == EAGAIN || error.code == EINTR ? nil : .closed
        }
    }

    /// Sends a control message without ever waiting: a unix datagram queue holds
    /// only net.unix.max_dgram_qlen (10) messages, and a watchdog blocked on a
    /// busy room stops supervising (and relaying exec verdicts) for everyone.
    /// What the channel cannot take now waits in the room's outbox, in order,
    /// and goes out as the room reads. False when the channel is gone.
    @discardableResult
    func post(_ slot: RoomSlot, _ m: Message) -> Bool {
        guard slot.channel != nil else { return false }
        if slot.outbox.count >= Watchdog.maxOutbox {
            log("\(slot.manifest.name): \(slot.outbox.count) control messages unread")
            feed(slot, .misbehaved(reason: "does not read its control channel (\(slot.outbox.count) messages waiting)", now: Sys.monotonicSeconds()))
            return false
        }
        slot.outbox.append(m)
        flushOutbox(slot)
        return true
    }

    static let maxOutbox = 16_384

    func flushOutbox(_ slot: RoomSlot) {
        guard let ch = slot.channel else { slot.outbox.removeAll(); return }
        var sent = 0
        for m in slot.outbox {
            do throws(Errno) {
                try ch.send(m, nowait: true)
                sent += 1
            } catch {
                if error.code != EAGAIN { slot.outbox.removeAll(); return } // broken: its death follows
                break
            }
        }
        slot.outbox.removeFirst(sent)
    }

    /// Runs one event through the room's supervisor and carries out the actions.
    func feed(_ slot: RoomSlot, _ event: SupervisorEvent) {
        let (next, actions) = supervisor.transition(slot.supervision, event)
        slot.supervision = next
        for a in actions {
            switch a {
            case .spawn: spawn(slot)
            case .kill(let pid, let sig): try? Sys.kill(pid, sig)
            case .sendShutdown(let pid):
                if slot.channel == nil || !post(slot, .shutdown) { try? Sys.kill(pid, SIGTERM) }
            case .report(let text): log("\(slot.manifest.name): \(text)")
            }
        }
    }

    // MARK: the loop

    public func run() -> Int32 {
        feed(collector, .start(now: Sys.monotonicSeconds()))
        planScheduledScan()
        configureExecGate()
        log("status: \(paths.statusFile)  events: mdatp events list  socket: \(paths.socket)")
        while true {
            let now = Sys.monotonicSeconds()
            // Consumers start once the collector is serving (they then inherit its suite mark).
            if !shuttingDown, case .running = collector.supervision.state {
                for r in rooms.dropFirst() where r.supervision.state == .idle { feed(r, .start(now: now)) }
            }
            if !shuttingDown, case .failed = collector.supervision.state {
                for r in rooms.dropFirst() where r.supervision.state == .idle { feed(r, .start(now: now)) }
            }
            for r in rooms { feed(r, .tick(now: now)) }
            if !shuttingDown { runScheduledScanIfDue() }
            if now - lastStatusAt >= config.sensor.statusIntervalSeconds { writeStatus() }
            if shuttingDown && rooms.allSatisfy({ r in
                switch r.supervision.state { case .stopped, .failed, .idle: return true; default: return false }
            }) {
                writeStatus()
                log("all rooms stopped")
                return 0
            }

            for r in rooms where !r.outbox.isEmpty { flushOutbox(r) }
            var fds = [signals, listener]
            var handlers: [() -> Void] = []
            expireExecChecks(now: now)
            if let g = execGate {
                fds.append(g.fd)
                handlers.append { self.serviceExecEvents() }
                if let c = scannerSlot?.gateChannel {
                    fds.append(c.fd)
                    handlers.append { self.serviceExecVerdicts() }
                }
            }
            for r in rooms {
                if let c = r.channel {
                    fds.append(c.fd)
                    handlers.append { self.readChannel(r) }
                }
                if let q = r.requests {
                    fds.append(q.fd)
                    handlers.append { self.serveRequest(r) }
                }
            }
            // A room's queue is full: come back soon to hand it the rest.
            let waitMs: Int32 = rooms.contains { !$0.outbox.isEmpty } ? 10 : 200
            guard let ready = try? Sys.pollReadable(fds, timeoutMs: waitMs) else { continue }
            if ready[0] { handleSignals() }
            if ready[1] { serveClients() }
            for (i, handle) in handlers.enumerated() where ready[i + 2] { handle() }
        }
    }

    func handleSignals() {
        while let sig = Sys.readSignal(signals) {
            switch sig {
            case SIGCHLD:
                reapChildren()
            case SIGUSR1:
                writeStatus()
                log("status written to \(paths.statusFile)")
            case SIGHUP:
                reload()
            case SIGTERM, SIGINT:
                beginShutdown()
            default:
                break
            }
        }
        reapChildren()
    }

    func reapChildren() {
        while let (pid, status) = Sys.reapAny() {
            guard let slot = rooms.first(where: { $0.supervision.state.pid == pid }) else { continue }
            let st: ExitStatus
            switch status {
            case .exited(let c): st = .exited(c)
            case .signaled(let s): st = .signaled(s)
            }
            slot.channel.map { Sys.close($0.fd) }
            slot.channel = nil
            slot.outbox.removeAll()
            slot.requests.map { Sys.close($0.fd) }
            slot.requests = nil
            if slot === scannerSlot {
                slot.gateChannel.map { Sys.close($0.fd) }
                slot.gateChannel = nil
                disarmExecGate()
            }
            feed(slot, .died(st, now: Sys.monotonicSeconds()))
        }
    }

    /// Stops the collector first (no new events), then the consumers drain and go.
    func beginShutdown() {
        guard !shuttingDown else { return }
        shuttingDown = true
        log("stopping")
        let now = Sys.monotonicSeconds()
        feed(collector, .stop(now: now))
        for r in rooms.dropFirst() { feed(r, .stop(now: now + 0.01)) }
    }

    func reload() {
        let result = loadConfig(paths)
        switch result {
        case .failure(let e):
            configError = e.description
            log("configuration refused, keeping the running one: \(e)")
        case .success(let c):
            configError = nil
            let collectorChanged = c.globalExclusions != config.globalExclusions || c.sensor != config.sensor
            let blockingChanged = c.execBlockingActive != config.execBlockingActive
            let scannerChanged = c.enforcementLevel != config.enforcementLevel || c.threatTypeSettings != config.threatTypeSettings
                || c.scanArchives != config.scanArchives || c.exclusions != config.exclusions
                || c.allowedThreats != config.allowedThreats || c.maximumOnDemandScanThreads != config.maximumOnDemandScanThreads
            config = c
            supervisor = Supervisor(policy: c.sensor.restart)
            log("configuration reloaded")
            planScheduledScan()
            configureExecGate()
            let now = Sys.monotonicSeconds()
            for r in rooms { feed(r, .reset(now: now)) }
            if collectorChanged, let pid = collector.supervision.state.pid {
                // The kernel filters are filled at load: a new collector applies them.
                // (SIGTERM, not a drain: its programs' teardown is the slow part either way.)
                log("sensor settings changed: restarting the collector")
                try? Sys.kill(pid, SIGTERM)
            }
            if blockingChanged && !collectorChanged {
                // Switched in place: a collector restart would leave the kernel unwatched for seconds.
                post(collector, .execBlocking(enabled: c.execBlockingActive))
            }
            if scannerChanged, let scanner = rooms.first(where: { $0.manifest.name == "scanner" }), scanner.supervision.state.pid != nil {
                log("antivirus settings changed (enforcement level \(c.enforcementLevel)): restarting the scanner")
                feed(scanner, .restart(now: now))
            }
        }
        writeStatus()
    }

    func readChannel(_ slot: RoomSlot) {
        guard let ch = slot.channel, let received = Watchdog.receiveNow(ch) else { return }
        let now = Sys.monotonicSeconds()
        switch received {
        case .message(.ready, _):
            feed(slot, .ready(now: now))
            log("\(slot.manifest.name) ready")
            if slot === collector { replayDenyList() }
            if slot === scannerSlot { armExecGate() }
        case .message(.heartbeat(let h), _) where slot.manifest.sends.contains(.heartbeat):
            slot.heartbeat = h
            slot.lastHeartbeatAt = now
        case .message(.definitionsResult(let status, let version, let reason), _) where slot.manifest.sends.contains(.definitionsResult):
            finishUpdate(status: status, version: version, reason: reason)
        case .message(.collectorInfo(let info), _) where slot.manifest.sends.contains(.collectorInfo):
            slot.collectorInfo = info
            log("sensor: \(info.hookFamily) hooks, \(info.programsAttached) programs" + (info.skipped.isEmpty ? "" : ", not on this kernel: \(info.skipped)"))
        case .closed:
            // The process's exit (SIGCHLD) decides what happens; stop reading.
            Sys.close(ch.fd)
            slot.channel = nil
        case .violation(let v):
            feed(slot, .misbehaved(reason: v.description, now: now))
        case .message(let m, let fd):
            if fd >= 0 { Sys.close(fd) }
            feed(slot, .misbehaved(reason: "sent \(m.type), not in its manifest", now: now))
        }
    }
}

func loadConfig(_ paths: SuitePaths) -> Result<SuiteConfig, ConfigError> {
    do throws(ConfigError) {
        return .success(try ConfigLoader.load(paths: paths) { path in
            guard Sys.exists(path) else { return nil }
            return (try? Sys.readFile(path, limit: 1 << 20)) ?? Array("<unreadable>".utf8)
        })
    } catch {
        return .failure(error)
    }
}

public enum WatchdogMain {
    public static func main() -> Never {
        // Signals first: a SIGUSR1 or SIGHUP during start-up must not kill us.
        let signals: Int32
        do throws(Errno) { signals = try Sys.signalFD([SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGCHLD]) } catch {
            roomFail("watchdog", "\(error)", code: RoomExit.transient)
        }
        let args = RoomArguments(CommandLine.arguments)
        var env: [String: String] = [:]
        if let p = getenv("MDATP_PREFIX") { env["MDATP_PREFIX"] = String(cString: p) }
        if let p = args.string("prefix") { env["MDATP_PREFIX"] = p }
        let paths = SuitePaths.fromEnvironment(env)
        Sys.setThreadName("mdatp-watchdog")
        guard Sys.getuid() == 0 else { roomFail("watchdog", "must run as root (it starts the rooms and then they drop to mdatp)", code: RoomExit.badConfig) }
        let config: SuiteConfig
        switch loadConfig(paths) {
        case .success(let c): config = c
        case .failure(let e): roomFail("watchdog", "configuration refused: \(e)", code: RoomExit.badConfig)
        }
        guard let account = Sys.lookupUser("mdatp") else {
            roomFail("watchdog", "the mdatp user does not exist; create it with: useradd --system --no-create-home --shell /usr/sbin/nologin --user-group mdatp (make run does this)", code: RoomExit.badConfig)
        }
        let exe = (try? readLink("/proc/self/exe")) ?? CommandLine.arguments[0]
        let binDir = args.string("bin-dir") ?? String(exe[..<(exe.lastIndex(of: "/") ?? exe.endIndex)])
        let w = Watchdog(paths: paths, config: config, account: account, binDir: binDir, signals: signals)
        do throws(Errno) { try w.prepare() } catch { roomFail("watchdog", "setup: \(error)", code: RoomExit.transient) }
        exit(w.run())
    }

    static func readLink(_ path: String) throws(Errno) -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink(path, &buf, buf.count - 1)
        if n < 0 { throw Errno(errno, "readlink \(path)") }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
