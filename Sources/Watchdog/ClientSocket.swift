// The CLI socket. Anyone may connect; each request names a verb from a closed
// table, and SO_PEERCRED decides: reading status is open to all, reading
// events needs root or membership of the mdatp group, changing anything
// needs root. Event queries go to the EDR room with the client's socket.
import Glibc
import MdatpJSON
import MdatpSystem
import MdatpWire

enum ClientVerb: String {
    case status
    case events
    case threats
    case scan
    case quarantine
    case definitions
    case config
    case rtp_stats
    case scan_list
    case scan_cancel
    case reload
    case selftest
    case alerts
    case rules
    case hunt

    enum Access { case anyone, readers, root }

    var access: Access {
        switch self {
        case .status: return .anyone
        case .events, .threats, .rtp_stats, .scan_list, .alerts, .rules, .hunt: return .readers
        case .reload, .selftest, .scan, .quarantine, .definitions, .config, .scan_cancel: return .root
        }
    }
}

extension Watchdog {
    func serveClients() {
        // Bounded work per wake-up so a flood of connections cannot starve supervision.
        for _ in 0..<16 {
            guard let c = try? Sys.accept(listener) else { return }
            var forwarded = false
            serve(c, forwarded: &forwarded)
            if !forwarded { Sys.close(c) }
        }
    }

    func reply(_ fd: Int32, _ json: JSON) {
        try? Sys.writeAll(fd, Array((json.serialized() + "\n").utf8))
    }

    func refuse(_ fd: Int32, _ why: String, code: String = "refused") {
        reply(fd, .object([("error", .string(why)), ("code", .string(code))]))
    }

    func serve(_ fd: Int32, forwarded: inout Bool) {
        Sys.setTimeouts(fd, seconds: 1)
        guard let peer = try? Sys.peerCredentials(fd) else { return }
        // One request: at most 4 KiB, ended by a newline or the client's shutdown,
        // within half a second in all (a slow client cannot hold the supervisor).
        var request: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4097)
        let deadline = Sys.monotonicSeconds() + 0.5
        while request.count <= Message.maxQueryBytes {
            let left = Int32((deadline - Sys.monotonicSeconds()) * 1000)
            guard left > 0, let ready = try? Sys.pollReadable([fd], timeoutMs: left), ready[0] else { break }
            let n = (try? buf.withUnsafeMutableBytes { b throws(Errno) in try Sys.read(fd, b) }) ?? 0
            if n <= 0 { break }
            request += buf[0..<n]
            if request.last == 0x0a { break }
        }
        guard request.count <= Message.maxQueryBytes else { return refuse(fd, "request larger than 4096 bytes", code: "usage") }
        var limits = JSONLimits()
        limits.maxBytes = Message.maxQueryBytes
        limits.maxDepth = 4
        guard let json = try? JSON.parse(request, limits: limits), let verbName = json["verb"]?.string else {
            return refuse(fd, "request must be a JSON object with a verb", code: "usage")
        }
        guard let verb = ClientVerb(rawValue: verbName) else { return refuse(fd, "unknown verb \(verbName)", code: "usage") }
        guard allowed(verb, peer) else {
            return refuse(fd, "\(verb.rawValue) needs \(verb.access == .root ? "root" : "root or the mdatp group")")
        }
        switch verb {
        case .status:
            reply(fd, statusJSON())
        case .events, .threats, .scan, .rtp_stats, .scan_list, .scan_cancel, .alerts, .rules, .hunt:
            // Event content, alerts, rules and hunting are the EDR's, threats and scans
            // the scanner's: the request goes there with the client's socket, and the room answers.
            let roomName = [.events, .alerts, .rules, .hunt].contains(verb) ? "edr" : "scanner"
            guard let room = rooms.first(where: { $0.manifest.name == roomName }), case .running = room.supervision.state,
                  let ch = room.channel else {
                return refuse(fd, "the \(roomName) room is not running", code: "unavailable")
            }
            do throws(Errno) {
                // Never waiting: a room that is not reading its control channel must not
                // stall the supervisor (which that room may itself be waiting on).
                try ch.send(.query(uid: peer.uid, gid: peer.gid, request: request), descriptor: fd, nowait: true)
                forwarded = false // our copy is closed by the caller; the room holds its own
            } catch {
                refuse(fd, error.code == EAGAIN ? "the \(roomName) room is busy: try again" : "cannot reach the \(roomName) room: \(error)",
                       code: "unavailable")
            }
        case .quarantine:
            // Root's own store: answered here, no event content involved.
            let id = json["id"]?.string ?? ""
            switch json["action"]?.string {
            case "list":
                reply(fd, .object([("quarantined", .array(quarantine.list().map(\.json)))]))
            case "restore":
                do throws(Errno) {
                    let e = try quarantine.restore(id: id)
                    log("restored \(e.originalPath) from quarantine")
                    reply(fd, .object([("ok", .bool(true)), ("restored", e.json)]))
                } catch { refuse(fd, "restore: \(error)") }
            case "remove":
                do throws(Errno) {
                    try quarantine.remove(id: id)
                    reply(fd, .object([("ok", .bool(true)), ("removed", .string(id))]))
                } catch { refuse(fd, "remove: \(error)") }
            default:
                refuse(fd, "quarantine action must be list, restore or remove", code: "usage")
            }
        case .definitions:
            switch json["action"]?.string {
            case "update": forwarded = startUpdate(client: fd, source: json["source"]?.string)
            case "restore": restoreDefinitions(client: fd)
            case "import": forwarded = startImport(client: fd, path: json["path"]?.string)
            case "imports": listImports(client: fd)
            case "remove-import": removeImport(client: fd, name: json["name"]?.string)
            default: refuse(fd, "definitions action must be update, restore, import, imports or remove-import", code: "usage")
            }
        case .config:
            do throws(ConfigEditError) {
                reply(fd, .object([("ok", .bool(true)), ("message", .string(try editConfig(json)))]))
            } catch {
                if case .usage = error { refuse(fd, error.description, code: "usage") } else { refuse(fd, error.description) }
            }
        case .reload:
            reload()
            reply(fd, .object([("ok", .bool(configError == nil)), ("config_error", configError.map { .string($0) } ?? .null)]))
        case .selftest:
            guard config.sensor.allowSandboxSelftest else {
                return refuse(fd, "sandbox self-test is off (sensor.allowSandboxSelftest in the config)")
            }
            guard let name = json["room"]?.string, let slot = rooms.first(where: { $0.manifest.name == name }),
                  slot.manifest.receives.contains(.selftestForbidden), let ch = slot.channel else {
                return refuse(fd, "no such running room", code: "usage")
            }
            do throws(Errno) {
                try ch.send(.selftestForbidden, nowait: true)
                reply(fd, .object([("ok", .bool(true)), ("room", .string(name)), ("pid", JSON(Int(slot.supervision.state.pid ?? 0)))]))
            } catch {
                refuse(fd, "cannot reach the room: \(error)", code: "unavailable")
            }
        }
    }

    func allowed(_ verb: ClientVerb, _ peer: PeerCredentials) -> Bool {
        switch verb.access {
        case .anyone: return true
        case .root: return peer.uid == 0
        case .readers:
            if peer.uid == 0 || peer.gid == account.gid { return true }
            // Supplementary membership of the mdatp group.
            guard let g = Sys.groupMembers("mdatp") else { return false }
            return g.members.contains { Sys.lookupUser($0)?.uid == peer.uid }
        }
    }
}
