// A definitions package from an http(s) mirror, laid out as Defender's offline
// update mirror: <url>/manifest.json, manifest.sig and the files the manifest
// lists. Fetched by curl(1) into a fresh 0700 directory, each file bounded in
// size and time, redirects only to http(s). Nothing here is trusted: the
// watchdog stages only accepted names and the scanner checks the signature and
// every file's hash before anything is used.
import Glibc
import MdatpJSON
import MdatpSystem

enum MirrorDownload {
    static let curl = "/usr/bin/curl"
    static let manifestLimit = 1 << 20
    static let signatureLimit = 4096
    static let fileLimit = 512 << 20
    static let maxFiles = 256

    static func package(from base: String) throws -> String {
        guard base.hasPrefix("https://") || base.hasPrefix("http://"), base.utf8.count < 4096,
              base.utf8.allSatisfy({ $0 > 0x20 && $0 != 0x7f }) else {
            throw CLIFailure(message: "not an http(s) mirror URL: \(base)", code: CLIExit.usage)
        }
        let root = base.hasSuffix("/") ? base : base + "/"
        var template = Array("/tmp/mdatp-definitions-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw CLIFailure(message: "mkdtemp: errno \(errno)", code: CLIExit.refused) }
        let dir = String(cString: made)
        do {
            try fetch(root + "manifest.json", to: dir + "/manifest.json", limit: manifestLimit)
            try fetch(root + "manifest.sig", to: dir + "/manifest.sig", limit: signatureLimit)
            var limits = JSONLimits()
            limits.maxBytes = manifestLimit
            limits.maxDepth = 4
            guard let manifest = try? JSON.parse(try Sys.readFile(dir + "/manifest.json", limit: manifestLimit), limits: limits),
                  let files = manifest["files"]?.array, !files.isEmpty, files.count <= maxFiles else {
                throw CLIFailure(message: "\(root)manifest.json is not a definitions manifest", code: CLIExit.refused)
            }
            for f in files {
                // A plain name in this directory, nothing more (the watchdog and the scanner check again).
                guard let name = f["name"]?.string, name.utf8.count <= 128, !name.hasPrefix("."),
                      name.utf8.allSatisfy({ b in (0x30...0x39).contains(b) || (0x41...0x5a).contains(b) || (0x61...0x7a).contains(b) || b == 0x2e || b == 0x2d || b == 0x5f }) else {
                    throw CLIFailure(message: "\(root)manifest.json names a file that cannot be fetched safely", code: CLIExit.refused)
                }
                try fetch(root + name, to: dir + "/" + name, limit: fileLimit)
            }
        } catch {
            remove(dir)
            throw error
        }
        return dir
    }

    /// curl, no shell, writing to a pipe we read: the bytes are counted here and the
    /// download is stopped at `limit` (curl's own --max-filesize trusts a declared length,
    /// and a chunked reply has none).
    static func fetch(_ url: String, to path: String, limit: Int) throws {
        let argv = [curl, "--silent", "--show-error", "--fail", "--location", "--proto", "=https,http", "--proto-redir", "=https,http",
                    "--max-redirs", "3", "--max-filesize", "\(limit)", "--connect-timeout", "20", "--max-time", "600", url]
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { throw CLIFailure(message: "pipe: errno \(errno)", code: CLIExit.refused) }
        for fd in ends { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) } // only what spawn places at 1 reaches curl
        let pid: pid_t
        do { pid = try Sys.spawn(curl, argv: argv, env: [], fds: [(ends[1], 1), (2, 2)]) } catch {
            Sys.close(ends[0])
            Sys.close(ends[1])
            throw CLIFailure(message: "cannot run \(curl): \(error)", code: CLIExit.refused)
        }
        Sys.close(ends[1])
        defer { Sys.close(ends[0]) }
        let out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        var total = 0, failure: String?
        if out < 0 { failure = "cannot create \(path): errno \(errno)" }
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while failure == nil {
            let n = chunk.withUnsafeMutableBytes { read(ends[0], $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            total += n
            if total > limit { failure = "\(url): larger than \(limit) bytes"; break }
            do { try Sys.writeAll(out, Array(chunk[0..<n])) } catch { failure = "\(path): \(error)" }
        }
        if out >= 0 { Sys.close(out) }
        if failure != nil { kill(pid, SIGKILL) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        if let failure { throw CLIFailure(message: failure, code: CLIExit.refused) }
        guard status == 0 else {
            throw CLIFailure(message: "download of \(url) failed (curl exit status \((status >> 8) & 0xff))", code: CLIExit.refused)
        }
    }

    static func remove(_ dir: String) {
        for name in Sys.listDirectory(dir) { _ = unlink(dir + "/" + name) }
        _ = rmdir(dir)
    }
}
