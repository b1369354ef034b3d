import Foundation
import InMemoryLogging
import PayhookAlipay
import PayhookConfig
import PayhookCore
import PayhookCrypto
import PayhookTestSupport
import PayhookXxPay
import Testing

/// Alipay, XxPay and Jeepay notifications made by an implementation that shares no code with payhook
/// (Tests/crosscheck/alipay_md5.py: Python's `cryptography`, `hashlib` and standard library), for the server's own
/// clock, posted to a live server: genuine ones (UTF-8 and GBK, RSA2 and legacy RSA, refunds, open-platform,
/// MD5 with names that sort differently ignoring case) are stored once each with exactly the fields the script
/// expects; retries are duplicates; other amounts conflicts; hostile ones get the status their check gives and
/// the sender's failure body. The script's `check` mode, which others use on `payhook sign` output, agrees.
@Suite(.timeLimit(.minutes(3)))
struct ProviderCrossCheckTests {
    static let script = "Tests/crosscheck/alipay_md5.py"
    // The tenants of the script (its constants must match these).
    /// RSA2 only, UTF-8 only, seller_id pinned; A-1's Alipay key first, the test-only key second (rotation).
    static let alipayApp = "2021000000000001"
    static let alipaySeller = "2088000000000001"
    /// RSA2 and RSA, UTF-8 and GBK.
    static let legacyApp = "2016000000000002"
    /// Open-platform notifications on.
    static let gatewayApp = "2021000000000003"

    /// One notification of the script, and what payhook must make of it.
    struct Case {
        var name: String
        var method: String
        var path: String
        var query: String?
        var body: String
        var contentType: String
        var expect: Int
        var answer: String
        /// stored, duplicate, conflict or refused.
        var outcome: String
        var key: String?
        var id: String?
        var event: [String: Any]?
        var forged: Bool

        init(_ object: [String: Any]) throws {
            func string(_ name: String) throws -> String {
                guard let value = object[name] as? String else { throw TestFailure("case member \(name) is not a string") }
                return value
            }
            name = try string("name")
            method = try string("method")
            path = try string("path")
            query = object["query"] as? String
            body = try string("body")
            contentType = try string("content_type")
            expect = try #require(object["expect"] as? Int)
            answer = try string("answer")
            outcome = try string("outcome")
            key = object["key"] as? String
            id = object["id"] as? String
            event = object["event"] as? [String: Any]
            forged = object["forged"] as? Bool ?? false
        }

        var target: String { path + (query.map { "?" + $0 } ?? "") }

        func send(_ live: LiveServer) throws -> HTTPReply {
            try Providers.send(live, path, method: method, query: query, body: Array(body.utf8), contentType: contentType)
        }

        /// The notification as one line, for the script's `check` mode: the body, or the request line's method
        /// and target when the parameters are in the query.
        var checkInput: String { query.map { "\(method) \(path)?\($0)" } ?? body }
    }

    static func cases(seed: Int, now: Int64) throws -> [Case] {
        let run = try ToolTests.python(["notifications", "\(seed)", "\(now)"], script: script)
        guard run.status == 0 else { throw TestFailure("alipay_md5.py notifications exited \(run.status): \(run.stderr)") }
        let made = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        return try #require(made["cases"] as? [[String: Any]]).map(Case.init)
    }

    static func server(now: Int64) throws -> LiveServer {
        let a1 = try Providers.alipayKey("a1-alipay-public-key.pem")
        let testOnly = try Providers.alipayKey("test-only-alipay-public-key.pem")
        let xxpay = try Providers.secret("xxpay.reskey")
        let jeepay = try Providers.secret("jeepay.appsecret")
        return try LiveServer(pinnedNow: now * 1000) { config in
            // The script's cases at the edge of the replay window assume the default (Fixtures/demo.toml keeps its
            // ledger for a century).
            config.ledgerRetentionDays = ReplayWindow.defaultLedgerRetentionDays
            config.alipay = [
                AlipayTenant(path: Providers.alipayPath, appID: Self.alipayApp, sellerID: Self.alipaySeller, keys: [a1, testOnly]),
                AlipayTenant(path: Providers.alipayPath, appID: Self.legacyApp, keys: [testOnly], signTypes: [.rsa2, .rsa], charsets: [.utf8, .gbk]),
                AlipayTenant(path: Providers.alipayPath, appID: Self.gatewayApp, keys: [testOnly], gatewayNotifications: true),
            ]
            config.xxpay = [XxPayTenant(path: Providers.xxpayPath, mchID: "20001223", keys: [xxpay])]
            config.jeepay = [JeepayTenant(path: Providers.jeepayPath, mchNo: "M1700000000", appID: "65a0b1c2d3e4f5a6b7c8d9e0", keys: [jeepay])]
        }
    }

    @Test func independentNotificationsGetTheirDocumentedAnswers() throws {
        let now = Int64(Date().timeIntervalSince1970)
        let cases = try Self.cases(seed: 20_261_205, now: now)
        // The script's own spread, so that a change to it cannot quietly drop a kind of case.
        #expect(cases.count >= 100)
        #expect(Set(cases.map(\.outcome)) == ["stored", "duplicate", "conflict", "refused"])
        #expect(Set(cases.map(\.expect)) == [200, 400, 401])
        #expect(Set(cases.map(\.path)) == [Providers.alipayPath, Providers.xxpayPath, Providers.jeepayPath])
        #expect(Set(cases.compactMap { $0.event?["source"] as? String }) == ["alipay.trade", "alipay.event", "xxpay.pay", "jeepay.pay"])
        #expect(Set(cases.compactMap { $0.event?["verified_with"] as? String }) == ["rsa2", "rsa", "md5"])

        let live = try Self.server(now: now)
        defer { live.stop() }
        var stored: [String: Case] = [:]
        for c in cases {
            let (eventsBefore, conflictsBefore) = (live.events().count, listing(live.spool + "/conflicts").count)
            let reply = try c.send(live)
            #expect(reply.status == c.expect, "\(c.name): \(reply.status) \(reply.body)")
            // The sender's exact bytes, the same for every refusal of a path (no oracle).
            #expect(reply.body == c.answer, "\(c.name): \(reply.body)")
            #expect(reply.headers["content-type"] == "text/plain; charset=utf-8", "\(c.name)")
            if c.outcome == "stored" { stored[try #require(c.id)] = c }
            // Checked after every case: a refused notification that stored something shows at once, by name.
            #expect(live.events().count - eventsBefore == (c.outcome == "stored" ? 1 : 0), "\(c.name): events in new/")
            #expect(listing(live.spool + "/conflicts").count - conflictsBefore == (c.outcome == "conflict" ? 1 : 0), "\(c.name): conflicts/")
        }
        #expect(stored.count == cases.filter { $0.outcome == "stored" }.count)
        try Self.checkEvents(stored, on: live)
        // The audit copies in conflicts/ are of the expected events, none delivered.
        let kept = try listing(live.spool + "/conflicts").map { name in
            try #require(try Providers.event(live, name, folder: "conflicts")["id"] as? String)
        }
        #expect(kept.sorted() == cases.filter { $0.outcome == "conflict" }.compactMap(\.id).sorted())
        #expect(Set(kept).isSubset(of: Set(stored.keys)))
        try Providers.validateSpool(live)
        #expect(listing(live.spool + "/tmp").isEmpty)

        // Rotation: every notification of the first app verified with its second key.
        let accepted = cases.filter { $0.expect == 200 && $0.path == Providers.alipayPath && $0.body.contains("app_id=\(Self.alipayApp)") }.count
        let metrics = try MetricsTests.scrape(live)
        let position = "payhook_verified_secret_position_total{source=\"alipay.trade\",tenant=\"\(Self.alipayApp)\",position="
        #expect(metrics[position + "\"2\"}"] == Double(accepted))
        #expect(metrics[position + "\"1\"}"] == nil)
        // The log names no secret: neither the MD5 keys nor a signature the script made.
        let lines = live.log.entries.map { "\($0.message) \($0.metadata)" }.joined(separator: "\n")
        for secret in [try Providers.secret("xxpay.reskey").value, try Providers.secret("jeepay.appsecret").value] {
            #expect(!lines.contains(secret), "a key in the log")
        }
    }

    /// Every stored event is exactly the one the script expects: its id the SHA-256 of the dedupe key, each
    /// headline value, every field (decoded, without `sign`), and the request as sent.
    static func checkEvents(_ stored: [String: Case], on live: LiveServer) throws {
        #expect(Set(live.events()) == Set(stored.keys.map { $0 + ".json" }))
        for (id, c) in stored {
            let event = try Providers.event(live, id + ".json")
            let expected = try #require(c.event, "\(c.name) has no expected event")
            let key = try #require(c.key)
            #expect(event["id"] as? String == id)
            #expect(id == Hex.encode(Digest.sha256(Array(key.utf8))), "\(c.name)")
            #expect(event["dedupe_key"] as? String == key, "\(c.name)")
            for name in ["source", "tenant", "order_ref", "status", "currency", "verified_with", "dedupe_key"] {
                #expect(event[name] as? String == expected[name] as? String, "\(c.name): \(name)")
            }
            #expect(event["amount"] as? Int == expected["amount"] as? Int, "\(c.name): amount")
            let fields = try #require(event["fields"] as? [String: String], "\(c.name)")
            let expectedFields = try #require(expected["fields"] as? [String: String], "\(c.name)")
            #expect(fields == expectedFields, "\(c.name): fields")
            #expect(fields["sign"] == nil)
            let raw = try #require(event["raw"] as? [String: String], "\(c.name)")
            #expect(raw == ["method": c.method, "target": c.target, "body": c.body], "\(c.name): raw")
            #expect(event["resource"] == nil)
        }
    }

    /// The script's `check` mode (documented in its docstring for checking `payhook sign` output) passes every
    /// notification payhook accepted and fails every one whose signature the script forged, with the keys the
    /// tenants hold; and it passes the real vectors of Fixtures/.
    @Test func checkModeAgreesWithTheServer() throws {
        let now = Int64(Date().timeIntervalSince1970)
        let cases = try Self.cases(seed: 20_261_206, now: now).filter { $0.outcome == "stored" || $0.forged }
        #expect(cases.filter(\.forged).count >= 15)
        let dir = try TemporaryDirectory()
        let keys = [
            Providers.alipayPath: ("alipay", Paths.fixtures.appendingPathComponent("alipay/test-only-alipay-public-key.pem").path),
            Providers.xxpayPath: ("xxpay", Paths.fixtures.appendingPathComponent("secrets/xxpay.reskey").path),
            Providers.jeepayPath: ("jeepay", Paths.fixtures.appendingPathComponent("secrets/jeepay.appsecret").path),
        ]
        for (index, c) in cases.enumerated() {
            #expect(c.forged == (c.expect == 401), "\(c.name): a forged signature is a 401")
            let (kind, keyFile) = try #require(keys[c.path])
            try dir.write("n\(index)", c.checkInput + "\n")
            let run = try ToolTests.python(["check", kind, keyFile, dir.file("n\(index)")], script: Self.script)
            #expect(run.status == (c.forged ? 1 : 0), "\(c.name): \(run.stderr)")
            if !c.forged {
                let result = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
                let event = try #require(result["event"] as? [String: Any])
                #expect(event["dedupe_key"] as? String == c.key, "\(c.name)")
            }
        }
        let real: [(String, String, String)] = [
            ("alipay", "alipay/a1-alipay-public-key.pem", "alipay/a1-yuque-trade.form"),
            ("alipay", "alipay/a2-alipay-public-key.pem", "alipay/a2-servicemarket.form"),
            ("alipay", "alipay/a3-alipay-public-cert.crt", "alipay/a3-sandbox-cert-plus.form"),
            ("xxpay", "secrets/xxpay.reskey", "xxpay/x-1-generated.query"),
            ("jeepay", "secrets/jeepay-j1.appsecret", "jeepay/j1-real-notify.form"),
            ("jeepay", "secrets/jeepay.appsecret", "jeepay/j-1-generated.form"),
        ]
        for (kind, key, file) in real {
            let path = { (name: String) in Paths.fixtures.appendingPathComponent(name).path }
            let run = try ToolTests.python(["check", kind, path(key), path(file)], script: Self.script)
            #expect(run.status == 0, "\(file): \(run.stderr)")
            // Another vector's key does not verify it.
            let other =
                switch kind {
                case "alipay": key.hasPrefix("alipay/a1") ? "alipay/a2-alipay-public-key.pem" : "alipay/a1-alipay-public-key.pem"
                case "xxpay": "secrets/jeepay.appsecret"
                default: key.hasSuffix("j1.appsecret") ? "secrets/jeepay.appsecret" : "secrets/jeepay-j1.appsecret"
                }
            #expect(try ToolTests.python(["check", kind, path(other), path(file)], script: Self.script).status == 1, "\(file)")
        }
        #expect(try ToolTests.python(["check", "paypal", "x"], script: Self.script).status == 2)
    }
}
