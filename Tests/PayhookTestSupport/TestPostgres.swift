import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A private PostgreSQL cluster for tests, from Debian's `postgresql` package (`make test-deps` installs it):
/// initdb into a temporary folder, a unix socket there and no TCP port, removed when the test process ends.
///
/// Ordinary tests share one cluster (``shared``) and each takes a fresh database of its own
/// (``createDatabase(_:)``), so they run in parallel without seeing each other's rows. A test that stops, kills
/// or restarts the server starts a cluster of its own. As root, the server runs as the `postgres` user (initdb
/// refuses root). `PAYHOOK_TEST_PG_BINDIR` overrides where the binaries are looked for.
public final class PostgresCluster: Sendable {
    /// The folder holding `data/`, the socket and `server.log`.
    public let directory: String
    public let port: Int
    private let binaries: String
    private let asPostgresUser: Bool
    private let counter = Mutex(0)

    /// The cluster the ordinary tests share, started on first use.
    public static func shared() throws -> PostgresCluster {
        try sharedCluster.withLock { cluster in
            if let cluster { return cluster }
            let started = try PostgresCluster()
            cluster = started
            return started
        }
    }
    private static let sharedCluster = Mutex<PostgresCluster?>(nil)
    private static let running = Mutex<[PostgresCluster]>([])

    /// initdb and start a new cluster. `fsync` off is for tests that do not test durability; the fault tests
    /// keep it on.
    public init(fsync: Bool = false) throws {
        binaries = try Self.findBinaries()
        asPostgresUser = getuid() == 0
        var template = Array("/tmp/payhook-pg-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw TestFailure("mkdtemp: \(String(cString: strerror(errno)))") }
        directory = String(cString: made)
        port = 20000 + Int.random(in: 0..<20000)
        if asPostgresUser {
            try Self.command("/bin/chown", ["postgres:postgres", directory])
        }
        chmod(directory, 0o700)
        try runAsServerUser(
            binaries + "/initdb",
            ["-N", "-D", directory + "/data", "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"])
        var settings = "listen_addresses = ''\nunix_socket_directories = '\(directory)'\nport = \(port)\nmax_connections = 300\n"
        settings += "fsync = \(fsync ? "on" : "off")\nsynchronous_commit = on\nshared_buffers = 32MB\n"
        let conf = directory + "/data/postgresql.conf"
        let existing = (try? String(contentsOfFile: conf, encoding: .utf8)) ?? ""
        try (existing + "\n" + settings).write(toFile: conf, atomically: false, encoding: .utf8)
        try start()
        Self.running.withLock { $0.append(self) }
        Self.registerCleanup()
    }

    /// A libpq connection string for `database`.
    public func conninfo(database: String = "postgres") -> String {
        "host=\(directory) port=\(port) user=postgres dbname=\(database)"
    }

    /// Creates an empty database with a unique name and returns its connection string.
    public func createDatabase(_ prefix: String = "t") throws -> String {
        let number = counter.withLock { value -> Int in
            value += 1
            return value
        }
        let name = "\(prefix)_\(getpid())_\(number)_\(Int.random(in: 0..<1_000_000))"
        try psql("CREATE DATABASE \(name)")
        return conninfo(database: name)
    }

    /// Runs SQL through psql and returns its unaligned, tuples-only output.
    @discardableResult
    public func psql(_ sql: String, database: String = "postgres") throws -> String {
        try Self.command(binaries + "/psql", ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo(database: database), "-c", sql])
    }

    /// Runs SQL through psql on the database `conninfo` names (one ``createDatabase(_:)`` returned).
    @discardableResult
    public func psql(_ sql: String, conninfo: String) throws -> String {
        try Self.command(binaries + "/psql", ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-c", sql])
    }

    /// Starts the server (again) and waits until it accepts connections.
    public func start() throws {
        try runAsServerUser(binaries + "/pg_ctl", ["-D", directory + "/data", "-l", directory + "/server.log", "-w", "-t", "60", "start"])
    }

    /// Stops the server: `fast` ends sessions and shuts down cleanly, `immediate` is a crash for what is
    /// durable (recovery replays the WAL at the next start).
    public func stop(mode: String = "fast") throws {
        try runAsServerUser(binaries + "/pg_ctl", ["-D", directory + "/data", "-m", mode, "-w", "-t", "60", "stop"])
    }

    /// SIGKILL to the postmaster, as a crash of the server process would be; its backends end when they notice.
    public func kill9() throws {
        let pidFile = try String(contentsOfFile: directory + "/data/postmaster.pid", encoding: .utf8)
        guard let first = pidFile.split(separator: "\n").first, let pid = Int32(first) else {
            throw TestFailure("no pid in postmaster.pid")
        }
        kill(pid, SIGKILL)
        // Its children notice the postmaster is gone within a second; wait for the socket's lock to go.
        _ = waitUntil(timeout: .seconds(10)) { kill(pid, 0) != 0 }
        for file in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where file.hasPrefix(".s.PGSQL") {
            try? FileManager.default.removeItem(atPath: directory + "/" + file)
        }
        try? FileManager.default.removeItem(atPath: directory + "/data/postmaster.pid")
        // Backends of the killed postmaster may linger for a moment holding shared memory; start() retries.
        _ = waitUntil(timeout: .seconds(10)) {
            (try? Self.command("/usr/bin/pgrep", ["-f", "-u", asPostgresUser ? "postgres" : "\(getuid())", directory + "/data"])) == nil
        }
    }

    /// Stops the server at once and removes its folder.
    public func destroy() {
        try? stop(mode: "immediate")
        try? FileManager.default.removeItem(atPath: directory)
        Self.running.withLock { $0.removeAll { $0 === self } }
    }

    private func runAsServerUser(_ program: String, _ arguments: [String]) throws {
        if asPostgresUser {
            try Self.command("/usr/sbin/runuser", ["-u", "postgres", "--", program] + arguments)
        } else {
            try Self.command(program, arguments)
        }
    }

    /// Runs a program and returns what it wrote. Its output goes to a file rather than a pipe, so that nothing a
    /// program leaves running (`pg_ctl start` leaves the server) can keep the read from ending.
    @discardableResult
    static func command(_ program: String, _ arguments: [String]) throws -> String {
        var template = Array("/tmp/payhook-pg-out-XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        guard fd >= 0 else { throw TestFailure("mkstemp: \(String(cString: strerror(errno)))") }
        let outputPath = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        defer { unlink(outputPath) }
        let output = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = arguments
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Not waitUntilExit(): it can miss the exit of `runuser` and wait forever (ChildExit says why).
        let exit = ChildExit(process)
        guard let status = exit.wait(timeout: .seconds(120)) else {
            throw TestFailure("\((program as NSString).lastPathComponent) did not exit")
        }
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        guard status == 0 else {
            throw TestFailure("\((program as NSString).lastPathComponent) exited \(status): \(text)")
        }
        return text
    }

    private static func findBinaries() throws -> String {
        if let explicit = ProcessInfo.processInfo.environment["PAYHOOK_TEST_PG_BINDIR"] { return explicit }
        if let bindir = try? command("/usr/bin/pg_config", ["--bindir"]).trimmingCharacters(in: .whitespacesAndNewlines),
            FileManager.default.isExecutableFile(atPath: bindir + "/initdb")
        {
            return bindir
        }
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        for version in versions.sorted(by: >) where FileManager.default.isExecutableFile(atPath: "/usr/lib/postgresql/\(version)/bin/initdb") {
            return "/usr/lib/postgresql/\(version)/bin"
        }
        throw TestFailure("PostgreSQL's server binaries (initdb, pg_ctl) are not installed: run `make test-deps` (Debian package postgresql)")
    }

    private static let cleanup: Void = {
        atexit {
            let clusters = PostgresCluster.running.withLock { $0 }
            for cluster in clusters { cluster.destroy() }
        }
    }()

    private static func registerCleanup() {
        _ = cleanup
    }
}
