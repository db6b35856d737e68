// A prefilter so that N rules do not cost N evaluations per event: most rules
// need a literal somewhere in one field (`Image|endswith: /curl`, `CommandLine|
// contains: base64`, `TargetFilename|startswith: /etc/cron.d/`). Those literals,
// per log source and field, go into one Hyperscan literal database; an event's
// field is scanned once, and only the rules whose literal was found (plus the
// rules that have no such literal) are evaluated in full. Literals are matched
// lower-cased anywhere in the value: a superset of what the rule then checks.
import CHyperscan

final class SigmaSourceIndex {
    struct FieldIndex {
        let field: SigmaField
        let lits: OpaquePointer
        let rulesByLiteral: [[Int32]]
    }
    var fields: [FieldIndex] = []
    /// Positions (in the source's rule list) evaluated for every record.
    var always: [Bool] = []
    var stamp: [UInt32] = []
    var generation: UInt32 = 0
    var hits = [UInt32](repeating: 0, count: 4096)

    deinit { for f in fields { mdatp_lits_free(f.lits) } }

    init(rules: [CompiledRule]) {
        always = Array(repeating: true, count: rules.count)
        stamp = Array(repeating: 0, count: rules.count)
        var byField: [SigmaField: (lits: [[UInt8]], index: [[UInt8]: Int], rules: [[Int32]])] = [:]
        for (pos, r) in rules.enumerated() {
            guard let anchors = SigmaSourceIndex.anchors(r.condition, r.selections), !anchors.isEmpty else { continue }
            always[pos] = false
            for (field, lit) in anchors {
                var f = byField[field] ?? ([], [:], [])
                let id: Int
                if let known = f.index[lit] { id = known } else {
                    id = f.lits.count
                    f.index[lit] = id
                    f.lits.append(lit)
                    f.rules.append([])
                }
                if f.rules[id].last != Int32(pos) { f.rules[id].append(Int32(pos)) }
                byField[field] = f
            }
        }
        for (field, f) in byField.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            var err = [CChar](repeating: 0, count: 256)
            let cstrs = f.lits.map { l -> UnsafeMutablePointer<CChar> in
                let p = UnsafeMutablePointer<CChar>.allocate(capacity: max(1, l.count))
                l.withUnsafeBytes { b in if l.count > 0 { UnsafeMutableRawPointer(p).copyMemory(from: b.baseAddress!, byteCount: l.count) } }
                return p
            }
            defer { cstrs.forEach { $0.deallocate() } }
            let lens = f.lits.map(\.count)
            let db = cstrs.map { UnsafePointer<CChar>?($0) }.withUnsafeBufferPointer { ptrs in
                lens.withUnsafeBufferPointer { mdatp_lits_compile(ptrs.baseAddress, $0.baseAddress, UInt32(f.lits.count), &err, err.count) }
            }
            guard let db else {
                // Cannot prefilter on this field: its rules are evaluated every time.
                for rs in f.rules { for p in rs { always[Int(p)] = true } }
                continue
            }
            fields.append(FieldIndex(field: field, lits: db, rulesByLiteral: f.rules))
        }
    }

    /// Marks the candidates for this record; `isCandidate` is valid until the next call.
    func mark(_ r: SigmaRecord) {
        generation &+= 1
        if generation == 0 { stamp = Array(repeating: 0, count: stamp.count); generation = 1 }
        for f in fields {
            guard let v = r.lower(f.field), !v.isEmpty else { continue }
            let n = v.withUnsafeBytes { b in hits.withUnsafeMutableBufferPointer { mdatp_lits_scan(f.lits, b.baseAddress, b.count, $0.baseAddress, $0.count) } }
            if n < 0 || n >= hits.count {
                // Too many literals found to list: every rule of this field is a candidate.
                for rs in f.rulesByLiteral { for p in rs { stamp[Int(p)] = generation } }
                continue
            }
            for k in 0..<n { for p in f.rulesByLiteral[Int(hits[k])] { stamp[Int(p)] = generation } }
        }
    }

    @inline(__always) func isCandidate(_ pos: Int) -> Bool { always[pos] || stamp[pos] == generation }

    /// Literals one of which the record must contain for the condition to hold (nil: none known).
    static func anchors(_ c: Condition, _ sels: [Selection]) -> [(SigmaField, [UInt8])]? {
        switch c {
        case .selection(let i): return selectionAnchors(sels[i])
        case .and(let cs):
            // Any one required conjunct is enough; take the one with the fewest literals.
            return cs.compactMap { anchors($0, sels) }.min { $0.count < $1.count }
        case .or(let cs):
            var out: [(SigmaField, [UInt8])] = []
            for x in cs { guard let a = anchors(x, sels) else { return nil }; out += a }
            return out
        case .not: return nil
        }
    }

    static func selectionAnchors(_ s: Selection) -> [(SigmaField, [UInt8])]? {
        var out: [(SigmaField, [UInt8])] = []
        for alt in s.alternatives {
            // In each alternative, a test every value of which has a literal.
            var best: [(SigmaField, [UInt8])]?
            for t in alt {
                guard let f = t.field else { continue }
                var lits: [(SigmaField, [UInt8])] = []
                var ok = true
                for m in t.matchers {
                    guard let l = literal(m), !l.isEmpty else { ok = false; break }
                    lits.append((f, l))
                    if t.all { break } // all values must match: any one of them is required
                }
                // The most selective test: longest shortest literal ("true" finds everything), then fewest literals.
                func score(_ l: [(SigmaField, [UInt8])]) -> (Int, Int) { (l.map(\.1.count).min() ?? 0, -l.count) }
                if ok, !lits.isEmpty, best == nil || score(lits) > score(best!) { best = lits }
            }
            guard let b = best else { return nil }
            out += b
        }
        return out
    }

    static func literal(_ m: ValueMatcher) -> [UInt8]? {
        switch m {
        case .equals(let l, let cased), .prefix(let l, let cased), .suffix(let l, let cased), .contains(let l, let cased):
            return cased ? asciiLowered(l) : l
        case .glob(let parts, let cased):
            let longest = parts.compactMap { p -> [UInt8]? in if case .literal(let l) = p { return l }; return nil }.max { $0.count < $1.count }
            return longest.map { cased ? asciiLowered($0) : $0 }
        default:
            return nil
        }
    }
}
