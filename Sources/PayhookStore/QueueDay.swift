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

    /// Reads a DAY: exactly `YYYY-MM-DD` naming a real date (year 1970 to 9999), or an RFC 3339 time
    /// (``QueueTime/parseRFC3339(_:)``). nil for anything else.
    public static func parse(_ text: String) -> QueueDay? {
        if let date = parseDate(text) { return .date(year: date.year, month: date.month, day: date.day) }
        if let instant = QueueTime.parseRFC3339(text) { return .instant(instant) }
        return nil
    }

    /// `YYYY-MM-DD` naming a real day (``QueueTime/localDate(_:)``, the reading `--since`/`--until` of `list` share).
    static func parseDate(_ text: String) -> (year: Int, month: Int, day: Int)? {
        QueueTime.localDate(text)
    }

    /// Where the bound starts: a date's local midnight (mktime(3), which follows `TZ`), or the instant.
    public var start: Date {
        switch self {
        case .date(let year, let month, let day): return QueueTime.localMidnight(year: year, month: month, day: day)
        case .instant(let date): return date
        }
    }

    /// The first instant after the bound, for an end that includes it: a date's next local midnight; nil for
    /// an instant, which is itself the (inclusive) end.
    public var endExclusive: Date? {
        switch self {
        case .date(let year, let month, let day): return QueueTime.localMidnight(year: year, month: month, day: day + 1)
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

}
