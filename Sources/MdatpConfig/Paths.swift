// Where the suite keeps things. Every path hangs off one prefix ("" in
// production, a temporary directory in tests), taken from MDATP_PREFIX.

public struct SuitePaths: Equatable, Sendable {
    public let prefix: String

    public init(prefix: String) {
        var p = prefix
        while p.hasSuffix("/") { p.removeLast() }
        self.prefix = p
    }

    /// From the environment (MDATP_PREFIX), or the real system paths.
    public static func fromEnvironment(_ env: [String: String]) -> SuitePaths {
        SuitePaths(prefix: env["MDATP_PREFIX"] ?? "")
    }

    public var configDir: String { prefix + "/etc/opt/mdatp" }
    public var configFile: String { configDir + "/mdatp.json" }
    public var managedDir: String { configDir + "/managed" }
    public var managedFile: String { managedDir + "/mdatp_managed.json" }
    public var stateDir: String { prefix + "/var/opt/mdatp" }
    public var runDir: String { stateDir + "/run" }
    public var socket: String { runDir + "/mdatp.sock" }
    public var statusFile: String { stateDir + "/status.json" }
    public var edrDir: String { stateDir + "/edr" }
    public var edrStore: String { edrDir + "/events.db" }
    public var scannerDir: String { stateDir + "/scanner" }
    public var threatStore: String { scannerDir + "/threats.db" }
    /// Updated definitions packages (root-owned, readable by the scanner) and `current`.
    public var definitionsDir: String { stateDir + "/definitions" }
    public var definitionsCurrent: String { definitionsDir + "/current" }
    /// The admin's imported sources (ClamAV .cvd/.cld or loose files), one directory each.
    public var definitionsExtraDir: String { definitionsDir + "/extra" }
    /// Root only: quarantined files (neutralised) and their metadata.
    public var quarantineDir: String { stateDir + "/quarantine" }
}
