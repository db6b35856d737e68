// One file through every engine in a single read: the digests the hash sets
// need and the body-signature stream are fed from the same chunks; then the
// verdict in order — an allow-list clears the file, a hash names it, a body or
// logical signature names it, YARA rules last (libyara maps the file itself).
// One ContentScanner per scanning thread (it owns Hyperscan scratch).
import CCrypto
import Glibc

public final class ContentScanner {
    public let definitions: Definitions
    let body: BodyScanSession?

    public init(definitions: Definitions) {
        self.definitions = definitions
        body = BodyScanSession(definitions.bodies)
    }

    public struct Result {
        public var digests: FileDigests
        public var detection: Detection?
        public var allowed: Bool
    }

    static func pread(_ fd: Int32, _ offset: UInt64, _ count: Int) -> [UInt8]? {
        guard count > 0 else { return [] }
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = out.withUnsafeMutableBytes { Glibc.pread(fd, $0.baseAddress! + got, count - got, off_t(offset) + off_t(got)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            got += n
        }
        return got == 0 ? nil : Array(out.prefix(got))
    }

    /// Scans an open regular file of `size` bytes (read up to `maxBytes`).
    public func scan(fd: Int32, size: UInt64, maxBytes: UInt64) throws(ScanError) -> Result {
        var layout: FileLayout?
        if let body {
            let head = ContentScanner.pread(fd, 0, FileLayout.headerBytes) ?? []
            let l = head.withUnsafeBytes { FileLayout(size: size, head: $0) { ContentScanner.pread(fd, $0, $1) } }
            layout = body.begin(l) ? l : nil
        }
        let digests = try FileHasher.digests(fd: fd, kinds: definitions.neededKinds, maxBytes: maxBytes) { chunk in
            if layout != nil, !self.body!.feed(chunk) { layout = nil }
        }
        if definitions.hashes.allowed(digests) { return Result(digests: digests, detection: nil, allowed: true) }
        var d = definitions.hashes.match(digests)
        if let l = layout {
            // Always end the stream; a hash verdict still wins.
            let b = body!.finish(l) { ContentScanner.pread(fd, $0, $1) }
            d = d ?? b
        }
        if d == nil { d = definitions.yara?.scan(fd: fd) }
        return Result(digests: digests, detection: d, allowed: false)
    }

    /// Content engines over bytes already in memory (archive members), after
    /// their digests were matched.
    public func scanContent(_ bytes: [UInt8]) -> Detection? {
        if let body {
            let found: Detection? = bytes.withUnsafeBytes { buf in
                let l = FileLayout(size: UInt64(buf.count), head: UnsafeRawBufferPointer(rebasing: buf.prefix(FileLayout.headerBytes))) { off, n in
                    off < UInt64(buf.count) ? Array(buf[Int(off)..<min(buf.count, Int(off) + n)]) : nil
                }
                guard body.begin(l), body.feed(buf) else { return nil }
                return body.finish(l) { off, n in off < UInt64(buf.count) ? Array(buf[Int(off)..<min(buf.count, Int(off) + n)]) : nil }
            }
            if let found { return found }
        }
        return definitions.yara?.scan(bytes: bytes)
    }
}
