import Glibc
import MdatpRing
import MdatpSystem
import XCTest

/// A ring in plain process memory: both ends, as the rooms would map them.
final class TestRing {
    let data: UnsafeMutableRawPointer
    let cursor: UnsafeMutableRawPointer
    let capacity: Int
    let wake: Int32
    let producer: RingProducer
    var consumer: RingConsumer

    init(capacity: Int) throws {
        self.capacity = capacity
        data = UnsafeMutableRawPointer.allocate(byteCount: RingLayout.headerBytes + capacity, alignment: 4096)
        data.initializeMemory(as: UInt8.self, repeating: 0, count: RingLayout.headerBytes + capacity)
        cursor = UnsafeMutableRawPointer.allocate(byteCount: RingLayout.cursorBytes, alignment: 4096)
        cursor.initializeMemory(as: UInt8.self, repeating: 0, count: RingLayout.cursorBytes)
        wake = try Sys.eventfd()
        producer = RingProducer(data: data, cursor: cursor, capacity: capacity, wakeFd: wake, initialize: true)
        consumer = RingConsumer(data: UnsafeRawPointer(data), cursor: cursor, wakeFd: wake)!
    }

    deinit {
        data.deallocate()
        cursor.deallocate()
        Sys.close(wake)
    }

    func push(_ value: UInt64, size: Int = 8) -> Bool {
        var bytes = [UInt8](repeating: UInt8(truncatingIfNeeded: value), count: max(8, size))
        withUnsafeBytes(of: value) { for i in 0..<8 { bytes[i] = $0[i] } }
        return producer.push(bytes)
    }

    func drain() -> [(seq: UInt64, value: UInt64, size: Int)] {
        var out: [(UInt64, UInt64, Int)] = []
        consumer.poll { seq, payload in
            out.append((seq, payload.loadUnaligned(as: UInt64.self), payload.count))
        }
        return out
    }
}

final class RingTests: XCTestCase {
    func testRecordsArriveInOrderWithSequenceNumbers() throws {
        let r = try TestRing(capacity: 4096)
        for i in 0..<10 { XCTAssertTrue(r.push(UInt64(i), size: 8 + i)) }
        let got = r.drain()
        XCTAssertEqual(got.map(\.value), Array(0..<10))
        XCTAssertEqual(got.map(\.seq), Array(0..<10))
        XCTAssertEqual(got.map(\.size), (0..<10).map { 8 + $0 })
        XCTAssertEqual(r.consumer.counters.consumed, 10)
        XCTAssertEqual(r.consumer.lostRecords, 0)
    }

    func testWrapAroundPadsAndKeepsEveryRecordWhole() throws {
        let r = try TestRing(capacity: 4096)
        // 100-byte payloads (116 with header -> 120): 4096/120 leaves a tail that forces padding.
        var expected: UInt64 = 0
        for round in 0..<50 {
            for _ in 0..<20 {
                XCTAssertTrue(r.push(expected, size: 100), "round \(round)")
                expected += 1
            }
            let got = r.drain()
            XCTAssertEqual(got.count, 20)
            XCTAssertEqual(got.first?.value, expected - 20)
            XCTAssertTrue(got.allSatisfy { $0.size == 100 })
        }
        XCTAssertGreaterThan(r.producer.counters.head, UInt64(4096 * 10), "the area wrapped many times")
        XCTAssertEqual(r.consumer.lostRecords, 0)
        XCTAssertEqual(r.producer.counters.dropped, 0)
    }

    func testFullRingDropsForThisConsumerAndCountsExactly() throws {
        let r = try TestRing(capacity: 4096)
        var accepted = 0
        var refused = 0
        for i in 0..<1000 {
            if r.push(UInt64(i), size: 48) { accepted += 1 } else { refused += 1 }
        }
        XCTAssertEqual(accepted, 4096 / 64, "each 48-byte payload takes 64 bytes")
        XCTAssertEqual(r.producer.counters.dropped, UInt64(refused))
        let got = r.drain()
        XCTAssertEqual(got.count, accepted)
        // The drops after the last accepted record show once accounted.
        r.consumer.accountTrailingDrops()
        XCTAssertEqual(r.consumer.lostRecords, UInt64(refused))
    }

    func testSlowConsumerSeesExactlyTheDroppedSequenceNumbersAsGaps() throws {
        let r = try TestRing(capacity: 8192)
        var seen: [UInt64] = []
        var producedOK = 0
        for i in 0..<20_000 {
            if r.push(UInt64(i), size: 24) { producedOK += 1 }
            // The consumer keeps up only now and then.
            if i % 700 == 0 { seen += r.drain().map(\.seq) }
        }
        seen += r.drain().map(\.seq)
        r.consumer.accountTrailingDrops()
        let dropped = r.producer.counters.dropped
        XCTAssertGreaterThan(dropped, 0)
        XCTAssertEqual(UInt64(seen.count), UInt64(producedOK))
        XCTAssertEqual(dropped + UInt64(seen.count), 20_000)
        // Gaps in the sequence are exactly the drops.
        var gaps: UInt64 = 0
        var expected: UInt64 = 0
        for s in seen {
            gaps += s - expected
            expected = s + 1
        }
        gaps += 20_000 - expected
        XCTAssertEqual(gaps, dropped)
        XCTAssertEqual(r.consumer.lostRecords, dropped)
    }

    func testOversizedRecordIsDroppedNotWritten() throws {
        let r = try TestRing(capacity: 4096)
        XCTAssertFalse(r.push(1, size: 4096))
        XCTAssertTrue(r.push(2, size: 16))
        let got = r.drain()
        XCTAssertEqual(got.map(\.value), [2])
        XCTAssertEqual(got.map(\.seq), [1], "the dropped record consumed sequence 0")
        XCTAssertEqual(r.consumer.lostRecords, 1)
    }

    func testGarbageInTheConsumerCursorCannotHarmTheProducer() throws {
        let r = try TestRing(capacity: 4096)
        XCTAssertTrue(r.push(1))
        // A hostile consumer writes nonsense into its tail: far ahead, misaligned, far behind.
        for garbage: UInt64 in [UInt64.max, 3, 1 << 40, r.producer.counters.head &+ 4096] {
            r.cursor.storeBytes(of: garbage, toByteOffset: RingLayout.offTail, as: UInt64.self)
            for i in 0..<200 { _ = r.push(UInt64(i), size: 32) }
            let c = r.producer.counters
            XCTAssertLessThanOrEqual(c.head &- c.tail, UInt64(r.capacity), "tail brought back within one capacity")
            XCTAssertTrue(RingLayout.tailIsValid(head: c.head, tail: c.tail, capacity: r.capacity))
        }
        XCTAssertGreaterThanOrEqual(r.producer.counters.cursorResets, 3)
        // The consumer, resynchronised, still reads well-formed records.
        r.consumer = RingConsumer(data: UnsafeRawPointer(r.data), cursor: r.cursor, wakeFd: r.wake)!
        let pending = r.drain()
        XCTAssertFalse(pending.isEmpty)
        XCTAssertTrue(pending.allSatisfy { $0.size == 32 || $0.size == 8 })
        XCTAssertTrue(r.push(777, size: 8))
        XCTAssertEqual(r.drain().map(\.value), [777])
    }

    func testGarbageInTheDataAreaIsRejectedByTheConsumer() throws {
        let r = try TestRing(capacity: 4096)
        XCTAssertTrue(r.push(1, size: 40))
        XCTAssertTrue(r.push(2, size: 40))
        // Corrupt the second record's size (as a broken producer would).
        let area = r.data + RingLayout.headerBytes
        area.storeBytes(of: UInt32(9999), toByteOffset: 56, as: UInt32.self)
        let got = r.drain()
        XCTAssertEqual(got.map(\.value), [1])
        XCTAssertEqual(r.consumer.corruptions, 1)
        XCTAssertTrue(r.consumer.isEmpty, "resynchronised at head")
        XCTAssertTrue(r.push(3))
        XCTAssertEqual(r.drain().map(\.value), [3])
    }

    func testRestartedConsumerResumesFromItsCursor() throws {
        let r = try TestRing(capacity: 4096)
        for i in 0..<5 { XCTAssertTrue(r.push(UInt64(i))) }
        r.consumer.poll(max: 2) { _, _ in }
        // The room dies; a new process maps the same pages.
        r.consumer = RingConsumer(data: UnsafeRawPointer(r.data), cursor: r.cursor, wakeFd: r.wake)!
        XCTAssertEqual(r.drain().map(\.value), [2, 3, 4])
        XCTAssertEqual(r.consumer.lostRecords, 0)
    }

    func testWakeupIsSignalledOnlyWhenTheConsumerWaits() throws {
        let r = try TestRing(capacity: 4096)
        XCTAssertTrue(r.push(1))
        r.producer.flushWakeup()
        XCTAssertEqual(Sys.eventfdDrain(r.wake), 0, "consumer not waiting: no syscall spent")
        _ = r.drain()
        r.cursor.storeBytes(of: UInt32(1), toByteOffset: RingLayout.offWaiting, as: UInt32.self)
        XCTAssertTrue(r.push(2))
        r.producer.flushWakeup()
        r.producer.flushWakeup()
        XCTAssertEqual(Sys.eventfdDrain(r.wake), 1, "one wakeup per batch")
    }

    func testMultiThreadStressDeliversEverythingInOrderOrCountsIt() throws {
        let r = try TestRing(capacity: 1 << 16)
        let total = 400_000
        final class Box: @unchecked Sendable {
            var received: [UInt64] = []
            var done = false
        }
        let box = Box()
        box.received.reserveCapacity(total)
        var consumerThread = pthread_t()
        let ctx = Unmanaged.passRetained(Context(ring: r, box: box, total: total)).toOpaque()
        final class Context {
            let ring: TestRing
            let box: Box
            let total: Int
            init(ring: TestRing, box: Box, total: Int) {
                self.ring = ring
                self.box = box
                self.total = total
            }
        }
        pthread_create(&consumerThread, nil, { raw in
            let c = Unmanaged<Context>.fromOpaque(raw!).takeRetainedValue()
            var idle = 0
            while idle < 2000 {
                let n = c.ring.consumer.poll { _, payload in c.box.received.append(payload.loadUnaligned(as: UInt64.self)) }
                if n == 0 {
                    if c.box.done { idle += 1 }
                    _ = c.ring.consumer.wait(timeoutMs: 1)
                } else { idle = 0 }
            }
            c.ring.consumer.accountTrailingDrops()
            return nil
        }, ctx)
        var accepted = 0
        for i in 0..<total {
            if r.push(UInt64(i), size: 8 + (i % 57)) { accepted += 1 }
            if i % 64 == 0 { r.producer.flushWakeup() }
        }
        r.producer.flushWakeup()
        box.done = true
        pthread_join(consumerThread, nil)
        XCTAssertEqual(box.received.count, accepted)
        XCTAssertEqual(zip(box.received, box.received.dropFirst()).allSatisfy { $0 < $1 }, true, "strictly increasing")
        XCTAssertEqual(r.consumer.lostRecords, UInt64(total - accepted))
        XCTAssertEqual(r.producer.counters.dropped, UInt64(total - accepted))
    }

    func testConsumerMapsTheDataReadOnlyAndCannotRemapItWritable() throws {
        let d = try RingFiles.create(name: "test", capacity: 8192)
        defer { [d.data, d.dataReadOnly, d.cursor, d.wake].forEach(Sys.close) }
        let consumer = try RingFiles.mapConsumer(dataReadOnly: d.dataReadOnly, cursor: d.cursor, wake: d.wake)
        XCTAssertEqual(consumer.capacity, 8192)
        XCTAssertThrowsError(try Sys.mmapShared(d.dataReadOnly, length: 4096, offset: 0, writable: true)) { e in
            XCTAssertEqual((e as? Errno)?.code, EACCES)
        }
        // Sealed against resize.
        XCTAssertThrowsError(try Sys.ftruncate(d.data, 4096))
        let producer = try RingFiles.mapProducer(data: d.data, cursor: d.cursor, wake: d.wake)
        XCTAssertTrue(producer.push([1, 2, 3, 4, 5, 6, 7, 8]))
        var got: [UInt8] = []
        consumer.poll { _, p in got = Array(p) }
        XCTAssertEqual(got, [1, 2, 3, 4, 5, 6, 7, 8])
    }
}
