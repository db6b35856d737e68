// Definitions updates, the privileged half: root copies a candidate package
// (from a local mirror directory, Defender's offline update) into a staging
// directory, the scanner verifies it (signature, hashes, sizes, version,
// every signature line) and switches to it, and only then does root make it
// `current` (a symlink replaced by rename: a crash leaves the old or the new
// set, never a mix). A refused package is deleted; the running set stays.
import Glibc
import MdatpJSON
import MdatpSystem
import MdatpWire

struct PendingUpdate {
    let client: Int32
    let staging: String
}

extension Watchdog {
    static let packageFileLimit = 512 << 20
    static let packageMaxFiles = 256

    var shippedDefinitions: String { binDir + "/definitions/package" }
    var trustedKeysDir: String { binDir + "/definitions/trusted-keys" }

    /// The package the scanner should load: the updated one if any.
    var activeDefinitions: String { Sys.exists(paths.definitionsCurrent) ? paths.definitionsCurrent : shippedDefinitions }

    func prepareDefinitions() throws(Errno) {
        try Sys.mkdirExisting(paths.definitionsDir, 0o755)
        try Sys.chmod(paths.definitionsDir, 0o755)
        // Leftovers of an update interrupted by a crash.
        for name in Sys.listDirectory(paths.definitionsDir) where name.hasPrefix("staging-") {
            removeTree(paths.definitionsDir + "/" + name)
        }
    }

    func removeTree(_ dir: String) {
        for name in Sys.listDirectory(dir) { try? Sys.unlinkIfPresent(dir + "/" + name) }
        _ = rmdir(dir)
    }

    static func acceptedName(_ n: String) -> Bool {
        if n == "manifest.json" || n == "manifest.sig" { return true }
        guard n.hasSuffix(".zst"), n.utf8.count <= 128, !n.hasPrefix(".") else { return false }
        return n.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x61 && $0 <= 0x7a) || $0 == 0x2e || $0 == 0x2d || $0 == 0x5f }
    }

    /// Copies the candidate into a fresh staging directory readable by the scanner.
    func stage(from source: String) throws(Errno) -> String {
        guard source.hasPrefix("/") else { throw Errno(EINVAL, "update source must be an absolute directory") }
        let names = Sys.listDirectory(source).filter(Watchdog.acceptedName)
        guard names.contains("manifest.json"), names.count <= Watchdog.packageMaxFiles else { throw Errno(ENOENT, "no definitions package in \(source)") }
        let staging = paths.definitionsDir + "/staging-" + FileDigestsHex(Sys.randomBytes(8))
        try Sys.mkdirExisting(staging, 0o755)
        try Sys.chmod(staging, 0o755)
        do throws(Errno) {
            for name in names {
                let bytes = try Sys.readFile(source + "/" + name, limit: Watchdog.packageFileLimit)
                let fd = try Sys.open(staging + "/" + name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o644)
                defer { Sys.close(fd) }
                try Sys.writeAll(fd, bytes)
                try Sys.fsync(fd)
            }
        } catch {
            removeTree(staging)
            throw error
        }
        return staging
    }

    func startUpdate(client fd: Int32, source: String?) -> Bool {
        guard pendingUpdate == nil else { refuse(fd, "an update is already running"); return false }
        guard let src = source ?? config.offlineDefinitionUpdateUrl else {
            refuse(fd, "no update source: give --source or set antivirusEngine.offlineDefinitionUpdateUrl", code: "usage")
            return false
        }
        guard let scanner = rooms.first(where: { $0.manifest.name == "scanner" }), case .running = scanner.supervision.state,
              let ch = scanner.channel else {
            refuse(fd, "the scanner room is not running", code: "unavailable")
            return false
        }
        do throws(Errno) {
            let staging = try stage(from: src)
            try ch.send(.loadDefinitions(path: Array(staging.utf8)))
            pendingUpdate = PendingUpdate(client: fd, staging: staging)
            Sys.setTimeouts(fd, seconds: 5)
            return true // the reply comes with the scanner's verdict
        } catch {
            refuse(fd, "update: \(error)")
            return false
        }
    }

    /// The scanner's verdict on the staged package.
    func finishUpdate(status: Int32, version: UInt64, reason: String) {
        guard let p = pendingUpdate else { return }
        pendingUpdate = nil
        defer { Sys.close(p.client) }
        guard status == 0 else {
            removeTree(p.staging)
            log("definitions update refused: \(reason)")
            return refuse(p.client, "definitions refused: \(reason); the current set stays")
        }
        let v = (0..<4).map { String(UInt16(truncatingIfNeeded: version >> (48 - 16 * UInt64($0)))) }.joined(separator: ".")
        let final = paths.definitionsDir + "/" + v
        removeTree(final)
        _ = rename(p.staging, final)
        let link = paths.definitionsDir + "/current.new"
        _ = unlink(link)
        if symlink(v, link) != 0 || rename(link, paths.definitionsCurrent) != 0 {
            return refuse(p.client, "definitions \(v) loaded, but `current` could not be switched: \(Errno(errno, "symlink"))")
        }
        log("definitions updated to \(v)")
        reply(p.client, .object([("ok", .bool(true)), ("definitions_version", .string(v))]))
    }

    /// Back to the set shipped with the product; the scanner restarts on it.
    func restoreDefinitions(client fd: Int32) {
        _ = unlink(paths.definitionsCurrent)
        if let scanner = rooms.first(where: { $0.manifest.name == "scanner" }), scanner.supervision.state.pid != nil {
            feed(scanner, .restart(now: Sys.monotonicSeconds()))
        }
        log("definitions restored to the shipped set")
        reply(fd, .object([("ok", .bool(true)), ("definitions", .string("shipped"))]))
    }
}
