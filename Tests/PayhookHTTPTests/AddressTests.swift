import Foundation
import Logging
import PayhookHTTP
import PayhookTestSupport
import Testing

extension PayhookHTTPSuite {
@Suite("Listen addresses and startup errors")
struct AddressTests {
    @Test("valid host:port and [ipv6]:port forms", arguments: [
        ("127.0.0.1:8080", "127.0.0.1", 8080),
        ("0.0.0.0:0", "0.0.0.0", 0),
        ("[::1]:8080", "::1", 8080),
        ("[::]:443", "::", 443),
        ("[2001:db8::17]:65535", "2001:db8::17", 65535),
        ("localhost:80", "localhost", 80),
        ("pay-hook.internal_1.example:9000", "pay-hook.internal_1.example", 9000),
    ])
    func parsesValid(text: String, host: String, port: Int) throws {
        let address = try ListenAddress.parse(text)
        #expect(address == ListenAddress(host: host, port: port))
        #expect(address.description == text)
    }

    @Test("each invalid form throws a sentence naming the input", arguments: [
        "", "127.0.0.1", "127.0.0.1:", ":8080", "::1", "::1:8080", "fe80::1:80", "[::1]", "[::1]8080", "[::1",
        "[]:80", "[127.0.0.1]:80", "[::1]:", "127.0.0.1:65536", "127.0.0.1:123456", "127.0.0.1:-1", "127.0.0.1:+80",
        "127.0.0.1:80a", "127.0.0.1: 80", " 127.0.0.1:80", "host name:80", "256.1.1.1:80", "-bad.example:80",
        "bad-.example:80", "a..b:80", "example.:80", "exa/mple:80",
    ])
    func rejectsInvalid(text: String) {
        #expect {
            _ = try ListenAddress.parse(text)
        } throws: { error in
            let message = "\(error)"
            return message.contains("\"\(text)\"") && message.hasPrefix("invalid listen address")
        }
    }

    @Test("the error explains what is wrong")
    func errorSentences() {
        func message(_ text: String) -> String {
            do {
                _ = try ListenAddress.parse(text)
                return "no error"
            } catch {
                return error.description
            }
        }
        #expect(message("127.0.0.1") == "invalid listen address \"127.0.0.1\": missing port; expected host:port or [ipv6]:port")
        // A port alone names the host that is missing, with the three usual ones.
        #expect(message("8080") == "invalid listen address \"8080\": missing host; write 127.0.0.1:8080 (this host only), 0.0.0.0:8080 (every IPv4 address) or [::]:8080 (every IPv6 address)")
        #expect(message("::1:80").contains("must be written in brackets"))
        #expect(message("127.0.0.1:70000").contains("not a number in 0...65535"))
        #expect(message(":80").contains("the host is empty"))
    }

    @Test("binding an address in use throws a clear error naming it")
    func addressInUse() throws {
        let first = try startServer()
        defer { _ = first.shutdown(grace: .seconds(1)) }
        let taken = ListenAddress(host: "127.0.0.1", port: first.boundAddress.port)
        #expect {
            _ = try HTTPServer(listen: taken, limits: .test, handler: TestHandler(), logger: testLogger)
        } throws: { error in
            "\(error)" == "cannot listen on \(taken): Address already in use"
        }
        // The first server is unaffected.
        #expect(exchange(port: first.boundAddress.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")?.status == 200)
    }

    @Test("invalid limits and ports are refused before binding")
    func invalidSettings() {
        var noThreads = HTTPLimits.test
        noThreads.threads = 0
        #expect {
            _ = try HTTPServer(listen: ListenAddress(host: "127.0.0.1", port: 0), limits: noThreads,
                               handler: TestHandler(), logger: testLogger)
        } throws: { error in
            "\(error)".contains("threads")
        }
        var badDeadline = HTTPLimits.test
        badDeadline.requestDeadlineSeconds = .nan
        #expect(throws: HTTPServerError.self) {
            _ = try HTTPServer(listen: ListenAddress(host: "127.0.0.1", port: 0), limits: badDeadline,
                               handler: TestHandler(), logger: testLogger)
        }
        #expect {
            _ = try HTTPServer(listen: ListenAddress(host: "127.0.0.1", port: 70000), limits: .test,
                               handler: TestHandler(), logger: testLogger)
        } throws: { error in
            "\(error)" == "cannot listen on 127.0.0.1:70000: port 70000 is outside 0...65535"
        }
    }
}
}
