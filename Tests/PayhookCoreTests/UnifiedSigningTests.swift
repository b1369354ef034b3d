import PayhookCore
import PayhookCrypto
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
