// Runs the real suite (watchdog, collector, EDR) from a temporary prefix and
// drives it with the real CLI. Needs root and BPF: in CI (CI=true) a refusal
// fails the test; elsewhere, without root, the tests skip and say why.
import Foundation
import Glibc
import MdatpJSON
import MdatpSystem
import XCTest

func requireRoot() throws {
    if getuid() == 0 { return }
    if ProcessInfo.processInfo.environment["CI"] == "true" {
        XCTFail("integration tests need root and BPF, and CI=true: they must run, not skip")
        throw XCTSkip("failed above")
    }
    throw XCTSkip("integration tests need root (they load BPF programs): run `sudo make test`")
}

enum Harness {
    static var binDir: String {
        if let d = ProcessInfo.processInfo.environment["MDATP_BIN_DIR"] { return d }
        // swift test without make: the build directory next to the test bundle.
        return Bundle.main.bundleURL.deletingLastPathComponent().path
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
}

final class Suite {
    let prefix: String
    let binDir: String
    let watchdogBinDir: String?
    var process: Process?
    let log: String

    init(name: String, config: String, watchdogBinDir: String? = nil) throws {
        prefix = try makeTempDir("mdatp-it-\(name)")
        binDir = Harness.binDir
        self.watchdogBinDir = watchdogBinDir
        log = prefix + "/watchdog.log"
        try FileManager.default.createDirectory(atPath: prefix + "/etc/opt/mdatp", withIntermediateDirectories: true)
        try writeConfig(config)
    }

    func writeConfig(_ text: String) throws {
        try text.write(toFile: prefix + "/etc/opt/mdatp/mdatp.json", atomically: true, encoding: .utf8)
    }

    func start(waitFor rooms: [String] = ["collector", "edr"]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binDir + "/mdatp-watchdog")
        p.arguments = ["--prefix", prefix] + (watchdogBinDir.map { ["--bin-dir", $0] } ?? [])
        FileManager.default.createFile(atPath: log, contents: nil)
        let fh = FileHandle(forWritingAtPath: log)!
        p.standardOutput = fh
        p.standardError = fh
        try p.run()
        process = p
        try waitUntil("rooms \(rooms) running", timeout: 90) { s in
            rooms.allSatisfy { name in self.room(name, in: s)?["state"]?.string == "running" }
        }
    }

    /// SIGTERM, then waits; returns the watchdog's exit status (nil if it had to be killed).
    @discardableResult
    func stop() -> Int32? {
        guard let p = process else { return nil }
        if !p.isRunning { return p.terminationStatus }
        kill(p.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(90)
        while p.isRunning && Date() < deadline { usleep(100_000) }
        if p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            return nil
        }
        p.waitUntilExit()
        return p.terminationReason == .exit ? p.terminationStatus : nil
    }

    var watchdogPid: Int32 { process?.processIdentifier ?? 0 }

    /// Asks for a fresh status dump and reads it.
    func status() -> JSON? {
        let path = prefix + "/var/opt/mdatp/status.json"
        if watchdogPid > 0 && FileManager.default.fileExists(atPath: path) {
            kill(watchdogPid, SIGUSR1)
            usleep(150_000)
        }
        guard let data = FileManager.default.contents(atPath: prefix + "/var/opt/mdatp/status.json") else { return nil }
        return try? JSON.parse([UInt8](data))
    }

    func room(_ name: String, in status: JSON?) -> JSON? {
        status?["rooms"]?.array?.first { $0["name"]?.string == name }
    }

    /// Polls the status until `ok`, failing with the log after `timeout` seconds.
    @discardableResult
    func waitUntil(_ what: String, timeout: Double, _ ok: (JSON) -> Bool) throws -> JSON {
        let deadline = Date().addingTimeInterval(timeout)
        var last: JSON?
        while Date() < deadline {
            if let s = status() {
                last = s
                if ok(s) { return s }
            }
            if let p = process, !p.isRunning { break }
            usleep(300_000)
        }
        throw HarnessError(description: "timed out waiting for \(what)\nlast status: \(last?.serialized(pretty: true) ?? "none")\nlog:\n\(tailOfLog())")
    }

    func tailOfLog() -> String {
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(40).joined(separator: "\n")
    }

    /// Runs the CLI with this suite's prefix.
    func cli(_ args: [String]) throws -> (code: Int32, out: String, err: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binDir + "/mdatp")
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        env["MDATP_PREFIX"] = prefix
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    /// Starts the CLI in the background (for commands that run until stopped or
    /// answer late); its standard output is the pipe returned.
    func startCLI(_ args: [String]) throws -> (Process, Pipe) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binDir + "/mdatp")
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        env["MDATP_PREFIX"] = prefix
        p.environment = env
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        return (p, out)
    }

    /// Waits until the threat history holds a record for `path` that `ok` accepts.
    @discardableResult
    func waitForThreat(path: String, timeout: Double = 20, _ ok: (JSON) -> Bool = { _ in true }) throws -> JSON {
        let deadline = Date().addingTimeInterval(timeout)
        var last = ""
        while Date() < deadline {
            let r = try cli(["threat", "list", "--limit", "1000", "--output", "json"])
            last = r.code == 0 ? r.out : r.err
            // A busy scanner answers "try again" (exit 69): ask again.
            if r.code == 0, let t = try JSON.parse(r.out)["threats"]?.array?.first(where: { $0["path"]?.string == path && ok($0) }) { return t }
            usleep(200_000)
        }
        throw HarnessError(description: "no matching threat for \(path): \(last)\n\(tailOfLog())")
    }

    /// Events of process `pid` in the store, oldest first.
    func events(pid: Int32, types: [String] = []) throws -> [JSON] {
        var args = ["events", "list", "--output", "json", "--limit", "10000", "--pid", String(pid)]
        for t in types { args += ["--type", t] }
        let r = try cli(args)
        guard r.code == 0 else { throw HarnessError(description: "mdatp events list: \(r.code) \(r.err)") }
        return r.out.split(separator: "\n").compactMap { try? JSON.parse(String($0)) }
    }

    /// Waits until the store holds an event matching `match` (events flow asynchronously).
    func waitForEvent(pid: Int32, type: String, timeout: Double = 20, _ match: (JSON) -> Bool = { _ in true }) throws -> JSON {
        let deadline = Date().addingTimeInterval(timeout)
        var seen: [JSON] = []
        while Date() < deadline {
            seen = try events(pid: pid, types: [type])
            if let e = seen.first(where: match) { return e }
            usleep(200_000)
        }
        throw HarnessError(description: "no \(type) event of pid \(pid) matched; saw \(seen.count): \(seen.suffix(5).map { $0.serialized() })\nlog:\n\(tailOfLog())")
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(atPath: prefix)
    }
}

func makeTempDir(_ name: String) throws -> String {
    var template = Array("/tmp/\(name)-XXXXXX".utf8CString)
    guard let p = mkdtemp(&template) else { throw HarnessError(description: "mkdtemp failed") }
    let path = String(cString: p)
    chmod(path, 0o755)
    return realPath(path)
}

func realPath(_ p: String) -> String {
    guard let r = realpath(p, nil) else { return p }
    defer { free(r) }
    return String(cString: r)
}

func mdatpUid() -> UInt32? { Sys.lookupUser("mdatp")?.uid }
