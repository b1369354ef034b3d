import Foundation
import PayhookCore
import PayhookCrypto
import PayhookUnified
import PayhookWeChat
import Testing

// Vectors from docs/protocols.md §4.6 and §5 (V2-1 is WeChat's own signing page; V2-2, V2-3, V2-R were
// cross-checked there with wechatpy). The fixture files were checked again with wechatpy 1.8.18.
@Suite struct WeChatTests {
    static let key = "192006250b4c09247ec02edce69f6a2d"
    static let tenant = WeChatTenant(
        path: "/w", mchID: "10000100", appID: nil, keys: [Secret(key)], signTypes: [.md5, .hmacSHA256], line: 1)

    static func fixture(_ name: String) throws -> [UInt8] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Fixtures/wechat/\(name)")
        return Array(try Data(contentsOf: url))
    }

    static func process(_ body: [UInt8], tenants: [WeChatTenant] = [tenant]) -> Verdict.Outcome {
        WeChatSource(path: "/w", tenants: tenants).process(
            CallbackRequest(method: "POST", target: "/w", query: nil, body: body, remoteAddress: "127.0.0.1", receivedAtMilliseconds: 0),
            nowMilliseconds: 0).outcome
    }

    static func refusal(_ verdict: Verdict.Outcome) -> Refusal? {
        if case .refused(let r) = verdict { return r }
        return nil
    }

    static func accepted(_ verdict: Verdict.Outcome) -> Event? {
        if case .accepted(let e) = verdict { return e }
        return nil
    }

    static func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    @Test func v21SigningPageExample() {
        let elements = [("appid", "wxd930ea5d5a258f4f"), ("mch_id", "10000100"), ("device_info", "1000"), ("body", "test"), ("nonce_str", "ibuaiVcKdpRxkhJA")]
            .map { FlatXMLElement(name: $0.0, text: $0.1) }
        let string = WeChatSigning.stringToSign(elements, key: Self.key)
        #expect(string == "appid=wxd930ea5d5a258f4f&body=test&device_info=1000&mch_id=10000100&nonce_str=ibuaiVcKdpRxkhJA&key=192006250b4c09247ec02edce69f6a2d")
        #expect(Hex.encode(Digest.md5(Array(string.utf8))).uppercased() == "9A0A8659F005D6984697E2CA0A9CF3B7")
        #expect(Hex.encode(Digest.hmacSHA256(key: Array(Self.key.utf8), message: Array(string.utf8))).uppercased()
            == "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6")
    }

    @Test func v22FullNotificationMD5() throws {
        let body = try Self.fixture("pay-md5.xml")
        let elements = try FlatXML.parse(body, root: "xml")
        let string = WeChatSigning.stringToSign(elements, key: Self.key)
        #expect(string.hasPrefix("appid=wx2421b1c4370ec43b&attach=支付测试&bank_type=CFT&cash_fee=1&coupon_count=1&coupon_fee=100&coupon_fee_0=100"))
        #expect(!string.contains("device_info"))
        #expect(Hex.encode(Digest.md5(Array(string.utf8))).uppercased() == "1BD3EFE70A2F57EF61421D3AD5BC4865")
        let event = try #require(Self.accepted(Self.process(body)))
        #expect(event.source == "wechat.pay")
        #expect(event.tenant == "10000100")
        #expect(event.orderRef == "1409811653")
        #expect(event.status == "SUCCESS")
        #expect(event.amount == 101)
        #expect(event.currency == "CNY")
        #expect(event.verifiedWith == "md5")
        #expect(event.dedupeKey.text == "wechat.pay/10000100/1409811653/SUCCESS")
        #expect(event.fields.first { $0.name == "attach" }?.value == "支付测试")
        #expect(!event.fields.contains { $0.name == "sign" || $0.name == "device_info" })
        #expect(event.raw.body == Self.text(body))
    }

    /// The source, not the event model, says what a retry may change (Event.swift, `fingerprintRule`): a WeChat
    /// payment is compared by its business record (WeChatFingerprint.swift), so a new nonce_str or another
    /// sign_type is a duplicate and another amount or transaction a conflict.
    @Test func wechatNonceAndSignTypeDoNotMakeAConflict() throws {
        let pay = try #require(WeChatFingerprint.rules[WeChatSource.paySource])
        let a = [FormParameter(name: "total_fee", value: "1"), FormParameter(name: "nonce_str", value: "x"), FormParameter(name: "sign_type", value: "MD5")]
        let b = [FormParameter(name: "total_fee", value: "1"), FormParameter(name: "nonce_str", value: "y")]
        let c = [FormParameter(name: "total_fee", value: "2"), FormParameter(name: "nonce_str", value: "x")]
        let d = [FormParameter(name: "total_fee", value: "1"), FormParameter(name: "transaction_id", value: "4200000000202401010000000002")]
        #expect(pay.fingerprint(fields: a, resource: nil) == pay.fingerprint(fields: b, resource: nil))
        #expect(pay.fingerprint(fields: a, resource: nil) != pay.fingerprint(fields: c, resource: nil))
        #expect(pay.fingerprint(fields: a, resource: nil) != pay.fingerprint(fields: d, resource: nil))
        // Elsewhere a nonce_str field is ordinary content.
        let unified = try #require(UnifiedSource.fingerprintRules[UnifiedSource.sourceName])
        #expect(unified.fingerprint(fields: a, resource: nil) != unified.fingerprint(fields: b, resource: nil))
        // A verified payment result carries its source's rule, so its fingerprint is the one read back.
        let event = try #require(Self.accepted(Self.process(try Self.fixture("pay-md5.xml"))))
        #expect(event.fingerprintRule == pay)
    }

    /// The two wrong ways of docs/protocols.md §4.6 give the documented wrong signatures, and a notification
    /// signed that way is refused.
    @Test func v22WrongWaysAreRefused() throws {
        let body = Self.text(try Self.fixture("pay-md5.xml"))
        for wrong in ["65ABE8FA732C262FB9D6C953393500C1", "041995D1EF13A446149FDE616B0C17E4"] {
            let forged = body.replacing("1BD3EFE70A2F57EF61421D3AD5BC4865", with: wrong)
            #expect(Self.refusal(Self.process(Array(forged.utf8)))?.outcome == "bad_signature")
        }
        // And the first wrong way is exactly "empty device_info kept".
        let elements = try FlatXML.parse(Array(body.utf8), root: "xml")
        let kept = elements.filter { $0.name != "sign" }.sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
            .map { "\($0.name)=\($0.text)" }.joined(separator: "&") + "&key=" + Self.key
        #expect(Hex.encode(Digest.md5(Array(kept.utf8))).uppercased() == "65ABE8FA732C262FB9D6C953393500C1")
    }

    @Test func v23HMACWithAndWithoutSignType() throws {
        let with = try #require(Self.accepted(Self.process(try Self.fixture("pay-hmac.xml"))))
        #expect(with.verifiedWith == "hmac-sha256")
        #expect(with.fields.contains { $0.name == "sign_type" && $0.value == "HMAC-SHA256" })
        let without = try #require(Self.accepted(Self.process(try Self.fixture("pay-hmac-no-sign-type.xml"))))
        #expect(without.verifiedWith == "hmac-sha256")
    }

    @Test func signTypesArePinnedPerTenant() throws {
        let md5Only = WeChatTenant(path: "/w", mchID: "10000100", appID: nil, keys: [Secret(Self.key)], signTypes: [.md5], line: 1)
        let hmacOnly = WeChatTenant(path: "/w", mchID: "10000100", appID: nil, keys: [Secret(Self.key)], signTypes: [.hmacSHA256], line: 1)
        #expect(Self.refusal(Self.process(try Self.fixture("pay-hmac.xml"), tenants: [md5Only]))?.reason == "HMAC-SHA256 is not in this tenant's sign_types")
        #expect(Self.refusal(Self.process(try Self.fixture("pay-hmac-no-sign-type.xml"), tenants: [md5Only]))?.status == 401)
        #expect(Self.refusal(Self.process(try Self.fixture("pay-md5.xml"), tenants: [hmacOnly]))?.status == 401)
        #expect(Self.accepted(Self.process(try Self.fixture("pay-md5.xml"), tenants: [md5Only])) != nil)
    }

    /// sign_type is signed: claiming MD5 over an HMAC signature (or the reverse) fails.
    @Test func signTypeCannotBeFlipped() throws {
        let hmac = Self.text(try Self.fixture("pay-hmac.xml"))
        let flipped = hmac.replacing("<sign_type><![CDATA[HMAC-SHA256]]></sign_type>", with: "<sign_type><![CDATA[MD5]]></sign_type>")
        #expect(Self.refusal(Self.process(Array(flipped.utf8)))?.outcome == "bad_signature")
        let unknown = hmac.replacing("HMAC-SHA256]]></sign_type>", with: "SHA1]]></sign_type>")
        #expect(Self.refusal(Self.process(Array(unknown.utf8)))?.reason == "sign_type is neither MD5 nor HMAC-SHA256")
    }

    @Test func v2RRefundDecrypts() throws {
        let event = try #require(Self.accepted(Self.process(try Self.fixture("refund.xml"))))
        #expect(event.source == "wechat.refund")
        #expect(event.tenant == "10000100")
        #expect(event.orderRef == "1409811653")
        #expect(event.status == "SUCCESS")
        #expect(event.amount == 101)
        #expect(event.verifiedWith == "aes-256-ecb")
        #expect(event.dedupeKey.text == "wechat.refund/10000100/R20240101000001/SUCCESS")
        #expect(event.fields.count == 13)
        #expect(event.fields.first { $0.name == "refund_recv_accout" }?.value == "支付用户零钱")
        #expect(!event.fields.contains { $0.name == "req_info" })
        #expect(Hex.encode(WeChatSource.refundKey(apiKey: Self.key)) == Hex.encode(Array("d96eb16afdd491fa1e705096edbc2205".utf8)))
    }

    static func refundBody(reqInfo: String) -> [UInt8] {
        Array("<xml><return_code>SUCCESS</return_code><appid><![CDATA[wx2421b1c4370ec43b]]></appid><mch_id><![CDATA[10000100]]></mch_id><nonce_str><![CDATA[n]]></nonce_str><req_info><![CDATA[\(reqInfo)]]></req_info></xml>".utf8)
    }

    static func encrypt(_ plaintext: String, key: String = key) -> String {
        Base64.encode(Cipher.aes256ECBEncrypt(key: WeChatSource.refundKey(apiKey: key), plaintext: Array(plaintext.utf8)) ?? [])
    }

    /// V2-R's plaintext (the refund vector of Fixtures/wechat/refund.xml): every field a refund notification carries.
    static let refundPlain = "<root><out_refund_no><![CDATA[R20240101000001]]></out_refund_no><out_trade_no><![CDATA[1409811653]]></out_trade_no><refund_account><![CDATA[REFUND_SOURCE_RECHARGE_FUNDS]]></refund_account><refund_fee><![CDATA[101]]></refund_fee><refund_id><![CDATA[50000408942018111907145868882]]></refund_id><refund_recv_accout><![CDATA[支付用户零钱]]></refund_recv_accout><refund_request_source><![CDATA[API]]></refund_request_source><refund_status><![CDATA[SUCCESS]]></refund_status><settlement_refund_fee><![CDATA[1]]></settlement_refund_fee><settlement_total_fee><![CDATA[1]]></settlement_total_fee><success_time><![CDATA[2024-01-01 12:00:05]]></success_time><total_fee><![CDATA[101]]></total_fee><transaction_id><![CDATA[1004400740201409030005092168]]></transaction_id></root>"

    @Test func refundFailuresAreCleanRefusals() {
        // Encrypted with another merchant's key.
        #expect(Self.refusal(Self.process(Self.refundBody(reqInfo: Self.encrypt(Self.refundPlain, key: "another-key-entirely"))))?.status == 401)
        // Not base64, or not whole blocks.
        #expect(Self.refusal(Self.process(Self.refundBody(reqInfo: "not base64!")))?.status == 400)
        #expect(Self.refusal(Self.process(Self.refundBody(reqInfo: Base64.encode([1, 2, 3]))))?.status == 400)
        // Right key, garbage plaintext (valid padding, not XML).
        #expect(Self.refusal(Self.process(Self.refundBody(reqInfo: Self.encrypt("just some text"))))?.status == 401)
        // Right key, a DOCTYPE inside: strict parsing applies to the decrypted document too.
        #expect(Self.refusal(Self.process(Self.refundBody(reqInfo: Self.encrypt("<!DOCTYPE r><root><a>1</a></root>"))))?.status == 401)
        // Bad padding: the ciphertext of a full block without its padding block.
        let full = Cipher.aes256ECBEncrypt(key: WeChatSource.refundKey(apiKey: Self.key), plaintext: Array("0123456789abcdef".utf8)) ?? []
        #expect(Self.refusal(Self.process(Self.refundBody(reqInfo: Base64.encode(Array(full.prefix(16))))))?.status == 401)
        // Decrypts, but refund_status outside its set: for an unsigned, unauthenticated ciphertext the document's
        // shape is the only evidence, so this is the same refusal as bad padding (no oracle between them).
        let odd = Self.refundPlain.replacing("[SUCCESS]", with: "[DONE]")
        #expect(Self.refusal(Self.process(Self.refundBody(reqInfo: Self.encrypt(odd))))?.outcome == "bad_signature")
        #expect(Self.accepted(Self.process(Self.refundBody(reqInfo: Self.encrypt(Self.refundPlain)))) != nil)
    }

    @Test func strictPKCS7() {
        let key = WeChatSource.refundKey(apiKey: Self.key)
        // A last block ending in 0x02 0x03 claims 3 pad bytes that are not all 3: refused.
        let block: [UInt8] = Array("0123456789abc".utf8) + [0x01, 0x02, 0x03]
        let noPad = Cipher.aes256ECBEncrypt(key: key, plaintext: block).map { Array($0.prefix(16)) } ?? []
        #expect(Cipher.aes256ECBDecrypt(key: key, ciphertext: noPad) == nil)
        #expect(Cipher.aes256ECBDecrypt(key: key, ciphertext: Cipher.aes256ECBEncrypt(key: key, plaintext: block) ?? []) == block)
        #expect(Cipher.aes256ECBDecrypt(key: Array(key.prefix(16)), ciphertext: noPad) == nil)
    }

    @Test func returnCodeFailIsAcknowledgedNotQueued() {
        let body = Array("<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[签名失败]]></return_msg></xml>".utf8)
        guard case .acknowledged = Self.process(body) else {
            Issue.record("return_code FAIL was not acknowledged")
            return
        }
    }

    @Test func tenantAndAppIDChecks() throws {
        let other = WeChatTenant(path: "/w", mchID: "999", appID: nil, keys: [Secret("k")], signTypes: [.md5], line: 1)
        #expect(Self.refusal(Self.process(try Self.fixture("pay-md5.xml"), tenants: [other]))?.outcome == "unknown_tenant")
        let pinned = WeChatTenant(path: "/w", mchID: "10000100", appID: "wx0000000000000000", keys: [Secret(Self.key)], signTypes: [.md5], line: 1)
        #expect(Self.refusal(Self.process(try Self.fixture("pay-md5.xml"), tenants: [pinned]))?.reason == "appid does not match the tenant's appid")
        // A key of another tenant on the same path is never tried.
        let foreign = WeChatTenant(path: "/w", mchID: "999", appID: nil, keys: [Secret(Self.key)], signTypes: [.md5], line: 2)
        let wrongKey = WeChatTenant(path: "/w", mchID: "10000100", appID: nil, keys: [Secret("not-it")], signTypes: [.md5], line: 1)
        #expect(Self.refusal(Self.process(try Self.fixture("pay-md5.xml"), tenants: [foreign, wrongKey]))?.outcome == "bad_signature")
    }

    @Test func rotatedKeysVerify() throws {
        let rotated = WeChatTenant(path: "/w", mchID: "10000100", appID: nil, keys: [Secret("new-key"), Secret(Self.key)], signTypes: [.md5, .hmacSHA256], line: 1)
        let elements = try FlatXML.parse(try Self.fixture("pay-md5.xml"), root: "xml")
        #expect(try WeChatSource.verifyPayment(elements, tenant: rotated).get() == .init(type: .md5, keyPosition: 2))
        #expect(Self.accepted(Self.process(try Self.fixture("refund.xml"), tenants: [rotated])) != nil)
    }

    @Test func answersAreByteExact() {
        let source = WeChatSource(path: "/w", tenants: [Self.tenant])
        #expect(Self.text(source.successAnswer.body) == "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>")
        #expect(source.successAnswer.status == 200)
        let fail = source.failureAnswer(status: 401, reason: "bad ]]> sign\n")
        #expect(Self.text(fail.body) == "<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[bad ]]? sign?]]></return_msg></xml>")
        #expect(fail.status == 401)
    }

    @Test(arguments: [
        ("<xml><return_code>SUCCESS</return_code></xml>", 400, "malformed"),
        ("<xml><return_code>MAYBE</return_code><mch_id>10000100</mch_id></xml>", 400, "malformed"),
        ("not xml at all", 400, "malformed"),
        ("<xml><return_code>SUCCESS</return_code><mch_id>10000100</mch_id></xml>", 401, "bad_signature"),
    ])
    func badBodies(body: String, status: Int, outcome: String) {
        let r = Self.refusal(Self.process(Array(body.utf8)))
        #expect(r?.status == status)
        #expect(r?.outcome == outcome)
    }

    @Test func base64IsStrict() {
        #expect(Base64.decode("TWFu") == Array("Man".utf8))
        #expect(Base64.decode("TWE=") == Array("Ma".utf8))
        #expect(Base64.decode("TQ==") == Array("M".utf8))
        #expect(Base64.decode("") == [])
        for bad in ["TWF", "TW=u", "T===", "TR==", "TWF=x", "TW Fu", "TWFu\n", "====", "TQ=A"] {
            #expect(Base64.decode(bad) == nil, "\(bad)")
        }
        for n in 0..<40 {
            let bytes = (0..<n).map { UInt8(($0 * 37 + n) & 0xff) }
            #expect(Base64.decode(Base64.encode(bytes)) == bytes)
        }
    }
}
