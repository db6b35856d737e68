import Foundation
import Glibc
import ScanEngine
import XCTest

/// ClamAV .ndb/.ldb on Hyperscan: every construct of the hex grammar, every
/// offset form, target types, logical expressions with counts, modifiers,
/// what is refused and why — matched through the same ContentScanner the
/// scanner room uses (one read: hashes and patterns together).
final class BodySignatureTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "body-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func hex(_ s: String) -> String { s.utf8.map { String(format: "%02x", $0) }.joined() }

    func definitions(_ files: [String: String]) throws -> Definitions {
        try Definitions.load(directory: "/defs", names: Array(files.keys)) { path in
            files[String(path.dropFirst("/defs/".count))].map { Array($0.utf8) }
        }
    }

    /// The verdict for `bytes` written to a file and scanned from its descriptor.
    func scan(_ defs: Definitions, _ bytes: [UInt8]) throws -> Detection? {
        let path = dir + "/f-\(UUID().uuidString)"
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        return try ContentScanner(definitions: defs).scan(fd: fd, size: UInt64(bytes.count), maxBytes: 1 << 30).detection
    }

    func ndb(_ sig: String, target: Int = 0, offset: String = "*") throws -> Definitions {
        try definitions(["t.ndb": "Test.Body-1:\(target):\(offset):\(sig)\n"])
    }

    func filler(_ n: Int) -> [UInt8] { [UInt8](repeating: 0x2e, count: n) }

    // MARK: grammar

    func testEveryHexConstructMatchesWhatItSaysAndNothingElse() throws {
        let cases: [(sig: String, hits: [String], misses: [String])] = [
            ("41424344", ["xxABCDxx"], ["ABCxD"]),
            ("4142??44", ["AB_D", "ABzD"], ["ABD"]),
            ("41424?44", ["ABCD", "ABOD"], ["ABaD"]),        // high nibble 4: 0x40-0x4f
            ("4142?344", ["ABcD", "ABSD"], ["ABdD"]),        // low nibble 3
            ("4142*4344", ["AB........CD", "ABCD"], ["ACDB"]),
            ("4142{2}4344", ["ABxxCD"], ["ABxCD", "ABxxxCD"]),
            ("4142{-2}4344", ["ABCD", "ABxCD", "ABxxCD"], ["ABxxxCD"]),
            ("4142{2-}4344", ["ABxxCD", "ABxxxxxCD"], ["ABxCD"]),
            ("4142{1-3}4344", ["ABxCD", "ABxxxCD"], ["ABCD", "ABxxxxCD"]),
            ("4142[1-2]4344", ["ABxCD", "ABxxCD"], ["ABxxxCD"]),
            ("4142(43|4445)4647", ["ABCFG", "ABDEFG"], ["ABDFG"]),
            ("4142(4?|6?)4647", ["ABAFG", "ABaFG"], ["AB1FG"]),
            ("4142!(43|44)4546", ["ABXEF"], ["ABCEF", "ABDEF"]),
            ("4142!(4344|4546)4748", ["ABCEGH", "ABxyGH"], ["ABCDGH", "ABEFGH"]),   // verified by us
            ("(B)41424344(B)", ["x ABCD.", "ABCD"], ["xABCD ", " ABCDx"]),           // word boundaries
            ("(L)41424344", ["x\nABCD", "ABCD"], ["x ABCD"]),
        ]
        for c in cases {
            let defs = try ndb(c.sig)
            for h in c.hits { XCTAssertEqual(try scan(defs, Array(h.utf8))?.name, "Test.Body-1", "\(c.sig) should match \(h)") }
            for m in c.misses { XCTAssertNil(try scan(defs, Array(m.utf8)), "\(c.sig) should not match \(m)") }
        }
    }

    func testMalformedPatternsAreRefusedNamingTheLine() {
        let bad: [(String, String)] = [
            ("414", "unexpected"), ("41zz42", "unexpected"), ("*4142", "begin"), ("4142*", "end"),
            ("41??43", "two fixed bytes"), ("4142{5-2}4344", "max below min"), ("4142{2", "unterminated"),
            ("4142(43|44", "unterminated"), ("4142(43)4445", "at least two"), ("4142!(4344|45)4647", "one length"),
            ("4142(43|*)4445", "only bytes"), ("4142{99999999}4344", "bad gap"),
        ]
        for (sig, reason) in bad {
            XCTAssertThrowsError(try definitions(["x.ndb": "# c\nOk.Sig:0:*:41424344\nBad.Sig:0:*:\(sig)\n"]), sig) { e in
                let err = e as! SignatureError
                XCTAssertEqual(err.file, "x.ndb")
                XCTAssertEqual(err.line, 3, sig)
                XCTAssertTrue(err.reason.contains(reason), "\(err.reason) for \(sig)")
            }
        }
        for line in ["Name:0:*", "Bad name:0:*:41424344", "N:x:*:41424344", "N:0:EOF-x:41424344", "N:0:*:41424344:1:2:3"] {
            XCTAssertThrowsError(try definitions(["x.ndb": line + "\n"]), line)
        }
    }

    // MARK: offsets and targets

    func testOffsetsAnchorTheStart() throws {
        let data = Array("0123456789ABCDEFGHIJ".utf8)
        func hit(_ offset: String, _ sig: String) throws -> Bool { try scan(try ndb(sig, offset: offset), data) != nil }
        XCTAssertTrue(try hit("10", hex("ABCD")))
        XCTAssertFalse(try hit("9", hex("ABCD")))
        XCTAssertTrue(try hit("7,3", hex("ABCD")))                  // start within 7...10
        XCTAssertFalse(try hit("7,2", hex("ABCD")))
        XCTAssertTrue(try hit("EOF-4", hex("GHIJ")))
        XCTAssertFalse(try hit("EOF-5", hex("GHIJ")))
        XCTAssertTrue(try hit("EOF-5,1", hex("GHIJ")))                // start within 15...16
        XCTAssertTrue(try hit("0", hex("01") + "{2-4}" + hex("56")))     // variable length, exact start
        XCTAssertFalse(try hit("1", hex("01") + "{2-4}" + hex("56")))
        XCTAssertFalse(try hit("12", "(B)" + hex("CD") + "*" + hex("GH")), "boundary: the B before C is alphanumeric")
        XCTAssertTrue(try hit("10", "(B)" + hex("ABCD")) == false && hit("0", "(B)" + hex("0123")), "the file's start is a boundary")
    }

    func testEntryPointAndSectionsOfARealELF() throws {
        let exe = try [UInt8](Data(contentsOf: URL(fileURLWithPath: "/usr/bin/true")))
        let layout = exe.withUnsafeBytes { b in
            FileLayout(size: UInt64(b.count), head: UnsafeRawBufferPointer(rebasing: b.prefix(FileLayout.headerBytes))) { off, n in
                Array(b[Int(off)..<min(b.count, Int(off) + n)])
            }
        }
        XCTAssertTrue(layout.isType(.elf))
        let entry = try XCTUnwrap(layout.entry.map(Int.init))
        let atEntry = exe[entry..<(entry + 12)].map { String(format: "%02x", $0) }.joined()
        XCTAssertEqual(try scan(try ndb(atEntry, target: 6, offset: "EP+0"), exe)?.name, "Test.Body-1")
        XCTAssertNil(try scan(try ndb(atEntry, target: 6, offset: "EP+1"), exe))
        XCTAssertNil(try scan(try ndb(atEntry, target: 1, offset: "*"), exe), "PE-only signature on an ELF")
        // A section by index: the first section with bytes.
        let (i, sec) = try XCTUnwrap(layout.sections.enumerated().first { $0.element.size >= 16 && $0.element.offset > 0 })
        let inSection = exe[Int(sec.offset)..<Int(sec.offset) + 8].map { String(format: "%02x", $0) }.joined()
        XCTAssertNotNil(try scan(try ndb(inSection, target: 6, offset: "S\(i)+0"), exe))
        XCTAssertNotNil(try scan(try ndb(inSection, target: 6, offset: "SE\(i)"), exe))
        XCTAssertNil(try scan(try ndb(inSection, target: 6, offset: "S\(i)+2"), exe))
        XCTAssertNil(try scan(try ndb(inSection, target: 6, offset: "S9999+0"), exe), "no such section")
    }

    func testTextTargetsIgnoreCaseAndOtherTargetsDoNot() throws {
        let page = Array("<html><body><SCRIPT>EvilFunction()</SCRIPT></body></html>".utf8)
        XCTAssertNotNil(try scan(try ndb(hex("evilfunction"), target: 3), page))
        XCTAssertNil(try scan(try ndb(hex("evilfunction"), target: 0), page))
        XCTAssertNil(try scan(try ndb(hex("EvilFunction"), target: 6), page), "an ELF signature on HTML")
    }

    func testAPatternAcrossReadChunksIsFound() throws {
        // The hasher reads 128 KiB at a time: the pattern straddles the boundary.
        let chunk = 1 << 17
        var data = filler(chunk - 3)
        data += Array("SPLITPATTERN".utf8) + filler(1000)
        XCTAssertNotNil(try scan(try ndb(hex("SPLITPATTERN")), data))
        XCTAssertNotNil(try scan(try ndb(hex("SPLITPATTERN"), offset: "\(chunk - 3)"), data))
    }

    func testHugeGapsAreVerifiedByOurMatcher() throws {
        let defs = try ndb(hex("AB") + "{3000-4000}" + hex("CD"))
        XCTAssertNotNil(try scan(defs, Array("AB".utf8) + filler(3500) + Array("CD".utf8)))
        XCTAssertNil(try scan(defs, Array("AB".utf8) + filler(100) + Array("CD".utf8)))
        XCTAssertNil(try scan(defs, Array("AB".utf8) + filler(5000) + Array("CD".utf8)))
    }

    // MARK: logical signatures

    func ldb(_ line: String) throws -> Definitions { try definitions(["t.ldb": line + "\n"]) }

    func testLogicalExpressionsAndCounts() throws {
        let a = hex("ALPHA"), b = hex("BRAVO"), c = hex("CHARLIE")
        let cases: [(String, [String], [String])] = [
            ("0&1", ["ALPHA BRAVO", "BRAVO..ALPHA"], ["ALPHA", "BRAVO"]),
            ("(0|1)&2", ["ALPHA CHARLIE", "BRAVO CHARLIE"], ["ALPHA BRAVO", "CHARLIE"]),
            ("0|1&2", ["ALPHA", "BRAVO CHARLIE"], ["BRAVO", "CHARLIE"]),
            ("0>2", ["ALPHA ALPHA ALPHA"], ["ALPHA ALPHA"]),
            ("0=2", ["ALPHA ALPHA"], ["ALPHA", "ALPHA ALPHA ALPHA"]),
            ("0<3&1", ["ALPHA ALPHA BRAVO"], ["ALPHA ALPHA ALPHA BRAVO"]),
            ("(0|1|2)>1,2", ["ALPHA BRAVO", "ALPHA ALPHA CHARLIE"], ["ALPHA ALPHA ALPHA", "BRAVO"]),
        ]
        for (expr, hits, misses) in cases {
            let defs = try ldb("Test.Logic-1;Engine:51-255,Target:0;\(expr);\(a);\(b);\(c)")
            for h in hits { XCTAssertEqual(try scan(defs, Array(h.utf8))?.name, "Test.Logic-1", "\(expr) on \(h)") }
            for m in misses { XCTAssertNil(try scan(defs, Array(m.utf8)), "\(expr) on \(m)") }
        }
    }

    func testTargetDescriptionAndModifiers() throws {
        let sized = try ldb("Test.Sized;Engine:51-255,Target:0,FileSize:10-20;0;\(hex("MARK"))")
        XCTAssertNotNil(try scan(sized, Array("..MARK.....".utf8)))
        XCTAssertNil(try scan(sized, Array("MARK".utf8)), "below FileSize")
        let future = try definitions(["t.ldb": "Test.Future;Engine:300-400,Target:0;0;\(hex("MARK"))\nTest.Now;Engine:51-255;0;\(hex("MARK"))\n"])
        XCTAssertEqual(future.bodies.count, 1, "a signature for a newer engine is skipped")
        XCTAssertEqual(future.bodies.skippedForLevel, 1)
        let caseless = try ldb("Test.I;Target:0;0;\(hex("mixedcase"))::i")
        XCTAssertNotNil(try scan(caseless, Array("xx MiXeDcAsE".utf8)))
        let wide = try ldb("Test.W;Target:0;0;\(hex("wide"))::w")
        XCTAssertNotNil(try scan(wide, Array("w\0i\0d\0e\0".utf8)))
        XCTAssertNil(try scan(wide, Array("wide".utf8)))
        let both = try ldb("Test.WA;Target:0;0;\(hex("wide"))::wa")
        XCTAssertNotNil(try scan(both, Array("wide".utf8)))
        XCTAssertNotNil(try scan(both, Array("w\0i\0d\0e\0".utf8)))
        let full = try ldb("Test.F;Target:0;0;\(hex("word"))::f")
        XCTAssertNotNil(try scan(full, Array("a word here".utf8)))
        XCTAssertNil(try scan(full, Array("swordfish".utf8)))
        let offset = try ldb("Test.O;Target:0;0&1;0:\(hex("HEAD"));EOF-4:\(hex("TAIL"))")
        XCTAssertNotNil(try scan(offset, Array("HEAD....TAIL".utf8)))
        XCTAssertNil(try scan(offset, Array(".HEAD...TAIL".utf8)))
    }

    func testUnsupportedConstructsAreSkippedByNameAndTheRestLoads() throws {
        let defs = try definitions(["t.ldb": """
            Test.Pcre;Engine:81-255,Target:0;0&1;\(hex("abc"));0/evil[0-9]+/i
            Test.Container;Engine:51-255,Container:CL_TYPE_ZIP,Target:0;0;\(hex("abcd"))
            Test.ByteCompare;Engine:51-255,Target:0;0&1;\(hex("abcd"));0(>>5#hb2#=123)
            Test.Macro;Engine:51-255,Target:0;0&1;\(hex("abcd"));${6-7}0$
            Test.Good;Engine:51-255,Target:0;0;\(hex("GOODSIG"))

            """, "t.ndb": "Test.Target13:13:*:41424344\nTest.OffsetVI:0:VI:41424344\n"])
        XCTAssertEqual(defs.bodies.count, 1)
        XCTAssertEqual(defs.bodies.unsupportedCount, 6)
        let reasons = defs.bodies.unsupported.map(\.description).joined(separator: "\n")
        for construct in ["PCRE", "Container", "byte-compare", "macro", "target type 13", "offset `VI`"] {
            XCTAssertTrue(reasons.contains(construct), "\(construct) in\n\(reasons)")
        }
        XCTAssertNotNil(try scan(defs, Array("a GOODSIG".utf8)))
        // Malformed (not merely unsupported) refuses the set.
        XCTAssertThrowsError(try ldb("Test.Bad;Target:0;0&5;\(hex("abcd"))")) { e in
            XCTAssertTrue((e as! SignatureError).reason.contains("does not exist"))
        }
        XCTAssertThrowsError(try ldb("Test.Bad;Target:0;(0&1;\(hex("abcd"));\(hex("efgh"))"))
    }

    // MARK: with the other engines

    func testAllowListsWinOverBodySignaturesAndHashesComeFirst() throws {
        let data = Array("some BADBODY content".utf8)
        let md5 = md5Hex(data)
        let body = "Test.Body:0:*:\(hex("BADBODY"))\n"
        XCTAssertEqual(try scan(try definitions(["t.ndb": body]), data)?.engine, "body")
        XCTAssertNil(try scan(try definitions(["t.ndb": body, "a.fp": "\(md5):\(data.count):Known.Good\n"]), data))
        XCTAssertEqual(try scan(try definitions(["t.ndb": body, "h.hdb": "\(md5):\(data.count):Hash.Name\n"]), data)?.name, "Hash.Name")
    }

    func testBodySignaturesReachArchiveMembers() throws {
        let zip = dir + "/a.zip"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = ["-c", "import zipfile; z = zipfile.ZipFile('\(zip)', 'w', zipfile.ZIP_DEFLATED); z.writestr('in/x.txt', 'hidden INSIDEMEMBER here'); z.close()"]
        try p.run()
        p.waitUntilExit()
        let defs = try definitions(["t.ndb": "Test.Member:0:*:\(hex("INSIDEMEMBER"))\n"])
        let fd = open(zip, O_RDONLY)
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        XCTAssertNil(try ContentScanner(definitions: defs).scan(fd: fd, size: UInt64(st.st_size), maxBytes: 1 << 30).detection, "compressed: not in the raw bytes")
        let o = ArchiveWalker.scan(fd: fd, compressedSize: UInt64(st.st_size), limits: ArchiveLimits(), scanner: ContentScanner(definitions: defs))
        XCTAssertEqual(o?.detection?.name, "Test.Member")
        XCTAssertEqual(o?.member, "in/x.txt")
    }

    func md5Hex(_ data: [UInt8]) -> String {
        let path = dir + "/md5-input"
        FileManager.default.createFile(atPath: path, contents: Data(data))
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        return FileDigests.hex((try? FileHasher.digests(fd: fd, kinds: [.md5], maxBytes: 1 << 20).md5) ?? [])
    }
}
