// Fuzz target: FlatXML.parse, the strict reader of WeChat Pay v2 bodies (and of decrypted req_info),
// plus WeChatSource.process on the same bytes.
//
// Properties, for any input as a body:
// 1. parse never traps, and neither does WeChatSource.process;
// 2. anything accepted has at most 256 unique, valid names of at most 64 bytes, text made of XML
//    characters, was valid UTF-8 and contained no DOCTYPE or ENTITY declaration in any letter case;
// 3. anything accepted, serialised again (CDATA with `]]>` split, escaped text, character references,
//    mixed; optional declaration, BOM, whitespace, self-closing empty elements), parses to exactly the
//    same elements, and under another root name is refused as the wrong root;
// 4. a payment notification that WeChatSource accepts carries a sign that an independently built
//    string-to-sign reproduces with the tenant's key.
//
// And for any input read loosely as a list of fields (names forced valid, text forced to XML
// characters): the serialised document is accepted with exactly those fields; with a 257th child it is
// refused as too many, with a name longer than 64 bytes as too long. Finally a character at a boundary
// of XML's character ranges or of UTF-8 (picked by the input), as a reference and as raw bytes, is
// accepted exactly when XML 1.0 allows it and otherwise refused as an invalid reference, an illegal
// character or not UTF-8.

import PayhookCore
import PayhookCrypto
import PayhookWeChat

/// The demo merchant of Fixtures/demo.toml, with WeChat's public test key, so the fixtures verify.
private let apiKey = "192006250b4c09247ec02edce69f6a2d"
private let tenant = WeChatTenant(
    path: "/notify/wechat", mchID: "10000100", appID: "wx2421b1c4370ec43b", keys: [Secret(apiKey)],
    signTypes: [.md5, .hmacSHA256], line: 1)
private let source = WeChatSource(path: "/notify/wechat", tenants: [tenant])

@_cdecl("LLVMFuzzerTestOneInput")
public func weChatXMLFuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = fuzzBytes(data, size)
    var choices = Choices(bytes)
    checkRawBody(bytes, choices: &choices)
    checkGeneratedDocument(bytes, choices: &choices)
    checkCharacterProbe(choices: &choices)
    return 0
}

private func checkRawBody(_ bytes: [UInt8], choices: inout Choices) {
    let parsed = parseFlat(bytes, root: "xml")
    if case .success(let elements) = parsed {
        checkFlatInvariants(elements, input: bytes)
        let again = flatDocument(elements, root: "xml", choices: &choices)
        guard case .success(let reparsed) = parseFlat(again, root: "xml"), exactly(reparsed, elements) else {
            violated("a re-serialised document does not parse to the same elements", String(decoding: again, as: UTF8.self))
        }
        guard case .failure(.wrongRoot(expected: "root", found: "xml")) = parseFlat(bytes, root: "root") else {
            violated("an <xml> document was not refused as the wrong root when <root> was required")
        }
    }

    let request = CallbackRequest(
        method: "POST", target: "/notify/wechat", query: nil, body: bytes, remoteAddress: "127.0.0.1",
        receivedAtMilliseconds: 0)
    let verdict = source.process(request, nowMilliseconds: 0).outcome
    switch (verdict, parsed) {
    case (.refused(.malformed), _):
        break
    case (_, .failure(let error)):
        violated("WeChatSource went past a body the parser refuses", "\(error) but \(verdict)")
    case (.accepted(let event), .success(let elements)) where event.source == WeChatSource.paySource:
        checkPaymentSignature(elements)
    default:
        break
    }
}

/// The README's WeChat rule: every non-empty child but `sign`, names in byte order, `name=value` joined
/// with `&`, then `&key=` and the key; MD5 or HMAC-SHA256 (keyed with the API key), uppercase hex.
private func checkPaymentSignature(_ elements: [FlatXMLElement]) {
    let values = fieldMap(elements)
    let pairs = elements.filter { $0.name != "sign" && !$0.text.isEmpty }
        .sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
        .map { $0.name + "=" + $0.text }
    let message = Array((pairs + ["key=" + apiKey]).joined(separator: "&").utf8)
    let candidates = [Digest.md5(message), Digest.hmacSHA256(key: Array(apiKey.utf8), message: message)]
    let presented = values["sign"].map { $0.uppercased() }
    guard candidates.contains(where: { upperHex($0) == presented }) else {
        violated("a payment notification was accepted whose sign the documented rule does not reproduce")
    }
}

private func checkGeneratedDocument(_ bytes: [UInt8], choices: inout Choices) {
    // Up to one child and 16 name bytes past the limits, to see them refused.
    let elements = looseElements(bytes, limit: FlatXML.maxChildren + 1, maxName: FlatXML.maxNameLength + 16)
    let root = choices.flag() ? "xml" : "root"
    let document = flatDocument(elements, root: root, choices: &choices)
    let parsed = parseFlat(document, root: root)
    if elements.contains(where: { $0.name.utf8.count > FlatXML.maxNameLength }) {
        guard case .failure(.nameTooLong) = parsed else {
            violated("a name longer than \(FlatXML.maxNameLength) bytes was not refused as too long", "\(parsed)")
        }
    } else if elements.count > FlatXML.maxChildren {
        guard case .failure(.tooManyElements) = parsed else {
            violated("\(elements.count) children were not refused as too many", "\(parsed)")
        }
    } else {
        guard case .success(let got) = parsed else {
            violated("a well-formed flat document was refused", "\(parsed): \(String(decoding: document, as: UTF8.self))")
        }
        if !exactly(got, elements) {
            violated("a well-formed flat document parsed to other elements", String(decoding: document, as: UTF8.self))
        }
    }
}

// MARK: - Character boundaries

/// Code points where XML 1.0's `Char` production (§2.2) and UTF-8 change their minds, and their
/// neighbours. Mutating bytes rarely lands exactly on them, so they are probed directly.
private let boundaries: [UInt32] = [
    0x0, 0x8, 0x9, 0xA, 0xB, 0xC, 0xD, 0xE, 0x1F, 0x20, 0x7F, 0x80, 0x7FF, 0x800, 0xD7FF, 0xD800, 0xDBFF, 0xDC00,
    0xDFFF, 0xE000, 0xFEFF, 0xFFFD, 0xFFFE, 0xFFFF, 0x1_0000, 0x1_FFFE, 0x10_FFFF, 0x11_0000, 0xFFFF_FFFF,
]

/// Malformed UTF-8: overlong forms, encoded surrogates, beyond U+10FFFF, stray and truncated sequences.
private let malformedUTF8: [[UInt8]] = [
    [0xC0, 0xAF], [0xE0, 0x80, 0xAF], [0xED, 0xA0, 0x80], [0xED, 0xBF, 0xBF], [0xF4, 0x90, 0x80, 0x80], [0xF8, 0x88, 0x80, 0x80, 0x80],
    [0x80], [0xBF], [0xE4, 0xB8], [0xFE], [0xFF],
]

/// One boundary character in a child's text, as a character reference or as raw bytes: accepted with
/// exactly that character when XML allows it, refused for the right reason when not.
private func checkCharacterProbe(choices: inout Choices) {
    let value = boundaries[choices.below(boundaries.count)]
    let isChar = Unicode.Scalar(value).map(isXMLChar) ?? false
    let prefix = "<xml><probe>a", suffix = "b</probe></xml>"
    func expect(_ body: [UInt8], _ want: Result<String, FlatXMLError>) {
        let got = parseFlat(body, root: "xml")
        switch (got, want) {
        case (.success(let elements), .success(let text)) where elements.count == 1 && elements[0].text.unicodeScalars.elementsEqual(text.unicodeScalars):
            return
        case (.failure(let error), .failure(let wanted)) where error == wanted:
            return
        default:
            violated("a boundary character was not handled as XML 1.0 says", "\(got) instead of \(want) for \(body)")
        }
    }
    let expected: Result<String, FlatXMLError> = isChar ? .success("a" + String(Unicode.Scalar(value)!) + "b") : .failure(.invalidReference)
    let reference = choices.flag() ? "&#x" + String(value, radix: 16, uppercase: choices.flag()) + ";" : "&#" + String(value) + ";"
    expect(Array((prefix + reference + suffix).utf8), expected)

    if let scalar = Unicode.Scalar(value) {
        // Raw: a non-XML character that is valid UTF-8 is an illegal character.
        expect(Array(prefix.utf8) + Array(String(scalar).utf8) + Array(suffix.utf8), isChar ? expected : .failure(.illegalCharacter))
    }
    let malformed = malformedUTF8[choices.below(malformedUTF8.count)]
    expect(Array(prefix.utf8) + malformed + Array(suffix.utf8), .failure(.notUTF8))
}

private func upperHex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789ABCDEF".utf8)
    return String(decoding: bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0f)]] }, as: UTF8.self)
}
