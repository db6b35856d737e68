import CHyperscan
import Foundation
@testable import ScanEngine
import XCTest

final class HyperscanCacheTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "mdatp-hscache-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() {
        HyperscanCache.shared = nil
        try? FileManager.default.removeItem(atPath: dir)
    }

    func files(_ suffix: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(suffix) }
    }

    func testACompiledDatabaseIsReusedAndADamagedOneRecompiled() throws {
        let cache = try XCTUnwrap(HyperscanCache(directory: dir))
        HyperscanCache.shared = cache
        let exprs = ["abc[0-9]{2}def", "\\x00\\x01\\x02xyz"], flags: [UInt32] = [0, 0]
        let rules = [mdatp_hs_rule](repeating: mdatp_hs_rule(), count: 2)
        guard case .success(let first) = HyperscanDatabase.compile(exprs, flags: flags, rules: rules, som: false) else { return XCTFail("compile") }
        XCTAssertEqual(files(".hsdb").count, 1)
        XCTAssertEqual(cache.misses, 1)
        guard case .success(let again) = HyperscanDatabase.compile(exprs, flags: flags, rules: rules, som: false) else { return XCTFail("cached") }
        XCTAssertEqual(cache.hits, 1)
        XCTAssertEqual(again.bytes, first.bytes)
        // Another mode is another key.
        _ = HyperscanDatabase.compile(exprs, flags: flags, rules: rules, som: true)
        XCTAssertEqual(files(".hsdb").count, 2)
        // A damaged file is a miss and a fresh compile, never a crash.
        for name in files(".hsdb") {
            let h = try XCTUnwrap(FileHandle(forUpdatingAtPath: dir + "/" + name))
            h.seek(toFileOffset: 100)
            h.write(Data([0xff, 0xee, 0xdd]))
            h.closeFile()
        }
        guard case .success = HyperscanDatabase.compile(exprs, flags: flags, rules: rules, som: false) else { return XCTFail("recompile") }
        XCTAssertEqual(cache.hits, 1)
        XCTAssertEqual(cache.misses, 3)
    }

    func testARefusedPatternIsRemembered() throws {
        let cache = try XCTUnwrap(HyperscanCache(directory: dir))
        HyperscanCache.shared = cache
        let exprs = ["fine", "(unbalanced"], flags: [UInt32] = [0, 0]
        let rules = [mdatp_hs_rule](repeating: mdatp_hs_rule(), count: 2)
        guard case .failure(let e) = HyperscanDatabase.compile(exprs, flags: flags, rules: rules, som: false) else { return XCTFail("must fail") }
        XCTAssertEqual(e.index, 1)
        XCTAssertEqual(files(".refused").count, 1)
        guard case .failure(let e2) = HyperscanDatabase.compile(exprs, flags: flags, rules: rules, som: false) else { return XCTFail("must fail") }
        XCTAssertEqual(e2.index, 1)
        XCTAssertEqual(e2.message, e.message)
    }

    func testALinkIsNotACacheDirectory() throws {
        try FileManager.default.createSymbolicLink(atPath: dir + "/link", withDestinationPath: dir)
        XCTAssertNil(HyperscanCache(directory: dir + "/link"))
        XCTAssertNotNil(HyperscanCache(directory: dir))
    }
}
