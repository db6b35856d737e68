// Account lookups (getpwnam_r / getgrnam_r).
import Glibc

public struct Account: Equatable, Sendable {
    public let name: String
    public let uid: uid_t
    public let gid: gid_t

    public init(name: String, uid: uid_t, gid: gid_t) {
        self.name = name
        self.uid = uid
        self.gid = gid
    }
}

extension Sys {
    /// The account `name`, or nil when it does not exist.
    public static func lookupUser(_ name: String) -> Account? {
        var pwd = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buf = [CChar](repeating: 0, count: 16384)
        let rc = getpwnam_r(name, &pwd, &buf, buf.count, &result)
        guard rc == 0, result != nil else { return nil }
        return Account(name: name, uid: pwd.pw_uid, gid: pwd.pw_gid)
    }

    /// Supplementary group ids of `name` (for read authorisation).
    public static func groupMembers(_ group: String) -> (gid: gid_t, members: [String])? {
        var grp = group_t()
        var result: UnsafeMutablePointer<group_t>?
        var buf = [CChar](repeating: 0, count: 65536)
        let rc = getgrnam_r(group, &grp, &buf, buf.count, &result)
        guard rc == 0, result != nil else { return nil }
        var members: [String] = []
        var p = grp.gr_mem
        while let m = p?.pointee {
            members.append(String(cString: m))
            p = p! + 1
        }
        return (grp.gr_gid, members)
    }
}

public typealias group_t = Glibc.group
