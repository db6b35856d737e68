// The sensor's BPF event checks on this machine's kernel: the same binary and
// checks the kernel matrix runs inside each guest (make test-kernels), so the
// host proves the path its kernel allows (here: the tracepoint family and the
// SIGKILL exec block) and the guests prove fentry and the BPF LSM.
import Foundation
import XCTest

final class KernelEventTests: XCTestCase {
    var binary: String {
        (ProcessInfo.processInfo.environment["MDATP_BIN_DIR"] ?? ".build/debug") + "/mdatp-kernel-test"
    }

    func needRoot() throws {
        guard getuid() != 0 else { return }
        if ProcessInfo.processInfo.environment["CI"] == "true" {
            XCTFail("kernel event tests need root and BPF, and CI=true: they must run, not skip")
        }
        throw XCTSkip("kernel event tests need root (they load BPF programs): run `sudo make test`")
    }

    func run(_ args: [String]) throws -> (code: Int32, lines: [String]) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init))
    }

    /// Every event family, with every field, through the collector's own loader.
    func testEveryEventFamilyOnThisKernel() throws {
        try needRoot()
        let (code, lines) = try run([])
        let results = lines.filter { $0.hasPrefix("PASS ") || $0.hasPrefix("FAIL ") }
        for line in lines where line.hasPrefix("FAIL ") { XCTFail(line) }
        XCTAssertEqual(code, 0, lines.joined(separator: "\n"))
        XCTAssertGreaterThanOrEqual(results.filter { $0.hasPrefix("PASS ") }.count, 14, lines.joined(separator: "\n"))
        let hooks = lines.first { $0.hasPrefix("INFO kernel ") } ?? ""
        // This machine kind refuses trampolines: the loader must have noticed and
        // taken the tracepoint family (a kernel that allows them takes fentry).
        let refused = hooks.contains("fentry: Operation not permitted")
        XCTAssertTrue(!refused || hooks.contains("hooks tracepoint"), hooks)
        XCTAssertTrue(lines.contains { $0.hasPrefix("PASS exec_block_") }, lines.joined(separator: "\n"))
    }

    /// The tracepoint family on request, whatever the kernel allows.
    func testTheTracepointFamilyCanBeForced() throws {
        try needRoot()
        let (code, lines) = try run(["--hooks", "tracepoint", "--expect-hooks", "tracepoint"])
        for line in lines where line.hasPrefix("FAIL ") { XCTFail(line) }
        XCTAssertEqual(code, 0, lines.joined(separator: "\n"))
        XCTAssertTrue(lines.contains("PASS exec_block_sigkill_before_first_instruction"), lines.joined(separator: "\n"))
    }

    /// A build of the object reading a field no kernel has must not load.
    func testABrokenCORERelocationFailsTheLoad() throws {
        try needRoot()
        let object = FileManager.default.currentDirectoryPath + "/bpf/.output/mdatp-core-break.bpf.o"
        guard FileManager.default.fileExists(atPath: object) else {
            return XCTFail("\(object) is missing: `make test` builds it")
        }
        let (code, lines) = try run(["--object", object])
        XCTAssertEqual(code, 1)
        XCTAssertTrue(lines.contains { $0.hasPrefix("FAIL load: ") }, lines.joined(separator: "\n"))
        XCTAssertTrue(lines.contains { $0.contains("failed to resolve CO-RE relocation") }, lines.joined(separator: "\n"))
    }
}
