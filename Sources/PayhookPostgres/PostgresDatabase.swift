/// The database as the `payhook db` commands see it: its schema, apart from storing or consuming.
public final class PostgresDatabase: @unchecked Sendable {
    let pool: PGPool

    /// Nothing is connected until a method needs it.
    public init(settings: PGSettings) {
        pool = PGPool(settings, setUp: PostgresSession.setUp)
    }

    /// The schema version the database holds (0: none).
    public func schemaVersion() throws(PGError) -> Int {
        try pool.withConnection { (connection) throws(PGError) in
            try PostgresSchema.version(connection, deadline: pool.deadline())
        }
    }

    /// Creates or upgrades payhook's tables to ``PostgresSchema/latest``: idempotent, one transaction, refuses a
    /// newer schema. `instance` is recorded as who ran it.
    public func migrate(by instance: String) throws(PGError) -> PostgresSchema.MigrationReport {
        try pool.withConnection { (connection) throws(PGError) in
            // DDL on a big table may take longer than one store's deadline.
            try PostgresSchema.migrate(connection, by: instance, deadline: .now + .seconds(600))
        }
    }

    public func close() {
        pool.close()
    }
}
