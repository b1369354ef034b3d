import Foundation
import PayhookTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `payhook db migrate|status|import` and `serve`'s schema check, through the real binary against a real
/// PostgreSQL (docs/contract.md §7, docs/durability.md §11.2 and §11.7).
@Suite struct DatabaseCommandTests {
    /// A spool config like ``ProcessTests/writeConfig(_:)`` plus, when `conninfo` is given, `[store]` naming it
    /// (a test cluster's connection string has no password, so `url` may hold it).
    static func writeConfig(_ dir: TemporaryDirectory, conninfo: String?, name: String = "payhook.toml") throws -> String {
        let spoolConfig = try String(contentsOfFile: ProcessTests.writeConfig(dir), encoding: .utf8)
        let store = conninfo.map { "\n[store]\nkind = \"postgres\"\nurl = \"\($0)\"\n" } ?? ""
        try dir.write(name, spoolConfig + store)
        return dir.file(name)
    }

    static func simulate(_ config: String, port: Int, order: String, amount: Int = 100) throws -> ProcessTests.Run {
        try ProcessTests.run([
            "simulate", "unified", "--config", config, "--url", "http://127.0.0.1:\(port)/notify/unified",
            "--order-ref", order, "--amount", String(amount),
        ])
    }

    static func stop(_ process: Process) {
        process.terminate()
        _ = ProcessTests.waitForExit(process, seconds: 10)
    }

    @Test func migrateCreatesTheSchemaOnceAndRefusesANewerOne() throws {
        let cluster = try PostgresCluster.shared()
        let conninfo = try cluster.createDatabase("migrate")
        let database = String(conninfo.split(separator: "=").last!)
        let dir = try TemporaryDirectory()
        let config = try Self.writeConfig(dir, conninfo: conninfo)

        let before = try ProcessTests.run(["db", "status", "--config", config])
        #expect(before.status == 1)
        #expect(before.stdout.contains("schema version 0"))
        #expect(before.stderr.contains("payhook db migrate"))

        let first = try ProcessTests.run(["db", "migrate", "--config", config])
        #expect(first.status == 0)
        #expect(first.stdout.contains("from version 0 to 1"))
        let second = try ProcessTests.run(["db", "migrate", "--config", config])
        #expect(second.status == 0)
        #expect(second.stdout.contains("nothing to do"))
        #expect(try cluster.psql("SELECT count(*) FROM payhook_schema", database: database).trimmingCharacters(in: .whitespacesAndNewlines) == "1")
        #expect(try ProcessTests.run(["db", "status", "--config", config]).status == 0)

        // A schema from a later payhook: neither migrated over nor served on.
        try cluster.psql("INSERT INTO payhook_schema (version, applied_by) VALUES (99, 'a later payhook')", database: database)
        let newer = try ProcessTests.run(["db", "migrate", "--config", config])
        #expect(newer.status == 1)
        #expect(newer.stderr.contains("version 99, newer than this payhook knows"))
        #expect(try ProcessTests.run(["db", "status", "--config", config]).status == 1)
        let serve = try ProcessTests.run(["serve", "--config", config])
        #expect(serve.status == 1)
        #expect(serve.stderr.contains("newer than this payhook knows"))
    }

    @Test func serveRefusesADatabaseWithoutTheSchemaAndSaysWhatToRun() throws {
        let cluster = try PostgresCluster.shared()
        let dir = try TemporaryDirectory()
        let config = try Self.writeConfig(dir, conninfo: try cluster.createDatabase("noschema"))
        let serve = try ProcessTests.run(["serve", "--config", config])
        #expect(serve.status == 1)
        #expect(serve.stderr.contains("run `payhook db migrate --config FILE` first"))
        #expect(!FileManager.default.fileExists(atPath: dir.file("spool")))
    }

    @Test func aDatabaseThatCannotBeReachedIsAClearErrorWithoutTheURL() throws {
        let dir = try TemporaryDirectory()
        // A socket folder with no server in it; the password must not be echoed back.
        try dir.write("env.toml", "")
        let spoolConfig = try String(contentsOfFile: ProcessTests.writeConfig(dir), encoding: .utf8)
        try dir.write("pg.toml", spoolConfig + "\n[store]\nkind = \"postgres\"\nurl_env = \"PAYHOOK_TEST_URL\"\n")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try payhookBinary())
        process.arguments = ["serve", "--config", dir.file("pg.toml")]
        process.environment = ["PAYHOOK_TEST_URL": "host=\(dir.path) port=1 user=payhook password=hunter2 dbname=payhook connect_timeout=2"]
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 1)
        #expect(text.contains("cannot open the database store (the URL in $PAYHOOK_TEST_URL): cannot connect to the database"))
        #expect(!text.contains("hunter2"))
    }

    /// A spool with an acknowledged event, a waiting one, a taken one, a dead letter and a conflict copy moves
    /// into the database; run twice, nothing changes; served from the database afterwards, a retry of the
    /// acknowledged event is a duplicate and nothing is queued twice.
    @Test func importMovesASpoolAndIsIdempotent() throws {
        let cluster = try PostgresCluster.shared()
        let conninfo = try cluster.createDatabase("import")
        let database = String(conninfo.split(separator: "=").last!)
        let dir = try TemporaryDirectory()
        let spoolConfig = try Self.writeConfig(dir, conninfo: nil, name: "spool.toml")
        let pgConfig = try Self.writeConfig(dir, conninfo: conninfo, name: "pg.toml")
        let spool = dir.file("spool")
        #expect(try ProcessTests.run(["db", "migrate", "--config", pgConfig]).status == 0)

        // First an event that is acknowledged and one that becomes a dead letter, then (served again) one that
        // is left taken, one left waiting, and a conflicting variant of the acknowledged one.
        var (server, _, port) = try ProcessTests.startServe(spoolConfig)
        for order in ["acked", "dead"] {
            #expect(try Self.simulate(spoolConfig, port: port, order: order).status == 0)
            usleep(20_000)  // distinct received_at, so the take order is the order above
        }
        Self.stop(server)
        let acked = try ProcessTests.run(["queue", "take", "--spool", spool, "--format", "id"])
        let ackedID = acked.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try ProcessTests.run(["queue", "ack", "--spool", spool, ackedID]).status == 0)
        let consume = try ProcessTests.run([
            "queue", "consume", "--spool", spool, "--exec", "exit 3", "--max-attempts", "1", "--drain", "--concurrency", "1",
        ])
        #expect(try FileManager.default.contentsOfDirectory(atPath: spool + "/dead").contains { $0.hasSuffix(".json") && !$0.contains("error") }, "\(consume.stderr)")

        (server, _, port) = try ProcessTests.startServe(spoolConfig)
        for order in ["taken", "waiting"] {
            #expect(try Self.simulate(spoolConfig, port: port, order: order).status == 0)
            usleep(20_000)
        }
        #expect(try Self.simulate(spoolConfig, port: port, order: "acked", amount: 999).status == 0)  // a conflict copy

        // While served, the spool is refused: what the server stores next would be left behind.
        let busy = try ProcessTests.run(["db", "import", "--config", pgConfig, "--spool", spool])
        #expect(busy.status == 1)
        #expect(busy.stderr.contains("a payhook serve is running on"))
        Self.stop(server)
        #expect(try ProcessTests.run(["queue", "take", "--spool", spool, "--format", "id"]).status == 0)

        let first = try ProcessTests.run(["db", "import", "--config", pgConfig, "--spool", spool])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.contains("read 4 ledger entries"))
        #expect(first.stdout.contains("4 added (2 queued, 1 dead letters)"))
        #expect(first.stdout.contains("1 conflict copies added"))
        let again = try ProcessTests.run(["db", "import", "--config", pgConfig, "--spool", spool])
        #expect(again.status == 0)
        #expect(again.stdout.contains("0 added (0 queued, 0 dead letters), 4 already present"))
        #expect(again.stdout.contains("0 conflict copies added"))

        let rows = try cluster.psql(
            """
            SELECT l.order_ref || ':' || (l.acked_at IS NOT NULL) || ':' || coalesce(q.state, '-') || ':' || coalesce(q.attempts::text, '-')
              FROM payhook_ledger l LEFT JOIN payhook_queue q USING (id) ORDER BY l.order_ref
            """, database: database)
        #expect(rows.split(separator: "\n").map(String.init) == ["acked:true:-:-", "dead:false:dead:1", "taken:false:new:0", "waiting:false:new:0"])
        #expect(try cluster.psql("SELECT count(*) FROM payhook_conflict", database: database).hasPrefix("1"))
        #expect(try cluster.psql("SELECT value FROM payhook_settings WHERE name = 'ledger_retention_seconds'", database: database).hasPrefix("3153600000"))
        // The event bytes are the spool's, byte for byte.
        let waitingHex = try cluster.psql("SELECT encode(event, 'hex') FROM payhook_ledger WHERE order_ref = 'waiting'", database: database)
        let waitingFile = try FileManager.default.contentsOfDirectory(atPath: spool + "/new").first { $0.hasSuffix(".json") }
        #expect(waitingFile != nil)
        let waitingBytes = try Data(contentsOf: URL(fileURLWithPath: spool + "/new/" + (waitingFile ?? "")))
        #expect(waitingHex.trimmingCharacters(in: .whitespacesAndNewlines) == waitingBytes.map { String(format: "%02x", $0) }.joined())

        // Served from the database, the acknowledged payment's retry is a duplicate: nothing is queued again.
        let (pgServer, _, pgPort) = try ProcessTests.startServe(pgConfig)
        defer { Self.stop(pgServer) }
        #expect(try Self.simulate(pgConfig, port: pgPort, order: "acked").status == 0)
        #expect(try cluster.psql("SELECT count(*) FROM payhook_queue", database: database).hasPrefix("3"))
        #expect(try cluster.psql("SELECT seen_count FROM payhook_ledger WHERE order_ref = 'acked'", database: database).hasPrefix("2"))
    }
}
