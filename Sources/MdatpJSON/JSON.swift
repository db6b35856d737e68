// A small JSON reader/writer with hard bounds, for hostile input (config
// files, CLI requests, status files) without Foundation in the sensor rooms.

public indirect enum JSON: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSON])
    case object([(String, JSON)])

    public static func == (a: JSON, b: JSON) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.number(x), .number(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    public subscript(key: String) -> JSON? {
        if case .object(let members) = self { return members.last(where: { $0.0 == key })?.1 }
        return nil
    }

    public var string: String? { if case .string(let s) = self { return s }; return nil }
    public var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var number: Double? { if case .number(let n) = self { return n }; return nil }
    public var array: [JSON]? { if case .array(let a) = self { return a }; return nil }
    public var members: [(String, JSON)]? { if case .object(let m) = self { return m }; return nil }
    /// An exact integer, or nil.
    public var int: Int? {
        guard case .number(let n) = self, n.rounded() == n, abs(n) < 9.007e15 else { return nil }
        return Int(n)
    }
}

public struct JSONError: Error, Equatable, CustomStringConvertible {
    public let offset: Int
    public let reason: String
    public var description: String { "invalid JSON at byte \(offset): \(reason)" }
}

public struct JSONLimits: Sendable {
    public var maxBytes = 1 << 20
    public var maxDepth = 32
    public var maxStringBytes = 64 * 1024
    public var maxItems = 100_000
    public init() {}
}

extension JSON {
    public static func parse(_ bytes: [UInt8], limits: JSONLimits = JSONLimits()) throws(JSONError) -> JSON {
        guard bytes.count <= limits.maxBytes else { throw JSONError(offset: 0, reason: "larger than \(limits.maxBytes) bytes") }
        var p = Parser(bytes: bytes, limits: limits)
        p.skipSpace()
        let v = try p.value(depth: 0)
        p.skipSpace()
        guard p.pos == bytes.count else { throw JSONError(offset: p.pos, reason: "trailing data") }
        return v
    }

    public static func parse(_ text: String, limits: JSONLimits = JSONLimits()) throws(JSONError) -> JSON {
        try parse(Array(text.utf8), limits: limits)
    }
}

struct Parser {
    let bytes: [UInt8]
    let limits: JSONLimits
    var pos = 0
    var items = 0

    init(bytes: [UInt8], limits: JSONLimits) {
        self.bytes = bytes
        self.limits = limits
    }

    func fail(_ r: String) -> JSONError { JSONError(offset: pos, reason: r) }

    mutating func skipSpace() {
        while pos < bytes.count, [0x20, 0x09, 0x0a, 0x0d].contains(bytes[pos]) { pos += 1 }
    }

    mutating func expect(_ word: String) throws(JSONError) {
        for b in word.utf8 {
            guard pos < bytes.count, bytes[pos] == b else { throw fail("expected \(word)") }
            pos += 1
        }
    }

    mutating func value(depth: Int) throws(JSONError) -> JSON {
        guard depth <= limits.maxDepth else { throw fail("nested deeper than \(limits.maxDepth)") }
        items += 1
        guard items <= limits.maxItems else { throw fail("more than \(limits.maxItems) values") }
        guard pos < bytes.count else { throw fail("unexpected end") }
        switch bytes[pos] {
        case UInt8(ascii: "{"):
            pos += 1
            var members: [(String, JSON)] = []
            skipSpace()
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(members) }
            while true {
                skipSpace()
                guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else { throw fail("expected a key") }
                let key = try string()
                skipSpace()
                try expect(":")
                skipSpace()
                members.append((key, try value(depth: depth + 1)))
                skipSpace()
                guard pos < bytes.count else { throw fail("unexpected end") }
                if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
                if bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(members) }
                throw fail("expected , or }")
            }
        case UInt8(ascii: "["):
            pos += 1
            var elements: [JSON] = []
            skipSpace()
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(elements) }
            while true {
                skipSpace()
                elements.append(try value(depth: depth + 1))
                skipSpace()
                guard pos < bytes.count else { throw fail("unexpected end") }
                if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
                if bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(elements) }
                throw fail("expected , or ]")
            }
        case UInt8(ascii: "\""):
            return .string(try string())
        case UInt8(ascii: "t"): try expect("true"); return .bool(true)
        case UInt8(ascii: "f"): try expect("false"); return .bool(false)
        case UInt8(ascii: "n"): try expect("null"); return .null
        default:
            return .number(try number())
        }
    }

    mutating func number() throws(JSONError) -> Double {
        let start = pos
        while pos < bytes.count, "+-0123456789.eE".utf8.contains(bytes[pos]) { pos += 1 }
        guard pos > start, pos - start < 64,
              let d = Double(String(decoding: bytes[start..<pos], as: UTF8.self)), d.isFinite else {
            pos = start
            throw fail("bad number")
        }
        return d
    }

    mutating func hex4() throws(JSONError) -> UInt32 {
        guard pos + 4 <= bytes.count, let v = UInt32(String(decoding: bytes[pos..<pos + 4], as: UTF8.self), radix: 16) else {
            throw fail("bad \\u escape")
        }
        pos += 4
        return v
    }

    mutating func string() throws(JSONError) -> String {
        pos += 1 // opening quote
        var out: [UInt8] = []
        while true {
            guard pos < bytes.count else { throw fail("unterminated string") }
            guard out.count <= limits.maxStringBytes else { throw fail("string longer than \(limits.maxStringBytes) bytes") }
            let b = bytes[pos]
            pos += 1
            switch b {
            case UInt8(ascii: "\""):
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard pos < bytes.count else { throw fail("unterminated escape") }
                let e = bytes[pos]
                pos += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(8)
                case UInt8(ascii: "f"): out.append(12)
                case UInt8(ascii: "n"): out.append(10)
                case UInt8(ascii: "r"): out.append(13)
                case UInt8(ascii: "t"): out.append(9)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if scalar >= 0xD800 && scalar < 0xDC00 {
                        try expect("\\u")
                        let low = try hex4()
                        guard low >= 0xDC00 && low < 0xE000 else { throw fail("bad surrogate pair") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let u = Unicode.Scalar(scalar) else { throw fail("bad code point") }
                    out.append(contentsOf: Array(String(Character(u)).utf8))
                default: throw fail("bad escape")
                }
            default:
                guard b >= 0x20 else { throw fail("control character in string") }
                out.append(b)
            }
        }
    }
}

// MARK: writing

extension JSON {
    /// Compact, or indented by two spaces when `pretty`.
    public func serialized(pretty: Bool = false) -> String {
        var out = ""
        out.reserveCapacity(256)
        write(&out, pretty: pretty, indent: 0)
        return out
    }

    func write(_ out: inout String, pretty: Bool, indent: Int) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let n):
            if n.rounded() == n && abs(n) < 1e15 { out += String(Int64(n)) } else { out += "\(n)" }
        case .string(let s): JSON.quote(s, into: &out)
        case .array(let a):
            if a.isEmpty { out += "[]"; return }
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += "," }
                if pretty { out += "\n" + String(repeating: "  ", count: indent + 1) }
                v.write(&out, pretty: pretty, indent: indent + 1)
            }
            if pretty { out += "\n" + String(repeating: "  ", count: indent) }
            out += "]"
        case .object(let m):
            if m.isEmpty { out += "{}"; return }
            out += "{"
            for (i, (k, v)) in m.enumerated() {
                if i > 0 { out += "," }
                if pretty { out += "\n" + String(repeating: "  ", count: indent + 1) }
                JSON.quote(k, into: &out)
                out += pretty ? ": " : ":"
                v.write(&out, pretty: pretty, indent: indent + 1)
            }
            if pretty { out += "\n" + String(repeating: "  ", count: indent) }
            out += "}"
        }
    }

    public static func quote(_ s: String, into out: inout String) {
        // Most strings (paths, argv) need no escaping: append them whole.
        // A plain loop over the bytes: the generic contains(where:) was a visible
        // share of the EDR's per-event cost (every event's details go through here).
        let plain = s.utf8.withContiguousStorageIfAvailable { bytes -> Bool in
            for b in bytes where b < 0x20 || b == 0x22 || b == 0x5c || b == 0x7f { return false }
            return true
        } ?? !s.utf8.contains(where: { $0 < 0x20 || $0 == 0x22 || $0 == 0x5c || $0 == 0x7f })
        if plain {
            out.append("\"")
            out.append(s)
            out.append("\"")
            return
        }
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 || u.value == 0x7f {
                    let h = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
    }
}

extension JSON: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral, ExpressibleByFloatLiteral {
    public init(stringLiteral s: String) { self = .string(s) }
    public init(integerLiteral i: Int) { self = .number(Double(i)) }
    public init(booleanLiteral b: Bool) { self = .bool(b) }
    public init(floatLiteral d: Double) { self = .number(d) }
    public init(_ i: Int) { self = .number(Double(i)) }
    public init(_ u: UInt64) { self = .number(Double(u)) }
    public init(_ s: String) { self = .string(s) }
}

/// Builds one JSON object's text directly, without the `JSON` tree: for hot
/// paths (one per stored event).
public struct JSONObjectWriter {
    public private(set) var text = "{"
    var empty = true

    public init() { text.reserveCapacity(256) }

    mutating func key(_ k: String) {
        if !empty { text.append(",") }
        empty = false
        JSON.quote(k, into: &text)
        text.append(":")
    }

    public mutating func add(_ k: String, _ v: String) {
        key(k)
        JSON.quote(v, into: &text)
    }

    public mutating func add<I: BinaryInteger>(_ k: String, _ v: I) {
        key(k)
        JSON.appendInteger(v, to: &text)
    }

    public mutating func add(_ k: String, _ v: Bool) {
        key(k)
        text.append(v ? "true" : "false")
    }

    public mutating func add<I: BinaryInteger>(_ k: String, _ list: [I]) {
        key(k)
        text.append("[")
        for (i, v) in list.enumerated() {
            if i > 0 { text.append(",") }
            JSON.appendInteger(v, to: &text)
        }
        text.append("]")
    }

    public mutating func finish() -> String {
        text.append("}")
        return text
    }
}

extension JSON {
    /// Decimal digits of an integer appended without the generic `description`
    /// machinery (hot path: several per stored event).
    public static func appendInteger<I: BinaryInteger>(_ v: I, to out: inout String) {
        if let small = Int64(exactly: v) {
            var n = small.magnitude
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 21) { buf in
                var i = 21
                repeat {
                    i -= 1
                    buf[i] = UInt8(48 + n % 10)
                    n /= 10
                } while n > 0
                if small < 0 {
                    i -= 1
                    buf[i] = 45
                }
                out.append(String(decoding: UnsafeBufferPointer(rebasing: buf[i..<21]), as: UTF8.self))
            }
        } else {
            out.append(String(v))
        }
    }

    /// `["a","b"]` for a list of strings, without building a tree.
    public static func stringArrayText(_ list: [String]) -> String {
        var out = "["
        for (i, s) in list.enumerated() {
            if i > 0 { out.append(",") }
            quote(s, into: &out)
        }
        out.append("]")
        return out
    }
}
