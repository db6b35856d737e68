// The one way BPF programs get into the kernel: the collector room and the
// kernel-matrix test binary (mdatp-kernel-test) both load through here, so the
// matrix exercises exactly what ships.
import CCollectorBPF
import CMdatpABI
import Glibc
import MdatpSystem

public struct BPFLoadError: Error, CustomStringConvertible {
    public let description: String
    public init(description: String) { self.description = description }
}

/// Programs loaded (not yet attached): the caller fills the filter maps, then attaches.
public final class LoadedProbes {
    public let handle: OpaquePointer
    public let bss: mdatp_bss_view
    /// "tracepoint", "tracepoint+lsm", "fentry" or "fentry+lsm".
    public let hookFamily: String
    /// Why trampolines are not used ("" when they are).
    public let hookReason: String
    /// Syscall tracepoints this kernel lacks (comma-separated).
    public let skipped: String
    public private(set) var attached = 0
    public private(set) var createdFlagCalibrated = false

    init(handle: OpaquePointer) {
        self.handle = handle
        bss = mdatp_bpf_bss(handle)
        hookFamily = String(cString: mdatp_bpf_hook_family(handle))
        hookReason = String(cString: mdatp_bpf_hook_reason(handle))
        skipped = String(cString: mdatp_bpf_skipped(handle))
    }

    public func addSuiteProcess(_ tgid: UInt32) { _ = mdatp_bpf_suite_add(handle, tgid) }

    /// Attaches every loaded program, then learns FMODE_CREATED (see calibrateCreatedFlag).
    public func attach(calibrationDir: String) throws(BPFLoadError) {
        var err = [CChar](repeating: 0, count: 512)
        if mdatp_bpf_attach(handle, &err, err.count) != 0 { throw BPFLoadError(description: String(cString: err)) }
        attached = Int(mdatp_bpf_attached_count(handle))
        createdFlagCalibrated = CollectorRoom.calibrateCreatedFlag(bss, dir: calibrationDir)
    }
}

public enum BPFLoader {
    public static let tracefs = "/sys/kernel/tracing"

    /// Syscall tracepoints need tracefs (libbpf reads their ids there).
    public static func mountTracefs() throws(BPFLoadError) {
        guard !Sys.exists(tracefs + "/events/syscalls") else { return }
        do throws(Errno) { try Sys.mount(source: "tracefs", target: tracefs, type: "tracefs") } catch {
            throw BPFLoadError(description: "tracefs is not mounted and mounting it failed: \(error)")
        }
    }

    /// Opens and loads the programs this kernel can take. `trampolines: false`
    /// keeps to the tracepoint family; `object` (tests only) is another build
    /// of the same BPF object to load instead of the embedded one.
    public static func load(processRingBytes: Int, activityRingBytes: Int, trampolines: Bool = true,
                            object: [UInt8]? = nil) throws(BPFLoadError) -> LoadedProbes {
        var rlim = rlimit(rlim_cur: rlim_t.max, rlim_max: rlim_t.max)
        _ = setrlimit(__rlimit_resource_t(8), &rlim) // RLIMIT_MEMLOCK: older kernels charge BPF maps to it
        var err = [CChar](repeating: 0, count: 512)
        let choice = trampolines ? MDATP_HOOKS_AUTO : MDATP_HOOKS_TRACEPOINT
        let opened = (object ?? []).withUnsafeBytes {
            mdatp_bpf_open_with(choice, object == nil ? nil : $0.baseAddress, $0.count, UInt32(processRingBytes), UInt32(activityRingBytes),
                                tracefs + "/events", &err, err.count)
        }
        guard let bpf = opened else { throw BPFLoadError(description: String(cString: err)) }
        if mdatp_bpf_load(bpf, &err, err.count) != 0 {
            let why = String(cString: err)
            mdatp_bpf_close(bpf)
            throw BPFLoadError(description: why)
        }
        return LoadedProbes(handle: bpf)
    }
}
