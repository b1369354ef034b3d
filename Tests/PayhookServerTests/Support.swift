import Foundation
import InMemoryLogging
import Logging
import PayhookConfig
import PayhookCore
import PayhookHTTP
import PayhookPostgres
import PayhookServer
import PayhookSpool
import PayhookSpoolFormat
import PayhookTestSupport
import Testing

/// Where the fixtures are.
enum Paths {
    static let root = URL(fileURLWithPath: repositoryRoot)
    static let fixtures = root.appendingPathComponent("Fixtures")

    static func fixture(_ name: String) throws -> String {
        let text = try String(contentsOf: fixtures.appendingPathComponent(name), encoding: .utf8)
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// Files directly inside a folder, sorted; dotfiles left out.
func listing(_ path: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
}

/// The demo tenants of Fixtures/demo.toml, with a throwaway spool.
func demoConfig(spool: String, listen: String = "127.0.0.1:0") throws -> Config {
    var config = try ConfigFile.load(path: Paths.fixtures.appendingPathComponent("demo.toml").path).config
    config.spool = spool
    config.listen = listen
    return config
}

/// Where a live server keeps its events. The live suites run the tests whose point is "stored once, duplicate,
/// conflict, 503" against both, so the router's promises are checked on each store and not only on the spool.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case spool
    /// A fresh, migrated database of the shared test cluster.
    case postgres

    var testDescription: String { rawValue }
}

/// A migrated database of its own in the shared test cluster: its connection string.
func migratedTestDatabase(_ cluster: PostgresCluster? = nil) throws -> String {
    let cluster = try cluster ?? PostgresCluster.shared()
    let conninfo = try cluster.createDatabase("live")
    let database = PostgresDatabase(settings: PGSettings(conninfo: conninfo, connections: 1))
    defer { database.close() }
    _ = try database.migrate(by: "payhook-tests")
    return conninfo
}

/// A server on port 0 with its own spool (or its own database) and an in-memory log.
final class LiveServer: @unchecked Sendable {
    let dir: TemporaryDirectory
    let server: PayhookServer
    let log: InMemoryLogHandler
    let storeKind: StoreKind
    /// The database's connection string when the store is PostgreSQL.
    let database: String?
    var port: Int { server.http.boundAddress.port }
    var spool: String { server.config.spool }

    /// - Parameters:
    ///   - store: where events go; for `.postgres`, `database` (a connection string from an earlier server, to
    ///     see its rows) or a new migrated database.
    ///   - pinnedNow: the server's "now" in Unix milliseconds, for tests that sign with a time of their own.
    ///   - clock: the router's "now" in Unix milliseconds when it must move (a vector signed in 2024 needs its
    ///     own time); ignored when `pinnedNow` is given.
    init(
        store: StoreKind = .spool, database: String? = nil,
        dir: TemporaryDirectory? = nil, fileSystem: any SpoolFileSystem = PosixFileSystem(), pinnedNow: Int64? = nil,
        configure: (inout Config) -> Void = { _ in }, clock: @escaping @Sendable () -> Int64 = Router.wallClock
    ) throws {
        let dir = try dir ?? TemporaryDirectory()
        self.dir = dir
        storeKind = store
        var config = try demoConfig(spool: dir.file("spool"))
        if store == .postgres {
            let conninfo = try database ?? migratedTestDatabase()
            self.database = conninfo
            config.store = .postgres(DatabaseSettings(url: Secret(conninfo), connections: 4, instance: "live-test"))
        } else {
            self.database = nil
        }
        configure(&config)
        let log = InMemoryLogHandler()
        self.log = log
        let logger = Logger(label: "payhook-test") { _ in
            var handler = log
            handler.logLevel = .trace
            return handler
        }
        let clock = pinnedNow.map { now in { @Sendable in now } } ?? clock
        server = try PayhookServer(config: config, logger: logger, fileSystem: fileSystem, clock: clock)
    }

    func get(_ target: String) throws -> HTTPReply {
        try HTTPReply.exchange("GET \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", port: port)
    }

    /// SQL on this server's database, its rows one a line (psql's unaligned, tuples-only output).
    func sql(_ query: String) throws -> [String] {
        guard let database else { throw TestFailure("not a database store") }
        return try PostgresCluster.shared().psql(query, conninfo: database).split(separator: "\n").map(String.init)
    }

    /// The events waiting for a consumer, as `<id>.json`, sorted: the spool's new/, the database's queue rows
    /// in state `new`. Empty when they cannot be read (the assertion that follows then fails).
    func events() -> [String] {
        switch storeKind {
        case .spool: return listing(spool + "/new")
        case .postgres:
            return (try? sql("SELECT encode(id, 'hex') || '.json' FROM payhook_queue WHERE state = 'new' ORDER BY 1")) ?? []
        }
    }

    /// The stored bytes of the event `name` (`<id>.json`, as ``events()`` lists it).
    func eventData(_ name: String) throws -> Data {
        switch storeKind {
        case .spool: return try Data(contentsOf: URL(fileURLWithPath: spool + "/new/" + name))
        case .postgres:
            let id = String(name.dropLast(".json".count))
            guard id.count == 64, id.allSatisfy(\.isHexDigit) else { throw TestFailure("not an event name: \(name)") }
            let rows = try sql("SELECT encode(event, 'hex') FROM payhook_ledger WHERE id = '\\x\(id)'::bytea")
            guard rows.count == 1, let bytes = Hex.decode(rows[0]) else { throw TestFailure("no ledger row for \(name)") }
            return Data(bytes)
        }
    }

    /// The stored event `name` as JSON.
    func event(_ name: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: try eventData(name)) as? [String: Any])
    }

    /// The audit copies of conflicting variants: the spool's conflicts/, the database's payhook_conflict.
    func conflictCopies() throws -> [Data] {
        switch storeKind {
        case .spool:
            return try listing(spool + "/conflicts").map { try Data(contentsOf: URL(fileURLWithPath: spool + "/conflicts/" + $0)) }
        case .postgres:
            return try sql("SELECT encode(event, 'hex') FROM payhook_conflict ORDER BY conflict_id").map { row in
                guard let bytes = Hex.decode(row) else { throw TestFailure("bad hex from psql") }
                return Data(bytes)
            }
        }
    }

    /// Dedupe keys remembered: the spool's ids/, the database's ledger rows.
    func ledgerCount() throws -> Int {
        switch storeKind {
        case .spool: return listing(spool + "/ids").count
        case .postgres: return Int(try sql("SELECT count(*) FROM payhook_ledger").first ?? "") ?? -1
        }
    }

    func stop() { server.shutdown() }
}

/// A response as these tests read it: headers by lower-case name, the body as text.
struct HTTPReply {
    var status: Int
    var headers: [String: String]
    var body: String

    init(_ response: RawResponse) {
        status = response.status
        headers = Dictionary(response.headers.map { ($0.name.lowercased(), $0.value) }) { _, last in last }
        body = response.text
    }

    /// Sends `request` (these tests' requests say `Connection: close`) on a new connection of the shared
    /// RawClient and reads the response; throws when the connection is refused or no whole response comes
    /// within 10 s.
    static func exchange(_ request: String, port: Int, host: String = "127.0.0.1") throws -> HTTPReply {
        try exchange(Array(request.utf8), port: port, host: host)
    }

    static func exchange(_ request: [UInt8], port: Int, host: String = "127.0.0.1") throws -> HTTPReply {
        let client = try RawClient(host: host, port: port)
        client.send(request)
        return try read(client)
    }

    /// The response to a `Connection: close` request on `client`'s connection, returned once the server has
    /// closed the connection too: by then it is done with the request (it no longer counts it in flight).
    static func read(_ client: RawClient, timeout: Duration = .seconds(10)) throws -> HTTPReply {
        guard let response = client.readResponse(timeout: timeout) else { throw TestFailure("no HTTP response within \(timeout)") }
        _ = client.waitForClose(timeout: timeout)
        return HTTPReply(response)
    }
}

/// Runs `arguments` (found on the PATH) with `input` on stdin, in `directory` when given, with `environment`
/// added to this process's own; its exit status and stdout and stderr together.
func runCommand(
    _ arguments: [String], input: String = "", directory: String? = nil, environment: [String: String] = [:]
) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
    if !environment.isEmpty {
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, added in added }
    }
    let out = Pipe()
    let inp = Pipe()
    process.standardOutput = out
    process.standardError = out
    process.standardInput = inp
    try process.run()
    inp.fileHandleForWriting.write(Data(input.utf8))
    try inp.fileHandleForWriting.close()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}
