import Foundation
import Logging
import PayhookHTTP
import PayhookTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A LogHandler that keeps every line, message and metadata flattened into
/// one string each, at every level.
struct CapturingLogHandler: LogHandler {
    final class Store: Sendable {
        let lines = Mutex<[String]>([])
        var all: [String] { lines.withLock { $0 } }
    }

    let store: Store
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        merged.merge(event.metadata ?? [:]) { _, new in new }
        let fields = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        store.lines.withLock { $0.append("\(event.level) \(event.message) \(fields)") }
    }
}

private let marker = "SECRETMARKER"

/// A raw byte below 0x20 or DEL anywhere in `line`.
private func hasRawControl(_ line: String) -> Bool {
    line.utf8.contains { $0 < 0x20 || $0 == 0x7F }
}

extension PayhookHTTPSuite {
@Suite("Log hygiene")
struct LogHygieneTests {
    @Test("LogText: path only, at most 128 bytes, non-printable bytes, quotes and backslashes escaped")
    func logText() {
        #expect(LogText.path("/notify/unified?money=1&sign=\(marker)") == "/notify/unified")
        #expect(LogText.path("/a\u{1}b\u{1b}[31m\"q\"\\?sign=x") == "/a\\x01b\\x1b[31m\\\"q\\\"\\\\")
        #expect(LogText.path("/caf\u{e9}\u{7f}") == "/caf\\xc3\\xa9\\x7f")
        #expect(LogText.path("") == "")
        let long = "/" + String(repeating: "p", count: 300) + "?sign=\(marker)"
        #expect(LogText.path(long) == "/" + String(repeating: "p", count: 127) + "…")
        // libmicrohttpd's messages: the query goes, up to the quote that closes the URL.
        #expect(LogText.libraryMessage("Failed to send the response headers for the request for `/x?sign=\(marker)&a=\u{1}'. Error: Broken pipe")
            == "Failed to send the response headers for the request for `/x?…'. Error: Broken pipe")
        #expect(LogText.libraryMessage(bytes: Array("bad /a\r\n\u{0}".utf8) + [0xFF]) == "bad /a\\x0d\\x0a\\x00\\xff")
        #expect(LogText.libraryMessage("no query here") == "no query here")
    }

    @Test("at trace level no log line or metadata holds a query, a signature or a raw control byte")
    func noQueryInLogs() throws {
        let store = CapturingLogHandler.Store()
        var logger = Logger(label: "payhook.http.test.capture") { _ in CapturingLogHandler(store: store) }
        logger.logLevel = .trace
        var limits = HTTPLimits.test
        limits.maxBodyBytes = 100
        let handler = TestHandler()
        let server = try HTTPServer(listen: ListenAddress(host: "127.0.0.1", port: 0), limits: limits,
                                    handler: handler, logger: logger)
        let port = server.boundAddress.port
        let controlPath: [UInt8] = Array("/ctl".utf8) + [0x01, 0x1B] + Array("[31m".utf8)
        let query = Array("?money=1&sign=\(marker)".utf8)

        // Refused in the head (413 from the declared length): logs "refusing request".
        let declared = exchange(port: port, Array("POST ".utf8) + controlPath + query
            + Array(" HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n".utf8))
        #expect(declared?.status == 413)
        // An endless chunked body: logs "closing connection: chunked body far over the cap".
        let chunkedClient = try RawClient(port: port)
        chunkedClient.send(Array("POST ".utf8) + controlPath + query
            + Array(" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".utf8))
        for _ in 0..<20 where chunkedClient.send(chunked([[UInt8](repeating: 0x61, count: 100)]).dropLast(5).map { $0 }) {}
        _ = chunkedClient.waitForClose(timeout: .seconds(2))
        // Arguments that overflow the memory pool: libmicrohttpd logs, then
        // closes the connection unanswered ("closed ... before its request completed").
        let manyArguments = (0..<1000).map { "k\($0)=\(marker)" }.joined(separator: "&")
        _ = exchange(port: port, Array("GET ".utf8) + controlPath + Array("?\(manyArguments) HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        // Garbage in the request line: libmicrohttpd answers 400 and logs.
        _ = exchange(port: port, Array("GET /g?sign=\(marker)\u{1} HTTP/1.1 extra\r\nHost: x\r\n\r\n".utf8))
        // An ordinary request still works.
        #expect(exchange(port: port, "GET /fine?sign=\(marker) HTTP/1.1\r\nHost: x\r\n\r\n")?.status == 200)
        #expect(waitUntil(timeout: .seconds(3)) { server.inFlight == 0 })
        #expect(server.shutdown(grace: .seconds(1)))

        let lines = store.all
        // The premise: the requests above were logged, with their path escaped.
        #expect(lines.contains { $0.contains("refusing request with 413") && $0.contains("path=/ctl\\x01\\x1b[31m") },
                "\(lines)")
        #expect(lines.contains { $0.contains("chunked body far over the cap") }, "\(lines)")
        #expect(lines.contains { $0.contains("before its request completed") && $0.contains("path=/ctl\\x01\\x1b[31m") },
                "\(lines)")
        #expect(lines.contains { $0.contains("libmicrohttpd: ") })
        for line in lines {
            #expect(!line.contains(marker), "a log line holds the query: \(line.debugDescription)")
            #expect(!hasRawControl(line), "a log line holds a raw control byte: \(line.debugDescription)")
        }
    }
}
}
