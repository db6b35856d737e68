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

func runScan(_ request: JSON, json: Bool) throws {
    // Progress on a terminal only, on stderr: stdout stays the result.
    let live = isatty(2) == 1 && !json
    let r = try SuiteClient.requestStreaming(request) { p in
        guard live else { return }
        let path = p["path"]?.string ?? ""
        let shown = path.count > 60 ? "…" + path.suffix(59) : path
        fputs("\r\u{1b}[KScanning: \(p["scanned"]?.int ?? 0) files, \(p["threats"]?.int ?? 0) threat(s), \(Int(p["seconds"]?.number ?? 0)) s  \(shown)", stderr)
    }
    if live { fputs("\r\u{1b}[K", stderr) }
    if json {
        print(r.serialized(pretty: true))
        return
    }
    let threats = r["threats"]?.array ?? []
    printThreats(threats)
    let state = r["state"]?.string == "cancelled" ? " (cancelled)" : ""
    print("Scanned \(r["scanned"]?.int ?? 0) files (\(r["cache_hits"]?.int ?? 0) unchanged since a clean scan, \(r["skipped"]?.int ?? 0) skipped, \(r["errors"]?.int ?? 0) errors)\(state): \(threats.count) threat(s) found.")
}

struct Scan: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "On-demand scans (root; list for readers).",
                                                    subcommands: [Quick.self, Full.self, Custom.self, List.self, Cancel.self])

    struct Quick: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Where malware lives on Linux: temporary dirs, /dev/shm, homes, cron and unit dirs, running executables.")
        @OptionGroup var out: OutputOptions
        func run() throws { try runScan(.object([("verb", "scan"), ("kind", "quick")]), json: out.output == .json) }
    }

    struct Full: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every mounted filesystem except pseudo filesystems.")
        @OptionGroup var out: OutputOptions
        func run() throws { try runScan(.object([("verb", "scan"), ("kind", "full")]), json: out.output == .json) }
    }

    struct Custom: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Scan a file or a directory tree.")
        @Option(name: .long, help: "An absolute path.") var path: String
        @Flag(name: .long, help: "Scan excluded paths too.") var ignoreExclusions = false
        @OptionGroup var out: OutputOptions

        func run() throws {
            guard path.hasPrefix("/") else { throw CLIFailure(message: "--path must be absolute", code: CLIExit.usage) }
            try runScan(.object([("verb", "scan"), ("kind", "custom"), ("path", .string(path)), ("ignore_exclusions", .bool(ignoreExclusions))]),
                        json: out.output == .json)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Completed and cancelled scans, newest first.")
        @Option(name: .long) var limit = 7
        @OptionGroup var out: OutputOptions
        func run() throws {
            let r = try SuiteClient.request(.object([("verb", "scan_list"), ("limit", JSON(limit))]))
            let scans = r["scans"]?.array ?? []
            if out.output == .json { print(JSON.object([("scans", .array(scans))]).serialized(pretty: true)); return }
            if scans.isEmpty { print("No scans."); return }
            print(table(["ID", "TYPE", "STARTED", "STATE", "SCANNED", "THREATS", "PATH"], scans.map {
                [String($0["id"]?.int ?? 0), $0["kind"]?.string ?? "", formatTime(unixNs: Int64($0["started_unix"]?.int ?? 0) * 1_000_000_000),
                 $0["state"]?.string ?? "", String($0["scanned"]?.int ?? 0), String($0["threats"]?.int ?? 0), $0["path"]?.string ?? ""]
            }))
        }
    }

    struct Cancel: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop the running scan (it reports what it did).")
        @OptionGroup var out: OutputOptions
        func run() throws {
            let r = try SuiteClient.request(.object([("verb", "scan_cancel")]))
            if out.output == .json { print(r.serialized()) } else { print(r["cancelled"]?.bool == true ? "Scan cancelled" : "No scan is running") }
        }
    }
}

struct Threat: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Threats found (root or the mdatp group).", subcommands: [List.self, Quarantine.self, Allowed.self, Policy.self])

    struct Quarantine: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Quarantined files (root).", subcommands: [QList.self, Restore.self, Remove.self])

        struct QList: ParsableCommand {
            static let configuration = CommandConfiguration(commandName: "list", abstract: "What is in quarantine.")
            @OptionGroup var out: OutputOptions
            func run() throws {
                let r = try SuiteClient.request(.object([("verb", "quarantine"), ("action", "list")]))
                let items = r["quarantined"]?.array ?? []
                if out.output == .json { print(JSON.object([("quarantined", .array(items))]).serialized(pretty: true)); return }
                if items.isEmpty { print("Nothing is in quarantine."); return }
                print(table(["ID", "THREAT", "ORIGINAL PATH", "SIZE"], items.map {
                    [$0["id"]?.string ?? "", $0["threat"]?.string ?? "", $0["original_path"]?.string ?? "", String($0["size"]?.int ?? 0)]
                }, maxWidth: 80))
            }
        }

        struct Restore: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Put a file back where it was (never over an existing file).")
            @Option(name: .long) var id: String
            @OptionGroup var out: OutputOptions
            func run() throws {
                let r = try SuiteClient.request(.object([("verb", "quarantine"), ("action", "restore"), ("id", .string(id))]))
                if out.output == .json { print(r.serialized()) } else { print("Restored \(r["restored"]?["original_path"]?.string ?? "")") }
            }
        }

        struct Remove: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Delete a quarantined file for good.")
            @Option(name: .long) var id: String
            @OptionGroup var out: OutputOptions
            func run() throws {
                let r = try SuiteClient.request(.object([("verb", "quarantine"), ("action", "remove"), ("id", .string(id))]))
                if out.output == .json { print(r.serialized()) } else { print("Removed \(id)") }
            }
        }
    }

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

struct DefinitionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "definitions", abstract: "Security intelligence (root).",
                                                    subcommands: [Update.self, Restore.self, Import.self, Imports.self, RemoveImport.self])

    struct Update: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Install a newer signed package from a mirror (a local directory or an http(s) URL).")
        @Option(name: .long, help: "A directory or URL holding a package (default: antivirusEngine.offlineDefinitionUpdateUrl).")
        var source: String?
        @OptionGroup var out: OutputOptions

        func run() throws {
            var req: [(String, JSON)] = [("verb", "definitions"), ("action", "update")]
            if let source { req.append(("source", .string(source))) }
            var r = try SuiteClient.request(.object(req))
            if let url = r["fetch"]?.string {
                // Downloaded here into a private directory, then staged by the watchdog and
                // verified by the scanner (signature, hashes) like any local mirror.
                let dir = try MirrorDownload.package(from: url)
                defer { MirrorDownload.remove(dir) }
                r = try SuiteClient.request(.object([("verb", "definitions"), ("action", "update"), ("source", .string(dir))]))
            }
            if out.output == .json { print(r.serialized()) } else { print("Definitions updated to \(r["definitions_version"]?.string ?? "?")") }
        }
    }

    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a ClamAV database (.cvd, .cld) or signature files (.hdb .hsb .fp .sfp .ndb .ldb .yar) as an extra source.",
            discussion: "The source is checked by the scanner with the definitions in use; a malformed one is refused and nothing changes. Importing a source of the same name again replaces it.")
        @Option(name: .long, help: "A file, or a directory of them.") var path: String
        @OptionGroup var out: OutputOptions

        func run() throws {
            let r = try SuiteClient.request(.object([("verb", "definitions"), ("action", "import"), ("path", .string(path))]))
            if out.output == .json { print(r.serialized()) } else { print("Imported \(r["source"]?.string ?? "?"): \(r["loaded"]?.string ?? "")") }
        }
    }

    struct Imports: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The imported sources and their files.")
        @OptionGroup var out: OutputOptions

        func run() throws {
            let r = try SuiteClient.request(.object([("verb", "definitions"), ("action", "imports")]))
            if out.output == .json { return print(r.serialized()) }
            let sources = r["sources"]?.array ?? []
            if sources.isEmpty { print("No imported sources.") }
            for src in sources {
                print(src["name"]?.string ?? "?")
                for f in src["files"]?.array ?? [] { print("  \(f["name"]?.string ?? "?") (\(f["bytes"]?.int ?? 0) bytes)") }
            }
        }
    }

    struct RemoveImport: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "remove-import", abstract: "Drop an imported source (the scanner restarts without it).")
        @Option(name: .long) var name: String
        @OptionGroup var out: OutputOptions

        func run() throws {
            let r = try SuiteClient.request(.object([("verb", "definitions"), ("action", "remove-import"), ("name", .string(name))]))
            if out.output == .json { print(r.serialized()) } else { print("Removed \(name)") }
        }
    }

    struct Restore: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Go back to the definitions shipped with the product.")
        @OptionGroup var out: OutputOptions

        func run() throws {
            let r = try SuiteClient.request(.object([("verb", "definitions"), ("action", "restore")]))
            if out.output == .json { print(r.serialized()) } else { print("Definitions restored to the shipped set") }
        }
    }
}

struct ExclusionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "exclusion", abstract: "Exclusions (list for anyone; changes need root).",
                                                    subcommands: [List.self, Folder.self, File.self, Extension.self, Process.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every exclusion in force, with its scopes.")
        @OptionGroup var out: OutputOptions

        func run() throws {
            let (_, config, error) = HealthReport.load()
            guard let c = config else { throw CLIFailure(message: error ?? "configuration unreadable", code: CLIExit.refused) }
            let rows: [(String, String, [String])] = c.exclusions.map { e in
                switch e {
                case .path(let p, let dir, let s): return (dir ? "folder" : "file", p, s.map(\.rawValue))
                case .fileExtension(let x, let s): return ("extension", x, s.map(\.rawValue))
                case .process(let n, let s): return ("process", n, s.map(\.rawValue))
                }
            }
            if out.output == .json {
                print(JSON.object([("exclusions", .array(rows.map { .object([("type", .string($0.0)), ("value", .string($0.1)), ("scopes", .array($0.2.map { .string($0) }))]) }))]).serialized(pretty: true))
            } else if rows.isEmpty {
                print("No exclusions.")
            } else {
                print(table(["TYPE", "VALUE", "SCOPES"], rows.map { [$0.0, $0.1, $0.2.joined(separator: ",")] }, maxWidth: 100))
            }
        }
    }
}
