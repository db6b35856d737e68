// Creating rings (watchdog) and mapping them (producer and consumer rooms).
import Glibc
import MdatpSystem

/// The three descriptors of one ring.
public struct RingDescriptors: Sendable {
    public var data: Int32     // read-write: watchdog and producer
    public var dataReadOnly: Int32 // O_RDONLY reopen: the consumer's
    public var cursor: Int32
    public var wake: Int32     // eventfd: producer -> consumer
    public let capacity: Int
}

public enum RingFiles {
    /// Creates a ring: two memfds sealed against resize, an eventfd, and a
    /// read-only descriptor of the data memfd for the consumer.
    public static func create(name: String, capacity: Int) throws(Errno) -> RingDescriptors {
        precondition(RingLayout.validCapacity(capacity))
        let data = try Sys.memfdCreate("mdatp-ring-\(name)")
        let cursor = try Sys.memfdCreate("mdatp-cursor-\(name)")
        try Sys.ftruncate(data, RingLayout.headerBytes + capacity)
        try Sys.ftruncate(cursor, RingLayout.cursorBytes)
        let seals = LinuxConst.F_SEAL_SHRINK | LinuxConst.F_SEAL_GROW | LinuxConst.F_SEAL_SEAL
        _ = try Sys.fcntl(data, LinuxConst.F_ADD_SEALS, seals)
        _ = try Sys.fcntl(cursor, LinuxConst.F_ADD_SEALS, seals)
        // A read-only open of the memfd: mmap(PROT_WRITE, MAP_SHARED) on it fails,
        // so the consumer cannot write the producer's pages even if it tries.
        let ro = try Sys.open("/proc/self/fd/\(data)", O_RDONLY)
        let wake = try Sys.eventfd()
        // Initialise the header so the consumer can map before the producer starts.
        let map = try Sys.mmapShared(data, length: RingLayout.headerBytes, offset: 0, writable: true)
        map.storeBytes(of: UInt32(capacity), toByteOffset: RingLayout.offCapacity, as: UInt32.self)
        map.storeBytes(of: RingLayout.version, toByteOffset: RingLayout.offVersion, as: UInt32.self)
        map.storeBytes(of: RingLayout.magic, toByteOffset: RingLayout.offMagic, as: UInt64.self)
        Sys.munmap(map, RingLayout.headerBytes)
        return RingDescriptors(data: data, dataReadOnly: ro, cursor: cursor, wake: wake, capacity: capacity)
    }

    /// Capacity from a data memfd's size, validated.
    public static func capacity(ofData fd: Int32) throws(Errno) -> Int {
        let st = try Sys.fstat(fd)
        let cap = Int(st.st_size) - RingLayout.headerBytes
        guard RingLayout.validCapacity(cap) else { throw Errno(EINVAL, "ring size \(st.st_size)") }
        return cap
    }

    /// The producer's mapping (collector).
    public static func mapProducer(data: Int32, cursor: Int32, wake: Int32) throws(Errno) -> RingProducer {
        let cap = try capacity(ofData: data)
        let d = try Sys.mmapShared(data, length: RingLayout.headerBytes + cap, offset: 0, writable: true)
        let c = try Sys.mmapShared(cursor, length: RingLayout.cursorBytes, offset: 0, writable: true)
        return RingProducer(data: d, cursor: c, capacity: cap, wakeFd: wake, initialize: false)
    }

    /// The consumer's mapping: data read-only, cursor read-write.
    public static func mapConsumer(dataReadOnly: Int32, cursor: Int32, wake: Int32) throws(Errno) -> RingConsumer {
        let cap = try capacity(ofData: dataReadOnly)
        let d = try Sys.mmapShared(dataReadOnly, length: RingLayout.headerBytes + cap, offset: 0, writable: false)
        let c = try Sys.mmapShared(cursor, length: RingLayout.cursorBytes, offset: 0, writable: true)
        guard let consumer = RingConsumer(data: UnsafeRawPointer(d), cursor: c, wakeFd: wake) else {
            throw Errno(EINVAL, "ring header invalid")
        }
        return consumer
    }

    /// A read-only view for the watchdog: both pages mapped read-only.
    public static func mapObserver(data: Int32, cursor: Int32) throws(Errno) -> (UnsafeRawPointer, UnsafeRawPointer) {
        let d = try Sys.mmapShared(data, length: RingLayout.headerBytes, offset: 0, writable: false)
        let c = try Sys.mmapShared(cursor, length: RingLayout.cursorBytes, offset: 0, writable: false)
        return (UnsafeRawPointer(d), UnsafeRawPointer(c))
    }
}
