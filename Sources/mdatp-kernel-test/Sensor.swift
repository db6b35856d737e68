// The sensor under test: the collector's programs loaded by the collector's
// loader (BPFLoader), records decoded by the consumers' decoder (MdatpEvents).
import CCollectorBPF
import Collector
import Glibc
import MdatpEvents

final class Sensor {
    let probes: LoadedProbes
    private(set) var events: [KernelEvent] = []
    private(set) var undecodable: [String] = []
    /// Bounded: a check looks only at what happened since its own start.
    static let maxEvents = 200_000

    init(trampolines: Bool, object: [UInt8]?, workDir: String) throws(BPFLoadError) {
        try BPFLoader.mountTracefs()
        probes = try BPFLoader.load(processRingBytes: 4 << 20, activityRingBytes: 16 << 20, trampolines: trampolines, object: object)
        try probes.attach(calibrationDir: workDir)
        if mdatp_bpf_rings_open(probes.handle, onRecord, Unmanaged.passUnretained(self).toOpaque()) != 0 {
            throw BPFLoadError(description: "cannot open the kernel rings")
        }
    }

    fileprivate func take(_ data: UnsafeRawPointer, _ size: Int) {
        do throws(DecodeError) {
            let ev = try EventDecoder.decode(UnsafeRawBufferPointer(start: data, count: size))
            if events.count < Sensor.maxEvents { events.append(ev) }
        } catch {
            if undecodable.count < 16 { undecodable.append(error.description) }
        }
    }

    /// Takes what the rings hold, then forgets everything seen so far.
    func reset() {
        _ = mdatp_bpf_rings_consume(probes.handle)
        events.removeAll(keepingCapacity: true)
    }

    /// The first event since the last reset that matches, waiting up to `seconds`
    /// (emulated guests are slow; the wait ends as soon as it is there).
    func wait(seconds: Double = 15, _ match: (KernelEvent) -> Bool) -> KernelEvent? {
        let deadline = now() + seconds
        var scanned = 0
        while true {
            _ = mdatp_bpf_rings_poll(probes.handle, 20)
            while scanned < events.count {
                if match(events[scanned]) { return events[scanned] }
                scanned += 1
            }
            if now() > deadline { return nil }
        }
    }

    /// Collects for a while and returns every match (for "must not appear" checks).
    func all(seconds: Double, _ match: (KernelEvent) -> Bool) -> [KernelEvent] {
        let deadline = now() + seconds
        while now() < deadline { _ = mdatp_bpf_rings_poll(probes.handle, 20) }
        return events.filter(match)
    }

    private func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

private let onRecord: mdatp_record_fn = { ctx, data, size, _ in
    Unmanaged<Sensor>.fromOpaque(ctx!).takeUnretainedValue().take(data!, size)
    return 0
}
