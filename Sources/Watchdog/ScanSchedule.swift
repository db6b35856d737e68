// When the next scheduled scan is due (pure: given now and the local UTC
// offset). Daily quick scans every N hours from a time of day, a weekly quick
// or full scan on a day (or every day). A full scan wins a tie. The offset is
// taken at computation time: across a DST change a run may shift by an hour
// once, never twice (the next is computed after each run).
import Glibc
import MdatpConfig
import MdatpJSON
import MdatpSystem

struct ScheduledRun: Equatable {
    let unix: Int64
    let kind: String // "quick" | "full"
}

enum ScanSchedule {
    /// The first run strictly after `now` (unix seconds), within the next 8 days; nil when none is configured.
    static func next(after now: Int64, utcOffset: Int64, _ c: ScheduledScanConfig) -> ScheduledRun? {
        guard c.enabled else { return nil }
        let local = now + utcOffset
        let dayStart = local - ((local % 86_400) + 86_400) % 86_400   // local midnight, as local seconds
        var best: ScheduledRun?
        func consider(_ localUnix: Int64, _ kind: String) {
            let t = localUnix - utcOffset
            guard t > now else { return }
            if let b = best, b.unix < t || (b.unix == t && b.kind == "full") { return }
            best = ScheduledRun(unix: t, kind: kind)
        }
        for d in Int64(0)...8 {
            let midnight = dayStart + d * 86_400
            // 1970-01-01 was a Thursday: Sunday = 0.
            let weekday = ((midnight / 86_400) + 4) % 7
            if c.dailyInterval > 0 {
                var minute = c.dailyTimeOfDay % c.dailyInterval.times60 // the day's first slot of the series
                while minute < 1440 {
                    consider(midnight + Int64(minute) * 60, "quick")
                    minute += c.dailyInterval.times60
                }
            }
            if c.weeklyDayOfWeek == 0 || Int64(c.weeklyDayOfWeek - 1) == weekday, c.weeklyDayOfWeek != 8 {
                consider(midnight + Int64(c.weeklyTimeOfDay) * 60, c.weeklyScanType)
            }
        }
        return best
    }
}

private extension Int {
    var times60: Int { self * 60 }
}

extension Watchdog {
    func planScheduledScan() {
        let now = Int64(Sys.realtimeSeconds())
        nextScheduledScan = ScanSchedule.next(after: now, utcOffset: Sys.utcOffset(at: now), config.scheduledScan)
        if let n = nextScheduledScan { log("next scheduled \(n.kind) scan in \(n.unix - now) s") }
    }

    /// Starts a due scheduled scan: the scanner's answers go to /dev/null (the
    /// result is in its scan history and log), so nothing waits on a reader.
    func runScheduledScanIfDue() {
        guard let due = nextScheduledScan, Int64(Sys.realtimeSeconds()) >= due.unix else { return }
        defer { planScheduledScan() }
        guard let scanner = rooms.first(where: { $0.manifest.name == "scanner" }), case .running = scanner.supervision.state,
              let ch = scanner.channel else {
            return log("scheduled \(due.kind) scan skipped: the scanner is not running")
        }
        let s = config.scheduledScan
        let request = JSON.object([("verb", "scan"), ("kind", .string(due.kind)), ("scheduled", .bool(true)),
                                   ("ignore_exclusions", .bool(s.ignoreExclusions)), ("low_priority", .bool(s.lowPriority))])
        do throws(Errno) {
            let sink = try Sys.open("/dev/null", O_WRONLY | O_CLOEXEC)
            defer { Sys.close(sink) }
            try ch.send(.query(uid: 0, gid: 0, request: Array(request.serialized().utf8)), descriptor: sink, nowait: true)
            log("scheduled \(due.kind) scan started")
        } catch {
            log("scheduled \(due.kind) scan not started: \(error)")
        }
    }
}
