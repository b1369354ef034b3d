// swift-tools-version: 6.0
import PackageDescription

// Dependencies come from the machine's package mirror, pinned to listed versions.
let argumentParser: Target.Dependency = .product(name: "ArgumentParser", package: "swift-argument-parser")
let logging: Target.Dependency = .product(name: "Logging", package: "swift-log")
let inMemoryLogging: Target.Dependency = .product(name: "InMemoryLogging", package: "swift-log")

let package = Package(
    name: "payhook",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "payhook", targets: ["payhook"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // C libraries, found through pkg-config; `make run`/`make test` install the apt packages.
        .systemLibrary(
            name: "CMicroHTTPD",
            pkgConfig: "libmicrohttpd",
            providers: [.apt(["libmicrohttpd-dev"])]
        ),
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),

        // What Swift's Glibc module does not export (O_TMPFILE, pipe2, wait-status macros), from the C headers.
        .target(name: "CPayhookShim"),

        // Pure Swift: TOML, form decoding, signature strings, config model, events. No C, no sockets.
        .target(name: "PayhookCore"),
        // The only Swift code that touches OpenSSL.
        .target(name: "PayhookCrypto", dependencies: ["COpenSSL"]),
        // A value behind an adaptive pthread mutex, for the locks taken on every request.
        .target(name: "PayhookLock"),
        // libmicrohttpd listener with the limits an internet-facing server needs.
        .target(name: "PayhookHTTP", dependencies: ["CMicroHTTPD", "PayhookLock", logging]),
        // The storage seam: the protocols the router and the queue commands talk to. No implementation.
        .target(name: "PayhookStore"),
        // The spool directory's on-disk format, one definition for its writer and its consumers: layout, event ids,
        // what a valid event file is, quarantine into corrupt/, and the POSIX calls both make.
        .target(name: "PayhookSpoolFormat", dependencies: ["CPayhookShim", "PayhookCore"]),
        // The durable queue directory (tmp/ → new/ → cur/), dedupe ledger and recovery. Knows no source.
        .target(name: "PayhookSpool", dependencies: ["CPayhookShim", "PayhookLock", "PayhookSpoolFormat", "PayhookStore", logging]),
        // One module per callback source: request in, verified event (or a refusal) out.
        .target(name: "PayhookUnified", dependencies: ["PayhookCore", "PayhookCrypto"]),
        .target(name: "PayhookWeChat", dependencies: ["PayhookCore", "PayhookCrypto"]),
        // The consumer side: claim, acknowledge, retry and dead-letter events in a spool.
        .target(name: "PayhookQueue", dependencies: ["CPayhookShim", "PayhookSpoolFormat", "PayhookStore", logging]),
        // Wires config, sources, spool and listener together; the HTTP answers live here.
        .target(
            name: "PayhookServer",
            dependencies: ["PayhookCore", "PayhookCrypto", "PayhookHTTP", "PayhookLock", "PayhookSpool", "PayhookStore", "PayhookUnified", "PayhookWeChat", logging]
        ),
        .executableTarget(
            name: "payhook",
            dependencies: ["PayhookServer", "PayhookCore", "PayhookQueue", "PayhookUnified", "PayhookWeChat", "PayhookCrypto", argumentParser, logging]
        ),

        .testTarget(name: "PayhookCoreTests", dependencies: ["PayhookCore", "PayhookCrypto", "PayhookUnified", "PayhookWeChat"]),
        .testTarget(name: "PayhookQueueTests", dependencies: ["PayhookQueue", "PayhookStore", logging]),
        // The format's own tests, and the writer and the queue judging the same files alike.
        .testTarget(
            name: "PayhookSpoolFormatTests",
            dependencies: ["PayhookSpoolFormat", "PayhookCore", "PayhookSpool", "PayhookQueue", logging, inMemoryLogging]
        ),
        .testTarget(name: "PayhookHTTPTests", dependencies: ["PayhookHTTP", logging]),
        .testTarget(name: "PayhookSpoolTests", dependencies: ["PayhookSpool", logging]),
        .testTarget(
            name: "PayhookServerTests",
            dependencies: ["PayhookServer", "PayhookCore", "PayhookCrypto", "PayhookSpool", "PayhookStore", "PayhookHTTP", "payhook", logging, inMemoryLogging]
        ),
    ]
)
