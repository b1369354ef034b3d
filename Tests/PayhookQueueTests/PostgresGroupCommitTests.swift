import Foundation
import Logging
import PayhookCore
import PayhookPostgres
import PayhookStore
import PayhookTestSupport
import Testing

/// The database store's group commit (docs/durability.md §11.3): callbacks stored at the same time share one
/// transaction, a refused statement fails only its own callback, and batches from two instances never deadlock.
@Suite struct PostgresGroupCommitTests {
    /// Every row the ledger receives is also recorded with the transaction and the backend that wrote it;
    /// `delay` seconds per row keep a batch in flight long enough for the next one to form behind it. An
    /// order reference `poison` is refused by the server.
    static func instrument(_ database: TestDatabase, delay: Double) throws {
        try database.sql(
            """
            CREATE TABLE written (id bytea, txid bigint, pid int);
            CREATE FUNCTION record_write() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.order_ref = 'poison' THEN RAISE EXCEPTION 'poisoned order'; END IF;
                PERFORM pg_sleep(\(delay));
                INSERT INTO written VALUES (NEW.id, txid_current(), pg_backend_pid());
                RETURN NEW;
            END $$;
            CREATE TRIGGER record_write BEFORE INSERT ON payhook_ledger FOR EACH ROW EXECUTE FUNCTION record_write();
            """)
    }

    static func ids(_ count: Int, tag: String) -> [String] {
        (0..<count).map { index in
            let tail = String(index + 1, radix: 16)
            return tag + String(repeating: "0", count: 64 - tag.count - tail.count) + tail
        }
    }

    static func store(_ database: TestDatabase, writers: Int, maxBatch: Int, instance: String) throws -> PostgresEventStore {
        try PostgresEventStore(
            settings: PGSettings(conninfo: database.conninfo, connections: writers), instance: instance, maxBatch: maxBatch,
            logger: TestDatabase.quiet)
    }

    /// Thirty callbacks at once on one writer: fewer transactions than callbacks, none larger than the batch
    /// limit (the listener's thread count in `payhook serve`), all from the writer's one session, and every
    /// callback answered `stored` only for its own committed row.
    @Test func callbacksStoredTogetherShareOneTransaction() throws {
        let database = try TestDatabase()
        try Self.instrument(database, delay: 0.02)
        let store = try Self.store(database, writers: 1, maxBatch: 8, instance: "batch")
        defer { store.close() }
        let ids = Self.ids(30, tag: "ba")
        let senders = ids.enumerated().map { index, id in
            Background { Result { try store.store(TestDatabase.event(id: id, orderRef: "order-\(index)")) } }
        }
        for sender in senders {
            #expect(try #require(sender.join(timeout: .seconds(60))).get() == .stored)
        }
        let perTransaction = try database.sql("SELECT count(*) FROM written GROUP BY txid ORDER BY 1 DESC")
            .split(separator: "\n").compactMap { Int($0) }
        #expect(perTransaction.reduce(0, +) == 30)
        #expect(perTransaction.count < 30, "every callback had a transaction of its own: \(perTransaction)")
        #expect((perTransaction.first ?? 0) > 1)
        #expect((perTransaction.first ?? 99) <= 8, "a batch exceeded maxBatch: \(perTransaction)")
        #expect(try database.sql("SELECT count(DISTINCT pid) FROM written") == "1")
        #expect(try database.sql("SELECT count(*) FROM payhook_queue") == "30")
        // The histogram /metrics exports counts the same batches.
        let batches = store.counts().batchSizes
        #expect(batches.reduce(0) { $0 + $1.key * $1.value } == 30)
        #expect(batches.values.reduce(0, +) == perTransaction.count)
    }

    /// A statement the server refuses rolls its whole batch back; that callback fails, and every other one in
    /// the batch is stored again on its own and answered `stored`: one bad event never costs its neighbours.
    @Test func aRefusedStatementFailsOnlyItsOwnCallback() throws {
        let database = try TestDatabase()
        try Self.instrument(database, delay: 0.1)
        let store = try Self.store(database, writers: 1, maxBatch: 64, instance: "poison")
        defer { store.close() }
        let ids = Self.ids(12, tag: "fe")
        // The first callback occupies the writer; the other eleven, the poisoned one among them, queue behind
        // it and form the next batch.
        let first = Background { Result { try store.store(TestDatabase.event(id: ids[0], orderRef: "order-0")) } }
        usleep(30_000)
        let rest = ids.dropFirst().enumerated().map { index, id in
            Background {
                Result { try store.store(TestDatabase.event(id: id, orderRef: index == 5 ? "poison" : "order-\(index + 1)")) }
            }
        }
        #expect(try #require(first.join(timeout: .seconds(60))).get() == .stored)
        for (index, sender) in rest.enumerated() {
            let result = try #require(sender.join(timeout: .seconds(60)))
            if index == 5 {
                #expect(throws: StoreError.self) { try result.get() }
            } else {
                #expect(try result.get() == .stored)
            }
        }
        #expect(store.counts().batchSizes.keys.contains { $0 > 1 }, "the poisoned callback never shared a batch")
        #expect(try database.sql("SELECT count(*) FROM payhook_ledger") == "11")
        #expect(try database.sql("SELECT count(*) FROM payhook_ledger WHERE order_ref = 'poison'") == "0")
        #expect(try database.sql("SELECT count(*) FROM payhook_queue") == "11")
    }

    /// Two instances store the same keys at the same time, one in the opposite order of the other. Each batch
    /// writes its rows in id order, so they wait for each other and never deadlock: every callback is answered
    /// (stored or duplicate) and each key is one event.
    @Test func twoInstancesStoringTheSameKeysDoNotDeadlock() throws {
        let database = try TestDatabase()
        try Self.instrument(database, delay: 0.002)
        let one = try Self.store(database, writers: 1, maxBatch: 64, instance: "one")
        let two = try Self.store(database, writers: 1, maxBatch: 64, instance: "two")
        defer {
            one.close()
            two.close()
        }
        for round in 0..<3 {
            let ids = Self.ids(24, tag: "d\(round)")
            let events = ids.enumerated().map { TestDatabase.event(id: $1, orderRef: "order-\(round)-\($0)") }
            let forwards = events.map { event in Background { Result { try one.store(event) } } }
            let backwards = events.reversed().map { event in Background { Result { try two.store(event) } } }
            var stored = 0
            for sender in forwards + backwards {
                let outcome = try #require(sender.join(timeout: .seconds(60))).get()
                #expect(outcome == .stored || outcome == .duplicate)
                if outcome == .stored { stored += 1 }
            }
            #expect(stored == 24)
        }
        #expect(try database.sql("SELECT count(*), sum(seen_count) FROM payhook_ledger") == "72|144")
        #expect(one.counts().failures.isEmpty && two.counts().failures.isEmpty)
    }
}
