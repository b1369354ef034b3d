/// Integers as payment senders write them in text fields: amounts in fen (`money`, `total_fee`), millisecond
/// times (`payTime`). Shared by every source, so each refuses the same spellings.
public enum DecimalDigits {
    /// Digits only, no sign, no leading zeros (except "0"), at most 18 digits so it fits in Int64.
    public static func nonNegative(_ text: String) -> Int64? {
        // Read in place and summed as it goes: this runs for the amount and the time of every callback,
        // duplicates included, and 18 digits cannot overflow.
        var text = text
        return text.withUTF8 { utf8 -> Int64? in
            guard !utf8.isEmpty, utf8.count <= 18, utf8.count == 1 || utf8[0] != 0x30 else { return nil }
            var value: Int64 = 0
            for byte in utf8 {
                guard byte >= 0x30 && byte <= 0x39 else { return nil }
                value = value * 10 + Int64(byte - 0x30)
            }
            return value
        }
    }
}

extension DecimalDigits {
    /// A yuan amount as Alipay writes it (`total_amount=0.10`, `20.00`, and in old examples `20`) in fen, read
    /// as a decimal and never as a float: digits, no sign, no exponent, no leading zeros (except "0"), and at most
    /// two digits after one point, which must have digits on both sides. nil for anything else, and for amounts
    /// beyond 15 digits of yuan.
    public static func fen(yuan text: String) -> Int64? {
        let utf8 = Array(text.utf8)
        let point = utf8.firstIndex(of: UInt8(ascii: "."))
        let whole = point.map { Array(utf8[..<$0]) } ?? utf8
        let fraction = point.map { Array(utf8[($0 + 1)...]) } ?? []
        guard !whole.isEmpty, whole.count <= 15, whole.allSatisfy(isDigit) else { return nil }
        guard whole.count == 1 || whole[0] != UInt8(ascii: "0") else { return nil }
        if point != nil { guard (1...2).contains(fraction.count), fraction.allSatisfy(isDigit) else { return nil } }
        var fen: Int64 = 0
        for digit in whole { fen = fen * 10 + Int64(digit - 0x30) }
        let cents = fraction + Array(repeating: UInt8(ascii: "0"), count: 2 - fraction.count)
        for digit in cents { fen = fen * 10 + Int64(digit - 0x30) }
        return fen
    }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }
}
