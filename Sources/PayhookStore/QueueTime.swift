#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
import Foundation
#endif
import Glibc
import PayhookCore

/// Times and durations as the queue tools read and write them: RFC 3339 instants and short durations.
public enum QueueTime {
    /// Parses a duration: one or more `<number><unit>` parts, units `ms`, `s`, `m`, `h`, `d`, `w`
    /// (e.g. `90s`, `15m`, `2h`, `7d`, `1h30m`, `1.5s`); a bare `0` is zero. Returns seconds, or nil.
    public static func parseDuration(_ text: String) -> Double? {
        if text == "0" { return 0 }
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty else { return nil }
        var index = 0
        var total = 0.0
        while index < bytes.count {
            let start = index
            var sawDot = false
            while index < bytes.count {
                let byte = bytes[index]
                if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                    index += 1
                } else if byte == UInt8(ascii: "."), !sawDot {
                    sawDot = true
                    index += 1
                } else {
                    break
                }
            }
            guard index > start,
                let number = Double(String(decoding: bytes[start..<index], as: UTF8.self))
            else { return nil }
            let unitStart = index
            while index < bytes.count, bytes[index] >= UInt8(ascii: "a"), bytes[index] <= UInt8(ascii: "z") {
                index += 1
            }
            let unit = String(decoding: bytes[unitStart..<index], as: UTF8.self)
            let scale: Double
            switch unit {
            case "ms": scale = 0.001
            case "s": scale = 1
            case "m": scale = 60
            case "h": scale = 3600
            case "d": scale = 86400
            case "w": scale = 7 * 86400
            default: return nil
            }
            total += number * scale
        }
        return total.isFinite ? total : nil
    }

    /// A duration for people: `45s`, `2m5s`, `3h`, `7d`, `250ms`.
    public static func formatDuration(_ seconds: Double) -> String {
        if seconds < 1 && seconds > 0 { return "\(Int((seconds * 1000).rounded()))ms" }
        var rest = Int(seconds.rounded())
        if rest == 0 { return "0s" }
        var parts: [String] = []
        for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] where rest >= size {
            parts.append("\(rest / size)\(unit)")
            rest %= size
            if parts.count == 2 { break }
        }
        return parts.joined()
    }

    /// Parses an RFC 3339 date-time (`2026-11-22T02:34:50.123Z`, `2026-11-22T10:34:50+08:00`; `t`, `z` and a
    /// space separator as RFC 3339 §5.6 allows). Returns nil for anything else.
    public static func parseRFC3339(_ text: String) -> Date? {
        let b = Array(text.utf8)
        func digits(_ from: Int, _ count: Int) -> Int? { decimal(b, from, count) }
        guard b.count >= 20,
            let year = digits(0, 4), b[4] == UInt8(ascii: "-"),
            let month = digits(5, 2), b[7] == UInt8(ascii: "-"),
            let day = digits(8, 2),
            [UInt8(ascii: "T"), UInt8(ascii: "t"), UInt8(ascii: " ")].contains(b[10]),
            let hour = digits(11, 2), b[13] == UInt8(ascii: ":"),
            let minute = digits(14, 2), b[16] == UInt8(ascii: ":"),
            let second = digits(17, 2),
            (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second <= 60
        else { return nil }
        var index = 19
        var fraction = 0.0
        if index < b.count, b[index] == UInt8(ascii: ".") {
            index += 1
            var scale = 0.1
            let start = index
            while index < b.count, b[index] >= UInt8(ascii: "0"), b[index] <= UInt8(ascii: "9") {
                fraction += Double(b[index] - UInt8(ascii: "0")) * scale
                scale /= 10
                index += 1
            }
            guard index > start else { return nil }
        }
        guard index < b.count else { return nil }
        var offset = 0
        switch b[index] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            index += 1
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard let offsetHours = digits(index + 1, 2), index + 3 < b.count, b[index + 3] == UInt8(ascii: ":"),
                let offsetMinutes = digits(index + 4, 2), offsetHours < 24, offsetMinutes < 60
            else { return nil }
            offset = (offsetHours * 3600 + offsetMinutes * 60) * (b[index] == UInt8(ascii: "-") ? -1 : 1)
            index += 6
        default:
            return nil
        }
        guard index == b.count else { return nil }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(min(second, 59))
        let epoch = timegm(&parts)
        // timegm(3) normalizes out-of-range days (Feb 30 → Mar 2); such a date is not valid RFC 3339.
        guard parts.tm_mday == Int32(day), parts.tm_mon == Int32(month - 1) else { return nil }
        return Date(timeIntervalSince1970: Double(epoch - offset) + fraction)
    }

    /// RFC 3339 in UTC with milliseconds, the way event files write `received_at`.
    public static func formatRFC3339(_ date: Date) -> String {
        let milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        var seconds = time_t(milliseconds >= 0 ? milliseconds / 1000 : (milliseconds - 999) / 1000)
        let millis = Int(milliseconds - Int64(seconds) * 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(millis), 3))Z"
    }

    /// An instant for `--since`/`--until`: an RFC 3339 time, a local date or date-time (``parseLocal(_:endOfDay:)``),
    /// or a duration meaning that long before `now`. `endOfDay` is for `--until`: a date alone then means the
    /// end of that day, so that `--since 2026-11-01 --until 2026-11-30` covers the whole of November.
    public static func parseInstant(_ text: String, now: Date, endOfDay: Bool = false) -> Date? {
        if let date = parseRFC3339(text) { return date }
        if let date = parseLocal(text, endOfDay: endOfDay) { return date }
        if let seconds = parseDuration(text) { return now.addingTimeInterval(-seconds) }
        return nil
    }

    /// What `--since`/`--until` accept, for messages.
    public static let instantForms =
        "a local date (2026-11-22) or date-time (2026-11-22 10:30, 2026-11-22T10:30:15), an RFC 3339 time (2026-11-22T02:30:00Z) or a duration meaning that long ago (90m, 2h, 7d)"

    /// Parses a date or date-time in the local time zone (`TZ`, else the system's), as people type them:
    /// `2026-11-22` (that day's first instant, or with `endOfDay` its last millisecond), `2026-11-22 10:30`,
    /// `2026-11-22 10:30:15`, with `T` instead of the space too. A time that the zone skips (a DST change) is
    /// refused; nil for anything else.
    public static func parseLocal(_ text: String, endOfDay: Bool = false) -> Date? {
        if let day = localDate(text) {
            return endOfDay
                ? localMidnight(year: day.year, month: day.month, day: day.day + 1).addingTimeInterval(-0.001)
                : localMidnight(year: day.year, month: day.month, day: day.day)
        }
        let b = Array(text.utf8)
        guard b.count == 16 || b.count == 19, let day = localDate(String(decoding: b[0..<10], as: UTF8.self)),
            b[10] == UInt8(ascii: " ") || b[10] == UInt8(ascii: "T"),
            let hour = decimal(b, 11, 2), b[13] == UInt8(ascii: ":"), let minute = decimal(b, 14, 2), hour < 24, minute < 60
        else { return nil }
        var second = 0
        if b.count == 19 {
            guard b[16] == UInt8(ascii: ":"), let s = decimal(b, 17, 2), s < 60 else { return nil }
            second = s
        }
        tzset()
        var parts = tm()
        parts.tm_year = Int32(day.year - 1900)
        parts.tm_mon = Int32(day.month - 1)
        parts.tm_mday = Int32(day.day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        parts.tm_isdst = -1
        let epoch = mktime(&parts)
        // A time a daylight-saving change skips is moved by mktime(3): it does not exist, and is refused.
        guard parts.tm_mday == Int32(day.day), parts.tm_hour == Int32(hour), parts.tm_min == Int32(minute) else { return nil }
        return Date(timeIntervalSince1970: Double(epoch))
    }

    /// `YYYY-MM-DD`, ASCII digits only, naming a real day of a year from 1970 (no event is older) to 9999.
    public static func localDate(_ text: String) -> (year: Int, month: Int, day: Int)? {
        let b = Array(text.utf8)
        guard b.count == 10, b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-"),
            let year = decimal(b, 0, 4), let month = decimal(b, 5, 2), let day = decimal(b, 8, 2),
            year >= 1970, (1...12).contains(month), day >= 1, day <= BeijingTime.daysIn(month: Int64(month), year: Int64(year))
        else { return nil }
        return (year, month, day)
    }

    /// The first instant of a day in the local time zone (`TZ`, else the system's); `day` may be one past the
    /// month's last (mktime(3) carries it into the next month). Where midnight does not exist (a daylight-saving
    /// change at 00:00), the day's first local time that does.
    public static func localMidnight(year: Int, month: Int, day: Int) -> Date {
        tzset()
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_isdst = -1
        return Date(timeIntervalSince1970: Double(mktime(&parts)))
    }

    /// An instant in the local time zone (`TZ`, else the system's) for people: `2026-11-22 10:34:50 +08:00`.
    public static func formatLocal(_ date: Date) -> String {
        tzset()
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        localtime_r(&seconds, &parts)
        func pad(_ value: Int, _ width: Int = 2) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        let offset = Int(parts.tm_gmtoff)
        let sign = offset < 0 ? "-" : "+"
        let zone = "\(sign)\(pad(abs(offset) / 3600)):\(pad(abs(offset) % 3600 / 60))"
        return "\(pad(Int(parts.tm_year) + 1900, 4))-\(pad(Int(parts.tm_mon) + 1))-\(pad(Int(parts.tm_mday))) "
            + "\(pad(Int(parts.tm_hour))):\(pad(Int(parts.tm_min))):\(pad(Int(parts.tm_sec))) \(zone)"
    }

    /// The decimal number in `count` bytes of `b` from `from`, or nil when they run past its end or one is not
    /// an ASCII digit.
    static func decimal(_ b: [UInt8], _ from: Int, _ count: Int) -> Int? {
        guard from >= 0, from + count <= b.count else { return nil }
        var value = 0
        for byte in b[from..<(from + count)] {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return value
    }
}
