// Local configuration changes from the CLI (Defender's `mdatp config …`,
// `exclusion … add|remove`, `threat allowed …`, `threat policy set`): root
// edits the local file through the watchdog; a key the managed file sets is
// refused, the new file must pass the same validation as at start, it is
// written atomically and then reloaded. A refused change leaves the file as it was.
import Glibc
import MdatpConfig
import MdatpJSON
import MdatpSystem

enum ConfigEditError: Error, CustomStringConvertible {
    case refused(String)
    case usage(String)
    var description: String {
        switch self {
        case .refused(let s), .usage(let s): return s
        }
    }
}

extension JSON {
    /// The value at a dotted key (two levels: section.key).
    func value(at key: [String]) -> JSON? {
        var cur: JSON? = self
        for k in key { cur = cur?[k] }
        return cur
    }

    /// A copy with `value` at the dotted key (creating sections), or without it when nil.
    func setting(_ key: [String], _ value: JSON?) -> JSON {
        guard let first = key.first else { return value ?? .null }
        var members = self.members ?? []
        let rest = Array(key.dropFirst())
        let existing = members.last { $0.0 == first }?.1 ?? .object([])
        members.removeAll { $0.0 == first }
        if rest.isEmpty {
            if let value { members.append((first, value)) }
        } else {
            members.append((first, existing.setting(rest, value)))
        }
        return .object(members)
    }
}

extension Watchdog {
    func editConfig(_ request: JSON) throws(ConfigEditError) -> String {
        guard let op = request["op"]?.string, let keyText = request["key"]?.string else { throw .usage("config edit needs op and key") }
        let key = keyText.split(separator: ".").map(String.init)
        guard key.count == 2, keyText.utf8.count < 128 else { throw .usage("key must be section.name") }
        guard let value = request["value"] else { throw .usage("config edit needs a value") }

        let managed = ((try? Sys.readFile(paths.managedFile, limit: 1 << 20)).flatMap { try? JSON.parse($0) }) ?? .object([])
        let local: JSON
        if Sys.exists(paths.configFile) {
            guard let bytes = try? Sys.readFile(paths.configFile, limit: 1 << 20), let j = try? JSON.parse(bytes) else {
                throw .refused("\(paths.configFile) is unreadable; fix it first")
            }
            local = j
        } else {
            local = .object([])
        }

        let updated: JSON
        switch op {
        case "set":
            if managed.value(at: key) != nil { throw .refused("\(keyText) is set by the administrator (managed); it cannot be changed locally") }
            updated = local.setting(key, value)
        case "upsert":
            // Lists of {key, value} (threatTypeSettings): one entry per key.
            guard let k = value["key"] else { throw .usage("upsert needs a {key, value}") }
            if managed.value(at: key)?.array?.contains(where: { $0["key"] == k }) == true {
                throw .refused("\(keyText) for \(k.string ?? "") is set by the administrator (managed)")
            }
            var list = local.value(at: key)?.array ?? []
            list.removeAll { $0["key"] == k }
            list.append(value)
            updated = local.setting(key, .array(list))
        case "add", "remove":
            if keyText == "exclusionSettings.exclusions" || keyText == "antivirusEngine.exclusions" {
                let policy = managed.value(at: ["exclusionSettings", "mergePolicy"])?.string ?? managed.value(at: ["antivirusEngine", "exclusionsMergePolicy"])?.string
                if policy == "admin_only" { throw .refused("exclusions are admin_only (managed): local exclusions cannot be changed") }
            }
            var list = local.value(at: key)?.array ?? []
            if op == "add" {
                if list.contains(value) { throw .refused("already present") }
                list.append(value)
            } else {
                guard list.contains(value) else { throw .refused("not present in the local configuration") }
                list.removeAll { $0 == value }
            }
            updated = local.setting(key, .array(list))
        default:
            throw .usage("op must be set, upsert, add or remove")
        }

        // The same validation as at start, on the file as it would be.
        let text = updated.serialized(pretty: true) + "\n"
        do throws(ConfigError) {
            let parsed = try ConfigLoader.parseFile(paths.configFile, Array(text.utf8))
            _ = try ConfigLoader.merge(local: parsed, managed: try ConfigLoader.parseFile(paths.managedFile, Sys.exists(paths.managedFile) ? try? Sys.readFile(paths.managedFile, limit: 1 << 20) : nil))
        } catch {
            throw .refused("refused: \(error)")
        }
        do throws(Errno) {
            try Sys.mkdirs(paths.configDir, 0o755)
            try Sys.writeFileAtomically(paths.configFile, Array(text.utf8), mode: 0o644)
        } catch {
            throw .refused("cannot write \(paths.configFile): \(error)")
        }
        reload()
        return configError == nil ? "Configuration property updated" : "written, but the reload refused it: \(configError!)"
    }
}
