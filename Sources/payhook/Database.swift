import ArgumentParser
import Foundation
import PayhookConfig
import PayhookCore
import PayhookPostgres
import PayhookQueue
import PayhookServer
import PayhookSpoolFormat
import PayhookStore

/// `payhook db …`: the PostgreSQL store's schema (docs/contract.md §7).
struct Database: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "db",
        abstract: "Manage the PostgreSQL store that [store] kind = \"postgres\" names.",
        subcommands: [DatabaseMigrate.self, DatabaseStatus.self, DatabaseImport.self]
    )
}

/// The config file that names the database, shared by the `db` subcommands.
struct DatabaseConfigOption: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The TOML config file whose [store] names the database.", valueName: "file"))
    var config: String

    /// The loaded config and its database settings; exits 1 with the config's errors, or when its store is the
    /// spool.
    func load() throws -> (config: Config, database: DatabaseSettings) {
        let loaded = try ConfigFile.loadOrExit(config)
        guard case .postgres(let database) = loaded.config.store else {
            Output.err("error: \(config) keeps events in the spool directory: set [store] kind = \"postgres\" to use a database")
            throw ExitCode(1)
        }
        return (loaded.config, database)
    }

    /// Settings for a command's own short session.
    func settings() throws -> (config: Config, database: DatabaseSettings, settings: PGSettings) {
        let (config, database) = try load()
        let settings = PGSettings(
            conninfo: database.url.value, connections: 2, statementTimeoutSeconds: Double(database.timeoutSeconds),
            applicationName: "payhook db")
        return (config, database, settings)
    }

    /// Who ran a command, as the schema table records it.
    static var who: String { PayhookServer.defaultInstance() }
}

/// `payhook db migrate --config FILE`: creates payhook's tables or brings them up to this version.
struct DatabaseMigrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Create or upgrade payhook's tables (idempotent; refuses a newer schema)."
    )

    @OptionGroup var options: DatabaseConfigOption

    func run() throws {
        let (_, database, settings) = try options.settings()
        let db = PostgresDatabase(settings: settings)
        defer { db.close() }
        do {
            let report = try db.migrate(by: DatabaseConfigOption.who)
            if report.from == report.to {
                Output.out("schema is at version \(report.to), the latest this payhook knows; nothing to do")
            } else {
                Output.out("migrated the schema from version \(report.from) to \(report.to)")
            }
        } catch {
            Output.err("error: \(database.origin): \(error)")
            throw ExitCode(1)
        }
    }
}

/// `payhook db status --config FILE`: the schema version, and whether this payhook can serve on it.
struct DatabaseStatus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the database's schema version; exit 1 unless this payhook can serve on it."
    )

    @OptionGroup var options: DatabaseConfigOption

    func run() throws {
        let (_, database, settings) = try options.settings()
        let db = PostgresDatabase(settings: settings)
        defer { db.close() }
        let version: Int
        do {
            version = try db.schemaVersion()
        } catch {
            Output.err("error: \(database.origin): \(error)")
            throw ExitCode(1)
        }
        Output.out("schema version \(version); this payhook knows version \(PostgresSchema.latest)")
        if version != PostgresSchema.latest {
            Output.err(version < PostgresSchema.latest ? "error: run `payhook db migrate --config \(options.config)`" : "error: the schema is newer than this payhook: upgrade payhook")
            throw ExitCode(1)
        }
    }
}

/// `payhook db import --spool DIR --config FILE`: moves a stopped spool's dedupe history, waiting events and
/// dead letters into the database, so that switching stores forgets nothing (docs/durability.md
/// §11.7).
struct DatabaseImport: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Load a spool (ledger, waiting events, dead letters, conflicts) into the database; idempotent.",
        discussion: """
            Stop `payhook serve` on the spool first: the import refuses a spool that is being served. Events \
            waiting or taken in the spool are queued as new; dead letters stay dead letters; acknowledged events \
            become dedupe entries only, so a late retry is answered as a duplicate. Entries the database already \
            has are left alone, so running the import twice changes nothing. The spool is only read.
            """
    )

    @OptionGroup var options: DatabaseConfigOption

    @Option(name: .long, help: ArgumentHelp("The spool directory to read.", valueName: "dir"))
    var spool: String

    func run() throws {
        let (_, database, settings) = try options.settings()
        let snapshot: SpoolSnapshot
        do throws(QueueError) {
            snapshot = try SpoolSnapshot.read(spool, inspector: EventFileInspector.payhook)
        } catch {
            Output.err("error: \(error.message)")
            throw ExitCode(1)
        }
        for problem in snapshot.skipped { Output.err("warning: skipped \(problem)") }
        let db = PostgresDatabase(settings: settings)
        defer { db.close() }
        let report: PostgresImportReport
        do {
            report = try db.importEvents(
                snapshot.events, conflicts: snapshot.conflicts, retentionSeconds: snapshot.retention?.seconds,
                by: DatabaseConfigOption.who)
        } catch {
            Output.err("error: \(database.origin): \(error)")
            throw ExitCode(1)
        }
        Output.out(
            "read \(snapshot.events.count) ledger entries from \(spool): \(report.added) added (\(report.queued) queued, "
                + "\(report.dead) dead letters), \(report.present) already present, \(report.differing) present with "
                + "other content (the database's kept, the spool's added as a conflict copy); "
                + "\(report.conflicts) conflict copies added"
                + (report.retentionRecorded ? "; retention recorded" : ""))
        if !snapshot.skipped.isEmpty {
            Output.err("\(snapshot.skipped.count) files skipped (see the warnings above); they were left in the spool")
            throw ExitCode(1)
        }
    }
}
