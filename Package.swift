// swift-tools-version:6.0
// mdatp: an open Linux endpoint protection suite. See README.md and docs/ARCHITECTURE.md.
//
// Dependency rules: shared modules never import a room; only Collector links
// libbpf; the sensor rooms use Glibc/FoundationEssentials only (no NIO);
// each executable imports only its own room.
import PackageDescription

let package = Package(
    name: "mdatp",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "mdatp", targets: ["mdatp"]),
        .executable(name: "mdatp-watchdog", targets: ["mdatp-watchdog"]),
        .executable(name: "mdatp-collector", targets: ["mdatp-collector"]),
        .executable(name: "mdatp-edr", targets: ["mdatp-edr"]),
        .executable(name: "mdatp-scanner", targets: ["mdatp-scanner"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // C: headers and the few shims Swift cannot express.
        .target(name: "CMdatpABI", path: "Sources/CMdatpABI"),
        .target(
            name: "CMdatpLinux", path: "Sources/CMdatpLinux",
            linkerSettings: [.linkedLibrary("seccomp")]),
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite"),
        .target(
            name: "CCollectorBPF", dependencies: ["CMdatpABI"], path: "Sources/CCollectorBPF",
            linkerSettings: [.linkedLibrary("bpf"), .linkedLibrary("elf"), .linkedLibrary("z")]),

        // Shared layers.
        .target(name: "MdatpSystem", dependencies: ["CMdatpLinux"]),
        .target(name: "MdatpRing", dependencies: ["MdatpSystem", "CMdatpLinux"]),
        .target(name: "MdatpWire", dependencies: ["MdatpSystem"]),
        .target(name: "MdatpEvents", dependencies: ["CMdatpABI"]),
        .target(name: "MdatpJSON"),
        .target(name: "MdatpConfig", dependencies: ["MdatpJSON"]),
        .target(name: "MdatpRoom", dependencies: ["MdatpSystem", "MdatpWire", "MdatpConfig", "MdatpRing"]),
        .target(name: "MdatpSQLite", dependencies: ["CSQLite"]),
        .target(name: "CCrypto", path: "Sources/CCrypto", linkerSettings: [.linkedLibrary("crypto"), .linkedLibrary("zstd"), .linkedLibrary("z")]),
        .systemLibrary(name: "CArchive", path: "Sources/CArchive"),
        .target(name: "CYara", path: "Sources/CYara", linkerSettings: [.linkedLibrary("yara")]),
        .target(name: "CHyperscan", path: "Sources/CHyperscan", linkerSettings: [.linkedLibrary("hs")]),
        .target(name: "ScanEngine", dependencies: ["CCrypto", "CArchive", "CYara", "CHyperscan", "MdatpJSON"]),
        // Detection logic of the EDR: YAML, Sigma, built-in behaviours (pure, testable without root).
        .target(name: "Detection", dependencies: ["CHyperscan", "MdatpJSON"]),

        // Rooms: one module each, opening with Room.swift.
        .target(name: "Collector", dependencies: ["MdatpRoom", "MdatpRing", "CCollectorBPF", "CMdatpABI"]),
        .target(name: "EDR", dependencies: ["MdatpRoom", "MdatpRing", "MdatpEvents", "MdatpJSON", "MdatpSQLite", "CSQLite", "Detection", "CCrypto", "MdatpWire"]),
        .target(name: "Scanner", dependencies: ["MdatpRoom", "MdatpRing", "MdatpEvents", "MdatpJSON", "MdatpSQLite", "ScanEngine", "CSQLite"]),
        .target(name: "Watchdog", dependencies: ["MdatpRoom", "MdatpRing", "MdatpJSON"]),
        .target(
            name: "MdatpCLI",
            dependencies: ["MdatpConfig", "MdatpSystem", "MdatpJSON", .product(name: "ArgumentParser", package: "swift-argument-parser")]),

        // Executables: a few lines each.
        .executableTarget(name: "mdatp", dependencies: ["MdatpCLI"]),
        .executableTarget(name: "mdatp-watchdog", dependencies: ["Watchdog"]),
        .executableTarget(name: "mdatp-collector", dependencies: ["Collector"]),
        .executableTarget(name: "mdatp-edr", dependencies: ["EDR"]),
        .executableTarget(name: "mdatp-scanner", dependencies: ["Scanner"]),
        // Benchmarks (make bench); not installed.
        // The sensor's BPF event checks, on the host (KernelTests) and in the kernel matrix (make test-kernels).
        .target(name: "CKernelTest", path: "Sources/CKernelTest"),
        .executableTarget(name: "mdatp-kernel-test", dependencies: ["Collector", "MdatpEvents", "MdatpSystem", "CMdatpABI", "CCollectorBPF", "CKernelTest", "EDR", "Detection", "MdatpJSON"]),
        .executableTarget(name: "mdatp-bench", dependencies: ["MdatpRing", "MdatpSystem", "ScanEngine", "EDR", "Detection", "MdatpEvents"]),

        .testTarget(name: "MdatpRingTests", dependencies: ["MdatpRing"]),
        .testTarget(name: "MdatpEventsTests", dependencies: ["MdatpEvents", "CMdatpABI"]),
        .testTarget(name: "MdatpConfigTests", dependencies: ["MdatpConfig"]),
        .testTarget(name: "WatchdogTests", dependencies: ["Watchdog", "MdatpRoom", "MdatpWire"]),
        .testTarget(name: "EDRTests", dependencies: ["EDR", "MdatpEvents", "MdatpJSON"]),
        .testTarget(name: "ScanEngineTests", dependencies: ["ScanEngine"]),
        .testTarget(name: "DetectionTests", dependencies: ["Detection", "MdatpJSON"]),
        .testTarget(name: "ScannerTests", dependencies: ["Scanner", "ScanEngine"]),
        .testTarget(name: "CollectorTests", dependencies: ["Collector", "CMdatpABI"]),
        .testTarget(name: "KernelTests"),
        .testTarget(name: "IntegrationTests", dependencies: ["MdatpSystem", "MdatpConfig", "MdatpRoom", "MdatpJSON"]),
    ],
    swiftLanguageModes: [.v5]
)
