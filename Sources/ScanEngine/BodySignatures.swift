// Body signatures: ClamAV .ndb (one pattern at an offset in files of a target
// type) and .ldb (logical combinations of up to 64 sub-patterns), all compiled
// into one Hyperscan database and matched in the same read pass as the
// hashes. Hyperscan reports where a pattern ends (and, for offset-bound
// patterns, its leftmost start); what it cannot decide exactly is confirmed by
// BodyPattern's verifier.
//
// Loading is strict about syntax (a malformed line refuses the set, naming
// file and line) and explicit about coverage: a well-formed signature using a
// construct this engine does not implement (PCRE sub-signatures, byte
// comparisons, icon groups, containers, ...) is skipped and listed in
// `unsupported` with the construct named; the rest of the set loads.
import CHyperscan
import Glibc

public struct BodySignatureSet: Sendable {
    /// The ClamAV functionality level we implement (signatures needing a newer engine are skipped).
    public static let functionalityLevel = 210
    public static let maxSubsignatures = 64
    public static let maxSignatures = 2_000_000
    public static let maxUnsupportedKept = 200

    struct Pattern {
        var pattern: BodyPattern
        var rule: mdatp_hs_rule
        var signature: Int
        var subsignature: Int
    }

    struct Signature {
        var name: String
        var targets: UInt32          // 0 = any
        var expression: LogicalExpression?  // nil: .ndb (one sub-signature)
        var subsignatures: Int
        var fileSize: ClosedRange<UInt64>?
        var entryPoint: ClosedRange<UInt64>?
        var sectionCount: ClosedRange<UInt64>?
    }

    var patterns: [Pattern] = []
    var signatures: [Signature] = []
    public private(set) var unsupported: [SignatureError] = []
    public private(set) var unsupportedCount = 0
    public private(set) var skippedForLevel = 0
    var database: HyperscanDatabase?
    /// Hyperscan id -> index in `patterns` (patterns Hyperscan refused have none).
    var idToPattern: [Int] = []
    var failures: [Int: String] = [:]

    public init() {}

    public var count: Int { signatures.count }
    public var patternCount: Int { patterns.count }
    public var databaseBytes: Int { database?.bytes ?? 0 }

    /// Loads one .ndb or .ldb file.
    public mutating func load(_ bytes: [UInt8], file: String) throws(SignatureError) {
        let logical = file.hasSuffix(".ldb")
        try forEachSignatureLine(bytes, file: file, maxLineBytes: BodyPattern.maxHexChars * 4) { line, lineNo throws(SignatureError) in
            guard signatures.count < BodySignatureSet.maxSignatures else {
                throw SignatureError(file: file, line: lineNo, reason: "more than \(BodySignatureSet.maxSignatures) body signatures")
            }
            let text = String(decoding: line, as: UTF8.self)
            do throws(LineError) {
                if logical { try addLogical(text) } else { try addBody(text) }
            } catch {
                switch error {
                case .malformed(let r): throw SignatureError(file: file, line: lineNo, reason: r)
                case .unsupported(let r):
                    unsupportedCount += 1
                    if unsupported.count < BodySignatureSet.maxUnsupportedKept { unsupported.append(SignatureError(file: file, line: lineNo, reason: r)) }
                case .level: skippedForLevel += 1
                }
            }
        }
    }

    enum LineError: Error {
        case malformed(String)
        case unsupported(String)
        case level
    }

    static func name(_ s: Substring) throws(LineError) -> String {
        guard !s.isEmpty, s.utf8.count <= HashSignatureSet.maxNameBytes, s.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f && $0 != 0x3a && $0 != 0x3b }) else {
            throw .malformed("name must be 1-\(HashSignatureSet.maxNameBytes) printable characters")
        }
        return String(s)
    }

    static func target(_ s: Substring) throws(LineError) -> UInt32 {
        guard let n = Int(s) else { throw .malformed("target type must be a number") }
        guard let t = TargetType(rawValue: n) else { throw .unsupported("target type \(n)") }
        return t.bit
    }

    static func checkLevel(_ minText: Substring?, _ maxText: Substring?) throws(LineError) {
        if let m = minText, !m.isEmpty {
            guard let v = Int(m) else { throw .malformed("functionality level must be a number") }
            if v > functionalityLevel { throw .level }
        }
        if let m = maxText, !m.isEmpty {
            guard let v = Int(m) else { throw .malformed("functionality level must be a number") }
            if v < functionalityLevel { throw .level }
        }
    }

    /// `Name:Target:Offset:HexSignature[:MinFL[:MaxFL]]`
    mutating func addBody(_ line: String) throws(LineError) {
        let f = line.split(separator: ":", omittingEmptySubsequences: false)
        guard f.count >= 4, f.count <= 6 else { throw .malformed("expected Name:Target:Offset:HexSignature[:MinFL[:MaxFL]]") }
        let name = try BodySignatureSet.name(f[0])
        let targets = try BodySignatureSet.target(f[1])
        try BodySignatureSet.checkLevel(f.count > 4 ? f[4] : nil, f.count > 5 ? f[5] : nil)
        var rule = try BodySignatureSet.offset(f[2])
        rule.targets = targets
        let pattern: BodyPattern
        do throws(PatternError) { pattern = try BodyPattern(hex: f[3]) } catch { throw .malformed(error.reason) }
        let caseless = TargetType.allCases.contains { $0.isText && $0.bit == targets }
        signatures.append(Signature(name: name, targets: targets, expression: nil, subsignatures: 1))
        addPattern(pattern, caseless: caseless, rule: rule, signature: signatures.count - 1, subsignature: 0)
    }

    mutating func addPattern(_ p: BodyPattern, caseless: Bool, rule: mdatp_hs_rule, signature: Int, subsignature: Int) {
        var p = p
        p.caseless = p.caseless || caseless
        var r = rule
        r.verify = p.needsVerifier ? 1 : 0
        patterns.append(Pattern(pattern: p, rule: r, signature: signature, subsignature: subsignature))
    }

    /// ClamAV offsets: `*`, `n`, `EOF-n`, `EP+n`, `EP-n`, `Sx+n`, `SEx`, `SL+n`, each with an optional `,maxshift`.
    static func offset(_ s: Substring) throws(LineError) -> mdatp_hs_rule {
        var r = mdatp_hs_rule()
        if s == "*" { return r }
        var body = s
        if let comma = s.firstIndex(of: ",") {
            guard let m = UInt64(s[s.index(after: comma)...]), m <= 1 << 40 else { throw .malformed("bad offset shift in `\(s)`") }
            r.shift = m
            body = s[..<comma]
        }
        func num(_ t: Substring) throws(LineError) -> Int64 {
            guard let v = Int64(t), v >= 0, v <= 1 << 40 else { throw .malformed("bad offset `\(s)`") }
            return v
        }
        if body.hasPrefix("EOF-") {
            r.anchor = UInt8(MDATP_AT_EOF.rawValue); r.value = try num(body.dropFirst(4))
        } else if body.hasPrefix("EP+") || body.hasPrefix("EP-") {
            r.anchor = UInt8(MDATP_AT_EP.rawValue)
            let v = try num(body.dropFirst(3))
            r.value = body.hasPrefix("EP-") ? -v : v
        } else if body.hasPrefix("SL+") {
            r.anchor = UInt8(MDATP_AT_LAST.rawValue); r.value = try num(body.dropFirst(3))
        } else if body.hasPrefix("SE") {
            r.anchor = UInt8(MDATP_AT_IN_SECTION.rawValue)
            guard let x = UInt32(body.dropFirst(2)) else { throw .malformed("bad section in `\(s)`") }
            r.section = x
        } else if body.hasPrefix("S"), let plus = body.firstIndex(of: "+") {
            r.anchor = UInt8(MDATP_AT_SECTION.rawValue)
            guard let x = UInt32(body[body.index(after: body.startIndex)..<plus]) else { throw .malformed("bad section in `\(s)`") }
            r.section = x
            r.value = try num(body[body.index(after: plus)...])
        } else if let first = body.first, first.isNumber {
            r.anchor = UInt8(MDATP_AT_ABS.rawValue); r.value = try num(body)
        } else {
            throw .unsupported("offset `\(s)`")
        }
        return r
    }

    /// `Name;TargetDescription;Expression;Subsig0;Subsig1;...`
    mutating func addLogical(_ line: String) throws(LineError) {
        let f = line.split(separator: ";", omittingEmptySubsequences: false)
        guard f.count >= 4 else { throw .malformed("expected Name;TargetDescription;Expression;Subsig0[;...]") }
        let name = try BodySignatureSet.name(f[0])
        var sig = Signature(name: name, targets: 0, expression: nil, subsignatures: f.count - 3)
        guard sig.subsignatures <= BodySignatureSet.maxSubsignatures else { throw .malformed("more than \(BodySignatureSet.maxSubsignatures) sub-signatures") }
        for item in f[1].split(separator: ",") {
            guard let colon = item.firstIndex(of: ":") else { throw .malformed("target description `\(item)` is not Key:Value") }
            let key = item[..<colon], value = item[item.index(after: colon)...]
            func range() throws(LineError) -> ClosedRange<UInt64> {
                let p = value.split(separator: "-", omittingEmptySubsequences: false)
                guard let lo = UInt64(p[0]) else { throw .malformed("bad range in `\(item)`") }
                let hi = p.count > 1 ? UInt64(p[1]) : lo
                guard let hi, p.count <= 2, hi >= lo else { throw .malformed("bad range in `\(item)`") }
                return lo...hi
            }
            switch key {
            case "Engine":
                let r = try range()
                if !r.contains(UInt64(BodySignatureSet.functionalityLevel)) { throw .level }
            case "Target": sig.targets = try BodySignatureSet.target(value)
            case "FileSize": sig.fileSize = try range()
            case "EntryPoint": sig.entryPoint = try range()
            case "NumberOfSections": sig.sectionCount = try range()
            default: throw .unsupported("target description key `\(key)`")
            }
        }
        let expr: LogicalExpression
        do throws(PatternError) { expr = try LogicalExpression(parsing: f[2], subsignatures: sig.subsignatures) } catch { throw .malformed("expression: \(error.reason)") }
        sig.expression = expr
        var pending: [(BodyPattern, Bool, mdatp_hs_rule, Int)] = []
        for (i, sub) in f[3...].enumerated() {
            for (p, caseless, rule) in try BodySignatureSet.subsignature(sub, counted: expr.countedSubsignatures.contains(i)) {
                var r = rule
                r.targets = sig.targets
                pending.append((p, caseless, r, i))
            }
        }
        signatures.append(sig)
        let si = signatures.count - 1
        for (p, caseless, rule, i) in pending {
            addPattern(p, caseless: caseless || TargetType.allCases.contains { $0.isText && $0.bit == sig.targets }, rule: rule, signature: si, subsignature: i)
        }
    }

    /// One sub-signature: `[offset:]hex[::modifiers]`; the patterns it stands for.
    static func subsignature(_ s: Substring, counted: Bool) throws(LineError) -> [(BodyPattern, Bool, mdatp_hs_rule)] {
        if s.contains("/") { throw .unsupported("PCRE sub-signature") }
        if s.hasPrefix("$") || s.hasPrefix("${") { throw .unsupported("macro sub-signature") }
        if s.hasPrefix("fuzzy_img#") { throw .unsupported("fuzzy image hash sub-signature") }
        if s.contains("#") { throw .unsupported("byte-compare sub-signature") }
        var body = s
        var mods = Substring("")
        if let c = s.indices.first(where: { s[$0] == ":" && s.index(after: $0) < s.endIndex && s[s.index(after: $0)] == ":" }) {
            mods = s[s.index(c, offsetBy: 2)...]
            body = s[..<c]
        }
        var rule = mdatp_hs_rule()
        if let colon = body.lastIndex(of: ":") {
            rule = try offset(body[..<colon])
            body = body[body.index(after: colon)...]
        }
        rule.counted = counted ? 1 : 0
        let p: BodyPattern
        do throws(PatternError) { p = try BodyPattern(hex: body) } catch { throw .malformed(error.reason) }
        var caseless = false, wide = false, ascii = false, fullword = false
        for m in mods {
            switch m {
            case "i": caseless = true
            case "w": wide = true
            case "a": ascii = true
            case "f": fullword = true
            default: throw .unsupported("sub-signature modifier `\(m)`")
            }
        }
        var forms: [BodyPattern] = []
        if !wide || ascii { forms.append(p) }
        if wide { forms.append(p.wide) }
        if fullword { forms = forms.map { BodyPattern(elements: [.boundary(.word)] + $0.elements + [.boundary(.word)], caseless: $0.caseless) } }
        return forms.map { ($0, caseless, rule) }
    }

    /// Compiles every pattern into one database. A pattern Hyperscan refuses is
    /// retried as a prefilter (then verified by us); if that fails too, its
    /// signature is dropped into `unsupported`.
    public mutating func compile() throws(SignatureError) {
        var prefilter = Set<Int>(), dropped = Set<Int>()
        for _ in 0..<64 {
            let active = patterns.indices.filter { !dropped.contains($0) }
            guard !active.isEmpty else { database = nil; idToPattern = []; return }
            var exprs: [String] = [], flags: [UInt32] = [], rules: [mdatp_hs_rule] = []
            var som = false
            for i in active {
                var r = patterns[i].rule
                var fl = UInt32(MDATP_HS_DOTALL.rawValue)
                if patterns[i].pattern.caseless { fl |= UInt32(MDATP_HS_CASELESS.rawValue) }
                if prefilter.contains(i) {
                    r.verify = 1
                    fl |= UInt32(MDATP_HS_PREFILTER.rawValue)
                } else if r.verify == 0 && r.anchor != UInt8(MDATP_AT_ANY.rawValue) {
                    fl |= UInt32(MDATP_HS_SOM_LEFTMOST.rawValue)
                    som = true
                }
                if r.counted == 0 && (r.anchor == UInt8(MDATP_AT_ANY.rawValue) || r.verify == 1) {
                    fl |= UInt32(MDATP_HS_SINGLEMATCH.rawValue)
                }
                exprs.append(patterns[i].pattern.regex)
                flags.append(fl)
                rules.append(r)
            }
            switch HyperscanDatabase.compile(exprs, flags: flags, rules: rules, som: som) {
            case .success(let db):
                for i in prefilter { patterns[i].rule.verify = 1 }
                for i in dropped { noteUnsupported(patterns[i].signature) }
                database = db
                idToPattern = active
                return
            case .failure(let e):
                guard e.index >= 0, e.index < active.count else { throw SignatureError(file: "body signatures", line: 0, reason: "hyperscan: \(e.message)") }
                let i = active[e.index]
                if prefilter.insert(i).inserted { continue }
                // Refused even as a prefilter: its whole signature goes.
                let sig = patterns[i].signature
                for j in patterns.indices where patterns[j].signature == sig { dropped.insert(j) }
                failures[sig] = e.message
            }
        }
        throw SignatureError(file: "body signatures", line: 0, reason: "too many patterns refused by hyperscan")
    }

    mutating func noteUnsupported(_ sig: Int) {
        guard let why = failures.removeValue(forKey: sig) else { return }
        unsupportedCount += 1
        if unsupported.count < BodySignatureSet.maxUnsupportedKept {
            unsupported.append(SignatureError(file: signatures[sig].name, line: 0, reason: "pattern refused by hyperscan: \(why)"))
        }
    }

    /// Whole-signature checks that need the file, not a match.
    func applies(_ s: Signature, _ f: FileLayout) -> Bool {
        if s.targets != 0 && f.types & s.targets == 0 { return false }
        if let r = s.fileSize, !r.contains(f.size) { return false }
        if let r = s.entryPoint { guard let e = f.entry, r.contains(e) else { return false } }
        if let r = s.sectionCount, !r.contains(UInt64(f.sections.count)) { return false }
        return true
    }
}

/// A compiled Hyperscan database (read-only, shared by every scan session).
final class HyperscanDatabase: @unchecked Sendable {
    let handle: OpaquePointer
    let bytes: Int

    struct CompileError: Error { let index: Int; let message: String }

    private init(_ h: OpaquePointer) {
        handle = h
        bytes = mdatp_hs_database_bytes(h)
    }

    deinit { mdatp_hs_free(handle) }

    static var cache: HyperscanCache? { HyperscanCache.shared }

    static func compile(_ exprs: [String], flags: [UInt32], rules: [mdatp_hs_rule], som: Bool) -> Result<HyperscanDatabase, CompileError> {
        let key = cache?.key(exprs, flags: flags, som: som)
        if let cache, let key {
            if let h = cache.load(key, rules: rules) { return .success(HyperscanDatabase(h)) }
            if let r = cache.refusal(key) { return .failure(CompileError(index: r.index, message: r.message)) }
        }
        let result = compileNow(exprs, flags: flags, rules: rules, som: som)
        if let cache, let key {
            switch result {
            case .success(let db): cache.store(key, database: db.handle)
            // Only a pattern's own refusal is a fact about the inputs (not, say, memory).
            case .failure(let e) where e.index >= 0: cache.storeRefusal(key, index: e.index, message: e.message)
            case .failure: break
            }
        }
        return result
    }

    static func compileNow(_ exprs: [String], flags: [UInt32], rules: [mdatp_hs_rule], som: Bool) -> Result<HyperscanDatabase, CompileError> {
        var cstrs = exprs.map { strdupSwift($0) }
        defer { cstrs.forEach { free($0) } }
        var bad = -1
        var err = [CChar](repeating: 0, count: 512)
        let h = cstrs.withUnsafeMutableBufferPointer { c in
            c.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: c.count) { cp in
                mdatp_hs_compile(cp, flags, rules, rules.count, som ? 1 : 0, &bad, &err, err.count)
            }
        }
        guard let h else {
            return .failure(CompileError(index: bad, message: String(decoding: err.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)))
        }
        return .success(HyperscanDatabase(h))
    }
}

/// ClamAV's logical expressions: sub-signature indices joined by `&` and `|`,
/// parentheses, and match counts `=X`, `>X`, `<X` with an optional `,Y`
/// (at least Y distinct sub-signatures).
public indirect enum LogicalExpression: Equatable, Sendable {
    case sub(Int)
    case and(LogicalExpression, LogicalExpression)
    case or(LogicalExpression, LogicalExpression)
    case count(LogicalExpression, Comparison, Int, distinct: Int?)

    public enum Comparison: Equatable, Sendable { case equal, more, fewer }
    static let maxDepth = 32

    init(parsing text: Substring, subsignatures: Int) throws(PatternError) {
        let s = Array(text.utf8)
        guard !s.isEmpty, s.count <= 4096 else { throw PatternError("empty or longer than 4096 characters") }
        var i = 0
        let e = try LogicalExpression.parseOr(s, &i, subsignatures, 0)
        guard i == s.count else { throw PatternError("unexpected `\(String(decoding: [s[i]], as: UTF8.self))` at \(i)") }
        self = e
    }

    static func parseOr(_ s: [UInt8], _ i: inout Int, _ n: Int, _ depth: Int) throws(PatternError) -> LogicalExpression {
        var l = try parseAnd(s, &i, n, depth)
        while i < s.count, s[i] == 0x7c { i += 1; l = .or(l, try parseAnd(s, &i, n, depth)) }
        return l
    }

    static func parseAnd(_ s: [UInt8], _ i: inout Int, _ n: Int, _ depth: Int) throws(PatternError) -> LogicalExpression {
        var l = try parsePrimary(s, &i, n, depth)
        while i < s.count, s[i] == 0x26 { i += 1; l = .and(l, try parsePrimary(s, &i, n, depth)) }
        return l
    }

    static func number(_ s: [UInt8], _ i: inout Int) -> Int? {
        var v = 0, seen = false
        while i < s.count, s[i] >= 0x30, s[i] <= 0x39, v < 100_000 { v = v * 10 + Int(s[i] - 0x30); i += 1; seen = true }
        return seen ? v : nil
    }

    static func parsePrimary(_ s: [UInt8], _ i: inout Int, _ n: Int, _ depth: Int) throws(PatternError) -> LogicalExpression {
        guard depth < maxDepth else { throw PatternError("nested deeper than \(maxDepth)") }
        guard i < s.count else { throw PatternError("ends early") }
        var e: LogicalExpression
        if s[i] == 0x28 {
            i += 1
            e = try parseOr(s, &i, n, depth + 1)
            guard i < s.count, s[i] == 0x29 else { throw PatternError("missing `)`") }
            i += 1
        } else {
            guard let v = number(s, &i) else { throw PatternError("expected a sub-signature index at \(i)") }
            guard v < n else { throw PatternError("sub-signature \(v) does not exist (there are \(n))") }
            e = .sub(v)
        }
        if i < s.count, [0x3d, 0x3e, 0x3c].contains(s[i]) {
            let cmp: Comparison = s[i] == 0x3d ? .equal : s[i] == 0x3e ? .more : .fewer
            i += 1
            guard let x = number(s, &i), x < 255 else { throw PatternError("count must be 0-254") }
            var y: Int?
            if i < s.count, s[i] == 0x2c {
                i += 1
                guard let v = number(s, &i) else { throw PatternError("expected a distinct count after `,`") }
                y = v
            }
            e = .count(e, cmp, x, distinct: y)
        }
        return e
    }

    /// Sub-signatures whose every match must be counted.
    var countedSubsignatures: Set<Int> {
        switch self {
        case .sub: return []
        case .and(let a, let b), .or(let a, let b): return a.countedSubsignatures.union(b.countedSubsignatures)
        case .count(let e, _, _, _): return e.leaves
        }
    }

    var leaves: Set<Int> {
        switch self {
        case .sub(let i): return [i]
        case .and(let a, let b), .or(let a, let b): return a.leaves.union(b.leaves)
        case .count(let e, _, _, _): return e.leaves
        }
    }

    /// (true?, total matches, distinct sub-signatures matched) for per-sub counts.
    func evaluate(_ counts: [Int]) -> (Bool, Int, Int) {
        switch self {
        case .sub(let i): return (counts[i] > 0, counts[i], counts[i] > 0 ? 1 : 0)
        case .and(let a, let b):
            let x = a.evaluate(counts), y = b.evaluate(counts)
            return (x.0 && y.0, x.1 + y.1, x.2 + y.2)
        case .or(let a, let b):
            let x = a.evaluate(counts), y = b.evaluate(counts)
            return (x.0 || y.0, x.1 + y.1, x.2 + y.2)
        case .count(let e, let cmp, let x, let y):
            let v = e.evaluate(counts)
            var ok: Bool
            switch cmp {
            case .equal: ok = v.1 == x
            case .more: ok = v.1 > x
            case .fewer: ok = v.1 < x
            }
            if let y { ok = ok && v.2 >= y }
            return (ok, v.1, v.2)
        }
    }
}

/// One thread's matching state for a body signature set: Hyperscan scratch and
/// stream, reused file after file.
public final class BodyScanSession {
    let set: BodySignatureSet
    let handle: OpaquePointer
    /// Backtracking steps the verifier may spend on one file.
    public static let verifyBudget = 4_000_000
    /// How far past a pattern's earliest start the verifier reads.
    public static let verifyWindow = 8 << 20

    public init?(_ set: BodySignatureSet) {
        guard let db = set.database, let h = mdatp_hs_scan_new(db.handle) else { return nil }
        self.set = set
        handle = h
    }

    deinit { mdatp_hs_scan_free(handle) }

    static func withFile<T>(_ l: FileLayout, _ body: (UnsafePointer<mdatp_hs_file>) -> T) -> T {
        let secs = l.sections.map { mdatp_hs_section(offset: $0.offset, size: $0.size) }
        return secs.withUnsafeBufferPointer { sp in
            var f = mdatp_hs_file(size: l.size, types: l.types, has_entry: l.entry == nil ? 0 : 1, entry: l.entry ?? 0,
                                  sections: sp.baseAddress, section_count: UInt32(sp.count))
            return body(&f)
        }
    }

    public func begin(_ layout: FileLayout) -> Bool {
        BodyScanSession.withFile(layout) { mdatp_hs_begin(handle, $0) } == 0
    }

    public func feed(_ chunk: UnsafeRawBufferPointer) -> Bool {
        chunk.isEmpty || mdatp_hs_feed(handle, chunk.baseAddress, chunk.count) == 0
    }

    /// Ends the file; the first signature (in load order) that holds.
    /// `read(offset, count)` gives the verifier bytes of the file.
    public func finish(_ layout: FileLayout, read: (UInt64, Int) -> [UInt8]?) -> Detection? {
        let n = mdatp_hs_end(handle)
        guard n > 0 else { return nil }
        var counts: [Int: [Int]] = [:] // signature -> per sub-signature counts
        var budget = BodyScanSession.verifyBudget
        for k in 0..<Int(n) {
            let id = mdatp_hs_hit(handle, k)
            let p = set.patterns[set.idToPattern[Int(id)]]
            var c = Int(mdatp_hs_count(handle, id))
            if p.rule.verify != 0 { c = verify(p, layout, read: read, budget: &budget) ? 1 : 0 }
            guard c > 0 else { continue }
            counts[p.signature, default: [Int](repeating: 0, count: set.signatures[p.signature].subsignatures)][p.subsignature] += c
        }
        for sig in counts.keys.sorted() {
            let s = set.signatures[sig]
            guard set.applies(s, layout), let c = counts[sig] else { continue }
            if let e = s.expression {
                if e.evaluate(c).0 { return Detection(name: s.name, type: ThreatType.of(signatureName: s.name), engine: "logical") }
            } else if c[0] > 0 {
                return Detection(name: s.name, type: ThreatType.of(signatureName: s.name), engine: "body")
            }
        }
        return nil
    }

    /// Our own matcher at every start the pattern's offset allows (bounded).
    func verify(_ p: BodySignatureSet.Pattern, _ layout: FileLayout, read: (UInt64, Int) -> [UInt8]?, budget: inout Int) -> Bool {
        var lo: UInt64 = 0, hi: UInt64 = 0
        var rule = p.rule
        guard BodyScanSession.withFile(layout, { mdatp_hs_start_range(&rule, $0, &lo, &hi) }) == 1, lo < layout.size else { return false }
        // One byte before the first start too: a leading boundary looks at it.
        let from = lo > 0 ? lo - 1 : 0
        let want = Int(min(layout.size - from, UInt64(BodyScanSession.verifyWindow)))
        guard let bytes = read(from, want), !bytes.isEmpty else { return false }
        let first = Int(lo - from)
        guard first < bytes.count else { return false }
        let last = first + Int(min(hi - lo, UInt64(bytes.count - 1 - first)))
        return bytes.withUnsafeBytes { d in
            for s in first...last {
                if p.pattern.matches(d, at: s, budget: &budget) { return true }
                if budget <= 0 { return false }
            }
            return false
        }
    }
}
