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
@Suite("Limits")
struct LimitTests {
    @Test("body cap: Content-Length over it → 413 unread; chunked over it → 413; exactly at it → accepted")
    func bodyCap() throws {
        let handler = TestHandler()
        var limits = HTTPLimits.test
        limits.maxBodyBytes = 1000
        let server = try startServer(limits: limits, handler: handler)
        defer { _ = server.shutdown(grace: .seconds(1)) }
        let port = server.boundAddress.port

        // Declared too large: answered from the headers alone, body never sent.
        let declared = try #require(exchange(port: port, "POST /cap HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n"))
        #expect(declared.status == 413)
        #expect(declared.text == "refused 413\n")
        #expect(declared.header("X-Refusal") == "413")
        #expect(handler.handledCount == 0)

        // Absurd Content-Length (beyond 64 bits) is also 413, or MHD's own 4xx.
        let absurd = try #require(exchange(port: port,
            "POST /cap HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999999\r\n\r\n"))
        #expect((400...499).contains(absurd.status))
        #expect(handler.handledCount == 0)

        // With Expect: 100-continue the client gets the 413 instead of "100 Continue".
        let expecting = try #require(exchange(port: port,
            "POST /cap HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n"))
        #expect(expecting.status == 413)

        // Chunked: no Content-Length, the running total trips the cap.
        let overChunks = Array(repeating: Array(repeating: UInt8(0x62), count: 300), count: 5)
        let chunkedOver = try #require(exchange(port: port,
            Array("POST /cap HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".utf8) + chunked(overChunks)))
        #expect(chunkedOver.status == 413)
        #expect(chunkedOver.header("X-Refusal") == "413")
        #expect(handler.handledCount == 0)
        #expect(handler.refusals == [413, 413, 413], "the absurd length is refused by MHD itself")

        // Exactly at the cap, both framings.
        let exact = [UInt8](repeating: 0x61, count: 1000)
        let exactResponse = try #require(exchange(port: port,
            Array("POST /cap HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".utf8) + exact))
        #expect(exactResponse.status == 200)
        #expect(exactResponse.body == exact)
        let exactChunked = try #require(exchange(port: port,
            Array("POST /cap HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
                + chunked([Array(exact[0..<400]), Array(exact[400...])])))
        #expect(exactChunked.status == 200)
        #expect(exactChunked.body == exact)
        #expect(handler.handledCount == 2)
        #expect(waitUntil { server.inFlight == 0 })
    }

    @Test("head() answering early sends that answer without reading the body")
    func earlyAnswerSkipsBody() throws {
        let handler = TestHandler(onHead: { head in
            head.path == "/known"
                ? nil
                : HTTPResponse(status: 404, contentType: "text/plain", body: "no such path\n")
        })
        let server = try startServer(handler: handler)
        defer { _ = server.shutdown(grace: .seconds(1)) }

        // 60 000 declared body bytes (under the 65 536 cap) that are never sent:
        // the 404 arrives anyway, so the server did not wait for the body.
        let client = try RawClient(port: server.boundAddress.port)
        let start = ContinuousClock.now
        client.send("POST /unknown HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n")
        let response = try #require(client.readResponse(timeout: .seconds(2)))
        #expect(response.status == 404)
        #expect(response.text == "no such path\n")
        #expect(elapsed(since: start) < 1.5)
        #expect(handler.handledCount == 0)
        #expect(handler.refusals.isEmpty)
        // The unread body makes MHD close the connection after the answer.
        #expect(client.waitForClose(timeout: .seconds(2)).outcome != .timedOut)

        let known = try #require(exchange(port: server.boundAddress.port,
                                           "POST /known HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"))
        #expect(known.status == 200)
        #expect(handler.handledCount == 1)
        #expect(waitUntil { server.inFlight == 0 })
    }

    @Test("header over the memory limit → 431, URI over it → 414, inFlight back to 0")
    func memoryLimit() throws {
        let handler = TestHandler()
        var limits = HTTPLimits.test
        limits.connectionMemoryLimitBytes = 8192
        let server = try startServer(limits: limits, handler: handler)
        defer { _ = server.shutdown(grace: .seconds(1)) }
        let port = server.boundAddress.port

        let bigHeader = String(repeating: "h", count: 12_000)
        let headerResponse = try #require(exchange(port: port, "GET /h HTTP/1.1\r\nHost: x\r\nX-Big: \(bigHeader)\r\n\r\n"))
        #expect(headerResponse.status == 431)
        #expect(waitUntil { server.inFlight == 0 }, "the refused request was counted and then completed")

        let longPath = "/" + String(repeating: "u", count: 12_000)
        let uriResponse = try #require(exchange(port: port, "GET \(longPath) HTTP/1.1\r\nHost: x\r\n\r\n"))
        #expect(uriResponse.status == 414)
        #expect(waitUntil { server.inFlight == 0 })

        // Many headers that are each small but together too large.
        var many = "GET /many HTTP/1.1\r\nHost: x\r\n"
        for index in 0..<400 { many += "X-H\(index): \(String(repeating: "v", count: 20))\r\n" }
        let manyResponse = try #require(exchange(port: port, many + "\r\n"))
        #expect(manyResponse.status == 431)

        #expect(handler.handledCount == 0)
        #expect(waitUntil { server.inFlight == 0 })
        let normal = try #require(exchange(port: port, "GET /fine HTTP/1.1\r\nHost: x\r\n\r\n"))
        #expect(normal.status == 200)
        #expect(waitUntil { server.inFlight == 0 })
    }

    @Test("per-IP limit: 5 connections with a limit of 3 → 2 closed at once; a new request works after")
    func perIPLimit() throws {
        var limits = HTTPLimits.test
        limits.maxConnectionsPerIP = 3
        limits.connectionTimeoutSeconds = 10
        let server = try startServer(limits: limits)
        defer { _ = server.shutdown(grace: .seconds(1)) }
        let port = server.boundAddress.port

        var clients: [RawClient] = []
        for _ in 0..<5 {
            clients.append(try RawClient(port: port))
        }
        let start = ContinuousClock.now
        var closed = 0
        for client in clients {
            // An accepted idle connection stays silent; a refused one reads EOF/RST.
            let outcome = client.waitForClose(timeout: .milliseconds(300)).outcome
            if outcome == .closed || outcome == .reset { closed += 1 }
        }
        #expect(closed >= 2)
        #expect(closed <= 2, "only the connections over the limit are closed")
        #expect(elapsed(since: start) < 3)

        clients.removeAll()  // closes all five
        // MHD must first notice the closes; retry briefly.
        var succeeded = false
        for _ in 0..<40 where !succeeded {
            if let response = exchange(port: port, "GET /again HTTP/1.1\r\nHost: x\r\n\r\n", timeout: .milliseconds(500)),
               response.status == 200 {
                succeeded = true
            } else {
                usleep(50_000)
            }
        }
        #expect(succeeded)
    }

    @Test("an idle connection is closed after connectionTimeoutSeconds")
    func idleTimeout() throws {
        var limits = HTTPLimits.test
        limits.connectionTimeoutSeconds = 1
        let server = try startServer(limits: limits)
        defer { _ = server.shutdown(grace: .seconds(1)) }

        let idle = try RawClient(port: server.boundAddress.port)
        let start = ContinuousClock.now
        let result = idle.waitForClose(timeout: .seconds(4))
        let took = elapsed(since: start)
        #expect(result.outcome == .closed || result.outcome == .reset)
        #expect(!result.sawData)
        #expect(took >= 0.8 && took < 3.0, "closed after \(took) s")

        // A half-sent request line counts as idle too once the bytes stop.
        let partial = try RawClient(port: server.boundAddress.port)
        partial.send("GET /partial HT")
        let partialStart = ContinuousClock.now
        let partialResult = partial.waitForClose(timeout: .seconds(4))
        let partialTook = elapsed(since: partialStart)
        #expect(partialResult.outcome == .closed || partialResult.outcome == .reset)
        #expect(partialTook >= 0.8 && partialTook < 3.0, "closed after \(partialTook) s")
        #expect(waitUntil { server.inFlight == 0 })
    }

    @Test("whole-request deadline: trickled body is cut off, trickled headers are cut off while still arriving; handle() never runs")
    func requestDeadline() throws {
        let handler = TestHandler()
        var limits = HTTPLimits.test
        limits.connectionTimeoutSeconds = 3
        limits.requestDeadlineSeconds = 1
        let server = try startServer(limits: limits, handler: handler)
        defer { _ = server.shutdown(grace: .seconds(1)) }
        let port = server.boundAddress.port

        // Body: one byte every 150 ms (never idle long enough for the
        // inactivity timeout), 40 bytes would take 6 s.
        let body = try RawClient(port: port)
        let start = ContinuousClock.now
        body.send("POST /slow-body HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n")
        var cutOff = false
        var got408 = false
        for _ in 0..<40 {
            usleep(150_000)
            if !body.send([0x7A]) { cutOff = true; break }
            switch body.readSome(timeout: .zero) {
            case .data(let bytes):
                got408 = String(decoding: bytes, as: UTF8.self).hasPrefix("HTTP/1.1 408")
                cutOff = true
            case .closed, .reset:
                cutOff = true
            case .timedOut:
                break
            }
            if cutOff { break }
        }
        if !cutOff {
            let outcome = body.waitForClose(timeout: .seconds(1)).outcome
            cutOff = outcome == .closed || outcome == .reset
        }
        let bodyTook = elapsed(since: start)
        #expect(cutOff || got408)
        #expect(bodyTook < 3.0, "cut off after \(bodyTook) s")

        // Headers: one header line every 250 ms for up to 3 s. No access-
        // handler call happens while headers arrive and every line resets
        // the 3 s inactivity timeout; the watchdog cuts the connection at
        // the 1 s deadline, while the client is still sending.
        let headers = try RawClient(port: port)
        let headStart = ContinuousClock.now
        headers.send("POST /slow-head HTTP/1.1\r\nHost: x\r\n")
        var headOutcome = ReadOutcome.timedOut
        var linesSent = 0
        for index in 0..<12 {
            usleep(250_000)
            headOutcome = headers.readSome(timeout: .zero)
            if headOutcome != .timedOut { break }
            headers.send("X-Slow-\(index): 1\r\n")
            linesSent += 1
        }
        let headTook = elapsed(since: headStart)
        #expect(headOutcome == .closed || headOutcome == .reset, "closed without an answer, got \(headOutcome)")
        #expect(headTook >= 0.9 && headTook < 2.0, "cut off after \(headTook) s")
        #expect(linesSent < 8, "cut off while header lines were still arriving (\(linesSent) sent)")

        #expect(handler.handledCount == 0)
        #expect(waitUntil { server.inFlight == 0 })
        #expect(waitUntil { server.openConnections == 0 })
    }
}
}
