// ClamAV databases an admin imports as an extra source: a .cvd (512-byte
// header, then a gzip'd tar of the text databases), a .cld (the same after
// freshclam patched it: an uncompressed tar), or loose signature files. The
// header's MD5 of the body is checked for a .cvd (a .cld's no longer covers
// it). ClamAV's own RSA signature is not verified: we do not ship its key, so
// trust rests on the import itself, which only root can make. Members in a
// format we read are kept; the rest (.mdb, .cdb, .ftm, .cbc, .info, …) are
// listed as skipped. Everything is bounded: members, sizes, expansion.
import CArchive
import CCrypto

public struct ClamAVHeader: Equatable, Sendable {
    public var built: String
    public var version: Int
    public var signatures: Int
    public var functionalityLevel: Int
    public var md5: String
    public var builder: String
}

public struct ClamAVSource: Sendable {
    public var header: ClamAVHeader?
    /// (member name, bytes) in formats the engines read.
    public var files: [(String, [UInt8])] = []
    public var skipped: [String] = []
}

public enum ClamAVDatabase {
    public static let headerBytes = 512
    public static let maxMembers = 512
    public static let maxExpandedBytes = 2 << 30

    public static func parseHeader(_ b: ArraySlice<UInt8>) throws(SignatureError) -> ClamAVHeader {
        guard b.count >= headerBytes else { throw SignatureError(file: "header", line: 0, reason: "shorter than the 512-byte CVD header") }
        let text = String(decoding: b.prefix(headerBytes), as: UTF8.self)
        guard text.hasPrefix("ClamAV-VDB:") else { throw SignatureError(file: "header", line: 0, reason: "not a ClamAV database (no ClamAV-VDB header)") }
        var trimmed = Substring(text)
        while let last = trimmed.last, last == " " || last == "\0" || last == "\n" { trimmed = trimmed.dropLast() }
        let f = trimmed.split(separator: ":", omittingEmptySubsequences: false)
        // ClamAV-VDB:built:version:signatures:flevel:md5:dsig:builder[:time] — the build time itself holds colons.
        guard f.count >= 9, let md5Index = f.firstIndex(where: { $0.count == 32 && $0.utf8.allSatisfy { HashSignatureSet.nibble($0) != nil } }),
              md5Index >= 4, let version = Int(f[md5Index - 3]), let sigs = Int(f[md5Index - 2]), let level = Int(f[md5Index - 1]) else {
            throw SignatureError(file: "header", line: 0, reason: "malformed CVD header")
        }
        return ClamAVHeader(built: f[1..<(md5Index - 3)].joined(separator: ":"), version: version, signatures: sigs, functionalityLevel: level,
                            md5: String(f[md5Index]).lowercased(), builder: md5Index + 2 < f.count ? String(f[md5Index + 2]) : "")
    }

    /// One imported file: a container (.cvd/.cld) or a loose signature file.
    public static func read(name: String, bytes: [UInt8]) throws(SignatureError) -> ClamAVSource {
        var out = ClamAVSource()
        let lower = name.lowercased()
        guard lower.hasSuffix(".cvd") || lower.hasSuffix(".cld") else {
            guard Definitions.extensions.contains(where: { lower.hasSuffix("." + $0) }) else {
                throw SignatureError(file: name, line: 0, reason: "not a format we import (.cvd, .cld, \(Definitions.extensions.map { "." + $0 }.joined(separator: ", ")))")
            }
            out.files = [(name, bytes)]
            return out
        }
        let header = try parseHeader(bytes[...])
        let body = bytes[headerBytes...]
        if lower.hasSuffix(".cvd") && FileDigests.hex(FileDigests.of(body, kinds: [.md5]).md5) != header.md5 {
            throw SignatureError(file: name, line: 0, reason: "MD5 of the database differs from its header (corrupt or altered)")
        }
        out.header = header
        try untar(body, name: name, into: &out)
        return out
    }

    static func untar(_ body: ArraySlice<UInt8>, name: String, into out: inout ClamAVSource) throws(SignatureError) {
        guard let a = archive_read_new() else { throw SignatureError(file: name, line: 0, reason: "out of memory") }
        defer { archive_read_free(a) }
        archive_read_support_filter_gzip(a)
        archive_read_support_format_tar(a)
        var failure: SignatureError?
        body.withUnsafeBytes { buf in
            guard archive_read_open_memory(a, buf.baseAddress, buf.count) == ARCHIVE_OK else {
                failure = SignatureError(file: name, line: 0, reason: "the body is not a (gzip'd) tar")
                return
            }
            var entry: OpaquePointer?
            var total = 0, members = 0
            while true {
                let rc = archive_read_next_header(a, &entry)
                if rc == ARCHIVE_EOF { break }
                guard rc >= ARCHIVE_WARN, let e = entry else { failure = SignatureError(file: name, line: 0, reason: "damaged tar"); return }
                members += 1
                guard members <= maxMembers else { failure = SignatureError(file: name, line: 0, reason: "more than \(maxMembers) members"); return }
                let member = archive_entry_pathname(e).map { String(cString: $0) } ?? "?"
                let size = Int(archive_entry_size(e))
                guard archive_entry_filetype(e) == 0o100000, !member.contains("/") else { out.skipped.append(member); continue }
                guard Definitions.extensions.contains(where: { member.hasSuffix("." + $0) }) else { out.skipped.append(member); continue }
                guard size >= 0, size <= Definitions.maxFileBytes, total + size <= maxExpandedBytes else {
                    failure = SignatureError(file: name + "/" + member, line: 0, reason: "larger than the import bound"); return
                }
                var data = [UInt8](repeating: 0, count: size)
                var got = 0
                while got < size {
                    let n = data.withUnsafeMutableBytes { archive_read_data(a, $0.baseAddress! + got, size - got) }
                    if n <= 0 { break }
                    got += n
                }
                guard got == size else { failure = SignatureError(file: name + "/" + member, line: 0, reason: "truncated member"); return }
                total += size
                out.files.append((name + "/" + member, data))
            }
        }
        if let failure { throw failure }
        guard !out.files.isEmpty else { throw SignatureError(file: name, line: 0, reason: "no signature files we read inside (skipped: \(out.skipped.prefix(8).joined(separator: ", ")))") }
    }
}
