// Defender's configuration verbs: `mdatp config …`, `mdatp exclusion … add|remove`,
// `mdatp threat allowed …`, `mdatp threat policy set`. Root only; the suite
// edits the local configuration (never a key the managed file sets) and reloads.
import ArgumentParser
import MdatpJSON

enum Toggle: String, ExpressibleByArgument, CaseIterable { case enabled, disabled }

func editConfig(_ op: String, _ key: String, _ value: JSON, json: Bool) throws {
    let r = try SuiteClient.request(.object([("verb", "config"), ("op", .string(op)), ("key", .string(key)), ("value", value)]))
    if json { print(r.serialized()) } else { print(r["message"]?.string ?? "Configuration property updated") }
}

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "config", abstract: "Change the local configuration (root).",
        subcommands: [RealTimeProtection.self, PassiveMode.self, BehaviorMonitoring.self, ScanArchives.self, MaximumOnDemandScanThreads.self])

    struct RealTimeProtection: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "real-time-protection", abstract: "enabled: enforcementLevel real_time; disabled: on_demand.")
        @Option(name: .long) var value: Toggle
        @OptionGroup var out: OutputOptions
        func run() throws { try editConfig("set", "antivirusEngine.enforcementLevel", .string(value == .enabled ? "real_time" : "on_demand"), json: out.output == .json) }
    }

    struct PassiveMode: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "passive-mode", abstract: "enabled: enforcementLevel passive; disabled: real_time.")
        @Option(name: .long) var value: Toggle
        @OptionGroup var out: OutputOptions
        func run() throws { try editConfig("set", "antivirusEngine.enforcementLevel", .string(value == .enabled ? "passive" : "real_time"), json: out.output == .json) }
    }

    struct BehaviorMonitoring: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "behavior-monitoring")
        @Option(name: .long) var value: Toggle
        @OptionGroup var out: OutputOptions
        func run() throws { try editConfig("set", "antivirusEngine.behaviorMonitoring", .string(value.rawValue), json: out.output == .json) }
    }

    struct ScanArchives: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "scan-archives")
        @Option(name: .long) var value: Toggle
        @OptionGroup var out: OutputOptions
        func run() throws { try editConfig("set", "antivirusEngine.scanArchives", .bool(value == .enabled), json: out.output == .json) }
    }

    struct MaximumOnDemandScanThreads: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "maximum-on-demand-scan-threads")
        @Option(name: .long) var value: Int
        @OptionGroup var out: OutputOptions
        func run() throws { try editConfig("set", "antivirusEngine.maximumOnDemandScanThreads", JSON(value), json: out.output == .json) }
    }
}

enum ExclusionScopeArg: String, ExpressibleByArgument, CaseIterable { case epp, global }
enum AddRemove: String, ExpressibleByArgument, CaseIterable { case add, remove }

func exclusionItem(_ type: String, _ fields: [(String, JSON)], scope: ExclusionScopeArg) -> JSON {
    .object([("$type", .string(type))] + fields + [("scopes", .array([.string(scope.rawValue)]))])
}

extension ExclusionCommand {
    struct Folder: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "add|remove a folder (everything below it).")
        @Argument var action: AddRemove
        @Option(name: .long) var path: String
        @Option(name: .long) var scope: ExclusionScopeArg = .epp
        @OptionGroup var out: OutputOptions
        func run() throws {
            let item = exclusionItem("excludedPath", [("isDirectory", .bool(true)), ("path", .string(path))], scope: scope)
            try editConfig(action.rawValue, "exclusionSettings.exclusions", item, json: out.output == .json)
        }
    }

    struct File: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "add|remove one file.")
        @Argument var action: AddRemove
        @Option(name: .long) var path: String
        @Option(name: .long) var scope: ExclusionScopeArg = .epp
        @OptionGroup var out: OutputOptions
        func run() throws {
            let item = exclusionItem("excludedPath", [("isDirectory", .bool(false)), ("path", .string(path))], scope: scope)
            try editConfig(action.rawValue, "exclusionSettings.exclusions", item, json: out.output == .json)
        }
    }

    struct Extension: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "add|remove a file extension (antivirus scope only).")
        @Argument var action: AddRemove
        @Option(name: .long) var name: String
        @OptionGroup var out: OutputOptions
        func run() throws {
            try editConfig(action.rawValue, "exclusionSettings.exclusions", exclusionItem("excludedFileExtension", [("extension", .string(name))], scope: .epp), json: out.output == .json)
        }
    }

    struct Process: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "add|remove a process (by name, or by full path; global needs the full path).")
        @Argument var action: AddRemove
        @Option(name: .long) var name: String?
        @Option(name: .long) var path: String?
        @Option(name: .long) var scope: ExclusionScopeArg = .epp
        @OptionGroup var out: OutputOptions
        func run() throws {
            guard let n = path ?? name else { throw CLIFailure(message: "give --name or --path", code: CLIExit.usage) }
            try editConfig(action.rawValue, "exclusionSettings.exclusions", exclusionItem("excludedFileName", [("name", .string(n))], scope: scope), json: out.output == .json)
        }
    }
}

extension Threat {
    struct Allowed: ParsableCommand {
        enum Action: String, ExpressibleByArgument, CaseIterable { case add, remove, list }
        static let configuration = CommandConfiguration(abstract: "Threat names never acted on: add|remove --name N, list.")
        @Argument var action: Action
        @Option(name: .long) var name: String?
        @OptionGroup var out: OutputOptions

        func run() throws {
            if action == .list {
                let (_, config, error) = HealthReport.load()
                guard let c = config else { throw CLIFailure(message: error ?? "configuration unreadable", code: CLIExit.refused) }
                if out.output == .json { print(JSON.object([("allowed_threats", .array(c.allowedThreats.map { .string($0) }))]).serialized()) }
                else if c.allowedThreats.isEmpty { print("No allowed threats.") }
                else { c.allowedThreats.forEach { print($0) } }
                return
            }
            guard let name else { throw CLIFailure(message: "--name is needed", code: CLIExit.usage) }
            try editConfig(action.rawValue, "antivirusEngine.allowedThreats", .string(name), json: out.output == .json)
        }
    }

    struct Policy: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Per-type action.", subcommands: [Set.self])

        struct Set: ParsableCommand {
            enum TypeArg: String, ExpressibleByArgument, CaseIterable { case potentially_unwanted_application, archive_bomb }
            enum ActionArg: String, ExpressibleByArgument, CaseIterable { case block, audit, off }
            @Option(name: .long) var type: TypeArg
            @Option(name: .long) var action: ActionArg
            @OptionGroup var out: OutputOptions
            func run() throws {
                try editConfig("upsert", "antivirusEngine.threatTypeSettings", .object([("key", .string(type.rawValue)), ("value", .string(action.rawValue))]), json: out.output == .json)
            }
        }
    }
}
