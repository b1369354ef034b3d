import Foundation

#if canImport(Glibc)
import Glibc
#endif

// The one raw HTTP/1.1 client of the test targets: a socket on which a test sends exactly the bytes it means,
// malformed ones included, and reads what comes back within a bound.

/// A socket call that failed, with its errno (`code == ECONNREFUSED` once a server stopped listening).
public struct ClientError: Error, CustomStringConvertible {
    public let code: Int32
    public let what: String
    public var description: String { "\(what): \(String(cString: strerror(code)))" }
}

/// A parsed HTTP/1.1 response.
public struct RawResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// What one bounded read saw.
public enum ReadOutcome: Equatable, Sendable {
    case data([UInt8])
    case closed
    case reset
    case timedOut
}

/// A blocking TCP client for loopback addresses only, with explicit control
/// over every byte sent; all waits are bounded.
public final class RawClient {
    public let descriptor: Int32
    private var buffer: [UInt8] = []

    /// Connects to 127.0.0.1 or ::1 (the only hosts the tests contact).
    ///
    /// `source` binds the socket to another loopback address first (any of
    /// 127.0.0.0/8 is loopback on Linux), so that the server sees a different
    /// peer address and counts the connection against another per-IP limit.
    public init(host: String = "127.0.0.1", port: Int, source: String? = nil) throws(ClientError) {
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
    public func send(_ bytes: [UInt8]) -> Bool {
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
    public func send(_ text: String) -> Bool {
        send(Array(text.utf8))
    }

    /// One read of whatever is available, waiting at most `timeout`.
    public func readSome(timeout: Duration) -> ReadOutcome {
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
    public func waitForClose(timeout: Duration) -> (outcome: ReadOutcome, sawData: Bool) {
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
    public func readResponse(timeout: Duration = .seconds(3)) -> RawResponse? {
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
public func exchange(port: Int, host: String = "127.0.0.1", source: String? = nil, _ raw: String,
                     timeout: Duration = .seconds(3)) -> RawResponse? {
    exchange(port: port, host: host, source: source, Array(raw.utf8), timeout: timeout)
}

public func exchange(port: Int, host: String = "127.0.0.1", source: String? = nil, _ raw: [UInt8],
                     timeout: Duration = .seconds(3)) -> RawResponse? {
    guard let client = try? RawClient(host: host, port: port, source: source) else { return nil }
    client.send(raw)
    return client.readResponse(timeout: timeout)
}
