/// payhook's tables in PostgreSQL, as numbered migrations (docs/durability.md §11).
///
/// - `payhook_ledger`: one row per dedupe key, the spool's `ids/`, kept after acknowledgement until `queue gc`;
///   the event's exact bytes and the columns the queue tools filter on.
/// - `payhook_queue`: one row per event not yet acknowledged, the spool's `new/`, `cur/` and `dead/` (its
///   `state`), with the attempts bookkeeping and the lease of the consumer holding it (`held`: a running worker
///   keeps the lease alive, so `queue requeue` leaves it alone; PostgresEventQueue.swift).
/// - `fingerprint` columns hold the SHA-256 of the event's fingerprint text (`Event.fingerprint`), which can be
///   as long as the verified fields.
/// - `payhook_conflict`: audit copies of conflicting variants, the spool's `conflicts/`; no foreign key, so
///   they outlive the ledger row.
/// - `payhook_settings`: what the receiving side records for the consumers (the dedupe retention).
/// - `payhook_schema`: which migrations ran.
public enum PostgresSchema {
    /// The newest schema this payhook knows; it refuses to serve on or migrate a newer one.
    public static var latest: Int { migrations.count }

    /// Migration `n` is `migrations[n - 1]`. Never edit one that has shipped: add the next.
    static let migrations: [String] = [
        """
        CREATE TABLE payhook_ledger (
            id           bytea       PRIMARY KEY CHECK (octet_length(id) = 32),
            dedupe_key   text        NOT NULL,
            source       text        NOT NULL,
            tenant       text        NOT NULL,
            order_ref    text        NOT NULL,
            status       text        NOT NULL,
            amount       bigint      NOT NULL,
            currency     text        NOT NULL,
            fingerprint  bytea       NOT NULL,
            event        bytea       NOT NULL,
            received_at  timestamptz NOT NULL,
            stored_at    timestamptz NOT NULL DEFAULT now(),
            received_by  text        NOT NULL,
            last_seen_at timestamptz NOT NULL DEFAULT now(),
            seen_count   bigint      NOT NULL DEFAULT 1,
            acked_at     timestamptz
        ) WITH (fillfactor = 90);
        CREATE INDEX payhook_ledger_acked ON payhook_ledger (acked_at) WHERE acked_at IS NOT NULL;
        CREATE INDEX payhook_ledger_order ON payhook_ledger (order_ref, tenant);
        CREATE INDEX payhook_ledger_received ON payhook_ledger (received_at);
        CREATE TABLE payhook_queue (
            id           bytea       PRIMARY KEY REFERENCES payhook_ledger (id),
            state        text        NOT NULL DEFAULT 'new' CHECK (state IN ('new', 'cur', 'dead')),
            attempts     integer     NOT NULL DEFAULT 0,
            run_at       timestamptz NOT NULL DEFAULT now(),
            enqueued_at  timestamptz NOT NULL DEFAULT now(),
            lease        uuid,
            leased_by    text,
            leased_at    timestamptz,
            lease_until  timestamptz,
            held         boolean     NOT NULL DEFAULT false,
            last_error   text,
            updated_at   timestamptz,
            dead_at      timestamptz
        );
        CREATE INDEX payhook_queue_ready ON payhook_queue (run_at, enqueued_at) WHERE state = 'new';
        CREATE INDEX payhook_queue_leases ON payhook_queue (lease_until) WHERE state = 'cur';
        CREATE TABLE payhook_conflict (
            conflict_id  bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id           bytea       NOT NULL,
            fingerprint  bytea       NOT NULL,
            event        bytea       NOT NULL,
            received_at  timestamptz NOT NULL DEFAULT now(),
            received_by  text        NOT NULL
        );
        CREATE INDEX payhook_conflict_id ON payhook_conflict (id, fingerprint);
        CREATE TABLE payhook_settings (
            name         text        PRIMARY KEY,
            value        text        NOT NULL,
            updated_at   timestamptz NOT NULL DEFAULT now()
        );
        """
    ]

    /// A constant key for `pg_advisory_xact_lock`: two `db migrate` runs at once take turns.
    static let migrationLock = "7283990017731"

    /// The schema version the database holds: 0 when payhook's tables are not there.
    static func version(_ connection: PGConnection, deadline: ContinuousClock.Instant) throws(PGError) -> Int {
        let exists = try connection.select("SELECT to_regclass('payhook_schema') IS NOT NULL", deadline: deadline)
        guard exists.bool(0, 0) == true else { return 0 }
        let rows = try connection.select("SELECT coalesce(max(version), 0) FROM payhook_schema", deadline: deadline)
        return Int(rows.int(0, 0) ?? 0)
    }

    /// Refuses a schema this payhook cannot serve on: missing or older (run `payhook db migrate`), or newer.
    static func check(_ connection: PGConnection, deadline: ContinuousClock.Instant) throws(PGError) {
        let found = try version(connection, deadline: deadline)
        if found == latest { return }
        if found > latest {
            throw PGError(.schema, "the database's payhook schema is version \(found), newer than this payhook knows (\(latest)): upgrade payhook")
        }
        if found == 0 {
            throw PGError(.schema, "the database has no payhook schema: run `payhook db migrate --config FILE` first")
        }
        throw PGError(.schema, "the database's payhook schema is version \(found), older than this payhook needs (\(latest)): run `payhook db migrate --config FILE`")
    }

    /// What ``migrate(_:by:deadline:)`` did.
    public struct MigrationReport: Sendable, Equatable {
        /// The version before.
        public var from: Int
        /// The version now.
        public var to: Int
    }

    /// Brings the schema to ``latest`` in one transaction, under an advisory lock; does nothing when it is there
    /// already, and refuses a newer one.
    static func migrate(_ connection: PGConnection, by instance: String, deadline: ContinuousClock.Instant) throws(PGError) -> MigrationReport {
        try connection.run("BEGIN", deadline: deadline)
        do throws(PGError) {
            try connection.run("SELECT pg_advisory_xact_lock(\(migrationLock))", deadline: deadline)
            try connection.run(
                """
                CREATE TABLE IF NOT EXISTS payhook_schema (
                    version     integer     PRIMARY KEY,
                    applied_at  timestamptz NOT NULL DEFAULT now(),
                    applied_by  text        NOT NULL
                )
                """, deadline: deadline)
            let from = try version(connection, deadline: deadline)
            if from > latest {
                throw PGError(.schema, "the database's payhook schema is version \(from), newer than this payhook knows (\(latest)): upgrade payhook")
            }
            for number in (from + 1)...max(from + 1, latest) where number <= latest {
                try connection.run(migrations[number - 1], deadline: deadline)
                _ = try connection.query(
                    "payhook_schema_insert", "INSERT INTO payhook_schema (version, applied_by) VALUES ($1::integer, $2::text)",
                    [.text(String(number)), .text(instance)], deadline: deadline)
            }
            try connection.run("COMMIT", deadline: deadline)
            return MigrationReport(from: from, to: max(from, latest))
        } catch {
            if connection.usable { try? connection.run("ROLLBACK", deadline: deadline) }
            throw error
        }
    }
}
