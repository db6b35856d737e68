import MdatpConfig
import MdatpWire
@testable import Watchdog
import XCTest

final class SupervisorTests: XCTestCase {
    let policy: RestartPolicy = {
        var p = RestartPolicy()
        p.floorSeconds = 1
        p.capSeconds = 8
        p.stableSeconds = 30
        p.maxDeaths = 5
        p.windowSeconds = 60
        return p
    }()
    var sup: Supervisor { Supervisor(policy: policy, readyTimeout: 30, stopGrace: 10) }

    func run(_ s: Supervision, _ events: [SupervisorEvent]) -> (Supervision, [SupervisorAction]) {
        var cur = s
        var all: [SupervisorAction] = []
        for e in events {
            let (n, a) = sup.transition(cur, e)
            cur = n
            all += a
        }
        return (cur, all)
    }

    func started(pid: Int32 = 10, at t: Double = 0) -> Supervision {
        run(Supervision(), [.start(now: t), .spawned(pid: pid, now: t), .ready(now: t + 0.1)]).0
    }

    // MARK: exhaustive

    static let states: [RoomState] = [
        .idle, .spawning, .starting(pid: 7, since: 0), .running(pid: 7, readySince: 0), .backoff(until: 5),
        .stopping(pid: 7, deadline: 10), .restarting(pid: 7, deadline: 10), .stopped, .failed(reason: "x"),
    ]
    static let events: [SupervisorEvent] = [
        .start(now: 1), .spawned(pid: 8, now: 1), .spawnFailed(reason: "e", now: 1), .ready(now: 1),
        .died(.exited(1), now: 1), .died(.signaled(9), now: 1), .died(.exited(100), now: 1),
        .tick(now: 1), .tick(now: 100), .stop(now: 1), .misbehaved(reason: "m", now: 1), .reset(now: 1), .restart(now: 1),
    ]

    func testEveryStateAndEventKeepsTheInvariants() {
        for state in Self.states {
            for event in Self.events {
                var s = Supervision()
                s.state = state
                let (n, actions) = sup.transition(s, event)
                let label = "\(state) × \(event)"
                // A spawn is asked for exactly when the room enters `spawning`.
                XCTAssertEqual(actions.contains(.spawn), n.state == .spawning && s.state != .spawning, label)
                // Only the current process is ever signalled.
                for case .kill(let pid, _) in actions { XCTAssertEqual(pid, state.pid, label) }
                for case .sendShutdown(let pid) in actions { XCTAssertEqual(pid, state.pid, label) }
                // Failed is terminal except for an operator reset.
                if case .failed = state, event != .reset(now: 1) { XCTAssertEqual(n, s, label) }
                // Deaths of a live room always end in backoff or failed.
                if case .died = event, state.pid != nil, state != .stopping(pid: 7, deadline: 10), state != .restarting(pid: 7, deadline: 10) {
                    switch n.state {
                    case .backoff(let until): XCTAssertGreaterThanOrEqual(until, 1 + policy.floorSeconds - 1e-9, label)
                    case .failed: break
                    default: XCTFail("death led to \(n.state): \(label)")
                    }
                }
                // Events that do not belong to a state change nothing.
                if actions.isEmpty && n.state == s.state { XCTAssertEqual(n, s, label) }
            }
        }
    }

    // MARK: scenarios

    func testStartSpawnReady() {
        let (s, a) = run(Supervision(), [.start(now: 0)])
        XCTAssertEqual(s.state, .spawning)
        XCTAssertEqual(a, [.spawn])
        let (s2, _) = run(s, [.spawned(pid: 42, now: 0), .ready(now: 0.5)])
        XCTAssertEqual(s2.state, .running(pid: 42, readySince: 0.5))
    }

    func testKilledStableRoomRestartsAfterTheFloor() {
        var s = started(at: 0)
        var (n, a) = sup.transition(s, .died(.signaled(9), now: 100))
        XCTAssertEqual(n.state, .backoff(until: 101))
        XCTAssertEqual(n.lastExit, "signal 9 (SIGKILL)")
        XCTAssertTrue(a.contains(where: { if case .report = $0 { return true }; return false }))
        (n, a) = sup.transition(n, .tick(now: 100.5))
        XCTAssertEqual(a, [])
        (n, a) = sup.transition(n, .tick(now: 101))
        XCTAssertEqual(a, [.spawn])
        XCTAssertEqual(n.restarts, 1)
        s = n
        _ = s
    }

    func testBackoffDoublesWhileItDiesBeforeReadyAndIsCapped() {
        var s = run(Supervision(), [.start(now: 0), .spawned(pid: 1, now: 0)]).0
        var t = 0.0
        var delays: [Double] = []
        for i in 0..<4 {
            t += 0.1
            s = sup.transition(s, .died(.exited(1), now: t)).0
            guard case .backoff(let until) = s.state else { return XCTFail("death \(i): \(s.state)") }
            delays.append(until - t)
            t = until
            s = run(s, [.tick(now: t), .spawned(pid: Int32(2 + i), now: t)]).0
        }
        XCTAssertEqual(delays.map { ($0 * 10).rounded() / 10 }, [1, 2, 4, 8])
        XCTAssertEqual(s.restarts, 4)
    }

    func testBackoffResetsAfterTheRoomWasReadyForStableSeconds() {
        var s = run(Supervision(), [.start(now: 0), .spawned(pid: 1, now: 0)]).0
        s = sup.transition(s, .died(.exited(1), now: 0.1)).0   // delay 1, next 2
        s = run(s, [.tick(now: 1.1), .spawned(pid: 2, now: 1.1), .ready(now: 1.2)]).0
        XCTAssertEqual(s.backoff, 2)
        s = sup.transition(s, .died(.exited(1), now: 40)).0     // ready 38.8 s >= 30: reset
        XCTAssertEqual(s.state, .backoff(until: 41))
    }

    func testKDeathsInTheWindowMarkTheRoomFailed() {
        var s = run(Supervision(), [.start(now: 0), .spawned(pid: 1, now: 0)]).0
        var t = 0.0
        for i in 0..<5 {
            t += 0.5
            s = sup.transition(s, .died(.exited(1), now: t)).0
            if i < 4 {
                guard case .backoff(let until) = s.state else { return XCTFail() }
                t = until
                s = run(s, [.tick(now: t), .spawned(pid: Int32(i + 2), now: t)]).0
            }
        }
        guard case .failed(let reason) = s.state else { return XCTFail("\(s.state)") }
        XCTAssertTrue(reason.contains("5 deaths"))
        // Failed stays failed: no respawn loop.
        XCTAssertEqual(sup.transition(s, .tick(now: t + 1000)).1, [])
        XCTAssertEqual(sup.transition(s, .start(now: t + 1000)).1, [])
    }

    func testDeathsOutsideTheWindowDoNotAccumulate() {
        var s = started(at: 0)
        for i in 0..<10 {
            let t = Double(i) * 100 + 50
            s = sup.transition(s, .died(.exited(1), now: t)).0
            guard case .backoff(let until) = s.state else { return XCTFail("\(i): \(s.state)") }
            s = run(s, [.tick(now: until), .spawned(pid: Int32(i + 20), now: until), .ready(now: until)]).0
        }
        XCTAssertEqual(s.state.name, "running")
    }

    func testBadConfigurationExitIsNotRestarted() {
        let s = sup.transition(started(), .died(.exited(100), now: 5)).0
        guard case .failed(let reason) = s.state else { return XCTFail() }
        XCTAssertTrue(reason.contains("bad configuration"))
    }

    func testNotReadyInTimeIsKilled() {
        let s = run(Supervision(), [.start(now: 0), .spawned(pid: 9, now: 0)]).0
        XCTAssertEqual(sup.transition(s, .tick(now: 29)).1, [])
        XCTAssertEqual(sup.transition(s, .tick(now: 31)).1.first, .kill(pid: 9, signal: 9))
    }

    func testMisbehavingRoomIsKilledAndThenRestarted() {
        var (s, a) = sup.transition(started(pid: 5), .misbehaved(reason: "protocol violation", now: 3))
        XCTAssertEqual(a.first, .kill(pid: 5, signal: 9))
        (s, a) = sup.transition(s, .died(.signaled(9), now: 3.1))
        XCTAssertEqual(s.state.name, "backoff")
    }

    func testStopDrainsThenKillsAfterGrace() {
        var (s, a) = sup.transition(started(pid: 5), .stop(now: 10))
        XCTAssertEqual(a, [.sendShutdown(pid: 5)])
        XCTAssertEqual(s.state, .stopping(pid: 5, deadline: 20))
        XCTAssertEqual(sup.transition(s, .tick(now: 15)).1, [])
        XCTAssertEqual(sup.transition(s, .tick(now: 21)).1.first, .kill(pid: 5, signal: 9))
        (s, a) = sup.transition(s, .died(.exited(0), now: 12))
        XCTAssertEqual(s.state, .stopped)
        XCTAssertEqual(a, [])
    }

    func testAnIntentionalRestartDrainsRespawnsAtOnceAndIsNotADeath() {
        let s = started()
        var (n, a) = run(s, [.restart(now: 5)])
        XCTAssertEqual(n.state, .restarting(pid: 10, deadline: 15))
        XCTAssertEqual(a, [.sendShutdown(pid: 10)])
        (n, a) = run(n, [.died(.exited(0), now: 6)])
        XCTAssertEqual(n.state, .spawning)
        XCTAssertEqual(a, [.spawn])
        XCTAssertEqual(n.deaths, [], "not counted against the crash-loop budget")
        XCTAssertEqual(n.restarts, 1)
        // Many restarts in a row never fail the room.
        var cur = run(n, [.spawned(pid: 11, now: 6), .ready(now: 6.1)]).0
        for i in 0..<10 {
            let t = 7 + Double(i)
            cur = run(cur, [.restart(now: t), .died(.signaled(15), now: t + 0.1), .spawned(pid: 20 + Int32(i), now: t + 0.2), .ready(now: t + 0.3)]).0
        }
        XCTAssertEqual(cur.state, .running(pid: 29, readySince: 16.3))
        // One that does not drain in time is killed, and a stop while restarting stays a stop.
        XCTAssertEqual(run(run(started(), [.restart(now: 0)]).0, [.tick(now: 11)]).1, [.kill(pid: 10, signal: 9), .report("room did not stop in time: killed")])
        XCTAssertEqual(run(run(started(), [.restart(now: 0)]).0, [.stop(now: 1), .died(.exited(0), now: 2)]).0.state, .stopped)
    }

    func testStopWhileBackingOffNeverSpawns() {
        let s = sup.transition(started(), .died(.exited(1), now: 1)).0
        let (stopped, a) = sup.transition(s, .stop(now: 1.5))
        XCTAssertEqual(stopped.state, .stopped)
        XCTAssertEqual(a, [])
        XCTAssertEqual(sup.transition(stopped, .tick(now: 100)).1, [])
    }

    func testResetGivesAFailedRoomAnotherChance() {
        var s = Supervision()
        s.state = .failed(reason: "x")
        s.restarts = 4
        let (n, a) = sup.transition(s, .reset(now: 1))
        XCTAssertEqual(a, [.spawn])
        XCTAssertEqual(n.state, .spawning)
        XCTAssertEqual(n.restarts, 4)
        XCTAssertEqual(n.deaths, [])
    }

    func testSpawnsAreNeverCloserThanTheFloor() {
        var p = policy
        p.floorSeconds = 3
        let s3 = Supervisor(policy: p)
        var s = Supervision()
        s = s3.transition(s, .start(now: 0)).0
        s = s3.transition(s, .spawned(pid: 1, now: 0)).0
        s = s3.transition(s, .died(.exited(1), now: 0.01)).0
        guard case .backoff(let until) = s.state else { return XCTFail() }
        XCTAssertGreaterThanOrEqual(until, 3)
    }
}

final class DenyListTests: XCTestCase {
    func id(_ ino: UInt64, _ gen: UInt32? = 1) -> FileIdentity { FileIdentity(dev: 0x801, ino: ino, generation: gen) }

    func testAReusedInodeReplacesTheOldIdentityAndTheOldestGoesFirst() {
        var l = DenyList()
        XCTAssertEqual(l.add(id(1)), [])
        XCTAssertEqual(l.add(id(1)), [], "the same identity again")
        XCTAssertEqual(l.add(id(1, 2)), [id(1)], "the number reused by another file")
        XCTAssertEqual(l.entries, [id(1, 2)])
        for i in 2...UInt64(DenyList.capacity) { _ = l.add(id(i)) }
        XCTAssertEqual(l.entries.count, DenyList.capacity)
        XCTAssertEqual(l.add(id(99_999)), [id(1, 2)], "full: the oldest is taken out of the kernel")
    }

    func testItSurvivesARoundTripAndDropsMalformedLines() {
        var l = DenyList()
        _ = l.add(id(5, 77))
        _ = l.add(id(6, nil))
        let text = l.serialized() + Array("garbage\n1 2 x\n9 10 -\n".utf8)
        XCTAssertEqual(DenyList.parse(text).entries, [id(5, 77), id(6, nil), FileIdentity(dev: 9, ino: 10, generation: nil)])
    }
}

final class ScanScheduleTests: XCTestCase {
    // 2026-11-29 is a Sunday; 10:30 UTC.
    let sunday1030: Int64 = 1_795_948_200

    func config(_ body: (inout ScheduledScanConfig) -> Void) -> ScheduledScanConfig {
        var c = ScheduledScanConfig()
        c.enabled = true
        body(&c)
        return c
    }

    func testNothingConfiguredOrDisabledMeansNoRun() {
        XCTAssertNil(ScanSchedule.next(after: sunday1030, utcOffset: 0, config { _ in }))
        XCTAssertNil(ScanSchedule.next(after: sunday1030, utcOffset: 0, config { $0.enabled = false; $0.weeklyDayOfWeek = 0 }))
    }

    func testDailyQuickScansEveryNHoursAlignedOnTheTimeOfDay() {
        let c = config { $0.dailyInterval = 4; $0.dailyTimeOfDay = 60 } // 01:00, 05:00, 09:00, 13:00, …
        let r = ScanSchedule.next(after: sunday1030, utcOffset: 0, c)
        XCTAssertEqual(r, ScheduledRun(unix: sunday1030 + 9000, kind: "quick"))   // 13:00
        let once = config { $0.dailyInterval = 24; $0.dailyTimeOfDay = 600 }                         // 10:00 each day
        XCTAssertEqual(ScanSchedule.next(after: sunday1030, utcOffset: 0, once)?.unix, sunday1030 - 1800 + 86_400)
    }

    func testWeeklyOnItsDayEveryDayOrNever() {
        // Tuesday (3) at 02:00: in two days.
        let tue = config { $0.weeklyDayOfWeek = 3; $0.weeklyTimeOfDay = 120; $0.weeklyScanType = "full" }
        XCTAssertEqual(ScanSchedule.next(after: sunday1030, utcOffset: 0, tue), ScheduledRun(unix: sunday1030 - 37_800 + 2 * 86_400 + 7200, kind: "full"))
        // Sunday (1) at 11:00: later today.
        let sun = config { $0.weeklyDayOfWeek = 1; $0.weeklyTimeOfDay = 660 }
        XCTAssertEqual(ScanSchedule.next(after: sunday1030, utcOffset: 0, sun)?.unix, sunday1030 + 1800)
        // Sunday at 10:00 has passed: next Sunday.
        let past = config { $0.weeklyDayOfWeek = 1; $0.weeklyTimeOfDay = 600 }
        XCTAssertEqual(ScanSchedule.next(after: sunday1030, utcOffset: 0, past)?.unix, sunday1030 - 1800 + 7 * 86_400)
        XCTAssertEqual(ScanSchedule.next(after: sunday1030, utcOffset: 0, config { $0.weeklyDayOfWeek = 0; $0.weeklyTimeOfDay = 600 })?.unix,
                       sunday1030 - 1800 + 86_400, "every day")
        XCTAssertNil(ScanSchedule.next(after: sunday1030, utcOffset: 0, config { $0.weeklyDayOfWeek = 8 }))
    }

    func testAFullScanWinsATieAndLocalTimeIsUsed() {
        let both = config { $0.dailyInterval = 24; $0.dailyTimeOfDay = 660; $0.weeklyDayOfWeek = 0; $0.weeklyTimeOfDay = 660; $0.weeklyScanType = "full" }
        XCTAssertEqual(ScanSchedule.next(after: sunday1030, utcOffset: 0, both)?.kind, "full")
        // At UTC+2 it is 12:30 local: 11:00 local has passed, the next is tomorrow 11:00 local = 09:00 UTC.
        let eleven = config { $0.weeklyDayOfWeek = 0; $0.weeklyTimeOfDay = 660 }
        XCTAssertEqual(ScanSchedule.next(after: sunday1030, utcOffset: 7200, eleven)?.unix, sunday1030 - 37_800 + 86_400 + 9 * 3600)
    }
}
