@testable import EDR
import Foundation
@testable import MdatpEvents
import MdatpJSON
import XCTest

func header(_ kind: EventKind, tgid: UInt32, t: UInt64, comm: String = "x") -> EventHeader {
    EventHeader(type: kind.rawValue, flags: 0, size: 0, seq: t, ktimeNs: t, pid: tgid, tgid: tgid, uid: 1000, euid: 1000, cgroupId: 1, comm: comm)
}

func execEvent(tgid: UInt32, ppid: UInt32, exe: String, argv: [String], t: UInt64) -> KernelEvent {
    KernelEvent(header: header(.exec, tgid: tgid, t: t), body: .exec(ExecInfo(
        ppid: ppid, gid: 1000, egid: 1000, loginuid: 1000, sessionid: 3, exeDev: 254 << 20, exeIno: 42, exeMtimeSec: 1,
        exeMtimeNsec: 0, exeMode: 0o100755, startTimeNs: t, argc: UInt32(argv.count), exe: exe, cwd: "/home/u", tty: "pts0", argv: argv)))
}

func fileEvent(tgid: UInt32, path: String, t: UInt64) -> KernelEvent {
    KernelEvent(header: header(.fileCloseWrite, tgid: tgid, t: t), body: .file(FileInfo(
        mode: 0o100644, ownerUid: 1000, ownerGid: 1000, dev: 254 << 20, ino: 7, openFlags: 1, path: path, path2: "")))
}

final class ProcessTableTests: XCTestCase {
    func testStaysWithinItsCapacityUnderAForkStorm() {
        var t = ProcessTable(capacity: 1000)
        for pid in UInt32(1)...50_000 {
            t.fork(parent: 1, child: pid + 1, startNs: UInt64(pid), uid: 0)
            if pid % 3 == 0 {
                t.exit(pid, atNs: UInt64(pid) * 1_000_000)
                t.purgeExited(nowNs: UInt64(pid) * 1_000_000)
            }
            XCTAssertLessThanOrEqual(t.count, 1000)
        }
        XCTAssertGreaterThan(t.evictions, 0)
    }

    func testAncestryForAThreeLevelChain() {
        var e = Enricher(capacity: 100, bootToUnixNs: 0)
        _ = e.row(for: execEvent(tgid: 10, ppid: 1, exe: "/usr/sbin/sshd", argv: ["sshd"], t: 1))
        _ = e.row(for: KernelEvent(header: header(.fork, tgid: 10, t: 2), body: .fork(childPid: 11, childTgid: 11, childStartNs: 2)))
        _ = e.row(for: execEvent(tgid: 11, ppid: 10, exe: "/bin/bash", argv: ["-bash"], t: 3))
        _ = e.row(for: execEvent(tgid: 12, ppid: 11, exe: "/usr/bin/curl", argv: ["curl", "x"], t: 4))
        let c = e.table.lookup(12), b = e.table.lookup(c!.ppid), a = e.table.lookup(b!.ppid)
        XCTAssertEqual([c?.exe, b?.exe, a?.exe], ["/usr/bin/curl", "/bin/bash", "/usr/sbin/sshd"])
    }

    func testEventsOfTheOldImageArrivingAfterTheExecKeepTheOldImage() {
        var e = Enricher(capacity: 100, bootToUnixNs: 0)
        _ = e.row(for: execEvent(tgid: 20, ppid: 1, exe: "/bin/sh", argv: ["sh", "-c", "x"], t: 10))
        _ = e.row(for: execEvent(tgid: 20, ppid: 1, exe: "/usr/bin/python3", argv: ["python3"], t: 30))
        // Written at t=20 by the shell, delivered after the exec at t=30.
        let late = e.row(for: fileEvent(tgid: 20, path: "/tmp/a", t: 20))
        XCTAssertEqual(late.exe, "/bin/sh")
        XCTAssertEqual(late.argv, ["sh", "-c", "x"])
        let now = e.row(for: fileEvent(tgid: 20, path: "/tmp/b", t: 40))
        XCTAssertEqual(now.exe, "/usr/bin/python3")
    }

    func testRowsCarryTheirFieldsAndDetailsAreJSON() throws {
        var e = Enricher(capacity: 100, bootToUnixNs: 1_000)
        let r = e.row(for: execEvent(tgid: 5, ppid: 4, exe: "/bin/echo", argv: ["echo", "a \"quoted\" arg"], t: 7))
        XCTAssertEqual(r.timeNs, 1_007)
        XCTAssertEqual(r.type, "exec")
        XCTAssertEqual(r.ppid, 4)
        let d = try JSON.parse(r.details)
        XCTAssertEqual(d["tty"]?.string, "pts0")
        XCTAssertEqual(d["exe_dev"]?.string, "254:0")
        XCTAssertEqual(try JSON.parse(r.argvText!).array?.compactMap(\.string), ["echo", "a \"quoted\" arg"])
        let exit = e.row(for: KernelEvent(header: header(.exit, tgid: 5, t: 8), body: .exit(ppid: 4, exitCode: 9, startNs: 7)))
        XCTAssertEqual(try JSON.parse(exit.details)["signal"]?.int, 9)
        XCTAssertEqual(exit.exe, "/bin/echo")
        // Still known just after its exit (its last file events may arrive late), gone after the grace period.
        XCTAssertEqual(e.table.lookup(5)?.exe, "/bin/echo")
        e.table.purgeExited(nowNs: 8 + ProcessTable.exitGraceNs + 1)
        XCTAssertNil(e.table.lookup(5), "exited processes leave the table")
    }

    func testExecutablesSayWhereTheyCameFrom() throws {
        // Boot at unix 1000 s; the old program's mtime is unix 1 s, the new one's 2 s before it ran.
        var e = Enricher(capacity: 100, bootToUnixNs: 1_000_000_000_000)
        let old = try JSON.parse(e.row(for: execEvent(tgid: 5, ppid: 4, exe: "/bin/echo", argv: ["echo"], t: 7)).details)
        XCTAssertEqual(old["exe_written_recently"]?.bool, false)
        XCTAssertEqual(old["exe_on_tmpfs"]?.bool, false)
        XCTAssertEqual(old["exe_deleted"]?.bool, false)
        var ev = execEvent(tgid: 6, ppid: 4, exe: "/memfd:payload", argv: ["x"], t: 5_000_000_000)
        ev.header.flags = EventFlag.exeOnTmpfs | EventFlag.exeDeleted
        if case .exec(var x) = ev.body { x.exeMtimeSec = 1_003; ev.body = .exec(x) }
        let fresh = try JSON.parse(e.row(for: ev).details)
        XCTAssertEqual(fresh["exe_written_recently"]?.bool, true)
        XCTAssertEqual(fresh["exe_on_tmpfs"]?.bool, true)
        XCTAssertEqual(fresh["exe_deleted"]?.bool, true)
        XCTAssertEqual(fresh["exe_memfd"]?.bool, true)
    }
}

final class StoreAndQueryTests: XCTestCase {
    var dir = ""
    override func setUp() {
        dir = NSTemporaryDirectory() + "edr-test-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testAppendQueryAndRetention() throws {
        let store = try EventStore(path: dir + "/events.db")
        var e = Enricher(capacity: 100, bootToUnixNs: 0)
        var rows: [StoredEvent] = []
        for i in 0..<100 {
            rows.append(e.row(for: execEvent(tgid: UInt32(100 + i), ppid: 1, exe: "/bin/p\(i)", argv: ["p\(i)"], t: UInt64(i) * 1_000_000_000)))
            rows.append(e.row(for: fileEvent(tgid: UInt32(100 + i), path: "/tmp/f\(i)", t: UInt64(i) * 1_000_000_000 + 1)))
        }
        try store.append(rows)
        XCTAssertEqual(store.rows, 200)
        var q = EventStore.Query()
        q.types = ["exec"]
        q.limit = 5
        let newest = try store.query(q)
        XCTAssertEqual(newest.map(\.exe), ["/bin/p99", "/bin/p98", "/bin/p97", "/bin/p96", "/bin/p95"])
        q.types = []
        q.pid = 150
        XCTAssertEqual(try store.query(q).map(\.type).sorted(), ["exec", "file_close_write"])
        // Age: everything before t=50 s goes.
        let removed = try store.enforceRetention(nowNs: 100_000_000_000, maxAgeNs: 50_000_000_000, maxBytes: 1 << 40)
        XCTAssertEqual(removed, 100)
        XCTAssertEqual(store.rows, 100)
    }

    func testSizeBoundRemovesTheOldest() throws {
        let store = try EventStore(path: dir + "/events.db")
        var e = Enricher(capacity: 10, bootToUnixNs: 0)
        let long = String(repeating: "x", count: 2000)
        try store.append((0..<2000).map { e.row(for: fileEvent(tgid: 1, path: "/\(long)/\($0)", t: UInt64($0))) })
        let before = try store.sizeBytes()
        try store.enforceRetention(nowNs: 0, maxAgeNs: 1 << 62, maxBytes: before / 2)
        XCTAssertLessThanOrEqual(try store.sizeBytes(), before / 2)
        XCTAssertGreaterThan(store.rows, 0)
        var q = EventStore.Query()
        q.newestFirst = false
        q.limit = 1
        XCTAssertTrue(try store.query(q).first?.path.hasSuffix("/1999") == false, "oldest rows went first")
    }

    func testQueryRequestsAreValidated() {
        func refused(_ s: String) -> Bool {
            if case .failure = QueryServer.parse(Array(s.utf8)) { return true }
            return false
        }
        XCTAssertFalse(refused(#"{"verb":"events","types":["exec","file"],"limit":10,"order":"oldest","pid":3,"since_ns":0,"after_id":5}"#))
        XCTAssertTrue(refused(#"{"verb":"delete"}"#))
        XCTAssertTrue(refused(#"{"verb":"events","types":["exec'); DROP TABLE events;--"]}"#))
        XCTAssertTrue(refused(#"{"verb":"events","limit":100000}"#))
        XCTAssertTrue(refused(#"{"verb":"events","sql":"SELECT 1"}"#))
        XCTAssertTrue(refused("not json"))
        XCTAssertTrue(refused("{" + String(repeating: " ", count: 5000) + "}"))
        if case .success(let q) = QueryServer.parse(Array(#"{"verb":"events","types":["network"]}"#.utf8)) {
            XCTAssertEqual(Set(q.types), ["net_connect", "net_accept", "net_bind", "net_listen"])
        } else { XCTFail() }
    }
}

final class HashCacheTests: XCTestCase {
    func id(_ n: UInt64, mtime: Int64 = 1) -> ExecutableIdentity { ExecutableIdentity(dev: 8, ino: n, mtimeSec: mtime, mtimeNsec: 0) }

    func testBoundedOldestOutFirst() {
        var c = HashCache(capacity: 3)
        for n in 1...5 { c.insert(id(UInt64(n)), path: "/bin/p\(n)", sha256: "h\(n)") }
        XCTAssertEqual(c.count, 3)
        XCTAssertEqual(c.evictions, 2)
        XCTAssertNil(c.lookup(id(1)))
        XCTAssertNil(c.lookup(id(2)))
        XCTAssertEqual(c.lookup(id(5)), "h5")
        XCTAssertNil(c.lookup(path: "/bin/p1"), "an evicted identity takes its path entry along")
        XCTAssertEqual(c.lookup(path: "/bin/p3"), "h3")
    }

    func testAFileThatCouldNotBeHashedIsNotAskedForAgain() {
        var c = HashCache(capacity: 8)
        c.insert(id(9), path: "/opt/huge", sha256: nil)
        XCTAssertEqual(c.lookup(id(9)), "", "known, no digest")
        XCTAssertNil(c.lookup(path: "/opt/huge"), "no digest for evidence")
        XCTAssertNil(c.lookup(id(10)))
    }

    func testAChangedFileIsAnotherIdentity() {
        var c = HashCache(capacity: 8)
        c.insert(id(1, mtime: 1), path: "/usr/bin/tool", sha256: "old")
        XCTAssertNil(c.lookup(id(1, mtime: 2)), "same inode, new mtime: not the same content")
        c.insert(id(1, mtime: 2), path: "/usr/bin/tool", sha256: "new")
        XCTAssertEqual(c.lookup(path: "/usr/bin/tool"), "new")
        XCTAssertEqual(c.lookup(id(1, mtime: 1)), "old")
        // The old identity leaving does not take the path's newer digest with it.
        for n in 10..<17 { c.insert(id(UInt64(n)), path: "/x\(n)", sha256: "x") }
        XCTAssertNil(c.lookup(id(1, mtime: 1)))
        XCTAssertEqual(c.lookup(path: "/usr/bin/tool"), "new")
    }
}

final class AlertRetentionTests: XCTestCase {
    func testOldAlertsGoAndTheCountIsBounded() throws {
        let dir = NSTemporaryDirectory() + "mdatp-alerts-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try AlertStore(path: dir + "/alerts.db", jsonlPath: dir + "/alerts.jsonl")
        let hour: Int64 = 3_600_000_000_000
        for i in 0..<6 {
            let c = AlertCandidate(timeNs: Int64(i) * hour, source: "builtin:test", title: "t\(i)", description: "d", severity: "low",
                                   techniques: ["T1059"], dedupKey: "k\(i)", evidence: .object([]))
            _ = try store.record(c, nowNs: Int64(i) * hour)
        }
        // At hour 6, keep what was seen in the last 4.5 hours (hours 2-5), then at most 3 of those.
        XCTAssertEqual(try store.enforceRetention(nowNs: 6 * hour, maxAgeNs: 4 * hour + hour / 2, maxAlerts: 3), 3)
        let left = try store.list(limit: 100).map(\.title)
        XCTAssertEqual(left, ["t5", "t4", "t3"], "the most recently seen stay")
    }
}
