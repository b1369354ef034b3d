import Foundation
import Logging
import PayhookHTTP
import PayhookTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension PayhookHTTPSuite {
@Suite("Graceful shutdown")
struct ShutdownTests {
    @Test("in-flight request finishes, new connections are refused, shutdown returns true")
    func gracefulShutdown() throws {
        let entered = Latch()
        let handler = TestHandler(onHandle: { request in
            if request.head.path == "/slow" {
                entered.open()
                usleep(500_000)
                return HTTPResponse(status: 200, contentType: "text/plain", body: "slow done")
            }
            return HTTPResponse(status: 200, contentType: "text/plain", body: "fast")
        })
        var limits = HTTPLimits.test
        limits.threads = 4
        let server = try startServer(limits: limits, handler: handler)
        let port = server.boundAddress.port

        // A kept-alive connection that has already been served once.
        let keptAlive = try RawClient(port: port)
        keptAlive.send("GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(keptAlive.readResponse()?.text == "fast")

        let slow = Background { exchange(port: port, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n", timeout: .seconds(5)) }
        #expect(entered.wait(timeout: .seconds(3)))
        #expect(server.inFlight == 1)

        let stopping = Background { () -> (Bool, Double) in
            let start = ContinuousClock.now
            let result = server.shutdown(grace: .seconds(5))
            return (result, elapsed(since: start))
        }
        #expect(waitUntil(timeout: .seconds(2)) { server.isShuttingDown })

        // New connections are refused by the kernel once shutdown began. `isShuttingDown` turns true just
        // before shutdown() stops the socket listening, so an attempt in that instant may still connect (it is
        // closed at once and sends no request); the refusal must follow within the wait.
        var refusal: (any Error)?
        #expect(waitUntil(timeout: .seconds(2)) {
            do {
                _ = try RawClient(port: port)
                return false
            } catch {
                refusal = error
                return true
            }
        })
        #expect((refusal as? ClientError)?.code == ECONNREFUSED)
        // A new request on a connection opened before gets 503 (or, if its
        // worker thread only reaches it after the drain ended, a close);
        // it never reaches handle().
        keptAlive.send("GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
        let lateAnswer = keptAlive.readResponse(timeout: .seconds(2))
        if let late = lateAnswer {
            #expect(late.status == 503)
            #expect(late.header("X-Refusal") == "503")
            #expect(late.header("Connection")?.lowercased() == "close")
        }

        let (allFinished, took) = try #require(stopping.join(timeout: .seconds(7)))
        #expect(allFinished)
        #expect(took >= 0.2 && took < 5, "shutdown took \(took) s")
        let slowResponse = try #require(slow.join(timeout: .seconds(3)) ?? nil)
        #expect(slowResponse.status == 200)
        #expect(slowResponse.text == "slow done")
        #expect(slowResponse.header("Connection")?.lowercased() == "close")
        #expect(handler.log.withLock { $0.requests.map(\.head.path) } == ["/first", "/slow"],
                "heads: \(handler.log.withLock { $0.heads.map(\.path) }), refusals: \(handler.refusals), late answer: \(lateAnswer.map { "\($0.status)" } ?? "none"), refused with: \(String(describing: refusal))")
        #expect(server.isStopped)
        #expect(server.inFlight == 0)

        // Safe to call again: same answer, at once.
        let again = ContinuousClock.now
        #expect(server.shutdown(grace: .seconds(5)))
        #expect(elapsed(since: again) < 0.1)
    }

    @Test("a handler blocking past the grace period → false, within grace + margin")
    func graceExpires() throws {
        let release = Latch()
        let entered = Latch()
        let handler = TestHandler(onHandle: { _ in
            entered.open()
            _ = release.wait(timeout: .seconds(5))
            return HTTPResponse(status: 200, contentType: "text/plain", body: "late")
        })
        let server = try startServer(handler: handler)
        let port = server.boundAddress.port
        let stuck = Background { exchange(port: port, "GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n", timeout: .seconds(6)) }
        #expect(entered.wait(timeout: .seconds(3)))

        let start = ContinuousClock.now
        let allFinished = server.shutdown(grace: .milliseconds(300))
        let took = elapsed(since: start)
        #expect(!allFinished)
        #expect(took >= 0.25 && took < 0.8, "shutdown took \(took) s")
        #expect(!server.isStopped, "the daemon cannot stop while the handler runs")
        #expect(server.inFlight == 1)

        // A second call answers the same, immediately.
        let again = ContinuousClock.now
        #expect(!server.shutdown(grace: .seconds(5)))
        #expect(elapsed(since: again) < 0.1)

        // Once the handler returns, the background stop completes.
        release.open()
        #expect(waitUntil(timeout: .seconds(3)) { server.isStopped })
        #expect(server.inFlight == 0)
        _ = stuck.join(timeout: .seconds(3))
        #expect(throws: ClientError.self) { _ = try RawClient(port: port) }
    }

    @Test("idle server shuts down at once; dropping a server stops it too")
    func idleShutdownAndDeinit() throws {
        let server = try startServer()
        let port = server.boundAddress.port
        let idle = try RawClient(port: port)  // an idle keep-alive connection is not in flight
        let start = ContinuousClock.now
        #expect(server.shutdown(grace: .seconds(5)))
        #expect(elapsed(since: start) < 0.5)
        #expect(server.isStopped)
        #expect(idle.waitForClose(timeout: .seconds(2)).outcome != .timedOut)
        #expect(throws: ClientError.self) { _ = try RawClient(port: port) }

        var dropped: HTTPServer? = try startServer()
        let droppedPort = try #require(dropped?.boundAddress.port)
        #expect(exchange(port: droppedPort, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")?.status == 200)
        dropped = nil
        #expect(dropped == nil)
        #expect(throws: ClientError.self) { _ = try RawClient(port: droppedPort) }
    }
}
}
