import PayhookAlipay
import PayhookCore
import PayhookCrypto
import PayhookXxPay
import Testing

// Findings of the alipay and md5-notify fuzz targets (Fuzz/README.md), each pinned to the answer it must keep
// getting, with its input inline or cut to its shape, asserted through the public API.

// MARK: - alipay

@Suite struct FuzzRegressionAlipayTests {
    static let appID = "2021004100000001"
    /// 2026-01-03 07:59:00 in Beijing, the notification's notify_time, as Unix milliseconds.
    static let notified: Int64 = 1_767_398_340_000

    /// A trade notification of the given raw (already charset-encoded) values, signed with the test-only key of
    /// Fixtures/alipay under the trade rule, every byte of every value percent-encoded.
    static func signedBody(_ values: [(String, [UInt8])]) throws -> [UInt8] {
        let pem = try ProviderVectorTests.fixture("alipay/test-only-alipay-private-key.pem")
        let raw = values.map { RawFormParameter(name: Array($0.0.utf8), value: $0.1) }
        let content = AlipaySigning.content(raw, rule: .withoutSignType)
        let signature = try #require(Signature.signRSA(.sha256, privateKeyPEM: pem, message: content))
        func encode(_ bytes: [UInt8]) -> String { bytes.map { "%" + String($0, radix: 16, uppercase: true).leftPadded() }.joined() }
        let pairs = values.map { $0.0 + "=" + encode($0.1) } + ["sign=" + encode(Array(Base64.encode(signature).utf8))]
        return Array(pairs.joined(separator: "&").utf8)
    }

    static func source() throws -> AlipaySource {
        let key = try RSAPublicKey(pem: try ProviderVectorTests.fixture("alipay/test-only-alipay-public-key.pem"))
        let tenant = AlipayTenant(
            path: "/notify/alipay", appID: appID, keys: [.init(label: "test-only", key: key)], charsets: [.utf8, .gbk])
        return AlipaySource(path: "/notify/alipay", tenants: [tenant])
    }

    /// Found by the alipay target within half a minute: six or more GBK bytes 0x80 (the euro sign, U+20AC: one
    /// byte in, three bytes of UTF-8 out) outgrew the two bytes per byte TextCharset gave iconv for its output,
    /// so valid GBK text was refused as "not valid gbk", and a correctly signed GBK notification with it as
    /// malformed (400) on every retry.
    @Test func gbkEuroSignsDecodeHoweverMany() {
        #expect(TextCharset.gbk.decode([UInt8](repeating: 0x80, count: 4)) == "€€€€")
        #expect(TextCharset.gbk.decode([UInt8](repeating: 0x80, count: 6)) == "€€€€€€")
        #expect(TextCharset.gbk.decode(Array("buyer_i".utf8) + [UInt8](repeating: 0x80, count: 97)) == "buyer_i" + String(repeating: "€", count: 97))
        // A GBK character of two bytes still fits, and an invalid sequence is still refused.
        #expect(TextCharset.gbk.decode([0xB2, 0xE2, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80]) == "测€€€€€€")
        #expect(TextCharset.gbk.decode([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0xFF]) == nil)
    }

    @Test func aGBKNotificationWithEuroSignsIsAccepted() throws {
        let body = try Self.signedBody([
            ("app_id", Array(Self.appID.utf8)), ("charset", Array("gbk".utf8)), ("notify_id", Array("2026010300222075850068450512345678".utf8)),
            ("notify_time", Array("2026-01-03 07:59:00".utf8)), ("notify_type", Array("trade_status_sync".utf8)),
            ("out_trade_no", Array("20260103075850-564-57".utf8)), ("subject", [UInt8](repeating: 0x80, count: 6)),
            ("total_amount", Array("0.10".utf8)), ("trade_no", Array("2026010322001468450512505578".utf8)),
            ("trade_status", Array("TRADE_SUCCESS".utf8)),
        ])
        let event = try ProviderVectorTests.event(
            try Self.source().process(ProviderVectorTests.post("/notify/alipay", body: body), nowMilliseconds: Self.notified + 1000))
        #expect(event.fields.contains { $0.name == "subject" && $0.value == "€€€€€€" })
        #expect(event.amount == 10)
    }
}

// MARK: - charset names and moved parameters (both targets' properties, on inputs made to reach them)

/// Neither of these was reached by a fuzz run (the standard library is not instrumented, so no coverage leads
/// mutations to a Kelvin sign or a combining mark in the right place); both broke a property of the targets
/// on an input written to reach it, which the targets' dictionaries now carry the tokens for.
@Suite struct FuzzRegressionCharacterWiseTests {
    /// alipay's charset-name property: `TextCharset(name:)` lowercased with Unicode's mapping, which turns the
    /// Kelvin sign U+212A into `k`, so `charset=gb%E2%84%AA` was read as GBK.
    @Test func aCharsetNameIsReadInASCIILettersOnly() {
        #expect(TextCharset(name: "gb\u{212A}") == nil)
        #expect(TextCharset(name: "GB\u{212A}") == nil)
        #expect(TextCharset(name: "GBK") == .gbk)
        #expect(TextCharset(name: "Utf-8") == .utf8)
        #expect(TextCharset(name: "UTF8") == .utf8)
        #expect(TextCharset(name: "gb2312") == nil)
    }

    /// md5-notify's raw verdict property: checkMoves looked for `&name=` with String's `contains`, which compares
    /// characters, and `=` followed by a combining mark (U+0301), or `&` after a prepended mark (U+0600), is
    /// another character, so a correctly signed value holding `&amount=` was accepted instead of refused as
    /// semantic. AlipaySource.checkMoves had the same line.
    @Test(arguments: ["x&amount=\u{301}5", "x\u{600}&amount=5", "x&mchOrderNo=\u{200D}G1"])
    func aMovedParameterIsSeenWhateverCharacterItJoins(value: String) throws {
        let moved = [FormParameter(name: "mchId", value: "20001223"), FormParameter(name: "subject", value: value)]
        #expect(MD5KeySigning.checkMoves(moved, keyFields: XxPaySource.keyFields) != nil)

        let query = try ProviderVectorTests.fixture("xxpay/x-1-generated.query")
        var parameters = try FormQuery.decode(String(decoding: query, as: UTF8.self)).filter { $0.name != "sign" }
        let subject = try #require(parameters.firstIndex { $0.name == "subject" })
        parameters[subject] = FormParameter(name: "subject", value: parameters[subject].value + value)
        let key = try ProviderVectorTests.secret("xxpay.reskey")
        parameters.append(FormParameter(name: "sign", value: MD5KeySigning.sign(parameters, secret: Array(key.value.utf8))))
        let body = parameters.map { $0.name + "=" + (Self.escaped($0.value)) }.joined(separator: "&")
        let source = XxPaySource(
            path: "/notify/xxpay", tenants: [XxPayTenant(path: "/notify/xxpay", mchID: "20001223", keys: [key])],
            maxCallbackAgeMilliseconds: ProviderVectorTests.forever)
        let verdict = source.process(ProviderVectorTests.post("/notify/xxpay", body: Array(body.utf8)), nowMilliseconds: 1_514_779_300_000)
        guard case .refused(.semantic(let reason)) = verdict.outcome else {
            Issue.record("\(verdict.outcome)")
            return
        }
        #expect(reason.contains("moved inside another's value"))
    }

    @Test(arguments: ["x&out_biz_no=\u{301}R1", "x\u{600}&total_amount=9.99"])
    func anAlipayMovedParameterIsSeenWhateverCharacterItJoins(value: String) {
        #expect(AlipaySource.checkMoves([FormParameter(name: "subject", value: value)]) != nil)
    }

    static func escaped(_ text: String) -> String {
        text.utf8.map { byte in
            (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
                ? String(UnicodeScalar(byte)) : "%" + String(byte, radix: 16, uppercase: true).leftPadded()
        }.joined()
    }
}

private extension String {
    func leftPadded() -> String { count == 1 ? "0" + self : self }
}
