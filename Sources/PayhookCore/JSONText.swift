/// Writes JSON text (RFC 8259) byte by byte, so event files have one exact, documented shape.
///
/// Non-ASCII characters are written as UTF-8, not escaped; `"`, `\` and control characters are escaped.
/// U+2028 and U+2029 are escaped too, so a file can be embedded in JavaScript unchanged.
public struct JSONText: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    /// An empty text whose buffer already holds `capacity` bytes.
    public init(capacity: Int) {
        bytes.reserveCapacity(capacity)
    }

    public mutating func raw(_ text: String) {
        bytes.append(contentsOf: text.utf8)
    }

    public mutating func string(_ text: String) {
        bytes.append(UInt8(ascii: "\""))
        var text = text
        text.withUTF8 { appendEscaped($0) }
        bytes.append(UInt8(ascii: "\""))
    }

    /// Copies runs that need no escape in one go: event files are mostly ASCII letters and digits, and this is
    /// on every request's path (the event file and its fingerprint).
    private mutating func appendEscaped(_ utf8: UnsafeBufferPointer<UInt8>) {
        var copied = 0
        var index = 0
        let count = utf8.count
        while index < count {
            let byte = utf8[index]
            let width: Int
            if byte == 0x22 || byte == 0x5c || byte < 0x20 || byte == 0x7f {
                width = 1
            } else if byte == 0xe2, index + 2 < count, utf8[index + 1] == 0x80, utf8[index + 2] == 0xa8 || utf8[index + 2] == 0xa9 {
                width = 3  // U+2028, U+2029
            } else {
                index += 1
                continue
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[copied..<index]))
            switch byte {
            case 0x22: bytes.append(contentsOf: [0x5c, 0x22])
            case 0x5c: bytes.append(contentsOf: [0x5c, 0x5c])
            case 0x0a: bytes.append(contentsOf: [0x5c, UInt8(ascii: "n")])
            case 0x0d: bytes.append(contentsOf: [0x5c, UInt8(ascii: "r")])
            case 0x09: bytes.append(contentsOf: [0x5c, UInt8(ascii: "t")])
            case 0xe2: bytes.append(contentsOf: Array("\\u202".utf8) + [utf8[index + 2] == 0xa8 ? UInt8(ascii: "8") : UInt8(ascii: "9")])
            default: bytes.append(contentsOf: Array("\\u00".utf8) + Array(Hex.encode([byte]).utf8))
            }
            index += width
            copied = index
        }
        bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[copied..<count]))
    }

    public mutating func integer(_ value: Int64) {
        raw(String(value))
    }
}

extension JSONText {
    /// Writes a parsed value back: members in their order, numbers as their own text, strings escaped by
    /// ``string(_:)``. Only insignificant whitespace and the spelling of escapes can differ from the text it
    /// was read from, so reading the output gives an equal `JSONValue` and writing that gives the same bytes.
    ///
    /// - Parameter indent: nil for one compact line; else the depth of the value in a file indented by two
    ///   spaces per level, as event files are.
    public mutating func value(_ value: JSONValue, indent: Int? = nil) {
        switch value {
        case .string(let text): string(text)
        case .number(let text): raw(text)
        case .bool(let flag): raw(flag ? "true" : "false")
        case .null: raw("null")
        case .array(let items):
            guard !items.isEmpty else { return raw("[]") }
            raw("[")
            for (index, item) in items.enumerated() {
                if index > 0 { raw(",") }
                newline(indent.map { $0 + 1 })
                self.value(item, indent: indent.map { $0 + 1 })
            }
            newline(indent)
            raw("]")
        case .object(let members):
            guard !members.isEmpty else { return raw("{}") }
            raw("{")
            for (index, member) in members.enumerated() {
                if index > 0 { raw(",") }
                newline(indent.map { $0 + 1 })
                string(member.key)
                raw(indent == nil ? ":" : ": ")
                self.value(member.value, indent: indent.map { $0 + 1 })
            }
            newline(indent)
            raw("}")
        }
    }

    private mutating func newline(_ depth: Int?) {
        guard let depth else { return }
        bytes.append(0x0A)
        bytes.append(contentsOf: repeatElement(0x20, count: 2 * depth))
    }
}
