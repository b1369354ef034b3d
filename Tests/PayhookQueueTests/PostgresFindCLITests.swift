import Foundation
import PayhookCore
import PayhookPostgres
import PayhookStore
import PayhookTestSupport
import Testing

/// `payhook queue find`, `show` by prefix and of acknowledged events, `list --location conflicts` and `export`
/// against PostgreSQL through the real binary: acknowledged events are ledger rows without a queue row (kept
/// until gc), conflict copies the rows of payhook_conflict.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct PostgresFindCLITests {
    typealias Setup = PostgresQueueCLITests.Setup

    /// An id starting with `tag`, so that a few characters tell the events of a test apart.
    static func id(_ tag: String, _ number: Int = 1) -> String {
        let tail = String(number, radix: 16)
        return tag + String(repeating: "0", count: 64 - tag.count - tail.count) + tail
    }

    /// An order with an event in every state, a conflict copy and a neighbour of another tenant, stored as the
    /// receiving side stores them and moved on through the CLI.
    struct Order {
        let setup: Setup
        let acknowledged = PostgresFindCLITests.id("a")
        let taken = PostgresFindCLITests.id("c")
        let dead = PostgresFindCLITests.id("d")
        let waiting = PostgresFindCLITests.id("e", 1)
        let otherTenant = PostgresFindCLITests.id("e", 2)
        /// The conflict copy's name: the first row of payhook_conflict.
        var copy: String { "\(acknowledged).1.json" }

        init() throws {
            setup = try Setup()
            let database = setup.database
            try database.add(TestDatabase.event(id: acknowledged, orderRef: "order-7", status: "NOTPAY", receivedAt: "2026-11-22T01:00:00.000Z"))
            try database.add(TestDatabase.event(id: taken, orderRef: "order-7", receivedAt: "2026-11-22T02:00:00.000Z"))
            try database.add(TestDatabase.event(id: dead, orderRef: "order-7", status: "CLOSED", receivedAt: "2026-11-22T03:00:00.000Z"))
            try database.add(TestDatabase.event(id: waiting, orderRef: "order-7", status: "SUCCESSREFUND", receivedAt: "2026-11-22T05:00:00.000Z"))
            try database.add(TestDatabase.event(id: otherTenant, tenant: "other", orderRef: "order-7", receivedAt: "2026-11-22T06:00:00.000Z"))
            try database.add(TestDatabase.event(id: PostgresFindCLITests.id("b"), orderRef: "order-8", receivedAt: "2026-11-22T01:30:00.000Z"))
            // Another content under the acknowledged event's id: the store keeps it in payhook_conflict.
            let variant = TestDatabase.event(
                id: acknowledged, orderRef: "order-7", status: "NOTPAY", receivedAt: "2026-11-22T04:00:00.000Z", money: "1")
            guard case .conflict = try database.store.store(variant) else { throw TestFailure("the variant was not a conflict") }
            for expected in [acknowledged, PostgresFindCLITests.id("b"), taken] {
                let take = try setup.run("take", "--format", "id")
                guard take.stdout == expected + "\n" else { throw TestFailure("took \(take.stdout), not \(expected)") }
            }
            guard try setup.run("ack", acknowledged).status == 0, try setup.run("ack", PostgresFindCLITests.id("b")).status == 0
            else { throw TestFailure("ack failed") }
            try database.sql("UPDATE payhook_queue SET state = 'dead', dead_at = now() WHERE id = '\\x\(dead)'")
        }
    }

    @Test func findSaysWhereEachEventOfAnOrderIs() throws {
        let order = try Order()
        let run = try order.setup.run("find", "--order-ref", "order-7", "--tenant", "demo")
        #expect(run.status == 0, "\(run)")
        try QueueFindCLITests.expectOrderTable(
            run.stdout, acknowledged: order.acknowledged, taken: order.taken, dead: order.dead, copy: order.copy,
            waiting: order.waiting)

        let json = try order.setup.run("find", "--order-ref", "order-7", "--json")
        let items = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]])
        #expect(items.map { $0["location"] as? String } == ["acknowledged", "cur", "dead", "conflicts", "new", "new"])
        #expect(items.map { $0["id"] as? String } == [order.acknowledged, order.taken, order.dead, order.acknowledged, order.waiting, order.otherTenant])
        #expect(items[0]["path"] as? String == "payhook_ledger/\(order.acknowledged)")
        #expect((items[0]["acknowledged_at"] as? String)?.hasSuffix("Z") == true)
        #expect(items[3]["path"] as? String == "payhook_conflict/1")
        #expect(items[3]["conflict_copy"] as? String == order.copy)
        #expect(items[3]["conflicts_with"] as? String == "acknowledged")
        #expect(items[2]["dead_at"] is String)
        #expect(Set(items.map { $0.count }) == [16])
        let none = try order.setup.run("find", "--order-ref", "order-7", "--source", "wechat.pay")
        #expect(none.stdout.hasSuffix("in new/, cur/, dead/, the ledger or conflicts/ of the database (payhook_queue)\n"))
        for output in [run, json, none] { #expect(!output.stdout.contains(order.setup.database.name)) }
    }

    @Test func showTakesAPrefixAndShowsAcknowledgedEventsAndCopies() throws {
        let order = try Order()
        let setup = order.setup
        let shown = try setup.run("show", String(order.acknowledged.prefix(8)))
        #expect(shown.status == 0, "\(shown)")
        #expect(shown.stdout.hasPrefix("location        acknowledged (only the dedupe ledger keeps it, until gc)\nacknowledged_at 20"))
        #expect(shown.stdout.contains("path            payhook_ledger/\(order.acknowledged)\n"))
        #expect(shown.stdout.hasSuffix("conflict copy   \(order.copy) (received 2026-11-22 04:00:00 +00:00)\n"))
        let raw = try setup.run("show", "--json", order.acknowledged + ".json")
        #expect(raw.stdout.trimmingCharacters(in: .newlines)
            == (try setup.database.sql("SELECT convert_from(event, 'UTF8') FROM payhook_ledger WHERE id = '\\x\(order.acknowledged)'")))

        let copy = try setup.run("show", order.copy)
        #expect(copy.status == 0)
        #expect(copy.stdout.contains("conflicts_with  event \(order.acknowledged), acknowledged\n"))
        #expect(copy.stdout.contains("path            payhook_conflict/1\n"))
        #expect(copy.stdout.contains("  money         1\n"))
        #expect(try setup.run("show", "--json", order.copy).stdout.trimmingCharacters(in: .newlines)
            == (try setup.database.sql("SELECT convert_from(event, 'UTF8') FROM payhook_conflict")))

        let ambiguous = try setup.run("show", String(order.waiting.prefix(8)))
        #expect(ambiguous.status == 1)
        #expect(
            ambiguous.stderr == "error: ID prefix \(order.waiting.prefix(8)) is ambiguous: 2 events of the database "
                + "(payhook_queue) start with it: \(order.waiting), \(order.otherTenant); give more of the id\n")
        #expect(try setup.run("show", String(order.dead.prefix(9))).stdout.hasPrefix("location        dead/ (dead letter)\n"))
        let unknown = try setup.run("show", "abcdef01")
        #expect(unknown.status == 1)
        #expect(unknown.stderr == "error: no event id starts with abcdef01 in the database (payhook_queue)\n")
        #expect(try setup.run("show", "abcdef0").status == 2)
        #expect(try setup.run("nack", order.taken + ".json").stdout == "returned \(order.taken) to new/ (1 failed attempt so far)\n")
    }

    @Test func listConflictsSaysWhatConflictsWithWhat() throws {
        let order = try Order()
        let setup = order.setup
        let table = try setup.run("list", "--location", "conflicts")
        #expect(table.status == 0, "\(table)")
        let lines = table.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 2)
        #expect(lines.last?.hasSuffix("\(order.copy) (conflicts with the acknowledged event)") == true)
        // Once the ledger row is gone (gc), the copy says so.
        try setup.database.sql("DELETE FROM payhook_ledger WHERE id = '\\x\(order.acknowledged)'")
        let json = try setup.run("list", "--location", "conflicts", "--json", "--tenant", "demo")
        let items = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]])
        #expect(items.count == 1)
        #expect(items.first?["conflicts_with"] is NSNull)
        #expect(items.first?["conflict_copy"] as? String == order.copy)
        #expect(try setup.run("list", "--location", "conflicts").stdout.contains("the event it conflicts with is no longer in the ledger"))
        let other = try setup.run("list", "--location", "conflicts", "--tenant", "other")
        #expect(other.stdout == "no conflict copies in conflicts/ of the database (payhook_queue) matching the filters\n")
    }

    @Test func exportWritesEachStoredEventOfTheWindowOnce() throws {
        let order = try Order()
        let setup = order.setup
        let hostile = PostgresFindCLITests.id("f")
        try setup.database.add(TestDatabase.event(id: hostile, orderRef: "@SUM(1+1)\"x\",\n", receivedAt: "2026-11-30T15:59:59.999Z"))
        try setup.database.add(TestDatabase.event(id: PostgresFindCLITests.id("f", 2), orderRef: "later", receivedAt: "2026-11-30T16:00:00.000Z"))
        let csv = try Child(
            try payhookBinary(), ["queue", "export", "--since", "2026-11-22", "--until", "2026-11-30", "--config", setup.config],
            environment: setup.environment.merging(["TZ": "Asia/Shanghai"]) { $1 }
        ).finish()
        #expect(csv.status == 0, "\(csv)")
        let records = csv.stdout.components(separatedBy: "\r\n")
        // Beijing's 2026-11-22 starts at 2026-11-21T16:00Z: every event of the order, each once, not the copy.
        #expect(records.first == "id,received_at,source,tenant,order_ref,amount_fen,currency,status,state")
        #expect(records.dropFirst().map { String($0.prefix(64)) } == [
            order.acknowledged, PostgresFindCLITests.id("b"), order.taken, order.dead, order.waiting, order.otherTenant, hostile, "",
        ])
        #expect(records[1] == "\(order.acknowledged),2026-11-22T01:00:00.000Z,unified,demo,order-7,100,CNY,NOTPAY,acknowledged")
        #expect(records[4].hasSuffix(",CLOSED,dead"))
        #expect(records[7] == "\(hostile),2026-11-30T15:59:59.999Z,unified,demo,\"'@SUM(1+1)\"\"x\"\",\n\",100,CNY,SUCCESSPAY,new")
        #expect(csv.stderr.hasPrefix("note: exported 7 events of the database (payhook_queue) received from 2026-11-21T16:00:00.000Z to 2026-11-30T16:00:00.000Z (excluded)"))

        let jsonl = try setup.run("export", "--since", "2026-11-22T03:00:00Z", "--until", "2026-11-22T05:00:00Z", "--format", "jsonl")
        let rows = try jsonl.stdout.split(separator: "\n").map { line in
            try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        }
        #expect(rows.map { $0["id"] as? String } == [order.dead, order.waiting])
        #expect(rows.map { $0["state"] as? String } == ["dead", "new"])
        #expect(rows.first?["amount_fen"] as? Int == 100)
    }

    /// Pages of the ledger search follow each other without a gap or a repeat, ties of received_at included.
    @Test func exportPagesThroughMoreEventsThanOnePage() throws {
        let setup = try Setup()
        let count = PostgresEventQueue.searchPage + 7
        // One statement: a page and a bit of ledger rows, some received at the same instant.
        try setup.database.sql(
            """
            INSERT INTO payhook_ledger (id, dedupe_key, source, tenant, order_ref, status, amount, currency, fingerprint,
                                        event, received_at, received_by, acked_at)
            SELECT sha256(n::text::bytea), 'k' || n, 'unified', 'demo', 'bulk-' || n, 'SUCCESSPAY', n, 'CNY', sha256('f'::bytea),
                   convert_to('{}', 'UTF8'), timestamptz '2026-11-22 00:00:00+00' + (n / 3) * interval '1 millisecond', 'test', now()
              FROM generate_series(1, \(count)) n
            """)
        let run = try setup.run(
            "export", "--since", "2026-11-22T00:00:00Z", "--until", "2026-11-22T01:00:00Z", "--format", "jsonl", within: 60)
        #expect(run.status == 0, "\(run.stderr)")
        let ids = run.stdout.split(separator: "\n").compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["id"] as? String
        }
        #expect(ids.count == count)
        #expect(Set(ids).count == count)
    }
}
