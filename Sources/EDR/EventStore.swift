// The local event store: SQLite in WAL mode under the state directory,
// bounded by size and by age, written in batches, read by queries with
// parameters only (no SQL text from outside ever reaches it).
import CSQLite
import MdatpJSON
import MdatpSQLite

public struct StoreError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { "event store: \(message)" }
}

/// One row of the `events` table.
public struct StoredEvent: Equatable, Sendable {
    public var id: Int64 = 0
    public var timeNs: Int64 = 0          // unix time
    public var kernelSeq: Int64 = 0
    public var type = ""
    public var pid: Int64 = 0
    public var tgid: Int64 = 0
    public var ppid: Int64 = 0
    public var uid: Int64 = 0
    public var euid: Int64 = 0
    public var comm = ""
    public var exe = ""
    public var argv: [String] = []
    /// argv as JSON text when already made (the process table keeps it).
    public var argvText: String?
    public var cwd = ""
    public var path = ""
    public var path2 = ""
    public var mode: Int64 = 0
    public var ownerUid: Int64 = -1
    public var ownerGid: Int64 = -1
    public var proto = ""
    public var localAddress = ""
    public var localPort: Int64 = 0
    public var remoteAddress = ""
    public var remotePort: Int64 = 0
    public var flags: Int64 = 0
    /// A JSON object's text (built once, on the hot path, by JSONObjectWriter).
    public var details = "{}"
    /// The acting process's parent (for exec: the new process's parent) and its account name.
    public var parentExe = ""
    public var parentArgvText = "[]"
    public var account = ""
    public var sha256 = ""
    public init() {}

    public var commandLine: String { argv.joined(separator: " ") }
}

public final class EventStore {
    let insert: OpaquePointer
    let setHash: OpaquePointer
    public let path: String
    public private(set) var rows: Int64 = 0

    static let schema = """
    CREATE TABLE IF NOT EXISTS events (
      id INTEGER PRIMARY KEY, time_ns INTEGER NOT NULL, kernel_seq INTEGER, type TEXT NOT NULL,
      pid INTEGER, tgid INTEGER, ppid INTEGER, uid INTEGER, euid INTEGER, comm TEXT, exe TEXT,
      argv TEXT, cwd TEXT, path TEXT, path2 TEXT, mode INTEGER, owner_uid INTEGER, owner_gid INTEGER,
      protocol TEXT, local_address TEXT, local_port INTEGER, remote_address TEXT, remote_port INTEGER,
      flags INTEGER, details TEXT, parent_exe TEXT, parent_argv TEXT, account TEXT, sha256 TEXT);
    CREATE INDEX IF NOT EXISTS events_time ON events(time_ns);
    CREATE INDEX IF NOT EXISTS events_type_time ON events(type, time_ns);
    """

    static let columns = "id, time_ns, kernel_seq, type, pid, tgid, ppid, uid, euid, comm, exe, argv, cwd, path, path2, mode, owner_uid, owner_gid, protocol, local_address, local_port, remote_address, remote_port, flags, details"

    let sql: SQLiteDB
    var db: OpaquePointer { sql.handle }

    public init(path: String) throws(StoreError) {
        self.path = path
        do throws(SQLiteError) {
            sql = try SQLiteDB(path: path, schema: EventStore.schema)
            // Stores made before these columns existed gain them (older rows read as NULL).
            let have = try EventStore.columnNames(sql)
            for c in ["parent_exe", "parent_argv", "account", "sha256"] where !have.contains(c) {
                try sql.exec("ALTER TABLE events ADD COLUMN \(c) TEXT")
            }
            // The digest of an executable arrives after the rows of its first run: filled in
            // by path (the acting program of every row), from the execution it was asked for
            // (the time index bounds the scan).
            setHash = try sql.prepare("UPDATE events SET sha256 = ?1 WHERE time_ns >= ?2 AND exe = ?3 AND sha256 IS NULL", persistent: true)
            insert = try sql.prepare("INSERT INTO events (time_ns, kernel_seq, type, pid, tgid, ppid, uid, euid, comm, exe, argv, cwd, path, path2, mode, owner_uid, owner_gid, protocol, local_address, local_port, remote_address, remote_port, flags, details, parent_exe, parent_argv, account, sha256) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", persistent: true)
        } catch {
            throw StoreError(message: error.message)
        }
        rows = (try? scalar("SELECT count(*) FROM events")) ?? 0
    }

    deinit {
        sqlite3_finalize(insert)
        sqlite3_finalize(setHash)
    }

    static func columnNames(_ sql: SQLiteDB) throws(SQLiteError) -> Set<String> {
        let stmt = try sql.prepare("PRAGMA table_info(events)")
        defer { sqlite3_finalize(stmt) }
        var out = Set<String>()
        while sqlite3_step(stmt) == SQLITE_ROW { out.insert(stmt.text(1)) }
        return out
    }

    static func exec(_ sql: SQLiteDB, _ text: String) throws(StoreError) {
        do throws(SQLiteError) { try sql.exec(text) } catch { throw StoreError(message: error.message) }
    }

    func scalar(_ text: String) throws(StoreError) -> Int64 {
        do throws(SQLiteError) { return try sql.scalar(text) } catch { throw StoreError(message: error.message) }
    }

    /// Writes a batch in one transaction.
    public func append(_ batch: [StoredEvent]) throws(StoreError) {
        guard !batch.isEmpty else { return }
        try EventStore.exec(sql, "BEGIN")
        for e in batch {
            sqlite3_reset(insert)
            sqlite3_bind_int64(insert, 1, e.timeNs)
            sqlite3_bind_int64(insert, 2, e.kernelSeq)
            bindText(3, e.type)
            sqlite3_bind_int64(insert, 4, e.pid)
            sqlite3_bind_int64(insert, 5, e.tgid)
            sqlite3_bind_int64(insert, 6, e.ppid)
            sqlite3_bind_int64(insert, 7, e.uid)
            sqlite3_bind_int64(insert, 8, e.euid)
            bindText(9, e.comm)
            bindText(10, e.exe)
            bindText(11, e.argvText ?? JSON.stringArrayText(e.argv))
            bindText(12, e.cwd)
            bindText(13, e.path)
            bindText(14, e.path2)
            sqlite3_bind_int64(insert, 15, e.mode)
            sqlite3_bind_int64(insert, 16, e.ownerUid)
            sqlite3_bind_int64(insert, 17, e.ownerGid)
            bindText(18, e.proto)
            bindText(19, e.localAddress)
            sqlite3_bind_int64(insert, 20, e.localPort)
            bindText(21, e.remoteAddress)
            sqlite3_bind_int64(insert, 22, e.remotePort)
            sqlite3_bind_int64(insert, 23, e.flags)
            bindText(24, e.details)
            bindText(25, e.parentExe)
            bindText(26, e.parentArgvText)
            bindText(27, e.account)
            if e.sha256.isEmpty { sqlite3_bind_null(insert, 28) } else { bindText(28, e.sha256) }
            if sqlite3_step(insert) != SQLITE_DONE {
                let msg = String(cString: sqlite3_errmsg(db))
                try? EventStore.exec(sql, "ROLLBACK")
                throw StoreError(message: "insert: \(msg)")
            }
        }
        try EventStore.exec(sql, "COMMIT")
        rows += Int64(batch.count)
    }

    /// Fills the SHA-256 of `path` into the rows of its runs stored since `sinceNs`.
    public func setExecutableHash(path: String, sinceNs: Int64, sha256: String) throws(StoreError) {
        sqlite3_reset(setHash)
        sqlite3_bind_text(setHash, 1, sha256, -1, unsafeBitCast(-1, to: sqlite3_destructor_type.self))
        sqlite3_bind_int64(setHash, 2, sinceNs)
        sqlite3_bind_text(setHash, 3, path, -1, unsafeBitCast(-1, to: sqlite3_destructor_type.self))
        if sqlite3_step(setHash) != SQLITE_DONE {
            throw StoreError(message: "set sha256: \(String(cString: sqlite3_errmsg(db)))")
        }
    }

    private func bindText(_ i: Int32, _ s: String) {
        // SQLITE_TRANSIENT: SQLite copies the bytes.
        sqlite3_bind_text(insert, i, s, -1, unsafeBitCast(-1, to: sqlite3_destructor_type.self))
    }

    /// Deletes rows older than `maxAgeNs` and, while the file is over
    /// `maxBytes`, the oldest tenth. Returns rows removed.
    @discardableResult
    public func enforceRetention(nowNs: Int64, maxAgeNs: Int64, maxBytes: Int64) throws(StoreError) -> Int64 {
        var removed: Int64 = 0
        try EventStore.exec(sql, "DELETE FROM events WHERE time_ns < \(nowNs - maxAgeNs)")
        removed += Int64(sqlite3_changes(db))
        var rounds = 0
        while try sizeBytes() > maxBytes && rounds < 10 {
            let count = try scalar("SELECT count(*) FROM events")
            if count == 0 { break }
            try EventStore.exec(sql, "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT \(max(1, count / 10)))")
            removed += Int64(sqlite3_changes(db))
            try EventStore.exec(sql, "PRAGMA wal_checkpoint(TRUNCATE)")
            try EventStore.exec(sql, "PRAGMA incremental_vacuum")
            rounds += 1
        }
        rows = try scalar("SELECT count(*) FROM events")
        return removed
    }

    /// Bytes the database occupies (pages in use, not counting the WAL).
    public func sizeBytes() throws(StoreError) -> Int64 {
        let pages = try scalar("PRAGMA page_count")
        let free = try scalar("PRAGMA freelist_count")
        let size = try scalar("PRAGMA page_size")
        return (pages - free) * size
    }

    public struct Query: Sendable {
        public var types: [String] = []
        public var sinceNs: Int64 = 0
        public var afterId: Int64 = 0
        public var limit = 100
        public var newestFirst = true
        public var pid: Int64? = nil
        public init() {}
    }

    /// Reads events matching `q` (parameters bound, never interpolated).
    public func query(_ q: Query) throws(StoreError) -> [StoredEvent] {
        var sql = "SELECT \(EventStore.columns) FROM events WHERE time_ns >= ?1 AND id > ?2"
        if q.pid != nil { sql += " AND tgid = ?3" }
        if !q.types.isEmpty {
            sql += " AND type IN (" + (0..<q.types.count).map { "?\($0 + 4)" }.joined(separator: ",") + ")"
        }
        sql += q.newestFirst ? " ORDER BY id DESC" : " ORDER BY id ASC"
        sql += " LIMIT \(max(1, min(q.limit, 10_000)))"
        var stmt: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &stmt, nil) == SQLITE_OK else { throw StoreError(message: String(cString: sqlite3_errmsg(db))) }
        defer { sqlite3_finalize(stmt) }
        sqlite3_bind_int64(stmt, 1, q.sinceNs)
        sqlite3_bind_int64(stmt, 2, q.afterId)
        if let pid = q.pid { sqlite3_bind_int64(stmt, 3, pid) }
        for (i, t) in q.types.enumerated() {
            sqlite3_bind_text(stmt, Int32(i + 4), t, -1, unsafeBitCast(-1, to: sqlite3_destructor_type.self))
        }
        var out: [StoredEvent] = []
        while sqlite3_step(stmt) == SQLITE_ROW {
            func text(_ i: Int32) -> String { sqlite3_column_text(stmt, i).map { String(cString: $0) } ?? "" }
            func int(_ i: Int32) -> Int64 { sqlite3_column_int64(stmt, i) }
            var e = StoredEvent()
            e.id = int(0); e.timeNs = int(1); e.kernelSeq = int(2); e.type = text(3)
            e.pid = int(4); e.tgid = int(5); e.ppid = int(6); e.uid = int(7); e.euid = int(8)
            e.comm = text(9); e.exe = text(10)
            e.argv = (try? JSON.parse(text(11)))?.array?.compactMap(\.string) ?? []
            e.cwd = text(12); e.path = text(13); e.path2 = text(14)
            e.mode = int(15); e.ownerUid = int(16); e.ownerGid = int(17)
            e.proto = text(18); e.localAddress = text(19); e.localPort = int(20)
            e.remoteAddress = text(21); e.remotePort = int(22); e.flags = int(23)
            e.details = text(24)
            out.append(e)
        }
        return out
    }
}
