// Archives (zip, tar, gzip, bzip2, xz, 7z, cpio, cab, ar, iso, …) through
// libarchive: every member is hashed and matched, archives inside archives are
// opened in turn. A hostile archive is bounded on every axis — depth, member
// count, total expanded bytes, expansion ratio, one member's size — and going
// past a bound is itself the verdict: an archive bomb.
import CArchive
import CCrypto
import Glibc

public struct ArchiveLimits: Sendable, Equatable {
    public var maxDepth = 16
    public var maxMembers = 100_000
    public var maxExpandedBytes: UInt64 = 4 << 30
    public var maxRatio: UInt64 = 200          // expanded / compressed
    public var maxNestedArchiveBytes = 64 << 20 // a member opened as an archive is held in memory
    public init() {}
}

public struct ArchiveOutcome: Equatable, Sendable {
    public var detection: Detection?
    /// Where, inside the archive ("a.zip/inner.tar/x.exe").
    public var member: String?
    public var members = 0
    public var expandedBytes: UInt64 = 0
}

public enum ArchiveWalker {
    static let bombName = "Archive.Bomb.Limits"

    /// Walks the archive in `fd` (of `compressedSize` bytes); nil when it is not an archive.
    public static func scan(fd: Int32, compressedSize: UInt64, limits: ArchiveLimits, scanner: ContentScanner) -> ArchiveOutcome? {
        guard let a = open({ archive_read_open_fd($0, fd, 1 << 16) }) else { return nil }
        defer { archive_read_free(a) }
        var state = WalkState(limits: limits, base: max(compressedSize, 1), scanner: scanner)
        let isArchive = walk(a, depth: 1, prefix: "", state: &state)
        guard isArchive else { return nil }
        return state.outcome
    }

    /// An archive in memory (a member, a decoded attachment); nil when it is not one.
    public static func scan(bytes: [UInt8], limits: ArchiveLimits, scanner: ContentScanner) -> ArchiveOutcome? {
        bytes.withUnsafeBytes { buf in
            guard let a = open({ archive_read_open_memory($0, buf.baseAddress, buf.count) }) else { return nil }
            defer { archive_read_free(a) }
            var state = WalkState(limits: limits, base: max(UInt64(buf.count), 1), scanner: scanner)
            return walk(a, depth: 1, prefix: "", state: &state) ? state.outcome : nil
        }
    }

    /// What an on-demand scan does past the file's own bytes: its archive
    /// members, else the objects encoded or embedded in it.
    public static func scanInside(fd: Int32, size: UInt64, limits: ArchiveLimits, scanner: ContentScanner,
                                  embedded: EmbeddedLimits = EmbeddedLimits()) -> Detection? {
        if let o = scan(fd: fd, compressedSize: size, limits: limits, scanner: scanner) { return o.detection }
        // ELF files hide nothing the decoders reach: decided from the header, before reading the rest.
        guard size <= UInt64(embedded.maxInputBytes), let head = ContentScanner.pread(fd, 0, 4),
              head != [0x7f, 0x45, 0x4c, 0x46], let bytes = ContentScanner.pread(fd, 0, Int(size)) else { return nil }
        return EmbeddedObjects.scan(bytes, scanner: scanner, archiveLimits: limits, limits: embedded)?.detection
    }

    struct WalkState {
        let limits: ArchiveLimits
        let base: UInt64
        let scanner: ContentScanner
        var definitions: Definitions { scanner.definitions }
        var outcome = ArchiveOutcome()

        mutating func bomb(_ why: String, at member: String) {
            outcome.detection = Detection(name: ArchiveWalker.bombName, type: .archiveBomb, engine: "archive: \(why)")
            outcome.member = member
        }
    }

    /// A reader with every filter and format; raw only to see through a bare compressor.
    static func open(_ attach: (OpaquePointer) -> Int32) -> OpaquePointer? {
        guard let a = archive_read_new() else { return nil }
        archive_read_support_filter_all(a)
        // Real archive formats only: not mtree (a text list of paths that libarchive
        // would read from the filesystem, and that any text file of lines may look
        // like), not warc; raw only to see through a bare compressor.
        archive_read_support_format_7zip(a)
        archive_read_support_format_ar(a)
        archive_read_support_format_cab(a)
        archive_read_support_format_cpio(a)
        archive_read_support_format_iso9660(a)
        archive_read_support_format_lha(a)
        archive_read_support_format_rar(a)
        archive_read_support_format_rar5(a)
        archive_read_support_format_tar(a)
        archive_read_support_format_xar(a)
        archive_read_support_format_zip(a)
        archive_read_support_format_raw(a)
        if attach(a) != ARCHIVE_OK {
            archive_read_free(a)
            return nil
        }
        return a
    }

    /// Returns false when `a` turned out not to be an archive at all.
    static func walk(_ a: OpaquePointer, depth: Int, prefix: String, state: inout WalkState) -> Bool {
        var entry: OpaquePointer?
        var first = true
        while state.outcome.detection == nil {
            let rc = archive_read_next_header(a, &entry)
            if rc == ARCHIVE_EOF { return !first }
            if rc < ARCHIVE_WARN { return !first } // damaged: what was read stands
            // "raw" with no compression filter is not an archive: plain data.
            if first && archive_format(a) == ARCHIVE_FORMAT_RAW && archive_filter_count(a) <= 1 { return false }
            first = false
            guard let e = entry else { return true }
            let name = archive_entry_pathname(e).map { String(cString: $0) } ?? "?"
            let where_ = prefix.isEmpty ? name : prefix + "/" + name
            guard archive_entry_filetype(e) == 0o100000 || archive_format(a) == ARCHIVE_FORMAT_RAW else { continue }
            state.outcome.members += 1
            if state.outcome.members > state.limits.maxMembers { state.bomb("more than \(state.limits.maxMembers) members", at: where_); break }
            guard let digests = readMember(a, where_: where_, state: &state) else { break }
            if state.definitions.hashes.allowed(digests.digests) { continue }
            if let d = state.definitions.hashes.match(digests.digests) ?? digests.kept.flatMap({ state.scanner.scanContent($0) }) {
                state.outcome.detection = d
                state.outcome.member = where_
                break
            }
            // An archive inside: open it from memory, one level deeper.
            if let inner = digests.kept, !inner.isEmpty {
                if depth >= state.limits.maxDepth { state.bomb("nested deeper than \(state.limits.maxDepth)", at: where_); break }
                inner.withUnsafeBytes { buf in
                    if let b = open({ archive_read_open_memory($0, buf.baseAddress, buf.count) }) {
                        _ = walk(b, depth: depth + 1, prefix: where_, state: &state)
                        archive_read_free(b)
                    }
                }
            }
        }
        return true
    }

    struct MemberData {
        var digests: FileDigests
        var kept: [UInt8]?
    }

    /// Hashes one member while counting it against the limits; keeps its bytes
    /// when small enough to be opened as a nested archive.
    static func readMember(_ a: OpaquePointer, where_: String, state: inout WalkState) -> MemberData? {
        let kinds = state.definitions.neededKinds
        let mask = kinds.reduce(UInt32(0)) { $0 | $1.mask }
        guard let ctx = mdatp_digests_new(mask) else { return nil }
        defer { mdatp_digests_free(ctx) }
        var out = MemberData(digests: FileDigests(), kept: [])
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buf.withUnsafeMutableBytes { archive_read_data(a, $0.baseAddress, $0.count) }
            if n == 0 { break }
            if n < 0 { break } // damaged member: what was read is hashed
            mdatp_digests_update(ctx, buf, n)
            out.digests.size += UInt64(n)
            state.outcome.expandedBytes += UInt64(n)
            if state.outcome.expandedBytes > state.limits.maxExpandedBytes {
                state.bomb("expands past \(state.limits.maxExpandedBytes) bytes", at: where_)
                return nil
            }
            if state.outcome.expandedBytes / state.base > state.limits.maxRatio && state.outcome.expandedBytes > 16 << 20 {
                state.bomb("expansion ratio above \(state.limits.maxRatio):1", at: where_)
                return nil
            }
            if out.kept != nil {
                if out.kept!.count + n <= state.limits.maxNestedArchiveBytes { out.kept! += buf[0..<n] } else { out.kept = nil }
            }
        }
        out.digests.finish(ctx, kinds: kinds)
        return out
    }
}
