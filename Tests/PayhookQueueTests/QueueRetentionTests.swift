import Foundation
import PayhookQueue
import PayhookStore
import Testing

/// `gc` and the server's side of retention: conflict copies in conflicts/ pruned by the ledger age, and the
/// ledger retention the server records in `.retention` as the default and the minimum.
@Suite(.timeLimit(.minutes(1)))
struct QueueRetentionTests {
    static let day: Double = 86400

    /// An acknowledged event whose ledger entry is `days` old; returns its id.
    static func acknowledged(_ spool: TestSpool, _ queue: QueueDirectory, days: Double) throws -> String {
        let id = try spool.add()
        _ = try queue.take()
        try queue.ack(id)
        try spool.age("ids/\(id)", by: days * day)
        return id
    }

    // MARK: - conflicts/

    @Test func gcPrunesConflictCopiesOlderThanTheLedgerAgeOldestFirst() throws {
        let spool = try TestSpool()
        let queue = try QueueDirectory(spool.root)
        let id = spool.makeID()
        let oldest = "\(id).1764988490123.json"
        let old = "\(id).1765074890123.json"
        let young = "\(id).1765593290123.json"
        for (name, days) in [(oldest, 9.0), (old, 8.0), (young, 2.0)] {
            try spool.write("conflicts/\(name)", TestSpool.eventJSON(id: id, amount: 1))
            try spool.age("conflicts/\(name)", by: days * Self.day)
        }
        // Not regular files, so not the server's copies: left alone however old.
        let outside = spool.base + "/outside.json"
        try "outside".write(toFile: outside, atomically: false, encoding: .utf8)
        try spool.symlink("conflicts/\(id).link.json", to: outside)
        try spool.fifo("conflicts/\(id).fifo.json")
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -30 * Self.day)], ofItemAtPath: outside)

        var options = QueueGCOptions()
        options.dryRun = true
        let dry = try queue.gc(options)
        #expect(dry.removed.map(\.path) == ["conflicts/\(oldest)", "conflicts/\(old)"])
        #expect(dry.removed.first?.reason.hasPrefix("conflict copy written ") == true)
        #expect(dry.removed.first?.reason.hasSuffix("(9d ago)") == true, "\(dry.removed)")
        #expect(spool.list("conflicts").count == 5)

        options.dryRun = false
        options.limit = 1
        let first = try queue.gc(options)
        #expect(first.removed.map(\.path) == ["conflicts/\(oldest)"])
        #expect(first.limited)
        options.limit = nil
        #expect(try queue.gc(options).removed.map(\.path) == ["conflicts/\(old)"])
        #expect(spool.list("conflicts") == ["\(id).fifo.json", "\(id).link.json", young].sorted())
        #expect(try String(contentsOfFile: outside, encoding: .utf8) == "outside")

        // The same age as the ledger: a shorter one takes the young copy too.
        options.ledgerAge = Self.day
        #expect(try queue.gc(options).removed.map(\.path) == ["conflicts/\(young)"])
    }

    @Test func gcCountsConflictCopiesInItsSummary() throws {
        let spool = try TestSpool()
        let queue = try QueueDirectory(spool.root)
        let ledger = try Self.acknowledged(spool, queue, days: 8)
        let copy = "\(spool.makeID()).1.json"
        try spool.write("conflicts/\(copy)", "{}")
        try spool.age("conflicts/\(copy)", by: 8 * Self.day)

        let dry = try payhook("queue", "gc", "--spool", spool.root, "--dry-run", "--limit", "5")
        #expect(dry.status == 0)
        #expect(dry.stdout.contains("would remove conflicts/\(copy): conflict copy written "))
        #expect(dry.stdout.hasSuffix("would remove 2 files (1 ledger entry, 1 conflict copy, 0 in tmp/, 0 queue sidecars)\n"))
        #expect(spool.list("conflicts") == [copy])

        let limited = try payhook("queue", "gc", "--spool", spool.root, "--limit", "1")
        #expect(limited.status == 0)
        #expect(limited.stdout.hasPrefix("removed ids/\(ledger): ledger entry written "))
        #expect(limited.stdout.hasSuffix(
            "removed 1 file (1 ledger entry, 0 conflict copies, 0 in tmp/, 0 queue sidecars); stopped at --limit 1, run again for more\n"))
        #expect(spool.list("ids").isEmpty)
        #expect(spool.list("conflicts") == [copy])
        let rest = try payhook("queue", "gc", "--spool", spool.root)
        #expect(rest.stdout.hasSuffix("removed 1 file (0 ledger entries, 1 conflict copy, 0 in tmp/, 0 queue sidecars)\n"))
        #expect(spool.list("conflicts").isEmpty)
    }

    // MARK: - .retention

    @Test func theRecordedRetentionIsTheDefaultLedgerAge() throws {
        let spool = try TestSpool()
        try spool.write(".retention", "1209600\n")   // 14 days
        let queue = try QueueDirectory(spool.root)
        #expect(try queue.serverRetention() == 14 * Self.day)
        let kept = try Self.acknowledged(spool, queue, days: 8)
        let pruned = try Self.acknowledged(spool, queue, days: 15)
        let report = try queue.gc(QueueGCOptions())
        #expect(report.ledgerAge == 14 * Self.day)
        #expect(report.serverRetention == 14 * Self.day)
        #expect(report.removed.map(\.path) == ["ids/\(pruned)"])
        #expect(spool.list("ids") == [kept])

        // Longer is fine; shorter is refused and removes nothing.
        var longer = QueueGCOptions()
        longer.ledgerAge = 30 * Self.day
        #expect(try queue.gc(longer).removed.isEmpty)
        var shorter = QueueGCOptions()
        shorter.ledgerAge = 7 * Self.day
        #expect(throws: QueueError(
            .invalidArgument,
            "a ledger age of 7d would prune ledger entries the server still needs to recognise replays; the server "
                + "runs with a retention of 14d (config ledger_retention_days), recorded in \(spool.root)/.retention"
        )) {
            _ = try queue.gc(shorter)
        }
        #expect(spool.list("ids") == [kept])
    }

    @Test func aMalformedRetentionIsAnErrorNotIgnored() throws {
        let malformed = ["604800", "7d\n", "604800\n\n", " 604800\n", "+604800\n", "0\n", "", "\n", "99999999999999999999\n"]
        for text in malformed {
            let spool = try TestSpool()
            try spool.write(".retention", text)
            let queue = try QueueDirectory(spool.root)
            let old = try Self.acknowledged(spool, queue, days: 30)
            #expect(throws: QueueError.self, "\(text.debugDescription)") { _ = try queue.gc(QueueGCOptions()) }
            do {
                _ = try queue.gc(QueueGCOptions())
            } catch {
                #expect(error.kind == .malformedSpoolFile, "\(text.debugDescription)")
                #expect(error.message.hasPrefix("\(spool.root)/.retention must hold the server's ledger retention"), "\(error)")
            }
            #expect(spool.list("ids") == [old])
        }
    }

    @Test func aRetentionThatIsNotARegularFileIsRefusedWithoutFollowingOrBlocking() throws {
        let spool = try TestSpool()
        let outside = spool.base + "/retention"
        try "60\n".write(toFile: outside, atomically: false, encoding: .utf8)
        try spool.symlink(".retention", to: outside)
        let queue = try QueueDirectory(spool.root)
        let old = try Self.acknowledged(spool, queue, days: 30)
        #expect(throws: QueueError(
            .malformedSpoolFile,
            "\(spool.root)/.retention cannot be the server's recorded ledger retention: it is a symbolic link, not a regular file"
        )) {
            _ = try queue.gc(QueueGCOptions())
        }
        unlink(spool.path(".retention"))
        try spool.fifo(".retention")
        let run = try payhook("queue", "gc", "--spool", spool.root, within: 10)
        #expect(run.status == 1)
        #expect(run.stderr == "error: \(spool.root)/.retention cannot be the server's recorded ledger retention: it is a named pipe (FIFO), not a regular file\n")
        #expect(spool.list("ids") == [old])
    }

    @Test func theCommandLineRefusesAShorterOlderThanInOneSentence() throws {
        let spool = try TestSpool()
        try spool.write(".retention", "604800\n")
        let queue = try QueueDirectory(spool.root)
        let recent = try Self.acknowledged(spool, queue, days: 3)
        let old = try Self.acknowledged(spool, queue, days: 8)

        let short = try payhook("queue", "gc", "--spool", spool.root, "--older-than", "2d")
        #expect(short.status == 1)
        #expect(short.stdout.isEmpty)
        #expect(short.stderr == "error: --older-than 2d would prune ledger entries the server still needs to recognise replays; "
            + "the server runs with a retention of 7d (config ledger_retention_days), recorded in \(spool.root)/.retention\n")
        #expect(spool.list("ids") == [old, recent].sorted())

        let byDefault = try payhook("queue", "gc", "--spool", spool.root)
        #expect(byDefault.status == 0)
        #expect(byDefault.stdout.hasSuffix("removed 1 file (1 ledger entry, 0 conflict copies, 0 in tmp/, 0 queue sidecars)\n"))
        #expect(spool.list("ids") == [recent])

        try spool.write(".retention", "259200\n")   // 3 days: the server was reconfigured
        let longer = try payhook("queue", "gc", "--spool", spool.root, "--older-than", "2d12h")
        #expect(longer.status == 1)
        let shorterStill = try payhook("queue", "gc", "--spool", spool.root, "--older-than", "1d", "--dry-run")
        #expect(shorterStill.status == 1)
        let enough = try payhook("queue", "gc", "--spool", spool.root, "--older-than", "3d", "--dry-run")
        #expect(enough.status == 0)
        #expect(enough.stderr.isEmpty)

        try spool.write(".retention", "seven days\n")
        let malformed = try payhook("queue", "gc", "--spool", spool.root, "--older-than", "30d")
        #expect(malformed.status == 1)
        #expect(malformed.stderr == "error: \(spool.root)/.retention must hold the server's ledger retention as a positive whole "
            + "number of seconds and a newline (e.g. \"604800\\n\"); it holds \"seven days?\"\n")
    }
}
