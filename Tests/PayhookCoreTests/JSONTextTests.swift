import Foundation
import PayhookCore
import Testing

@Suite struct JSONTextTests {
    /// The escaping rule, one scalar at a time: the obvious form of what JSONText.string must produce.
    static func reference(_ text: String) -> [UInt8] {
        var out: [UInt8] = [0x22]
        for scalar in text.unicodeScalars {
            switch scalar.value {
            case 0x22: out += [0x5c, 0x22]
            case 0x5c: out += [0x5c, 0x5c]
            case 0x0a: out += Array("\\n".utf8)
            case 0x0d: out += Array("\\r".utf8)
            case 0x09: out += Array("\\t".utf8)
            case 0x00..<0x20, 0x7f, 0x2028, 0x2029: out += Array(String(format: "\\u%04x", scalar.value).utf8)
            default: out += Array(String(scalar).utf8)
            }
        }
        return out + [0x22]
    }

    static func written(_ text: String) -> [UInt8] {
        var j = JSONText()
        j.string(text)
        return j.bytes
    }

    @Test("escapes exactly: quotes, backslash, controls, DEL, U+2028/9; other text verbatim", arguments: [
        ("", #""""#),
        ("plain", #""plain""#),
        ("a\"b\\c", #""a\"b\\c""#),
        ("\n\r\t", #""\n\r\t""#),
        ("\u{0}\u{1}\u{1f}\u{7f}", #""\u0000\u0001\u001f\u007f""#),
        ("x\u{2028}y\u{2029}", #""x\u2028y\u2029""#),
        ("订单 é 😀 \u{2027}\u{202a}", "\"订单 é 😀 \u{2027}\u{202a}\""),
    ])
    func escapes(input: String, expected: String) {
        #expect(Self.written(input) == Array(expected.utf8))
    }

    @Test("5,000 random strings: same bytes as the scalar-by-scalar rule, and JSON parsers read the text back")
    func randomStrings() throws {
        var generator = SystemRandomNumberGenerator()
        let pool: [Unicode.Scalar] = ["a", "Z", "0", " ", "\"", "\\", "/", "\n", "\r", "\t", "\u{0}", "\u{1f}", "\u{7f}",
                                      "\u{80}", "é", "\u{2028}", "\u{2029}", "\u{2027}", "\u{e2}", "订", "\u{ffff}", "😀"]
        for _ in 0..<5_000 {
            var text = String.UnicodeScalarView()
            for _ in 0..<Int.random(in: 0...24, using: &generator) {
                text.append(pool.randomElement(using: &generator)!)
            }
            let string = String(text)
            let bytes = Self.written(string)
            #expect(bytes == Self.reference(string), "\(string.debugDescription)")
            let decoded = try JSONSerialization.jsonObject(with: Data(bytes), options: .fragmentsAllowed) as? String
            #expect(decoded == string)
        }
    }
}
