public import PayhookStore

/// The database's side of `/metrics`' queue gauges (``QueueCensus``): events per state of `payhook_queue`, the
/// conflict copies, and when the oldest waiting and taken events arrived (their ledger row's `received_at`).
enum PostgresCensus {
    /// How long a scrape waits for the answer. A database that does not answer within it costs the scrape this
    /// much (plus libpq's `connect_timeout` when a new session is needed), and the queue series are left out of
    /// that scrape; `/healthz` says why (docs/metrics.md, "On PostgreSQL").
    static let timeout: Duration = .seconds(2)

    /// One statement. Its cost grows with the rows of `payhook_queue` (one pass, counted by state) and with the
    /// events waiting or taken (each joined to its ledger row by primary key), never with the ledger's
    /// acknowledged rows or the dead letters' ledger rows.
    static let statement = """
        SELECT count(*) FILTER (WHERE state = 'new'), count(*) FILTER (WHERE state = 'cur'),
               count(*) FILTER (WHERE state = 'dead'), (SELECT count(*) FROM payhook_conflict),
               (SELECT extract(epoch FROM min(l.received_at))::float8
                  FROM payhook_queue w JOIN payhook_ledger l ON l.id = w.id WHERE w.state = 'new'),
               (SELECT extract(epoch FROM min(l.received_at))::float8
                  FROM payhook_queue t JOIN payhook_ledger l ON l.id = t.id WHERE t.state = 'cur')
          FROM payhook_queue
        """

    /// The census through a session of `pool`; nil when the database did not answer in time.
    static func read(_ pool: PGPool) -> QueueCensus? {
        do {
            let rows = try pool.withConnection { (connection) throws(PGError) in
                try connection.select(statement, deadline: .now + timeout)
            }
            guard rows.count == 1 else { return nil }
            var census = QueueCensus(counts: [:], oldestReceived: [:])
            for (column, name) in ["new", "cur", "dead", "conflicts"].enumerated() {
                guard let count = rows.int(0, column) else { return nil }
                census.counts[name] = Int(count)
            }
            for (column, name) in [(4, "new"), (5, "cur")] {
                if let text = rows[0, column], let seconds = Double(text) { census.oldestReceived[name] = seconds }
            }
            return census
        } catch {
            return nil
        }
    }
}

/// The census for a process that is not the server: `payhook queue consume --metrics-listen` over the database.
/// It keeps one session of its own, apart from the consumer's, opened when first needed and again after it broke.
public final class PostgresCensusReader: Sendable {
    private let pool: PGPool

    /// `settings` name the database; one session is used whatever they say.
    public init(settings: PGSettings) {
        var own = settings
        own.connections = 1
        own.acquireTimeoutSeconds = 0
        pool = PGPool(own, setUp: PostgresSession.setUp)
    }

    /// The census now; nil when the database did not answer within ``PostgresCensus/timeout``.
    public func census() -> QueueCensus? {
        PostgresCensus.read(pool)
    }

    /// Closes the session.
    public func close() {
        pool.close()
    }
}
