// What happens to a detection: Defender's per-type policy (block | audit | off)
// for PUAs and archive bombs, blocking for malware when remediation is on
// (real_time enforcement), and the admin's allowed threats.

public enum ThreatAction: String, Sendable, Equatable {
    case block   // quarantine
    case audit   // record only
    case off     // nothing
    case allowed // an allowed threat: recorded as such, nothing done
}

public struct ThreatPolicy: Sendable, Equatable {
    public var remediate: Bool
    public var perType: [String: ThreatAction]
    public var allowed: Set<String>

    public init(remediate: Bool, perType: [String: ThreatAction] = [:], allowed: Set<String> = []) {
        self.remediate = remediate
        self.perType = perType
        self.allowed = allowed
    }

    /// `--policy type=action` arguments.
    public static func parse(remediate: Bool, policies: [String], allowed: [String]) -> ThreatPolicy {
        var p = ThreatPolicy(remediate: remediate, allowed: Set(allowed))
        for item in policies {
            let kv = item.split(separator: "=", maxSplits: 1).map(String.init)
            if kv.count == 2, let a = ThreatAction(rawValue: kv[1]), a != .allowed { p.perType[kv[0]] = a }
        }
        return p
    }

    public func action(for d: Detection) -> ThreatAction {
        if allowed.contains(d.name) { return .allowed }
        let configured = perType[d.type.rawValue]
        switch d.type {
        case .potentiallyUnwantedApplication, .archiveBomb:
            let a = configured ?? .audit
            return a == .block && !remediate ? .audit : a
        case .virus, .trojan, .tool:
            return remediate ? .block : .audit
        }
    }
}
