@testable import PayhookCore
import PayhookTestSupport
import Testing

@Suite struct FormQueryTests {
    @Test func decodesPlusPercentAndUTF8() throws {
        let p = try FormQuery.decode("a=hello+world&b=%E6%94%AF%E4%BB%98&c=http:%2F%2Fx&d=&e")
        #expect(p == [
            FormParameter(name: "a", value: "hello world"),
            FormParameter(name: "b", value: "支付"),
            FormParameter(name: "c", value: "http://x"),
            FormParameter(name: "d", value: ""),
            FormParameter(name: "e", value: ""),
        ])
    }

    @Test func keepsOrderAndSkipsEmptyPairs() throws {
        let p = try FormQuery.decode("z=1&&a=2&")
        #expect(p.map(\.name) == ["z", "a"])
        #expect(try FormQuery.decode("") == [])
    }

    @Test func percentEncodedPlusIsAPlus() throws {
        #expect(try FormQuery.decode("a=%2B1")[0].value == "+1")
    }

    @Test(arguments: [
        ("a=%", FormQueryError.badEscape(parameter: "a")),
        ("a=%4", FormQueryError.badEscape(parameter: "a")),
        ("a=%zz", FormQueryError.badEscape(parameter: "a")),
        ("a=%FF", FormQueryError.notUTF8(parameter: "a")),
        ("a=%C3", FormQueryError.notUTF8(parameter: "a")),
        ("a=x y", FormQueryError.badCharacter(parameter: "a")),
        ("a=\u{7f}", FormQueryError.badCharacter(parameter: "a")),
        ("a=支付", FormQueryError.badCharacter(parameter: "a")),
        ("=1", FormQueryError.emptyName),
        ("a=1&b=2&a=1", FormQueryError.repeatedName("a")),
        ("a=1&%61=2", FormQueryError.repeatedName("a")),
    ])
    func refusesMalformedQueries(query: String, expected: FormQueryError) {
        #expect(throws: expected) { try FormQuery.decode(query) }
    }

    @Test func errorMessagesStayPrintableAndShort() {
        let long = String(repeating: "n", count: 500)
        let error = FormQueryError.badEscape(parameter: long + "\u{1}")
        #expect(error.description.count < 120)
        #expect(!error.description.contains("\u{1}"))
    }

    @Test func repeatedNamesAreFoundBeforeAndAfterTheSetTakesOver() throws {
        let names = (0..<40).map { "n\($0)" }
        let distinct = names.map { "\($0)=1" }.joined(separator: "&")
        #expect(try FormQuery.decode(distinct).map(\.name) == names)
        // A repeat of an early name while names are compared, at the switch, and once the set is in use.
        for count in [5, FormQuery.linearLimit, FormQuery.linearLimit + 1, 40] {
            let query = names.prefix(count).map { "\($0)=1" }.joined(separator: "&") + "&n3=2"
            #expect(throws: FormQueryError.repeatedName("n3")) { try FormQuery.decode(query) }
        }
        // Names that differ only after escaping still count as the same name on both paths.
        let escaped = names.map { "\($0)=1" }.joined(separator: "&") + "&%6E39=2"
        #expect(throws: FormQueryError.repeatedName("n39")) { try FormQuery.decode(escaped) }
    }

    /// The plain-ASCII shortcut and the decoding path agree with a straightforward decoder on random components.
    @Test func randomComponentsDecodeLikeAReferenceDecoder() throws {
        var rng = SeededGenerator(seed: 0x5eed_f0f0)
        let alphabet = Array("abcXYZ019-._~!*'();:@$,/?".utf8)
        for _ in 0..<2000 {
            var raw: [UInt8] = []
            var expected: [UInt8] = []
            for _ in 0..<Int.random(in: 0...12, using: &rng) {
                switch Int.random(in: 0..<10, using: &rng) {
                case 0:
                    raw.append(UInt8(ascii: "+"))
                    expected.append(UInt8(ascii: " "))
                case 1:
                    // An escaped character, sometimes a multi-byte UTF-8 one.
                    let scalar = ["%", "&", "=", "+", "支", "é", "😀", " "].randomElement(using: &rng)!
                    for byte in scalar.utf8 {
                        raw += Array("%\(String(byte, radix: 16, uppercase: Bool.random(using: &rng)))".utf8)
                        expected.append(byte)
                    }
                default:
                    let byte = alphabet.randomElement(using: &rng)!
                    raw.append(byte)
                    expected.append(byte)
                }
            }
            let query = "k=" + String(decoding: raw, as: UTF8.self)
            let decoded = try FormQuery.decode(query)
            #expect(decoded == [FormParameter(name: "k", value: String(decoding: expected, as: UTF8.self))], "\(query)")
        }
    }
}
