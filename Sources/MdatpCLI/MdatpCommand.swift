// The `mdatp` command line: Defender's verbs where they exist, `--output json`
// everywhere, human output by default. It reads the status file directly and
// talks to the suite over its Unix socket for everything else.
//
// Exit codes: 0 success, 64 usage error, 69 suite not running, 77 refused.
import ArgumentParser
import Glibc
import MdatpConfig
import MdatpJSON
import MdatpSystem

public let mdatpVersion = "101.26112.0001"
public let engineVersion = "1.1.26112.1"
/// Builds expire nine months after release, as Defender's do.
let releaseUnix: Int = 1_795_910_400 // 2026-11-28T00:00:00Z
let expiryUnix: Int = releaseUnix + 273 * 86_400

public enum CLIExit {
    public static let usage: Int32 = 64
    public static let notRunning: Int32 = 69
    public static let refused: Int32 = 77
}

struct CLIFailure: Error, CustomStringConvertible {
    let message: String
    let code: Int32
    var description: String { message }
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case human, json
}

struct OutputOptions: ParsableArguments {
    @Option(name: .long, help: "human (default) or json")
    var output: OutputFormat = .human
}

public struct MdatpCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "mdatp",
        abstract: "mdatp: Linux endpoint protection (antivirus, EDR) — command line.",
        subcommands: [Version.self, Health.self, Diagnostic.self, Events.self, Scan.self, Threat.self, DefinitionsCommand.self, ExclusionCommand.self, ConfigCommand.self, EDRCommand.self, Hunt.self])
    public init() {}

    /// Runs the command and maps failures to the documented exit codes.
    public static func main() -> Never {
        do {
            var command = try parseAsRoot()
            try command.run()
            Glibc.exit(0)
        } catch let f as CLIFailure {
            FileHandleStderr.write("mdatp: \(f.message)\n")
            Glibc.exit(f.code)
        } catch {
            exit(withError: error)
        }
    }
}

enum FileHandleStderr {
    static func write(_ s: String) {
        _ = s.withCString { Glibc.write(2, $0, strlen($0)) }
    }
}

func paths() -> SuitePaths {
    var env: [String: String] = [:]
    if let p = getenv("MDATP_PREFIX") { env["MDATP_PREFIX"] = String(cString: p) }
    return SuitePaths.fromEnvironment(env)
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the product version.")
    @OptionGroup var out: OutputOptions

    func run() throws {
        if out.output == .json {
            print(JSON.object([("app_version", .string(mdatpVersion)), ("abi_version", 1)]).serialized())
        } else {
            print("Product version: \(mdatpVersion)")
        }
    }
}

// MARK: talking to the suite

enum SuiteClient {
    /// One request over the socket; the reply is one JSON document.
    /// `timeoutSeconds` 0 waits as long as the suite works (an on-demand scan).
    static func request(_ req: JSON, timeoutSeconds: Int = 30) throws -> JSON {
        let p = paths()
        let fd: Int32
        do { fd = try Sys.connectUnix(p.socket) } catch {
            throw CLIFailure(message: "the suite is not running (no socket at \(p.socket)): start it with `make run`", code: CLIExit.notRunning)
        }
        defer { Sys.close(fd) }
        Sys.setTimeouts(fd, seconds: timeoutSeconds)
        try Sys.writeAll(fd, Array((req.serialized() + "\n").utf8))
        Sys.shutdownWrite(fd)
        let bytes = try Sys.readAll(fd, limit: 256 << 20, what: "reply")
        var limits = JSONLimits()
        limits.maxBytes = 256 << 20
        limits.maxItems = 50_000_000
        guard let json = try? JSON.parse(bytes, limits: limits) else {
            throw CLIFailure(message: "the suite sent an unreadable reply", code: CLIExit.notRunning)
        }
        if let err = json["error"]?.string {
            let code = json["code"]?.string
            throw CLIFailure(message: err, code: code == "usage" ? CLIExit.usage : code == "unavailable" ? CLIExit.notRunning : CLIExit.refused)
        }
        return json
    }

    /// A request answered by progress lines (`{"progress":{…}}`, each handed to
    /// `progress`) and then one reply line.
    static func requestStreaming(_ req: JSON, progress: (JSON) -> Void) throws -> JSON {
        let p = paths()
        let fd: Int32
        do { fd = try Sys.connectUnix(p.socket) } catch {
            throw CLIFailure(message: "the suite is not running (no socket at \(p.socket)): start it with `make run`", code: CLIExit.notRunning)
        }
        defer { Sys.close(fd) }
        try Sys.writeAll(fd, Array((req.serialized() + "\n").utf8))
        Sys.shutdownWrite(fd)
        var pending: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        var limits = JSONLimits()
        limits.maxBytes = 256 << 20
        limits.maxItems = 50_000_000
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n > 0 { pending += chunk[0..<n] }
            guard pending.count <= 256 << 20 else { throw CLIFailure(message: "the suite sent a reply too large", code: CLIExit.refused) }
            // Every complete line but a final reply is progress.
            while let nl = pending.firstIndex(of: 0x0a) {
                let line = Array(pending[..<nl])
                pending.removeSubrange(...nl)
                guard let json = try? JSON.parse(line, limits: limits) else {
                    throw CLIFailure(message: "the suite sent an unreadable reply", code: CLIExit.notRunning)
                }
                if let pr = json["progress"] { progress(pr); continue }
                if let err = json["error"]?.string {
                    let code = json["code"]?.string
                    throw CLIFailure(message: err, code: code == "usage" ? CLIExit.usage : code == "unavailable" ? CLIExit.notRunning : CLIExit.refused)
                }
                return json
            }
            if n <= 0 { throw CLIFailure(message: "the suite closed the connection before the scan ended", code: CLIExit.notRunning) }
        }
    }

    /// The status file, if fresh; else nil.
    static func status() throws -> JSON {
        let p = paths()
        guard Sys.exists(p.statusFile), let bytes = try? Sys.readFile(p.statusFile, limit: 16 << 20),
              let json = try? JSON.parse(bytes) else {
            throw CLIFailure(message: "the suite is not running (no status at \(p.statusFile)): start it with `make run`", code: CLIExit.notRunning)
        }
        return json
    }
}

func formatTime(unixNs: Int64) -> String { Sys.isoTime(unixNs: unixNs) }

/// Plain table output with columns sized to content (capped).
func table(_ header: [String], _ rows: [[String]], maxWidth: Int = 60) -> String {
    var widths = header.map(\.count)
    let clipped = rows.map { $0.map { $0.count > maxWidth ? String($0.prefix(maxWidth - 1)) + "…" : $0 } }
    for r in clipped { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { i, c in i == cells.count - 1 ? c : c + String(repeating: " ", count: widths[i] - c.count) }.joined(separator: "  ")
    }
    return ([line(header)] + clipped.map(line)).joined(separator: "\n")
}
