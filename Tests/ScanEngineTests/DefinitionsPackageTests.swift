import Foundation
import ScanEngine
import XCTest

/// Builds packages with the same script `make definitions` uses.
func buildPackage(signatures: [String: String], version: String, keyDir: String, out: String) throws {
    let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    let src = out + "-src"
    try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
    for (name, text) in signatures { try text.write(toFile: src + "/" + name, atomically: true, encoding: .utf8) }
    try version.write(toFile: src + "/VERSION", atomically: true, encoding: .utf8)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/bash")
    p.arguments = [repo + "/packaging/make-definitions.sh", src, keyDir, out]
    p.standardOutput = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    XCTAssertEqual(p.terminationStatus, 0)
}

final class DefinitionsPackageTests: XCTestCase {
    var root = ""
    let eicar = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f:68:Virus.Test.EICAR-Test-File\n"

    override func setUp() {
        root = NSTemporaryDirectory() + "defs-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    func key(_ out: String) throws -> [UInt8] {
        try XCTUnwrap(DefinitionsPackage.parseKey([UInt8](try Data(contentsOf: URL(fileURLWithPath: out + "/trusted-keys/definitions.pub")))))
    }

    func load(_ dir: String, keys: [[UInt8]]) throws -> DefinitionsPackage {
        try DefinitionsPackage.load(directory: dir, trustedKeys: keys) { path, limit in
            guard let d = FileManager.default.contents(atPath: path), d.count <= limit else { return nil }
            return [UInt8](d)
        }
    }

    func reason(_ dir: String, keys: [[UInt8]]) -> String {
        do { _ = try load(dir, keys: keys); return "" } catch let e as PackageError { return e.reason } catch { return "\(error)" }
    }

    func testAValidPackageLoads() throws {
        try buildPackage(signatures: ["main.hsb": eicar], version: "1.2.3.4", keyDir: root + "/keys", out: root + "/out")
        let pkg = try load(root + "/out/package", keys: [try key(root + "/out")])
        XCTAssertEqual(pkg.version.description, "1.2.3.4")
        XCTAssertEqual(pkg.definitions.signatureCount, 1)
        XCTAssertEqual(DefinitionsVersion(packed: pkg.version.packed).description, "1.2.3.4")
    }

    func testEveryAlterationIsRefusedWithItsReason() throws {
        try buildPackage(signatures: ["main.hsb": eicar, "more.hdb": "44d88612fea8a8f36de82e1278abb02f:68:Eicar\n"], version: "1.0.0.1",
                         keyDir: root + "/keys", out: root + "/out")
        let keys = [try key(root + "/out")]
        let fm = FileManager.default
        func copy(_ name: String) throws -> String {
            let d = root + "/" + name
            try fm.copyItem(atPath: root + "/out/package", toPath: d)
            return d
        }
        // Unsigned.
        let unsigned = try copy("unsigned")
        try fm.removeItem(atPath: unsigned + "/manifest.sig")
        XCTAssertTrue(reason(unsigned, keys: keys).hasPrefix("unsigned"))
        // A byte changed in a signature file.
        let tampered = try copy("tampered")
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: tampered + "/main.hsb.zst")))
        bytes[bytes.count / 2] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: tampered + "/main.hsb.zst"))
        XCTAssertTrue(reason(tampered, keys: keys).contains("SHA-256 differs"), reason(tampered, keys: keys))
        // Truncated.
        let truncated = try copy("truncated")
        try Data(bytes.prefix(10)).write(to: URL(fileURLWithPath: truncated + "/main.hsb.zst"))
        XCTAssertTrue(reason(truncated, keys: keys).contains("truncated"), reason(truncated, keys: keys))
        // The manifest itself changed (a newer version claimed).
        let manifest = try copy("manifest")
        let text = try String(contentsOfFile: manifest + "/manifest.json", encoding: .utf8).replacingOccurrences(of: "1.0.0.1", with: "9.0.0.0")
        try text.write(toFile: manifest + "/manifest.json", atomically: true, encoding: .utf8)
        XCTAssertTrue(reason(manifest, keys: keys).contains("does not verify"))
        // Signed by someone else.
        try buildPackage(signatures: ["main.hsb": eicar], version: "1.0.0.2", keyDir: root + "/other-keys", out: root + "/other")
        XCTAssertTrue(reason(root + "/other/package", keys: keys).contains("does not verify"))
        // A malformed signature line, properly signed: refused whole, naming the line.
        try buildPackage(signatures: ["main.hsb": eicar + "nothex:68:Bad\n"], version: "1.0.0.3", keyDir: root + "/keys", out: root + "/bad")
        XCTAssertTrue(reason(root + "/bad/package", keys: keys).contains("main.hsb:2"), reason(root + "/bad/package", keys: keys))
        // No trusted key at all.
        XCTAssertTrue(reason(root + "/out/package", keys: []).contains("does not verify"))
    }

    func testVersionsCompareNumerically() {
        XCTAssertLessThan(DefinitionsVersion("1.0.9.0")!, DefinitionsVersion("1.0.10.0")!)
        XCTAssertNil(DefinitionsVersion("1.0.0"))
        XCTAssertNil(DefinitionsVersion("1.0.0.x"))
        XCTAssertNil(DefinitionsVersion("1.0.0.99999999"))
    }
}
