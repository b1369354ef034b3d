import Foundation
import PayhookQueue
import PayhookStore
import Testing

/// Durations and RFC 3339 times as the queue tools read them.
@Suite struct QueueTimeTests {
    @Test func durationsInEveryUnitAndCombined() {
        #expect(QueueTime.parseDuration("90s") == 90)
        #expect(QueueTime.parseDuration("15m") == 900)
        #expect(QueueTime.parseDuration("2h") == 7200)
        #expect(QueueTime.parseDuration("7d") == 604_800)
        #expect(QueueTime.parseDuration("1w") == 604_800)
        #expect(QueueTime.parseDuration("1h30m") == 5400)
        #expect(QueueTime.parseDuration("50ms") == 0.05)
        #expect(QueueTime.parseDuration("1.5s") == 1.5)
        #expect(QueueTime.parseDuration("0") == 0)
        #expect(QueueTime.parseDuration("0s") == 0)
    }

    @Test func malformedDurationsAreRefused() {
        for text in ["", "5", "h", "2x", "-1s", "1.2.3s", "1h 2m", "s5", "1H"] {
            #expect(QueueTime.parseDuration(text) == nil, "\(text)")
        }
    }

    @Test func durationsForPeople() {
        #expect(QueueTime.formatDuration(0) == "0s")
        #expect(QueueTime.formatDuration(0.25) == "250ms")
        #expect(QueueTime.formatDuration(45) == "45s")
        #expect(QueueTime.formatDuration(125) == "2m5s")
        #expect(QueueTime.formatDuration(7 * 86400) == "7d")
        #expect(QueueTime.formatDuration(90061) == "1d1h")
    }

    @Test func rfc3339WithFractionsAndOffsets() throws {
        let utc = try #require(QueueTime.parseRFC3339("2026-11-22T02:34:50.123Z"))
        #expect(abs(utc.timeIntervalSince1970 - 1_795_314_890.123) < 0.0005)
        let offset = try #require(QueueTime.parseRFC3339("2026-11-22T10:34:50.123+08:00"))
        #expect(abs(offset.timeIntervalSince(utc)) < 0.0005)
        #expect(QueueTime.parseRFC3339("2026-11-22t02:34:50z") != nil)
        #expect(QueueTime.parseRFC3339("2026-11-22 02:34:50Z") != nil)
        #expect(QueueTime.formatRFC3339(utc) == "2026-11-22T02:34:50.123Z")
    }

    @Test func malformedTimesAreRefused() {
        for text in ["2026-11-22", "2026-11-22T02:34:50", "2026-02-30T00:00:00Z", "2026-13-01T00:00:00Z",
                     "2026-11-22T24:00:00Z", "2026-11-22T02:34:50.Z", "2026-11-22T02:34:50+0800", "yesterday"] {
            #expect(QueueTime.parseRFC3339(text) == nil, "\(text)")
        }
    }

    @Test func instantsAreTimesOrDurationsAgo() throws {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        #expect(QueueTime.parseInstant("2h", now: now) == now.addingTimeInterval(-7200))
        let fixed = try #require(QueueTime.parseInstant("2026-11-22T02:34:50Z", now: now))
        #expect(fixed.timeIntervalSince1970 == 1_795_314_890)
        #expect(QueueTime.parseInstant("soon", now: now) == nil)
    }

    @Test func backoffDoublesUpToTheMaximum() {
        var options = QueueConsumeOptions(command: "true")
        options.backoff = 1
        options.maxBackoff = 10
        #expect(options.delay(afterFailures: 1) == 1)
        #expect(options.delay(afterFailures: 2) == 2)
        #expect(options.delay(afterFailures: 4) == 8)
        #expect(options.delay(afterFailures: 5) == 10)
        #expect(options.delay(afterFailures: 500) == 10)
    }
}
