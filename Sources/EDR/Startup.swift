// What the EDR reads once at start: the processes already running (so the
// ancestry of everything that follows is known), the device's identity for
// DeviceInfo, and the Sigma rule directories.
import Detection
import Glibc
import MdatpSystem

enum ProcessSeed {
    /// Every process in /proc now (kernel threads have no executable and are skipped).
    static func read(limit: Int) -> [ProcessRecord] {
        var out: [ProcessRecord] = []
        for name in Sys.listDirectory("/proc", limit: 4 * limit + 64) where out.count < limit {
            guard let pid = UInt32(name), let st = try? ProcessStatus.read(pid: pid_t(pid)),
                  let exe = try? Sys.readlink("/proc/\(pid)/exe") else { continue }
            let raw = (try? Sys.readFile("/proc/\(pid)/cmdline", limit: 4096)) ?? []
            let argv = raw.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
            let cwd = (try? Sys.readlink("/proc/\(pid)/cwd")) ?? ""
            out.append(ProcessRecord(tgid: pid, ppid: UInt32(max(0, st.ppid)), uid: st.uids.first ?? 0, exe: exe,
                                     argv: argv.last == "" ? Array(argv.dropLast()) : argv, cwd: cwd, startNs: 0))
        }
        // Parents first, so each exec record finds its parent already there.
        return out.sorted { $0.tgid < $1.tgid }
    }
}

enum DeviceInfo {
    static let clientVersion = "101.26112.0001"

    /// DeviceInfo's columns (Defender's names) for this machine.
    static func read() -> [(String, String)] {
        var u = utsname()
        uname(&u)
        func field<T>(_ v: T) -> String { withUnsafeBytes(of: v) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) } }
        var release: [String: String] = [:]
        // /etc/os-release is usually a symlink (which readFile does not follow).
        if let text = (try? Sys.readFile("/usr/lib/os-release", limit: 64 << 10)) ?? (try? Sys.readFile("/etc/os-release", limit: 64 << 10)) {
            for line in String(decoding: text, as: UTF8.self).split(separator: "\n") {
                guard let eq = line.firstIndex(of: "=") else { continue }
                var v = String(line[line.index(after: eq)...])
                if v.hasPrefix("\""), v.hasSuffix("\""), v.count >= 2 { v = String(v.dropFirst().dropLast()) }
                release[String(line[..<eq])] = v
            }
        }
        return [
            ("DeviceName", field(u.nodename)), ("OSPlatform", "Linux"), ("OSDistribution", release["ID"] ?? ""),
            ("OSVersion", release["VERSION_ID"] ?? ""), ("OSVersionInfo", release["PRETTY_NAME"] ?? ""), ("OSBuild", field(u.release)),
            ("OSArchitecture", field(u.machine)), ("ClientVersion", clientVersion), ("SensorHealthState", "Active"),
        ]
    }
}

enum RuleLoader {
    static let maxFiles = 10_000
    static let maxFileBytes = 1 << 20

    /// *.yml / *.yaml in each directory (not recursive), in name order; later
    /// directories may add rules, never replace the earlier ones.
    static func load(dirs: [String]) -> SigmaRuleSet {
        var set = SigmaRuleSet()
        var seen = 0
        for dir in dirs {
            for name in Sys.listDirectory(dir, limit: maxFiles + 1).sorted() where name.hasSuffix(".yml") || name.hasSuffix(".yaml") {
                seen += 1
                guard seen <= maxFiles else {
                    set.refuse(file: dir + "/" + name, reason: "more than \(maxFiles) rule files: the rest are not read")
                    return set
                }
                let path = dir + "/" + name
                let bytes: [UInt8]
                do throws(Errno) { bytes = try Sys.readFile(path, limit: maxFileBytes) } catch {
                    set.refuse(file: path, reason: "cannot read: \(error)")
                    continue
                }
                do throws(SigmaRefusal) {
                    set.add(try SigmaCompiler.compile(yaml: String(decoding: bytes, as: UTF8.self), file: path))
                } catch {
                    set.refuse(file: path, reason: error.reason)
                }
            }
        }
        return set
    }
}

extension DetectionPipeline {
    public func userName(_ uid: UInt32) -> String { names.user(uid) }
}
