// Producer and consumer ends of the shared-memory ring (see RingLayout).
// Single producer, single consumer, lock-free; the producer never blocks: a
// record that does not fit is dropped for this consumer alone and counted,
// and its sequence number is skipped so the consumer sees the gap.
import CMdatpLinux
import MdatpSystem

@inline(__always) func load64(_ p: UnsafeRawPointer, _ off: Int) -> UInt64 { mdatp_load_acquire_u64(p + off) }
@inline(__always) func store64(_ p: UnsafeMutableRawPointer, _ off: Int, _ v: UInt64) { mdatp_store_release_u64(p + off, v) }
@inline(__always) func load32(_ p: UnsafeRawPointer, _ off: Int) -> UInt32 { mdatp_load_acquire_u32(p + off) }
@inline(__always) func store32(_ p: UnsafeMutableRawPointer, _ off: Int, _ v: UInt32) { mdatp_store_release_u32(p + off, v) }

public final class RingProducer {
    let header: UnsafeMutableRawPointer
    let area: UnsafeMutableRawPointer
    let cursor: UnsafeRawPointer      // the consumer's page, hostile
    let cursorWritable: UnsafeMutableRawPointer
    public let capacity: Int
    let mask: Int
    let wakeFd: Int32
    // Producer-private copies: shared memory is only ever written, never trusted back.
    var head: UInt64
    var produced: UInt64
    var dropped: UInt64
    var nextSeq: UInt64
    var resets: UInt64
    var signalledHead: UInt64 = .max

    /// `data` maps the header page followed by the record area (writable);
    /// `cursor` maps the consumer's page. When `initialize`, the header is
    /// written fresh; otherwise the producer resumes from it (collector restart).
    public init(data: UnsafeMutableRawPointer, cursor: UnsafeMutableRawPointer, capacity: Int, wakeFd: Int32, initialize: Bool) {
        precondition(RingLayout.validCapacity(capacity), "ring capacity must be a power of two")
        header = data
        area = data + RingLayout.headerBytes
        self.cursor = UnsafeRawPointer(cursor)
        cursorWritable = cursor
        self.capacity = capacity
        mask = capacity - 1
        self.wakeFd = wakeFd
        if initialize || load64(data, RingLayout.offMagic) != RingLayout.magic {
            store64(data, RingLayout.offHead, 0)
            store64(data, RingLayout.offProduced, 0)
            store64(data, RingLayout.offDropped, 0)
            store64(data, RingLayout.offNextSeq, 0)
            store64(data, RingLayout.offCursorResets, 0)
            store32(data, RingLayout.offCapacity, UInt32(capacity))
            store32(data, RingLayout.offVersion, RingLayout.version)
            store64(data, RingLayout.offMagic, RingLayout.magic)
        }
        // Resume from the header the producer itself wrote last time.
        head = load64(data, RingLayout.offHead) & ~7
        produced = load64(data, RingLayout.offProduced)
        dropped = load64(data, RingLayout.offDropped)
        nextSeq = load64(data, RingLayout.offNextSeq)
        resets = load64(data, RingLayout.offCursorResets)
    }

    /// The consumer's tail, validated; a bad one is replaced by head (the
    /// consumer loses what was pending, sees it as a gap) and counted.
    @inline(__always)
    func validatedTail() -> UInt64 {
        let tail = load64(cursor, RingLayout.offTail)
        if RingLayout.tailIsValid(head: head, tail: tail, capacity: capacity) { return tail }
        resets += 1
        store64(header, RingLayout.offCursorResets, resets)
        store64(cursorWritable, RingLayout.offTail, head)
        return head
    }

    /// Appends one record; false when it was dropped (ring full for this consumer).
    @discardableResult
    public func push(_ payload: UnsafeRawBufferPointer) -> Bool {
        let seq = nextSeq
        nextSeq &+= 1
        let need = RingLayout.align8(RingLayout.recordHeaderBytes + payload.count)
        guard payload.count <= RingLayout.maxPayload(capacity: capacity) else {
            return drop()
        }
        let tail = validatedTail()
        var free = capacity - Int(head &- tail)
        var pos = Int(head) & mask
        let contiguous = capacity - pos
        if need > contiguous {
            // Pad to the end only if the record then fits at the start.
            guard free >= contiguous + need else { return drop() }
            area.storeBytes(of: UInt32(contiguous), toByteOffset: pos, as: UInt32.self)
            area.storeBytes(of: RingLayout.kindPad, toByteOffset: pos + 4, as: UInt16.self)
            area.storeBytes(of: UInt16(0), toByteOffset: pos + 6, as: UInt16.self)
            head &+= UInt64(contiguous)
            free -= contiguous
            pos = 0
        }
        guard free >= need else { return drop() }
        area.storeBytes(of: UInt32(need), toByteOffset: pos, as: UInt32.self)
        area.storeBytes(of: RingLayout.kindData, toByteOffset: pos + 4, as: UInt16.self)
        area.storeBytes(of: UInt16(need - RingLayout.recordHeaderBytes - payload.count), toByteOffset: pos + 6, as: UInt16.self)
        area.storeBytes(of: seq, toByteOffset: pos + 8, as: UInt64.self)
        if payload.count > 0 {
            (area + pos + RingLayout.recordHeaderBytes).copyMemory(from: payload.baseAddress!, byteCount: payload.count)
        }
        head &+= UInt64(need)
        produced &+= 1
        store64(header, RingLayout.offProduced, produced)
        store64(header, RingLayout.offNextSeq, nextSeq)
        store64(header, RingLayout.offHead, head) // publishes the record
        return true
    }

    public func push(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { push($0) }
    }

    private func drop() -> Bool {
        dropped &+= 1
        store64(header, RingLayout.offDropped, dropped)
        store64(header, RingLayout.offNextSeq, nextSeq)
        return false
    }

    /// Wakes the consumer if it sleeps and there is news: called once per
    /// batch, not per record.
    public func flushWakeup() {
        mdatp_fence_seq_cst()
        if load32(cursor, RingLayout.offWaiting) != 0 && signalledHead != head {
            signalledHead = head
            Sys.eventfdSignal(wakeFd)
        }
    }

    public var counters: RingCounters { RingView.counters(header: header, cursor: cursor) }
}

public final class RingConsumer {
    let header: UnsafeRawPointer       // read-only mapping
    let area: UnsafeRawPointer
    let cursor: UnsafeMutableRawPointer
    public let capacity: Int
    let mask: Int
    let wakeFd: Int32
    var tail: UInt64
    var consumed: UInt64
    var expectedSeq: UInt64
    var lost: UInt64
    public private(set) var corruptions: UInt64 = 0

    /// Resumes from the cursor page (so a restarted room continues where the
    /// last one stopped). Fails if the header does not describe a ring.
    public init?(data: UnsafeRawPointer, cursor: UnsafeMutableRawPointer, wakeFd: Int32) {
        guard load64(data, RingLayout.offMagic) == RingLayout.magic,
              load32(data, RingLayout.offVersion) == RingLayout.version else { return nil }
        let cap = Int(load32(data, RingLayout.offCapacity))
        guard RingLayout.validCapacity(cap) else { return nil }
        header = data
        area = data + RingLayout.headerBytes
        self.cursor = cursor
        capacity = cap
        mask = cap - 1
        self.wakeFd = wakeFd
        tail = load64(cursor, RingLayout.offTail)
        consumed = load64(cursor, RingLayout.offConsumed)
        expectedSeq = load64(cursor, RingLayout.offExpectedSeq)
        lost = load64(cursor, RingLayout.offLost)
        let head = load64(data, RingLayout.offHead)
        if !RingLayout.tailIsValid(head: head, tail: tail, capacity: cap) {
            tail = head
            store64(cursor, RingLayout.offTail, tail)
        }
    }

    /// Reads up to `max` records, calling `body(seq, payload)` for each; the
    /// payload points into the ring and is valid only during the call.
    /// Returns how many records were delivered.
    @discardableResult
    public func poll(max: Int = .max, _ body: (UInt64, UnsafeRawBufferPointer) -> Void) -> Int {
        var delivered = 0
        let head = load64(header, RingLayout.offHead)
        guard RingLayout.tailIsValid(head: head, tail: tail, capacity: capacity) else {
            resync(head)
            return 0
        }
        while tail != head && delivered < max {
            let pos = Int(tail) & mask
            let size = area.load(fromByteOffset: pos, as: UInt32.self)
            let kind = area.load(fromByteOffset: pos + 4, as: UInt16.self)
            let padding = area.load(fromByteOffset: pos + 6, as: UInt16.self)
            guard RingLayout.recordIsValid(size: size, kind: kind, padding: padding, pos: pos, available: head &- tail, capacity: capacity) else {
                resync(head)
                break
            }
            if kind == RingLayout.kindData {
                let seq = area.load(fromByteOffset: pos + 8, as: UInt64.self)
                if seq > expectedSeq { lost &+= seq - expectedSeq }
                expectedSeq = seq &+ 1
                let payload = UnsafeRawBufferPointer(start: area + pos + RingLayout.recordHeaderBytes,
                                                     count: Int(size) - RingLayout.recordHeaderBytes - Int(padding))
                body(seq, payload)
                consumed &+= 1
                delivered += 1
            }
            tail &+= UInt64(size)
        }
        publish()
        return delivered
    }

    /// Records dropped by the producer after the last one read show up as a
    /// gap only when the next record arrives; this accounts for them now.
    public func accountTrailingDrops() {
        let next = load64(header, RingLayout.offNextSeq)
        let head = load64(header, RingLayout.offHead)
        if head == tail && next > expectedSeq {
            lost &+= next - expectedSeq
            expectedSeq = next
            publish()
        }
    }

    private func resync(_ head: UInt64) {
        corruptions &+= 1
        tail = head
        publish()
    }

    private func publish() {
        store64(cursor, RingLayout.offConsumed, consumed)
        store64(cursor, RingLayout.offExpectedSeq, expectedSeq)
        store64(cursor, RingLayout.offLost, lost)
        store64(cursor, RingLayout.offTail, tail)
    }

    public var isEmpty: Bool { load64(header, RingLayout.offHead) == tail }

    /// Sleeps until the producer signals or `timeoutMs` passes; returns at once
    /// if records are pending.
    public func wait(timeoutMs: Int32, extraFds: [Int32] = []) -> [Bool] {
        store32(cursor, RingLayout.offWaiting, 1)
        mdatp_fence_seq_cst()
        defer { store32(cursor, RingLayout.offWaiting, 0) }
        if !isEmpty { return extraFds.map { _ in false } }
        let ready = (try? Sys.pollReadable([wakeFd] + extraFds, timeoutMs: timeoutMs)) ?? [Bool](repeating: false, count: extraFds.count + 1)
        if ready.first == true { Sys.eventfdDrain(wakeFd) }
        return Array(ready.dropFirst())
    }

    public var counters: RingCounters { RingView.counters(header: header, cursor: UnsafeRawPointer(cursor)) }
    public var lostRecords: UInt64 { lost }
}

/// A read-only view for the watchdog's status dump.
public enum RingView {
    public static func counters(header: UnsafeRawPointer, cursor: UnsafeRawPointer) -> RingCounters {
        var c = RingCounters()
        c.capacity = Int(load32(header, RingLayout.offCapacity))
        c.head = load64(header, RingLayout.offHead)
        c.produced = load64(header, RingLayout.offProduced)
        c.dropped = load64(header, RingLayout.offDropped)
        c.nextSeq = load64(header, RingLayout.offNextSeq)
        c.cursorResets = load64(header, RingLayout.offCursorResets)
        c.tail = load64(cursor, RingLayout.offTail)
        c.consumed = load64(cursor, RingLayout.offConsumed)
        c.expectedSeq = load64(cursor, RingLayout.offExpectedSeq)
        c.lost = load64(cursor, RingLayout.offLost)
        return c
    }
}
