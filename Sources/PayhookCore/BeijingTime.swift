/// Times as Chinese payment senders write them: Beijing time (UTC+8, no daylight saving), `yyyyMMddHHmmss`
/// (WeChat's `time_end`) or `yyyy-MM-dd HH:mm:ss` (WeChat's `success_time`, Alipay's `notify_time` and
/// `gmt_payment`). One parser for every source, so each refuses the same impossible dates.
public enum BeijingTime {
    public static let offsetMilliseconds: Int64 = 8 * 3600 * 1000

    /// Unix milliseconds, or nil unless the text has exactly that shape and names a real date and time (year
    /// 2000 or later).
    public static func milliseconds(_ text: String, dashed: Bool) -> Int64? {
        let b = Array(text.utf8)
        // Offsets of year, month, day, hour, minute, second, and the separators the dashed form has.
        let fields: [(Int, Int)]
        if dashed {
            guard b.count == 19, b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-"), b[10] == UInt8(ascii: " "),
                b[13] == UInt8(ascii: ":"), b[16] == UInt8(ascii: ":")
            else { return nil }
            fields = [(0, 4), (5, 2), (8, 2), (11, 2), (14, 2), (17, 2)]
        } else {
            guard b.count == 14 else { return nil }
            fields = [(0, 4), (4, 2), (6, 2), (8, 2), (10, 2), (12, 2)]
        }
        var values: [Int64] = []
        for (offset, length) in fields {
            var value: Int64 = 0
            for byte in b[offset..<offset + length] {
                guard byte >= 0x30 && byte <= 0x39 else { return nil }
                value = value * 10 + Int64(byte - 0x30)
            }
            values.append(value)
        }
        let (year, month, day, hour, minute, second) = (values[0], values[1], values[2], values[3], values[4], values[5])
        guard year >= 2000, (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year),
            hour < 24, minute < 60, second < 60
        else { return nil }
        let midnight = Timestamp.milliseconds(year: year, month: month, day: day)
        return midnight + ((hour * 60 + minute) * 60 + second) * 1000 - offsetMilliseconds
    }

    /// The inverse, for payhook's own signer and simulator: `yyyyMMddHHmmss` when `compact`, else
    /// `yyyy-MM-dd HH:mm:ss`.
    public static func text(milliseconds: Int64, compact: Bool) -> String {
        let text = Timestamp.rfc3339(milliseconds: milliseconds + offsetMilliseconds)  // 2026-11-22T10:34:50.123Z
        let date = text.prefix(10)
        let time = text.dropFirst(11).prefix(8)
        return compact ? String(date.replacing("-", with: "") + time.replacing(":", with: "")) : "\(date) \(time)"
    }

    /// The days of `month` (1...12) of `year` in the Gregorian calendar.
    public static func daysIn(month: Int64, year: Int64) -> Int64 {
        switch month {
        case 2: return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }
}
