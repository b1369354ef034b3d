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

    /// `export --since/--until DAY`: a date is exactly YYYY-MM-DD naming a real day, else an RFC 3339 time.
    @Test func daysAreDatesOrRFC3339Times() throws {
        #expect(QueueDay.parse("2026-11-01") == .date(year: 2026, month: 11, day: 1))
        #expect(QueueDay.parse("2024-02-29") == .date(year: 2024, month: 2, day: 29))
        #expect(QueueDay.parse("2000-02-29") == .date(year: 2000, month: 2, day: 29))
        #expect(QueueDay.parse("1970-01-01") == .date(year: 1970, month: 1, day: 1))
        let instant = try #require(QueueTime.parseRFC3339("2026-11-01T00:00:00+08:00"))
        #expect(QueueDay.parse("2026-11-01T00:00:00+08:00") == .instant(instant))
        #expect(QueueDay.parse("2026-11-01T00:00:00+08:00")?.endExclusive == nil)
    }

    @Test func hostileDaysAreRefused() {
        let hostile = [
            "", " ", "2026-11-1", "2026-1-01", "26-11-01", "2026/11/01", "2026-11-01 ", " 2026-11-01", "2026-11-01\n",
            "2026-11-01\u{0}", "2026-11-00", "2026-00-10", "2026-13-01", "2026-02-29", "1900-02-29", "2026-04-31",
            "1969-12-31", "0000-01-01", "+2026-11-01", "-2026-11-01", "2026-11-+1", "2026-11--1", "２０２６-11-01",
            "2026-11-0١", "99999-01-01", "2026-11-01T", "2026-11-01T00:00:00", "2026-11-01Z", "today", "1d",
            String(repeating: "2026-11-01", count: 1000), "2026-11-01\u{202E}",
        ]
        for text in hostile {
            #expect(QueueDay.parse(text) == nil, "\(text.debugDescription)")
        }
    }

    /// A date bound is the whole local day: the window from one date to another includes the last day, and an
    /// instant bound is itself included.
    @Test func windowsIncludeTheUntilDayAndRefuseEmptyOnes() throws {
        let first = QueueDay.date(year: 2026, month: 11, day: 1)
        let last = QueueDay.date(year: 2026, month: 11, day: 30)
        let month = try #require(QueueDay.window(since: first, until: last))
        #expect(month.untilExclusive)
        let span = try #require(month.until).timeIntervalSince(try #require(month.since))
        // 30 days, give or take a daylight-saving hour of the local zone.
        #expect(abs(span - 30 * 86400) <= 3600)
        #expect(month.contains(try #require(month.since)))
        #expect(!month.contains(try #require(month.until)))
        #expect(month.contains(try #require(month.until).addingTimeInterval(-0.001)))
        // The last day of a month rolls over to the next month's first, and the year's to the next year.
        let newYear = try #require(QueueDay.window(since: .date(year: 2026, month: 12, day: 31), until: .date(year: 2026, month: 12, day: 31)))
        #expect(abs(try #require(newYear.until).timeIntervalSince(try #require(newYear.since)) - 86400) <= 3600)

        let noon = try #require(QueueTime.parseRFC3339("2026-11-15T12:00:00Z"))
        let instants = try #require(QueueDay.window(since: .instant(noon), until: .instant(noon)))
        #expect(!instants.untilExclusive && instants.contains(noon))
        #expect(!instants.contains(noon.addingTimeInterval(0.001)))
        #expect(QueueDay.window(since: last, until: first) == nil)
        #expect(QueueDay.window(since: .instant(noon), until: .instant(noon.addingTimeInterval(-1))) == nil)
    }

    /// How an operator names an event: an id, `<id>.json`, a prefix of 8 or more, or a conflict copy's name.
    @Test func referencesAreIDsFileNamesPrefixesOrConflictCopies() throws {
        let id = "7f995134d01718a20fcd0c7d71760ba94657d9f45498e23b5982c38c2b59b64c"
        #expect(try QueueReference.parse(id) == .id(id))
        #expect(try QueueReference.parse(id + ".json") == .id(id))
        #expect(try QueueReference.parse("7f995134", prefixes: true) == .prefix("7f995134"))
        #expect(try QueueReference.parse(String(id.prefix(63)), prefixes: true) == .prefix(String(id.prefix(63))))
        let spoolCopy = "\(id).4242.17.1795314890123456.I1234567.json"
        #expect(try QueueReference.parse(spoolCopy, conflictCopies: true) == .conflictCopy(id: id, name: spoolCopy))
        #expect(QueueReference.conflictCopy(named: spoolCopy)?.tag == "4242.17.1795314890123456.I1234567")
        #expect(QueueReference.conflictCopy(named: "\(id).17.json")?.id == id)
        #expect(QueueReference.conflictCopyName(id: id, tag: "17") == "\(id).17.json")
        // Each command accepts only the forms it can act on.
        #expect(throws: QueueReference.Problem.prefixNotAllowed) { try QueueReference.parse("7f995134") }
        #expect(throws: QueueReference.Problem.conflictCopyNotAllowed) { try QueueReference.parse(spoolCopy) }
        #expect(throws: QueueReference.Problem.tooShort(7)) { try QueueReference.parse("7f99513", prefixes: true) }
        #expect(throws: QueueReference.Problem.tooLong(65)) { try QueueReference.parse(id + "0", prefixes: true) }
        #expect(throws: QueueReference.Problem.empty) { try QueueReference.parse("", prefixes: true) }
    }

    @Test func hostileReferencesAreRefused() {
        let id = "7f995134d01718a20fcd0c7d71760ba94657d9f45498e23b5982c38c2b59b64c"
        let hostile = [
            " ", "../../etc/passwd", "7F995134", String(id.uppercased()), "7f99513g", "7f995134 ", "7f995134\n",
            "7f995134\u{0}", "0x7f995134", "-7f995134", "7f995134/..", id + ".JSON", id + ".json.json", id + "..json",
            id + "./.json", id + "/x.json", id + ".a/b.json", id + ". .json", id + ".\u{0}.json", id + "..1.json",
            id + ".1..2.json", id + ".1.json/", "conflicts/" + id + ".1.json", id + "." + String(repeating: "1", count: 129) + ".json",
            id + ".１.json", id + ".é.json", String(id.dropLast()) + "g.json", String(id.dropLast()) + ".1.json",
            String(repeating: "a", count: 10_000),
        ]
        for text in hostile {
            #expect(throws: QueueReference.Problem.self, "\(text.debugDescription)") {
                try QueueReference.parse(text, prefixes: true, conflictCopies: true)
            }
        }
        for name in [id + ".json", id + "..json", id + ".1.", id + ".1.json.tmp", ".\(id).1.json", id + "-1.json", id + ".I1.json"] {
            #expect(QueueReference.conflictCopy(named: name) == nil, "\(name)")
        }
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
