// One end of a watchdog<->room control channel (SOCK_SEQPACKET).
import MdatpSystem

public struct Channel: Sendable {
    public let fd: Int32
    public init(fd: Int32) { self.fd = fd }

    /// `nowait`: fail with EAGAIN rather than wait on a peer that is not reading
    /// (the watchdog never waits on a room for a client's sake).
    public func send(_ m: Message, descriptor: Int32 = -1, nowait: Bool = false) throws(Errno) {
        try Sys.sendMessage(fd, m.encode(pid: UInt32(Sys.getpid())), fd: descriptor, nowait: nowait)
    }

    public enum Received {
        case message(Message, descriptor: Int32)
        case closed
        case violation(ProtocolViolation)
    }

    /// Receives one message. A descriptor that came with a violating message is closed.
    public func receive() throws(Errno) -> Received {
        guard let (bytes, fd) = try Sys.receiveMessage(self.fd, capacity: Message.maxBytes + 1) else { return .closed }
        do throws(ProtocolViolation) {
            let m = try Message.decode(bytes, hasDescriptor: fd >= 0)
            return .message(m, descriptor: fd)
        } catch {
            if fd >= 0 { Sys.close(fd) }
            return .violation(error)
        }
    }
}
