#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IP address as its raw bytes: 4 for IPv4, 16 for IPv6.
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    public let bytes: [UInt8]

    /// Parses a bare IPv4 or IPv6 literal: no brackets, no port, no zone ("%eth0"), no surrounding space.
    /// inet_pton(3) does the parsing, so "1.2.3" and "01.2.3.4" style shorthands are refused.
    public static func parse<S: StringProtocol>(_ text: S) -> IPAddress? {
        // The longest IPv6 literal is 45 characters ("ffff:…:255.255.255.255"); anything longer is not one,
        // whatever inet_pton would say, and is never copied into a C string.
        let utf8 = text.utf8
        guard !utf8.isEmpty, utf8.count <= 45 else { return nil }
        for byte in utf8 {
            let ok = (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f"))
                || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "F"))
                || byte == UInt8(ascii: ".") || byte == UInt8(ascii: ":")
            if !ok { return nil }
        }
        let string = String(text)
        if utf8.contains(UInt8(ascii: ":")) {
            var address = in6_addr()
            guard inet_pton(AF_INET6, string, &address) == 1 else { return nil }
            return IPAddress(bytes: withUnsafeBytes(of: &address) { Array($0) })
        }
        var address = in_addr()
        guard inet_pton(AF_INET, string, &address) == 1 else { return nil }
        return IPAddress(bytes: withUnsafeBytes(of: &address) { Array($0) })
    }

    public var isIPv4: Bool { bytes.count == 4 }

    /// The canonical text (inet_ntop): "203.0.113.9", "2001:db8::1". Equal addresses give equal texts,
    /// which is what makes the text usable as the key of the per-address limit.
    public var description: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = isIPv4 ? AF_INET : AF_INET6
        let ok = bytes.withUnsafeBytes { raw in
            inet_ntop(family, raw.baseAddress, &buffer, socklen_t(buffer.count)) != nil
        }
        guard ok else { return "unknown" }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}

/// An address range written as a CIDR block: "10.0.0.0/8", "::1/128".
public struct CIDRBlock: Sendable, Equatable, CustomStringConvertible {
    public let network: IPAddress
    public let prefixLength: Int

    /// Parses "address/prefix". A bare address stands for itself (/32 or /128). Refused: a prefix longer
    /// than the family allows, a prefix that is not plain decimal, and bits set past the prefix
    /// ("10.0.0.1/8"), which more often is a typo than an intent.
    public static func parse(_ text: String) throws(HTTPServerError) -> CIDRBlock {
        func invalid(_ reason: String) -> HTTPServerError {
            HTTPServerError("invalid CIDR block \"\(LogText.escape(text.utf8.prefix(64)))\": \(reason)")
        }
        let parts = text.split(separator: "/", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count <= 2 else { throw invalid("more than one \"/\"") }
        guard let network = IPAddress.parse(parts[0]) else {
            throw invalid("\"\(LogText.escape(parts[0].utf8.prefix(64)))\" is not an IPv4 or IPv6 address")
        }
        let maximum = network.bytes.count * 8
        var prefix = maximum
        if parts.count == 2 {
            let digits = parts[1]
            guard !digits.isEmpty, digits.count <= 3,
                  digits.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                  let value = Int(digits), value <= maximum
            else {
                throw invalid("the prefix length must be a number in 0...\(maximum)")
            }
            prefix = value
        }
        let block = CIDRBlock(network: network, prefixLength: prefix)
        guard block.masked(network) == network else {
            let base = IPAddress(bytes: block.masked(network).bytes)
            throw invalid("bits are set past the /\(prefix) prefix; the block is \(base)/\(prefix)")
        }
        return block
    }

    /// Whether `address` lies in this block. An IPv4 address never matches an IPv6 block and the other way
    /// round (payhook's IPv6 sockets are IPv6-only, so a peer never shows as "::ffff:a.b.c.d").
    public func contains(_ address: IPAddress) -> Bool {
        address.bytes.count == network.bytes.count && masked(address) == network
    }

    private func masked(_ address: IPAddress) -> IPAddress {
        var bytes = address.bytes
        for index in bytes.indices {
            let keep = max(0, min(8, prefixLength - index * 8))
            bytes[index] &= keep == 0 ? 0 : UInt8(truncatingIfNeeded: 0xFF << (8 - keep))
        }
        return IPAddress(bytes: bytes)
    }

    public var description: String { "\(network)/\(prefixLength)" }
}

/// `trusted_proxies`: the peers whose X-Forwarded-For / X-Real-IP is believed (docs/proxy.md).
public struct TrustedProxies: Sendable, Equatable {
    public var blocks: [CIDRBlock]

    public init(_ blocks: [CIDRBlock] = []) {
        self.blocks = blocks
    }

    public var isEmpty: Bool { blocks.isEmpty }

    public func contains(_ address: IPAddress) -> Bool {
        blocks.contains { $0.contains(address) }
    }

    /// What the client's address is for a request from `peer` carrying `headers`.
    public func clientAddress(peer: String, headers: [(name: String, value: String)]) -> ForwardedAddress {
        guard !blocks.isEmpty, let peerAddress = IPAddress.parse(peer), contains(peerAddress) else {
            return .direct
        }
        return ForwardedAddress.resolve(headers: headers, trusted: self)
    }
}

/// The client address a request names through a trusted proxy.
public enum ForwardedAddress: Sendable, Equatable {
    /// The peer is not a trusted proxy: its headers are not looked at.
    case direct
    /// The peer is trusted and sent neither X-Forwarded-For nor X-Real-IP.
    case absent
    /// The client's address, canonical.
    case forwarded(IPAddress)
    /// The header was there but unusable; the peer's address stays the request's.
    case malformed(header: String)

    /// The X-Forwarded-For rule (docs/proxy.md): every value of every X-Forwarded-For field, in order, is one
    /// comma-separated list of bare IP literals; walking it from the right, trusted addresses are skipped
    /// (they are proxies appending what they saw) and the first untrusted one is the client. If all are
    /// trusted the left-most is taken. Without X-Forwarded-For a single X-Real-IP field is used.
    ///
    /// Only the elements up to the client are read. What lies left of it is whatever the client sent (nginx's
    /// `$proxy_add_x_forwarded_for` appends to the client's own header), so garbage there must not make the
    /// address the proxy saw unusable: that would let any client put its requests under the proxy's address
    /// and out of the per-client limit. A malformed element the walk reaches (one a trusted proxy wrote, or
    /// the client's own when every proxy is trusted) makes the header unusable.
    static func resolve(headers: [(name: String, value: String)], trusted: TrustedProxies) -> ForwardedAddress {
        var forwarded: [String] = []
        var realIP: [String] = []
        for field in headers {
            let name = field.name
            // The two names differ in length, so comparing the length first keeps this cheap for the others.
            if name.utf8.count == 15, name.lowercased() == "x-forwarded-for" {
                forwarded.append(field.value)
            } else if name.utf8.count == 9, name.lowercased() == "x-real-ip" {
                realIP.append(field.value)
            }
        }
        if !forwarded.isEmpty {
            var leftMost: IPAddress?
            for value in forwarded.reversed() {
                let elements = value.utf8.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false)
                for element in elements.reversed() {
                    guard let address = parseElement(element) else { return .malformed(header: "X-Forwarded-For") }
                    if !trusted.contains(address) { return .forwarded(address) }
                    leftMost = address
                }
            }
            if let leftMost { return .forwarded(leftMost) }
            return .malformed(header: "X-Forwarded-For")
        }
        if !realIP.isEmpty {
            guard realIP.count == 1, let address = parseElement(realIP[0].utf8[...]) else {
                return .malformed(header: "X-Real-IP")
            }
            return .forwarded(address)
        }
        return .absent
    }

    /// One list element: optional spaces or tabs around a bare IP literal (RFC 9110 section 5.6.1's OWS).
    private static func parseElement(_ element: Substring.UTF8View) -> IPAddress? {
        var slice = element[...]
        while let first = slice.first, first == UInt8(ascii: " ") || first == UInt8(ascii: "\t") { slice = slice.dropFirst() }
        while let last = slice.last, last == UInt8(ascii: " ") || last == UInt8(ascii: "\t") { slice = slice.dropLast() }
        guard let text = String(slice) else { return nil }
        return IPAddress.parse(text)
    }
}
