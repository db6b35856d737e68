// ClamAV's body-signature hex grammar, parsed once into elements that two
// matchers share: a Hyperscan regex (the one-pass prefilter over every
// pattern) and our own anchored verifier for what a regex cannot say exactly
// (negated multi-byte alternatives, word and line boundaries, huge gaps).
//
//   4142        bytes              ??   any byte        4? / ?1   nibble wildcards
//   *           any number         {n} {-n} {n-} {n-m} [n-m]     bounded gaps
//   (41|42|4344) alternatives      !(41|42)  negated    (B) (L)   boundaries
//
// Signatures are hostile until loaded: lengths, gap sizes and element counts
// are bounded, and every error names the position it stopped at.

/// The set of byte values one position accepts.
public struct ByteClass: Hashable, Sendable {
    var w0: UInt64 = 0, w1: UInt64 = 0, w2: UInt64 = 0, w3: UInt64 = 0

    static let any: ByteClass = { var c = ByteClass(); c.w0 = ~0; c.w1 = ~0; c.w2 = ~0; c.w3 = ~0; return c }()

    static func exact(_ b: UInt8) -> ByteClass { var c = ByteClass(); c.insert(b); return c }

    mutating func insert(_ b: UInt8) {
        let bit = UInt64(1) << UInt64(b & 63)
        switch b >> 6 {
        case 0: w0 |= bit
        case 1: w1 |= bit
        case 2: w2 |= bit
        default: w3 |= bit
        }
    }

    func contains(_ b: UInt8) -> Bool {
        let bit = UInt64(1) << UInt64(b & 63)
        switch b >> 6 {
        case 0: return w0 & bit != 0
        case 1: return w1 & bit != 0
        case 2: return w2 & bit != 0
        default: return w3 & bit != 0
        }
    }

    var count: Int { w0.nonzeroBitCount + w1.nonzeroBitCount + w2.nonzeroBitCount + w3.nonzeroBitCount }
    var inverted: ByteClass { ByteClass(w0: ~w0, w1: ~w1, w2: ~w2, w3: ~w3) }
    func union(_ o: ByteClass) -> ByteClass { ByteClass(w0: w0 | o.w0, w1: w1 | o.w1, w2: w2 | o.w2, w3: w3 | o.w3) }

    /// Both cases of every ASCII letter in the class.
    var caseFolded: ByteClass {
        var c = self
        for b in UInt8(0x41)...0x5a where contains(b) || contains(b + 0x20) {
            c.insert(b)
            c.insert(b + 0x20)
        }
        return c
    }
}

public enum Boundary: Equatable, Sendable {
    case word   // (B): a non-alphanumeric byte or the file's edge on that side
    case line   // (L): CR or LF or the file's edge on that side
}

public enum PatternElement: Equatable, Sendable {
    case byte(ByteClass)
    case gap(min: Int, max: Int?)               // max nil: unbounded
    case alternatives([[ByteClass]], negated: Bool)
    case boundary(Boundary)
}

public struct BodyPattern: Equatable, Sendable {
    public static let maxHexChars = 16_384
    public static let maxElements = 8_192
    public static let maxGap = 1 << 20
    /// Bounded repeats above this become `.*` in the prefilter and are verified.
    static let maxRegexRepeat = 2_048

    public var elements: [PatternElement]
    public var caseless = false

    /// Parses ClamAV hex; errors say what and where.
    public init(hex text: Substring) throws(PatternError) {
        let s = Array(text.utf8)
        guard !s.isEmpty else { throw PatternError("empty signature") }
        guard s.count <= BodyPattern.maxHexChars else { throw PatternError("longer than \(BodyPattern.maxHexChars) characters") }
        var els: [PatternElement] = []
        var i = 0
        func number(_ j: inout Int) -> Int? {
            var v = 0, seen = false
            while j < s.count, s[j] >= 0x30, s[j] <= 0x39 {
                v = v * 10 + Int(s[j] - 0x30)
                seen = true
                if v > BodyPattern.maxGap { return nil }
                j += 1
            }
            return seen ? v : nil
        }
        while i < s.count {
            guard els.count < BodyPattern.maxElements else { throw PatternError("more than \(BodyPattern.maxElements) elements") }
            let c = s[i]
            switch c {
            case 0x2a: // *
                els.append(.gap(min: 0, max: nil))
                i += 1
            case 0x7b, 0x5b: // { [
                let close: UInt8 = c == 0x7b ? 0x7d : 0x5d
                var j = i + 1
                var lo = 0
                var hi: Int?
                if j < s.count, s[j] == 0x2d { // {-n}
                    j += 1
                    guard let n = number(&j) else { throw PatternError("bad gap at \(i)") }
                    hi = n
                } else {
                    guard let n = number(&j) else { throw PatternError("bad gap at \(i)") }
                    lo = n
                    if j < s.count, s[j] == 0x2d {
                        j += 1
                        hi = number(&j) // nil: {n-}
                        if c == 0x5b && hi == nil { throw PatternError("[n-m] needs both bounds at \(i)") }
                    } else {
                        hi = n
                    }
                }
                guard j < s.count, s[j] == close else { throw PatternError("unterminated gap at \(i)") }
                if let h = hi, h < lo { throw PatternError("gap {\(lo)-\(h)} has max below min at \(i)") }
                els.append(.gap(min: lo, max: hi))
                i = j + 1
            case 0x28, 0x21: // ( or !(
                var j = i
                let negated = c == 0x21
                if negated {
                    guard j + 1 < s.count, s[j + 1] == 0x28 else { throw PatternError("`!` must precede `(` at \(i)") }
                    j += 1
                }
                if !negated, j + 2 < s.count, s[j + 2] == 0x29 {
                    switch s[j + 1] {
                    case 0x42: els.append(.boundary(.word)); i = j + 3; continue
                    case 0x4c: els.append(.boundary(.line)); i = j + 3; continue
                    default: break
                    }
                }
                guard let end = s[(j + 1)...].firstIndex(of: 0x29) else { throw PatternError("unterminated alternatives at \(i)") }
                var branches: [[ByteClass]] = []
                for part in s[(j + 1)..<end].split(separator: 0x7c, omittingEmptySubsequences: false) {
                    var branch: [ByteClass] = []
                    var k = part.startIndex
                    while k < part.endIndex {
                        guard k + 1 < part.endIndex, let b = BodyPattern.byteClass(part[k], part[k + 1]) else {
                            throw PatternError("alternatives may hold only bytes, ?? and nibbles (at \(k))")
                        }
                        branch.append(b)
                        k += 2
                    }
                    guard !branch.isEmpty else { throw PatternError("empty alternative at \(i)") }
                    branches.append(branch)
                }
                guard branches.count >= 2 || negated else { throw PatternError("alternatives need at least two choices at \(i)") }
                guard branches.count <= 256 else { throw PatternError("more than 256 alternatives at \(i)") }
                if negated, Set(branches.map(\.count)).count != 1 { throw PatternError("negated alternatives must have one length at \(i)") }
                els.append(.alternatives(branches, negated: negated))
                i = end + 1
            default:
                guard i + 1 < s.count, let b = BodyPattern.byteClass(s[i], s[i + 1]) else {
                    throw PatternError("unexpected `\(String(decoding: [c], as: UTF8.self))` at \(i)")
                }
                els.append(.byte(b))
                i += 2
            }
        }
        if case .gap = els.first { throw PatternError("cannot begin with a gap") }
        if case .gap = els.last { throw PatternError("cannot end with a gap") }
        // Two fixed bytes in a row somewhere: a pattern of wildcards would fire everywhere.
        var run = 0, best = 0
        for e in els {
            if case .byte(let b) = e, b.count == 1 { run += 1; best = max(best, run) } else { run = 0 }
        }
        guard best >= 2 else { throw PatternError("needs at least two fixed bytes in a row") }
        elements = els
    }

    init(elements: [PatternElement], caseless: Bool) {
        self.elements = elements
        self.caseless = caseless
    }

    /// `xy`, `??`, `x?`, `?y` -> the byte class; nil when not hex.
    static func byteClass(_ a: UInt8, _ b: UInt8) -> ByteClass? {
        let q: UInt8 = 0x3f
        if a == q && b == q { return .any }
        var c = ByteClass()
        if a == q {
            guard let lo = HashSignatureSet.nibble(b) else { return nil }
            for hi in UInt8(0)..<16 { c.insert(hi << 4 | lo) }
            return c
        }
        guard let hi = HashSignatureSet.nibble(a) else { return nil }
        if b == q {
            for lo in UInt8(0)..<16 { c.insert(hi << 4 | lo) }
            return c
        }
        guard let lo = HashSignatureSet.nibble(b) else { return nil }
        return .exact(hi << 4 | lo)
    }

    /// The same pattern as UTF-16LE text (ClamAV's `w` modifier): every byte
    /// followed by a zero, gaps doubled.
    var wide: BodyPattern {
        let zero = ByteClass.exact(0)
        var out: [PatternElement] = []
        for e in elements {
            switch e {
            case .byte(let b): out += [.byte(b), .byte(zero)]
            case .gap(let lo, let hi): out.append(.gap(min: lo * 2, max: hi.map { $0 * 2 }))
            case .alternatives(let br, let neg): out.append(.alternatives(br.map { $0.flatMap { [$0, zero] } }, negated: neg))
            case .boundary: out.append(e)
            }
        }
        return BodyPattern(elements: out, caseless: caseless)
    }

    /// Whether the regex alone decides a match (else our verifier confirms).
    public var needsVerifier: Bool {
        elements.contains { e in
            switch e {
            case .boundary: return true
            case .alternatives(let br, let neg): return neg && br[0].count > 1
            case .gap(let lo, let hi): return max(lo, hi ?? 0) > BodyPattern.maxRegexRepeat
            case .byte: return false
            }
        }
    }

    /// Hyperscan syntax (to be compiled with DOTALL; CASELESS when `caseless`).
    public var regex: String {
        var out = ""
        for e in elements {
            switch e {
            case .byte(let b): out += BodyPattern.regex(b)
            case .gap(let lo, let hi):
                if max(lo, hi ?? 0) > BodyPattern.maxRegexRepeat { out += ".*" }
                else if let hi { out += lo == hi ? ".{\(lo)}" : ".{\(lo),\(hi)}" }
                else { out += lo == 0 ? ".*" : ".{\(lo),}" }
            case .alternatives(let br, let neg):
                if neg && br[0].count == 1 {
                    out += BodyPattern.regex(br.reduce(ByteClass()) { $0.union($1[0]) }.inverted)
                } else if neg {
                    out += ".{\(br[0].count)}"
                } else {
                    out += "(?:" + br.map { $0.map(BodyPattern.regex).joined() }.joined(separator: "|") + ")"
                }
            case .boundary: break // verified
            }
        }
        return out
    }

    static func hex2(_ b: UInt8) -> String {
        let d = Array("0123456789abcdef".utf8)
        return "\\x" + String(decoding: [d[Int(b >> 4)], d[Int(b & 15)]], as: UTF8.self)
    }

    static func regex(_ c: ByteClass) -> String {
        let n = c.count
        if n == 256 { return "." }
        if n == 1 { return hex2((0...255).first { c.contains(UInt8($0)) }.map(UInt8.init)!) }
        var out = "["
        var b = 0
        while b < 256 {
            guard c.contains(UInt8(b)) else { b += 1; continue }
            var e = b
            while e + 1 < 256 && c.contains(UInt8(e + 1)) { e += 1 }
            out += hex2(UInt8(b))
            if e > b { out += "-" + hex2(UInt8(e)) }
            b = e + 1
        }
        return out + "]"
    }

    // MARK: verifier

    /// Whether the pattern matches starting exactly at `start` of `data`.
    /// `budget` bounds the backtracking over gaps and alternatives.
    public func matches(_ data: UnsafeRawBufferPointer, at start: Int, budget: inout Int) -> Bool {
        let els = caseless ? elements.map(BodyPattern.folded) : elements
        return BodyPattern.match(els[...], data, start, &budget)
    }

    static func folded(_ e: PatternElement) -> PatternElement {
        switch e {
        case .byte(let b): return .byte(b.caseFolded)
        case .alternatives(let br, let neg): return .alternatives(br.map { $0.map(\.caseFolded) }, negated: neg)
        default: return e
        }
    }

    static func isAlnum(_ b: UInt8) -> Bool { (b >= 0x30 && b <= 0x39) || ((b | 0x20) >= 0x61 && (b | 0x20) <= 0x7a) }

    static func match(_ els: ArraySlice<PatternElement>, _ d: UnsafeRawBufferPointer, _ at: Int, _ budget: inout Int) -> Bool {
        var pos = at
        var rest = els
        while let e = rest.first {
            budget -= 1
            if budget <= 0 { return false }
            let index = rest.startIndex // slices keep the pattern's indices
            rest = rest.dropFirst()
            switch e {
            case .byte(let c):
                guard pos < d.count, c.contains(d[pos]) else { return false }
                pos += 1
            case .boundary(let kind):
                let before: UInt8? = pos > 0 ? d[pos - 1] : nil
                let after: UInt8? = pos < d.count ? d[pos] : nil
                // Which side is outside the signature: before it at its start, after it elsewhere.
                let outside = index == 0 ? before : after
                if let o = outside {
                    switch kind {
                    case .word: if isAlnum(o) { return false }
                    case .line: if o != 0x0a && o != 0x0d { return false }
                    }
                }
            case .alternatives(let br, let neg):
                if neg {
                    let len = br[0].count
                    guard pos + len <= d.count else { return false }
                    if br.contains(where: { b in b.indices.allSatisfy { b[$0].contains(d[pos + $0]) } }) { return false }
                    pos += len
                } else {
                    for b in br where pos + b.count <= d.count && b.indices.allSatisfy({ b[$0].contains(d[pos + $0]) }) {
                        if match(rest, d, pos + b.count, &budget) { return true }
                        if budget <= 0 { return false }
                    }
                    return false
                }
            case .gap(let lo, let hi):
                let last = min(d.count, hi.map { pos + $0 } ?? d.count)
                var p = pos + lo
                while p <= last {
                    if match(rest, d, p, &budget) { return true }
                    if budget <= 0 { return false }
                    p += 1
                }
                return false
            }
        }
        return true
    }
}

public struct PatternError: Error, Equatable, CustomStringConvertible {
    public let reason: String
    init(_ r: String) { reason = r }
    public var description: String { reason }
}
