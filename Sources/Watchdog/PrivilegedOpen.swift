// The one privileged service the scanner gets: open a path read-only for it.
// The request is checked against a closed rule set, like OpenSSH's monitor:
// absolute path, no final symlink followed, no blocking on FIFOs, no access
// time change, regular files and directories only, never on a pseudo
// filesystem (/proc, /sys, …). Anything else is refused with an errno.
import Glibc
import MdatpRoom
import MdatpSystem
import MdatpWire

public enum PrivilegedOpen {
    /// Filesystems whose "files" are kernel state, not content.
    static let pseudoFilesystems: Set<Int> = [
        0x9fa0,       // proc
        0x62656572,   // sysfs
        0x64626720,   // debugfs
        0x74726163,   // tracefs
        0x73636673,   // securityfs
        0x27e0eb,     // cgroup
        0x63677270,   // cgroup2
        0xcafe4a11,   // bpf
        0x1cd1,       // devpts
        0x42494e4d,   // binfmt_misc
        0x6e736673,   // nsfs
        0x50495045,   // pipefs
        0x534f434b,   // sockfs
    ]

    /// 0 and a descriptor, or an errno.
    public static func open(_ path: [UInt8]) -> (status: Int32, fd: Int32) {
        guard path.first == 0x2f, !path.contains(0), path.count <= Message.maxPathBytes else { return (EINVAL, -1) }
        let flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY
        var (fd, err) = Sys.openBytes(path, flags | LinuxConst.O_NOATIME)
        if fd < 0 && err == EPERM { (fd, err) = Sys.openBytes(path, flags) } // O_NOATIME needs ownership or CAP_FOWNER
        if fd < 0 { return (err, -1) }
        let st: FileStat
        let fsType: Int
        do throws(Errno) {
            st = try Sys.fstat(fd)
            fsType = try Sys.filesystemType(fd)
        } catch {
            Sys.close(fd)
            return (error.code, -1)
        }
        let kind = st.st_mode & S_IFMT
        if kind != S_IFREG && kind != S_IFDIR {
            Sys.close(fd)
            return (EBADFD, -1)
        }
        if pseudoFilesystems.contains(fsType) {
            Sys.close(fd)
            return (EACCES, -1)
        }
        return (0, fd)
    }
}

extension Watchdog {
    /// Adds a file identity to the kernel's deny table (through the collector),
    /// unless blocking is off or the file is one of the suite's own programs.
    /// The suite's own programs are never denied nor quarantined.
    func suiteProgram(dev: UInt64, ino: UInt64) -> String? {
        let own = ["mdatp-watchdog", "mdatp"] + Rooms.all.map(\.executable)
        return own.first { exe in
            guard let st = try? Sys.stat(binDir + "/" + exe) else { return false }
            return UInt64(st.st_dev) == dev && UInt64(st.st_ino) == ino
        }
    }

    func denyExecutable(_ f: FileIdentity) -> Int32 {
        guard config.execBlockingActive else { return ENOTSUP }
        if let exe = suiteProgram(dev: f.dev, ino: f.ino) {
            log("refused to deny the suite's own \(exe)")
            return EPERM
        }
        // Kept first: a collector that is restarting gets it when it is ready.
        let gone = denyList.add(f)
        saveDenyList()
        guard case .running = collector.supervision.state, collector.channel != nil else { return EAGAIN }
        for old in gone { post(collector, .denyRemove(old)) }
        return post(collector, .denyUpdate(f)) ? 0 : EPIPE
    }

    /// One request from a room's request channel.
    func serveRequest(_ slot: RoomSlot) {
        guard let ch = slot.requests, let received = Watchdog.receiveNow(ch) else { return }
        let now = Sys.monotonicSeconds()
        switch received {
        case .message(.openForScan(let path), _) where slot.manifest.sends.contains(.openForScan):
            let (status, fd) = PrivilegedOpen.open(path)
            do throws(Errno) { try ch.send(.openResult(status: status), descriptor: fd) } catch {}
            if fd >= 0 { Sys.close(fd) }
        case .message(.quarantine(let dev, let ino, let threat, let path), _) where slot.manifest.sends.contains(.quarantine):
            let reply: Message
            do throws(Errno) {
                if let exe = suiteProgram(dev: dev, ino: ino) { throw Errno(EPERM, "quarantine of the suite's own \(exe)") }
                let id = try quarantine.quarantine(path: path, dev: dev, ino: ino, threat: String(decoding: threat, as: UTF8.self))
                log("quarantined \(String(decoding: path, as: UTF8.self)) (\(String(decoding: threat, as: UTF8.self))) as \(id)")
                reply = .quarantineResult(status: 0, id: id)
            } catch {
                log("quarantine of \(String(decoding: path, as: UTF8.self)) refused: \(error)")
                reply = .quarantineResult(status: error.code, id: "")
            }
            try? ch.send(reply)
        case .message(.denyExecutable(let f), _) where slot.manifest.sends.contains(.denyExecutable):
            try? ch.send(.denyResult(status: denyExecutable(f)))
        case .closed:
            Sys.close(ch.fd)
            slot.requests = nil
        case .violation(let v):
            feed(slot, .misbehaved(reason: v.description, now: now))
        case .message(let m, let fd):
            if fd >= 0 { Sys.close(fd) }
            feed(slot, .misbehaved(reason: "sent \(m.type) on its request channel", now: now))
        }
    }
}
