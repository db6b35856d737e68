// Objects hidden inside files that are not archives: what mail, web pages,
// RTF and PDF documents, Office files, TNEF and SIS packages and MS-DOS
// `compress` files carry, decoded or carved out so the engines see the
// program itself:
//   text        base64 runs (MIME parts, data: URIs), uuencode, BinHex 4.0, hex runs (RTF \objdata)
//   binary      zlib streams (PDF FlateDecode, PowerPoint and SIS payloads), SZDD (LZSS)
//   containers  OLE2 compound files (Word, Excel, PowerPoint, MSI): every stream
//   anywhere    a PE image carved from inside a larger file (OLE2 streams, TNEF attachments, decoded blobs)
// Each object is matched like a file (hashes, body and logical signatures,
// YARA, archives inside) and decoded again, a few levels deep. Everything is
// bounded: input read, objects per file, bytes produced, attempts, depth.
// ELF files and executables are not decoded (nothing is hidden that way in
// them that a signature reaches, and they are most of what a scan reads).
import CCrypto

public struct EmbeddedLimits: Sendable, Equatable {
    public var maxInputBytes = 64 << 20
    public var maxObjects = 64
    public var maxOutputBytes = 256 << 20
    public var maxDepth = 3
    public var maxZlibTries = 256
    public var maxCarves = 16
    public init() {}
}

public enum EmbeddedObjects {
    struct Budget {
        var objects = 0
        var output = 0
        let limits: EmbeddedLimits
        mutating func take(_ n: Int) -> Bool {
            guard objects < limits.maxObjects, output + n <= limits.maxOutputBytes else { return false }
            objects += 1
            output += n
            return true
        }
    }

    /// The first detection among the objects inside `data` (the file's bytes),
    /// with where it was found ("base64@120/zlib@44").
    public static func scan(_ data: [UInt8], scanner: ContentScanner, archiveLimits: ArchiveLimits, limits: EmbeddedLimits = EmbeddedLimits()) -> ArchiveOutcome? {
        var budget = Budget(limits: limits)
        return walk(data, topLevel: true, depth: 1, prefix: "", scanner: scanner, archiveLimits: archiveLimits, budget: &budget)
    }

    static func walk(_ data: [UInt8], topLevel: Bool, depth: Int, prefix: String, scanner: ContentScanner,
                     archiveLimits: ArchiveLimits, budget: inout Budget) -> ArchiveOutcome? {
        for (name, object) in extract(data, topLevel: topLevel, budget: &budget) {
            let where_ = prefix.isEmpty ? name : prefix + "/" + name
            let digests = FileDigests.of(object, kinds: scanner.definitions.neededKinds)
            if scanner.definitions.hashes.allowed(digests) { continue }
            if let d = scanner.definitions.hashes.match(digests) ?? scanner.scanContent(object) {
                return ArchiveOutcome(detection: d, member: where_, members: budget.objects, expandedBytes: UInt64(budget.output))
            }
            if var inner = ArchiveWalker.scan(bytes: object, limits: archiveLimits, scanner: scanner), inner.detection != nil {
                inner.member = where_ + "/" + (inner.member ?? "")
                return inner
            }
            if depth < budget.limits.maxDepth,
               let found = walk(object, topLevel: false, depth: depth + 1, prefix: where_, scanner: scanner, archiveLimits: archiveLimits, budget: &budget) {
                return found
            }
        }
        return nil
    }

    /// The objects found in `data`, in the order found.
    static func extract(_ data: [UInt8], topLevel: Bool, budget: inout Budget) -> [(String, [UInt8])] {
        var out: [(String, [UInt8])] = []
        func add(_ name: String, _ bytes: [UInt8]) {
            guard bytes.count >= 32, budget.take(bytes.count) else { return }
            out.append((name, bytes))
        }
        let data = Array(data.prefix(budget.limits.maxInputBytes))
        let layout = data.withUnsafeBytes { FileLayout(size: UInt64($0.count), head: UnsafeRawBufferPointer(rebasing: $0.prefix(FileLayout.headerBytes))) { _, _ in nil } }
        if layout.isType(.elf) { return [] }
        // Archives appended to or stored inside another file (installers, self-extractors).
        for (at, d) in carveArchives(data, max: budget.limits.maxCarves) { add("archive@\(at)", d) }
        if topLevel && layout.isType(.pe) { return out }
        if data.starts(with: [0x53, 0x5a, 0x44, 0x44, 0x88, 0xf0, 0x27, 0x33]), let d = szdd(data) { add("szdd", d) }
        if layout.isType(.ole2) { for (name, d) in OLE2.streams(data) { add("ole2:" + name, d) } }
        if layout.isType(.ascii) {
            for (at, d) in base64Runs(data) { add("base64@\(at)", d) }
            for (name, d) in uudecode(data) { add("uu:\(name)", d) }
            if let d = binhex(data) { add("binhex", d) }
            for (at, d) in hexRuns(data) { add("hex@\(at)", d) }
        } else {
            for (at, d) in zlibStreams(data, tries: budget.limits.maxZlibTries) { add("zlib@\(at)", d) }
        }
        for (at, d) in carvePE(data, skipStart: topLevel, max: budget.limits.maxCarves) { add("pe@\(at)", d) }
        return out
    }

    // MARK: text encodings

    static let base64Value: [Int8] = {
        var t = [Int8](repeating: -1, count: 256)
        for (i, c) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8.enumerated() { t[Int(c)] = Int8(i) }
        return t
    }()

    /// Runs of base64 long enough to be an attachment. A run starts where a
    /// non-base64 byte (or a line start) precedes it and crosses a line break
    /// only after a full-length line, so the words before an encoded block
    /// ("filename=clam.exe") never glue onto it.
    static func base64Runs(_ d: [UInt8], minChars: Int = 128) -> [(Int, [UInt8])] {
        var out: [(Int, [UInt8])] = []
        var i = 0
        while i < d.count && out.count < 32 {
            guard base64Value[Int(d[i])] >= 0, i == 0 || base64Value[Int(d[i - 1])] < 0 else { i += 1; continue }
            let start = i
            var chars = 0, lineChars = 0
            var bits: UInt32 = 0, nbits = 0
            var bytes: [UInt8] = []
            while i < d.count {
                let c = d[i]
                if c == 0x0a || c == 0x0d {
                    // A short line ends the run (unless it is the blank half of CRLF).
                    if lineChars < 40 && !(c == 0x0a && i > 0 && d[i - 1] == 0x0d) { break }
                    lineChars = 0
                    i += 1
                    continue
                }
                let v = base64Value[Int(c)]
                guard v >= 0 else { break }
                bits = bits << 6 | UInt32(v)
                nbits += 6
                if nbits >= 8 {
                    nbits -= 8
                    bytes.append(UInt8(truncatingIfNeeded: bits >> UInt32(nbits)))
                }
                chars += 1
                lineChars += 1
                i += 1
            }
            if chars >= minChars { out.append((start, bytes)) }
            i = max(i, start + 1)
        }
        return out
    }

    static func lines(_ d: [UInt8]) -> [ArraySlice<UInt8>] {
        d.split(separator: 0x0a, omittingEmptySubsequences: false).map { $0.last == 0x0d ? $0.dropLast() : $0 }
    }

    /// `begin MODE NAME` … `end` blocks.
    static func uudecode(_ d: [UInt8]) -> [(String, [UInt8])] {
        var out: [(String, [UInt8])] = []
        var current: (String, [UInt8])?
        for line in lines(d) {
            if current == nil {
                guard line.starts(with: Array("begin ".utf8)) else { continue }
                let parts = line.split(separator: 0x20, maxSplits: 2)
                current = (parts.count == 3 ? String(decoding: parts[2].prefix(64), as: UTF8.self) : "file", [])
                continue
            }
            if line.elementsEqual(Array("end".utf8)) || line.isEmpty {
                if line.isEmpty { continue }
                out.append(current!)
                current = nil
                if out.count >= 8 { break }
                continue
            }
            guard let first = line.first else { continue }
            let n = Int((first &- 0x20) & 0x3f)
            var bytes: [UInt8] = []
            var j = line.startIndex + 1
            while j + 3 < line.endIndex + 1 && bytes.count < n {
                func v(_ k: Int) -> UInt32 { k < line.endIndex ? UInt32((line[k] &- 0x20) & 0x3f) : 0 }
                let w = v(j) << 18 | v(j + 1) << 12 | v(j + 2) << 6 | v(j + 3)
                bytes += [UInt8(w >> 16 & 0xff), UInt8(w >> 8 & 0xff), UInt8(w & 0xff)]
                j += 4
            }
            current!.1 += bytes.prefix(n)
        }
        if let c = current, !c.1.isEmpty, out.count < 8 { out.append(c) } // cut off before `end`: what was there stands
        return out
    }

    static let binhexAlphabet = Array("!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr".utf8)

    /// BinHex 4.0: 6-bit text between colons, run-length coded, a header, then the data fork.
    static func binhex(_ d: [UInt8]) -> [UInt8]? {
        let marker = Array("(This file must be converted with BinHex".utf8)
        guard let m = find(marker, in: d), let open = d[m...].firstIndex(of: 0x3a) else { return nil }
        var value = [Int8](repeating: -1, count: 256)
        for (i, c) in binhexAlphabet.enumerated() { value[Int(c)] = Int8(i) }
        var packed: [UInt8] = []
        var bits: UInt32 = 0, nbits = 0
        var i = open + 1
        while i < d.count, d[i] != 0x3a {
            let c = d[i]
            i += 1
            if c == 0x0a || c == 0x0d || c == 0x20 || c == 0x09 { continue }
            let v = value[Int(c)]
            guard v >= 0 else { return nil }
            bits = bits << 6 | UInt32(v)
            nbits += 6
            if nbits >= 8 { nbits -= 8; packed.append(UInt8(truncatingIfNeeded: bits >> UInt32(nbits))) }
        }
        // 0x90 n: repeat the previous byte n-1 more times (0x90 0x00 is a literal 0x90).
        var raw: [UInt8] = []
        var k = 0
        while k < packed.count {
            let b = packed[k]
            if b == 0x90, k + 1 < packed.count {
                let n = Int(packed[k + 1])
                k += 2
                if n == 0 { raw.append(0x90) } else if let last = raw.last { raw += [UInt8](repeating: last, count: min(n - 1, 1 << 20)) }
                continue
            }
            raw.append(b)
            k += 1
        }
        guard let nameLen = raw.first.map(Int.init), raw.count > 1 + nameLen + 1 + 4 + 4 + 2 + 4 + 4 + 2 else { return nil }
        let p = 1 + nameLen + 1 + 4 + 4 + 2
        let dataLen = Int(raw[p]) << 24 | Int(raw[p + 1]) << 16 | Int(raw[p + 2]) << 8 | Int(raw[p + 3])
        let start = p + 4 + 4 + 2
        guard dataLen > 0, start + dataLen <= raw.count else { return nil }
        return Array(raw[start..<(start + dataLen)])
    }

    /// Long runs of hex digits (whitespace allowed): RTF embeds objects this way.
    static func hexRuns(_ d: [UInt8], minDigits: Int = 256) -> [(Int, [UInt8])] {
        var out: [(Int, [UInt8])] = []
        var i = 0
        while i < d.count && out.count < 16 {
            // A run starts at a token boundary (not inside a word such as "objdata").
            guard HashSignatureSet.nibble(d[i]) != nil, i == 0 || !BodyPattern.isAlnum(d[i - 1]) else { i += 1; continue }
            let start = i
            var digits: [UInt8] = []
            while i < d.count {
                let c = d[i]
                if c == 0x0a || c == 0x0d || c == 0x20 || c == 0x09 { i += 1; continue }
                guard let v = HashSignatureSet.nibble(c) else { break }
                digits.append(v)
                i += 1
            }
            if digits.count >= minDigits {
                out.append((start, stride(from: 0, to: digits.count - 1, by: 2).map { digits[$0] << 4 | digits[$0 + 1] }))
            }
        }
        return out
    }

    // MARK: binary encodings

    /// zlib streams wherever a valid header starts (bounded attempts).
    static func zlibStreams(_ d: [UInt8], tries: Int) -> [(Int, [UInt8])] {
        var out: [(Int, [UInt8])] = []
        var attempts = 0
        var i = 0
        while i + 2 < d.count, attempts < tries, out.count < 32 {
            if d[i] == 0x78, (UInt16(d[i]) << 8 | UInt16(d[i + 1])) % 31 == 0 {
                attempts += 1
                let cap = 64 << 20
                var buf = [UInt8](repeating: 0, count: min(cap, max(4096, (d.count - i) * 32)))
                let n = d.withUnsafeBytes { src in buf.withUnsafeMutableBytes { mdatp_inflate(src.baseAddress! + i, src.count - i, $0.baseAddress, $0.count) } }
                if n >= 32 {
                    out.append((i, Array(buf.prefix(n))))
                    i += 2
                    continue
                }
            }
            i += 1
        }
        return out
    }

    /// MS-DOS `compress` (SZDD): LZSS with a 4 KiB window.
    static func szdd(_ d: [UInt8]) -> [UInt8]? {
        guard d.count > 14 else { return nil }
        let size = Int(d[10]) | Int(d[11]) << 8 | Int(d[12]) << 16 | Int(d[13]) << 24
        guard size > 0, size <= 64 << 20 else { return nil }
        var window = [UInt8](repeating: 0x20, count: 4096)
        var pos = 4096 - 16
        var out: [UInt8] = []
        out.reserveCapacity(size)
        var i = 14
        while i < d.count && out.count < size {
            let flags = d[i]
            i += 1
            for bit in 0..<8 where i < d.count && out.count < size {
                if flags & (1 << bit) != 0 {
                    let b = d[i]
                    i += 1
                    out.append(b)
                    window[pos] = b
                    pos = (pos + 1) & 4095
                } else {
                    guard i + 1 < d.count else { return out }
                    var from = Int(d[i]) | (Int(d[i + 1]) & 0xf0) << 4
                    let len = Int(d[i + 1] & 0x0f) + 3
                    i += 2
                    for _ in 0..<len where out.count < size {
                        let b = window[from]
                        from = (from + 1) & 4095
                        out.append(b)
                        window[pos] = b
                        pos = (pos + 1) & 4095
                    }
                }
            }
        }
        return out
    }

    static let archiveMagics: [[UInt8]] = [
        Array("MSCF".utf8) + [0, 0, 0, 0],                 // Microsoft cabinet
        [0x50, 0x4b, 0x03, 0x04],                           // zip
        [0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c],               // 7z
        [0x52, 0x61, 0x72, 0x21, 0x1a, 0x07],               // rar
        [0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1],   // OLE2 (MSI)
    ]

    /// Where an archive starts inside a file (not at its start): from there to the end.
    static func carveArchives(_ d: [UInt8], max: Int) -> [(Int, [UInt8])] {
        var out: [(Int, [UInt8])] = []
        guard d.count > 64 else { return out }
        var i = 1
        while i + 8 < d.count, out.count < max {
            let b = d[i]
            if b == 0x4d || b == 0x50 || b == 0x37 || b == 0x52 || b == 0xd0,
               let m = archiveMagics.first(where: { m in m[0] == b && i + m.count <= d.count && d[i..<(i + m.count)].elementsEqual(m) }) {
                out.append((i, Array(d[i..<min(d.count, i + (64 << 20))])))
                i += m.count
                continue
            }
            i += 1
        }
        return out
    }

    /// PE images inside a larger file: "MZ", a PE header, and as many bytes as its sections reach.
    static func carvePE(_ d: [UInt8], skipStart: Bool, max: Int) -> [(Int, [UInt8])] {
        var out: [(Int, [UInt8])] = []
        var i = skipStart ? 1 : 0
        while i + 64 < d.count, out.count < max {
            guard d[i] == 0x4d, d[i + 1] == 0x5a else { i += 1; continue }
            let image = d.withUnsafeBytes { b -> Int? in
                let p = UnsafeRawBufferPointer(rebasing: b[i...])
                guard let lfanew = FileLayout.u32(p, 0x3c, true), lfanew >= 0x40, lfanew < 4096,
                      FileLayout.u32(p, Int(lfanew), true) == 0x4550,
                      let nsec = FileLayout.u16(p, Int(lfanew) + 6, true), nsec > 0, nsec <= 96,
                      let optSize = FileLayout.u16(p, Int(lfanew) + 20, true) else { return nil }
                // As far as the section table and the sections' raw data reach (a
                // truncated image keeps what there is: signatures still see it).
                let table = Int(lfanew) + 24 + Int(optSize)
                var end = table + Int(nsec) * 40
                for s in 0..<Int(nsec) {
                    guard let rawSize = FileLayout.u32(p, table + s * 40 + 16, true), let raw = FileLayout.u32(p, table + s * 40 + 20, true) else { return nil }
                    if rawSize > 0 && rawSize < 1 << 30 && raw < 1 << 30 { end = Swift.max(end, Int(raw + rawSize)) }
                }
                end = Swift.min(end, p.count, 64 << 20)
                return end > table ? end : nil
            }
            if let n = image, !(i == 0 && skipStart) {
                out.append((i, Array(d[i..<(i + n)])))
                i += n
            } else {
                i += 2
            }
        }
        return out
    }

    static func find(_ needle: [UInt8], in hay: [UInt8]) -> Int? {
        guard hay.count >= needle.count, let first = needle.first else { return nil }
        var i = 0
        while i <= hay.count - needle.count {
            if hay[i] == first && hay[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }
}

/// OLE2 compound files (Office documents, MSI packages): every stream, read
/// through its FAT or mini-FAT chain. Chains are checked for loops and
/// bounds; a damaged file gives what could be read.
enum OLE2 {
    static let endOfChain: UInt32 = 0xFFFF_FFFE
    static let maxStreams = 512
    static let maxStreamBytes = 64 << 20

    static func u32(_ d: [UInt8], _ i: Int) -> UInt32? {
        guard i >= 0, i + 4 <= d.count else { return nil }
        return UInt32(d[i]) | UInt32(d[i + 1]) << 8 | UInt32(d[i + 2]) << 16 | UInt32(d[i + 3]) << 24
    }
    static func u16(_ d: [UInt8], _ i: Int) -> Int? {
        guard i >= 0, i + 2 <= d.count else { return nil }
        return Int(d[i]) | Int(d[i + 1]) << 8
    }

    static func streams(_ d: [UInt8]) -> [(String, [UInt8])] {
        guard d.count >= 512, d.starts(with: [0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]),
              let shift = u16(d, 0x1e), shift == 9 || shift == 12, let miniShift = u16(d, 0x20), miniShift == 6,
              let nFat = u32(d, 0x2c), let dirStart = u32(d, 0x30), let cutoff = u32(d, 0x38),
              let miniFatStart = u32(d, 0x3c), var difatNext = u32(d, 0x44) else { return [] }
        let sectorSize = 1 << shift
        let sectorCount = (d.count - sectorSize) / sectorSize + 1
        func sector(_ n: UInt32) -> ArraySlice<UInt8>? {
            let off = (Int(n) + 1) << shift
            guard n < UInt32(sectorCount), off + sectorSize <= d.count + sectorSize, off < d.count else { return nil }
            return d[off..<min(d.count, off + sectorSize)]
        }
        // The FAT's own sectors: 109 in the header, the rest on the DIFAT chain.
        var fatSectors: [UInt32] = (0..<109).compactMap { u32(d, 0x4c + $0 * 4) }.filter { $0 < UInt32(sectorCount) }
        var seen = Set<UInt32>()
        while difatNext < UInt32(sectorCount), seen.insert(difatNext).inserted, let s = sector(difatNext) {
            let a = Array(s)
            for k in 0..<(sectorSize / 4 - 1) { if let v = u32(a, k * 4), v < UInt32(sectorCount) { fatSectors.append(v) } }
            difatNext = u32(a, sectorSize - 4) ?? endOfChain
        }
        fatSectors = Array(fatSectors.prefix(Int(min(nFat, 1 << 20))))
        var fat: [UInt32] = []
        for f in fatSectors { if let s = sector(f) { let a = Array(s); fat += (0..<(a.count / 4)).compactMap { u32(a, $0 * 4) } } }
        func chain(_ start: UInt32, in table: [UInt32], limit: Int) -> [UInt32] {
            var out: [UInt32] = []
            var seen = Set<UInt32>()
            var n = start
            while n < UInt32(table.count), out.count < limit, seen.insert(n).inserted {
                out.append(n)
                n = table[Int(n)]
            }
            return out
        }
        func read(_ start: UInt32, size: Int) -> [UInt8] {
            var out: [UInt8] = []
            for n in chain(start, in: fat, limit: size / sectorSize + 2) { if let s = sector(n) { out += s } }
            return Array(out.prefix(size))
        }
        let dir = read(dirStart, size: min(sectorCount, 4096) * sectorSize)
        guard dir.count >= 128 else { return [] }
        let rootStart = u32(dir, 116) ?? endOfChain
        let rootSize = Int(u32(dir, 120) ?? 0)
        let miniStream = read(rootStart, size: min(rootSize, maxStreamBytes))
        var miniFat: [UInt32] = []
        for n in chain(miniFatStart, in: fat, limit: 1 << 16) { if let s = sector(n) { let a = Array(s); miniFat += (0..<(a.count / 4)).compactMap { u32(a, $0 * 4) } } }
        var out: [(String, [UInt8])] = []
        for e in 1..<min(dir.count / 128, 4096) where out.count < maxStreams {
            let base = e * 128
            guard dir[base + 66] == 2, let nameLen = u16(dir, base + 64), nameLen >= 2, nameLen <= 64,
                  let start = u32(dir, base + 116), let size32 = u32(dir, base + 120), size32 > 0 else { continue }
            let size = min(Int(size32), maxStreamBytes)
            let name = String(decoding: stride(from: base, to: base + nameLen - 2, by: 2).map { dir[$0] }.filter { $0 >= 0x20 && $0 < 0x7f }, as: UTF8.self)
            var bytes: [UInt8] = []
            if UInt32(size) < cutoff {
                for n in chain(start, in: miniFat, limit: size / 64 + 2) {
                    let off = Int(n) * 64
                    guard off < miniStream.count else { break }
                    bytes += miniStream[off..<min(miniStream.count, off + 64)]
                }
                bytes = Array(bytes.prefix(size))
            } else {
                bytes = read(start, size: size)
            }
            out.append((name, bytes))
        }
        return out
    }
}
