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
    /// nil: a package update; else the name of the imported source.
    var importing: String?
}

extension Watchdog {
    static let packageFileLimit = 512 << 20
    static let packageMaxFiles = 256

    var shippedDefinitions: String { binDir + "/definitions/package" }
    var trustedKeysDir: String { binDir + "/definitions/trusted-keys" }

    /// The package the scanner should load: the updated one if any.
    var activeDefinitions: String { Sys.exists(paths.definitionsCurrent) ? paths.definitionsCurrent : shippedDefinitions }

    func prepareDefinitions() throws(Errno) {
        for dir in [paths.definitionsDir, paths.definitionsExtraDir] {
            try Sys.mkdirExisting(dir, 0o755)
            try Sys.chmod(dir, 0o755)
            // Leftovers of an update or import interrupted by a crash.
            for name in Sys.listDirectory(dir) where name.hasPrefix("staging-") { removeTree(dir + "/" + name) }
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

    /// One file into staging: read without following a final link, bounded,
    /// written new (never over anything) and synced, readable by the scanner.
    func copyForScanner(_ from: String, to: String) throws(Errno) {
        let bytes = try Sys.readFile(from, limit: Watchdog.packageFileLimit)
        let fd = try Sys.open(to, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o644)
        defer { Sys.close(fd) }
        try Sys.writeAll(fd, bytes)
        try Sys.fsync(fd)
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
            for name in names { try copyForScanner(source + "/" + name, to: staging + "/" + name) }
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
        // A mirror URL: the caller (the CLI) downloads it into a directory of its own
        // and asks again with that directory; this loop never waits on a network.
        if src.hasPrefix("https://") || src.hasPrefix("http://") {
            reply(fd, .object([("ok", .bool(true)), ("fetch", .string(src))]))
            return false
        }
        guard let scanner = rooms.first(where: { $0.manifest.name == "scanner" }), case .running = scanner.supervision.state,
              let ch = scanner.channel else {
            refuse(fd, "the scanner room is not running", code: "unavailable")
            return false
        }
        do throws(Errno) {
            let staging = try stage(from: src)
            try ch.send(.loadDefinitions(path: Array(staging.utf8)), nowait: true)
            pendingUpdate = PendingUpdate(client: fd, staging: staging)
            Sys.setTimeouts(fd, seconds: 5)
            return true // the reply comes with the scanner's verdict
        } catch {
            refuse(fd, "update: \(error)")
            return false
        }
    }

    /// The scanner's verdict on the staged package or source.
    func finishUpdate(status: Int32, version: UInt64, reason: String) {
        guard let p = pendingUpdate else { return }
        pendingUpdate = nil
        defer { Sys.close(p.client) }
        if let name = p.importing { return finishImport(p, name: name, status: status, reason: reason) }
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

    // MARK: imported sources

    /// What the copy accepts (the scanner decides what it can read).
    static let importSuffixes = [".cvd", ".cld", ".hdb", ".hsb", ".fp", ".sfp", ".ndb", ".ldb", ".yar"]
    static let importMaxFiles = 64

    /// A source's name from the imported path: its last component, made safe.
    static func sourceName(_ path: String) -> String? {
        let base = path.split(separator: "/").last.map(String.init) ?? ""
        let safe = String(base.utf8.prefix(64).map { b -> Character in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b == 0x2e || b == 0x2d || b == 0x5f ? Character(UnicodeScalar(b)) : "_"
        })
        guard !safe.isEmpty, !safe.hasPrefix("."), !safe.hasPrefix("staging-") else { return nil }
        return safe
    }

    /// `mdatp definitions import --path P`: a file or a directory of signature files,
    /// copied (no link followed) into extra/staging-NAME for the scanner to try.
    func startImport(client fd: Int32, path: String?) -> Bool {
        guard pendingUpdate == nil else { refuse(fd, "an update is already running"); return false }
        guard let path, path.hasPrefix("/"), let name = Watchdog.sourceName(path) else {
            refuse(fd, "import needs an absolute --path to a .cvd, .cld or signature file, or a directory of them", code: "usage")
            return false
        }
        guard let scanner = rooms.first(where: { $0.manifest.name == "scanner" }), case .running = scanner.supervision.state,
              let ch = scanner.channel else {
            refuse(fd, "the scanner room is not running", code: "unavailable")
            return false
        }
        let staging = paths.definitionsExtraDir + "/staging-" + name
        removeTree(staging)
        do throws(Errno) {
            let st = try Sys.lstat(path)
            var sources: [(String, String)] = [] // (from, name)
            if st.st_mode & S_IFMT == S_IFDIR {
                sources = Sys.listDirectory(path).sorted().filter { n in Watchdog.importSuffixes.contains { n.lowercased().hasSuffix($0) } }.map { (path + "/" + $0, $0) }
            } else if st.st_mode & S_IFMT == S_IFREG, Watchdog.importSuffixes.contains(where: { name.lowercased().hasSuffix($0) }) {
                sources = [(path, name)]
            }
            guard !sources.isEmpty, sources.count <= Watchdog.importMaxFiles else {
                throw Errno(EINVAL, "\(path) holds no .cvd, .cld or signature file (or more than \(Watchdog.importMaxFiles))")
            }
            try Sys.mkdirExisting(staging, 0o755)
            try Sys.chmod(staging, 0o755)
            for (from, n) in sources {
                guard let safe = Watchdog.sourceName(n) else { continue }
                try copyForScanner(from, to: staging + "/" + safe)
            }
            try ch.send(.importDefinitions(path: Array(staging.utf8)), nowait: true)
            pendingUpdate = PendingUpdate(client: fd, staging: staging, importing: name)
            Sys.setTimeouts(fd, seconds: 5)
            return true
        } catch {
            removeTree(staging)
            refuse(fd, "import: \(error)")
            return false
        }
    }

    func finishImport(_ p: PendingUpdate, name: String, status: Int32, reason: String) {
        guard status == 0 else {
            removeTree(p.staging)
            log("definitions import of \(name) refused: \(reason)")
            return refuse(p.client, "import refused: \(reason); the current set stays")
        }
        let final = paths.definitionsExtraDir + "/" + name
        removeTree(final)
        _ = rename(p.staging, final)
        log("definitions source \(name) imported: \(reason)")
        reply(p.client, .object([("ok", .bool(true)), ("source", .string(name)), ("loaded", .string(reason))]))
    }

    /// The imported sources and their files.
    func listImports(client fd: Int32) {
        let sources = Sys.listDirectory(paths.definitionsExtraDir).sorted().filter { !$0.hasPrefix("staging-") }.map { name -> JSON in
            let dir = paths.definitionsExtraDir + "/" + name
            let files = Sys.listDirectory(dir).sorted().map { f -> JSON in
                .object([("name", .string(f)), ("bytes", JSON(Int((try? Sys.lstat(dir + "/" + f))?.st_size ?? 0)))])
            }
            return .object([("name", .string(name)), ("files", .array(files))])
        }
        reply(fd, .object([("sources", .array(sources))]))
    }

    /// Drops an imported source; the scanner restarts without it.
    func removeImport(client fd: Int32, name: String?) {
        guard let name, Watchdog.sourceName(name) == name, Sys.exists(paths.definitionsExtraDir + "/" + name) else {
            return refuse(fd, "no imported source of that name (see mdatp definitions imports)", code: "usage")
        }
        removeTree(paths.definitionsExtraDir + "/" + name)
        if let scanner = rooms.first(where: { $0.manifest.name == "scanner" }), scanner.supervision.state.pid != nil {
            feed(scanner, .restart(now: Sys.monotonicSeconds()))
        }
        log("definitions source \(name) removed")
        reply(fd, .object([("ok", .bool(true)), ("removed", .string(name))]))
    }
}
