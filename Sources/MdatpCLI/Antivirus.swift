// `mdatp scan custom` and `mdatp threat list`: the scanner room's answers.
import ArgumentParser
import Glibc
import MdatpJSON
import MdatpSystem

func printThreats(_ threats: [JSON]) {
    if threats.isEmpty { return }
    print(table(["TIME", "THREAT", "TYPE", "PATH", "SOURCE", "ACTION"], threats.map { t in
        [formatTime(unixNs: Int64(t["time_ns"]?.number ?? 0)), t["name"]?.string ?? "", t["type"]?.string ?? "",
         t["path"]?.string ?? "", t["source"]?.string ?? "", t["action"]?.string ?? ""]
    }, maxWidth: 80))
}

struct Scan: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "On-demand scans.", subcommands: [Custom.self])

    struct Custom: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Scan a file or a directory tree (root).")
        @Option(name: .long, help: "An absolute path.") var path: String
        @OptionGroup var out: OutputOptions

        func run() throws {
            guard path.hasPrefix("/") else { throw CLIFailure(message: "--path must be absolute", code: CLIExit.usage) }
            let r = try SuiteClient.request(.object([("verb", "scan"), ("path", .string(path))]), timeoutSeconds: 0)
            if out.output == .json {
                print(r.serialized(pretty: true))
                return
            }
            let threats = r["threats"]?.array ?? []
            printThreats(threats)
            print("Scanned \(r["scanned"]?.int ?? 0) files (\(r["skipped"]?.int ?? 0) skipped, \(r["errors"]?.int ?? 0) errors): \(threats.count) threat(s) found.")
        }
    }
}

struct Threat: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Threats found (root or the mdatp group).", subcommands: [List.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The threat history, newest first.")
        @Option(name: .long, help: "At most this many.") var limit = 100
        @OptionGroup var out: OutputOptions

        func run() throws {
            let r = try SuiteClient.request(.object([("verb", "threats"), ("limit", JSON(limit))]))
            let threats = r["threats"]?.array ?? []
            if out.output == .json {
                print(JSON.object([("threats", .array(threats))]).serialized(pretty: true))
            } else if threats.isEmpty {
                print("No threats found.")
            } else {
                printThreats(threats)
            }
        }
    }
}
