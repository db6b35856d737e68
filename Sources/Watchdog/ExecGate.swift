// The exec gate: a fanotify group for FAN_OPEN_EXEC_PERM, made by root (it
// needs CAP_SYS_ADMIN) and handed to the scanner, which alone holds it and
// answers every exec on the marked filesystems: allow, or deny (execve fails
// with EPERM, the program never runs) when the file is a threat the policy
// blocks. Only in real_time enforcement with kernel exec blocking on. If the
// scanner dies its descriptor closes and the kernel lets pending execs through
// (fail open); the watchdog never keeps a copy, or a dead scanner would hang
// every exec on the machine.
import Glibc
import MdatpSystem

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

extension Watchdog {
    /// An unmarked group for a scanner about to start, or nil (and why, for the status).
    /// It is marked only once that scanner says ready: marked now, the scanner's own
    /// exec would wait on a verdict only it can give.
    func makeExecGate() -> Int32? {
        guard config.execBlockingActive else {
            execGateState = "off (needs real_time enforcement and kernel exec blocking)"
            return nil
        }
        do throws(Errno) {
            return try Sys.fanotifyExecGroup()
        } catch {
            execGateState = "off (\(error))"
            return nil
        }
    }

    /// The scanner is ready (its gate thread reads the group): mark the filesystems
    /// and let go of the watchdog's copy, so the scanner alone holds it.
    func armExecGate(_ slot: RoomSlot) {
        guard let fd = slot.pendingExecGate else { return }
        slot.pendingExecGate = nil
        defer { Sys.close(fd) }
        let info = (try? Sys.readFile("/proc/self/mountinfo", limit: 4 << 20)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        let (marked, failed) = Sys.fanotifyMarkExec(fd, mounts: ExecGate.mountsToMark(mountinfo: info))
        execGateState = marked.isEmpty ? "off (no filesystem could be marked: \(failed.prefix(3).joined(separator: "; ")))"
                                       : "fanotify (\(marked.count) filesystems)"
        if !failed.isEmpty { log("exec gate: not marked: \(failed.prefix(5).joined(separator: "; "))") }
        log("exec gate: \(execGateState)")
    }

    /// A scanner that died before ready: its group goes with it.
    func dropExecGate(_ slot: RoomSlot) {
        if let fd = slot.pendingExecGate { Sys.close(fd) }
        slot.pendingExecGate = nil
    }
}
