import MdatpConfig
import MdatpRoom
import MdatpSystem
import MdatpWire
import XCTest

final class WireTests: XCTestCase {
    func testEveryMessageRoundTrips() throws {
        let messages: [(Message, Bool)] = [
            (.ready, false), (.shutdown, false), (.selftestForbidden, false),
            (.heartbeat(Heartbeat([1, 2, 3])), false),
            (.collectorInfo(CollectorInfo(hookFamily: "tracepoint", programsAttached: 68, createdFlagCalibrated: true, skipped: "a,b")), false),
            (.query(uid: 1000, gid: 1000, request: Array("{\"verb\":\"events\"}".utf8)), true),
            (.openForScan(path: Array("/tmp/x".utf8)), false),
            (.openResult(status: 0), true), (.openResult(status: 13), false),
            (.quarantine(dev: 1, ino: 2, threat: Array("Eicar".utf8), path: Array("/tmp/e".utf8)), false),
            (.quarantineResult(status: 0, id: "0123456789abcdef0123456789abcdef"), false),
            (.denyExecutable(FileIdentity(dev: 0xfe00, ino: 42, generation: 7)), false), (.denyResult(status: 0), false),
            (.denyUpdate(FileIdentity(dev: 0xfe00, ino: 42, generation: nil)), false), (.denyRemove(FileIdentity(dev: 1, ino: 2, generation: 3)), false),
            (.execBlocking(enabled: true), false),
            (.loadDefinitions(path: Array("/var/opt/mdatp/definitions/staging-1".utf8)), false),
            (.execCheck(token: 7, pid: 1234), true), (.execVerdict(token: 7, allow: false), false),
            (.importDefinitions(path: Array("/var/opt/mdatp/definitions/extra/staging-1".utf8)), false),
            (.definitionsResult(status: 22, version: 0x0001_0000_0001_0000, reason: "not newer"), false),
        ]
        XCTAssertEqual(Set(messages.map { $0.0.type }), Set(MessageType.allCases))
        for (m, fd) in messages {
            XCTAssertEqual(try Message.decode(m.encode(pid: 7), hasDescriptor: fd), m)
        }
    }

    func testViolationsAreRefused() {
        let ready = Message.ready.encode(pid: 1)
        XCTAssertThrowsError(try Message.decode(Array(ready.prefix(10)), hasDescriptor: false))
        var unknown = ready
        unknown[0] = 99
        XCTAssertThrowsError(try Message.decode(unknown, hasDescriptor: false))
        XCTAssertThrowsError(try Message.decode(ready + [0], hasDescriptor: false), "length mismatch")
        XCTAssertThrowsError(try Message.decode(ready, hasDescriptor: true), "descriptor where none belongs")
        let q = Message.query(uid: 0, gid: 0, request: [1]).encode(pid: 1)
        XCTAssertThrowsError(try Message.decode(q, hasDescriptor: false), "query without its socket")
        var hb = Message.heartbeat(Heartbeat([1])).encode(pid: 1)
        hb.removeLast(8)
        hb[4] = UInt8(Heartbeat.byteCount - 8)
        XCTAssertThrowsError(try Message.decode(hb, hasDescriptor: false), "heartbeat of the wrong length")
    }

    func testOpenRequestsAreChecked() {
        XCTAssertThrowsError(try Message.decode(Message.openForScan(path: Array("relative".utf8)).encode(pid: 1), hasDescriptor: false))
        XCTAssertThrowsError(try Message.decode(Message.openForScan(path: Array("/a\0b".utf8)).encode(pid: 1), hasDescriptor: false))
        XCTAssertThrowsError(try Message.decode(Message.openResult(status: 0).encode(pid: 1), hasDescriptor: false), "success without the descriptor")
        XCTAssertThrowsError(try Message.decode(Message.openResult(status: 2).encode(pid: 1), hasDescriptor: true), "failure with a descriptor")
    }

    func testQuarantineRequestsAreChecked() {
        XCTAssertThrowsError(try Message.decode(Message.quarantine(dev: 1, ino: 2, threat: Array("bad name".utf8), path: Array("/x".utf8)).encode(pid: 1), hasDescriptor: false))
        XCTAssertThrowsError(try Message.decode(Message.quarantine(dev: 1, ino: 2, threat: Array("T".utf8), path: Array("x".utf8)).encode(pid: 1), hasDescriptor: false))
        XCTAssertThrowsError(try Message.decode(Message.quarantineResult(status: 0, id: "../../etc/passwd0000000000000000").encode(pid: 1), hasDescriptor: false))
    }

    func testCollectorInfoStringsAreSanitised() throws {
        var bytes = Message.collectorInfo(CollectorInfo(hookFamily: "tp", programsAttached: 1, createdFlagCalibrated: false, skipped: "")).encode(pid: 1)
        bytes[Message.headerBytes + 40] = 0x1b // ESC in the skipped list
        bytes[Message.headerBytes + 41] = 0x41
        guard case .collectorInfo(let info) = try Message.decode(bytes, hasDescriptor: false) else { return XCTFail() }
        XCTAssertEqual(info.skipped, "?A")
    }

    func testChannelCarriesADescriptor() throws {
        let (a, b) = try Sys.seqpacketPair()
        defer { Sys.close(a); Sys.close(b) }
        let (p, q) = try Sys.seqpacketPair()
        defer { Sys.close(p); Sys.close(q) }
        try Channel(fd: a).send(.query(uid: 5, gid: 6, request: [0x7b, 0x7d]), descriptor: p)
        guard case .message(.query(let uid, let gid, let req), let fd) = try Channel(fd: b).receive() else { return XCTFail() }
        XCTAssertEqual([uid, gid], [5, 6])
        XCTAssertEqual(req, [0x7b, 0x7d])
        XCTAssertGreaterThanOrEqual(fd, 0)
        try Sys.sendMessage(fd, [42])
        XCTAssertEqual(try Sys.receiveMessage(q, capacity: 8)?.bytes, [42])
        Sys.close(fd)
    }
}

/// Records the privileged calls instead of making them.
class RecordingOps: PrivilegeOps {
    var calls: [String] = []
    func clearSupplementaryGroups() throws(Errno) { calls.append("setgroups") }
    func setresgid(_ gid: UInt32) throws(Errno) { calls.append("setresgid \(gid)") }
    func dropBoundingAndAmbient(keeping: [Capability]) throws(Errno) { calls.append("bounding \(keeping.map(\.rawValue))") }
    func setresuid(_ uid: UInt32) throws(Errno) { calls.append("setresuid \(uid)") }
    func setCapabilities(_ caps: [Capability]) throws(Errno) { calls.append("capset \(caps.map(\.rawValue))") }
    func setNoNewPrivs() throws(Errno) { calls.append("no_new_privs") }
    func landlock(readOnly: [String], readWrite: [String]) throws(Errno) -> Int { calls.append("landlock ro=\(readOnly) rw=\(readWrite)"); return 4 }
    func seccomp(_ syscalls: [String], logOnly: Bool) throws(Errno) { calls.append("seccomp \(syscalls.count) log=\(logOnly)") }
    func setNiceness(_ n: Int32) throws(Errno) { calls.append("nice \(n)") }
}

final class SandboxOrderTests: XCTestCase {
    let paths = SuitePaths(prefix: "/p")

    func testWorkerSandboxIsInstalledInTheFixedOrder() throws {
        let ops = RecordingOps()
        _ = try RoomSandbox.enter(Rooms.edr, account: Account(name: "mdatp", uid: 999, gid: 995), paths: paths, seccompLogOnly: false, ops: ops)
        XCTAssertEqual(ops.calls, [
            "nice 10", "setgroups", "setresgid 995", "bounding []", "setresuid 999", "capset []", "no_new_privs",
            "landlock ro=[\"/dev/urandom\", \"/etc/passwd\", \"/etc/group\", \"/sys/fs/cgroup\"] rw=[\"/p/var/opt/mdatp/edr\"]",
            "seccomp \(Rooms.edr.syscalls.count) log=false",
        ])
    }

    func testCollectorEndsWithNoCapabilitiesAndNoFilesystem() throws {
        let ops = RecordingOps()
        _ = try RoomSandbox.enter(Rooms.collector, account: Account(name: "mdatp", uid: 999, gid: 995), paths: paths, seccompLogOnly: true, ops: ops)
        XCTAssertEqual(ops.calls[2], "bounding []")
        XCTAssertEqual(ops.calls[4], "capset []")
        XCTAssertEqual(ops.calls[6], "landlock ro=[] rw=[]")
        XCTAssertEqual(ops.calls.last, "seccomp \(Rooms.collector.syscalls.count) log=true")
    }

    func testAFailingStepStopsTheSequence() {
        final class FailingUid: RecordingOps {
            override func setresuid(_ uid: UInt32) throws(Errno) { throw Errno(1, "setresuid") }
        }
        let ops = FailingUid()
        XCTAssertThrowsError(try RoomSandbox.enter(Rooms.edr, account: Account(name: "mdatp", uid: 999, gid: 995), paths: paths, seccompLogOnly: false, ops: ops))
        XCTAssertEqual(ops.calls, ["nice 10", "setgroups", "setresgid 995", "bounding []"], "nothing after the failed step")
    }

    func testManifestsAreConsistent() {
        for m in Rooms.all {
            XCTAssertEqual(m.runsAs, .mdatp, m.name)
            XCTAssertEqual(m.effectiveCapabilityMask, 0, m.name)
            XCTAssertEqual(Set(m.syscalls).count, m.syscalls.count, "\(m.name): duplicate syscalls")
            XCTAssertFalse(m.syscalls.contains("personality"), "\(m.name): the self-test syscall must stay forbidden")
            XCTAssertFalse(m.syscalls.contains("execve"), "\(m.name): no room may exec")
            XCTAssertFalse(m.syscalls.contains("socket"), "\(m.name): no room opens sockets")
            for call in ["clone", "clone3", "fork", "vfork"] {
                XCTAssertFalse(m.syscalls.contains(call), "\(m.name): threads only, through threadSyscalls")
            }
            for call in ["kill", "tgkill", "tkill", "ptrace", "process_vm_writev"] {
                XCTAssertFalse(m.syscalls.contains(call), "\(m.name): no room may \(call)")
            }
            XCTAssertTrue(m.sends.contains(.ready))
            XCTAssertEqual(m.descriptors.first?.number, RoomFD.control)
        }
    }
}
