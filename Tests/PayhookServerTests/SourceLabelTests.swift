import Foundation
import Logging
import PayhookConfig
import PayhookCore
import PayhookHTTP
import PayhookServer
import PayhookTools
import PayhookWeChat
import Synchronization
import Testing

/// A source that counts the requests handed to it. `process` is the only way a source sees a request, so one
/// call per request means each was parsed once, its metrics labels included.
final class CountingSource: CallbackSource {
    let inner: any CallbackSource
    let calls = Mutex(0)

    init(_ inner: any CallbackSource) { self.inner = inner }

    var kind: String { inner.kind }
    var method: String { inner.method }
    var methods: [String] { inner.methods }
    var verdictHeaders: [String]? { inner.verdictHeaders }
    var successAnswer: Answer { inner.successAnswer }
    /// How many requests it was handed so far.
    var count: Int { calls.withLock { $0 } }

    func process(_ request: CallbackRequest, nowMilliseconds: Int64) -> Verdict {
        calls.withLock { $0 += 1 }
        return inner.process(request, nowMilliseconds: nowMilliseconds)
    }

    func failureAnswer(status: Int, reason: String) -> Answer {
        inner.failureAnswer(status: status, reason: reason)
    }
}

/// The `source` and `tenant` labels of `payhook_requests_total` follow one rule (`Verdict` in
/// Sources/PayhookCore/Source.swift): the event source once the request showed which kind of event it is, the
/// path's kind before; the tenant once the routing field named a configured one.
@Suite(.timeLimit(.minutes(1)))
struct SourceLabelTests {
    final class Wired: Sendable {
        let config: Config
        let source: CountingSource
        let metrics = Metrics()
        let router: Router

        init() throws {
            config = try demoConfig(spool: "/nonexistent")
            source = CountingSource(
                WeChatSource(path: "/notify/wechat", tenants: config.wechat, maxCallbackAgeMilliseconds: config.maxCallbackAgeMilliseconds))
            router = Router(
                sources: ["/notify/wechat": source], store: MemoryEventStore(),
                logger: Logger(label: "payhook-test") { _ in SwiftLogNoOpLogHandler() }, metrics: metrics)
        }

        func post(_ body: [UInt8]) -> Int {
            let head = HTTPRequestHead(method: "POST", target: "/notify/wechat", headers: [], remoteAddress: "127.0.0.1", receivedAt: Date())
            return router.handle(HTTPRequest(head: head, body: body)).status
        }

        func built(_ kind: CallbackBuilder.Kind, _ breakage: CallbackBuilder.Breakage? = nil) throws -> [UInt8] {
            var spec = CallbackBuilder.Spec(kind: kind)
            spec.orderRef = "label-order-1"
            spec.refundRef = "label-refund-1"
            spec.breakage = breakage
            return try CallbackBuilder.build(spec, config: config).body
        }

        /// `payhook_requests_total` by (source, tenant, outcome), read from the exposition text.
        func requests() -> [String: Double] {
            var samples: [String: Double] = [:]
            for line in metrics.render().split(separator: "\n") where line.hasPrefix("payhook_requests_total{") {
                if let match = line.wholeMatch(of: #/payhook_requests_total\{source="([^"]*)",tenant="([^"]*)",outcome="([^"]*)"\} ([0-9.]+)/#) {
                    samples["\(match.1)|\(match.2)|\(match.3)"] = Double(match.4)
                }
            }
            return samples
        }
    }

    @Test func aWeChatRefusalAndAcceptanceCountUnderOneSourceAndParseOnce() throws {
        let wired = try Wired()
        #expect(wired.post(try wired.built(.wechatPay)) == 200)
        #expect(wired.post(try wired.built(.wechatPay, .tamper)) == 401)
        #expect(wired.post(try wired.built(.wechatRefund)) == 200)
        #expect(wired.post(try wired.built(.wechatRefund, .wrongKey)) == 401)
        let counted = wired.requests()
        #expect(counted["wechat.pay|10000100|accepted"] == 1)
        #expect(counted["wechat.pay|10000100|bad_signature"] == 1)
        #expect(counted["wechat.refund|10000100|accepted"] == 1)
        #expect(counted["wechat.refund|10000100|bad_signature"] == 1)
        // Nothing counted under the path's kind: every one of these got far enough to know its event source.
        #expect(!counted.keys.contains { $0.hasPrefix("wechat|") })
        // One parse per request, refusals included: nothing asks the source again for a label.
        #expect(wired.source.calls.withLock { $0 } == 4)
    }

    @Test func beforeTheKindOrTenantIsKnownThePathsKindAndNoTenant() throws {
        let wired = try Wired()
        let pay = String(decoding: try wired.built(.wechatPay), as: UTF8.self)
        // Not a notification at all: only the path says what it was meant to be.
        #expect(wired.post(Array("not xml".utf8)) == 400)
        // A payment result for a merchant that is not configured: its kind is known, its tenant is not a label.
        #expect(wired.post(Array(pay.replacing("<![CDATA[10000100]]>", with: "<![CDATA[20000200]]>").utf8)) == 401)
        // A communication failure report: neither a payment nor a refund, from a configured merchant.
        #expect(wired.post(Array("<xml><return_code>FAIL</return_code><return_msg>x</return_msg><mch_id>10000100</mch_id></xml>".utf8)) == 200)
        let counted = wired.requests()
        #expect(counted["wechat||malformed"] == 1)
        #expect(counted["wechat.pay||unknown_tenant"] == 1)
        #expect(counted["wechat|10000100|acknowledged"] == 1)
        #expect(!counted.keys.contains { $0.contains("20000200") })
        #expect(wired.source.calls.withLock { $0 } == 3)
    }
}
