// Compiled Hyperscan databases kept on disk, so a restart with the same
// definitions does not compile again (3.8 s for ClamAV's 25,000 body
// patterns; a cache hit reads and checks the bytes instead). Keyed by the
// SHA-256 of everything a compile depends on: Hyperscan's version, the mode,
// and every pattern with its flags. A file holds a header with the SHA-256 of
// its payload, checked before Hyperscan sees it (which checks again); any
// doubt is a miss and a fresh compile. A pattern Hyperscan refused is kept as
// a refusal under its key, so the retry loop of a load does not pay for it
// twice. At most `maxFiles` files, the oldest removed.
import CHyperscan
import Glibc

public final class HyperscanCache: @unchecked Sendable {
    /// Set once by the scanner room before it loads definitions; nil: no cache (tests, benchmarks).
    nonisolated(unsafe) public static var shared: HyperscanCache?

    public let directory: String
    /// The directory, opened without following a link: every file operation is
    /// relative to it, so nobody can redirect root's writes elsewhere by a link.
    let dirfd: Int32
    /// The owner to give new files when written as root (before the room's sandbox).
    let owner: (uid: uid_t, gid: gid_t)?
    static let maxFiles = 16
    static let maxBytes = 1 << 30
    static let magic = Array("MDHS1\n".utf8)
    public private(set) var hits = 0
    public private(set) var misses = 0

    /// nil when `directory` is not a directory (a link is not followed).
    public init?(directory: String, owner: (uid: uid_t, gid: gid_t)? = nil) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        if geteuid() == 0, let owner { _ = fchown(fd, owner.uid, owner.gid) } // the room's user keeps it up later
        self.directory = directory
        self.dirfd = fd
        self.owner = owner
    }

    deinit { close(dirfd) }

    func key(_ exprs: [String], flags: [UInt32], som: Bool) -> String {
        var input = Array("\(String(cString: mdatp_hs_version()))|\(som ? 1 : 0)|\(exprs.count)|".utf8)
        for (e, f) in zip(exprs, flags) {
            input += Array("\(f):".utf8)
            input += Array(e.utf8)
            input.append(0)
        }
        return FileDigests.hex(FileDigests.of(input, kinds: [.sha256]).sha256)
    }

    /// A database compiled before from the same inputs, or nil.
    func load(_ key: String, rules: [mdatp_hs_rule]) -> OpaquePointer? {
        guard let payload = read(key + ".hsdb") else {
            misses += 1
            return nil
        }
        let db = payload.withUnsafeBytes { p in
            rules.withUnsafeBufferPointer { r in
                mdatp_hs_deserialize(p.baseAddress!.assumingMemoryBound(to: CChar.self), p.count, r.baseAddress, r.count)
            }
        }
        if db == nil { misses += 1 } else { hits += 1 }
        return db
    }

    func refusal(_ key: String) -> (index: Int, message: String)? {
        guard let payload = read(key + ".refused") else { return nil }
        let text = String(decoding: payload, as: UTF8.self)
        guard let colon = text.firstIndex(of: ":"), let i = Int(text[..<colon]), i >= 0 else { return nil }
        return (i, String(text[text.index(after: colon)...]))
    }

    func store(_ key: String, database: OpaquePointer) {
        var out: UnsafeMutablePointer<CChar>?
        var len = 0
        guard mdatp_hs_serialize(database, &out, &len) == 0, let out else { return }
        defer { free(out) }
        write(key + ".hsdb", UnsafeRawBufferPointer(start: out, count: len))
    }

    func storeRefusal(_ key: String, index: Int, message: String) {
        let bytes = Array("\(index):\(message.prefix(400))".utf8)
        bytes.withUnsafeBytes { write(key + ".refused", $0) }
    }

    /// The payload after a header naming its SHA-256, or nil (missing, too large, damaged).
    private func read(_ name: String) -> [UInt8]? {
        let fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_size > 71, st.st_size <= HyperscanCache.maxBytes else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        var got = 0
        while got < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + got, $0.count - got) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return nil }
            got += n
        }
        let header = HyperscanCache.magic.count + 65
        guard bytes.count > header, Array(bytes[0..<HyperscanCache.magic.count]) == HyperscanCache.magic else { return nil }
        let payload = Array(bytes[header...])
        let named = String(decoding: bytes[HyperscanCache.magic.count..<(header - 1)], as: UTF8.self)
        guard named == FileDigests.hex(FileDigests.of(payload, kinds: [.sha256]).sha256) else { return nil }
        return payload
    }

    /// Written whole under a temporary name, synced, then renamed into place.
    private func write(_ name: String, _ payload: UnsafeRawBufferPointer) {
        let digest = FileDigests.hex(FileDigests.of(payload, kinds: [.sha256]).sha256)
        let header = HyperscanCache.magic + Array((digest + "\n").utf8)
        let tmp = name + ".tmp-\(getpid())"
        let fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        var ok = header.withUnsafeBytes { writeAll(fd, $0) } && writeAll(fd, payload) && fsync(fd) == 0
        if ok, geteuid() == 0, let owner { ok = fchown(fd, owner.uid, owner.gid) == 0 }
        close(fd)
        if ok && renameat(dirfd, tmp, dirfd, name) == 0 { prune() } else { unlinkat(dirfd, tmp, 0) }
    }

    private func writeAll(_ fd: Int32, _ b: UnsafeRawBufferPointer) -> Bool {
        var done = 0
        while done < b.count {
            let n = Glibc.write(fd, b.baseAddress! + done, b.count - done)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            done += n
        }
        return true
    }

    /// Keeps the newest `maxFiles` entries.
    private func prune() {
        let listing = dup(dirfd)
        guard listing >= 0 else { return }
        guard let d = fdopendir(listing) else {
            close(listing)
            return
        }
        rewinddir(d)
        var entries: [(String, Int)] = []
        while let e = readdir(d), entries.count < 4096 {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            guard name.hasSuffix(".hsdb") || name.hasSuffix(".refused") else { continue }
            var st = stat()
            if fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 { entries.append((name, st.st_mtim.tv_sec)) }
        }
        closedir(d)
        guard entries.count > HyperscanCache.maxFiles else { return }
        for (name, _) in entries.sorted(by: { $0.1 < $1.1 }).prefix(entries.count - HyperscanCache.maxFiles) {
            unlinkat(dirfd, name, 0)
        }
    }
}
