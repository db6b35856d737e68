import Foundation
import Glibc
import ScanEngine
import XCTest

final class ArchiveTests: XCTestCase {
    var dir = ""
    let eicar = #"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"#
    var defs = Definitions()

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "arch-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defs = try Definitions.load(directory: "/x", names: ["t.hsb"]) { _ in
            Array("275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f:68:Virus.Test.EICAR-Test-File\n".utf8)
        }
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Archives are made with Python's standard library (present wherever the tests run).
    func python(_ code: String) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = ["-c", code]
        p.currentDirectoryURL = URL(fileURLWithPath: dir)
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
    }

    func scan(_ name: String, limits: ArchiveLimits = ArchiveLimits()) -> ArchiveOutcome? {
        let fd = open(dir + "/" + name, O_RDONLY)
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        return ArchiveWalker.scan(fd: fd, compressedSize: UInt64(st.st_size), limits: limits, scanner: ContentScanner(definitions: defs))
    }

    func testMembersOfNestedArchivesAreMatched() throws {
        try python("""
        import zipfile, tarfile, io
        with zipfile.ZipFile('inner.zip', 'w', zipfile.ZIP_DEFLATED) as z: z.writestr('dir/eicar.com', r'''\(eicar)''')
        with tarfile.open('outer.tar.gz', 'w:gz') as t: t.add('inner.zip')
        open('plain.txt', 'w').write('not an archive')
        """)
        let o = try XCTUnwrap(scan("outer.tar.gz"))
        XCTAssertEqual(o.detection?.name, "Virus.Test.EICAR-Test-File")
        XCTAssertEqual(o.member, "inner.zip/dir/eicar.com")
        XCTAssertNil(scan("plain.txt"), "plain data is not an archive")
    }

    func testAZipBombIsAnArchiveBombInBoundedWork() throws {
        // 1 GiB of zeros in about 1 MiB: stopped at the ratio bound (200:1), long before the end.
        try python("""
        import zipfile
        with zipfile.ZipFile('bomb.zip', 'w', zipfile.ZIP_DEFLATED, compresslevel=9) as z:
            with z.open('zeros.bin', 'w', force_zip64=True) as f:
                block = bytes(1 << 20)
                for _ in range(1024): f.write(block)
        """)
        let o = try XCTUnwrap(scan("bomb.zip"))
        XCTAssertEqual(o.detection?.type, .archiveBomb)
        XCTAssertLessThan(o.expandedBytes, 512 << 20, "stopped well before the end")
        XCTAssertTrue(o.detection?.engine.contains("ratio") ?? false, o.detection?.engine ?? "")
    }

    func testDeepNestingIsAnArchiveBomb() throws {
        try python("""
        import zipfile, io
        data = b'x'
        for i in range(50):
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, 'w') as z: z.writestr('level%d.zip' % i, data)
            data = buf.getvalue()
        open('deep.zip', 'wb').write(data)
        """)
        let o = try XCTUnwrap(scan("deep.zip"))
        XCTAssertEqual(o.detection?.type, .archiveBomb)
        XCTAssertTrue(o.detection?.engine.contains("nested") ?? false)
        var shallow = ArchiveLimits()
        shallow.maxDepth = 64
        XCTAssertNil(scan("deep.zip", limits: shallow)?.detection, "within a deeper bound: nothing to find")
    }

    func testTooManyMembersIsAnArchiveBomb() throws {
        try python("""
        import zipfile
        with zipfile.ZipFile('many.zip', 'w') as z:
            for i in range(300): z.writestr('f%d' % i, b'')
        """)
        var l = ArchiveLimits()
        l.maxMembers = 100
        XCTAssertEqual(scan("many.zip", limits: l)?.detection?.type, .archiveBomb)
        XCTAssertNil(scan("many.zip")?.detection)
    }

    func testDamagedArchivesDoNotHang() throws {
        try python("""
        import zipfile, os
        with zipfile.ZipFile('ok.zip', 'w', zipfile.ZIP_DEFLATED) as z: z.writestr('a', os.urandom(100000))
        d = bytearray(open('ok.zip','rb').read()); d[200:400] = os.urandom(200)
        open('broken.zip','wb').write(d[:len(d)//2])
        """)
        XCTAssertNil(scan("broken.zip")?.detection)
    }
}
