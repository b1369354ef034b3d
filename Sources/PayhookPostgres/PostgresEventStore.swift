import Dispatch
public import Logging
public import PayhookCore
import PayhookLock
public import PayhookStore

/// PostgreSQL as the receiving side's ``EventStore``, shared by every instance that names the same database
/// (docs/durability.md §11).
///
/// One statement per callback, in autocommit: insert the ledger row or, for a key already there, bump its
/// `seen_count` (`ON CONFLICT DO UPDATE`), queue a new event, keep a conflicting variant's audit copy. A unique
/// key makes concurrent duplicates from any number of instances one event. `DO UPDATE` rather than `DO NOTHING`
/// because the duplicate's own commit then writes WAL: with synchronous standbys its `success` waits until the
/// standby has everything up to the original's commit, so a duplicate is never acknowledged on the strength of an
/// original whose wait for replication was cancelled. Any error, timeout, lost session or warning (a cancelled
/// wait for synchronous replication arrives as one) throws, and the sender is told to try again.
public final class PostgresEventStore: EventStore, @unchecked Sendable {
    let pool: PGPool
    /// The `received_by` of rows this instance writes.
    public let instance: String
    private let maxConflictsPerEvent: Int
    private let maxConflicts: Int
    private let logger: Logger
    private struct Counters {
        var failures: [String: Int] = [:]
        var conflicts: [String: Int] = [:]
        var closed = false
        var wakeScheduled = false
    }
    private let counters = Locked(Counters())
    private let waker: PostgresWaker
    private let writer: PostgresGroupCommit

    /// Connects, checks that the schema is the one this payhook knows, and sets up the pool. Throws when the
    /// database cannot be reached or its schema is missing, older or newer (`payhook db migrate` fixes the
    /// first two).
    ///
    /// `settings.connections` is the number of writer sessions (group commit, below); `maxBatch` the most
    /// callbacks one transaction carries (``maxBatch(connections:)``).
    public init(
        settings: PGSettings, instance: String, maxBatch: Int = 64, maxConflictsPerEvent: Int = ConflictCaps.defaultPerEvent,
        maxConflicts: Int = ConflictCaps.defaultTotal, logger: Logger
    ) throws(PGError) {
        // Health probes, metrics and the retention record share two sessions of their own; stores go through the
        // writers' sessions, so a slow probe never delays a callback.
        var side = settings
        side.connections = min(2, settings.connections)
        pool = PGPool(side, setUp: PostgresSession.setUp)
        self.instance = instance
        self.maxConflictsPerEvent = maxConflictsPerEvent
        self.maxConflicts = maxConflicts
        self.logger = logger
        waker = PostgresWaker(pool: pool)
        writer = PostgresGroupCommit(
            pool: pool, writers: settings.connections, maxBatch: maxBatch, statementName: "payhook_store",
            statement: Self.storeStatement, logger: logger)
        try pool.withConnection { (connection) throws(PGError) in
            try PostgresSchema.check(connection, deadline: pool.deadline())
        }
        writer.start()
    }

    /// Writers when `[store] connections` is not set: one. Its next batch forms while it waits for a commit, so
    /// one writer loses little, and several instances share one database: each writer's commits are the
    /// database's, and a second writer per instance would halve every instance's batches and double the commits
    /// per callback for the same throughput (bench/README.md, "PostgreSQL, measured").
    public static let defaultWriters = 1

    /// The most callbacks one transaction carries: one per open connection can be waiting (a waiting request
    /// parks its connection, not its thread: docs/architecture.md, "Waiting without a thread"), up to 128, the
    /// spool's batch too; a larger batch only makes one transaction's locks and WAL longer.
    public static func maxBatch(connections: Int) -> Int { min(128, max(1, connections)) }


    static let storeStatement = """
        WITH up AS (
            INSERT INTO payhook_ledger AS l
                   (id, dedupe_key, source, tenant, order_ref, status, amount, currency, fingerprint, event,
                    received_at, received_by)
            VALUES ($1::bytea, $2::text, $3::text, $4::text, $5::text, $6::text, $7::bigint, $8::text,
                    sha256($9::bytea), $10::bytea, to_timestamp($11::bigint / 1000.0), $12::text)
            ON CONFLICT (id) DO UPDATE SET last_seen_at = now(), seen_count = l.seen_count + 1
            RETURNING l.seen_count = 1 AS inserted, l.fingerprint = sha256($9::bytea) AS same
        ), queued AS (
            INSERT INTO payhook_queue (id) SELECT $1::bytea FROM up WHERE up.inserted
        ), prior AS (
            SELECT count(*) AS copies, min(c.conflict_id) FILTER (WHERE c.fingerprint = sha256($9::bytea)) AS earlier
              FROM payhook_conflict c WHERE c.id = $1::bytea
        ), kept AS (
            INSERT INTO payhook_conflict (id, fingerprint, event, received_by)
            SELECT $1::bytea, sha256($9::bytea), $10::bytea, $12::text FROM up, prior
             WHERE NOT up.inserted AND NOT up.same AND prior.earlier IS NULL AND prior.copies < $13::bigint
               AND (SELECT count(*) FROM payhook_conflict) < $14::bigint
            RETURNING conflict_id
        )
        SELECT CASE WHEN up.inserted THEN 'stored'
                    WHEN up.same THEN 'duplicate'
                    WHEN prior.earlier IS NOT NULL THEN 'repeated'
                    WHEN EXISTS (SELECT 1 FROM kept) THEN 'kept'
                    ELSE 'dropped' END,
               coalesce((SELECT conflict_id FROM kept), prior.earlier)
          FROM up, prior
        """

    public func store(_ event: Event) throws(StoreError) -> StoreOutcome {
        let (id, values) = try statement(for: event, fingerprint: event.fingerprint)
        return try outcome(writer.submit(key: id, values: values))
    }

    /// The same, answered from the writer thread once the batch committed: the caller's thread is not held
    /// (docs/architecture.md, "Waiting without a thread").
    public func store(_ event: Event, completion: @escaping @Sendable (Result<StoreOutcome, StoreError>) -> Void) {
        store(event, fingerprint: event.fingerprint, completion: completion)
    }

    public func store(_ event: Event, fingerprint: String, completion: @escaping @Sendable (Result<StoreOutcome, StoreError>) -> Void) {
        let id: [UInt8], values: [PGValue]
        do {
            (id, values) = try statement(for: event, fingerprint: fingerprint)
        } catch {
            completion(.failure(error))
            return
        }
        writer.submit(key: id, values: values) { [self] result in
            completion(Result { () throws(StoreError) in try outcome(result) })
        }
    }

    /// The store statement's key (the id's bytes, for the batch's lock order) and its parameters.
    private func statement(for event: Event, fingerprint: String) throws(StoreError) -> ([UInt8], [PGValue]) {
        guard let id = EventKey.bytes(event.id) else {
            throw StoreError("the event id is not 64 hex digits")
        }
        return (id, [
            .bytes(id), .text(event.dedupeKey.text), .text(event.source), .text(event.tenant), .text(event.orderRef),
            .text(event.status), .text(String(event.amount)), .text(event.currency), .bytes(Array(fingerprint.utf8)),
            .bytes(event.jsonBytes()), .text(String(event.receivedAtMilliseconds)), .text(instance),
            .text(String(maxConflictsPerEvent)), .text(String(maxConflicts)),
        ])
    }

    /// What the statement's one row says became of the event.
    private func outcome(_ result: Result<PGRows, PGError>) throws(StoreError) -> StoreOutcome {
        let rows: PGRows
        switch result {
        case .success(let result): rows = result
        case .failure(let error): throw failed(error)
        }
        guard rows.count == 1, let outcome = rows[0, 0] else {
            throw failed(PGError(.statement, "the store statement returned no row"))
        }
        let copy = rows[0, 1].map { "payhook_conflict \($0)" }
        switch outcome {
        case "stored":
            waker.eventStored()
            return .stored
        case "duplicate": return .duplicate
        case "repeated": return conflict(copy, .repeated)
        case "kept": return conflict(copy, .kept)
        default: return conflict(nil, .dropped)
        }
    }

    private func conflict(_ copy: String?, _ disposition: ConflictDisposition) -> StoreOutcome {
        counters.withLock { $0.conflicts[disposition.rawValue, default: 0] += 1 }
        return .conflict(auditCopy: copy, disposition: disposition)
    }

    private func failed(_ error: PGError) -> StoreError {
        counters.withLock { $0.failures[error.kind.rawValue, default: 0] += 1 }
        return StoreError(error.description)
    }

    /// Whether a store would be accepted now: the database answers, is not a standby and is not read-only.
    public func probe() throws(StoreError) {
        do throws(PGError) {
            let rows = try pool.withConnection { (connection) throws(PGError) in
                try connection.select(
                    "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'",
                    deadline: pool.deadline())
            }
            guard rows.bool(0, 0) == true else { throw PGError(.statement, "the database is read-only") }
        } catch {
            throw failed(error)
        }
    }

    /// nil: a database that failed is retried on the next request; nothing in this process needs a restart.
    public var unhealthyReason: String? { nil }

    public func counts() -> StoreCounts {
        let batches = writer.histogram
        return counters.withLock { StoreCounts(failures: $0.failures, conflicts: $0.conflicts, batchSizes: batches) }
    }

    /// Events per state under the spool's folder names, the conflicts kept, and the oldest waiting and taken
    /// events' arrival (``PostgresCensus``); nil when the database does not answer in time.
    public func census() -> QueueCensus? {
        PostgresCensus.read(pool)
    }

    /// Records the retention for `payhook queue gc` in `payhook_settings`.
    public func recordRetention(seconds: Int) throws(StoreError) {
        do {
            _ = try pool.withConnection { (connection) throws(PGError) in
                try connection.query(
                    "payhook_retention",
                    """
                    INSERT INTO payhook_settings (name, value) VALUES ('ledger_retention_seconds', $1::text)
                    ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = now()
                    """, [.text(String(seconds))], deadline: pool.deadline())
            }
        } catch {
            throw failed(error)
        }
    }

    public func close() {
        writer.stop()
        pool.close()
        waker.close()
    }
}

/// What every payhook session sets before its first statement.
enum PostgresSession {
    /// No server-side timeout may cancel a statement: cancelling a commit's wait for a synchronous standby leaves
    /// it committed locally with only a warning (docs/durability.md §11); payhook bounds each wait on
    /// its own side instead. A role or database default of `synchronous_commit = off` or `local` would let a
    /// commit return before it is durable (or replicated): payhook's sessions raise it to `on`.
    @Sendable static func setUp(_ connection: PGConnection) throws(PGError) {
        let deadline = ContinuousClock.now + .seconds(10)
        try connection.run("SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0; SET lock_timeout = 0", deadline: deadline)
        let rows = try connection.select("SELECT current_setting('synchronous_commit')", deadline: deadline)
        if let value = rows[0, 0], value == "off" || value == "local" {
            try connection.run("SET synchronous_commit = on", deadline: deadline)
        }
    }
}

/// Wakes waiting consumers (`LISTEN payhook_queue`) after events were stored, at most once per 50 ms and from a
/// session of its own: a NOTIFY inside each store's transaction would serialise every commit on the server's
/// notification lock (docs/durability.md §11). Consumers poll as well, so a lost wake-up costs a
/// poll interval, never an event.
final class PostgresWaker: @unchecked Sendable {
    private let pool: PGPool
    private struct State {
        var scheduled = false
        var connection: PGConnection?
        var closed = false
    }
    private let state = Locked(State())

    init(pool: PGPool) {
        self.pool = pool
    }

    func eventStored() {
        let schedule = state.withLock { state -> Bool in
            if state.scheduled || state.closed { return false }
            state.scheduled = true
            return true
        }
        guard schedule else { return }
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(50)) { [self] in
            notify()
        }
    }

    private func notify() {
        // Taken out while in use: only this method runs it, one call at a time (`scheduled`).
        let existing = state.withLock { state -> PGConnection? in
            state.scheduled = false
            defer { state.connection = nil }
            return state.closed ? nil : state.connection
        }
        var connection = existing
        if connection == nil { connection = try? pool.openDedicated() }
        guard let connection else { return }
        try? connection.run("NOTIFY payhook_queue", deadline: .now + .seconds(2))
        state.withLock { state in
            if connection.usable && !state.closed && state.connection == nil { state.connection = connection }
        }
    }

    func close() {
        state.withLock { state in
            state.closed = true
            state.connection = nil
        }
    }
}
