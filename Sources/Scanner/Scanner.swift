// The scanner room's life: load definitions -> map its ring -> demote and
// sandbox -> open the threat store -> ready -> scan what the kernel reports
// written or executed (real time) and what an on-demand scan walks. Every
// file comes from the watchdog, opened read-only without following a final
// link, regular files only.
import Glibc
import MdatpConfig
import MdatpEvents
import MdatpJSON
import MdatpRing
import MdatpRoom
import MdatpSQLite
import MdatpSystem
import MdatpWire
import ScanEngine

struct ScannerCounters {
    var received: UInt64 = 0
    var scanned: UInt64 = 0
    var cacheHits: UInt64 = 0
    var threats: UInt64 = 0
    var errors: UInt64 = 0
    var refused: UInt64 = 0
    var overflows: UInt64 = 0
    var queries: UInt64 = 0
    var excluded: UInt64 = 0
}

/// One path to scan and why.
struct ScanItem {
    let path: [UInt8]
    let pid: UInt32
    let process: String
    var blockedAtExec = false
}

/// An on-demand scan: a bounded stack of paths, answered on the client's socket.
final class OnDemandScan {
    let client: Int32
    var stack: [[UInt8]]
    var scanned = 0
    var skipped = 0
    var errors = 0
    var cacheHits = 0 // of `scanned`: unchanged since a clean verdict, not read again
    var threats: [ThreatRecord] = []
    var ignoreExclusions = false
    var kind = "custom"
    var rootPath = ""
    var cancelled = false
    /// Files handed to the workers at once (1: a low-priority scheduled scan).
    var maxInFlight = Int.max
    var lastPath: [UInt8] = []
    var progressAt = Sys.monotonicSeconds()
    let started = Sys.monotonicSeconds()
    let startedUnix = Int64(Sys.realtimeSeconds())
    // Paths waiting to be walked: bounded (each is up to 4 KiB), the excess is counted as skipped.
    static let maxPending = 100_000
    static let maxDepthBytes = 4095

    init(client: Int32, roots: [[UInt8]]) {
        self.client = client
        stack = roots.reversed()
    }

    /// Where malware lives on Linux: temporary and shared-memory directories,
    /// home directories, cron and systemd unit directories, shell start-up.
    static let quickRoots = ["/tmp", "/var/tmp", "/dev/shm", "/home", "/root", "/etc/cron.d", "/etc/cron.hourly", "/etc/cron.daily",
                             "/etc/cron.weekly", "/etc/cron.monthly", "/var/spool/cron", "/etc/systemd/system", "/etc/init.d",
                             "/etc/profile.d", "/etc/ld.so.preload", "/usr/local/bin", "/usr/local/sbin"]
}

final class ScannerLoop {
    var package: DefinitionsPackage {
        didSet {
            content = ContentScanner(definitions: package.definitions)
            pool?.setDefinitions(package.definitions)
            gate?.setDefinitions(package.definitions)
        }
    }
    /// On-demand scan workers (nil: scans run on this thread).
    var pool: ScanPool?
    /// The fanotify exec gate's thread (real_time enforcement with exec blocking).
    var gate: ExecGateThread?
    /// Where the package in use came from, and the admin's imported sources loaded with it.
    var packageDir = ""
    var extraSources: [String] = []
    var trustedKeys: [[UInt8]] = []
    var definitions: Definitions { package.definitions }
    /// Every engine over one read of a file (owns the Hyperscan scratch).
    var content: ContentScanner
    let requests: Channel
    let store: ThreatStore
    var counters = ScannerCounters()
    var cache = ScanCache(capacity: 131_072)
    var lastScanWasCached = false
    var cacheSavedAt = Sys.monotonicSeconds()
    var queue: [ScanItem] = []
    let queueCapacity = 10_000
    var job: OnDemandScan?
    let maxFileBytes: UInt64

    let policy: ThreatPolicy

    init(package: DefinitionsPackage, requests: Channel, store: ThreatStore, maxFileBytes: UInt64, policy: ThreatPolicy) {
        self.policy = policy
        self.package = package
        content = ContentScanner(definitions: package.definitions)
        self.requests = requests
        self.store = store
        self.maxFileBytes = maxFileBytes
    }

    /// One request to the watchdog on the request channel and its reply (with
    /// its descriptor, if any). Anything but a reply is fatal for the room.
    func ask(_ request: Message) throws(Errno) -> (Message, Int32) {
        try requests.send(request)
        switch try requests.receive() {
        case .message(let reply, let fd):
            return (reply, fd)
        case .closed:
            roomFail("scanner", "request channel closed", code: RoomExit.transient)
        case .violation(let v):
            roomFail("scanner", "\(v)", code: 1)
        }
    }

    func unexpected(_ fd: Int32) -> Never {
        if fd >= 0 { Sys.close(fd) }
        roomFail("scanner", "unexpected reply on the request channel", code: 1)
    }

    /// Asks the watchdog to open `path`; the descriptor or an errno.
    func open(_ path: [UInt8]) -> Result<Int32, Errno> {
        do throws(Errno) {
            switch try ask(.openForScan(path: path)) {
            case (.openResult(let status), let fd): return status == 0 ? .success(fd) : .failure(Errno(status, "open"))
            case (_, let fd): unexpected(fd)
            }
        } catch {
            return .failure(error)
        }
    }

    var scanArchives = true
    var archiveLimits = ArchiveLimits()
    var exclusions = ScanExclusions()
    /// Executables of processes seen at exec (process exclusions by path, statistics), bounded.
    var executables: [UInt32: String] = [:]
    /// Real-time statistics per process (Defender's real-time-protection-statistics), bounded.
    struct ProcessStats { var name: String; var path: String; var files: UInt64; var scanNs: UInt64 }
    var stats: [UInt32: ProcessStats] = [:]
    let statsCapacity = 4096

    /// Scans an open regular file; nil when clean. Cached by content identity.
    /// Archives are opened on demand only (Defender's rule: real time never does).
    func scan(fd: Int32, archives: Bool = false) -> Result<Detection?, ScanError> {
        guard let st = try? Sys.fstat(fd) else { return .failure(ScanError(reason: "fstat failed")) }
        let wantArchives = archives && scanArchives
        let id = ScannerLoop.fileID(st)
        let state = ScannerLoop.contentState(st, archives: wantArchives)
        lastScanWasCached = false
        if let hit = cache.lookup(id, size: state.size, mtimeNs: state.mtimeNs, ctimeNs: state.ctimeNs, archives: wantArchives) {
            counters.cacheHits &+= 1
            lastScanWasCached = true
            return .success(hit)
        }
        do throws(ScanError) {
            let r = try content.scan(fd: fd, size: UInt64(st.st_size), maxBytes: maxFileBytes)
            counters.scanned &+= 1
            var verdict = r.detection
            if verdict == nil && !r.allowed && wantArchives {
                verdict = ArchiveWalker.scanInside(fd: fd, size: UInt64(st.st_size), limits: archiveLimits, scanner: content)
            }
            var v = state
            v.detection = verdict
            cache.store(id, v)
            return .success(verdict)
        } catch {
            return .failure(error)
        }
    }

    static func fileID(_ st: FileStat) -> FileID { FileID(dev: Sys.kernelDev(UInt64(st.st_dev)), ino: UInt64(st.st_ino)) }

    static func contentState(_ st: FileStat, archives: Bool) -> CachedVerdict {
        CachedVerdict(size: Int64(st.st_size),
                      mtimeNs: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec),
                      ctimeNs: Int64(st.st_ctim.tv_sec) * 1_000_000_000 + Int64(st.st_ctim.tv_nsec),
                      archives: archives, detection: nil)
    }

    /// A clean cached verdict for a directory entry, by stat alone (no open
    /// round trip); nil when it must be opened and scanned.
    func cachedClean(dirfd: Int32, name: [UInt8]) -> Bool {
        guard let st = try? Sys.fstatat(dirfd, name), st.st_mode & S_IFMT == S_IFREG else { return false }
        let state = ScannerLoop.contentState(st, archives: scanArchives)
        guard case .some(.none) = cache.lookup(ScannerLoop.fileID(st), size: state.size, mtimeNs: state.mtimeNs, ctimeNs: state.ctimeNs, archives: scanArchives) else { return false }
        counters.cacheHits &+= 1
        return true
    }

    /// Writes the cache's changes to the store (after a scan, every minute, at exit).
    func saveCache(force: Bool = false) {
        guard force || Sys.monotonicSeconds() - cacheSavedAt > 60 else { return }
        cacheSavedAt = Sys.monotonicSeconds()
        let (up, del) = cache.takeChanges()
        do throws(SQLiteError) {
            try store.saveCache(upsert: up, delete: del, version: package.version.packed, limit: cache.capacity * 2)
        } catch {
            roomLog("scanner", "scan cache not saved: \(error)")
        }
    }

    /// Acts on a detection by policy (quarantine through the watchdog, or audit)
    /// and records it. nil when the policy says off.
    func record(_ d: Detection, path: [UInt8], fd: Int32, source: String, pid: UInt32, process: String, blockedAtExec: Bool = false) -> ThreatRecord? {
        let decision = policy.action(for: d)
        if decision == .off { return nil }
        let sha = (try? FileHasher.digests(fd: fd, kinds: [.sha256], maxBytes: maxFileBytes)).map { FileDigests.hex($0.sha256) } ?? ""
        let st = try? Sys.fstat(fd)
        var action = decision == .allowed ? "allowed" : "audited"
        var quarantineId = ""
        if decision == .block, let st {
            // First stop it at exec (other names of the inode included), then move it.
            deny(FileIdentity(dev: UInt64(st.st_dev), ino: UInt64(st.st_ino), generation: Sys.inodeGeneration(fd)))
            (action, quarantineId) = quarantine(path: path, dev: UInt64(st.st_dev), ino: UInt64(st.st_ino), threat: d.name)
        }
        if blockedAtExec { action = "blocked_at_exec" + (action == "quarantined" ? ", quarantined" : "") }
        var t = ThreatRecord(timeNs: Int64(Sys.clockNs(CLOCK_REALTIME)), name: d.name, type: d.type.rawValue,
                             path: String(decoding: path, as: UTF8.self), sha256: sha, size: st.map { Int64($0.st_size) } ?? 0,
                             source: source, action: action, pid: Int64(pid), processName: process)
        t.quarantineId = quarantineId
        counters.threats &+= 1
        do throws(SQLiteError) { try store.add(t) } catch { roomLog("scanner", "threat store: \(error)") }
        roomLog("scanner", "threat \(d.name) (\(d.type.rawValue)) in \(t.path), \(source): \(action)")
        return t
    }

    /// Asks the watchdog to have the kernel stop this file at exec (best effort:
    /// refused when blocking is off).
    func deny(_ file: FileIdentity) {
        do throws(Errno) {
            switch try ask(.denyExecutable(file)) {
            case (.denyResult, _): return
            case (_, let fd): unexpected(fd)
            }
        } catch {
            roomLog("scanner", "deny request failed: \(error)")
        }
    }

    /// Asks the watchdog to move the file to quarantine; the action to record and the id.
    func quarantine(path: [UInt8], dev: UInt64, ino: UInt64, threat: String) -> (String, String) {
        do throws(Errno) {
            switch try ask(.quarantine(dev: dev, ino: ino, threat: Array(threat.utf8), path: path)) {
            case (.quarantineResult(let status, let id), _):
                return status == 0 ? ("quarantined", id) : ("quarantine_failed: \(Errno(status, "quarantine"))", "")
            case (_, let fd): unexpected(fd)
            }
        } catch {
            return ("quarantine_failed: \(error)", "")
        }
    }

    // MARK: real time

    /// Every event keeps the cache honest; with `scan` (real time) the written
    /// and executed files are queued for scanning.
    func enqueue(_ ev: KernelEvent, scan: Bool = true) {
        if case .exec(let x) = ev.body {
            if executables.count >= 65_536 { executables.removeAll(keepingCapacity: true) }
            executables[ev.header.tgid] = x.exe
        }
        if case .exit = ev.body { executables.removeValue(forKey: ev.header.tgid) }
        if case .file(let f) = ev.body { cache.invalidate(FileID(dev: f.dev, ino: f.ino)) }
        guard scan else { return }
        let item: ScanItem
        switch ev.body {
        case .file(let f) where ev.kind == .fileCloseWrite:
            item = ScanItem(path: Array(f.path.utf8), pid: ev.header.tgid, process: ev.header.comm)
        case .exec(let x):
            item = ScanItem(path: Array(x.exe.utf8), pid: ev.header.tgid, process: ev.header.comm,
                            blockedAtExec: ev.header.flags & EventFlag.execBlocked != 0)
        default:
            return
        }
        guard item.path.first == 0x2f, ev.header.flags & EventFlag.pathTruncated == 0 else { return }
        if !exclusions.isEmpty {
            if exclusions.excludes(path: String(decoding: item.path, as: UTF8.self))
                || exclusions.excludes(processName: ev.header.comm, executable: executables[ev.header.tgid]) {
                counters.excluded &+= 1
                return
            }
        }
        guard queue.count < queueCapacity else {
            counters.overflows &+= 1
            return
        }
        queue.append(item)
    }

    /// Scans what the kernel reported; duplicates in one batch are scanned once.
    func drainQueue() {
        var seen = Set<[UInt8]>()
        for item in queue where seen.insert(item.path).inserted || item.blockedAtExec {
            switch open(item.path) {
            case .failure:
                counters.refused &+= 1
            case .success(let fd):
                let t0 = Sys.clockNs(CLOCK_MONOTONIC)
                let result = scan(fd: fd)
                account(pid: item.pid, name: item.process, ns: Sys.clockNs(CLOCK_MONOTONIC) - t0)
                switch result {
                case .success(let d?):
                    _ = record(d, path: item.path, fd: fd, source: "real_time", pid: item.pid, process: item.process, blockedAtExec: item.blockedAtExec)
                case .success(nil): break
                case .failure: counters.errors &+= 1
                }
                Sys.close(fd)
            }
        }
        queue.removeAll(keepingCapacity: true)
    }

    /// Charges one real-time scan to the process that caused it.
    func account(pid: UInt32, name: String, ns: UInt64) {
        if stats[pid] == nil && stats.count >= statsCapacity {
            // Keep the heaviest half: the ones an admin would exclude.
            let keep = stats.sorted { $0.value.scanNs > $1.value.scanNs }.prefix(statsCapacity / 2)
            stats = Dictionary(uniqueKeysWithValues: keep.map { ($0.key, $0.value) })
        }
        var s = stats[pid] ?? ProcessStats(name: name, path: executables[pid] ?? "", files: 0, scanNs: 0)
        s.files &+= 1
        s.scanNs &+= ns
        stats[pid] = s
    }

    // MARK: on demand

    /// Advances the running scan by at most `budget` paths; true when it finished.
    func stepJob(budget: Int) -> Bool {
        guard let j = job else { return true }
        collect(pool?.takeDone(waitMs: 0) ?? [], into: j)
        var n = 0
        if j.cancelled { j.stack.removeAll() }
        while n < budget, pool?.hasRoom ?? true, (pool?.busy ?? 0) < j.maxInFlight, let path = j.stack.popLast() {
            n += 1
            j.lastPath = path
            if !j.ignoreExclusions && exclusions.excludes(path: String(decoding: path, as: UTF8.self)) {
                j.skipped += 1
                continue
            }
            switch open(path) {
            case .failure:
                j.skipped += 1
            case .success(let fd):
                guard let st = try? Sys.fstat(fd) else { j.errors += 1; Sys.close(fd); continue }
                if st.st_mode & S_IFMT == S_IFDIR {
                    listDirectory(fd, parent: path, into: j)
                    Sys.close(fd)
                    continue
                }
                let id = ScannerLoop.fileID(st)
                let state = ScannerLoop.contentState(st, archives: scanArchives)
                if let pool, cache.lookup(id, size: state.size, mtimeNs: state.mtimeNs, ctimeNs: state.ctimeNs, archives: scanArchives) == nil {
                    pool.submit(ScanPool.Job(fd: fd, path: path, size: UInt64(st.st_size), archives: scanArchives, id: id, state: state))
                    continue // the pool owns the descriptor until its verdict comes back
                }
                // A cached verdict (or no pool): decided here.
                finish(j, path: path, fd: fd, verdict: scan(fd: fd, archives: true), cached: lastScanWasCached)
                Sys.close(fd)
            }
        }
        reportProgress(j)
        // Nothing more to hand out now: wait a little for the workers.
        if let pool, !(j.stack.isEmpty ? pool.busy == 0 : pool.hasRoom && pool.busy < j.maxInFlight) {
            collect(pool.takeDone(waitMs: 20), into: j)
        }
        guard j.stack.isEmpty, (pool?.busy ?? 0) == 0 else { return false }
        saveCache(force: true)
        let state = j.cancelled ? "cancelled" : "completed"
        try? store.addScan(kind: j.kind, path: j.rootPath, started: j.startedUnix, ended: Int64(Sys.realtimeSeconds()),
                           scanned: j.scanned, skipped: j.skipped, errors: j.errors, threats: j.threats.count, state: state)
        let summary = JSON.object([
            ("kind", .string(j.kind)), ("state", .string(state)),
            ("scanned", JSON(j.scanned)), ("cache_hits", JSON(j.cacheHits)), ("skipped", JSON(j.skipped)), ("errors", JSON(j.errors)),
            ("seconds", .number((Sys.monotonicSeconds() - j.started) * 1000 / 1000)),
            ("threats", .array(j.threats.map(\.json))),
        ])
        if j.kind.hasPrefix("scheduled_") {
            roomLog("scanner", "\(j.kind) scan \(state): \(j.scanned) scanned, \(j.threats.count) threat(s), \(j.errors) error(s)")
        }
        try? Sys.writeAll(j.client, Array((summary.serialized() + "\n").utf8))
        Sys.close(j.client)
        job = nil
        return true
    }

    /// Execs the gate denied: recorded, denied in the kernel for the file's other
    /// names, quarantined (here: the request channel is this thread's).
    func handleDenials() {
        guard let gate else { return }
        for d in gate.takeDenials() {
            var path = (try? Sys.readlink("/proc/self/fd/\(d.fd)")) ?? "?"
            // Removed meanwhile (the real-time scan of its write may have quarantined it):
            // the kernel appends " (deleted)"; the record names the file as it was run.
            if path.hasSuffix(" (deleted)") { path = String(path.dropLast(10)) }
            let name = executables[UInt32(bitPattern: d.pid)].map { String($0.split(separator: "/").last ?? "") } ?? ""
            _ = record(d.detection, path: Array(path.utf8), fd: d.fd, source: "real_time", pid: UInt32(bitPattern: d.pid),
                       process: name, blockedAtExec: true)
            Sys.close(d.fd)
        }
    }

    /// Once a second, a progress line to the client (dropped if it is not reading).
    func reportProgress(_ j: OnDemandScan) {
        let now = Sys.monotonicSeconds()
        guard now - j.progressAt >= 1 else { return }
        j.progressAt = now
        let p = JSON.object([("progress", .object([
            ("scanned", JSON(j.scanned)), ("cache_hits", JSON(j.cacheHits)), ("skipped", JSON(j.skipped)), ("errors", JSON(j.errors)),
            ("threats", JSON(j.threats.count)), ("pending", JSON(j.stack.count)), ("seconds", .number(now - j.started)),
            ("path", .string(String(decoding: j.lastPath.prefix(512), as: UTF8.self))),
        ]))])
        Sys.sendNow(j.client, Array((p.serialized() + "\n").utf8))
    }

    /// Verdicts from the workers: cached, recorded, acted on (here: the request channel is ours).
    func collect(_ done: [ScanPool.Done], into j: OnDemandScan) {
        for d in done {
            if case .success(let verdict) = d.verdict, d.job.generation == pool?.generation {
                var v = d.job.state
                v.detection = verdict
                cache.store(d.job.id, v)
                counters.scanned &+= 1
            }
            finish(j, path: d.job.path, fd: d.job.fd, verdict: d.verdict, cached: false)
            Sys.close(d.job.fd)
        }
    }

    func finish(_ j: OnDemandScan, path: [UInt8], fd: Int32, verdict: Result<Detection?, ScanError>, cached: Bool) {
        switch verdict {
        case .success(let d?):
            if let t = record(d, path: path, fd: fd, source: "on_demand", pid: 0, process: "mdatp scan") { j.threats.append(t) }
        case .success(nil): break
        case .failure: j.errors += 1
        }
        j.scanned += 1
        if cached { j.cacheHits += 1 }
    }

    /// Lists a directory the watchdog opened; children go on the stack.
    func listDirectory(_ fd: Int32, parent: [UInt8], into j: OnDemandScan) {
        let dupfd = dup(fd)
        guard dupfd >= 0, let dir = fdopendir(dupfd) else { j.errors += 1; return }
        defer { closedir(dir) }
        while let e = readdir(dir) {
            let name: [UInt8] = withUnsafeBytes(of: e.pointee.d_name) { Array($0.prefix(while: { $0 != 0 })) }
            if name == [0x2e] || name == [0x2e, 0x2e] { continue }
            var child = parent
            if child.last != 0x2f { child.append(0x2f) }
            child += name
            guard child.count <= OnDemandScan.maxDepthBytes, j.stack.count < OnDemandScan.maxPending else {
                j.skipped += 1
                continue
            }
            // Only what can be scanned or walked (DT_UNKNOWN is decided at open).
            let t = e.pointee.d_type
            if t == UInt8(DT_REG), j.ignoreExclusions || !exclusions.excludes(path: String(decoding: child, as: UTF8.self)),
               cachedClean(dirfd: fd, name: name) {
                j.scanned += 1 // clean and unchanged since it was scanned: no open, no read
                j.cacheHits += 1
                continue
            }
            if t == UInt8(DT_REG) || t == UInt8(DT_DIR) || t == UInt8(DT_UNKNOWN) { j.stack.append(child) } else { j.skipped += 1 }
        }
    }

    func heartbeat(lost: UInt64) -> Heartbeat {
        let c = counters
        let g = gate?.counters ?? (allowed: 0, denied: 0, unscanned: 0)
        return Heartbeat([c.received, c.scanned, c.cacheHits, c.threats, c.errors, lost, c.refused, c.overflows,
                          UInt64(definitions.signatureCount), c.queries, package.version.packed, UInt64(package.createdUnix), c.excluded,
                          g.allowed, g.denied, g.unscanned])
    }

    /// An update: a newer, verified package replaces the current one (and the
    /// verdict cache, which belongs to the old signatures); anything else is
    /// refused and the current set stays.
    func update(from dir: String, trustedKeys: [[UInt8]]) -> Message {
        do throws(PackageError) {
            let candidate = try ScannerRoom.loadPackage(dir, trustedKeys: trustedKeys, extra: ScannerRoom.readSources(extraSources))
            guard package.version < candidate.version else {
                throw PackageError("version \(candidate.version) is not newer than \(package.version) in use")
            }
            package = candidate
            packageDir = dir
            cache.clear()
            roomLog("scanner", "definitions \(candidate.version): \(candidate.definitions.signatureCount) signatures")
            return .definitionsResult(status: 0, version: candidate.version.packed, reason: "")
        } catch {
            roomLog("scanner", "definitions update refused: \(error)")
            return .definitionsResult(status: EINVAL, version: package.version.packed, reason: error.reason)
        }
    }

    /// An imported source staged at `dir` (extra/staging-NAME): the package in use,
    /// the sources already accepted (but an older NAME) and this one must load together.
    func importSource(_ dir: String) -> Message {
        let final = ScannerRoom.finalSourceDir(dir)
        let others = extraSources.filter { $0 != final }
        do throws(PackageError) {
            let before = package.definitions.signatureCount
            let candidate = try ScannerRoom.loadPackage(packageDir, trustedKeys: trustedKeys, extra: ScannerRoom.readSources(others + [dir]))
            package = candidate
            extraSources = others + [final]
            cache.clear()
            let added = candidate.definitions.signatureCount - before
            let note = "\(candidate.definitions.signatureCount) signatures in use (\(added >= 0 ? "+" : "")\(added))"
                + (candidate.definitions.bodies.unsupportedCount > 0 ? ", \(candidate.definitions.bodies.unsupportedCount) body signatures skipped as unsupported" : "")
            roomLog("scanner", "imported \(final): \(note)")
            return .definitionsResult(status: 0, version: candidate.version.packed, reason: note)
        } catch {
            roomLog("scanner", "import refused: \(error)")
            return .definitionsResult(status: EINVAL, version: package.version.packed, reason: error.reason)
        }
    }

    /// A CLI request forwarded by the watchdog.
    func answer(fd: Int32, request: [UInt8]) -> Bool {
        Sys.setTimeouts(fd, seconds: 2)
        var limits = JSONLimits()
        limits.maxBytes = 4096
        limits.maxDepth = 4
        guard let json = try? JSON.parse(request, limits: limits), let verb = json["verb"]?.string else {
            try? Sys.writeAll(fd, Array(#"{"error":"bad request","code":"usage"}"#.utf8 + [10]))
            return false
        }
        counters.queries &+= 1
        switch verb {
        case "rtp_stats":
            let rows = stats.sorted { $0.value.scanNs > $1.value.scanNs }.map { pid, s in
                JSON.object([("id", JSON(Int(pid))), ("name", .string(s.name)), ("path", .string(s.path)),
                             ("totalFilesScanned", JSON(s.files)), ("scanTimeNs", JSON(s.scanNs)), ("status", .string("Active"))])
            }
            try? Sys.writeAll(fd, Array((JSON.object([("counters", .array(rows))]).serialized() + "\n").utf8))
            return false
        case "threats":
            let limit = json["limit"]?.int ?? 100
            let rows = (try? store.list(limit: limit)) ?? []
            try? Sys.writeAll(fd, Array((JSON.object([("threats", .array(rows.map(\.json)))]).serialized() + "\n").utf8))
            return false
        case "scan":
            let kind = json["kind"]?.string ?? "custom"
            var roots: [[UInt8]]
            switch kind {
            case "custom":
                guard let path = json["path"]?.string, path.hasPrefix("/"), path.utf8.count <= OnDemandScan.maxDepthBytes, !path.utf8.contains(0) else {
                    try? Sys.writeAll(fd, Array(#"{"error":"scan needs an absolute path","code":"usage"}"#.utf8 + [10]))
                    return false
                }
                roots = [Array(path.utf8)]
            case "quick":
                // Plus the executables of the processes seen running since the room started.
                // (Files only: an image whose path the kernel could not resolve shows as "/".)
                roots = OnDemandScan.quickRoots.map { Array($0.utf8) }
                    + Set(executables.values).filter { $0.utf8.count > 1 && !$0.hasSuffix("/") }.sorted().map { Array($0.utf8) }
            case "full":
                roots = [[0x2f]] // every filesystem; pseudo filesystems are refused at their root
            default:
                try? Sys.writeAll(fd, Array(#"{"error":"scan kind must be quick, full or custom","code":"usage"}"#.utf8 + [10]))
                return false
            }
            guard job == nil else {
                try? Sys.writeAll(fd, Array(#"{"error":"a scan is already running","code":"refused"}"#.utf8 + [10]))
                return false
            }
            // The client waits for the summary; no send timeout applies to a long scan's reply.
            Sys.setTimeouts(fd, seconds: 10)
            job = OnDemandScan(client: fd, roots: roots)
            job?.ignoreExclusions = json["ignore_exclusions"]?.bool ?? false
            // Scheduled (by the watchdog, from the config): recorded as such; low priority scans one file at a time.
            let scheduled = json["scheduled"]?.bool ?? false
            job?.kind = scheduled ? "scheduled_" + kind : kind
            if scheduled && (json["low_priority"]?.bool ?? true) { job?.maxInFlight = 1 }
            if scheduled { roomLog("scanner", "scheduled \(kind) scan started") }
            job?.rootPath = json["path"]?.string ?? kind
            return true // keeps the socket
        case "scan_list":
            let rows = (try? store.scans(limit: json["limit"]?.int ?? 7)) ?? []
            try? Sys.writeAll(fd, Array((JSON.object([("scans", .array(rows))]).serialized() + "\n").utf8))
            return false
        case "scan_cancel":
            let running = job != nil
            job?.cancelled = true
            try? Sys.writeAll(fd, Array((JSON.object([("cancelled", .bool(running))]).serialized() + "\n").utf8))
            return false
        default:
            try? Sys.writeAll(fd, Array(#"{"error":"unknown verb","code":"usage"}"#.utf8 + [10]))
            return false
        }
    }
}

public enum ScannerRoom {
    static let name = "scanner"

    public static func main() -> Never {
        let room = RoomStart.begin(manifest)
        let (args, paths, control) = (room.args, room.paths, room.control)
        let requests = Channel(fd: RoomFD.requests)

        // Compiled Hyperscan databases survive restarts, in a directory of the room's own
        // (opened without following links; files written as root are given to the room's user).
        let hsCacheDir = paths.scannerDir + "/hs-cache"
        if mkdir(hsCacheDir, 0o700) == 0 || errno == EEXIST {
            HyperscanCache.shared = HyperscanCache(directory: hsCacheDir, owner: (room.account.uid, room.account.gid))
        }

        // Definitions first (read as root, before the sandbox): the installed package, or
        // the one shipped with the product when that is refused; neither is a bad install.
        let trustedKeys = Sys.listDirectory(args.string("trusted-keys") ?? "").filter { $0.hasSuffix(".pub") }.compactMap { name in
            (try? Sys.readFile((args.string("trusted-keys") ?? "") + "/" + name, limit: 256)).flatMap(DefinitionsPackage.parseKey)
        }
        // The admin's imported sources: each must load with the package, or it is left out (logged).
        let extraRoot = args.string("extra-definitions") ?? ""
        let sources = Sys.listDirectory(extraRoot).sorted().filter { !$0.hasPrefix("staging-") && !$0.hasPrefix(".") }.map { extraRoot + "/" + $0 }
        var loaded: DefinitionsPackage?
        var packageDir = ""
        var accepted: [String] = []
        for dir in [args.string("definitions"), args.string("fallback-definitions")].compactMap({ $0 }) {
            do throws(PackageError) {
                loaded = try loadPackage(dir, trustedKeys: trustedKeys, extra: readSources(sources))
                accepted = sources
            } catch {
                do throws(PackageError) {
                    loaded = try loadPackage(dir, trustedKeys: trustedKeys)
                    for source in sources {
                        do throws(PackageError) {
                            loaded = try loadPackage(dir, trustedKeys: trustedKeys, extra: readSources(accepted + [source]))
                            accepted.append(source)
                        } catch {
                            roomLog(name, "imported source \(source) left out: \(error)")
                        }
                    }
                } catch {
                    roomLog(name, "definitions in \(dir) refused: \(error)")
                }
            }
            if loaded != nil { packageDir = dir; break }
        }
        guard let package = loaded else { roomFail(name, "no usable definitions", code: RoomExit.badConfig) }
        if let c = HyperscanCache.shared { roomLog(name, "compiled pattern databases: \(c.hits) from the cache, \(c.misses) compiled") }

        // The exec gate's channel, if the watchdog handed one over: its wake-up eventfd
        // is made now (the sandbox has no eventfd2), its thread after the sandbox.
        let hasGate = fcntl(RoomFD.execGate, F_GETFD) >= 0
        let gateWake = hasGate ? ((try? Sys.eventfd()) ?? -1) : -1
        let watchdogPid = getppid() // the sandbox has no getppid
        let ring = room.mapRingAndSandbox(manifest)
        let store: ThreatStore
        do throws(SQLiteError) { store = try ThreatStore(path: paths.threatStore) } catch {
            roomFail(name, "threat store: \(error)", code: RoomExit.transient)
        }
        roomLog(name, "definitions \(package.version): \(package.definitions.signatureCount) signatures from \(package.definitions.files.joined(separator: ", "))")

        let policy = ThreatPolicy.parse(remediate: args.flag("remediate"), policies: args.all("policy"), allowed: args.all("allowed"))
        let loop = ScannerLoop(package: package, requests: requests, store: store,
                               maxFileBytes: UInt64(args.int("max-file-bytes", 256 << 20)), policy: policy)
        loop.packageDir = packageDir
        loop.extraSources = accepted
        loop.trustedKeys = trustedKeys
        // Passive and on_demand: events are read (the ring must not fill) but not scanned.
        let realTime = args.flag("real-time")
        loop.scanArchives = !args.flag("no-archives")
        // Workers start here, under the seccomp filter (threads only).
        let pool = ScanPool(threads: args.int("scan-threads", 2), definitions: package.definitions,
                            maxFileBytes: UInt64(args.int("max-file-bytes", 256 << 20)), archiveLimits: loop.archiveLimits)
        if pool.start() { loop.pool = pool } else { roomLog(name, "scan workers could not start: on-demand scans run on one thread") }
        if hasGate && gateWake >= 0 {
            let gate = ExecGateThread(gate: RoomFD.execGate, wake: gateWake, watchdog: watchdogPid, definitions: package.definitions, policy: policy,
                                      maxFileBytes: UInt64(args.int("max-file-bytes", 256 << 20)))
            if gate.start() {
                loop.gate = gate
                roomLog(name, "exec gate: every exec on the marked filesystems waits for a verdict")
            } else {
                roomLog(name, "exec gate thread could not start: execs are not gated")
            }
        }
        // Ready only now: the watchdog marks the filesystems for the gate on this word.
        room.ready()
        do throws(SQLiteError) {
            loop.cache.seed(try store.loadCache(version: package.version.packed, limit: loop.cache.capacity))
            roomLog(name, "scan cache: \(loop.cache.count) clean verdicts from the last run")
        } catch {
            roomLog(name, "scan cache not loaded: \(error)")
        }
        loop.exclusions = ScanExclusions(paths: args.all("exclude-path"), extensions: args.all("exclude-ext"), processes: args.all("exclude-process"))
        var heartbeat = HeartbeatClock(interval: args.double("heartbeat", 2))
        var draining = false
        while true {
            ring.poll(max: 1024) { _, payload in
                loop.counters.received &+= 1
                if let ev = try? EventDecoder.decode(payload) { loop.enqueue(ev, scan: realTime) }
            }
            ring.accountTrailingDrops()
            loop.handleDenials()
            loop.drainQueue()
            let jobDone = loop.stepJob(budget: 64)
            if draining && ring.isEmpty {
                loop.saveCache(force: true)
                try? control.send(.heartbeat(loop.heartbeat(lost: ring.lostRecords)))
                exit(RoomExit.ok)
            }
            if heartbeat.due() {
                try? control.send(.heartbeat(loop.heartbeat(lost: ring.lostRecords)))
                loop.saveCache()
            }
            let controlReady: Bool
            if !ring.isEmpty || !jobDone {
                controlReady = (try? Sys.pollReadable([control.fd], timeoutMs: 0))?.first == true
            } else {
                controlReady = ring.wait(timeoutMs: 200, extraFds: gateWake >= 0 ? [control.fd, gateWake] : [control.fd]).first == true
            }
            guard controlReady else { continue }
            switch room.nextControlMessage(manifest) {
            case (.shutdown, _):
                draining = true
            case (.query(_, _, let request), let fd):
                if !loop.answer(fd: fd, request: request) { Sys.close(fd) }
            case (.loadDefinitions(let path), _):
                try? control.send(loop.update(from: String(decoding: path, as: UTF8.self), trustedKeys: trustedKeys))
            case (.importDefinitions(let path), _):
                try? control.send(loop.importSource(String(decoding: path, as: UTF8.self)))
            case (let m, let fd):
                if fd >= 0 { Sys.close(fd) }
                roomFail(name, "\(m.type) is in the manifest but not handled", code: 1)
            }
        }
    }

    static func loadPackage(_ dir: String, trustedKeys: [[UInt8]], extra: [(String, [UInt8])] = []) throws(PackageError) -> DefinitionsPackage {
        try DefinitionsPackage.load(directory: dir, trustedKeys: trustedKeys, extra: extra) { path, limit in
            try? Sys.readFile(path, limit: limit)
        }
    }

    /// The signature files of imported sources (containers unpacked), named SOURCE/FILE[/MEMBER].
    static func readSources(_ dirs: [String]) throws(PackageError) -> [(String, [UInt8])] {
        var out: [(String, [UInt8])] = []
        for dir in dirs {
            let source = String(dir.split(separator: "/").last ?? "")
            let label = source.hasPrefix("staging-") ? String(source.dropFirst(8)) : source
            for file in Sys.listDirectory(dir).sorted() {
                let bytes: [UInt8]
                do throws(Errno) { bytes = try Sys.readFile(dir + "/" + file, limit: Definitions.maxFileBytes) } catch {
                    throw PackageError("\(label)/\(file): \(error)")
                }
                do throws(SignatureError) {
                    let src = try ClamAVDatabase.read(name: file, bytes: bytes)
                    if !src.skipped.isEmpty { roomLog(name, "\(label)/\(file): skipped \(src.skipped.count) member(s) in formats we do not read: \(src.skipped.prefix(6).joined(separator: ", "))") }
                    out += src.files.map { (label + "/" + $0.0, $0.1) }
                } catch {
                    throw PackageError("\(label)/\(error)")
                }
            }
        }
        return out
    }

    /// extra/staging-NAME -> extra/NAME, where the watchdog puts it once accepted.
    static func finalSourceDir(_ staging: String) -> String {
        guard let slash = staging.lastIndex(of: "/") else { return staging }
        let last = staging[staging.index(after: slash)...]
        return String(staging[..<slash]) + "/" + (last.hasPrefix("staging-") ? String(last.dropFirst(8)) : String(last))
    }
}
