// The YAML that Sigma rules are written in: block mappings and sequences,
// flow lists and maps, plain, quoted and block (| >) scalars, comments.
// Rule files are hostile input, so it is bounded (bytes, depth, nodes) and
// refuses what rules do not need and a full parser would have to expand:
// anchors, aliases, tags, merge keys. The result is a JSON tree (order kept);
// plain scalars stay strings except null/~ and true/false.
import MdatpJSON

public struct YAMLError: Error, Equatable, CustomStringConvertible {
    public let line: Int
    public let reason: String
    public var description: String { "line \(line): \(reason)" }
}

public struct YAMLLimits: Sendable {
    public var maxBytes = 1 << 20
    public var maxDepth = 48
    public var maxNodes = 200_000
    public init() {}
}

public enum YAML {
    /// Every document of the stream (separated by `---`).
    public static func parseDocuments(_ text: String, limits: YAMLLimits = YAMLLimits()) throws(YAMLError) -> [JSON] {
        guard text.utf8.count <= limits.maxBytes else { throw YAMLError(line: 0, reason: "larger than \(limits.maxBytes) bytes") }
        var docs: [[Substring]] = [[]]
        var sawContent = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let l = line.last == "\r" ? line.dropLast() : line
            if l == "---" || l.hasPrefix("--- ") {
                if sawContent { docs.append([]) }
                sawContent = false
                docs[docs.count - 1].append("")   // keep line numbers
                continue
            }
            if l == "..." { docs[docs.count - 1].append(""); continue }
            if !isBlankOrComment(l) { sawContent = true }
            docs[docs.count - 1].append(l)
        }
        var out: [JSON] = []
        var firstLine = 1
        for d in docs {
            var p = Parser(lines: d, firstLine: firstLine, limits: limits)
            firstLine += d.count
            if let v = try p.document() { out.append(v) }
        }
        return out
    }

    /// A stream that must hold exactly one document.
    public static func parse(_ text: String, limits: YAMLLimits = YAMLLimits()) throws(YAMLError) -> JSON {
        let docs = try parseDocuments(text, limits: limits)
        guard docs.count == 1 else {
            throw YAMLError(line: 0, reason: docs.isEmpty ? "empty document" : "\(docs.count) documents where one is expected")
        }
        return docs[0]
    }

    static func isBlankOrComment<S: StringProtocol>(_ l: S) -> Bool {
        for c in l.utf8 {
            if c == 0x20 || c == 0x09 { continue }
            return c == 0x23 // '#'
        }
        return true
    }
}

private struct Parser {
    var lines: [[UInt8]]
    let firstLine: Int
    let limits: YAMLLimits
    var i = 0
    var nodes = 0

    init(lines: [Substring], firstLine: Int, limits: YAMLLimits) {
        self.lines = lines.map { Array($0.utf8) }
        self.firstLine = firstLine
        self.limits = limits
    }

    func fail(_ reason: String, at line: Int? = nil) -> YAMLError { YAMLError(line: firstLine + (line ?? i), reason: reason) }

    mutating func document() throws(YAMLError) -> JSON? {
        skipBlank()
        guard i < lines.count else { return nil }
        let v = try node(indent: indentOf(lines[i]), depth: 0)
        skipBlank()
        if i < lines.count { throw fail("unexpected content (bad indentation?)") }
        return v
    }

    // MARK: lines

    func indentOf(_ l: [UInt8]) -> Int {
        var n = 0
        while n < l.count && l[n] == 0x20 { n += 1 }
        return n
    }

    mutating func skipBlank() {
        while i < lines.count && YAML.isBlankOrComment(String(decoding: lines[i], as: UTF8.self)) { i += 1 }
    }

    mutating func count() throws(YAMLError) {
        nodes += 1
        if nodes > limits.maxNodes { throw fail("more than \(limits.maxNodes) nodes") }
    }

    // MARK: block structure

    /// The node starting at line i, whose lines are indented `indent`.
    mutating func node(indent: Int, depth: Int) throws(YAMLError) -> JSON {
        guard depth <= limits.maxDepth else { throw fail("nested deeper than \(limits.maxDepth)") }
        try count()
        let l = lines[i]
        if l.count > indent && l[indent] == 0x09 { throw fail("tab used for indentation") }
        let body = Array(l[indent...])
        if isSequenceItem(body) { return try sequence(indent: indent, depth: depth) }
        if try keySplit(body) != nil { return try mapping(indent: indent, depth: depth) }
        // A scalar (or flow collection) on its own, possibly over several lines.
        let start = i
        var text = String(decoding: body, as: UTF8.self)
        i += 1
        if let first = body.first, first == 0x5b || first == 0x7b { // [ {
            while !flowBalanced(text) && i < lines.count {
                text += " " + String(decoding: lines[i], as: UTF8.self).trimmingSpaces
                i += 1
            }
        } else {
            while i < lines.count, !YAML.isBlankOrComment(String(decoding: lines[i], as: UTF8.self)), indentOf(lines[i]) >= indent,
                  !(indentOf(lines[i]) == indent && (isSequenceItem(Array(lines[i][indent...])) || (try? keySplit(Array(lines[i][indent...]))) != nil)) {
                text += " " + String(decoding: lines[i], as: UTF8.self).trimmingSpaces
                i += 1
            }
        }
        return try inlineValue(text, line: start, depth: depth)
    }

    func isSequenceItem(_ body: [UInt8]) -> Bool {
        body.first == 0x2d && (body.count == 1 || body[1] == 0x20) // "-" or "- "
    }

    /// "key: rest" → (key, rest), nil when the line is not a mapping entry.
    func keySplit(_ body: [UInt8]) throws(YAMLError) -> (String, [UInt8])? {
        guard let first = body.first else { return nil }
        var keyEnd = 0
        var key: String
        if first == 0x22 || first == 0x27 { // quoted key
            guard let (s, end) = try? quotedScalar(body, from: 0) else { return nil }
            key = s
            keyEnd = end
            while keyEnd < body.count && body[keyEnd] == 0x20 { keyEnd += 1 }
            guard keyEnd < body.count, body[keyEnd] == 0x3a, keyEnd + 1 == body.count || body[keyEnd + 1] == 0x20 else { return nil }
        } else {
            if first == 0x5b || first == 0x7b || first == 0x23 { return nil }
            var j = 0
            var found = -1
            while j < body.count {
                if body[j] == 0x3a && (j + 1 == body.count || body[j + 1] == 0x20) { found = j; break }
                if body[j] == 0x23 && j > 0 && body[j - 1] == 0x20 { break }
                j += 1
            }
            guard found > 0 else { return nil }
            key = String(decoding: body[..<found], as: UTF8.self).trimmingSpaces
            keyEnd = found
            if key == "<<" { throw fail("merge keys (<<) are not supported") }
            if key.hasPrefix("?") { throw fail("complex keys (?) are not supported") }
        }
        let rest = Array(body[(keyEnd + 1)...])
        return (key, rest)
    }

    mutating func mapping(indent: Int, depth: Int) throws(YAMLError) -> JSON {
        var members: [(String, JSON)] = []
        var seen = Set<String>()
        while true {
            skipBlank()
            guard i < lines.count, indentOf(lines[i]) == indent else { break }
            let body = Array(lines[i][indent...])
            guard let (key, restRaw) = try keySplit(body) else {
                if isSequenceItem(body) { throw fail("a list item where a mapping key is expected") }
                throw fail("expected 'key: value'")
            }
            guard seen.insert(key).inserted else { throw fail("duplicate key '\(key)'") }
            let line = i
            let rest = stripComment(restRaw).trimmingSpaces
            i += 1
            let value: JSON
            if rest.isEmpty {
                skipBlank()
                if i < lines.count, indentOf(lines[i]) > indent {
                    value = try node(indent: indentOf(lines[i]), depth: depth + 1)
                } else if i < lines.count, indentOf(lines[i]) == indent, isSequenceItem(Array(lines[i][indent...])) {
                    value = try sequence(indent: indent, depth: depth + 1) // "key:\n- a" (list at the key's indent)
                } else {
                    value = .null
                }
            } else if rest.first == "|" || rest.first == ">" {
                value = .string(try blockScalar(header: rest, parentIndent: indent, line: line))
            } else {
                var text = rest
                // Plain or flow scalars may continue on more indented lines.
                while i < lines.count, !YAML.isBlankOrComment(String(decoding: lines[i], as: UTF8.self)), indentOf(lines[i]) > indent {
                    if let f = text.first, (f == "[" || f == "{"), flowBalanced(text) { break }
                    text += " " + stripComment(Array(lines[i][indentOf(lines[i])...])).trimmingSpaces
                    i += 1
                }
                value = try inlineValue(text, line: line, depth: depth + 1)
            }
            try count()
            members.append((key, value))
        }
        return .object(members)
    }

    mutating func sequence(indent: Int, depth: Int) throws(YAMLError) -> JSON {
        var items: [JSON] = []
        while true {
            skipBlank()
            guard i < lines.count, indentOf(lines[i]) == indent, isSequenceItem(Array(lines[i][indent...])) else { break }
            let body = Array(lines[i][indent...])
            if body.count <= 2 || YAML.isBlankOrComment(String(decoding: body[2...], as: UTF8.self)) {
                i += 1
                skipBlank()
                if i < lines.count, indentOf(lines[i]) > indent {
                    items.append(try node(indent: indentOf(lines[i]), depth: depth + 1))
                } else {
                    items.append(.null)
                }
                continue
            }
            // "- x": the item's content starts at indent + 2 (+ more spaces): treat the
            // dash as indentation so "- key: v" continues as a mapping below it.
            var k = 1
            while k < body.count && body[k] == 0x20 { k += 1 }
            var replaced = lines[i]
            for j in indent..<(indent + k) { replaced[j] = 0x20 }
            lines[i] = replaced
            items.append(try node(indent: indent + k, depth: depth + 1))
        }
        return .array(items)
    }

    /// `|` or `>` with optional chomping (- +) and indentation digit.
    mutating func blockScalar(header: String, parentIndent: Int, line: Int) throws(YAMLError) -> String {
        let folded = header.first == ">"
        var chomp: Character = " "
        var explicitIndent: Int?
        for c in header.dropFirst() {
            if c == "-" || c == "+" { chomp = c } else if let d = c.wholeNumberValue, d > 0 { explicitIndent = parentIndent + d } else if c == " " { continue } else if c == "#" { break } else {
                throw fail("bad block scalar header '\(header)'", at: line)
            }
        }
        var raw: [String] = []
        var blockIndent = explicitIndent
        while i < lines.count {
            let l = lines[i]
            let ind = indentOf(l)
            let blank = ind == l.count
            if blank { raw.append(""); i += 1; continue }
            if blockIndent == nil { blockIndent = ind }
            guard ind >= blockIndent!, ind > parentIndent else { break }
            raw.append(String(decoding: l[blockIndent!...], as: UTF8.self))
            i += 1
        }
        // Trailing blank lines belong to chomping, not content.
        var trailing = 0
        while let last = raw.last, last.isEmpty { raw.removeLast(); trailing += 1 }
        var text: String
        if folded {
            text = ""
            for (n, l) in raw.enumerated() {
                if n > 0 { text += (l.isEmpty || raw[n - 1].isEmpty || l.first == " ") ? "\n" : " " }
                text += l
            }
        } else {
            text = raw.joined(separator: "\n")
        }
        switch chomp {
        case "-": break
        case "+": text += String(repeating: "\n", count: trailing + (raw.isEmpty ? 0 : 1))
        default: if !raw.isEmpty { text += "\n" }
        }
        return text
    }

    // MARK: inline values

    func stripComment(_ b: [UInt8]) -> String {
        var quote: UInt8 = 0
        var j = 0
        while j < b.count {
            let c = b[j]
            if quote != 0 {
                if c == 0x5c && quote == 0x22 { j += 2; continue }
                if c == quote { quote = 0 }
            } else if c == 0x22 || c == 0x27 {
                if j == 0 || b[j - 1] == 0x20 || b[j - 1] == 0x5b || b[j - 1] == 0x2c || b[j - 1] == 0x7b { quote = c }
            } else if c == 0x23 && (j == 0 || b[j - 1] == 0x20 || b[j - 1] == 0x09) {
                return String(decoding: b[..<j], as: UTF8.self)
            }
            j += 1
        }
        return String(decoding: b, as: UTF8.self)
    }

    func flowBalanced(_ s: String) -> Bool {
        var depth = 0
        var quote: UInt8 = 0
        let b = Array(s.utf8)
        var j = 0
        while j < b.count {
            let c = b[j]
            if quote != 0 {
                if c == 0x5c && quote == 0x22 { j += 2; continue }
                if c == quote { quote = 0 }
            } else if c == 0x22 || c == 0x27 { quote = c } else if c == 0x5b || c == 0x7b { depth += 1 } else if c == 0x5d || c == 0x7d { depth -= 1 }
            j += 1
        }
        return depth <= 0
    }

    mutating func inlineValue(_ text: String, line: Int, depth: Int) throws(YAMLError) -> JSON {
        let b = Array(stripComment(Array(text.utf8)).trimmingSpaces.utf8)
        guard let first = b.first else { return .null }
        if first == 0x5b || first == 0x7b {
            var pos = 0
            let v = try flow(b, &pos, line: line, depth: depth)
            while pos < b.count && b[pos] == 0x20 { pos += 1 }
            if pos != b.count { throw fail("text after a flow collection", at: line) }
            return v
        }
        if first == 0x22 || first == 0x27 {
            let (s, end) = try quotedScalar(b, from: 0, line: line)
            if !String(decoding: b[end...], as: UTF8.self).trimmingSpaces.isEmpty { throw fail("text after a quoted string", at: line) }
            return .string(s)
        }
        return try plain(String(decoding: b, as: UTF8.self), line: line)
    }

    func plain(_ s: String, line: Int) throws(YAMLError) -> JSON {
        switch s.first {
        case "&": throw fail("anchors (&) are not supported", at: line)
        case "*": throw fail("aliases (*) are not supported: quote a value that starts with '*'", at: line)
        case "!": throw fail("tags (!) are not supported", at: line)
        case "@", "`": throw fail("a plain value cannot start with '\(s.first!)': quote it", at: line)
        case "%": throw fail("directives are not supported", at: line)
        default: break
        }
        switch s {
        case "null", "Null", "NULL", "~": return .null
        case "true", "True", "TRUE": return .bool(true)
        case "false", "False", "FALSE": return .bool(false)
        default: return .string(s)
        }
    }

    /// A quoted scalar starting at b[from]; returns it and the index after the closing quote.
    func quotedScalar(_ b: [UInt8], from: Int, line: Int? = nil) throws(YAMLError) -> (String, Int) {
        let q = b[from]
        var out: [UInt8] = []
        var j = from + 1
        while j < b.count {
            let c = b[j]
            if q == 0x27 {
                if c == 0x27 {
                    if j + 1 < b.count && b[j + 1] == 0x27 { out.append(0x27); j += 2; continue }
                    return (String(decoding: out, as: UTF8.self), j + 1)
                }
                out.append(c)
                j += 1
                continue
            }
            if c == 0x22 { return (String(decoding: out, as: UTF8.self), j + 1) }
            if c == 0x5c {
                guard j + 1 < b.count else { break }
                let e = b[j + 1]
                j += 2
                switch e {
                case UInt8(ascii: "n"): out.append(0x0a)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "r"): out.append(0x0d)
                case UInt8(ascii: "0"): out.append(0)
                case UInt8(ascii: "\\"), UInt8(ascii: "\""), UInt8(ascii: "/"), UInt8(ascii: " "): out.append(e)
                case UInt8(ascii: "x"), UInt8(ascii: "u"), UInt8(ascii: "U"):
                    let n = e == UInt8(ascii: "x") ? 2 : e == UInt8(ascii: "u") ? 4 : 8
                    guard j + n <= b.count, let v = UInt32(String(decoding: b[j..<(j + n)], as: UTF8.self), radix: 16),
                          let scalar = Unicode.Scalar(v) else { throw fail("bad \\\(Character(Unicode.Scalar(e))) escape", at: line) }
                    out.append(contentsOf: Array(String(Character(scalar)).utf8))
                    j += n
                default: throw fail("unknown escape \\\(Character(Unicode.Scalar(e)))", at: line)
                }
                continue
            }
            out.append(c)
            j += 1
        }
        throw fail("unterminated quoted string", at: line)
    }

    /// Flow collections: [a, b] and {k: v}, nested.
    mutating func flow(_ b: [UInt8], _ pos: inout Int, line: Int, depth: Int) throws(YAMLError) -> JSON {
        guard depth <= limits.maxDepth else { throw fail("nested deeper than \(limits.maxDepth)", at: line) }
        try count()
        func skip() { while pos < b.count && b[pos] == 0x20 { pos += 1 } }
        let open = b[pos]
        let close: UInt8 = open == 0x5b ? 0x5d : 0x7d
        pos += 1
        var items: [JSON] = []
        var members: [(String, JSON)] = []
        while true {
            skip()
            guard pos < b.count else { throw fail("unterminated flow collection", at: line) }
            if b[pos] == close { pos += 1; break }
            var key: String?
            if open == 0x7b {
                let k = try flowScalar(b, &pos, line: line, stops: [0x3a])
                guard pos < b.count, b[pos] == 0x3a else { throw fail("expected ':' in a flow mapping", at: line) }
                pos += 1
                key = k.string ?? k.serialized()
                skip()
            }
            let v: JSON
            if pos < b.count, b[pos] == 0x5b || b[pos] == 0x7b { v = try flow(b, &pos, line: line, depth: depth + 1) } else { v = try flowScalar(b, &pos, line: line, stops: []) }
            try count()
            if let key { members.append((key, v)) } else { items.append(v) }
            skip()
            guard pos < b.count else { throw fail("unterminated flow collection", at: line) }
            if b[pos] == 0x2c { pos += 1; continue }
            if b[pos] == close { pos += 1; break }
            throw fail("expected ',' or '\(Character(Unicode.Scalar(close)))' in a flow collection", at: line)
        }
        return open == 0x5b ? .array(items) : .object(members)
    }

    func flowScalar(_ b: [UInt8], _ pos: inout Int, line: Int, stops: [UInt8]) throws(YAMLError) -> JSON {
        while pos < b.count && b[pos] == 0x20 { pos += 1 }
        if pos < b.count, b[pos] == 0x22 || b[pos] == 0x27 {
            let (s, end) = try quotedScalar(b, from: pos, line: line)
            pos = end
            while pos < b.count && b[pos] == 0x20 { pos += 1 }
            return .string(s)
        }
        let start = pos
        while pos < b.count, b[pos] != 0x2c, b[pos] != 0x5d, b[pos] != 0x7d, !(stops.contains(b[pos]) && (pos + 1 == b.count || b[pos + 1] == 0x20)) { pos += 1 }
        let s = String(decoding: b[start..<pos], as: UTF8.self).trimmingSpaces
        return try plain(s, line: line)
    }
}

extension StringProtocol {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}
