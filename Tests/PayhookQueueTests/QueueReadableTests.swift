import Foundation
import PayhookQueue
import PayhookStore
import PayhookTestSupport
import Testing

/// What the queue tools show people: amounts in their unit, times in the local zone (`TZ`), and `--since` /
/// `--until` read as local dates and date-times; `--json` stays in fen and UTC for scripts.
@Suite struct QueueReadableTests {
    static let shanghai = ["TZ": "Asia/Shanghai"]

    @Test("amounts show their unit beside the integer the event carries", arguments: [
        (Int64(100), "CNY", "¥1.00 (100 fen)"),
        (1, "CNY", "¥0.01 (1 fen)"),
        (123_456, "CNY", "¥1234.56 (123456 fen)"),
        (-250, "CNY", "-¥2.50 (-250 fen)"),
        (0, "CNY", "¥0.00 (0 fen)"),
        (1990, "cny", "¥19.90 (1990 fen)"),
        (1234, "USD", "12.34 USD (1234 minor units)"),
        (500, "JPY", "500 JPY"),
        (1234, "KWD", "1.234 KWD (1234 minor units)"),
        (Int64.min, "CNY", "-¥92233720368547758.08 (-9223372036854775808 fen)"),
    ])
    func amounts(minor: Int64, currency: String, shown: String) {
        #expect(QueueFormat.amount(minor, currency: currency) == shown)
    }

    @Test func anAmountWithoutOrWithAHostileCurrencyStaysReadable() {
        #expect(QueueFormat.amount(100, currency: nil) == "100 (smallest unit)")
        // A currency is callback text: a control character cannot reach the terminal.
        #expect(QueueFormat.amount(100, currency: "X\u{1b}[2J") == "1.00 X\\u001b[2J (100 minor units)")
    }

    @Test("local dates and date-times are read in the local zone; nonsense and impossible dates are refused")
    func localDates() throws {
        let day = try #require(QueueTime.parseLocal("2026-11-22"))
        let end = try #require(QueueTime.parseLocal("2026-11-22", endOfDay: true))
        #expect(abs(end.timeIntervalSince(day) - (86_400 - 0.001)) < 1e-6)
        let minute = try #require(QueueTime.parseLocal("2026-11-22 10:30"))
        #expect(minute.timeIntervalSince(day) == 10.5 * 3600)
        #expect(QueueTime.parseLocal("2026-11-22T10:30:15")?.timeIntervalSince(minute) == 15)
        // The end of the last day of a month runs into the next month correctly.
        let december = try #require(QueueTime.parseLocal("2026-12-01"))
        let november = try #require(QueueTime.parseLocal("2026-11-30", endOfDay: true))
        #expect(abs(november.timeIntervalSince(december) + 0.001) < 1e-6)
        #expect(QueueTime.formatLocal(minute).hasPrefix("2026-11-22 10:30:00 "))
        for text in ["2026-02-30", "2026-13-01", "2026-11-22 24:00", "2026-11-22 10:60", "2026-11-22 10:30:60",
                     "2026-11-22 10", "2026-11-22X10:30", "22-11-2026", "2026/11/22", "1969-12-31", "", "2026-11-2２",
                     "+026-11-22", "2026-11-22 10:30:15.5", String(repeating: "9", count: 10_000)] {
            #expect(QueueTime.parseLocal(text) == nil, "\(text)")
            #expect(QueueTime.parseInstant(text, now: Date(), endOfDay: true) == nil, "\(text)")
        }
    }

    @Test("list and show print local times and amounts in yuan; --json keeps UTC and fen")
    func humanOutputIsLocal() throws {
        let spool = try TestSpool()
        let id = try spool.add(orderRef: "order-1001", amount: 100, receivedAt: "2026-11-22T02:34:50.123Z")

        let table = try payhook("queue", "list", "--spool", spool.root, environment: Self.shanghai)
        #expect(table.status == 0)
        let row = try #require(table.stdout.split(separator: "\n").last.map(String.init))
        #expect(row.contains("2026-11-22 10:34:50 +08:00"), "\(table.stdout)")
        #expect(row.contains("¥1.00 (100 fen)"), "\(table.stdout)")

        let show = try payhook("queue", "show", "--spool", spool.root, id, environment: Self.shanghai)
        #expect(show.stdout.contains("amount          ¥1.00 (100 fen)"), "\(show.stdout)")
        #expect(show.stdout.contains("received_at     2026-11-22 10:34:50 +08:00 (2026-11-22T02:34:50.123Z)"), "\(show.stdout)")

        // Another zone, another local time: TZ is what decides.
        let newYork = try payhook("queue", "show", "--spool", spool.root, id, environment: ["TZ": "America/New_York"])
        #expect(newYork.stdout.contains("received_at     2026-11-21 21:34:50 -05:00 (2026-11-22T02:34:50.123Z)"), "\(newYork.stdout)")

        let json = try payhook("queue", "list", "--spool", spool.root, "--json", environment: Self.shanghai)
        let item = try #require((try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]])?.first)
        #expect(item["amount"] as? Int == 100)
        #expect(item["received_at"] as? String == "2026-11-22T02:34:50.123Z")
        let raw = try payhook("queue", "show", "--spool", spool.root, "--json", id, environment: Self.shanghai)
        #expect(raw.stdout == (try spool.read("new/\(id).json")))
    }

    @Test("--since and --until take local dates and date-times; a date alone as --until means to the end of that day")
    func filtersTakeLocalDates() throws {
        let spool = try TestSpool()
        // In Shanghai (UTC+8): 2026-11-22 07:30, 2026-11-22 23:59:59, 2026-11-23 00:00:00.
        let early = try spool.add(receivedAt: "2026-11-21T23:30:00.000Z")
        let late = try spool.add(receivedAt: "2026-11-22T15:59:59.000Z")
        let next = try spool.add(receivedAt: "2026-11-22T16:00:00.000Z")
        func ids(_ arguments: String...) throws -> [String] {
            let result = try Child(try payhookBinary(), ["queue", "list", "--spool", spool.root, "--json"] + arguments, environment: Self.shanghai)
                .finish(within: 20)
            try #require(result.status == 0, "\(result.stderr)")
            let items = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]])
            return items.compactMap { $0["id"] as? String }
        }
        #expect(try ids("--since", "2026-11-22", "--until", "2026-11-22") == [early, late])
        #expect(try ids("--since", "2026-11-22 08:00") == [late, next])
        #expect(try ids("--until", "2026-11-22T07:30:00") == [early])
        #expect(try ids("--since", "2026-11-23") == [next])
        // UTC stays available, and means what it says whatever TZ is.
        #expect(try ids("--since", "2026-11-22T16:00:00Z") == [next])

        let bad = try payhook("queue", "list", "--spool", spool.root, "--since", "2026-02-30", environment: Self.shanghai)
        #expect(bad.status == 2)
        #expect(bad.stderr.contains("--since must be \(QueueTime.instantForms); got \"2026-02-30\""), "\(bad.stderr)")
    }
}
