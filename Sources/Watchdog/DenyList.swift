// The identities the kernel must stop at exec, kept by the privileged side:
// the collector's table lives in its BPF object and dies with it, so a new
// collector is given the list again as soon as it says ready. Bounded at the
// kernel table's capacity: the oldest identity goes first (and is taken out
// of the kernel). Persisted (one "dev ino generation|-" line each) so a reboot
// of the suite keeps blocking what it blocked.
import Glibc
import MdatpSystem
import MdatpWire

struct DenyList {
    static let capacity = 4096
    private(set) var entries: [FileIdentity] = []

    /// Adds `f`; returns what fell out (to remove from the kernel), if anything.
    mutating func add(_ f: FileIdentity) -> [FileIdentity] {
        var gone: [FileIdentity] = []
        // A reused inode number: the older identity is dead, replace it.
        entries.removeAll { e in
            let stale = e.dev == f.dev && e.ino == f.ino
            if stale && e != f { gone.append(e) }
            return stale
        }
        entries.append(f)
        while entries.count > DenyList.capacity { gone.append(entries.removeFirst()) }
        return gone
    }

    func serialized() -> [UInt8] {
        Array(entries.map { "\($0.dev) \($0.ino) \($0.generation.map(String.init) ?? "-")\n" }.joined().utf8)
    }

    /// Parses a persisted list; malformed lines are dropped (it is only a cache of decisions).
    static func parse(_ bytes: [UInt8]) -> DenyList {
        var l = DenyList()
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n").prefix(capacity) {
            let f = line.split(separator: " ")
            guard f.count == 3, let dev = UInt64(f[0]), let ino = UInt64(f[1]) else { continue }
            let gen: UInt32? = f[2] == "-" ? nil : UInt32(f[2])
            if f[2] != "-" && gen == nil { continue }
            _ = l.add(FileIdentity(dev: dev, ino: ino, generation: gen))
        }
        return l
    }
}

extension Watchdog {
    var denyListPath: String { paths.stateDir + "/deny.list" }

    func loadDenyList() {
        denyList = (try? Sys.readFile(denyListPath, limit: 1 << 20)).map(DenyList.parse) ?? DenyList()
    }

    func saveDenyList() {
        let tmp = denyListPath + ".new"
        do throws(Errno) {
            let fd = try Sys.open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0o600)
            defer { Sys.close(fd) }
            try Sys.writeAll(fd, denyList.serialized())
            try Sys.fsync(fd)
        } catch {
            log("deny list not saved: \(error)")
            return
        }
        _ = rename(tmp, denyListPath)
    }

    /// A collector that just became ready gets every identity again.
    func replayDenyList() {
        guard config.execBlockingActive, collector.channel != nil, !denyList.entries.isEmpty else { return }
        for f in denyList.entries { post(collector, .denyUpdate(f)) }
        log("deny table: \(denyList.entries.count) identities given to the collector")
    }
}
