#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif
import Glibc

/// A bound of `payhook queue export --since DAY --until DAY`: a calendar date (`2026-11-01`), meaning that day
/// in the local time zone (`TZ`, as date(1) shows it), or an exact RFC 3339 time.
public enum QueueDay: Sendable, Equatable {
    /// A calendar day.
    case date(year: Int, month: Int, day: Int)
    /// An instant.
    case instant(Date)

    /// The earliest year a date may name: no event was received before 1970.
    public static let firstYear = 1970

    /// Reads a DAY: exactly `YYYY-MM-DD` naming a real date (year 1970 to 9999), or an RFC 3339 time
    /// (``QueueTime/parseRFC3339(_:)``). nil for anything else.
    public static func parse(_ text: String) -> QueueDay? {
        if let date = parseDate(text) { return .date(year: date.year, month: date.month, day: date.day) }
        if let instant = QueueTime.parseRFC3339(text) { return .instant(instant) }
        return nil
    }

    /// `YYYY-MM-DD`, ASCII digits only, a real day of a year from ``firstYear`` to 9999.
    static func parseDate(_ text: String) -> (year: Int, month: Int, day: Int)? {
        let b = Array(text.utf8)
        guard b.count == 10, b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-") else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for byte in b[range] {
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
            year >= firstYear, (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year)
        else { return nil }
        return (year, month, day)
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Where the bound starts: a date's local midnight (mktime(3), which follows `TZ`), or the instant.
    public var start: Date {
        switch self {
        case .date(let year, let month, let day): return Self.localMidnight(year: year, month: month, day: day)
        case .instant(let date): return date
        }
    }

    /// The first instant after the bound, for an end that includes it: a date's next local midnight; nil for
    /// an instant, which is itself the (inclusive) end.
    public var endExclusive: Date? {
        switch self {
        case .date(let year, let month, let day): return Self.localMidnight(year: year, month: month, day: day + 1)
        case .instant: return nil
        }
    }

    /// The window from `since` to `until`, both included (a date as a whole day). nil when it is empty (it ends
    /// before it starts).
    public static func window(since: QueueDay, until: QueueDay) -> QueueWindow? {
        let start = since.start
        if let end = until.endExclusive {
            return end > start ? QueueWindow(since: start, until: end, untilExclusive: true) : nil
        }
        return until.start >= start ? QueueWindow(since: start, until: until.start) : nil
    }

    /// Local midnight of a day; `day` may be one past the month's last (mktime normalizes it to the next
    /// month's first). Where midnight does not exist (a daylight-saving change at 00:00), the first local time
    /// of that day that does.
    static func localMidnight(year: Int, month: Int, day: Int) -> Date {
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_isdst = -1
        let seconds = mktime(&parts)
        return Date(timeIntervalSince1970: Double(seconds))
    }
}
