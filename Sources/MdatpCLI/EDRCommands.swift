// `mdatp edr alert list|get`, `mdatp edr rules list`, `mdatp hunt "SELECT …"`:
// the EDR room answers (through the watchdog), root or the mdatp group.
import ArgumentParser
import Glibc
import MdatpJSON
import MdatpSystem

struct EDRCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "edr", abstract: "Endpoint detection and response: alerts and detection rules.",
                                                    subcommands: [Alert.self, Rules.self])

    struct Alert: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Alerts raised on this device.", subcommands: [List.self, Get.self])

        struct List: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "The newest alerts first.")
            @Option(name: .long, help: "Only alerts seen after this: 30s, 10m, 2h, 1d, or unix seconds.") var since: String?
            @Option(name: .long, help: "At least this severity: informational, low, medium, high, critical.") var severity: String?
            @Option(name: .long, help: "At most this many (1…10000).") var limit = 100
            @OptionGroup var out: OutputOptions

            func run() throws {
                guard (1...10_000).contains(limit) else { throw CLIFailure(message: "--limit must be 1…10000", code: CLIExit.usage) }
                var m: [(String, JSON)] = [("verb", "alerts"), ("action", "list"), ("limit", JSON(limit))]
                if let since { m.append(("since_ns", .number(Double(try EventFilter().parseSince(since))))) }
                if let severity { m.append(("severity", .string(severity))) }
                let alerts = try SuiteClient.request(.object(m))["alerts"]?.array ?? []
                if out.output == .json {
                    for a in alerts { print(a.serialized()) }
                    return
                }
                if alerts.isEmpty { print("no alerts"); return }
                for a in alerts {
                    let techniques = a["techniques"]?.array?.compactMap(\.string).joined(separator: ",") ?? ""
                    print("\(a["last_seen"]?.string ?? "")  \(a["id"]?.string ?? "")  \((a["severity"]?.string ?? "").padding(8))  x\(a["count"]?.int ?? 1)  \(a["title"]?.string ?? "")  [\(techniques)]  \(a["detection_source"]?.string ?? "")")
                }
            }
        }

        struct Get: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "One alert with its evidence.")
            @Option(name: .long, help: "The alert's id (from `mdatp edr alert list`).") var id: String
            @OptionGroup var out: OutputOptions

            func run() throws {
                let reply = try SuiteClient.request(.object([("verb", "alerts"), ("action", "get"), ("id", .string(id))]))
                guard let a = reply["alert"] else { throw CLIFailure(message: "no alert \(id)", code: CLIExit.refused) }
                if out.output == .json { print(a.serialized(pretty: true)); return }
                print("id:          \(a["id"]?.string ?? "")")
                print("title:       \(a["title"]?.string ?? "")")
                print("severity:    \(a["severity"]?.string ?? "")")
                print("techniques:  \(a["techniques"]?.array?.compactMap(\.string).joined(separator: ", ") ?? "")")
                print("source:      \(a["detection_source"]?.string ?? "")")
                print("first seen:  \(a["first_seen"]?.string ?? "")   last seen: \(a["last_seen"]?.string ?? "")   count: \(a["count"]?.int ?? 1)")
                print("description: \(a["description"]?.string ?? "")")
                let ev = a["evidence"]
                for (i, p) in (ev?["process_chain"]?.array ?? []).enumerated() {
                    let role = ["process", "parent", "grandparent"][min(i, 2)]
                    print("\(role.padding(12)) pid \(p["pid"]?.int ?? 0) \(p["user"]?.string ?? "") \(p["exe"]?.string ?? ""): \(p["command_line"]?.string ?? "")")
                }
                for f in ev?["files"]?.array?.compactMap(\.string) ?? [] { print("file:        \(f)") }
                for c in ev?["connections"]?.array?.compactMap(\.string) ?? [] { print("connection:  \(c)") }
                for (k, v) in ev?["details"]?.members ?? [] { print("\(k): \(v.string ?? v.serialized())") }
            }
        }
    }

    struct Rules: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Detection rules.", subcommands: [List.self])

        struct List: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Sigma rules loaded and refused (with the reason), and the built-in detections.")
            @OptionGroup var out: OutputOptions

            func run() throws {
                let reply = try SuiteClient.request(.object([("verb", "rules")]))
                if out.output == .json { print(reply.serialized(pretty: true)); return }
                let sigma = reply["sigma"]?.array ?? [], refused = reply["refused"]?.array ?? [], builtin = reply["builtin"]?.array ?? []
                print("Sigma rules loaded: \(sigma.count)")
                for r in sigma {
                    print("  \((r["level"]?.string ?? "").padding(8)) \((r["logsource"]?.string ?? "").padding(18)) \(r["title"]?.string ?? "")  [\(r["techniques"]?.array?.compactMap(\.string).joined(separator: ",") ?? "")]  \(r["file"]?.string ?? "")")
                }
                print("Sigma rules refused: \(refused.count)")
                for r in refused { print("  \(r["file"]?.string ?? ""): \(r["reason"]?.string ?? "")") }
                print("Built-in detections: \(builtin.count)")
                for b in builtin {
                    print("  \((b["severity"]?.string ?? "").padding(8)) \((b["name"]?.string ?? "").padding(26)) \(b["title"]?.string ?? "")  [\(b["techniques"]?.array?.compactMap(\.string).joined(separator: ",") ?? "")]")
                }
            }
        }
    }
}

enum HuntOutput: String, ExpressibleByArgument, CaseIterable { case table, json }

struct Hunt: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read-only SQL over this device's hunting tables: DeviceProcessEvents, DeviceFileEvents, DeviceNetworkEvents, DeviceEvents, DeviceInfo, AlertInfo, AlertEvidence.")
    @Argument(help: "One SELECT statement.") var query: String
    @Option(name: .long, help: "table (default) or json (one object per row)") var output: HuntOutput = .table
    @Option(name: .long, help: "At most this many rows (1…10000).") var limit = 1000
    @Option(name: .long, help: "Stop the query after this many seconds (at most 10).") var timeout = 5.0

    func run() throws {
        guard (1...10_000).contains(limit) else { throw CLIFailure(message: "--limit must be 1…10000", code: CLIExit.usage) }
        guard query.utf8.count <= 3500 else { throw CLIFailure(message: "the query is longer than 3500 bytes", code: CLIExit.usage) }
        let reply = try SuiteClient.request(.object([("verb", "hunt"), ("query", .string(query)), ("limit", JSON(limit)), ("timeout", .number(timeout))]),
                                            timeoutSeconds: 20)
        let columns = reply["columns"]?.array?.compactMap(\.string) ?? []
        let rows = reply["rows"]?.array?.compactMap(\.array) ?? []
        func text(_ v: JSON) -> String { v.string ?? (v == .null ? "" : v.serialized()) }
        if output == .json {
            for r in rows { print(JSON.object(zip(columns, r).map { ($0.0, $0.1) }).serialized()) }
        } else {
            print(table(columns, rows.map { $0.map(text) }))
            print("(\(rows.count) row\(rows.count == 1 ? "" : "s")\(reply["truncated"]?.bool == true ? ", truncated at --limit" : ""))")
        }
    }
}

extension String {
    func padding(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
}
