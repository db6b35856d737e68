// The scan cache: a file's verdict keyed by its identity and the state of its
// content (device, inode, size, mtime, ctime), valid for one definitions
// version. A hit costs a stat, not a read. Bounded (two generations of
// `capacity` entries: a hit moves an entry to the young one, a full young
// generation pushes the old one out); invalidated by the kernel's write,
// rename, unlink and attribute events for the inode (a write inside one
// timestamp tick would not change mtime/ctime); clean verdicts persisted in
// the scanner's store so a restart or the next scheduled scan starts warm.
import ScanEngine

/// A file as the kernel names it (dev in the kernel's encoding, as events carry it).
struct FileID: Hashable {
    let dev: UInt32
    let ino: UInt64
}

struct CachedVerdict: Equatable {
    var size: Int64
    var mtimeNs: Int64
    var ctimeNs: Int64
    /// Archives were opened (a clean verdict then also holds for scans that do not open them).
    var archives: Bool
    var detection: Detection?
}

struct ScanCache {
    let capacity: Int
    private(set) var young: [FileID: CachedVerdict] = [:]
    private(set) var old: [FileID: CachedVerdict] = [:]
    /// Clean verdicts not yet persisted, and ids whose persisted row must go.
    private(set) var dirty = Set<FileID>()
    private(set) var removed = Set<FileID>()
    private(set) var evictions: UInt64 = 0

    init(capacity: Int) { self.capacity = max(1, capacity) }

    var count: Int { young.count + old.count }

    /// The cached verdict (`.some(nil)`: clean) or nil on a miss.
    mutating func lookup(_ id: FileID, size: Int64, mtimeNs: Int64, ctimeNs: Int64, archives: Bool) -> Detection?? {
        guard let v = young[id] ?? old[id] else { return nil }
        guard v.size == size, v.mtimeNs == mtimeNs, v.ctimeNs == ctimeNs, v.archives || !archives else {
            invalidate(id)
            return nil
        }
        if young[id] == nil {
            old.removeValue(forKey: id)
            insertYoung(id, v)
        }
        return .some(v.detection)
    }

    mutating func store(_ id: FileID, _ v: CachedVerdict) {
        old.removeValue(forKey: id)
        insertYoung(id, v)
        if v.detection == nil {
            dirty.insert(id)
            removed.remove(id)
        } else {
            dirty.remove(id)
            removed.insert(id) // only clean verdicts are kept across restarts
        }
    }

    private mutating func insertYoung(_ id: FileID, _ v: CachedVerdict) {
        if young[id] == nil && young.count >= capacity {
            evictions &+= UInt64(old.count)
            for gone in old.keys where dirty.remove(gone) != nil {}
            old = young
            young = [:]
            young.reserveCapacity(capacity)
        }
        young[id] = v
    }

    mutating func invalidate(_ id: FileID) {
        if young.removeValue(forKey: id) != nil || old.removeValue(forKey: id) != nil {
            dirty.remove(id)
        }
        removed.insert(id)
    }

    /// New definitions: every verdict is void (persisted rows carry their version).
    mutating func clear() {
        young.removeAll()
        old.removeAll()
        dirty.removeAll()
        removed.removeAll()
    }

    /// What to write to the store: clean entries to upsert, ids to delete.
    mutating func takeChanges() -> (upsert: [(FileID, CachedVerdict)], delete: [FileID]) {
        let up = dirty.compactMap { id in (young[id] ?? old[id]).map { (id, $0) } }
        let del = Array(removed)
        dirty.removeAll()
        removed.removeAll()
        return (up, del)
    }

    /// Entries loaded from the store (clean verdicts of the current definitions).
    mutating func seed(_ rows: [(FileID, CachedVerdict)]) {
        for (id, v) in rows.prefix(capacity) { young[id] = v }
    }
}
