// SHA-256 of executables, off the hot path. The main loop looks a program up
// by the identity the kernel reported (device, inode, mtime); on a miss it
// queues a job (bounded, one per identity) and goes on. A hashing thread gets
// the file from the watchdog (this room can open nothing outside its store),
// checks it is still the file the kernel saw, hashes it, and hands the digest
// back; the main loop caches it and fills the exec rows stored meanwhile.
import CCrypto
import Glibc
import MdatpSystem
import MdatpWire

/// An executable as the kernel reported it at exec.
public struct ExecutableIdentity: Hashable, Sendable {
    public var dev: UInt32   // the kernel's dev_t
    public var ino: UInt64
    public var mtimeSec: Int64
    public var mtimeNsec: UInt32
    public init(dev: UInt32, ino: UInt64, mtimeSec: Int64, mtimeNsec: UInt32) {
        self.dev = dev
        self.ino = ino
        self.mtimeSec = mtimeSec
        self.mtimeNsec = mtimeNsec
    }
}

/// Identity -> SHA-256 (hex), at most `capacity` entries, oldest out first;
/// also the latest digest by path, for alert evidence. A file that could not be
/// hashed (too large, unreadable, changed since it ran) is kept as known with
/// no digest, so its next runs do not queue the same work again.
public struct HashCache {
    public let capacity: Int
    private var byIdentity: [ExecutableIdentity: String] = [:]
    private var byPath: [String: String] = [:]
    private var order: [(ExecutableIdentity, String)] = []
    private var next = 0
    public private(set) var evictions: UInt64 = 0

    public init(capacity: Int) { self.capacity = max(1, capacity) }

    public var count: Int { byIdentity.count }
    /// nil: never seen; "": seen, no digest to be had; else the digest.
    public func lookup(_ id: ExecutableIdentity) -> String? { byIdentity[id] }
    public func lookup(path: String) -> String? { byPath[path] }

    /// `sha256` nil: the file could not be hashed.
    public mutating func insert(_ id: ExecutableIdentity, path: String, sha256 digest: String?) {
        let sha256 = digest ?? ""
        if byIdentity[id] != nil {
            byIdentity[id] = sha256
            if digest != nil { byPath[path] = sha256 }
            return
        }
        if order.count < capacity {
            order.append((id, path))
        } else {
            let (oldId, oldPath) = order[next]
            let oldDigest = byIdentity.removeValue(forKey: oldId)
            if byPath[oldPath] == oldDigest { byPath[oldPath] = nil }
            evictions &+= 1
            order[next] = (id, path)
            next = (next + 1) % capacity
        }
        byIdentity[id] = sha256
        if digest != nil { byPath[path] = sha256 }
    }
}

/// The hashing thread and its two bounded queues.
final class ExecutableHasher: @unchecked Sendable {
    struct Job { let id: ExecutableIdentity; let path: String; let sinceNs: Int64 }
    struct Done { let job: Job; let sha256: String? ; let reason: String }

    static let maxQueued = 256
    /// Larger executables are not hashed (a digest is not worth a minute of disk).
    static let maxFileBytes: Int64 = 512 << 20

    private let requests: Channel
    private var lock = pthread_mutex_t()
    private var cond = pthread_cond_t()
    private var jobs: [Job] = []
    private var done: [Done] = []
    private var pending: Set<ExecutableIdentity> = []
    private(set) var hashed: UInt64 = 0
    private(set) var failed: UInt64 = 0
    private(set) var dropped: UInt64 = 0

    init(requests: Channel) {
        self.requests = requests
        pthread_mutex_init(&lock, nil)
        pthread_cond_init(&cond, nil)
    }

    func start() -> Bool {
        var t = pthread_t()
        let rc = pthread_create(&t, nil, { raw in
            Unmanaged<ExecutableHasher>.fromOpaque(raw!).takeUnretainedValue().run()
            return nil
        }, Unmanaged.passRetained(self).toOpaque())
        if rc == 0 { pthread_detach(t) }
        return rc == 0
    }

    /// Queues a file to hash (main thread); false when it is queued already or the queue is full.
    @discardableResult
    func request(_ id: ExecutableIdentity, path: String, sinceNs: Int64) -> Bool {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        guard !pending.contains(id) else { return false }
        guard jobs.count < ExecutableHasher.maxQueued else {
            dropped &+= 1
            return false
        }
        pending.insert(id)
        jobs.append(Job(id: id, path: path, sinceNs: sinceNs))
        pthread_cond_signal(&cond)
        return true
    }

    /// What finished since the last call (main thread).
    func takeDone() -> [Done] {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        guard !done.isEmpty else { return [] }
        let out = done
        done.removeAll()
        for d in out { pending.remove(d.job.id) }
        return out
    }

    var counters: (hashed: UInt64, failed: UInt64, dropped: UInt64) {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return (hashed, failed, dropped)
    }

    private func run() {
        while true {
            pthread_mutex_lock(&lock)
            while jobs.isEmpty { pthread_cond_wait(&cond, &lock) }
            let job = jobs.removeFirst()
            pthread_mutex_unlock(&lock)
            let (sha, reason) = hash(job)
            pthread_mutex_lock(&lock)
            if sha != nil { hashed &+= 1 } else { failed &+= 1 }
            // Bounded like the queue: the main loop takes results every turn.
            if done.count < 4 * ExecutableHasher.maxQueued { done.append(Done(job: job, sha256: sha, reason: reason)) }
            else { pending.remove(job.id) }
            pthread_mutex_unlock(&lock)
        }
    }

    private func hash(_ job: Job) -> (String?, String) {
        let fd: Int32
        do throws(Errno) {
            try requests.send(.openForScan(path: Array(job.path.utf8)))
            switch try requests.receive() {
            case .message(.openResult(let status), let f):
                guard status == 0, f >= 0 else {
                    if f >= 0 { Sys.close(f) }
                    return (nil, "open: \(Errno(status, "open"))")
                }
                fd = f
            case .message(_, let f):
                if f >= 0 { Sys.close(f) }
                return (nil, "unexpected reply")
            case .closed, .violation:
                return (nil, "request channel closed")
            }
        } catch {
            return (nil, "\(error)")
        }
        defer { Sys.close(fd) }
        guard let st = try? Sys.fstat(fd) else { return (nil, "fstat failed") }
        // The file at that path now must be the one the kernel ran.
        guard Sys.kernelDev(UInt64(st.st_dev)) == job.id.dev, UInt64(st.st_ino) == job.id.ino,
              Int64(st.st_mtim.tv_sec) == job.id.mtimeSec, UInt32(st.st_mtim.tv_nsec) == job.id.mtimeNsec else {
            return (nil, "the file changed since it was executed")
        }
        guard st.st_mode & S_IFMT == S_IFREG else { return (nil, "not a regular file") }
        guard Int64(st.st_size) <= ExecutableHasher.maxFileBytes else { return (nil, "larger than \(ExecutableHasher.maxFileBytes) bytes") }
        guard let d = mdatp_digests_new(UInt32(MDATP_SHA256)) else { return (nil, "out of memory") }
        defer { mdatp_digests_free(d) }
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        var total: Int64 = 0
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return (nil, "read: errno \(errno)") }
            if n == 0 { break }
            total += Int64(n)
            if total > ExecutableHasher.maxFileBytes { return (nil, "grew past the limit while read") }
            buf.withUnsafeBytes { mdatp_digests_update(d, $0.baseAddress, n) }
        }
        var sha = [UInt8](repeating: 0, count: 32)
        mdatp_digests_final(d, nil, nil, &sha)
        let digits = Array("0123456789abcdef".utf8)
        return (String(decoding: sha.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 15)]] }, as: UTF8.self), "")
    }
}
