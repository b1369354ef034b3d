import Foundation
import InMemoryLogging
import Logging
import PayhookCore
import PayhookCrypto
import PayhookUnified
import Testing

/// Every bad input gets its documented status (README "HTTP answers") and leaves nothing in new/.
@Suite(.timeLimit(.minutes(2)))
struct BadInputTests {
    struct Case: Sendable, CustomStringConvertible {
        let description: String
        let status: Int
        let body: String?
        let request: @Sendable (String) -> [UInt8]
    }

    static let path = "/notify/unified"

    static func get(_ target: String) -> [UInt8] {
        Array("GET \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
    }

    /// A query built from success.query with the signature recomputed under another secret.
    static func signedWithWrongSecret(_ success: String) -> String {
        let parameters = (try? FormQuery.decode(success))?.filter { $0.name != "sign" } ?? []
        let sign = Hex.encode(Digest.sha1(UnifiedSigning.valuesMessage(parameters, secret: "not-the-demo-secret")))
        return success.replacing(#/sign=[0-9a-f]{40}/#, with: "sign=" + sign)
    }

    static let cases: [Case] = [
        Case(description: "tampered value", status: 401, body: "fail") { _ in get(path + "?" + ((try? Paths.fixture("unified/tampered.query")) ?? "")) },
        Case(description: "wrong secret", status: 401, body: "fail") { s in get(path + "?" + signedWithWrongSecret(s)) },
        Case(description: "unknown tenant", status: 401, body: "fail") { s in get(path + "?" + s.replacingOccurrences(of: "domainCode=demo", with: "domainCode=nobody")) },
        Case(description: "missing sign", status: 401, body: "fail") { s in get(path + "?" + s.replacing(#/&sign=[0-9a-f]{40}/#, with: "")) },
        Case(description: "repeated parameter", status: 400, body: "fail") { s in get(path + "?" + s + "&money=100") },
        Case(description: "broken escape", status: 400, body: "fail") { s in get(path + "?" + s.replacingOccurrences(of: "%E5", with: "%G5")) },
        Case(description: "truncated escape", status: 400, body: "fail") { s in get(path + "?" + s + "&x=%E") },
        Case(description: "swapped values (semantic check)", status: 400, body: "fail") { s in
            get(path + "?" + s.replacingOccurrences(of: "money=100&", with: "money=1767225600000&").replacingOccurrences(of: "payTime=1767225600000&", with: "payTime=100&"))
        },
        Case(description: "huge query", status: 414, body: nil) { s in get(path + "?" + s + "&pad=" + String(repeating: "a", count: 40_000)) },
        Case(description: "oversize body", status: 413, body: "fail") { s in
            Array("GET \(path)?\(s) HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 70000\r\n\r\n".utf8) + [UInt8](repeating: 0x41, count: 70000)
        },
        Case(description: "oversize chunked body", status: 413, body: "fail") { s in
            let chunk = [UInt8](repeating: 0x41, count: 8192)
            var bytes = Array("GET \(path)?\(s) HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
            for _ in 0..<10 { bytes += Array("2000\r\n".utf8) + chunk + Array("\r\n".utf8) }
            return bytes + Array("0\r\n\r\n".utf8)
        },
        Case(description: "wrong method", status: 405, body: "fail") { s in
            Array("POST \(path)?\(s) HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".utf8)
        },
        Case(description: "unknown path", status: 404, body: nil) { s in get("/notify/other?" + s) },
        Case(description: "path with a different case", status: 404, body: nil) { s in get("/Notify/Unified?" + s) },
    ]

    @Test(arguments: cases)
    func badInput(_ c: Case) throws {
        let live = try LiveServer()
        defer { live.stop() }
        let success = try Paths.fixture("unified/success.query")
        let reply = try HTTPReply.exchange(c.request(success), port: live.port)
        #expect(reply.status == c.status)
        if let body = c.body { #expect(reply.body == body) }
        #expect(live.events().isEmpty)
        #expect(listing(live.spool + "/ids").isEmpty)
        #expect(listing(live.spool + "/tmp").isEmpty)
        // The server is still serving afterwards.
        #expect(try live.get(Self.path + "?" + success).body == "success")
    }

    @Test func wrongMethodNamesTheAllowedOne() throws {
        let live = try LiveServer()
        defer { live.stop() }
        let reply = try HTTPReply.exchange("DELETE \(Self.path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", port: live.port)
        #expect(reply.status == 405)
        #expect(reply.headers["allow"] == "GET")
    }

    @Test func refusalsAreLoggedWithoutSecretsOrSignatures() throws {
        let live = try LiveServer()
        defer { live.stop() }
        let success = try Paths.fixture("unified/success.query")
        _ = try live.get(Self.path + "?" + Self.signedWithWrongSecret(success))
        _ = try live.get(Self.path + "?" + (try Paths.fixture("unified/tampered.query")))
        let entries = live.log.entries
        #expect(entries.filter { $0.metadata["outcome"] == "bad_signature" }.count == 2)
        let text = entries.map { "\($0.message) \($0.metadata)" }.joined(separator: "\n")
        #expect(!text.contains("demo-secret-rotate-me"))
        #expect(!text.contains("sibling-demo-salt"))
        // Neither the expected signature nor the presented one is logged.
        #expect(!text.contains("b7f9f2f25ccffdb1c02e4ee193f49e377de1d606"))
    }
}
