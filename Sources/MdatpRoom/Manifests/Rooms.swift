// Every room the watchdog runs, in start order (the collector first, so the
// rooms forked after it inherit the kernel's "this is the suite" mark).
public enum Rooms {
    public static var all: [RoomManifest] { [collector, edr, scanner] }
    /// Rooms that consume events, each with its own ring.
    public static var consumers: [RoomManifest] { all.filter { $0.eventClasses != 0 } }
}
