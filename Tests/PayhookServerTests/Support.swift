import Foundation
import InMemoryLogging
import Logging
import PayhookConfig
import PayhookCore
import PayhookHTTP
import PayhookServer
import PayhookSpool
import PayhookSpoolFormat
import PayhookTestSupport

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

/// A server on port 0 with its own spool and an in-memory log.
final class LiveServer: @unchecked Sendable {
    let dir: TemporaryDirectory
    let server: PayhookServer
    let log: InMemoryLogHandler
    var port: Int { server.http.boundAddress.port }
    var spool: String { server.config.spool }

    /// - Parameters:
    ///   - pinnedNow: the server's "now" in Unix milliseconds, for tests that sign with a time of their own.
    ///   - clock: the router's "now" in Unix milliseconds when it must move (a vector signed in 2024 needs its
    ///     own time); ignored when `pinnedNow` is given.
    init(
        dir: TemporaryDirectory? = nil, fileSystem: any SpoolFileSystem = PosixFileSystem(), pinnedNow: Int64? = nil,
        configure: (inout Config) -> Void = { _ in }, clock: @escaping @Sendable () -> Int64 = Router.wallClock
    ) throws {
        let dir = try dir ?? TemporaryDirectory()
        self.dir = dir
        var config = try demoConfig(spool: dir.file("spool"))
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

    func events() -> [String] { listing(spool + "/new") }

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
