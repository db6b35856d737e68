// uid/gid → name, from /etc/passwd and /etc/group (read-only in the room's
// Landlock set). Re-read when the files change, at most every 10 s; bounded.
import Glibc
import MdatpSystem

struct UserNames {
    var users: [UInt32: String] = [:]
    var groups: [UInt32: String] = [:]
    var stamp: (Int64, Int64) = (0, 0)
    var checkedAt = -100.0
    static let maxEntries = 65_536

    mutating func refreshIfChanged(now: Double) {
        guard now - checkedAt >= 10 else { return }
        checkedAt = now
        let p = (try? Sys.stat("/etc/passwd")).map { Int64($0.st_mtim.tv_sec) * 1_000_000_000 + Int64($0.st_mtim.tv_nsec) } ?? 0
        let g = (try? Sys.stat("/etc/group")).map { Int64($0.st_mtim.tv_sec) * 1_000_000_000 + Int64($0.st_mtim.tv_nsec) } ?? 0
        guard (p, g) != stamp else { return }
        stamp = (p, g)
        users = UserNames.parse("/etc/passwd")
        groups = UserNames.parse("/etc/group")
    }

    /// name:x:id:… lines; hostile-safe (bounded size and count).
    static func parse(_ path: String) -> [UInt32: String] {
        guard let bytes = try? Sys.readFile(path, limit: 8 << 20) else { return [:] }
        var out: [UInt32: String] = [:]
        for line in bytes.split(separator: 0x0a) where out.count < maxEntries {
            let f = line.split(separator: 0x3a, maxSplits: 3, omittingEmptySubsequences: false)
            guard f.count >= 3, let id = UInt32(String(decoding: f[2], as: UTF8.self)), !f[0].isEmpty, f[0].count <= 256 else { continue }
            if out[id] == nil { out[id] = String(decoding: f[0], as: UTF8.self) }
        }
        return out
    }

    func user(_ uid: UInt32) -> String { users[uid] ?? String(uid) }
}
