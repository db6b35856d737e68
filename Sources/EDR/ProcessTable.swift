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

    public mutating func exit(_ tgid: UInt32) {
        entries.removeValue(forKey: tgid)
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
