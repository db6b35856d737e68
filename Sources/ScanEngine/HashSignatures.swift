// Whole-file hash signatures in ClamAV's text formats, and their allow-lists:
//   .hdb  hash:size:name        (MD5 historically; the hash type follows its length)
//   .hsb  hash:size:name        (SHA-1/SHA-256; size may be `*`)
//   .fp   hash:size:name        allow-list (a match here clears the file)
//   .sfp  hash:size:name        allow-list, SHA
// Definitions are hostile input until verified, and even then bounded: line
// length, signature count and name length are capped; a bad line is an error
// naming the file and the line, and the whole set is refused.
import CCrypto
import Glibc

public enum HashKind: Int, Sendable, CaseIterable {
    case md5 = 16, sha1 = 20, sha256 = 32

    var mask: UInt32 {
        switch self {
        case .md5: return UInt32(MDATP_MD5)
        case .sha1: return UInt32(MDATP_SHA1)
        case .sha256: return UInt32(MDATP_SHA256)
        }
    }
}

/// Threat categories (Defender's names where it has them).
public enum ThreatType: String, Sendable, Equatable, CaseIterable {
    case virus
    case trojan
    case potentiallyUnwantedApplication = "potentially_unwanted_application"
    case archiveBomb = "archive_bomb"
    case tool

    /// From a ClamAV-style signature name: `Pua.` and `PUA.` are PUAs, `.Tool.`
    /// tools, `Trojan` trojans; the rest viruses.
    public static func of(signatureName n: String) -> ThreatType {
        let lower = n.lowercased()
        if lower.hasPrefix("pua.") || lower.contains(".pua.") { return .potentiallyUnwantedApplication }
        if lower.contains(".tool.") || lower.hasPrefix("tool.") { return .tool }
        if lower.contains("trojan") { return .trojan }
        return .virus
    }
}

public struct SignatureError: Error, Equatable, CustomStringConvertible {
    public let file: String
    public let line: Int
    public let reason: String
    public var description: String { line > 0 ? "\(file):\(line): \(reason)" : "\(file): \(reason)" }
}

public struct Detection: Equatable, Sendable {
    public let name: String
    public let type: ThreatType
    public let engine: String

    public init(name: String, type: ThreatType, engine: String) {
        self.name = name
        self.type = type
        self.engine = engine
    }
}

/// Digests of one file (only the kinds the loaded sets need are computed).
public struct FileDigests: Equatable, Sendable {
    public var size: UInt64 = 0
    public var md5: [UInt8] = []
    public var sha1: [UInt8] = []
    public var sha256: [UInt8] = []

    public func value(_ k: HashKind) -> [UInt8] {
        switch k {
        case .md5: return md5
        case .sha1: return sha1
        case .sha256: return sha256
        }
    }

    public static func hex(_ b: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(b.count * 2)
        for x in b {
            out.append(digits[Int(x >> 4)])
            out.append(digits[Int(x & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

struct HashKey: Hashable {
    let digest: [UInt8]
    let size: UInt64? // nil: any size (`*` in .hsb)
}

public struct HashSignatureSet: Sendable {
    public static let maxLineBytes = 4096
    public static let maxSignatures = 20_000_000
    public static let maxNameBytes = 512

    var block: [HashKind: [HashKey: String]] = [:]
    var allow: [HashKind: Set<HashKey>] = [:]
    public private(set) var count = 0
    public private(set) var allowCount = 0

    public init() {}

    /// The digest kinds a scan must compute for this set.
    public var neededKinds: Set<HashKind> {
        Set(block.keys).union(allow.keys)
    }

    /// Loads one file's text. `allowList` for .fp/.sfp.
    public mutating func load(_ bytes: [UInt8], file: String, allowList: Bool) throws(SignatureError) {
        var lineNo = 0
        var start = 0
        while start < bytes.count {
            lineNo += 1
            let end = bytes[start...].firstIndex(of: 0x0a) ?? bytes.count
            var line = bytes[start..<end]
            start = end + 1
            if line.last == 0x0d { line = line.dropLast() }
            guard line.count <= HashSignatureSet.maxLineBytes else { throw SignatureError(file: file, line: lineNo, reason: "line longer than \(HashSignatureSet.maxLineBytes) bytes") }
            if line.isEmpty || line.first == 0x23 { continue } // blank or # comment
            try add(line: line, file: file, lineNo: lineNo, allowList: allowList)
        }
    }

    mutating func add(line: ArraySlice<UInt8>, file: String, lineNo: Int, allowList: Bool) throws(SignatureError) {
        let fields = line.split(separator: 0x3a, maxSplits: 3, omittingEmptySubsequences: false)
        guard fields.count >= 3 else { throw SignatureError(file: file, line: lineNo, reason: "expected hash:size:name") }
        guard let digest = HashSignatureSet.parseHex(fields[0]), let kind = HashKind(rawValue: digest.count) else {
            throw SignatureError(file: file, line: lineNo, reason: "hash must be 32, 40 or 64 hex digits")
        }
        let sizeText = String(decoding: fields[1], as: UTF8.self)
        let size: UInt64?
        if sizeText == "*" {
            guard kind != .md5 || file.hasSuffix(".hsb") || file.hasSuffix(".sfp") else {
                throw SignatureError(file: file, line: lineNo, reason: "size `*` is only allowed in .hsb/.sfp")
            }
            size = nil
        } else {
            guard let s = UInt64(sizeText) else { throw SignatureError(file: file, line: lineNo, reason: "size must be a number or *") }
            size = s
        }
        let nameBytes = fields[2]
        guard !nameBytes.isEmpty, nameBytes.count <= HashSignatureSet.maxNameBytes,
              nameBytes.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
            throw SignatureError(file: file, line: lineNo, reason: "name must be 1-\(HashSignatureSet.maxNameBytes) printable characters")
        }
        // A 4th field (minimum engine level) is accepted and ignored.
        let name = String(decoding: nameBytes, as: UTF8.self)
        guard count + allowCount < HashSignatureSet.maxSignatures else {
            throw SignatureError(file: file, line: lineNo, reason: "more than \(HashSignatureSet.maxSignatures) signatures")
        }
        let key = HashKey(digest: digest, size: size)
        if allowList {
            if allow[kind, default: []].insert(key).inserted { allowCount += 1 }
        } else {
            if block[kind, default: [:]].updateValue(name, forKey: key) == nil { count += 1 }
        }
    }

    static func parseHex(_ s: ArraySlice<UInt8>) -> [UInt8]? {
        guard s.count % 2 == 0, s.count <= 64 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(s.count / 2)
        var i = s.startIndex
        while i < s.endIndex {
            guard let hi = nibble(s[i]), let lo = nibble(s[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x61...0x66: return c - 0x61 + 10
        case 0x41...0x46: return c - 0x41 + 10
        default: return nil
        }
    }

    func lookup(_ set: [HashKey: String], _ digest: [UInt8], _ size: UInt64) -> String? {
        set[HashKey(digest: digest, size: size)] ?? set[HashKey(digest: digest, size: nil)]
    }

    /// Whether an allow-list names this file (then no other engine looks at it).
    public func allowed(_ d: FileDigests) -> Bool {
        for (kind, keys) in allow where !d.value(kind).isEmpty {
            if keys.contains(HashKey(digest: d.value(kind), size: d.size)) || keys.contains(HashKey(digest: d.value(kind), size: nil)) { return true }
        }
        return false
    }

    /// The verdict for a file's digests: allow-lists win.
    public func match(_ d: FileDigests) -> Detection? {
        if allowed(d) { return nil }
        for (kind, set) in block where !d.value(kind).isEmpty {
            if let name = lookup(set, d.value(kind), d.size) {
                return Detection(name: name, type: ThreatType.of(signatureName: name), engine: "hash")
            }
        }
        return nil
    }
}

public struct ScanError: Error, Equatable, CustomStringConvertible {
    public let reason: String
    public init(reason: String) { self.reason = reason }
    public var description: String { reason }
}

public enum FileHasher {
    /// Reads `fd` to its end (at most `maxBytes`) computing the digests `kinds`.
    /// `onChunk` sees every chunk read (the body-signature stream).
    public static func digests(fd: Int32, kinds: Set<HashKind>, maxBytes: UInt64,
                               onChunk: ((UnsafeRawBufferPointer) -> Void)? = nil) throws(ScanError) -> FileDigests {
        let mask = kinds.reduce(UInt32(0)) { $0 | $1.mask }
        guard let ctx = mdatp_digests_new(mask) else { throw ScanError(reason: "out of memory") }
        defer { mdatp_digests_free(ctx) }
        var out = FileDigests()
        let chunk = 1 << 17
        let buf = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 64)
        defer { buf.deallocate() }
        while true {
            let n = pread(fd, buf, chunk, off_t(out.size))
            if n < 0 {
                if errno == EINTR { continue }
                throw ScanError(reason: "read failed: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            mdatp_digests_update(ctx, buf, n)
            onChunk?(UnsafeRawBufferPointer(start: buf, count: n))
            out.size += UInt64(n)
            if out.size > maxBytes { throw ScanError(reason: "larger than \(maxBytes) bytes") }
        }
        var md5 = [UInt8](repeating: 0, count: 16), sha1 = [UInt8](repeating: 0, count: 20), sha256 = [UInt8](repeating: 0, count: 32)
        mdatp_digests_final(ctx, &md5, &sha1, &sha256)
        if kinds.contains(.md5) { out.md5 = md5 }
        if kinds.contains(.sha1) { out.sha1 = sha1 }
        if kinds.contains(.sha256) { out.sha256 = sha256 }
        return out
    }
}
