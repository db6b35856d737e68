// cgroup v2 id (the inode number of the cgroup's directory, which every event
// carries) → the cgroup's path → the container it names. The tree is walked
// (bounded) when an id is seen for the first time; a cgroup that names no
// container is remembered as such.
import Detection
import Glibc
import MdatpSystem

final class CgroupMap {
    let root: String?
    var byId: [UInt64: ContainerIdentity?] = [:]
    var attempted = Set<UInt64>()
    var lastScan = -100.0
    static let maxDirs = 20_000
    static let maxDepth = 12
    static let maxEntries = 65_536

    init(root: String?) { self.root = root }

    /// The cgroup v2 mount point, from /proc/self/mountinfo.
    static func findRoot() -> String? {
        guard let text = try? Sys.readFile("/proc/self/mountinfo", limit: 4 << 20) else { return nil }
        for line in String(decoding: text, as: UTF8.self).split(separator: "\n") {
            guard let dash = line.firstRange(of: " - ") else { continue }
            let left = line[..<dash.lowerBound].split(separator: " "), right = line[dash.upperBound...].split(separator: " ")
            if left.count >= 5, right.first == "cgroup2" { return String(left[4]) }
        }
        return nil
    }

    /// `now` is asked for only when the id is new (the common case is one lookup).
    func container(_ id: UInt64, now: @autoclosure () -> Double) -> ContainerIdentity? {
        if let c = byId[id] { return c }
        let now = now()
        // A new cgroup: look again (each id once, at most five walks a second).
        guard root != nil, !attempted.contains(id), now - lastScan >= 0.2 else { return nil }
        if attempted.count >= CgroupMap.maxEntries { attempted.removeAll() }
        attempted.insert(id)
        lastScan = now
        rescan()
        return byId[id] ?? nil
    }

    func rescan() {
        guard let root else { return }
        if byId.count >= CgroupMap.maxEntries { byId.removeAll() }
        var stack: [(String, Int)] = [("", 0)]
        var seen = 0
        while let (rel, depth) = stack.popLast(), seen < CgroupMap.maxDirs {
            seen += 1
            guard let st = try? Sys.stat(root + rel), st.st_mode & S_IFMT == S_IFDIR else { continue }
            let id = UInt64(st.st_ino)
            if byId[id] == nil { byId[id] = .some(ContainerIdentity.parse(rel.isEmpty ? "/" : rel)) }
            guard depth < CgroupMap.maxDepth else { continue }
            for name in Sys.listDirectory(root + rel, limit: CgroupMap.maxDirs) where !name.contains(".") || name.hasSuffix(".scope") || name.hasSuffix(".slice") {
                stack.append((rel + "/" + name, depth + 1))
            }
        }
    }
}
