import Foundation
import PayhookHTTP
import PayhookTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `trusted_proxies` and its X-Forwarded-For / X-Real-IP rules (docs/proxy.md), pure.
@Suite("forwarded client address")
struct ForwardedAddressTests {
    static let proxies = TrustedProxies([
        try! CIDRBlock.parse("127.0.0.1/32"), try! CIDRBlock.parse("10.0.0.0/8"), try! CIDRBlock.parse("::1/128"),
    ])

    func client(_ peer: String, _ headers: [(String, String)]) -> ForwardedAddress {
        Self.proxies.clientAddress(peer: peer, headers: headers.map { (name: $0.0, value: $0.1) })
    }

    @Test("CIDR blocks: IPv4 and IPv6, bare addresses, and what is refused")
    func cidr() throws {
        let ten = try CIDRBlock.parse("10.0.0.0/8")
        #expect(ten.contains(IPAddress.parse("10.255.1.2")!))
        #expect(!ten.contains(IPAddress.parse("11.0.0.1")!))
        #expect(!ten.contains(IPAddress.parse("::ffff:10.0.0.1")!), "no family mixing")
        let v6 = try CIDRBlock.parse("2001:db8::/32")
        #expect(v6.contains(IPAddress.parse("2001:db8:ffff::1")!))
        #expect(!v6.contains(IPAddress.parse("2001:db9::1")!))
        #expect(try CIDRBlock.parse("192.0.2.7").description == "192.0.2.7/32")
        #expect(try CIDRBlock.parse("0.0.0.0/0").contains(IPAddress.parse("203.0.113.9")!))
        #expect(try CIDRBlock.parse("::/0").contains(IPAddress.parse("::1")!))
        for bad in ["", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.0/8/8", "10.0.0/8", "10.0.0.1/8", "10.0.0.0/+8",
                    "10.0.0.0/ 8", "[::1]/128", "example.com/8", "10.0.0.0/0008", "fe80::1%eth0/128", " 10.0.0.0/8"] {
            #expect(throws: HTTPServerError.self, "\(bad)") { try CIDRBlock.parse(bad) }
        }
    }

    @Test("from a trusted peer: the right-most untrusted X-Forwarded-For address, trusted hops skipped")
    func rightMostUntrusted() {
        #expect(client("127.0.0.1", [("X-Forwarded-For", "203.0.113.9")]) == .forwarded(IPAddress.parse("203.0.113.9")!))
        // A client's own forged entry is left of what the proxy appended, so it is never taken.
        #expect(client("127.0.0.1", [("X-Forwarded-For", "198.51.100.1, 203.0.113.9")])
            == .forwarded(IPAddress.parse("203.0.113.9")!))
        // Trusted hops (10/8 here) on the right are skipped.
        #expect(client("127.0.0.1", [("x-forwarded-for", "198.51.100.1,203.0.113.9 , 10.1.2.3,\t10.0.0.1")])
            == .forwarded(IPAddress.parse("203.0.113.9")!))
        // Several fields are one list, in order.
        #expect(client("::1", [("X-Forwarded-For", "198.51.100.1"), ("X-Forwarded-For", "2001:DB8::0:1")])
            == .forwarded(IPAddress.parse("2001:db8::1")!))
        // All trusted: the left-most.
        #expect(client("127.0.0.1", [("X-Forwarded-For", "10.0.0.5, 10.0.0.6")]) == .forwarded(IPAddress.parse("10.0.0.5")!))
        // X-Forwarded-For wins over X-Real-IP; X-Real-IP alone is used.
        #expect(client("127.0.0.1", [("X-Real-IP", "192.0.2.1"), ("X-Forwarded-For", "203.0.113.9")])
            == .forwarded(IPAddress.parse("203.0.113.9")!))
        #expect(client("127.0.0.1", [("X-Real-IP", " 192.0.2.1 ")]) == .forwarded(IPAddress.parse("192.0.2.1")!))
        #expect(client("127.0.0.1", []) == .absent)
    }

    /// nginx appends the address it saw to whatever X-Forwarded-For the client sent, so the client controls
    /// everything left of it. Garbage there is never read: otherwise a client could make the proxy's own entry
    /// unusable, its request would count as the proxy's, and the per-client limit would not hold it.
    @Test("what a client sent left of its own address is not read")
    func clientGarbageLeftOfItsAddressIsNotRead() {
        for garbage in ["nonsense", "", "203.0.113.9:443", "unknown", "[2001:db8::1]", "1.2.3.4 5.6.7.8"] {
            #expect(client("127.0.0.1", [("X-Forwarded-For", "\(garbage), 198.51.100.7")])
                == .forwarded(IPAddress.parse("198.51.100.7")!), "\(garbage)")
            #expect(client("127.0.0.1", [("X-Forwarded-For", garbage), ("X-Forwarded-For", "198.51.100.7, 10.0.0.1")])
                == .forwarded(IPAddress.parse("198.51.100.7")!), "\(garbage)")
        }
    }

    @Test("from any other peer both headers are ignored")
    func untrustedPeer() {
        #expect(client("192.0.2.50", [("X-Forwarded-For", "203.0.113.9"), ("X-Real-IP", "203.0.113.9")]) == .direct)
        #expect(client("::2", [("X-Forwarded-For", "203.0.113.9")]) == .direct)
        #expect(TrustedProxies().clientAddress(peer: "127.0.0.1", headers: [(name: "X-Forwarded-For", value: "203.0.113.9")]) == .direct)
    }

    @Test("a malformed element the right-to-left reading reaches makes the header unusable")
    func malformed() {
        for value in ["", " ", "203.0.113.9,", "10.0.0.1, ,10.0.0.2", "203.0.113.9:443", "[2001:db8::1]", "unknown", "203.0.113.9 198.51.100.1",
                      "203.0.113.256", "fe80::1%eth0", "203.0.113.9;for=x", String(repeating: "1", count: 60), "١٢٣.0.0.1"] {
            #expect(client("127.0.0.1", [("X-Forwarded-For", value)]) == .malformed(header: "X-Forwarded-For"), "\(value)")
        }
        // Garbage between the proxies' hops is reached: unusable.
        #expect(client("127.0.0.1", [("X-Forwarded-For", "nonsense, 10.0.0.1")]) == .malformed(header: "X-Forwarded-For"))
        #expect(client("127.0.0.1", [("X-Real-IP", "203.0.113.9, 198.51.100.1")]) == .malformed(header: "X-Real-IP"))
        #expect(client("127.0.0.1", [("X-Real-IP", "203.0.113.9"), ("X-Real-IP", "198.51.100.1")]) == .malformed(header: "X-Real-IP"))
    }
}

/// The listener with trusted proxies and with several addresses, live on loopback.
extension PayhookHTTPSuite {
    @Suite("proxies and several addresses")
    struct ProxyListenerTests {
        static func limits(trusting blocks: [String], perIP: Int = 3) throws -> HTTPLimits {
            var limits = HTTPLimits.test
            limits.maxConnectionsPerIP = perIP
            limits.connectionTimeoutSeconds = 10
            limits.threads = 8
            limits.trustedProxies = TrustedProxies(try blocks.map { try CIDRBlock.parse($0) })
            return limits
        }

        /// A handler that answers with the request's client and peer addresses.
        final class Recorder: Sendable {
            let handler: TestHandler
            init() {
                handler = TestHandler(onHandle: { request in
                    let text = "\(request.head.remoteAddress) \(request.head.peerAddress)"
                    return HTTPResponse(status: 200, contentType: "text/plain", body: text)
                })
            }
        }

        static func get(_ port: Int, path: String = "/", source: String? = nil, _ extra: String = "") -> RawResponse? {
            exchange(port: port, source: source, "GET \(path) HTTP/1.1\r\nHost: x\r\n\(extra)Connection: close\r\n\r\n")
        }

        @Test("a trusted peer's X-Forwarded-For gives remoteAddress; the same header from another peer is ignored")
        func remoteAddressFromTrustedPeerOnly() throws {
            let recorder = Recorder()
            let server = try HTTPServer(listen: ListenAddress(host: "127.0.0.1", port: 0),
                                        limits: try Self.limits(trusting: ["127.0.0.1/32"]), handler: recorder.handler, logger: testLogger)
            defer { _ = server.shutdown(grace: .seconds(1)) }
            let port = server.boundAddress.port
            let trusted = try #require(Self.get(port, "X-Forwarded-For: 198.51.100.7, 203.0.113.9\r\n"))
            #expect(trusted.text == "203.0.113.9 127.0.0.1")
            let realIP = try #require(Self.get(port, "X-Real-IP: 2001:db8::9\r\n"))
            #expect(realIP.text == "2001:db8::9 127.0.0.1")
            // 127.0.0.2 is not in 127.0.0.1/32: its headers are not read.
            let direct = try #require(Self.get(port, source: "127.0.0.2", "X-Forwarded-For: 203.0.113.9\r\nX-Real-IP: 203.0.113.9\r\n"))
            #expect(direct.text == "127.0.0.2 127.0.0.2")
            // Malformed: ignored, the peer stays, and it is counted.
            #expect(server.malformedForwardingHeaders == 0)
            let bad = try #require(Self.get(port, "X-Forwarded-For: 203.0.113.9:5555\r\n"))
            #expect(bad.text == "127.0.0.1 127.0.0.1")
            _ = Self.get(port, "X-Forwarded-For: nonsense\r\n")
            #expect(server.malformedForwardingHeaders == 2)
        }

        @Test("a direct peer's address is written as inet_ntop(3) writes it: octets of one, two and three digits, zeros")
        func directPeerAddressText() throws {
            let recorder = Recorder()
            let server = try HTTPServer(listen: ListenAddress(host: "127.0.0.1", port: 0),
                                        limits: try Self.limits(trusting: []), handler: recorder.handler, logger: testLogger)
            defer { _ = server.shutdown(grace: .seconds(1)) }
            let port = server.boundAddress.port
            for source in ["127.0.0.1", "127.10.200.5", "127.99.100.255", "127.0.10.0", "127.255.9.99"] {
                let reply = try #require(Self.get(port, source: source))
                #expect(reply.text == "\(source) \(source)")
            }
        }

        @Test("header names match ignoring ASCII case only")
        func headerNamesIgnoreASCIICase() {
            #expect(HTTPHeaderName.equals("Content-Length", "content-length"))
            #expect(HTTPHeaderName.equals("TRANSFER-ENCODING", "transfer-encoding"))
            #expect(!HTTPHeaderName.equals("Content-Lengths", "content-length"))
            #expect(!HTTPHeaderName.equals("Host", "hosT2"))
            // "@" and "[" sit just outside A-Z: no case of theirs is "`" or "{".
            #expect(!HTTPHeaderName.equals("@", "`"))
            #expect(!HTTPHeaderName.equals("[", "{"))
            // The Kelvin sign lowercases to "k" in Unicode, not in ASCII.
            #expect(!HTTPHeaderName.equals("\u{212A}", "k"))
            let head = HTTPRequestHead(method: "GET", target: "/", headers: [(name: "X-Real-IP", value: "1")],
                                       remoteAddress: "127.0.0.1", peerAddress: "127.0.0.1", receivedAt: Date())
            #expect(head.header("x-real-ip") == "1")
            #expect(head.header("x-real-i") == nil)
        }

        @Test("per forwarded address: past maxConnectionsPerIP concurrent requests → 429 with Retry-After; other addresses pass")
        func forwardedLimit() throws {
            let recorder = Recorder()
            let server = try HTTPServer(listen: ListenAddress(host: "127.0.0.1", port: 0),
                                        limits: try Self.limits(trusting: ["127.0.0.1/32"], perIP: 2), handler: recorder.handler, logger: testLogger)
            defer { _ = server.shutdown(grace: .seconds(1)) }
            let port = server.boundAddress.port
            // Two slow requests from 203.0.113.9: heads sent, bodies held back. A slow body keeps the request in
            // flight without holding a pool thread (a blocked handler would also stall the other connections its
            // thread accepted).
            let head = "POST /slow HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\r\nContent-Length: 4\r\n\r\n"
            let held = try (0..<2).map { _ in try RawClient(port: port) }
            for client in held { client.send(head + "ab") }
            #expect(waitUntil(timeout: .seconds(5)) { server.forwardedInFlight("203.0.113.9") == 2 })
            let third = try #require(exchange(port: port, head + "abcd"))
            #expect(third.status == 429)
            #expect(third.header("Retry-After") == "1")
            #expect(recorder.handler.refusals == [429])
            // Another forwarded address, through the same proxy address, is not affected.
            let other = try #require(Self.get(port, "X-Forwarded-For: 198.51.100.4\r\n"))
            #expect(other.status == 200)
            #expect(other.text == "198.51.100.4 127.0.0.1")
            for client in held {
                client.send("cd")
                #expect(client.readResponse()?.status == 200)
            }
            // The slots are given back when the requests end.
            #expect(waitUntil(timeout: .seconds(2)) { server.forwardedInFlight("203.0.113.9") == 0 })
            #expect(Self.get(port, "X-Forwarded-For: 203.0.113.9\r\n")?.status == 200)
        }

        @Test("trusted peers are exempt from the accept-time per-IP limit; a direct peer is still limited")
        func acceptLimit() throws {
            let server = try HTTPServer(listen: ListenAddress(host: "127.0.0.1", port: 0),
                                        limits: try Self.limits(trusting: ["127.0.0.1/32"], perIP: 2), handler: TestHandler(), logger: testLogger)
            defer { _ = server.shutdown(grace: .seconds(1)) }
            let port = server.boundAddress.port
            func closedCount(_ clients: [RawClient]) -> Int {
                clients.filter {
                    let outcome = $0.waitForClose(timeout: .milliseconds(300)).outcome
                    return outcome == .closed || outcome == .reset
                }.count
            }
            // Five idle connections from the proxy address: none refused.
            let fromProxy = try (0..<5).map { _ in try RawClient(port: port) }
            #expect(closedCount(fromProxy) == 0)
            // Each can still carry a request.
            for (index, client) in fromProxy.enumerated() {
                client.send("GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.\(index)\r\n\r\n")
                #expect(client.readResponse()?.status == 200)
            }
            // Four from an untrusted peer: two over the limit are closed at once.
            let direct = try (0..<4).map { _ in try RawClient(port: port, source: "127.0.0.3") }
            #expect(closedCount(direct) == 2)
        }

        @Test("several addresses: one handler on each, threads split, one shutdown stops them all")
        func severalAddresses() throws {
            let second = hasIPv6Loopback() ? "::1" : "127.0.0.1"
            let handler = TestHandler()
            var limits = HTTPLimits.test
            limits.threads = 3
            let server = try HTTPServer(listen: [ListenAddress(host: "127.0.0.1", port: 0), ListenAddress(host: second, port: 0)],
                                        limits: limits, handler: handler, logger: testLogger)
            #expect(server.boundAddresses.count == 2)
            #expect(server.boundAddress == server.boundAddresses[0])
            #expect(server.boundAddresses[1].host == second)
            #expect(server.boundAddresses[0].port != 0 && server.boundAddresses[1].port != 0)
            for address in server.boundAddresses {
                let host = address.host == "::1" ? "::1" : "127.0.0.1"
                let response = exchange(port: address.port, host: host, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
                #expect(response?.status == 200)
                #expect(response?.text == "hi")
            }
            #expect(handler.handledCount == 2)
            #expect(server.shutdown(grace: .seconds(1)))
            #expect(server.isStopped)
            for address in server.boundAddresses {
                let host = address.host == "::1" ? "::1" : "127.0.0.1"
                #expect(throws: ClientError.self) { _ = try RawClient(host: host, port: address.port) }
            }
        }

        @Test("several addresses: limits are totals split evenly; fewer threads than addresses is refused")
        func limitShares() throws {
            var limits = HTTPLimits.test
            limits.threads = 5
            limits.maxConnections = 11
            let shares = (0..<2).map { HTTPServer.share(limits, daemons: 2, index: $0) }
            #expect(shares.map(\.threads) == [3, 2])
            #expect(shares.map(\.maxConnections) == [6, 5])
            #expect(shares.allSatisfy { $0.maxConnectionsPerIP == limits.maxConnectionsPerIP })
            limits.threads = 2
            limits.maxConnections = 2
            #expect(throws: HTTPServerError.self) {
                _ = try HTTPServer(listen: (0..<3).map { _ in ListenAddress(host: "127.0.0.1", port: 0) },
                                   limits: limits, handler: TestHandler(), logger: testLogger)
            }
        }

        @Test("an address that cannot be bound leaves the others unbound and nothing running")
        func partialBindFailure() throws {
            let taken = try HTTPServer(listen: ListenAddress(host: "127.0.0.1", port: 0), limits: .test, handler: TestHandler(), logger: testLogger)
            defer { _ = taken.shutdown(grace: .seconds(1)) }
            // A fixed free port for the first address: found by binding and closing a socket.
            let probe = try HTTPServer(listen: ListenAddress(host: "127.0.0.1", port: 0), limits: .test, handler: TestHandler(), logger: testLogger)
            let free = probe.boundAddress.port
            _ = probe.shutdown(grace: .zero)
            #expect(throws: HTTPServerError.self) {
                _ = try HTTPServer(listen: [ListenAddress(host: "127.0.0.1", port: free), taken.boundAddress],
                                   limits: .test, handler: TestHandler(), logger: testLogger)
            }
            // The first address was released again: it can be bound.
            let again = try HTTPServer(listen: ListenAddress(host: "127.0.0.1", port: free), limits: .test, handler: TestHandler(), logger: testLogger)
            _ = again.shutdown(grace: .zero)
        }
    }
}
