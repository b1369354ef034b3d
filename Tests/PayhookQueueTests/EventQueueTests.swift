import Foundation
import Logging
import PayhookPostgres
import PayhookQueue
import PayhookStore
import Testing

/// The consumer side's storage protocol, `EventQueue`: the same operations mean the same on the spool directory,
/// an in-memory double and PostgreSQL (`PostgresEventQueue`), and the consume worker runs over each unchanged.
@Suite(.timeLimit(.minutes(1)))
struct EventQueueTests {
    enum Backend: String, CaseIterable, Sendable {
        case spool, memory, postgres
    }

    /// A queue of `backend` with three waiting events, and its ids in take order. `keep` holds what must live as
    /// long as the queue (the spool's folder).
    struct Fixture {
        let queue: any EventQueue
        let keep: AnyObject
        let ids: [String]
    }

    static func id(_ tag: String) -> String {
        tag + String(repeating: "0", count: 64 - tag.count)
    }

    static func event(id: String, tenant: String, orderRef: String, receivedAt: String) -> QueueEvent {
        QueueEvent(
            id: id,
            bytes: Array(TestSpool.eventJSON(id: id, tenant: tenant, orderRef: orderRef, receivedAt: receivedAt).utf8),
            source: "unified", tenant: tenant, orderRef: orderRef, status: "SUCCESSPAY", amount: 100, currency: "CNY",
            receivedAtText: receivedAt, receivedAt: QueueTime.parseRFC3339(receivedAt))
    }

    /// (id, tenant, order, received_at): taken b, then a, then c.
    static let events = [
        (id("a"), "demo", "order-a", "2026-11-22T02:00:00.000Z"),
        (id("b"), "demo", "poison", "2026-11-22T01:00:00.000Z"),
        (id("c"), "other", "order-c", "2026-11-22T03:00:00.000Z"),
    ]

    static func fixture(_ backend: Backend) throws -> Fixture {
        let order = [events[1].0, events[0].0, events[2].0]
        switch backend {
        case .spool:
            let spool = try TestSpool()
            for (id, tenant, orderRef, receivedAt) in events {
                try spool.add(id: id, tenant: tenant, orderRef: orderRef, receivedAt: receivedAt)
            }
            return Fixture(queue: try QueueDirectory(spool.root), keep: spool, ids: order)
        case .memory:
            let memory = try InMemoryEventQueue()
            for (id, tenant, orderRef, receivedAt) in events {
                memory.add(event(id: id, tenant: tenant, orderRef: orderRef, receivedAt: receivedAt))
            }
            return Fixture(queue: memory, keep: memory, ids: order)
        case .postgres:
            // Seeded through the receiving side's store, as `payhook serve` would.
            let database = try TestDatabase()
            for (id, tenant, orderRef, receivedAt) in events {
                try database.add(TestDatabase.event(id: id, tenant: tenant, orderRef: orderRef, receivedAt: receivedAt))
            }
            return Fixture(queue: try database.queue(), keep: database, ids: order)
        }
    }

    static func kind(_ body: () throws -> Void) -> QueueError.Kind? {
        do {
            try body()
            return nil
        } catch {
            return (error as? QueueError)?.kind
        }
    }

    @Test("list, take, nack, ack, dead letters, revive, requeue and the consumer lock, on every backend", arguments: Backend.allCases)
    func operations(_ backend: Backend) throws {
        let fixture = try Self.fixture(backend)
        let queue = fixture.queue
        let (b, a, c) = (fixture.ids[0], fixture.ids[1], fixture.ids[2])

        #expect(try queue.list().entries.map(\.id) == [b, a, c])
        var filter = QueueFilter()
        filter.tenants = ["other"]
        #expect(try queue.list(filter).entries.map(\.id) == [c])

        // Take the oldest; a nack returns it with an attempt counted; it is the oldest again.
        #expect(try queue.take(wait: false, timeout: nil, stop: nil).entry?.id == b)
        #expect(try queue.show(b).location == .cur)
        #expect(try queue.nack(b, reason: "db down") == 1)
        let returned = try queue.show(b)
        #expect(returned.location == .new)
        #expect(returned.attempts == 1)
        #expect(returned.record?.lastError?.reason == "nack: db down")
        #expect(try queue.take(wait: false, timeout: nil, stop: nil).entry?.id == b)
        try queue.ack(b)
        #expect(Self.kind { _ = try queue.show(b) } == .unknownEvent)
        #expect(Self.kind { try queue.ack(a) } == .wrongState)
        #expect(Self.kind { _ = try queue.show("not-an-id") } == .invalidArgument)

        // Failures while taken, then a dead letter, then revived with a fresh count.
        #expect(try queue.take(wait: false, timeout: nil, stop: nil).entry?.id == a)
        let record = try queue.recordFailure(a, QueueFailure(reason: "exit status 3", exitStatus: 3))
        #expect(record.attempts == 1)
        try queue.deadLetter(a, record: record)
        let dead = try queue.show(a)
        #expect(dead.location == .dead)
        #expect(dead.record?.deadAt != nil)
        #expect(dead.record?.lastError?.exitStatus == 3)
        #expect(Self.kind { try queue.revive(c) } == .wrongState)
        try queue.revive(a)
        #expect(try queue.show(a).location == .new)
        #expect(try queue.show(a).attempts == 0)

        // A held event is left alone by requeue however old; released, it is requeued with an attempt counted.
        let taken = try #require(try queue.take(wait: false, timeout: nil, stop: nil).entry)
        #expect(taken.id == a)
        let hold = queue.hold(taken)
        #expect(hold != nil)
        let held = try queue.requeue(olderThan: 0, now: Date().addingTimeInterval(1))
        #expect(held.busy == [a])
        #expect(held.requeued.isEmpty)
        hold?.release()
        let requeued = try queue.requeue(olderThan: 0, now: Date().addingTimeInterval(1))
        #expect(requeued.requeued.map(\.id) == [a])
        #expect(requeued.requeued.map(\.attempts) == [1])
        #expect(try queue.show(a).location == .new)

        // Drained: empty at once, or timed out when waiting.
        #expect(try queue.take(wait: false, timeout: nil, stop: nil).entry?.id == a)
        #expect(try queue.take(wait: false, timeout: nil, stop: nil).entry?.id == c)
        #expect(try queue.take(wait: false, timeout: nil, stop: nil).outcome == .empty)
        #expect(try queue.take(wait: true, timeout: 0.05, stop: nil).outcome == .timedOut)

        // One consume worker per spool; a database lets several run at once (leases keep them apart).
        let lease = try queue.lockConsumer()
        if backend == .postgres {
            let second = try queue.lockConsumer()
            second.release()
        } else {
            #expect(Self.kind { _ = try queue.lockConsumer() } == .busy)
        }
        lease.release()
        try queue.lockConsumer().release()
    }

    static let quiet = Logger(label: "payhook.queue.test") { _ in SwiftLogNoOpLogHandler() }

    @Test("the consume worker runs through EventQueue: over an in-memory queue it acknowledges, retries and dead-letters")
    func consumerOverTheDouble() throws {
        let queue = try InMemoryEventQueue()
        for (id, tenant, orderRef, receivedAt) in Self.events {
            queue.add(Self.event(id: id, tenant: tenant, orderRef: orderRef, receivedAt: receivedAt))
        }
        var options = QueueConsumeOptions(command: "if grep -q poison; then echo no >&2; exit 4; fi")
        options.maxAttempts = 2
        options.backoff = 0.01
        options.drain = true
        options.forwardStderr = false
        let consumer = QueueConsumer(queue: queue, options: options, logger: Self.quiet, stop: try QueueStopSignal())
        let summary = try consumer.run()
        #expect(summary.acknowledged == 2)
        #expect(summary.failures == 2)
        #expect(summary.deadLettered == 1)
        #expect(summary.released == 0)
        let poison = Self.events[1].0
        #expect(queue.location(of: Self.events[0].0) == nil)
        #expect(queue.location(of: Self.events[2].0) == nil)
        let dead = try queue.show(poison)
        #expect(dead.location == .dead)
        #expect(dead.record?.attempts == 2)
        #expect(dead.record?.lastError?.exitStatus == 4)
        #expect(dead.record?.lastError?.stderrTail == "no\n")
        #expect(dead.record?.deadAt != nil)
    }

    @Test("the consume worker over PostgreSQL acknowledges, retries and dead-letters; the command reads the event file")
    func consumerOverPostgres() throws {
        let database = try TestDatabase()
        for (id, tenant, orderRef, receivedAt) in Self.events {
            try database.add(TestDatabase.event(id: id, tenant: tenant, orderRef: orderRef, receivedAt: receivedAt))
        }
        let queue = try database.queue()
        // The file is the event exactly as stored, and PAYHOOK_SPOOL names no directory here.
        var options = QueueConsumeOptions(
            command: "[ -z \"${PAYHOOK_SPOOL+x}\" ] || exit 8; cmp -s - \"$PAYHOOK_EVENT_PATH\" || exit 9; "
                + "if grep -q poison \"$PAYHOOK_EVENT_PATH\"; then echo no >&2; exit 4; fi")
        options.maxAttempts = 2
        options.backoff = 0.01
        options.drain = true
        options.forwardStderr = false
        let consumer = QueueConsumer(queue: queue, options: options, logger: Self.quiet, stop: try QueueStopSignal())
        let summary = try consumer.run()
        #expect(summary.acknowledged == 2)
        #expect(summary.failures == 2)
        #expect(summary.deadLettered == 1)
        let poison = Self.events[1].0
        #expect(try queue.list().entries.map(\.id) == [poison])
        let dead = try queue.show(poison)
        #expect(dead.location == .dead)
        #expect(dead.record?.attempts == 2)
        #expect(dead.record?.lastError?.exitStatus == 4)
        #expect(dead.record?.lastError?.stderrTail == "no\n")
        #expect(try database.sql("SELECT count(*) FROM payhook_ledger WHERE acked_at IS NOT NULL") == "2")
    }

    @Test("a consume worker is refused while another holds the queue, whatever the backend")
    func consumerLockThroughTheProtocol() throws {
        let queue = try InMemoryEventQueue()
        let lease = try queue.lockConsumer()
        defer { lease.release() }
        let consumer = QueueConsumer(
            queue: queue, options: QueueConsumeOptions(command: "true"), logger: Self.quiet, stop: try QueueStopSignal())
        #expect(Self.kind { _ = try consumer.run() } == .busy)
    }
}
