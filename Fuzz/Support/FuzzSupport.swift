// Shared by every fuzz target; compiled into each target's binary (see Fuzz/fuzz.sh).
//
// The encoders and serialisers here are written from the documented rules, not by calling the
// production encoders, so a round trip through them checks the parsers against an independent reading
// of the format instead of against themselves.

import PayhookCore

/// Stops the run with a message libFuzzer shows next to the crash input. A property violation is a
/// finding just like a trap, so it must stop the fuzzer and leave the input behind.
func violated(_ property: String, _ detail: @autoclosure () -> String = "") -> Never {
    let extra = detail()
    fatalError("fuzz property violated: \(property)" + (extra.isEmpty ? "" : " — \(extra)"))
}

/// The fuzzer's bytes as an array; libFuzzer may pass a null pointer for the empty input.
func fuzzBytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
    guard let data, size > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: size))
}

/// Deterministic choices derived from the input, so every decision a target makes is reproduced
/// exactly when libFuzzer replays a crash file.
struct Choices {
    private var state: UInt64

    init(_ bytes: [UInt8]) {
        // FNV-1a: every byte matters, so a one-byte mutation changes the choices.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        state = hash
    }

    /// SplitMix64.
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func below(_ bound: Int) -> Int {
        precondition(bound > 0)
        return Int(next() % UInt64(bound))
    }

    mutating func flag() -> Bool { next() & 1 == 1 }
}

// MARK: - Form encoding (application/x-www-form-urlencoded)

enum FormEncoding: CaseIterable {
    /// Only what must be escaped: `%`, `&`, `=`, `+`, and bytes outside printable ASCII; space as `+`.
    case minimal
    /// Every byte as `%XX` in uppercase hex, space included.
    case everything
    /// Every byte as `%xx` in lowercase hex: the decoder must take both cases.
    case everythingLowercase

    func encode(_ text: String) -> String {
        // Built as bytes and turned into one String at the end: per-byte String appends dominate the
        // run time under ASan otherwise.
        let upper = Array("0123456789ABCDEF".utf8), lower = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count * 3)
        for byte in text.utf8 {
            let keep: Bool
            switch self {
            case .minimal:
                if byte == UInt8(ascii: " ") {
                    out.append(UInt8(ascii: "+"))
                    continue
                }
                keep = (0x21...0x7e).contains(byte) && byte != UInt8(ascii: "%") && byte != UInt8(ascii: "&")
                    && byte != UInt8(ascii: "=") && byte != UInt8(ascii: "+")
            case .everything, .everythingLowercase:
                keep = false
            }
            if keep {
                out.append(byte)
            } else {
                let digits = self == .everythingLowercase ? lower : upper
                out += [UInt8(ascii: "%"), digits[Int(byte >> 4)], digits[Int(byte & 0x0f)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

func formQuery(_ parameters: [FormParameter], encoding: FormEncoding) -> String {
    parameters.map { encoding.encode($0.name) + "=" + encoding.encode($0.value) }.joined(separator: "&")
}

// MARK: - Flat XML

/// What an element name may be (FlatXML's documented rule): `[A-Za-z_][A-Za-z0-9_.:-]*`.
func isValidXMLName(_ name: String) -> Bool {
    let bytes = Array(name.utf8)
    guard let first = bytes.first, isNameStart(first) else { return false }
    return bytes.allSatisfy(isNameByte)
}

private func isNameStart(_ c: UInt8) -> Bool {
    (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == UInt8(ascii: "_")
}

private func isNameByte(_ c: UInt8) -> Bool {
    isNameStart(c) || (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: ".") || c == UInt8(ascii: ":")
        || c == UInt8(ascii: "-")
}

/// An XML 1.0 `Char` (§2.2).
func isXMLChar(_ scalar: Unicode.Scalar) -> Bool {
    let v = scalar.value
    return v == 0x9 || v == 0xA || v == 0xD || (0x20...0xD7FF).contains(v) || (0xE000...0xFFFD).contains(v)
        || (0x1_0000...0x10_FFFF).contains(v)
}

/// Elements read loosely out of arbitrary bytes, so that the fixtures (real notifications) turn into their
/// real fields and mutations of them into nearby fields: split on `<`; `/…` chunks are end tags and
/// skipped; `![CDATA[…]]>` chunks add their content to the previous element; any other chunk is
/// `name>text`. Names are forced into the valid alphabet, text into XML characters. Duplicate names are
/// dropped. Up to `limit` elements, names up to `maxName` bytes: callers pick limits past the parser's
/// to check that it refuses what is too big.
func looseElements(_ bytes: [UInt8], limit: Int = FlatXML.maxChildren, maxName: Int = FlatXML.maxNameLength) -> [FlatXMLElement] {
    var names: [String] = []
    var texts: [[UInt8]] = []
    var seen = Set<String>()
    let cdataOpen = Array("![CDATA[".utf8)
    for chunk in bytes.split(separator: UInt8(ascii: "<"), omittingEmptySubsequences: true) {
        let piece = Array(chunk)
        if piece.first == UInt8(ascii: "/") { continue }
        if piece.starts(with: cdataOpen) {
            guard !texts.isEmpty else { continue }
            var body = Array(piece.dropFirst(cdataOpen.count))
            if let end = firstRange(of: Array("]]>".utf8), in: body) { body = Array(body[..<end]) }
            texts[texts.count - 1] += body
            continue
        }
        let gt = piece.firstIndex(of: UInt8(ascii: ">")) ?? piece.count
        var name = piece[..<gt].filter(isNameByte)
        if let first = name.first, !isNameStart(first) { name.insert(UInt8(ascii: "_"), at: 0) }
        guard !name.isEmpty else { continue }
        let nameString = String(decoding: name.prefix(maxName), as: UTF8.self)
        guard seen.insert(nameString).inserted else { continue }
        guard names.count < limit else { break }
        names.append(nameString)
        texts.append(gt < piece.count ? Array(piece[(gt + 1)...]) : [])
    }
    return zip(names, texts).map { FlatXMLElement(name: $0, text: xmlText($1)) }
}

/// Bytes as text made only of XML characters: invalid UTF-8 repaired, forbidden characters dropped.
func xmlText(_ bytes: [UInt8]) -> String {
    var out = String.UnicodeScalarView()
    for scalar in String(decoding: bytes, as: UTF8.self).unicodeScalars where isXMLChar(scalar) {
        out.append(scalar)
    }
    return String(out)
}

func firstRange(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
    guard needle.count <= haystack.count else { return nil }
    for start in 0...(haystack.count - needle.count) where haystack[start..<(start + needle.count)].elementsEqual(needle) {
        return start
    }
    return nil
}

/// How one element's text is written out. Every style must read back to the same text.
enum TextStyle: CaseIterable {
    /// One CDATA section; `]]>` inside is split across two sections (`]]]]><![CDATA[>`).
    case cdata
    /// Character data with `&`, `<` and `>` escaped as the predefined entities.
    case escaped
    /// Every character as a decimal or hexadecimal character reference.
    case references
    /// Character data and one-scalar CDATA sections alternating.
    case mixed
}

/// Serialises a flat document the way the WeChat documentation shows it, with optional declaration,
/// byte order mark, whitespace between children and self-closing empty elements, all chosen by `choices`.
/// Built as bytes: String's `replacing` and per-character appends cost more than the parser under test.
func flatDocument(_ elements: [FlatXMLElement], root: String, choices: inout Choices) -> [UInt8] {
    var out: [UInt8] = []
    func add(_ text: String) { out += text.utf8 }
    if choices.below(4) == 0 { out += [0xEF, 0xBB, 0xBF] }
    if choices.below(3) == 0 {
        add(choices.flag() ? "<?xml version=\"1.0\" encoding=\"UTF-8\"?>" : "<?xml version='1.0' standalone='yes' ?>\n")
    }
    add("<" + root + (choices.below(5) == 0 ? " >" : ">"))
    for element in elements {
        add(whitespace(&choices))
        if element.text.isEmpty && choices.flag() {
            add("<" + element.name + (choices.flag() ? " />" : "/>"))
            continue
        }
        add("<" + element.name + ">")
        switch TextStyle.allCases[choices.below(TextStyle.allCases.count)] {
        case .cdata:
            add("<![CDATA[")
            let text = Array(element.text.utf8)
            var k = 0
            while k < text.count {
                if k + 2 < text.count && text[k] == UInt8(ascii: "]") && text[k + 1] == UInt8(ascii: "]") && text[k + 2] == UInt8(ascii: ">") {
                    add("]]]]><![CDATA[>")
                    k += 3
                } else {
                    out.append(text[k])
                    k += 1
                }
            }
            add("]]>")
        case .escaped:
            for byte in element.text.utf8 { appendEscaped(byte, to: &out) }
        case .references:
            let hexUpper = choices.flag()
            for scalar in element.text.unicodeScalars {
                if choices.flag() {
                    add("&#" + String(scalar.value) + ";")
                } else {
                    add("&#x" + String(scalar.value, radix: 16, uppercase: hexUpper) + ";")
                }
            }
        case .mixed:
            for (index, scalar) in element.text.unicodeScalars.enumerated() {
                // `]]>` can only be split safely by escaping; CDATA takes anything else verbatim.
                if index % 2 == 0 || scalar == "]" || scalar == ">" {
                    for byte in String(scalar).utf8 { appendEscaped(byte, to: &out) }
                } else {
                    add("<![CDATA[" + String(scalar) + "]]>")
                }
            }
        }
        add("</" + element.name + (choices.below(6) == 0 ? " >" : ">"))
    }
    add(whitespace(&choices) + "</" + root + ">" + whitespace(&choices))
    return out
}

private func appendEscaped(_ byte: UInt8, to out: inout [UInt8]) {
    switch byte {
    case UInt8(ascii: "&"): out += "&amp;".utf8
    case UInt8(ascii: "<"): out += "&lt;".utf8
    case UInt8(ascii: ">"): out += "&gt;".utf8
    default: out.append(byte)
    }
}

private func whitespace(_ choices: inout Choices) -> String {
    ["", "", "\n", " ", "\r\n", "\t  "][choices.below(6)]
}

/// The parse result, or the error, as one comparable value.
func parseFlat(_ bytes: [UInt8], root: String) -> Result<[FlatXMLElement], FlatXMLError> {
    do {
        return .success(try FlatXML.parse(bytes, root: root))
    } catch {
        return .failure(error)
    }
}

/// What every accepted document must satisfy, whatever the input was.
func checkFlatInvariants(_ elements: [FlatXMLElement], input: [UInt8]) {
    if elements.count > FlatXML.maxChildren { violated("more than \(FlatXML.maxChildren) children accepted", "\(elements.count)") }
    if Set(elements.map(\.name)).count != elements.count { violated("duplicate element names accepted") }
    for element in elements {
        if !isValidXMLName(element.name) || element.name.utf8.count > FlatXML.maxNameLength {
            violated("invalid element name accepted", element.name.debugDescription)
        }
        if let bad = element.text.unicodeScalars.first(where: { !isXMLChar($0) }) {
            violated("text with a non-XML character accepted", "U+\(String(bad.value, radix: 16)) in <\(element.name)>")
        }
    }
    if String(validating: input, as: UTF8.self) == nil { violated("a body that is not UTF-8 was accepted") }
    // XXE defence: no DOCTYPE or ENTITY anywhere, in any letter case.
    let lowered = input.map { $0 >= 0x41 && $0 <= 0x5a ? $0 | 0x20 : $0 }
    if firstRange(of: Array("<!doctype".utf8), in: lowered) != nil || firstRange(of: Array("<!entity".utf8), in: lowered) != nil {
        violated("a body with a DOCTYPE or ENTITY declaration was accepted")
    }
}

// MARK: - Exact comparison

// Swift's `==` on String is canonical equivalence ("é" == "e\u{301}"), but signatures cover bytes: a
// decoder that normalised text would pass `==` while changing what was signed. Compare UTF-8 bytes.

func exactly(_ a: [FormParameter], _ b: [FormParameter]) -> Bool {
    a.count == b.count
        && zip(a, b).allSatisfy { $0.name.utf8.elementsEqual($1.name.utf8) && $0.value.utf8.elementsEqual($1.value.utf8) }
}

func exactly(_ a: [FlatXMLElement], _ b: [FlatXMLElement]) -> Bool {
    a.count == b.count
        && zip(a, b).allSatisfy { $0.name.utf8.elementsEqual($1.name.utf8) && $0.text.utf8.elementsEqual($1.text.utf8) }
}

// MARK: - Semantic rules, as the README states them

/// Digits only, no leading zero (except "0"), at most 18 digits.
func isAmount(_ text: String?) -> Bool {
    guard let bytes = text.map({ Array($0.utf8) }), !bytes.isEmpty, bytes.count <= 18 else { return false }
    guard bytes.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return false }
    return bytes.count == 1 || bytes[0] != 0x30
}

func fieldMap(_ parameters: [FormParameter]) -> [String: String] {
    var map: [String: String] = [:]
    for parameter in parameters { map[parameter.name] = parameter.value }
    return map
}

func fieldMap(_ elements: [FlatXMLElement]) -> [String: String] {
    var map: [String: String] = [:]
    for element in elements { map[element.name] = element.text }
    return map
}

/// A verdict's kind, what the targets that model a source's rules compare with the source's own verdict. None of
/// those sources acknowledges without queuing, so an acknowledgement is itself a violation.
enum Outcome: Equatable, Hashable {
    case malformed, unknownTenant, badSignature, semantic, accepted

    init(_ verdict: Verdict.Outcome) {
        switch verdict {
        case .accepted: self = .accepted
        case .refused(.malformed): self = .malformed
        case .refused(.unknownTenant): self = .unknownTenant
        case .refused(.badSignature): self = .badSignature
        case .refused(.semantic): self = .semantic
        case .acknowledged: violated("a callback was acknowledged without being queued")
        }
    }
}
