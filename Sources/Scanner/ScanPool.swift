// Worker threads for on-demand scans (maximumOnDemandScanThreads). The main
// thread walks and opens — the request channel to the watchdog is its alone —
// checks the cache, hands descriptors here and takes verdicts back to record
// and act on them: workers only read and match, each with its own
// ContentScanner (Hyperscan scratch is per thread). Bounded: at most
// `capacity` descriptors wait, so a huge tree never holds more open files.
import Glibc
import ScanEngine

final class ScanPool: @unchecked Sendable {
    struct Job {
        let fd: Int32
        let path: [UInt8]
        let size: UInt64
        let archives: Bool
        let id: FileID
        let state: CachedVerdict
        var generation = 0
    }

    struct Done {
        let job: Job
        let verdict: Result<Detection?, ScanError>
    }

    let threads: Int
    let capacity: Int
    let maxFileBytes: UInt64
    let archiveLimits: ArchiveLimits
    private var lock = pthread_mutex_t()
    private var workReady = pthread_cond_t()
    private var doneReady = pthread_cond_t()
    private var pending: [Job] = []
    private var done: [Done] = []
    private var running = 0
    private var definitions: Definitions
    private(set) var generation = 0

    init(threads: Int, definitions: Definitions, maxFileBytes: UInt64, archiveLimits: ArchiveLimits) {
        self.threads = max(1, min(threads, 64))
        capacity = self.threads * 4
        self.definitions = definitions
        self.maxFileBytes = maxFileBytes
        self.archiveLimits = archiveLimits
        pthread_mutex_init(&lock, nil)
        pthread_cond_init(&workReady, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(&doneReady, &attr)
    }

    /// Starts the workers (after the sandbox: they are created under the seccomp filter).
    func start() -> Bool {
        for _ in 0..<threads {
            var t = pthread_t()
            let rc = pthread_create(&t, nil, { raw in
                Unmanaged<ScanPool>.fromOpaque(raw!).takeUnretainedValue().work()
                return nil
            }, Unmanaged.passRetained(self).toOpaque())
            guard rc == 0 else { return false }
            pthread_detach(t)
        }
        return true
    }

    /// Queued or being scanned.
    var busy: Int {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return pending.count + running + done.count
    }

    var hasRoom: Bool {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return pending.count + running < capacity
    }

    /// New definitions: jobs taken from now on are matched against them.
    func setDefinitions(_ d: Definitions) {
        pthread_mutex_lock(&lock)
        definitions = d
        generation += 1
        pthread_mutex_unlock(&lock)
    }

    func submit(_ job: Job) {
        pthread_mutex_lock(&lock)
        var j = job
        j.generation = generation
        pending.append(j)
        pthread_cond_signal(&workReady)
        pthread_mutex_unlock(&lock)
    }

    /// Finished jobs; waits up to `waitMs` for one when none is ready.
    func takeDone(waitMs: Int) -> [Done] {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        if done.isEmpty && waitMs > 0 && pending.count + running > 0 {
            var ts = timespec()
            clock_gettime(CLOCK_MONOTONIC, &ts)
            let ns = Int(ts.tv_nsec) + waitMs * 1_000_000
            ts.tv_sec += ns / 1_000_000_000
            ts.tv_nsec = ns % 1_000_000_000
            pthread_cond_timedwait(&doneReady, &lock, &ts)
        }
        let out = done
        done.removeAll(keepingCapacity: true)
        return out
    }

    private func work() {
        var scanner: ContentScanner?
        var mine = -1
        while true {
            pthread_mutex_lock(&lock)
            while pending.isEmpty { pthread_cond_wait(&workReady, &lock) }
            let job = pending.removeFirst()
            running += 1
            if mine != generation || scanner == nil {
                scanner = ContentScanner(definitions: definitions)
                mine = generation
            }
            let current = job.generation == mine
            pthread_mutex_unlock(&lock)

            var verdict: Result<Detection?, ScanError>
            if !current {
                verdict = .failure(ScanError(reason: "definitions changed"))
            } else {
                do throws(ScanError) {
                    let r = try scanner!.scan(fd: job.fd, size: job.size, maxBytes: maxFileBytes)
                    var d = r.detection
                    if d == nil && !r.allowed && job.archives {
                        d = ArchiveWalker.scanInside(fd: job.fd, size: job.size, limits: archiveLimits, scanner: scanner!)
                    }
                    verdict = .success(d)
                } catch {
                    verdict = .failure(error)
                }
            }
            pthread_mutex_lock(&lock)
            running -= 1
            done.append(Done(job: job, verdict: verdict))
            pthread_cond_signal(&doneReady)
            pthread_mutex_unlock(&lock)
        }
    }
}
