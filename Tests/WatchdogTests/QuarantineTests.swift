import Foundation
import Glibc
import MdatpSystem
@testable import Watchdog
import XCTest

final class QuarantineTests: XCTestCase {
    var root = ""
    var store: QuarantineStore!

    override func setUp() {
        root = NSTemporaryDirectory() + "q-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: root + "/store", withIntermediateDirectories: true)
        try? FileManager.default.createDirectory(atPath: root + "/data", withIntermediateDirectories: true)
        store = QuarantineStore(dir: root + "/store")
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    func identity(_ path: String) throws -> (UInt64, UInt64) {
        let st = try Sys.lstat(path)
        return (UInt64(st.st_dev), UInt64(st.st_ino))
    }

    func testMovesNeutralisesAndRestores() throws {
        let path = root + "/data/bad.bin"
        try "malicious payload".write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, 0o751)
        let (dev, ino) = try identity(path)
        let id = try store.quarantine(path: Array(path.utf8), dev: dev, ino: ino, threat: "Test.Threat")
        XCTAssertFalse(FileManager.default.fileExists(atPath: path), "gone from where it was")
        let kept = try XCTUnwrap(FileManager.default.contents(atPath: root + "/store/\(id).bin"))
        XCTAssertEqual(kept.count, 17)
        XCTAssertNotEqual(String(decoding: kept, as: UTF8.self), "malicious payload", "neutralised")
        XCTAssertEqual(try Sys.lstat(root + "/store/\(id).bin").st_mode & 0o777, 0o400)
        let listed = store.list()
        XCTAssertEqual(listed.map(\.id), [id])
        XCTAssertEqual(listed.first?.originalPath, path)
        XCTAssertEqual(listed.first?.mode, 0o751)

        let back = try store.restore(id: id)
        XCTAssertEqual(back.threat, "Test.Threat")
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "malicious payload")
        XCTAssertEqual(try Sys.lstat(path).st_mode & 0o7777, 0o751)
        XCTAssertEqual(store.list(), [])
    }

    func testAReplacedFileIsNotTaken() throws {
        let path = root + "/data/f"
        try "one".write(toFile: path, atomically: false, encoding: .utf8)
        let (dev, ino) = try identity(path)
        try FileManager.default.removeItem(atPath: path)
        try "two".write(toFile: path, atomically: false, encoding: .utf8)
        let now = try identity(path)
        XCTAssertThrowsError(try store.quarantine(path: Array(path.utf8), dev: dev, ino: ino == now.1 ? ino + 1 : ino, threat: "T")) { e in
            XCTAssertEqual((e as? Errno)?.code, ESTALE)
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: path))
        XCTAssertEqual(store.list(), [])
        XCTAssertEqual(Sys.listDirectory(root + "/store"), [], "no copy left behind")
    }

    func testSymlinksOnTheWayAreRefused() throws {
        try FileManager.default.createDirectory(atPath: root + "/real", withIntermediateDirectories: true)
        let target = root + "/real/f"
        try "x".write(toFile: target, atomically: false, encoding: .utf8)
        let (dev, ino) = try identity(target)
        try FileManager.default.createSymbolicLink(atPath: root + "/alias", withDestinationPath: root + "/real")
        XCTAssertThrowsError(try store.quarantine(path: Array((root + "/alias/f").utf8), dev: dev, ino: ino, threat: "T")) { e in
            XCTAssertEqual((e as? Errno)?.code, ELOOP)
        }
        try FileManager.default.createSymbolicLink(atPath: root + "/data/link", withDestinationPath: target)
        let (ldev, lino) = try identity(root + "/data/link")
        XCTAssertThrowsError(try store.quarantine(path: Array((root + "/data/link").utf8), dev: ldev, ino: lino, threat: "T"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: target))
    }

    func testRestoreNeverOverwritesAndIdsAreChecked() throws {
        let path = root + "/data/g"
        try "content".write(toFile: path, atomically: false, encoding: .utf8)
        let (dev, ino) = try identity(path)
        let id = try store.quarantine(path: Array(path.utf8), dev: dev, ino: ino, threat: "T")
        try "new file".write(toFile: path, atomically: false, encoding: .utf8)
        XCTAssertThrowsError(try store.restore(id: id)) { e in XCTAssertEqual((e as? Errno)?.code, EEXIST) }
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "new file")
        XCTAssertEqual(store.list().count, 1, "still in quarantine")
        for bad in ["../../etc/passwd", "", String(repeating: "g", count: 32)] {
            XCTAssertThrowsError(try store.remove(id: bad), bad)
        }
        try store.remove(id: id)
        XCTAssertEqual(store.list(), [])
    }
}
