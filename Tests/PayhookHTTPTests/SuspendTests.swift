import Foundation
import PayhookHTTP
import PayhookTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A handler that answers `/later` only when the test says so, from a thread of its own, the way a store's
/// writer does after its commit (HTTPHandler.handle(_:answer:)); everything else at once.
final class LaterHandler: HTTPHandler {
    private let waiting = Mutex<[@Sendable (@escaping HTTPAnswer) -> Void]>([])
    let made = Mutex(0)

    func head(_ head: HTTPRequestHead) -> HTTPResponse? { nil }

    func handle(_ request: HTTPRequest) -> HTTPResponse {
        HTTPResponse(status: 200, contentType: "text/plain", body: "now")
    }

    func handle(_ request: HTTPRequest, answer: @escaping @Sendable (@escaping HTTPAnswer) -> Void) {
        guard request.head.path == "/later" else {
            answer { HTTPResponse(status: 200, contentType: "text/plain", body: "now") }
            return
        }
        waiting.withLock { $0.append(answer) }
    }

    func refusal(_ status: Int, for head: HTTPRequestHead) -> HTTPResponse {
        HTTPResponse(status: status, contentType: "text/plain", body: "refused \(status)")
    }

    var parked: Int { waiting.withLock { $0.count } }

    /// Answers every waiting request from a new thread, counting on which thread the answer is made.
    func release(_ body: String = "later") {
        let answers = waiting.withLock { all in
            defer { all = [] }
            return all
        }
        Thread { [self] in
            for answer in answers {
                answer {
                    self.made.withLock { $0 += 1 }
                    return HTTPResponse(status: 200, contentType: "text/plain", body: body)
                }
            }
        }.start()
    }
}

extension PayhookHTTPSuite {
@Suite("Waiting without a thread: suspended connections")
struct SuspendTests {
    @Test("one listener thread: a request waiting for its answer does not hold it; others on other connections are served meanwhile; the answer arrives on its own connection")
    func aParkedRequestFreesItsThread() throws {
        let handler = LaterHandler()
        var limits = HTTPLimits.test
        limits.threads = 1
        let server = try startServer(limits: limits, handler: handler)
        let port = server.boundAddress.port

        let waiting = try RawClient(port: port)
        waiting.send("GET /later HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(waitUntil(timeout: .seconds(3)) { handler.parked == 1 })
        // With a blocking handler these would wait for /later on the only thread.
        for _ in 0..<5 {
            #expect(exchange(port: port, "GET /now HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout: .seconds(2))?.text == "now")
        }
        // The parked request stays in flight; each closed exchange leaves it once MHD has run its completion,
        // which may come just after the client read the answer.
        #expect(waitUntil(timeout: .seconds(2)) { server.inFlight == 1 }, "in flight: \(server.inFlight)")
        #expect(handler.parked == 1)
        #expect(waiting.readSome(timeout: .milliseconds(100)) == .timedOut, "answered before the answer was given")

        handler.release()
        let reply = waiting.readResponse(timeout: .seconds(3))
        #expect(reply?.status == 200 && reply?.text == "later", "\(String(describing: reply))")
        #expect(handler.made.withLock { $0 } == 1)
        // The same connection goes on: a kept-alive request after the resumed one.
        waiting.send("GET /now HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(waiting.readResponse(timeout: .seconds(3))?.text == "now")
        #expect(waitUntil(timeout: .seconds(2)) { server.inFlight == 0 })
        #expect(server.shutdown(grace: .seconds(2)))
    }

    @Test("30 parked at once on two threads, answered together: every connection gets its own answer")
    func manyParked() throws {
        let handler = LaterHandler()
        let parkedServer = try startServer(handler: handler)
        let port = parkedServer.boundAddress.port
        let clients = try (0..<30).map { _ in try RawClient(port: port) }
        for client in clients { client.send("GET /later HTTP/1.1\r\nHost: x\r\n\r\n") }
        #expect(waitUntil(timeout: .seconds(5)) { handler.parked == 30 })
        handler.release()
        for client in clients {
            #expect(client.readResponse(timeout: .seconds(5))?.text == "later")
        }
        #expect(waitUntil(timeout: .seconds(2)) { parkedServer.inFlight == 0 })
        #expect(parkedServer.shutdown(grace: .seconds(2)))
    }

    @Test("a client that hangs up while its request is parked: the answer is still made, once, though it has nowhere to go (its log line and metrics are made with it)")
    func aHungUpClientsAnswerIsStillMade() throws {
        let handler = LaterHandler()
        let server = try startServer(handler: handler)
        let port = server.boundAddress.port
        for round in 1...3 {
            do {
                let waiting = try RawClient(port: port)
                waiting.send("GET /later HTTP/1.1\r\nHost: x\r\n\r\n")
                #expect(waitUntil(timeout: .seconds(3)) { handler.parked == 1 })
            }  // closed here, while its request is parked
            usleep(50_000)
            handler.release()
            #expect(waitUntil(timeout: .seconds(3)) { handler.made.withLock { $0 } == round }, "round \(round)")
            #expect(waitUntil(timeout: .seconds(2)) { server.inFlight == 0 })
        }
        usleep(100_000)
        #expect(handler.made.withLock { $0 } == 3, "an answer was made twice")
        #expect(server.shutdown(grace: .seconds(2)))
    }

    @Test("stopping with a request still parked past the grace: answered 503 or closed, no abort, and the late answer is dropped")
    func stopWithAParkedRequest() throws {
        let handler = LaterHandler()
        let server = try startServer(handler: handler)
        let port = server.boundAddress.port
        let waiting = try RawClient(port: port)
        waiting.send("GET /later HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(waitUntil(timeout: .seconds(3)) { handler.parked == 1 })
        #expect(server.shutdown(grace: .milliseconds(200)) == false)
        #expect(waitUntil(timeout: .seconds(5)) { server.isStopped })
        // MHD_stop_daemon closes the connection; whatever it got, it never got the handler's late answer.
        let reply = waiting.readResponse(timeout: .seconds(2))
        #expect(reply == nil || reply?.status == 503, "\(String(describing: reply))")
        handler.release()
        usleep(200_000)
        #expect(handler.made.withLock { $0 } == 0, "an answer was made after the stop")
    }
}
}
