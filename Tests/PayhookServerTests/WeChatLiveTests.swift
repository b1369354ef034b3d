import Foundation
import InMemoryLogging
import Logging
import PayhookCore
import PayhookServer
import PayhookTools
import PayhookWeChat
import Testing

/// WeChat Pay v2 notifications end to end: real listener on port 0, real spool.
@Suite(.timeLimit(.minutes(2)))
struct WeChatLiveTests {
    static let path = "/notify/wechat"
    static let success = "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"

    static func post(_ live: LiveServer, _ body: [UInt8], path: String = path) throws -> HTTPReply {
        let head = "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: text/xml\r\nContent-Length: \(body.count)\r\n\r\n"
        return try HTTPReply.exchange(Array(head.utf8) + body, port: live.port)
    }

    static func fixture(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: Paths.fixtures.appendingPathComponent("wechat/\(name)")))
    }

    @Test(arguments: StoreKind.allCases, [
        ("pay-md5.xml", "wechat.pay", "md5", 101),
        ("pay-hmac.xml", "wechat.pay", "hmac-sha256", 101),
        ("pay-hmac-no-sign-type.xml", "wechat.pay", "hmac-sha256", 101),
        ("refund.xml", "wechat.refund", "aes-256-ecb", 101),
    ])
    func documentedNotificationsAreStored(store: StoreKind, notification: (file: String, source: String, verifiedWith: String, amount: Int)) throws {
        let (file, source, verifiedWith, amount) = notification
        let live = try LiveServer(store: store)
        defer { live.stop() }
        let body = try Self.fixture(file)
        let reply = try Self.post(live, body)
        #expect(reply.status == 200)
        #expect(reply.body == Self.success)
        #expect(reply.headers["content-type"]?.hasPrefix("text/xml") == true)
        let name = try #require(live.events().first)
        #expect(live.events().count == 1)
        let event = try live.event(name)
        #expect(event["source"] as? String == source)
        #expect(event["tenant"] as? String == "10000100")
        #expect(event["order_ref"] as? String == "1409811653")
        #expect(event["verified_with"] as? String == verifiedWith)
        #expect(event["amount"] as? Int == amount)
        let raw = try #require(event["raw"] as? [String: String])
        #expect(raw["body"] == String(decoding: body, as: UTF8.self))
        #expect(raw["method"] == "POST")
        let fields = try #require(event["fields"] as? [String: String])
        #expect(fields["sign"] == nil)
        #expect(!String(decoding: try live.eventData(name), as: UTF8.self).contains("192006250b4c09247ec02edce69f6a2d"))
    }

    @Test(arguments: StoreKind.allCases)
    func retriesAreDuplicatesEvenWhenSignedTheOtherWay(store: StoreKind) throws {
        let live = try LiveServer(store: store)
        defer { live.stop() }
        #expect(try Self.post(live, try Self.fixture("pay-md5.xml")).body == Self.success)
        #expect(try Self.post(live, try Self.fixture("pay-md5.xml")).body == Self.success)
        // The same payment signed with HMAC (sign_type differs): a duplicate, not a conflict.
        #expect(try Self.post(live, try Self.fixture("pay-hmac.xml")).body == Self.success)
        #expect(live.events().count == 1)
        #expect(try live.conflictCopies().isEmpty)
        // The refund of that order is another event.
        #expect(try Self.post(live, try Self.fixture("refund.xml")).body == Self.success)
        #expect(live.events().count == 2)
        #expect(try Self.post(live, try Self.fixture("refund.xml")).body == Self.success)
        #expect(live.events().count == 2)
    }

    @Test func returnCodeFailIsAcknowledgedAndNotQueued() throws {
        let live = try LiveServer()
        defer { live.stop() }
        let reply = try Self.post(live, Array("<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[签名失败]]></return_msg></xml>".utf8))
        #expect(reply.status == 200)
        #expect(reply.body == Self.success)
        #expect(live.events().isEmpty)
        #expect(live.log.entries.contains { $0.metadata["outcome"] == "acknowledged" })
    }

    static func built(_ breakage: CallbackBuilder.Breakage?, _ kind: CallbackBuilder.Kind, fields: [FormParameter] = []) throws -> [UInt8] {
        var spec = CallbackBuilder.Spec(kind: kind)
        spec.breakage = breakage
        spec.fields = fields
        return try CallbackBuilder.build(spec, config: try demoConfig(spool: "/nonexistent")).body
    }

    struct Bad: Sendable, CustomStringConvertible {
        let description: String
        let status: Int
        let body: @Sendable () throws -> [UInt8]
    }

    static let bad: [Bad] = [
        Bad(description: "XXE file read", status: 400) { try fixture("xxe-file.xml") },
        Bad(description: "entity expansion bomb", status: 400) { try fixture("xxe-bomb.xml") },
        Bad(description: "truncated body", status: 400) { Array(try fixture("pay-md5.xml").prefix(500)) },
        Bad(description: "binary body", status: 400) { (0..<600).map { UInt8(($0 * 7919) & 0xff) } },
        Bad(description: "nested element", status: 400) { Array("<xml><return_code>SUCCESS</return_code><a><b>1</b></a></xml>".utf8) },
        Bad(description: "duplicated element", status: 400) {
            Array(String(decoding: try fixture("pay-md5.xml"), as: UTF8.self).replacing("<total_fee>", with: "<total_fee><![CDATA[1]]></total_fee><total_fee>").utf8)
        },
        Bad(description: "unknown mch_id", status: 401) {
            Array(String(decoding: try fixture("pay-md5.xml"), as: UTF8.self).replacing("10000100", with: "19999999").utf8)
        },
        Bad(description: "tampered payment", status: 401) { try built(.tamper, .wechatPay) },
        Bad(description: "payment signed with a wrong key", status: 401) { try built(.wrongKey, .wechatPay) },
        Bad(description: "payment without sign", status: 401) { try built(.stripSign, .wechatPay) },
        Bad(description: "refund encrypted with a wrong key", status: 401) { try built(.wrongKey, .wechatRefund) },
        Bad(description: "tampered refund ciphertext", status: 401) { try built(.tamper, .wechatRefund) },
        Bad(description: "refund without req_info", status: 401) { try built(.stripSign, .wechatRefund) },
        Bad(description: "wrong appid", status: 401) { try built(nil, .wechatPay, fields: [FormParameter(name: "appid", value: "wx0000000000000000")]) },
        Bad(description: "non-integer total_fee", status: 400) { try built(nil, .wechatPay, fields: [FormParameter(name: "total_fee", value: "1.00")]) },
    ]

    @Test(arguments: bad)
    func badNotifications(_ c: Bad) throws {
        let live = try LiveServer()
        defer { live.stop() }
        let reply = try Self.post(live, try c.body())
        #expect(reply.status == c.status)
        #expect(reply.body.hasPrefix("<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA["))
        #expect(live.events().isEmpty)
        #expect(listing(live.spool + "/tmp").isEmpty)
        #expect(try Self.post(live, try Self.fixture("pay-md5.xml")).body == Self.success)
    }

    @Test func getOnTheWeChatPathIs405() throws {
        let live = try LiveServer()
        defer { live.stop() }
        let reply = try live.get(Self.path)
        #expect(reply.status == 405)
        #expect(reply.headers["allow"] == "POST")
        #expect(reply.body.contains("FAIL"))
    }

    @Test(arguments: StoreKind.allCases)
    func builtNotificationsOfEveryKindAreAccepted(store: StoreKind) throws {
        let live = try LiveServer(store: store)
        defer { live.stop() }
        for kind in [CallbackBuilder.Kind.wechatPay, .wechatRefund] {
            #expect(try Self.post(live, try Self.built(nil, kind)).body == Self.success)
        }
        var hmac = CallbackBuilder.Spec(kind: .wechatPay)
        hmac.signType = .hmacSHA256
        hmac.omitSignType = true
        #expect(try Self.post(live, try CallbackBuilder.build(hmac, config: try demoConfig(spool: "/x")).body).body == Self.success)
        #expect(live.events().count == 3)
    }
}
