/// Integers as payment senders write them in text fields: amounts in fen (`money`, `total_fee`), millisecond
/// times (`payTime`). Shared by every source, so each refuses the same spellings.
public enum DecimalDigits {
    /// Digits only, no sign, no leading zeros (except "0"), at most 18 digits so it fits in Int64.
    public static func nonNegative(_ text: String) -> Int64? {
        let utf8 = Array(text.utf8)
        guard !utf8.isEmpty, utf8.count <= 18, utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        guard utf8.count == 1 || utf8[0] != 0x30 else { return nil }
        return Int64(text)
    }
}
