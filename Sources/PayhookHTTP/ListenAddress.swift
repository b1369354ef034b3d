#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A failure of the HTTP listener, described in one sentence that names what
/// was being attempted, e.g. "cannot listen on 127.0.0.1:8080: Address already in use".
public struct HTTPServerError: Error, Sendable, CustomStringConvertible, Equatable {
    /// The sentence describing the failure.
    public let message: String

    /// Creates an error carrying `message` as its description.
    public init(_ message: String) {
        self.message = message
    }

    /// The same sentence as `message`.
    public var description: String { message }
}

/// A host and TCP port to listen on.
///
/// The host is an IPv4 literal, an IPv6 literal (without brackets), or a host
/// name resolved at bind time ("localhost"). Port 0 asks the kernel for any
/// free port; `HTTPServer.boundAddress` reports the one it chose.
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    /// "127.0.0.1", "0.0.0.0", "::1", "::", "localhost"; IPv6 without brackets.
    public var host: String
    /// 0...65535; 0 means any free port.
    public var port: Int

    /// Creates an address without validating it; `HTTPServer.init` rejects
    /// an empty host or a port outside 0...65535.
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses "host:port" or "[ipv6]:port".
    ///
    /// Throws, with a sentence naming the input, on a missing host or port, a port
    /// outside 0...65535, an unbracketed IPv6 address, an empty host or a host
    /// that is neither an IP literal nor a plausible host name.
    public static func parse(_ text: String) throws(HTTPServerError) -> ListenAddress {
        func invalid(_ reason: String) -> HTTPServerError {
            HTTPServerError("invalid listen address \"\(text)\": \(reason)")
        }
        if text.isEmpty {
            throw invalid("it is empty; expected host:port or [ipv6]:port")
        }

        let host: String
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw invalid("missing \"]\" after the IPv6 address; expected [ipv6]:port")
            }
            host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            if host.isEmpty {
                throw invalid("the host between the brackets is empty")
            }
            guard isIPv6Literal(host) else {
                throw invalid("\"\(host)\" is not an IPv6 address")
            }
            if rest.isEmpty {
                throw invalid("missing port; expected [ipv6]:port")
            }
            guard rest.hasPrefix(":") else {
                throw invalid("expected \":port\" right after \"]\"")
            }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                // "8080" alone: the port is there, the host is not.
                if text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) {
                    throw invalid("missing host; write 127.0.0.1:\(text) (this host only), 0.0.0.0:\(text) (every IPv4 address) or [::]:\(text) (every IPv6 address)")
                }
                throw invalid("missing port; expected host:port or [ipv6]:port")
            }
            let hostPart = text[..<colon]
            if hostPart.contains(":") {
                throw invalid("an IPv6 address must be written in brackets, e.g. [::1]:8080")
            }
            if hostPart.isEmpty {
                throw invalid("the host is empty; use 0.0.0.0 or [::] to listen on every address")
            }
            host = String(hostPart)
            guard isIPv4Literal(host) || isPlausibleHostName(host) else {
                throw invalid("\"\(host)\" is neither an IP address nor a valid host name")
            }
            portText = text[text.index(after: colon)...]
        }

        if portText.isEmpty {
            throw invalid("missing port after \":\"")
        }
        guard portText.count <= 5,
              portText.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
              let port = Int(portText), (0...65535).contains(port)
        else {
            throw invalid("port \"\(portText)\" is not a number in 0...65535")
        }
        return ListenAddress(host: host, port: port)
    }

    /// "127.0.0.1:8080", or "[::1]:8080" for IPv6.
    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    static func isIPv6Literal(_ text: String) -> Bool {
        var address = in6_addr()
        return inet_pton(AF_INET6, text, &address) == 1
    }

    static func isIPv4Literal(_ text: String) -> Bool {
        var address = in_addr()
        return inet_pton(AF_INET, text, &address) == 1
    }

    /// Letters, digits, "-" and "_" in dot-separated labels of 1...63 bytes
    /// (RFC 1123, plus "_" which some internal names use). A name made only of
    /// digits and dots must be a real IPv4 literal, so "256.1.1.1" is refused
    /// here rather than handed to the resolver.
    static func isPlausibleHostName(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty, bytes.count <= 253 else { return false }
        if bytes.allSatisfy({ ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) || $0 == UInt8(ascii: ".") }) {
            return false
        }
        for label in bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false) {
            guard (1...63).contains(label.count),
                  label.first != UInt8(ascii: "-"), label.last != UInt8(ascii: "-")
            else { return false }
            for byte in label {
                let ok = (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                    || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                    || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                    || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
                if !ok { return false }
            }
        }
        return true
    }
}
