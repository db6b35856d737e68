// Built-in behaviour detections: what attackers do on Linux servers, each
// mapped to an ATT&CK technique. Pure logic over enriched events; the state
// a detection needs across events (recent writes, connection fan-out,
// downloads by parent) is held in fixed-capacity tables, so memory is bounded
// whatever the event rate.

/// What stdin/stdout/stderr of a new process were at exec (from the kernel).
public enum StdioKind: UInt8, Sendable {
    case none = 0, file = 1, pipe = 2, socket = 3, terminal = 4, other = 5
}

/// A process as the enrichment knows it.
public struct ProcessView: Sendable, Equatable {
    public var pid: UInt32 = 0
    public var ppid: UInt32 = 0
    public var uid: UInt32 = 0
    public var euid: UInt32 = 0
    public var exe = ""
    public var argv: [String] = []
    public var cwd = ""
    public init() {}
    public init(pid: UInt32, ppid: UInt32 = 0, uid: UInt32 = 0, euid: UInt32 = 0, exe: String, argv: [String] = [], cwd: String = "") {
        self.pid = pid; self.ppid = ppid; self.uid = uid; self.euid = euid; self.exe = exe; self.argv = argv; self.cwd = cwd
    }
    public var name: Substring { exe.split(separator: "/").last ?? Substring(exe) }
    public var commandLine: String { argv.joined(separator: " ") }
}

public enum BehaviourEventKind: Sendable, Equatable {
    case exec, fileCreate, fileOpenWrite, fileCloseWrite, fileRename, fileUnlink, fileChmod, fileChown, fileOpenRead
    case connect, accept, listen
    case ptrace, moduleLoad, bpfLoad, credChange, memfdCreate, mount, signalSuite
}

public struct BehaviourEvent: Sendable {
    public var kind: BehaviourEventKind
    public var timeNs: Int64 = 0
    /// The acting process (for exec: the new image).
    public var process = ProcessView()
    public var parent: ProcessView?
    public var grandparent: ProcessView?
    // exec
    public var stdio: [StdioKind] = [.none, .none, .none]
    public var exeDeleted = false
    public var setuidExec = false
    public var exeDev: UInt32 = 0
    public var exeIno: UInt64 = 0
    // file
    public var path = ""
    public var path2 = ""
    public var mode: UInt32 = 0
    public var openFlags: UInt32 = 0
    public var fileDev: UInt32 = 0
    public var fileIno: UInt64 = 0
    // network
    public var remoteAddress = ""
    public var remotePort: UInt16 = 0
    public var localPort: UInt16 = 0
    public var result: Int64 = 0
    // sensitive
    public var targetPid: UInt32 = 0
    public var targetUid: UInt32?
    public var args: [UInt64] = [0, 0, 0, 0]
    public var newUid: UInt32 = 0
    public var newEuid: UInt32 = 0
    public var strings: [String] = []

    public init(kind: BehaviourEventKind) { self.kind = kind }
}

public enum Severity: String, Sendable, Comparable {
    case informational, low, medium, high, critical
    var rank: Int { [.informational: 0, .low: 1, .medium: 2, .high: 3, .critical: 4][self]! }
    public static func < (a: Severity, b: Severity) -> Bool { a.rank < b.rank }
}

/// One detection's finding on one event.
public struct BehaviourHit: Sendable, Equatable {
    public let name: String
    public let title: String
    public let description: String
    public let severity: Severity
    public let techniques: [String]
    /// What an analyst needs beyond the process chain: files, connections, details.
    public var files: [String] = []
    public var connections: [String] = []
    public var details: [(String, String)] = []
    /// Repeats with the same key are one alert (counted).
    public var dedupKey: String
    /// The process the alert is about when it is not the event's actor (an exec
    /// matched by a write that arrived after it).
    public var process: ProcessView?

    public static func == (a: BehaviourHit, b: BehaviourHit) -> Bool {
        a.name == b.name && a.dedupKey == b.dedupKey && a.files == b.files && a.connections == b.connections
    }
}

/// The catalogue: name → (title, technique), for `mdatp edr rules list` and docs.
public struct BehaviourInfo: Sendable {
    public let name: String
    public let title: String
    public let techniques: [String]
    public let severity: Severity
}

/// A small LRU-ish table with a fixed capacity (oldest insert evicted first).
struct BoundedMap<K: Hashable, V> {
    let capacity: Int
    private(set) var values: [K: V] = [:]
    private var order: [K] = []
    private var head = 0
    private(set) var evictions: UInt64 = 0

    init(capacity: Int) { self.capacity = capacity }

    subscript(k: K) -> V? { values[k] }

    mutating func set(_ k: K, _ v: V) {
        if values.updateValue(v, forKey: k) == nil {
            order.append(k)
            if values.count > capacity { evictOne() }
            if head > 4096 && head * 2 > order.count { order.removeFirst(head); head = 0 }
        }
    }

    mutating func remove(_ k: K) { values.removeValue(forKey: k) }

    private mutating func evictOne() {
        while head < order.count {
            let k = order[head]
            head += 1
            if values.removeValue(forKey: k) != nil { evictions &+= 1; return }
        }
    }

    var count: Int { values.count }
}

public struct BehaviourEngine {
    public static let catalogue: [BehaviourInfo] = [
        BehaviourInfo(name: "reverse_shell", title: "Reverse shell: a shell or interpreter talks to the network on its standard input/output", techniques: ["T1059.004"], severity: .high),
        BehaviourInfo(name: "fileless_execution", title: "Fileless execution: a program runs from memory (memfd) or a deleted file", techniques: ["T1620"], severity: .high),
        BehaviourInfo(name: "dropped_and_executed", title: "A file written moments ago to a temporary directory was executed", techniques: ["T1105", "T1204.002"], severity: .medium),
        BehaviourInfo(name: "ld_preload_hijack", title: "Dynamic linker hijack: /etc/ld.so.preload was written", techniques: ["T1574.006"], severity: .high),
        BehaviourInfo(name: "cron_persistence", title: "Persistence through cron", techniques: ["T1053.003"], severity: .medium),
        BehaviourInfo(name: "systemd_persistence", title: "Persistence through a systemd unit", techniques: ["T1543.002"], severity: .medium),
        BehaviourInfo(name: "rc_script_persistence", title: "Persistence through an rc or init script", techniques: ["T1037.004"], severity: .medium),
        BehaviourInfo(name: "shell_profile_persistence", title: "Persistence through a shell profile", techniques: ["T1546.004"], severity: .medium),
        BehaviourInfo(name: "ssh_authorized_keys", title: "SSH authorized_keys modified", techniques: ["T1098.004"], severity: .medium),
        BehaviourInfo(name: "shadow_file_read", title: "Password hashes read by an unexpected process", techniques: ["T1003.008"], severity: .high),
        BehaviourInfo(name: "log_tampering", title: "System logs deleted or moved away", techniques: ["T1070.002"], severity: .medium),
        BehaviourInfo(name: "history_tampering", title: "Shell history deleted or moved away", techniques: ["T1070.003"], severity: .medium),
        BehaviourInfo(name: "kernel_module_load", title: "Kernel module loaded", techniques: ["T1547.006"], severity: .medium),
        BehaviourInfo(name: "ptrace_other_user", title: "A process attached to another user's process with ptrace", techniques: ["T1055.008"], severity: .high),
        BehaviourInfo(name: "setuid_created", title: "A setuid or setgid file was created", techniques: ["T1548.001"], severity: .high),
        BehaviourInfo(name: "unexpected_root", title: "Privilege escalation to root by an unexpected program", techniques: ["T1068", "T1548.001"], severity: .high),
        BehaviourInfo(name: "web_server_shell", title: "A web server started a shell", techniques: ["T1505.003"], severity: .high),
        BehaviourInfo(name: "crypto_miner", title: "Crypto-miner: mining-pool protocol or port", techniques: ["T1496"], severity: .high),
        BehaviourInfo(name: "port_scan", title: "Port scan: one process connected to many ports", techniques: ["T1046"], severity: .medium),
        BehaviourInfo(name: "container_escape", title: "Container escape hint: entering the host's namespaces or mounting host devices", techniques: ["T1611"], severity: .high),
        BehaviourInfo(name: "download_piped_to_shell", title: "A download piped straight into a shell", techniques: ["T1059.004", "T1105"], severity: .high),
        BehaviourInfo(name: "sensor_tampering", title: "A signal was sent to the endpoint protection suite", techniques: ["T1562.001"], severity: .high),
    ]
    static let info: [String: BehaviourInfo] = Dictionary(uniqueKeysWithValues: catalogue.map { ($0.name, $0) })

    /// Tunables (counts and windows), kept here so tests and docs agree.
    public static let droppedWindowNs: Int64 = 120_000_000_000
    public static let portScanPorts = 20
    public static let portScanWindowNs: Int64 = 10_000_000_000
    public static let pipeWindowNs: Int64 = 10_000_000_000

    struct RecentWrite { let timeNs: Int64; let path: String; let writer: String }
    struct Fanout { var startNs: Int64; var ports: Set<UInt16>; var reported: Bool }
    struct Download { let timeNs: Int64; let exe: String; let commandLine: String }

    var recentWrites = BoundedMap<UInt64, RecentWrite>(capacity: 8192)
    var fanout = BoundedMap<String, Fanout>(capacity: 2048)
    var downloads = BoundedMap<UInt32, Download>(capacity: 1024)
    /// Shells reading a pipe, by parent: `curl … | sh` starts both sides at once, in either order.
    var pipedShells = BoundedMap<UInt32, (timeNs: Int64, process: ProcessView)>(capacity: 1024)
    /// Execs from temporary directories whose write has not been seen yet: the
    /// kernel's process and activity rings are merged in poll order, so the
    /// write of a file may reach us just after its exec.
    var tempExecs = BoundedMap<UInt64, (timeNs: Int64, process: ProcessView)>(capacity: 1024)
    public var disabled: Set<String> = []

    public init() {}

    /// Entries held across events (for the heartbeat).
    public var stateEntries: Int { recentWrites.count + fanout.count + downloads.count + tempExecs.count + pipedShells.count }

    static let shells: Set<Substring> = ["sh", "bash", "dash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish", "ash", "busybox"]
    static let interpreters: Set<Substring> = ["python", "python2", "python3", "perl", "ruby", "php", "lua", "node", "nodejs", "socat", "nc", "ncat", "netcat", "telnet", "awk", "gawk", "mawk"]
    static let webServers: Set<Substring> = ["nginx", "apache2", "httpd", "lighttpd", "caddy", "php-fpm", "php-cgi", "uwsgi", "gunicorn", "tomcat", "catalina.sh", "java", "node", "w3wp"]
    static let downloaders: Set<Substring> = ["curl", "wget", "fetch", "aria2c"]
    static let shadowReaders: Set<Substring> = ["sshd", "login", "su", "sudo", "passwd", "chage", "chpasswd", "unix_chkpwd", "useradd", "usermod", "userdel",
                                                "groupadd", "groupmod", "vipw", "pwck", "grpck", "cron", "crond", "systemd", "systemd-logind", "systemd-userdbd",
                                                "accounts-daemon", "polkitd", "gdm-session-worker", "lightdm", "sddm", "shadow", "nscd", "sssd", "expiry", "newusers",
                                                "pwconv", "grpconv", "dpkg", "rpm", "mdatp-scanner"]
    static let setuidPrograms: Set<Substring> = ["sudo", "su", "passwd", "chsh", "chfn", "gpasswd", "newgrp", "mount", "umount", "pkexec", "fusermount", "fusermount3",
                                                 "ping", "ping6", "crontab", "at", "unix_chkpwd", "ssh-keysign", "dbus-daemon-launch-helper", "polkit-agent-helper-1",
                                                 "Xorg", "Xorg.wrap", "staprun", "doas", "sudoedit", "newuidmap", "newgidmap", "expiry", "chage", "wall", "write", "mount.nfs",
                                                 "mount.cifs", "snap-confine", "traceroute6.iputils", "exim4", "sendmail", "mdatp"]
    static let packageManagers: Set<Substring> = ["dpkg", "rpm", "apt", "apt-get", "yum", "dnf", "zypper", "pacman", "unattended-upgrade", "packagekitd", "snapd", "ucf", "debconf", "systemctl", "systemd"]
    static let logRotators: Set<Substring> = ["logrotate", "rsyslogd", "syslog-ng", "systemd-journald", "journalctl", "savelog", "dpkg", "apt", "apt-get"]
    static let poolPorts: Set<UInt16> = [3333, 3334, 3335, 3336, 4444, 5555, 5556, 7777, 8888, 9999, 14433, 14444, 45560, 45700]

    /// Every detection that fires on this event.
    public mutating func evaluate(_ e: BehaviourEvent) -> [BehaviourHit] {
        var hits: [BehaviourHit] = []
        func hit(_ name: String, _ description: String, key: String, files: [String] = [], connections: [String] = [], details: [(String, String)] = [],
                 severity: Severity? = nil, process: ProcessView? = nil) {
            guard !disabled.contains(name), let i = BehaviourEngine.info[name] else { return }
            hits.append(BehaviourHit(name: name, title: i.title, description: description, severity: severity ?? i.severity, techniques: i.techniques,
                                     files: files, connections: connections, details: details, dedupKey: key, process: process))
        }
        let p = e.process
        switch e.kind {
        case .exec:
            let name = p.name
            let shellLike = BehaviourEngine.shells.contains(name) || BehaviourEngine.interpreters.contains(name) || name.hasPrefix("python")
            if shellLike, e.stdio[0] == .socket || e.stdio[1] == .socket {
                hit("reverse_shell", "\(p.exe) started with standard input/output on a network socket (stdin \(e.stdio[0]), stdout \(e.stdio[1]))",
                    key: "\(p.exe)|\(e.parent?.exe ?? "")")
            }
            if p.exe.hasPrefix("/memfd:") || e.exeDeleted {
                hit("fileless_execution", p.exe.hasPrefix("/memfd:") ? "\(p.exe) runs from an anonymous memory file (memfd)" : "\(p.exe) runs from a file deleted after it was opened",
                    key: p.exe, files: [p.exe])
            }
            if BehaviourEngine.inTempDir(p.exe) {
                let key = BehaviourEngine.fileKey(e.exeDev, e.exeIno)
                // Same identity and same name: an inode number freed and reused is another file.
                if let w = recentWrites[key], w.path == p.exe, e.timeNs - w.timeNs <= BehaviourEngine.droppedWindowNs, e.timeNs >= w.timeNs {
                    hit("dropped_and_executed", "\(p.exe) was written by \(w.writer) \((e.timeNs - w.timeNs) / 1_000_000) ms before it was executed",
                        key: p.exe, files: [p.exe], details: [("written_by", w.writer), ("written_ms_before", "\((e.timeNs - w.timeNs) / 1_000_000)")])
                } else {
                    tempExecs.set(key, (e.timeNs, p))
                }
            }
            if e.setuidExec, p.euid == 0, p.uid != 0, !BehaviourEngine.setuidPrograms.contains(name) {
                hit("unexpected_root", "\(p.exe) is setuid root and was run by uid \(p.uid): it runs as root", key: p.exe, files: [p.exe],
                    details: [("uid", "\(p.uid)"), ("euid", "\(p.euid)")])
            }
            if BehaviourEngine.shells.contains(name), let parent = e.parent, BehaviourEngine.isWebServer(parent.name) {
                hit("web_server_shell", "\(parent.exe) (a web server) started \(p.exe): \(p.commandLine)", key: "\(parent.exe)|\(p.exe)")
            }
            let cmd = p.commandLine.lowercased()
            if cmd.hasBytes("stratum+tcp://") || cmd.hasBytes("stratum+ssl://") || cmd.hasBytes("stratum2+tcp://") || cmd.hasBytes("--donate-level") || name.lowercased().hasPrefix("xmrig") {
                hit("crypto_miner", "\(p.exe) was started with mining-pool arguments: \(p.commandLine)", key: p.exe)
            }
            if name == "nsenter", BehaviourEngine.targetsPid1(p.argv) {
                hit("container_escape", "nsenter into the namespaces of pid 1 (the host's init): \(p.commandLine)", key: "nsenter|\(e.parent?.exe ?? "")")
            }
            if BehaviourEngine.downloaders.contains(name), p.argv.contains(where: { $0.hasBytes("://") }) {
                if let sh = pipedShells[p.ppid], abs(e.timeNs - sh.timeNs) <= BehaviourEngine.pipeWindowNs {
                    pipedShells.remove(p.ppid)
                    hit("download_piped_to_shell", "\(sh.process.exe) reads its commands from a pipe next to '\(p.commandLine)'",
                        key: "\(p.commandLine)|\(sh.process.exe)", details: [("download", p.commandLine)], process: sh.process)
                } else {
                    downloads.set(p.ppid, Download(timeNs: e.timeNs, exe: p.exe, commandLine: p.commandLine))
                }
            }
            if BehaviourEngine.shells.contains(name), e.stdio[0] == .pipe {
                if let d = downloads[p.ppid], abs(e.timeNs - d.timeNs) <= BehaviourEngine.pipeWindowNs {
                    downloads.remove(p.ppid)
                    hit("download_piped_to_shell", "\(p.exe) reads its commands from a pipe next to '\(d.commandLine)'", key: "\(d.commandLine)|\(p.exe)",
                        details: [("download", d.commandLine)])
                } else {
                    pipedShells.set(p.ppid, (e.timeNs, p))
                }
            }
        case .fileCreate, .fileOpenWrite, .fileCloseWrite, .fileRename:
            let target = e.kind == .fileRename ? e.path2 : e.path
            if e.kind != .fileRename, e.fileIno != 0 {
                let key = BehaviourEngine.fileKey(e.fileDev, e.fileIno)
                recentWrites.set(key, RecentWrite(timeNs: e.timeNs, path: target, writer: p.exe))
                if let x = tempExecs[key], x.timeNs >= e.timeNs, x.timeNs - e.timeNs <= BehaviourEngine.droppedWindowNs {
                    tempExecs.remove(key)
                    hit("dropped_and_executed", "\(x.process.exe) was written by \(p.exe) \((x.timeNs - e.timeNs) / 1_000_000) ms before it was executed",
                        key: x.process.exe, files: [x.process.exe], details: [("written_by", p.exe), ("written_ms_before", "\((x.timeNs - e.timeNs) / 1_000_000)")],
                        process: x.process)
                }
            }
            // Persistence and tampering are judged once per write: at open (create/open-write) or rename.
            guard e.kind != .fileCloseWrite else { break }
            fileWritten(target, e) { hit($0, $1, key: $2, files: $3) }
            if e.kind == .fileRename {
                // Moving a log or history file away hides it just as well as deleting it.
                removed(e.path, e) { hit($0, $1, key: $2, files: $3) }
            }
        case .fileUnlink:
            removed(e.path, e) { hit($0, $1, key: $2, files: $3) }
        case .fileChmod:
            if e.mode & 0o6000 != 0 && e.mode & 0o170000 != 0o040000 {
                hit("setuid_created", "\(p.exe) set the \(e.mode & 0o4000 != 0 ? "setuid" : "setgid") bit on \(e.path) (mode \(String(e.mode & 0o7777, radix: 8)))",
                    key: e.path, files: [e.path], details: [("mode", String(e.mode & 0o7777, radix: 8))])
            }
        case .fileChown:
            break
        case .fileOpenRead:
            if BehaviourEngine.isShadowFile(e.path), !BehaviourEngine.shadowReaders.contains(p.name), !(e.parent.map { BehaviourEngine.packageManagers.contains($0.name) } ?? false) {
                hit("shadow_file_read", "\(p.exe) opened \(e.path) for reading", key: "\(p.exe)|\(e.path)", files: [e.path])
            }
        case .connect:
            let remote = "\(e.remoteAddress):\(e.remotePort)"
            if BehaviourEngine.poolPorts.contains(e.remotePort), BehaviourEngine.shells.contains(p.name) == false {
                if p.commandLine.lowercased().hasBytes("stratum") || p.name.lowercased().hasPrefix("xmrig") || e.remotePort == 3333 || e.remotePort == 14444 || e.remotePort == 45700 {
                    hit("crypto_miner", "\(p.exe) connected to \(remote), a mining-pool port", key: "\(p.exe)|\(e.remotePort)", connections: [remote])
                }
            }
            let key = "\(p.pid)|\(e.remoteAddress)"
            var f = fanout[key] ?? Fanout(startNs: e.timeNs, ports: [], reported: false)
            if e.timeNs - f.startNs > BehaviourEngine.portScanWindowNs { f = Fanout(startNs: e.timeNs, ports: [], reported: false) }
            if f.ports.count < 4096 { f.ports.insert(e.remotePort) }
            if f.ports.count >= BehaviourEngine.portScanPorts && !f.reported {
                f.reported = true
                let sorted = f.ports.sorted()
                hit("port_scan", "\(p.exe) connected to \(f.ports.count) ports of \(e.remoteAddress) within \((e.timeNs - f.startNs) / 1_000_000) ms",
                    key: key, connections: sorted.prefix(32).map { "\(e.remoteAddress):\($0)" }, details: [("ports", "\(f.ports.count)")])
            }
            fanout.set(key, f)
        case .ptrace:
            // PTRACE_ATTACH 16, PTRACE_SEIZE 0x4206; others act on an already traced process.
            let request = e.args[0]
            if (request == 16 || request == 0x4206), e.result == 0, let tu = e.targetUid, tu != p.uid {
                hit("ptrace_other_user", "\(p.exe) (uid \(p.uid)) attached to process \(e.targetPid) of uid \(tu)", key: "\(p.exe)|\(e.targetPid)",
                    details: [("target_pid", "\(e.targetPid)"), ("target_uid", "\(tu)"), ("request", request == 16 ? "PTRACE_ATTACH" : "PTRACE_SEIZE")])
            }
        case .moduleLoad:
            let path = e.strings.first ?? ""
            let fromMemory = e.args[0] == 0
            hit("kernel_module_load", fromMemory ? "\(p.exe) loaded a kernel module from memory (init_module), result \(e.result)"
                                                 : "\(p.exe) loaded the kernel module \(path), result \(e.result)",
                key: "\(p.exe)|\(path)", files: path.isEmpty ? [] : [path],
                details: [("result", "\(e.result)")], severity: fromMemory || BehaviourEngine.inTempDir(path) ? .high : .medium)
        case .credChange:
            if e.newEuid == 0 || e.newUid == 0, p.uid != 0, e.result == 0, !BehaviourEngine.setuidPrograms.contains(p.name) {
                hit("unexpected_root", "\(p.exe) (uid \(p.uid)) changed its credentials to uid \(e.newUid)/euid \(e.newEuid)", key: p.exe,
                    details: [("new_uid", "\(e.newUid)"), ("new_euid", "\(e.newEuid)")])
            }
        case .mount:
            let source = e.strings.first ?? "", fsType = e.strings.count > 2 ? e.strings[2] : ""
            if e.result == 0, source.hasPrefix("/dev/sd") || source.hasPrefix("/dev/nvme") || source.hasPrefix("/dev/vd") || source.hasPrefix("/dev/xvd") || source.hasPrefix("/dev/mapper/"),
               p.name != "mount" || e.parent.map({ BehaviourEngine.shells.contains($0.name) }) ?? false {
                hit("container_escape", "\(p.exe) mounted the block device \(source) on \(e.strings.count > 1 ? e.strings[1] : "?") (\(fsType))", key: "\(p.exe)|\(source)",
                    files: [source], severity: .medium)
            }
        case .signalSuite:
            // Signals that stop or end a process; not status requests (SIGUSR1), SIGCONT,
            // SIGWINCH, a liveness probe (0), nor init stopping the service.
            let tamper: Set<UInt64> = [1, 2, 3, 6, 9, 15, 19, 20, 21, 22, 24, 25, 31]
            guard tamper.contains(e.args[0]), p.pid != 1 else { break }
            hit("sensor_tampering", "\(p.exe) sent signal \(e.args[0]) to process \(e.targetPid) of the suite", key: "\(p.exe)|\(e.args[0])",
                details: [("signal", "\(e.args[0])"), ("target_pid", "\(e.targetPid)")])
        case .accept, .listen, .bpfLoad, .memfdCreate:
            break
        }
        return hits
    }

    func fileWritten(_ target: String, _ e: BehaviourEvent,
                              _ hit: (String, String, String, [String]) -> Void) {
        let p = e.process
        let by = "\(p.exe) wrote \(target)"
        let installer = BehaviourEngine.packageManagers.contains(p.name) || (e.parent.map { BehaviourEngine.packageManagers.contains($0.name) } ?? false)
        if target == "/etc/ld.so.preload" {
            hit("ld_preload_hijack", by, target, [target])
        }
        if !installer {
            if target == "/etc/crontab" || target.hasPrefix("/etc/cron.") || target.hasPrefix("/var/spool/cron/") || target.hasPrefix("/etc/anacrontab") {
                hit("cron_persistence", by, target, [target])
            }
            if BehaviourEngine.isSystemdUnit(target) {
                hit("systemd_persistence", by, target, [target])
            }
            if target == "/etc/rc.local" || target.hasPrefix("/etc/init.d/") || (target.hasPrefix("/etc/rc") && target.hasBytes(".d/")) {
                hit("rc_script_persistence", by, target, [target])
            }
            if BehaviourEngine.isShellProfile(target) {
                hit("shell_profile_persistence", by, target, [target])
            }
        }
        if target.hasSuffix("/.ssh/authorized_keys") || target.hasSuffix("/.ssh/authorized_keys2") {
            hit("ssh_authorized_keys", by, target, [target])
        }
    }

    func removed(_ path: String, _ e: BehaviourEvent, _ hit: (String, String, String, [String]) -> Void) {
        let p = e.process
        let verb = e.kind == .fileRename ? "moved \(path) to \(e.path2)" : "deleted \(path)"
        if path.hasPrefix("/var/log/"), !BehaviourEngine.logRotators.contains(p.name) {
            hit("log_tampering", "\(p.exe) \(verb)", path, [path])
        }
        if BehaviourEngine.isHistoryFile(path) {
            hit("history_tampering", "\(p.exe) \(verb)", path, [path])
        }
    }

    // MARK: helpers

    static func fileKey(_ dev: UInt32, _ ino: UInt64) -> UInt64 { ino &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(dev) }

    static func inTempDir(_ p: String) -> Bool {
        p.hasPrefix("/tmp/") || p.hasPrefix("/var/tmp/") || p.hasPrefix("/dev/shm/") || p.hasPrefix("/run/shm/")
    }

    static func isWebServer(_ name: Substring) -> Bool {
        webServers.contains(name) || name.hasPrefix("php-fpm") || name.hasPrefix("httpd") || name.hasPrefix("apache")
    }

    static func isShadowFile(_ p: String) -> Bool {
        p == "/etc/shadow" || p == "/etc/gshadow" || p == "/etc/shadow-" || p == "/etc/gshadow-" || p == "/etc/security/opasswd"
    }

    static func isSystemdUnit(_ p: String) -> Bool {
        let dirs = ["/etc/systemd/system/", "/lib/systemd/system/", "/usr/lib/systemd/system/", "/run/systemd/system/", "/etc/systemd/user/", "/usr/lib/systemd/user/"]
        let unit = p.hasSuffix(".service") || p.hasSuffix(".timer") || p.hasSuffix(".socket") || p.hasSuffix(".path") || p.hasSuffix(".conf")
        return unit && (dirs.contains { p.hasPrefix($0) } || p.hasBytes("/.config/systemd/user/"))
    }

    static func isShellProfile(_ p: String) -> Bool {
        let names = ["/.bashrc", "/.bash_profile", "/.bash_login", "/.profile", "/.zshrc", "/.zprofile", "/.zshenv", "/.zlogin", "/.bash_logout", "/.kshrc", "/.cshrc", "/.tcshrc"]
        if names.contains(where: { p.hasSuffix($0) }) { return true }
        return p == "/etc/profile" || p.hasPrefix("/etc/profile.d/") || p == "/etc/bash.bashrc" || p == "/etc/bashrc" || p.hasPrefix("/etc/zsh/") || p == "/etc/environment"
    }

    static func isHistoryFile(_ p: String) -> Bool {
        guard let last = p.split(separator: "/").last else { return false }
        return last.hasPrefix(".") && last.hasSuffix("_history") || last == ".histfile"
    }

    /// nsenter -t 1 / --target 1 / --target=1 / -t1.
    static func targetsPid1(_ argv: [String]) -> Bool {
        for (i, a) in argv.enumerated() {
            if a == "--target=1" || a == "-t1" { return true }
            if (a == "-t" || a == "--target"), i + 1 < argv.count, argv[i + 1] == "1" { return true }
            // Combined short options ending in t: -mt 1
            if a.hasPrefix("-"), !a.hasPrefix("--"), a.hasSuffix("t"), i + 1 < argv.count, argv[i + 1] == "1" { return true }
        }
        return false
    }
}

extension String {
    /// Substring test on the UTF-8 bytes. The standard library's generic
    /// `contains(_: StringProtocol)` costs microseconds per call, and these run
    /// for every exec and file event.
    @inline(__always)
    func hasBytes(_ needle: StaticString) -> Bool {
        let n = UnsafeRawBufferPointer(start: needle.utf8Start, count: needle.utf8CodeUnitCount)
        if let r = utf8.withContiguousStorageIfAvailable({ ValueMatcher.find(n, in: UnsafeRawBufferPointer($0)) }) { return r }
        return ValueMatcher.find(Array(n), in: Array(utf8))
    }
}
