// The quarantine store (root only, /var/opt/mdatp/quarantine, 0700): the
// privileged side moves a detected file there on the scanner's request.
//
// The request names the file by path *and* by the (device, inode) the scanner
// read, and the move is done by copy and verified unlink:
//   1. open the parent directory refusing every symlink on the way (openat2);
//   2. open the file in it (no final symlink), check it is still that inode;
//   3. copy its content, neutralised (every byte XOR 0xA5: not runnable, not
//      matched by other scanners), into <id>.bin (0400), fsync, and write
//      <id>.json (original path, owner, mode, size, hashes are the scanner's);
//   4. check again that the name still holds that inode, then unlink it.
// A swap between 3 and 4 makes the request fail (ESTALE) and the copy is removed.
import Glibc
import MdatpJSON
import MdatpSystem

public struct QuarantineEntry: Equatable, Sendable {
    public var id: String
    public var threat: String
    public var originalPath: String
    public var uid: UInt32
    public var gid: UInt32
    public var mode: UInt32
    public var size: Int64
    public var timeUnix: Int64

    public var json: JSON {
        .object([("id", .string(id)), ("threat", .string(threat)), ("original_path", .string(originalPath)),
                 ("owner_uid", JSON(Int(uid))), ("owner_gid", JSON(Int(gid))), ("mode", JSON(Int(mode))),
                 ("size", .number(Double(size))), ("time_unix", .number(Double(timeUnix)))])
    }

    init?(json: JSON) {
        guard let id = json["id"]?.string, let threat = json["threat"]?.string, let path = json["original_path"]?.string,
              let uid = json["owner_uid"]?.int, let gid = json["owner_gid"]?.int, let mode = json["mode"]?.int,
              let size = json["size"]?.int, let t = json["time_unix"]?.int else { return nil }
        self.init(id: id, threat: threat, originalPath: path, uid: UInt32(uid), gid: UInt32(gid), mode: UInt32(mode), size: Int64(size), timeUnix: Int64(t))
    }

    init(id: String, threat: String, originalPath: String, uid: UInt32, gid: UInt32, mode: UInt32, size: Int64, timeUnix: Int64) {
        self.id = id
        self.threat = threat
        self.originalPath = originalPath
        self.uid = uid
        self.gid = gid
        self.mode = mode
        self.size = size
        self.timeUnix = timeUnix
    }
}

public struct QuarantineStore {
    public let dir: String
    static let key: UInt8 = 0xA5
    static let maxEntries = 100_000

    public init(dir: String) { self.dir = dir }

    public func prepare() throws(Errno) {
        try Sys.mkdirExisting(dir, 0o700)
        try Sys.lchown(dir, 0, 0)
        try Sys.chmod(dir, 0o700)
    }

    static func split(_ path: [UInt8]) -> (parent: [UInt8], name: [UInt8])? {
        guard path.first == 0x2f, let slash = path.lastIndex(of: 0x2f), slash < path.count - 1 else { return nil }
        let parent = slash == 0 ? [UInt8(0x2f)] : Array(path[..<slash])
        return (parent, Array(path[(slash + 1)...]))
    }

    /// Copies `from` into `to`, XOR-ing every byte with the key.
    static func copyNeutralised(from: Int32, to: Int32) throws(Errno) -> Int64 {
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        var total: Int64 = 0
        while true {
            let n = buf.withUnsafeMutableBytes { pread(from, $0.baseAddress, $0.count, off_t(total)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Errno(errno, "read")
            }
            if n == 0 { return total }
            for i in 0..<n { buf[i] ^= key }
            try Sys.writeAll(to, Array(buf[0..<n]))
            total += Int64(n)
        }
    }

    /// Moves the file to quarantine; returns its id.
    public func quarantine(path: [UInt8], dev: UInt64, ino: UInt64, threat: String) throws(Errno) -> String {
        guard let (parent, name) = QuarantineStore.split(path), !name.contains(0), !parent.contains(0) else { throw Errno(EINVAL, "quarantine path") }
        let dirfd = try Sys.openNoSymlinks(AT_FDCWD, parent, O_RDONLY | O_DIRECTORY)
        defer { Sys.close(dirfd) }
        let fd = try Sys.openNoSymlinks(dirfd, name, O_RDONLY | O_NONBLOCK | O_NOCTTY)
        defer { Sys.close(fd) }
        let st = try Sys.fstat(fd)
        guard st.st_mode & S_IFMT == S_IFREG, UInt64(st.st_dev) == dev, UInt64(st.st_ino) == ino else { throw Errno(ESTALE, "quarantine: not the file that was scanned") }
        let id = FileDigestsHex(Sys.randomBytes(16))
        let bin = dir + "/" + id + ".bin"
        let out = try Sys.open(bin, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o400)
        var size: Int64 = 0
        do throws(Errno) {
            size = try QuarantineStore.copyNeutralised(from: fd, to: out)
            try Sys.fsync(out)
        } catch {
            Sys.close(out)
            try? Sys.unlinkIfPresent(bin)
            throw error
        }
        Sys.close(out)
        let entry = QuarantineEntry(id: id, threat: threat, originalPath: String(decoding: path, as: UTF8.self), uid: st.st_uid,
                                    gid: st.st_gid, mode: st.st_mode & 0o7777, size: size, timeUnix: Int64(Sys.realtimeSeconds()))
        do throws(Errno) {
            try Sys.writeFileAtomically(dir + "/" + id + ".json", Array(entry.json.serialized().utf8), mode: 0o600)
            // Still the same file under that name? Then it goes.
            let now = try Sys.statAt(dirfd, name)
            guard UInt64(now.st_dev) == dev, UInt64(now.st_ino) == ino else { throw Errno(ESTALE, "quarantine: the file was replaced") }
            try Sys.unlinkAt(dirfd, name)
        } catch {
            try? Sys.unlinkIfPresent(bin)
            try? Sys.unlinkIfPresent(dir + "/" + id + ".json")
            throw error
        }
        return id
    }

    public func list() -> [QuarantineEntry] {
        Sys.listDirectory(dir).filter { $0.hasSuffix(".json") }.prefix(QuarantineStore.maxEntries).compactMap { name in
            guard let bytes = try? Sys.readFile(dir + "/" + name, limit: 65536), let json = try? JSON.parse(bytes) else { return nil }
            return QuarantineEntry(json: json)
        }.sorted { $0.timeUnix > $1.timeUnix }
    }

    func entry(_ id: String) throws(Errno) -> QuarantineEntry {
        guard id.count == 32, id.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else { throw Errno(EINVAL, "quarantine id") }
        guard let bytes = try? Sys.readFile(dir + "/" + id + ".json", limit: 65536), let json = try? JSON.parse(bytes),
              let e = QuarantineEntry(json: json) else { throw Errno(ENOENT, "quarantine entry \(id)") }
        return e
    }

    /// Writes the original content back (never over an existing file), with its owner and mode.
    public func restore(id: String) throws(Errno) -> QuarantineEntry {
        let e = try entry(id)
        guard let (parent, name) = QuarantineStore.split(Array(e.originalPath.utf8)) else { throw Errno(EINVAL, "original path") }
        let dirfd = try Sys.openNoSymlinks(AT_FDCWD, parent, O_RDONLY | O_DIRECTORY)
        defer { Sys.close(dirfd) }
        let src = try Sys.open(dir + "/" + id + ".bin", O_RDONLY | O_NOFOLLOW)
        defer { Sys.close(src) }
        let out = try Sys.openNoSymlinks(dirfd, name, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        do throws(Errno) {
            _ = try QuarantineStore.copyNeutralised(from: src, to: out) // XOR twice: the original
            try Sys.setOwnerAndMode(out, uid: e.uid, gid: e.gid, mode: mode_t(e.mode))
            try Sys.fsync(out)
        } catch {
            Sys.close(out)
            try? Sys.unlinkAt(dirfd, name)
            throw error
        }
        Sys.close(out)
        try remove(id: id)
        return e
    }

    public func remove(id: String) throws(Errno) {
        _ = try entry(id)
        try Sys.unlinkIfPresent(dir + "/" + id + ".bin")
        try Sys.unlinkIfPresent(dir + "/" + id + ".json")
    }
}

func FileDigestsHex(_ b: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    return String(decoding: b.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 15)]] }, as: UTF8.self)
}
