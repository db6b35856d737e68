import Foundation
import Glibc
import ScanEngine
import XCTest

/// ClamAV containers an admin imports: built here the way sigtool lays them
/// out (512-byte header, gzip'd tar; a .cld is the plain tar).
final class ClamAVDatabaseTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "cvd-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Writes NAME.cvd (or .cld with `cld`) holding `members`; returns its bytes.
    func container(_ name: String, _ members: [String: String], cld: Bool = false, corruptMD5: Bool = false) throws -> [UInt8] {
        let spec = try JSONSerialization.data(withJSONObject: members)
        try spec.write(to: URL(fileURLWithPath: dir + "/members.json"))
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().path + "/Fixtures/make-cvd.py"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = [script, dir + "/" + name, dir + "/members.json"] + (cld ? ["--cld"] : []) + (corruptMD5 ? ["--corrupt-md5"] : [])
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        return try [UInt8](Data(contentsOf: URL(fileURLWithPath: dir + "/" + name)))
    }

    let members = [
        "daily.hdb": "44d88612fea8a8f36de82e1278abb02f:68:Imported.EICAR.MD5\n",
        "daily.ndb": "Imported.Body-1:0:*:494d504f525445442d424f4459\n",   // IMPORTED-BODY
        "daily.info": "DSIG:not-ours\n",
        "daily.mdb": "1024:aabbccddeeff00112233445566778899:Win.Section\n",
    ]

    func testACVDIsCheckedAndUnpacked() throws {
        let src = try ClamAVDatabase.read(name: "daily.cvd", bytes: try container("daily.cvd", members))
        XCTAssertEqual(src.header?.version, 27100)
        XCTAssertEqual(src.header?.functionalityLevel, 210)
        XCTAssertEqual(src.header?.built, "29 Nov 2026 08-00 +0000")
        XCTAssertEqual(src.files.map(\.0).sorted(), ["daily.cvd/daily.hdb", "daily.cvd/daily.ndb"])
        XCTAssertEqual(src.skipped.sorted(), ["daily.info", "daily.mdb"], "formats we do not read are listed")
        // They load with the rest of the definitions and match.
        let defs = try Definitions.load(files: src.files)
        XCTAssertEqual(defs.hashes.count, 1)
        XCTAssertEqual(defs.bodies.count, 1)
        XCTAssertEqual(ContentScanner(definitions: defs).scanContent(Array("an IMPORTED-BODY inside".utf8))?.name, "Imported.Body-1")
    }

    func testACLDIsAPlainTarAndNeedsNoMD5() throws {
        let src = try ClamAVDatabase.read(name: "daily.cld", bytes: try container("daily.cld", members, cld: true, corruptMD5: true))
        XCTAssertEqual(src.files.count, 2)
    }

    func testBadContainersAreRefusedWithAReason() throws {
        var bytes = try container("daily.cvd", members)
        bytes[bytes.count - 40] ^= 0xff
        for (name, data, reason) in [
            ("daily.cvd", bytes, "MD5"),
            ("daily.cvd", try container("x.cvd", members, corruptMD5: true), "MD5"),
            ("daily.cvd", Array("ClamAV-VDB:short".utf8), "512-byte"),
            ("daily.cvd", [UInt8](repeating: 0x41, count: 600), "not a ClamAV database"),
            ("daily.cld", Array("ClamAV-VDB:a:b:c:d".utf8) + [UInt8](repeating: 0x20, count: 600), "malformed"),
            ("only.cvd", try container("only.cvd", ["x.info": "nothing"]), "no signature files"),
            ("notes.txt", Array("hello".utf8), "not a format"),
        ] {
            XCTAssertThrowsError(try ClamAVDatabase.read(name: name, bytes: data), reason) { e in
                XCTAssertTrue((e as! SignatureError).reason.contains(reason), "\(e) should say \(reason)")
            }
        }
    }

    func testLooseFilesPassThrough() throws {
        let src = try ClamAVDatabase.read(name: "local.ndb", bytes: Array("Local.Sig:0:*:4142434445\n".utf8))
        XCTAssertNil(src.header)
        XCTAssertEqual(src.files.map(\.0), ["local.ndb"])
    }
}
