// The writer side of the kernel's exec deny table (bpf/include/mdatp_abi.h):
// open addressing from mdatp_deny_hash, at most MDATP_DENY_PROBES slots; the
// entry's identity is written first and its state last, with a release
// store, so the BPF program never sees a half-written valid entry.
import CMdatpABI
import CMdatpLinux

public struct DenyTable {
    let slots: UnsafeMutablePointer<mdatp_deny_entry>
    public static let capacity = Int(MDATP_DENY_SLOTS)
    static let probes = Int(MDATP_DENY_PROBES)

    public init(slots: UnsafeMutablePointer<mdatp_deny_entry>) { self.slots = slots }

    func state(_ i: Int) -> UInt32 { mdatp_load_acquire_u32(UnsafeRawPointer(slots + i) + 12) }
    func setState(_ i: Int, _ v: UInt32) { mdatp_store_release_u32(UnsafeMutableRawPointer(slots + i) + 12, v) }

    public enum InsertResult: Equatable { case added, present, full }

    /// Adds (kernel dev, inode[, generation]); `.full` when its probe run has no free slot.
    /// An entry for the same inode with another generation is replaced (the number was reused).
    public func insert(dev: UInt32, ino: UInt64, generation: UInt32? = nil) -> InsertResult {
        let start = Int(mdatp_deny_hash(ino, dev))
        var free: Int?
        for p in 0..<DenyTable.probes {
            let i = (start + p) & (DenyTable.capacity - 1)
            let s = state(i)
            if s == MDATP_DENY_VALID && slots[i].ino == ino && slots[i].dev == dev {
                let same = generation.map { slots[i].flags & MDATP_DENY_HAS_GENERATION != 0 && slots[i].generation == $0 }
                    ?? (slots[i].flags & MDATP_DENY_HAS_GENERATION == 0)
                if same { return .present }
                setState(i, MDATP_DENY_REMOVED) // a stale identity for this inode number
                if free == nil { free = i }
                continue
            }
            if (s == MDATP_DENY_EMPTY || s == MDATP_DENY_REMOVED) && free == nil { free = i }
            if s == MDATP_DENY_EMPTY { break }
        }
        guard let i = free else { return .full }
        slots[i].ino = ino
        slots[i].dev = dev
        slots[i].generation = generation ?? 0
        slots[i].flags = generation == nil ? 0 : MDATP_DENY_HAS_GENERATION
        setState(i, MDATP_DENY_VALID)
        return .added
    }

    public func remove(dev: UInt32, ino: UInt64) -> Bool {
        let start = Int(mdatp_deny_hash(ino, dev))
        for p in 0..<DenyTable.probes {
            let i = (start + p) & (DenyTable.capacity - 1)
            let s = state(i)
            if s == MDATP_DENY_EMPTY { return false }
            if s == MDATP_DENY_VALID && slots[i].ino == ino && slots[i].dev == dev {
                setState(i, MDATP_DENY_REMOVED)
                return true
            }
        }
        return false
    }

    public var count: Int { (0..<DenyTable.capacity).reduce(0) { $0 + (state($1) == MDATP_DENY_VALID ? 1 : 0) } }
}
