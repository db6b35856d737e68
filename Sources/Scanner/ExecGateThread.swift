// The scanner's side of the exec gate: the watchdog holds the fanotify group
// (the kernel opens each event's file with the reader's credentials, which a
// sandboxed room does not have) and hands every exec's file descriptor over
// the gate channel (fd 8); this thread answers — allow, or deny when the file
// is a threat the policy blocks. Answers come from its own verdict cache when
// the file is unchanged (a stat, not a read), else from a scan of the
// descriptor. A denial is passed to the main thread (through an eventfd) to be
// recorded, denied at exec for its other names and quarantined: the request
// channel is the main thread's alone.
import Glibc
import MdatpRoom
import MdatpSystem
import MdatpWire
import ScanEngine

final class ExecGateThread: @unchecked Sendable {
    struct Denial {
        let detection: Detection
        let fd: Int32      // the executed file, kept open for the main thread
        let pid: Int32
    }

    let gate: Int32
    let wake: Int32         // eventfd: readable when denials wait
    let watchdog: pid_t
    let policy: ThreatPolicy
    let maxFileBytes: UInt64
    private var lock = pthread_mutex_t()
    private var definitions: Definitions
    private var generation = 0
    private var denials: [Denial] = []
    private(set) var allowed: UInt64 = 0
    private(set) var denied: UInt64 = 0
    private(set) var unscanned: UInt64 = 0   // let through without a verdict (too large, unreadable)

    init(gate: Int32, wake: Int32, watchdog: pid_t, definitions: Definitions, policy: ThreatPolicy, maxFileBytes: UInt64) {
        self.gate = gate
        self.wake = wake
        self.definitions = definitions
        self.policy = policy
        self.maxFileBytes = maxFileBytes
        self.watchdog = watchdog
        pthread_mutex_init(&lock, nil)
    }

    func start() -> Bool {
        var t = pthread_t()
        let rc = pthread_create(&t, nil, { raw in
            Unmanaged<ExecGateThread>.fromOpaque(raw!).takeUnretainedValue().run()
            return nil
        }, Unmanaged.passRetained(self).toOpaque())
        if rc == 0 { pthread_detach(t) }
        return rc == 0
    }

    func setDefinitions(_ d: Definitions) {
        pthread_mutex_lock(&lock)
        definitions = d
        generation += 1
        pthread_mutex_unlock(&lock)
    }

    /// Denials waiting for the main thread.
    func takeDenials() -> [Denial] {
        var n: UInt64 = 0
        _ = read(wake, &n, 8)
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        let out = denials
        denials.removeAll()
        return out
    }

    var counters: (allowed: UInt64, denied: UInt64, unscanned: UInt64) {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return (allowed, denied, unscanned)
    }

    private func run() {
        var scanner: ContentScanner?
        var mine = -1
        var cache = ScanCache(capacity: 32_768)
        let channel = Channel(fd: gate)
        while true {
            let token: UInt64, pid: Int32, fd: Int32
            switch try? channel.receive() {
            case .message(.execCheck(let t, let p), let f)?:
                (token, pid, fd) = (t, p, f)
            case .closed?, nil:
                roomLog("scanner", "exec gate channel closed: execs are no longer gated")
                return
            case .message(let m, let f)?:
                if f >= 0 { Sys.close(f) }
                roomFail("scanner", "exec gate channel: \(m.type) is not an execCheck", code: 1)
            case .violation(let v)?:
                roomFail("scanner", "exec gate channel: \(v)", code: 1)
            }
            pthread_mutex_lock(&lock)
            if mine != generation || scanner == nil {
                scanner = ContentScanner(definitions: definitions)
                mine = generation
                cache.clear()
            }
            pthread_mutex_unlock(&lock)
            let verdict = pid == watchdog ? nil : decide(fd, scanner: scanner!, cache: &cache)
            let deny = verdict.map { policy.action(for: $0) == .block } ?? false
            try? channel.send(.execVerdict(token: token, allow: !deny))
            pthread_mutex_lock(&lock)
            if deny, let d = verdict {
                denied &+= 1
                denials.append(Denial(detection: d, fd: fd, pid: pid))
            } else {
                allowed &+= 1
            }
            pthread_mutex_unlock(&lock)
            if deny { Sys.eventfdSignal(wake) } else { Sys.close(fd) }
        }
    }

    /// The file's verdict: cached while it is unchanged, else scanned now.
    private func decide(_ fd: Int32, scanner: ContentScanner, cache: inout ScanCache) -> Detection? {
        guard let st = try? Sys.fstat(fd), st.st_mode & S_IFMT == S_IFREG else { return nil }
        let id = ScannerLoop.fileID(st)
        let state = ScannerLoop.contentState(st, archives: false)
        if let hit = cache.lookup(id, size: state.size, mtimeNs: state.mtimeNs, ctimeNs: state.ctimeNs, archives: false) { return hit }
        guard UInt64(st.st_size) <= maxFileBytes, let r = try? scanner.scan(fd: fd, size: UInt64(st.st_size), maxBytes: maxFileBytes) else {
            pthread_mutex_lock(&lock)
            unscanned &+= 1
            pthread_mutex_unlock(&lock)
            return nil
        }
        var v = state
        v.detection = r.detection
        cache.store(id, v)
        return r.detection
    }
}
