import Foundation
import PayhookConfig
import PayhookCore
import PayhookCrypto
import PayhookTestSupport
import PayhookWeChat
import Testing

/// WeChat Pay API v3 notifications made by an implementation that shares no code with payhook
/// (Tests/crosscheck/wechatpay_v3.py: Python's `cryptography` and standard library), signed for the server's own
/// clock and posted to a live server: genuine ones are stored once each, hostile ones get the status their check
/// gives, every refusal of one status carries the same answer (no oracle), and the spool ends up holding exactly
/// the events the script expects, valid against schema/event.v1.schema.json.
@Suite(.timeLimit(.minutes(3)))
struct WeChatV3CrossCheckTests {
    static let v3Path = "/notify/wechatpay"
    static let mchID = "1900000100"
    /// The appid the tenant pins (V3-4's, Fixtures/wechat-v3/v3-4.json).
    static let appID = "wxdace645e0bc2cXXX"
    static let publicKeyID = "PUB_KEY_ID_0000000000000024101100397200000006"
    /// The APIv3 key of Fixtures/wechat-v3/README.md, then the rotated key on the tenant's second line.
    static let apiV3Keys = ["a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb", "test-only-apiv3-key-rotated-0002"]
    /// A second tenant on the path, with a key of its own: the script signs nothing with it.
    static let otherMchID = "1900000200"
    static let otherPublicKeyID = "PUB_KEY_ID_0000000000000024101100397200000099"
    static let otherAPIv3Key = "test-only-apiv3-key-tenant-b-004"
    /// The demo `[[wechat]]` merchant (Fixtures/demo.toml), which the cross mode's v3 tenant shares.
    static let v2MchID = "10000100"

    static func publicKey() throws -> RSAPublicKey {
        try RSAPublicKey(pem: try Paths.fixture("wechat-v3/wechat_pay_public_key.pem"))
    }

    /// One notification of the script, and what payhook must make of it.
    struct Case {
        var name: String
        var path: String
        var headers: [(name: String, value: String)]
        var body: [UInt8]
        var expect: Int
        var answer: String
        /// stored, duplicate, conflict or refused.
        var outcome: String
        var key: String?
        var id: String?
        var event: [String: Any]?

        init(_ object: [String: Any]) throws {
            func string(_ name: String) throws -> String {
                guard let value = object[name] as? String else { throw TestFailure("case member \(name) is not a string") }
                return value
            }
            name = try string("name")
            path = try string("path")
            let headers = try #require(object["headers"] as? [String: String])
            let extra = try #require(object["extra_headers"] as? [[String]])
            self.headers = headers.sorted { $0.key < $1.key }.map { ($0.key, $0.value) } + extra.map { ($0[0], $0[1]) }
            body = Array(try string("body").utf8)
            expect = try #require(object["expect"] as? Int)
            answer = try string("answer")
            outcome = try string("outcome")
            key = object["key"] as? String
            id = object["id"] as? String
            event = object["event"] as? [String: Any]
        }

        var request: [UInt8] {
            var head = "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: \(body.count)\r\n"
            for header in headers { head += "\(header.name): \(header.value)\r\n" }
            return Array((head + "\r\n").utf8) + body
        }
    }

    /// Runs the script; its cases, in the order they are to be sent.
    static func cases(_ mode: String, seed: Int, now: Int64) throws -> [Case] {
        let run = try ToolTests.python([mode, "\(seed)", "\(now)"], script: "Tests/crosscheck/wechatpay_v3.py")
        guard run.status == 0 else {
            throw TestFailure("wechatpay_v3.py \(mode) exited \(run.status): \(run.stderr)")
        }
        let output = Data(run.stdout.utf8)
        let made = try #require(try JSONSerialization.jsonObject(with: output) as? [String: Any])
        return try #require(made["cases"] as? [[String: Any]]).map(Case.init)
    }

    /// The server's clock, pinned to the second the script signs for (so ±299 s and ±301 s are exact).
    static func pinnedNow() -> Int64 { Int64(Date().timeIntervalSince1970) }

    /// Posts every case in order, checking each answer and what the spool holds after it; returns the cases
    /// whose outcome is a stored event, by id.
    @discardableResult
    static func run(_ cases: [Case], on live: LiveServer) throws -> [String: Case] {
        var stored: [String: Case] = [:]
        var messages: [Int: Set<String>] = [:]
        for c in cases {
            let (eventsBefore, conflictsBefore) = (live.events().count, listing(live.spool + "/conflicts").count)
            let reply = try HTTPReply.exchange(c.request, port: live.port)
            #expect(reply.status == c.expect, "\(c.name): \(reply.status) \(reply.body)")
            if c.answer == "json" {
                if c.expect == 204 {
                    #expect(reply.body.isEmpty, "\(c.name)")
                } else {
                    #expect(reply.headers["content-type"]?.hasPrefix("application/json") == true, "\(c.name)")
                    let object = try JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as? [String: Any]
                    #expect(object?.count == 2 && object?["code"] as? String == "FAIL", "\(c.name): \(reply.body)")
                    if let message = object?["message"] as? String { messages[reply.status, default: []].insert(message) }
                }
            } else if c.expect == 200 {
                #expect(reply.body == WeChatLiveTests.success, "\(c.name): \(reply.body)")
            } else {
                #expect(reply.body.hasPrefix("<xml><return_code><![CDATA[FAIL]]></return_code>"), "\(c.name): \(reply.body)")
            }
            if c.outcome == "stored" { stored[try #require(c.id)] = c }
            // Checked after every case: a refused notification that stored something shows at once, by name.
            #expect(live.events().count - eventsBefore == (c.outcome == "stored" ? 1 : 0), "\(c.name): events in new/")
            #expect(listing(live.spool + "/conflicts").count - conflictsBefore == (c.outcome == "conflict" ? 1 : 0), "\(c.name): conflicts/")
        }
        for (status, texts) in messages {
            #expect(texts.count == 1, "the refusals with status \(status) answer differently: \(texts.sorted())")
        }
        return stored
    }

    /// Every stored event is exactly the one the script expects: its id the SHA-256 of the dedupe key, each
    /// headline value, the resource as the script encrypted it, the body and headers as sent.
    static func checkEvents(_ stored: [String: Case], on live: LiveServer) throws {
        #expect(Set(live.events()) == Set(stored.keys.map { $0 + ".json" }))
        for (id, c) in stored {
            let event = try live.event(id + ".json")
            let expected = try #require(c.event, "\(c.name) has no expected event")
            let key = try #require(c.key)
            #expect(event["id"] as? String == id)
            #expect(id == Hex.encode(Digest.sha256(Array(key.utf8))), "\(c.name)")
            #expect(event["dedupe_key"] as? String == key, "\(c.name)")
            for name in ["source", "tenant", "order_ref", "status", "currency", "verified_with"] {
                #expect(event[name] as? String == expected[name] as? String, "\(c.name): \(name)")
            }
            #expect(event["amount"] as? Int == expected["amount"] as? Int, "\(c.name): amount")
            let raw = try #require(event["raw"] as? [String: Any])
            #expect(raw["body"] as? String == String(decoding: c.body, as: UTF8.self), "\(c.name): raw.body")
            #expect(raw["method"] as? String == "POST")
            if c.path == v3Path {
                let resource = try #require(event["resource"] as? NSDictionary, "\(c.name): no resource")
                #expect(resource.isEqual(to: try #require(expected["resource"] as? [String: Any])), "\(c.name): resource")
                // raw.headers: the signed headers under their canonical names, values as sent.
                let headers = try #require(raw["headers"] as? [String: String])
                for (name, value) in c.headers where name.lowercased().hasPrefix("wechatpay-") {
                    let canonical = WeChatV3Source.Header.all.first { $0.lowercased() == name.lowercased() }
                    #expect(headers[try #require(canonical)] == value, "\(c.name): \(name)")
                }
                let fields = try #require(event["fields"] as? [String: String])
                #expect(fields["wechatpay_serial"] == publicKeyID)
            } else {
                #expect(event["resource"] == nil)
            }
        }
        if !stored.isEmpty {
            let schema = try SchemaTests.validate(live.events().map { live.spool + "/new/" + $0 })
            #expect(schema.output.contains("checked \(stored.count) invalid 0"), "\(schema.output)")
        }
    }

    /// The audit copies in conflicts/ are of the expected events, none delivered.
    static func checkConflicts(_ cases: [Case], on live: LiveServer) throws {
        let expected = cases.filter { $0.outcome == "conflict" }.compactMap(\.id).sorted()
        let kept = try listing(live.spool + "/conflicts").map { name -> String in
            let data = try Data(contentsOf: URL(fileURLWithPath: live.spool + "/conflicts/" + name))
            let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            return try #require(object["id"] as? String)
        }
        #expect(kept.sorted() == expected)
    }

    @Test func independentNotificationsGetTheirDocumentedAnswers() throws {
        let now = Self.pinnedNow()
        let key = try Self.publicKey()
        let other = try RSAPublicKey(certificatePEM: try Paths.fixture("wechat-v3/merchant_certificate.pem"))
        let live = try LiveServer(pinnedNow: now * 1000) { config in
            config.wechatV3 = [
                WeChatV3Tenant(
                    path: Self.v3Path, mchID: Self.mchID, appID: Self.appID, apiV3Keys: Self.apiV3Keys.map { Secret($0) },
                    publicKey: .init(id: Self.publicKeyID, key: key)),
                WeChatV3Tenant(
                    path: Self.v3Path, mchID: Self.otherMchID, apiV3Keys: [Secret(Self.otherAPIv3Key)],
                    publicKey: .init(id: Self.otherPublicKeyID, key: other)),
            ]
        }
        defer { live.stop() }
        let cases = try Self.cases("notifications", seed: 20_261_203, now: now)
        // The script's own spread, so that a change to it cannot quietly drop a kind of case.
        #expect(cases.count >= 50)
        #expect(Set(cases.map(\.outcome)) == ["stored", "duplicate", "conflict", "refused"])
        #expect(Set(cases.map(\.expect)) == [204, 400, 401, 413])
        let stored = try Self.run(cases, on: live)
        #expect(stored.count == 13)
        try Self.checkEvents(stored, on: live)
        try Self.checkConflicts(cases, on: live)
        #expect(listing(live.spool + "/tmp").isEmpty)
    }

    /// A v2 and a v3 notification of one payment are one event, whichever comes first; a different total or
    /// another instant is a conflict (Sources/PayhookWeChat/WeChatFingerprint.swift).
    @Test func v2AndV3OfOnePaymentAreOneEvent() throws {
        let now = Self.pinnedNow()
        let key = try Self.publicKey()
        let live = try LiveServer(pinnedNow: now * 1000) { config in
            config.wechatV3 = [
                WeChatV3Tenant(
                    path: Self.v3Path, mchID: Self.v2MchID, apiV3Keys: [Secret(Self.apiV3Keys[0])],
                    publicKey: .init(id: Self.publicKeyID, key: key))
            ]
        }
        defer { live.stop() }
        let cases = try Self.cases("cross", seed: 20_261_204, now: now)
        #expect(cases.filter { $0.path == WeChatLiveTests.path }.count == 6)
        #expect(cases.filter { $0.path == Self.v3Path }.count == 6)
        let stored = try Self.run(cases, on: live)
        #expect(stored.count == 6)
        #expect(cases.filter { $0.outcome == "conflict" }.count == 3)
        try Self.checkEvents(stored, on: live)
        try Self.checkConflicts(cases, on: live)
    }
}
