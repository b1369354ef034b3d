public import Foundation
import PayhookHTTP

/// A small blocking HTTP/1.1 client for `payhook simulate`: one request per connection
/// (`Connection: close`), the response read to the end. Sends exactly the bytes it is given, over plain TCP
/// or, for an `https://` target, over TLS (``TLSClientSession``).
public enum HTTPClient {
    public struct Response: Sendable {
        public var status: Int
        public var headers: [(name: String, value: String)]
        public var body: [UInt8]
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// `http://host:port/path` or `https://host:port/path` split into its parts.
    public struct Target: Sendable {
        public var host: String
        public var port: Int
        public var path: String
        /// An `https://` URL: the request goes over TLS.
        public var tls: Bool

        public init(url: String) throws(Failure) {
            let scheme: String
            if url.hasPrefix("http://") {
                scheme = "http://"
                tls = false
            } else if url.hasPrefix("https://") {
                scheme = "https://"
                tls = true
            } else {
                throw Failure(description: "the URL must start with http:// or https://: \(url)")
            }
            let defaultPort = tls ? 443 : 80
            let rest = url.dropFirst(scheme.count)
            let authority = rest.prefix { $0 != "/" }
            path = rest.count > authority.count ? String(rest.dropFirst(authority.count)) : "/"
            if authority.hasPrefix("["), let close = authority.firstIndex(of: "]") {
                host = String(authority[authority.index(after: authority.startIndex)..<close])
                let after = authority[authority.index(after: close)...]
                port = after.hasPrefix(":") ? Int(after.dropFirst()) ?? -1 : defaultPort
            } else if let colon = authority.lastIndex(of: ":") {
                host = String(authority[..<colon])
                port = Int(authority[authority.index(after: colon)...]) ?? -1
            } else {
                host = String(authority)
                port = defaultPort
            }
            guard !host.isEmpty, (1...65535).contains(port) else { throw Failure(description: "bad host or port in \(url)") }
        }

        /// The Host header value.
        public var authority: String { (host.contains(":") ? "[\(host)]" : host) + (port == (tls ? 443 : 80) ? "" : ":\(port)") }
    }

    /// Sends `request` (complete HTTP bytes) to `target` and parses the answer. Over TLS the server's certificate
    /// is checked against `trustFile` (PEM) when given, else against the system's trusted authorities.
    public static func exchange(_ request: [UInt8], to target: Target, trustFile: String? = nil, timeout: TimeInterval = 30) throws(Failure) -> Response {
        try exchange(request, host: target.host, port: target.port, tls: target.tls, trustFile: trustFile, timeout: timeout)
    }

    /// Sends `request` (complete HTTP bytes) to host:port and parses the answer.
    public static func exchange(
        _ request: [UInt8], host: String, port: Int, tls: Bool = false, trustFile: String? = nil, timeout: TimeInterval = 30
    ) throws(Failure) -> Response {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let first = list else {
            throw Failure(description: "cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(list) }
        let fd = socket(first.pointee.ai_family, first.pointee.ai_socktype, first.pointee.ai_protocol)
        guard fd >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var limit = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        guard connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else {
            throw Failure(description: "connect to \(host):\(port): \(String(cString: strerror(errno)))")
        }
        if tls {
            do {
                let session = try TLSClientSession(socket: fd, host: host, trustFile: trustFile)
                try session.send(request)
                return try parse(try session.receiveAll())
            } catch let failure as TLSClientSession.Failure {
                throw Failure(description: "https://\(host):\(port): \(failure)")
            } catch let failure as Failure {
                throw failure
            } catch {
                throw Failure(description: "\(error)")
            }
        }
        var offset = 0
        while offset < request.count {
            let n = request[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw Failure(description: "send to \(host):\(port): \(String(cString: strerror(errno)))") }
            offset += n
        }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { break }
            guard n > 0 else { throw Failure(description: "no complete answer from \(host):\(port): \(String(cString: strerror(errno)))") }
            bytes.append(contentsOf: buffer[0..<n])
        }
        return try parse(bytes)
    }

    static func parse(_ bytes: [UInt8]) throws(Failure) -> Response {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let end = bytes.indices.first(where: { bytes[$0...].starts(with: separator) }) else {
            throw Failure(description: "the answer is not HTTP")
        }
        let lines = String(decoding: bytes[..<end], as: UTF8.self).components(separatedBy: "\r\n")
        let parts = lines[0].split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/"), let status = Int(parts[1]) else {
            throw Failure(description: "the answer has no HTTP status line")
        }
        var headers: [(name: String, value: String)] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        var body = Array(bytes[(end + 4)...])
        if headers.contains(where: { $0.name.lowercased() == "transfer-encoding" && $0.value.lowercased().contains("chunked") }) {
            body = dechunk(body)
        }
        return Response(status: status, headers: headers, body: body)
    }

    static func dechunk(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var index = 0
        while index < bytes.count {
            guard let lineEnd = bytes[index...].firstIndex(of: 10) else { break }
            let sizeText = String(decoding: bytes[index..<lineEnd], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard let size = Int(sizeText.split(separator: ";").first ?? "", radix: 16), size > 0 else { break }
            let start = lineEnd + 1
            guard start + size <= bytes.count else { break }
            out.append(contentsOf: bytes[start..<(start + size)])
            index = start + size + 2
        }
        return out
    }
}
