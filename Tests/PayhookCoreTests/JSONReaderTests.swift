import Foundation
import PayhookCore
import PayhookTestSupport
import Testing

// MARK: - Helpers

private func parse(_ text: String, maxDepth: Int = 32) -> JSONValue? {
    JSONReader.parse(Array(text.utf8), maxDepth: maxDepth)
}

private func nested(_ depth: Int) -> String {
    String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
}

/// Produces random valid JSON text together with the value it must decode to.
private struct DocumentGenerator {
    var rng: SeededGenerator
    private let hexDigits = Array("0123456789abcdef".utf8)
    private let hexDigitsUpper = Array("0123456789ABCDEF".utf8)

    init(seed: UInt64) { rng = SeededGenerator(seed: seed) }

    mutating func document() -> (bytes: [UInt8], value: JSONValue) {
        var out: [UInt8] = []
        whitespace(&out)
        let v = value(depth: 0, into: &out)
        whitespace(&out)
        return (out, v)
    }

    mutating func whitespace(_ out: inout [UInt8]) {
        guard Int.random(in: 0..<4, using: &rng) == 0 else { return }
        for _ in 0..<Int.random(in: 1...3, using: &rng) {
            out.append([0x20, 0x09, 0x0A, 0x0D][Int.random(in: 0..<4, using: &rng)])
        }
    }

    mutating func value(depth: Int, into out: inout [UInt8]) -> JSONValue {
        let kind = depth >= 5 ? Int.random(in: 2..<6, using: &rng) : Int.random(in: 0..<6, using: &rng)
        switch kind {
        case 0:
            out.append(UInt8(ascii: "{"))
            var members: [(key: String, value: JSONValue)] = []
            for k in 0..<Int.random(in: 0...5, using: &rng) {
                if k > 0 { out.append(UInt8(ascii: ",")) }
                whitespace(&out)
                // A unique ASCII prefix keeps keys distinct even under Unicode equivalence,
                // which Foundation's dictionaries apply.
                out.append(contentsOf: Array("\"k\(k)_".utf8))
                let suffix = stringBody(into: &out)
                out.append(UInt8(ascii: "\""))
                whitespace(&out)
                out.append(UInt8(ascii: ":"))
                whitespace(&out)
                members.append((key: "k\(k)_" + suffix, value: value(depth: depth + 1, into: &out)))
                whitespace(&out)
            }
            out.append(UInt8(ascii: "}"))
            return .object(members)
        case 1:
            out.append(UInt8(ascii: "["))
            var elements: [JSONValue] = []
            for k in 0..<Int.random(in: 0...5, using: &rng) {
                if k > 0 { out.append(UInt8(ascii: ",")) }
                whitespace(&out)
                elements.append(value(depth: depth + 1, into: &out))
                whitespace(&out)
            }
            out.append(UInt8(ascii: "]"))
            return .array(elements)
        case 2, 3:
            out.append(UInt8(ascii: "\""))
            let s = stringBody(into: &out)
            out.append(UInt8(ascii: "\""))
            return .string(s)
        case 4:
            let text = number()
            out.append(contentsOf: Array(text.utf8))
            return .number(text)
        default:
            switch Int.random(in: 0..<3, using: &rng) {
            case 0: out.append(contentsOf: Array("true".utf8)); return .bool(true)
            case 1: out.append(contentsOf: Array("false".utf8)); return .bool(false)
            default: out.append(contentsOf: Array("null".utf8)); return .null
            }
        }
    }

    mutating func number() -> String {
        var s = Bool.random(using: &rng) ? "-" : ""
        if Int.random(in: 0..<4, using: &rng) == 0 {
            s += "0"
        } else {
            s += String(Int.random(in: 1...9, using: &rng))
            for _ in 0..<Int.random(in: 0...8, using: &rng) { s += String(Int.random(in: 0...9, using: &rng)) }
        }
        if Bool.random(using: &rng) {
            s += "."
            for _ in 0..<Int.random(in: 1...6, using: &rng) { s += String(Int.random(in: 0...9, using: &rng)) }
        }
        if Int.random(in: 0..<3, using: &rng) == 0 {
            s += Bool.random(using: &rng) ? "e" : "E"
            s += ["", "+", "-"][Int.random(in: 0..<3, using: &rng)]
            for _ in 0..<Int.random(in: 1...2, using: &rng) { s += String(Int.random(in: 0...9, using: &rng)) }
        }
        return s
    }

    mutating func randomScalar() -> Unicode.Scalar {
        while true {
            let v: UInt32
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: v = UInt32.random(in: 0...0x7F, using: &rng)
            case 1: v = UInt32.random(in: 0x80...0x7FF, using: &rng)
            case 2: v = UInt32.random(in: 0x800...0xFFFF, using: &rng)
            default: v = UInt32.random(in: 0x10000...0x10FFFF, using: &rng)
            }
            if let s = Unicode.Scalar(v) { return s }
        }
    }

    mutating func hex4(_ unit: UInt32, into out: inout [UInt8]) {
        let digits = Bool.random(using: &rng) ? hexDigits : hexDigitsUpper
        out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u")])
        for shift in stride(from: 12, through: 0, by: -4) {
            out.append(digits[Int((unit >> UInt32(shift)) & 0xF)])
        }
    }

    /// Appends the encoded string body (without quotes) and returns the decoded string.
    mutating func stringBody(into out: inout [UInt8]) -> String {
        var decoded = ""
        for _ in 0..<Int.random(in: 0...24, using: &rng) {
            switch Int.random(in: 0..<10, using: &rng) {
            case 0..<4:
                // Printable ASCII other than quote and backslash.
                var c = UInt8.random(in: 0x20...0x7E, using: &rng)
                if c == UInt8(ascii: "\"") || c == UInt8(ascii: "\\") { c = UInt8(ascii: "x") }
                out.append(c)
                decoded.unicodeScalars.append(Unicode.Scalar(c))
            case 4:
                let escapes: [(String, Unicode.Scalar)] = [
                    ("\\\"", "\""), ("\\\\", "\\"), ("\\/", "/"), ("\\b", "\u{08}"),
                    ("\\f", "\u{0C}"), ("\\n", "\n"), ("\\r", "\r"), ("\\t", "\t"),
                ]
                let (text, scalar) = escapes[Int.random(in: 0..<escapes.count, using: &rng)]
                out.append(contentsOf: Array(text.utf8))
                decoded.unicodeScalars.append(scalar)
            case 5:
                // Control character, which must be escaped.
                let v = UInt32.random(in: 0...0x1F, using: &rng)
                hex4(v, into: &out)
                decoded.unicodeScalars.append(Unicode.Scalar(v)!)
            case 6:
                // Any scalar as \u escape(s), astral ones as a surrogate pair.
                let s = randomScalar()
                if s.value >= 0x10000 {
                    let v = s.value - 0x10000
                    hex4(0xD800 + (v >> 10), into: &out)
                    hex4(0xDC00 + (v & 0x3FF), into: &out)
                } else {
                    hex4(s.value, into: &out)
                }
                decoded.unicodeScalars.append(s)
            default:
                // Any scalar as raw UTF-8 (escaping what must be escaped).
                let s = randomScalar()
                if s.value < 0x20 || s == "\"" || s == "\\" {
                    hex4(s.value, into: &out)
                } else {
                    out.append(contentsOf: Array(String(s).utf8))
                }
                decoded.unicodeScalars.append(s)
            }
        }
        return decoded
    }
}

/// Whether a Foundation `JSONSerialization` result describes the same value.
private func foundationMatches(_ v: JSONValue, _ f: Any) -> Bool {
    switch v {
    case .null:
        return f is NSNull
    case .bool(let b):
        if let fb = f as? Bool { return fb == b }
        return false
    case .number(let text):
        guard let expected = Double(text) else { return false }
        let actual: Double
        if let n = f as? NSNumber { actual = n.doubleValue }
        else if let d = f as? Double { actual = d }
        else if let i = f as? Int { actual = Double(i) }
        else { return false }
        return expected == actual || abs(expected - actual) <= abs(expected) * 1e-12
    case .string(let s):
        guard let fs = f as? String else { return false }
        return s.utf8.elementsEqual(fs.utf8)
    case .array(let elements):
        guard let fa = f as? [Any], fa.count == elements.count else { return false }
        return zip(elements, fa).allSatisfy { foundationMatches($0, $1) }
    case .object(let members):
        guard let fd = f as? [String: Any], fd.count == members.count else { return false }
        return members.allSatisfy { m in fd[m.key].map { foundationMatches(m.value, $0) } ?? false }
    }
}

// MARK: - Valid documents

@Test func scalars() {
    #expect(parse("null") == .null)
    #expect(parse("true") == .bool(true))
    #expect(parse("false") == .bool(false))
    #expect(parse("\"\"") == .string(""))
    #expect(parse("\"abc\"") == .string("abc"))
    for n in ["0", "-0", "7", "123", "-42", "0.5", "-0.0", "1.25e10", "1E+2", "1e-2", "-9.75E-300", "12345678901234567890123"] {
        #expect(parse(n) == .number(n), "\(n)")
    }
}

@Test func whitespaceAroundAndBetweenTokens() {
    #expect(parse(" \t\r\n null \n") == .null)
    #expect(parse("\n[ 1 ,\t2\r,\n3 ]\n") == .array([.number("1"), .number("2"), .number("3")]))
    #expect(parse("{ \"a\" : 1 , \"b\" :\n[ ] }") == .object([(key: "a", value: .number("1")), (key: "b", value: .array([]))]))
}

@Test func nestedContainers() throws {
    let v = try #require(parse(#"{"a":[1,{"b":null,"c":[true,false]}],"d":{"e":{}},"f":[[],[[]]],"g":"s"}"#))
    let expected: JSONValue = .object([
        (key: "a", value: .array([.number("1"), .object([
            (key: "b", value: .null),
            (key: "c", value: .array([.bool(true), .bool(false)])),
        ])])),
        (key: "d", value: .object([(key: "e", value: .object([]))])),
        (key: "f", value: .array([.array([]), .array([.array([])])])),
        (key: "g", value: .string("s")),
    ])
    #expect(v == expected)
    #expect(v["g"]?.stringValue == "s")
    #expect(v["d"]?["e"] == .object([]))
    #expect(v["missing"] == nil)
    #expect(v["a"]?["b"] == nil)
    #expect(v["a"]?.stringValue == nil)
}

@Test func memberOrderIsPreserved() throws {
    let v = try #require(parse(#"{"z":1,"a":2,"m":3}"#))
    guard case .object(let members) = v else { Issue.record("not an object"); return }
    #expect(members.map(\.key) == ["z", "a", "m"])
    #expect(v != .object([(key: "a", value: .number("2")), (key: "z", value: .number("1")), (key: "m", value: .number("3"))]))
}

@Test func everyEscape() {
    #expect(parse(#""\"\\\/\b\f\n\r\t""#) == .string("\"\\/\u{08}\u{0C}\n\r\t"))
    #expect(parse(#""a\u0041\u00e9\u00E9\u20aC\uFFFFz""#) == .string("aA\u{E9}\u{E9}\u{20AC}\u{FFFF}z"))
    #expect(parse(#""\u0000\u001F\u007f""#) == .string("\u{0}\u{1F}\u{7F}"))
    #expect(parse(#"["\n", "x\\y"]"#) == .array([.string("\n"), .string("x\\y")]))
}

@Test func unicode() {
    // BMP, raw.
    #expect(parse("\"caf\u{E9} \u{20AC} \u{4E2D}\u{6587}\"") == .string("caf\u{E9} \u{20AC} \u{4E2D}\u{6587}"))
    // Astral via surrogate-pair escapes, both hex cases.
    #expect(parse(#""\uD83D\uDE00""#) == .string("\u{1F600}"))
    #expect(parse(#""\ud83d\ude00""#) == .string("\u{1F600}"))
    #expect(parse(#""\uD800\uDC00\uDBFF\uDFFF""#) == .string("\u{10000}\u{10FFFF}"))
    // Astral, raw UTF-8, including the extremes of each sequence length.
    #expect(parse("\"\u{1F600}\u{10000}\u{10FFFF}\"") == .string("\u{1F600}\u{10000}\u{10FFFF}"))
    #expect(parse("\"\u{80}\u{7FF}\u{800}\u{D7FF}\u{E000}\u{FFFF}\"") == .string("\u{80}\u{7FF}\u{800}\u{D7FF}\u{E000}\u{FFFF}"))
    // Mixed raw and escaped in one string.
    #expect(parse("\"\u{E9}\\u00e9\\n\u{1F600}\"") == .string("\u{E9}\u{E9}\n\u{1F600}"))
    // Keys that are canonically equivalent but different bytes are distinct keys.
    let v = parse(#"{"\u00e9":1,"e\u0301":2}"#)
    guard case .object(let members)? = v else { Issue.record("expected object"); return }
    #expect(members.count == 2)
    #expect(v?["\u{E9}"] == .number("1"))
    #expect(v?["e\u{301}"] == .number("2"))
}

/// Puts a special byte sequence at every offset of strings of many lengths, to cover
/// the 8-byte scanning boundaries.
@Test func stringScanningBoundaries() {
    for length in 0..<40 {
        let plain = String(repeating: "a", count: length)
        #expect(parse("\"\(plain)\"") == .string(plain))
        for position in 0...length {
            let prefix = String(repeating: "a", count: position)
            let suffix = String(repeating: "b", count: length - position)
            #expect(parse("\"\(prefix)\u{E9}\(suffix)\"") == .string("\(prefix)\u{E9}\(suffix)"))
            #expect(parse("\"\(prefix)\u{1F600}\(suffix)\"") == .string("\(prefix)\u{1F600}\(suffix)"))
            #expect(parse("\"\(prefix)\\n\(suffix)\"") == .string("\(prefix)\n\(suffix)"))
            #expect(parse("\"\(prefix)\\\"\(suffix)\"") == .string("\(prefix)\"\(suffix)"))
            #expect(parse("\"\(prefix)\u{7F}\(suffix)\"") == .string("\(prefix)\u{7F}\(suffix)"))
            #expect(parse("\"\(prefix)\u{1F}\(suffix)\"") == nil)
            #expect(parse("\"\(prefix)\t\(suffix)\"") == nil)
            #expect(JSONReader.parse(Array("\"\(prefix)".utf8) + [0xC0, 0xAF] + Array("\(suffix)\"".utf8)) == nil)
            #expect(JSONReader.parse(Array("\"\(prefix)".utf8) + [0xE2, 0x82] + Array("\(suffix)\"".utf8)) == nil)
        }
        // Unterminated at every length.
        #expect(parse("\"\(plain)") == nil)
    }
}

@Test func depthLimit() {
    #expect(parse(nested(32)) != nil)
    #expect(parse(nested(33)) == nil)
    #expect(parse(String(repeating: "{\"a\":", count: 32) + "1" + String(repeating: "}", count: 32)) != nil)
    #expect(parse(String(repeating: "{\"a\":", count: 33) + "1" + String(repeating: "}", count: 33)) == nil)
    #expect(parse("1", maxDepth: 0) == .number("1"))
    #expect(parse("[]", maxDepth: 0) == nil)
    #expect(parse("{}", maxDepth: 0) == nil)
    #expect(parse("[[1]]", maxDepth: 2) != nil)
    #expect(parse("[[[]]]", maxDepth: 2) == nil)
    #expect(parse("[]", maxDepth: -1) == nil)
    #expect(parse(nested(200), maxDepth: 200) != nil)
    // Far beyond the limit: rejected quickly, no stack growth.
    #expect(parse(String(repeating: "[", count: 200_000)) == nil)
}

@Test func largeObjects() {
    // Past the linear duplicate-check limit, the hashed path is used.
    let members = (0..<300).map { "\"key\($0)\":\($0)" }
    let v = parse("{" + members.joined(separator: ",") + "}")
    guard case .object(let m)? = v else { Issue.record("expected object"); return }
    #expect(m.count == 300)
    #expect(v?["key299"] == .number("299"))
    for dup in [0, 5, 31, 32, 33, 100, 299] {
        #expect(parse("{" + members.joined(separator: ",") + ",\"key\(dup)\":0}") == nil, "dup \(dup)")
    }
    // A duplicate arriving exactly when the check switches from linear to hashed.
    for n in 30...35 {
        let prefix = members[0..<n].joined(separator: ",")
        #expect(parse("{\(prefix)}") != nil)
        #expect(parse("{\(prefix),\"key0\":0}") == nil, "n \(n)")
        #expect(parse("{\(prefix),\"key\(n - 1)\":0}") == nil, "n \(n)")
    }
    // Two large objects nested and side by side keep separate key sets.
    let big = "{" + members.joined(separator: ",") + "}"
    #expect(parse("[\(big),\(big),{\"x\":\(big),\"y\":\(big)}]") != nil)
    #expect(parse("{\"a\":\(big),\"b\":\(big),\"a\":1}") == nil)
}

@Test func equality() {
    #expect(JSONValue.number("1.0") != .number("1"))
    #expect(JSONValue.string("\u{E9}") != .string("e\u{301}"))
    #expect(JSONValue.array([.null]) == .array([.null]))
    #expect(JSONValue.bool(true) != .number("1"))
}

// MARK: - Differential against Foundation

@Test func differentialAgainstJSONSerialization() throws {
    var generator = DocumentGenerator(seed: 0x5EED_1234)
    for n in 0..<400 {
        let (bytes, expected) = generator.document()
        let parsed = JSONReader.parse(bytes)
        #expect(parsed == expected, "document \(n): \(String(decoding: bytes, as: UTF8.self))")
        let foundation = try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
        if let parsed {
            #expect(foundationMatches(parsed, foundation), "document \(n): \(String(decoding: bytes, as: UTF8.self))")
        }
    }
}

// MARK: - Rejected inputs

struct Rejected: Sendable, CustomTestStringConvertible {
    let name: String
    let bytes: [UInt8]
    let maxDepth: Int
    init(_ name: String, _ text: String, maxDepth: Int = 32) {
        self.init(name, Array(text.utf8), maxDepth: maxDepth)
    }
    init(_ name: String, _ bytes: [UInt8], maxDepth: Int = 32) {
        self.name = name
        self.bytes = bytes
        self.maxDepth = maxDepth
    }
    var testDescription: String { name }
}

private let q = UInt8(ascii: "\"")

let rejectedInputs: [Rejected] = [
    // Empty / whitespace only.
    Rejected("empty input", ""),
    Rejected("whitespace only", " \t\r\n"),
    // Invalid UTF-8.
    Rejected("overlong 2-byte", [q, 0xC0, 0xAF, q]),
    Rejected("overlong 2-byte C1", [q, 0xC1, 0xBF, q]),
    Rejected("overlong 3-byte", [q, 0xE0, 0x80, 0xAF, q]),
    Rejected("overlong 4-byte", [q, 0xF0, 0x80, 0x80, 0xAF, q]),
    Rejected("UTF-8 encoded high surrogate", [q, 0xED, 0xA0, 0x80, q]),
    Rejected("UTF-8 encoded low surrogate", [q, 0xED, 0xBF, 0xBF, q]),
    Rejected("above U+10FFFF (F4 90)", [q, 0xF4, 0x90, 0x80, 0x80, q]),
    Rejected("lead byte F5", [q, 0xF5, 0x80, 0x80, 0x80, q]),
    Rejected("byte FF", [q, 0xFF, q]),
    Rejected("lone continuation byte", [q, 0x80, q]),
    Rejected("truncated 2-byte", [q, 0xC3, q]),
    Rejected("truncated 3-byte", [q, 0xE2, 0x82, q]),
    Rejected("truncated 4-byte", [q, 0xF0, 0x9F, 0x98, q]),
    Rejected("truncated at end of input", [q, 0xE2, 0x82]),
    Rejected("invalid UTF-8 in key", [UInt8(ascii: "{"), q, 0xC0, 0x80, q, UInt8(ascii: ":"), UInt8(ascii: "1"), UInt8(ascii: "}")]),
    Rejected("invalid UTF-8 after an escape", [q, UInt8(ascii: "\\"), UInt8(ascii: "n"), 0xED, 0xA0, 0x80, q]),
    Rejected("raw non-ASCII outside a string", [0xC3, 0xA9]),
    // Raw control characters in strings.
    Rejected("raw NUL in string", [q, 0x00, q]),
    Rejected("raw 0x1F in string", [q, 0x61, 0x1F, q]),
    Rejected("raw tab in string", "\"a\tb\""),
    Rejected("raw newline in string", "\"a\nb\""),
    Rejected("raw control after an escape", "\"\\n\u{01}\""),
    // Escapes.
    Rejected("escape \\a", #""\a""#),
    Rejected("escape \\x", #""\x41""#),
    Rejected("escape \\'", #""\'""#),
    Rejected("escape \\0", #""\0""#),
    Rejected("escape \\U", #""\U0041""#),
    Rejected("escaped raw newline", "\"\\\n\""),
    Rejected("short \\u", #""\u12""#),
    Rejected("non-hex \\u", #""\u12G4""#),
    Rejected("backslash at end of input", "\"\\"),
    Rejected("\\u at end of input", "\"\\u00"),
    // Surrogates.
    Rejected("lone high surrogate", #""\uD800""#),
    Rejected("lone low surrogate", #""\uDC00""#),
    Rejected("lone high surrogate DBFF", #""\uDBFFx""#),
    Rejected("lone low surrogate DFFF", #""a\uDFFF""#),
    Rejected("high surrogate then text", #""\uD83Dx""#),
    Rejected("high surrogate then non-surrogate escape", #""\uD83D\u0041""#),
    Rejected("high surrogate then high surrogate", #""\uD83D\uD83D""#),
    Rejected("high surrogate then other escape", #""\uD83D\n""#),
    Rejected("reversed pair", #""\uDE00\uD83D""#),
    // Numbers.
    Rejected("leading plus", "+1"),
    Rejected("leading zero", "01"),
    Rejected("negative leading zero", "-01"),
    Rejected("double zero", "00"),
    Rejected("trailing dot", "1."),
    Rejected("leading dot", ".5"),
    Rejected("dot without fraction before exponent", "1.e5"),
    Rejected("empty exponent", "1e"),
    Rejected("signed empty exponent", "1e+"),
    Rejected("minus alone", "-"),
    Rejected("double minus", "--1"),
    Rejected("two dots", "1.2.3"),
    Rejected("hex", "0x10"),
    Rejected("NaN", "NaN"),
    Rejected("Infinity", "Infinity"),
    Rejected("-Infinity", "-Infinity"),
    Rejected("minus space digit", "- 1"),
    Rejected("leading zero in array", "[01]"),
    // Duplicate keys.
    Rejected("duplicate key", #"{"a":1,"a":2}"#),
    Rejected("duplicate key, nested", #"{"x":{"a":1,"b":2,"a":3}}"#),
    Rejected("duplicate key via escape", #"{"a":1,"\u0061":2}"#),
    Rejected("duplicate non-ASCII key", "{\"\u{E9}\":1,\"\\u00e9\":2}"),
    // Trailing commas and separators.
    Rejected("trailing comma in array", "[1,]"),
    Rejected("trailing comma in object", #"{"a":1,}"#),
    Rejected("leading comma", "[,1]"),
    Rejected("double comma", "[1,,2]"),
    Rejected("missing comma", "[1 2]"),
    Rejected("missing colon", #"{"a" 1}"#),
    Rejected("missing value", #"{"a":}"#),
    Rejected("unquoted key", "{a:1}"),
    Rejected("single-quoted string", "'a'"),
    Rejected("non-string key", "{1:1}"),
    Rejected("comma in empty object", "{,}"),
    // Comments.
    Rejected("block comment", "[1 /* c */]"),
    Rejected("line comment", "// c\n1"),
    Rejected("hash comment", "# c\n1"),
    // Trailing garbage.
    Rejected("two values", "1 2"),
    Rejected("garbage after object", "{} x"),
    Rejected("extra closer", "[]]"),
    Rejected("literal with suffix", "nullx"),
    Rejected("two literals", "truefalse"),
    Rejected("NUL after value", [UInt8(ascii: "1"), 0x00]),
    // BOM and non-JSON whitespace.
    Rejected("UTF-8 BOM", [0xEF, 0xBB, 0xBF] + Array("{}".utf8)),
    Rejected("vertical tab", "\u{0B}1"),
    Rejected("form feed", "1\u{0C}"),
    Rejected("no-break space", "\u{A0}1"),
    // Depth.
    Rejected("33 nested arrays", nested(33)),
    Rejected("depth over custom limit", "[[[1]]]", maxDepth: 2),
    // Truncated / malformed structure and literals.
    Rejected("unclosed array", "[1"),
    Rejected("unclosed object", #"{"a":1"#),
    Rejected("unclosed string", #""abc"#),
    Rejected("mismatched closer", "[1}"),
    Rejected("truncated literal", "tru"),
    Rejected("capitalised literal", "True"),
    Rejected("upper-case null", "NULL"),
]

@Test(arguments: rejectedInputs)
func rejects(_ input: Rejected) {
    #expect(JSONReader.parse(input.bytes, maxDepth: input.maxDepth) == nil)
}

// MARK: - Robustness

@Test func noCrashOnRandomAndMutatedInput() {
    var rng = SeededGenerator(seed: 0xC0FFEE)
    let alphabet = Array("{}[]\":,\\ \t\n0123456789+-.eEtrufalsn/u".utf8)
        + [0x00, 0x01, 0x1F, 0x7F, 0x80, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF]
    var accepted = 0

    // Random byte strings over a JSON-flavoured alphabet.
    for _ in 0..<3_000 {
        let bytes = (0..<Int.random(in: 0...64, using: &rng)).map { _ in
            Bool.random(using: &rng) ? alphabet[Int.random(in: 0..<alphabet.count, using: &rng)] : UInt8.random(in: 0...255, using: &rng)
        }
        if JSONReader.parse(bytes, maxDepth: Int.random(in: -1...40, using: &rng)) != nil { accepted += 1 }
    }

    // Mutations of valid documents.
    var generator = DocumentGenerator(seed: 0xBADC0DE)
    for _ in 0..<3_000 {
        var bytes = generator.document().bytes
        #expect(JSONReader.parse(bytes) != nil)
        for _ in 0..<Int.random(in: 1...4, using: &rng) {
            let position = bytes.isEmpty ? 0 : Int.random(in: 0..<bytes.count, using: &rng)
            switch Int.random(in: 0..<5, using: &rng) {
            case 0 where !bytes.isEmpty:
                bytes[position] = alphabet[Int.random(in: 0..<alphabet.count, using: &rng)]
            case 1:
                bytes.insert(UInt8.random(in: 0...255, using: &rng), at: position)
            case 2 where !bytes.isEmpty:
                bytes.remove(at: position)
            case 3:
                bytes.removeSubrange(position...)
            default:
                bytes[position...].withUnsafeMutableBufferPointer { chunk in
                    if let k = chunk.indices.randomElement(using: &rng) { chunk[k] ^= 0x80 }
                }
            }
        }
        if JSONReader.parse(bytes, maxDepth: Int.random(in: 0...8, using: &rng)) != nil { accepted += 1 }
    }
    // Sanity: some mutations still parse, most do not.
    #expect(accepted > 0)
}
