// The one thin, typed layer every syscall of the suite goes through.
// Each wrapper names its C function, retries EINTR where that is the only
// sensible answer, and turns failure into a typed `Errno`.
import CMdatpLinux
import Glibc

/// A failed system call: the errno and the call that returned it.
public struct Errno: Error, Equatable, CustomStringConvertible {
    public let code: Int32
    public let call: String
    public init(_ code: Int32, _ call: String) {
        self.code = code
        self.call = call
    }
    public var description: String { "\(call): \(String(cString: strerror(code))) (errno \(code))" }
}

/// stat(2) outside `Sys`, whose own `stat` would shadow it.
private func cStat(_ path: String, _ st: inout FileStat) -> Int32 { stat(path, &st) }

@inline(__always)
func check(_ rc: Int32, _ call: String) throws(Errno) -> Int32 {
    if rc < 0 { throw Errno(errno, call) }
    return rc
}

/// C shims return -errno instead of setting errno.
@inline(__always)
func checkNeg(_ rc: Int, _ call: String) throws(Errno) -> Int {
    if rc < 0 { throw Errno(Int32(-rc), call) }
    return rc
}

public typealias FileStat = Glibc.stat

/// Linux constants Swift's Glibc module does not carry.
public enum LinuxConst {
    public static let MFD_CLOEXEC: UInt32 = 0x1
    public static let MFD_ALLOW_SEALING: UInt32 = 0x2
    public static let EFD_CLOEXEC: Int32 = 0o2000000
    public static let EFD_NONBLOCK: Int32 = 0o4000
    public static let PR_SET_PDEATHSIG: Int32 = 1
    public static let PR_SET_NAME: Int32 = 15
    public static let PR_SET_NO_NEW_PRIVS: Int32 = 38
    public static let F_ADD_SEALS: Int32 = 1033
    public static let F_SEAL_SEAL: Int32 = 1
    public static let F_SEAL_SHRINK: Int32 = 2
    public static let F_SEAL_GROW: Int32 = 4
    public static let O_NOATIME: Int32 = 0o1000000
}

public enum Sys {
    // MARK: descriptors

    /// open(2), always O_CLOEXEC.
    public static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0) throws(Errno) -> Int32 {
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno != EINTR { throw Errno(errno, "open \(path)") }
        }
    }

    /// openat(2), always O_CLOEXEC.
    public static func openat(_ dirfd: Int32, _ path: String, _ flags: Int32, _ mode: mode_t = 0) throws(Errno) -> Int32 {
        while true {
            let fd = Glibc.openat(dirfd, path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno != EINTR { throw Errno(errno, "openat \(path)") }
        }
    }

    /// close(2). EINTR still closed the descriptor on Linux.
    public static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    /// dup2(2).
    public static func dup2(_ fd: Int32, _ to: Int32) throws(Errno) {
        _ = try check(Glibc.dup2(fd, to), "dup2")
    }

    /// read(2); returns 0 at end of file.
    public static func read(_ fd: Int32, _ buf: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        while true {
            let n = Glibc.read(fd, buf.baseAddress, buf.count)
            if n >= 0 { return n }
            if errno != EINTR { throw Errno(errno, "read") }
        }
    }

    /// write(2), looping until all is written.
    public static func writeAll(_ fd: Int32, _ buf: UnsafeRawBufferPointer) throws(Errno) {
        var off = 0
        while off < buf.count {
            let n = Glibc.write(fd, buf.baseAddress! + off, buf.count - off)
            if n < 0 {
                if errno == EINTR { continue }
                throw Errno(errno, "write")
            }
            off += n
        }
    }

    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws(Errno) {
        var failure: Errno?
        bytes.withUnsafeBytes { (b: UnsafeRawBufferPointer) -> Void in
            do throws(Errno) { try writeAll(fd, b) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Reads a whole small file (at most `limit` bytes, more is an error).
    public static func readFile(_ path: String, limit: Int = 1 << 20) throws(Errno) -> [UInt8] {
        let fd = try open(path, O_RDONLY | O_NOFOLLOW)
        defer { close(fd) }
        return try readAll(fd, limit: limit, what: path)
    }

    public static func readAll(_ fd: Int32, limit: Int, what: String = "fd") throws(Errno) -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { b in Glibc.read(fd, b.baseAddress, b.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Errno(errno, "read \(what)")
            }
            if n == 0 { return out }
            out.append(contentsOf: chunk[0..<n])
            if out.count > limit { throw Errno(EFBIG, "read \(what): larger than \(limit) bytes") }
        }
    }

    /// Writes a file atomically: `path.new`, fsync-free rename into place.
    public static func writeFileAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws(Errno) {
        let tmp = path + ".new"
        let fd = try open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, mode)
        do {
            try writeAll(fd, bytes)
            _ = try check(fchmod(fd, mode), "fchmod \(tmp)")
        } catch {
            close(fd)
            throw error
        }
        close(fd)
        _ = try check(Glibc.rename(tmp, path), "rename \(tmp)")
    }

    /// open(2) of a path given as raw bytes (it may not be UTF-8); -1 and errno on failure.
    public static func openBytes(_ path: [UInt8], _ flags: Int32) -> (fd: Int32, errno: Int32) {
        let fd = (path + [0]).withUnsafeBufferPointer { p in
            p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) { Glibc.open($0, flags | O_CLOEXEC) }
        }
        return (fd, fd < 0 ? errno : 0)
    }

    /// openat2(2) refusing every symlink on the way (RESOLVE_NO_SYMLINKS); falls
    /// back to openat(O_NOFOLLOW) where openat2 is missing (kernels before 5.6).
    public static func openNoSymlinks(_ dirfd: Int32, _ path: [UInt8], _ flags: Int32, _ mode: mode_t = 0) throws(Errno) -> Int32 {
        let rc = (path + [0]).withUnsafeBufferPointer { p in
            p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) { mdatp_openat_no_symlinks(dirfd, $0, flags, UInt32(mode)) }
        }
        if rc == -ENOSYS {
            let fd = (path + [0]).withUnsafeBufferPointer { p in
                p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) { Glibc.openat(dirfd, $0, flags | O_NOFOLLOW | O_CLOEXEC, mode) }
            }
            if fd < 0 { throw Errno(errno, "openat") }
            return fd
        }
        return Int32(try checkNeg(Int(rc), "openat2"))
    }

    /// fstatat(2) without following a final symlink.
    public static func statAt(_ dirfd: Int32, _ name: [UInt8]) throws(Errno) -> FileStat {
        var st = FileStat()
        let rc = (name + [0]).withUnsafeBufferPointer { p in
            p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) { Glibc.fstatat(dirfd, $0, &st, AT_SYMLINK_NOFOLLOW) }
        }
        _ = try check(rc, "fstatat")
        return st
    }

    /// unlinkat(2) of a file.
    public static func unlinkAt(_ dirfd: Int32, _ name: [UInt8]) throws(Errno) {
        let rc = (name + [0]).withUnsafeBufferPointer { p in
            p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) { unlinkat(dirfd, $0, 0) }
        }
        _ = try check(rc, "unlinkat")
    }

    /// fsync(2).
    public static func fsync(_ fd: Int32) throws(Errno) { _ = try check(Glibc.fsync(fd), "fsync") }

    /// fchown(2) and fchmod(2) of an open file.
    public static func setOwnerAndMode(_ fd: Int32, uid: uid_t, gid: gid_t, mode: mode_t) throws(Errno) {
        _ = try check(fchown(fd, uid, gid), "fchown")
        _ = try check(fchmod(fd, mode), "fchmod")
    }

    /// ISO 8601 UTC with milliseconds, e.g. 2026-11-29T10:59:50.731Z.
    public static func isoTime(unixNs: Int64) -> String {
        var t = time_t(unixNs / 1_000_000_000)
        var tm = Glibc.tm()
        gmtime_r(&t, &tm)
        func p(_ v: Int32, _ w: Int) -> String { let s = String(v); return String(repeating: "0", count: max(0, w - s.count)) + s }
        let ms = Int32((unixNs / 1_000_000) % 1000)
        return "\(p(tm.tm_year + 1900, 4))-\(p(tm.tm_mon + 1, 2))-\(p(tm.tm_mday, 2))T\(p(tm.tm_hour, 2)):\(p(tm.tm_min, 2)):\(p(tm.tm_sec, 2)).\(p(ms, 3))Z"
    }

    /// O_NONBLOCK on a descriptor (the watchdog's channel ends: it must never wait on a room).
    public static func setNonBlocking(_ fd: Int32) {
        let flags = Glibc.fcntl(fd, F_GETFL)
        if flags >= 0 { _ = Glibc.fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
    }

    /// getrandom(2) bytes.
    public static func randomBytes(_ n: Int) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: n)
        _ = b.withUnsafeMutableBytes { mdatp_getrandom($0.baseAddress, n) }
        return b
    }

    /// The names in a directory (no "." or "..").
    public static func listDirectory(_ path: String) -> [String] { listDirectory(path, limit: .max) }

    /// At most `limit` names (a directory of a million entries is not read whole).
    public static func listDirectory(_ path: String, limit: Int) -> [String] {
        guard let d = opendir(path) else { return [] }
        defer { closedir(d) }
        var out: [String] = []
        while out.count < limit, let e = readdir(d) {
            let n = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if n != "." && n != ".." { out.append(n) }
        }
        return out
    }

    /// fstatfs(2): the filesystem's magic number.
    public static func filesystemType(_ fd: Int32) throws(Errno) -> Int {
        try checkNeg(mdatp_fstatfs_type(fd), "fstatfs")
    }

    /// ftruncate(2).
    public static func ftruncate(_ fd: Int32, _ size: Int) throws(Errno) {
        _ = try check(Glibc.ftruncate(fd, off_t(size)), "ftruncate")
    }

    /// fcntl(2) with an int argument.
    public static func fcntl(_ fd: Int32, _ cmd: Int32, _ arg: Int32) throws(Errno) -> Int32 {
        Int32(try checkNeg(Int(mdatp_fcntl_int(fd, cmd, arg)), "fcntl"))
    }

    /// fstat(2).
    public static func fstat(_ fd: Int32) throws(Errno) -> FileStat {
        var st = FileStat()
        _ = try check(Glibc.fstat(fd, &st), "fstat")
        return st
    }

    /// fstatat(2) relative to a directory descriptor, never following a final link.
    public static func fstatat(_ dirfd: Int32, _ name: [UInt8]) throws(Errno) -> FileStat {
        var st = FileStat()
        let rc = (name + [0]).withUnsafeBufferPointer { p in
            p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) { Glibc.fstatat(dirfd, $0, &st, AT_SYMLINK_NOFOLLOW) }
        }
        _ = try check(rc, "fstatat")
        return st
    }

    /// A fanotify group for exec permission events, not yet marked (needs CAP_SYS_ADMIN).
    public static func fanotifyExecGroup() throws(Errno) -> Int32 {
        Int32(try checkNeg(Int(mdatp_fanotify_exec_gate()), "fanotify_init"))
    }

    /// Marks the filesystems holding `mounts` (one mark per filesystem); the
    /// marked mounts, and why the others were not.
    public static func fanotifyMarkExec(_ fd: Int32, mounts: [String]) -> (marked: [String], failed: [String]) {
        var marked: [String] = [], failed: [String] = []
        for m in mounts {
            let rc = mdatp_fanotify_mark_exec(fd, m)
            if rc == 0 { marked.append(m) } else { failed.append("\(m): \(Errno(-rc, "mark"))") }
        }
        return (marked, failed)
    }

    /// Execs of this file are never reported to the group (the suite's own programs).
    public static func fanotifyIgnoreExec(_ fd: Int32, path: String) throws(Errno) {
        let rc = mdatp_fanotify_ignore_exec(fd, path)
        if rc < 0 { throw Errno(-rc, "fanotify ignore \(path)") }
    }

    /// Removes every filesystem mark (execs pass ungated).
    public static func fanotifyUnmarkAll(_ fd: Int32) {
        _ = mdatp_fanotify_flush_filesystems(fd)
    }

    public struct FanotifyEvent: Equatable, Sendable {
        public let mask: UInt64
        public let fd: Int32
        public let pid: Int32
        public var isExecPermission: Bool { mask & MDATP_FAN_OPEN_EXEC_PERM != 0 }
    }

    /// The next batch of events (empty when none is waiting on a non-blocking group).
    public static func fanotifyRead(_ fd: Int32) throws(Errno) -> [FanotifyEvent] {
        var buf = [mdatp_fanotify_event](repeating: mdatp_fanotify_event(), count: 64)
        let n = mdatp_fanotify_read(fd, &buf, buf.count)
        if n == -Int(EAGAIN) { return [] }
        if n < 0 { throw Errno(Int32(-n), "fanotify read") }
        return buf.prefix(Int(n)).map { FanotifyEvent(mask: $0.mask, fd: $0.fd, pid: $0.pid) }
    }

    /// Allows or denies a permission event.
    public static func fanotifyRespond(_ fd: Int32, event: Int32, allow: Bool) throws(Errno) {
        let rc = mdatp_fanotify_respond(fd, event, allow ? 1 : 0)
        if rc < 0 { throw Errno(-rc, "fanotify response") }
    }

    /// The inode's generation (FS_IOC_GETVERSION), nil where the filesystem keeps none (tmpfs, …).
    public static func inodeGeneration(_ fd: Int32) -> UInt32? {
        var g: UInt32 = 0
        return mdatp_inode_generation(fd, &g) == 0 ? g : nil
    }

    /// glibc's st_dev encoding -> the kernel's internal dev_t (major << 20 | minor),
    /// the form kernel events and BPF maps carry.
    public static func kernelDev(_ d: UInt64) -> UInt32 {
        let major = UInt32(((d >> 8) & 0xfff) | ((d >> 32) & ~UInt64(0xfff)))
        let minor = UInt32((d & 0xff) | ((d >> 12) & ~UInt64(0xff)))
        return major << 20 | minor
    }

    /// readlink(2), at most 4 KiB.
    public static func readlink(_ path: String) throws(Errno) -> String {
        var buf = [CChar](repeating: 0, count: 4097)
        let n = Glibc.readlink(path, &buf, 4096)
        if n < 0 { throw Errno(errno, "readlink \(path)") }
        return String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// lstat(2).
    public static func lstat(_ path: String) throws(Errno) -> FileStat {
        var st = FileStat()
        _ = try check(Glibc.lstat(path, &st), "lstat \(path)")
        return st
    }

    /// stat(2).
    public static func stat(_ path: String) throws(Errno) -> FileStat {
        var st = FileStat()
        _ = try check(cStat(path, &st), "stat \(path)")
        return st
    }

    /// mkdir(2); an existing directory is fine.
    public static func mkdirExisting(_ path: String, _ mode: mode_t) throws(Errno) {
        if Glibc.mkdir(path, mode) < 0 && errno != EEXIST { throw Errno(errno, "mkdir \(path)") }
    }

    /// Creates every missing component of `path`.
    public static func mkdirs(_ path: String, _ mode: mode_t) throws(Errno) {
        var prefix = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            prefix += "/" + part
            try mkdirExisting(prefix, mode)
        }
    }

    /// chown(2) without following a final symlink (lchown).
    public static func lchown(_ path: String, _ uid: uid_t, _ gid: gid_t) throws(Errno) {
        _ = try check(Glibc.lchown(path, uid, gid), "lchown \(path)")
    }

    /// chmod(2).
    public static func chmod(_ path: String, _ mode: mode_t) throws(Errno) {
        _ = try check(Glibc.chmod(path, mode), "chmod \(path)")
    }

    /// unlink(2); a missing file is fine.
    public static func unlinkIfPresent(_ path: String) throws(Errno) {
        if Glibc.unlink(path) < 0 && errno != ENOENT { throw Errno(errno, "unlink \(path)") }
    }

    /// access(2) F_OK.
    public static func exists(_ path: String) -> Bool {
        Glibc.access(path, F_OK) == 0
    }

    // MARK: memory

    /// memfd_create(2) with MFD_CLOEXEC | MFD_ALLOW_SEALING.
    public static func memfdCreate(_ name: String) throws(Errno) -> Int32 {
        Int32(try checkNeg(Int(mdatp_memfd_create(name, LinuxConst.MFD_CLOEXEC | LinuxConst.MFD_ALLOW_SEALING)), "memfd_create"))
    }

    /// mmap(2) of a shared file mapping.
    public static func mmapShared(_ fd: Int32, length: Int, offset: Int, writable: Bool) throws(Errno) -> UnsafeMutableRawPointer {
        let prot = writable ? (PROT_READ | PROT_WRITE) : PROT_READ
        let p = Glibc.mmap(nil, length, prot, MAP_SHARED, fd, off_t(offset))
        if p == MAP_FAILED || p == nil { throw Errno(errno, "mmap") }
        return p!
    }

    /// munmap(2).
    public static func munmap(_ p: UnsafeMutableRawPointer, _ length: Int) {
        _ = Glibc.munmap(p, length)
    }

    // MARK: events and waiting

    /// eventfd(2), non-blocking, close-on-exec.
    public static func eventfd() throws(Errno) -> Int32 {
        Int32(try checkNeg(Int(mdatp_eventfd(0, LinuxConst.EFD_CLOEXEC | LinuxConst.EFD_NONBLOCK)), "eventfd"))
    }

    /// Adds 1 to an eventfd counter (wakes its reader).
    public static func eventfdSignal(_ fd: Int32) {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { Glibc.write(fd, $0.baseAddress, 8) }
    }

    /// Reads (and so clears) an eventfd counter; 0 when it was not signalled.
    @discardableResult
    public static func eventfdDrain(_ fd: Int32) -> UInt64 {
        var v: UInt64 = 0
        let n = withUnsafeMutableBytes(of: &v) { Glibc.read(fd, $0.baseAddress, 8) }
        return n == 8 ? v : 0
    }

    /// poll(2) on descriptors for readability; returns which became ready.
    public static func pollReadable(_ fds: [Int32], timeoutMs: Int32) throws(Errno) -> [Bool] {
        var pfds = fds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        let rc = Glibc.poll(&pfds, nfds_t(pfds.count), timeoutMs)
        if rc < 0 {
            if errno == EINTR { return fds.map { _ in false } }
            throw Errno(errno, "poll")
        }
        return pfds.map { $0.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 }
    }

    // MARK: processes and credentials

    public static func getpid() -> pid_t { Glibc.getpid() }
    public static func getuid() -> uid_t { Glibc.getuid() }

    /// setgroups(2) to the empty list.
    public static func clearSupplementaryGroups() throws(Errno) {
        _ = try check(Glibc.setgroups(0, nil), "setgroups")
    }

    /// setresgid(2), then checks that all three ids changed.
    public static func setresgid(_ gid: gid_t) throws(Errno) {
        _ = try checkNeg(Int(mdatp_setresgid(gid)), "setresgid")
        var r: UInt32 = 0, e: UInt32 = 0, s: UInt32 = 0
        _ = mdatp_getresgid(&r, &e, &s)
        if r != gid || e != gid || s != gid { throw Errno(EPERM, "setresgid did not take") }
    }

    /// setresuid(2), then checks that all three ids changed.
    public static func setresuid(_ uid: uid_t) throws(Errno) {
        _ = try checkNeg(Int(mdatp_setresuid(uid)), "setresuid")
        var r: UInt32 = 0, e: UInt32 = 0, s: UInt32 = 0
        _ = mdatp_getresuid(&r, &e, &s)
        if r != uid || e != uid || s != uid { throw Errno(EPERM, "setresuid did not take") }
    }

    /// prctl(PR_SET_NO_NEW_PRIVS).
    public static func setNoNewPrivs() throws(Errno) {
        _ = try checkNeg(Int(mdatp_prctl(LinuxConst.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)), "prctl(NO_NEW_PRIVS)")
    }

    /// prctl(PR_SET_PDEATHSIG): a room dies with its watchdog.
    public static func setParentDeathSignal(_ sig: Int32) throws(Errno) {
        _ = try checkNeg(Int(mdatp_prctl(LinuxConst.PR_SET_PDEATHSIG, UInt(sig), 0, 0, 0)), "prctl(PDEATHSIG)")
    }

    /// prctl(PR_SET_NAME): the name `ps -o comm` and /proc/PID/status show.
    public static func setThreadName(_ name: String) {
        _ = name.withCString { mdatp_prctl(LinuxConst.PR_SET_NAME, UInt(bitPattern: $0), 0, 0, 0) }
    }

    /// setpriority(PRIO_PROCESS, self, n).
    public static func setNiceness(_ n: Int32) throws(Errno) {
        _ = try check(setpriority(__priority_which_t(0), 0, n), "setpriority")
    }

    /// Drops every capability, bounding and ambient sets included.
    public static func dropAllCapabilities() throws(Errno) {
        _ = try checkNeg(Int(mdatp_drop_all_capabilities()), "capset(drop all)")
    }

    /// Trims the bounding set to `caps` and clears the ambient set (needs CAP_SETPCAP).
    public static func dropBounding(keeping caps: [Int32]) throws(Errno) {
        let mask = caps.reduce(UInt64(0)) { $0 | (1 << UInt64($1)) }
        _ = try checkNeg(Int(mdatp_drop_bounding_except(mask)), "prctl(CAPBSET_DROP)")
    }

    /// Keeps only `caps` (capability numbers) in permitted/effective and bounding.
    public static func keepCapabilities(_ caps: [Int32]) throws(Errno) {
        let rc = caps.withUnsafeBufferPointer { mdatp_keep_capabilities($0.baseAddress, $0.count) }
        _ = try checkNeg(Int(rc), "capset(keep)")
    }

    /// Landlock restrict_self; returns the ABI version applied.
    public static func landlockRestrict(readOnly: [String], readWrite: [String]) throws(Errno) -> Int {
        let rc = withCStrings(readOnly) { ro in
            withCStrings(readWrite) { rw in mdatp_landlock_restrict(ro, readOnly.count, rw, readWrite.count) }
        }
        return try checkNeg(Int(rc), "landlock")
    }

    /// Installs a seccomp allow-list (libseccomp); kills on anything else unless logOnly.
    public static func seccompAllow(_ names: [String], logOnly: Bool) throws(Errno) {
        var bad = 0
        let rc = withCStrings(names) { mdatp_seccomp_allow($0, names.count, logOnly ? 1 : 0, &bad) }
        if rc < 0 {
            let which = bad < names.count ? names[bad] : "?"
            throw Errno(Int32(-rc), "seccomp (at \(which))")
        }
    }

    /// kill(2).
    public static func kill(_ pid: pid_t, _ sig: Int32) throws(Errno) {
        _ = try check(Glibc.kill(pid, sig), "kill")
    }

    public enum ChildStatus: Equatable, Sendable {
        case exited(Int32)
        case signaled(Int32)
    }

    /// waitpid(2) with WNOHANG for any child; nil when none has changed.
    public static func reapAny() -> (pid_t, ChildStatus)? {
        var status: Int32 = 0
        let pid = Glibc.waitpid(-1, &status, WNOHANG)
        if pid <= 0 { return nil }
        let sig = status & 0x7f
        if sig == 0 { return (pid, .exited((status >> 8) & 0xff)) }
        return (pid, .signaled(sig))
    }

    /// posix_spawn(3) of `path` with `argv`, the given descriptors placed at
    /// fixed numbers (source fd -> target fd), everything else closed by
    /// O_CLOEXEC. The child gets an empty signal mask and default handlers.
    public static func spawn(_ path: String, argv: [String], env: [String], fds: [(Int32, Int32)]) throws(Errno) -> pid_t {
        // Forked, not posix_spawn'd: the caller never waits on the child's exec (see mdatp_spawn_nowait).
        let src = fds.map(\.0), dst = fds.map(\.1)
        let pid = withCStrings(argv) { cargv in
            withCStrings(env) { cenv in
                mdatp_spawn_nowait(path, UnsafePointer(cargv).withMemoryRebound(to: UnsafeMutablePointer<CChar>?.self, capacity: argv.count + 1) { $0 },
                                   UnsafePointer(cenv).withMemoryRebound(to: UnsafeMutablePointer<CChar>?.self, capacity: env.count + 1) { $0 },
                                   src, dst, fds.count)
            }
        }
        if pid < 0 { throw Errno(-pid, "fork \(path)") }
        return pid
    }

    /// clock_gettime(2) in nanoseconds.
    public static func clockNs(_ clock: clockid_t) -> UInt64 {
        var ts = timespec()
        clock_gettime(clock, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    public static func monotonicSeconds() -> Double { Double(clockNs(CLOCK_MONOTONIC)) / 1e9 }
    public static func realtimeSeconds() -> Double { Double(clockNs(CLOCK_REALTIME)) / 1e9 }

    /// The local time zone's offset from UTC at `unix`, in seconds (localtime_r).
    public static func utcOffset(at unix: Int64) -> Int64 {
        var t = time_t(unix)
        var tm = Glibc.tm()
        guard localtime_r(&t, &tm) != nil else { return 0 }
        return Int64(tm.tm_gmtoff)
    }

    /// nanosleep(2).
    public static func sleep(seconds: Double) {
        var ts = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - Double(Int(seconds))) * 1e9))
        var rest = timespec()
        while nanosleep(&ts, &rest) < 0 && errno == EINTR { ts = rest }
    }

    /// mount(2).
    public static func mount(source: String, target: String, type: String, flags: UInt = 0) throws(Errno) {
        _ = try check(Glibc.mount(source, target, type, flags, nil), "mount \(type) on \(target)")
    }

    /// personality(0xffffffff) through seccomp: forbidden in every room.
    public static func forbiddenSyscallProbe() -> Int {
        Int(mdatp_forbidden_syscall_probe())
    }
}

/// Runs `body` with a NULL-terminated C array of the strings.
public func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    var cstrs: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    cstrs.append(nil)
    defer { for p in cstrs where p != nil { free(p) } }
    return cstrs.withUnsafeBufferPointer { buf in
        buf.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buf.count) { body($0) }
    }
}

extension Sys {
    /// Blocks `signals` and returns a signalfd delivering them.
    public static func signalFD(_ signals: [Int32]) throws(Errno) -> Int32 {
        let rc = signals.withUnsafeBufferPointer { mdatp_signalfd($0.baseAddress, $0.count) }
        return Int32(try checkNeg(Int(rc), "signalfd"))
    }

    /// One pending signal from a signalfd, or nil.
    public static func readSignal(_ fd: Int32) -> Int32? {
        let s = mdatp_signalfd_read(fd)
        return s > 0 ? s : nil
    }
}
