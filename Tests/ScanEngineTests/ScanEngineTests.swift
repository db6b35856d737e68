import Glibc
import Foundation
import ScanEngine
import XCTest

final class HashSignatureTests: XCTestCase {
    let eicar = Array(#"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"#.utf8)

    func digests(_ bytes: [UInt8], _ kinds: Set<HashKind>) throws -> FileDigests {
        let fd = try memfd(bytes)
        defer { close(fd) }
        return try FileHasher.digests(fd: fd, kinds: kinds, maxBytes: 1 << 20)
    }

    func memfd(_ bytes: [UInt8]) throws -> Int32 {
        var template = Array("/tmp/mdatp-scan-XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        XCTAssertGreaterThanOrEqual(fd, 0)
        unlink(String(cString: template))
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        return fd
    }

    func testDigestsAreRight() throws {
        let d = try digests(eicar, [.md5, .sha1, .sha256])
        XCTAssertEqual(d.size, 68)
        XCTAssertEqual(FileDigests.hex(d.md5), "44d88612fea8a8f36de82e1278abb02f")
        XCTAssertEqual(FileDigests.hex(d.sha1), "3395856ce81f2b7382dee72602f798b642f14140")
        XCTAssertEqual(FileDigests.hex(d.sha256), "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f")
    }

    func testEveryHashKindMatchesWithItsSize() throws {
        var set = HashSignatureSet()
        try set.load(Array("""
        44d88612fea8a8f36de82e1278abb02f:68:Eicar.MD5
        3395856ce81f2b7382dee72602f798b642f14140:*:Eicar.SHA1.AnySize
        275A021BBFB6489E54D471899F7DB9D1663FC695EC2FE2A2C4538AABF651FD0F:69:Eicar.WrongSize

        """.utf8), file: "t.hsb", allowList: false)
        XCTAssertEqual(set.count, 3)
        XCTAssertEqual(set.neededKinds, [.md5, .sha1, .sha256])
        let d = try digests(eicar, set.neededKinds)
        XCTAssertNotNil(set.match(d))
        var onlySHA256 = d
        onlySHA256.md5 = []
        onlySHA256.sha1 = []
        XCTAssertNil(set.match(onlySHA256), "size is part of the signature")
        var onlySHA1 = d
        onlySHA1.md5 = []
        XCTAssertEqual(set.match(onlySHA1)?.name, "Eicar.SHA1.AnySize")
    }

    func testAHundredThousandSignaturesAreAllFoundAndRepeatsAreNotCounted() throws {
        var text = ""
        var digests: [[UInt8]] = []
        for i in 0..<100_000 {
            // splitmix64 over (i, word): distinct, uniformly spread digests
            let d = (0..<4).flatMap { w -> [UInt8] in
                var z = UInt64(i) &* 4 &+ UInt64(w) &+ 0x9E37_79B9_7F4A_7C15
                z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
                z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                z ^= z >> 31
                return (0..<8).map { UInt8(truncatingIfNeeded: z >> (8 * UInt64($0))) }
            }
            digests.append(d)
            text += FileDigests.hex(d) + ":\(1000 + i % 50):Synth.\(i)\n"
        }
        text += FileDigests.hex(digests[5]) + ":1005:Synth.Renamed\n"   // the same signature again: last name wins
        var set = HashSignatureSet()
        try set.load(Array(text.utf8), file: "big.hsb", allowList: false)
        XCTAssertEqual(set.count, 100_000)
        for i in stride(from: 0, to: 100_000, by: 997) {
            var f = FileDigests()
            f.sha256 = digests[i]
            f.size = UInt64(1000 + i % 50)
            XCTAssertEqual(set.match(f)?.name, i == 5 ? "Synth.Renamed" : "Synth.\(i)")
            f.size += 1
            XCTAssertNil(set.match(f), "another size")
        }
    }

    func testAllowListsWin() throws {
        var set = HashSignatureSet()
        try set.load(Array("44d88612fea8a8f36de82e1278abb02f:68:Eicar\n".utf8), file: "a.hdb", allowList: false)
        let d = try digests(eicar, [.md5])
        XCTAssertEqual(set.match(d)?.name, "Eicar")
        try set.load(Array("44d88612fea8a8f36de82e1278abb02f:68:Known.Good\n".utf8), file: "a.fp", allowList: true)
        XCTAssertNil(set.match(d))
    }

    func testBadLinesAreRefusedWithTheirLineNumber() {
        for (text, reason) in [("zz:68:Name", "hash"), ("44d88612fea8a8f36de82e1278abb02f:x:Name", "size"),
                               ("44d88612fea8a8f36de82e1278abb02f:68", "expected"), ("44d88612fea8a8f36de82e1278abb02f:68:bad name", "name"),
                               ("44d88612fea8a8f36de82e1278abb02f:*:Name", "`*`"), (String(repeating: "a", count: 5000), "longer")] {
            var set = HashSignatureSet()
            XCTAssertThrowsError(try set.load(Array("# comment\n\(text)\n".utf8), file: "x.hdb", allowList: false)) { e in
                let err = e as! SignatureError
                XCTAssertEqual(err.line, 2, text)
                XCTAssertTrue(err.reason.contains(reason), "\(err.reason) for \(text)")
            }
        }
    }

    func testThreatTypesFromNames() {
        XCTAssertEqual(ThreatType.of(signatureName: "Win.Test.EICAR_HDB-1"), .virus)
        XCTAssertEqual(ThreatType.of(signatureName: "PUA.Win.Tool.Packed"), .potentiallyUnwantedApplication)
        XCTAssertEqual(ThreatType.of(signatureName: "Unix.Tool.Miner"), .tool)
        XCTAssertEqual(ThreatType.of(signatureName: "Unix.Trojan.Mirai-1"), .trojan)
    }

    func testTheShippedDefinitionsLoadAndDetectTheTestFiles() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path + "/definitions"
        let names = try FileManager.default.contentsOfDirectory(atPath: dir)
        let defs = try Definitions.load(directory: dir, names: names) { path in
            FileManager.default.contents(atPath: path).map { [UInt8]($0) }
        }
        XCTAssertGreaterThanOrEqual(defs.signatureCount, 5)
        XCTAssertEqual(defs.match(try digests(eicar, defs.neededKinds))?.name, "Virus.Test.EICAR-Test-File")
        XCTAssertEqual(defs.match(try digests(eicar + [10], defs.neededKinds))?.name, "Virus.Test.EICAR-Test-File")
        XCTAssertNil(defs.match(try digests(Array("hello".utf8), defs.neededKinds)))
        if FileManager.default.fileExists(atPath: "/usr/share/clamav-testfiles/clam.exe") {
            let fd = open("/usr/share/clamav-testfiles/clam.exe", O_RDONLY)
            defer { close(fd) }
            XCTAssertEqual(defs.match(try FileHasher.digests(fd: fd, kinds: defs.neededKinds, maxBytes: 1 << 20))?.name, "ClamAV-Test-File")
        }
    }

    func testOversizedFilesAreRefused() throws {
        let fd = try memfd([UInt8](repeating: 1, count: 5000))
        defer { close(fd) }
        XCTAssertThrowsError(try FileHasher.digests(fd: fd, kinds: [.sha256], maxBytes: 4096))
    }
}

final class ThreatPolicyTests: XCTestCase {
    let eicar = Detection(name: "Virus.Test.EICAR-Test-File", type: .virus, engine: "hash")
    let pua = Detection(name: "PUA.Linux.Miner", type: .potentiallyUnwantedApplication, engine: "hash")

    func testMalwareIsBlockedOnlyWhenRemediating() {
        XCTAssertEqual(ThreatPolicy(remediate: true).action(for: eicar), .block)
        XCTAssertEqual(ThreatPolicy(remediate: false).action(for: eicar), .audit)
    }

    func testPUAFollowsItsPolicyAndDefaultsToAudit() {
        XCTAssertEqual(ThreatPolicy(remediate: true).action(for: pua), .audit)
        XCTAssertEqual(ThreatPolicy.parse(remediate: true, policies: ["potentially_unwanted_application=block"], allowed: []).action(for: pua), .block)
        XCTAssertEqual(ThreatPolicy.parse(remediate: false, policies: ["potentially_unwanted_application=block"], allowed: []).action(for: pua), .audit)
        XCTAssertEqual(ThreatPolicy.parse(remediate: true, policies: ["potentially_unwanted_application=off"], allowed: []).action(for: pua), .off)
    }

    func testAllowedThreatsAreNotActedOn() {
        XCTAssertEqual(ThreatPolicy.parse(remediate: true, policies: [], allowed: [eicar.name]).action(for: eicar), .allowed)
    }
}

final class ExclusionTests: XCTestCase {
    func testPathRulesAsDefenderDescribesThem() {
        let e = ScanExclusions(paths: ["/var/lib/pg/", "/srv/app.bin", "/home/*/cache/", "/data/*", "/logs/app?.txt"])
        XCTAssertTrue(e.excludes(path: "/var/lib/pg/base/1/2"))
        XCTAssertFalse(e.excludes(path: "/var/lib/pgx/file"))
        XCTAssertTrue(e.excludes(path: "/srv/app.bin"))
        XCTAssertFalse(e.excludes(path: "/srv/app.bin2"))
        XCTAssertTrue(e.excludes(path: "/home/ann/cache/x"))
        XCTAssertFalse(e.excludes(path: "/home/ann/deep/cache/x"), "* is exactly one level")
        XCTAssertTrue(e.excludes(path: "/data/a/b/c"), "final * is everything below")
        XCTAssertFalse(e.excludes(path: "/database/x"))
        XCTAssertTrue(e.excludes(path: "/logs/app1.txt"))
        XCTAssertFalse(e.excludes(path: "/logs/app12.txt"))
    }

    func testExtensionsAndProcesses() {
        let e = ScanExclusions(extensions: [".iso"], processes: ["postgres", "/usr/bin/backup-tool", "averyveryverylongname"])
        XCTAssertTrue(e.excludes(path: "/x/disk.iso"))
        XCTAssertFalse(e.excludes(path: "/x/disk.iso.sig"))
        XCTAssertTrue(e.excludes(processName: "postgres", executable: nil))
        XCTAssertTrue(e.excludes(processName: "backup-tool", executable: "/usr/bin/backup-tool"))
        XCTAssertFalse(e.excludes(processName: "backup-tool", executable: "/tmp/backup-tool"), "full paths match the executable only")
        XCTAssertTrue(e.excludes(processName: "averyveryverylo", executable: nil), "comm is cut at 15 bytes")
    }
}

final class YaraTests: XCTestCase {
    func testRulesCompileMatchAndBadRulesAreRefusedWithTheirLine() throws {
        let rules = try YaraRules(sources: [("a.yar", """
        rule Unix_Tool_Miner { meta: threat_type = "tool" strings: $s = "stratum+tcp://" condition: $s }
        rule Plain { strings: $p = { 4D 5A 90 00 } condition: $p at 0 }
        """)])
        XCTAssertEqual(rules.count, 2)
        XCTAssertEqual(rules.scan(bytes: Array("config: stratum+tcp://pool:3333".utf8))?.name, "Unix_Tool_Miner")
        XCTAssertEqual(rules.scan(bytes: Array("config: stratum+tcp://pool:3333".utf8))?.type, .tool)
        XCTAssertEqual(rules.scan(bytes: [0x4d, 0x5a, 0x90, 0x00, 1, 2])?.name, "Plain")
        XCTAssertNil(rules.scan(bytes: Array("nothing here".utf8)))
        XCTAssertThrowsError(try YaraRules(sources: [("ok.yar", "rule A { condition: true }"), ("bad.yar", "rule B {\n strings: $x = \"y\"\n condition: $z\n}")])) { e in
            let err = e as! SignatureError
            XCTAssertEqual(err.file, "bad.yar")
            XCTAssertGreaterThanOrEqual(err.line, 3, "the line YARA names")
        }
    }

    func testTheShippedRuleFindsEICAREmbedded() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path + "/definitions"
        let defs = try Definitions.load(directory: dir, names: try FileManager.default.contentsOfDirectory(atPath: dir)) { path in
            FileManager.default.contents(atPath: path).map { [UInt8]($0) }
        }
        let text = "#!/bin/sh\necho '" + #"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"# + "' > /dev/null\n"
        let d = ContentScanner(definitions: defs).scanContent(Array(text.utf8))
        XCTAssertTrue(d?.name.contains("EICAR") ?? false, "\(String(describing: d))")
    }
}
