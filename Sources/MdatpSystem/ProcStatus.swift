// What /proc says a process holds: the fields the room manifest promises.
import Glibc

public struct ProcessStatus: Equatable, Sendable {
    public var name = ""
    public var uids: [UInt32] = []   // real, effective, saved, fs
    public var gids: [UInt32] = []
    public var capEffective: UInt64 = 0
    public var capPermitted: UInt64 = 0
    public var capBounding: UInt64 = 0
    public var noNewPrivs = 0
    public var seccomp = 0            // 0 off, 1 strict, 2 filter
    public var rssKiB: UInt64 = 0
    public var peakRSSKiB: UInt64 = 0 // VmHWM
    public var ppid: Int32 = 0

    public init() {}

    /// Parses the text of /proc/PID/status.
    public static func parse(_ text: String) -> ProcessStatus {
        var s = ProcessStatus()
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon]
            let value = line[line.index(after: colon)...].trimmingCharacters(in: " \t")
            let fields = value.split(whereSeparator: { $0 == " " || $0 == "\t" })
            switch key {
            case "Name": s.name = value
            case "Uid": s.uids = fields.compactMap { UInt32($0) }
            case "Gid": s.gids = fields.compactMap { UInt32($0) }
            case "CapEff": s.capEffective = UInt64(value, radix: 16) ?? 0
            case "CapPrm": s.capPermitted = UInt64(value, radix: 16) ?? 0
            case "CapBnd": s.capBounding = UInt64(value, radix: 16) ?? 0
            case "NoNewPrivs": s.noNewPrivs = Int(value) ?? 0
            case "Seccomp": s.seccomp = Int(value) ?? 0
            case "VmRSS": s.rssKiB = UInt64(fields.first ?? "0") ?? 0
            case "VmHWM": s.peakRSSKiB = UInt64(fields.first ?? "0") ?? 0
            case "PPid": s.ppid = Int32(value) ?? 0
            default: break
            }
        }
        return s
    }

    /// Reads /proc/PID/status.
    public static func read(pid: pid_t) throws(Errno) -> ProcessStatus {
        let bytes = try Sys.readFile("/proc/\(pid)/status", limit: 1 << 16)
        return parse(String(decoding: bytes, as: UTF8.self))
    }
}

/// User+system CPU time of a process in seconds, from /proc/PID/stat.
public func processCPUSeconds(pid: pid_t) -> Double? {
    guard let bytes = try? Sys.readFile("/proc/\(pid)/stat", limit: 4096) else { return nil }
    let text = String(decoding: bytes, as: UTF8.self)
    // comm may hold spaces and parentheses: fields resume after the last ')'.
    guard let close = text.lastIndex(of: ")") else { return nil }
    let rest = text[text.index(after: close)...].split(separator: " ")
    guard rest.count > 13, let ut = Double(rest[11]), let st = Double(rest[12]) else { return nil }
    let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
    return (ut + st) / hz
}

extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
