// The shared-memory ring: layout and the pure index arithmetic both ends use.
//
// Two memfds per ring, both created by the watchdog (so a ring outlives a
// restarting room):
//   data   = one header page the producer writes + `capacity` bytes of records.
//            The consumer maps it read-only (it gets an O_RDONLY descriptor).
//   cursor = one page the consumer writes (tail, its counters, wait flag).
//            The producer reads it and treats every value there as hostile.
// Records are [size u32][kind u16][padding u16][seq u64][payload][padding],
// size counting all of it, 8-byte aligned; a record never wraps: the producer
// fills the end of the area with a pad record (8 bytes at least: size+kind).

public enum RingLayout {
    public static let magic: UInt64 = 0x474E_5250_5441_444D // "MDATPRNG" little-endian
    public static let version: UInt32 = 1
    public static let headerBytes = 4096
    public static let cursorBytes = 4096
    public static let recordHeaderBytes = 16

    // data header offsets
    public static let offMagic = 0
    public static let offVersion = 8
    public static let offCapacity = 12
    public static let offHead = 16
    public static let offProduced = 24
    public static let offDropped = 32
    public static let offNextSeq = 40
    public static let offCursorResets = 48
    public static let offProducerPid = 56

    // cursor offsets
    public static let offTail = 0
    public static let offConsumed = 8
    public static let offExpectedSeq = 16
    public static let offLost = 24
    public static let offWaiting = 32
    public static let offConsumerPid = 36

    public static let kindData: UInt16 = 1
    public static let kindPad: UInt16 = 2

    @inline(__always) public static func align8(_ n: Int) -> Int { (n + 7) & ~7 }

    /// Capacity must be a power of two, at least 4 KiB, at most 1 GiB.
    public static func validCapacity(_ c: Int) -> Bool {
        c >= 4096 && c <= (1 << 30) && (c & (c - 1)) == 0
    }

    /// The largest payload one record may carry (half the area, so a record
    /// always fits after padding).
    public static func maxPayload(capacity: Int) -> Int { capacity / 2 - recordHeaderBytes }

    /// A tail read from shared memory is usable only if it is aligned and lies
    /// within one capacity behind head (wrapping 64-bit arithmetic).
    @inline(__always)
    public static func tailIsValid(head: UInt64, tail: UInt64, capacity: Int) -> Bool {
        tail & 7 == 0 && head &- tail <= UInt64(capacity)
    }

    /// A record header read at `pos` is usable only if its size is aligned,
    /// holds its header (and its padding), fits before the end of the area and
    /// within what the producer has published, and its kind is known.
    @inline(__always)
    public static func recordIsValid(size: UInt32, kind: UInt16, padding: UInt16, pos: Int, available: UInt64, capacity: Int) -> Bool {
        let s = Int(size)
        guard s & 7 == 0, s <= capacity - pos, UInt64(s) <= available else { return false }
        switch kind {
        case kindData: return s >= recordHeaderBytes && padding < 8 && Int(padding) <= s - recordHeaderBytes
        case kindPad: return s >= 8
        default: return false
        }
    }
}

/// Counters of one ring as either side (or the watchdog) sees them.
public struct RingCounters: Equatable, Sendable, Codable {
    public var capacity: Int = 0
    public var head: UInt64 = 0
    public var tail: UInt64 = 0
    public var produced: UInt64 = 0
    public var dropped: UInt64 = 0
    public var consumed: UInt64 = 0
    public var lost: UInt64 = 0
    public var cursorResets: UInt64 = 0
    public var nextSeq: UInt64 = 0
    public var expectedSeq: UInt64 = 0

    public init() {}
    /// Bytes written and not yet consumed.
    public var fill: UInt64 { head &- tail > UInt64(capacity) ? UInt64(capacity) : head &- tail }
    /// Records the consumer has yet to read.
    public var lag: UInt64 { nextSeq &- expectedSeq > nextSeq ? 0 : nextSeq &- expectedSeq }
}
