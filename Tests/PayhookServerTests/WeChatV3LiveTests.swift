import Foundation
import InMemoryLogging
import PayhookConfig
import PayhookCore
import PayhookCrypto
import PayhookTestSupport
import PayhookWeChat
import Synchronization
import Testing

/// WeChat Pay v3 notifications through the live server (docs/contract.md §3.3): the answers' exact shape, the
/// event files against the schema, and the metrics an operator watches a key migration with. The vectors of
/// Fixtures/wechat-v3 were signed in 2024, so the router's clock is pinned to each one's own time.
@Suite(.timeLimit(.minutes(2)))
struct WeChatV3LiveTests {
    struct Vector: Decodable {
        let name: String
        let headers: [String: String]
        let body: String
    }

    struct Generated: Decodable { let vectors: [Vector] }
    struct Single: Decodable { let vector: Vector }

    static let path = "/notify/wechatpay"
    static let keyID = "PUB_KEY_ID_0000000000000024101100397200000006"

    static func vectors() throws -> [String: Vector] {
        let folder = Paths.fixtures.appendingPathComponent("wechat-v3")
        var all = try JSONDecoder().decode(Generated.self, from: Data(contentsOf: folder.appendingPathComponent("gen-vectors.json"))).vectors
        all.append(try JSONDecoder().decode(Single.self, from: Data(contentsOf: folder.appendingPathComponent("v3-4.json"))).vector)
        return Dictionary(uniqueKeysWithValues: all.map { (String($0.name.prefix { $0 != " " }), $0) })
    }

    static func tenants() throws -> [WeChatV3Tenant] {
        let key = try RSAPublicKey(pem: Array(try Data(contentsOf: Paths.fixtures.appendingPathComponent("wechat-v3/wechat_pay_public_key.pem"))))
        return ["1900000100", "1230000109"].map { mchID in
            WeChatV3Tenant(
                path: path, mchID: mchID, apiV3Keys: [Secret(String(repeating: "x", count: 32)), Secret("a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb")],
                publicKey: .init(id: keyID, key: key))
        }
    }

    /// The router's clock, which the test sets before each request.
    final class Clock: Sendable {
        private let milliseconds = Atomic<Int64>(0)
        func set(_ value: Int64) { milliseconds.store(value, ordering: .relaxed) }
        var now: Int64 { milliseconds.load(ordering: .relaxed) }
    }

    /// A live server with the two v3 tenants.
    static func server(_ clock: Clock) throws -> LiveServer {
        let tenants = try tenants()
        return try LiveServer(configure: { $0.wechatV3 = tenants }, clock: { clock.now })
    }

    static func post(_ live: LiveServer, _ v: Vector, headers: [String: String]? = nil) throws -> RawResponse {
        let body = Array(v.body.utf8)
        var head = "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\nConnection: close\r\n"
        for (name, value) in (headers ?? v.headers).sorted(by: { $0.key < $1.key }) { head += "\(name): \(value)\r\n" }
        return try #require(exchange(port: live.port, Array((head + "\r\n").utf8) + body))
    }

    static func signedAt(_ v: Vector) -> Int64 { Int64(v.headers["Wechatpay-Timestamp"]!)! * 1000 }

    @Test func answersEventsAndSchema() throws {
        let vectors = try Self.vectors()
        let now = Clock()
        let live = try Self.server(now)
        defer { live.stop() }
        for id in ["V3-4", "V3-5", "V3-6", "V3-7", "V3-8"] {
            let v = try #require(vectors[id])
            now.set(Self.signedAt(v))
            let reply = try Self.post(live, v)
            // Success: 204, nothing else (docs/protocols.md §8.6); and again for the retry, a duplicate.
            #expect(reply.status == 204, "\(id): \(reply.text)")
            #expect(reply.body.isEmpty)
            #expect(reply.header("Content-Type") == nil)
            #expect(try Self.post(live, v).status == 204)
        }
        let files = live.events().map { live.spool + "/new/" + $0 }
        #expect(files.count == 5)
        let result = try SchemaTests.validate(files)
        #expect(result.output.contains("checked 5 invalid 0"), "\(result.output)")
        // Every stored event carries its resource and the signed headers.
        for file in files {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file))) as? [String: Any])
            #expect(object["verified_with"] as? String == "rsa-sha256")
            #expect(object["resource"] is [String: Any])
            let headers = try #require((object["raw"] as? [String: Any])?["headers"] as? [String: String])
            #expect(headers["Wechatpay-Serial"] == Self.keyID)
        }
    }

    /// Every refusal of one status has one answer: `{"code":"FAIL","message":…}`, JSON, whatever failed.
    @Test func refusalsAreGenericJSON() throws {
        let vectors = try Self.vectors()
        let now = Clock()
        let live = try Self.server(now)
        defer { live.stop() }
        let v = try #require(vectors["V3-4"])
        now.set(Self.signedAt(v))
        var broken: [[String: String]] = []
        broken.append(v.headers.merging(["Wechatpay-Serial": "PUB_KEY_ID_0000000000000000000000000000000009"]) { $1 })
        broken.append(v.headers.merging(["Wechatpay-Signature": "WECHATPAY/SIGNTEST/" + v.headers["Wechatpay-Signature"]!]) { $1 })
        broken.append(v.headers.merging(["Wechatpay-Timestamp": String(Int64(v.headers["Wechatpay-Timestamp"]!)! - 400)]) { $1 })
        broken.append(v.headers.merging(["Wechatpay-Signature-Type": "WECHATPAY2-SM2-WITH-SM3"]) { $1 })
        broken.append(v.headers.filter { $0.key != "Wechatpay-Nonce" })
        var bodies = Set<[UInt8]>()
        for headers in broken {
            let reply = try Self.post(live, v, headers: headers)
            #expect(reply.status == 401)
            #expect(reply.header("Content-Type") == "application/json")
            bodies.insert(reply.body)
        }
        #expect(bodies == [Array(#"{"code":"FAIL","message":"verification failed"}"#.utf8)])
        // The body is read only after the signature: a tampered one is the same 401.
        let tampered = Vector(name: v.name, headers: v.headers, body: v.body.replacing("\"EV-", with: "\"EW-"))
        #expect(try Self.post(live, tampered).body == Array(#"{"code":"FAIL","message":"verification failed"}"#.utf8))
        // A GET is 405 in the same shape.
        let get = try #require(exchange(port: live.port, "GET \(Self.path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        #expect(get.status == 405)
        #expect(get.text == #"{"code":"FAIL","message":"method not allowed"}"#)
        #expect(live.events().isEmpty)
        // The log says why, for the operator, and never shows a key, a signature or the body.
        let lines = live.log.entries.map { "\($0.message) \($0.metadata)" }
        let reasons = live.log.entries.compactMap { $0.metadata["reason"].map { "\($0)" } }
        #expect(reasons.contains { $0.contains("SIGNTEST") })
        #expect(reasons.contains { $0.contains("beyond max_clock_skew_s") })
        #expect(reasons.contains { $0.contains("Wechatpay-Signature-Type") })
        for secret in ["a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb", String(v.headers["Wechatpay-Signature"]!.prefix(24)), "EV-2018022511223320873"] {
            #expect(!lines.contains { $0.contains(secret) }, "\(secret.prefix(6))… in the log")
        }
    }

    /// What an operator needs to watch the certificate → public-key migration: checks by key id and result,
    /// SIGNTEST probes, unknown serials, the clock skew histogram, and which APIv3 key line decrypted.
    @Test func metricsShowKeysProbesAndSkew() throws {
        let vectors = try Self.vectors()
        let now = Clock()
        let live = try Self.server(now)
        defer { live.stop() }
        let v4 = try #require(vectors["V3-4"])
        now.set(Self.signedAt(v4) + 7_000)
        #expect(try Self.post(live, v4).status == 204)
        let v9 = try #require(vectors["V3-9"])
        now.set(Self.signedAt(v9))
        #expect(try Self.post(live, v9).status == 401)
        #expect(try Self.post(live, v4, headers: v4.headers.merging(["Wechatpay-Serial": "1234ABCD"]) { $1 }).status == 401)
        now.set(Self.signedAt(v4))
        let forged = v4.headers.merging(["Wechatpay-Signature": String(v4.headers["Wechatpay-Signature"]!.reversed())]) { $1 }
        #expect(try Self.post(live, v4, headers: forged).status == 401)
        let metrics = try live.get("/metrics").body
        #expect(metrics.contains(#"payhook_signature_key_checks_total{route="wechat_v3",tenant="1900000100",key_id="\#(Self.keyID)",result="verified"} 1"#), "\(metrics)")
        // Both tenants configured this key, so a refusal before decryption names no tenant (Verdict's rule: a
        // tenant label is one configured tenant the request was shown to belong to).
        #expect(metrics.contains(#"payhook_signature_key_checks_total{route="wechat_v3",tenant="",key_id="\#(Self.keyID)",result="failed"} 1"#))
        #expect(metrics.contains(#"payhook_signature_probes_total{route="wechat_v3",tenant=""} 1"#))
        #expect(metrics.contains(#"payhook_unknown_key_ids_total{route="wechat_v3"} 1"#))
        #expect(!metrics.contains("1234ABCD"))
        #expect(metrics.contains(#"payhook_clock_skew_seconds_bucket{route="wechat_v3",le="5.0"}"#))
        #expect(metrics.contains(#"payhook_clock_skew_seconds_bucket{route="wechat_v3",le="10.0"} "#))
        #expect(metrics.contains(#"payhook_verified_secret_position_total{source="wechat.pay",tenant="1900000100",position="2"} 1"#))
    }
}
