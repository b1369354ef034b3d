import Foundation
import Logging
import PayhookHTTP
import PayhookTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif
import Synchronization

extension PayhookHTTPSuite {
@Suite("Odd input and handler failures")
struct RobustnessTests {
    @Test("malformed requests are answered or closed, the server keeps serving, inFlight returns to 0")
    func oddRequests() throws {
        let handler = TestHandler()
        var limits = HTTPLimits.test
        limits.maxBodyBytes = 1000
        limits.connectionTimeoutSeconds = 1
        let server = try startServer(limits: limits, handler: handler)
        defer { _ = server.shutdown(grace: .seconds(1)) }
        let port = server.boundAddress.port

        let odd: [(request: [UInt8], acceptable: ClosedRange<Int>)] = [
            (Array("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".utf8), 400...400),
            (Array("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n".utf8), 400...400),
            (Array("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".utf8), 400...400),
            (Array("GARBAGE\r\n\r\n".utf8), 400...599),
            (Array("GET / HTTP/1.1\r\nBad Header\r\n\r\n".utf8), 400...400),
            (Array("GET / HTTP/9.9\r\nHost: x\r\n\r\n".utf8), 505...505),
            (Array("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n".utf8), 400...400),
            (Array("GET /\u{1}\u{7f} HTTP/1.1\r\nHost: x\r\n\r\n".utf8), 200...599),
            (Array("GET /".utf8) + [0xFF, 0xC0, 0x00, 0x80] + Array(" HTTP/1.1\r\nHost: x\r\n\r\n".utf8), 200...599),
            (Array("GET / HTTP/1.1\r\nHost: x\r\nX-Bin: ".utf8) + [0xFF, 0xFE, 0x00, 0x01] + Array("\r\n\r\n".utf8), 200...599),
            (Array("\r\n\r\n\r\n".utf8), 400...599),
            ([0x16, 0x03, 0x01, 0x00, 0xA5, 0x01, 0x00, 0x00, 0xA1, 0x03, 0x03] + Array(repeating: 0, count: 64), 400...599),
        ]
        for (request, acceptable) in odd {
            // nil means the server closed without answering, which is fine
            // for garbage; anything it does answer must be in range.
            if let response = exchange(port: port, request, timeout: .seconds(3)) {
                #expect(acceptable.contains(response.status),
                        "\(String(decoding: request.prefix(40), as: UTF8.self).debugDescription) → \(response.status)")
            }
        }
        #expect(handler.log.withLock { $0.refusals } == [400], "differing duplicate Content-Length goes through refusal()")
        let fine = try #require(exchange(port: port, "GET /still-alive HTTP/1.1\r\nHost: x\r\n\r\n"))
        #expect(fine.status == 200)
        #expect(waitUntil(timeout: .seconds(3)) { server.inFlight == 0 })
    }

    @Test("a response that cannot be sent becomes a 500")
    func badResponsesBecome500() throws {
        let handler = TestHandler(onHandle: { request in
            switch request.head.path {
            case "/status-42": HTTPResponse(status: 42, contentType: "text/plain", body: "x")
            case "/status-100": HTTPResponse(status: 100, contentType: "text/plain", body: "x")
            case "/newline": HTTPResponse(status: 200, contentType: "text/plain", body: "x",
                                          headers: [(name: "X-Evil", value: "a\r\nSet-Cookie: b")])
            case "/bad-name": HTTPResponse(status: 200, contentType: "text/plain", body: "x",
                                           headers: [(name: "Bad Name", value: "v")])
            case "/framing": HTTPResponse(status: 201, contentType: "text/plain", body: "four",
                                          headers: [(name: "Content-Length", value: "999"),
                                                    (name: "Transfer-Encoding", value: "chunked")])
            default: HTTPResponse(status: 204, headers: [], body: [])
            }
        })
        let server = try startServer(handler: handler)
        defer { _ = server.shutdown(grace: .seconds(1)) }
        let port = server.boundAddress.port
        for path in ["/status-42", "/status-100", "/newline", "/bad-name"] {
            let response = try #require(exchange(port: port, "GET \(path) HTTP/1.1\r\nHost: x\r\n\r\n"))
            #expect(response.status == 500, "\(path)")
            #expect(response.header("X-Evil") == nil)
            #expect(response.header("Set-Cookie") == nil)
        }
        // Framing headers from the application are ignored, MHD sets its own.
        let framing = try #require(exchange(port: port, "GET /framing HTTP/1.1\r\nHost: x\r\n\r\n"))
        #expect(framing.status == 201)
        #expect(framing.text == "four")
        #expect(framing.header("Content-Length") == "4")
        let empty = try #require(exchange(port: port, "GET /other HTTP/1.1\r\nHost: x\r\n\r\n"))
        #expect(empty.status == 204)
        #expect(waitUntil { server.inFlight == 0 })
    }
}
}
