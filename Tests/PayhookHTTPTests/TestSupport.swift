import Foundation
import Logging
import PayhookHTTP
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Logger

/// Quiet by default; PAYHOOK_HTTP_TEST_LOG=1 prints everything to stderr.
let testLogger: Logger = {
    if ProcessInfo.processInfo.environment["PAYHOOK_HTTP_TEST_LOG"] != nil {
        var logger = Logger(label: "payhook.http.test", factory: { StreamLogHandler.standardError(label: $0) })
        logger.logLevel = .debug
        return logger
    }
    return Logger(label: "payhook.http.test", factory: { _ in SwiftLogNoOpLogHandler() })
}()

// MARK: - Handler

/// A handler whose behaviour is given by closures and which records every call.
final class TestHandler: HTTPHandler {
    struct Log: Sendable {
        var heads: [HTTPRequestHead] = []
        var requests: [HTTPRequest] = []
        var refusals: [Int] = []
    }

    let log = Mutex(Log())
    let onHead: @Sendable (HTTPRequestHead) -> HTTPResponse?
    let onHandle: @Sendable (HTTPRequest) -> HTTPResponse

    init(
        onHead: @escaping @Sendable (HTTPRequestHead) -> HTTPResponse? = { _ in nil },
        onHandle: @escaping @Sendable (HTTPRequest) -> HTTPResponse = { request in
            HTTPResponse(status: 200, contentType: "application/octet-stream", body: request.body)
        }
    ) {
        self.onHead = onHead
        self.onHandle = onHandle
    }

    func head(_ head: HTTPRequestHead) -> HTTPResponse? {
        log.withLock { $0.heads.append(head) }
        return onHead(head)
    }

    func handle(_ request: HTTPRequest) -> HTTPResponse {
        log.withLock { $0.requests.append(request) }
        return onHandle(request)
    }

    func refusal(_ status: Int, for head: HTTPRequestHead) -> HTTPResponse {
        log.withLock { $0.refusals.append(status) }
        return HTTPResponse(status: status, contentType: "text/plain", body: "refused \(status)\n",
                            headers: [(name: "X-Refusal", value: "\(status)")])
    }

    var handledCount: Int { log.withLock { $0.requests.count } }
    var refusals: [Int] { log.withLock { $0.refusals } }
    var lastHead: HTTPRequestHead? { log.withLock { $0.heads.last } }
    var lastRequest: HTTPRequest? { log.withLock { $0.requests.last } }
}

// MARK: - Server

extension HTTPLimits {
    /// Short timeouts so that the suite stays fast.
    static var test: HTTPLimits {
        var limits = HTTPLimits()
        limits.connectionTimeoutSeconds = 2
        limits.requestDeadlineSeconds = 5
        limits.threads = 2
        return limits
    }
}

func startServer(
    host: String = "127.0.0.1",
    limits: HTTPLimits = .test,
    handler: any HTTPHandler = TestHandler()
) throws -> HTTPServer {
    try HTTPServer(listen: ListenAddress(host: host, port: 0), limits: limits, handler: handler, logger: testLogger)
}

func elapsed(since start: ContinuousClock.Instant) -> Double {
    let duration = ContinuousClock.now - start
    return Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

// MARK: - Bodies

/// The bytes of a chunked body made of the given chunks.
func chunked(_ chunks: [[UInt8]]) -> [UInt8] {
    var bytes: [UInt8] = []
    for chunk in chunks where !chunk.isEmpty {
        bytes += Array(String(chunk.count, radix: 16).utf8) + [13, 10] + chunk + [13, 10]
    }
    bytes += Array("0\r\n\r\n".utf8)
    return bytes
}

/// True when the machine has the IPv6 loopback address ::1 configured.
func hasIPv6Loopback() -> Bool {
    guard let table = try? String(contentsOfFile: "/proc/net/if_inet6", encoding: .utf8) else { return false }
    return table.split(separator: "\n").contains { $0.hasPrefix("00000000000000000000000000000001") }
}
