// Compiled value tests: each Sigma value (with its modifiers) becomes one
// matcher made at load time — no regex or glob is compiled per event.
import CHyperscan
import Glibc

/// A value pattern after wildcard parsing: literals, `*` and `?`.
enum GlobPart: Equatable {
    case literal([UInt8])
    case star
    case one
}

/// A compiled regular expression (Hyperscan, block mode).
final class SigmaRegex {
    let handle: OpaquePointer
    let pattern: String

    init(_ pattern: String, caseless: Bool, multiline: Bool, dotall: Bool) throws(SigmaRefusal) {
        var flags: UInt32 = MDATP_RE_UTF8
        if caseless { flags |= UInt32(MDATP_HS_CASELESS.rawValue) }
        if multiline { flags |= MDATP_RE_MULTILINE }
        if dotall { flags |= UInt32(MDATP_HS_DOTALL.rawValue) }
        var err = [CChar](repeating: 0, count: 256)
        guard let h = mdatp_re_compile(pattern, flags, &err, err.count) else {
            let why = String(decoding: err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw SigmaRefusal("regular expression '\(pattern)' is not supported: \(why)")
        }
        handle = h
        self.pattern = pattern
    }

    deinit { mdatp_re_free(handle) }

    func matches(_ b: [UInt8]) -> Bool {
        b.withUnsafeBytes { mdatp_re_match(handle, $0.baseAddress, $0.count) == 1 }
    }
}

/// An IPv4 or IPv6 network.
struct CIDR: Equatable {
    let v6: Bool
    let address: [UInt8]
    let bits: Int

    init(_ s: String) throws(SigmaRefusal) {
        let parts = s.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let addr = CIDR.parseIP(String(parts[0])) else { throw SigmaRefusal("'\(s)' is not a CIDR network") }
        v6 = addr.count == 16
        let maxBits = v6 ? 128 : 32
        if parts.count == 2 {
            guard let b = Int(parts[1]), (0...maxBits).contains(b) else { throw SigmaRefusal("'\(s)' has a bad prefix length") }
            bits = b
        } else {
            bits = maxBits
        }
        address = addr
    }

    static func parseIP(_ s: String) -> [UInt8]? {
        var t = s
        if t.hasPrefix("[") && t.hasSuffix("]") { t = String(t.dropFirst().dropLast()) }
        var v4 = in_addr()
        if inet_pton(AF_INET, t, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, t, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }

    func contains(_ b: [UInt8]) -> Bool {
        guard var ip = CIDR.parseIP(String(decoding: b, as: UTF8.self)) else { return false }
        // An IPv4-mapped IPv6 address is its IPv4 address.
        if !v6 && ip.count == 16 && ip[0..<10].allSatisfy({ $0 == 0 }) && ip[10] == 0xff && ip[11] == 0xff { ip = Array(ip[12...]) }
        guard ip.count == address.count else { return false }
        var left = bits
        for i in 0..<ip.count where left > 0 {
            let n = min(8, left)
            let mask = UInt8(truncatingIfNeeded: 0xff << (8 - n))
            if ip[i] & mask != address[i] & mask { return false }
            left -= n
        }
        return true
    }
}

enum NumericOp { case gt, gte, lt, lte }

/// One value test on one field's value.
enum ValueMatcher {
    case equals([UInt8], cased: Bool)
    case prefix([UInt8], cased: Bool)
    case suffix([UInt8], cased: Bool)
    case contains([UInt8], cased: Bool)
    case glob([GlobPart], cased: Bool)
    case regex(SigmaRegex)
    case cidr(CIDR)
    case numeric(NumericOp, Double)
    case exists(Bool)
    case isNull
    /// The field equals (starts with, ends with, contains) another field's value.
    case fieldref(SigmaField, kind: FieldRefKind, cased: Bool)

    enum FieldRefKind { case equals, prefix, suffix, contains }

    /// Glob parts → the cheapest matcher that says the same.
    static func from(_ parts: [GlobPart], cased: Bool) -> ValueMatcher {
        let p = cased ? parts : parts.map { if case .literal(let l) = $0 { return .literal(asciiLowered(l)) }; return $0 }
        switch p.count {
        case 0: return .equals([], cased: cased)
        case 1:
            if case .literal(let l) = p[0] { return .equals(l, cased: cased) }
        case 2:
            if case .literal(let l) = p[0], p[1] == .star { return .prefix(l, cased: cased) }
            if p[0] == .star, case .literal(let l) = p[1] { return .suffix(l, cased: cased) }
        case 3:
            if p[0] == .star, case .literal(let l) = p[1], p[2] == .star { return .contains(l, cased: cased) }
        default: break
        }
        return .glob(p, cased: cased)
    }

    func matches(_ record: SigmaRecord, _ field: SigmaField?) -> Bool {
        switch self {
        case .exists(let want):
            let v = field.flatMap { record.raw($0) }
            return (v != nil && !v!.isEmpty) == want
        case .isNull:
            let v = field.flatMap { record.raw($0) }
            return v == nil || v!.isEmpty
        default: break
        }
        // A keyword (no field) searches the whole record.
        let cased: Bool
        switch self {
        case .equals(_, let c), .prefix(_, let c), .suffix(_, let c), .contains(_, let c), .glob(_, let c), .fieldref(_, _, let c): cased = c
        default: cased = true
        }
        let value: [UInt8]
        if let field {
            guard let v = cased ? record.raw(field) : record.lower(field) else { return false }
            value = v
        } else {
            value = record.keywords(lower: !cased)
        }
        switch self {
        case .equals(let l, _): return value == l
        case .prefix(let l, _): return value.count >= l.count && value.starts(with: l)
        case .suffix(let l, _): return value.count >= l.count && value[(value.count - l.count)...].elementsEqual(l)
        case .contains(let l, _): return ValueMatcher.find(l, in: value)
        case .glob(let parts, _): return ValueMatcher.glob(parts, value)
        case .regex(let r): return r.matches(field.flatMap { record.raw($0) } ?? record.keywords(lower: false))
        case .cidr(let c): return c.contains(value)
        case .numeric(let op, let n):
            guard let v = Double(String(decoding: value, as: UTF8.self).trimmingSpaces) else { return false }
            switch op {
            case .gt: return v > n
            case .gte: return v >= n
            case .lt: return v < n
            case .lte: return v <= n
            }
        case .fieldref(let other, let kind, _):
            guard let o = cased ? record.raw(other) : record.lower(other) else { return false }
            switch kind {
            case .equals: return value == o
            case .prefix: return value.starts(with: o)
            case .suffix: return value.count >= o.count && value[(value.count - o.count)...].elementsEqual(o)
            case .contains: return ValueMatcher.find(o, in: value)
            }
        case .exists, .isNull: return false
        }
    }

    static func find(_ needle: [UInt8], in hay: [UInt8]) -> Bool {
        hay.withUnsafeBytes { h in needle.withUnsafeBytes { n in find(n, in: h) } }
    }

    static func find(_ n: UnsafeRawBufferPointer, in h: UnsafeRawBufferPointer) -> Bool {
        if n.isEmpty { return true }
        if n.count > h.count { return false }
        // memchr for the first byte, then compare: glibc's memmem is not exported to Swift.
        let first = Int32(n[0])
        var start = 0
        let last = h.count - n.count
        while start <= last {
            guard let p = memchr(h.baseAddress! + start, first, last - start + 1) else { return false }
            let at = h.baseAddress!.distance(to: UnsafeRawPointer(p))
            if memcmp(h.baseAddress! + at, n.baseAddress!, n.count) == 0 { return true }
            start = at + 1
        }
        return false
    }

    /// `*` any run, `?` one byte; linear with one backtrack point.
    static func glob(_ parts: [GlobPart], _ s: [UInt8]) -> Bool {
        var p = 0, i = 0
        var starP = -1, starI = 0
        var litOff = 0
        while i <= s.count {
            if p < parts.count {
                switch parts[p] {
                case .star:
                    starP = p
                    starI = i
                    p += 1
                    litOff = 0
                    continue
                case .one where i < s.count:
                    p += 1
                    i += 1
                    continue
                case .literal(let l) where i < s.count && s[i] == l[litOff]:
                    litOff += 1
                    i += 1
                    if litOff == l.count { p += 1; litOff = 0 }
                    continue
                default: break
                }
            } else if i == s.count {
                return true
            }
            // Mismatch: back to the last star, one byte further.
            guard starP >= 0, starI < s.count else { return false }
            starI += 1
            i = starI
            p = starP + 1
            litOff = 0
        }
        return false
    }
}

/// Values as written in a rule → glob parts. `\*` `\?` `\\` escape; any other
/// backslash is itself (Windows paths in rules stay as written).
func globParts(_ s: String, wildcards: Bool = true) -> [GlobPart] {
    var parts: [GlobPart] = []
    var lit: [UInt8] = []
    let b = Array(s.utf8)
    var i = 0
    func flush() { if !lit.isEmpty { parts.append(.literal(lit)); lit = [] } }
    while i < b.count {
        let c = b[i]
        if wildcards && c == 0x5c, i + 1 < b.count, b[i + 1] == 0x2a || b[i + 1] == 0x3f || b[i + 1] == 0x5c {
            lit.append(b[i + 1])
            i += 2
            continue
        }
        if wildcards && c == 0x2a { flush(); if parts.last != .star { parts.append(.star) }; i += 1; continue }
        if wildcards && c == 0x3f { flush(); parts.append(.one); i += 1; continue }
        lit.append(c)
        i += 1
    }
    flush()
    return parts
}

// MARK: value transformations (base64, base64offset, windash, utf16)

enum Base64 {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ b: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity((b.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= b.count {
            let v = UInt32(b[i]) << 16 | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2])
            for s in [18, 12, 6, 0] { out.append(alphabet[Int((v >> UInt32(s)) & 63)]) }
            i += 3
        }
        let rest = b.count - i
        if rest > 0 {
            var v = UInt32(b[i]) << 16
            if rest == 2 { v |= UInt32(b[i + 1]) << 8 }
            out.append(alphabet[Int((v >> 18) & 63)])
            out.append(alphabet[Int((v >> 12) & 63)])
            out.append(rest == 2 ? alphabet[Int((v >> 6) & 63)] : 0x3d)
            out.append(0x3d)
        }
        return out
    }

    /// The three encodings of `b` as it may sit at any offset inside a longer
    /// encoded text: only the characters that do not depend on the neighbours.
    static func offsets(_ b: [UInt8]) -> [[UInt8]] {
        var out: [[UInt8]] = []
        for shift in 0..<3 {
            let enc = encode(Array(repeating: 0, count: shift) + b)
            let start = [0, 2, 3][shift]
            let cut = [0, 3, 2][(b.count + shift) % 3]   // trailing chars mixed with padding or the next byte
            let end = enc.count - cut
            guard start < end else { continue }
            out.append(Array(enc[start..<end]))
        }
        return out
    }
}

enum WindowsDash {
    static let dashes: [[UInt8]] = [Array("-".utf8), Array("/".utf8), Array("\u{2013}".utf8), Array("\u{2014}".utf8), Array("\u{2015}".utf8)]

    /// Every variant with each option dash (`-` or `/` at a word start) written another way.
    static func variants(_ s: String) -> [String] {
        let b = Array(s.utf8)
        var positions: [Int] = []
        for i in b.indices where (b[i] == 0x2d || b[i] == 0x2f) && (i == 0 || b[i - 1] == 0x20) { positions.append(i) }
        guard !positions.isEmpty else { return [s] }
        var out: [String] = []
        for d in dashes {
            var v: [UInt8] = []
            var last = 0
            for p in positions {
                v += b[last..<p]
                v += d
                last = p + 1
            }
            v += b[last...]
            out.append(String(decoding: v, as: UTF8.self))
        }
        return out
    }
}

enum UTF16 {
    static func encode(_ s: String, bigEndian: Bool, bom: Bool) -> [UInt8] {
        var out: [UInt8] = bom ? (bigEndian ? [0xfe, 0xff] : [0xff, 0xfe]) : []
        for u in s.utf16 {
            let hi = UInt8(u >> 8), lo = UInt8(u & 0xff)
            out += bigEndian ? [hi, lo] : [lo, hi]
        }
        return out
    }
}
