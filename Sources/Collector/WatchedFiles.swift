// Files whose read opens the kernel reports (MDATP_EV_FILE_OPEN_READ): the
// password-hash files. They are watched by identity, and `passwd` replaces
// them by rename, so the identities are re-read every few seconds and the
// slots rewritten (identity first, state last with a release store).
import CMdatpABI
import CMdatpLinux
import MdatpSystem

public struct WatchedFiles {
    public static let paths = ["/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-", "/etc/security/opasswd"]
    let slots: UnsafeMutablePointer<mdatp_watch_entry>
    var current: [(dev: UInt32, ino: UInt64)?]

    public init(slots: UnsafeMutablePointer<mdatp_watch_entry>) {
        self.slots = slots
        current = Array(repeating: nil, count: Int(MDATP_WATCH_SLOTS))
    }

    /// Re-reads the identities; returns how many files are watched.
    @discardableResult
    public mutating func refresh(paths: [String] = WatchedFiles.paths) -> Int {
        var watched = 0
        for i in 0..<Int(MDATP_WATCH_SLOTS) {
            let id: (dev: UInt32, ino: UInt64)? = i < paths.count ? (try? Sys.stat(paths[i])).map { (Sys.kernelDev(UInt64($0.st_dev)), UInt64($0.st_ino)) } : nil
            if id != nil { watched += 1 }
            if id?.dev == current[i]?.dev && id?.ino == current[i]?.ino { continue }
            let state = UnsafeMutableRawPointer(slots + i) + 12
            mdatp_store_release_u32(state, 0)
            if let id {
                slots[i].ino = id.ino
                slots[i].dev = id.dev
                mdatp_store_release_u32(state, MDATP_WATCH_VALID)
            }
            current[i] = id
        }
        return watched
    }
}
