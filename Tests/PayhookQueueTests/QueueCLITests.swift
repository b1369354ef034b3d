import Foundation
import PayhookQueue
import PayhookTestSupport
import Testing

/// The `payhook queue` commands as shell users and scripts see them: output formats and exit codes. One test at
/// a time: `take --wait` is timed and its CPU ticks counted.
@Suite(.serialized, .timeLimit(.minutes(1)))
struct QueueCLITests {
    @Test func listPrintsATableOrJSONWithTheLocation() throws {
        let spool = try TestSpool()
        let first = try spool.add(tenant: "demo", receivedAt: "2026-11-22T01:00:00.000Z")
        let second = try spool.add(tenant: "other", receivedAt: "2026-11-22T02:00:00.000Z")
        try payhook("queue", "take", "--spool", spool.root, "--format", "id")

        let table = try payhook("queue", "list", "--spool", spool.root)
        #expect(table.status == 0)
        let lines = table.stdout.split(separator: "\n")
        try #require(lines.count == 3, "\(table)")
        #expect(lines[0].hasPrefix("LOCATION  RECEIVED_AT"))
        #expect(lines[1].hasPrefix("cur ") && lines[1].hasSuffix(first))
        #expect(lines[2].hasPrefix("new ") && lines[2].hasSuffix(second))

        let json = try payhook("queue", "list", "--spool", spool.root, "--json", "--tenant", "other")
        #expect(json.status == 0)
        let items = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]])
        #expect(items.count == 1)
        #expect(items.first?["id"] as? String == second)
        #expect(items.first?["location"] as? String == "new")
        #expect(items.first?["path"] as? String == spool.path("new/\(second).json"))

        let since = try payhook("queue", "list", "--spool", spool.root, "--json", "--since", "2026-11-22T01:30:00Z", "--location", "new")
        #expect(try (JSONSerialization.jsonObject(with: Data(since.stdout.utf8)) as? [[String: Any]])?.count == 1)
        let none = try payhook("queue", "list", "--spool", spool.root, "--status", "CLOSED")
        #expect(none.status == 0)
        #expect(none.stdout == "no events in new/, cur/ or dead/ of \(spool.root) matching the filters\n")
    }

    @Test func badFilterValuesAreUsageErrors() throws {
        let spool = try TestSpool()
        let since = try payhook("queue", "list", "--spool", spool.root, "--since", "yesterday")
        #expect(since.status == 2)
        #expect(since.stderr.contains("--since must be a local date (2026-11-22) or date-time"), "\(since.stderr)")
        #expect(try payhook("queue", "list", "--spool", spool.root, "--location", "tmp").status == 2)
        #expect(try payhook("queue", "requeue", "--spool", spool.root, "--older-than", "soon").status == 2)
        #expect(try payhook("queue", "gc", "--spool", spool.root, "--tmp-older-than", "5s").status == 2)
        #expect(try payhook("queue", "list").status == 2)
    }

    @Test func showPrintsPrettyOrTheExactFile() throws {
        let spool = try TestSpool()
        let id = try spool.add(orderRef: "demo-order-1001", amount: 100)
        let pretty = try payhook("queue", "show", "--spool", spool.root, id)
        #expect(pretty.status == 0)
        #expect(pretty.stdout.contains("location        new/ (waiting)"))
        #expect(pretty.stdout.contains("order_ref       demo-order-1001"))
        #expect(pretty.stdout.contains("attempts        0 failed attempts"))
        let raw = try payhook("queue", "show", "--spool", spool.root, "--json", id)
        #expect(raw.status == 0)
        #expect(raw.stdout == (try spool.read("new/\(id).json")))
    }

    @Test func aMalformedIDIsAUsageErrorForEveryCommand() throws {
        let spool = try TestSpool()
        for command in ["show", "ack", "nack", "revive"] {
            for bad in ["abc", String(repeating: "A", count: 64), String(repeating: "a", count: 63) + "/", "../../etc/passwd"] {
                let run = try payhook("queue", command, "--spool", spool.root, bad)
                #expect(run.status == 2, "\(command) \(bad)")
                // show also takes a prefix of 8 or more, and says which rule the text breaks.
                let why = command != "show" ? "ID must be an event id, 64 lowercase hex characters"
                    : bad == "abc" ? "is too short: an id prefix needs at least 8" : "is not lowercase hex"
                #expect(run.stderr.contains(why), "\(command) \(bad)")
            }
        }
    }

    @Test func anUnknownIDIsExitOneWithOneSentence() throws {
        let spool = try TestSpool()
        let id = spool.makeID()
        for command in ["show", "ack", "nack", "revive"] {
            let run = try payhook("queue", command, "--spool", spool.root, id)
            #expect(run.status == 1, "\(command)")
            #expect(run.stderr == "error: no event \(id) in new/, cur/ or dead/ of spool \(spool.root)\n", "\(command)")
        }
    }

    @Test func aMissingSpoolIsExitOneForEveryCommand() throws {
        let spool = try TestSpool(create: false)
        let id = spool.makeID()
        let commands: [[String]] = [
            ["list"], ["show", id], ["take"], ["take", "--wait", "--timeout", "1s"], ["ack", id], ["nack", id],
            ["requeue", "--older-than", "1h"], ["revive", id], ["consume", "--exec", "true"], ["gc"],
        ]
        for command in commands {
            let run = try Child(try payhookBinary(), ["queue"] + command + ["--spool", spool.root]).finish()
            #expect(run.status == 1, "\(command)")
            #expect(run.stderr == "error: spool directory \(spool.root) does not exist\n", "\(command)")
        }
        #expect(!FileManager.default.fileExists(atPath: spool.root))
    }

    @Test func aCorruptEventIsReportedMovedAndExitOne() throws {
        let spool = try TestSpool()
        let id = spool.makeID()
        try spool.publish(id: id, bytes: Array("{\"id\": \"truncated".utf8))
        let show = try payhook("queue", "show", "--spool", spool.root, id)
        #expect(show.status == 1)
        #expect(show.stderr == "error: new/\(id).json is not a valid event (it is not valid JSON); moved to corrupt/\(id).json\n")
        #expect(spool.list("corrupt") == ["\(id).json"])

        let other = spool.makeID()
        try spool.write("new/\(other).json", "not json either")
        let list = try payhook("queue", "list", "--spool", spool.root)
        #expect(list.status == 1)
        #expect(list.stderr.contains("new/\(other).json is not a valid event (it is not valid JSON); moved to corrupt/\(other).json"))
        #expect(spool.list("corrupt") == ["\(id).json", "\(other).json"].sorted())
    }

    @Test func takeAckAndNackFromTheShell() throws {
        let spool = try TestSpool()
        let id = try spool.add()
        let take = try payhook("queue", "take", "--spool", spool.root)
        #expect(take.status == 0)
        #expect(take.stdout == (try spool.read("cur/\(id).json")))
        let again = try payhook("queue", "take", "--spool", spool.root)
        #expect(again.status == 1)
        #expect(again.stderr == "error: no event waiting in \(spool.root)/new/\n")
        #expect(try payhook("queue", "take", "--spool", spool.root, "--allow-empty").status == 0)

        let nack = try payhook("queue", "nack", "--spool", spool.root, "--reason", "try later", id)
        #expect(nack.status == 0)
        #expect(nack.stdout == "returned \(id) to new/ (1 failed attempt so far)\n")
        let nackAgain = try payhook("queue", "nack", "--spool", spool.root, id)
        #expect(nackAgain.status == 1)
        #expect(nackAgain.stderr == "error: event \(id) is waiting in new/ and was not taken; nothing to return\n")

        let path = try payhook("queue", "take", "--spool", spool.root, "--format", "path")
        #expect(path.stdout == spool.path("cur/\(id).json") + "\n")
        let ack = try payhook("queue", "ack", "--spool", spool.root, id)
        #expect(ack.status == 0)
        #expect(ack.stdout == "acknowledged \(id)\n")
        #expect(spool.list("cur").isEmpty)
        #expect(spool.list("ids") == [id])
    }

    @Test func takeWaitBlocksOnInotifyWithoutSpinningAndWakesOnArrival() throws {
        let spool = try TestSpool()
        let waiter = try Child(try payhookBinary(), ["queue", "take", "--spool", spool.root, "--wait", "--timeout", "20s", "--format", "id"])
        usleep(300_000)
        let before = try #require(cpuTicks(waiter.pid))
        usleep(700_000)
        let after = try #require(cpuTicks(waiter.pid))
        // A polling loop would burn CPU; an inotify wait uses none (ticks are 10 ms).
        #expect(after - before <= 2)
        #expect(waiter.process.isRunning)

        let id = try spool.add()
        let arrived = Date()
        let run = try waiter.finish(within: 10)
        #expect(run.status == 0)
        #expect(run.stdout == id + "\n")
        #expect(Date().timeIntervalSince(arrived) < 5)
    }

    @Test func takeWaitTimesOutOrStopsOnSIGTERMWithoutClaiming() throws {
        let spool = try TestSpool()
        let start = Date()
        let timeout = try payhook("queue", "take", "--spool", spool.root, "--timeout", "300ms")
        #expect(timeout.status == 1)
        #expect(timeout.stderr == "error: no event arrived in \(spool.root)/new/ within 300ms\n")
        #expect(Date().timeIntervalSince(start) >= 0.3)

        let waiter = try Child(try payhookBinary(), ["queue", "take", "--spool", spool.root, "--wait"])
        usleep(300_000)
        kill(waiter.pid, SIGTERM)
        let stopped = try waiter.finish(within: 10)
        #expect(stopped.status == 1)
        #expect(stopped.stderr.contains("stopped by a signal before an event arrived"))
    }

    @Test func requeueAndReviveFromTheShell() throws {
        let spool = try TestSpool()
        let id = try spool.add()
        try payhook("queue", "take", "--spool", spool.root)
        let fresh = try payhook("queue", "requeue", "--spool", spool.root, "--older-than", "1h")
        #expect(fresh.status == 0)
        #expect(fresh.stdout == "requeued 0 events\n")
        usleep(50_000)
        let stale = try payhook("queue", "requeue", "--spool", spool.root, "--older-than", "10ms")
        #expect(stale.status == 0)
        #expect(stale.stdout.hasPrefix("returned \(id) to new/ after "))
        #expect(stale.stdout.hasSuffix("(1 failed attempt so far)\nrequeued 1 event\n"))
        #expect(spool.list("new") == ["\(id).json"])

        let notDead = try payhook("queue", "revive", "--spool", spool.root, id)
        #expect(notDead.status == 1)
        #expect(notDead.stderr == "error: event \(id) is already waiting in new/\n")
    }

    @Test func gcSaysWhatItRemovedAndDryRunRemovesNothing() throws {
        let spool = try TestSpool()
        let id = try spool.add()
        try payhook("queue", "take", "--spool", spool.root)
        try payhook("queue", "ack", "--spool", spool.root, id)
        try spool.age("ids/\(id)", by: 8 * 86400)
        try spool.write("tmp/crashed.1.2.3", "partial")
        try spool.age("tmp/crashed.1.2.3", by: 3 * 3600)
        try spool.write("tmp/writing.1.2.4", "in progress")
        try spool.write(".lock", "4242\n")
        let copy = "\(id).1763778890123.json"
        try spool.write("conflicts/\(copy)", "{}")
        try spool.age("conflicts/\(copy)", by: 8 * 86400)

        let dry = try payhook("queue", "gc", "--spool", spool.root, "--dry-run")
        #expect(dry.status == 0)
        #expect(dry.stdout.contains("would remove ids/\(id): ledger entry written "))
        #expect(dry.stdout.contains("would remove tmp/crashed.1.2.3: temporary file 3h"))
        #expect(dry.stdout.contains("would remove conflicts/\(copy): conflict copy written "))
        #expect(dry.stdout.hasSuffix("would remove 3 files (1 ledger entry, 1 conflict copy, 1 in tmp/, 0 queue sidecars)\n"))
        #expect(spool.list("conflicts") == [copy])
        #expect(spool.list("ids") == [id])

        let run = try payhook("queue", "gc", "--spool", spool.root)
        #expect(run.status == 0)
        #expect(run.stdout.hasSuffix("removed 3 files (1 ledger entry, 1 conflict copy, 1 in tmp/, 0 queue sidecars)\n"))
        #expect(spool.list("ids").isEmpty)
        #expect(spool.list("conflicts").isEmpty)
        #expect(spool.list("tmp") == ["writing.1.2.4"])
        #expect(try spool.read(".lock") == "4242\n")

        let short = try payhook("queue", "gc", "--spool", spool.root, "--older-than", "1h")
        #expect(short.status == 0)
        #expect(short.stderr.contains("shorter than WeChat Pay's 24h retry window"))
    }
}
