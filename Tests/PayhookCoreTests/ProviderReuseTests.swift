import Foundation
import PayhookAlipay
import PayhookCore
import PayhookCrypto
import PayhookTestSupport
import PayhookWeChat
import PayhookXxPay
import Testing

/// Alipay, XxPay, Jeepay and WeChat Pay v2 offer their accepted verdicts for reuse (docs/architecture.md, "Retries
/// that are the same bytes"): they read no header, and the window they state is exactly where their replay check
/// passes.
@Suite struct ProviderReuseTests {
    static let maxAge: Int64 = 3 * 86_400_000

    /// One real or generated notification of a source, with the time its replay check judges.
    struct Case {
        let name: String
        let source: any CallbackSource
        let request: CallbackRequest
        let time: Int64
        /// The same notification with one signed value changed.
        let forged: CallbackRequest
    }

    static func replacing(_ request: CallbackRequest, _ old: String, _ new: String) -> CallbackRequest {
        if request.body.isEmpty, let query = request.query {
            return ProviderVectorTests.post(request.target.split(separator: "?")[0].description, body: [], query: query.replacingOccurrences(of: old, with: new))
        }
        let body = String(decoding: request.body, as: UTF8.self)
        precondition(body.contains(old))
        return ProviderVectorTests.post(request.target, body: Array(body.replacingOccurrences(of: old, with: new).utf8))
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
        let alipay = ProviderVectorTests.post("/notify/alipay", body: try ProviderVectorTests.fixture("alipay/a1-yuque-trade.form"))
        let xxpay = ProviderVectorTests.post("/notify/xxpay", body: [], query: xxpayQuery)
        let jeepay = ProviderVectorTests.post("/notify/jeepay", body: try ProviderVectorTests.fixture("jeepay/j1-real-notify.form"))
        let wechat = WeChatSource(path: "/w", tenants: [WeChatTests.tenant], maxCallbackAgeMilliseconds: maxAge)
        let payment = ProviderVectorTests.post("/w", body: try WeChatTests.fixture("pay-md5.xml"))
        let refund = ProviderVectorTests.post("/w", body: try WeChatTests.fixture("refund.xml"))
        return [
            Case(
                name: "alipay",
                source: AlipaySource(path: "/notify/alipay", tenants: [alipayTenant], maxCallbackAgeMilliseconds: maxAge),
                request: alipay,
                time: try #require(BeijingTime.milliseconds("2019-08-15 15:56:25", dashed: true)),  // notify_time
                forged: replacing(alipay, "total_amount=0.10", "total_amount=0.11")),
            Case(
                name: "xxpay",
                source: XxPaySource(path: "/notify/xxpay", tenants: [xxpayTenant], maxCallbackAgeMilliseconds: maxAge),
                request: xxpay,
                time: 1_514_779_200_000,  // paySuccTime
                forged: replacing(xxpay, "&amount=1&", "&amount=2&")),
            Case(
                name: "jeepay",
                source: JeepaySource(path: "/notify/jeepay", tenants: [jeepayTenant], maxCallbackAgeMilliseconds: maxAge),
                request: jeepay,
                time: 1_756_625_913_248,  // reqTime
                forged: replacing(jeepay, "&amount=1&", "&amount=2&")),
            Case(
                name: "wechat payment", source: wechat, request: payment,
                time: try #require(BeijingTime.milliseconds("20140903131540", dashed: false)),  // time_end
                forged: replacing(payment, "<total_fee><![CDATA[101]]>", "<total_fee><![CDATA[102]]>")),
            Case(
                name: "wechat refund", source: wechat, request: refund,
                time: try #require(BeijingTime.milliseconds("2024-01-01 12:00:05", dashed: true)),  // success_time
                forged: replacing(refund, "<req_info><![CDATA[WBzG", "<req_info><![CDATA[WBzH")),
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
            let verdict = item.source.process(item.forged, nowMilliseconds: item.time)
            #expect(!Self.accepted(verdict), "\(item.name)")
            #expect(verdict.reuse == nil, "\(item.name)")
            // Too old: refused, and offering nothing either.
            #expect(item.source.process(item.request, nowMilliseconds: item.time + Self.maxAge + 1).reuse == nil, "\(item.name)")
        }
    }

    /// A WeChat refund that did not succeed carries no `success_time`, so no check reads the clock: its verdict
    /// holds at any time.
    @Test func aWeChatRefundWithoutATimeHoldsAtAnyTime() throws {
        let plain = WeChatTests.refundPlain
            .replacingOccurrences(of: "<refund_status><![CDATA[SUCCESS]]>", with: "<refund_status><![CDATA[CHANGE]]>")
            .replacingOccurrences(of: "<success_time><![CDATA[2024-01-01 12:00:05]]></success_time>", with: "")
        #expect(!plain.contains("success_time"))
        let request = ProviderVectorTests.post("/w", body: WeChatTests.refundBody(reqInfo: WeChatTests.encrypt(plain)))
        let source = WeChatSource(path: "/w", tenants: [WeChatTests.tenant], maxCallbackAgeMilliseconds: Self.maxAge)
        for now: Int64 in [0, 1_704_081_605_000, .max / 2] {
            let verdict = source.process(request, nowMilliseconds: now)
            #expect(Self.accepted(verdict))
            #expect(verdict.reuse == VerdictReuse(notBefore: .min, notAfter: .max))
        }
        // A communication failure report is acknowledged, never accepted, and offers nothing.
        let failure = Array("<xml><return_code>FAIL</return_code><return_msg>x</return_msg></xml>".utf8)
        #expect(source.process(ProviderVectorTests.post("/w", body: failure), nowMilliseconds: 0).reuse == nil)
    }

    @Test func theWindowSaturatesInsteadOfOverflowing() {
        #expect(VerdictReuse.replayWindow(time: .max - 5, maxAgeMilliseconds: 10) == VerdictReuse(notBefore: .min, notAfter: .max))
        #expect(VerdictReuse.replayWindow(time: 100, maxAgeMilliseconds: 10) == VerdictReuse(notBefore: .min, notAfter: 110))
        #expect(VerdictReuse.replayWindow(time: nil, maxAgeMilliseconds: 10) == VerdictReuse(notBefore: .min, notAfter: .max))
    }
}
