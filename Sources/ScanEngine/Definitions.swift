// A definitions set: every signature file of one directory, loaded all or
// nothing: hashes, body and logical signatures, YARA rules.
import Glibc

public struct Definitions: Sendable {
    public static let maxFileBytes = 512 << 20
    public static let maxFiles = 256
    public static let extensions = ["hdb", "hsb", "fp", "sfp", "ndb", "ldb", "yar"]

    public private(set) var hashes = HashSignatureSet()
    public private(set) var bodies = BodySignatureSet()
    public private(set) var yara: YaraRules?
    public private(set) var files: [String] = []

    public init() {}

    public var signatureCount: Int { hashes.count + bodies.count + (yara?.count ?? 0) }

    /// Loads `dir`; `read` returns a file's bytes (bounded by the caller).
    public static func load(directory dir: String, names: [String], read: (String) -> [UInt8]?) throws(SignatureError) -> Definitions {
        let wanted = names.filter { n in Definitions.extensions.contains { n.hasSuffix("." + $0) } }.sorted()
        guard wanted.count <= maxFiles else { throw SignatureError(file: dir, line: 0, reason: "more than \(maxFiles) signature files") }
        var files: [(String, [UInt8])] = []
        for name in wanted {
            let path = dir + "/" + name
            guard let bytes = read(path) else { throw SignatureError(file: path, line: 0, reason: "unreadable or larger than \(maxFileBytes) bytes") }
            files.append((name, bytes))
        }
        return try load(files: files, directory: dir)
    }

    /// Loads (name, text) pairs; the name's extension says the format.
    public static func load(files: [(String, [UInt8])], directory dir: String = "definitions") throws(SignatureError) -> Definitions {
        var d = Definitions()
        var yaraSources: [(String, String)] = []
        for (name, bytes) in files {
            if name.hasSuffix(".yar") {
                yaraSources.append((name, String(decoding: bytes, as: UTF8.self)))
            } else if name.hasSuffix(".ndb") || name.hasSuffix(".ldb") {
                try d.bodies.load(bytes, file: name)
            } else if Definitions.extensions.contains(where: { name.hasSuffix("." + $0) }) {
                try d.hashes.load(bytes, file: name, allowList: name.hasSuffix(".fp") || name.hasSuffix(".sfp"))
            } else {
                continue
            }
            d.files.append(name)
        }
        if !yaraSources.isEmpty { d.yara = try YaraRules(sources: yaraSources) }
        try d.bodies.compile()
        guard d.signatureCount > 0 else { throw SignatureError(file: dir, line: 0, reason: "no signatures") }
        return d
    }

    public func match(_ digests: FileDigests) -> Detection? { hashes.match(digests) }

    public var neededKinds: Set<HashKind> { hashes.neededKinds }
}
