// The threat history: one row per detection, in SQLite under the scanner's
// state directory.
import CSQLite
import MdatpJSON
import MdatpSQLite

public struct ThreatRecord: Equatable, Sendable {
    public var id: Int64 = 0
    public var timeNs: Int64
    public var name: String
    public var type: String
    public var path: String
    public var sha256: String
    public var size: Int64
    public var source: String      // real_time | on_demand
    public var action: String      // audited (quarantine: later)
    public var pid: Int64
    public var processName: String
    public var quarantineId = ""

    public var json: JSON {
        .object([("id", .number(Double(id))), ("time_ns", .number(Double(timeNs))), ("name", .string(name)),
                 ("type", .string(type)), ("path", .string(path)), ("sha256", .string(sha256)),
                 ("size", .number(Double(size))), ("source", .string(source)), ("action", .string(action)),
                 ("pid", .number(Double(pid))), ("process", .string(processName)), ("quarantine_id", .string(quarantineId))])
    }
}

public final class ThreatStore {
    let db: SQLiteDB
    let insert: OpaquePointer

    static let schema = """
    CREATE TABLE IF NOT EXISTS scans (
      id INTEGER PRIMARY KEY, kind TEXT NOT NULL, path TEXT, started_unix INTEGER, ended_unix INTEGER,
      scanned INTEGER, skipped INTEGER, errors INTEGER, threats INTEGER, state TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS threats (
      id INTEGER PRIMARY KEY, time_ns INTEGER NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL, path TEXT NOT NULL,
      sha256 TEXT, size INTEGER, source TEXT NOT NULL, action TEXT NOT NULL, pid INTEGER, process TEXT, quarantine_id TEXT);
    CREATE TABLE IF NOT EXISTS scan_cache (
      dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
      archives INTEGER NOT NULL, definitions INTEGER NOT NULL, PRIMARY KEY (dev, ino)) WITHOUT ROWID;
    """

    public init(path: String) throws(SQLiteError) {
        db = try SQLiteDB(path: path, schema: ThreatStore.schema)
        insert = try db.prepare("INSERT INTO threats (time_ns, name, type, path, sha256, size, source, action, pid, process, quarantine_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)", persistent: true)
    }

    deinit { sqlite3_finalize(insert) }

    public func add(_ t: ThreatRecord) throws(SQLiteError) {
        sqlite3_reset(insert)
        insert.bind(1, t.timeNs)
        insert.bind(2, t.name)
        insert.bind(3, t.type)
        insert.bind(4, t.path)
        insert.bind(5, t.sha256)
        insert.bind(6, t.size)
        insert.bind(7, t.source)
        insert.bind(8, t.action)
        insert.bind(9, t.pid)
        insert.bind(10, t.processName)
        insert.bind(11, t.quarantineId)
        guard sqlite3_step(insert) == SQLITE_DONE else { throw SQLiteError("insert: \(db.lastError)") }
    }

    public func addScan(kind: String, path: String, started: Int64, ended: Int64, scanned: Int, skipped: Int, errors: Int, threats: Int, state: String) throws(SQLiteError) {
        let stmt = try db.prepare("INSERT INTO scans (kind, path, started_unix, ended_unix, scanned, skipped, errors, threats, state) VALUES (?,?,?,?,?,?,?,?,?)")
        defer { sqlite3_finalize(stmt) }
        stmt.bind(1, kind)
        stmt.bind(2, path)
        stmt.bind(3, started)
        stmt.bind(4, ended)
        stmt.bind(5, Int64(scanned))
        stmt.bind(6, Int64(skipped))
        stmt.bind(7, Int64(errors))
        stmt.bind(8, Int64(threats))
        stmt.bind(9, state)
        guard sqlite3_step(stmt) == SQLITE_DONE else { throw SQLiteError("insert scan: \(db.lastError)") }
    }

    /// Clean verdicts of definitions `version` (older rows are deleted), at most `limit`.
    func loadCache(version: UInt64, limit: Int) throws(SQLiteError) -> [(FileID, CachedVerdict)] {
        try db.exec("DELETE FROM scan_cache WHERE definitions != \(Int64(bitPattern: version))")
        let stmt = try db.prepare("SELECT dev, ino, size, mtime_ns, ctime_ns, archives FROM scan_cache LIMIT \(limit)")
        defer { sqlite3_finalize(stmt) }
        var out: [(FileID, CachedVerdict)] = []
        while sqlite3_step(stmt) == SQLITE_ROW {
            let id = FileID(dev: UInt32(truncatingIfNeeded: sqlite3_column_int64(stmt, 0)), ino: UInt64(bitPattern: sqlite3_column_int64(stmt, 1)))
            out.append((id, CachedVerdict(size: sqlite3_column_int64(stmt, 2), mtimeNs: sqlite3_column_int64(stmt, 3),
                                          ctimeNs: sqlite3_column_int64(stmt, 4), archives: sqlite3_column_int64(stmt, 5) != 0, detection: nil)))
        }
        return out
    }

    /// Writes the cache's changes in one transaction; keeps at most `limit` rows.
    func saveCache(upsert: [(FileID, CachedVerdict)], delete: [FileID], version: UInt64, limit: Int) throws(SQLiteError) {
        guard !upsert.isEmpty || !delete.isEmpty else { return }
        try db.exec("BEGIN")
        do throws(SQLiteError) {
            let del = try db.prepare("DELETE FROM scan_cache WHERE dev = ? AND ino = ?")
            defer { sqlite3_finalize(del) }
            for id in delete {
                sqlite3_reset(del)
                del.bind(1, Int64(id.dev))
                del.bind(2, Int64(bitPattern: id.ino))
                guard sqlite3_step(del) == SQLITE_DONE else { throw SQLiteError("cache delete: \(db.lastError)") }
            }
            let up = try db.prepare("INSERT OR REPLACE INTO scan_cache (dev, ino, size, mtime_ns, ctime_ns, archives, definitions) VALUES (?,?,?,?,?,?,?)")
            defer { sqlite3_finalize(up) }
            for (id, v) in upsert {
                sqlite3_reset(up)
                up.bind(1, Int64(id.dev))
                up.bind(2, Int64(bitPattern: id.ino))
                up.bind(3, v.size)
                up.bind(4, v.mtimeNs)
                up.bind(5, v.ctimeNs)
                up.bind(6, Int64(v.archives ? 1 : 0))
                up.bind(7, Int64(bitPattern: version))
                guard sqlite3_step(up) == SQLITE_DONE else { throw SQLiteError("cache insert: \(db.lastError)") }
            }
            // Bounded: past the limit, an arbitrary excess goes (it is only a cache).
            try db.exec("DELETE FROM scan_cache WHERE (dev, ino) IN (SELECT dev, ino FROM scan_cache LIMIT max(0, (SELECT count(*) FROM scan_cache) - \(limit)))")
            try db.exec("COMMIT")
        } catch {
            try? db.exec("ROLLBACK")
            throw error
        }
    }

    /// The most recent scans, newest first.
    public func scans(limit: Int) throws(SQLiteError) -> [JSON] {
        let stmt = try db.prepare("SELECT id, kind, path, started_unix, ended_unix, scanned, skipped, errors, threats, state FROM scans ORDER BY id DESC LIMIT \(max(1, min(limit, 1000)))")
        defer { sqlite3_finalize(stmt) }
        var out: [JSON] = []
        while sqlite3_step(stmt) == SQLITE_ROW {
            out.append(.object([("id", JSON(Int(stmt.int(0)))), ("kind", .string(stmt.text(1))), ("path", .string(stmt.text(2))),
                                ("started_unix", JSON(Int(stmt.int(3)))), ("ended_unix", JSON(Int(stmt.int(4)))),
                                ("scanned", JSON(Int(stmt.int(5)))), ("skipped", JSON(Int(stmt.int(6)))), ("errors", JSON(Int(stmt.int(7)))),
                                ("threats", JSON(Int(stmt.int(8)))), ("state", .string(stmt.text(9)))]))
        }
        return out
    }

    public func list(limit: Int) throws(SQLiteError) -> [ThreatRecord] {
        let stmt = try db.prepare("SELECT id, time_ns, name, type, path, sha256, size, source, action, pid, process, quarantine_id FROM threats ORDER BY id DESC LIMIT \(max(1, min(limit, 10_000)))")
        defer { sqlite3_finalize(stmt) }
        var out: [ThreatRecord] = []
        while sqlite3_step(stmt) == SQLITE_ROW {
            out.append(ThreatRecord(id: stmt.int(0), timeNs: stmt.int(1), name: stmt.text(2), type: stmt.text(3), path: stmt.text(4),
                                    sha256: stmt.text(5), size: stmt.int(6), source: stmt.text(7), action: stmt.text(8),
                                    pid: stmt.int(9), processName: stmt.text(10), quarantineId: stmt.text(11)))
        }
        return out
    }
}
