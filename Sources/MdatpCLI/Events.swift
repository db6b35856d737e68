// `mdatp events list|tail`: events from the EDR room's store.
import ArgumentParser
import Glibc
import MdatpJSON
import MdatpSystem

struct EventFilter: ParsableArguments {
    @Option(name: .long, help: "exec, fork, exit, file_create, …, or a family: process, file, network, sensitive (repeatable)")
    var type: [String] = []
    @Option(name: .long, help: "Only events after this: 30s, 10m, 2h, 1d, or unix seconds.")
    var since: String?
    @Option(name: .long, help: "Only events of this process (tgid).")
    var pid: Int?

    func request(limit: Int, afterId: Int64, oldestFirst: Bool) throws -> JSON {
        var members: [(String, JSON)] = [("verb", "events"), ("limit", JSON(limit)), ("after_id", .number(Double(afterId))),
                                         ("order", .string(oldestFirst ? "oldest" : "newest"))]
        if !type.isEmpty { members.append(("types", .array(type.map { .string($0) }))) }
        if let since { members.append(("since_ns", .number(Double(try parseSince(since))))) }
        if let pid { members.append(("pid", JSON(pid))) }
        return .object(members)
    }

    func parseSince(_ s: String) throws -> Int64 {
        let now = Int64(Sys.realtimeSeconds())
        let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        if let u = s.last, let mult = units[u], let n = Int64(s.dropLast()), n >= 0 {
            return (now - n * mult) * 1_000_000_000
        }
        if let secs = Int64(s), secs >= 0 { return secs * 1_000_000_000 }
        throw CLIFailure(message: "--since: use 30s, 10m, 2h, 1d or unix seconds", code: CLIExit.usage)
    }
}

func printEvents(_ events: [JSON], json: Bool) {
    if json {
        for e in events { print(e.serialized()) }
        return
    }
    for e in events {
        let t = formatTime(unixNs: Int64(e["time_ns"]?.number ?? 0))
        let type = e["type"]?.string ?? ""
        var what = ""
        switch type {
        case "exec": what = (e["argv"]?.array?.compactMap(\.string).joined(separator: " ") ?? "") + "  (cwd \(e["cwd"]?.string ?? ""))"
        case "fork": what = "child \(e["details"]?["child_tgid"]?.int ?? 0)"
        case "exit":
            if let s = e["details"]?["signal"]?.int { what = "signal \(s)" } else { what = "exit code \(e["details"]?["exit_code"]?.int ?? 0)" }
        case "net_connect", "net_accept", "net_bind", "net_listen":
            what = "\(e["protocol"]?.string ?? "") \(e["local_address"]?.string ?? ""):\(e["local_port"]?.int ?? 0) -> \(e["remote_address"]?.string ?? ""):\(e["remote_port"]?.int ?? 0)"
        default:
            what = e["path"]?.string ?? ""
            if let p2 = e["path2"]?.string, !p2.isEmpty { what += " -> " + p2 }
            if type == "file_chmod" { what += " mode " + String(e["mode"]?.int ?? 0, radix: 8) }
        }
        print("\(t)  \(type)  pid \(e["tgid"]?.int ?? 0) uid \(e["uid"]?.int ?? 0) \(e["exe"]?.string ?? e["comm"]?.string ?? "")  \(what)")
    }
}

struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Events the sensor recorded (root or the mdatp group).",
                                                    subcommands: [List.self, Tail.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The newest events, oldest first.")
        @OptionGroup var filter: EventFilter
        @Option(name: .long, help: "At most this many (1…10000).") var limit = 100
        @OptionGroup var out: OutputOptions

        func run() throws {
            guard (1...10_000).contains(limit) else { throw CLIFailure(message: "--limit must be 1…10000", code: CLIExit.usage) }
            let reply = try SuiteClient.request(try filter.request(limit: limit, afterId: 0, oldestFirst: false))
            printEvents((reply["events"]?.array ?? []).reversed(), json: out.output == .json)
        }
    }

    struct Tail: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Follow new events as they are stored (Ctrl-C stops).")
        @OptionGroup var filter: EventFilter
        @Option(name: .long, help: "Stop after this many events.") var count: Int?
        @OptionGroup var out: OutputOptions

        func run() throws {
            // Start after the newest stored event, then poll for newer ones.
            let newest = try SuiteClient.request(.object([("verb", "events"), ("limit", 1), ("order", "newest")]))
            var after = Int64(newest["events"]?.array?.first?["id"]?.number ?? 0)
            var printed = 0
            setvbuf(stdout, nil, _IOLBF, 0)
            while true {
                let reply = try SuiteClient.request(try filter.request(limit: 1000, afterId: after, oldestFirst: true))
                var events = reply["events"]?.array ?? []
                if let c = count { events = Array(events.prefix(c - printed)) }
                printEvents(events, json: out.output == .json)
                printed += events.count
                if let last = events.last?["id"]?.number { after = Int64(last) }
                if let c = count, printed >= c { return }
                Sys.sleep(seconds: 0.5)
            }
        }
    }
}
