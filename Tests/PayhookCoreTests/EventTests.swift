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

    /// A source with a nested resource and signed headers (WeChat Pay v3) adds `resource` after `fields` and
    /// `headers` inside `raw`, indented like the rest; without them the file is the one above, byte for byte.
    @Test func resourceAndHeadersHaveTheirPlace() {
        var event = Self.event
        event.fields = [FormParameter(name: "id", value: "EV-1")]
        event.resource = JSONReader.parse(Array(#"{"a":{"b":[1,"x\n",{}],"c":[]},"d":-1.5e3,"e":true,"f":null}"#.utf8))
        event.raw.headers = [FormParameter(name: "Wechatpay-Serial", value: "PUB_KEY_ID_1"), FormParameter(name: "Wechatpay-Nonce", value: "n")]
        let text = String(decoding: event.jsonBytes(), as: UTF8.self)
        #expect(text.hasSuffix("""
              "fields": {
                "id": "EV-1"
              },
              "resource": {
                "a": {
                  "b": [
                    1,
                    "x\\n",
                    {}
                  ],
                  "c": []
                },
                "d": -1.5e3,
                "e": true,
                "f": null
              },
              "raw": {
                "method": "GET",
                "target": "/n?money=100",
                "body": "",
                "headers": {
                  "Wechatpay-Serial": "PUB_KEY_ID_1",
                  "Wechatpay-Nonce": "n"
                }
              }
            }

            """))
        #expect(JSONReader.parse(event.jsonBytes())?["resource"] == event.resource)
    }

    /// Writing a parsed value and reading it back gives the same value, and writing that the same bytes.
    @Test func jsonValuesRoundTrip() {
        for text in [#"{"k":"\u00e9\u2028\"\\","n":[0,-0.5,1E+2,[]],"o":{}}"#, #"[]"#, #""s""#, #"123"#, #"[null,false]"#] {
            let value = JSONReader.parse(Array(text.utf8))!
            for indent in [nil, 0, 3] as [Int?] {
                var j = JSONText()
                j.value(value, indent: indent)
                let again = JSONReader.parse(j.bytes)
                #expect(again == value, "\(text) indent \(String(describing: indent))")
                var k = JSONText()
                k.value(again!, indent: indent)
                #expect(k.bytes == j.bytes)
            }
        }
    }

    @Test(arguments: [
        ("2024-01-01T12:00:05+08:00", Int64(1_704_081_605_000)),
        ("2024-01-01T04:00:05Z", Int64(1_704_081_605_000)),
        ("2024-01-01T04:00:05.1234z", Int64(1_704_081_605_123)),
        ("2024-01-01T04:00:05.5-01:30", Int64(1_704_087_005_500)),
        ("2024-02-29T00:00:00Z", Int64(1_709_164_800_000)),
    ])
    func rfc3339Parses(text: String, ms: Int64) {
        #expect(Timestamp.milliseconds(rfc3339: text) == ms)
    }

    @Test(arguments: [
        "2024-01-01 12:00:05+08:00", "2024-01-01T12:00:05", "2024-01-01T12:00:05+0800", "2023-02-29T00:00:00Z",
        "2024-13-01T00:00:00Z", "2024-01-01T24:00:00Z", "2024-01-01T12:00:60Z", "2024-01-01T12:00:05.Z",
        "2024-01-01T12:00:05+08:00 ", "1969-12-31T23:59:59Z", "２０24-01-01T12:00:05Z", "",
    ])
    func rfc3339Refuses(text: String) {
        #expect(Timestamp.milliseconds(rfc3339: text) == nil)
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

    /// The text stored events' fingerprints were made with: fields sorted by the bytes of their names, equal names
    /// in their order of arrival, each a JSON pair; the ignored names left out.
    @Test func fingerprintTextIsPinned() {
        let fields = [("b", "2"), ("a", "x\"y"), ("b", "1"), ("支", "v\n"), ("A", "0"), ("skip", "s")].map { FormParameter(name: $0.0, value: $0.1) }
        #expect(Event.fingerprint(of: fields, excluding: ["skip"]) == #"[["A","0"],["a","x\"y"],["b","2"],["b","1"],["支","v\n"]]"#)
        #expect(Event.fingerprint(of: []) == "[]")
        #expect(Event.fingerprint(of: fields.filter { $0.name == "skip" }, excluding: ["skip"]) == "[]")
    }

    /// Random fields against the definition: a stable sort by name bytes, then each pair as JSON.
    @Test func fingerprintMatchesAStableSortOfTheFields() {
        var random = SeededGenerator(seed: 0xf1f1)
        let names = ["a", "b", "B", "ab", "支", "é", "sign", ""]
        for _ in 0..<2_000 {
            let fields = (0..<Int.random(in: 0...14, using: &random)).map { _ in
                FormParameter(name: names.randomElement(using: &random)!, value: String(Int.random(in: 0...99, using: &random)))
            }
            func json(_ string: String) -> String {
                var text = JSONText()
                text.string(string)
                return String(decoding: text.bytes, as: UTF8.self)
            }
            let kept = fields.filter { $0.name != "sign" }.sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
            let expected = "[" + kept.map { "[\(json($0.name)),\(json($0.value))]" }.joined(separator: ",") + "]"
            #expect(Event.fingerprint(of: fields, excluding: ["sign"]) == expected)
            if Event.fingerprint(of: fields, excluding: ["sign"]) != expected { return }
        }
    }

    @Test func decimalDigitsReadAmountsAndTimes() {
        #expect(DecimalDigits.nonNegative("0") == 0)
        #expect(DecimalDigits.nonNegative("1700000000000") == 1_700_000_000_000)
        #expect(DecimalDigits.nonNegative("999999999999999999") == 999_999_999_999_999_999)
        for refused in ["", "01", "-1", "+1", "1.0", " 1", "1 ", "1e3", "１", "9999999999999999999"] {
            #expect(DecimalDigits.nonNegative(refused) == nil, "\(refused)")
        }
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
