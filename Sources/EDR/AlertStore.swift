// Alerts: stored in their own SQLite file (event retention never removes
// them), de-duplicated (the same detection on the same thing within an hour
// is one alert with a count and a last-seen time), and written as JSON lines
// for a SIEM to pick up (alerts.jsonl next to the store, rotated at 32 MiB).
import CSQLite
import Glibc
import MdatpJSON
import MdatpSQLite
import MdatpSystem

public struct StoredAlert: Sendable {
    public var alertId = ""
    public var firstSeenNs: Int64 = 0
    public var lastSeenNs: Int64 = 0
    public var count: Int64 = 1
    public var severity = ""
    public var title = ""
    public var description = ""
    public var techniques: [String] = []
    public var source = ""
    public var dedupKey = ""
    public var evidence: JSON = .object([])
    /// When the EDR raised it (wall clock): minus first_seen_ns, the detection latency.
    public var raisedNs: Int64 = 0

    public var json: JSON {
        .object([("id", .string(alertId)), ("first_seen_ns", .number(Double(firstSeenNs))), ("last_seen_ns", .number(Double(lastSeenNs))),
                 ("raised_ns", .number(Double(raisedNs))),
                 ("first_seen", .string(Sys.isoTime(unixNs: firstSeenNs))), ("last_seen", .string(Sys.isoTime(unixNs: lastSeenNs))),
                 ("count", .number(Double(count))), ("severity", .string(severity)), ("title", .string(title)), ("description", .string(description)),
                 ("techniques", .array(techniques.map { .string($0) })), ("detection_source", .string(source)), ("evidence", evidence)])
    }
}

public final class AlertStore {
    let sql: SQLiteDB
    let insert: OpaquePointer
    let bump: OpaquePointer
    let findRecent: OpaquePointer
    let jsonlPath: String
    var recent: [String: (rowid: Int64, lastSeenNs: Int64)] = [:]
    public private(set) var total: Int64 = 0
    public static let dedupWindowNs: Int64 = 3_600_000_000_000
    static let maxRecent = 4096
    static let maxJSONLBytes: Int64 = 32 << 20

    static let schema = """
    CREATE TABLE IF NOT EXISTS alerts (
      id INTEGER PRIMARY KEY, alert_id TEXT NOT NULL UNIQUE, first_seen_ns INTEGER NOT NULL, last_seen_ns INTEGER NOT NULL,
      count INTEGER NOT NULL, severity TEXT, title TEXT, description TEXT, techniques TEXT, detection_source TEXT,
      dedup_key TEXT, evidence TEXT, raised_ns INTEGER);
    CREATE INDEX IF NOT EXISTS alerts_dedup ON alerts(detection_source, dedup_key, last_seen_ns);
    CREATE INDEX IF NOT EXISTS alerts_time ON alerts(last_seen_ns);
    """

    public init(path: String, jsonlPath: String) throws(StoreError) {
        self.jsonlPath = jsonlPath
        do throws(SQLiteError) {
            sql = try SQLiteDB(path: path, schema: AlertStore.schema)
            // A store from before raised_ns existed gains it (fails harmlessly when present).
            try? sql.exec("ALTER TABLE alerts ADD COLUMN raised_ns INTEGER")
            insert = try sql.prepare("INSERT INTO alerts (alert_id, first_seen_ns, last_seen_ns, count, severity, title, description, techniques, detection_source, dedup_key, evidence, raised_ns) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", persistent: true)
            bump = try sql.prepare("UPDATE alerts SET last_seen_ns = ?1, count = count + 1 WHERE id = ?2", persistent: true)
            findRecent = try sql.prepare("SELECT id, last_seen_ns FROM alerts WHERE detection_source = ?1 AND dedup_key = ?2 AND last_seen_ns >= ?3 ORDER BY last_seen_ns DESC LIMIT 1", persistent: true)
            total = try sql.scalar("SELECT count(*) FROM alerts")
        } catch {
            throw StoreError(message: "alerts: \(error.message)")
        }
    }

    deinit {
        sqlite3_finalize(insert)
        sqlite3_finalize(bump)
        sqlite3_finalize(findRecent)
    }

    public enum Outcome { case new(StoredAlert), repeated(alertId: Int64) }

    /// Records a candidate: a new alert, or one more sighting of a recent one.
    @discardableResult
    public func record(_ c: AlertCandidate, nowNs: Int64) throws(StoreError) -> Outcome {
        let key = c.source + "\u{1f}" + c.dedupKey
        let when = c.timeNs > 0 ? c.timeNs : nowNs
        if recent[key] == nil {
            // Not seen since this room started: the store may still hold a recent one.
            sqlite3_reset(findRecent)
            findRecent.bind(1, c.source)
            findRecent.bind(2, c.dedupKey)
            findRecent.bind(3, when - AlertStore.dedupWindowNs)
            if sqlite3_step(findRecent) == SQLITE_ROW { recent[key] = (findRecent.int(0), findRecent.int(1)) }
        }
        if let r = recent[key], when - r.lastSeenNs < AlertStore.dedupWindowNs {
            sqlite3_reset(bump)
            sqlite3_bind_int64(bump, 1, when)
            sqlite3_bind_int64(bump, 2, r.rowid)
            guard sqlite3_step(bump) == SQLITE_DONE else { throw StoreError(message: "alerts: \(sql.lastError)") }
            recent[key] = (r.rowid, when)
            return .repeated(alertId: r.rowid)
        }
        var a = StoredAlert()
        a.alertId = AlertStore.newId()
        a.firstSeenNs = when
        a.lastSeenNs = when
        a.severity = c.severity
        a.title = c.title
        a.description = c.description
        a.techniques = c.techniques
        a.source = c.source
        a.dedupKey = c.dedupKey
        a.evidence = c.evidence
        a.raisedNs = nowNs
        sqlite3_reset(insert)
        insert.bind(1, a.alertId)
        insert.bind(2, a.firstSeenNs)
        insert.bind(3, a.lastSeenNs)
        insert.bind(4, Int64(1))
        insert.bind(5, a.severity)
        insert.bind(6, a.title)
        insert.bind(7, a.description)
        insert.bind(8, JSON.array(a.techniques.map { .string($0) }).serialized())
        insert.bind(9, a.source)
        insert.bind(10, a.dedupKey)
        insert.bind(11, a.evidence.serialized())
        insert.bind(12, a.raisedNs)
        guard sqlite3_step(insert) == SQLITE_DONE else { throw StoreError(message: "alerts: \(sql.lastError)") }
        if recent.count >= AlertStore.maxRecent { recent.removeAll(keepingCapacity: true) }
        recent[key] = (sqlite3_last_insert_rowid(sql.handle), when)
        total += 1
        appendJSONL(a)
        return .new(a)
    }

    func appendJSONL(_ a: StoredAlert) {
        if let st = try? Sys.stat(jsonlPath), Int64(st.st_size) > AlertStore.maxJSONLBytes {
            _ = rename(jsonlPath, jsonlPath + ".1")
        }
        let fd = Glibc.open(jsonlPath, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0o640)
        guard fd >= 0 else { return }
        defer { Glibc.close(fd) }
        try? Sys.writeAll(fd, Array((a.json.serialized() + "\n").utf8))
    }

    static func newId() -> String {
        let b = Sys.randomBytes(16)
        return "da" + b.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    /// Newest first.
    /// Keeps alerts seen within `maxAgeNs` (Defender keeps 180 days), at most
    /// `maxAlerts` of them (the least recently seen go first). Returns alerts removed.
    @discardableResult
    public func enforceRetention(nowNs: Int64, maxAgeNs: Int64, maxAlerts: Int) throws(StoreError) -> Int {
        do throws(SQLiteError) {
            try sql.exec("DELETE FROM alerts WHERE last_seen_ns < \(nowNs - maxAgeNs)")
            var removed = Int(sqlite3_changes(sql.handle))
            let count = try sql.scalar("SELECT count(*) FROM alerts")
            if count > Int64(maxAlerts) {
                try sql.exec("DELETE FROM alerts WHERE id IN (SELECT id FROM alerts ORDER BY last_seen_ns ASC LIMIT \(count - Int64(maxAlerts)))")
                removed += Int(sqlite3_changes(sql.handle))
            }
            return removed
        } catch {
            throw StoreError(message: "alert retention: \(error.message)")
        }
    }

    public func list(limit: Int, sinceNs: Int64 = 0, minSeverity: String? = nil) throws(StoreError) -> [StoredAlert] {
        var q = "SELECT alert_id, first_seen_ns, last_seen_ns, count, severity, title, description, techniques, detection_source, dedup_key, evidence, raised_ns FROM alerts WHERE last_seen_ns >= ?1"
        let levels = ["informational", "low", "medium", "high", "critical"]
        if let m = minSeverity, let i = levels.firstIndex(of: m) {
            q += " AND severity IN (" + levels[i...].map { "'\($0)'" }.joined(separator: ",") + ")"
        }
        q += " ORDER BY last_seen_ns DESC LIMIT \(max(1, min(limit, 10_000)))"
        return try rows(q) { sqlite3_bind_int64($0, 1, sinceNs) }
    }

    public func get(id: String) throws(StoreError) -> StoredAlert? {
        try rows("SELECT alert_id, first_seen_ns, last_seen_ns, count, severity, title, description, techniques, detection_source, dedup_key, evidence, raised_ns FROM alerts WHERE alert_id = ?1") {
            $0.bind(1, id)
        }.first
    }

    func rows(_ q: String, bind: (OpaquePointer) -> Void) throws(StoreError) -> [StoredAlert] {
        let stmt: OpaquePointer
        do throws(SQLiteError) { stmt = try sql.prepare(q) } catch { throw StoreError(message: "alerts: \(error.message)") }
        defer { sqlite3_finalize(stmt) }
        bind(stmt)
        var out: [StoredAlert] = []
        while sqlite3_step(stmt) == SQLITE_ROW {
            var a = StoredAlert()
            a.alertId = stmt.text(0)
            a.firstSeenNs = stmt.int(1)
            a.lastSeenNs = stmt.int(2)
            a.count = stmt.int(3)
            a.severity = stmt.text(4)
            a.title = stmt.text(5)
            a.description = stmt.text(6)
            a.techniques = (try? JSON.parse(stmt.text(7)))?.array?.compactMap(\.string) ?? []
            a.source = stmt.text(8)
            a.dedupKey = stmt.text(9)
            a.evidence = (try? JSON.parse(stmt.text(10))) ?? .object([])
            a.raisedNs = stmt.int(11)
            out.append(a)
        }
        return out
    }
}
