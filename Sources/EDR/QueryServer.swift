// Answers CLI requests the watchdog forwards with the client's socket.
// The request is hostile input: bounded JSON, known keys, bound parameters.
import Glibc
import MdatpEvents
import MdatpJSON
import MdatpSystem
import Detection

/// What a query may read.
struct QueryContext {
    let store: EventStore
    let alerts: AlertStore
    let rules: SigmaRuleSet
    let hunt: HuntEngine?
}

enum QueryServer {
    static let families = ["process", "file", "network", "sensitive"]

    static func answer(fd: Int32, uid: UInt32, request: [UInt8], context: QueryContext, counters: inout EDRCounters) {
        // A slow or stuck client must not hold the room.
        Sys.setTimeouts(fd, seconds: 2)
        var limits = JSONLimits()
        limits.maxBytes = 12 << 10
        limits.maxDepth = 4
        let json = try? JSON.parse(request, limits: limits)
        let reply: JSON
        switch json?["verb"]?.string {
        case "alerts": reply = alertsReply(json!, context.alerts, &counters)
        case "rules": reply = rulesReply(context.rules, &counters)
        case "hunt": reply = huntReply(json!, context.hunt, &counters)
        default:
            switch parse(request) {
            case .failure(let why):
                counters.refused &+= 1
                reply = .object([("error", .string(why.reason))])
            case .success(let q):
                do throws(StoreError) {
                    let rows = try context.store.query(q)
                    counters.queries &+= 1
                    reply = .object([("events", .array(rows.map(eventJSON)))])
                } catch {
                    reply = .object([("error", .string(error.description))])
                }
            }
        }
        try? Sys.writeAll(fd, Array((reply.serialized() + "\n").utf8))
    }

    static func alertsReply(_ j: JSON, _ alerts: AlertStore, _ counters: inout EDRCounters) -> JSON {
        for (k, _) in j.members ?? [] where !["verb", "action", "id", "limit", "since_ns", "severity"].contains(k) {
            counters.refused &+= 1
            return .object([("error", .string("unknown key \(k)"))])
        }
        do throws(StoreError) {
            switch j["action"]?.string ?? "list" {
            case "list":
                let limit = j["limit"]?.int ?? 100
                guard (1...10_000).contains(limit) else { return .object([("error", "limit must be 1...10000")]) }
                let severity = j["severity"]?.string
                if let s = severity, !["informational", "low", "medium", "high", "critical"].contains(s) {
                    return .object([("error", "severity must be informational, low, medium, high or critical")])
                }
                counters.queries &+= 1
                return .object([("alerts", .array(try alerts.list(limit: limit, sinceNs: Int64(j["since_ns"]?.int ?? 0), minSeverity: severity).map(\.json)))])
            case "get":
                guard let id = j["id"]?.string, id.utf8.count <= 64 else { return .object([("error", "get needs --id")]) }
                counters.queries &+= 1
                guard let a = try alerts.get(id: id) else { return .object([("error", .string("no alert \(id)"))]) }
                return .object([("alert", a.json)])
            default:
                counters.refused &+= 1
                return .object([("error", "alerts action must be list or get")])
            }
        } catch {
            return .object([("error", .string(error.description))])
        }
    }

    static func rulesReply(_ rules: SigmaRuleSet, _ counters: inout EDRCounters) -> JSON {
        counters.queries &+= 1
        let loaded: [JSON] = rules.rules.map { r in
            .object([("id", .string(r.id)), ("title", .string(r.title)), ("level", .string(r.level.rawValue)), ("logsource", .string(r.source.rawValue)),
                     ("techniques", .array(r.techniques.map { .string($0) })), ("file", .string(r.file))])
        }
        let refused: [JSON] = rules.refused.map { .object([("file", .string($0.file)), ("reason", .string($0.reason))]) }
        let builtin: [JSON] = BehaviourEngine.catalogue.map { b in
            .object([("name", .string(b.name)), ("title", .string(b.title)), ("severity", .string(b.severity.rawValue)),
                     ("techniques", .array(b.techniques.map { .string($0) }))])
        }
        return .object([("sigma", .array(loaded)), ("refused", .array(refused)), ("builtin", .array(builtin))])
    }

    static func huntReply(_ j: JSON, _ hunt: HuntEngine?, _ counters: inout EDRCounters) -> JSON {
        guard let sql = j["query"]?.string else {
            counters.refused &+= 1
            return .object([("error", "hunt needs a query")])
        }
        guard let hunt else { return .object([("error", "hunting is unavailable (see the edr room's log)")]) }
        let limit = j["limit"]?.int ?? 1000
        let seconds = j["timeout"]?.number ?? 5
        do throws(HuntError) {
            let r = try hunt.run(sql, limit: limit, seconds: seconds)
            counters.queries &+= 1
            return .object([("columns", .array(r.columns.map { .string($0) })), ("rows", .array(r.rows.map { .array($0) })),
                            ("truncated", .bool(r.truncated))])
        } catch {
            counters.refused &+= 1
            return .object([("error", .string(error.message))])
        }
    }

    static func parse(_ request: [UInt8]) -> Result<EventStore.Query, QueryRefusal> {
        var limits = JSONLimits()
        limits.maxBytes = 4096
        limits.maxDepth = 4
        guard let json = try? JSON.parse(request, limits: limits), let members = json.members else {
            return .failure(QueryRefusal("request is not a JSON object"))
        }
        var q = EventStore.Query()
        for (k, v) in members {
            switch k {
            case "verb":
                guard v.string == "events" else { return .failure(QueryRefusal("unknown verb")) }
            case "types":
                guard let list = v.array, list.count <= 32 else { return .failure(QueryRefusal("types must be a list")) }
                for t in list {
                    guard let s = t.string else { return .failure(QueryRefusal("types must be strings")) }
                    if families.contains(s) {
                        q.types += EventKind.allCases.filter { $0.family == s }.map(\.name)
                    } else if let kind = EventKind.allCases.first(where: { $0.name == s && $0 != .unknown }) {
                        q.types.append(kind.name)
                    } else {
                        return .failure(QueryRefusal("unknown event type \(s)"))
                    }
                }
            case "since_ns":
                guard let n = v.int, n >= 0 else { return .failure(QueryRefusal("since_ns must be an integer")) }
                q.sinceNs = Int64(n)
            case "after_id":
                guard let n = v.int, n >= 0 else { return .failure(QueryRefusal("after_id must be an integer")) }
                q.afterId = Int64(n)
            case "limit":
                guard let n = v.int, (1...10_000).contains(n) else { return .failure(QueryRefusal("limit must be 1...10000")) }
                q.limit = n
            case "order":
                guard let s = v.string, s == "newest" || s == "oldest" else { return .failure(QueryRefusal("order must be newest or oldest")) }
                q.newestFirst = s == "newest"
            case "pid":
                guard let n = v.int, n > 0 else { return .failure(QueryRefusal("pid must be a positive integer")) }
                q.pid = Int64(n)
            default:
                return .failure(QueryRefusal("unknown key \(k)"))
            }
        }
        return .success(q)
    }
}

struct QueryRefusal: Error {
    let reason: String
    init(_ r: String) { reason = r }
}


/// The stable JSON shape of one event (docs/PROTOCOL.md, `mdatp events --output json`).
public func eventJSON(_ e: StoredEvent) -> JSON {
    var flags: [JSON] = []
    if e.flags & Int64(EventFlag.pathTruncated) != 0 { flags.append("path_truncated") }
    if e.flags & Int64(EventFlag.path2Truncated) != 0 { flags.append("path2_truncated") }
    if e.flags & Int64(EventFlag.argvTruncated) != 0 { flags.append("argv_truncated") }
    if e.flags & Int64(EventFlag.setuidExec) != 0 { flags.append("setuid_exec") }
    if e.flags & Int64(EventFlag.setgidExec) != 0 { flags.append("setgid_exec") }
    if e.flags & Int64(EventFlag.pathRelative) != 0 { flags.append("path_relative") }
    if e.flags & Int64(EventFlag.stringTruncated) != 0 { flags.append("string_truncated") }
    if e.flags & Int64(EventFlag.execBlocked) != 0 { flags.append("exec_blocked") }
    if e.flags & Int64(EventFlag.execRefused) != 0 { flags.append("exec_refused") }
    if e.flags & Int64(EventFlag.exeOnTmpfs) != 0 { flags.append("exe_on_tmpfs") }
    if e.flags & Int64(EventFlag.exeDeleted) != 0 { flags.append("exe_deleted") }
    func n(_ v: Int64) -> JSON { .number(Double(v)) }
    var m: [(String, JSON)] = []
    m.append(("id", n(e.id)))
    m.append(("time_ns", n(e.timeNs)))
    m.append(("type", .string(e.type)))
    m.append(("kernel_seq", n(e.kernelSeq)))
    m.append(("pid", n(e.pid)))
    m.append(("tgid", n(e.tgid)))
    m.append(("ppid", n(e.ppid)))
    m.append(("uid", n(e.uid)))
    m.append(("euid", n(e.euid)))
    m.append(("comm", .string(e.comm)))
    m.append(("exe", .string(e.exe)))
    m.append(("argv", .array(e.argv.map { JSON.string($0) })))
    m.append(("cwd", .string(e.cwd)))
    m.append(("path", .string(e.path)))
    m.append(("path2", .string(e.path2)))
    m.append(("mode", n(e.mode)))
    m.append(("owner_uid", n(e.ownerUid)))
    m.append(("owner_gid", n(e.ownerGid)))
    m.append(("protocol", .string(e.proto)))
    m.append(("local_address", .string(e.localAddress)))
    m.append(("local_port", n(e.localPort)))
    m.append(("remote_address", .string(e.remoteAddress)))
    m.append(("remote_port", n(e.remotePort)))
    m.append(("flags", .array(flags)))
    m.append(("details", (try? JSON.parse(e.details)) ?? .object([])))
    return .object(m)
}
