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
    handler: TestHandler = TestHandler()
) throws -> HTTPServer {
    try HTTPServer(listen: ListenAddress(host: host, port: 0), limits: limits, handler: handler, logger: testLogger)
}

/// Polls `condition` every 5 ms until it holds or `timeout` passes.
func waitUntil(timeout: Duration = .seconds(2), _ condition: () -> Bool) -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if condition() { return true }
        usleep(5_000)
    }
    return condition()
}

func elapsed(since start: ContinuousClock.Instant) -> Double {
    let duration = ContinuousClock.now - start
    return Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

// MARK: - Raw socket client

struct ClientError: Error, CustomStringConvertible {
    let code: Int32
    let what: String
    var description: String { "\(what): \(String(cString: strerror(code)))" }
}

/// A parsed HTTP/1.1 response.
struct RawResponse {
    var status: Int
    var headers: [(name: String, value: String)]
    var body: [UInt8]

    func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    var text: String { String(decoding: body, as: UTF8.self) }
}

enum ReadOutcome: Equatable {
    case data([UInt8])
    case closed
    case reset
    case timedOut
}

/// A blocking TCP client for loopback addresses only, with explicit control
/// over every byte sent; all waits are bounded.
final class RawClient {
    let descriptor: Int32
    private var buffer: [UInt8] = []

    /// Connects to 127.0.0.1 or ::1 (the only hosts the tests contact).
    ///
    /// `source` binds the socket to another loopback address first (any of
    /// 127.0.0.0/8 is loopback on Linux), so that the server sees a different
    /// peer address and counts the connection against another per-IP limit.
    init(host: String = "127.0.0.1", port: Int, source: String? = nil) throws(ClientError) {
        precondition(host == "127.0.0.1" || host == "::1", "tests contact loopback only")
        let family = host.contains(":") ? AF_INET6 : AF_INET
        let descriptor = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw ClientError(code: errno, what: "socket") }
        var timeout = timeval(tv_sec: 3, tv_usec: 0)
        _ = setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        if let source {
            precondition(family == AF_INET && source.hasPrefix("127."), "sources are IPv4 loopback only")
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            local.sin_port = 0
            guard inet_pton(AF_INET, source, &local.sin_addr) == 1 else {
                _ = close(descriptor)
                throw ClientError(code: EINVAL, what: "source address \(source)")
            }
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            if bound != 0 {
                let code = errno
                _ = close(descriptor)
                throw ClientError(code: code, what: "bind to \(source)")
            }
        }
        let status: Int32
        if family == AF_INET6 {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = in_port_t(UInt16(port).bigEndian)
            _ = inet_pton(AF_INET6, host, &address.sin6_addr)
            status = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        } else {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            _ = inet_pton(AF_INET, host, &address.sin_addr)
            status = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        if status != 0 {
            let code = errno
            _ = close(descriptor)
            throw ClientError(code: code, what: "connect to \(host):\(port)")
        }
        self.descriptor = descriptor
    }

    deinit {
        _ = close(descriptor)
    }

    /// Sends everything; false if the peer closed or reset. MSG_NOSIGNAL keeps
    /// a write to a closed connection from raising SIGPIPE.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes {
                Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            if sent < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += sent
        }
        return true
    }

    @discardableResult
    func send(_ text: String) -> Bool {
        send(Array(text.utf8))
    }

    /// One read of whatever is available, waiting at most `timeout`.
    func readSome(timeout: Duration) -> ReadOutcome {
        if !buffer.isEmpty {
            defer { buffer = [] }
            return .data(buffer)
        }
        return rawRead(timeout: timeout)
    }

    private func rawRead(timeout: Duration) -> ReadOutcome {
        let milliseconds = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        var pollDescriptor = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        let ready = poll(&pollDescriptor, 1, max(milliseconds, 0))
        if ready == 0 { return .timedOut }
        if ready < 0 { return .reset }
        var chunk = [UInt8](repeating: 0, count: 65536)
        let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        if count > 0 { return .data(Array(chunk[0..<count])) }
        if count == 0 { return .closed }
        return errno == ECONNRESET ? .reset : .closed
    }

    /// Waits until the server closes the connection (or resets it), reading and
    /// dropping any data. Returns the outcome and whether any data came first.
    func waitForClose(timeout: Duration) -> (outcome: ReadOutcome, sawData: Bool) {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var sawData = false
        while clock.now < deadline {
            let outcome = readSome(timeout: deadline - clock.now)
            switch outcome {
            case .data: sawData = true
            case .closed, .reset, .timedOut: return (outcome, sawData)
            }
        }
        return (.timedOut, sawData)
    }

    /// Reads one response (Content-Length or chunked framing, or until close).
    /// nil when the connection ends or `timeout` passes before a whole response.
    func readResponse(timeout: Duration = .seconds(3)) -> RawResponse? {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        func fill() -> Bool {
            guard clock.now < deadline else { return false }
            switch rawRead(timeout: deadline - clock.now) {
            case .data(let bytes):
                buffer += bytes
                return true
            case .closed, .reset, .timedOut:
                return false
            }
        }
        let separator: [UInt8] = [13, 10, 13, 10]
        var headEnd: Int?
        while headEnd == nil {
            headEnd = buffer.firstRange(of: separator)?.lowerBound
            if headEnd == nil, !fill() { return nil }
        }
        let headText = String(decoding: buffer[0..<headEnd!], as: UTF8.self)
        buffer.removeFirst(headEnd! + 4)
        var lines = headText.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ")
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else { return nil }
        var headers: [(name: String, value: String)] = []
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        var response = RawResponse(status: status, headers: headers, body: [])
        if status == 204 || status == 304 || (100...199).contains(status) {
            return response
        } else if let lengthText = response.header("Content-Length"), let length = Int(lengthText) {
            while buffer.count < length {
                if !fill() { return nil }
            }
            response.body = Array(buffer[0..<length])
            buffer.removeFirst(length)
        } else if response.header("Transfer-Encoding")?.lowercased() == "chunked" {
            while true {
                var lineEnd = buffer.firstRange(of: [13, 10])?.lowerBound
                while lineEnd == nil {
                    if !fill() { return nil }
                    lineEnd = buffer.firstRange(of: [13, 10])?.lowerBound
                }
                let sizeText = String(decoding: buffer[0..<lineEnd!], as: UTF8.self)
                guard let size = Int(sizeText.split(separator: ";")[0], radix: 16) else { return nil }
                buffer.removeFirst(lineEnd! + 2)
                while buffer.count < size + 2 {
                    if !fill() { return nil }
                }
                response.body += buffer[0..<size]
                buffer.removeFirst(size + 2)
                if size == 0 { break }
            }
        } else {
            while fill() {}
            response.body = buffer
            buffer = []
        }
        return response
    }
}

/// Opens a connection (from the loopback address `source` when given), sends `raw`, reads one response.
func exchange(port: Int, host: String = "127.0.0.1", source: String? = nil, _ raw: String,
              timeout: Duration = .seconds(3)) -> RawResponse? {
    exchange(port: port, host: host, source: source, Array(raw.utf8), timeout: timeout)
}

func exchange(port: Int, host: String = "127.0.0.1", source: String? = nil, _ raw: [UInt8],
              timeout: Duration = .seconds(3)) -> RawResponse? {
    guard let client = try? RawClient(host: host, port: port, source: source) else { return nil }
    client.send(raw)
    return client.readResponse(timeout: timeout)
}

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
