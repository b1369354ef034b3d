import Foundation
import PayhookConfig
import PayhookCore
import Logging
import PayhookLock
import PayhookTestSupport
import Testing

@testable import PayhookPostgres

/// What every payhook session sets, whatever the role's or database's defaults say, and what it makes of a
/// warning (docs/durability.md §11.4).
@Suite struct PostgresSessionTests {
    static func database(_ cluster: PostgresCluster, _ prefix: String) throws -> (conninfo: String, name: String) {
        let conninfo = try cluster.createDatabase(prefix)
        return (conninfo, String(conninfo.split(separator: "=").last!))
    }

    /// A store submitted without waiting that no writer takes in time (here: no writer runs at all) is answered
    /// "try again" by the sweeper once its deadline and half a second have passed, not before; the sweeper then
    /// forgets it, so nothing keeps its statement alive.
    @Test func anUntakenUnwaitedStoreTimesOutAtItsDeadline() throws {
        let pool = PGPool(PGSettings(conninfo: "host=/nonexistent dbname=none", connections: 1, statementTimeoutSeconds: 0.2),
                          setUp: PostgresSession.setUp)
        let commit = PostgresGroupCommit(pool: pool, writers: 1, maxBatch: 8, statementName: "s", statement: "SELECT 1", logger: .init(label: "test"))
        let answer = Locked<Result<PGRows, PGError>?>(nil)
        commit.submit(key: [1], values: []) { result in answer.withLock { $0 = result } }
        commit.sweep()
        #expect(answer.withLock { $0 } == nil, "answered before its deadline")
        #expect(commit.unwaitedCount == 1)
        usleep(800_000)
        commit.sweep()
        guard case .failure(let error) = try #require(answer.withLock { $0 }) else {
            Issue.record("answered with rows"); return
        }
        #expect(error.kind == .timeout)
        commit.sweep()
        #expect(commit.unwaitedCount == 0)
    }

    /// A database default that could cancel a commit's wait (`statement_timeout`) or return before the commit is
    /// durable (`synchronous_commit = off`) does not reach payhook's sessions; psql on the same database still sees
    /// the defaults, so the override is payhook's doing.
    @Test func sessionsOverrideTimeoutsAndAsynchronousCommit() throws {
        let cluster = try PostgresCluster.shared()
        let (conninfo, name) = try Self.database(cluster, "session")
        try cluster.psql("ALTER DATABASE \(name) SET statement_timeout = '1ms'")
        try cluster.psql("ALTER DATABASE \(name) SET synchronous_commit = off")
        try cluster.psql("ALTER DATABASE \(name) SET idle_in_transaction_session_timeout = '1s'")
        #expect(try cluster.psql("SHOW statement_timeout", database: name).hasPrefix("1ms"))

        let pool = PGPool(PGSettings(conninfo: conninfo, connections: 1), setUp: PostgresSession.setUp)
        defer { pool.close() }
        let rows = try pool.withConnection { (connection) throws(PGError) in
            try connection.select(
                """
                SELECT current_setting('statement_timeout'), current_setting('synchronous_commit'),
                       current_setting('idle_in_transaction_session_timeout'), current_setting('lock_timeout')
                """, deadline: pool.deadline())
        }
        #expect(rows.rows.first == ["0", "on", "0", "0"])
    }

    /// A WARNING during a statement fails it (the cancelled wait for a synchronous standby arrives as one); a
    /// NOTICE does not.
    @Test func aWarningFailsTheStatementAndANoticeDoesNot() throws {
        let cluster = try PostgresCluster.shared()
        let (conninfo, _) = try Self.database(cluster, "warning")
        let pool = PGPool(PGSettings(conninfo: conninfo, connections: 1), setUp: PostgresSession.setUp)
        defer { pool.close() }
        try pool.withConnection { (connection) throws(PGError) in
            try connection.run("DO $$ BEGIN RAISE NOTICE 'chatter'; END $$", deadline: pool.deadline())
        }
        do {
            try pool.withConnection { (connection) throws(PGError) in
                try connection.run("DO $$ BEGIN RAISE WARNING 'canceling wait for synchronous replication'; END $$", deadline: pool.deadline())
            }
            Issue.record("a statement that warned succeeded")
        } catch {
            #expect(error.kind == .warning)
            #expect(error.sqlState == "01000")
            #expect(error.description.contains("canceling wait for synchronous replication"))
        }
        // The session stays usable: the next statement has no warning left over.
        let rows = try pool.withConnection { (connection) throws(PGError) in
            try connection.select("SELECT 1", deadline: pool.deadline())
        }
        #expect(rows.rows.first == ["1"])
    }

    /// Stores go through the group commit's writer sessions: one unless `[store] connections` says otherwise,
    /// each transaction carrying at most one callback per open connection (`max_connections`). A waiting
    /// callback parks its connection, not its listener thread (docs/architecture.md, "Waiting without a
    /// thread"), so with two threads a transaction still carries many callbacks. Every store is slowed by a
    /// trigger that records its transaction and backend, so forty callbacks at once keep every writer busy;
    /// the server's sessions are counted in `pg_stat_activity` as well (writers, at most two for health
    /// probes and metrics, one for the consumers' NOTIFY).
    @Test(arguments: [(connections: nil as Int?, writers: 1), (connections: 3, writers: 3)])
    func storesShareTransactionsOnTheWriterSessions(connections: Int?, writers: Int) throws {
        let threads = 2
        let maxConnections = 16
        let live = try LiveServer(store: .postgres) { config in
            config.threads = threads
            config.maxConnections = maxConnections
            config.maxConnectionsPerIP = 64
            if case .postgres(var database) = config.store {
                database.connections = connections
                config.store = .postgres(database)
            }
        }
        defer { live.stop() }
        _ = try live.sql(
            """
            CREATE TABLE written (txid bigint, pid int);
            CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_sleep(0.05); INSERT INTO written VALUES (txid_current(), pg_backend_pid()); RETURN NEW; END $$;
            CREATE TRIGGER slow BEFORE INSERT ON payhook_ledger FOR EACH ROW EXECUTE FUNCTION slow();
            """)
        // One callback forty times: the first is stored, the rest are duplicates, and each commits (so that a
        // duplicate's answer waits for replication like the original's).
        let target = try UnifiedLiveTests.target("success")
        let senders = (0..<40).map { _ in Background { Result { try live.get(target) } } }
        var peak = 0
        var finished = false
        while !finished {
            let open = try live.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'payhook' AND datname = current_database()")
            peak = max(peak, Int(open.first ?? "0") ?? 0)
            finished = senders.allSatisfy { $0.join(timeout: .zero) != nil }
            usleep(20_000)
        }
        for sender in senders {
            #expect(try #require(sender.join(timeout: .seconds(30))).get().body == "success")
        }
        #expect(try live.sql("SELECT count(DISTINCT pid) FROM written") == ["\(writers)"])
        let perTransaction = try live.sql("SELECT count(*) FROM written GROUP BY txid ORDER BY 1 DESC").compactMap { Int($0) }
        #expect(perTransaction.reduce(0, +) == 40)
        #expect(perTransaction.count < 40, "no two callbacks shared a transaction")
        #expect((perTransaction.first ?? 99) <= maxConnections, "a transaction carried more callbacks than connections")
        #expect((perTransaction.first ?? 0) > threads, "no transaction carried more callbacks than threads: waiting requests hold their threads")
        #expect(peak >= writers)
        #expect(peak <= writers + 3)
    }
}
