import Foundation
import InMemoryLogging
import Logging
import PayhookAlipay
import PayhookConfig
import PayhookCore
import PayhookCrypto
import PayhookTestSupport
import PayhookXxPay
import Testing

/// What the Alipay, XxPay and Jeepay tests of this target share: the paths, the tenants of the real vectors, and
/// requests as their senders make them (docs/contract.md §6.2, §6.3).
enum Providers {
    static let alipayPath = "/notify/alipay"
    static let xxpayPath = "/notify/xxpay"
    static let jeepayPath = "/notify/jeepay"
    static let form = "application/x-www-form-urlencoded"

    /// An Alipay public key of Fixtures/alipay: a PEM public key, or the key of a public-key certificate.
    static func alipayKey(_ file: String) throws -> AlipayTenant.Key {
        let pem = Array(try Data(contentsOf: Paths.fixtures.appendingPathComponent("alipay/" + file)))
        let key = file.hasSuffix(".crt") ? try X509Certificate(pem: pem).publicKey : try RSAPublicKey(pem: pem)
        return AlipayTenant.Key(label: file, key: key)
    }

    /// A secret of Fixtures/secrets, its final line break left out.
    static func secret(_ name: String) throws -> Secret { Secret(try Paths.fixture("secrets/" + name)) }

    static func fixture(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: Paths.fixtures.appendingPathComponent(name)))
    }

    /// The test-only key pair's app: notifications signed here with Fixtures/alipay/test-only-alipay-private-key.pem.
    static let freshApp = "2021000000000001"

    struct Tenants {
        var alipay: [AlipayTenant]
        var xxpay: [XxPayTenant]
        var jeepay: [JeepayTenant]
    }

    /// The tenants of the real vectors (A-1, A-2 with open-platform notifications on, A-3 in certificate mode;
    /// X-1; J1 and J-1), and an app whose notifications these tests sign themselves.
    static func tenants() throws -> Tenants {
        Tenants(
            alipay: [
                AlipayTenant(path: alipayPath, appID: "2019073166072302", keys: [try alipayKey("a1-alipay-public-key.pem")]),
                AlipayTenant(path: alipayPath, appID: "2017122801303261", keys: [try alipayKey("a2-alipay-public-key.pem")], gatewayNotifications: true),
                AlipayTenant(path: alipayPath, appID: "9021000122682882", keys: [try alipayKey("a3-alipay-public-cert.crt")]),
                AlipayTenant(path: alipayPath, appID: freshApp, sellerID: "2088000000000001", keys: [try alipayKey("test-only-alipay-public-key.pem")]),
            ],
            xxpay: [XxPayTenant(path: xxpayPath, mchID: "20001223", keys: [try secret("xxpay.reskey")])],
            jeepay: [
                JeepayTenant(path: jeepayPath, mchNo: "M1747033666", appID: "68219e426e70ed6a5e4229b6", keys: [try secret("jeepay-j1.appsecret")]),
                JeepayTenant(path: jeepayPath, mchNo: "M1700000000", appID: "65a0b1c2d3e4f5a6b7c8d9e0", keys: [try secret("jeepay.appsecret")]),
            ])
    }

    /// A live server with those tenants whose clock the test sets before each request, and the default replay
    /// window (Fixtures/demo.toml keeps its ledger for a century).
    static func server(_ clock: WeChatV3LiveTests.Clock, store: StoreKind = .spool) throws -> LiveServer {
        let tenants = try tenants()
        return try LiveServer(
            store: store,
            configure: { config in
                config.ledgerRetentionDays = ReplayWindow.defaultLedgerRetentionDays
                config.alipay = tenants.alipay
                config.xxpay = tenants.xxpay
                config.jeepay = tenants.jeepay
            }, clock: { clock.now })
    }

    /// One request on a new connection; `Content-Length` whenever there is a body or the method is POST.
    static func send(
        _ live: LiveServer, _ path: String, method: String = "POST", query: String? = nil, body: [UInt8] = [],
        contentType: String? = form
    ) throws -> HTTPReply {
        var head = "\(method) \(path)\(query.map { "?" + $0 } ?? "") HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        if let contentType, !contentType.isEmpty { head += "Content-Type: \(contentType)\r\n" }
        if method == "POST" || !body.isEmpty { head += "Content-Length: \(body.count)\r\n" }
        return try HTTPReply.exchange(Array((head + "\r\n").utf8) + body, port: live.port)
    }

    /// `application/x-www-form-urlencoded` as Java's URLEncoder writes it (UTF-8).
    static func formBody(_ pairs: [(String, String)]) -> String {
        var allowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-*_")
        allowed.insert(" ")
        func encode(_ text: String) -> String {
            (text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text).replacingOccurrences(of: " ", with: "+")
        }
        return pairs.map { encode($0.0) + "=" + encode($0.1) }.joined(separator: "&")
    }

    /// The decoded parameters of a form, in order (the fixtures' own).
    static func pairs(_ text: String) throws -> [(String, String)] {
        try FormQuery.decode(text).map { ($0.name, $0.value) }
    }

    /// An Alipay trade notification of the test-only app, signed RSA2 with the test-only private key.
    static func signedAlipay(_ pairs: [(String, String)]) throws -> [UInt8] {
        let privateKey = try fixture("alipay/test-only-alipay-private-key.pem")
        let parameters = pairs.map { FormParameter(name: $0.0, value: $0.1) }
        let sign = try #require(AlipaySigning.sign(parameters, type: .rsa2, privateKeyPEM: privateKey))
        return Array(formBody(pairs + [("sign", sign)]).utf8)
    }

    /// `pairs` re-signed with MD5 `&key=` (XxPay's and Jeepay's rule), `sign` replaced.
    static func signedMD5(_ pairs: [(String, String)], secret: Secret) -> String {
        let kept = pairs.filter { $0.0 != "sign" }
        let sign = MD5KeySigning.sign(kept.map { FormParameter(name: $0.0, value: $0.1) }, secret: Array(secret.value.utf8))
        return formBody(kept + [("sign", sign)])
    }

    static func replacing(_ pairs: [(String, String)], _ changes: [String: String]) -> [(String, String)] {
        pairs.map { ($0.0, changes[$0.0] ?? $0.1) }
    }

    /// A stored event by name: waiting (`new`, from either store) or a spool's audit copy (`conflicts`).
    static func event(_ live: LiveServer, _ name: String, folder: String = "new") throws -> [String: Any] {
        if folder == "new" { return try live.event(name) }
        let data = try Data(contentsOf: URL(fileURLWithPath: live.spool + "/" + folder + "/" + name))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    /// Every waiting event and audit copy, checked against schema/event.v1.schema.json; returns how many. A
    /// database's rows are written to files first, since the validator reads files.
    @discardableResult
    static func validateSpool(_ live: LiveServer, sourceLocation: SourceLocation = #_sourceLocation) throws -> Int {
        var files: [String]
        switch live.storeKind {
        case .spool:
            files = live.events().map { live.spool + "/new/" + $0 } + listing(live.spool + "/conflicts").map { live.spool + "/conflicts/" + $0 }
        case .postgres:
            files = []
            let copies = try live.events().map { try live.eventData($0) } + (try live.conflictCopies())
            for (index, data) in copies.enumerated() {
                let file = live.dir.file("row-\(index).json")
                try data.write(to: URL(fileURLWithPath: file))
                files.append(file)
            }
        }
        guard !files.isEmpty else { return 0 }
        let result = try SchemaTests.validate(files)
        #expect(result.output.contains("checked \(files.count) invalid 0"), "\(result.output)", sourceLocation: sourceLocation)
        return files.count
    }
}

/// The real vectors of Fixtures/alipay, Fixtures/xxpay and Fixtures/jeepay through the live server, each with the
/// clock pinned to its own time: the exact answers, retries as duplicates, refunds as new events, conflicts kept
/// and not delivered, the transports XxPay uses, wrong methods, unknown tenants, repeated names and the metrics.
/// Every event file the tests leave is checked against schema/event.v1.schema.json.
@Suite(.timeLimit(.minutes(3)))
struct ProviderLiveTests {
    struct Vector: Sendable, CustomTestStringConvertible {
        var name: String
        var path: String
        var file: String
        /// When the sender made it (notify_time, paySuccTime, reqTime), Unix milliseconds.
        var madeAt: Int64
        var inQuery = false
        var source: String
        var tenant: String
        var orderRef: String
        var status: String
        var amount: Int
        var currency: String
        var verifiedWith: String
        var key: String
        var testDescription: String { name }

        var success: String { path == Providers.jeepayPath ? "SUCCESS" : "success" }
        var failure: String { path == Providers.jeepayPath ? "FAIL" : "fail" }

        func text() throws -> String { try Paths.fixture(file) }

        func post(_ live: LiveServer, method: String = "POST") throws -> HTTPReply {
            let text = try text()
            if inQuery { return try Providers.send(live, path, method: method, query: text, contentType: nil) }
            return try Providers.send(live, path, method: method, body: Array(text.utf8))
        }
    }

    static let vectors: [Vector] = [
        Vector(
            name: "A-1", path: Providers.alipayPath, file: "alipay/a1-yuque-trade.form", madeAt: 1_565_855_785_000, source: "alipay.trade",
            tenant: "2019073166072302", orderRef: "20190815155618536-564-57", status: "TRADE_SUCCESS", amount: 10, currency: "CNY",
            verifiedWith: "rsa2", key: "alipay.trade/2019073166072302/20190815155618536-564-57/TRADE_SUCCESS/"),
        Vector(
            name: "A-2", path: Providers.alipayPath, file: "alipay/a2-servicemarket.form", madeAt: 1_552_011_623_000, source: "alipay.event",
            tenant: "2017122801303261", orderRef: "2019030800222102023008121054923345", status: "servicemarket_order_notify", amount: 0,
            currency: "", verifiedWith: "rsa2",
            key: "alipay.event/2017122801303261/servicemarket_order_notify/2019030800222102023008121054923345"),
        Vector(
            name: "A-3", path: Providers.alipayPath, file: "alipay/a3-sandbox-cert-plus.form", madeAt: 1_703_147_205_000, source: "alipay.trade",
            tenant: "9021000122682882", orderRef: "1703147160", status: "TRADE_SUCCESS", amount: 1, currency: "CNY", verifiedWith: "rsa2",
            key: "alipay.trade/9021000122682882/1703147160/TRADE_SUCCESS/"),
        Vector(
            name: "X-1", path: Providers.xxpayPath, file: "xxpay/x-1-generated.query", madeAt: 1_514_779_200_000, inQuery: true, source: "xxpay.pay",
            tenant: "20001223", orderRef: "G20180101120000000001", status: "2", amount: 1, currency: "CNY", verifiedWith: "md5",
            key: "xxpay.pay/20001223/G20180101120000000001/2"),
        Vector(
            name: "J1", path: Providers.jeepayPath, file: "jeepay/j1-real-notify.form", madeAt: 1_756_625_913_248, source: "jeepay.pay",
            tenant: "M1747033666", orderRef: "2025831153825967041216", status: "2", amount: 1, currency: "CNY", verifiedWith: "md5",
            key: "jeepay.pay/M1747033666/2025831153825967041216/2"),
        Vector(
            name: "J-1", path: Providers.jeepayPath, file: "jeepay/j-1-generated.form", madeAt: 1_704_081_606_000, source: "jeepay.pay",
            tenant: "M1700000000", orderRef: "20240101000001", status: "2", amount: 100, currency: "CNY", verifiedWith: "md5",
            key: "jeepay.pay/M1700000000/20240101000001/2"),
    ]

    static func vector(_ name: String) throws -> Vector { try #require(vectors.first { $0.name == name }) }

    /// Each vector is stored once, as its sender wrote it; its retry is a duplicate; the same notification a
    /// replay window later is refused.
    @Test(arguments: StoreKind.allCases, vectors)
    func realVectorIsStoredOnceWithItsExactAnswer(store: StoreKind, vector: Vector) throws {
        let clock = WeChatV3LiveTests.Clock()
        let live = try Providers.server(clock, store: store)
        defer { live.stop() }
        clock.set(vector.madeAt + 5_000)
        for attempt in 1...3 {
            let reply = try vector.post(live)
            #expect(reply.status == 200, "\(vector.name) attempt \(attempt): \(reply.status) \(reply.body)")
            #expect(reply.body == vector.success)
            #expect(reply.headers["content-type"] == "text/plain; charset=utf-8")
            #expect(live.events().count == 1, "\(vector.name) attempt \(attempt)")
        }
        let id = Hex.encode(Digest.sha256(Array(vector.key.utf8)))
        #expect(live.events() == [id + ".json"])
        let event = try Providers.event(live, id + ".json")
        #expect(event["id"] as? String == id)
        #expect(event["dedupe_key"] as? String == vector.key)
        #expect(event["source"] as? String == vector.source)
        #expect(event["tenant"] as? String == vector.tenant)
        #expect(event["order_ref"] as? String == vector.orderRef)
        #expect(event["status"] as? String == vector.status)
        #expect(event["amount"] as? Int == vector.amount)
        #expect(event["currency"] as? String == vector.currency)
        #expect(event["verified_with"] as? String == vector.verifiedWith)
        #expect(event["resource"] == nil)
        let raw = try #require(event["raw"] as? [String: String])
        let text = try vector.text()
        #expect(raw == ["method": "POST", "target": vector.path + (vector.inQuery ? "?" + text : ""), "body": vector.inQuery ? "" : text])
        // fields: every non-empty parameter as decoded, without `sign`; `sign_type` only where it is signed
        // (an open-platform notification).
        let fields = try #require(event["fields"] as? [String: String])
        var expected: [String: String] = [:]
        for (name, value) in try Providers.pairs(text) where !value.isEmpty && name != "sign" {
            if name == "sign_type" && vector.source == "alipay.trade" { continue }
            expected[name] = value
        }
        #expect(fields == expected)
        #expect(try live.conflictCopies().isEmpty)
        try Providers.validateSpool(live)

        // A replay a whole window (6 days by default) and a second after the sender made it: refused, 400.
        clock.set(vector.madeAt + ReplayWindow.defaultMaxCallbackAgeMilliseconds + 1_000)
        let late = try vector.post(live)
        #expect(late.status == 400)
        #expect(late.body == vector.failure)
        #expect(live.events().count == 1)
    }

    /// A partial refund (a new out_biz_no) is a new event; its retry a duplicate; the same key with another
    /// amount a conflict, kept in conflicts/ and never in new/, answered success. XxPay and Jeepay the same.
    @Test(arguments: StoreKind.allCases)
    func refundsAreNewEventsAndOtherAmountsAreConflicts(store: StoreKind) throws {
        let clock = WeChatV3LiveTests.Clock()
        let live = try Providers.server(clock, store: store)
        defer { live.stop() }
        let now: Int64 = 1_767_225_600_000
        clock.set(now)
        func beijing(_ milliseconds: Int64) -> String { BeijingTime.text(milliseconds: milliseconds, compact: false) }
        let payment: [(String, String)] = [
            ("app_id", Providers.freshApp), ("charset", "utf-8"), ("notify_type", "trade_status_sync"),
            ("notify_id", "2026010100222000000000000000000001"), ("notify_time", beijing(now - 5_000)), ("sign_type", "RSA2"),
            ("out_trade_no", "REFUND-ORDER-1"), ("trade_no", "2026010122001400000000000001"), ("trade_status", "TRADE_SUCCESS"),
            ("total_amount", "100.00"), ("seller_id", "2088000000000001"), ("buyer_id", "2088102000000001"),
            ("gmt_payment", beijing(now - 60_000)), ("subject", "退款测试 & 部分"),
        ]
        func post(_ pairs: [(String, String)]) throws -> HTTPReply {
            try Providers.send(live, Providers.alipayPath, body: try Providers.signedAlipay(pairs))
        }
        func amounts() throws -> [String: Int] {
            var found: [String: Int] = [:]
            for name in live.events() { found[name] = try Providers.event(live, name)["amount"] as? Int }
            return found
        }
        #expect(try post(payment).body == "success")
        let refund = payment + [("out_biz_no", "RF-1"), ("refund_fee", "30.00"), ("gmt_refund", beijing(now - 2_000))]
        #expect(try post(Providers.replacing(refund, ["notify_id": "2026010100222000000000000000000002"])).body == "success")
        #expect(live.events().count == 2)
        // The refund's retry: another notify_time, the same refund: a duplicate.
        let resent = Providers.replacing(refund, ["notify_time": beijing(now - 1_000), "notify_id": "2026010100222000000000000000000002"])
        #expect(try post(resent).body == "success")
        #expect(live.events().count == 2)
        // A second partial refund of the same order: a third event.
        let second = Providers.replacing(refund, ["out_biz_no": "RF-2", "refund_fee": "50.00", "notify_id": "2026010100222000000000000000000003"])
        #expect(try post(second).body == "success")
        let refundKey = "alipay.trade/\(Providers.freshApp)/REFUND-ORDER-1/TRADE_SUCCESS/RF-1"
        let paymentKey = "alipay.trade/\(Providers.freshApp)/REFUND-ORDER-1/TRADE_SUCCESS/"
        let refundID = Hex.encode(Digest.sha256(Array(refundKey.utf8)))
        let paymentID = Hex.encode(Digest.sha256(Array(paymentKey.utf8)))
        #expect(Set(live.events()).isSuperset(of: [refundID + ".json", paymentID + ".json"]))
        let refundFields = Providers.replacing(refund, ["notify_id": "2026010100222000000000000000000002"]).filter { $0.0 != "sign_type" }
        #expect(try Providers.event(live, refundID + ".json")["fields"] as? [String: String] == Dictionary(uniqueKeysWithValues: refundFields))
        let before = try amounts()
        #expect(Set(before.values) == [10_000])

        // The payment's key with another total_amount, and the first refund's with another refund_fee: conflicts.
        let conflicts = [
            try post(Providers.replacing(payment, ["total_amount": "99.00"])),
            try post(Providers.replacing(refund, ["refund_fee": "31.00"])),
        ]
        // XxPay and Jeepay: X-1 and J-1 stored, then each with another amount, re-signed with the merchant's key.
        let x1 = try Self.vector("X-1")
        clock.set(x1.madeAt)
        #expect(try x1.post(live).body == "success")
        let x1Pairs = try Providers.pairs(try x1.text())
        let xxpayConflict = Providers.signedMD5(Providers.replacing(x1Pairs, ["amount": "2"]), secret: try Providers.secret("xxpay.reskey"))
        let xReply = try Providers.send(live, Providers.xxpayPath, query: xxpayConflict, contentType: nil)
        let j1 = try Self.vector("J-1")
        clock.set(j1.madeAt)
        #expect(try j1.post(live).body == "SUCCESS")
        let jeepayConflict = Providers.signedMD5(
            Providers.replacing(try Providers.pairs(try j1.text()), ["amount": "101"]), secret: try Providers.secret("jeepay.appsecret"))
        let jReply = try Providers.send(live, Providers.jeepayPath, body: Array(jeepayConflict.utf8))
        for reply in conflicts + [xReply] {
            #expect(reply.status == 200)
            #expect(reply.body == "success")
        }
        #expect(jReply.status == 200)
        #expect(jReply.body == "SUCCESS")

        // Not delivered: new/ holds the originals, unchanged; conflicts/ the four audit copies, of the same ids.
        #expect(live.events().count == 5)
        let after = try amounts()
        for (name, amount) in before { #expect(after[name] == amount) }
        #expect(after[Hex.encode(Digest.sha256(Array(x1.key.utf8))) + ".json"] == 1)
        #expect(after[Hex.encode(Digest.sha256(Array(j1.key.utf8))) + ".json"] == 100)
        let kept = try live.conflictCopies()
        #expect(kept.count == 4)
        var keptAmounts: [String: [Int]] = [:]
        for data in kept {
            let copy = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            keptAmounts[copy["id"] as? String ?? "?", default: []].append(copy["amount"] as? Int ?? -1)
        }
        #expect(keptAmounts[paymentID] == [9_900])
        #expect(keptAmounts[refundID] == [10_000])
        #expect(keptAmounts[Hex.encode(Digest.sha256(Array(x1.key.utf8)))] == [2])
        #expect(keptAmounts[Hex.encode(Digest.sha256(Array(j1.key.utf8)))] == [101])
        #expect(live.log.entries.filter { $0.metadata["outcome"] == "conflict" }.count == 4)
        try Providers.validateSpool(live)
    }

    /// Each path answers a method it does not take with 405, its sender's failure body and `Allow`; XxPay takes
    /// POST and GET.
    @Test(arguments: [
        (Providers.alipayPath, "GET", "POST", "fail"), (Providers.alipayPath, "PUT", "POST", "fail"),
        (Providers.xxpayPath, "PUT", "POST, GET", "fail"), (Providers.xxpayPath, "DELETE", "POST, GET", "fail"),
        (Providers.jeepayPath, "GET", "POST", "FAIL"), (Providers.jeepayPath, "PATCH", "POST", "FAIL"),
    ])
    func wrongMethodsAre405WithAllow(path: String, method: String, allow: String, body: String) throws {
        let clock = WeChatV3LiveTests.Clock()
        let live = try Providers.server(clock)
        defer { live.stop() }
        let vector = try #require(Self.vectors.first { $0.path == path && $0.name != "A-2" && $0.name != "J1" })
        clock.set(vector.madeAt)
        let reply = try vector.post(live, method: method)
        #expect(reply.status == 405)
        #expect(reply.headers["allow"] == allow)
        #expect(reply.body == body)
        #expect(live.events().isEmpty)
    }

    /// XxPay's sender POSTs the parameters in the query with an empty body; a GET or a form body carry the same
    /// notification: one event, whichever comes first. A name in both the query and the body is refused.
    @Test func xxpayTransportsGiveOneEvent() throws {
        let clock = WeChatV3LiveTests.Clock()
        let live = try Providers.server(clock)
        defer { live.stop() }
        let x1 = try Self.vector("X-1")
        clock.set(x1.madeAt)
        let query = try x1.text()
        let replies = [
            try Providers.send(live, Providers.xxpayPath, method: "POST", query: query, contentType: Providers.form),
            try Providers.send(live, Providers.xxpayPath, method: "GET", query: query, contentType: nil),
            try Providers.send(live, Providers.xxpayPath, method: "POST", body: Array(query.utf8)),
            try Providers.send(live, Providers.xxpayPath, method: "POST", query: "", body: Array(query.utf8)),
        ]
        for reply in replies {
            #expect(reply.status == 200)
            #expect(reply.body == "success")
        }
        #expect(live.events() == [Hex.encode(Digest.sha256(Array(x1.key.utf8))) + ".json"])
        #expect(listing(live.spool + "/conflicts").isEmpty)
        // The first one is the event: a POST with the query as target and an empty body.
        let raw = try #require(try Providers.event(live, live.events()[0])["raw"] as? [String: String])
        #expect(raw == ["method": "POST", "target": Providers.xxpayPath + "?" + query, "body": ""])
        // Split between the query and the body, each name once: the same notification.
        let pairs = query.split(separator: "&").map(String.init)
        let split = try Providers.send(
            live, Providers.xxpayPath, query: pairs.prefix(5).joined(separator: "&"), body: Array(pairs.dropFirst(5).joined(separator: "&").utf8))
        #expect(split.body == "success")
        #expect(live.events().count == 1)
        // A name in both: which copy was signed cannot be known.
        let both = try Providers.send(live, Providers.xxpayPath, query: query, body: Array("status=2".utf8))
        #expect(both.status == 400)
        #expect(both.body == "fail")
        try Providers.validateSpool(live)
    }

    /// A tenant nobody configured is 401; a repeated name 400; neither stores anything. The answers are the
    /// senders' failure bodies, the same whatever failed.
    @Test func unknownTenantsAre401AndRepeatedNamesAre400() throws {
        let clock = WeChatV3LiveTests.Clock()
        let live = try Providers.server(clock)
        defer { live.stop() }
        let jeepaySecret = try Providers.secret("jeepay.appsecret")
        let cases: [(vector: String, change: (String) throws -> String, status: Int)] = [
            ("A-1", { $0.replacing("app_id=2019073166072302", with: "app_id=2019073166072399") }, 401),
            ("A-2", { $0.replacing("app_id=2017122801303261", with: "app_id=2017122801303299") }, 401),
            ("X-1", { $0.replacing("mchId=20001223", with: "mchId=20001299") }, 401),
            ("J-1", { $0.replacing("appId=65a0b1c2d3e4f5a6b7c8d9e0", with: "appId=65a0b1c2d3e4f5a6b7c8d9ff") }, 401),
            // The tenant's own appId, another mchNo: the signature holds, the merchant is not this app's.
            ("J-1", { Providers.signedMD5(Providers.replacing(try Providers.pairs($0), ["mchNo": "M1747033666"]), secret: jeepaySecret) }, 401),
            ("A-1", { $0 + "&out_trade_no=20190815155618536-564-57" }, 400),
            ("A-3", { "sign=x&" + $0 }, 400),
            ("X-1", { $0 + "&status=2" }, 400),
            ("J1", { $0 + "&amount=1" }, 400),
            ("J-1", { $0.replacing("&state=2", with: "&state=2&state=2") }, 400),
        ]
        for (name, change, status) in cases {
            let vector = try Self.vector(name)
            clock.set(vector.madeAt)
            let text = try change(try vector.text())
            #expect(text != (try vector.text()))
            let reply =
                vector.inQuery
                ? try Providers.send(live, vector.path, query: text, contentType: nil)
                : try Providers.send(live, vector.path, body: Array(text.utf8))
            #expect(reply.status == status, "\(name): \(reply.status) \(reply.body)")
            #expect(reply.body == vector.failure, "\(name)")
        }
        #expect(live.events().isEmpty)
        let reasons = live.log.entries.compactMap { $0.metadata["reason"].map { "\($0)" } }
        #expect(reasons.contains { $0.contains("no [[alipay]] tenant with app_id") })
        #expect(reasons.contains { $0.contains("mchNo does not match") })
        #expect(reasons.filter { $0.contains("appears more than once") }.count == 5)
    }

    /// The routes' series in /metrics: requests by source, tenant and outcome, latency by route, the key that
    /// verified; refusals before the kind is known count under the path's kind, with no tenant.
    @Test func metricsShowTheNewRoutes() throws {
        let clock = WeChatV3LiveTests.Clock()
        let live = try Providers.server(clock)
        defer { live.stop() }
        let a1 = try Self.vector("A-1")
        clock.set(a1.madeAt)
        #expect(try a1.post(live).status == 200)
        #expect(try a1.post(live).status == 200)
        for (from, to) in [("app_id=2019073166072302", "app_id=2019073166072399"), ("total_amount=0.10", "total_amount=0.20")] {
            #expect(try Providers.send(live, Providers.alipayPath, body: Array(try a1.text().replacing(from, with: to).utf8)).status == 401)
        }
        #expect(try Providers.send(live, Providers.alipayPath, body: Array("%zz".utf8)).status == 400)
        let a2 = try Self.vector("A-2")
        clock.set(a2.madeAt)
        #expect(try a2.post(live).status == 200)
        let x1 = try Self.vector("X-1")
        clock.set(x1.madeAt)
        #expect(try x1.post(live).status == 200)
        #expect(try x1.post(live, method: "GET").status == 200)
        let j = try Self.vector("J-1")
        clock.set(j.madeAt)
        #expect(try j.post(live).status == 200)
        #expect(try j.post(live, method: "GET").status == 405)
        clock.set(j.madeAt + ReplayWindow.defaultMaxCallbackAgeMilliseconds + 1)
        #expect(try j.post(live).status == 400)

        let metrics = try MetricsTests.scrape(live)
        func requests(_ source: String, _ tenant: String, _ outcome: String) -> Double? {
            metrics["payhook_requests_total{source=\"\(source)\",tenant=\"\(tenant)\",outcome=\"\(outcome)\"}"]
        }
        #expect(requests("alipay.trade", "2019073166072302", "accepted") == 1)
        #expect(requests("alipay.trade", "2019073166072302", "duplicate") == 1)
        #expect(requests("alipay.trade", "2019073166072302", "bad_signature") == 1)
        #expect(requests("alipay.trade", "", "unknown_tenant") == 1)
        #expect(requests("alipay", "", "malformed") == 1)
        #expect(requests("alipay.event", "2017122801303261", "accepted") == 1)
        #expect(requests("xxpay.pay", "20001223", "accepted") == 1)
        #expect(requests("xxpay.pay", "20001223", "duplicate") == 1)
        #expect(requests("jeepay.pay", "M1700000000", "accepted") == 1)
        #expect(requests("jeepay.pay", "M1700000000", "rejected") == 1)
        #expect(requests("jeepay", "", "wrong_method") == 1)
        #expect(metrics["payhook_request_duration_seconds_count{route=\"alipay\"}"] == 6)
        #expect(metrics["payhook_request_duration_seconds_count{route=\"xxpay\"}"] == 2)
        // The 405 is answered before the body, without a latency sample.
        #expect(metrics["payhook_request_duration_seconds_count{route=\"jeepay\"}"] == 2)
        #expect(metrics["payhook_verified_secret_position_total{source=\"alipay.trade\",tenant=\"2019073166072302\",position=\"1\"}"] == 2)
        #expect(metrics["payhook_verified_secret_position_total{source=\"alipay.event\",tenant=\"2017122801303261\",position=\"1\"}"] == 1)
        #expect(metrics["payhook_verified_secret_position_total{source=\"xxpay.pay\",tenant=\"20001223\",position=\"1\"}"] == 2)
        #expect(metrics["payhook_verified_secret_position_total{source=\"jeepay.pay\",tenant=\"M1700000000\",position=\"1\"}"] == 1)
        // Request text never becomes a label.
        #expect(!metrics.keys.contains { $0.contains("2019073166072399") })
        try Providers.validateSpool(live)
    }
}
