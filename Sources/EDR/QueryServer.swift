// Answers CLI requests the watchdog forwards with the client's socket.
// The request is hostile input: bounded JSON, known keys, bound parameters.
import Glibc
import MdatpEvents
import MdatpJSON
import MdatpSystem

enum QueryServer {
    static let families = ["process", "file", "network", "sensitive"]

    static func answer(fd: Int32, uid: UInt32, request: [UInt8], store: EventStore, counters: inout EDRCounters) {
        // A slow or stuck client must not hold the room.
        Sys.setTimeouts(fd, seconds: 2)
        let reply: JSON
        switch parse(request) {
        case .failure(let why):
            counters.refused &+= 1
            reply = .object([("error", .string(why.reason))])
        case .success(let q):
            do throws(StoreError) {
                let rows = try store.query(q)
                counters.queries &+= 1
                reply = .object([("events", .array(rows.map(eventJSON)))])
            } catch {
                reply = .object([("error", .string(error.description))])
            }
        }
        try? Sys.writeAll(fd, Array((reply.serialized() + "\n").utf8))
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
