import Foundation
import PayhookCore
import PayhookPostgres
import PayhookQueue
import PayhookStore
import PayhookTestSupport
import Synchronization
import Testing

/// What the database queue adds to the protocol (EventQueueTests runs the shared behaviour): leases, their expiry
/// and renewal, the event file, nack's backoff, gc's floor, wake-ups, and consumers side by side.
@Suite(.timeLimit(.minutes(1)))
struct PostgresQueueTests {
    static func kind(_ body: () throws -> Void) -> QueueError? {
        do {
            try body()
            return nil
        } catch {
            return error as? QueueError
        }
    }

    @Test func aTakenEventIsAPrivateFileOfItsExactBytesRemovedWhenSettled() throws {
        let database = try TestDatabase()
        let stored = try database.add(TestDatabase.event(id: String(repeating: "a1", count: 32)))
        let queue = try database.queue()
        let entry = try #require(try queue.take(wait: false, timeout: nil, stop: nil).entry)
        #expect(entry.location == .cur)
        #expect(Array(try Data(contentsOf: URL(fileURLWithPath: entry.path))) == stored.jsonBytes())
        #expect(entry.event.bytes == stored.jsonBytes())
        #expect(entry.event.receivedAtText == "2026-11-22T02:34:50.123Z")
        var folder = stat()
        #expect(stat((entry.path as NSString).deletingLastPathComponent, &folder) == 0)
        #expect(folder.st_mode & 0o777 == 0o700)
        // A listing shows the file this instance wrote; the names never show the connection string.
        #expect(try queue.list().entries.first?.path == entry.path)
        #expect(!queue.name.contains(database.name) && !queue.describe(.new).contains(database.name))
        try queue.ack(entry.id)
        #expect(!FileManager.default.fileExists(atPath: entry.path))
        #expect(try database.sql("SELECT acked_at IS NOT NULL FROM payhook_ledger") == "t")
        #expect(try database.sql("SELECT count(*) FROM payhook_queue") == "0")
        #expect(Self.kind { _ = try queue.show(entry.id) }?.message.contains("payhook_ledger still records it") == true)
    }

    @Test func nackDelaysTheRetryExponentially() throws {
        let database = try TestDatabase()
        let id = try database.addMany(1)[0]
        let queue = try database.queue(retryDelay: 1)
        _ = try queue.take(wait: false, timeout: nil, stop: nil)
        #expect(try queue.nack(id, reason: nil) == 1)
        // Waiting, but not ready for a second.
        #expect(try queue.show(id).location == .new)
        #expect(try queue.take(wait: false, timeout: nil, stop: nil).outcome == .empty)
        let first = try #require(Double(try database.sql("SELECT extract(epoch FROM run_at - now()) FROM payhook_queue")))
        #expect(first > 0.5 && first <= 1.0)
        let again = try #require(try queue.take(wait: true, timeout: 5, stop: nil).entry)
        #expect(again.id == id)
        #expect(try queue.nack(id, reason: nil) == 2)
        let second = try #require(Double(try database.sql("SELECT extract(epoch FROM run_at - now()) FROM payhook_queue")))
        #expect(second > 1.5 && second <= 2.0)
    }

    @Test func anExpiredLeaseIsTakenAgainNotBeforeAndTheFirstAckIsRefused() throws {
        let database = try TestDatabase()
        let id = try database.addMany(1)[0]
        let first = try database.queue(lease: 1, instance: "first")
        let second = try database.queue(lease: 1, instance: "second")
        #expect(try first.take(wait: false, timeout: nil, stop: nil).entry?.id == id)
        // Not before the lease expires.
        #expect(try second.take(wait: false, timeout: nil, stop: nil).outcome == .empty)
        #expect(try first.show(id).location == .cur)
        usleep(1_300_000)
        let retaken = try #require(try second.take(wait: false, timeout: nil, stop: nil).entry)
        #expect(retaken.id == id)
        #expect(retaken.attempts == 1)
        #expect(retaken.record?.lastError?.reason.contains("lease of first") == true)
        let lost = Self.kind { try first.ack(id) }
        #expect(lost?.kind == .wrongState)
        #expect(lost?.message.hasPrefix("lease lost: taken again by another consumer after its lease expired") == true)
        try second.ack(id)
    }

    @Test func anExpiredLeaseAtTheLastAttemptMakesADeadLetter() throws {
        let database = try TestDatabase()
        let id = try database.addMany(1)[0]
        let queue = try database.queue(lease: 0.2, maxAttempts: 1)
        _ = try queue.take(wait: false, timeout: nil, stop: nil)
        usleep(400_000)
        #expect(try queue.take(wait: false, timeout: nil, stop: nil).outcome == .empty)
        let dead = try queue.show(id)
        #expect(dead.location == .dead)
        #expect(dead.attempts == 1)
        #expect(dead.record?.deadAt != nil)
    }

    @Test func aHoldRenewsTheLeaseUntilReleased() throws {
        let database = try TestDatabase()
        let id = try database.addMany(1)[0]
        let worker = try database.queue(lease: 0.4)
        let other = try database.queue(lease: 0.4)
        let entry = try #require(try worker.take(wait: false, timeout: nil, stop: nil).entry)
        let hold = try #require(worker.hold(entry))
        usleep(1_200_000)
        // Three leases long, and still the worker's.
        #expect(try other.take(wait: false, timeout: nil, stop: nil).outcome == .empty)
        #expect(try other.requeue(olderThan: 0, now: Date()).busy == [id])
        hold.release()
        usleep(600_000)
        #expect(try other.take(wait: false, timeout: nil, stop: nil).entry?.id == id)
    }

    @Test func takeWaitIsWokenByTheStoresNotification() throws {
        let database = try TestDatabase()
        // Claims would be retried only every 30 s: only the NOTIFY can end this wait in time.
        let queue = try database.queue(pollInterval: 30)
        let waiter = Background { () -> (String?, Double) in
            let started = Date()
            let result = try? queue.take(wait: true, timeout: 20, stop: nil)
            return (result?.entry?.id, Date().timeIntervalSince(started))
        }
        usleep(500_000)
        let id = try database.addMany(1)[0]
        let stored = Date()
        let (taken, _) = try #require(waiter.join(timeout: .seconds(25)))
        #expect(taken == id)
        #expect(Date().timeIntervalSince(stored) < 3)
    }

    @Test func twoConsumersNeverTakeTheSameEvent() throws {
        let database = try TestDatabase()
        let ids = try database.addMany(200)
        let seen = Mutex<[String]>([])
        let workers = (0..<4).map { index in
            Background { () -> String? in
                do {
                    let queue = try database.queue(instance: "worker-\(index)")
                    while let entry = try queue.take(wait: false, timeout: nil, stop: nil).entry {
                        seen.withLock { $0.append(entry.id) }
                        try queue.ack(entry.id)
                    }
                    return nil
                } catch {
                    return "\(error)"
                }
            }
        }
        for worker in workers {
            #expect(worker.join(timeout: .seconds(50)) == .some(nil))
        }
        let taken = seen.withLock { $0 }
        #expect(taken.count == ids.count)
        #expect(Set(taken) == Set(ids))
        #expect(try database.sql("SELECT count(*) FROM payhook_ledger WHERE acked_at IS NOT NULL") == "200")
    }

    @Test func gcPrunesAcknowledgedRowsInBatchesNeverBelowTheRecordedRetention() throws {
        let database = try TestDatabase()
        let ids = try database.addMany(5)
        let queue = try database.queue()
        for _ in 0..<3 {
            let entry = try #require(try queue.take(wait: false, timeout: nil, stop: nil).entry)
            try queue.ack(entry.id)
        }
        // A conflicting variant of the first event: same id, other content.
        let variant = TestDatabase.event(id: ids[0], orderRef: "order-0", receivedAt: "2026-11-22T02:34:50.123Z", money: "999")
        guard case .conflict = try database.store.store(variant) else { throw TestFailure("no conflict") }
        try database.store.recordRetention(seconds: 8 * 86400)
        #expect(try queue.retention()?.seconds == 8 * 86400)

        var short = QueueGCOptions()
        short.ledgerAge = 3600
        #expect(Self.kind { _ = try queue.gc(short) }?.kind == .invalidArgument)

        var options = QueueGCOptions()
        options.now = Date().addingTimeInterval(9 * 86400)
        options.dryRun = true
        let dry = try queue.gc(options)
        #expect(dry.removed.filter { $0.kind == .ledgerEntry }.count == 3)
        #expect(dry.removed.filter { $0.kind == .conflictCopy }.count == 1)
        #expect(dry.keptPending == 2)
        #expect(try database.sql("SELECT count(*) FROM payhook_ledger") == "5")

        options.dryRun = false
        options.limit = 2
        let limited = try queue.gc(options)
        #expect(limited.removed.map(\.path) == ids.prefix(2).map { "payhook_ledger/\($0)" })
        #expect(limited.limited)
        options.limit = nil
        let rest = try queue.gc(options)
        #expect(rest.removed.count == 2)
        #expect(!rest.limited)
        // The two still queued stay, however old.
        #expect(try database.sql("SELECT count(*) FROM payhook_ledger") == "2")
        #expect(try database.sql("SELECT count(*) FROM payhook_conflict") == "0")
        // Not old enough yet: nothing goes.
        #expect(try queue.gc(QueueGCOptions()).removed.isEmpty)
    }

    @Test func anUnreachableDatabaseIsAnIOErrorWithoutTheConnectionString() throws {
        let missing = "host=/nonexistent-payhook port=1 user=nobody password=hunter2 dbname=nothing"
        let error = Self.kind { _ = try PostgresEventQueue(settings: PGSettings(conninfo: missing), instance: "test") }
        #expect(error?.kind == .io)
        #expect(error?.message.hasPrefix("cannot reach the database: ") == true)
        #expect(error?.message.contains("hunter2") == false)
    }
}
