import Foundation
import PayhookCore
@testable import PayhookCrypto
import PayhookSpoolFormat
import PayhookTestSupport
import PayhookWeChat
import Testing

// The WeChat Pay v3 source (Sources/PayhookWeChat/WeChatV3Source.swift) against the vectors of
// Fixtures/wechat-v3 (V3-4…V3-9 and the Go SDK's certificate-mode notification), with its clock pinned to
// each vector's own time, and against notifications signed here with the SDK test key for every refusal.
@Suite struct WeChatV3SourceTests {
    typealias Vector = WeChatV3CryptoTests.Vector

    static let keyID = "PUB_KEY_ID_0000000000000024101100397200000006"
    static let apiV3Key = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"
    static let path = "/notify/wechatpay"

    static func tenant(
        _ mchID: String = "1900000100", keys: [String] = [apiV3Key], appID: String? = nil, keyID: String = keyID,
        certificates: [X509Certificate] = [], publicKey: Bool = true, skew: Int64 = 300
    ) throws -> WeChatV3Tenant {
        WeChatV3Tenant(
            path: path, mchID: mchID, appID: appID, apiV3Keys: keys.map(Secret.init),
            publicKey: publicKey ? .init(id: keyID, key: try WeChatV3CryptoTests.publicKey()) : nil,
            platformCertificates: certificates, maxClockSkewSeconds: skew)
    }

    static func request(headers: [(String, String)], body: [UInt8], path: String = path) -> CallbackRequest {
        CallbackRequest(
            method: "POST", target: path, query: nil, headers: headers.map { (name: $0.0, value: $0.1) }, body: body,
            remoteAddress: "192.0.2.7", receivedAtMilliseconds: 1_704_081_606_123)
    }

    static func request(_ v: Vector) -> CallbackRequest {
        request(headers: v.headers.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, body: Array(v.body.utf8))
    }

    /// A vector's own signing time, in milliseconds: the clock these tests pin.
    static func now(_ v: Vector, plus seconds: Int64 = 0) -> Int64 { (Int64(v.timestamp)! + seconds) * 1000 }

    static func source(_ tenants: [WeChatV3Tenant], decrypt: @escaping WeChatV3Source.Decryptor = WeChatV3Source.aes256GCM) -> WeChatV3Source {
        WeChatV3Source(path: path, tenants: tenants, maxCallbackAgeMilliseconds: 36_500 * 86_400_000, decrypt: decrypt)
    }

    static func accepted(_ verdict: Verdict, sourceLocation: SourceLocation = #_sourceLocation) throws -> Event {
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

    // MARK: - The vectors

    @Test func v34MerchantPayment() throws {
        let v = try WeChatV3CryptoTests.vector("V3-4")
        let verdict = Self.source([try Self.tenant()]).process(Self.request(v), nowMilliseconds: Self.now(v))
        let event = try Self.accepted(verdict)
        #expect(event.source == "wechat.pay")
        #expect(event.tenant == "1900000100")
        #expect(event.orderRef == "20240101000001")
        #expect(event.status == "SUCCESS")
        #expect(event.amount == 100)
        #expect(event.currency == "CNY")
        #expect(event.verifiedWith == "rsa-sha256")
        #expect(event.dedupeKey.text == "wechat.pay/1900000100/20240101000001/SUCCESS")
        #expect(event.id == Hex.encode(Digest.sha256(Array(event.dedupeKey.text.utf8))))
        // The decrypted resource, whole and exact.
        #expect(event.resource == JSONReader.parse(Array(v.plaintext.utf8)))
        let fields = Dictionary(uniqueKeysWithValues: event.fields.map { ($0.name, $0.value) })
        #expect(fields["id"] == "EV-2018022511223320873")
        #expect(fields["create_time"] == "2024-01-01T12:00:06+08:00")
        #expect(fields["event_type"] == "TRANSACTION.SUCCESS")
        #expect(fields["wechatpay_serial"] == Self.keyID)
        #expect(fields["associated_data"] == "transaction")
        // raw: the body exactly and the signed headers, so the event can be verified again.
        #expect(event.raw.body == v.body)
        #expect(event.raw.headers.map(\.name) == WeChatV3Source.Header.all)
        #expect(event.raw.headers.first { $0.name == "Wechatpay-Signature" }?.value == v.signatureHeader)
        #expect(event.secretPosition == 1)
        #expect(verdict.signature.keyID == Self.keyID)
        #expect(verdict.signature.verified == true)
        #expect(verdict.signature.clockSkewSeconds == 0)
    }

    @Test func v35RefundSuccessAndV36Abnormal() throws {
        let source = Self.source([try Self.tenant()])
        let v5 = try WeChatV3CryptoTests.vector("V3-5")
        let success = try Self.accepted(source.process(Self.request(v5), nowMilliseconds: Self.now(v5)))
        #expect(success.source == "wechat.refund")
        #expect(success.dedupeKey.text == "wechat.refund/1900000100/R20240101000001/SUCCESS")
        #expect(success.orderRef == "20240101000001")
        #expect(success.amount == 40)
        let v6 = try WeChatV3CryptoTests.vector("V3-6")
        let abnormal = try Self.accepted(source.process(Self.request(v6), nowMilliseconds: Self.now(v6)))
        #expect(abnormal.status == "ABNORMAL")
        #expect(abnormal.dedupeKey.text == "wechat.refund/1900000100/R20240101000002/ABNORMAL")
        #expect(abnormal.amount == 60)
    }

    @Test func v37PartnerPaymentBelongsToTheServiceProvider() throws {
        let v = try WeChatV3CryptoTests.vector("V3-7")
        // The merchant tenant does not get it; the service provider does.
        let merchantOnly = Self.source([try Self.tenant()]).process(Self.request(v), nowMilliseconds: Self.now(v))
        #expect(Self.refusal(merchantOnly)?.status == 401)
        let event = try Self.accepted(
            Self.source([try Self.tenant(), try Self.tenant("1230000109")]).process(Self.request(v), nowMilliseconds: Self.now(v)))
        #expect(event.tenant == "1230000109")
        #expect(event.dedupeKey.text == "wechat.pay/1230000109/1900000109/20240101000003/SUCCESS")
    }

    @Test func v38CombinePaymentIsOneEvent() throws {
        let v = try WeChatV3CryptoTests.vector("V3-8")
        let event = try Self.accepted(Self.source([try Self.tenant()]).process(Self.request(v), nowMilliseconds: Self.now(v)))
        #expect(event.dedupeKey.text == "wechat.pay/1900000100/C20240101000004/SUCCESS")
        #expect(event.orderRef == "C20240101000004")
        guard case .array(let orders)? = event.resource?["sub_orders"] else {
            Issue.record("no sub_orders")
            return
        }
        let total = orders.compactMap { order -> Int64? in
            if case .number(let n)? = order["amount"]?["total_amount"] { return Int64(n) }
            return nil
        }.reduce(0, +)
        #expect(orders.count >= 2)
        #expect(event.amount == total)
    }

    /// A combined order is stored as paid with the sum of its sub-orders, so every sub-order must be paid.
    @Test func aCombineWithAnUnpaidSubOrderIsRefused() throws {
        let v = try WeChatV3CryptoTests.vector("V3-8")
        #expect(v.plaintext.contains("\"trade_state\":\"SUCCESS\""))
        let plaintext = v.plaintext.replacing("\"trade_state\":\"SUCCESS\"", with: "\"trade_state\":\"NOTPAY\"")
        let verdict = Self.source([try Self.tenant()]).process(
            try Signer().notification(plaintext: Array(plaintext.utf8), timestamp: Int64(v.timestamp)!), nowMilliseconds: Self.now(v))
        #expect(Self.refusal(verdict)?.status == 400)
    }

    @Test func v39SignTestProbeIsRefusedAndNoted() throws {
        let v = try WeChatV3CryptoTests.vector("V3-9")
        let verdict = Self.source([try Self.tenant()]).process(Self.request(v), nowMilliseconds: Self.now(v))
        #expect(Self.refusal(verdict)?.status == 401)
        #expect(verdict.signature.probe)
        #expect(verdict.tenant == "1900000100")
    }

    /// The Go SDK's real certificate-mode notification: a platform certificate chosen by its 16-digit serial,
    /// a generic event type, and (through the test seam, never the config) its 16-byte test key.
    @Test func goSDKCertificateModeNotification() throws {
        let headers = try JSONDecoder().decode([String: String].self, from: Data(try WeChatV3CryptoTests.fixture("go-sdk/headers.json")))
        let body = try WeChatV3CryptoTests.fixture("go-sdk/body.json")
        let certificate = try X509Certificate(pem: try WeChatV3CryptoTests.fixture("go-sdk/wechatpay_certificate.pem"))
        let tenant = try Self.tenant("1234567890", keys: ["testMchAPIv3Key0"], publicKey: false).with { $0.platformCertificates = [certificate] }
        let sent = ["Wechatpay-Nonce", "Wechatpay-Timestamp", "Wechatpay-Serial", "Wechatpay-Signature"].map { ($0, headers[$0]!) }
        let now = Int64(headers["Wechatpay-Timestamp"]!)! * 1000
        let seam: WeChatV3Source.Decryptor = { key, nonce, aad, sealed in
            Cipher.testSeamAES128GCMDecrypt(key: key, nonce: nonce, associatedData: aad, ciphertextAndTag: sealed)
        }
        let verdict = Self.source([tenant], decrypt: seam).process(Self.request(headers: sent, body: body), nowMilliseconds: now)
        let event = try Self.accepted(verdict)
        #expect(event.source == "wechat.event")
        #expect(event.status == "PAYSCORE.USER_OPEN_SERVICE")
        let id = try #require(event.fields.first { $0.name == "id" }?.value)
        #expect(event.dedupeKey.text == "wechat.event/1234567890/PAYSCORE.USER_OPEN_SERVICE/" + id)
        #expect(event.resource == JSONReader.parse(try WeChatV3CryptoTests.fixture("go-sdk/plaintext.json")))
        #expect(verdict.signature.keyID == "D7CE59D1F522D701")
        // The production decryptor refuses the 16-byte key: the seam is the only way this vector decrypts.
        let production = Self.source([tenant]).process(Self.request(headers: sent, body: body), nowMilliseconds: now)
        #expect(Self.refusal(production)?.status == 401)
        // Serials compare as integers: another spelling of the same serial names the same certificate.
        let respelled = sent.map { $0.0 == "Wechatpay-Serial" ? ($0.0, "00d7ce59d1f522d701") : $0 }
        #expect(Self.refusal(Self.source([tenant], decrypt: seam).process(Self.request(headers: respelled, body: body), nowMilliseconds: now)) == nil)
    }

    // MARK: - Headers

    @Test func headerNamesAreCaseInsensitiveAndTheTypeMayBeAbsent() throws {
        let v = try WeChatV3CryptoTests.vector("V3-4")
        let source = Self.source([try Self.tenant()])
        let lower = v.headers.filter { $0.key != "Wechatpay-Signature-Type" }.map { ($0.key.lowercased(), $0.value) }
        _ = try Self.accepted(source.process(Self.request(headers: lower, body: Array(v.body.utf8)), nowMilliseconds: Self.now(v)))
        let upper = v.headers.map { ($0.key.uppercased(), $0.value) }
        _ = try Self.accepted(source.process(Self.request(headers: upper, body: Array(v.body.utf8)), nowMilliseconds: Self.now(v)))
    }

    @Test func missingRepeatedOrForeignHeadersAreRefused() throws {
        let v = try WeChatV3CryptoTests.vector("V3-4")
        let source = Self.source([try Self.tenant()])
        let all = v.headers.map { ($0.key, $0.value) }
        for name in ["Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature", "Wechatpay-Serial"] {
            let verdict = source.process(Self.request(headers: all.filter { $0.0 != name }, body: Array(v.body.utf8)), nowMilliseconds: Self.now(v))
            #expect(Self.refusal(verdict)?.status == 401, "without \(name)")
        }
        for name in WeChatV3Source.Header.all {
            let copy = try #require(all.first { $0.0 == name })
            let verdict = source.process(Self.request(headers: all + [(name.lowercased(), copy.1)], body: Array(v.body.utf8)), nowMilliseconds: Self.now(v))
            #expect(Self.refusal(verdict)?.status == 400, "\(name) twice")
        }
        for type in ["WECHATPAY2-SM2-WITH-SM3", "wechatpay2-sha256-rsa2048", ""] {
            let headers = all.map { $0.0 == "Wechatpay-Signature-Type" ? ($0.0, type) : $0 }
            let verdict = source.process(Self.request(headers: headers, body: Array(v.body.utf8)), nowMilliseconds: Self.now(v))
            #expect(Self.refusal(verdict)?.status == 401, "type '\(type)'")
        }
    }

    // MARK: - Key, clock, signature

    @Test func unknownSerialIsRefusedAndCountedApart() throws {
        let v = try WeChatV3CryptoTests.vector("V3-4")
        let verdict = Self.source([try Self.tenant(keyID: "PUB_KEY_ID_0000000000000000000000000000000001")])
            .process(Self.request(v), nowMilliseconds: Self.now(v))
        #expect(Self.refusal(verdict)?.status == 401)
        #expect(verdict.signature.unknownKeyID)
        #expect(verdict.signature.keyID == nil)
        #expect(verdict.tenant == nil)
    }

    @Test(arguments: [(-301, false), (-300, true), (0, true), (300, true), (301, false)])
    func timestampWindow(offset: Int64, accepted: Bool) throws {
        let v = try WeChatV3CryptoTests.vector("V3-4")
        let verdict = Self.source([try Self.tenant()]).process(Self.request(v), nowMilliseconds: Self.now(v, plus: -offset))
        #expect((Self.refusal(verdict) == nil) == accepted)
        #expect(verdict.signature.clockSkewSeconds == offset)
        if !accepted { #expect(Self.refusal(verdict)?.status == 401) }
    }

    @Test func aNarrowerWindowIsTheTenantsOwn() throws {
        let v = try WeChatV3CryptoTests.vector("V3-4")
        let verdict = Self.source([try Self.tenant(skew: 10)]).process(Self.request(v), nowMilliseconds: Self.now(v, plus: 11))
        #expect(Self.refusal(verdict)?.status == 401)
    }

    @Test func theBodyIsVerifiedAsReceived() throws {
        let v = try WeChatV3CryptoTests.vector("V3-4")
        let source = Self.source([try Self.tenant()])
        // Re-serialised with spaces, or with one byte changed: not what WeChat signed.
        let object = try JSONSerialization.jsonObject(with: Data(v.body.utf8))
        let respaced = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
        for body in [Array(respaced), Array(v.body.utf8) + [0x20], Array(v.body.utf8.dropLast())] {
            let verdict = source.process(Self.request(headers: v.headers.map { ($0.key, $0.value) }, body: body), nowMilliseconds: Self.now(v))
            #expect(Self.refusal(verdict)?.status == 401)
            #expect(verdict.signature.verified == false)
        }
    }

    // MARK: - Decryption and routing

    @Test func rotatedAPIv3KeysAreTriedInOrder() throws {
        let v = try WeChatV3CryptoTests.vector("V3-4")
        let other = String(repeating: "k", count: 32)
        let event = try Self.accepted(Self.source([try Self.tenant(keys: [other, Self.apiV3Key])]).process(Self.request(v), nowMilliseconds: Self.now(v)))
        #expect(event.secretPosition == 2)
        let none = Self.source([try Self.tenant(keys: [other])]).process(Self.request(v), nowMilliseconds: Self.now(v))
        #expect(Self.refusal(none)?.status == 401)
    }

    @Test func theDecryptedMerchantMustBeTheTenant() throws {
        let v = try WeChatV3CryptoTests.vector("V3-4")
        // Same keys, another merchant: signed and decrypted, but not this tenant's payment.
        let verdict = Self.source([try Self.tenant("1900000999")]).process(Self.request(v), nowMilliseconds: Self.now(v))
        #expect(Self.refusal(verdict) == .unknownTenant("the decrypted merchant '1900000100' is not the [[wechat_v3]] tenant whose keys verified it"))
        // Two tenants sharing the keys on one path: the decrypted merchant picks.
        let shared = Self.source([try Self.tenant("1900000999"), try Self.tenant("1900000100")])
        #expect(try Self.accepted(shared.process(Self.request(v), nowMilliseconds: Self.now(v))).tenant == "1900000100")
    }

    @Test func aPinnedAppIDMustMatch() throws {
        let v = try WeChatV3CryptoTests.vector("V3-4")
        let wrong = Self.source([try Self.tenant(appID: "wx0000000000000000")]).process(Self.request(v), nowMilliseconds: Self.now(v))
        #expect(Self.refusal(wrong)?.status == 401)
        _ = try Self.accepted(Self.source([try Self.tenant(appID: "wxdace645e0bc2cXXX")]).process(Self.request(v), nowMilliseconds: Self.now(v)))
    }

    /// A tenant that pins its appid still receives its refunds: a v3 refund resource names no appid (V3-5,
    /// V3-6), so only a payment, which always names one, must name the pinned one. Refunds were refused 401
    /// ("the appid does not match the tenant's appid") before this was fixed.
    @Test func aPinnedAppIDDoesNotRefuseRefunds() throws {
        let pinned = Self.source([try Self.tenant(appID: "wxdace645e0bc2cXXX")])
        for id in ["V3-4", "V3-5", "V3-6"] {
            let v = try WeChatV3CryptoTests.vector(id)
            #expect(Self.refusal(pinned.process(Self.request(v), nowMilliseconds: Self.now(v))) == nil, "\(id)")
        }
    }

    // MARK: - Events

    /// The event file keeps the resource whole and the signed headers, and reads back to the same id and
    /// fingerprint through the one definition of an event file.
    @Test(arguments: ["V3-4", "V3-5", "V3-6", "V3-7", "V3-8"])
    func eventFilesReadBack(id: String) throws {
        let v = try WeChatV3CryptoTests.vector(id)
        let source = Self.source([try Self.tenant(), try Self.tenant("1230000109")])
        let event = try Self.accepted(source.process(Self.request(v), nowMilliseconds: Self.now(v)))
        let file = try EventFile.parse(event.jsonBytes(), fileName: event.id + ".json")
        #expect(file.resource == event.resource)
        #expect(file.raw == event.raw)
        #expect(file.fields == event.fields)
        let rule = try #require(WeChatFingerprint.rules[event.source])
        #expect(file.fingerprint(by: rule) == event.fingerprint)
        // Foundation reads it too, with the resource as nested JSON.
        let object = try #require(try JSONSerialization.jsonObject(with: Data(event.jsonBytes())) as? [String: Any])
        #expect(object["resource"] is [String: Any])
        #expect((object["raw"] as? [String: Any])?["headers"] is [String: String])
    }

    /// A retry signed anew (another timestamp, nonce, notification id, or the other key of a migration) is the
    /// same payment: the same id and fingerprint. Another amount is a conflict.
    @Test func aReSignedRetryIsADuplicateAndAnotherAmountAConflict() throws {
        let v = try WeChatV3CryptoTests.vector("V3-4")
        let source = Self.source([try Self.tenant()])
        let first = try Self.accepted(source.process(Self.request(v), nowMilliseconds: Self.now(v)))
        let plaintext = try #require(JSONReader.parse(Array(v.plaintext.utf8)))
        let signer = try Signer()
        let retry = try Self.accepted(source.process(
            signer.notification(resource: plaintext, id: "EV-other", timestamp: Int64(v.timestamp)! + 60), nowMilliseconds: Self.now(v, plus: 60)))
        #expect(retry.id == first.id)
        #expect(retry.fingerprint == first.fingerprint)
        var changed = v.plaintext.replacing("\"total\":100", with: "\"total\":101")
        let conflict = try Self.accepted(source.process(
            signer.notification(resource: try #require(JSONReader.parse(Array(changed.utf8))), timestamp: Int64(v.timestamp)!), nowMilliseconds: Self.now(v)))
        #expect(conflict.id == first.id)
        #expect(conflict.fingerprint != first.fingerprint)
        changed = v.plaintext.replacing("4200000000202401010000000001", with: "4200000000202401010000000009")
        let otherTransaction = try Self.accepted(source.process(
            signer.notification(resource: try #require(JSONReader.parse(Array(changed.utf8))), timestamp: Int64(v.timestamp)!), nowMilliseconds: Self.now(v)))
        #expect(otherTransaction.fingerprint != first.fingerprint)
    }

    /// A v2 and a v3 notification of one payment are one event: the same dedupe key, and the same business
    /// record under WeChatFingerprint's rule (amount, transaction, payer, time, …), whatever the API.
    @Test func aV2NotificationOfTheSamePaymentIsADuplicate() throws {
        let v = try WeChatV3CryptoTests.vector("V3-4")
        let v3 = try Self.accepted(Self.source([try Self.tenant()]).process(Self.request(v), nowMilliseconds: Self.now(v)))
        var v2 = [
            "appid": "wxdace645e0bc2cXXX", "mch_id": "1900000100", "nonce_str": "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
            "result_code": "SUCCESS", "return_code": "SUCCESS", "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "is_subscribe": "N",
            "trade_type": "JSAPI", "bank_type": "CFT", "total_fee": "100", "fee_type": "CNY", "cash_fee": "100",
            "transaction_id": "4200000000202401010000000001", "out_trade_no": "20240101000001", "time_end": "20240101120005",
        ]
        let xml = { (values: [String: String]) -> [UInt8] in
            let elements = values.sorted { $0.key < $1.key }.map { FlatXMLElement(name: $0.key, text: $0.value) }
            let sign = WeChatSigner.sign(elements, type: .md5, key: "192006250b4c09247ec02edce69f6a2d")
            return Array(("<xml>" + values.map { "<\($0.key)><![CDATA[\($0.value)]]></\($0.key)>" }.joined() + "<sign>\(sign)</sign></xml>").utf8)
        }
        let tenant = WeChatTenant(path: "/w", mchID: "1900000100", appID: nil, keys: [Secret("192006250b4c09247ec02edce69f6a2d")], signTypes: [.md5], line: 1)
        func v2Event(_ values: [String: String]) throws -> Event {
            let request = CallbackRequest(method: "POST", target: "/w", query: nil, body: xml(values), remoteAddress: "192.0.2.1", receivedAtMilliseconds: 0)
            return try Self.accepted(WeChatSource(path: "/w", tenants: [tenant], maxCallbackAgeMilliseconds: 36_500 * 86_400_000).process(request, nowMilliseconds: Self.now(v)))
        }
        // v2 calls a balance payment's bank CFT where v3 says OTHERS: not a difference in the payment.
        let same = try v2Event(v2)
        #expect(same.id == v3.id)
        #expect(same.fingerprint == v3.fingerprint)
        // The same instant written in Beijing time either way; a second later is another payment record.
        v2["time_end"] = "20240101120006"
        #expect(try v2Event(v2).fingerprint != v3.fingerprint)
        v2["time_end"] = "20240101120005"
        v2["total_fee"] = "101"
        #expect(try v2Event(v2).fingerprint != v3.fingerprint)
    }

    /// The semantic checks of docs/protocols.md §8.4 on notifications that are correctly signed and encrypted.
    @Test(arguments: [
        ("\"trade_state\":\"SUCCESS\"", "\"trade_state\":\"NOTPAY\""),
        ("\"trade_state\":\"SUCCESS\"", "\"trade_state\":\"PAID\""),
        ("\"total\":100", "\"total\":\"100\""),
        ("\"total\":100", "\"total\":1.5"),
        ("\"total\":100", "\"total\":-1"),
        ("\"total\":100", "\"total\":1e2"),
        ("\"out_trade_no\":\"20240101000001\"", "\"out_trade_no\":\"2024 0101\""),
        ("\"out_trade_no\":\"20240101000001\"", "\"out_trade_no\":\"\(String(repeating: "1", count: 33))\""),
        ("\"transaction_id\":\"4200000000202401010000000001\"", "\"transaction_id\":\"42\""),
        ("\"currency\":\"CNY\",\"payer", "\"currency\":\"cny\",\"payer"),
        ("\"success_time\":\"2024-01-01T12:00:05+08:00\"", "\"success_time\":\"2024-01-01 12:00:05\""),
        ("\"mchid\":\"1900000100\",", ""),
        ("{\"mchid\"", "{\"mchid\":\"1900000100\",\"mchid\""),
    ])
    func semanticChecks(original: String, replacement: String) throws {
        let v = try WeChatV3CryptoTests.vector("V3-4")
        #expect(v.plaintext.contains(original))
        let plaintext = v.plaintext.replacing(original, with: replacement)
        let verdict = Self.source([try Self.tenant()]).process(
            try Signer().notification(plaintext: Array(plaintext.utf8), timestamp: Int64(v.timestamp)!), nowMilliseconds: Self.now(v))
        let refusal = try #require(Self.refusal(verdict), "\(replacement) accepted")
        #expect(refusal.status == 400, "\(replacement): \(refusal)")
    }

    @Test(arguments: [
        ("\"refund_status\":\"SUCCESS\"", "\"refund_status\":\"CLOSED\""),
        ("\"refund\":40", "\"refund\":101"),
        ("\"success_time\":\"2024-01-01T12:09:58+08:00\",", ""),
    ])
    func refundChecks(original: String, replacement: String) throws {
        let v = try WeChatV3CryptoTests.vector("V3-5")
        #expect(v.plaintext.contains(original))
        let plaintext = v.plaintext.replacing(original, with: replacement)
        let verdict = Self.source([try Self.tenant()]).process(
            try Signer().notification(
                plaintext: Array(plaintext.utf8), eventType: "REFUND.SUCCESS", associatedData: "refund", timestamp: Int64(v.timestamp)!),
            nowMilliseconds: Self.now(v))
        #expect(Self.refusal(verdict)?.status == 400)
    }

    @Test func envelopeChecks() throws {
        let v = try WeChatV3CryptoTests.vector("V3-4")
        let signer = try Signer()
        let ts = Int64(v.timestamp)!
        let good = String(decoding: signer.body(plaintext: Array(v.plaintext.utf8), eventType: "TRANSACTION.SUCCESS", associatedData: "transaction"), as: UTF8.self)
        let source = Self.source([try Self.tenant()])
        for (original, replacement, status) in [
            ("\"resource_type\":\"encrypt-resource\"", "\"resource_type\":\"plain\"", 400),
            ("\"algorithm\":\"AEAD_AES_256_GCM\"", "\"algorithm\":\"AEAD_SM4_GCM\"", 400),
            ("\"event_type\":\"TRANSACTION.SUCCESS\"", "\"event_type\":\"transaction success\"", 400),
            ("\"associated_data\":\"transaction\"", "\"associated_data\":\"refund\"", 401),
            ("{\"id\"", "{\"id\":\"x\",\"id\"", 400),
        ] {
            #expect(good.contains(original))
            let body = Array(good.replacing(original, with: replacement).utf8)
            let verdict = source.process(signer.request(body: body, timestamp: ts), nowMilliseconds: Self.now(v))
            #expect(Self.refusal(verdict)?.status == status, "\(replacement)")
        }
        let notJSON = source.process(signer.request(body: Array("<xml></xml>".utf8), timestamp: ts), nowMilliseconds: Self.now(v))
        #expect(Self.refusal(notJSON)?.status == 400)
    }

    /// An unknown event type is stored, not refused (refusing it makes WeChat retry for a day), keyed by its id.
    @Test func otherEventTypesAreStoredGenerically() throws {
        let v = try WeChatV3CryptoTests.vector("V3-4")
        let plaintext = #"{"out_bill_no":"B1","transfer_bill_no":"1330000071100999991182020050700019480001","state":"SUCCESS","mch_id":"1900000100","transfer_amount":2000,"openid":"o-MYE42l80oelYMDE34nYD456Xoy","create_time":"2024-01-01T12:00:00+08:00","update_time":"2024-01-01T12:00:05+08:00"}"#
        let event = try Self.accepted(Self.source([try Self.tenant()]).process(
            try Signer().notification(
                plaintext: Array(plaintext.utf8), eventType: "MCHTRANSFER.BILL.FINISHED", associatedData: "", id: "EV-transfer-1",
                timestamp: Int64(v.timestamp)!),
            nowMilliseconds: Self.now(v)))
        #expect(event.source == "wechat.event")
        #expect(event.dedupeKey.text == "wechat.event/1900000100/MCHTRANSFER.BILL.FINISHED/EV-transfer-1")
        #expect(event.amount == 0)
        #expect(!event.fields.contains { $0.name == "associated_data" })
    }

    // MARK: - A signer for fresh notifications (the SDK test key)

    struct Signer {
        let privateKey: [UInt8]

        init() throws { privateKey = try WeChatV3CryptoTests.fixture("wechat_pay_private_key.pem") }

        func body(plaintext: [UInt8], eventType: String, associatedData: String, id: String = "EV-test-1") -> [UInt8] {
            let nonce = "abcdefghijkl"
            let sealed = Cipher.aes256GCMEncrypt(
                key: Array(WeChatV3SourceTests.apiV3Key.utf8), nonce: Array(nonce.utf8), associatedData: Array(associatedData.utf8),
                plaintext: plaintext)!
            var j = JSONText()
            j.raw("{\"id\":"); j.string(id)
            j.raw(",\"create_time\":\"2024-01-01T12:00:06+08:00\",\"resource_type\":\"encrypt-resource\",\"event_type\":"); j.string(eventType)
            j.raw(",\"summary\":\"测试\",\"resource\":{\"original_type\":\"transaction\",\"algorithm\":\"AEAD_AES_256_GCM\",\"ciphertext\":")
            j.string(Base64.encode(sealed))
            j.raw(",\"associated_data\":"); j.string(associatedData)
            j.raw(",\"nonce\":"); j.string(nonce)
            j.raw("}}")
            return j.bytes
        }

        func request(body: [UInt8], timestamp: Int64, nonce: String = "NONCE0123456789") -> CallbackRequest {
            let message = Array("\(timestamp)\n\(nonce)\n".utf8) + body + [0x0A]
            let signature = Signature.signRSASHA256(privateKeyPEM: privateKey, message: message)!
            return WeChatV3SourceTests.request(
                headers: [
                    ("Wechatpay-Timestamp", String(timestamp)), ("Wechatpay-Nonce", nonce), ("Wechatpay-Signature", Base64.encode(signature)),
                    ("Wechatpay-Serial", WeChatV3SourceTests.keyID),
                ],
                body: body)
        }

        func notification(
            plaintext: [UInt8], eventType: String = "TRANSACTION.SUCCESS", associatedData: String = "transaction", id: String = "EV-test-1",
            timestamp: Int64
        ) -> CallbackRequest {
            request(body: body(plaintext: plaintext, eventType: eventType, associatedData: associatedData, id: id), timestamp: timestamp)
        }

        func notification(resource: JSONValue, id: String = "EV-test-1", timestamp: Int64) -> CallbackRequest {
            var j = JSONText()
            j.value(resource)
            return notification(plaintext: j.bytes, id: id, timestamp: timestamp)
        }
    }
}

extension WeChatV3Tenant {
    func with(_ change: (inout WeChatV3Tenant) -> Void) -> WeChatV3Tenant {
        var copy = self
        change(&copy)
        return copy
    }
}
