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
@Suite("Serving requests")
struct ServingTests {
    @Test("binds 127.0.0.1:0, reports the real port and hands the raw target to the handler")
    func rawTargetAndHead() throws {
        let handler = TestHandler(onHandle: { _ in
            HTTPResponse(status: 200, contentType: "text/plain; charset=utf-8", body: "ok",
                         headers: [(name: "X-Reply", value: "yes")])
        })
        let server = try startServer(handler: handler)
        defer { _ = server.shutdown(grace: .seconds(1)) }

        #expect(server.boundAddress.host == "127.0.0.1")
        #expect(server.boundAddress.port > 0)
        #expect(server.boundAddress.description == "127.0.0.1:\(server.boundAddress.port)")

        let target = "/notify/unified%2Fx?money=1&payTypeName=%E6%94%AF+x&sign=a%2Fb%3D&empty="
        let response = try #require(exchange(port: server.boundAddress.port, """
            GET \(target) HTTP/1.1\r
            Host: localhost\r
            X-Custom: Some Value\r
            x-dup: first\r
            X-Dup: second\r
            \r

            """))
        #expect(response.status == 200)
        #expect(response.text == "ok")
        #expect(response.header("X-Reply") == "yes")
        #expect(response.header("Content-Type") == "text/plain; charset=utf-8")

        let head = try #require(handler.lastRequest?.head)
        #expect(head.method == "GET")
        #expect(head.target == target)
        #expect(head.path == "/notify/unified%2Fx")
        #expect(head.query == "money=1&payTypeName=%E6%94%AF+x&sign=a%2Fb%3D&empty=")
        #expect(head.header("x-custom") == "Some Value")
        #expect(head.header("X-CUSTOM") == "Some Value")
        #expect(head.header("X-Dup") == "first")
        #expect(head.headers.filter { $0.name.lowercased() == "x-dup" }.map(\.value) == ["first", "second"])
        #expect(head.header("Missing") == nil)
        #expect(head.remoteAddress == "127.0.0.1")
        #expect(abs(head.receivedAt.timeIntervalSinceNow) < 10)
        #expect(handler.lastHead?.target == target, "head() saw the same raw target")

        // No "?" → nil query; a bare "?" → empty query.
        _ = try #require(exchange(port: server.boundAddress.port, "GET /plain HTTP/1.1\r\nHost: x\r\n\r\n"))
        #expect(handler.lastRequest?.head.query == nil)
        #expect(handler.lastRequest?.head.path == "/plain")
        _ = try #require(exchange(port: server.boundAddress.port, "GET /q? HTTP/1.1\r\nHost: x\r\n\r\n"))
        #expect(handler.lastRequest?.head.query == "")
        #expect(handler.lastRequest?.head.path == "/q")
        #expect(waitUntil { server.inFlight == 0 })
    }

    @Test("[::1]:0 serves IPv6 clients")
    func ipv6Loopback() throws {
        guard hasIPv6Loopback() else {
            // Without ::1 the bind must fail with a sentence naming the address.
            print("IPv6 loopback ::1 is not configured (/proc/net/if_inet6); checking the bind error instead")
            #expect {
                _ = try startServer(host: "::1")
            } throws: { error in
                "\(error)".contains("[::1]:0")
            }
            return
        }
        let handler = TestHandler(onHandle: { request in
            HTTPResponse(status: 200, contentType: "text/plain", body: "v6 \(request.head.remoteAddress)")
        })
        let server = try startServer(host: "::1", handler: handler)
        defer { _ = server.shutdown(grace: .seconds(1)) }
        #expect(server.boundAddress.host == "::1")
        #expect(server.boundAddress.port > 0)
        #expect(server.boundAddress.description == "[::1]:\(server.boundAddress.port)")

        let response = try #require(exchange(port: server.boundAddress.port, host: "::1",
                                              "GET /six?x=1 HTTP/1.1\r\nHost: [::1]\r\n\r\n"))
        #expect(response.status == 200)
        #expect(response.text == "v6 ::1")
        #expect(handler.lastRequest?.head.remoteAddress == "::1")
        #expect(handler.lastRequest?.head.target == "/six?x=1")

        // IPV6_V6ONLY: the IPv6 listener does not take IPv4 clients.
        #expect(throws: ClientError.self) { _ = try RawClient(host: "127.0.0.1", port: server.boundAddress.port) }
    }

    @Test("POST bodies arrive byte-exact: binary with Content-Length, and chunked")
    func bodiesByteExact() throws {
        let handler = TestHandler()  // echoes the body
        let server = try startServer(handler: handler)
        defer { _ = server.shutdown(grace: .seconds(1)) }
        let port = server.boundAddress.port

        var binary: [UInt8] = []
        for round in 0..<40 {
            binary += (0...255).map { UInt8(truncatingIfNeeded: $0 &+ round) }
        }
        let head = "POST /bin HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: \(binary.count)\r\n\r\n"
        let echoed = try #require(exchange(port: port, Array(head.utf8) + binary))
        #expect(echoed.status == 200)
        #expect(echoed.body == binary)
        #expect(handler.lastRequest?.body == binary)
        #expect(handler.lastRequest?.head.method == "POST")

        // Chunked, with a CRLF, a NUL and non-UTF-8 bytes inside chunks.
        let chunks: [[UInt8]] = [
            Array("money=1&name=".utf8), [0x00, 0x0D, 0x0A, 0xFF, 0xFE], Array(repeating: 0x41, count: 5000), [0xE6, 0x94, 0xAF],
        ]
        let chunkedHead = "POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        let chunkedResponse = try #require(exchange(port: port, Array(chunkedHead.utf8) + chunked(chunks)))
        #expect(chunkedResponse.status == 200)
        #expect(chunkedResponse.body == chunks.flatMap { $0 })
        #expect(handler.lastRequest?.body == chunks.flatMap { $0 })

        // Body split across several writes with pauses still arrives whole.
        let client = try RawClient(port: port)
        let text = Array("a=1&b=2&c=3&d=4".utf8)
        client.send("POST /split HTTP/1.1\r\nHost: x\r\nContent-Length: \(text.count)\r\n\r\n")
        for piece in [text[0..<5], text[5..<11], text[11...]] {
            usleep(30_000)
            client.send(Array(piece))
        }
        let split = try #require(client.readResponse())
        #expect(split.body == text)

        // Empty POST body.
        let empty = try #require(exchange(port: port, "POST /empty HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"))
        #expect(empty.status == 200)
        #expect(empty.body.isEmpty)
        #expect(waitUntil { server.inFlight == 0 })
    }

    @Test("200 sequential and 50 concurrent requests are all answered; inFlight ends at 0")
    func manyRequests() throws {
        let handler = TestHandler(onHandle: { request in
            HTTPResponse(status: 200, contentType: "text/plain", body: request.head.query ?? "")
        })
        var limits = HTTPLimits.test
        limits.threads = 4
        limits.maxConnectionsPerIP = 100
        let server = try startServer(limits: limits, handler: handler)
        defer { _ = server.shutdown(grace: .seconds(2)) }
        let port = server.boundAddress.port

        var sequentialOK = 0
        for index in 0..<200 {
            if let response = exchange(port: port, "GET /seq?\(index) HTTP/1.1\r\nHost: x\r\n\r\n"),
               response.status == 200, response.text == "\(index)" {
                sequentialOK += 1
            }
        }
        #expect(sequentialOK == 200)

        // Keep-alive: several requests on one connection.
        let client = try RawClient(port: port)
        var keptAlive = 0
        for index in 0..<20 {
            client.send("GET /keep?\(index) HTTP/1.1\r\nHost: x\r\n\r\n")
            if let response = client.readResponse(), response.text == "\(index)" { keptAlive += 1 }
        }
        #expect(keptAlive == 20)

        let answered = Mutex(0)
        let group = DispatchGroup()
        for index in 0..<50 {
            group.enter()
            let thread = Thread {
                defer { group.leave() }
                if let response = exchange(port: port, "POST /con?\(index) HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"),
                   response.status == 200, response.text == "\(index)" {
                    answered.withLock { $0 += 1 }
                }
            }
            thread.start()
        }
        #expect(group.wait(timeout: .now() + 10) == .success)
        #expect(answered.withLock { $0 } == 50)
        #expect(handler.handledCount == 270)
        #expect(waitUntil { server.inFlight == 0 })
    }
}
}
