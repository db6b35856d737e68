// Antivirus (epp) exclusions with Defender's rules:
//   path       an exact file, or a folder (everything below it); `?` is one
//              character, `*` inside the path one directory level, a final `*`
//              everything below its parent;
//   extension  the file name ends with it (".log");
//   process    a file written or run by a process with this name (or full path).
// The scan of an excluded file is skipped; on-demand scans may ignore them.

public struct ScanExclusions: Sendable, Equatable {
    public var paths: [String] = []      // folders end with "/"
    public var extensions: [String] = []
    public var processes: [String] = []  // names, or absolute paths

    public init(paths: [String] = [], extensions: [String] = [], processes: [String] = []) {
        self.paths = paths
        self.extensions = extensions
        self.processes = processes
    }

    public var isEmpty: Bool { paths.isEmpty && extensions.isEmpty && processes.isEmpty }

    public func excludes(path: String) -> Bool {
        for ext in extensions where path.hasSuffix(ext) { return true }
        for p in paths where ScanExclusions.matches(pattern: p, path: path) { return true }
        return false
    }

    /// A process by its name (comm, as the kernel truncates it to 15 bytes) or its executable.
    public func excludes(processName: String, executable: String?) -> Bool {
        for p in processes {
            if p.hasPrefix("/") {
                if let exe = executable, exe == p { return true }
            } else if p == processName || (processName.utf8.count == 15 && p.hasPrefix(processName)) {
                return true
            }
        }
        return false
    }

    static func matches(pattern: String, path: String) -> Bool {
        let pat = Array(pattern.utf8), s = Array(path.utf8)
        let hasWildcards = pat.contains(0x2a) || pat.contains(0x3f)
        if !hasWildcards {
            if pattern.hasSuffix("/") { return path.hasPrefix(pattern) }
            return path == pattern || path.hasPrefix(pattern + "/")
        }
        // A final "*" (after "/"): everything below the parent.
        if pat.count >= 2, pat[pat.count - 1] == 0x2a, pat[pat.count - 2] == 0x2f {
            return glob(Array(pat.dropLast()), s, prefixOnly: true)
        }
        return glob(pat, s, prefixOnly: pattern.hasSuffix("/"))
    }

    /// `*` matches within one path component, `?` one non-slash byte. With
    /// prefixOnly the pattern may match a leading part ending at a "/".
    static func glob(_ p: [UInt8], _ s: [UInt8], prefixOnly: Bool) -> Bool {
        func go(_ i: Int, _ j: Int) -> Bool {
            if i == p.count {
                if j == s.count { return true }
                return prefixOnly && (p.last == 0x2f || s[j] == 0x2f)
            }
            switch p[i] {
            case 0x2a:
                var k = j
                while true {
                    if go(i + 1, k) { return true }
                    if k == s.count || s[k] == 0x2f { return false }
                    k += 1
                }
            case 0x3f:
                return j < s.count && s[j] != 0x2f && go(i + 1, j + 1)
            default:
                return j < s.count && s[j] == p[i] && go(i + 1, j + 1)
            }
        }
        return go(0, 0)
    }
}
