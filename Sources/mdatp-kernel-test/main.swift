// mdatp-kernel-test: the sensor's BPF event checks, run as root on the host
// (Tests/KernelTests) and inside each kernel of the matrix (make test-kernels).
//
//   mdatp-kernel-test [--hooks auto|tracepoint] [--expect-hooks FAMILY]
//                     [--module FILE.ko] [--object FILE.bpf.o] [--work DIR]
//
// Prints "PASS name", "FAIL name: why" and "INFO ..." lines, then
// "RESULT n passed, m failed"; exits 1 when anything failed (also when the
// programs do not load). --object loads another build of the collector's
// object (the matrix's deliberately broken one) through the same loader.
import CKernelTest
import Collector
import Glibc
import MdatpSystem

setvbuf(stdout, nil, _IOLBF, 0)
let argv = CommandLine.arguments

func option(_ name: String) -> String? {
    guard let i = argv.firstIndex(of: name), i + 1 < argv.count else { return nil }
    return argv[i + 1]
}

/// The path with every link and `..` resolved (the kernel reports paths so).
func realPath(_ p: String) -> String {
    guard let r = realpath(p, nil) else { return p }
    defer { free(r) }
    return String(cString: r)
}

// Child mode: what a check needs another process to do.
if argv.count > 2 && argv[1] == "child" {
    switch argv[2] {
    case "exit":
        exit(Int32(argv[3]) ?? 0)
    case "write-and-exit": // leaves the descriptor open: the exit closes it
        let fd = open(argv[3], O_CREAT | O_WRONLY | O_TRUNC, 0o600)
        guard fd >= 0 else { exit(100 + errno) }
        _ = write(fd, "left open", 9)
        exit(0)
    case "traceme":
        let rc = mdatp_kt_traceme()
        exit(rc == 0 ? 0 : 100 - rc)
    case "setuid":
        exit(setuid(uid_t(argv[3]) ?? 65534) == 0 ? 0 : 100 + errno)
    case "mount":
        let rc = mdatp_kt_mount_tmpfs("mdatp-kt", argv[3])
        exit(rc == 0 ? 0 : 100 - rc)
    case "sleep":
        sleep(60)
        exit(0)
    case "exec":
        let args = Array(argv[3...])
        var cargs = args.map { strdup($0) } + [nil]
        var env: [UnsafeMutablePointer<CChar>?] = [nil]
        execve(argv[3], &cargs, &env)
        exit(100 + errno)
    case "insmod":
        let fd = open(argv[3], O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { exit(100 + errno) }
        let rc = mdatp_kt_finit_module(fd)
        exit(rc == 0 ? 0 : 100 - rc)
    default:
        exit(64)
    }
}

guard getuid() == 0 else {
    print("FAIL root: mdatp-kernel-test loads BPF programs and must run as root")
    exit(1)
}
let work = option("--work") ?? "/tmp/mdatp-kernel-test-\(getpid())"
do throws(Errno) { try Sys.mkdirs(work, 0o755) } catch {
    print("FAIL work directory \(work): \(error)")
    exit(1)
}
/// Every way out removes the work directory (exit() skips defer).
func finish(_ code: Int32) -> Never {
    _ = system("rm -rf '\(work)'")
    exit(code)
}

var object: [UInt8]?
if let path = option("--object") {
    do throws(Errno) { object = try Sys.readFile(path, limit: 64 << 20) } catch {
        print("FAIL object \(path): \(error)")
        finish(1)
    }
}

let sensor: Sensor
do throws(BPFLoadError) {
    sensor = try Sensor(trampolines: option("--hooks") != "tracepoint", object: object, workDir: work)
} catch {
    print("FAIL load: the collector's programs did not load: \(error)")
    print("RESULT 0 passed, 1 failed")
    finish(1)
}

var checks = KernelChecks(sensor: sensor, selfPath: realPath("/proc/self/exe"), work: realPath(work), module: option("--module"))
checks.all(expectHooks: option("--expect-hooks"))
print("RESULT \(checks.passed) passed, \(checks.failed) failed")
finish(checks.failed == 0 ? 0 : 1)
