// What ClamAV offsets and target types resolve against: the file's type (by
// its magic, never its name), and for PE and ELF executables the entry
// point's file offset and the sections. Headers are hostile: every count is
// capped and every offset checked against the file's size.
import CHyperscan

/// ClamAV target types (`Target:` in .ndb/.ldb).
public enum TargetType: Int, CaseIterable, Sendable {
    case any = 0, pe = 1, ole2 = 2, html = 3, mail = 4, graphics = 5, elf = 6, ascii = 7, macho = 9, pdf = 10, flash = 11, java = 12

    var bit: UInt32 { self == .any ? 0 : UInt32(1) << UInt32(rawValue) }
    /// Text targets are matched on raw bytes without case (ClamAV normalises them to lower case).
    var isText: Bool { self == .html || self == .mail || self == .ascii }
}

public struct FileLayout: Equatable, Sendable {
    public var size: UInt64
    public var types: UInt32 = 0
    public var entry: UInt64?
    public var sections: [(offset: UInt64, size: UInt64)] = []

    public static let headerBytes = 4096
    static let maxSections = Int(MDATP_HS_MAX_SECTIONS)

    public static func == (a: FileLayout, b: FileLayout) -> Bool {
        a.size == b.size && a.types == b.types && a.entry == b.entry
            && a.sections.map(\.offset) == b.sections.map(\.offset) && a.sections.map(\.size) == b.sections.map(\.size)
    }

    public func isType(_ t: TargetType) -> Bool { types & t.bit != 0 }

    /// `head` is the first bytes of the file (up to `headerBytes`); `read`
    /// fetches more (ELF section headers live at the end).
    public init(size: UInt64, head: UnsafeRawBufferPointer, read: (UInt64, Int) -> [UInt8]?) {
        self.size = size
        let h = head
        func at(_ i: Int, _ bytes: [UInt8]) -> Bool { h.count >= i + bytes.count && bytes.indices.allSatisfy { h[i + $0] == bytes[$0] } }
        if at(0, [0x7f, 0x45, 0x4c, 0x46]) { types |= TargetType.elf.bit; parseELF(h, read: read) }
        else if at(0, [0x4d, 0x5a]) { parsePE(h, read: read) }
        else if at(0, [0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]) { types |= TargetType.ole2.bit }
        else if at(0, [0xfe, 0xed, 0xfa, 0xce]) || at(0, [0xfe, 0xed, 0xfa, 0xcf]) || at(0, [0xce, 0xfa, 0xed, 0xfe]) || at(0, [0xcf, 0xfa, 0xed, 0xfe]) {
            types |= TargetType.macho.bit
        } else if at(0, [0xca, 0xfe, 0xba, 0xbe]) {
            // Java classes and fat Mach-O share the magic; the next word tells them apart.
            let next = h.count >= 8 ? UInt32(h[4]) << 24 | UInt32(h[5]) << 16 | UInt32(h[6]) << 8 | UInt32(h[7]) : 0
            types |= next < 45 ? TargetType.macho.bit : TargetType.java.bit
        } else if at(0, Array("FWS".utf8)) || at(0, Array("CWS".utf8)) || at(0, Array("ZWS".utf8)) { types |= TargetType.flash.bit }
        else if at(0, [0x89, 0x50, 0x4e, 0x47]) || at(0, Array("GIF8".utf8)) || at(0, [0xff, 0xd8, 0xff]) || at(0, Array("BM".utf8))
                    || at(0, [0x49, 0x49, 0x2a, 0x00]) || at(0, [0x4d, 0x4d, 0x00, 0x2a]) { types |= TargetType.graphics.bit }
        let window = h.prefix(1024)
        if FileLayout.find(Array("%PDF-".utf8), in: UnsafeRawBufferPointer(rebasing: window)) { types |= TargetType.pdf.bit }
        if types == 0 && FileLayout.isText(h) {
            types |= TargetType.ascii.bit
            let lower = h.prefix(FileLayout.headerBytes).map { $0 | ($0 >= 0x41 && $0 <= 0x5a ? 0x20 : 0) }
            if ["<html", "<!doctype html", "<script", "<body", "<iframe"].contains(where: { FileLayout.find(Array($0.utf8), in: lower) }) {
                types |= TargetType.html.bit
            }
            if ["received:", "return-path:", "from:", "message-id:", "mime-version:"].contains(where: { at(0, Array($0.utf8)) || lower.starts(with: Array($0.utf8)) })
                || (lower.starts(with: Array("from ".utf8))) {
                types |= TargetType.mail.bit
            }
        }
    }

    /// Text when the head has no NUL and few control bytes.
    static func isText(_ h: UnsafeRawBufferPointer) -> Bool {
        guard !h.isEmpty else { return false }
        var odd = 0
        for b in h {
            if b == 0 { return false }
            if b < 0x20 && b != 0x09 && b != 0x0a && b != 0x0d && b != 0x0c && b != 0x1b { odd += 1 }
        }
        return odd * 20 < h.count
    }

    static func find(_ needle: [UInt8], in hay: some Collection<UInt8>) -> Bool {
        let a = Array(hay)
        guard a.count >= needle.count else { return false }
        for i in 0...(a.count - needle.count) where a[i] == needle[0] {
            if a[i..<(i + needle.count)].elementsEqual(needle) { return true }
        }
        return false
    }

    static func u16(_ b: UnsafeRawBufferPointer, _ i: Int, _ le: Bool) -> UInt64? {
        guard i >= 0, i + 2 <= b.count else { return nil }
        return le ? UInt64(b[i]) | UInt64(b[i + 1]) << 8 : UInt64(b[i]) << 8 | UInt64(b[i + 1])
    }
    static func u32(_ b: UnsafeRawBufferPointer, _ i: Int, _ le: Bool) -> UInt64? {
        guard let lo = u16(b, le ? i : i + 2, le), let hi = u16(b, le ? i + 2 : i, le) else { return nil }
        return hi << 16 | lo
    }
    static func u64(_ b: UnsafeRawBufferPointer, _ i: Int, _ le: Bool) -> UInt64? {
        guard let lo = u32(b, le ? i : i + 4, le), let hi = u32(b, le ? i + 4 : i, le) else { return nil }
        return hi << 32 | lo
    }

    mutating func parsePE(_ h: UnsafeRawBufferPointer, read: (UInt64, Int) -> [UInt8]?) {
        guard let lfanew = FileLayout.u32(h, 0x3c, true), lfanew < UInt64(FileLayout.headerBytes) - 24 else { return }
        let pe = Int(lfanew)
        guard FileLayout.u32(h, pe, true) == 0x4550, // "PE\0\0"
              let nsec = FileLayout.u16(h, pe + 6, true), let optSize = FileLayout.u16(h, pe + 20, true),
              let ep = FileLayout.u32(h, pe + 24 + 16, true) else { return }
        types |= TargetType.pe.bit
        let table = pe + 24 + Int(optSize)
        var secs: [(UInt64, UInt64, UInt64, UInt64)] = [] // va, vsize, raw offset, raw size
        for i in 0..<min(Int(nsec), FileLayout.maxSections) {
            let s = table + i * 40
            guard let vsize = FileLayout.u32(h, s + 8, true), let va = FileLayout.u32(h, s + 12, true),
                  let rawSize = FileLayout.u32(h, s + 16, true), let raw = FileLayout.u32(h, s + 20, true) else { break }
            secs.append((va, vsize, raw, rawSize))
        }
        sections = secs.map { (offset: $0.2, size: min($0.3, size > $0.2 ? size - $0.2 : 0)) }
        if let s = secs.first(where: { ep >= $0.0 && ep < $0.0 + max($0.1, $0.3) }), ep - s.0 < s.3 {
            entry = s.2 + (ep - s.0)
        } else if ep < size {
            entry = ep // in the headers
        }
    }

    mutating func parseELF(_ h: UnsafeRawBufferPointer, read: (UInt64, Int) -> [UInt8]?) {
        guard h.count >= 64 else { return }
        let is64 = h[4] == 2, le = h[5] != 2
        guard let e = is64 ? FileLayout.u64(h, 24, le) : FileLayout.u32(h, 24, le),
              let phoff = is64 ? FileLayout.u64(h, 32, le) : FileLayout.u32(h, 28, le),
              let shoff = is64 ? FileLayout.u64(h, 40, le) : FileLayout.u32(h, 32, le),
              let phentsize = FileLayout.u16(h, is64 ? 54 : 42, le), let phnum = FileLayout.u16(h, is64 ? 56 : 44, le),
              let shentsize = FileLayout.u16(h, is64 ? 58 : 46, le), let shnum = FileLayout.u16(h, is64 ? 60 : 48, le) else { return }
        // Entry point: the loadable segment that holds it.
        if phoff < size, phentsize >= (is64 ? 56 : 32), phnum > 0, let ph = read(phoff, Int(min(phnum, 64) * phentsize)) {
            ph.withUnsafeBytes { p in
                for i in 0..<Int(min(phnum, 64)) {
                    let o = i * Int(phentsize)
                    guard FileLayout.u32(p, o, le) == 1, // PT_LOAD
                          let off = is64 ? FileLayout.u64(p, o + 8, le) : FileLayout.u32(p, o + 4, le),
                          let va = is64 ? FileLayout.u64(p, o + 16, le) : FileLayout.u32(p, o + 8, le),
                          let filesz = is64 ? FileLayout.u64(p, o + 32, le) : FileLayout.u32(p, o + 16, le) else { continue }
                    if e >= va && e - va < filesz { entry = off + (e - va); break }
                }
            }
        }
        // Sections from the section header table (capped).
        let count = min(Int(shnum), FileLayout.maxSections)
        if shoff > 0, shoff < size, shentsize >= (is64 ? 64 : 40), count > 0, let sh = read(shoff, count * Int(shentsize)) {
            sh.withUnsafeBytes { p in
                for i in 0..<count {
                    let o = i * Int(shentsize)
                    guard let type = FileLayout.u32(p, o + 4, le),
                          let off = is64 ? FileLayout.u64(p, o + 24, le) : FileLayout.u32(p, o + 16, le),
                          let sz = is64 ? FileLayout.u64(p, o + 32, le) : FileLayout.u32(p, o + 20, le) else { break }
                    // Indexed as in the file (section 0 is the null one), as ClamAV's Sx counts.
                    sections.append((offset: off, size: type == 8 || type == 0 ? 0 : sz)) // SHT_NOBITS holds no bytes
                }
            }
        }
    }
}
