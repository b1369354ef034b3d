import Foundation
public import PayhookStore

/// What ``PostgresDatabase/importEvents(_:conflicts:retentionSeconds:by:)`` did.
public struct PostgresImportReport: Sendable, Equatable {
    /// Dedupe entries added (with their queue rows for waiting and dead events).
    public var added = 0
    /// Entries the database had already, with the same fingerprint: left as they are (an import run twice).
    public var present = 0
    /// Entries the database had with another fingerprint: the database's event stays, the spool's is kept as a
    /// conflict copy.
    public var differing = 0
    /// Of `added`, events queued again (waiting or taken in the spool) and dead letters.
    public var queued = 0
    public var dead = 0
    /// Conflict copies added (a copy already there is not added twice).
    public var conflicts = 0
    /// Whether the retention was recorded (the database had none).
    public var retentionRecorded = false

    public init() {}
}

extension PostgresDatabase {
    static let importEventStatement = """
        WITH ins AS (
            INSERT INTO payhook_ledger
                   (id, dedupe_key, source, tenant, order_ref, status, amount, currency, fingerprint, event,
                    received_at, stored_at, last_seen_at, received_by, acked_at)
            VALUES ($1::bytea, $2::text, $3::text, $4::text, $5::text, $6::text, $7::bigint, $8::text,
                    sha256($9::bytea), $10::bytea, $11::timestamptz, to_timestamp($12::float8),
                    to_timestamp($12::float8), $13::text,
                    CASE WHEN $14::text = 'acknowledged' THEN to_timestamp($12::float8) END)
            ON CONFLICT (id) DO NOTHING
            RETURNING id
        ), queued AS (
            INSERT INTO payhook_queue (id, state, attempts, last_error, dead_at, updated_at)
            SELECT id, $14::text, $15::integer, $16::text, $17::timestamptz, now() FROM ins WHERE $14::text <> 'acknowledged'
        ), existing AS (
            SELECT l.fingerprint = sha256($9::bytea) AS same FROM payhook_ledger l WHERE l.id = $1::bytea
        ), copy AS (
            INSERT INTO payhook_conflict (id, fingerprint, event, received_at, received_by)
            SELECT $1::bytea, sha256($9::bytea), $10::bytea, to_timestamp($12::float8), $13::text FROM existing
             WHERE NOT existing.same
               AND NOT EXISTS (SELECT 1 FROM payhook_conflict c WHERE c.id = $1::bytea AND c.fingerprint = sha256($9::bytea))
        )
        SELECT CASE WHEN EXISTS (SELECT 1 FROM ins) THEN 'added'
                    WHEN (SELECT same FROM existing) THEN 'present'
                    ELSE 'differing' END
        """

    static let importConflictStatement = """
        INSERT INTO payhook_conflict (id, fingerprint, event, received_at, received_by)
        SELECT $1::bytea, sha256($2::bytea), $3::bytea, to_timestamp($4::float8), $5::text
         WHERE NOT EXISTS (SELECT 1 FROM payhook_conflict c WHERE c.id = $1::bytea AND c.fingerprint = sha256($2::bytea))
        RETURNING conflict_id
        """

    /// Loads events and conflict copies taken from another store, idempotently: an entry the database has is
    /// left alone (run it twice and nothing changes), so an operator can switch stores without losing dedupe
    /// history. Waiting events are queued as new (a consumer that had taken one is gone with the old store),
    /// dead letters stay dead, acknowledged ones become dedupe entries only. Commits every 500 events.
    public func importEvents(
        _ events: [ImportedEvent], conflicts: [ImportedConflict], retentionSeconds: Double?, by instance: String
    ) throws(PGError) -> PostgresImportReport {
        var report = PostgresImportReport()
        try pool.withConnection { (connection) throws(PGError) in
            let deadline = ContinuousClock.now + .seconds(3600)
            try PostgresSchema.check(connection, deadline: deadline)
            var index = 0
            while index < events.count {
                let batch = events[index..<min(index + 500, events.count)]
                try connection.run("BEGIN", deadline: deadline)
                do throws(PGError) {
                    for event in batch {
                        guard let id = EventKey.bytes(event.id) else { continue }
                        let rows = try connection.query(
                            "payhook_import_event", Self.importEventStatement,
                            [
                                .bytes(id), .text(event.dedupeKey), .text(event.source), .text(event.tenant),
                                .text(event.orderRef), .text(event.status), .text(String(event.amount)),
                                .text(event.currency), .bytes(Array(event.fingerprint.utf8)), .bytes(event.bytes),
                                .text(event.receivedAt), .text(String(event.ledgerTime.timeIntervalSince1970)),
                                .text(instance), .text(event.state.rawValue), .text(String(event.record?.attempts ?? 0)),
                                event.record?.lastError.map { .text(PostgresEventQueue.encodeFailure($0)) } ?? .null,
                                event.record?.deadAt.map { .text($0) } ?? .null,
                            ], deadline: deadline)
                        switch rows[0, 0] {
                        case "added":
                            report.added += 1
                            if event.state == .new { report.queued += 1 }
                            if event.state == .dead { report.dead += 1 }
                        case "present": report.present += 1
                        default: report.differing += 1
                        }
                    }
                    try connection.run("COMMIT", deadline: deadline)
                } catch {
                    if connection.usable { try? connection.run("ROLLBACK", deadline: deadline) }
                    throw error
                }
                index += batch.count
            }
            for conflict in conflicts {
                guard let id = EventKey.bytes(conflict.id) else { continue }
                let rows = try connection.query(
                    "payhook_import_conflict", Self.importConflictStatement,
                    [
                        .bytes(id), .bytes(Array(conflict.fingerprint.utf8)), .bytes(conflict.bytes),
                        .text(String(conflict.writtenAt.timeIntervalSince1970)), .text(instance),
                    ], deadline: deadline)
                report.conflicts += rows.count
            }
            if let retentionSeconds {
                let rows = try connection.query(
                    "payhook_import_retention",
                    """
                    INSERT INTO payhook_settings (name, value) VALUES ('ledger_retention_seconds', $1::text)
                    ON CONFLICT (name) DO NOTHING RETURNING name
                    """, [.text(String(Int(retentionSeconds)))], deadline: deadline)
                report.retentionRecorded = rows.count == 1
            }
        }
        return report
    }
}
