import Foundation
import PayhookHTTP
import PayhookTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif
import Synchronization

extension PayhookHTTPSuite {
@Suite("Request framing and Host")
struct FramingTests {
    /// Sends `raw` on one connection; returns the first answer and whether
    /// anything else came before the server closed the connection.
    private func firstAnswerThenClose(port: Int, _ raw: String) throws -> (RawResponse?, closedAfter: Bool, more: Bool) {
        let client = try RawClient(port: port)
        client.send(raw)
        let first = client.readResponse(timeout: .seconds(3))
        let (outcome, sawData) = client.waitForClose(timeout: .seconds(3))
        return (first, outcome == .closed || outcome == .reset, sawData)
    }

    @Test("Content-Length with Transfer-Encoding, or a Transfer-Encoding other than chunked: 400 through refusal() before the body is read, connection closed, the pipelined request after it unanswered",
          arguments: [
              "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
              "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
              "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
              // The final coding is not chunked, or one MHD cannot decode: no usable length either.
              "Transfer-Encoding: gzip\r\n",
              "Transfer-Encoding: chunked, gzip\r\n",
              "Transfer-Encoding: gzip, chunked\r\n",
              "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
          ])
    func unusableFraming(framing: String) throws {
        let handler = TestHandler()
        let server = try startServer(handler: handler)
        defer { _ = server.shutdown(grace: .seconds(1)) }
        let port = server.boundAddress.port

        // Chunked, this is an empty body and then a second request; by
        // Content-Length it is 5 bytes of body and then garbage.
        let raw = "POST /smuggle HTTP/1.1\r\nHost: x\r\n\(framing)\r\n0\r\n\r\n"
            + "GET /second HTTP/1.1\r\nHost: x\r\n\r\n"
        let (first, closedAfter, more) = try firstAnswerThenClose(port: port, raw)
        let response = try #require(first, "an answer to the first request")
        #expect(response.status == 400)
        #expect(response.header("X-Refusal") == "400", "the answer comes from the handler's refusal()")
        #expect(response.header("Connection")?.lowercased() == "close")
        #expect(closedAfter, "the server closes the connection after the 400")
        #expect(!more, "nothing is answered after the 400")
        #expect(handler.refusals == [400])
        #expect(handler.handledCount == 0, "neither request reached handle()")
        #expect(handler.log.withLock { $0.heads.isEmpty }, "the head never reached head() either")

        // The same request with chunked framing alone is served, kept alive.
        let client = try RawClient(port: port)
        client.send("POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
            + "GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(client.readResponse()?.text == "hi")
        #expect(client.readResponse()?.status == 200)
        #expect(waitUntil { server.inFlight == 0 })
    }

    @Test("HTTP/1.1 without Host and any request with two Host fields: 400 through refusal(), connection closed; HTTP/1.0 without Host is served")
    func hostField() throws {
        let handler = TestHandler()
        let server = try startServer(handler: handler)
        defer { _ = server.shutdown(grace: .seconds(1)) }
        let port = server.boundAddress.port

        let refused = [
            "GET /no-host HTTP/1.1\r\n\r\n",
            "GET /no-host HTTP/1.1\r\nX-Other: host\r\n\r\n",
            "GET /two-hosts HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET /two-hosts HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
            "GET /two-hosts HTTP/1.0\r\nHost: a\r\nHOST: b\r\n\r\n",
        ]
        for raw in refused {
            let (first, closedAfter, _) = try firstAnswerThenClose(port: port, raw + "GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
            let response = try #require(first, "\(raw.debugDescription)")
            #expect(response.status == 400, "\(raw.debugDescription)")
            #expect(response.header("X-Refusal") == "400", "\(raw.debugDescription): through refusal()")
            #expect(closedAfter, "\(raw.debugDescription): connection closed")
        }
        #expect(handler.refusals == Array(repeating: 400, count: refused.count))
        #expect(handler.handledCount == 0)

        let old = try #require(exchange(port: port, "GET /http10 HTTP/1.0\r\n\r\n"))
        #expect(old.status == 200, "HTTP/1.0 needs no Host")
        let normal = try #require(exchange(port: port, "GET /http11 HTTP/1.1\r\nhOsT: x\r\n\r\n"))
        #expect(normal.status == 200)
        #expect(handler.log.withLock { $0.requests.map(\.head.path) } == ["/http10", "/http11"])
        #expect(waitUntil { server.inFlight == 0 })
    }
}
}
