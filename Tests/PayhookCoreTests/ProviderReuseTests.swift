import Foundation
import PayhookAlipay
import PayhookCore
import PayhookCrypto
import PayhookTestSupport
import PayhookXxPay
import Testing

/// Alipay, XxPay and Jeepay offer their accepted verdicts for reuse (docs/architecture.md, "Retries that are the
/// same bytes"): they read no header, and the window they state is exactly where their replay check passes.
@Suite struct ProviderReuseTests {
    static let maxAge: Int64 = 3 * 86_400_000

    /// One real or generated notification of a source, with the time its replay check judges.
    struct Case {
        let name: String
        let source: any CallbackSource
        let request: CallbackRequest
        let time: Int64
    }

    static func cases() throws -> [Case] {
        let alipayPEM = try ProviderVectorTests.fixture("alipay/a1-alipay-public-key.pem")
        let alipayTenant = AlipayTenant(
            path: "/notify/alipay", appID: "2019073166072302",
            keys: [.init(label: "a1", key: try RSAPublicKey(pem: alipayPEM))])
        let xxpayTenant = XxPayTenant(path: "/notify/xxpay", mchID: "20001223", keys: [try ProviderVectorTests.secret("xxpay.reskey")])
        let jeepayTenant = JeepayTenant(
            path: "/notify/jeepay", mchNo: "M1747033666", appID: "68219e426e70ed6a5e4229b6",
            keys: [try ProviderVectorTests.secret("jeepay-j1.appsecret")])
        let xxpayQuery = String(decoding: try ProviderVectorTests.fixture("xxpay/x-1-generated.query"), as: UTF8.self)
        return [
            Case(
                name: "alipay",
                source: AlipaySource(path: "/notify/alipay", tenants: [alipayTenant], maxCallbackAgeMilliseconds: maxAge),
                request: ProviderVectorTests.post("/notify/alipay", body: try ProviderVectorTests.fixture("alipay/a1-yuque-trade.form")),
                // notify_time=2019-08-15 15:56:25, Beijing time.
                time: try #require(BeijingTime.milliseconds("2019-08-15 15:56:25", dashed: true))),
            Case(
                name: "xxpay",
                source: XxPaySource(path: "/notify/xxpay", tenants: [xxpayTenant], maxCallbackAgeMilliseconds: maxAge),
                request: ProviderVectorTests.post("/notify/xxpay", body: [], query: xxpayQuery),
                time: 1_514_779_200_000),  // paySuccTime
            Case(
                name: "jeepay",
                source: JeepaySource(path: "/notify/jeepay", tenants: [jeepayTenant], maxCallbackAgeMilliseconds: maxAge),
                request: ProviderVectorTests.post("/notify/jeepay", body: try ProviderVectorTests.fixture("jeepay/j1-real-notify.form")),
                time: 1_756_625_913_248),  // reqTime
        ]
    }

    static func accepted(_ verdict: Verdict) -> Bool {
        if case .accepted = verdict.outcome { return true }
        return false
    }

    @Test func theWindowIsWhereTheReplayCheckPasses() throws {
        for item in try Self.cases() {
            #expect(item.source.verdictHeaders == [], "\(item.name) reads no header")
            let verdict = item.source.process(item.request, nowMilliseconds: item.time)
            #expect(Self.accepted(verdict), "\(item.name)")
            let window = try #require(verdict.reuse, "\(item.name) offers no reuse")
            #expect(window == VerdictReuse(notBefore: .min, notAfter: item.time + Self.maxAge), "\(item.name)")
            // Inside the window at both ends and far before it, accepted; one past its end, refused.
            for now in [window.notAfter, item.time, item.time - 20 * 365 * 86_400_000, 0] {
                #expect(Self.accepted(item.source.process(item.request, nowMilliseconds: now)), "\(item.name) at \(now)")
            }
            #expect(!Self.accepted(item.source.process(item.request, nowMilliseconds: window.notAfter + 1)), "\(item.name)")
        }
    }

    @Test func refusalsOfferNothing() throws {
        for item in try Self.cases() {
            var changed = item.request
            // One byte of a signed value changed: the signature no longer verifies.
            if changed.body.isEmpty {
                let query = try #require(changed.query).replacingOccurrences(of: "amount=1", with: "amount=2")
                changed = ProviderVectorTests.post("/notify/xxpay", body: [], query: query)
            } else {
                let body = String(decoding: changed.body, as: UTF8.self).replacingOccurrences(of: "amount=", with: "amount=9")
                changed = ProviderVectorTests.post(changed.target, body: Array(body.utf8))
            }
            let verdict = item.source.process(changed, nowMilliseconds: item.time)
            #expect(!Self.accepted(verdict), "\(item.name)")
            #expect(verdict.reuse == nil, "\(item.name)")
            // Too old: refused, and offering nothing either.
            #expect(item.source.process(item.request, nowMilliseconds: item.time + Self.maxAge + 1).reuse == nil, "\(item.name)")
        }
    }

    @Test func theWindowSaturatesInsteadOfOverflowing() {
        #expect(VerdictReuse.replayWindow(time: .max - 5, maxAgeMilliseconds: 10) == VerdictReuse(notBefore: .min, notAfter: .max))
        #expect(VerdictReuse.replayWindow(time: 100, maxAgeMilliseconds: 10) == VerdictReuse(notBefore: .min, notAfter: 110))
    }
}
