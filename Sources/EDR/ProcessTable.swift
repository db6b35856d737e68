import MdatpJSON

// A process table with a fixed capacity: memory is bounded whatever the
// churn. Exited processes leave at once; when full, the least recently
// seen entry is evicted and counted.

public struct ProcessRecord: Equatable, Sendable {
    public var tgid: UInt32
    public var ppid: UInt32
    public var uid: UInt32
    public var exe: String
    public var argv: [String]
    public var cwd: String
    /// argv as JSON text, made once at exec and reused for every event of the process.
    public var argvText: String
    public var startNs: UInt64
    /// Boot time of the exec that made this image, and the image before it:
    /// the kernel's two rings are merged in poll order, so an event the old
    /// image caused can arrive after the exec that replaced it.
    public var execNs: UInt64 = 0
    public var previous: PreviousImage?
    var lastSeen: UInt64 = 0
    /// Boot time of its exit (0 while it runs): kept a little longer, see ProcessTable.exit.
    public var exitedNs: UInt64 = 0
    /// The executable as the kernel reported it at exec (for its SHA-256).
    public var exeIdentity: ExecutableIdentity?

    public init(tgid: UInt32, ppid: UInt32, uid: UInt32, exe: String, argv: [String], cwd: String, argvText: String? = nil, startNs: UInt64) {
        self.tgid = tgid
        self.ppid = ppid
        self.uid = uid
        self.exe = exe
        self.argv = argv
        self.cwd = cwd
        self.argvText = argvText ?? JSON.stringArrayText(argv)
        self.startNs = startNs
    }
}

public struct PreviousImage: Equatable, Sendable {
    public var exe: String
    public var argv: [String]
    public var argvText: String
    public var cwd: String
}

public struct ProcessTable {
    public let capacity: Int
    var entries: [UInt32: ProcessRecord] = [:]
    /// Exits in arrival order; those before `exitedHead` are done (compacted now and then,
    /// not on every purge: an exec storm purges thousands of times a second).
    var exited: [(tgid: UInt32, atNs: UInt64)] = []
    var exitedHead = 0
    var tick: UInt64 = 0
    public private(set) var evictions: UInt64 = 0
    static let maxArgvBytes = 4096

    public init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        entries.reserveCapacity(capacity)
    }

    public var count: Int { entries.count }

    public mutating func lookup(_ tgid: UInt32) -> ProcessRecord? {
        guard var r = entries[tgid] else { return nil }
        tick &+= 1
        r.lastSeen = tick
        entries[tgid] = r
        return r
    }

    public mutating func exec(_ r: ProcessRecord) {
        var rec = r
        if let old = entries[r.tgid] {
            rec.previous = PreviousImage(exe: old.exe, argv: old.argv, argvText: old.argvText, cwd: old.cwd)
        }
        insert(rec)
    }

    /// A forked child starts as a copy of its parent (same image until it execs).
    public mutating func fork(parent: UInt32, child: UInt32, startNs: UInt64, uid: UInt32) {
        var r = entries[parent] ?? ProcessRecord(tgid: child, ppid: parent, uid: uid, exe: "", argv: [], cwd: "", argvText: "[]", startNs: startNs)
        r.tgid = child
        r.ppid = parent
        r.startNs = startNs
        insert(r)
    }

    /// An exited process stays readable for `exitGraceNs`: the kernel's two
    /// rings are read one after the other, so what a process did just before
    /// it exited (closing its files…) can reach us after its exit.
    public mutating func exit(_ tgid: UInt32, atNs: UInt64) {
        guard entries[tgid] != nil else { return }
        entries[tgid]!.exitedNs = max(atNs, 1)
        exited.append((tgid, max(atNs, 1)))
    }

    public static let exitGraceNs: UInt64 = 2_000_000_000

    /// Drops the processes that exited more than the grace period before `nowNs`.
    public mutating func purgeExited(nowNs: UInt64) {
        var n = exitedHead
        while n < exited.count, exited[n].atNs + ProcessTable.exitGraceNs < nowNs {
            let (tgid, at) = exited[n]
            // Only if it is still that exited process (the pid may have been reused since).
            if let r = entries[tgid], r.exitedNs == at { entries.removeValue(forKey: tgid) }
            n += 1
        }
        exitedHead = n
        if exitedHead > 1024 && exitedHead * 2 > exited.count {
            exited.removeFirst(exitedHead)
            exitedHead = 0
        }
    }

    mutating func insert(_ r: ProcessRecord) {
        tick &+= 1
        var rec = r
        rec.lastSeen = tick
        if entries[r.tgid] == nil && entries.count >= capacity { evictOldest() }
        entries[r.tgid] = rec
    }

    /// O(n) but rare: only when the table is full. Evicts the oldest 1/16 at
    /// once so a storm pays it once per many inserts.
    mutating func evictOldest() {
        let n = max(1, capacity / 16)
        let victims = entries.values.sorted { $0.lastSeen < $1.lastSeen }.prefix(n).map(\.tgid)
        for v in victims { entries.removeValue(forKey: v) }
        evictions &+= UInt64(victims.count)
    }
}
