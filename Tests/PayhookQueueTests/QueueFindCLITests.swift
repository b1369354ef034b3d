import Foundation
import PayhookTestSupport
import Testing

/// `payhook queue find`, `show` by prefix and of acknowledged events, `list --location conflicts` and `export`
/// over a spool, through the real binary, given `--spool DIR` or a config naming the spool.
@Suite(.serialized, .timeLimit(.minutes(1)))
struct QueueFindCLITests {
    /// A config whose store is the spool (the default `[store]`), for `--config`.
    /// `find`'s table for the order both stores' tests seed (one event in every place, and a conflict copy of the
    /// acknowledged one, an hour apart from 01:00 UTC): oldest first, each line saying where its event is, the
    /// conflict copy naming itself and what it conflicts with.
    static func expectOrderTable(
        _ stdout: String, acknowledged: String, taken: String, dead: String, copy: String, waiting: String
    ) throws {
        let lines = stdout.split(separator: "\n").map(String.init)
        try #require(lines.count == 6, "\(stdout)")
        #expect(lines[0].hasPrefix("LOCATION      RECEIVED_AT"))
        #expect(lines[1].hasPrefix("acknowledged  2026-11-22 01:00:00 +00:00") && lines[1].hasSuffix(acknowledged))
        #expect(lines[2].hasPrefix("cur ") && lines[2].hasSuffix(taken))
        #expect(lines[3].hasPrefix("dead ") && lines[3].hasSuffix(dead))
        #expect(lines[4].hasPrefix("conflicts     2026-11-22 04:00:00 +00:00"))
        #expect(lines[4].hasSuffix("\(copy) (conflicts with the acknowledged event)"))
        #expect(lines[5].hasPrefix("new ") && lines[5].hasSuffix(waiting))
    }

    static func config(for spool: TestSpool) throws -> String {
        let path = spool.base + "/payhook.toml"
        let text = """
            spool = "\(spool.root)"

            [[unified]]
            path = "/notify/unified"
            domain_code = "demo"
            secret_env = "PAYHOOK_TEST_UNIFIED_SECRET"

            """
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static let environment = ["PAYHOOK_TEST_UNIFIED_SECRET": "s3cr3t"]

    /// Runs `payhook queue COMMAND ARGS…` twice, once with `--spool` and once with `--config`, and expects the
    /// same outcome; returns the first.
    /// TZ=UTC unless `environment` names another zone: tables and `show` print local times, which the
    /// expectations give in UTC.
    static func both(_ spool: TestSpool, _ arguments: [String], environment given: [String: String] = [:]) throws -> RunResult {
        let environment = ["TZ": "UTC"].merging(given) { $1 }
        let config = try config(for: spool)
        let bySpool = try Child(try payhookBinary(), ["queue"] + arguments + ["--spool", spool.root], environment: environment).finish()
        let byConfig = try Child(
            try payhookBinary(), ["queue"] + arguments + ["--config", config],
            environment: environment.merging(Self.environment) { $1 }
        ).finish()
        #expect(byConfig.status == bySpool.status, "\(arguments): \(byConfig.stderr)")
        #expect(byConfig.stdout == bySpool.stdout, "\(arguments)")
        return bySpool
    }

    /// A conflict copy as the server names and writes it: conflicts/<id>.<pid>.<counter>.<µs>.I<inode>.json,
    /// another content under the id of a stored event.
    @discardableResult
    static func conflict(_ spool: TestSpool, of id: String, orderRef: String, amount: Int, receivedAt: String) throws -> String {
        let name = "\(id).4242.1.1795314890123456.I77.json"
        try spool.write(
            "conflicts/\(name)", TestSpool.eventJSON(id: id, orderRef: orderRef, amount: amount, receivedAt: receivedAt))
        return name
    }

    /// rename(2) within the spool, as consumers move events.
    static func move(_ spool: TestSpool, _ from: String, _ to: String) throws {
        guard rename(spool.path(from), spool.path(to)) == 0 else {
            throw TestFailure("rename \(from): \(String(cString: strerror(errno)))")
        }
    }

    /// An order with an event in every place: waiting, taken, dead, acknowledged, and a conflict copy.
    struct Order {
        let spool: TestSpool
        let waiting: String
        let taken: String
        let dead: String
        let acknowledged: String
        let copy: String
        let otherTenant: String

        /// Ids start with their tag, so that 8 characters tell them apart, except the two of tag e.
        init() throws {
            spool = try TestSpool()
            acknowledged = try spool.add(
                id: spool.makeID("a"), orderRef: "order-7", status: "NOTPAY", receivedAt: "2026-11-22T01:00:00.000Z")
            taken = try spool.add(id: spool.makeID("c"), orderRef: "order-7", receivedAt: "2026-11-22T02:00:00.000Z")
            dead = try spool.add(
                id: spool.makeID("d"), orderRef: "order-7", status: "CLOSED", receivedAt: "2026-11-22T03:00:00.000Z")
            waiting = try spool.add(
                id: spool.makeID("e"), orderRef: "order-7", status: "SUCCESSREFUND", receivedAt: "2026-11-22T05:00:00.000Z")
            otherTenant = try spool.add(
                id: spool.makeID("e"), tenant: "other", orderRef: "order-7", receivedAt: "2026-11-22T06:00:00.000Z")
            try spool.add(id: spool.makeID("b"), orderRef: "order-8", receivedAt: "2026-11-22T01:30:00.000Z")
            // Taken (renamed into cur/ as a consumer does); the acknowledged one then acknowledged, which leaves
            // only its ledger entry ids/<id>; the dead one moved to dead/ as consume does.
            try QueueFindCLITests.move(spool, "new/\(acknowledged).json", "cur/\(acknowledged).json")
            try QueueFindCLITests.move(spool, "new/\(taken).json", "cur/\(taken).json")
            try payhook("queue", "ack", "--spool", spool.root, acknowledged)
            try FileManager.default.createDirectory(atPath: spool.path("dead"), withIntermediateDirectories: false)
            try QueueFindCLITests.move(spool, "new/\(dead).json", "dead/\(dead).json")
            copy = try QueueFindCLITests.conflict(
                spool, of: acknowledged, orderRef: "order-7", amount: 1, receivedAt: "2026-11-22T04:00:00.000Z")
        }
    }

    @Test func findSaysWhereEachEventOfAnOrderIs() throws {
        let order = try Order()
        let run = try Self.both(order.spool, ["find", "--order-ref", "order-7", "--tenant", "demo"])
        #expect(run.status == 0, "\(run)")
        try Self.expectOrderTable(
            run.stdout, acknowledged: order.acknowledged, taken: order.taken, dead: order.dead, copy: order.copy,
            waiting: order.waiting)
        #expect(!run.stdout.contains(order.otherTenant))

        // Without --tenant, the other tenant's event of the same order ref too; --source narrows.
        let all = try Self.both(order.spool, ["find", "--order-ref", "order-7", "--json"])
        let items = try #require(try JSONSerialization.jsonObject(with: Data(all.stdout.utf8)) as? [[String: Any]])
        #expect(items.map { $0["location"] as? String } == ["acknowledged", "cur", "dead", "conflicts", "new", "new"])
        #expect(items.last?["id"] as? String == order.otherTenant)
        let keys: Set<String> = [
            "id", "location", "path", "source", "tenant", "order_ref", "status", "amount", "currency", "received_at",
            "attempts", "last_error", "dead_at", "acknowledged_at", "conflict_copy", "conflicts_with",
        ]
        for item in items { #expect(Set(item.keys) == keys) }
        #expect(items[0]["path"] as? String == order.spool.path("ids/\(order.acknowledged)"))
        #expect(items[3]["conflict_copy"] as? String == order.copy)
        #expect(items[3]["conflicts_with"] as? String == "acknowledged")
        #expect(items[3]["amount"] as? Int == 1)
        #expect(items[0]["conflicts_with"] is NSNull && items[0]["conflict_copy"] is NSNull)
        let none = try Self.both(order.spool, ["find", "--order-ref", "order-7", "--source", "wechat.pay"])
        #expect(none.status == 0)
        #expect(none.stdout.hasPrefix("no event with order_ref \"order-7\" for the tenants and sources given in new/, cur/, dead/, the ledger or conflicts/ of "))
        #expect(try Self.both(order.spool, ["find", "--order-ref", "order-9", "--json"]).stdout == "[\n\n]\n")
    }

    /// An order ref is the sender's text: the table shows it escaped, JSON exactly; it matches byte for byte.
    @Test func findPrintsHostileOrderRefsEscapedAndMatchesThemExactly() throws {
        let spool = try TestSpool()
        let hostile = "x\\u001b[2J\\nforged line"
        let id = try spool.add(orderRef: hostile)
        // Canonically equivalent, other bytes: another order (e + U+0301 against U+00E9).
        try spool.add(orderRef: "caf\u{E9}")
        let decomposed = try spool.add(orderRef: "cafe\u{301}")
        let run = try Self.both(spool, ["find", "--order-ref", "x\u{1b}[2J\nforged line"])
        #expect(run.status == 0)
        #expect(!run.stdout.contains("\u{1b}"))
        #expect(run.stdout.contains("x\\u001b[2J\\nforged line"))
        #expect(run.stdout.split(separator: "\n").count == 2 && run.stdout.hasSuffix(id + "\n"))
        let json = try Self.both(spool, ["find", "--json", "--order-ref", "x\u{1b}[2J\nforged line"])
        let items = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]])
        #expect(items.first?["order_ref"] as? String == "x\u{1b}[2J\nforged line")
        let exact = try Self.both(spool, ["find", "--json", "--order-ref", "cafe\u{301}"])
        let matched = try #require(try JSONSerialization.jsonObject(with: Data(exact.stdout.utf8)) as? [[String: Any]])
        #expect(matched.map { $0["id"] as? String } == [decomposed])
    }

    @Test func showTakesAUniquePrefixOrAFileNameAndShowsAcknowledgedEventsAndCopies() throws {
        let order = try Order()
        let spool = order.spool
        // 8 characters of an id are enough when no other id starts with them (its conflict copy has its id).
        let shown = try Self.both(spool, ["show", String(order.acknowledged.prefix(8))])
        #expect(shown.status == 0, "\(shown)")
        #expect(shown.stdout.hasPrefix("location        acknowledged (only the dedupe ledger keeps it, until gc)\n"))
        #expect(shown.stdout.contains("path            \(spool.path("ids/\(order.acknowledged)"))"))
        #expect(shown.stdout.contains("status          NOTPAY"))
        #expect(!shown.stdout.contains("attempts "))
        #expect(shown.stdout.hasSuffix("conflict copy   \(order.copy) (received 2026-11-22 04:00:00 +00:00)\n"))
        // --json: the ledger entry's bytes exactly; the file name <id>.json works as well as the id.
        let raw = try Self.both(spool, ["show", "--json", order.acknowledged + ".json"])
        #expect(raw.stdout == (try spool.read("ids/\(order.acknowledged)")))

        // A conflict copy by its name.
        let copy = try Self.both(spool, ["show", order.copy])
        #expect(copy.status == 0)
        #expect(copy.stdout.hasPrefix("location        conflicts (an audit copy of a correctly signed callback with other content; never queued)\n"))
        #expect(copy.stdout.contains("conflicts_with  event \(order.acknowledged), acknowledged\n"))
        #expect(copy.stdout.contains("amount          ¥0.01 (1 fen)\n"))
        #expect(try Self.both(spool, ["show", "--json", order.copy]).stdout == (try spool.read("conflicts/\(order.copy)")))
        let gone = try Self.both(spool, ["show", "\(order.acknowledged).1.json"])
        #expect(gone.status == 1)
        #expect(gone.stderr == "error: no conflict copy \(order.acknowledged).1.json in \(spool.root)\n")

        // Two ids start with e0000000: ambiguous, and both are listed.
        let ambiguous = try Self.both(spool, ["show", String(order.waiting.prefix(8))])
        #expect(ambiguous.status == 1)
        #expect(
            ambiguous.stderr == "error: ID prefix \(order.waiting.prefix(8)) is ambiguous: 2 events of \(spool.root) start "
                + "with it: \(order.waiting), \(order.otherTenant); give more of the id\n")
        #expect(try Self.both(spool, ["show", String(order.otherTenant.prefix(64))]).stdout.contains("tenant          other"))
        let unique = try Self.both(spool, ["show", String(order.dead.prefix(8))])
        #expect(unique.stdout.hasPrefix("location        dead/ (dead letter)\n"))
        let unknown = try Self.both(spool, ["show", "abcdef0123"])
        #expect(unknown.status == 1)
        #expect(unknown.stderr == "error: no event id starts with abcdef0123 in \(spool.root)\n")
    }

    @Test func badIDsOfShowAreUsageErrorsSayingWhy() throws {
        let spool = try TestSpool()
        let short = try payhook("queue", "show", "--spool", spool.root, "abc1234")
        #expect(short.status == 2)
        #expect(short.stderr.contains("ID \"abc1234\" is too short: an id prefix needs at least 8 hex characters, this has 7"))
        for bad in ["ABCDEF0123", "../../etc/passwd", "abcdefgh", spool.makeID() + "/x.json"] {
            let run = try payhook("queue", "show", "--spool", spool.root, bad)
            #expect(run.status == 2, "\(bad)")
            #expect(run.stderr.contains("is not lowercase hex"), "\(bad)")
        }
        let long = try payhook("queue", "show", "--spool", spool.root, spool.makeID() + "0")
        #expect(long.status == 2)
        #expect(long.stderr.contains("is too long: an event id has 64 hex characters, this has 65"))
        // ack and the others take an id or <id>.json, never a prefix.
        let id = try spool.add()
        #expect(try payhook("queue", "take", "--spool", spool.root, "--format", "id").stdout == id + "\n")
        #expect(try payhook("queue", "ack", "--spool", spool.root, String(id.prefix(10))).status == 2)
        let ack = try payhook("queue", "ack", "--spool", spool.root, id + ".json")
        #expect(ack.status == 0)
        #expect(ack.stdout == "acknowledged \(id)\n")
    }

    @Test func listConflictsSaysWhatConflictsWithWhat() throws {
        let order = try Order()
        let spool = order.spool
        // A second copy, of an event still waiting.
        let second = try Self.conflict(spool, of: order.waiting, orderRef: "order-7", amount: 2, receivedAt: "2026-11-22T07:00:00.000Z")
        let table = try Self.both(spool, ["list", "--location", "conflicts"])
        #expect(table.status == 0, "\(table)")
        let lines = table.stdout.split(separator: "\n").map(String.init)
        try #require(lines.count == 3, "\(table.stdout)")
        #expect(lines[0].hasPrefix("LOCATION   RECEIVED_AT"))
        #expect(lines[1].hasPrefix("conflicts  2026-11-22 04:00:00 +00:00") && lines[1].hasSuffix("\(order.copy) (conflicts with the acknowledged event)"))
        #expect(lines[2].hasSuffix("\(second) (conflicts with the event waiting in new)"))
        #expect(lines[2].contains("¥0.02 (2 fen)"))

        let json = try Self.both(spool, ["list", "--location", "conflicts", "--json", "--since", "2026-11-22T05:00:00Z"])
        let items = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]])
        #expect(items.count == 1)
        #expect(items.first?["conflict_copy"] as? String == second)
        #expect(items.first?["id"] as? String == order.waiting)
        #expect(items.first?["conflicts_with"] as? String == "new")
        #expect(items.first?["path"] as? String == spool.path("conflicts/\(second)"))

        // With other folders, one table.
        let mixed = try Self.both(spool, ["list", "--location", "dead", "--location", "conflicts"])
        #expect(mixed.stdout.split(separator: "\n").map { $0.prefix(10) } == ["LOCATION  ", "dead      ", "conflicts ", "conflicts "])

        // A copy whose file is no event is named, left in place, and makes the exit status 1.
        let broken = "\(order.taken).1.json"
        try spool.write("conflicts/\(broken)", "{\"id\":")
        let reported = try Self.both(spool, ["list", "--location", "conflicts"])
        #expect(reported.status == 1)
        #expect(reported.stderr == "error: conflicts/\(broken) is not a valid event (it is not valid JSON); left in place\n")
        #expect(spool.exists("conflicts/\(broken)"))
        #expect(reported.stdout.split(separator: "\n").count == 3)

        let empty = try TestSpool()
        let nothing = try Self.both(empty, ["list", "--location", "conflicts"])
        #expect(nothing.status == 0)
        #expect(nothing.stdout == "no conflict copies in conflicts/ of \(empty.root)\n")
        #expect(try payhook("queue", "list", "--spool", empty.root, "--location", "ids").status == 2)
    }

    /// The ledger and conflicts/ are the server's: a search reads them as the queue reads events (no link
    /// followed, no FIFO waited on) and moves nothing there.
    @Test func findReadsTheLedgerAndConflictsWithoutFollowingLinksOrBlocking() throws {
        let spool = try TestSpool()
        let id = try spool.add(orderRef: "order-1")
        try Self.move(spool, "new/\(id).json", "cur/\(id).json")
        try payhook("queue", "ack", "--spool", spool.root, id)
        let secret = spool.base + "/outside.json"
        try TestSpool.eventJSON(id: String(repeating: "f", count: 64), orderRef: "order-1").write(toFile: secret, atomically: true, encoding: .utf8)
        let linked = spool.makeID("f")
        try spool.symlink("ids/\(linked)", to: secret)
        try spool.fifo("conflicts/\(id).1.json")
        let run = try payhook("queue", "find", "--spool", spool.root, "--order-ref", "order-1", within: 10)
        #expect(run.status == 1)
        #expect(run.stdout.split(separator: "\n").count == 2 && run.stdout.hasSuffix(id + "\n"))
        #expect(run.stderr.contains("error: ids/\(linked) is not a valid event (it is a symbolic link"))
        #expect(run.stderr.contains("error: conflicts/\(id).1.json is not a valid event (it is a named pipe (FIFO), not a regular file); left in place"))
        #expect(spool.lstatKind("ids/\(linked)") == S_IFLNK && spool.lstatKind("conflicts/\(id).1.json") == S_IFIFO)
        #expect(spool.list("corrupt").isEmpty)
    }

    @Test func exportWritesEachStoredEventOfTheWindowOnce() throws {
        let spool = try TestSpool()
        // Beijing days (TZ below): 2026-11-01 starts at 2026-10-31T16:00:00Z, 2026-11-30 ends at 2026-11-30T16:00:00Z.
        let before = try spool.add(orderRef: "before", receivedAt: "2026-10-31T15:59:59.999Z")
        let first = try spool.add(orderRef: "first", amount: 1, receivedAt: "2026-10-31T16:00:00.000Z")
        let acked = try spool.add(orderRef: "=HYPERLINK(\\\"http://x\\\",\\\"y\\\")", amount: 250, receivedAt: "2026-11-10T00:00:00.000Z")
        let quoted = try spool.add(orderRef: "a,b \\\"c\\\"\\nd", receivedAt: "2026-11-15T00:00:00.000Z")
        let last = try spool.add(orderRef: "-2+3", receivedAt: "2026-11-30T15:59:59.999Z")
        let after = try spool.add(orderRef: "after", receivedAt: "2026-11-30T16:00:00.000Z")
        #expect(try payhook("queue", "take", "--spool", spool.root, "--format", "id").stdout == before + "\n")
        #expect(try payhook("queue", "take", "--spool", spool.root, "--format", "id").stdout == first + "\n")
        try Self.move(spool, "new/\(acked).json", "cur/\(acked).json")
        #expect(try payhook("queue", "ack", "--spool", spool.root, acked).status == 0)
        try Self.conflict(spool, of: first, orderRef: "first", amount: 9, receivedAt: "2026-11-02T00:00:00.000Z")

        let beijing = ["TZ": "Asia/Shanghai"]
        let csv = try Self.both(spool, ["export", "--since", "2026-11-01", "--until", "2026-11-30"], environment: beijing)
        #expect(csv.status == 0, "\(csv)")
        let expected = [
            "id,received_at,source,tenant,order_ref,amount_fen,currency,status,state",
            "\(first),2026-10-31T16:00:00.000Z,unified,demo,first,1,CNY,SUCCESSPAY,cur",
            "\(acked),2026-11-10T00:00:00.000Z,unified,demo,\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",250,CNY,SUCCESSPAY,acknowledged",
            "\(quoted),2026-11-15T00:00:00.000Z,unified,demo,\"a,b \"\"c\"\"\nd\",100,CNY,SUCCESSPAY,new",
            "\(last),2026-11-30T15:59:59.999Z,unified,demo,'-2+3,100,CNY,SUCCESSPAY,new",
        ]
        #expect(csv.stdout == expected.joined(separator: "\r\n") + "\r\n")
        #expect(csv.stderr == "note: exported 4 events of \(spool.root) received from 2026-10-31T16:00:00.000Z to 2026-11-30T16:00:00.000Z (excluded)\n")
        #expect(!csv.stdout.contains(after) && !csv.stdout.contains(before))

        // JSON lines: the same rows, the values exactly as stored; RFC 3339 bounds are exact and both included.
        let jsonl = try Self.both(
            spool, ["export", "--since", "2026-11-10T00:00:00Z", "--until", "2026-11-30T15:59:59.999Z", "--format", "jsonl"])
        let rows = try jsonl.stdout.split(separator: "\n").map { line in
            try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        }
        #expect(rows.map { $0["id"] as? String } == [acked, quoted, last])
        #expect(rows[0]["order_ref"] as? String == "=HYPERLINK(\"http://x\",\"y\")")
        #expect(rows[0]["amount_fen"] as? Int == 250)
        #expect(rows[0]["state"] as? String == "acknowledged")
        #expect(rows.allSatisfy { $0.count == 9 })
        #expect(jsonl.stdout.hasPrefix("{\"id\":\"\(acked)\",\"received_at\":"))

        // In UTC the same days are eight hours later: the first event is outside, the one after is inside.
        let utc = try Self.both(spool, ["export", "--since", "2026-11-01", "--until", "2026-11-30"], environment: ["TZ": "UTC"])
        #expect(!utc.stdout.contains(first) && utc.stdout.contains(after))
    }

    @Test func exportRefusesMalformedOrEmptyWindows() throws {
        let spool = try TestSpool()
        for (since, until) in [("2026-11", "2026-11-30"), ("2026-11-01", "2026-02-30"), ("yesterday", "2026-11-30"), ("2026-11-01", "7d")] {
            let run = try payhook("queue", "export", "--spool", spool.root, "--since", since, "--until", until)
            #expect(run.status == 2, "\(since) \(until)")
            #expect(run.stderr.contains("must be a date (2026-11-01) or an RFC 3339 time"))
        }
        let backwards = try payhook("queue", "export", "--spool", spool.root, "--since", "2026-11-02", "--until", "2026-11-01")
        #expect(backwards.status == 2)
        #expect(backwards.stderr.contains("--until \"2026-11-01\" ends before --since \"2026-11-02\" starts"))
        #expect(try payhook("queue", "export", "--spool", spool.root, "--since", "2026-11-01").status == 2)
        #expect(try payhook("queue", "export", "--spool", spool.root, "--since", "2026-11-01", "--until", "2026-11-01", "--format", "xlsx").status == 2)
        let empty = try payhook("queue", "export", "--spool", spool.root, "--since", "2026-11-01", "--until", "2026-11-01")
        #expect(empty.status == 0)
        #expect(empty.stdout == "id,received_at,source,tenant,order_ref,amount_fen,currency,status,state\r\n")
    }
}
