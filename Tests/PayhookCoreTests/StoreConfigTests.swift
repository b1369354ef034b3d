import Foundation
import PayhookConfig
import PayhookCore
import Testing

/// `[store]` (docs/contract.md §7): the spool by default, PostgreSQL on request, and a database password never in
/// the config file.
@Suite struct StoreConfigTests {
    static let tenant = """

        [[unified]]
        path = "/u"
        domain_code = "a"
        secret = "s3cret-s3cret"
        """

    static func load(_ store: String, env: [String: String] = [:]) throws -> Config {
        try ConfigLoaderTests.loader(env: env).load(text: store + tenant, path: "/etc/payhook/p.toml").config
    }

    static func issues(_ store: String, env: [String: String] = [:]) -> [String] {
        ConfigLoaderTests.issues(store + tenant, env: env)
    }

    @Test func theSpoolIsTheDefault() throws {
        #expect(try Self.load("").store == .spool)
        #expect(try Self.load("[store]\nkind = \"spool\"\n").store == .spool)
    }

    @Test func postgresFromTheEnvironmentMayHoldAPassword() throws {
        let url = "postgresql://payhook:hunter2@db.internal:5432/payhook"
        let config = try Self.load("[store]\nkind = \"postgres\"\nurl_env = \"DB\"\nconnections = 12\ntimeout_s = 4\ninstance = \"a1\"\n", env: ["DB": url])
        guard case .postgres(let database) = config.store else {
            Issue.record("expected a postgres store, got \(config.store)")
            return
        }
        #expect(database.url.value == url)
        #expect(database.urlEnv == "DB")
        #expect(database.connections == 12)
        #expect(database.timeoutSeconds == 4)
        #expect(database.instance == "a1")
        // Whatever prints the settings never shows the URL.
        #expect(!"\(database)".contains("hunter2"))
        #expect(database.origin == "the URL in $DB")
    }

    /// An unset `threads` is two per core up to 64, at least 8 on the spool and 4 on PostgreSQL (a waiting request
    /// parks its connection, not its thread); a smaller `max_connections` still lowers it, and a `threads` the
    /// file sets is kept.
    @Test(arguments: [
        ("", -1), ("threads = 16\n", 16), ("max_connections = 3\n", 3),
        ("[store]\nkind = \"postgres\"\nurl = \"postgresql:///p\"\n", -1),
        ("max_connections = 3\n[store]\nkind = \"postgres\"\nurl = \"postgresql:///p\"\n", 3),
        ("threads = 40\n[store]\nkind = \"postgres\"\nurl = \"postgresql:///p\"\n", 40),
    ])
    func threadsDefaultFollowsTheCores(text: String, threads: Int) throws {
        let config = try Self.load(text)
        guard threads == -1 else {
            #expect(config.threads == threads)
            return
        }
        // -1: the default for this machine's cores and the configured store (checked by itself below).
        #expect(config.threads == Config.defaultThreads(for: config.store, cores: ProcessInfo.processInfo.activeProcessorCount))
        #expect(((config.store == .spool ? 8 : 4)...64).contains(config.threads))
    }

    /// Two per core up to 64 on either store; at least 8 on the spool, which answers duplicates on the listener
    /// thread, and at least 4 on PostgreSQL, where every callback parks while its batch commits.
    @Test(arguments: [(1, 8, 4), (2, 8, 4), (3, 8, 6), (4, 8, 8), (5, 10, 10), (16, 32, 32), (32, 64, 64), (96, 64, 64)])
    func threadsAreTwoPerCoreWithAFloorPerStore(cores: Int, spool: Int, postgres: Int) throws {
        let config = try Self.load("[store]\nkind = \"postgres\"\nurl = \"postgresql:///p\"\n")
        #expect(Config.defaultThreads(for: config.store, cores: cores) == postgres)
        #expect(Config.defaultThreads(for: .spool, cores: cores) == spool)
    }

    @Test func postgresInlineWithoutAPasswordIsAccepted() throws {
        let config = try Self.load("[store]\nkind = \"postgres\"\nurl = \"postgresql:///payhook?host=/run/postgresql\"\n")
        guard case .postgres(let database) = config.store else {
            Issue.record("expected a postgres store")
            return
        }
        #expect(database.url.value == "postgresql:///payhook?host=/run/postgresql")
        #expect(database.connections == nil)
        #expect(database.timeoutSeconds == DatabaseSettings.defaultTimeoutSeconds)
    }

    @Test(arguments: [
        "postgresql://payhook:hunter2@db/payhook",
        "postgres://u:@db/payhook",
        "postgresql://payhook@db/payhook?sslmode=require&password=hunter2",
        "host=db dbname=payhook password=hunter2",
        "host=db password = 'hunter2' dbname=payhook",
        "password=hunter2",
        "postgresql://payhook@db/payhook?%70assword=hunter2",
        "postgresql://payhook@db/payhook?PASSWORD=hunter2",
        // Found by the conninfo fuzz target: libpq ends the user information at the first "/" only, so a "?"
        // before the "@" hid this password from a check that stopped there.
        "postgres://u?x:hunter2@db/payhook",
    ])
    func anInlinePasswordIsRefusedAndNotRepeated(url: String) {
        let found = Self.issues("[store]\nkind = \"postgres\"\nurl = \"\(url)\"\n")
        #expect(found.count == 1)
        #expect(found.first?.contains("url holds a password") == true)
        #expect(found.first?.contains("url_env") == true)
        #expect(found.allSatisfy { !$0.contains("hunter2") })
    }

    @Test(arguments: [
        "postgresql://payhook@db/payhook",
        "postgresql:///payhook?host=/run/postgresql&user=payhook",
        "host=db dbname=payhook user=payhook passfile=/etc/payhook/pgpass",
        "host=/run/postgresql dbname=password_vault",
    ])
    func urlsWithoutAPasswordAreNotMistakenForOnes(url: String) {
        #expect(!ConnectionString.holdsPassword(url))
    }

    @Test func mistakesAreNamed() {
        #expect(Self.issues("[store]\nkind = \"mysql\"\n") == ["/etc/payhook/p.toml:2: [store] kind must be \"spool\" or \"postgres\""])
        #expect(Self.issues("[store]\nkind = \"postgres\"\n").first?.contains("needs url_env") == true)
        #expect(Self.issues("[store]\nkind = \"postgres\"\nurl = \"host=a\"\nurl_env = \"B\"\n", env: ["B": "host=b"]).first?.contains("not both") == true)
        #expect(Self.issues("[store]\nkind = \"postgres\"\nurl_env = \"MISSING\"\n") == ["/etc/payhook/p.toml:3: [store] url_env names $MISSING, which is not set or empty"])
        #expect(Self.issues("[store]\nurl = \"host=a\"\n") == ["/etc/payhook/p.toml:2: [store] url applies only to kind = \"postgres\""])
        #expect(Self.issues("[store]\nkind = \"postgres\"\nurl = \"host=a\"\nconnections = 0\n").first?.contains("connections must be") == true)
        #expect(Self.issues("[store]\nkind = \"postgres\"\nurl = \"host=a\"\ntimeout_s = 0\n").first?.contains("timeout_s must be") == true)
        #expect(Self.issues("[store]\nkind = \"postgres\"\nurl = \"host=a\"\nflavour = 1\n") == ["/etc/payhook/p.toml:4: unknown key 'flavour' in [store]"])
        #expect(Self.issues("store = \"postgres\"\n") == ["/etc/payhook/p.toml:1: store must be a table: [store]"])
    }
}
