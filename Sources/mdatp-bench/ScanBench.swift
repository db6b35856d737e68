// mdatp-bench scan: the scan engine in process (ContentScanner: hashes, body
// and logical signatures on Hyperscan, YARA; archives with --archives) over a
// file list, N threads each with its own scanner. Prints one line of figures
// (load seconds, files, MiB, MiB/s, files/s, detections, peak RSS) that
// bench/scan.py sets against clamscan and yara run on the same corpus.
import Glibc
import MdatpSystem
import ScanEngine

final class ScanWork: @unchecked Sendable {
    let paths: [String]
    let definitions: Definitions
    let archives: Bool
    let show: Bool
    var next = 0
    var lock = pthread_mutex_t()
    var bytes: UInt64 = 0
    var files = 0
    var detections = 0
    var errors = 0
    var found: [(String, String)] = []

    init(paths: [String], definitions: Definitions, archives: Bool, show: Bool) {
        self.paths = paths
        self.definitions = definitions
        self.archives = archives
        self.show = show
        pthread_mutex_init(&lock, nil)
    }

    func take() -> Int? {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        guard next < paths.count else { return nil }
        next += 1
        return next - 1
    }

    func run() {
        let scanner = ContentScanner(definitions: definitions)
        var b: UInt64 = 0, f = 0, d = 0, e = 0
        var mine: [(String, String)] = []
        while let i = take() {
            let fd = open(paths[i], O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
            guard fd >= 0 else { e += 1; continue }
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { e += 1; continue }
            do throws(ScanError) {
                let r = try scanner.scan(fd: fd, size: UInt64(st.st_size), maxBytes: 1 << 31)
                var det = r.detection
                if det == nil && !r.allowed && archives {
                    det = ArchiveWalker.scanInside(fd: fd, size: UInt64(st.st_size), limits: ArchiveLimits(), scanner: scanner)
                }
                b += UInt64(st.st_size)
                f += 1
                if let det {
                    d += 1
                    if show { mine.append((paths[i], det.name)) }
                }
            } catch {
                e += 1
            }
        }
        pthread_mutex_lock(&lock)
        bytes += b; files += f; detections += d; errors += e
        found += mine
        pthread_mutex_unlock(&lock)
    }
}

func walk(_ path: String, into out: inout [String]) {
    var st = stat()
    guard lstat(path, &st) == 0 else { return }
    if st.st_mode & S_IFMT == S_IFREG { out.append(path); return }
    guard st.st_mode & S_IFMT == S_IFDIR, let d = opendir(path) else { return }
    defer { closedir(d) }
    var names: [String] = []
    while let e = readdir(d) {
        let n = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        if n != "." && n != ".." { names.append(n) }
    }
    for n in names.sorted() { walk(path + "/" + n, into: &out) }
}

func readAll(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        out += buf[0..<n]
        if out.count > Definitions.maxFileBytes { return nil }
    }
    return out
}

func peakRSSMiB() -> Double {
    Double((try? ProcessStatus.read(pid: getpid()))?.peakRSSKiB ?? 0) / 1024
}

func scanBench(_ a: [String]) {
    var defsDir = "", list = "", threads = 1, archives = false, show = false
    var roots: [String] = []
    var i = 0
    while i < a.count {
        switch a[i] {
        case "--definitions": i += 1; defsDir = a[i]
        case "--list": i += 1; list = a[i]
        case "--threads": i += 1; threads = max(1, Int(a[i]) ?? 1)
        case "--archives": archives = true
        case "--show": show = true
        case "--hs-cache": i += 1; HyperscanCache.shared = HyperscanCache(directory: a[i]) // as the scanner room does
        default: roots.append(a[i])
        }
        i += 1
    }
    var paths: [String] = []
    if !list.isEmpty, let text = readAll(list) {
        paths = String(decoding: text, as: UTF8.self).split(separator: "\n").map(String.init)
    }
    for r in roots { walk(r, into: &paths) }
    let t0 = Sys.monotonicSeconds()
    let names = Sys.listDirectory(defsDir)
    let defs: Definitions
    do throws(SignatureError) {
        defs = try Definitions.load(directory: defsDir, names: names) { readAll($0) }
    } catch {
        print("definitions refused: \(error)")
        exit(1)
    }
    let load = Sys.monotonicSeconds() - t0
    let work = ScanWork(paths: paths, definitions: defs, archives: archives, show: show)
    let t1 = Sys.monotonicSeconds()
    var tids: [pthread_t] = []
    for _ in 0..<threads {
        var t = pthread_t()
        pthread_create(&t, nil, { raw in
            Unmanaged<ScanWork>.fromOpaque(raw!).takeUnretainedValue().run()
            return nil
        }, Unmanaged.passUnretained(work).toOpaque())
        tids.append(t)
    }
    for t in tids { pthread_join(t, nil) }
    let secs = Sys.monotonicSeconds() - t1
    for (p, n) in work.found.sorted(by: { $0.0 < $1.0 }) { print("\(p): \(n) FOUND") }
    let mib = Double(work.bytes) / 1048576
    print("scan threads=\(threads) load_s=\(fixed3(load)) signatures=\(defs.signatureCount) body_patterns=\(defs.bodies.patternCount) "
          + "unsupported=\(defs.bodies.unsupportedCount) scan_s=\(fixed3(secs)) files=\(work.files) MiB=\(Int(mib)) "
          + "MiB_s=\(fixed1(mib / secs)) files_s=\(Int(Double(work.files) / secs)) detections=\(work.detections) errors=\(work.errors) "
          + "maxrss_MiB=\(fixed1(peakRSSMiB()))")
}

func fixed3(_ d: Double) -> String { String(Double(Int(d * 1000)) / 1000) }
