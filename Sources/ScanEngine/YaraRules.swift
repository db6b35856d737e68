// YARA rules (libyara): compiled once when definitions load, a bad rule
// refuses the whole set with the file and line; a scan is bounded by a
// timeout and reports the first matching rule.
import CYara
import Glibc

public final class YaraRules: @unchecked Sendable {
    let rules: OpaquePointer
    public let count: Int
    public static let timeoutSeconds: Int32 = 10

    /// (file name, rule text) pairs.
    public init(sources: [(String, String)]) throws(SignatureError) {
        var err = [CChar](repeating: 0, count: 512)
        var cTexts = sources.map { strdupSwift($0.1) }
        var cNames = sources.map { strdupSwift($0.0) }
        defer { (cTexts + cNames).forEach { free($0) } }
        let r = cTexts.withUnsafeMutableBufferPointer { t in
            cNames.withUnsafeMutableBufferPointer { n in
                t.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: t.count) { tp in
                    n.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: n.count) { np in
                        mdatp_yara_compile(tp, np, sources.count, &err, err.count)
                    }
                }
            }
        }
        guard let r else {
            let text = String(decoding: err.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let parts = text.split(separator: ":", maxSplits: 2)
            throw SignatureError(file: parts.first.map(String.init) ?? "rules", line: parts.count > 1 ? Int(parts[1]) ?? 0 : 0,
                                 reason: "YARA: " + (parts.count > 2 ? String(parts[2]).trimmingCharacters() : text))
        }
        rules = r
        count = Int(mdatp_yara_rule_count(r))
    }

    deinit { mdatp_yara_free(rules) }

    func detection(_ rc: Int32, _ name: [CChar], _ type: [CChar]) -> Detection? {
        guard rc == 1 else { return nil }
        let n = String(decoding: name.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let t = String(decoding: type.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return Detection(name: n, type: ThreatType(rawValue: t) ?? ThreatType.of(signatureName: n), engine: "yara")
    }

    public func scan(fd: Int32) -> Detection? {
        var name = [CChar](repeating: 0, count: 256), type = [CChar](repeating: 0, count: 64)
        let rc = mdatp_yara_scan_fd(rules, fd, YaraRules.timeoutSeconds, &name, name.count, &type, type.count)
        return detection(rc, name, type)
    }

    public func scan(bytes: [UInt8]) -> Detection? {
        var name = [CChar](repeating: 0, count: 256), type = [CChar](repeating: 0, count: 64)
        let rc = bytes.withUnsafeBytes { mdatp_yara_scan_mem(rules, $0.baseAddress, $0.count, YaraRules.timeoutSeconds, &name, name.count, &type, type.count) }
        return detection(rc, name, type)
    }
}

func strdupSwift(_ s: String) -> UnsafeMutablePointer<CChar>? { s.withCString { strdup($0) } }

extension StringProtocol {
    func trimmingCharacters() -> String {
        var s = Substring(self)
        while s.first == " " { s = s.dropFirst() }
        return String(s)
    }
}
