// swift-tools-version: 6.0
import PackageDescription

// Dependencies come from the machine's package mirror, pinned to listed versions.
let argumentParser: Target.Dependency = .product(name: "ArgumentParser", package: "swift-argument-parser")
let logging: Target.Dependency = .product(name: "Logging", package: "swift-log")
let inMemoryLogging: Target.Dependency = .product(name: "InMemoryLogging", package: "swift-log")
let prometheus: Target.Dependency = .product(name: "Prometheus", package: "swift-prometheus")

/// Every target states what it uses: a file imports each module whose members it uses, a module re-exports only
/// what its public API shows (`public import`), and protocol types are spelled `any`.
let strictness: [SwiftSetting] = [
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "payhook",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "payhook", targets: ["payhook"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // /metrics: swift-prometheus's collector registry (it brings swift-metrics, which it builds on).
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // C libraries, found through pkg-config; `make run`/`make test` install the apt packages.
        .systemLibrary(
            name: "CMicroHTTPD",
            pkgConfig: "libmicrohttpd",
            providers: [.apt(["libmicrohttpd-dev", "libgnutls28-dev"])]
        ),
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),

        // What Swift's Glibc module does not export (O_TMPFILE, pipe2, wait-status macros, posix_spawn closefrom), from the C headers.
        .target(name: "CPayhookShim"),

        // A TOML 1.0 reader that keeps each value's line, for config errors that name file:line. Pure Swift.
        .target(name: "PayhookTOML"),
        // Pure Swift and provider-neutral: events, the source protocol, form and XML decoding, secrets. No C,
        // no sockets, no provider's name.
        .target(name: "PayhookCore"),
        // The only Swift code that touches OpenSSL.
        .target(name: "PayhookCrypto", dependencies: ["COpenSSL"]),
        // A value behind an adaptive pthread mutex, for the locks taken on every request.
        .target(name: "PayhookLock"),
        // libmicrohttpd listener with the limits an internet-facing server needs.
        .target(name: "PayhookHTTP", dependencies: ["CMicroHTTPD", "PayhookLock", logging]),
        // The storage seam: the protocols the router and the queue commands talk to. No implementation.
        .target(name: "PayhookStore", dependencies: ["PayhookCore"]),
        // The spool directory's on-disk format, one definition for its writer and its consumers: layout, event ids,
        // what a valid event file is, quarantine into corrupt/, and the POSIX calls both make.
        .target(name: "PayhookSpoolFormat", dependencies: ["CPayhookShim", "PayhookCore"]),
        // The durable queue directory (tmp/ → new/ → cur/), dedupe ledger and recovery. Knows no source.
        .target(name: "PayhookSpool", dependencies: ["PayhookCore", "PayhookLock", "PayhookSpoolFormat", "PayhookStore", logging]),
        // PostgreSQL as the shared store of several instances: the only Swift code that talks to libpq.
        .target(name: "PayhookPostgres", dependencies: ["CLibPQ", "PayhookCore", "PayhookLock", "PayhookStore", logging]),
        // One module per callback source: request in, verified event (or a refusal) out.
        .target(name: "PayhookUnified", dependencies: ["PayhookCore", "PayhookCrypto"]),
        .target(name: "PayhookWeChat", dependencies: ["PayhookCore", "PayhookCrypto"]),
        .target(name: "PayhookAlipay", dependencies: ["PayhookCore", "PayhookCrypto"]),
        .target(name: "PayhookXxPay", dependencies: ["PayhookCore", "PayhookCrypto"]),
        // The config file: the server's settings and each provider's [[tables]], read from TOML and validated.
        // The listener's settings take their defaults and address syntax from PayhookHTTP, which owns them.
        .target(name: "PayhookConfig", dependencies: ["PayhookCore", "PayhookCrypto", "PayhookHTTP", "PayhookStore", "PayhookTOML", "PayhookUnified", "PayhookWeChat", "PayhookAlipay", "PayhookXxPay"]),
        // The consumer side: claim, acknowledge, retry and dead-letter events in a spool.
        .target(name: "PayhookQueue", dependencies: ["CPayhookShim", "PayhookSpoolFormat", "PayhookStore", logging]),
        // What `payhook sign`, `simulate` and `verify` do: build signed callbacks, send them, explain a capture.
        // Serves nothing; it runs each source's own checks offline.
        .target(name: "PayhookTools", dependencies: ["PayhookConfig", "PayhookCore", "PayhookCrypto", "PayhookHTTP", "PayhookSpoolFormat", "PayhookUnified", "PayhookWeChat", "PayhookAlipay", "PayhookXxPay"]),
        // Serving only: wires config, sources, store and listener together; the HTTP answers live here.
        .target(
            name: "PayhookServer",
            dependencies: ["CPayhookShim", "PayhookConfig", "PayhookCore", "PayhookHTTP", "PayhookLock", "PayhookPostgres", "PayhookSpool", "PayhookStore", "PayhookUnified", "PayhookWeChat", "PayhookAlipay", "PayhookXxPay", "PayhookSpoolFormat", logging, prometheus]
        ),
        // bench/tools/routerloop.sh: the router's own CPU per duplicate, without HTTP (bench/README.md).
        .executableTarget(
            name: "routerbench",
            dependencies: ["PayhookConfig", "PayhookCore", "PayhookHTTP", "PayhookServer", "PayhookSpool", "PayhookSpoolFormat", "PayhookUnified", logging]
        ),
        .executableTarget(
            name: "payhook",
            dependencies: ["PayhookServer", "PayhookTools", "PayhookConfig", "PayhookCore", "PayhookHTTP", "PayhookPostgres", "PayhookQueue", "PayhookSpoolFormat", "PayhookStore", "PayhookWeChat", argumentParser, logging]
        ),

        // What the test targets share: temporary folders, the payhook binary, the raw HTTP client, waiting, and the
        // parent of the suites that run one at a time (MeasuringSuites).
        .target(name: "PayhookTestSupport", path: "Tests/PayhookTestSupport"),
        .testTarget(name: "PayhookCoreTests", dependencies: ["PayhookConfig", "PayhookCore", "PayhookTOML", "PayhookCrypto", "PayhookSpoolFormat", "PayhookUnified", "PayhookWeChat", "PayhookAlipay", "PayhookXxPay", "PayhookTestSupport"]),
        // The queue over the spool, an in-memory double and PostgreSQL (PostgresEventQueue, seeded through its store).
        .testTarget(name: "PayhookQueueTests", dependencies: ["PayhookQueue", "PayhookSpoolFormat", "PayhookStore", "PayhookCore", "PayhookPostgres", "PayhookTestSupport", logging]),
        // The format's own tests, and the writer and the queue judging the same files alike.
        .testTarget(
            name: "PayhookSpoolFormatTests",
            dependencies: ["PayhookSpoolFormat", "PayhookCore", "PayhookSpool", "PayhookStore", "PayhookQueue", "PayhookTestSupport", logging, inMemoryLogging]
        ),
        .testTarget(name: "PayhookHTTPTests", dependencies: ["PayhookHTTP", "PayhookTestSupport", logging]),
        .testTarget(name: "PayhookSpoolTests", dependencies: ["PayhookSpool", "PayhookSpoolFormat", "PayhookLock", "PayhookTestSupport", logging]),
        // "payhook" is not imported: it is here so that `swift test` builds the binary the process tests run.
        .testTarget(
            name: "PayhookServerTests",
            dependencies: ["PayhookServer", "PayhookTools", "PayhookConfig", "PayhookCore", "PayhookCrypto", "PayhookSpool", "PayhookStore", "PayhookHTTP", "PayhookPostgres", "PayhookUnified", "PayhookWeChat", "PayhookAlipay", "PayhookXxPay", "PayhookSpoolFormat", "PayhookLock", "PayhookTestSupport", "payhook", logging, inMemoryLogging]
        ),
    ]
)

// Every Swift target, tests included, builds with the same strictness (see `strictness` above); the C targets
// have no Swift settings.
for target in package.targets where target.type != .system && !target.name.hasPrefix("C") {
    target.swiftSettings = (target.swiftSettings ?? []) + strictness
}
