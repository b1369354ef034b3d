/// A strict logfmt reader, written apart from payhook's writer, for checking that every text log line reads back.
///
/// A line is `key=value` pairs separated by one space. A key is one or more characters other than space, `=`,
/// `"` and controls. A value is bare (no space, `=`, `"` or control character) or quoted; in quotes `\"` is a
/// quote, `\\` a backslash and `\xNN` the byte NN (payhook's escape for everything outside printable ASCII, as
/// Go's and Python's logfmt readers also accept), and no raw control character may appear. Anything else makes
/// the line unreadable (nil): a reader that guessed would hide exactly the forgeries the tests look for.
enum Logfmt {
    /// The pairs of one line (without its newline), in order, values decoded; nil when it is not logfmt.
    static func parse(_ line: String) -> [(key: String, value: String)]? {
        let bytes = Array(line.utf8)
        var pairs: [(key: String, value: String)] = []
        var index = 0
        func isControl(_ byte: UInt8) -> Bool { byte < 0x20 || byte == 0x7F }
        while index < bytes.count {
            if !pairs.isEmpty {
                guard bytes[index] == UInt8(ascii: " ") else { return nil }
                index += 1
            }
            let keyStart = index
            while index < bytes.count, bytes[index] != UInt8(ascii: "="), bytes[index] != UInt8(ascii: " "),
                bytes[index] != UInt8(ascii: "\""), !isControl(bytes[index])
            {
                index += 1
            }
            guard index > keyStart, index < bytes.count, bytes[index] == UInt8(ascii: "=") else { return nil }
            let key = String(decoding: bytes[keyStart..<index], as: UTF8.self)
            index += 1
            var value: [UInt8] = []
            if index < bytes.count, bytes[index] == UInt8(ascii: "\"") {
                index += 1
                var closed = false
                while index < bytes.count {
                    let byte = bytes[index]
                    if byte == UInt8(ascii: "\"") {
                        closed = true
                        index += 1
                        break
                    }
                    if isControl(byte) { return nil }
                    if byte == UInt8(ascii: "\\") {
                        guard index + 1 < bytes.count else { return nil }
                        switch bytes[index + 1] {
                        case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                            value.append(bytes[index + 1])
                            index += 2
                        case UInt8(ascii: "x"):
                            guard index + 3 < bytes.count,
                                let high = hexValue(bytes[index + 2]), let low = hexValue(bytes[index + 3])
                            else { return nil }
                            value.append(high << 4 | low)
                            index += 4
                        default:
                            return nil
                        }
                        continue
                    }
                    value.append(byte)
                    index += 1
                }
                guard closed else { return nil }
            } else {
                while index < bytes.count, bytes[index] != UInt8(ascii: " ") {
                    let byte = bytes[index]
                    guard byte != UInt8(ascii: "="), byte != UInt8(ascii: "\""), !isControl(byte) else { return nil }
                    value.append(byte)
                    index += 1
                }
                // An empty value must be written "".
                guard !value.isEmpty else { return nil }
            }
            pairs.append((key, String(decoding: value, as: UTF8.self)))
        }
        return pairs.isEmpty ? nil : pairs
    }

    /// The pairs as a dictionary; nil when the line is not logfmt or names a key twice.
    static func fields(_ line: String) -> [String: String]? {
        guard let pairs = parse(line.hasSuffix("\n") ? String(line.dropLast()) : line) else { return nil }
        var fields: [String: String] = [:]
        for pair in pairs {
            guard fields[pair.key] == nil else { return nil }
            fields[pair.key] = pair.value
        }
        return fields
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
