import Foundation
import PayhookCore
import PayhookTestSupport
import Testing

@Suite struct EventTests {
    static let event = Event(
        id: String(repeating: "a", count: 64), source: "unified", tenant: "test", orderRef: "k\"1", status: "SUCCESSPAY",
        amount: 100, currency: "CNY", dedupeKey: DedupeKey(source: "unified", parts: ["test", "k\"1", "SUCCESSPAY"]),
        verifiedWith: "values-sha1", receivedAtMilliseconds: 1_763_779_690_123, remoteAddress: "::1",
        fields: [FormParameter(name: "money", value: "100"), FormParameter(name: "payTypeName", value: "支付\n\u{1}")],
        raw: .init(method: "GET", target: "/n?money=100", body: ""))

    @Test func jsonHasTheContractShapeExactly() {
        let text = String(decoding: Self.event.jsonBytes(), as: UTF8.self)
        #expect(text == """
            {
              "schema": "payhook.event.v1",
              "id": "\(String(repeating: "a", count: 64))",
              "source": "unified",
              "tenant": "test",
              "order_ref": "k\\"1",
              "status": "SUCCESSPAY",
              "amount": 100,
              "currency": "CNY",
              "dedupe_key": "unified/test/k%221/SUCCESSPAY",
              "verified_with": "values-sha1",
              "received_at": "2025-11-22T02:48:10.123Z",
              "remote_addr": "::1",
              "fields": {
                "money": "100",
                "payTypeName": "支付\\n\\u0001"
              },
              "raw": {
                "method": "GET",
                "target": "/n?money=100",
                "body": ""
              }
            }

            """)
    }

    @Test func dedupeKeyPartsCannotRunTogether() {
        let a = DedupeKey(source: "unified", parts: ["a/b", "c"])
        let b = DedupeKey(source: "unified", parts: ["a", "b/c"])
        #expect(a.text != b.text)
        #expect(a.text == "unified/a%2Fb/c")
        #expect(DedupeKey(source: "wechat.pay", parts: ["支"]).text == "wechat.pay/%E6%94%AF")
        #expect(DedupeKey(source: "unified", parts: ["", "a b", "~-._%"]).text == "unified//a%20b/~-._%25")
    }

    /// The key's text against RFC 3986 percent-encoding as Foundation does it, on random parts.
    @Test func dedupeKeyTextMatchesFoundationsPercentEncoding() {
        var unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
        unreserved.formUnion([])
        var rng = SeededGenerator(seed: 0xdeed)
        let pool: [Character] = ["a", "Z", "0", "-", ".", "_", "~", "/", "%", " ", "+", "&", "=", "支", "é", "😀", "\u{0}", "\u{7f}"]
        for _ in 0..<1000 {
            let parts = (0..<Int.random(in: 0...4, using: &rng)).map { _ in
                String((0..<Int.random(in: 0...8, using: &rng)).map { _ in pool.randomElement(using: &rng)! })
            }
            let expected = (["unified"] + parts).map { $0.addingPercentEncoding(withAllowedCharacters: unreserved)! }
                .joined(separator: "/")
            #expect(DedupeKey(source: "unified", parts: parts).text == expected)
        }
    }

    @Test func fingerprintIgnoresOrderButNotValues() {
        let f1 = Event.fingerprint(of: [FormParameter(name: "a", value: "1"), FormParameter(name: "b", value: "2")])
        let f2 = Event.fingerprint(of: [FormParameter(name: "b", value: "2"), FormParameter(name: "a", value: "1")])
        let f3 = Event.fingerprint(of: [FormParameter(name: "a", value: "1"), FormParameter(name: "b", value: "3")])
        let f4 = Event.fingerprint(of: [FormParameter(name: "a", value: "1,\"b\":\"2")])
        #expect(f1 == f2)
        #expect(f1 != f3)
        #expect(f1 != f4)
    }

    @Test(arguments: [
        (Int64(0), "1970-01-01T00:00:00.000Z"),
        (Int64(951_782_400_000), "2000-02-29T00:00:00.000Z"),
        (Int64(1_465_955_306_000), "2016-06-15T01:48:26.000Z"),
        (Int64(4_102_444_799_999), "2099-12-31T23:59:59.999Z"),
        (Int64(-1), "1969-12-31T23:59:59.999Z"),
    ])
    func rfc3339(ms: Int64, text: String) {
        #expect(Timestamp.rfc3339(milliseconds: ms) == text)
    }

    @Test func calendarToMilliseconds() {
        #expect(Timestamp.milliseconds(year: 2000, month: 1, day: 1) == 946_684_800_000)
        #expect(Timestamp.milliseconds(year: 2016, month: 6, day: 15) == 1_465_948_800_000)
    }
}
