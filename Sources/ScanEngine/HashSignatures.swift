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

    public init() {}

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

/// The signature lines of a definitions file: CR/LF or LF ends, blank lines and
/// `#` comments skipped, each line bounded; `body` gets the line and its number.
func forEachSignatureLine(_ bytes: [UInt8], file: String, maxLineBytes: Int,
                          _ body: (ArraySlice<UInt8>, Int) throws(SignatureError) -> Void) throws(SignatureError) {
    var lineNo = 0
    var start = 0
    while start < bytes.count {
        lineNo += 1
        let end = bytes[start...].firstIndex(of: 0x0a) ?? bytes.count
        var line = bytes[start..<end]
        start = end + 1
        if line.last == 0x0d { line = line.dropLast() }
        guard line.count <= maxLineBytes else { throw SignatureError(file: file, line: lineNo, reason: "line longer than \(maxLineBytes) bytes") }
        if line.isEmpty || line.first == 0x23 { continue }
        try body(line, lineNo)
    }
}

/// One digest kind's signatures, stored flat (a million SHA-256 signatures
/// take ~80 MB, not the ~330 MB of a dictionary of arrays) and found through
/// an open-addressing index on the digest's first eight bytes — digests are
/// uniformly distributed, so that is already a good hash.
struct DigestTable: Sendable {
    let width: Int
    private(set) var digests: [UInt8] = []   // entry i at i * width
    private(set) var sizes: [UInt64] = []    // anySize: `*`
    private(set) var nameAt: [UInt32] = []   // offset in `names` (0-terminated)
    private(set) var names: [UInt8] = [0]
    private var slots: [Int32] = []          // entry + 1; 0 = empty
    static let anySize = UInt64.max

    init(width: Int) { self.width = width }

    var count: Int { sizes.count }

    private func hash(_ d: UnsafeRawBufferPointer) -> Int {
        var h: UInt64 = 0
        for i in 0..<8 { h = h << 8 | UInt64(d[i]) }
        return Int(truncatingIfNeeded: h & 0x7fff_ffff_ffff_ffff)
    }

    private func same(_ entry: Int, _ d: UnsafeRawBufferPointer) -> Bool {
        digests.withUnsafeBufferPointer { all in
            memcmp(all.baseAddress! + entry * width, d.baseAddress!, width) == 0
        }
    }

    /// The entry for exactly (digest, size), if any.
    private func slot(of d: UnsafeRawBufferPointer, size: UInt64) -> (Int, Int?) {
        let mask = slots.count - 1
        var i = hash(d) & mask
        while true {
            let e = Int(slots[i]) - 1
            if e < 0 { return (i, nil) }
            if sizes[e] == size && same(e, d) { return (i, e) }
            i = (i + 1) & mask
        }
    }

    /// Adds a signature (a repeated one keeps the last name); true when new.
    mutating func insert(_ d: UnsafeRawBufferPointer, size: UInt64, name: ArraySlice<UInt8>) -> Bool {
        if slots.isEmpty || (count + 1) * 2 > slots.count { grow() }
        let (i, existing) = slot(of: d, size: size)
        let at = UInt32(names.count)
        names += name
        names.append(0)
        if let e = existing {
            nameAt[e] = at
            return false
        }
        digests += d
        sizes.append(size)
        nameAt.append(at)
        slots[i] = Int32(count)
        return true
    }

    private mutating func grow() {
        slots = [Int32](repeating: 0, count: max(1024, slots.count * 2))
        let mask = slots.count - 1
        for e in 0..<count {
            var i = digests.withUnsafeBytes { hash(UnsafeRawBufferPointer(rebasing: $0[(e * width)..<((e + 1) * width)])) } & mask
            while slots[i] != 0 { i = (i + 1) & mask }
            slots[i] = Int32(e + 1)
        }
    }

    /// The signature for this file: one of exactly its size first, else one for any size.
    func find(_ digest: [UInt8], size: UInt64) -> Int? {
        guard !slots.isEmpty, digest.count == width else { return nil }
        return digest.withUnsafeBytes { d in
            slot(of: d, size: size).1 ?? slot(of: d, size: DigestTable.anySize).1
        }
    }

    func name(_ e: Int) -> String {
        let start = Int(nameAt[e])
        let end = names[start...].firstIndex(of: 0) ?? names.count
        return String(decoding: names[start..<end], as: UTF8.self)
    }

    mutating func shrinkToFit() {
        digests = Array(digests)
        names = Array(names)
    }
}

public struct HashSignatureSet: Sendable {
    public static let maxLineBytes = 4096
    public static let maxSignatures = 20_000_000
    public static let maxNameBytes = 512

    var block: [HashKind: DigestTable] = [:]
    var allow: [HashKind: DigestTable] = [:]
    public private(set) var count = 0
    public private(set) var allowCount = 0

    public init() {}

    /// The digest kinds a scan must compute for this set.
    public var neededKinds: Set<HashKind> {
        Set(block.keys).union(allow.keys)
    }

    /// Loads one file's text. `allowList` for .fp/.sfp.
    public mutating func load(_ bytes: [UInt8], file: String, allowList: Bool) throws(SignatureError) {
        var digest = [UInt8](repeating: 0, count: 32)
        try forEachSignatureLine(bytes, file: file, maxLineBytes: HashSignatureSet.maxLineBytes) { line, lineNo throws(SignatureError) in
            try add(line: line, file: file, lineNo: lineNo, allowList: allowList, scratch: &digest)
        }
        for k in block.keys { block[k]!.shrinkToFit() }
    }

    mutating func add(line: ArraySlice<UInt8>, file: String, lineNo: Int, allowList: Bool, scratch: inout [UInt8]) throws(SignatureError) {
        // hash:size:name[:level] — found by hand, no arrays per line.
        guard let c1 = line.firstIndex(of: 0x3a), let c2 = line[(c1 + 1)...].firstIndex(of: 0x3a) else {
            throw SignatureError(file: file, line: lineNo, reason: "expected hash:size:name")
        }
        let hex = line[line.startIndex..<c1]
        guard hex.count % 2 == 0, let kind = HashKind(rawValue: hex.count / 2) else {
            throw SignatureError(file: file, line: lineNo, reason: "hash must be 32, 40 or 64 hex digits")
        }
        var j = 0, k = hex.startIndex
        while k < hex.endIndex {
            guard let hi = HashSignatureSet.nibble(hex[k]), let lo = HashSignatureSet.nibble(hex[k + 1]) else {
                throw SignatureError(file: file, line: lineNo, reason: "hash must be 32, 40 or 64 hex digits")
            }
            scratch[j] = hi << 4 | lo
            j += 1
            k += 2
        }
        let sizeText = line[(c1 + 1)..<c2]
        var size: UInt64
        if sizeText.elementsEqual([0x2a]) {
            guard kind != .md5 || file.hasSuffix(".hsb") || file.hasSuffix(".sfp") else {
                throw SignatureError(file: file, line: lineNo, reason: "size `*` is only allowed in .hsb/.sfp")
            }
            size = DigestTable.anySize
        } else {
            guard !sizeText.isEmpty, sizeText.count <= 19, sizeText.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
                throw SignatureError(file: file, line: lineNo, reason: "size must be a number or *")
            }
            size = sizeText.reduce(UInt64(0)) { $0 * 10 + UInt64($1 - 0x30) }
        }
        // A 4th field (minimum engine level) is accepted and ignored.
        let nameEnd = line[(c2 + 1)...].firstIndex(of: 0x3a) ?? line.endIndex
        let nameBytes = line[(c2 + 1)..<nameEnd]
        guard !nameBytes.isEmpty, nameBytes.count <= HashSignatureSet.maxNameBytes,
              nameBytes.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
            throw SignatureError(file: file, line: lineNo, reason: "name must be 1-\(HashSignatureSet.maxNameBytes) printable characters")
        }
        guard count + allowCount < HashSignatureSet.maxSignatures else {
            throw SignatureError(file: file, line: lineNo, reason: "more than \(HashSignatureSet.maxSignatures) signatures")
        }
        let added = scratch.withUnsafeBytes { d -> Bool in
            let digest = UnsafeRawBufferPointer(rebasing: d[0..<kind.rawValue])
            if allowList {
                return allow[kind, default: DigestTable(width: kind.rawValue)].insert(digest, size: size, name: [])
            }
            return block[kind, default: DigestTable(width: kind.rawValue)].insert(digest, size: size, name: nameBytes)
        }
        if added { if allowList { allowCount += 1 } else { count += 1 } }
    }

    static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x61...0x66: return c - 0x61 + 10
        case 0x41...0x46: return c - 0x41 + 10
        default: return nil
        }
    }

    /// Whether an allow-list names this file (then no other engine looks at it).
    public func allowed(_ d: FileDigests) -> Bool {
        for (kind, table) in allow where !d.value(kind).isEmpty {
            if table.find(d.value(kind), size: d.size) != nil { return true }
        }
        return false
    }

    /// The verdict for a file's digests: allow-lists win.
    public func match(_ d: FileDigests) -> Detection? {
        if allowed(d) { return nil }
        for (kind, table) in block where !d.value(kind).isEmpty {
            if let e = table.find(d.value(kind), size: d.size) {
                let name = table.name(e)
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
        out.finish(ctx, kinds: kinds)
        return out
    }
}

extension FileDigests {
    /// Takes the wanted digests out of a finished context.
    mutating func finish(_ ctx: OpaquePointer, kinds: Set<HashKind>) {
        var md5 = [UInt8](repeating: 0, count: 16), sha1 = [UInt8](repeating: 0, count: 20), sha256 = [UInt8](repeating: 0, count: 32)
        mdatp_digests_final(ctx, &md5, &sha1, &sha256)
        if kinds.contains(.md5) { self.md5 = md5 }
        if kinds.contains(.sha1) { self.sha1 = sha1 }
        if kinds.contains(.sha256) { self.sha256 = sha256 }
    }

    /// The digests of bytes in memory.
    public static func of(_ bytes: some Collection<UInt8>, kinds: Set<HashKind>) -> FileDigests {
        var out = FileDigests()
        out.size = UInt64(bytes.count)
        let mask = kinds.reduce(UInt32(0)) { $0 | $1.mask }
        guard !kinds.isEmpty, let ctx = mdatp_digests_new(mask) else { return out }
        defer { mdatp_digests_free(ctx) }
        _ = bytes.withContiguousStorageIfAvailable { mdatp_digests_update(ctx, $0.baseAddress, $0.count) } ?? Array(bytes).withUnsafeBytes { mdatp_digests_update(ctx, $0.baseAddress, $0.count) }
        out.finish(ctx, kinds: kinds)
        return out
    }
}
