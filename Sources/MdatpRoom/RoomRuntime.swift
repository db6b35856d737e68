// What every room process shares: arguments, exit codes, logging, the
// control channel and its heartbeat clock.
import Glibc
import MdatpSystem
import MdatpWire
import MdatpRing
import MdatpConfig

/// Exit-code contract with the watchdog.
public enum RoomExit {
    public static let ok: Int32 = 0
    /// Bad configuration or arguments: restarting will not help.
    public static let badConfig: Int32 = 100
    /// Transient failure: restart with back-off.
    public static let transient: Int32 = 111
}

public func roomLog(_ room: String, _ message: String) {
    let line = "mdatp-\(room): \(message)\n"
    _ = line.withCString { Glibc.write(2, $0, strlen($0)) }
}

public func roomFail(_ room: String, _ message: String, code: Int32) -> Never {
    roomLog(room, "fatal: " + message)
    exit(code)
}

/// `--key value` pairs; bare `--flag` is "1".
public struct RoomArguments: Sendable {
    public let values: [String: [String]]

    public init(_ argv: [String]) {
        var v: [String: [String]] = [:]
        var i = 1
        while i < argv.count {
            let a = argv[i]
            if a.hasPrefix("--") {
                let key = String(a.dropFirst(2))
                if i + 1 < argv.count && !argv[i + 1].hasPrefix("--") {
                    v[key, default: []].append(argv[i + 1])
                    i += 2
                } else {
                    v[key, default: []].append("1")
                    i += 1
                }
            } else {
                i += 1
            }
        }
        values = v
    }

    public func string(_ k: String) -> String? { values[k]?.last }
    public func all(_ k: String) -> [String] { values[k] ?? [] }
    public func int(_ k: String, _ d: Int) -> Int { string(k).flatMap { Int($0) } ?? d }
    public func double(_ k: String, _ d: Double) -> Double { string(k).flatMap { Double($0) } ?? d }
    public func flag(_ k: String) -> Bool { string(k) == "1" }
}

/// Heartbeat timing for a room loop.
public struct HeartbeatClock {
    let interval: Double
    var last: Double

    public init(interval: Double) {
        self.interval = interval
        last = Sys.monotonicSeconds()
    }

    /// True once per interval.
    public mutating func due() -> Bool {
        let now = Sys.monotonicSeconds()
        if now - last >= interval {
            last = now
            return true
        }
        return false
    }
}

/// Runs the forbidden-syscall self-test: with the sandbox in place the
/// kernel kills the process here and the watchdog sees SIGSYS.
public func sandboxSelftest(_ room: String) -> Never {
    roomLog(room, "sandbox self-test: calling a forbidden syscall")
    let rc = Sys.forbiddenSyscallProbe()
    roomFail(room, "sandbox self-test: forbidden syscall returned \(rc): seccomp is not enforcing", code: 1)
}

/// The opening every room shares, before anything of its own: its arguments and
/// paths, its process title, dying with the watchdog, the mdatp account.
public struct RoomStart {
    public let name: String
    public let args: RoomArguments
    public let paths: SuitePaths
    public let control: Channel
    public let account: Account

    public static func begin(_ manifest: RoomManifest) -> RoomStart {
        let args = RoomArguments(CommandLine.arguments)
        Sys.setThreadName(manifest.executable)
        // A CLI client that hangs up before its answer is written is an EPIPE for
        // that reply, not the end of the room.
        signal(SIGPIPE, SIG_IGN)
        do throws(Errno) { try Sys.setParentDeathSignal(SIGKILL) } catch { roomFail(manifest.name, "\(error)", code: RoomExit.transient) }
        guard let account = Sys.lookupUser("mdatp") else { roomFail(manifest.name, "user mdatp does not exist", code: RoomExit.badConfig) }
        return RoomStart(name: manifest.name, args: args, paths: SuitePaths(prefix: args.string("prefix") ?? ""),
                         control: Channel(fd: RoomFD.control), account: account)
    }

    /// A consumer's next step: map its ring (inherited at fixed descriptors), then
    /// install the sandbox. Fatal (transient) if either fails.
    public func mapRingAndSandbox(_ manifest: RoomManifest) -> RingConsumer {
        do throws(Errno) {
            let ring = try RingFiles.mapConsumer(dataReadOnly: RoomFD.ringData, cursor: RoomFD.ringCursor, wake: RoomFD.ringWake)
            let argumentPaths = manifest.readOnlyArguments.compactMap { args.string($0) }.filter { $0.hasPrefix("/") }
            _ = try RoomSandbox.enter(manifest, account: account, paths: paths, seccompLogOnly: args.flag("seccomp-log"), argumentPaths: argumentPaths)
            return ring
        } catch {
            roomFail(name, "setup: \(error)", code: RoomExit.transient)
        }
    }

    /// Tells the watchdog the sandbox is in place.
    public func ready() {
        do throws(Errno) { try control.send(.ready) } catch { roomFail(name, "\(error)", code: RoomExit.transient) }
    }
}

extension RoomStart {
    /// The next control message for this room to act on. What every room does
    /// alike is done here: a closed channel ends the room (the watchdog is
    /// gone), the sandbox self-test runs, and a violation or a message not in
    /// the manifest's `receives` is fatal.
    public func nextControlMessage(_ manifest: RoomManifest) -> (Message, descriptor: Int32) {
        switch try? control.receive() {
        case .message(.selftestForbidden, _)? where manifest.receives.contains(.selftestForbidden):
            sandboxSelftest(name)
        case .message(let m, let fd)? where manifest.receives.contains(m.type):
            return (m, fd)
        case .message(let m, let fd)?:
            if fd >= 0 { Sys.close(fd) }
            roomFail(name, "unexpected message \(m.type)", code: 1)
        case .violation(let v)?:
            roomFail(name, "\(v)", code: 1)
        case .closed?, nil:
            exit(RoomExit.ok)
        }
    }
}
