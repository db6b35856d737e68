// The little the rooms need of SQLite: open in WAL mode without following
// links, run statements, prepare, read one integer. Values are always bound,
// never interpolated from outside.
import CSQLite

public struct SQLiteError: Error, CustomStringConvertible {
    public let message: String
    public init(_ m: String) { message = m }
    public var description: String { message }
}

/// SQLITE_TRANSIENT: SQLite copies the bytes it is given.
public let sqliteTransient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

public final class SQLiteDB {
    public let handle: OpaquePointer
    public let path: String

    /// Opens (creating) `path` with WAL and the given schema.
    public init(path: String, schema: String) throws(SQLiteError) {
        self.path = path
        var h: OpaquePointer?
        let rc = sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_FULLMUTEX, nil)
        guard rc == SQLITE_OK, let h else {
            let msg = h.map { String(cString: sqlite3_errmsg($0)) } ?? "code \(rc)"
            sqlite3_close(h)
            throw SQLiteError("open \(path): \(msg)")
        }
        handle = h
        for pragma in ["PRAGMA auto_vacuum=INCREMENTAL", "PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL",
                       "PRAGMA temp_store=MEMORY", "PRAGMA busy_timeout=2000", "PRAGMA trusted_schema=OFF"] {
            try exec(pragma)
        }
        try exec(schema)
    }

    deinit { sqlite3_close(handle) }

    public func exec(_ sql: String) throws(SQLiteError) {
        var err: UnsafeMutablePointer<CChar>?
        if sqlite3_exec(handle, sql, nil, nil, &err) != SQLITE_OK {
            let msg = err.map { String(cString: $0) } ?? "?"
            sqlite3_free(err)
            throw SQLiteError("\(msg) in \(sql.prefix(60))")
        }
    }

    public func prepare(_ sql: String, persistent: Bool = false) throws(SQLiteError) -> OpaquePointer {
        var stmt: OpaquePointer?
        let flags = persistent ? UInt32(SQLITE_PREPARE_PERSISTENT) : 0
        guard sqlite3_prepare_v3(handle, sql, -1, flags, &stmt, nil) == SQLITE_OK, let stmt else {
            throw SQLiteError(String(cString: sqlite3_errmsg(handle)))
        }
        return stmt
    }

    public func scalar(_ sql: String) throws(SQLiteError) -> Int64 {
        let stmt = try prepare(sql)
        defer { sqlite3_finalize(stmt) }
        guard sqlite3_step(stmt) == SQLITE_ROW else { return 0 }
        return sqlite3_column_int64(stmt, 0)
    }

    public var lastError: String { String(cString: sqlite3_errmsg(handle)) }
    public var changes: Int64 { Int64(sqlite3_changes(handle)) }
}

extension OpaquePointer {
    /// Column helpers for a stepped statement.
    public func text(_ i: Int32) -> String { sqlite3_column_text(self, i).map { String(cString: $0) } ?? "" }
    public func int(_ i: Int32) -> Int64 { sqlite3_column_int64(self, i) }
    public func bind(_ i: Int32, _ s: String) { sqlite3_bind_text(self, i, s, -1, sqliteTransient) }
    public func bind(_ i: Int32, _ v: Int64) { sqlite3_bind_int64(self, i, v) }
}
