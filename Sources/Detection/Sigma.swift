// Sigma rules: loaded from YAML, compiled once into matchers and a condition
// tree, evaluated on records of the log source they name. A rule this engine
// cannot honour exactly is refused at load with the construct named; it never
// takes the other rules down. Grammar: https://github.com/SigmaHQ/sigma-specification
import MdatpJSON

public struct SigmaRefusal: Error, Equatable, CustomStringConvertible {
    public let reason: String
    public init(_ r: String) { reason = r }
    public var description: String { reason }
}

/// A rule's `level` is the same scale as an alert's severity.
public typealias SigmaLevel = Severity

/// One field test: `Field|mods: value(s)`; or keywords when `field` is nil.
struct FieldTest {
    let field: SigmaField?
    let matchers: [ValueMatcher]
    let all: Bool

    func matches(_ r: SigmaRecord) -> Bool {
        if all { return matchers.allSatisfy { $0.matches(r, field) } }
        return matchers.contains { $0.matches(r, field) }
    }
}

/// A named search identifier: OR over alternatives, each an AND of tests.
struct Selection {
    let name: String
    let alternatives: [[FieldTest]]

    func matches(_ r: SigmaRecord) -> Bool {
        alternatives.contains { $0.allSatisfy { $0.matches(r) } }
    }
}

indirect enum Condition {
    case selection(Int)
    case not(Condition)
    case and([Condition])
    case or([Condition])

    func evaluate(_ sels: [Selection], _ r: SigmaRecord, _ memo: inout [Int8]) -> Bool {
        switch self {
        case .selection(let i):
            if memo[i] < 0 { memo[i] = sels[i].matches(r) ? 1 : 0 }
            return memo[i] == 1
        case .not(let c): return !c.evaluate(sels, r, &memo)
        case .and(let cs): return cs.allSatisfy { $0.evaluate(sels, r, &memo) }
        case .or(let cs): return cs.contains { $0.evaluate(sels, r, &memo) }
        }
    }
}

/// What evaluation touches, in one object: reading it from an array costs one
/// reference, not a copy of the rule's metadata.
final class CompiledRule {
    let selections: [Selection]
    let condition: Condition
    /// auditd rules that need `type` to be one of these (nil: any record type).
    let auditTypes: Set<[UInt8]>?

    init(selections: [Selection], condition: Condition, source: SigmaLogSource) {
        self.selections = selections
        self.condition = condition
        auditTypes = source == .auditd ? CompiledRule.requiredTypes(condition, selections) : nil
    }

    /// The `type` values a record must have for the condition to hold: from a selection the
    /// condition requires (alone or as a conjunct) whose every alternative tests `type` for equality.
    static func requiredTypes(_ c: Condition, _ sels: [Selection]) -> Set<[UInt8]>? {
        func fromSelection(_ i: Int) -> Set<[UInt8]>? {
            var out = Set<[UInt8]>()
            for alt in sels[i].alternatives {
                guard let t = alt.first(where: { $0.field == .auditType && !$0.all }) else { return nil }
                for m in t.matchers {
                    guard case .equals(let v, let cased) = m else { return nil }
                    out.insert(cased ? asciiLowered(v) : v)
                }
            }
            return out
        }
        switch c {
        case .selection(let i): return fromSelection(i)
        case .and(let cs):
            for x in cs { if let t = requiredTypes(x, sels) { return t } }
            return nil
        case .or(let cs):
            var out = Set<[UInt8]>()
            for x in cs { guard let t = requiredTypes(x, sels) else { return nil }; out.formUnion(t) }
            return out
        case .not: return nil
        }
    }

    @inline(__always)
    func matches(_ r: SigmaRecord, scratch: inout [Int8]) -> Bool {
        if let types = auditTypes {
            guard let t = r.lower(.auditType), types.contains(t) else { return false }
        }
        for i in 0..<selections.count { scratch[i] = -1 }
        return condition.evaluate(selections, r, &scratch)
    }
}

public struct SigmaRule {
    public let id: String
    public let title: String
    public let description: String
    public let level: SigmaLevel
    public let status: String
    public let source: SigmaLogSource
    /// ATT&CK techniques from tags (`attack.t1059.004` → `T1059.004`).
    public let techniques: [String]
    public let tags: [String]
    public let file: String
    let selections: [Selection]
    let condition: Condition
    /// Fields the rule reads (the sensor fills only fields some rule reads).
    public let fields: Set<SigmaField>

    public func matches(_ r: SigmaRecord) -> Bool {
        var memo = [Int8](repeating: -1, count: selections.count)
        return condition.evaluate(selections, r, &memo)
    }

    /// Whether some selection searches keywords (then every field is wanted).
    var usesKeywords: Bool { selections.contains { $0.alternatives.contains { $0.contains { $0.field == nil } } } }
}

public enum SigmaCompiler {
    public static let maxSelections = 256
    public static let maxValues = 4096

    /// One rule file's text → its rule, or why it is refused.
    public static func compile(yaml text: String, file: String = "") throws(SigmaRefusal) -> SigmaRule {
        let docs: [JSON]
        do throws(YAMLError) { docs = try YAML.parseDocuments(text) } catch { throw SigmaRefusal("YAML \(error)") }
        guard docs.count == 1 else {
            throw SigmaRefusal(docs.isEmpty ? "empty file" : "rule collections (\(docs.count) YAML documents) are not supported: one rule per file")
        }
        return try compile(docs[0], file: file)
    }

    public static func compile(_ doc: JSON, file: String = "") throws(SigmaRefusal) -> SigmaRule {
        guard doc.members != nil else { throw SigmaRefusal("a rule is a mapping at the top level") }
        func str(_ k: String) -> String? { doc[k]?.string }
        if doc["correlation"] != nil { throw SigmaRefusal("correlation rules are not supported") }
        if doc["filter"] != nil && doc["detection"] == nil { throw SigmaRefusal("filter (meta) rules are not supported") }
        if let a = str("action") { throw SigmaRefusal("'action: \(a)' (rule collections) is not supported") }
        guard let title = str("title"), !title.isEmpty else { throw SigmaRefusal("no title") }
        guard title.utf8.count <= 256 else { throw SigmaRefusal("title longer than 256 bytes") }
        let id = str("id") ?? ""
        let levelText = str("level") ?? "medium"
        guard let level = SigmaLevel(rawValue: levelText.lowercased()) else { throw SigmaRefusal("unknown level '\(levelText)'") }
        var tags: [String] = []
        if let t = doc["tags"] {
            guard let list = t.array else { throw SigmaRefusal("tags must be a list") }
            tags = list.compactMap(\.string)
        }
        let techniques = tags.compactMap { t -> String? in
            let l = t.lowercased()
            guard l.hasPrefix("attack.t"), l.count >= 12 else { return nil }
            let code = l.dropFirst(7).uppercased()
            return code.dropFirst().allSatisfy { $0.isNumber || $0 == "." } ? code : nil
        }
        let source = try logSource(doc["logsource"])
        guard let det = doc["detection"], let detMembers = det.members else { throw SigmaRefusal("no detection mapping") }
        if det["timeframe"] != nil || doc["timeframe"] != nil { throw SigmaRefusal("timeframe (aggregation over time) is not supported") }

        var selections: [Selection] = []
        var conditionJSON: JSON?
        let available = source.fields
        for (name, value) in detMembers {
            if name == "condition" { conditionJSON = value; continue }
            guard selections.count < maxSelections else { throw SigmaRefusal("more than \(maxSelections) selections") }
            selections.append(Selection(name: name, alternatives: try selection(name, value, available: available, source: source)))
        }
        guard let cj = conditionJSON else { throw SigmaRefusal("detection has no condition") }
        let condTexts: [String]
        if let s = cj.string { condTexts = [s] } else if let l = cj.array, !l.isEmpty, l.allSatisfy({ $0.string != nil }) { condTexts = l.map { $0.string! } } else {
            throw SigmaRefusal("condition must be a string or a list of strings")
        }
        var conds: [Condition] = []
        for t in condTexts { conds.append(try ConditionParser.parse(t, names: selections.map(\.name))) }
        let condition = conds.count == 1 ? conds[0] : .or(conds)

        var fields = Set<SigmaField>()
        for s in selections { for alt in s.alternatives { for t in alt { if let f = t.field { fields.insert(f) }; for m in t.matchers { if case .fieldref(let o, _, _) = m { fields.insert(o) } } } } }
        return SigmaRule(id: id, title: title, description: str("description") ?? "", level: level, status: str("status") ?? "",
                         source: source, techniques: techniques, tags: tags, file: file, selections: selections, condition: condition, fields: fields)
    }

    static func logSource(_ j: JSON?) throws(SigmaRefusal) -> SigmaLogSource {
        guard let j, j.members != nil else { throw SigmaRefusal("no logsource mapping") }
        let product = j["product"]?.string?.lowercased()
        let category = j["category"]?.string?.lowercased()
        let service = j["service"]?.string?.lowercased()
        if let p = product, p != "linux" { throw SigmaRefusal("log source product '\(p)' is not Linux") }
        if let s = service {
            guard s == "auditd", category == nil else { throw SigmaRefusal("log source service '\(s)' is not provided by this sensor (auditd is)") }
            return .auditd
        }
        guard let c = category else { throw SigmaRefusal("log source has neither category nor service") }
        guard let src = SigmaLogSource(rawValue: c), src != .auditd else {
            throw SigmaRefusal("log source category '\(c)' is not provided by this sensor (process_creation, file_event, file_create, file_delete, file_rename, file_change, network_connection, service auditd)")
        }
        return src
    }

    /// A search identifier's value → alternatives.
    static func selection(_ name: String, _ v: JSON, available: Set<SigmaField>, source: SigmaLogSource) throws(SigmaRefusal) -> [[FieldTest]] {
        switch v {
        case .object(let m):
            return [try fieldMap(name, m, available: available, source: source)]
        case .array(let items):
            guard !items.isEmpty else { throw SigmaRefusal("selection '\(name)' is an empty list") }
            if items.allSatisfy({ $0.members != nil }) {
                var alts: [[FieldTest]] = []
                for i in items { alts.append(try fieldMap(name, i.members!, available: available, source: source)) }
                return alts
            }
            guard items.allSatisfy({ $0.members == nil && $0.array == nil }) else {
                throw SigmaRefusal("selection '\(name)' mixes maps and plain values")
            }
            return [[FieldTest(field: nil, matchers: try values(name, nil, [], items), all: false)]]
        case .string, .number:
            return [[FieldTest(field: nil, matchers: try values(name, nil, [], [v]), all: false)]]
        default:
            throw SigmaRefusal("selection '\(name)' must be a map, a list of maps, or keywords")
        }
    }

    static func fieldMap(_ name: String, _ m: [(String, JSON)], available: Set<SigmaField>, source: SigmaLogSource) throws(SigmaRefusal) -> [FieldTest] {
        guard !m.isEmpty else { throw SigmaRefusal("selection '\(name)' is an empty map") }
        var tests: [FieldTest] = []
        for (key, value) in m {
            var parts = key.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            let fieldName = parts.removeFirst()
            var field: SigmaField?
            if !fieldName.isEmpty {
                guard let f = SigmaField(name: fieldName) else {
                    throw SigmaRefusal("field '\(fieldName)' is not known for log source \(source.rawValue) (known: \(available.map(\.name).sorted().prefix(40).joined(separator: ", ")))")
                }
                guard available.contains(f) else { throw SigmaRefusal("field '\(fieldName)' is not provided by log source \(source.rawValue)") }
                field = f
            }
            let list: [JSON] = value.array ?? [value]
            guard !list.isEmpty else { throw SigmaRefusal("'\(key)' has an empty value list") }
            guard list.count <= maxValues else { throw SigmaRefusal("'\(key)' has more than \(maxValues) values") }
            let all = parts.contains("all")
            tests.append(FieldTest(field: field, matchers: try values(key, field, parts.filter { $0 != "all" }, list), all: all))
        }
        return tests
    }

    /// Values and modifiers → matchers (one per value and variant).
    static func values(_ key: String, _ field: SigmaField?, _ mods: [String], _ list: [JSON]) throws(SigmaRefusal) -> [ValueMatcher] {
        let known: Set<String> = ["contains", "startswith", "endswith", "re", "i", "m", "s", "cidr", "base64", "base64offset", "windash",
                                  "wide", "utf16le", "utf16be", "utf16", "exists", "gt", "gte", "lt", "lte", "fieldref", "cased"]
        for m in mods where !known.contains(m) {
            if m == "expand" { throw SigmaRefusal("'\(key)': the expand modifier (placeholders) needs a processing pipeline and is not supported") }
            throw SigmaRefusal("'\(key)': unknown modifier '\(m)'")
        }
        let has = Set(mods)
        let cased = has.contains("cased")
        if has.contains("exists") {
            guard mods == ["exists"], list.count == 1, let b = list[0].bool ?? (list[0].string.flatMap { $0 == "true" ? true : $0 == "false" ? false : nil }) else {
                throw SigmaRefusal("'\(key)': exists takes true or false, alone")
            }
            guard field != nil else { throw SigmaRefusal("'\(key)': exists needs a field") }
            return [.exists(b)]
        }
        let numericOps: [String: NumericOp] = ["gt": .gt, "gte": .gte, "lt": .lt, "lte": .lte]
        if let op = mods.compactMap({ numericOps[$0] }).first {
            guard mods.count == 1 else { throw SigmaRefusal("'\(key)': \(mods[0]) cannot be combined with other modifiers") }
            var out: [ValueMatcher] = []
            for v in list {
                guard let n = scalarText(v).flatMap({ Double($0) }) else { throw SigmaRefusal("'\(key)': \(mods[0]) needs a number") }
                out.append(.numeric(op, n))
            }
            return out
        }
        if has.contains("re") {
            let allowed: Set<String> = ["re", "i", "m", "s"]
            guard mods.first == "re", has.isSubset(of: allowed) else { throw SigmaRefusal("'\(key)': re combines only with its flags i, m, s") }
            var out: [ValueMatcher] = []
            for v in list {
                guard let p = scalarText(v) else { throw SigmaRefusal("'\(key)': a regular expression must be a string") }
                out.append(.regex(try SigmaRegex(p, caseless: has.contains("i"), multiline: has.contains("m"), dotall: has.contains("s"))))
            }
            return out
        }
        for flag in ["i", "m", "s"] where has.contains(flag) { throw SigmaRefusal("'\(key)': modifier '\(flag)' only follows re") }
        if has.contains("cidr") {
            guard mods == ["cidr"] else { throw SigmaRefusal("'\(key)': cidr cannot be combined with other modifiers") }
            var out: [ValueMatcher] = []
            for v in list {
                guard let s = scalarText(v) else { throw SigmaRefusal("'\(key)': cidr needs a network") }
                out.append(.cidr(try CIDR(s)))
            }
            return out
        }
        let kinds = mods.filter { ["contains", "startswith", "endswith"].contains($0) }
        guard kinds.count <= 1 else { throw SigmaRefusal("'\(key)': only one of contains, startswith, endswith") }
        if has.contains("fieldref") {
            guard field != nil else { throw SigmaRefusal("'\(key)': fieldref needs a field") }
            guard has.isSubset(of: ["fieldref", "contains", "startswith", "endswith", "cased"]) else {
                throw SigmaRefusal("'\(key)': fieldref combines only with contains, startswith, endswith, cased")
            }
            var out: [ValueMatcher] = []
            for v in list {
                guard let s = v.string, let other = SigmaField(name: s) else { throw SigmaRefusal("'\(key)': fieldref names an unknown field '\(scalarText(v) ?? "?")'") }
                let kind: ValueMatcher.FieldRefKind = kinds.first == "contains" ? .contains : kinds.first == "startswith" ? .prefix : kinds.first == "endswith" ? .suffix : .equals
                out.append(.fieldref(other, kind: kind, cased: cased))
            }
            return out
        }
        let encodings = mods.filter { ["wide", "utf16le", "utf16be", "utf16"].contains($0) }
        let b64 = has.contains("base64") || has.contains("base64offset")
        if !encodings.isEmpty && !b64 { throw SigmaRefusal("'\(key)': \(encodings[0]) is only meaningful before base64 or base64offset on Linux") }
        if has.contains("base64") && has.contains("base64offset") { throw SigmaRefusal("'\(key)': base64 and base64offset together") }
        if encodings.count > 1 { throw SigmaRefusal("'\(key)': more than one text encoding") }
        // Modifiers apply left to right: transformations in the order written.
        var out: [ValueMatcher] = []
        for v in list {
            if v == .null {
                guard mods.isEmpty || mods == ["cased"] else { throw SigmaRefusal("'\(key)': null takes no modifiers") }
                guard field != nil else { throw SigmaRefusal("'\(key)': null needs a field") }
                out.append(.isNull)
                continue
            }
            guard let text = scalarText(v) else { throw SigmaRefusal("'\(key)': values must be strings, numbers or booleans") }
            guard text.utf8.count <= 4096 else { throw SigmaRefusal("'\(key)': a value longer than 4096 bytes") }
            var variants: [(bytes: [UInt8], wildcards: Bool)] = [(Array(text.utf8), true)]
            for m in mods {
                switch m {
                case "windash":
                    variants = variants.flatMap { v in WindowsDash.variants(String(decoding: v.bytes, as: UTF8.self)).map { (Array($0.utf8), v.wildcards) } }
                case "wide", "utf16le": variants = variants.map { (UTF16.encode(String(decoding: $0.bytes, as: UTF8.self), bigEndian: false, bom: false), false) }
                case "utf16be": variants = variants.map { (UTF16.encode(String(decoding: $0.bytes, as: UTF8.self), bigEndian: true, bom: false), false) }
                case "utf16": variants = variants.map { (UTF16.encode(String(decoding: $0.bytes, as: UTF8.self), bigEndian: false, bom: true), false) }
                case "base64": variants = variants.map { (Base64.encode($0.bytes), false) }
                case "base64offset": variants = variants.flatMap { v in Base64.offsets(v.bytes).map { ($0, false) } }
                default: break
                }
            }
            // Encoded text is case-sensitive by nature.
            let c = cased || b64
            for var_ in variants {
                var parts = var_.wildcards ? globParts(String(decoding: var_.bytes, as: UTF8.self)) : (var_.bytes.isEmpty ? [] : [.literal(var_.bytes)])
                // Keywords are found anywhere in the record, as in a log line search.
                switch kinds.first ?? (field == nil ? "contains" : nil) {
                case "contains": parts = [.star] + parts + [.star]
                case "startswith": parts = parts + [.star]
                case "endswith": parts = [.star] + parts
                default: break
                }
                // Collapse doubled stars from the value's own wildcards.
                var collapsed: [GlobPart] = []
                for p in parts where !(p == .star && collapsed.last == .star) { collapsed.append(p) }
                out.append(ValueMatcher.from(collapsed, cased: c))
            }
        }
        guard out.count <= maxValues * 5 else { throw SigmaRefusal("'\(key)': too many value variants") }
        return out
    }

    static func scalarText(_ v: JSON) -> String? {
        switch v {
        case .string(let s): return s
        case .number(let n): return n == n.rounded() && abs(n) < 1e15 ? String(Int64(n)) : String(n)
        case .bool(let b): return b ? "true" : "false"
        default: return nil
        }
    }
}

/// `sel1 and not (filter1 or filter2)`, `1 of sel*`, `all of them`.
enum ConditionParser {
    enum Token: Equatable { case word(String), lparen, rparen, pipe }

    static func parse(_ text: String, names: [String]) throws(SigmaRefusal) -> Condition {
        guard text.utf8.count <= 4096 else { throw SigmaRefusal("condition longer than 4096 bytes") }
        var tokens: [Token] = []
        var cur = ""
        func flush() { if !cur.isEmpty { tokens.append(.word(cur)); cur = "" } }
        for c in text {
            switch c {
            case "(": flush(); tokens.append(.lparen)
            case ")": flush(); tokens.append(.rparen)
            case "|": flush(); tokens.append(.pipe)
            case " ", "\t", "\n": flush()
            default: cur.append(c)
            }
        }
        flush()
        if tokens.contains(.pipe) { throw SigmaRefusal("aggregations in conditions ('| count() …', '| near') are not supported") }
        var p = Parser(tokens: tokens, names: names)
        let c = try p.or(depth: 0)
        guard p.i == tokens.count else { throw SigmaRefusal("condition: unexpected '\(p.describe(p.i))'") }
        return c
    }

    struct Parser {
        let tokens: [Token]
        let names: [String]
        var i = 0

        func describe(_ k: Int) -> String {
            guard k < tokens.count else { return "end" }
            switch tokens[k] { case .word(let w): return w; case .lparen: return "("; case .rparen: return ")"; case .pipe: return "|" }
        }

        func peekWord() -> String? { if i < tokens.count, case .word(let w) = tokens[i] { return w.lowercased() }; return nil }

        mutating func or(depth: Int) throws(SigmaRefusal) -> Condition {
            guard depth < 64 else { throw SigmaRefusal("condition nested too deep") }
            var items = [try and(depth: depth)]
            while peekWord() == "or" { i += 1; items.append(try and(depth: depth)) }
            return items.count == 1 ? items[0] : .or(items)
        }

        mutating func and(depth: Int) throws(SigmaRefusal) -> Condition {
            var items = [try unary(depth: depth)]
            while peekWord() == "and" { i += 1; items.append(try unary(depth: depth)) }
            return items.count == 1 ? items[0] : .and(items)
        }

        mutating func unary(depth: Int) throws(SigmaRefusal) -> Condition {
            if peekWord() == "not" { i += 1; return .not(try unary(depth: depth + 1)) }
            guard i < tokens.count else { throw SigmaRefusal("condition ends early") }
            switch tokens[i] {
            case .lparen:
                i += 1
                let c = try or(depth: depth + 1)
                guard i < tokens.count, tokens[i] == .rparen else { throw SigmaRefusal("condition: missing ')'") }
                i += 1
                return c
            case .rparen, .pipe:
                throw SigmaRefusal("condition: unexpected '\(describe(i))'")
            case .word(let w):
                let lw = w.lowercased()
                if lw == "1" || lw == "all" || lw == "any" {
                    guard i + 2 < tokens.count + 0, peekAt(i + 1) == "of", case .word(let target) = tokens[i + 2] else {
                        throw SigmaRefusal("condition: '\(w)' must be followed by 'of <selections>'")
                    }
                    i += 3
                    let matched = try matching(target)
                    let sels = matched.map { Condition.selection($0) }
                    return lw == "all" ? (sels.count == 1 ? sels[0] : .and(sels)) : (sels.count == 1 ? sels[0] : .or(sels))
                }
                if let n = Int(lw), n > 1 { throw SigmaRefusal("condition: '\(n) of' is not supported (only '1 of' and 'all of')") }
                if ["and", "or", "of", "them"].contains(lw) { throw SigmaRefusal("condition: unexpected '\(w)'") }
                guard let idx = names.firstIndex(of: w) else { throw SigmaRefusal("condition names '\(w)', which is not a selection") }
                i += 1
                return .selection(idx)
            }
        }

        func peekAt(_ k: Int) -> String? { if k < tokens.count, case .word(let w) = tokens[k] { return w.lowercased() }; return nil }

        func matching(_ target: String) throws(SigmaRefusal) -> [Int] {
            if target == "them" {
                let idx = names.indices.filter { !names[$0].hasPrefix("_") }
                guard !idx.isEmpty else { throw SigmaRefusal("condition: 'them' matches no selection") }
                return idx
            }
            let parts = globParts(target)
            let idx = names.indices.filter { ValueMatcher.glob(parts, Array(names[$0].utf8)) }
            guard !idx.isEmpty else { throw SigmaRefusal("condition: '\(target)' matches no selection") }
            return idx
        }
    }
}

/// Rules by log source, for the sensor. Refused files are kept with their reason.
public struct SigmaRuleSet {
    public private(set) var rules: [SigmaRule] = []
    public private(set) var refused: [(file: String, reason: String)] = []
    var bySource: [SigmaLogSource: [Int]] = [:]
    /// Fields some rule of the source reads.
    public private(set) var fieldsBySource: [SigmaLogSource: Set<SigmaField>] = [:]

    public init() {}

    /// Per source, which fields some rule reads (all of them when a rule searches keywords).
    public private(set) var wanted: [SigmaLogSource: [Bool]] = [:]
    var scratch = ScratchBuffer()
    var compiled: [CompiledRule] = []
    var indexes = SourceIndexes()

    public mutating func add(_ r: SigmaRule) {
        indexes = SourceIndexes() // rebuilt on next use
        compiled.append(CompiledRule(selections: r.selections, condition: r.condition, source: r.source))
        bySource[r.source, default: []].append(rules.count)
        fieldsBySource[r.source, default: []].formUnion(r.fields)
        var w = wanted[r.source] ?? Array(repeating: false, count: SigmaField.allCases.count)
        if r.usesKeywords { w = Array(repeating: true, count: w.count) } else { for f in r.fields { w[f.rawValue] = true } }
        wanted[r.source] = w
        scratch.grow(r.selections.count)
        rules.append(r)
    }

    public mutating func refuse(file: String, reason: String) { refused.append((file, reason)) }

    public func hasRules(for s: SigmaLogSource) -> Bool { bySource[s] != nil }

    /// The auditd record types some rule can match (upper case); nil: any type.
    public var auditdTypesNeeded: Set<String>? {
        var out = Set<String>()
        for i in bySource[.auditd] ?? [] {
            guard let t = compiled[i].auditTypes else { return nil }
            for v in t { out.insert(String(decoding: v, as: UTF8.self).uppercased()) }
        }
        return out
    }

    /// Indexes of the rules of the record's source that match it.
    public func evaluate(_ r: SigmaRecord) -> [Int] {
        guard let idx = bySource[r.source] else { return [] }
        let index = sourceIndex(r.source, idx)
        index.mark(r)
        var out: [Int] = []
        let s = scratch
        for (pos, i) in idx.enumerated() where index.isCandidate(pos) && compiled[i].matches(r, scratch: &s.memo) { out.append(i) }
        return out
    }

    /// The literal prefilter of a source, built on first use after the rules are added.
    func sourceIndex(_ s: SigmaLogSource, _ idx: [Int]) -> SigmaSourceIndex {
        if let x = indexes.bySource[s] { return x }
        let x = SigmaSourceIndex(rules: idx.map { compiled[$0] })
        indexes.bySource[s] = x
        return x
    }

    public func needs(_ f: SigmaField, for s: SigmaLogSource) -> Bool { fieldsBySource[s]?.contains(f) ?? false }
}

/// The condition memo reused across rules (one thread evaluates a rule set).
final class ScratchBuffer {
    var memo: [Int8] = []
    func grow(_ n: Int) { if memo.count < n { memo = Array(repeating: -1, count: n) } }
}

final class SourceIndexes {
    var bySource: [SigmaLogSource: SigmaSourceIndex] = [:]
}
