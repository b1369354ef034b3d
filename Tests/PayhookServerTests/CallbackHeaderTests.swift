import Foundation
import Logging
import PayhookCore
import PayhookHTTP
import PayhookServer
import Synchronization
import Testing

/// Sources that sign headers (WeChat Pay v3's `Wechatpay-*`) get them from the router as they arrived: every
/// field in order, names as sent, looked up case-insensitively, a repeated field kept twice so the source can
/// refuse it.
@Suite struct CallbackHeaderTests {
    final class RecordingSource: CallbackSource {
        let seen = Mutex<[CallbackRequest]>([])
        var kind: String { "recording" }
        var method: String { "POST" }
        var successAnswer: Answer { Answer(status: 204, contentType: "text/plain", body: []) }

        func process(_ request: CallbackRequest, nowMilliseconds: Int64) -> Verdict {
            seen.withLock { $0.append(request) }
            return .acknowledged("recorded", source: kind, tenant: nil)
        }

        func failureAnswer(status: Int, reason: String) -> Answer {
            Answer(status: status, contentType: "text/plain", body: Array(reason.utf8))
        }
    }

    @Test func theSourceSeesEveryHeaderAsSent() throws {
        let source = RecordingSource()
        let router = Router(
            sources: ["/notify/v3": source], store: MemoryEventStore(),
            logger: Logger(label: "payhook-test") { _ in SwiftLogNoOpLogHandler() })
        let headers = [
            (name: "Host", value: "example.com"),
            (name: "Wechatpay-Serial", value: "PUB_KEY_ID_1"),
            (name: "wechatpay-signature", value: "c2lnbmF0dXJl"),
            (name: "WECHATPAY-SERIAL", value: "D7CE59D1F522D701"),
        ]
        let head = HTTPRequestHead(method: "POST", target: "/notify/v3", headers: headers, remoteAddress: "127.0.0.1", receivedAt: Date())
        #expect(router.handle(HTTPRequest(head: head, body: Array("{}".utf8))).status == 204)
        let request = try #require(source.seen.withLock { $0.first })
        #expect(request.headers.map(\.name) == headers.map(\.name))
        #expect(request.headers.map(\.value) == headers.map(\.value))
        #expect(request.headerValues("wechatpay-serial") == ["PUB_KEY_ID_1", "D7CE59D1F522D701"])
        #expect(request.headerValues("Wechatpay-Signature") == ["c2lnbmF0dXJl"])
        #expect(request.headerValues("Wechatpay-Nonce").isEmpty)
        // Only ASCII letters fold: a name that differs by a non-ASCII byte or by length is another name.
        #expect(request.headerValues("Wechatpay-Serial ").isEmpty)
        #expect(request.headerValues("Wechatpay_Serial").isEmpty)
    }
}
