// The exec gate: a fanotify group for FAN_OPEN_EXEC_PERM, held by the watchdog
// (marking filesystems needs CAP_SYS_ADMIN, and the kernel opens each event's
// file with the reader's credentials, which a sandboxed room lacks). Every
// exec on the marked filesystems waits while the watchdog hands the file's
// descriptor to the scanner's gate thread and relays its answer: allow, or
// deny (execve fails with EPERM: the program never runs). It fails open —
// no scanner, a scanner too slow (3 s), too many waiting: allow — and the
// suite's own programs carry ignore marks, so starting a room never waits on
// a room. Filesystems are marked only while a scanner is ready. Only in
// real_time enforcement with kernel exec blocking on.
import Glibc
import MdatpRoom
import MdatpSystem
import MdatpWire

enum ExecGate {
    /// Filesystems whose programs are not gated: the kernel's pseudo filesystems,
    /// network filesystems (another host's latency on every exec) and FUSE (a
    /// daemon whose own exec could wait on us).
    static let skippedTypes: Set<String> = [
        "proc", "sysfs", "cgroup", "cgroup2", "devpts", "devtmpfs", "mqueue", "bpf", "tracefs", "debugfs", "securityfs",
        "pstore", "configfs", "fusectl", "hugetlbfs", "autofs", "binfmt_misc", "efivarfs", "rpc_pipefs", "nsfs",
        "nfs", "nfs4", "cifs", "smb3", "9p", "ceph", "glusterfs", "virtiofs",
    ]

    /// The mount points to mark, from /proc/self/mountinfo (first mount of each
    /// source/type pair: one mark covers its whole filesystem).
    static func mountsToMark(mountinfo: String) -> [String] {
        var out: [String] = []
        var seen = Set<String>()
        for line in mountinfo.split(separator: "\n") {
            guard let dash = line.firstRange(of: " - ") else { continue }
            let left = line[..<dash.lowerBound].split(separator: " "), right = line[dash.upperBound...].split(separator: " ")
            guard left.count >= 5, right.count >= 2 else { continue }
            let type = String(right[0])
            if skippedTypes.contains(type) || type.hasPrefix("fuse") { continue }
            let point = unescape(String(left[4]))
            guard seen.insert(String(left[2]) + " " + type + " " + String(right[1])).inserted else { continue }
            out.append(point)
        }
        return out
    }

    /// mountinfo escapes space, tab, newline and backslash as \ooo.
    static func unescape(_ s: String) -> String {
        var out: [UInt8] = []
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == 0x5c, i + 3 < b.count, let v = UInt8(String(decoding: b[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                out.append(v)
                i += 4
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// The watchdog's half: the group, the execs waiting, and what it counted.
/// The watchdog never blocks on the gate channel: a unix datagram queue holds
/// only net.unix.max_dgram_qlen (10) messages, so a blocking send during an
/// exec storm would wait on a scanner that itself waits to send its verdicts
/// to us. Checks the channel cannot take yet wait in `backlog` and go out as
/// it drains; everything waiting is let through after the timeout.
final class ExecGateBroker {
    struct Waiting { let token: UInt64; let fd: Int32; let pid: Int32; let since: Double }
    let fd: Int32
    var armed = false
    var pending: [UInt64: (fd: Int32, since: Double)] = [:]
    var backlog: [Waiting] = []
    var nextToken: UInt64 = 1
    var forwarded: UInt64 = 0
    var failedOpen: UInt64 = 0   // allowed without a verdict (no scanner, timeout, overload)
    static let timeoutSeconds = 3.0
    static let maxWaiting = 1024

    init(fd: Int32) { self.fd = fd }

    var waiting: Int { pending.count + backlog.count }

    func respond(_ eventFd: Int32, allow: Bool) {
        try? Sys.fanotifyRespond(fd, event: eventFd, allow: allow)
        Sys.close(eventFd)
    }

    /// Lets every waiting exec through (the scanner is gone or too slow).
    func releaseAll() {
        for (_, p) in pending { respond(p.fd, allow: true); failedOpen &+= 1 }
        pending.removeAll()
        for w in backlog { respond(w.fd, allow: true); failedOpen &+= 1 }
        backlog.removeAll()
    }

    /// Sends what the channel takes now; the rest stays in the backlog, in order.
    func flush(to ch: Channel) {
        var sent = 0
        for w in backlog {
            do throws(Errno) {
                try ch.send(.execCheck(token: w.token, pid: w.pid), descriptor: w.fd, nowait: true)
                pending[w.token] = (w.fd, w.since)
                forwarded &+= 1
                sent += 1
            } catch {
                if error.code == EAGAIN { break }
                respond(w.fd, allow: true) // the channel is broken: through
                failedOpen &+= 1
                sent += 1
            }
        }
        backlog.removeFirst(sent)
    }
}

extension Watchdog {
    var scannerSlot: RoomSlot? { rooms.first { $0.manifest.descriptors.contains { $0.number == RoomFD.execGate } } }

    /// Makes (or drops) the group to match the configuration.
    func configureExecGate() {
        if !config.execGateActive && execGate == nil {
            execGateState = "off (needs real_time enforcement, kernel exec blocking and antivirusEngine.execGate)"
        }
        if config.execGateActive, execGate == nil {
            do throws(Errno) {
                let fd = try Sys.fanotifyExecGroup()
                // The suite's own programs: starting a room never waits on a room.
                for exe in ["mdatp-watchdog", "mdatp"] + Rooms.all.map(\.executable) {
                    do throws(Errno) { try Sys.fanotifyIgnoreExec(fd, path: binDir + "/" + exe) } catch { log("exec gate: \(error)") }
                }
                execGate = ExecGateBroker(fd: fd)
                execGateState = "waiting for the scanner"
                if let s = scannerSlot, case .running = s.supervision.state, s.gateChannel != nil { armExecGate() }
            } catch {
                execGateState = "off (\(error))"
            }
        } else if !config.execGateActive, let g = execGate {
            g.releaseAll()
            Sys.close(g.fd) // the kernel lets anything still waiting through
            execGate = nil
            execGateState = "off (needs real_time enforcement, kernel exec blocking and antivirusEngine.execGate)"
        }
    }

    /// The scanner is ready: mark the filesystems.
    func armExecGate() {
        guard let g = execGate, !g.armed, scannerSlot?.gateChannel != nil else { return }
        let info = (try? Sys.readFile("/proc/self/mountinfo", limit: 4 << 20)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        let (marked, failed) = Sys.fanotifyMarkExec(g.fd, mounts: ExecGate.mountsToMark(mountinfo: info))
        g.armed = !marked.isEmpty
        execGateState = marked.isEmpty ? "off (no filesystem could be marked: \(failed.prefix(3).joined(separator: "; ")))"
                                       : "fanotify (\(marked.count) filesystems)"
        if !failed.isEmpty { log("exec gate: not marked: \(failed.prefix(5).joined(separator: "; "))") }
        log("exec gate: \(execGateState)")
    }

    /// The scanner is gone: unmark, let waiting execs through.
    func disarmExecGate() {
        guard let g = execGate else { return }
        if g.armed { Sys.fanotifyUnmarkAll(g.fd) }
        g.armed = false
        g.releaseAll()
        execGateState = "waiting for the scanner (execs pass ungated)"
    }

    /// Exec events: each goes to the scanner's gate thread, or through if it cannot.
    func serviceExecEvents() {
        guard let g = execGate else { return }
        let now = Sys.monotonicSeconds()
        for _ in 0..<64 {
            guard let events = try? Sys.fanotifyRead(g.fd), !events.isEmpty else { break }
            for e in events where e.fd >= 0 {
                guard e.isExecPermission else { Sys.close(e.fd); continue }
                guard g.armed, scannerSlot?.gateChannel != nil, g.waiting < ExecGateBroker.maxWaiting else {
                    g.respond(e.fd, allow: true)
                    g.failedOpen &+= 1
                    continue
                }
                g.backlog.append(.init(token: g.nextToken, fd: e.fd, pid: e.pid, since: now))
                g.nextToken &+= 1
            }
        }
        if let ch = scannerSlot?.gateChannel, !g.backlog.isEmpty { g.flush(to: ch) }
    }

    /// The scanner's answers.
    func serviceExecVerdicts() {
        guard let g = execGate, let slot = scannerSlot, let ch = slot.gateChannel else { return }
        for _ in 0..<256 {
            guard let received = Watchdog.receiveNow(ch) else { return }
            switch received {
            case .message(.execVerdict(let token, let allow), _):
                if let p = g.pending.removeValue(forKey: token) { g.respond(p.fd, allow: allow) }
                if !g.backlog.isEmpty { g.flush(to: ch) }
            case .closed:
                slot.gateChannel = nil
                disarmExecGate()
                return
            case .message(let m, let fd):
                if fd >= 0 { Sys.close(fd) }
                feed(slot, .misbehaved(reason: "exec gate channel: \(m.type) is not an execVerdict", now: Sys.monotonicSeconds()))
                return
            case .violation(let v):
                feed(slot, .misbehaved(reason: "exec gate channel: \(v)", now: Sys.monotonicSeconds()))
                return
            }
        }
    }

    /// Execs waiting longer than the timeout go through.
    func expireExecChecks(now: Double) {
        guard let g = execGate else { return }
        for (token, p) in g.pending where now - p.since > ExecGateBroker.timeoutSeconds {
            g.pending.removeValue(forKey: token)
            g.respond(p.fd, allow: true)
            g.failedOpen &+= 1
        }
        let expired = g.backlog.prefix { now - $0.since > ExecGateBroker.timeoutSeconds }.count
        for w in g.backlog.prefix(expired) { g.respond(w.fd, allow: true); g.failedOpen &+= 1 }
        g.backlog.removeFirst(expired)
        if let ch = scannerSlot?.gateChannel, !g.backlog.isEmpty { g.flush(to: ch) }
    }
}
