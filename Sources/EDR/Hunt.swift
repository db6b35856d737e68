// Local hunting: read-only SQL over Defender-style tables. The query runs on
// its own read-only connection to the stores, behind an authorizer that allows
// reading only the hunting tables (no PRAGMA, ATTACH, writes, or the raw
// tables), one statement, a row cap and a time limit (progress handler).
// The tables are TEMP views made on that connection, so the stores' schema
// never changes for them.
import CSQLite
import Glibc
import MdatpJSON
import MdatpSQLite

public struct HuntError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

public struct HuntResult {
    public var columns: [String]
    public var rows: [[JSON]]
    public var truncated: Bool
}

public final class HuntEngine {
    let db: OpaquePointer
    public static let tables = ["DeviceProcessEvents", "DeviceFileEvents", "DeviceNetworkEvents", "DeviceEvents", "DeviceInfo", "AlertInfo", "AlertEvidence"]
    static let maxRows = 10_000
    static let maxSeconds = 10.0
    var deadline = 0.0

    /// `events` and `alerts` are the stores' files; `device` the DeviceInfo row's values.
    public init(events: String, alerts: String, device: [(String, String)]) throws(HuntError) {
        var h: OpaquePointer?
        let rc = sqlite3_open_v2("file:\(events)?mode=ro", &h, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOFOLLOW, nil)
        guard rc == SQLITE_OK, let h else {
            sqlite3_close(h)
            throw HuntError(message: "cannot open the event store read-only (code \(rc))")
        }
        db = h
        var setup = ["PRAGMA busy_timeout=1000", "ATTACH 'file:\(alerts)?mode=ro' AS alertdb"]
        setup += HuntEngine.views(device: device)
        for s in setup {
            var err: UnsafeMutablePointer<CChar>?
            if sqlite3_exec(db, s, nil, nil, &err) != SQLITE_OK {
                let m = err.map { String(cString: $0) } ?? "?"
                sqlite3_free(err)
                throw HuntError(message: "hunting tables: \(m)")
            }
        }
        sqlite3_set_authorizer(db, { _, action, a, b, _, _ in
            // Only reads of the hunting views and what they are made of.
            switch action {
            case SQLITE_SELECT, SQLITE_READ, SQLITE_FUNCTION, SQLITE_RECURSIVE: return SQLITE_OK
            default: return SQLITE_DENY
            }
        }, nil)
        sqlite3_progress_handler(db, 10_000, { ctx in
            let me = Unmanaged<HuntEngine>.fromOpaque(ctx!).takeUnretainedValue()
            var ts = timespec()
            clock_gettime(CLOCK_MONOTONIC, &ts)
            return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9 > me.deadline ? 1 : 0
        }, Unmanaged.passUnretained(self).toOpaque())
    }

    deinit { sqlite3_close(db) }

    static func views(device: [(String, String)]) -> [String] {
        let ts = "strftime('%Y-%m-%dT%H:%M:%fZ', e.time_ns / 1000000000.0, 'unixepoch')"
        let cmd = "(SELECT group_concat(value, ' ') FROM json_each(e.argv))"
        let parentCmd = "(SELECT group_concat(value, ' ') FROM json_each(e.parent_argv))"
        func base(_ p: String) -> String { "replace(\(p), rtrim(\(p), replace(\(p), '/', '')), '')" }
        let deviceName = device.first { $0.0 == "DeviceName" }?.1 ?? ""
        let dn = sqlQuote(deviceName)
        let initiating = """
            e.tgid AS InitiatingProcessId, \(base("e.exe")) AS InitiatingProcessFileName, e.exe AS InitiatingProcessFolderPath,
            \(cmd) AS InitiatingProcessCommandLine, e.account AS InitiatingProcessAccountName, e.uid AS InitiatingProcessAccountId,
            e.ppid AS InitiatingProcessParentId, \(base("e.parent_exe")) AS InitiatingProcessParentFileName, e.cwd AS InitiatingProcessCurrentDirectory,
            e.sha256 AS InitiatingProcessSHA256
            """
        var out = HuntEngine.tables.map { "DROP VIEW IF EXISTS temp.\($0)" }
        out.append("""
        CREATE TEMP VIEW DeviceProcessEvents AS SELECT \(ts) AS Timestamp, e.time_ns AS TimestampNs, \(dn) AS DeviceName,
          'ProcessCreated' AS ActionType, \(base("e.exe")) AS FileName, e.exe AS FolderPath, e.tgid AS ProcessId, \(cmd) AS ProcessCommandLine,
          e.account AS AccountName, e.uid AS AccountId, e.euid AS EffectiveAccountId, e.cwd AS ProcessCurrentDirectory,
          e.ppid AS InitiatingProcessId, \(base("e.parent_exe")) AS InitiatingProcessFileName, e.parent_exe AS InitiatingProcessFolderPath,
          \(parentCmd) AS InitiatingProcessCommandLine, e.sha256 AS SHA256, e.id AS ReportId, e.details AS AdditionalFields
          FROM main.events e WHERE e.type = 'exec'
        """)
        out.append("""
        CREATE TEMP VIEW DeviceFileEvents AS SELECT \(ts) AS Timestamp, e.time_ns AS TimestampNs, \(dn) AS DeviceName,
          CASE e.type WHEN 'file_create' THEN 'FileCreated' WHEN 'file_open_write' THEN 'FileModified' WHEN 'file_close_write' THEN 'FileModified'
            WHEN 'file_rename' THEN 'FileRenamed' WHEN 'file_unlink' THEN 'FileDeleted' WHEN 'file_chmod' THEN 'FilePermissionsModified'
            WHEN 'file_chown' THEN 'FileOwnerModified' END AS ActionType,
          \(base("CASE e.type WHEN 'file_rename' THEN e.path2 ELSE e.path END")) AS FileName,
          CASE e.type WHEN 'file_rename' THEN e.path2 ELSE e.path END AS FolderPath,
          CASE e.type WHEN 'file_rename' THEN e.path ELSE NULL END AS PreviousFolderPath,
          CASE e.type WHEN 'file_rename' THEN \(base("e.path")) ELSE NULL END AS PreviousFileName,
          e.mode AS FileMode, \(initiating), e.id AS ReportId, e.details AS AdditionalFields
          FROM main.events e WHERE e.type IN ('file_create','file_open_write','file_close_write','file_rename','file_unlink','file_chmod','file_chown')
        """)
        out.append("""
        CREATE TEMP VIEW DeviceNetworkEvents AS SELECT \(ts) AS Timestamp, e.time_ns AS TimestampNs, \(dn) AS DeviceName,
          CASE e.type WHEN 'net_connect' THEN (CASE WHEN json_extract(e.details, '$.result') IN (0, -115) THEN 'ConnectionSuccess' ELSE 'ConnectionFailed' END)
            WHEN 'net_accept' THEN 'InboundConnectionAccepted' WHEN 'net_listen' THEN 'ListeningConnectionCreated' ELSE 'Bind' END AS ActionType,
          e.remote_address AS RemoteIP, e.remote_port AS RemotePort, e.local_address AS LocalIP, e.local_port AS LocalPort,
          CASE e.protocol WHEN 'tcp' THEN 'Tcp' WHEN 'udp' THEN 'Udp' ELSE e.protocol END AS Protocol,
          CASE WHEN e.remote_address LIKE '127.%' OR e.remote_address = '::1' THEN 'Loopback'
               WHEN e.remote_address LIKE '10.%' OR e.remote_address LIKE '192.168.%' OR e.remote_address LIKE 'fd%' THEN 'Private'
               WHEN e.remote_address = '' THEN NULL ELSE 'Public' END AS RemoteIPType,
          \(initiating), e.id AS ReportId, e.details AS AdditionalFields
          FROM main.events e WHERE e.type IN ('net_connect','net_accept','net_listen','net_bind')
        """)
        out.append("""
        CREATE TEMP VIEW DeviceEvents AS SELECT \(ts) AS Timestamp, e.time_ns AS TimestampNs, \(dn) AS DeviceName,
          CASE e.type WHEN 'ptrace' THEN 'ProcessTraced' WHEN 'module_load' THEN 'KernelModuleLoaded' WHEN 'bpf_load' THEN 'BpfProgramLoaded'
            WHEN 'cred_change' THEN 'ProcessCredentialsChanged' WHEN 'memfd_create' THEN 'MemoryFileCreated' WHEN 'mount' THEN 'FileSystemMounted'
            WHEN 'signal_suite' THEN 'SensorTamperingAttempt' WHEN 'file_open_read' THEN 'SensitiveFileRead' END AS ActionType,
          e.path AS FolderPath, \(base("e.path")) AS FileName, json_extract(e.details, '$.target_pid') AS TargetProcessId,
          \(initiating), e.id AS ReportId, e.details AS AdditionalFields
          FROM main.events e WHERE e.type IN ('ptrace','module_load','bpf_load','cred_change','memfd_create','mount','signal_suite','file_open_read')
        """)
        let info = device.map { "\(sqlQuote($0.1)) AS \($0.0)" }.joined(separator: ", ")
        out.append("CREATE TEMP VIEW DeviceInfo AS SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now') AS Timestamp, \(info)")
        out.append("""
        CREATE TEMP VIEW AlertInfo AS SELECT strftime('%Y-%m-%dT%H:%M:%fZ', a.first_seen_ns / 1000000000.0, 'unixepoch') AS Timestamp,
          a.alert_id AS AlertId, a.title AS Title, a.severity AS Severity, a.techniques AS AttackTechniques, a.detection_source AS DetectionSource,
          a.count AS Count, strftime('%Y-%m-%dT%H:%M:%fZ', a.last_seen_ns / 1000000000.0, 'unixepoch') AS LastSeen, a.description AS Description
          FROM alertdb.alerts a
        """)
        out.append("""
        CREATE TEMP VIEW AlertEvidence AS SELECT a.alert_id AS AlertId, a.title AS Title,
          json_extract(p.value, '$.exe') AS FolderPath, json_extract(p.value, '$.command_line') AS ProcessCommandLine,
          json_extract(p.value, '$.pid') AS ProcessId, json_extract(p.value, '$.user') AS AccountName, CAST(p.key AS INTEGER) AS ChainDepth
          FROM alertdb.alerts a, json_each(a.evidence, '$.process_chain') p
        """)
        return out
    }

    /// Runs one read-only statement.
    public func run(_ sql: String, limit: Int, seconds: Double) throws(HuntError) -> HuntResult {
        guard sql.utf8.count <= 8192 else { throw HuntError(message: "query longer than 8192 bytes") }
        var stmt: OpaquePointer?
        var rest = ""
        let rc: Int32 = sql.withCString { base in
            var tail: UnsafePointer<CChar>?
            let r = sqlite3_prepare_v2(db, base, -1, &stmt, &tail)
            rest = tail.map { String(cString: $0) } ?? ""
            return r
        }
        guard rc == SQLITE_OK, let stmt else {
            let m = String(cString: sqlite3_errmsg(db))
            sqlite3_finalize(stmt)
            if m.contains("not authorized") { throw HuntError(message: "refused: hunting is read-only (SELECT over \(HuntEngine.tables.joined(separator: ", ")))") }
            throw HuntError(message: "bad query: \(m)")
        }
        defer { sqlite3_finalize(stmt) }
        guard rest.trimmingCharacters(in: " \n\t;").isEmpty else { throw HuntError(message: "one statement per query") }
        guard sqlite3_stmt_readonly(stmt) != 0 else { throw HuntError(message: "refused: hunting is read-only") }
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        deadline = Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9 + min(max(seconds, 0.1), HuntEngine.maxSeconds)
        let n = sqlite3_column_count(stmt)
        let columns = (0..<n).map { String(cString: sqlite3_column_name(stmt, $0)) }
        var rows: [[JSON]] = []
        let cap = max(1, min(limit, HuntEngine.maxRows))
        var truncated = false
        while true {
            let r = sqlite3_step(stmt)
            if r == SQLITE_DONE { break }
            guard r == SQLITE_ROW else {
                if r == SQLITE_INTERRUPT { throw HuntError(message: "query stopped: longer than \(seconds) s") }
                throw HuntError(message: "query failed: \(String(cString: sqlite3_errmsg(db)))")
            }
            if rows.count == cap { truncated = true; break }
            var row: [JSON] = []
            for i in 0..<n {
                switch sqlite3_column_type(stmt, i) {
                case SQLITE_INTEGER: row.append(.number(Double(sqlite3_column_int64(stmt, i))))
                case SQLITE_FLOAT: row.append(.number(sqlite3_column_double(stmt, i)))
                case SQLITE_NULL: row.append(.null)
                default: row.append(.string(stmt.text(i)))
                }
            }
            rows.append(row)
        }
        return HuntResult(columns: columns, rows: rows, truncated: truncated)
    }
}

/// A SQL string literal ('' doubles a quote).
func sqlQuote(_ s: String) -> String { "'" + s.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "''") + "'" }

extension String {
    func trimmingCharacters(in set: String) -> String {
        let chars = Set(set)
        var s = Substring(self)
        while let f = s.first, chars.contains(f) { s = s.dropFirst() }
        while let l = s.last, chars.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
