// The supervisor of one room: a pure state × event function. The watchdog's
// glue feeds it events (spawned, ready, died, tick, stop) and carries out the
// actions it returns; nothing here touches the system, so every transition is
// tested exhaustively (Tests/WatchdogTests).
import MdatpConfig

public enum RoomState: Equatable, Sendable {
    case idle                                  // not started
    case spawning                              // spawn requested
    case starting(pid: Int32, since: Double)   // running, sandbox not yet reported
    case running(pid: Int32, readySince: Double)
    case backoff(until: Double)                // dead, waiting to respawn
    case stopping(pid: Int32, deadline: Double)
    case restarting(pid: Int32, deadline: Double) // stopping on purpose, to start again at once
    case stopped                               // stopped on request
    case failed(reason: String)                // gave up: reported, not looped

    public var name: String {
        switch self {
        case .idle: return "idle"
        case .spawning: return "spawning"
        case .starting: return "starting"
        case .running: return "running"
        case .backoff: return "backoff"
        case .stopping: return "stopping"
        case .restarting: return "restarting"
        case .stopped: return "stopped"
        case .failed: return "failed"
        }
    }

    public var pid: Int32? {
        switch self {
        case .starting(let p, _), .running(let p, _), .stopping(let p, _), .restarting(let p, _): return p
        default: return nil
        }
    }
}

public enum ExitStatus: Equatable, Sendable {
    case exited(Int32)
    case signaled(Int32)

    public var description: String {
        switch self {
        case .exited(let c): return "exit code \(c)"
        case .signaled(let s): return "signal \(s) (\(signalName(s)))"
        }
    }
}

public func signalName(_ s: Int32) -> String {
    switch s {
    case 1: return "SIGHUP"
    case 2: return "SIGINT"
    case 6: return "SIGABRT"
    case 9: return "SIGKILL"
    case 11: return "SIGSEGV"
    case 15: return "SIGTERM"
    case 31: return "SIGSYS, seccomp"
    default: return "signal \(s)"
    }
}

public enum SupervisorEvent: Equatable, Sendable {
    case start(now: Double)
    case spawned(pid: Int32, now: Double)
    case spawnFailed(reason: String, now: Double)
    case ready(now: Double)
    case died(ExitStatus, now: Double)
    case tick(now: Double)
    case stop(now: Double)
    /// The operator's change needs a new process (enforcement level, definitions):
    /// not a death, it does not count against the crash-loop budget.
    case restart(now: Double)
    /// A protocol violation or a stuck start: the glue kills, death follows.
    case misbehaved(reason: String, now: Double)
    /// Operator reset (config reload): a failed room may run again.
    case reset(now: Double)
}

public enum SupervisorAction: Equatable, Sendable {
    case spawn
    case kill(pid: Int32, signal: Int32)
    case sendShutdown(pid: Int32)
    case report(String)
}

/// One room's supervision record: its state and the history the policy needs.
public struct Supervision: Equatable, Sendable {
    public var state: RoomState = .idle
    public var deaths: [Double] = []       // times of deaths within the window
    public var backoff: Double = 0         // the next delay
    public var restarts = 0
    public var lastExit = ""
    public var lastSpawnAt: Double = -1e9
    public init() {}
}

public struct Supervisor: Sendable {
    public let policy: RestartPolicy
    /// A room that has not said ready after this long is killed.
    public let readyTimeout: Double
    /// How long a stopping room may drain before it is killed.
    public let stopGrace: Double

    public init(policy: RestartPolicy, readyTimeout: Double = 30, stopGrace: Double = 10) {
        self.policy = policy
        self.readyTimeout = readyTimeout
        self.stopGrace = stopGrace
    }

    public func transition(_ s: Supervision, _ e: SupervisorEvent) -> (Supervision, [SupervisorAction]) {
        var n = s
        switch (s.state, e) {
        // Starting up.
        case (.idle, .start), (.stopped, .start):
            n.state = .spawning
            return (n, [.spawn])
        case (.spawning, .spawned(let pid, let now)):
            n.state = .starting(pid: pid, since: now)
            n.lastSpawnAt = now
            return (n, [])
        case (.spawning, .spawnFailed(let reason, let now)):
            n.lastExit = "spawn failed: \(reason)"
            return death(n, now: now, badConfig: false)
        case (.starting(let pid, let since), .ready(let now)):
            _ = since
            n.state = .running(pid: pid, readySince: now)
            return (n, [])

        // Deaths.
        case (.starting, .died(let status, let now)):
            n.lastExit = status.description
            return death(n, now: now, badConfig: status == .exited(100))
        case (.running(_, let readySince), .died(let status, let now)):
            n.lastExit = status.description
            if now - readySince >= policy.stableSeconds { n.backoff = 0 }
            return death(n, now: now, badConfig: status == .exited(100))
        case (.stopping, .died(let status, _)):
            n.lastExit = status.description
            n.state = .stopped
            return (n, [])
        case (.restarting, .died(let status, _)):
            n.lastExit = status.description
            n.state = .spawning
            n.restarts += 1
            return (n, [.spawn])

        // Misbehaviour: kill; the death that follows is handled above.
        case (.starting(let pid, _), .misbehaved(let reason, _)), (.running(let pid, _), .misbehaved(let reason, _)):
            n.lastExit = reason
            return (n, [.kill(pid: pid, signal: 9), .report("room killed: \(reason)")])

        // Time passing.
        case (.starting(let pid, let since), .tick(let now)) where now - since > readyTimeout:
            return (n, [.kill(pid: pid, signal: 9), .report("room not ready after \(Int(readyTimeout)) s: killed")])
        case (.backoff(let until), .tick(let now)) where now >= until:
            n.state = .spawning
            n.restarts += 1
            return (n, [.spawn])
        case (.stopping(let pid, let deadline), .tick(let now)) where now >= deadline,
             (.restarting(let pid, let deadline), .tick(let now)) where now >= deadline:
            return (n, [.kill(pid: pid, signal: 9), .report("room did not stop in time: killed")])

        // Stopping.
        case (.starting(let pid, _), .stop(let now)), (.running(let pid, _), .stop(let now)):
            n.state = .stopping(pid: pid, deadline: now + stopGrace)
            return (n, [.sendShutdown(pid: pid)])
        case (.idle, .stop), (.backoff, .stop), (.spawning, .stop):
            n.state = .stopped
            return (n, [])
        case (.restarting(let pid, _), .stop(let now)):
            n.state = .stopping(pid: pid, deadline: now + stopGrace)
            return (n, [])

        // Restarting on purpose: drain like a stop, then spawn without a backoff.
        case (.running(let pid, _), .restart(let now)):
            n.state = .restarting(pid: pid, deadline: now + stopGrace)
            return (n, [.sendShutdown(pid: pid)])
        case (.starting(let pid, _), .restart(let now)):
            // Not serving yet, so it cannot drain: ended now.
            n.state = .restarting(pid: pid, deadline: now + stopGrace)
            return (n, [.kill(pid: pid, signal: 15)])
        case (.backoff, .restart):
            n.state = .spawning
            n.restarts += 1
            return (n, [.spawn])

        // Reset after reload: a failed room starts over with a clean history.
        case (.failed, .reset):
            n = Supervision()
            n.restarts = s.restarts
            n.lastExit = s.lastExit
            n.state = .spawning
            return (n, [.spawn])

        default:
            return (s, [])
        }
    }

    /// A death: failed if bad config or K deaths in T seconds, else back off.
    func death(_ s: Supervision, now: Double, badConfig: Bool) -> (Supervision, [SupervisorAction]) {
        var n = s
        n.deaths = (s.deaths + [now]).filter { now - $0 < policy.windowSeconds }
        if badConfig {
            n.state = .failed(reason: "bad configuration (\(s.lastExit))")
            return (n, [.report("room failed: bad configuration, not restarted")])
        }
        if n.deaths.count >= policy.maxDeaths {
            n.state = .failed(reason: "\(n.deaths.count) deaths in \(Int(policy.windowSeconds)) s, last: \(n.lastExit)")
            return (n, [.report("room failed: \(n.deaths.count) deaths in \(Int(policy.windowSeconds)) s")])
        }
        // The delay doubles with each death until the room has been ready for
        // stableSeconds (the running+died case resets it), capped.
        let delay = min(policy.capSeconds, max(policy.floorSeconds, n.backoff))
        n.backoff = min(policy.capSeconds, delay * 2)
        // Never two spawns closer than the floor.
        let until = max(now + delay, s.lastSpawnAt + policy.floorSeconds)
        n.state = .backoff(until: until)
        return (n, [.report("room died (\(n.lastExit)); restart in \(formatSeconds(until - now))")])
    }
}

func formatSeconds(_ d: Double) -> String {
    let tenths = Int((d * 10).rounded())
    return "\(tenths / 10).\(tenths % 10) s"
}
