import PayhookCore
import PayhookCrypto
import PayhookTestSupport
import PayhookUnified
import Testing

// Vectors from docs/protocols.md §2.3/§2.4: U-1…U-3 are the platform's own API document, U-4 and S-1 were
// generated and cross-checked there with Python and Java.
@Suite struct UnifiedSigningTests {
    static func params(_ pairs: [(String, String)]) -> [FormParameter] {
        pairs.map { FormParameter(name: $0.0, value: $0.1) }
    }

    static let u2Base: [(String, String)] = [
        ("domainCode", "test"), ("payTypeCode", ""), ("requestChannel", ""), ("money", "1"),
        ("info", "这是你买的商品详单信息"), ("infoEn", ""), ("requestKey", "1464659622189"), ("currencyType", "CNY"),
        ("pageUrl", "http://www.baidu.com"), ("bgUrl", "http://www.sina.com"), ("dialogOkUrl", "http://www.sohu.com"),
        ("dialogFailUrl", "http://www.163.com"), ("rate", "6.8"), ("payTypeCodeIn", ""),
    ]

    static let u4Query =
        "money=2&requestKey=88a17e1fbf275c12c77a4b88ce3bf632&payTime=1465955306000&orderSn=20160615094750987511"
        + "&payTypeCode=Alipay&payTypeName=%E6%94%AF%E4%BB%98%E5%AE%9D%E6%94%AF%E4%BB%98&currencyType=CNY"
        + "&payStatus=SUCCESSPAY&domainCode=test&sign=c3b0097665f5db36a97d404ca1294008de62051d"

    func sha1Hex(_ bytes: [UInt8]) -> String { Hex.encode(Digest.sha1(bytes)) }

    @Test func u1QueryAPISample() {
        let message = UnifiedSigning.valuesMessage(Self.params([("domainCode", "test"), ("requestKey", "1464844451098")]), secret: "test")
        #expect(String(decoding: message, as: UTF8.self) == "1464844451098testtest")
        #expect(sha1Hex(message) == "07c34ea79a804e7c54b0538c45d2015e2f13814e")
    }

    @Test func u2PCPaySample() {
        let message = UnifiedSigning.valuesMessage(Self.params(Self.u2Base), secret: "test")
        #expect(
            String(decoding: message, as: UTF8.self)
                == "114646596221896.8CNYhttp://www.163.comhttp://www.baidu.comhttp://www.sina.comhttp://www.sohu.comtesttest这是你买的商品详单信息")
        #expect(sha1Hex(message) == "ad3b0a76afb7fecb0c64bed6503b7b1e9dcfd5ed")
    }

    @Test func u3H5PaySample() {
        let pairs = Self.u2Base.map { $0.0 == "requestKey" ? ($0.0, "1465183124626") : $0 }
        #expect(sha1Hex(UnifiedSigning.valuesMessage(Self.params(pairs), secret: "test")) == "cd437788bde98645fc2a738c620ecef069e901bc")
    }

    @Test func u4CallbackVectorDecodesAndSigns() throws {
        let parameters = try FormQuery.decode(Self.u4Query)
        let message = UnifiedSigning.valuesMessage(parameters, secret: "test")
        #expect(
            String(decoding: message, as: UTF8.self)
                == "146595530600022016061509475098751188a17e1fbf275c12c77a4b88ce3bf632AlipayCNYSUCCESSPAYtesttest支付宝支付")
        #expect(sha1Hex(message) == "c3b0097665f5db36a97d404ca1294008de62051d")
    }

    @Test func s1SaltedSchemeOverDecodedValues() throws {
        let parameters = try FormQuery.decode(Self.u4Query)
        let message = UnifiedSigning.saltedMessage(parameters, secret: "test")
        #expect(
            String(decoding: message, as: UTF8.self)
                == "testcurrencyType=CNY&domainCode=test&money=2&orderSn=20160615094750987511&payStatus=SUCCESSPAY"
                + "&payTime=1465955306000&payTypeCode=Alipay&payTypeName=支付宝支付&requestKey=88a17e1fbf275c12c77a4b88ce3bf632test")
        #expect(sha1Hex(message) == "93a391a4124cbabeba57e37833362f2e0dc98b7f")
    }

    @Test func emptyValuesAndSignAreNotSigned() {
        let with = UnifiedSigning.valuesMessage(Self.params([("a", "x"), ("b", ""), ("sign", "zzz")]), secret: "s")
        let without = UnifiedSigning.valuesMessage(Self.params([("a", "x")]), secret: "s")
        #expect(with == without)
        let salted = UnifiedSigning.saltedMessage(Self.params([("a", "x"), ("b", ""), ("sign", "zzz")]), secret: "s")
        #expect(String(decoding: salted, as: UTF8.self) == "sa=xs")
    }

    /// Java's `String.compareTo` compares UTF-16 code units; Swift's `<` compares scalars. U+1F600 is a
    /// surrogate pair (D83D DE00), which Java puts before U+FF5E; Swift would put it after.
    @Test func valuesAreSortedByUTF16CodeUnits() {
        let message = UnifiedSigning.valuesMessage(Self.params([("a", "～"), ("b", "😀")]), secret: "z")
        #expect(String(decoding: message, as: UTF8.self) == "z😀～")
        #expect(("😀" < "～") == false)  // the order Swift would have used
    }

    /// Canonically equivalent strings are equal to Swift's `==` but are different bytes to the platform.
    @Test func canonicallyEquivalentValuesKeepTheirBytes() {
        let message = UnifiedSigning.valuesMessage(Self.params([("a", "\u{E9}"), ("b", "e\u{301}")]), secret: "0")
        #expect(message == Array("0".utf8) + Array("e\u{301}".utf8) + Array("\u{E9}".utf8))
    }
}

/// `UnifiedSigning.utf16Precedes` compares UTF-8 bytes and falls back to UTF-16 code units only where the two
/// orders differ; it must agree with Java's `String.compareTo` order everywhere.
@Suite struct UTF16OrderTests {
    /// Characters from every range whose UTF-8 and UTF-16 orders could disagree: ASCII, two- and three-byte
    /// characters below the surrogates, U+E000 to U+FFFF (after the surrogates in UTF-16, before four-byte
    /// characters in UTF-8), and characters above U+FFFF.
    static let alphabet: [Character] = ["a", "b", "Z", "0", "é", "ß", "中", "文", "\u{D7FF}", "\u{E000}", "\u{F8FF}",
                                        "\u{FF5E}", "\u{FFFD}", "😀", "𠀀", "\u{10FFFF}", "\u{1F600}"]

    @Test func agreesWithUTF16CodeUnitOrderOnRandomStrings() {
        var random = SeededGenerator(seed: 20261205)
        for _ in 0..<20_000 {
            let shared = String((0..<Int.random(in: 0...3, using: &random)).map { _ in Self.alphabet.randomElement(using: &random)! })
            let a = shared + String((0..<Int.random(in: 0...3, using: &random)).map { _ in Self.alphabet.randomElement(using: &random)! })
            let b = shared + String((0..<Int.random(in: 0...3, using: &random)).map { _ in Self.alphabet.randomElement(using: &random)! })
            let expected = a.utf16.lexicographicallyPrecedes(b.utf16)
            #expect(UnifiedSigning.utf16Precedes(a, b) == expected, "\(a.unicodeScalars.map { $0.value }) vs \(b.unicodeScalars.map { $0.value })")
            if UnifiedSigning.utf16Precedes(a, b) != expected { return }
        }
    }

    /// The message sorts byte ranges of one buffer, not the strings: it must still be the values and the secret
    /// sorted in Java's order and concatenated, whatever the values hold.
    @Test func valuesMessageIsTheValuesInJavaOrder() {
        var random = SeededGenerator(seed: 0x5eed_2026)
        for _ in 0..<2_000 {
            let parameters = (0..<Int.random(in: 0...12, using: &random)).map { index in
                FormParameter(
                    name: index == 3 ? UnifiedSigning.signParameter : "p\(index)",
                    value: String((0..<Int.random(in: 0...4, using: &random)).map { _ in Self.alphabet.randomElement(using: &random)! }))
            }
            let secret = String((0..<Int.random(in: 1...4, using: &random)).map { _ in Self.alphabet.randomElement(using: &random)! })
            let values = parameters.filter { $0.name != UnifiedSigning.signParameter && !$0.value.isEmpty }.map(\.value) + [secret]
            let expected = values.sorted { $0.utf16.lexicographicallyPrecedes($1.utf16) }.flatMap { Array($0.utf8) }
            #expect(UnifiedSigning.valuesMessage(parameters, secret: secret) == expected)
            if UnifiedSigning.valuesMessage(parameters, secret: secret) != expected { return }
        }
    }

    @Test func surrogatesSortBeforeTheEndOfTheBasicPlane() {
        // U+1F600 is D83D DE00 in UTF-16, before U+FF5E; in UTF-8 (F0 9F 98 80 against EF BD 9E) it is after.
        #expect(UnifiedSigning.utf16Precedes("\u{1F600}", "\u{FF5E}"))
        #expect(!UnifiedSigning.utf16Precedes("\u{FF5E}", "\u{1F600}"))
        #expect(UnifiedSigning.utf16Precedes("x\u{1F600}", "x\u{E000}"))
        // Elsewhere the bytes decide: a prefix first, then the first differing byte.
        #expect(UnifiedSigning.utf16Precedes("ab", "abc"))
        #expect(!UnifiedSigning.utf16Precedes("abc", "abc"))
        #expect(UnifiedSigning.utf16Precedes("中", "\u{1F600}"))
    }
}
