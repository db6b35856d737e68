// The EDR's detection stage: each enriched event is shown to the Sigma rules
// of its log source (as Sigma's Linux taxonomy names the fields, and as auditd
// records) and to the built-in behaviour detections; what fires becomes an
// alert candidate with its evidence (process chain, files, connections).
import Detection
import MdatpEvents
import MdatpJSON

public struct AlertCandidate {
    public var timeNs: Int64
    public var source: String        // "sigma:<id>" or "builtin:<name>"
    public var title: String
    public var description: String
    public var severity: String
    public var techniques: [String]
    public var dedupKey: String
    public var evidence: JSON
}

public struct DetectionCounters {
    public var sigmaEvaluations: UInt64 = 0
    public var sigmaHits: UInt64 = 0
    public var behaviourHits: UInt64 = 0
}

public struct DetectionPipeline {
    public var rules: SigmaRuleSet
    public var behaviours = BehaviourEngine()
    public var counters = DetectionCounters()
    var names = UserNames()
    /// SHA-256 of executables, filled by the room's hashing thread (evidence and stored rows).
    public var hashes = HashCache(capacity: 8192)
    /// The current event's container, for the evidence.
    var container: ContainerIdentity?
    let process: SigmaRecord
    let network: SigmaRecord
    let audit: AuditdRecords
    var files: [SigmaLogSource: SigmaRecord] = [:]

    public init(rules: SigmaRuleSet) {
        self.rules = rules
        // Records are reused event after event and filled only with what some rule reads.
        process = SigmaRecord(source: .processCreation, wanted: rules.wanted[.processCreation])
        network = SigmaRecord(source: .networkConnection, wanted: rules.wanted[.networkConnection])
        audit = AuditdRecords(wanted: rules.wanted[.auditd], types: rules.auditdTypesNeeded)
        for s in [SigmaLogSource.fileEvent, .fileCreate, .fileDelete, .fileRename, .fileChange] { files[s] = SigmaRecord(source: s, wanted: rules.wanted[s]) }
    }

    public mutating func refreshNames(now: Double) { names.refreshIfChanged(now: now) }

    /// Runs both engines on one event. `table` already reflects it (an exec is recorded).
    public mutating func run(_ ev: KernelEvent, row: StoredEvent, table: inout ProcessTable, container: ContainerIdentity? = nil) -> [AlertCandidate] {
        self.container = container
        // Forks and exits: no rule or built-in looks at them (they only keep the process table).
        if ev.kind == .fork || ev.kind == .exit { return [] }
        let h = ev.header
        let actor = table.lookup(h.tgid)
        let me = view(tgid: h.tgid, record: actor, row: row, uid: h.uid, euid: h.euid)
        let parentRec = table.lookup(me.ppid)
        let parent = parentRec.map { view(tgid: me.ppid, record: $0, row: nil, uid: $0.uid, euid: $0.uid) }
        let grandRec = parentRec.flatMap { table.lookup($0.ppid) }
        let grandparent = grandRec.map { view(tgid: parentRec!.ppid, record: $0, row: nil, uid: $0.uid, euid: $0.uid) }

        var out: [AlertCandidate] = []
        // Sigma.
        var sigmaRecords: [SigmaRecord] = []
        switch ev.body {
        case .exec(let x):
            if rules.hasRules(for: .processCreation) {
                fillProcess(process, me, parent: parent, grandparent: grandparent)
                process.put(.logonId, x.loginuid == .max ? nil : String(x.loginuid))
                process.put(.terminalSessionId, x.sessionid == .max ? nil : String(x.sessionid))
                sigmaRecords.append(process)
            }
        case .file(let f):
            let sources: [SigmaLogSource]
            switch ev.kind {
            case .fileCreate: sources = [.fileEvent, .fileCreate]
            case .fileOpenWrite: sources = [.fileEvent]
            case .fileRename: sources = [.fileEvent, .fileRename]
            case .fileUnlink: sources = [.fileDelete]
            case .fileCloseWrite, .fileChmod, .fileChown: sources = [.fileChange]
            default: sources = []
            }
            for s in sources where rules.hasRules(for: s) {
                let r = files[s]!
                fillProcess(r, me, parent: parent, grandparent: nil)
                r.put(.targetFilename, ev.kind == .fileRename ? f.path2 : f.path)
                r.put(.sourceFilename, ev.kind == .fileRename ? f.path : nil)
                sigmaRecords.append(r)
            }
        case .network(let n) where ev.kind == .netConnect || ev.kind == .netAccept:
            if rules.hasRules(for: .networkConnection) {
                fillProcess(network, me, parent: parent, grandparent: nil)
                network.put(.destinationIp, n.remoteAddress)
                network.put(.destinationPort, String(n.remotePort))
                network.put(.sourceIp, n.localAddress)
                network.put(.sourcePort, String(n.localPort))
                network.put(.initiated, ev.kind == .netConnect ? "true" : "false")
                network.put(.netProtocol, n.proto == 6 ? "tcp" : n.proto == 17 ? "udp" : String(n.proto))
                network.put(.destinationIsIpv6, n.family == 10 ? "true" : "false")
                network.put(.sourceIsIpv6, n.family == 10 ? "true" : "false")
                sigmaRecords.append(network)
            }
        default: break
        }
        for r in sigmaRecords { out += sigmaHits(r, ev, row.timeNs, me, parent, grandparent) }
        if rules.hasRules(for: .auditd) {
            for r in AuditdView.records(ev, me, names: names, into: audit) {
                out += sigmaHits(r, ev, row.timeNs, me, parent, grandparent)
            }
        }

        // Built-in behaviours.
        var b = BehaviourEvent(kind: .exec)
        guard let kind = behaviourKind(ev.kind) else { return out }
        b.kind = kind
        b.timeNs = row.timeNs
        b.process = me
        b.parent = parent
        b.grandparent = grandparent
        switch ev.body {
        case .exec(let x):
            b.stdio = (0..<3).map { StdioKind(rawValue: UInt8(x.stdioKind($0))) ?? .other }
            b.exeDeleted = h.flags & EventFlag.exeDeleted != 0
            b.setuidExec = h.flags & EventFlag.setuidExec != 0
            b.exeDev = x.exeDev
            b.exeIno = x.exeIno
        case .file(let f):
            b.path = f.path
            b.path2 = f.path2
            b.mode = f.mode
            b.openFlags = f.openFlags
            b.fileDev = f.dev
            b.fileIno = f.ino
        case .network(let n):
            b.remoteAddress = n.remoteAddress
            b.remotePort = n.remotePort
            b.localPort = n.localPort
            b.result = Int64(n.ret)
        case .sensitive(let s):
            b.result = s.ret
            b.targetPid = s.targetPid
            b.targetUid = s.targetPid == 0 ? nil : table.lookup(s.targetPid)?.uid
            b.args = s.args
            b.newUid = s.newUid
            b.newEuid = s.newEuid
            b.strings = s.strings
        default: break
        }
        for hit in behaviours.evaluate(b) {
            counters.behaviourHits &+= 1
            var details = hit.details
            if let tu = b.targetUid, ev.kind == .ptrace { details.append(("target_user", names.user(tu))) }
            // The alert is about another process (an exec matched late): its own chain.
            var chain = (me, parent, grandparent)
            if let other = hit.process {
                let op = table.lookup(other.ppid).map { view(tgid: other.ppid, record: $0, row: nil, uid: $0.uid, euid: $0.uid) }
                let og = op.flatMap { p in table.lookup(p.ppid).map { view(tgid: p.ppid, record: $0, row: nil, uid: $0.uid, euid: $0.uid) } }
                chain = (other, op, og)
            }
            out.append(AlertCandidate(timeNs: row.timeNs, source: "builtin:\(hit.name)", title: hit.title, description: hit.description,
                                      severity: hit.severity.rawValue, techniques: hit.techniques, dedupKey: hit.dedupKey,
                                      evidence: evidence(ev, chain.0, chain.1, chain.2, files: hit.files, connections: hit.connections, details: details)))
        }
        return out
    }

    mutating func sigmaHits(_ r: SigmaRecord, _ ev: KernelEvent, _ timeNs: Int64, _ me: ProcessView, _ parent: ProcessView?, _ grandparent: ProcessView?) -> [AlertCandidate] {
        counters.sigmaEvaluations &+= 1
        var out: [AlertCandidate] = []
        for i in rules.evaluate(r) {
            counters.sigmaHits &+= 1
            let rule = rules.rules[i]
            var files: [String] = []
            var conns: [String] = []
            switch ev.body {
            case .file(let f): files = ev.kind == .fileRename ? [f.path, f.path2] : [f.path]
            case .network(let n): conns = ["\(n.remoteAddress):\(n.remotePort)"]
            case .exec(let x): files = [x.exe]
            default: break
            }
            out.append(AlertCandidate(timeNs: timeNs, source: "sigma:\(rule.id.isEmpty ? rule.title : rule.id)", title: rule.title,
                                      description: rule.description.isEmpty ? "Sigma rule \(rule.title) (\(rule.file))" : rule.description,
                                      severity: rule.level.rawValue, techniques: rule.techniques,
                                      // Repeats are the same program doing the same thing: the same command
                                      // line, file or peer.
                                      dedupKey: "\(me.exe)|\(ev.kind == .exec ? me.commandLine : files.last ?? conns.first ?? me.commandLine)",
                                      evidence: evidence(ev, me, parent, grandparent, files: files, connections: conns, details: [("rule_file", rule.file)])))
        }
        return out
    }

    func view(tgid: UInt32, record: ProcessRecord?, row: StoredEvent?, uid: UInt32, euid: UInt32) -> ProcessView {
        var v = ProcessView()
        v.pid = tgid
        v.uid = uid
        v.euid = euid
        if let r = record {
            v.ppid = r.ppid
            v.exe = r.exe
            v.argv = r.argv
            v.cwd = r.cwd
        }
        if let row {
            if v.ppid == 0 { v.ppid = UInt32(truncatingIfNeeded: row.ppid) }
            if !row.exe.isEmpty { v.exe = row.exe; v.argv = row.argv; v.cwd = row.cwd }
        }
        return v
    }

    func fillProcess(_ r: SigmaRecord, _ me: ProcessView, parent: ProcessView?, grandparent: ProcessView?) {
        r.reset()
        r.put(.image, me.exe)
        r.put(.commandLine, me.commandLine)
        r.put(.currentDirectory, me.cwd)
        r.put(.user, names.user(me.uid))
        r.put(.processId, String(me.pid))
        r.put(.parentProcessId, String(me.ppid))
        if let p = parent {
            r.put(.parentImage, p.exe)
            r.put(.parentCommandLine, p.commandLine)
            if r.source == .processCreation { r.put(.parentUser, names.user(p.uid)) }
        }
        if let g = grandparent, r.source == .processCreation {
            r.put(.grandparentImage, g.exe)
            r.put(.grandparentCommandLine, g.commandLine)
        }
    }

    func behaviourKind(_ k: EventKind) -> BehaviourEventKind? {
        switch k {
        case .exec: return .exec
        case .fileCreate: return .fileCreate
        case .fileOpenWrite: return .fileOpenWrite
        case .fileCloseWrite: return .fileCloseWrite
        case .fileRename: return .fileRename
        case .fileUnlink: return .fileUnlink
        case .fileChmod: return .fileChmod
        case .fileChown: return .fileChown
        case .fileOpenRead: return .fileOpenRead
        case .netConnect: return .connect
        case .netAccept: return .accept
        case .netListen: return .listen
        case .ptrace: return .ptrace
        case .moduleLoad: return .moduleLoad
        case .bpfLoad: return .bpfLoad
        case .credChange: return .credChange
        case .memfdCreate: return .memfdCreate
        case .mount: return .mount
        case .signalSuite: return .signalSuite
        case .fork, .exit, .netBind, .unknown: return nil
        }
    }

    func processJSON(_ p: ProcessView) -> JSON {
        var m: [(String, JSON)] = [("pid", JSON(Int(p.pid))), ("ppid", JSON(Int(p.ppid))), ("exe", .string(p.exe)), ("command_line", .string(p.commandLine)),
                                   ("argv", .array(p.argv.prefix(64).map { .string($0) })), ("cwd", .string(p.cwd)),
                                   ("uid", JSON(Int(p.uid))), ("user", .string(names.user(p.uid)))]
        if let sha = hashes.lookup(path: p.exe) { m.append(("sha256", .string(sha))) }
        return .object(m)
    }

    func evidence(_ ev: KernelEvent, _ me: ProcessView, _ parent: ProcessView?, _ grandparent: ProcessView?,
                  files: [String], connections: [String], details: [(String, String)]) -> JSON {
        var chain: [JSON] = [processJSON(me)]
        if let p = parent { chain.append(processJSON(p)) }
        if let g = grandparent { chain.append(processJSON(g)) }
        var m: [(String, JSON)] = [("event_type", .string(ev.kind.name)), ("process_chain", .array(chain))]
        if !files.isEmpty { m.append(("files", .array(files.map { .string($0) }))) }
        if !connections.isEmpty { m.append(("connections", .array(connections.map { .string($0) }))) }
        if !details.isEmpty { m.append(("details", .object(details.map { ($0.0, .string($0.1)) }))) }
        if let c = container {
            m.append(("container", .object([("runtime", .string(c.runtime)), ("id", .string(c.containerId)), ("pod_uid", .string(c.podUid))])))
        }
        return .object(m)
    }
}

/// Reused auditd records: at most one SYSCALL, EXECVE, CWD, SOCKADDR and two PATH per event.
final class AuditdRecords {
    let syscall, execve, cwd, sockaddr, path1, path2: SigmaRecord
    /// Record types some rule can match (nil: all): the others are not built.
    let types: Set<String>?
    init(wanted: [Bool]?, types: Set<String>?) {
        self.types = types
        func make() -> SigmaRecord { SigmaRecord(source: .auditd, wanted: wanted.map { w in var x = w; x[SigmaField.auditType.rawValue] = true; return x }) }
        syscall = make(); execve = make(); cwd = make(); sockaddr = make(); path1 = make(); path2 = make()
    }
}

/// Our events as auditd writes them (interpreted form: `ausearch -i`), one
/// record per line type, so rules written for auditd apply unchanged.
enum AuditdView {
    static func records(_ ev: KernelEvent, _ me: ProcessView, names: UserNames, into pool: AuditdRecords) -> [SigmaRecord] {
        let all = AuditdView.build(ev, me, names: names, into: pool)
        guard let types = pool.types else { return all }
        return all.filter { $0.raw(.auditType).map { types.contains(String(decoding: $0, as: UTF8.self)) } ?? false }
    }

    static func build(_ ev: KernelEvent, _ me: ProcessView, names: UserNames, into pool: AuditdRecords) -> [SigmaRecord] {
        var out: [SigmaRecord] = []
        func syscallRecord(_ name: String, success: Bool, exit: Int64, args: [UInt64] = []) -> SigmaRecord {
            let s = pool.syscall
            s.reset()
            s.put(.auditType, "SYSCALL")
            s.put(.syscall, name)
            s.put(.success, success ? "yes" : "no")
            s.put(.exit, String(exit))
            s.put(.exe, me.exe)
            s.put(.comm, ev.header.comm)
            s.put(.uid, names.user(ev.header.uid))
            s.put(.euid, names.user(ev.header.euid))
            s.put(.pid, String(me.pid))
            s.put(.ppid, String(me.ppid))
            s.put(.key, "(null)")
            for (i, a) in args.prefix(4).enumerated() { s.put(SigmaField.argument(i)!, String(a, radix: 16)) }
            return s
        }
        func pathRecord(_ p: SigmaRecord, _ name: String, _ nametype: String, mode: UInt32? = nil) -> SigmaRecord {
            p.reset()
            p.put(.auditType, "PATH")
            p.put(.name, name)
            p.put(.nametype, nametype)
            if let mode { p.put(.mode, String(mode, radix: 8)) }
            return p
        }
        switch ev.body {
        case .exec(let x):
            let s = syscallRecord("execve", success: true, exit: 0)
            s.put(.auid, x.loginuid == .max ? "unset" : names.user(x.loginuid))
            s.put(.ses, x.sessionid == .max ? "unset" : String(x.sessionid))
            s.put(.tty, x.tty.isEmpty ? "(none)" : x.tty)
            s.put(.gid, String(x.gid))
            out.append(s)
            let e = pool.execve
            e.reset()
            e.put(.auditType, "EXECVE")
            e.put(.argc, String(x.argc))
            for (i, a) in x.argv.prefix(32).enumerated() { e.put(SigmaField.argument(i)!, a) }
            out.append(e)
            out.append(pathRecord(pool.path1, x.exe, "NORMAL", mode: x.exeMode))
            let c = pool.cwd
            c.reset()
            c.put(.auditType, "CWD")
            c.put(.cwd, x.cwd)
            out.append(c)
        case .file(let f):
            let call: String
            var paths: [SigmaRecord] = []
            switch ev.kind {
            case .fileCreate: call = "openat"; paths = [pathRecord(pool.path1, f.path, "CREATE", mode: f.mode)]
            case .fileOpenWrite, .fileOpenRead, .fileCloseWrite: call = "openat"; paths = [pathRecord(pool.path1, f.path, "NORMAL", mode: f.mode)]
            case .fileRename: call = "renameat2"; paths = [pathRecord(pool.path1, f.path, "DELETE"), pathRecord(pool.path2, f.path2, "CREATE")]
            case .fileUnlink: call = "unlinkat"; paths = [pathRecord(pool.path1, f.path, "DELETE")]
            case .fileChmod: call = "fchmodat"; paths = [pathRecord(pool.path1, f.path, "NORMAL", mode: f.mode)]
            case .fileChown: call = "fchownat"; paths = [pathRecord(pool.path1, f.path, "NORMAL")]
            default: return []
            }
            out.append(syscallRecord(call, success: true, exit: 0))
            out += paths
        case .network(let n):
            let call: String
            switch ev.kind {
            case .netConnect: call = "connect"
            case .netAccept: call = "accept4"
            case .netBind: call = "bind"
            case .netListen: call = "listen"
            default: return []
            }
            out.append(syscallRecord(call, success: n.ret == 0 || n.ret == -115, exit: Int64(n.ret)))
            if ev.kind != .netListen {
                let a = pool.sockaddr
                a.reset()
                a.put(.auditType, "SOCKADDR")
                a.put(.saddrFam, n.family == 10 ? "inet6" : "inet")
                a.put(.laddr, ev.kind == .netBind ? n.localAddress : n.remoteAddress)
                a.put(.lport, String(ev.kind == .netBind ? n.localPort : n.remotePort))
                out.append(a)
            }
        case .sensitive(let s):
            let call: String
            switch ev.kind {
            case .ptrace: call = "ptrace"
            case .moduleLoad: call = s.args[0] == 1 ? "finit_module" : "init_module"
            case .bpfLoad: call = "bpf"
            case .credChange: call = ["", "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "capset"][Int(min(s.args[0], 7))]
            case .memfdCreate: call = "memfd_create"
            case .mount: call = "mount"
            case .signalSuite: call = "kill"
            default: return []
            }
            let args: [UInt64] = ev.kind == .ptrace ? [s.args[0], UInt64(s.targetPid)] : ev.kind == .signalSuite ? [UInt64(s.targetPid), s.args[0]] : Array(s.args.dropFirst())
            out.append(syscallRecord(call, success: s.ret >= 0, exit: s.ret, args: args))
            if ev.kind == .moduleLoad, let p = s.strings.first, !p.isEmpty { out.append(pathRecord(pool.path1, p, "NORMAL")) }
            if ev.kind == .mount, s.strings.count > 1 { out.append(pathRecord(pool.path1, s.strings[1], "NORMAL")) }
        default: break
        }
        return out
    }
}
