// Acceptance of the sensor core on the real kernel: the suite runs from a
// temporary prefix; real syscalls are made; their events are looked up in the
// EDR store through the CLI, field by field.
import Foundation
import Glibc
import MdatpConfig
import MdatpJSON
import MdatpRoom
import MdatpSystem
import XCTest

final class SuiteTests: XCTestCase {
    static var shared: Suite?
    static let config = """
    {"antivirusEngine": {"enforcementLevel": "real_time"},
     "sensor": {"statusIntervalSeconds": 2, "heartbeatSeconds": 0.5, "allowSandboxSelftest": true,
                "restart": {"floorSeconds": 1, "maxDeaths": 10, "windowSeconds": 60}}}
    """

    func suite() throws -> Suite {
        try requireRoot()
        if let s = SuiteTests.shared {
            try s.waitUntil("every room running", timeout: 60) { st in
                Rooms.all.allSatisfy { s.room($0.name, in: st)?["state"]?.string == "running" }
            }
            return s
        }
        let s = try Suite(name: "core", config: SuiteTests.config)
        try s.start(waitFor: Rooms.all.map(\.name))
        SuiteTests.shared = s
        return s
    }

    override class func tearDown() {
        shared?.stop()
        shared = nil
        super.tearDown()
    }

    // Acceptance 1: health from real state.
    func testHealthReportsHealthyWithTheEBPFSubsystem() throws {
        let s = try suite()
        let r = try s.cli(["health", "--output", "json"])
        XCTAssertEqual(r.code, 0, r.err)
        let h = try JSON.parse(r.out)
        XCTAssertEqual(h["healthy"]?.bool, true, r.out)
        XCTAssertEqual(h["health_issues"]?.array?.count, 0, r.out)
        XCTAssertEqual(h["supplementary_events_subsystem"]?.string, "ebpf")
        XCTAssertEqual(h["sensor_hook_family"]?.string, "tracepoint")
        XCTAssertEqual(try s.cli(["health", "--field", "healthy"]).out, "true\n")
        XCTAssertEqual(try s.cli(["health", "--field", "supplementary_events_subsystem"]).out, "\"ebpf\"\n")
        XCTAssertEqual(try s.cli(["health", "--field", "no_such_field"]).code, 64)
        XCTAssertEqual(h["real_time_protection_enabled"]?.bool, true)
        XCTAssertEqual(h["real_time_protection_available"]?.bool, true)
        // The fanotify exec gate is opt-in (ExecGateTests turns it on): here real time is eBPF alone.
        XCTAssertEqual(h["real_time_protection_subsystem"]?.string, "ebpf")
        XCTAssertTrue(h["exec_gate"]?.string?.hasPrefix("off") ?? false, h.serialized())
    }

    // Antivirus (issue 3, first part): real-time detection of what an ordinary user writes.
    func testEICARWrittenByAnOrdinaryUserIsDetectedInRealTime() throws {
        let s = try suite()
        let dir = try makeTempDir("mdatp-rtp")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        chmod(dir, 0o777)
        let path = dir + "/eicar-\(UUID().uuidString.prefix(8)).txt"
        let nobody = Sys.lookupUser("nobody")!
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        p.arguments = ["--reuid=\(nobody.uid)", "--regid=\(nobody.gid)", "--clear-groups", "/bin/sh", "-c",
                       #"printf '%s' 'X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*' > "$0"; chmod 600 "$0""#, path]
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        // The file is 0600 nobody's: the scanner (mdatp) reads it only through the watchdog's open.
        let t = try s.waitForThreat(path: path)
        XCTAssertEqual(t["name"]?.string, "Virus.Test.EICAR-Test-File")
        XCTAssertEqual(t["type"]?.string, "virus")
        XCTAssertEqual(t["source"]?.string, "real_time")
        XCTAssertEqual(t["sha256"]?.string, "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f")
        // real_time enforcement remediates: the file went to quarantine.
        XCTAssertEqual(t["action"]?.string, "quarantined")
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
        let q = try JSON.parse(try s.cli(["threat", "quarantine", "list", "--output", "json"]).out)
        let entry = try XCTUnwrap(q["quarantined"]?.array?.first { $0["original_path"]?.string == path })
        XCTAssertEqual(entry["id"]?.string, t["quarantine_id"]?.string)
        XCTAssertEqual(entry["owner_uid"]?.int, Int(nobody.uid))
        // Restore puts it back as it was (owner, mode); remove after the test.
        let id = try XCTUnwrap(entry["id"]?.string)
        XCTAssertEqual(try s.cli(["threat", "quarantine", "restore", "--id", id]).code, 0)
        let st = try Sys.lstat(path)
        XCTAssertEqual(st.st_uid, nobody.uid)
        XCTAssertEqual(st.st_mode & 0o777, 0o600)
    }

    func testYARAFindsTheTestStringEmbeddedInAScript() throws {
        let s = try suite()
        let dir = try makeTempDir("mdatp-yara")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/installer.sh"
        try ("#!/bin/sh\n# payload below\necho '" + #"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"# + "'\n")
            .write(toFile: path, atomically: false, encoding: .utf8)
        let found = try s.waitForThreat(path: path)
        XCTAssertTrue(found["name"]?.string?.contains("EICAR") ?? false, found.serialized()) // body signature or YARA rule
        XCTAssertEqual(found["action"]?.string, "quarantined")
        // The write is charged to this test process in the real-time statistics.
        let stats = try JSON.parse(try s.cli(["diagnostic", "real-time-protection-statistics", "--output", "json"]).out)
        let mine = stats["counters"]?.array?.first { $0["id"]?.int == Int(getpid()) }
        XCTAssertGreaterThanOrEqual(mine?["totalFilesScanned"]?.int ?? 0, 1, stats.serialized())
        XCTAssertGreaterThan(mine?["scanTimeNs"]?.int ?? 0, 0)
        XCTAssertTrue(try s.cli(["diagnostic", "real-time-protection-statistics", "--sort", "--top", "1"]).out.contains("Total files scanned:"))
    }

    func testCustomScanOfTheClamAVTestFiles() throws {
        let s = try suite()
        let dir = "/usr/share/clamav-testfiles"
        guard FileManager.default.fileExists(atPath: dir) else {
            if ProcessInfo.processInfo.environment["CI"] == "true" { return XCTFail("clamav-testfiles missing: make deps installs it") }
            throw XCTSkip("clamav-testfiles is not installed (make deps)")
        }
        // on_demand enforcement: scans report without remediating (the package's files must stay).
        try restartScanner(s, SuiteTests.config.replacingOccurrences(of: "real_time", with: "on_demand"))
        defer { try? restartScanner(s, SuiteTests.config) }
        let r = try s.cli(["scan", "custom", "--path", dir, "--output", "json"])
        XCTAssertEqual(r.code, 0, r.err)
        let summary = try JSON.parse(r.out)
        XCTAssertEqual(summary["scanned"]?.int, 44)
        let found = summary["threats"]?.array ?? []
        let clam = found.first { $0["path"]?.string == dir + "/clam.exe" }
        XCTAssertEqual(clam?["name"]?.string, "ClamAV-Test-File", r.out)
        XCTAssertEqual(clam?["action"]?.string, "audited")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/clam.exe"))
        // Hash signatures reach the bare program and, through libarchive, its copies in
        // archives; body and logical signatures the copies whose bytes hold it unpacked;
        // decoders and carving the mail, web, RTF, PDF, Office, TNEF, SIS and SZDD copies.
        // Packers, installers, ARJ, CHM and deflate64/implode zips remain (docs/perf.md).
        let paths = Set(found.compactMap { $0["path"]?.string })
        for name in ["clam.zip", "clam.7z", "clam.tar.gz", "clam.cab", "clam.exe.bz2", "clam.newc.cpio",
                     "clam-fsg.exe", "clam_IScab_ext.exe",
                     "clam.mail", "clam.exe.mbox.base64", "clam.exe.mbox.uu", "clam.exe.html", "clam.exe.binhex", "clam.exe.szdd",
                     "clam.exe.rtf", "clam.pdf", "clam.ppt", "clam.ole.doc", "clam.tnef", "clam.sis"] {
            XCTAssertTrue(paths.contains(dir + "/" + name), "\(name) not detected")
        }
        XCTAssertGreaterThanOrEqual(found.count, 26)
        XCTAssertEqual(try s.cli(["scan", "custom", "--path", "/proc/self"]).code, 0)
        XCTAssertEqual(try s.cli(["scan", "custom", "--path", "relative"]).code, 64)
        // The scan history keeps it.
        let list = try JSON.parse(try s.cli(["scan", "list", "--limit", "20", "--output", "json"]).out)
        XCTAssertTrue(list["scans"]?.array?.contains { $0["path"]?.string == dir && $0["scanned"]?.int == 44 && $0["state"]?.string == "completed" } ?? false, list.serialized())
    }

    /// Restarts the scanner with `config` (SIGHUP) and waits for the new one.
    func restartScanner(_ s: Suite, _ config: String) throws {
        let old = s.room("scanner", in: s.status())?["pid"]?.int ?? 0
        try s.writeConfig(config)
        kill(s.watchdogPid, SIGHUP)
        try s.waitUntil("scanner restarted", timeout: 60) { st in
            let r = s.room("scanner", in: st)
            return r?["state"]?.string == "running" && (r?["pid"]?.int ?? 0) != old
        }
    }

    func testTheScanCacheSkipsUnchangedFilesSeesChangesAndSurvivesARestart() throws {
        let s = try suite()
        // on_demand: writes still invalidate the cache, but nothing rescans them behind the test's back.
        try restartScanner(s, SuiteTests.config.replacingOccurrences(of: "real_time", with: "on_demand"))
        defer { try? restartScanner(s, SuiteTests.config) }
        let dir = try makeTempDir("mdatp-cache")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for i in 0..<30 { try "clean file \(i)\n".write(toFile: dir + "/f\(i).txt", atomically: false, encoding: .utf8) }
        func scan() throws -> JSON {
            let r = try s.cli(["scan", "custom", "--path", dir, "--output", "json"])
            XCTAssertEqual(r.code, 0, r.err)
            return try JSON.parse(r.out)
        }
        var r = try scan()
        XCTAssertEqual(r["scanned"]?.int, 30)
        XCTAssertEqual(r["cache_hits"]?.int, 0, r.serialized())
        // Unchanged: every file answered from the cache, none opened or read again.
        r = try scan()
        XCTAssertEqual(r["scanned"]?.int, 30)
        XCTAssertEqual(r["cache_hits"]?.int, 30, r.serialized())
        // A changed file is read again (its write event and its new mtime both say so) …
        let h = FileHandle(forWritingAtPath: dir + "/f7.txt")!
        h.seekToEndOfFile()
        h.write("more\n".data(using: .utf8)!)
        h.closeFile()
        r = try scan()
        XCTAssertEqual(r["cache_hits"]?.int, 29, r.serialized())
        // … and a threat written into a scanned file is found.
        let eicar = #"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"#
        try eicar.write(toFile: dir + "/f8.txt", atomically: false, encoding: .utf8)
        r = try scan()
        XCTAssertEqual(r["threats"]?.array?.first?["path"]?.string, dir + "/f8.txt", r.serialized())
        XCTAssertEqual(r["cache_hits"]?.int, 29, r.serialized())
        // Clean verdicts are persisted: a scanner killed and restarted starts warm.
        let old = s.room("scanner", in: s.status())?["pid"]?.int ?? 0
        XCTAssertEqual(kill(pid_t(old), SIGKILL), 0)
        try s.waitUntil("scanner restarted", timeout: 60) { st in
            let room = s.room("scanner", in: st)
            return room?["state"]?.string == "running" && (room?["pid"]?.int ?? 0) != old
        }
        r = try scan()
        XCTAssertEqual(r["scanned"]?.int, 30)
        XCTAssertEqual(r["cache_hits"]?.int, 29, "every clean file from the persisted cache, the threat read again: \(r.serialized())")
        // The compiled pattern databases are kept too, given to the room's user: the restart read them.
        let hsCache = s.prefix + "/var/opt/mdatp/scanner/hs-cache"
        let cached = Sys.listDirectory(hsCache).filter { $0.hasSuffix(".hsdb") }
        XCTAssertFalse(cached.isEmpty, "no compiled database kept in \(hsCache)")
        for name in cached { XCTAssertEqual(try Sys.stat(hsCache + "/" + name).st_uid, Sys.lookupUser("mdatp")?.uid) }
        let log = (try? String(contentsOfFile: s.log, encoding: .utf8)) ?? ""
        let warmStarts = log.split(separator: "\n").filter { line in
            guard let r = line.range(of: "compiled pattern databases: ") else { return false }
            let rest = line[r.upperBound...]
            return rest.hasSuffix(" from the cache, 0 compiled") && !rest.hasPrefix("0 ")
        }
        XCTAssertFalse(warmStarts.isEmpty, "no scanner start took its databases from the cache:\n" + s.tailOfLog())
        XCTAssertEqual(r["threats"]?.array?.count, 1)
    }

    func testAClamAVDatabaseCanBeImportedRefusedAndRemoved() throws {
        let s = try suite()
        let dir = try makeTempDir("mdatp-import")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let marker = "IMPORTED-BODY-\(getpid())"
        let hex = marker.utf8.map { String(format: "%02x", $0) }.joined()
        try JSONSerialization.data(withJSONObject: [
            "daily.ndb": "Imported.Body-1:0:*:\(hex)\n", "daily.info": "DSIG:x\n", "daily.cdb": "skipped\n",
        ]).write(to: URL(fileURLWithPath: dir + "/members.json"))
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().path + "/Fixtures/make-cvd.py"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = [script, dir + "/daily.cvd", dir + "/members.json"]
        try p.run()
        p.waitUntilExit()
        let samples = try makeTempDir("mdatp-import-samples")
        defer { try? FileManager.default.removeItem(atPath: samples) }

        var r = try s.cli(["definitions", "import", "--path", dir + "/daily.cvd", "--output", "json"])
        XCTAssertEqual(r.code, 0, r.err + s.tailOfLog())
        XCTAssertEqual(try JSON.parse(r.out)["source"]?.string, "daily.cvd")
        try "x \(marker) y\n".write(toFile: samples + "/one.txt", atomically: false, encoding: .utf8)
        XCTAssertEqual(try s.waitForThreat(path: samples + "/one.txt")["name"]?.string, "Imported.Body-1")

        // A malformed source is refused with its file and line; the set in use stays.
        try "Broken.Sig:0:*:41zz42\n".write(toFile: dir + "/broken.ndb", atomically: false, encoding: .utf8)
        r = try s.cli(["definitions", "import", "--path", dir + "/broken.ndb"])
        XCTAssertNotEqual(r.code, 0)
        XCTAssertTrue(r.err.contains("broken.ndb") && r.err.contains("unexpected"), r.err)
        let list = try JSON.parse(try s.cli(["definitions", "imports", "--output", "json"]).out)
        XCTAssertEqual(list["sources"]?.array?.compactMap { $0["name"]?.string }, ["daily.cvd"], list.serialized())

        // A restarted scanner loads it again.
        let old = s.room("scanner", in: s.status())?["pid"]?.int ?? 0
        XCTAssertEqual(kill(pid_t(old), SIGKILL), 0)
        try s.waitUntil("scanner restarted", timeout: 60) { st in
            let room = s.room("scanner", in: st)
            return room?["state"]?.string == "running" && (room?["pid"]?.int ?? 0) != old
        }
        try "\(marker)\n".write(toFile: samples + "/two.txt", atomically: false, encoding: .utf8)
        XCTAssertEqual(try s.waitForThreat(path: samples + "/two.txt")["name"]?.string, "Imported.Body-1")

        // Removed: the scanner restarts without it.
        let before = s.room("scanner", in: s.status())?["pid"]?.int ?? 0
        XCTAssertEqual(try s.cli(["definitions", "remove-import", "--name", "daily.cvd"]).code, 0)
        try s.waitUntil("scanner restarted", timeout: 60) { st in
            let room = s.room("scanner", in: st)
            return room?["state"]?.string == "running" && (room?["pid"]?.int ?? 0) != before
        }
        try "\(marker)\n".write(toFile: samples + "/three.txt", atomically: false, encoding: .utf8)
        let scan = try JSON.parse(try s.cli(["scan", "custom", "--path", samples, "--output", "json"]).out)
        XCTAssertEqual(scan["threats"]?.array?.count, 0, scan.serialized())
        XCTAssertNotEqual(try s.cli(["definitions", "remove-import", "--name", "daily.cvd"]).code, 0, "already gone")
    }

    func testAScheduledScanStartsAtItsTime() throws {
        let s = try suite()
        // Every day at the next whole minute (local time), low priority.
        let now = Date()
        let parts = Calendar.current.dateComponents([.hour, .minute, .second], from: now)
        let minute = ((parts.hour ?? 0) * 60 + (parts.minute ?? 0) + ((parts.second ?? 0) < 50 ? 1 : 2)) % 1440
        let config = SuiteTests.config.replacingOccurrences(of: #""enforcementLevel": "real_time"}"#, with:
            #""enforcementLevel": "real_time"}, "features": {"scheduledScan": "enabled"}, "scheduledScan": {"lowPriorityScheduledScan": true, "weeklyConfiguration": {"dayOfWeek": 0, "timeOfDay": \#(minute), "scanType": "quick"}}"#)
        XCTAssertNotEqual(config, SuiteTests.config)
        try s.writeConfig(config)
        kill(s.watchdogPid, SIGHUP)
        defer {
            try? s.writeConfig(SuiteTests.config)
            kill(s.watchdogPid, SIGHUP)
        }
        // It runs at its minute; it is cancelled as soon as it is seen (a quick scan is long here).
        let deadline = Date().addingTimeInterval(150)
        var seen = false
        while Date() < deadline && !seen {
            seen = (try? JSON.parse(try s.cli(["scan", "cancel", "--output", "json"]).out))?["cancelled"]?.bool == true
            if !seen { usleep(300_000) }
        }
        XCTAssertTrue(seen, "no scheduled scan started: " + s.tailOfLog())
        try s.waitUntil("the scheduled scan is in the history", timeout: 30) { _ in
            let list = try? JSON.parse(try s.cli(["scan", "list", "--output", "json"]).out)
            return list?["scans"]?.array?.first?["kind"]?.string == "scheduled_quick"
        }
    }

    func testQuickAndFullScansRunAndCancel() throws {
        let s = try suite()
        // Both walk far more than a test may wait for on a developer's machine: each is
        // started, cancelled while it runs, and must end "cancelled" with what it did.
        for kind in ["quick", "full"] {
            let (scan, out) = try s.startCLI(["scan", kind, "--output", "json"])
            usleep(700_000)
            let cancel = try s.cli(["scan", "cancel"])
            XCTAssertEqual(cancel.code, 0, cancel.err + s.tailOfLog())
            let data = out.fileHandleForReading.readDataToEndOfFile()
            scan.waitUntilExit()
            let r = try JSON.parse([UInt8](data))
            XCTAssertEqual(r["kind"]?.string, kind)
            XCTAssertEqual(r["state"]?.string, "cancelled")
            XCTAssertGreaterThan((r["scanned"]?.int ?? 0) + (r["skipped"]?.int ?? 0), 0, "\(kind) had started")
        }
        XCTAssertEqual(try JSON.parse(try s.cli(["scan", "cancel", "--output", "json"]).out)["cancelled"]?.bool, false, "nothing left running")
        // While a scan runs its client gets a progress line a second, then the summary.
        let fd = try Sys.connectUnix(SuitePaths(prefix: s.prefix).socket)
        defer { Sys.close(fd) }
        try Sys.writeAll(fd, Array(#"{"verb":"scan","kind":"full"}"#.utf8) + [10])
        Sys.shutdownWrite(fd)
        Sys.setTimeouts(fd, seconds: 20)
        var got = [UInt8](), chunk = [UInt8](repeating: 0, count: 4096)
        while !got.contains(0x0a) {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { break }
            got += chunk[0..<n]
        }
        let first = try JSON.parse(Array(got.prefix { $0 != 0x0a }))
        XCTAssertNotNil(first["progress"]?["scanned"]?.int, first.serialized())
        XCTAssertTrue(first["progress"]?["path"]?.string?.hasPrefix("/") ?? false, first.serialized())
        XCTAssertEqual(try s.cli(["scan", "cancel"]).code, 0)
        // The cancelled scan reaches the history when its threads have stopped, a moment
        // after the cancel returns: newest first, all three are there.
        try s.waitUntil("the three scans are in the history", timeout: 30) { _ in
            let list = try? JSON.parse(try s.cli(["scan", "list", "--output", "json"]).out)
            return list?["scans"]?.array?.prefix(3).compactMap { $0["kind"]?.string } == ["full", "full", "quick"]
        }
    }

    // Acceptance 2: each family of event, with its fields.
    func testProcessEventsCarryExeArgvCwdParentAndUser() throws {
        let s = try suite()
        let marker = "mdatp-marker-\(UUID().uuidString)"
        let cwd = try makeTempDir("mdatp-cwd")
        defer { try? FileManager.default.removeItem(atPath: cwd) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/echo")
        p.arguments = [marker, "second arg", "--flag=1"]
        p.currentDirectoryURL = URL(fileURLWithPath: cwd)
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        let child = p.processIdentifier

        let exec = try s.waitForEvent(pid: child, type: "exec")
        XCTAssertEqual(exec["exe"]?.string, realPath("/bin/echo"))
        XCTAssertEqual(exec["argv"]?.array?.compactMap(\.string), ["/bin/echo", marker, "second arg", "--flag=1"])
        XCTAssertEqual(exec["cwd"]?.string, cwd)
        XCTAssertEqual(exec["ppid"]?.int, Int(getpid()))
        XCTAssertEqual(exec["uid"]?.int, Int(getuid()))
        XCTAssertEqual(exec["euid"]?.int, Int(geteuid()))
        XCTAssertGreaterThan(exec["details"]?["exe_inode"]?.int ?? 0, 0)
        XCTAssertEqual(exec["comm"]?.string, "echo")

        let fork = try s.waitForEvent(pid: getpid(), type: "fork") { $0["details"]?["child_tgid"]?.int == Int(child) }
        XCTAssertEqual(fork["tgid"]?.int, Int(getpid()))
        let exit = try s.waitForEvent(pid: child, type: "exit")
        XCTAssertEqual(exit["details"]?["exit_code"]?.int, 0)
        XCTAssertEqual(exit["exe"]?.string, realPath("/bin/echo"), "enriched from the process table")
    }

    func testFileEventsCarryFullPaths() throws {
        let s = try suite()
        let dir = try makeTempDir("mdatp-files")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = dir + "/created-\(UUID().uuidString).txt"
        let b = dir + "/renamed.txt"
        let fd = open(a, O_CREAT | O_WRONLY | O_EXCL, 0o644)
        XCTAssertGreaterThanOrEqual(fd, 0)
        _ = "payload".withCString { write(fd, $0, 7) }
        close(fd)
        XCTAssertEqual(rename(a, b), 0)
        XCTAssertEqual(chmod(b, 0o4755), 0)
        XCTAssertEqual(unlink(b), 0)
        let me = getpid()

        let create = try s.waitForEvent(pid: me, type: "file_create") { $0["path"]?.string == a }
        XCTAssertEqual((create["mode"]?.int ?? 0) & 0o170000, 0o100000, "a regular file")
        _ = try s.waitForEvent(pid: me, type: "file_close_write") { $0["path"]?.string == a }
        let ren = try s.waitForEvent(pid: me, type: "file_rename") { $0["path"]?.string == a }
        XCTAssertEqual(ren["path2"]?.string, b)
        let ch = try s.waitForEvent(pid: me, type: "file_chmod") { $0["path"]?.string == b }
        XCTAssertEqual((ch["mode"]?.int ?? 0) & 0o7777, 0o4755, "setuid bit reported")
        _ = try s.waitForEvent(pid: me, type: "file_unlink") { $0["path"]?.string == b }
        XCTAssertEqual(create["uid"]?.int, Int(getuid()))
    }

    func testRelativePathsResolveAgainstTheWorkingDirectory() throws {
        let s = try suite()
        let dir = try makeTempDir("mdatp-rel")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let old = FileManager.default.currentDirectoryPath
        XCTAssertEqual(chdir(dir), 0)
        defer { _ = chdir(old) }
        let fd = open("rel.txt", O_CREAT | O_WRONLY, 0o600)
        close(fd)
        XCTAssertEqual(unlink("rel.txt"), 0)
        _ = try s.waitForEvent(pid: getpid(), type: "file_unlink") { $0["path"]?.string == dir + "/rel.txt" }
    }

    func testNetworkEventsCarryTheFiveTuple() throws {
        let s = try suite()
        let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(server) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        XCTAssertEqual(withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(server, $0, len) } }, 0)
        XCTAssertEqual(listen(server, 4), 0)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(server, $0, &len) } }
        let port = Int(UInt16(bigEndian: addr.sin_port))

        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(client) }
        XCTAssertEqual(withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, len) } }, 0)
        var caddr = sockaddr_in()
        var clen = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &caddr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(client, $0, &clen) } }
        let clientPort = Int(UInt16(bigEndian: caddr.sin_port))
        let accepted = accept(server, nil, nil)
        XCTAssertGreaterThanOrEqual(accepted, 0)
        close(accepted)
        let me = getpid()

        let listenEv = try s.waitForEvent(pid: me, type: "net_listen") { $0["local_port"]?.int == port }
        XCTAssertEqual(listenEv["local_address"]?.string, "127.0.0.1")
        XCTAssertEqual(listenEv["protocol"]?.string, "tcp")
        _ = try s.waitForEvent(pid: me, type: "net_bind") { $0["local_port"]?.int == port }
        let conn = try s.waitForEvent(pid: me, type: "net_connect") { $0["remote_port"]?.int == port }
        XCTAssertEqual(conn["remote_address"]?.string, "127.0.0.1")
        XCTAssertEqual(conn["local_address"]?.string, "127.0.0.1")
        XCTAssertEqual(conn["local_port"]?.int, clientPort)
        XCTAssertEqual(conn["protocol"]?.string, "tcp")
        let acc = try s.waitForEvent(pid: me, type: "net_accept") { $0["local_port"]?.int == port }
        XCTAssertEqual(acc["remote_port"]?.int, clientPort)
        XCTAssertEqual(acc["remote_address"]?.string, "127.0.0.1")
    }

    func testUDPOverIPv6IsReported() throws {
        let s = try suite()
        let fd = socket(AF_INET6, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in6()
        addr.sin6_family = sa_family_t(AF_INET6)
        addr.sin6_port = UInt16(9).bigEndian // discard; UDP connect sends nothing
        addr.sin6_addr = in6addr_loopback
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        XCTAssertEqual(rc, 0)
        let ev = try s.waitForEvent(pid: getpid(), type: "net_connect") { $0["remote_port"]?.int == 9 && $0["protocol"]?.string == "udp" }
        XCTAssertEqual(ev["remote_address"]?.string, "::1")
        XCTAssertEqual(ev["details"]?["family"]?.string, "ipv6")
    }

    func testSensitiveOperationsAreReported() throws {
        let s = try suite()
        let name = "mdatp-it-\(UUID().uuidString.prefix(8))"
        let fd = try Sys.memfdCreate(name)
        Sys.close(fd)
        let ev = try s.waitForEvent(pid: getpid(), type: "memfd_create") { $0["path"]?.string == name }
        XCTAssertEqual(ev["uid"]?.int, Int(getuid()))

        // ptrace of its own child: a child that asks to be traced (PTRACE_TRACEME) then execs.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = ["-c", "import ctypes; print(ctypes.CDLL(None).ptrace(0, 0, 0, 0))"]
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        let tr = try s.waitForEvent(pid: p.processIdentifier, type: "ptrace")
        XCTAssertEqual(tr["details"]?["target_pid"]?.int, Int(getpid()))
    }

    func testSignalsToTheSuiteAreReportedButItsOwnFilesAreNot() throws {
        let s = try suite()
        // The suite's own store writes must not show up (no feedback loop).
        let edrPid = s.room("edr", in: s.status())?["pid"]?.int ?? 0
        XCTAssertGreaterThan(edrPid, 0)
        kill(pid_t(edrPid), 0) // signal 0 is only a probe: not reported
        kill(pid_t(edrPid), SIGCONT) // harmless, but aimed at the suite: reported
        let ev = try s.waitForEvent(pid: getpid(), type: "signal_suite") { $0["details"]?["target_pid"]?.int == edrPid }
        XCTAssertEqual(ev["details"]?["args"]?.array?.first?.int, Int(SIGCONT))
        XCTAssertEqual(try s.events(pid: Int32(edrPid), types: ["file"]), [], "the suite's own file activity is filtered in the kernel")
        let st = s.status()
        XCTAssertGreaterThan(st?["kernel"]?["filtered_suite"]?.int ?? 0, 0)
    }

    func testGlobalExclusionsAreAppliedInTheKernel() throws {
        let s = try suite()
        let dir = try makeTempDir("mdatp-excl")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let quiet = dir + "/quiet"
        try FileManager.default.createDirectory(atPath: quiet, withIntermediateDirectories: true)
        // A process excluded by its executable: a copy of touch.
        let tool = dir + "/excluded-touch"
        try FileManager.default.copyItem(atPath: realPath("/usr/bin/touch"), toPath: tool)
        let config = """
        {"antivirusEngine": {"enforcementLevel": "real_time"},
         "sensor": {"statusIntervalSeconds": 2, "heartbeatSeconds": 0.5, "allowSandboxSelftest": true,
                    "restart": {"floorSeconds": 1, "maxDeaths": 10, "windowSeconds": 60}},
         "exclusionSettings": {"exclusions": [
            {"$type": "excludedPath", "isDirectory": true, "path": "\(quiet)", "scopes": ["global"]},
            {"$type": "excludedFileName", "name": "\(tool)", "scopes": ["global"]}]}}
        """
        // New exclusions are applied by a new collector.
        func reload(_ text: String, _ what: String) throws {
            let oldCollector = s.room("collector", in: s.status())?["pid"]?.int ?? 0
            try s.writeConfig(text)
            kill(s.watchdogPid, SIGHUP)
            try s.waitUntil(what, timeout: 90) { st in
                let c = s.room("collector", in: st)
                return c?["state"]?.string == "running" && (c?["pid"]?.int ?? 0) != oldCollector && st["watchdog"]?["config_error"] == .null
            }
        }
        try reload(config, "collector restarted with the exclusions")
        defer { try? reload(SuiteTests.config, "collector restarted without the exclusions") }
        let me = getpid()
        let hidden = quiet + "/hidden.txt"
        let shown = dir + "/shown.txt"
        close(open(hidden, O_CREAT | O_WRONLY, 0o600))
        close(open(shown, O_CREAT | O_WRONLY, 0o600))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = [dir + "/by-excluded-process.txt"]
        try p.run()
        p.waitUntilExit()
        _ = try s.waitForEvent(pid: me, type: "file_create") { $0["path"]?.string == shown }
        // The excluded process still shows as a process; its file activity does not.
        _ = try s.waitForEvent(pid: p.processIdentifier, type: "exec")
        _ = try s.waitForEvent(pid: p.processIdentifier, type: "exit")
        // Only what the child did before its exec (as the test binary) may show; nothing by the excluded executable.
        let byTool = try s.events(pid: p.processIdentifier, types: ["file"]).filter { $0["comm"]?.string == "excluded-touch" }
        XCTAssertEqual(byTool.map { $0.serialized() }, [])
        XCTAssertFalse(try s.events(pid: me, types: ["file"]).contains { ($0["path"]?.string ?? "").hasPrefix(quiet + "/") })
        // The kernel's counter reaches the status with the next heartbeat and status write.
        try s.waitUntil("the kernel counts what it filtered", timeout: 15) { st in
            (st["kernel"]?["filtered_excluded"]?.int ?? 0) > 0
        }
    }

    // Acceptance 3: what each room holds, from /proc.
    func testEveryRoomHoldsExactlyItsManifest() throws {
        let s = try suite()
        let st = s.status()
        guard let uid = mdatpUid() else { return XCTFail("no mdatp user") }
        for m in Rooms.all {
            let pid = s.room(m.name, in: st)?["pid"]?.int ?? 0
            XCTAssertGreaterThan(pid, 0, m.name)
            let ps = try ProcessStatus.read(pid: pid_t(pid))
            XCTAssertEqual(ps.uids, [uid, uid, uid, uid], "\(m.name) runs as mdatp")
            XCTAssertEqual(ps.capEffective, m.effectiveCapabilityMask, "\(m.name) CapEff")
            XCTAssertEqual(ps.capPermitted, m.effectiveCapabilityMask, "\(m.name) CapPrm")
            XCTAssertEqual(ps.capBounding, m.effectiveCapabilityMask, "\(m.name) CapBnd")
            XCTAssertEqual(ps.noNewPrivs, 1, "\(m.name) NoNewPrivs")
            XCTAssertEqual(ps.seccomp, 2, "\(m.name) Seccomp")
            let cmdline = String(decoding: try Sys.readFile("/proc/\(pid)/cmdline", limit: 65536), as: UTF8.self)
            XCTAssertTrue(cmdline.hasPrefix(m.title), "ps shows \(m.title)")
        }
    }

    func testAForbiddenSyscallKillsTheRoomAndItIsRestarted() throws {
        let s = try suite()
        let before = s.room("edr", in: s.status())
        let oldPid = before?["pid"]?.int ?? 0
        let restarts = before?["restarts"]?.int ?? 0
        let r = try s.cli(["diagnostic", "sandbox-selftest", "--room", "edr"])
        XCTAssertEqual(r.code, 0, r.err)
        let after = try s.waitUntil("edr restarted after SIGSYS", timeout: 60) { st in
            let e = s.room("edr", in: st)
            return e?["state"]?.string == "running" && (e?["pid"]?.int ?? 0) != oldPid && (e?["restarts"]?.int ?? 0) > restarts
        }
        XCTAssertTrue(s.room("edr", in: after)?["last_exit"]?.string?.contains("signal 31") ?? false, "\(s.room("edr", in: after)?.serialized() ?? "")")
    }

    // Acceptance 4: kill -9 of any room.
    func testKillNineOfEachRoomIsRestartedAndReported() throws {
        let s = try suite()
        for name in ["edr", "collector"] {
            let before = s.room(name, in: s.status())
            let oldPid = before?["pid"]?.int ?? 0
            let restarts = before?["restarts"]?.int ?? 0
            XCTAssertEqual(kill(pid_t(oldPid), SIGKILL), 0)
            let st = try s.waitUntil("\(name) restarted", timeout: 90) { st in
                let r = s.room(name, in: st)
                return r?["state"]?.string == "running" && (r?["pid"]?.int ?? 0) != oldPid
            }
            let r = s.room(name, in: st)
            XCTAssertEqual(r?["restarts"]?.int, restarts + 1, name)
            XCTAssertEqual(r?["last_exit"]?.string, "signal 9 (SIGKILL)", name)
        }
        // The rings belong to the watchdog: after both restarts, events still flow end to end.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/true")
        try p.run()
        p.waitUntilExit()
        _ = try s.waitForEvent(pid: p.processIdentifier, type: "exec")
    }

    func testEventsTailFollowsNewEvents() throws {
        let s = try suite()
        let marker = "mdatp-tail-\(UUID().uuidString)"
        let (tail, out) = try s.startCLI(["events", "tail", "--type", "exec", "--output", "json"])
        defer { if tail.isRunning { tail.terminate() } }
        sleep(1)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/echo")
        p.arguments = [marker]
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        // Read lines until the marker's exec arrives.
        var text = ""
        let deadline = Date().addingTimeInterval(20)
        while !text.contains(marker) && Date() < deadline {
            guard (try? Sys.pollReadable([out.fileHandleForReading.fileDescriptor], timeoutMs: 500))?.first == true else { continue }
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
        }
        tail.terminate()
        let line = text.split(separator: "\n").first { $0.contains(marker) }
        XCTAssertNotNil(line, text)
        XCTAssertEqual(try line.map { try JSON.parse(String($0)) }?["tgid"]?.int, Int(p.processIdentifier))
    }

    func testAntivirusExclusionsAndAllowedThreats() throws {
        let s = try suite()
        let base = try makeTempDir("mdatp-epp")
        defer { try? FileManager.default.removeItem(atPath: base) }
        let quiet = base + "/quiet", loud = base + "/loud"
        try FileManager.default.createDirectory(atPath: quiet, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: loud, withIntermediateDirectories: true)
        let writer = base + "/eppwriter"
        try FileManager.default.copyItem(atPath: realPath("/usr/bin/cp"), toPath: writer)
        // Written inside the excluded folder once exclusions are in force (elsewhere it would be quarantined).
        let eicarFile = quiet + "/in-excluded-folder.txt"

        func reconfigure(_ antivirus: String) throws {
            let old = s.room("scanner", in: s.status())?["pid"]?.int ?? 0
            try s.writeConfig(SuiteTests.config.replacingOccurrences(of: #""enforcementLevel": "real_time"}"#, with: #""enforcementLevel": "real_time"\#(antivirus)}"#))
            kill(s.watchdogPid, SIGHUP)
            try s.waitUntil("scanner restarted", timeout: 60) { st in
                let r = s.room("scanner", in: st)
                return r?["state"]?.string == "running" && (r?["pid"]?.int ?? 0) != old && st["watchdog"]?["config_error"] == .null
            }
        }
        func threats() throws -> [JSON] { try JSON.parse(try s.cli(["threat", "list", "--limit", "1000", "--output", "json"]).out)["threats"]?.array ?? [] }
        func copy(_ to: String, with tool: String = "/usr/bin/cp") throws {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: tool)
            p.arguments = [eicarFile, to]
            try p.run()
            p.waitUntilExit()
        }

        try reconfigure(#", "exclusions": [{"$type": "excludedPath", "isDirectory": true, "path": "\#(quiet)"}, {"$type": "excludedFileExtension", "extension": ".skipme"}, {"$type": "excludedFileName", "name": "eppwriter"}]"#)
        defer { try? reconfigure("") }
        try #"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"#.write(toFile: eicarFile, atomically: false, encoding: .utf8)
        try copy(loud + "/excluded-extension.skipme")
        try copy(loud + "/by-excluded-process.txt", with: writer)
        try copy(loud + "/control.txt")
        // The control is caught; by then the excluded ones had their chance too (one queue).
        XCTAssertEqual(try s.waitForThreat(path: loud + "/control.txt")["action"]?.string, "quarantined")
        let paths = Set(try threats().compactMap { $0["path"]?.string })
        XCTAssertFalse(paths.contains(quiet + "/in-excluded-folder.txt"))
        XCTAssertFalse(paths.contains(loud + "/excluded-extension.skipme"))
        XCTAssertFalse(paths.contains(loud + "/by-excluded-process.txt"))
        XCTAssertEqual(try s.cli(["exclusion", "list", "--output", "json"]).code, 0)
        // On demand the folder stays excluded, unless the scan ignores exclusions.
        var r = try JSON.parse(try s.cli(["scan", "custom", "--path", quiet, "--output", "json"]).out)
        XCTAssertEqual(r["threats"]?.array?.count, 0)
        r = try JSON.parse(try s.cli(["scan", "custom", "--path", quiet, "--ignore-exclusions", "--output", "json"]).out)
        XCTAssertEqual(r["threats"]?.array?.first?["path"]?.string, quiet + "/in-excluded-folder.txt")

        // An allowed threat is recorded as allowed and left alone.
        try reconfigure(#", "allowedThreats": ["Virus.Test.EICAR-Test-File"]"#)
        try #"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"#.write(toFile: loud + "/allowed.txt", atomically: false, encoding: .utf8)
        XCTAssertEqual(try s.waitForThreat(path: loud + "/allowed.txt")["action"]?.string, "allowed")
        XCTAssertTrue(FileManager.default.fileExists(atPath: loud + "/allowed.txt"))
    }

    func testDefenderConfigVerbsEditTheLocalFileAndRespectTheManagedOne() throws {
        let s = try suite()
        let managedDir = s.prefix + "/etc/opt/mdatp/managed"
        try FileManager.default.createDirectory(atPath: managedDir, withIntermediateDirectories: true)
        try #"{"antivirusEngine": {"behaviorMonitoring": "enabled"}}"#.write(toFile: managedDir + "/mdatp_managed.json", atomically: true, encoding: .utf8)
        let configPath = s.prefix + "/etc/opt/mdatp/mdatp.json"
        defer {
            try? FileManager.default.removeItem(atPath: managedDir + "/mdatp_managed.json")
            let old = s.room("scanner", in: s.status())?["pid"]?.int ?? 0
            try? s.writeConfig(SuiteTests.config)
            kill(s.watchdogPid, SIGHUP)
            _ = try? s.waitUntil("scanner back on the test config", timeout: 60) { st in
                (s.room("scanner", in: st)?["pid"]?.int ?? 0) != old && s.room("scanner", in: st)?["state"]?.string == "running"
            }
        }
        let managed = try s.cli(["config", "behavior-monitoring", "--value", "disabled"])
        XCTAssertEqual(managed.code, 77)
        XCTAssertTrue(managed.err.contains("managed"), managed.err)
        XCTAssertEqual(try s.cli(["health", "--field", "behavior_monitoring"]).out, "\"enabled\" [managed]\n")

        let before = try String(contentsOfFile: configPath, encoding: .utf8)
        let bad = try s.cli(["config", "maximum-on-demand-scan-threads", "--value", "99"])
        XCTAssertEqual(bad.code, 77)
        XCTAssertTrue(bad.err.contains("maximumOnDemandScanThreads"), bad.err)
        XCTAssertEqual(try String(contentsOfFile: configPath, encoding: .utf8), before, "a refused change leaves the file as it was")

        XCTAssertEqual(try s.cli(["exclusion", "folder", "add", "--path", "/srv/mdatp-test"]).code, 0)
        let listed = try JSON.parse(try s.cli(["exclusion", "list", "--output", "json"]).out)
        XCTAssertTrue(listed["exclusions"]?.array?.contains { $0["value"]?.string == "/srv/mdatp-test" && $0["type"]?.string == "folder" } ?? false)
        XCTAssertEqual(try s.cli(["exclusion", "folder", "remove", "--path", "/srv/mdatp-test"]).code, 0)
        XCTAssertEqual(try s.cli(["exclusion", "folder", "remove", "--path", "/srv/mdatp-test"]).code, 77)
        XCTAssertEqual(try s.cli(["threat", "policy", "set", "--type", "archive_bomb", "--action", "block"]).code, 0)
        XCTAssertEqual(try s.cli(["threat", "allowed", "add", "--name", "Test.Allowed"]).code, 0)
        XCTAssertEqual(try s.cli(["threat", "allowed", "list"]).out, "Test.Allowed\n")
        let written = try JSON.parse(try String(contentsOfFile: configPath, encoding: .utf8))
        XCTAssertEqual(written["antivirusEngine"]?["threatTypeSettings"]?.array?.first?["value"]?.string, "block")
        XCTAssertEqual(s.status()?["watchdog"]?["config_error"], .null)
    }

    func testHostileFilesAreBoundedOnDemand() throws {
        let s = try suite()
        let dir = try makeTempDir("mdatp-hostile")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // 10 GB, sparse: read only up to the scanner's per-file bound, then an error.
        let fd = open(dir + "/sparse.img", O_CREAT | O_WRONLY, 0o644)
        XCTAssertEqual(ftruncate(fd, 10 << 30), 0)
        close(fd)
        XCTAssertEqual(mkfifo(dir + "/fifo", 0o644), 0)              // never waited on
        try FileManager.default.createSymbolicLink(atPath: dir + "/shadow", withDestinationPath: "/etc/shadow") // not followed
        try "clean".write(toFile: dir + "/ok.txt", atomically: true, encoding: .utf8)
        let r = try s.cli(["scan", "custom", "--path", dir, "--output", "json"])
        XCTAssertEqual(r.code, 0, r.err)
        let summary = try JSON.parse(r.out)
        XCTAssertEqual(summary["scanned"]?.int, 2, r.out)   // sparse.img (too large: an error) and ok.txt
        XCTAssertEqual(summary["errors"]?.int, 1, r.out)
        XCTAssertEqual(summary["skipped"]?.int, 2, r.out)   // the FIFO and the symlink
        XCTAssertEqual(summary["threats"]?.array?.count, 0)
        XCTAssertEqual(s.room("scanner", in: s.status())?["state"]?.string, "running")
    }

    func testDefinitionsUpdateFromAnHTTPMirror() throws {
        let s = try suite()
        let health = { try JSON.parse(try s.cli(["health", "--output", "json"]).out) }
        try s.waitUntil("definitions reported", timeout: 20) { _ in (try? health()["definitions_status"]?.string) == "up_to_date" }
        let work = try makeTempDir("mdatp-mirror")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let extra = "0123456789abcdef0123456789abcdef:10:Test.Mirror.Marker\n"
        try makePackage(signatures: ["mirror.hdb": extra], version: "9.1.0.1", keyDir: repoRoot + "/.build/keys", out: work + "/good")
        try makePackage(signatures: ["mirror.hdb": extra], version: "9.1.0.2", keyDir: repoRoot + "/.build/keys", out: work + "/bad")
        // A tampered mirror: one signature file altered after signing.
        let bad = work + "/bad/package"
        let victim = try XCTUnwrap(Sys.listDirectory(bad).first { $0.hasSuffix(".zst") })
        let h = try XCTUnwrap(FileHandle(forWritingAtPath: bad + "/" + victim))
        h.seekToEndOfFile()
        h.write(Data("x".utf8))
        h.closeFile()
        // A loopback HTTP mirror serving both.
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        server.arguments = ["-m", "http.server", "--bind", "127.0.0.1", "0", "--directory", work]
        let out = Pipe()
        server.standardOutput = out
        server.standardError = out
        server.environment = ["PYTHONUNBUFFERED": "1"]
        try server.run()
        defer { server.terminate(); server.waitUntilExit() }
        var banner = ""
        while !banner.contains("port ") { banner += String(decoding: out.fileHandleForReading.availableData, as: UTF8.self) }
        let port = try XCTUnwrap(banner.split(separator: " ").drop { $0 != "port" }.dropFirst().first.flatMap { Int($0) })

        let r = try s.cli(["definitions", "update", "--source", "http://127.0.0.1:\(port)/good/package/", "--output", "json"])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertEqual(try JSON.parse(r.out)["definitions_version"]?.string, "9.1.0.1")
        try s.waitUntil("health shows the update", timeout: 20) { _ in (try? health()["definitions_version"]?.string) == "9.1.0.1" }
        let tampered = try s.cli(["definitions", "update", "--source", "http://127.0.0.1:\(port)/bad/package"])
        XCTAssertEqual(tampered.code, 77)
        XCTAssertTrue(tampered.err.contains("altered"), tampered.err)
        let missing = try s.cli(["definitions", "update", "--source", "http://127.0.0.1:\(port)/nothing-here"])
        XCTAssertEqual(missing.code, 77)
        XCTAssertTrue(missing.err.contains("download"), missing.err)
        XCTAssertEqual(try health()["definitions_version"]?.string, "9.1.0.1", "refusals keep the running set")
        XCTAssertEqual(Sys.listDirectory("/tmp").filter { $0.hasPrefix("mdatp-definitions-") }, [], "downloads are removed")
        XCTAssertEqual(try s.cli(["definitions", "restore"]).code, 0)
        try s.waitUntil("the scanner back after the restore", timeout: 60) { st in s.room("scanner", in: st)?["state"]?.string == "running" }
    }

    func testDefinitionsUpdateRefusalAndRestore() throws {
        let s = try suite()
        let health = { try JSON.parse(try s.cli(["health", "--output", "json"]).out) }
        // The scanner reports its set in its heartbeat.
        try s.waitUntil("definitions reported", timeout: 20) { _ in (try? health()["definitions_status"]?.string) == "up_to_date" }
        let shipped = try XCTUnwrap(health()["definitions_version"]?.string)
        let work = try makeTempDir("mdatp-update")
        defer { try? FileManager.default.removeItem(atPath: work) }
        // Signed with the build's key (the one the product trusts), newer than the shipped set.
        let extra = "0123456789abcdef0123456789abcdef:10:Test.Update.Marker\n"
        try makePackage(signatures: ["update.hdb": extra], version: "9.0.0.1", keyDir: repoRoot + "/.build/keys", out: work + "/new")
        let r = try s.cli(["definitions", "update", "--source", work + "/new/package", "--output", "json"])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertEqual(try JSON.parse(r.out)["definitions_version"]?.string, "9.0.0.1")
        try s.waitUntil("health shows the update", timeout: 20) { _ in (try? health()["definitions_version"]?.string) == "9.0.0.1" }
        // Not newer: refused, the running set stays.
        let same = try s.cli(["definitions", "update", "--source", work + "/new/package"])
        XCTAssertEqual(same.code, 77)
        XCTAssertTrue(same.err.contains("not newer"), same.err)
        // Signed by another key: refused.
        try makePackage(signatures: ["update.hdb": extra], version: "9.0.0.2", keyDir: work + "/foreign-keys", out: work + "/foreign")
        let foreign = try s.cli(["definitions", "update", "--source", work + "/foreign/package"])
        XCTAssertEqual(foreign.code, 77)
        XCTAssertTrue(foreign.err.contains("does not verify"), foreign.err)
        XCTAssertEqual(try health()["definitions_version"]?.string, "9.0.0.1")
        XCTAssertEqual(Sys.listDirectory(s.prefix + "/var/opt/mdatp/definitions").filter { $0.hasPrefix("staging-") }, [], "refused packages are removed")
        // Restore: the shipped set again (the scanner restarts on it).
        XCTAssertEqual(try s.cli(["definitions", "restore"]).code, 0)
        try s.waitUntil("shipped definitions back", timeout: 60) { st in
            s.room("scanner", in: st)?["state"]?.string == "running" && (try? health()["definitions_version"]?.string) == shipped
        }
    }

    func testStatusDumpHasEveryField() throws {
        let s = try suite()
        let st = try XCTUnwrap(s.status())
        for name in ["collector", "edr"] {
            let r = try XCTUnwrap(s.room(name, in: st))
            for key in ["pid", "user", "state", "uptime_seconds", "restarts", "last_exit", "cap_effective", "cap_bounding",
                        "seccomp_mode", "no_new_privs", "rss_kib", "cpu_seconds", "heartbeat_age_seconds", "counters"] {
                XCTAssertNotNil(r[key], "\(name).\(key)")
            }
        }
        let ring = try XCTUnwrap(st["rings"]?.array?.first)
        for key in ["consumer", "capacity_bytes", "fill_bytes", "events_in", "events_out", "drops", "consumer_lag"] {
            XCTAssertNotNil(ring[key], "ring.\(key)")
        }
        for key in ["emitted", "drops", "total_drops"] { XCTAssertNotNil(st["kernel"]?[key], "kernel.\(key)") }
        XCTAssertEqual(st["kernel"]?["drops"]?["process"]?.int, 0, "no lifecycle drops on an idle machine")
        let human = try s.cli(["diagnostic", "status"])
        XCTAssertEqual(human.code, 0)
        XCTAssertTrue(human.out.contains("collector") && human.out.contains("RING"), human.out)
    }

    func testABadConfigIsRefusedOnReloadAndTheRunningOneKept() throws {
        let s = try suite()
        try s.writeConfig(#"{"sensor": {"consumerRingBytes": 12345}}"#)
        defer { try? s.writeConfig(SuiteTests.config) }
        kill(s.watchdogPid, SIGHUP)
        let st = try s.waitUntil("config error reported", timeout: 30) { $0["watchdog"]?["config_error"]?.string != nil }
        XCTAssertTrue(st["watchdog"]?["config_error"]?.string?.contains("sensor.consumerRingBytes") ?? false)
        XCTAssertEqual(s.room("edr", in: st)?["state"]?.string, "running")
        let h = try JSON.parse(try s.cli(["health", "--output", "json"]).out)
        XCTAssertEqual(h["healthy"]?.bool, false)
        try s.writeConfig(SuiteTests.config)
        kill(s.watchdogPid, SIGHUP)
        try s.waitUntil("config accepted again", timeout: 30) { $0["watchdog"]?["config_error"] == .null }
    }

    func testEventsNeedRootOrTheMdatpGroup() throws {
        let s = try suite()
        // Run the CLI as nobody: status is open, events are refused (exit 77).
        let nobody = Sys.lookupUser("nobody")!
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        p.arguments = ["--reuid=\(nobody.uid)", "--regid=\(nobody.gid)", "--clear-groups", s.binDir + "/mdatp", "events", "list"]
        var env = ProcessInfo.processInfo.environment
        env["MDATP_PREFIX"] = s.prefix
        p.environment = env
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 77)
    }
}

/// A room that always crashes ends as failed after K deaths, and health says so.
final class CrashLoopTests: XCTestCase {
    func testAlwaysCrashingRoomEndsFailedAndHealthReportsIt() throws {
        try requireRoot()
        let bin = try makeTempDir("mdatp-bin")
        defer { try? FileManager.default.removeItem(atPath: bin) }
        for exe in ["mdatp-watchdog", "mdatp-collector", "mdatp"] {
            try FileManager.default.createSymbolicLink(atPath: bin + "/" + exe, withDestinationPath: Harness.binDir + "/" + exe)
        }
        try "#!/bin/sh\necho 'broken edr build' >&2\nexit 3\n".write(toFile: bin + "/mdatp-edr", atomically: true, encoding: .utf8)
        chmod(bin + "/mdatp-edr", 0o755)
        let s = try Suite(name: "crash", config: #"{"sensor": {"statusIntervalSeconds": 1, "restart": {"floorSeconds": 1, "maxDeaths": 3, "windowSeconds": 60}}}"#,
                          watchdogBinDir: bin)
        try s.start(waitFor: ["collector"])
        defer { s.stop() }
        let st = try s.waitUntil("edr failed", timeout: 60) { s.room("edr", in: $0)?["state"]?.string == "failed" }
        let edr = s.room("edr", in: st)
        XCTAssertEqual(edr?["restarts"]?.int, 2, "three deaths: the first start and two restarts")
        XCTAssertTrue(edr?["failure"]?.string?.contains("3 deaths") ?? false)
        // It stays failed: no restart loop.
        sleep(3)
        XCTAssertEqual(s.room("edr", in: s.status())?["restarts"]?.int, 2)
        let h = try JSON.parse(try s.cli(["health", "--output", "json"]).out)
        XCTAssertEqual(h["healthy"]?.bool, false)
        XCTAssertTrue(h["health_issues"]?.array?.contains { $0.string?.contains("room edr failed") ?? false } ?? false, h.serialized())
        // SIGTERM: the rooms stop in order and the watchdog exits 0.
        XCTAssertEqual(s.stop(), 0)
        XCTAssertTrue(s.tailOfLog().contains("all rooms stopped"))
    }
}

/// Kernel exec blocking, with definitions made for the test: a dropper written
/// with a second hard link is quarantined, and the other name is killed at exec.
final class ExecBlockingTests: XCTestCase {
    func testADetectedExecutableIsKilledAtExecEvenUnderAnotherName() throws {
        try requireRoot()
        let bin = try makeTempDir("mdatp-bin-av")
        defer { try? FileManager.default.removeItem(atPath: bin) }
        for exe in ["mdatp-watchdog", "mdatp-collector", "mdatp-edr", "mdatp-scanner", "mdatp"] {
            try FileManager.default.createSymbolicLink(atPath: bin + "/" + exe, withDestinationPath: Harness.binDir + "/" + exe)
        }
        // A runnable program no one else has: /usr/bin/true with random bytes after it.
        let trueBytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: realPath("/usr/bin/true"))))
        let dropper = trueBytes + Sys.randomBytes(64)
        let sha = try sha256Hex(dropper)
        // The suite's own EDR program, to check it is never denied nor quarantined.
        let edrPath = realPath(Harness.binDir + "/mdatp-edr")
        let edrSha = try sha256Hex([UInt8](try Data(contentsOf: URL(fileURLWithPath: edrPath))))
        let edrSize = try Sys.stat(edrPath).st_size
        // A signed package of the test's own, trusted by this bin directory only.
        try makePackage(signatures: ["test.hsb": "\(sha):\(dropper.count):Unix.Trojan.TestDropper\n\(edrSha):\(edrSize):Unix.Trojan.NotReally\n"],
                        version: "1.0.0.1", keyDir: bin + "/keys", out: bin + "/definitions")
        // The exec gate off: this proves the kernel's kill at exec (the path when no gate holds execs).
        let s = try Suite(name: "av", config: #"{"antivirusEngine": {"enforcementLevel": "real_time", "execGate": "disabled"}, "sensor": {"statusIntervalSeconds": 1}}"#,
                          watchdogBinDir: bin)
        try s.start(waitFor: ["collector", "edr", "scanner"])
        defer { s.stop() }

        let dir = try makeTempDir("mdatp-drop")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = dir + "/dropper", second = dir + "/dropper-link", third = dir + "/dropper-third"
        let fd = open(first, O_WRONLY | O_CREAT | O_EXCL, 0o755)
        XCTAssertGreaterThanOrEqual(fd, 0)
        _ = dropper.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        XCTAssertEqual(link(first, second), 0)
        XCTAssertEqual(link(first, third), 0)
        close(fd)
        // Written: detected, denied in the kernel, quarantined (the first name).
        try s.waitForThreat(path: first) { $0["action"]?.string == "quarantined" }
        XCTAssertFalse(FileManager.default.fileExists(atPath: first))
        // The second name is the same inode: killed before its first instruction.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: second)
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .uncaughtSignal)
        XCTAssertEqual(p.terminationStatus, SIGKILL)
        let t = try s.waitForThreat(path: second) { ($0["action"]?.string ?? "").hasPrefix("blocked_at_exec") }
        XCTAssertEqual(t["type"]?.string, "trojan")
        let exec = try s.waitForEvent(pid: p.processIdentifier, type: "exec")
        XCTAssertEqual(exec["flags"]?.array?.compactMap(\.string).contains("exec_blocked"), true)
        // Counted by the kernel, reported in the collector's next heartbeat.
        let st = try s.waitUntil("exec_blocked counted", timeout: 20) { st in
            (s.room("collector", in: st)?["counters"]?["exec_blocked"]?.int ?? 0) >= 1
        }
        XCTAssertEqual(s.room("collector", in: st)?["counters"]?["deny_table_corrupt"]?.int, 0)
        // Other programs are unaffected.
        let ok = Process()
        ok.executableURL = URL(fileURLWithPath: "/usr/bin/true")
        try ok.run()
        ok.waitUntilExit()
        XCTAssertEqual(ok.terminationStatus, 0)

        // The deny list outlives the collector: a new one is given it when ready
        // (the third name of the inode, which nothing has run or moved yet).
        let oldCollector = s.room("collector", in: s.status())?["pid"]?.int ?? 0
        XCTAssertEqual(kill(pid_t(oldCollector), SIGKILL), 0)
        try s.waitUntil("collector restarted", timeout: 90) { st in
            let r = s.room("collector", in: st)
            return r?["state"]?.string == "running" && (r?["pid"]?.int ?? 0) != oldCollector
        }
        let again = Process()
        again.executableURL = URL(fileURLWithPath: third)
        try again.run()
        again.waitUntilExit()
        XCTAssertEqual(again.terminationReason, .uncaughtSignal, s.tailOfLog())
        XCTAssertEqual(again.terminationStatus, SIGKILL)

        // The suite's own program matches a signature: reported, but neither denied nor moved.
        let r = try s.cli(["scan", "custom", "--path", edrPath, "--output", "json"])
        let own = try XCTUnwrap(try JSON.parse(r.out)["threats"]?.array?.first, r.out)
        XCTAssertTrue(own["action"]?.string?.hasPrefix("quarantine_failed") ?? false, own.serialized())
        XCTAssertTrue(FileManager.default.fileExists(atPath: edrPath))
        XCTAssertEqual(s.room("edr", in: s.status())?["state"]?.string, "running")
    }

    func sha256Hex(_ bytes: [UInt8]) throws -> String {
        let tmp = try makeTempDir("mdatp-sha") + "/f"
        defer { try? FileManager.default.removeItem(atPath: (tmp as NSString).deletingLastPathComponent) }
        try Data(bytes).write(to: URL(fileURLWithPath: tmp))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        p.arguments = [tmp]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let d = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(String(decoding: d, as: UTF8.self).prefix(64))
    }
}

/// Builds a definitions package with the script `make definitions` uses.
func makePackage(signatures: [String: String], version: String, keyDir: String, out: String) throws {
    let src = try makeTempDir("mdatp-defs-src")
    defer { try? FileManager.default.removeItem(atPath: src) }
    for (name, text) in signatures { try text.write(toFile: src + "/" + name, atomically: true, encoding: .utf8) }
    try version.write(toFile: src + "/VERSION", atomically: true, encoding: .utf8)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/bash")
    p.arguments = [repoRoot + "/packaging/make-definitions.sh", src, keyDir, out]
    p.standardOutput = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw HarnessError(description: "make-definitions.sh failed") }
}

let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// The CLI without a running suite: help, version, and the "not running" contract.
final class CLITests: XCTestCase {
    func run(_ args: [String], prefix: String) throws -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Harness.binDir + "/mdatp")
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        env["MDATP_PREFIX"] = prefix
        p.environment = env
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func testHelpListsTheVerbs() throws {
        let (code, out) = try run(["--help"], prefix: "/nonexistent")
        XCTAssertEqual(code, 0)
        for verb in ["version", "health", "diagnostic", "events"] { XCTAssertTrue(out.contains(verb), out) }
    }

    func testVersionInBothFormats() throws {
        let (code, out) = try run(["version", "--output", "json"], prefix: "/nonexistent")
        XCTAssertEqual(code, 0)
        let v = try JSON.parse(out)
        XCTAssertTrue(v["app_version"]?.string?.hasPrefix("101.") ?? false)
        XCTAssertTrue(try run(["version"], prefix: "/nonexistent").1.hasPrefix("Product version: 101."))
    }

    func testNotRunningIsExit69AndUnhealthy() throws {
        let dir = try makeTempDir("mdatp-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (code, out) = try run(["health", "--output", "json"], prefix: dir)
        XCTAssertEqual(code, 69)
        let h = try JSON.parse(out)
        XCTAssertEqual(h["healthy"]?.bool, false)
        XCTAssertEqual(h["health_issues"]?.array?.first?.string, "the suite is not running")
        XCTAssertEqual(try run(["diagnostic", "status"], prefix: dir).0, 69)
        XCTAssertEqual(try run(["events", "list"], prefix: dir).0, 69)
        XCTAssertEqual(try run(["events", "list", "--since", "yesterday"], prefix: dir).0, 64)
        XCTAssertEqual(try run(["no-such-verb"], prefix: dir).0, 64)
    }
}

/// The fanotify exec gate (issue 3, acceptance 1: a known-bad file executed the moment it is written never runs).
final class ExecGateTests: XCTestCase {
    func testTheExecGateRefusesAKnownBadProgramTheMomentItIsWritten() throws {
        try requireRoot()
        // Its own suite: the gate is opt-in (antivirusEngine.execGate).
        let s = try Suite(name: "gate", config: """
        {"antivirusEngine": {"enforcementLevel": "real_time", "execGate": "enabled"},
         "sensor": {"statusIntervalSeconds": 1, "heartbeatSeconds": 0.5}}
        """)
        try s.start(waitFor: Rooms.all.map(\.name))
        defer { s.stop() }
        try s.waitUntil("the exec gate armed", timeout: 30) { ($0["sensor"]?["exec_gate"]?.string ?? "").hasPrefix("fanotify") }
        let dir = try makeTempDir("mdatp-gate")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A script carrying the EICAR string, run right after it is written: before the
        // real-time scan of the write could act, so only the gate can stop it. (If that scan
        // wins the race the file is gone: try again with a new one.)
        var refused = ""
        for attempt in 0..<5 where refused.isEmpty {
            let path = dir + "/run-me-\(attempt).sh"
            let script = "#!/bin/sh\n# " + #"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"# + "\ntouch " + dir + "/ran\n"
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o755)
            _ = Array(script.utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            close(fd)
            var pid: pid_t = 0
            let rc = posix_spawn(&pid, path, nil, nil, [strdup(path), nil], nil)
            if rc == 0 { var st: Int32 = 0; waitpid(pid, &st, 0) }
            if rc == EPERM { refused = path } else { XCTAssertEqual(rc, ENOENT, "neither refused nor already quarantined") }
        }
        XCTAssertFalse(refused.isEmpty, "the gate never refused the exec: \(s.status()?["sensor"] ?? .null) \(s.room("scanner", in: s.status())?["counters"] ?? .null) \((try? String(contentsOfFile: s.prefix + "/etc/opt/mdatp/mdatp.json", encoding: .utf8)) ?? "") \(s.tailOfLog())")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/ran"), "its code never ran")
        let t = try s.waitForThreat(path: refused) { ($0["action"]?.string ?? "").hasPrefix("blocked_at_exec") }
        XCTAssertTrue(t["name"]?.string?.contains("EICAR") ?? false, t.serialized())
        try s.waitUntil("gate denial counted", timeout: 20) { st in (s.room("scanner", in: st)?["counters"]?["exec_gate_denied"]?.int ?? 0) >= 1 }
        XCTAssertEqual(try JSON.parse(try s.cli(["health", "--output", "json"]).out)["real_time_protection_subsystem"]?.string, "ebpf+fanotify")
        // Everything else runs.
        let ok = Process()
        ok.executableURL = URL(fileURLWithPath: "/usr/bin/true")
        try ok.run()
        ok.waitUntilExit()
        XCTAssertEqual(ok.terminationStatus, 0)
    }

}
