import Foundation
import PayhookQueue
import PayhookStore
import PayhookTestSupport
import Testing

/// The queue operations in-process: list/show, take order and claiming, ack/nack/requeue/revive, corrupt
/// files, retention (gc) and the errors for bad input.
@Suite(.timeLimit(.minutes(1)))
struct QueueDirectoryTests {
    // MARK: - Opening

    @Test func aMissingSpoolIsAClearError() throws {
        let spool = try TestSpool(create: false)
        #expect {
            _ = try QueueDirectory(spool.root)
        } throws: { error in
            let error = error as? QueueError
            return error?.kind == .noSpool && error?.message == "spool directory \(spool.root) does not exist"
        }
    }

    @Test func aFolderWithoutNewAndCurIsNotASpool() throws {
        let spool = try TestSpool(create: false)
        try FileManager.default.createDirectory(atPath: spool.root, withIntermediateDirectories: false)
        #expect {
            _ = try QueueDirectory(spool.root + "/")
        } throws: { error in
            (error as? QueueError)?.message == "\(spool.root) is not a payhook spool: it has no new/ folder"
        }
    }

    // MARK: - list and show

    @Test func listCoversNewCurAndDeadOldestFirstWithTheirLocation() throws {
        let spool = try TestSpool()
        let late = try spool.add(id: spool.makeID("c"), receivedAt: "2026-11-22T03:00:00.000Z")
        let early = try spool.add(id: spool.makeID("b"), receivedAt: "2026-11-22T01:00:00.000Z")
        let middle = try spool.add(id: spool.makeID("a"), receivedAt: "2026-11-22T02:00:00.000Z")
        let queue = try QueueDirectory(spool.root)
        #expect(try queue.take().entry?.id == early)
        #expect(try queue.take().entry?.id == middle)
        try queue.deadLetter(middle, record: QueueAttemptRecord(id: middle, attempts: 3, lastError: QueueFailure(reason: "exit status 1")))

        let listing = try queue.list()
        #expect(listing.entries.map(\.id) == [early, middle, late])
        #expect(listing.entries.map(\.location) == [.cur, .dead, .new])
        #expect(listing.entries[1].attempts == 3)
        #expect(listing.entries[1].path == spool.path("dead/\(middle).json"))
        #expect(listing.quarantined.isEmpty)

        let table = QueueFormat.table(listing.entries)
        let lines = table.split(separator: "\n")
        try #require(lines.count == 4)
        #expect(lines[0].hasPrefix("LOCATION  RECEIVED_AT"))
        // Local time, whatever zone this process runs in (QueueReadableTests pins one through the binary).
        let received = try #require(QueueTime.parseRFC3339("2026-11-22T02:00:00.000Z"))
        #expect(lines[2].hasPrefix("dead      \(QueueTime.formatLocal(received))  unified  demo"))
        #expect(lines[2].hasSuffix(middle))

        let json = try #require(
            try JSONSerialization.jsonObject(with: Data(QueueFormat.json(listing.entries).utf8)) as? [[String: Any]])
        #expect(json.map { $0["location"] as? String } == ["cur", "dead", "new"])
        #expect(json[0]["last_error"] is NSNull)
        #expect((json[1]["last_error"] as? [String: Any])?["reason"] as? String == "exit status 1")
        #expect(json[2]["amount"] as? Int == 100)
    }

    @Test func listFiltersBySourceTenantStatusLocationAndTime() throws {
        let spool = try TestSpool()
        let a = try spool.add(source: "unified", tenant: "demo", status: "SUCCESSPAY", receivedAt: "2026-11-22T01:00:00.000Z")
        let b = try spool.add(source: "wechat.pay", tenant: "1900000109", status: "SUCCESS", receivedAt: "2026-11-22T02:00:00.000Z")
        let c = try spool.add(source: "unified", tenant: "other", status: "SUCCESSREFUND", receivedAt: "2026-11-22T03:00:00.000Z")
        let queue = try QueueDirectory(spool.root)
        func ids(_ change: (inout QueueFilter) -> Void) throws -> [String] {
            var filter = QueueFilter()
            change(&filter)
            return try queue.list(filter).entries.map(\.id)
        }
        #expect(try ids { $0.sources = ["unified"] } == [a, c])
        #expect(try ids { $0.tenants = ["1900000109"] } == [b])
        #expect(try ids { $0.statuses = ["SUCCESSPAY", "SUCCESSREFUND"] } == [a, c])
        #expect(try ids { $0.since = QueueTime.parseRFC3339("2026-11-22T02:00:00Z") } == [b, c])
        #expect(try ids { $0.until = QueueTime.parseRFC3339("2026-11-22T02:00:00Z") } == [a, b])
        #expect(try ids { $0.sources = ["unified"]; $0.since = QueueTime.parseRFC3339("2026-11-22T02:00:00Z") } == [c])
        _ = try queue.take()
        #expect(try ids { $0.locations = [.cur] } == [a])
        #expect(try ids { $0.locations = [.new] } == [b, c])
        // A duration means "that long ago": these events are from 2026-11-22, so "the last hour" holds none
        // of them unless the clock is in that hour; "the last 100 years" holds all.
        #expect(try ids { $0.since = QueueTime.parseInstant("36500d", now: Date()) } == [a, b, c])
    }

    @Test func showFindsAnEventWhereverItIsAndPrettyPrintsIt() throws {
        let spool = try TestSpool()
        let id = try spool.add(orderRef: "order\\n42", amount: 250)
        let queue = try QueueDirectory(spool.root)
        #expect(try queue.show(id).location == .new)
        _ = try queue.take()
        try queue.nack(id, reason: "db down")
        _ = try queue.take()
        let entry = try queue.show(id)
        #expect(entry.location == .cur)
        #expect(entry.attempts == 1)
        #expect(entry.event.bytes == Array(try spool.read("cur/\(id).json").utf8))
        let pretty = QueueFormat.pretty(entry)
        #expect(pretty.contains("location        cur/ (taken, not yet acknowledged)"))
        #expect(pretty.contains("amount          ¥2.50 (250 fen)"))
        // Control characters from a callback are escaped, never printed raw.
        #expect(pretty.contains("order_ref       order\\n42"))
        #expect(pretty.contains("  payTypeName   微信支付"))
        #expect(pretty.contains("last_error      nack: db down at "))
    }

    @Test func anUnknownIDSaysSoAndMentionsTheLedger() throws {
        let spool = try TestSpool()
        let id = try spool.add()
        let queue = try QueueDirectory(spool.root)
        let never = spool.makeID("d")
        #expect(throws: QueueError(.unknownEvent, "no event \(never) in new/, cur/ or dead/ of spool \(spool.root)")) {
            _ = try queue.show(never)
        }
        _ = try queue.take()
        try queue.ack(id)
        #expect {
            _ = try queue.show(id)
        } throws: { error in
            (error as? QueueError)?.message.hasSuffix("(ids/ still records it: it was stored and has been acknowledged since)") == true
        }
        #expect(throws: QueueError.self) { _ = try queue.show("not-an-id") }
    }

    // MARK: - Corrupt files

    @Test func aFileThatIsNotJSONIsMovedToCorruptNeverDeleted() throws {
        let spool = try TestSpool()
        let good = try spool.add(receivedAt: "2026-11-22T05:00:00.000Z")
        let bad = spool.makeID("b")
        try spool.publish(id: bad, bytes: Array("{ not json".utf8))
        // And one already in corrupt/ under the same name: it must survive.
        try spool.write("corrupt/\(bad).json", "earlier")
        let queue = try QueueDirectory(spool.root)

        let result = try queue.take()
        #expect(result.entry?.id == good)
        #expect(result.quarantined.count == 1)
        let moved = try #require(result.quarantined.first)
        #expect(moved.from == "new/\(bad).json")
        #expect(moved.to.hasPrefix("corrupt/\(bad).json."))
        #expect(moved.reason == "it is not valid JSON")
        #expect(try spool.read(moved.to) == "{ not json")
        #expect(try spool.read("corrupt/\(bad).json") == "earlier")
        #expect(!spool.exists("new/\(bad).json"))
    }

    @Test func showOfACorruptEventReportsAndQuarantinesIt() throws {
        let spool = try TestSpool()
        let id = spool.makeID()
        let other = spool.makeID()
        try spool.publish(id: id, bytes: Array(TestSpool.eventJSON(id: other).utf8))
        let queue = try QueueDirectory(spool.root)
        #expect(throws: QueueError(
            .corrupt,
            "new/\(id).json is not a valid event (its id \"\(other)\" does not match its file name); moved to corrupt/\(id).json"
        )) {
            _ = try queue.show(id)
        }
        #expect(spool.list("corrupt") == ["\(id).json"])
        // The server's ledger link keeps the content too: nothing is lost.
        #expect(spool.exists("ids/\(id)"))
    }

    @Test func listReportsCorruptFilesInEveryFolderAndStillListsTheRest() throws {
        let spool = try TestSpool()
        let good = try spool.add()
        let bad = spool.makeID()
        try spool.write("cur/\(bad).json", "[1, 2, 3]")
        let queue = try QueueDirectory(spool.root)
        let listing = try queue.list()
        #expect(listing.entries.map(\.id) == [good])
        #expect(listing.quarantined.map(\.description) == ["moved cur/\(bad).json to corrupt/\(bad).json: it is not a JSON object"])
    }

    // MARK: - take

    @Test func takeClaimsByRenameOldestReceivedAtFirstTiesByName() throws {
        let spool = try TestSpool()
        let second = try spool.add(id: spool.makeID("b"), receivedAt: "2026-11-22T02:00:00.000Z")
        let first = try spool.add(id: spool.makeID("a"), receivedAt: "2026-11-22T02:00:00.000Z")
        let oldest = try spool.add(id: spool.makeID("c"), receivedAt: "2026-11-21T23:59:59.999Z")
        // An offset time sorts by the instant, not by the text.
        let offset = try spool.add(id: spool.makeID("d"), receivedAt: "2026-11-22T09:30:00.000+08:00")
        let queue = try QueueDirectory(spool.root)
        let inodeBefore = try FileManager.default.attributesOfItem(atPath: spool.path("new/\(oldest).json"))[.systemFileNumber] as? Int

        let taken = try #require(try queue.take().entry)
        #expect(taken.id == oldest)
        #expect(taken.location == .cur)
        #expect(spool.list("cur") == ["\(oldest).json"])
        // The same file (a rename, not a copy), so ids/ still shares it.
        let inodeAfter = try FileManager.default.attributesOfItem(atPath: spool.path("cur/\(oldest).json"))[.systemFileNumber] as? Int
        #expect(inodeBefore == inodeAfter)
        #expect(try queue.take().entry?.id == offset)
        #expect(try queue.take().entry?.id == first)
        #expect(try queue.take().entry?.id == second)
        let empty = try queue.take()
        #expect(empty.outcome == .empty)
        #expect(empty.entry == nil)
    }

    @Test func threadsRacingOverHundredsOfEventsEachGetDistinctOnes() throws {
        let spool = try TestSpool()
        let ids = try spool.addMany(300)
        let queue = try QueueDirectory(spool.root)
        let racers = (0..<4).map { _ in
            Background {
                Result {
                    var mine: [String] = []
                    while let entry = try queue.take().entry { mine.append(entry.id) }
                    return mine
                }
            }
        }
        var taken: [String] = []
        for racer in racers { taken += try #require(racer.join(timeout: .seconds(30))).get() }
        #expect(taken.count == ids.count)
        #expect(Set(taken) == Set(ids))
        #expect(spool.list("new").isEmpty)
        #expect(spool.list("cur").count == ids.count)
    }

    @Test func takeWaitsForAnArrivalAndTimesOut() throws {
        let spool = try TestSpool()
        let queue = try QueueDirectory(spool.root)
        let start = Date()
        let timedOut = try queue.take(wait: true, timeout: 0.2)
        #expect(timedOut.outcome == .timedOut)
        #expect(Date().timeIntervalSince(start) >= 0.2)

        let id = spool.makeID()
        let writer = Thread {
            usleep(150_000)
            _ = try? spool.add(id: id)
        }
        writer.start()
        let arrived = try queue.take(wait: true, timeout: 10)
        #expect(arrived.entry?.id == id)

        let stop = try QueueStopSignal()
        let stopper = Thread {
            usleep(100_000)
            stop.trigger()
        }
        stopper.start()
        #expect(try queue.take(wait: true, timeout: 10, stop: stop).outcome == .stopped)
    }

    // MARK: - ack, nack, requeue, revive

    @Test func ackDeletesFromCurAndKeepsTheLedger() throws {
        let spool = try TestSpool()
        let id = try spool.add()
        let queue = try QueueDirectory(spool.root)
        #expect(throws: QueueError(.wrongState, "event \(id) is waiting in new/ and was not taken; nothing to acknowledge")) {
            try queue.ack(id)
        }
        _ = try queue.take()
        try queue.ack(id)
        #expect(spool.list("cur").isEmpty)
        #expect(spool.list("ids") == [id])
        #expect(throws: QueueError.self) { try queue.ack(id) }
    }

    @Test func nackReturnsToNewAndCountsAttempts() throws {
        let spool = try TestSpool()
        let id = try spool.add()
        let queue = try QueueDirectory(spool.root)
        _ = try queue.take()
        #expect(try queue.nack(id) == 1)
        #expect(spool.list("new") == ["\(id).json"])
        _ = try queue.take()
        #expect(try queue.nack(id, reason: "timeout talking to the ERP") == 2)
        let record = try #require(queue.attemptRecord(id))
        #expect(record.attempts == 2)
        #expect(record.lastError?.reason == "nack: timeout talking to the ERP")
        // The event file's name in new/ is still exactly <id>.json, as the server's recovery requires.
        #expect(spool.list("new") == ["\(id).json"])
        #expect(spool.list("attempts") == ["\(id).json"])
        _ = try queue.take()
        try queue.ack(id)
        #expect(spool.list("attempts").isEmpty)
    }

    @Test func requeueReturnsOnlyStaleEntriesAndSkipsLockedOnes() throws {
        let spool = try TestSpool()
        let stale = try spool.add(receivedAt: "2026-11-22T01:00:00.000Z")
        let held = try spool.add(receivedAt: "2026-11-22T02:00:00.000Z")
        let queue = try QueueDirectory(spool.root)
        _ = try queue.take()
        _ = try queue.take()
        // Nothing is an hour old yet.
        #expect(try queue.requeue(olderThan: 3600).requeued.isEmpty)

        // A live worker holds its event with flock(2).
        let fd = open(spool.path("cur/\(held).json"), O_RDONLY)
        defer { close(fd) }
        #expect(flock(fd, LOCK_EX | LOCK_NB) == 0)
        let report = try queue.requeue(olderThan: 3600, now: Date().addingTimeInterval(7200))
        #expect(report.requeued.map(\.id) == [stale])
        #expect(report.requeued.first?.attempts == 1)
        #expect(report.busy == [held])
        #expect(spool.list("new") == ["\(stale).json"])
        #expect(spool.list("cur") == ["\(held).json"])
        #expect(queue.attemptRecord(stale)?.lastError?.reason.hasPrefix("requeued after 2h in cur/") == true)

        // Once the holder is gone (the kernel drops the lock when a process dies), it is requeued too.
        flock(fd, LOCK_UN)
        #expect(try queue.requeue(olderThan: 0).requeued.map(\.id) == [held])
    }

    @Test func deadLettersKeepTheirErrorBesideThemAndRevive() throws {
        let spool = try TestSpool()
        let id = try spool.add()
        let queue = try QueueDirectory(spool.root)
        _ = try queue.take()
        let record = try queue.recordFailure(id, QueueFailure(reason: "exit status 2", exitStatus: 2, stderrTail: "boom\n", command: "false"))
        try queue.deadLetter(id, record: record)
        #expect(spool.list("dead") == ["\(id).error.json", "\(id).json"])
        #expect(spool.list("attempts").isEmpty)
        #expect(spool.list("cur").isEmpty)
        let stored = try #require(try JSONSerialization.jsonObject(with: Data(spool.read("dead/\(id).error.json").utf8)) as? [String: Any])
        #expect(stored["attempts"] as? Int == 1)
        #expect(stored["dead_at"] is String)
        let last = try #require(stored["last_error"] as? [String: Any])
        #expect(last["exit_status"] as? Int == 2)
        #expect(last["stderr_tail"] as? String == "boom\n")
        #expect(last["command"] as? String == "false")

        #expect(throws: QueueError(.wrongState, "event \(id) is a dead letter in dead/; `payhook queue revive` returns it to new/")) {
            try queue.ack(id)
        }
        try queue.revive(id)
        #expect(spool.list("dead").isEmpty)
        #expect(spool.list("new") == ["\(id).json"])
        #expect(try queue.show(id).attempts == 0)
    }

    // MARK: - gc

    @Test func gcPrunesOnlyOldLedgerEntriesWhoseEventIsGone() throws {
        let spool = try TestSpool()
        let acknowledgedOld = try spool.add()
        let acknowledgedRecent = try spool.add()
        let pendingOld = try spool.add()
        let queue = try QueueDirectory(spool.root)
        for _ in 0..<2 { _ = try queue.take() }
        try queue.ack(acknowledgedOld)
        try queue.ack(acknowledgedRecent)
        try spool.age("ids/\(acknowledgedOld)", by: 8 * 86400)
        try spool.age("ids/\(pendingOld)", by: 8 * 86400)   // the same inode as new/<id>.json

        var options = QueueGCOptions()
        options.dryRun = true
        let dry = try queue.gc(options)
        #expect(dry.removed.map(\.path) == ["ids/\(acknowledgedOld)"])
        #expect(spool.list("ids").count == 3)

        options.dryRun = false
        let report = try queue.gc(options)
        #expect(report.removed.map(\.path) == ["ids/\(acknowledgedOld)"])
        let reason = report.removed.first?.reason ?? ""
        #expect(reason.contains("(8d") && reason.hasSuffix("ago), its event acknowledged"), "\(reason)")
        #expect(report.keptPending == 1)
        #expect(spool.list("ids") == [acknowledgedRecent, pendingOld].sorted())

        // A shorter period prunes the recent one too.
        options.ledgerAge = 0
        #expect(try queue.gc(options).removed.map(\.path) == ["ids/\(acknowledgedRecent)"])
    }

    @Test func gcRemovesOnlyOldTemporaryFilesAndStaleSidecars() throws {
        let spool = try TestSpool()
        try spool.write("tmp/young.1.1.1", "being written")
        try spool.write("tmp/old.1.1.1", "left by a crash")
        try spool.age("tmp/old.1.1.1", by: 2 * 3600)
        let gone = spool.makeID()
        try FileManager.default.createDirectory(atPath: spool.path("attempts"), withIntermediateDirectories: false)
        try spool.write("attempts/\(gone).json", "{}")
        try spool.age("attempts/\(gone).json", by: 2 * 3600)
        let queue = try QueueDirectory(spool.root)

        let report = try queue.gc(QueueGCOptions())
        #expect(report.removed.map(\.path) == ["tmp/old.1.1.1", "attempts/\(gone).json"])
        #expect(spool.list("tmp") == ["young.1.1.1"])

        var careless = QueueGCOptions()
        careless.temporaryAge = 1
        #expect(throws: QueueError.self) { _ = try queue.gc(careless) }
    }

    @Test func gcDeletesInBatchesWithALimitOldestFirst() throws {
        let spool = try TestSpool()
        let ids = try spool.addMany(5)
        let queue = try QueueDirectory(spool.root)
        for (index, id) in ids.enumerated() {
            _ = try queue.take()
            try queue.ack(id)
            try spool.age("ids/\(id)", by: Double(30 - index) * 86400)
        }
        var options = QueueGCOptions()
        options.limit = 2
        let first = try queue.gc(options)
        #expect(first.removed.map(\.path) == ids.prefix(2).map { "ids/\($0)" })
        #expect(first.limited)
        #expect(try queue.gc(options).removed.map(\.path) == ids[2..<4].map { "ids/\($0)" })
        let last = try queue.gc(options)
        #expect(last.removed.map(\.path) == ["ids/\(ids[4])"])
        #expect(!last.limited)
    }
}
