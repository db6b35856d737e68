import MdatpConfig
import MdatpJSON
import XCTest

final class ConfigTests: XCTestCase {
    let paths = SuitePaths(prefix: "/t")

    func load(local: String?, managed: String?) throws -> SuiteConfig {
        try ConfigLoader.load(paths: paths) { path in
            if path == self.paths.configFile { return local.map { Array($0.utf8) } }
            if path == self.paths.managedFile { return managed.map { Array($0.utf8) } }
            return nil
        }
    }

    func error(local: String?, managed: String? = nil) -> ConfigError? {
        do { _ = try load(local: local, managed: managed) } catch let e as ConfigError { return e } catch { return nil }
        return nil
    }

    func testNoFilesGiveTheDefaults() throws {
        let c = try load(local: nil, managed: nil)
        XCTAssertEqual(c, SuiteConfig())
        XCTAssertEqual(c.enforcementLevel, "passive")
    }

    func testManagedKeysWinAndAreMarked() throws {
        let c = try load(local: #"{"antivirusEngine": {"enforcementLevel": "real_time", "behaviorMonitoring": "enabled"}}"#,
                         managed: #"{"antivirusEngine": {"enforcementLevel": "on_demand"}}"#)
        XCTAssertEqual(c.enforcementLevel, "on_demand")
        XCTAssertEqual(c.behaviorMonitoring, "enabled")
        XCTAssertEqual(c.managedKeys, ["antivirusEngine.enforcementLevel"])
    }

    func testUnknownKeysAreNamed() {
        XCTAssertEqual(error(local: #"{"antivirusEngin": {}}"#)?.key, "antivirusEngin")
        XCTAssertEqual(error(local: #"{"sensor": {"ringBytes": 1}}"#)?.key, "sensor.ringBytes")
        XCTAssertEqual(error(local: nil, managed: #"{"sensor": {"restart": {"maxDeath": 3}}}"#)?.key, "sensor.restart.maxDeath")
        XCTAssertEqual(error(local: nil, managed: #"{"edr": {"tag": []}}"#)?.file, "/t/etc/opt/mdatp/managed/mdatp_managed.json")
    }

    func testBadValuesAreNamedWithTheRule() {
        let e = error(local: #"{"antivirusEngine": {"enforcementLevel": "loud"}}"#)
        XCTAssertEqual(e?.key, "antivirusEngine.enforcementLevel")
        XCTAssertTrue(e?.reason.contains("real_time") ?? false)
        XCTAssertEqual(error(local: #"{"sensor": {"consumerRingBytes": 100000}}"#)?.key, "sensor.consumerRingBytes")
        XCTAssertEqual(error(local: #"{"antivirusEngine": {"maximumOnDemandScanThreads": 65}}"#)?.key, "antivirusEngine.maximumOnDemandScanThreads")
        XCTAssertEqual(error(local: #"{"antivirusEngine": {"scanArchives": "yes"}}"#)?.key, "antivirusEngine.scanArchives")
        XCTAssertNotNil(error(local: "{not json"))
        XCTAssertNotNil(error(local: "[]"))
        XCTAssertEqual(error(local: #"{"sensor": {"hookFamily": "kprobe"}}"#)?.key, "sensor.hookFamily")
    }

    func testDefinitionMirrorsAreDirectoriesOrHTTPURLs() throws {
        XCTAssertEqual(try load(local: #"{"antivirusEngine": {"offlineDefinitionUpdateUrl": "https://mirror.example/defs/"}}"#, managed: nil)
                        .offlineDefinitionUpdateUrl, "https://mirror.example/defs/")
        XCTAssertEqual(try load(local: #"{"antivirusEngine": {"offlineDefinitionUpdateUrl": "/srv/defs"}}"#, managed: nil)
                        .offlineDefinitionUpdateUrl, "/srv/defs")
        for bad in ["ftp://mirror/defs", "relative/dir", "https://mirror/a b"] {
            XCTAssertEqual(error(local: #"{"antivirusEngine": {"offlineDefinitionUpdateUrl": "\#(bad)"}}"#)?.key,
                           "antivirusEngine.offlineDefinitionUpdateUrl", bad)
        }
        XCTAssertEqual(try load(local: #"{"sensor": {"hookFamily": "tracepoint"}}"#, managed: nil).sensor.hookFamily, "tracepoint")
    }

    func testExclusionsMergeOrAdminOnly() throws {
        let local = #"{"exclusionSettings": {"exclusions": [{"$type": "excludedPath", "path": "/data/", "isDirectory": true, "scopes": ["global"]}]}}"#
        let managed = #"{"exclusionSettings": {"exclusions": [{"$type": "excludedFileName", "name": "/usr/bin/backup", "scopes": ["global", "epp"]}]}}"#
        var c = try load(local: local, managed: managed)
        XCTAssertEqual(c.exclusions.count, 2)
        XCTAssertEqual(c.globalExclusions.count, 2)
        let adminOnly = #"{"exclusionSettings": {"mergePolicy": "admin_only", "exclusions": [{"$type": "excludedFileName", "name": "/usr/bin/backup", "scopes": ["global"]}]}}"#
        c = try load(local: local, managed: adminOnly)
        XCTAssertEqual(c.exclusions, [.process("/usr/bin/backup", scopes: [.global])])
    }

    func testGlobalExclusionsAreRestrictedAsDefendersAre() {
        XCTAssertEqual(error(local: #"{"exclusionSettings": {"exclusions": [{"$type": "excludedPath", "path": "/data/*", "scopes": ["global"]}]}}"#)?.key,
                       "exclusionSettings.exclusions[0].path")
        XCTAssertEqual(error(local: #"{"exclusionSettings": {"exclusions": [{"$type": "excludedFileName", "name": "cat", "scopes": ["global"]}]}}"#)?.key,
                       "exclusionSettings.exclusions[0].name")
        XCTAssertEqual(error(local: #"{"exclusionSettings": {"exclusions": [{"$type": "excludedFileExtension", "extension": ".log", "scopes": ["global"]}]}}"#)?.key,
                       "exclusionSettings.exclusions[0].scopes")
        XCTAssertEqual(error(local: #"{"exclusionSettings": {"exclusions": [{"$type": "excludedPath", "path": "/x", "bogus": 1}]}}"#)?.key,
                       "exclusionSettings.exclusions[0].bogus")
    }

    func testSensorSettings() throws {
        let c = try load(local: #"{"sensor": {"consumerRingBytes": 1048576, "restart": {"maxDeaths": 3, "windowSeconds": 20}, "allowSandboxSelftest": true}}"#, managed: nil)
        XCTAssertEqual(c.sensor.consumerRingBytes, 1 << 20)
        XCTAssertEqual(c.sensor.restart.maxDeaths, 3)
        XCTAssertEqual(c.sensor.restart.windowSeconds, 20)
        XCTAssertTrue(c.sensor.allowSandboxSelftest)
    }
}

final class JSONTests: XCTestCase {
    func testRoundTrip() throws {
        let text = #"{"a":[1,2.5,true,null,"x\"y\\n\u00e9\ud83d\ude00"],"b":{}}"#
        let v = try JSON.parse(text)
        XCTAssertEqual(v["a"]?.array?.count, 5)
        XCTAssertEqual(v["a"]?.array?[4].string, "x\"y\\n\u{e9}\u{1F600}")
        XCTAssertEqual(try JSON.parse(v.serialized()), v)
        XCTAssertEqual(try JSON.parse(v.serialized(pretty: true)), v)
    }

    func testHostileInputIsBounded() {
        XCTAssertThrowsError(try JSON.parse(String(repeating: "[", count: 100) + String(repeating: "]", count: 100)))
        var l = JSONLimits()
        l.maxBytes = 10
        XCTAssertThrowsError(try JSON.parse("[1,2,3,4,5,6,7]", limits: l))
        l = JSONLimits()
        l.maxStringBytes = 4
        XCTAssertThrowsError(try JSON.parse(#""abcdefgh""#, limits: l))
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "\"\u{01}\"", "1e999", "tru", "[1] x", #""\ud800""#] {
            XCTAssertThrowsError(try JSON.parse(bad), bad)
        }
    }

    func testObjectWriterMatchesTheTree() throws {
        var w = JSONObjectWriter()
        w.add("a", 0)
        w.add("b", -1234567890123)
        w.add("c", UInt64.max)
        w.add("d", "x\"y")
        w.add("e", true)
        w.add("f", [1, -2, 3])
        let v = try JSON.parse(w.finish())
        XCTAssertEqual(v["a"]?.int, 0)
        XCTAssertEqual(v["b"]?.int, -1234567890123)
        XCTAssertEqual(v["c"]?.number, Double(UInt64.max))
        XCTAssertEqual(v["d"]?.string, "x\"y")
        XCTAssertEqual(v["e"]?.bool, true)
        XCTAssertEqual(v["f"]?.array?.compactMap(\.int), [1, -2, 3])
        var s = ""
        JSON.appendInteger(Int64.min, to: &s)
        XCTAssertEqual(s, "-9223372036854775808")
    }

    func testControlCharactersAreEscapedOnOutput() {
        XCTAssertEqual(JSON.string("a\u{1b}b\n").serialized(), #""a\u001bb\n""#)
    }
}

final class ScheduledScanConfigTests: XCTestCase {
    func parse(_ text: String) throws -> SuiteConfig {
        try ConfigLoader.merge(local: try ConfigLoader.parseFile("mdatp.json", Array(text.utf8)), managed: try ConfigLoader.parseFile("managed", nil))
    }

    func testDefendersScheduledScanKeysLoad() throws {
        let c = try parse(#"{"features": {"scheduledScan": "enabled"}, "scheduledScan": {"ignoreExclusions": true, "lowPriorityScheduledScan": false, "dailyConfiguration": {"timeOfDay": 120, "interval": "6"}, "weeklyConfiguration": {"dayOfWeek": 2, "timeOfDay": 90, "scanType": "full"}}}"#)
        XCTAssertEqual(c.scheduledScan, {
            var s = ScheduledScanConfig()
            s.enabled = true; s.ignoreExclusions = true; s.lowPriority = false
            s.dailyTimeOfDay = 120; s.dailyInterval = 6; s.weeklyDayOfWeek = 2; s.weeklyTimeOfDay = 90; s.weeklyScanType = "full"
            return s
        }())
    }

    func testBadScheduleValuesAreRefusedByKey() {
        for (text, key) in [
            (#"{"scheduledScan": {"dailyConfiguration": {"interval": "5"}}}"#, "scheduledScan.dailyConfiguration.interval"),
            (#"{"scheduledScan": {"weeklyConfiguration": {"dayOfWeek": 9}}}"#, "scheduledScan.weeklyConfiguration.dayOfWeek"),
            (#"{"scheduledScan": {"weeklyConfiguration": {"timeOfDay": 1440}}}"#, "scheduledScan.weeklyConfiguration.timeOfDay"),
            (#"{"scheduledScan": {"weeklyConfiguration": {"scanType": "deep"}}}"#, "scheduledScan.weeklyConfiguration.scanType"),
            (#"{"scheduledScan": {"monthly": {}}}"#, "scheduledScan.monthly"),
            (#"{"features": {"scheduledScan": "yes"}}"#, "features.scheduledScan"),
        ] {
            XCTAssertThrowsError(try parse(text), text) { e in XCTAssertEqual((e as? ConfigError)?.key, key, "\(e)") }
        }
    }
}

