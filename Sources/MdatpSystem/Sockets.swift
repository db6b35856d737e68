// Unix sockets: the watchdog's channels to its rooms (SOCK_SEQPACKET pairs,
// one message per send, descriptors by SCM_RIGHTS) and the CLI socket.
import CMdatpLinux
import Glibc

public struct PeerCredentials: Equatable, Sendable {
    public let pid: UInt32
    public let uid: UInt32
    public let gid: UInt32
}

extension Sys {
    /// socketpair(2) AF_UNIX SOCK_SEQPACKET, close-on-exec.
    public static func seqpacketPair() throws(Errno) -> (Int32, Int32) {
        var fds: [Int32] = [0, 0]
        _ = try check(Glibc.socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds), "socketpair")
        return (fds[0], fds[1])
    }

    /// sendmsg(2) of one message with at most one descriptor. `nowait`: EAGAIN
    /// instead of waiting when the peer's queue is full.
    public static func sendMessage(_ sock: Int32, _ bytes: [UInt8], fd: Int32 = -1, nowait: Bool = false) throws(Errno) {
        let rc = bytes.withUnsafeBytes { mdatp_send_with_fd(sock, $0.baseAddress, $0.count, fd, nowait ? 1 : 0) }
        _ = try checkNeg(rc, "sendmsg")
    }

    /// recvmsg(2) of one message (at most `capacity` bytes) and at most one descriptor.
    /// Returns nil at end of stream.
    public static func receiveMessage(_ sock: Int32, capacity: Int) throws(Errno) -> (bytes: [UInt8], fd: Int32)? {
        var buf = [UInt8](repeating: 0, count: capacity)
        var fd: Int32 = -1
        while true {
            let rc = buf.withUnsafeMutableBytes { mdatp_recv_with_fd(sock, $0.baseAddress, $0.count, &fd) }
            if rc == -Int(EINTR) { continue }
            let n = try checkNeg(rc, "recvmsg")
            if n == 0 && fd < 0 { return nil }
            return (Array(buf[0..<n]), fd)
        }
    }

    /// SO_PEERCRED of a connected Unix socket.
    public static func peerCredentials(_ sock: Int32) throws(Errno) -> PeerCredentials {
        var pid: UInt32 = 0, uid: UInt32 = 0, gid: UInt32 = 0
        _ = try checkNeg(Int(mdatp_peer_cred(sock, &pid, &uid, &gid)), "getsockopt(SO_PEERCRED)")
        return PeerCredentials(pid: pid, uid: uid, gid: gid)
    }

    private static func unixAddress(_ path: String) throws(Errno) -> sockaddr_un {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        if bytes.count >= MemoryLayout.size(ofValue: addr.sun_path) { throw Errno(ENAMETOOLONG, "socket path \(path)") }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        return addr
    }

    /// A listening SOCK_STREAM Unix socket at `path` (replacing a stale one), with `mode`.
    public static func listenUnix(_ path: String, mode: mode_t, backlog: Int32 = 16) throws(Errno) -> Int32 {
        let fd = try check(Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0), "socket")
        do {
            try unlinkIfPresent(path)
            var addr = try unixAddress(path)
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            _ = try check(rc, "bind \(path)")
            try chmod(path, mode)
            _ = try check(Glibc.listen(fd, backlog), "listen")
            return fd
        } catch {
            close(fd)
            throw error
        }
    }

    /// accept4(2); nil when nothing is pending.
    public static func accept(_ fd: Int32) throws(Errno) -> Int32? {
        let c = mdatp_accept4(fd, Int32(SOCK_CLOEXEC.rawValue))
        if c < 0 {
            if -c == EAGAIN || -c == EWOULDBLOCK || -c == EINTR { return nil }
            throw Errno(-c, "accept")
        }
        return c
    }

    /// A connected SOCK_STREAM Unix socket to `path`.
    public static func connectUnix(_ path: String) throws(Errno) -> Int32 {
        let fd = try check(Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0), "socket")
        var addr = try unixAddress(path)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if rc < 0 {
            let e = Errno(errno, "connect \(path)")
            close(fd)
            throw e
        }
        return fd
    }

    /// SO_RCVTIMEO / SO_SNDTIMEO on a socket.
    public static func setTimeouts(_ fd: Int32, seconds: Int) {
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        _ = Glibc.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        _ = Glibc.setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// shutdown(SHUT_WR): tells a stream peer the request is complete.
    /// Sends what fits now and never waits (MSG_DONTWAIT): a reader that stalls
    /// loses the message, the sender does not stall. True when all of it went.
    @discardableResult
    public static func sendNow(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    public static func shutdownWrite(_ fd: Int32) {
        _ = Glibc.shutdown(fd, Int32(SHUT_WR))
    }
}
