// The room pattern: start as root, then in one fixed order
//   clear supplementary groups -> setresgid -> drop the bounding and ambient
//   sets -> setresuid -> empty every capability set -> no-new-privs ->
//   Landlock -> seccomp -> (the caller signals ready).
// The bounding set goes before setresuid because dropping it needs
// CAP_SETPCAP, which the uid change takes away.
import MdatpConfig
import MdatpSystem

/// The privileged operations of the sequence, behind a seam so the order can
/// be tested without root.
public protocol PrivilegeOps {
    func clearSupplementaryGroups() throws(Errno)
    func setresgid(_ gid: UInt32) throws(Errno)
    func dropBoundingAndAmbient(keeping: [Capability]) throws(Errno)
    func setresuid(_ uid: UInt32) throws(Errno)
    func setCapabilities(_ caps: [Capability]) throws(Errno)
    func setNoNewPrivs() throws(Errno)
    func landlock(readOnly: [String], readWrite: [String]) throws(Errno) -> Int
    func seccomp(_ syscalls: [String], logOnly: Bool) throws(Errno)
    func setNiceness(_ n: Int32) throws(Errno)
}

public struct LinuxPrivilegeOps: PrivilegeOps {
    public init() {}
    public func clearSupplementaryGroups() throws(Errno) { try Sys.clearSupplementaryGroups() }
    public func setresgid(_ gid: UInt32) throws(Errno) { try Sys.setresgid(gid) }
    public func dropBoundingAndAmbient(keeping: [Capability]) throws(Errno) {
        try Sys.dropBounding(keeping: keeping.map(\.rawValue))
    }
    public func setresuid(_ uid: UInt32) throws(Errno) { try Sys.setresuid(uid) }
    public func setCapabilities(_ caps: [Capability]) throws(Errno) {
        if caps.isEmpty { try Sys.dropAllCapabilities() } else { try Sys.keepCapabilities(caps.map(\.rawValue)) }
    }
    public func setNoNewPrivs() throws(Errno) { try Sys.setNoNewPrivs() }
    public func landlock(readOnly: [String], readWrite: [String]) throws(Errno) -> Int {
        try Sys.landlockRestrict(readOnly: readOnly, readWrite: readWrite)
    }
    public func seccomp(_ syscalls: [String], logOnly: Bool) throws(Errno) { try Sys.seccompAllow(syscalls, logOnly: logOnly) }
    public func setNiceness(_ n: Int32) throws(Errno) { try Sys.setNiceness(n) }
}

public struct SandboxReport: Sendable, Equatable {
    public var landlockABI: Int
    public var seccompLogOnly: Bool
}

public enum RoomSandbox {
    /// Installs the manifest's sandbox. `account` is the mdatp user (nil keeps
    /// root, for rooms whose manifest runs as root).
    public static func enter(_ m: RoomManifest, account: Account?, paths: SuitePaths, seccompLogOnly: Bool,
                             argumentPaths: [String] = [], ops: PrivilegeOps = LinuxPrivilegeOps()) throws(Errno) -> SandboxReport {
        if m.niceness != 0 { try ops.setNiceness(m.niceness) }
        if m.runsAs == .mdatp {
            guard let account else { throw Errno(22, "room \(m.name) runs as mdatp but the account is unknown") }
            try ops.clearSupplementaryGroups()
            try ops.setresgid(account.gid)
            try ops.dropBoundingAndAmbient(keeping: m.capabilities)
            try ops.setresuid(account.uid)
        } else {
            try ops.dropBoundingAndAmbient(keeping: m.capabilities)
        }
        try ops.setCapabilities(m.capabilities)
        try ops.setNoNewPrivs()
        let abi = try ops.landlock(readOnly: m.readOnlyPaths(paths) + argumentPaths, readWrite: m.readWritePaths(paths))
        try ops.seccomp(m.syscalls, logOnly: seccompLogOnly)
        return SandboxReport(landlockABI: abi, seccompLogOnly: seccompLogOnly)
    }
}
