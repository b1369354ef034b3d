import Foundation
import PayhookAlipay
import PayhookCore
import PayhookCrypto
import PayhookTestSupport
import PayhookXxPay
import Testing

// The real and generated vectors of Fixtures/alipay, Fixtures/xxpay and Fixtures/jeepay (their README says where
// each comes from), through the sources themselves: each verifies as captured and is refused once one byte of
// a signed value changes.
@Suite struct ProviderVectorTests {
    static func fixture(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: repositoryRoot + "/Fixtures/" + name)))
    }

    static func secret(_ name: String) throws -> Secret {
        Secret(String(decoding: try fixture("secrets/" + name), as: UTF8.self).trimmingCharacters(in: .newlines))
    }

    static func post(_ path: String, body: [UInt8], query: String? = nil, method: String = "POST") -> CallbackRequest {
        CallbackRequest(
            method: method, target: path + (query.map { "?" + $0 } ?? ""), query: query, body: body, remoteAddress: "192.0.2.9",
            receivedAtMilliseconds: 1_700_000_000_000)
    }

    static func event(_ verdict: Verdict, sourceLocation: SourceLocation = #_sourceLocation) throws -> Event {
        guard case .accepted(let event) = verdict.outcome else {
            Issue.record("not accepted: \(verdict.outcome)", sourceLocation: sourceLocation)
            throw CancellationError()
        }
        return event
    }

    static func refusal(_ verdict: Verdict) -> Refusal? {
        if case .refused(let refusal) = verdict.outcome { return refusal }
        return nil
    }

    /// Every byte of `body` that is a value's letter or digit, changed to another letter or digit of its kind.
    static func oneByteChanges(_ body: [UInt8], skipping skipped: Set<String> = []) -> [[UInt8]] {
        var bodies: [[UInt8]] = []
        var inValue = false
        var name: [UInt8] = []
        for (index, byte) in body.enumerated() {
            switch byte {
            case UInt8(ascii: "&"): inValue = false; name = []; continue
            case UInt8(ascii: "="): inValue = true; continue
            default: break
            }
            if !inValue { name.append(byte); continue }
            if skipped.contains(String(decoding: name, as: UTF8.self)) { continue }
            let replacement: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "8"), UInt8(ascii: "a")...UInt8(ascii: "y"), UInt8(ascii: "A")...UInt8(ascii: "Y"): replacement = byte + 1
            case UInt8(ascii: "9"): replacement = UInt8(ascii: "0")
            case UInt8(ascii: "z"), UInt8(ascii: "Z"): replacement = byte - 1
            default: continue
            }
            var changed = body
            changed[index] = replacement
            bodies.append(changed)
        }
        return bodies
    }

    static let forever: Int64 = 36_500 * 86_400_000

    // MARK: - Alipay

    static func alipay(_ appID: String, keyFile: String, gateway: Bool = false) throws -> AlipaySource {
        let pem = try fixture("alipay/" + keyFile)
        let key = keyFile.hasSuffix(".crt") ? try X509Certificate(pem: pem).publicKey : try RSAPublicKey(pem: pem)
        let tenant = AlipayTenant(path: "/notify/alipay", appID: appID, keys: [.init(label: keyFile, key: key)], gatewayNotifications: gateway)
        return AlipaySource(path: "/notify/alipay", tenants: [tenant], maxCallbackAgeMilliseconds: forever)
    }

    @Test func a1ProductionTradeNotificationVerifies() throws {
        let source = try Self.alipay("2019073166072302", keyFile: "a1-alipay-public-key.pem")
        let body = try Self.fixture("alipay/a1-yuque-trade.form")
        let event = try Self.event(source.process(Self.post("/notify/alipay", body: body), nowMilliseconds: 1_565_855_785_000))
        #expect(event.source == "alipay.trade")
        #expect(event.tenant == "2019073166072302")
        #expect(event.orderRef == "20190815155618536-564-57")
        #expect(event.status == "TRADE_SUCCESS")
        #expect(event.amount == 10)
        #expect(event.currency == "CNY")
        #expect(event.verifiedWith == "rsa2")
        #expect(event.dedupeKey.parts == ["2019073166072302", "20190815155618536-564-57", "TRADE_SUCCESS", ""])
        #expect(!event.fields.contains { $0.name == "sign" || $0.name == "sign_type" })
        #expect(event.fields.contains { $0.name == "subject" && $0.value == "语雀空间 500人规模" })
        #expect(event.raw.body == String(decoding: body, as: UTF8.self))
        for changed in Self.oneByteChanges(body, skipping: ["sign", "sign_type"]) {
            #expect(Self.refusal(source.process(Self.post("/notify/alipay", body: changed), nowMilliseconds: 1_565_855_785_000)) != nil)
        }
    }

    @Test func a2OpenPlatformNotificationVerifiesOnlyWithSignTypeKept() throws {
        let body = try Self.fixture("alipay/a2-servicemarket.form")
        let gateway = try Self.alipay("2017122801303261", keyFile: "a2-alipay-public-key.pem", gateway: true)
        let event = try Self.event(gateway.process(Self.post("/notify/alipay", body: body), nowMilliseconds: 1_552_011_623_000))
        #expect(event.source == "alipay.event")
        #expect(event.status == "servicemarket_order_notify")
        #expect(event.fields.contains { $0.name == "sign_type" })
        #expect(event.dedupeKey.parts == ["2017122801303261", "servicemarket_order_notify", "2019030800222102023008121054923345"])
        for changed in Self.oneByteChanges(body, skipping: ["sign"]) {
            #expect(Self.refusal(gateway.process(Self.post("/notify/alipay", body: changed), nowMilliseconds: 1_552_011_623_000)) != nil)
        }
        let tradeOnly = try Self.alipay("2017122801303261", keyFile: "a2-alipay-public-key.pem")
        #expect(Self.refusal(tradeOnly.process(Self.post("/notify/alipay", body: body), nowMilliseconds: 1_552_011_623_000))?.status == 401)
    }

    @Test func a3SandboxCertificateNotificationVerifiesWithItsPlus() throws {
        let source = try Self.alipay("9021000122682882", keyFile: "a3-alipay-public-cert.crt")
        let body = try Self.fixture("alipay/a3-sandbox-cert-plus.form")
        let now: Int64 = 1_703_147_205_000
        let event = try Self.event(source.process(Self.post("/notify/alipay", body: body), nowMilliseconds: now))
        #expect(event.fields.contains { $0.name == "subject" && $0.value == "yansongda+测试 - 1" })
        for changed in Self.oneByteChanges(body, skipping: ["sign", "sign_type"]) {
            #expect(Self.refusal(source.process(Self.post("/notify/alipay", body: changed), nowMilliseconds: now)) != nil)
        }
        // The `+` read as a space, as a lenient decoder of the raw body would, is another subject: refused.
        let text = String(decoding: body, as: UTF8.self).replacingOccurrences(of: "yansongda%2B", with: "yansongda+")
        #expect(Self.refusal(source.process(Self.post("/notify/alipay", body: Array(text.utf8)), nowMilliseconds: now))?.status == 401)
    }

    @Test func aPinnedSellerIsRequiredOfTradeNotifications() throws {
        let key = try RSAPublicKey(pem: try Self.fixture("alipay/test-only-alipay-public-key.pem"))
        let privateKey = try Self.fixture("alipay/test-only-alipay-private-key.pem")
        func form(seller: String?) -> [UInt8] {
            var parameters = [
                ("app_id", "2021000000000001"), ("charset", "utf-8"), ("notify_id", "n1"), ("notify_time", "2023-11-15 06:13:20"),
                ("out_trade_no", "T1"), ("total_amount", "1.00"), ("trade_no", "2023111522001"), ("trade_status", "TRADE_SUCCESS"),
                ("sign_type", "RSA2"),
            ].map { FormParameter(name: $0.0, value: $0.1) }
            if let seller { parameters.append(FormParameter(name: "seller_id", value: seller)) }
            let sign = AlipaySigning.sign(parameters, type: .rsa2, privateKeyPEM: privateKey) ?? ""
            parameters.append(FormParameter(name: "sign", value: sign))
            return Array(parameters.map { "\($0.name)=\($0.value.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")" }.joined(separator: "&").utf8)
        }
        let tenant = AlipayTenant(path: "/a", appID: "2021000000000001", sellerID: "2088000000000001", keys: [.init(label: "k", key: key)])
        let source = AlipaySource(path: "/a", tenants: [tenant], maxCallbackAgeMilliseconds: Self.forever)
        let now: Int64 = 1_700_000_000_000
        #expect(try Self.event(source.process(Self.post("/a", body: form(seller: "2088000000000001")), nowMilliseconds: now)).amount == 100)
        #expect(Self.refusal(source.process(Self.post("/a", body: form(seller: "2088000000000002")), nowMilliseconds: now)) == .semantic("seller_id is missing or does not match the tenant's seller_id"))
        #expect(Self.refusal(source.process(Self.post("/a", body: form(seller: nil)), nowMilliseconds: now))?.status == 400)
        var unpinned = tenant
        unpinned.sellerID = nil
        let open = AlipaySource(path: "/a", tenants: [unpinned], maxCallbackAgeMilliseconds: Self.forever)
        #expect(try Self.event(open.process(Self.post("/a", body: form(seller: nil)), nowMilliseconds: now)).status == "TRADE_SUCCESS")
    }

    // MARK: - XxPay and Jeepay

    @Test func x1GeneratedXxPayNotificationVerifiesInTheQueryOfAnEmptyPost() throws {
        let tenant = XxPayTenant(path: "/notify/xxpay", mchID: "20001223", keys: [try Self.secret("xxpay.reskey")])
        let source = XxPaySource(path: "/notify/xxpay", tenants: [tenant], maxCallbackAgeMilliseconds: Self.forever)
        let query = String(decoding: try Self.fixture("xxpay/x-1-generated.query"), as: UTF8.self)
        let event = try Self.event(source.process(Self.post("/notify/xxpay", body: [], query: query), nowMilliseconds: 1_514_779_300_000))
        #expect(event.source == "xxpay.pay")
        #expect(event.dedupeKey.parts == ["20001223", "G20180101120000000001", "2"])
        #expect(event.amount == 1)
        #expect(event.currency == "CNY")
        let get = try Self.event(source.process(Self.post("/notify/xxpay", body: [], query: query, method: "GET"), nowMilliseconds: 1_514_779_300_000))
        #expect(get.id == event.id)
        let form = try Self.event(source.process(Self.post("/notify/xxpay", body: Array(query.utf8)), nowMilliseconds: 1_514_779_300_000))
        #expect(form.id == event.id)
        for changed in Self.oneByteChanges(Array(query.utf8), skipping: ["sign"]) {
            let verdict = source.process(Self.post("/notify/xxpay", body: [], query: String(decoding: changed, as: UTF8.self)), nowMilliseconds: 1_514_779_300_000)
            #expect(Self.refusal(verdict) != nil)
        }
    }

    @Test func jeepayRealAndGeneratedNotificationsVerify() throws {
        let j1 = JeepayTenant(path: "/notify/jeepay", mchNo: "M1747033666", appID: "68219e426e70ed6a5e4229b6", keys: [try Self.secret("jeepay-j1.appsecret")])
        let gen = JeepayTenant(path: "/notify/jeepay", mchNo: "M1700000000", appID: "65a0b1c2d3e4f5a6b7c8d9e0", keys: [try Self.secret("jeepay.appsecret")])
        let source = JeepaySource(path: "/notify/jeepay", tenants: [j1, gen], maxCallbackAgeMilliseconds: Self.forever)
        let real = try Self.fixture("jeepay/j1-real-notify.form")
        let event = try Self.event(source.process(Self.post("/notify/jeepay", body: real), nowMilliseconds: 1_756_625_914_000))
        #expect(event.source == "jeepay.pay")
        #expect(event.tenant == "M1747033666")
        #expect(event.dedupeKey.parts == ["M1747033666", "2025831153825967041216", "2"])
        #expect(event.fields.contains { $0.name == "extParam" && $0.value.hasPrefix("{\"uid\"") })
        for changed in Self.oneByteChanges(real, skipping: ["sign"]) {
            #expect(Self.refusal(source.process(Self.post("/notify/jeepay", body: changed), nowMilliseconds: 1_756_625_914_000)) != nil)
        }
        let generated = try Self.fixture("jeepay/j-1-generated.form")
        #expect(try Self.event(source.process(Self.post("/notify/jeepay", body: generated), nowMilliseconds: 1_704_081_607_000)).amount == 100)
        for changed in Self.oneByteChanges(generated, skipping: ["sign"]) {
            #expect(Self.refusal(source.process(Self.post("/notify/jeepay", body: changed), nowMilliseconds: 1_704_081_607_000)) != nil)
        }
    }

    @Test func j2bDocumentationExampleSignsAsItsSDKSays() throws {
        let form = try FormQuery.decode(String(decoding: try Self.fixture("jeepay/j2b-doc-example.form"), as: UTF8.self))
        let key = try Self.secret("jeepay-docs.appsecret")
        #expect(MD5KeySigning.sign(form, secret: Array(key.value.utf8)) == "84E1CA56F984502BBAC06EA6707157F5")
        #expect(try MD5KeySigning.verify(form, sign: "84e1ca56f984502bbac06ea6707157f5", secrets: [key]).get() == 1)
        for changed in Self.oneByteChanges(try Self.fixture("jeepay/j2b-doc-example.form"), skipping: ["sign"]) {
            // A change that breaks an escape is refused before any signature; the rest must not verify.
            guard let params = try? FormQuery.decode(String(decoding: changed, as: UTF8.self)) else { continue }
            #expect(throws: Refusal.self) { try MD5KeySigning.verify(params, sign: "84E1CA56F984502BBAC06EA6707157F5", secrets: [key]).get() }
        }
        // The documentation's printed result is not the MD5 of its printed string.
        #expect(throws: Refusal.self) { try MD5KeySigning.verify(form, sign: "4A5078DABBCE0D9C4E7668DACB96FF7A", secrets: [key]).get() }
    }
}
