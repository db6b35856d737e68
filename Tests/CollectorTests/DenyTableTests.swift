import CMdatpABI
@testable import Collector
import XCTest

final class DenyTableTests: XCTestCase {
    func withTable(_ body: (DenyTable, UnsafeMutablePointer<mdatp_deny_entry>) -> Void) {
        let slots = UnsafeMutablePointer<mdatp_deny_entry>.allocate(capacity: DenyTable.capacity)
        slots.initialize(repeating: mdatp_deny_entry(), count: DenyTable.capacity)
        defer { slots.deallocate() }
        body(DenyTable(slots: slots), slots)
    }

    /// The kernel's lookup, written again from the ABI's rules.
    func kernelFinds(_ slots: UnsafeMutablePointer<mdatp_deny_entry>, dev: UInt32, ino: UInt64, generation: UInt32 = 0) -> Bool {
        let start = Int(mdatp_deny_hash(ino, dev))
        for p in 0..<Int(MDATP_DENY_PROBES) {
            let e = slots[(start + p) & (DenyTable.capacity - 1)]
            if e.state == MDATP_DENY_EMPTY { return false }
            if e.state == MDATP_DENY_VALID {
                if e.ino == ino && e.dev == dev && (e.flags & MDATP_DENY_HAS_GENERATION == 0 || e.generation == generation) { return true }
                continue
            }
            if e.state != MDATP_DENY_REMOVED { return false } // corrupt: fail open
        }
        return false
    }

    func testInsertFindRemove() {
        withTable { t, slots in
            XCTAssertEqual(t.insert(dev: 254 << 20, ino: 42), .added)
            XCTAssertEqual(t.insert(dev: 254 << 20, ino: 42), .present)
            XCTAssertTrue(kernelFinds(slots, dev: 254 << 20, ino: 42))
            XCTAssertFalse(kernelFinds(slots, dev: 254 << 20, ino: 43))
            XCTAssertTrue(t.remove(dev: 254 << 20, ino: 42))
            XCTAssertFalse(kernelFinds(slots, dev: 254 << 20, ino: 42))
            XCTAssertEqual(t.count, 0)
        }
    }

    func testAReusedInodeNumberIsNotDenied() {
        withTable { t, slots in
            XCTAssertEqual(t.insert(dev: 8 << 20, ino: 77, generation: 1234), .added)
            XCTAssertTrue(kernelFinds(slots, dev: 8 << 20, ino: 77, generation: 1234))
            XCTAssertFalse(kernelFinds(slots, dev: 8 << 20, ino: 77, generation: 999), "same number, another file")
            XCTAssertEqual(t.insert(dev: 8 << 20, ino: 77, generation: 1234), .present)
            // The number is denied again for a new file: the old identity is replaced, not doubled.
            XCTAssertEqual(t.insert(dev: 8 << 20, ino: 77, generation: 999), .added)
            XCTAssertTrue(kernelFinds(slots, dev: 8 << 20, ino: 77, generation: 999))
            XCTAssertFalse(kernelFinds(slots, dev: 8 << 20, ino: 77, generation: 1234))
            XCTAssertEqual(t.count, 1)
            // A filesystem without generations: the number alone.
            XCTAssertEqual(t.insert(dev: 9 << 20, ino: 5), .added)
            XCTAssertTrue(kernelFinds(slots, dev: 9 << 20, ino: 5, generation: 42))
        }
    }

    func testManyEntriesStayFindableAndAFullRunIsReported() {
        withTable { t, slots in
            var added: [(UInt32, UInt64)] = []
            for i in 0..<2000 {
                let dev = UInt32(8 << 20 | (i % 3)), ino = UInt64(1000 + i * 7919)
                if t.insert(dev: dev, ino: ino) == .added { added.append((dev, ino)) }
            }
            XCTAssertGreaterThan(added.count, 1900)
            for (d, i) in added { XCTAssertTrue(kernelFinds(slots, dev: d, ino: i)) }
            XCTAssertEqual(t.count, added.count)
        }
    }

    func testRemovedSlotsAreReusedAndProbingContinuesPastThem() {
        withTable { t, slots in
            // Force collisions: same hash start by brute force.
            let start = mdatp_deny_hash(1, 5)
            var colliding: [UInt64] = [1]
            var ino: UInt64 = 2
            while colliding.count < 3 {
                if mdatp_deny_hash(ino, 5) == start { colliding.append(ino) }
                ino += 1
            }
            for i in colliding { XCTAssertEqual(t.insert(dev: 5, ino: i), .added) }
            XCTAssertTrue(t.remove(dev: 5, ino: colliding[0]))
            XCTAssertTrue(kernelFinds(slots, dev: 5, ino: colliding[2]), "found past a removed slot")
            XCTAssertEqual(t.insert(dev: 5, ino: 999_999), .added)
        }
    }
}
