// mdatp-bench ring [--messages N] [--size BYTES] [--runs K]
// Ring hop: one producer thread -> one consumer thread over the memfd ring the
// rooms use, against a SOCK_SEQPACKET socketpair hop (what a message-passing
// design would use) measured in the same run. Prints medians and the ratio.
import Glibc
import MdatpRing
import MdatpSystem

final class HopContext {
    let messages: Int
    let size: Int
    var consumer: RingConsumer?
    var socket: Int32 = -1
    var received = 0
    init(messages: Int, size: Int) {
        self.messages = messages
        self.size = size
    }
}

func ringHop(messages: Int, size: Int) throws -> Double {
    let d = try RingFiles.create(name: "bench", capacity: 1 << 22)
    defer { [d.data, d.dataReadOnly, d.cursor, d.wake].forEach(Sys.close) }
    let producer = try RingFiles.mapProducer(data: d.data, cursor: d.cursor, wake: d.wake)
    let ctx = HopContext(messages: messages, size: size)
    ctx.consumer = try RingFiles.mapConsumer(dataReadOnly: d.dataReadOnly, cursor: d.cursor, wake: d.wake)
    var thread = pthread_t()
    let start = Sys.monotonicSeconds()
    pthread_create(&thread, nil, { raw in
        let c = Unmanaged<HopContext>.fromOpaque(raw!).takeUnretainedValue()
        var sum = 0
        while c.received < c.messages {
            let n = c.consumer!.poll { _, p in sum &+= Int(p[0]) }
            c.received += n
            if n == 0 { _ = c.consumer!.wait(timeoutMs: 10) }
        }
        return nil
    }, Unmanaged.passUnretained(ctx).toOpaque())
    let payload = [UInt8](repeating: 7, count: size)
    var sent = 0
    payload.withUnsafeBytes { p in
        while sent < messages {
            // A full ring is back-pressure here, so every message is delivered and timed.
            if producer.push(p) { sent += 1 } else { producer.flushWakeup(); sched_yield() }
            if sent & 63 == 0 { producer.flushWakeup() }
        }
    }
    producer.flushWakeup()
    pthread_join(thread, nil)
    let elapsed = Sys.monotonicSeconds() - start
    if producer.counters.dropped != UInt64(producer.counters.nextSeq) - UInt64(messages) { fatalError("accounting") }
    return Double(messages) / elapsed
}

func socketHop(messages: Int, size: Int) throws -> Double {
    let (a, b) = try Sys.seqpacketPair()
    defer { Sys.close(a); Sys.close(b) }
    let ctx = HopContext(messages: messages, size: size)
    ctx.socket = b
    var thread = pthread_t()
    let start = Sys.monotonicSeconds()
    pthread_create(&thread, nil, { raw in
        let c = Unmanaged<HopContext>.fromOpaque(raw!).takeUnretainedValue()
        var buf = [UInt8](repeating: 0, count: 65536)
        while c.received < c.messages {
            let n = buf.withUnsafeMutableBytes { recv(c.socket, $0.baseAddress, $0.count, 0) }
            if n > 0 { c.received += 1 }
        }
        return nil
    }, Unmanaged.passUnretained(ctx).toOpaque())
    let payload = [UInt8](repeating: 7, count: size)
    payload.withUnsafeBytes { p in
        for _ in 0..<messages { _ = send(a, p.baseAddress, p.count, 0) }
    }
    pthread_join(thread, nil)
    return Double(messages) / (Sys.monotonicSeconds() - start)
}

func median(_ v: [Double]) -> Double { v.sorted()[v.count / 2] }
func fixed1(_ d: Double) -> String { String(Double(Int(d * 10)) / 10) }

let args = CommandLine.arguments
func opt(_ name: String, _ d: Int) -> Int {
    if let i = args.firstIndex(of: "--" + name), i + 1 < args.count, let v = Int(args[i + 1]) { return v }
    return d
}
switch args.count > 1 ? args[1] : "" {
case "ring": ringBench()
case "scan": scanBench(Array(args.dropFirst(2)))
case "edr": edrBench(Array(args.dropFirst(2)))
default:
    print("usage: mdatp-bench ring [--messages N] [--size BYTES] [--runs K]")
    print("       mdatp-bench scan --definitions DIR (--list FILE | PATH...) [--threads N] [--archives] [--show]")
    print("       mdatp-bench edr [--rules 0,200,2000] [--events N] [--runs K]")
    exit(64)
}

func ringBench() {
    let runs = opt("runs", 5)
    for size in args.contains("--size") ? [opt("size", 200)] : [64, 200, 1024] {
        let messages = opt("messages", 2_000_000)
        var ring: [Double] = [], sock: [Double] = []
        for _ in 0..<runs {
            sock.append(try! socketHop(messages: messages, size: size))
            ring.append(try! ringHop(messages: messages, size: size))
        }
        let r = median(ring), s = median(sock)
        print("ring hop \(size) B: \(Int(r)) msg/s median of \(runs) (runs: \(ring.map { Int($0) })); socketpair baseline \(Int(s)) msg/s (runs: \(sock.map { Int($0) })); ratio ring/socketpair \(fixed1(r / s))x; \(Int(r * Double(size) / 1048576)) MiB/s")
    }
}
