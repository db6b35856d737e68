// mdatp-bench edr: events per second through the EDR's enrichment and
// detection (process table, Sigma rules of every log source, the built-in
// behaviours) with N synthetic rules, on a synthetic event mix shaped like a
// busy server (execs with their forks and exits, file writes, connections).
// Single thread, as the room runs; the store is left out (measured by the
// sensor bench).
import Detection
import EDR
import Glibc
import MdatpEvents

func edrBench(_ a: [String]) {
    var ruleCounts = [0, 200, 2000]
    var events = 200_000
    var runs = 3
    var i = 0
    while i < a.count {
        switch a[i] {
        case "--rules": i += 1; ruleCounts = a[i].split(separator: ",").compactMap { Int($0) }
        case "--events": i += 1; events = Int(a[i]) ?? events
        case "--runs": i += 1; runs = Int(a[i]) ?? runs
        default: print("unknown option \(a[i])"); exit(64)
        }
        i += 1
    }
    let stream = syntheticEvents(events)
    print("edr pipeline: \(events) events (exec 10%, fork+exit 20%, file 50%, network 20%), \(runs) runs, median")
    for n in ruleCounts {
        var set = SigmaRuleSet()
        for r in syntheticRules(n) {
            do throws(SigmaRefusal) { set.add(try SigmaCompiler.compile(yaml: r)) } catch { print("synthetic rule refused: \(error)"); exit(1) }
        }
        var rates: [Double] = []
        var alerts = 0
        for _ in 0..<runs {
            var enricher = Enricher(capacity: 32768, bootToUnixNs: 0)
            var pipeline = DetectionPipeline(rules: set)
            alerts = 0
            let t0 = Sys_now()
            for ev in stream {
                let row = enricher.row(for: ev)
                alerts += pipeline.run(ev, row: row, table: &enricher.table).count
            }
            rates.append(Double(stream.count) / (Sys_now() - t0))
        }
        print("rules \(String(n).padding(toLength: 5)) \(fixed1(median(rates) / 1000)) k events/s  (\(alerts) alerts per run)")
    }
}

func Sys_now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

extension String {
    func padding(toLength n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
}

/// Deterministic pseudo-random numbers (the same stream every run).
struct SplitMix {
    var s: UInt64
    mutating func next() -> UInt64 {
        s &+= 0x9E37_79B9_7F4A_7C15
        var z = s
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func pick<T>(_ a: [T]) -> T { a[Int(next() % UInt64(a.count))] }
}

let benchWords = ["backup", "deploy", "report", "cache", "worker", "index", "sync", "metrics", "billing", "ingest", "thumbnail", "export"]
let benchPrograms = ["/usr/bin/python3", "/usr/bin/node", "/usr/lib/postgresql/15/bin/postgres", "/usr/bin/git", "/usr/bin/make",
                     "/usr/bin/gcc", "/usr/bin/bash", "/usr/bin/curl", "/usr/bin/tar", "/usr/bin/rsync"]

func syntheticEvents(_ n: Int) -> [KernelEvent] {
    var r = SplitMix(s: 42)
    var out: [KernelEvent] = []
    out.reserveCapacity(n)
    var t: UInt64 = 1_000_000
    var nextPid: UInt32 = 10_000
    var live: [UInt32] = [1]
    func header(_ kind: EventKind, _ tgid: UInt32) -> EventHeader {
        t += 1000
        return EventHeader(type: kind.rawValue, flags: 0, size: 0, seq: t, ktimeNs: t, pid: tgid, tgid: tgid, uid: 1000, euid: 1000, cgroupId: 1, comm: "bench")
    }
    while out.count < n {
        let roll = r.next() % 100
        let actor = live[Int(r.next() % UInt64(live.count))]
        if roll < 10 {
            // fork + exec (+ exit of an older one)
            let child = nextPid
            nextPid &+= 1
            out.append(KernelEvent(header: header(.fork, actor), body: .fork(childPid: child, childTgid: child, childStartNs: t)))
            let exe = r.pick(benchPrograms)
            let argv = [String(exe.split(separator: "/").last!), "--" + r.pick(benchWords), "/srv/\(r.pick(benchWords))/\(r.next() % 1000)"]
            let x = ExecInfo(ppid: actor, gid: 1000, egid: 1000, loginuid: 1000, sessionid: 3, exeDev: 8, exeIno: r.next() % 5000, exeMtimeSec: 0,
                             exeMtimeNsec: 0, exeMode: 0o100755, startTimeNs: t, argc: UInt32(argv.count), exe: exe, cwd: "/srv/app", tty: "", argv: argv,
                             stdio: 0x222)
            out.append(KernelEvent(header: header(.exec, child), body: .exec(x)))
            live.append(child)
            if live.count > 300 {
                let victim = live.remove(at: 1)
                out.append(KernelEvent(header: header(.exit, victim), body: .exit(ppid: 1, exitCode: 0, startNs: 0)))
            }
        } else if roll < 80 {
            let kinds: [EventKind] = [.fileCreate, .fileOpenWrite, .fileCloseWrite, .fileCloseWrite, .fileRename, .fileUnlink]
            let kind = r.pick(kinds)
            let path = "/srv/\(r.pick(benchWords))/data/\(r.pick(benchWords))-\(r.next() % 100_000).\(r.pick(["json", "log", "tmp", "parquet"]))"
            let f = FileInfo(mode: 0o100644, ownerUid: 1000, ownerGid: 1000, dev: 8, ino: r.next() % 1_000_000, openFlags: 1,
                             path: path, path2: kind == .fileRename ? path + ".done" : "")
            out.append(KernelEvent(header: header(kind, actor), body: .file(f)))
        } else {
            let n = NetInfo(family: 2, proto: 6, sockType: 1, localPort: UInt16(30000 + r.next() % 20000), remotePort: r.pick([5432, 443, 6379, 80, 8080]),
                            ret: 0, localAddress: "10.0.0.5", remoteAddress: "10.0.\(r.next() % 4).\(r.next() % 250 + 1)")
            out.append(KernelEvent(header: header(r.next() % 4 == 0 ? .netAccept : .netConnect, actor), body: .network(n)))
        }
    }
    return out
}

/// N rules spread over the log sources, shaped like real ones (endswith on
/// images, contains on command lines, prefixes on paths, port lists, some
/// regular expressions and keyword lists); they do not match the benign mix.
func syntheticRules(_ n: Int) -> [String] {
    var r = SplitMix(s: 7)
    var out: [String] = []
    for i in 0..<n {
        let w = "mdatpbench\(i)"
        let body: String
        switch i % 6 {
        case 0, 1:
            body = """
            logsource: {product: linux, category: process_creation}
            detection:
                sel_img:
                    Image|endswith: ['/\(w)', '/\(w)d', '/\(r.pick(benchWords))-\(w)']
                sel_cmd:
                    CommandLine|contains: ['--\(w)', ' -x \(w) ']
                filter:
                    User: 'svc-\(w)'
                condition: 1 of sel_* and not filter
            """
        case 2:
            body = """
            logsource: {product: linux, category: file_event}
            detection:
                sel:
                    TargetFilename|startswith: ['/etc/\(w)/', '/var/lib/\(w)/']
                    Image|endswith: ['/\(w)', '/python3']
                condition: sel
            """
        case 3:
            body = """
            logsource: {product: linux, category: network_connection}
            detection:
                sel:
                    DestinationPort: [\(40000 + i % 20000), \(60000 + i % 5000)]
                    Initiated: 'true'
                condition: sel
            """
        case 4:
            body = """
            logsource: {product: linux, category: process_creation}
            detection:
                sel:
                    CommandLine|re: '\(w)[0-9]+ --(a|b)'
                condition: sel
            """
        default:
            body = """
            logsource: {product: linux, service: auditd}
            detection:
                sel:
                    type: EXECVE
                    a0: '\(w)'
                condition: sel
            """
        }
        out.append("title: synthetic \(i)\nid: bench-\(i)\nlevel: low\n" + body)
    }
    return out
}
