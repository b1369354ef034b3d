/// Standard base64 (RFC 4648 §4), strict: the decoder refuses whitespace, missing or misplaced padding,
/// non-zero leftover bits and characters outside the alphabet, so one ciphertext has one spelling.
public enum Base64 {
    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    private static let values: [Int16] = {
        var table = [Int16](repeating: -1, count: 256)
        for (index, c) in alphabet.enumerated() { table[Int(c)] = Int16(index) }
        return table
    }()

    public static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index + 3 <= bytes.count {
            let n = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)], alphabet[Int(n & 63)]]
            index += 3
        }
        let rest = bytes.count - index
        if rest == 1 {
            let n = UInt32(bytes[index]) << 16
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], UInt8(ascii: "="), UInt8(ascii: "=")]
        } else if rest == 2 {
            let n = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)], UInt8(ascii: "=")]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// nil for anything that is not canonical padded base64.
    public static func decode(_ text: String) -> [UInt8]? {
        let input = Array(text.utf8)
        guard input.count % 4 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(input.count / 4 * 3)
        var index = 0
        while index < input.count {
            let last = index + 4 == input.count
            let c0 = values[Int(input[index])], c1 = values[Int(input[index + 1])]
            guard c0 >= 0, c1 >= 0 else { return nil }
            let p2 = input[index + 2] == UInt8(ascii: "="), p3 = input[index + 3] == UInt8(ascii: "=")
            if p2 || p3 {
                // Padding only at the very end, and "=x" is not a padding form.
                guard last, p3 else { return nil }
                if p2 {
                    guard c1 & 0x0f == 0 else { return nil }
                    out.append(UInt8(c0 << 2 | c1 >> 4))
                } else {
                    let c2 = values[Int(input[index + 2])]
                    guard c2 >= 0, c2 & 0x03 == 0 else { return nil }
                    out.append(UInt8(c0 << 2 | c1 >> 4))
                    out.append(UInt8((c1 & 0x0f) << 4 | c2 >> 2))
                }
            } else {
                let c2 = values[Int(input[index + 2])], c3 = values[Int(input[index + 3])]
                guard c2 >= 0, c3 >= 0 else { return nil }
                out.append(UInt8(c0 << 2 | c1 >> 4))
                out.append(UInt8((c1 & 0x0f) << 4 | c2 >> 2))
                out.append(UInt8((c2 & 0x03) << 6 | c3))
            }
            index += 4
        }
        return out
    }
}
