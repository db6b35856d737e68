import Foundation
import Glibc
@testable import ScanEngine
import XCTest

/// What mail, web pages, RTF, PDF, Office, TNEF, SIS and `compress` files hide,
/// decoded back to the very bytes of ClamAV's test program (Debian's
/// clamav-testfiles, installed by make deps).
final class EmbeddedObjectsTests: XCTestCase {
    let dir = "/usr/share/clamav-testfiles"

    func file(_ name: String) throws -> [UInt8] {
        guard FileManager.default.fileExists(atPath: dir + "/" + name) else {
            if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail("clamav-testfiles missing: make deps installs it") }
            throw XCTSkip("clamav-testfiles is not installed (make deps)")
        }
        return try [UInt8](Data(contentsOf: URL(fileURLWithPath: dir + "/" + name)))
    }

    /// Every object found at any depth, as (path, bytes).
    func objects(_ data: [UInt8], depth: Int = 3) -> [(String, [UInt8])] {
        var budget = EmbeddedObjects.Budget(limits: EmbeddedLimits())
        var out: [(String, [UInt8])] = []
        func go(_ d: [UInt8], _ top: Bool, _ prefix: String, _ level: Int) {
            for (n, o) in EmbeddedObjects.extract(d, topLevel: top, budget: &budget) {
                out.append((prefix + n, o))
                if level < depth { go(o, false, prefix + n + "/", level + 1) }
            }
        }
        go(data, true, "", 1)
        return out
    }

    func testEachEncodingGivesBackTheProgramItself() throws {
        let program = try file("clam.exe")
        for (name, how) in [("clam.mail", "base64"), ("clam.exe.mbox.base64", "base64"), ("clam.exe.html", "base64"),
                            ("clam.exe.mbox.uu", "uu:clam.exe"), ("clam.exe.binhex", "binhex"), ("clam.exe.szdd", "szdd"),
                            ("clam.exe.rtf", "hex"), ("clam.ppt", "zlib"), ("clam.sis", "zlib"), ("clam.ole.doc", "ole2:")] {
            let found = objects(try file(name))
            XCTAssertTrue(found.contains { $0.0.contains(how) && ($0.1 == program || $0.1.starts(with: program.prefix(513))) },
                          "\(name): \(found.map { "\($0.0) (\($0.1.count) B)" })")
        }
        // Carved from inside a TNEF attachment and a PDF stream: the PE header and sections.
        for name in ["clam.tnef", "clam.pdf"] {
            let found = objects(try file(name))
            XCTAssertTrue(found.contains { $0.0.contains("pe@") && $0.1.starts(with: program.prefix(513)) }, "\(name): \(found.map(\.0))")
        }
    }

    func testTextBeforeAnEncodedBlockDoesNotShiftIt() {
        let payload = (0..<300).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let b64 = Data(payload).base64EncodedString(options: [.lineLength76Characters, .endLineWithLineFeed])
        let mail = "Content-Disposition: attachment; filename=evil.exe\n\n" + b64 + "\n--boundary--\n"
        let runs = EmbeddedObjects.base64Runs(Array(mail.utf8))
        XCTAssertEqual(runs.map(\.1), [payload])
    }

    func testAnArchiveAppendedToAProgramIsFound() throws {
        let tmp = NSTemporaryDirectory() + "emb-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = ["-c", "import zipfile; z = zipfile.ZipFile('\(tmp)/a.zip', 'w', zipfile.ZIP_DEFLATED); z.writestr('payload.bin', 'APPENDED-PAYLOAD-' * 10); z.close()"]
        try p.run()
        p.waitUntilExit()
        let sfx = try file("clam.exe") + [UInt8](repeating: 0, count: 100) + [UInt8](try Data(contentsOf: URL(fileURLWithPath: tmp + "/a.zip")))
        let defs = try Definitions.load(files: [("t.ndb", Array("Test.Appended:0:*:\(Array("APPENDED-PAYLOAD".utf8).map { String(format: "%02x", $0) }.joined())\n".utf8))])
        let o = EmbeddedObjects.scan(sfx, scanner: ContentScanner(definitions: defs), archiveLimits: ArchiveLimits())
        XCTAssertEqual(o?.detection?.name, "Test.Appended")
        XCTAssertEqual(o?.member, "archive@644/payload.bin")
    }

    func testHostileInputStaysWithinItsBounds() {
        // 8 MiB of base64 lines and zlib-looking bytes: objects, output and attempts are capped.
        var noise = [UInt8]()
        for i in 0..<100_000 { noise += Array("QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB\n".utf8); if i % 1000 == 0 { noise += [0x21] } }
        var limits = EmbeddedLimits()
        limits.maxObjects = 10
        limits.maxOutputBytes = 1 << 20
        var budget = EmbeddedObjects.Budget(limits: limits)
        let found = EmbeddedObjects.extract(noise, topLevel: true, budget: &budget)
        XCTAssertLessThanOrEqual(found.count, 10)
        XCTAssertLessThanOrEqual(found.reduce(0) { $0 + $1.1.count }, 1 << 20)
        let zlibish = [UInt8](repeating: 0x78, count: 1) + [0x9c] + [UInt8](repeating: 0xff, count: 100_000)
        XCTAssertLessThanOrEqual(EmbeddedObjects.zlibStreams(zlibish + zlibish, tries: 4).count, 4)
        // A BinHex header claiming more data than there is gives nothing.
        XCTAssertNil(EmbeddedObjects.binhex(Array("(This file must be converted with BinHex 4.0)\n:!!!!:\n".utf8)))
    }
}
