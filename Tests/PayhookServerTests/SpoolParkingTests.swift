import Foundation
import Logging
import PayhookConfig
import PayhookHTTP
import PayhookServer
@_spi(Testing) import PayhookSpool
import PayhookSpoolFormat
import PayhookTestSupport
import Testing

/// On the spool, a callback whose store waits for the disk parks its connection, not its listener thread
/// (docs/architecture.md, "Waiting without a thread"): with one listener thread and a batch that cannot become
/// durable, the other connections are still served, and the parked callback is answered once its batch is.
@Suite(.timeLimit(.minutes(2)))
struct SpoolParkingTests {
    @Test func aStoreWaitingForTheDiskHoldsNoListenerThread() throws {
        let dir = try TemporaryDirectory()
        var config = try demoConfig(spool: dir.file("spool"))
        config.threads = 1
        let spool = try Spool(
            directory: config.spool, inspector: EventFileInspector.payhook, logger: Logger(label: "payhook-test") { _ in
                SwiftLogNoOpLogHandler()
            }
        )
        let server = try PayhookServer(
            config: config, logger: Logger(label: "payhook-test") { _ in SwiftLogNoOpLogHandler() },
            store: SpoolEventStore(spool)
        )
        defer { server.shutdown() }
        let port = server.http.boundAddress.port
        func get(_ fixture: String) throws -> HTTPReply {
            try HTTPReply.exchange(
                "GET \(try UnifiedLiveTests.target(fixture)) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                port: port
            )
        }
        #expect(try get("success").body == "success")

        // From here no batch becomes durable until the test lets it.
        spool.suspendCommits()
        let parked = try RawClient(port: port)
        #expect(parked.send(
            "GET \(try UnifiedLiveTests.target("sibling")) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        ))
        let deadline = Date(timeIntervalSinceNow: 30)
        while spool.pendingCommits < 1, Date() < deadline { usleep(1000) }
        #expect(spool.pendingCommits == 1, "the new event's store did not reach the writer")

        // The only listener thread serves other connections meanwhile: a retry of the stored event, health.
        #expect(try get("success").body == "success")
        #expect(try get("duplicate").body == "success")
        let health = try HTTPReply.exchange(
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", port: port
        )
        #expect(health.status == 200)
        #expect(listing(dir.file("spool/new")).count == 1, "the parked event was published before its batch")

        spool.resumeCommits()
        let answer = try #require(parked.readResponse(timeout: .seconds(30)))
        #expect(answer.status == 200)
        #expect(answer.text == "success")
        #expect(listing(dir.file("spool/new")).count == 2)
    }
}
