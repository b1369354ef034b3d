/// Writes JSON text (RFC 8259) byte by byte, so event files have one exact, documented shape.
///
/// Non-ASCII characters are written as UTF-8, not escaped; `"`, `\` and control characters are escaped.
/// U+2028 and U+2029 are escaped too, so a file can be embedded in JavaScript unchanged.
public struct JSONText: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public mutating func raw(_ text: String) {
        bytes.append(contentsOf: text.utf8)
    }

    public mutating func string(_ text: String) {
        bytes.append(UInt8(ascii: "\""))
        for scalar in text.unicodeScalars {
            switch scalar.value {
            case 0x22: bytes.append(contentsOf: [0x5c, 0x22])
            case 0x5c: bytes.append(contentsOf: [0x5c, 0x5c])
            case 0x0a: bytes.append(contentsOf: [0x5c, UInt8(ascii: "n")])
            case 0x0d: bytes.append(contentsOf: [0x5c, UInt8(ascii: "r")])
            case 0x09: bytes.append(contentsOf: [0x5c, UInt8(ascii: "t")])
            case 0x00..<0x20, 0x7f, 0x2028, 0x2029:
                let hex = Hex.encode([UInt8(scalar.value >> 8 & 0xff), UInt8(scalar.value & 0xff)])
                bytes.append(contentsOf: Array("\\u".utf8) + Array(hex.utf8))
            default:
                bytes.append(contentsOf: String(scalar).utf8)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    public mutating func integer(_ value: Int64) {
        raw(String(value))
    }
}
