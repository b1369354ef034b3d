// Fuzz target: QueueTime, the parsers of what operators type into `payhook queue` (--since, --until, durations)
// and of the `received_at` times read back from event files (docs/consumers.md).
//
// Properties, for any input (in a zone with daylight saving time, America/New_York, set before the first
// input, so that skipped and repeated local hours are reached):
// 1. no parser traps;
// 2. a local date or date-time that parses prints back (formatLocal) with the same date, hour and minute, and
//    its end of day is later than its start and less than 25 hours after it;
// 3. an RFC 3339 time that parses prints back in UTC (formatRFC3339) to a text that parses to the same instant
//    within a millisecond;
// 4. a duration that parses is finite and not negative, and parseInstant with it lies that long before now.

import Foundation
import PayhookStore

private let zoneSet: Bool = {
    setenv("TZ", "America/New_York", 1)
    tzset()
    return true
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func queueTimeFuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    _ = zoneSet
    let text = String(decoding: fuzzBytes(data, size), as: UTF8.self)
    if let start = QueueTime.parseLocal(text) {
        let shown = QueueTime.formatLocal(start)
        let typed = text.replacingOccurrences(of: "T", with: " ")
        if !shown.hasPrefix(String(typed.prefix(16))) { violated("a local time prints back differently", "\(text) -> \(shown)") }
        if let end = QueueTime.parseLocal(text, endOfDay: true) {
            let span = end.timeIntervalSince(start)
            if text.utf8.count == 10, !(span > 0 && span < 25 * 3600) { violated("a day's end is not within 25 hours of its start", text) }
            if text.utf8.count != 10, span != 0 { violated("endOfDay moved a date-time", text) }
        } else {
            violated("a date parses without endOfDay but not with it", text)
        }
    }
    if let instant = QueueTime.parseRFC3339(text) {
        let printed = QueueTime.formatRFC3339(instant)
        guard let again = QueueTime.parseRFC3339(printed) else { violated("formatRFC3339 wrote what parseRFC3339 refuses", printed) }
        if abs(again.timeIntervalSince(instant)) > 0.001 { violated("an RFC 3339 time moved on a round trip", "\(text) -> \(printed)") }
    }
    if let seconds = QueueTime.parseDuration(text) {
        if !seconds.isFinite || seconds < 0 { violated("a duration is negative or not finite", text) }
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        if QueueTime.parseRFC3339(text) == nil, QueueTime.parseLocal(text) == nil,
            QueueTime.parseInstant(text, now: now) != now.addingTimeInterval(-seconds) {
            violated("a duration as an instant is not that long before now", text)
        }
    }
    _ = QueueTime.parseInstant(text, now: Date(), endOfDay: true)
    return 0
}
