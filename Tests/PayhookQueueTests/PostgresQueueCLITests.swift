import Foundation
import PayhookCore
import PayhookPostgres
import PayhookTestSupport
import Testing

/// Every `payhook queue` command against PostgreSQL through the real binary, with `--config` naming the database
/// through `url_env`. One test at a time: they time wake-ups and kill processes.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct PostgresQueueCLITests {
    /// A database with its config file; the URL is only in the children's environment.
    struct Setup {
        let database: TestDatabase
        let folder: TemporaryDirectory
        let config: String

        init() throws {
            database = try TestDatabase()
            folder = try TemporaryDirectory(prefix: "payhook-pg-cli")
            config = try database.config(in: folder)
        }

        /// The children's event files go into the test's folder (TMPDIR), removed with it: a killed consumer's too.
        /// TZ=UTC: the tables show local times, which the expectations give in UTC.
        var environment: [String: String] { database.environment.merging(["TMPDIR": folder.path, "TZ": "UTC"]) { $1 } }

        func run(_ arguments: String..., within seconds: Double = 30) throws -> RunResult {
            try child(arguments).finish(within: seconds)
        }

        func child(_ arguments: [String]) throws -> Child {
            try Child(try payhookBinary(), ["queue"] + arguments + ["--config", config], environment: environment)
        }
    }

    @Test func listShowTakeAckNackRequeueReviveWithAConfig() throws {
        let setup = try Setup()
        let ids = try setup.database.addMany(2)
        let list = try setup.run("list")
        #expect(list.status == 0, "\(list)")
        let lines = list.stdout.split(separator: "\n")
        #expect(lines.count == 3 && lines[1].hasPrefix("new ") && lines[1].hasSuffix(ids[0]))
        let json = try setup.run("list", "--json", "--location", "new")
        let items = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]])
        #expect(items.map { $0["id"] as? String } == ids)
        let shown = try setup.run("show", "--json", ids[0])
        #expect(shown.status == 0)
        #expect(shown.stdout.hasSuffix("}\n"))
        #expect(shown.stdout.trimmingCharacters(in: .newlines)
            == (try setup.database.sql("SELECT convert_from(event, 'UTF8') FROM payhook_ledger WHERE id = '\\x\(ids[0])'")))
        #expect(try setup.run("show", ids[0]).stdout.contains("location        new/ (waiting)"))

        let take = try setup.run("take", "--format", "id")
        #expect(take.stdout == ids[0] + "\n")
        let nack = try setup.run("nack", "--reason", "later", ids[0])
        #expect(nack.status == 0)
        #expect(nack.stdout == "returned \(ids[0]) to new/ (1 failed attempt so far)\n")
        let nackAgain = try setup.run("nack", ids[0])
        #expect(nackAgain.status == 1)
        #expect(nackAgain.stderr == "error: event \(ids[0]) is waiting (new) and was not taken; nothing to return\n")

        // nack delays the retry by a second: the next take gets the other event.
        let path = try setup.run("take", "--format", "path")
        #expect(path.status == 0)
        let file = path.stdout.trimmingCharacters(in: .newlines)
        #expect(FileManager.default.contents(atPath: file).map { Array($0) } == Array((try setup.run("show", "--json", ids[1])).stdout.utf8))
        #expect(file.hasPrefix(setup.folder.path + "/payhook-queue-"))
        // An operator's ack of a taken event, from another process: no lease of its own needed.
        let ack = try setup.run("ack", ids[1])
        #expect(ack.stdout == "acknowledged \(ids[1])\n")
        #expect(try setup.database.sql("SELECT count(*) FROM payhook_ledger WHERE acked_at IS NOT NULL") == "1")
        let ackAgain = try setup.run("ack", ids[1])
        #expect(ackAgain.status == 1)
        #expect(ackAgain.stderr.contains("no event \(ids[1]) waiting, taken or dead in the database (payhook_queue)"))

        // requeue by age, then revive refuses what is not dead.
        usleep(1_100_000)
        #expect(try setup.run("take", "--format", "id").stdout == ids[0] + "\n")
        #expect(try setup.run("requeue", "--older-than", "1h").stdout == "requeued 0 events\n")
        usleep(50_000)
        let stale = try setup.run("requeue", "--older-than", "10ms")
        #expect(stale.stdout.hasPrefix("returned \(ids[0]) to new/ after "))
        #expect(stale.stdout.hasSuffix("(2 failed attempts so far)\nrequeued 1 event\n"))
        let notDead = try setup.run("revive", ids[0])
        #expect(notDead.status == 1)
        #expect(notDead.stderr == "error: event \(ids[0]) is already waiting (new)\n")
        try setup.database.sql("UPDATE payhook_queue SET state = 'dead', dead_at = now()")
        let revive = try setup.run("revive", ids[0])
        #expect(revive.status == 0)
        #expect(try setup.database.sql("SELECT state || attempts FROM payhook_queue") == "new0")

        // Nothing names the database's URL.
        for run in [list, take, nack, nackAgain, ack, ackAgain, stale, notDead, revive] {
            #expect(!run.stdout.contains(setup.database.name) && !run.stderr.contains(setup.database.name))
        }
    }

    @Test func spoolAndConfigTogetherAreAUsageErrorAndAnUnreachableDatabaseIsExitOne() throws {
        let setup = try Setup()
        let both = try Child(try payhookBinary(), ["queue", "list", "--spool", "/tmp", "--config", setup.config]).finish()
        #expect(both.status == 2)
        let down = try Child(
            try payhookBinary(), ["queue", "list", "--config", setup.config],
            environment: setup.database.environment.merging([
                "PAYHOOK_TEST_DATABASE_URL": "host=/nonexistent-payhook port=1 user=x password=hunter2 dbname=x"
            ]) { $1 }
        ).finish()
        #expect(down.status == 1)
        #expect(down.stderr.hasPrefix("error: cannot reach the database: "))
        #expect(!down.stderr.contains("hunter2"))
        // $PAYHOOK_CONFIG stands for --config.
        let byEnvironment = try Child(
            try payhookBinary(), ["queue", "list"],
            environment: setup.database.environment.merging(["PAYHOOK_CONFIG": setup.config]) { $1 }
        ).finish()
        #expect(byEnvironment.status == 0, "\(byEnvironment)")
        #expect(byEnvironment.stdout == "no events in new/, cur/ or dead/ of the database (payhook_queue)\n")
    }

    @Test func consumeAcknowledgesAndDeadLettersThroughTheDatabase() throws {
        let setup = try Setup()
        let good = try setup.database.addMany(2, tag: "a")
        let poison = try setup.database.add(TestDatabase.event(id: String(repeating: "b", count: 64), orderRef: "poison")).id
        let command = "[ -z \"${PAYHOOK_SPOOL+x}\" ] || exit 8; cmp -s - \"$PAYHOOK_EVENT_PATH\" || exit 9; "
            + "if grep -q poison \"$PAYHOOK_EVENT_PATH\"; then echo no >&2; exit 4; fi"
        let run = try setup.run("consume", "--drain", "--exec", command, "--max-attempts", "2", "--backoff", "10ms")
        #expect(run.status == 0, "\(run)")
        let list = try setup.run("list", "--json")
        let items = try #require(try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]])
        #expect(items.map { $0["id"] as? String } == [poison])
        #expect(items.first?["location"] as? String == "dead")
        #expect(items.first?["attempts"] as? Int == 2)
        #expect((items.first?["last_error"] as? [String: Any])?["exit_status"] as? Int == 4)
        #expect(try setup.database.sql("SELECT count(*) FROM payhook_ledger WHERE acked_at IS NOT NULL") == "\(good.count)")
    }

    @Test func gcKeepsTheRecordedRetentionAsItsFloor() throws {
        let setup = try Setup()
        let id = try setup.database.addMany(1)[0]
        try setup.database.store.recordRetention(seconds: 8 * 86400)
        #expect(try setup.run("take", "--format", "id").status == 0)
        #expect(try setup.run("ack", id).status == 0)
        let short = try setup.run("gc", "--older-than", "1h")
        #expect(short.status == 1)
        #expect(short.stderr.contains("the server runs with a retention of 8d"))
        #expect(short.stderr.contains("payhook_settings (ledger_retention_seconds)"))
        #expect(try setup.run("gc").stdout.hasPrefix("removed 0 files"))

        try setup.database.sql("UPDATE payhook_ledger SET acked_at = now() - interval '9 days'")
        let dry = try setup.run("gc", "--dry-run")
        #expect(dry.status == 0)
        #expect(dry.stdout.contains("would remove payhook_ledger/\(id): ledger entry acknowledged "))
        #expect(try setup.database.sql("SELECT count(*) FROM payhook_ledger") == "1")
        let real = try setup.run("gc")
        #expect(real.stdout.hasSuffix("removed 1 file (1 ledger entry, 0 conflict copies, 0 in tmp/, 0 queue sidecars)\n"), "\(real)")
        #expect(try setup.database.sql("SELECT count(*) FROM payhook_ledger") == "0")
    }

    @Test func takeWaitReturnsPromptlyWhenAnEventIsStored() throws {
        let setup = try Setup()
        let waiter = try setup.child(["take", "--wait", "--timeout", "20s", "--format", "id"])
        usleep(800_000)
        #expect(waiter.process.isRunning)
        let id = try setup.database.addMany(1)[0]
        let stored = Date()
        let run = try waiter.finish(within: 10)
        #expect(run.status == 0, "\(run)")
        #expect(run.stdout == id + "\n")
        #expect(Date().timeIntervalSince(stored) < 2)
    }

    @Test func twoConsumeProcessesProcessEveryEventOnce() throws {
        let setup = try Setup()
        let ids = try setup.database.addMany(60)
        let log = setup.folder.file("processed.log")
        let command = "echo \"$PAYHOOK_EVENT_ID\" >> '\(log)'"
        let consumers = try (0..<2).map { _ in
            try setup.child(["consume", "--drain", "--concurrency", "3", "--exec", command])
        }
        for consumer in consumers {
            let run = try consumer.finish(within: 60)
            #expect(run.status == 0, "\(run)")
        }
        let processed = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        #expect(processed.count == ids.count)
        #expect(Set(processed) == Set(ids))
        #expect(try setup.database.sql("SELECT count(*) FROM payhook_queue") == "0")
    }

    @Test func aKilledConsumersEventIsRetriedByAnotherAfterItsLeaseExpiresNotBefore() throws {
        let setup = try Setup()
        let id = try setup.database.addMany(1)[0]
        let pidFile = setup.folder.file("command.pid")
        let attempts = setup.folder.file("attempts")
        let first = try setup.child([
            "consume", "--lease", "2s", "--exec", "echo $$ > '\(pidFile)'; exec sleep 60",
        ])
        #expect(eventually(within: 15) { FileManager.default.fileExists(atPath: pidFile) })
        kill(first.pid, SIGKILL)
        _ = try? first.finish(within: 5)
        if let text = try? String(contentsOfFile: pidFile, encoding: .utf8), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
            kill(pid, SIGKILL)
        }
        let killed = Date()
        let command = "echo \"$PAYHOOK_EVENT_ATTEMPT\" >> '\(attempts)'"
        // At once: the lease is still the dead worker's.
        let early = try setup.run("consume", "--drain", "--lease", "2s", "--exec", command)
        #expect(early.status == 0)
        #expect(!FileManager.default.fileExists(atPath: attempts))
        #expect(try setup.database.sql("SELECT state FROM payhook_queue") == "cur")
        // Once it has expired (at most a lease after the last renewal), another consumer retries it.
        #expect(eventually(within: 10) {
            (try? setup.database.sql("SELECT lease_until < now() FROM payhook_queue")) == "t"
        })
        #expect(Date().timeIntervalSince(killed) > 1)
        let late = try setup.run("consume", "--drain", "--lease", "2s", "--exec", command)
        #expect(late.status == 0, "\(late)")
        #expect((try? String(contentsOfFile: attempts, encoding: .utf8)) == "2\n")
        #expect(try setup.database.sql("SELECT count(*) FROM payhook_queue") == "0")
        #expect(try setup.database.sql("SELECT count(*) FROM payhook_ledger WHERE acked_at IS NOT NULL AND id = '\\x\(id)'") == "1")
    }
}
