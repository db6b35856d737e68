import Foundation
import ScanEngine
@testable import Scanner
import XCTest

final class ScanCacheTests: XCTestCase {
    let a = FileID(dev: 8 << 20 | 1, ino: 42)
    let b = FileID(dev: 8 << 20 | 1, ino: 43)
    func state(_ size: Int64 = 10, mtime: Int64 = 1, archives: Bool = true, detection: Detection? = nil) -> CachedVerdict {
        CachedVerdict(size: size, mtimeNs: mtime, ctimeNs: mtime, archives: archives, detection: detection)
    }

    func testAHitNeedsTheSameContentStateAndEnoughDepth() {
        var c = ScanCache(capacity: 8)
        XCTAssertNil(c.lookup(a, size: 10, mtimeNs: 1, ctimeNs: 1, archives: false))
        c.store(a, state(archives: false))
        XCTAssertEqual(c.lookup(a, size: 10, mtimeNs: 1, ctimeNs: 1, archives: false), .some(nil), "clean")
        XCTAssertNil(c.lookup(a, size: 10, mtimeNs: 1, ctimeNs: 1, archives: true), "archives were not opened then")
        c.store(a, state())
        XCTAssertEqual(c.lookup(a, size: 10, mtimeNs: 1, ctimeNs: 1, archives: false), .some(nil), "an archive-deep verdict holds for both")
        XCTAssertNil(c.lookup(a, size: 10, mtimeNs: 2, ctimeNs: 2, archives: false), "changed since")
        XCTAssertNil(c.lookup(a, size: 10, mtimeNs: 1, ctimeNs: 1, archives: false), "and the stale entry is gone")
    }

    func testWriteEventsInvalidateAndOnlyCleanVerdictsArePersisted() {
        var c = ScanCache(capacity: 8)
        c.store(a, state())
        c.store(b, state(detection: Detection(name: "X", type: .virus, engine: "hash")))
        XCTAssertEqual(c.lookup(b, size: 10, mtimeNs: 1, ctimeNs: 1, archives: true)??.name, "X")
        var changes = c.takeChanges()
        XCTAssertEqual(changes.upsert.map(\.0), [a])
        XCTAssertEqual(changes.delete, [b])
        c.invalidate(a)
        XCTAssertNil(c.lookup(a, size: 10, mtimeNs: 1, ctimeNs: 1, archives: true))
        changes = c.takeChanges()
        XCTAssertEqual(changes.upsert.count, 0)
        XCTAssertEqual(changes.delete, [a])
    }

    func testMemoryIsBoundedByTwoGenerations() {
        var c = ScanCache(capacity: 100)
        for i in 0..<1000 { c.store(FileID(dev: 1, ino: UInt64(i)), state()) }
        XCTAssertLessThanOrEqual(c.count, 200)
        XCTAssertGreaterThan(c.evictions, 0)
        // Recent entries survive, a hit in the old generation is kept young.
        XCTAssertNotNil(c.lookup(FileID(dev: 1, ino: 999), size: 10, mtimeNs: 1, ctimeNs: 1, archives: true))
        let oldest = (0..<1000).first { c.lookup(FileID(dev: 1, ino: UInt64($0)), size: 10, mtimeNs: 1, ctimeNs: 1, archives: true) != nil }
        XCTAssertNotNil(oldest)
        XCTAssertGreaterThanOrEqual(oldest!, 800)
    }

    func testTheStoreKeepsCleanVerdictsOfTheCurrentDefinitionsOnly() throws {
        let path = NSTemporaryDirectory() + "cache-\(UUID().uuidString).db"
        defer { try? FileManager.default.removeItem(atPath: path) }
        var store: ThreatStore? = try ThreatStore(path: path)
        try store!.saveCache(upsert: [(a, state()), (b, state(20, mtime: 5, archives: false))], delete: [], version: 7, limit: 10)
        try store!.saveCache(upsert: [], delete: [b], version: 7, limit: 10)
        store = nil
        store = try ThreatStore(path: path)
        let rows = try store!.loadCache(version: 7, limit: 10)
        XCTAssertEqual(rows.map(\.0), [a])
        XCTAssertEqual(rows.first?.1, state())
        XCTAssertEqual(try store!.loadCache(version: 8, limit: 10).count, 0, "new definitions: the old verdicts are void")
        XCTAssertEqual(try store!.loadCache(version: 7, limit: 10).count, 0, "and were deleted")
        // Bounded: past the limit the excess goes.
        try store!.saveCache(upsert: (0..<50).map { (FileID(dev: 1, ino: UInt64($0)), state()) }, delete: [], version: 9, limit: 20)
        XCTAssertEqual(try store!.loadCache(version: 9, limit: 100).count, 20)
    }
}
