// The status dump: one JSON file written to status.json.new and renamed into
// place, on SIGUSR1 and every statusIntervalSeconds. `mdatp diagnostic status`
// and `mdatp health` read it without talking to root.
import Glibc
import MdatpJSON
import MdatpRing
import MdatpRoom
import MdatpSystem
import MdatpWire

extension Watchdog {
    func statusJSON() -> JSON {
        let now = Sys.monotonicSeconds()
        var roomList: [JSON] = []
        var ringList: [JSON] = []
        for r in rooms {
            var fields: [(String, JSON)] = [
                ("name", .string(r.manifest.name)),
                ("executable", .string(r.manifest.executable)),
                ("state", .string(r.supervision.state.name)),
                ("user", .string(r.manifest.runsAs.rawValue)),
                ("restarts", JSON(r.supervision.restarts)),
                ("last_exit", .string(r.supervision.lastExit)),
            ]
            if case .failed(let reason) = r.supervision.state { fields.append(("failure", .string(reason))) }
            if let pid = r.supervision.state.pid {
                fields.append(("pid", JSON(Int(pid))))
                fields.append(("uptime_seconds", .number(((now - r.startedAt) * 10).rounded() / 10)))
                fields.append(("heartbeat_age_seconds", .number(((now - r.lastHeartbeatAt) * 10).rounded() / 10)))
                if let st = try? ProcessStatus.read(pid: pid) {
                    fields += [
                        ("uid", JSON(Int(st.uids.first ?? 0))),
                        ("cap_effective", .string(hex16(st.capEffective))),
                        ("cap_permitted", .string(hex16(st.capPermitted))),
                        ("cap_bounding", .string(hex16(st.capBounding))),
                        ("no_new_privs", JSON(st.noNewPrivs)),
                        ("seccomp_mode", JSON(st.seccomp)),
                        ("rss_kib", JSON(st.rssKiB)),
                    ]
                }
                if let cpu = processCPUSeconds(pid: pid) { fields.append(("cpu_seconds", .number((cpu * 100).rounded() / 100))) }
            }
            if let h = r.heartbeat {
                let named = zip(r.manifest.heartbeatCounters, h.counters).map { ($0.0, JSON($0.1)) }
                fields.append(("counters", .object(named)))
            }
            roomList.append(.object(fields))
            if let ring = r.ring {
                let c = ring.counters
                ringList.append(.object([
                    ("consumer", .string(ring.consumer)),
                    ("capacity_bytes", JSON(c.capacity)),
                    ("fill_bytes", JSON(c.fill)),
                    ("events_in", JSON(c.produced)),
                    ("events_out", JSON(c.consumed)),
                    ("drops", JSON(c.dropped)),
                    ("consumer_lag", JSON(c.lag)),
                    ("consumer_seen_gaps", JSON(c.lost)),
                    ("cursor_resets", JSON(c.cursorResets)),
                ]))
            }
        }
        var kernel: [(String, JSON)] = []
        var sensor: [(String, JSON)] = [("supplementary_events_subsystem", .string("ebpf")), ("exec_gate", .string(execGateState)),
                                        ("exec_gate_forwarded", JSON(Int(execGate?.forwarded ?? 0))),
                                        ("exec_gate_failed_open", JSON(Int(execGate?.failedOpen ?? 0))),
                                        ("exec_gate_waiting", JSON(execGate?.waiting ?? 0))]
        if let info = collector.collectorInfo {
            sensor += [("hook_family", .string(info.hookFamily)), ("programs_attached", JSON(Int(info.programsAttached))),
                       ("created_flag_calibrated", .bool(info.createdFlagCalibrated)),
                       ("not_on_this_kernel", .array(info.skipped.split(separator: ",").map { .string(String($0)) }))]
        }
        if let h = collector.heartbeat {
            let c = h.counters
            let classes = ["process", "file", "network", "sensitive"]
            kernel = [
                ("emitted", .object(classes.enumerated().map { ($0.element, JSON(c[2 + $0.offset])) })),
                ("drops", .object(classes.enumerated().map { ($0.element, JSON(c[6 + $0.offset])) })),
                ("total_drops", JSON(c[6] + c[7] + c[8] + c[9])),
                ("filtered_suite", JSON(c[10])),
                ("filtered_excluded", JSON(c[11])),
            ]
        }
        return .object([
            ("app_version", .string(mdatpVersion)),
            ("written_at_unix", .number(Double(Int(Sys.realtimeSeconds())))),
            ("watchdog", .object([
                ("pid", JSON(Int(Sys.getpid()))),
                ("uptime_seconds", .number(((now - startedAt) * 10).rounded() / 10)),
                ("state", .string(shuttingDown ? "stopping" : "running")),
                ("config_error", configError.map { .string($0) } ?? .null),
                ("enforcement_level", .string(config.enforcementLevel)),
                ("managed_keys", .array(config.managedKeys.sorted().map { .string($0) })),
            ])),
            ("sensor", .object(sensor)),
            ("rooms", .array(roomList)),
            ("rings", .array(ringList)),
            ("kernel", .object(kernel)),
        ])
    }

    func writeStatus() {
        lastStatusAt = Sys.monotonicSeconds()
        let text = statusJSON().serialized(pretty: true) + "\n"
        do throws(Errno) { try Sys.writeFileAtomically(paths.statusFile, Array(text.utf8), mode: 0o644) } catch {
            log("cannot write status: \(error)")
        }
    }
}

func hex16(_ v: UInt64) -> String {
    let h = String(v, radix: 16)
    return String(repeating: "0", count: max(0, 16 - h.count)) + h
}
