import Foundation
import PayhookConfig
import PayhookCore
import PayhookCrypto
import PayhookUnified
import Testing

@Suite struct UnifiedSourceTests {
    static let now = Timestamp.milliseconds(year: 2026, month: 11, day: 22)
    static let tenant = UnifiedTenant(path: "/n", domainCode: "test", secrets: [Secret("test")], signScheme: .valuesSHA1, line: 1)

    static func request(_ query: String?) -> CallbackRequest {
        CallbackRequest(
            method: "GET", target: "/n" + (query.map { "?" + $0 } ?? ""), query: query, body: [],
            remoteAddress: "127.0.0.1", receivedAtMilliseconds: 1_700_000_000_123)
    }

    /// The vectors carry fixed payment times (U4 is from 2016), so these tests run with a century-long replay
    /// window; `ReplayWindowTests` checks the window itself.
    static func process(_ query: String?, tenants: [UnifiedTenant] = [tenant]) -> Verdict.Outcome {
        UnifiedSource(path: "/n", tenants: tenants, maxCallbackAgeMilliseconds: Config.maxCallbackAge(retentionDays: 36500))
            .process(request(query), nowMilliseconds: now).outcome
    }

    /// Builds a correctly signed query from name/value pairs (form-encoding each value).
    static func signed(_ pairs: [(String, String)], secret: String = "test", scheme: UnifiedSignScheme = .valuesSHA1) -> String {
        let parameters = pairs.map { FormParameter(name: $0.0, value: $0.1) }
        let sign = Hex.encode(Digest.sha1(UnifiedSigning.message(scheme, parameters, secret: secret)))
        return (pairs + [("sign", sign)]).map { "\($0.0)=\(encode($0.1))" }.joined(separator: "&")
    }

    static func encode(_ value: String) -> String {
        var out = ""
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: " "): out += "+"
            default: out += "%" + Hex.encode([byte]).uppercased()
            }
        }
        return out
    }

    static let good: [(String, String)] = [
        ("money", "100"), ("requestKey", "order-1"), ("payTime", "1763700000000"), ("orderSn", "SN1"),
        ("payTypeCode", "Wechat"), ("payTypeName", "微信支付"), ("currencyType", "CNY"), ("payStatus", "SUCCESSPAY"),
        ("domainCode", "test"),
    ]

    static func refusal(_ verdict: Verdict.Outcome) -> Refusal? {
        if case .refused(let r) = verdict { return r }
        return nil
    }

    /// The window a verdict offers for reuse is exactly the clock readings at which the same request is
    /// accepted: one millisecond outside it at either end, it is refused (docs/architecture.md, "Retries that are
    /// the same bytes").
    @Test func theReuseWindowIsWhereTheTimeChecksPass() throws {
        let maxAge: Int64 = 3 * 86_400_000
        let source = UnifiedSource(path: "/n", tenants: [Self.tenant], maxCallbackAgeMilliseconds: maxAge)
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<50 {
            let payTime = Int64.random(in: UnifiedFields.earliestPayTime...4_000_000_000_000, using: &generator)
            let query = Self.signed(Self.good.map { $0.0 == "payTime" ? ($0.0, String(payTime)) : $0 })
            let first = source.process(Self.request(query), nowMilliseconds: payTime)
            let window = try #require(first.reuse)
            #expect(window.notBefore == payTime - UnifiedFields.payTimeFutureSlackMilliseconds)
            #expect(window.notAfter == payTime + maxAge)
            for now in [window.notBefore - 1, window.notBefore, window.notAfter, window.notAfter + 1]
                + (0..<4).map({ _ in Int64.random(in: window.notBefore - 1000...window.notAfter + 1000, using: &generator) }) {
                let outcome = source.process(Self.request(query), nowMilliseconds: now).outcome
                let accepted = if case .accepted = outcome { true } else { false }
                #expect(accepted == (window.notBefore <= now && now <= window.notAfter), "payTime \(payTime), now \(now)")
            }
        }
        // A refusal offers nothing.
        #expect(source.process(Self.request(Self.signed(Self.good, secret: "wrong")), nowMilliseconds: 1_763_700_000_000).reuse == nil)
    }

    @Test func u4CallbackIsAccepted() throws {
        let verdict = Self.process(UnifiedSigningTests.u4Query)
        guard case .accepted(let event) = verdict else {
            Issue.record("expected acceptance, got \(verdict)")
            return
        }
        #expect(event.source == "unified")
        #expect(event.tenant == "test")
        #expect(event.orderRef == "88a17e1fbf275c12c77a4b88ce3bf632")
        #expect(event.status == "SUCCESSPAY")
        #expect(event.amount == 2)
        #expect(event.currency == "CNY")
        #expect(event.verifiedWith == "values-sha1")
        #expect(event.dedupeKey.text == "unified/test/88a17e1fbf275c12c77a4b88ce3bf632/SUCCESSPAY")
        #expect(event.id == Hex.encode(Digest.sha256(Array(event.dedupeKey.text.utf8))))
        #expect(event.fields.map(\.name) == ["money", "requestKey", "payTime", "orderSn", "payTypeCode", "payTypeName", "currencyType", "payStatus", "domainCode"])
        #expect(event.fields.first { $0.name == "payTypeName" }?.value == "支付宝支付")
        #expect(!event.fields.contains { $0.name == "sign" })
        #expect(event.raw.target == "/n?" + UnifiedSigningTests.u4Query)
        #expect(event.remoteAddress == "127.0.0.1")
    }

    @Test func uppercaseSignVerifies() {
        let query = UnifiedSigningTests.u4Query.replacingOccurrences(of: "c3b0097665f5db36a97d404ca1294008de62051d", with: "C3B0097665F5DB36A97D404CA1294008DE62051D")
        guard case .accepted = Self.process(query) else {
            Issue.record("uppercase hex sign was refused")
            return
        }
    }

    /// docs/protocols.md §2.3: names are not signed, so swapping two values keeps the signature valid. The
    /// semantic checks must catch it.
    @Test func swappedMoneyAndPayTimeIsRefusedBySemanticChecks() {
        let swapped = UnifiedSigningTests.u4Query
            .replacingOccurrences(of: "money=2&", with: "money=1465955306000&")
            .replacingOccurrences(of: "payTime=1465955306000&", with: "payTime=2&")
        let r = Self.refusal(Self.process(swapped))
        #expect(r?.status == 400)
        #expect(r?.outcome == "rejected")
        #expect(r?.reason.contains("payTime") == true)
    }

    @Test func tamperedValueIsABadSignature() {
        let tampered = UnifiedSigningTests.u4Query.replacingOccurrences(of: "money=2&", with: "money=3&")
        let r = Self.refusal(Self.process(tampered))
        #expect(r?.status == 401)
        #expect(r?.outcome == "bad_signature")
    }

    @Test func wrongSecretIsABadSignature() {
        let r = Self.refusal(Self.process(Self.signed(Self.good, secret: "not-the-secret")))
        #expect(r == .badSignature("sign does not match (values-sha1, 1 secret(s) tried)"))
    }

    @Test func refusalsNeverShowTheSecretOrExpectedSign() {
        let secret = "very-secret-value-123"
        let tenant = UnifiedTenant(path: "/n", domainCode: "test", secrets: [Secret(secret)], signScheme: .valuesSHA1, line: 1)
        let query = Self.signed(Self.good, secret: "other")
        let expected = Hex.encode(Digest.sha1(UnifiedSigning.valuesMessage(Self.good.map { FormParameter(name: $0.0, value: $0.1) }, secret: secret)))
        let r = Self.refusal(Self.process(query, tenants: [tenant]))
        #expect(r != nil)
        #expect(r?.reason.contains(secret) == false)
        #expect(r?.reason.contains(expected) == false)
        #expect("\(tenant)".contains(secret) == false)
    }

    @Test func anyRotatedSecretVerifies() throws {
        let tenant = UnifiedTenant(path: "/n", domainCode: "test", secrets: [Secret("old"), Secret("new")], signScheme: .valuesSHA1, line: 1)
        for secret in ["old", "new"] {
            guard case .accepted = Self.process(Self.signed(Self.good, secret: secret), tenants: [tenant]) else {
                Issue.record("secret \(secret) did not verify")
                continue
            }
        }
        let parameters = Self.good.map { FormParameter(name: $0.0, value: $0.1) }
        let sign = Hex.encode(Digest.sha1(UnifiedSigning.valuesMessage(parameters, secret: "new")))
        #expect(try UnifiedSource.verify(parameters, sign: sign, tenant: tenant).get() == .init(secretPosition: 2))
    }

    @Test func saltedSchemeTenant() {
        let tenant = UnifiedTenant(path: "/n", domainCode: "test", secrets: [Secret("salt")], signScheme: .saltedSHA1, line: 1)
        guard case .accepted(let event) = Self.process(Self.signed(Self.good, secret: "salt", scheme: .saltedSHA1), tenants: [tenant]) else {
            Issue.record("salted-sha1 callback refused")
            return
        }
        #expect(event.verifiedWith == "salted-sha1")
        // A values-sha1 signature must not pass a salted-sha1 tenant.
        #expect(Self.refusal(Self.process(Self.signed(Self.good, secret: "salt"), tenants: [tenant]))?.status == 401)
    }

    @Test func tenantIsChosenByDomainCodeOnly() {
        let other = UnifiedTenant(path: "/n", domainCode: "other", secrets: [Secret("other-secret")], signScheme: .valuesSHA1, line: 5)
        // Signed with tenant "other"'s secret but claiming domainCode "test": must not verify.
        let r = Self.refusal(Self.process(Self.signed(Self.good, secret: "other-secret"), tenants: [Self.tenant, other]))
        #expect(r?.outcome == "bad_signature")
        var pairs = Self.good
        pairs[pairs.count - 1] = ("domainCode", "other")
        guard case .accepted(let event) = Self.process(Self.signed(pairs, secret: "other-secret"), tenants: [Self.tenant, other]) else {
            Issue.record("tenant other refused")
            return
        }
        #expect(event.tenant == "other")
    }

    @Test(arguments: [
        ("unknown tenant", "domainCode=nobody&sign=" + String(repeating: "0", count: 40), 401, "unknown_tenant"),
        ("missing domainCode", "money=1&sign=" + String(repeating: "0", count: 40), 400, "malformed"),
        ("no query", "", 400, "malformed"),
        ("repeated parameter", "domainCode=test&domainCode=test", 400, "malformed"),
        ("broken escape", "domainCode=te%Gst", 400, "malformed"),
        ("missing sign", "domainCode=test&money=1", 401, "bad_signature"),
        ("short sign", "domainCode=test&sign=abc", 401, "bad_signature"),
        ("non-hex sign", "domainCode=test&sign=" + String(repeating: "g", count: 40), 401, "bad_signature"),
    ])
    func badInputs(name: String, query: String, status: Int, outcome: String) {
        let r = Self.refusal(Self.process(query))
        #expect(r?.status == status, "\(name)")
        #expect(r?.outcome == outcome, "\(name)")
    }

    @Test(arguments: [
        ("money", "-1"), ("money", "1.5"), ("money", "01"), ("money", "abc"), ("money", "9999999999999999999"),
        ("payTime", "1465955306"), ("payTime", "99999999999999"), ("payStatus", "PAID"), ("currencyType", "EUR"),
        ("payTypeCode", "Bitcoin"), ("requestKey", ""),
    ])
    func semanticChecksAfterVerification(field: String, value: String) {
        let pairs = Self.good.map { $0.0 == field ? ($0.0, value) : $0 }
        let r = Self.refusal(Self.process(Self.signed(pairs)))
        #expect(r?.status == 400)
        #expect(r?.outcome == "rejected")
    }

    /// The checks read the named values from ``UnifiedValues``: every required field (and `sign`) is picked out,
    /// case-sensitively, and other names are left alone.
    @Test func theValuesTheChecksReadArePickedOutByName() {
        let names = UnifiedFields.required.map(\.name) + ["sign"]
        let values = UnifiedValues(names.map { FormParameter(name: $0, value: "v-\($0)") } + [
            FormParameter(name: "Money", value: "1"), FormParameter(name: "extra", value: "2"),
        ])
        for (name, value) in UnifiedFields.required {
            #expect(value(values) == "v-\(name)", "\(name) was not picked out")
        }
        #expect(values.sign == "v-sign")
        #expect(values.money == "v-money")
        #expect(UnifiedValues([]) == UnifiedValues([
            FormParameter(name: "other", value: "x"), FormParameter(name: "Money", value: "1"), FormParameter(name: "SIGN", value: "s"),
        ]))
    }

    @Test func everyPayStatusIsAccepted() {
        for status in UnifiedFields.payStatuses {
            let pairs = Self.good.map { $0.0 == "payStatus" ? ($0.0, status) : $0 }
            guard case .accepted(let event) = Self.process(Self.signed(pairs)) else {
                Issue.record("payStatus \(status) refused")
                continue
            }
            #expect(event.dedupeKey.parts.last == status)
        }
    }

    @Test func emptyParametersAreNotInFields() {
        let pairs = Self.good + [("extra", "")]
        guard case .accepted(let event) = Self.process(Self.signed(pairs)) else {
            Issue.record("refused")
            return
        }
        #expect(!event.fields.contains { $0.name == "extra" })
    }
}
