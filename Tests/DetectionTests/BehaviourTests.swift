import Detection
import XCTest

final class BehaviourTests: XCTestCase {
    func exec(_ exe: String, _ argv: [String], pid: UInt32 = 100, ppid: UInt32 = 10, t: Int64 = 1_000, stdio: [StdioKind] = [.terminal, .terminal, .terminal],
              uid: UInt32 = 0, euid: UInt32 = 0, dev: UInt32 = 0, ino: UInt64 = 0) -> BehaviourEvent {
        var e = BehaviourEvent(kind: .exec)
        e.timeNs = t
        e.process = ProcessView(pid: pid, ppid: ppid, uid: uid, euid: euid, exe: exe, argv: argv)
        e.stdio = stdio
        e.exeDev = dev
        e.exeIno = ino
        return e
    }

    func file(_ kind: BehaviourEventKind, _ path: String, by exe: String = "/usr/bin/cp", t: Int64 = 500, dev: UInt32 = 0, ino: UInt64 = 0, mode: UInt32 = 0) -> BehaviourEvent {
        var e = BehaviourEvent(kind: kind)
        e.timeNs = t
        e.process = ProcessView(pid: 50, ppid: 10, exe: exe)
        e.path = path
        e.fileDev = dev
        e.fileIno = ino
        e.mode = mode
        return e
    }

    func testTheCatalogueHasAtLeastFifteenDetectionsEachWithATechnique() {
        XCTAssertGreaterThanOrEqual(BehaviourEngine.catalogue.count, 15)
        for b in BehaviourEngine.catalogue {
            XCTAssertFalse(b.techniques.isEmpty, b.name)
            for t in b.techniques { XCTAssertTrue(t.hasPrefix("T1") && t.count >= 5, "\(b.name): \(t)") }
        }
        XCTAssertEqual(Set(BehaviourEngine.catalogue.map(\.name)).count, BehaviourEngine.catalogue.count)
    }

    func testDroppedAndExecutedInEitherArrivalOrder() {
        var b = BehaviourEngine()
        XCTAssertEqual(b.evaluate(file(.fileCreate, "/tmp/x/payload", t: 100, dev: 8, ino: 77)).count, 0)
        let hits = b.evaluate(exec("/tmp/x/payload", ["payload"], t: 150, dev: 8, ino: 77))
        XCTAssertEqual(hits.map(\.name), ["dropped_and_executed"])
        // The write reaching us after the exec (rings read one after the other).
        var c = BehaviourEngine()
        XCTAssertEqual(c.evaluate(exec("/tmp/y/payload", ["payload"], pid: 200, t: 150, dev: 8, ino: 78)).count, 0)
        let late = c.evaluate(file(.fileOpenWrite, "/tmp/y/payload", t: 100, dev: 8, ino: 78))
        XCTAssertEqual(late.map(\.name), ["dropped_and_executed"])
        XCTAssertEqual(late.first?.process?.pid, 200, "the alert is about the executed process")
        // Outside temporary directories, or written long before: nothing.
        var d = BehaviourEngine()
        _ = d.evaluate(file(.fileCreate, "/usr/local/bin/tool", t: 100, dev: 8, ino: 79))
        XCTAssertTrue(d.evaluate(exec("/usr/local/bin/tool", ["tool"], t: 150, dev: 8, ino: 79)).isEmpty)
        _ = d.evaluate(file(.fileCreate, "/tmp/old", t: 0, dev: 8, ino: 80))
        XCTAssertTrue(d.evaluate(exec("/tmp/old", ["old"], t: BehaviourEngine.droppedWindowNs + 10, dev: 8, ino: 80)).isEmpty)
    }

    func testDownloadPipedToAShellInEitherOrder() {
        var b = BehaviourEngine()
        XCTAssertTrue(b.evaluate(exec("/usr/bin/curl", ["curl", "-s", "http://x/i.sh"], pid: 11, ppid: 5, t: 100)).isEmpty)
        XCTAssertEqual(b.evaluate(exec("/usr/bin/dash", ["sh"], pid: 12, ppid: 5, t: 101, stdio: [.pipe, .terminal, .terminal])).map(\.name), ["download_piped_to_shell"])
        var c = BehaviourEngine()
        XCTAssertTrue(c.evaluate(exec("/usr/bin/bash", ["bash"], pid: 12, ppid: 6, t: 100, stdio: [.pipe, .terminal, .terminal])).isEmpty)
        let h = c.evaluate(exec("/usr/bin/wget", ["wget", "-qO-", "https://x/i.sh"], pid: 11, ppid: 6, t: 101))
        XCTAssertEqual(h.map(\.name), ["download_piped_to_shell"])
        XCTAssertEqual(h.first?.process?.exe, "/usr/bin/bash")
        // A shell reading a pipe without a download beside it is nothing.
        var d = BehaviourEngine()
        XCTAssertTrue(d.evaluate(exec("/usr/bin/dash", ["sh"], pid: 12, ppid: 7, t: 101, stdio: [.pipe, .terminal, .terminal])).isEmpty)
    }

    func testReverseShellNeedsASocketOnStdio() {
        var b = BehaviourEngine()
        XCTAssertEqual(b.evaluate(exec("/usr/bin/bash", ["bash", "-i"], stdio: [.socket, .socket, .socket])).map(\.name), ["reverse_shell"])
        XCTAssertEqual(b.evaluate(exec("/usr/bin/python3.11", ["python3"], stdio: [.terminal, .socket, .terminal])).map(\.name), ["reverse_shell"])
        XCTAssertTrue(b.evaluate(exec("/usr/bin/bash", ["bash"], stdio: [.pipe, .pipe, .pipe])).isEmpty)
        XCTAssertTrue(b.evaluate(exec("/usr/sbin/nginx", ["nginx"], stdio: [.socket, .socket, .terminal])).isEmpty)
    }

    func testPortScanCountsDistinctPortsPerProcessAndHostWithinTheWindow() {
        var b = BehaviourEngine()
        var fired: [BehaviourHit] = []
        for port in 0..<30 {
            var e = BehaviourEvent(kind: .connect)
            e.timeNs = Int64(port) * 1_000_000
            e.process = ProcessView(pid: 9, exe: "/usr/bin/nmap")
            e.remoteAddress = "10.0.0.5"
            e.remotePort = UInt16(1000 + port)
            e.result = -111
            fired += b.evaluate(e)
        }
        XCTAssertEqual(fired.map(\.name), ["port_scan"], "once, at the threshold")
        // Slow connections spread beyond the window are not a scan.
        var c = BehaviourEngine()
        for port in 0..<30 {
            var e = BehaviourEvent(kind: .connect)
            e.timeNs = Int64(port) * (BehaviourEngine.portScanWindowNs / 5)
            e.process = ProcessView(pid: 9, exe: "/usr/bin/app")
            e.remoteAddress = "10.0.0.5"
            e.remotePort = UInt16(2000 + port)
            XCTAssertTrue(c.evaluate(e).isEmpty)
        }
    }

    func testStateStaysBoundedUnderAFlood() {
        var b = BehaviourEngine()
        for i in 0..<100_000 {
            _ = b.evaluate(file(.fileCreate, "/tmp/f\(i)", t: Int64(i), dev: 1, ino: UInt64(i)))
            var e = BehaviourEvent(kind: .connect)
            e.process = ProcessView(pid: UInt32(i), exe: "/x")
            e.remoteAddress = "10.0.\(i % 256).1"
            e.remotePort = 80
            _ = b.evaluate(e)
        }
        XCTAssertLessThanOrEqual(b.stateEntries, 8192 + 2048 + 1024 + 1024 + 1024)
    }

    func testSmallerDetections() {
        var b = BehaviourEngine()
        XCTAssertEqual(b.evaluate(exec("/usr/bin/nsenter", ["nsenter", "--target", "1", "--mount", "--", "sh"])).map(\.name), ["container_escape"])
        XCTAssertTrue(b.evaluate(exec("/usr/bin/nsenter", ["nsenter", "-t", "4242", "-n", "ip", "a"])).isEmpty)
        XCTAssertEqual(b.evaluate(file(.fileChmod, "/tmp/x", mode: 0o104755)).map(\.name), ["setuid_created"])
        XCTAssertTrue(b.evaluate(file(.fileChmod, "/tmp/dir", mode: 0o042775)).isEmpty, "setgid directories are ordinary")
        XCTAssertEqual(b.evaluate(file(.fileOpenRead, "/etc/shadow", by: "/usr/bin/cat")).map(\.name), ["shadow_file_read"])
        XCTAssertTrue(b.evaluate(file(.fileOpenRead, "/etc/shadow", by: "/usr/sbin/sshd")).isEmpty)
        XCTAssertEqual(b.evaluate(file(.fileCreate, "/etc/cron.d/job")).map(\.name), ["cron_persistence"])
        XCTAssertTrue(b.evaluate(file(.fileCreate, "/etc/cron.d/job", by: "/usr/bin/dpkg")).isEmpty, "package installs are not persistence")
        XCTAssertEqual(b.evaluate(file(.fileUnlink, "/home/a/.bash_history", by: "/usr/bin/rm")).map(\.name), ["history_tampering"])
        XCTAssertEqual(b.evaluate(file(.fileUnlink, "/var/log/auth.log", by: "/usr/bin/rm")).map(\.name), ["log_tampering"])
        XCTAssertTrue(b.evaluate(file(.fileUnlink, "/var/log/auth.log.2.gz", by: "/usr/sbin/logrotate")).isEmpty)
        var sig = BehaviourEvent(kind: .signalSuite)
        sig.process = ProcessView(pid: 77, exe: "/usr/bin/kill")
        sig.args = [9, 0, 0, 0]
        XCTAssertEqual(b.evaluate(sig).map(\.name), ["sensor_tampering"])
        sig.args = [10, 0, 0, 0]
        XCTAssertTrue(b.evaluate(sig).isEmpty, "SIGUSR1 asks the watchdog for its status")
        var mod = BehaviourEvent(kind: .moduleLoad)
        mod.process = ProcessView(pid: 5, exe: "/usr/bin/python3")
        mod.args = [1, 0, 0, 0]
        mod.strings = ["/tmp/rootkit.ko"]
        let m = b.evaluate(mod)
        XCTAssertEqual(m.map(\.name), ["kernel_module_load"])
        XCTAssertEqual(m.first?.severity, .high, "a module from /tmp is worse")
        var pt = BehaviourEvent(kind: .ptrace)
        pt.process = ProcessView(pid: 5, uid: 1000, exe: "/usr/bin/gdb")
        pt.args = [16, 0, 0, 0]
        pt.targetPid = 6
        pt.targetUid = 0
        XCTAssertEqual(b.evaluate(pt).map(\.name), ["ptrace_other_user"])
        pt.targetUid = 1000
        XCTAssertTrue(b.evaluate(pt).isEmpty, "debugging one's own process")
    }
}

final class ContainerIdentityTests: XCTestCase {
    let id = String(repeating: "ab12", count: 16)

    func testRuntimesAndPodsFromCgroupPaths() {
        XCTAssertEqual(ContainerIdentity.parse("/system.slice/docker-\(id).scope"), ContainerIdentity(runtime: "docker", containerId: id, podUid: ""))
        XCTAssertEqual(ContainerIdentity.parse("/docker/\(id)"), ContainerIdentity(runtime: "docker", containerId: id, podUid: ""))
        XCTAssertEqual(ContainerIdentity.parse("/machine.slice/libpod-\(id).scope/container"), ContainerIdentity(runtime: "podman", containerId: id, podUid: ""))
        XCTAssertEqual(ContainerIdentity.parse("/system.slice/crio-\(id).scope"), ContainerIdentity(runtime: "cri-o", containerId: id, podUid: ""))
        let k = ContainerIdentity.parse("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1c2d3e4f_5a6b_7c8d_9e0f_a1b2c3d4e5f6.slice/cri-containerd-\(id).scope")
        XCTAssertEqual(k, ContainerIdentity(runtime: "containerd", containerId: id, podUid: "1c2d3e4f-5a6b-7c8d-9e0f-a1b2c3d4e5f6"))
        XCTAssertEqual(ContainerIdentity.parse("/kubepods/besteffort/pod1c2d3e4f-5a6b-7c8d-9e0f-a1b2c3d4e5f6/\(id)")?.podUid, "1c2d3e4f-5a6b-7c8d-9e0f-a1b2c3d4e5f6")
        XCTAssertNil(ContainerIdentity.parse("/user.slice/user-1000.slice/session-3.scope"))
        XCTAssertNil(ContainerIdentity.parse("/system.slice/docker-notanid.scope"))
        XCTAssertNil(ContainerIdentity.parse("/"))
    }
}
