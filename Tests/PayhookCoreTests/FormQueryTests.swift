import PayhookCore
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
}
