// A definitions package: manifest.json, its Ed25519 signature manifest.sig,
// and zstd-compressed signature files, each named in the manifest with its
// SHA-256 and sizes. Nothing in it is trusted before the manifest's signature
// verifies with a key the product ships; then every file must match the
// manifest byte for byte, and decompress to exactly the size it declares.
// Anything else is refused with a reason, all or nothing.
import CCrypto
import MdatpJSON

/// a.b.c.d, compared numerically.
public struct DefinitionsVersion: Comparable, Sendable, CustomStringConvertible {
    public let parts: [UInt16]

    public init?(_ text: String) {
        let p = text.split(separator: ".", omittingEmptySubsequences: false)
        guard p.count == 4 else { return nil }
        var out: [UInt16] = []
        for x in p {
            guard x.count <= 5, let v = UInt16(x) else { return nil }
            out.append(v)
        }
        parts = out
    }

    public static func < (a: DefinitionsVersion, b: DefinitionsVersion) -> Bool { a.parts.lexicographicallyPrecedes(b.parts) }
    public var description: String { parts.map(String.init).joined(separator: ".") }
    /// Four 16-bit fields in one integer (heartbeats carry integers).
    public var packed: UInt64 { parts.reduce(0) { $0 << 16 | UInt64($1) } }
    public init(packed: UInt64) { parts = (0..<4).map { UInt16(truncatingIfNeeded: packed >> (48 - 16 * UInt64($0))) } }
}

public struct PackageError: Error, Equatable, CustomStringConvertible {
    public let reason: String
    public init(_ r: String) { reason = r }
    public var description: String { reason }
}

public struct DefinitionsPackage: Sendable {
    public let version: DefinitionsVersion
    public let createdUnix: Int64
    public let definitions: Definitions

    public static let maxManifestBytes = 64 * 1024
    public static let maxFiles = 256
    public static let maxFileBytes: Int64 = 512 << 20

    /// Loads and verifies `dir`. `read(path, limit)` returns a file's bytes.
    /// `trustedKeys` are raw 32-byte Ed25519 public keys.
    /// `extra`: the admin's imported sources (name, text), loaded with the package's files.
    public static func load(directory dir: String, trustedKeys: [[UInt8]], extra: [(String, [UInt8])] = [],
                            read: (String, Int) -> [UInt8]?) throws(PackageError) -> DefinitionsPackage {
        guard let manifest = read(dir + "/manifest.json", maxManifestBytes) else { throw PackageError("no readable manifest.json in \(dir)") }
        guard let sig = read(dir + "/manifest.sig", 64), sig.count == 64 else { throw PackageError("unsigned: no 64-byte manifest.sig") }
        let trusted = trustedKeys.contains { key in
            key.count == 32 && manifest.withUnsafeBytes { m in mdatp_ed25519_verify(key, m.baseAddress, m.count, sig) == 1 }
        }
        guard trusted else { throw PackageError("the signature does not verify with a trusted key (tampered or foreign package)") }

        var limits = JSONLimits()
        limits.maxBytes = maxManifestBytes
        limits.maxDepth = 4
        guard let json = try? JSON.parse(manifest, limits: limits) else { throw PackageError("manifest.json is not valid JSON") }
        guard json["format"]?.int == 1 else { throw PackageError("unknown manifest format") }
        guard let vtext = json["version"]?.string, let version = DefinitionsVersion(vtext) else { throw PackageError("manifest version must be a.b.c.d") }
        guard let created = json["created_unix"]?.int, created >= 0 else { throw PackageError("manifest created_unix missing") }
        guard let files = json["files"]?.array, !files.isEmpty, files.count <= maxFiles else { throw PackageError("manifest must list 1-\(maxFiles) files") }

        var texts: [(String, [UInt8])] = []
        for f in files {
            guard let name = f["name"]?.string, validName(name) else { throw PackageError("bad file name in manifest") }
            guard let sha = f["sha256"]?.string, sha.utf8.count == 64, let size = f["size"]?.int, size >= 0, Int64(size) <= maxFileBytes,
                  let raw = f["uncompressed_size"]?.int, raw >= 0, Int64(raw) <= maxFileBytes else {
                throw PackageError("\(name): bad sha256 or sizes in manifest")
            }
            guard let bytes = read(dir + "/" + name, size + 1) else { throw PackageError("\(name): missing") }
            guard bytes.count == size else { throw PackageError("\(name): \(bytes.count) bytes, manifest says \(size) (truncated or altered)") }
            guard sha256Hex(bytes) == sha.lowercased() else { throw PackageError("\(name): SHA-256 differs from the manifest (tampered)") }
            var out = [UInt8](repeating: 0, count: raw)
            let n = bytes.withUnsafeBytes { src in out.withUnsafeMutableBytes { dst in
                mdatp_zstd_decompress_exact(src.baseAddress, src.count, dst.baseAddress, raw) } }
            guard n == raw else { throw PackageError("\(name): not a zstd frame of \(raw) bytes") }
            texts.append((String(name.dropLast(4)), out))
        }
        do throws(SignatureError) {
            let defs = try Definitions.load(files: texts.sorted { $0.0 < $1.0 } + extra, directory: dir)
            return DefinitionsPackage(version: version, createdUnix: Int64(created), definitions: defs)
        } catch {
            throw PackageError("malformed signatures: \(error)")
        }
    }

    static func validName(_ n: String) -> Bool {
        guard n.hasSuffix(".zst"), n.utf8.count <= 128, !n.hasPrefix(".") else { return false }
        guard n.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x61 && $0 <= 0x7a) || $0 == 0x2e || $0 == 0x2d || $0 == 0x5f }) else { return false }
        let base = n.dropLast(4)
        return Definitions.extensions.contains { base.hasSuffix("." + $0) }
    }

    /// Hex public keys, one per file line (the product's trusted-keys directory).
    public static func parseKey(_ text: [UInt8]) -> [UInt8]? {
        let hex = text.filter { $0 != 0x0a && $0 != 0x20 }
        guard hex.count == 64 else { return nil }
        var out: [UInt8] = []
        var i = 0
        while i < 64 {
            guard let h = HashSignatureSet.nibble(hex[i]), let l = HashSignatureSet.nibble(hex[i + 1]) else { return nil }
            out.append(h << 4 | l)
            i += 2
        }
        return out
    }
}

func sha256Hex(_ bytes: [UInt8]) -> String { FileDigests.hex(FileDigests.of(bytes, kinds: [.sha256]).sha256) }
