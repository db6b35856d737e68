import CMdatpABI
import MdatpEvents
import XCTest

/// Builds records the way the BPF programs do.
func record<T>(_ fixed: T, strings: [[UInt8]], fill: (inout T, Int) -> Void) -> [UInt8] {
    var f = fixed
    let total = MemoryLayout<T>.size + strings.reduce(0) { $0 + $1.count }
    fill(&f, total)
    var out = withUnsafeBytes(of: &f) { Array($0) }
    for s in strings { out += s }
    return out
}

final class DecoderTests: XCTestCase {
    func header(_ type: mdatp_event_type, size: Int) -> mdatp_event_header {
        var h = mdatp_event_header()
        h.type = UInt16(type.rawValue)
        h.size = UInt32(size)
        h.seq = 41
        h.pid = 100
        h.tgid = 100
        h.uid = 1000
        h.euid = 0
        withUnsafeMutableBytes(of: &h.comm) { b in for (i, c) in "bash".utf8.enumerated() { b[i] = c } }
        return h
    }

    func testExecDecodesEveryString() throws {
        let exe = Array("/usr/bin/echo".utf8), cwd = Array("/tmp/x y".utf8), tty = Array("pts0".utf8)
        let argv = Array("echo\0hello world\0\u{e9}t\u{e9}\0".utf8)
        let bytes = record(mdatp_exec_event(), strings: [exe, cwd, tty, argv]) { e, total in
            e.h = header(MDATP_EV_EXEC, size: total)
            e.ppid = 99
            e.exe_len = UInt16(exe.count)
            e.cwd_len = UInt16(cwd.count)
            e.tty_len = UInt16(tty.count)
            e.argv_len = UInt16(argv.count)
            e.argc = 3
            e.exe_ino = 1234
        }
        let ev = try bytes.withUnsafeBytes { try EventDecoder.decode($0) }
        XCTAssertEqual(ev.kind, .exec)
        XCTAssertEqual(ev.header.comm, "bash")
        XCTAssertEqual(ev.header.seq, 41)
        guard case .exec(let x) = ev.body else { return XCTFail() }
        XCTAssertEqual(x.exe, "/usr/bin/echo")
        XCTAssertEqual(x.cwd, "/tmp/x y")
        XCTAssertEqual(x.tty, "pts0")
        XCTAssertEqual(x.argv, ["echo", "hello world", "\u{e9}t\u{e9}"])
        XCTAssertEqual(x.ppid, 99)
        XCTAssertEqual(x.exeIno, 1234)
    }

    func testLengthsPastTheRecordAreRefused() {
        let exe = Array("/bin/x".utf8)
        let bytes = record(mdatp_exec_event(), strings: [exe]) { e, total in
            e.h = header(MDATP_EV_EXEC, size: total)
            e.exe_len = 4000 // lies
        }
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try EventDecoder.decode($0) })
    }

    func testDeclaredSizeLargerThanTheBufferIsRefused() {
        let bytes = record(mdatp_fork_event(), strings: []) { e, total in e.h = header(MDATP_EV_FORK, size: total + 8) }
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try EventDecoder.decode($0) })
    }

    func testShortAndUnknownRecordsAreRefused() {
        XCTAssertThrowsError(try [UInt8](repeating: 0, count: 10).withUnsafeBytes { try EventDecoder.decode($0) })
        let unknown = record(mdatp_fork_event(), strings: []) { e, total in
            e.h = header(MDATP_EV_FORK, size: total)
            e.h.type = 999
        }
        XCTAssertThrowsError(try unknown.withUnsafeBytes { try EventDecoder.decode($0) })
        // A file type with only a header's worth of bytes.
        let short = record(mdatp_event_header(), strings: []) { h, total in h = header(MDATP_EV_FILE_RENAME, size: total) }
        XCTAssertThrowsError(try short.withUnsafeBytes { try EventDecoder.decode($0) })
    }

    func testInvalidUTF8IsDecodedLossily() throws {
        let path: [UInt8] = [0x2f, 0x74, 0xff, 0xfe, 0x78]
        let bytes = record(mdatp_file_event(), strings: [path]) { e, total in
            e.h = header(MDATP_EV_FILE_UNLINK, size: total)
            e.path_len = UInt16(path.count)
        }
        let ev = try bytes.withUnsafeBytes { try EventDecoder.decode($0) }
        guard case .file(let f) = ev.body else { return XCTFail() }
        XCTAssertTrue(f.path.hasPrefix("/t"))
        XCTAssertTrue(f.path.hasSuffix("x"))
    }

    func testRenameCarriesBothPaths() throws {
        let a = Array("/tmp/a".utf8), b = Array("/tmp/b".utf8)
        let bytes = record(mdatp_file_event(), strings: [a, b]) { e, total in
            e.h = header(MDATP_EV_FILE_RENAME, size: total)
            e.path_len = UInt16(a.count)
            e.path2_len = UInt16(b.count)
        }
        let ev = try bytes.withUnsafeBytes { try EventDecoder.decode($0) }
        guard case .file(let f) = ev.body else { return XCTFail() }
        XCTAssertEqual(f.path, "/tmp/a")
        XCTAssertEqual(f.path2, "/tmp/b")
    }

    func testAddressesFormat() {
        func fmt(_ fam: UInt16, _ b: [UInt8]) -> String { (b + [UInt8](repeating: 0, count: 16 - b.count)).withUnsafeBytes { EventDecoder.formatAddress(fam, $0) } }
        XCTAssertEqual(fmt(2, [127, 0, 0, 1]), "127.0.0.1")
        XCTAssertEqual(fmt(10, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]), "::1")
        XCTAssertEqual(fmt(10, [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]), "2001:db8::1")
        XCTAssertEqual(fmt(10, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1]), "::ffff:10.0.0.1")
        XCTAssertEqual(fmt(10, [0xfe, 0x80, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7]), "fe80:1:2:3:4:5:6:7")
    }
}
