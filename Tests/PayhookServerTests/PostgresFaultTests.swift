import Foundation
import PayhookConfig
import PayhookCore
import PayhookCrypto
import PayhookTestSupport
import PayhookTools
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `payhook serve` processes on a real PostgreSQL while things break: several instances racing on one event, an
/// instance killed under load, the database stopped, crashed, or warning that a commit was not replicated. The
/// promise checked each time is the router's: success only for an event that is in the database, exactly once.
///
/// One of the measuring suites: each test runs processes and clusters of its own and the machine is small.
extension MeasuringSuites {
@Suite(.timeLimit(.minutes(2)))
struct PostgresFaultTests {
    // MARK: - Tests

    /// Three instances, one database, 64 copies of one callback at once: every copy is answered success, and
    /// the database holds one event, queued once, seen 64 times.
    @Test func concurrentDuplicatesOverThreeInstancesAreOneEvent() throws {
        let cluster = try PostgresCluster.shared()
        let database = try migratedTestDatabase(cluster)
        let dir = try TemporaryDirectory()
        let instances = try (1...3).map { try Instance(dir: dir, conninfo: database, name: "race-\($0)") }
        defer { instances.forEach { $0.stop() } }
        let callback = try Callback(order: "race-\(UInt32.random(in: 0...UInt32.max))")

        let senders = (0..<64).map { index in
            let port = instances[index % instances.count].port
            return Background { Result { try HTTPReply.exchange(callback.request, port: port) } }
        }
        var replies: [HTTPReply] = []
        for sender in senders { replies.append(try #require(sender.join(timeout: .seconds(30))).get()) }
        #expect(replies.count == 64)
        #expect(replies.allSatisfy { $0.status == 200 && $0.body == "success" }, "\(replies.map(\.status))")

        #expect(try cluster.rows("SELECT count(*) FROM payhook_ledger", database) == ["1"])
        #expect(try cluster.rows("SELECT count(*) FROM payhook_queue", database) == ["1"])
        #expect(try cluster.rows("SELECT encode(id, 'hex'), seen_count FROM payhook_ledger", database) == ["\(callback.id)|64"])
    }

    /// SIGKILL of one of two instances while four clients send distinct events to both: every event answered
    /// success is in the database once, queued once; nothing is queued without its ledger row.
    @Test func killedInstanceLosesNoAcknowledgedEvent() throws {
        let cluster = try PostgresCluster.shared()
        let database = try migratedTestDatabase(cluster)
        let dir = try TemporaryDirectory()
        let instances = try (1...2).map { try Instance(dir: dir, conninfo: database, name: "kill-\($0)") }
        defer { instances.forEach { $0.stop() } }
        let load = Load(prefix: "kill", ports: instances.map(\.port))
        load.run(clients: 4)
        // Half-way through what the clients send, the first instance dies mid-request.
        #expect(waitUntil(timeout: .seconds(20)) { load.successes >= 60 })
        kill(instances[0].process.processIdentifier, SIGKILL)
        #expect(waitUntil(timeout: .seconds(20)) { load.successes >= 120 })
        let outcomes = load.finish()
        #expect(instances[0].exit.wait(timeout: .seconds(5)) == 128 + SIGKILL)

        let acknowledged = outcomes.filter(\.success).map(\.callback.id)
        #expect(acknowledged.count >= 120)
        try Self.checkStored(acknowledged, cluster: cluster, database: database)
        // The survivor kept serving: what the dead one dropped, a retry to it stores.
        #expect(outcomes.contains { !$0.success })
        for outcome in outcomes where !outcome.success {
            #expect(try HTTPReply.exchange(outcome.callback.request, port: instances[1].port).body == "success")
        }
        // A retry of one the dead instance stored before it could answer is a duplicate: seen twice, once stored.
        try Self.checkStored(outcomes.map(\.callback.id), cluster: cluster, database: database, seenOnce: false)
    }

    /// PostgreSQL stopped (`fast`) under load: from then on every callback is answered 503 with Retry-After and
    /// /healthz says 503 at once, without waiting for the store's deadline; nothing answered success is missing;
    /// once the server is back, the same payhook serves again by itself.
    @Test func stoppedDatabaseIs503AndServingResumesByItself() throws {
        let cluster = try PostgresCluster()
        defer { cluster.destroy() }
        let database = try migratedTestDatabase(cluster)
        let dir = try TemporaryDirectory()
        // A deadline far longer than "at once": a probe or store that waited for it would show.
        let instance = try Instance(dir: dir, conninfo: database, name: "stop", timeoutSeconds: 20)
        defer { instance.stop() }
        let load = Load(prefix: "stop", ports: [instance.port])
        load.run(clients: 2)
        #expect(waitUntil(timeout: .seconds(20)) { load.successes >= 30 })
        try cluster.stop(mode: "fast")
        let stopped = ContinuousClock.now
        usleep(300_000)

        let started = ContinuousClock.now
        let health = try HTTPReply.exchange(Self.healthz, port: instance.port)
        #expect(health.status == 503)
        #expect(health.headers["retry-after"] == "30")
        #expect(started.duration(to: .now) < .seconds(5), "/healthz waited for the database")
        let refused = try HTTPReply.exchange(try Callback(order: "stop-probe").request, port: instance.port)
        #expect(refused.status == 503)
        #expect(refused.headers["retry-after"] == "30")
        #expect(waitUntil(timeout: .seconds(10)) { load.count(sentAfter: stopped + .milliseconds(300)) >= 10 })

        // pg_ctl returns a moment after the server accepts sessions: "down" ends when it is asked to start.
        let restarting = ContinuousClock.now
        try cluster.start()
        let restarted = ContinuousClock.now
        // The pool's sessions died with the server: the next requests open new ones, no restart of payhook.
        #expect(waitUntil(timeout: .seconds(15)) {
            (try? HTTPReply.exchange(Self.healthz, port: instance.port).status) == 200
        })
        #expect(waitUntil(timeout: .seconds(15)) { load.count(sentAfter: restarted, success: true) >= 10 })
        let outcomes = load.finish()
        #expect(instance.isRunning)

        // Sent once the server was down and answered before it was started again: 503 with Retry-After, each.
        let whileDown = outcomes.filter { $0.sent > stopped + .milliseconds(300) && $0.answered < restarting }
        #expect(whileDown.count >= 10)
        #expect(whileDown.allSatisfy { $0.status == 503 && $0.retryAfter == "30" }, "\(whileDown.map(\.status))")
        try Self.checkStored(outcomes.filter(\.success).map(\.callback.id), cluster: cluster, database: database)
    }

    /// PostgreSQL crashed (SIGKILL to the postmaster, fsync on) and started again under load: every event
    /// answered success is in the database after recovery.
    @Test func crashedDatabaseLosesNoAcknowledgedEvent() throws {
        let cluster = try PostgresCluster(fsync: true)
        defer { cluster.destroy() }
        let database = try migratedTestDatabase(cluster)
        let dir = try TemporaryDirectory()
        let instance = try Instance(dir: dir, conninfo: database, name: "crash", timeoutSeconds: 5)
        defer { instance.stop() }
        let load = Load(prefix: "crash", ports: [instance.port])
        load.run(clients: 3)
        #expect(waitUntil(timeout: .seconds(20)) { load.successes >= 40 })
        try cluster.kill9()
        let killed = load.successes
        try cluster.start()
        let restarted = ContinuousClock.now
        #expect(waitUntil(timeout: .seconds(20)) { load.count(sentAfter: restarted, success: true) >= 20 })
        let outcomes = load.finish()

        let acknowledged = outcomes.filter(\.success).map(\.callback.id)
        #expect(acknowledged.count >= killed + 20)
        try Self.checkStored(acknowledged, cluster: cluster, database: database)
    }

    /// A commit whose wait for a synchronous standby is cancelled is durable locally only, and PostgreSQL says
    /// so with a WARNING: payhook answers 503. A duplicate sent while the original waits is not answered
    /// success either: it waits for the original, then for the standby itself, and is refused when that wait
    /// is cancelled too. Once replication is no longer required, the retry is a duplicate, answered success.
    @Test func cancelledSynchronousReplicationIs503ForTheEventAndItsDuplicate() throws {
        let cluster = try PostgresCluster()
        defer { cluster.destroy() }
        let database = try migratedTestDatabase(cluster)
        let dir = try TemporaryDirectory()
        let instance = try Instance(dir: dir, conninfo: database, name: "syncrep", timeoutSeconds: 20)
        defer { instance.stop() }
        let callback = try Callback(order: "syncrep-\(UInt32.random(in: 0...UInt32.max))")
        try cluster.psql("ALTER SYSTEM SET synchronous_standby_names = 'nonexistent'")
        try cluster.psql("SELECT pg_reload_conf()")
        defer {
            _ = try? cluster.psql("ALTER SYSTEM RESET synchronous_standby_names")
            _ = try? cluster.psql("SELECT pg_reload_conf()")
        }
        let port = instance.port
        func waiting(_ condition: String) -> Int {
            let rows = try? cluster.rows("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'payhook' AND \(condition)", "postgres")
            return rows.flatMap { $0.first }.flatMap { Int($0) } ?? -1
        }
        let syncRep = "wait_event = 'SyncRep'"
        let cancel = "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'payhook' AND wait_event = 'SyncRep'"

        let original = Background { Result { try HTTPReply.exchange(callback.request, port: port) } }
        #expect(waitUntil(timeout: .seconds(10)) { waiting(syncRep) == 1 })
        let duplicate = Background { Result { try HTTPReply.exchange(callback.request, port: port) } }
        // The duplicate's insert waits for the original's transaction, which has not ended.
        #expect(waitUntil(timeout: .seconds(10)) { waiting("wait_event_type = 'Lock'") == 1 })
        #expect(duplicate.join(timeout: .milliseconds(300)) == nil, "the duplicate was answered while the original waited")

        try cluster.psql(cancel)
        let first = try #require(original.join(timeout: .seconds(10))).get()
        #expect(first.status == 503)
        #expect(first.body == "fail")
        #expect(first.headers["retry-after"] == "30")
        // The original's row is committed locally; the duplicate's own commit now waits for the standby.
        #expect(waitUntil(timeout: .seconds(10)) { waiting(syncRep) == 1 })
        #expect(duplicate.join(timeout: .milliseconds(300)) == nil, "the duplicate was answered before its own commit was replicated")
        try cluster.psql(cancel)
        let second = try #require(duplicate.join(timeout: .seconds(10))).get()
        #expect(second.status == 503)
        #expect(second.headers["retry-after"] == "30")

        try cluster.psql("ALTER SYSTEM RESET synchronous_standby_names")
        try cluster.psql("SELECT pg_reload_conf()")
        #expect(waitUntil(timeout: .seconds(10)) {
            (try? HTTPReply.exchange(callback.request, port: port).body) == "success"
        })
        #expect(try cluster.rows("SELECT count(*) FROM payhook_queue", database) == ["1"])
        #expect(try cluster.rows("SELECT encode(id, 'hex') FROM payhook_ledger", database) == [callback.id])
    }

    // MARK: - Support

    /// /metrics while the database is stopped, then hung (every process of the cluster stopped with SIGSTOP, so
    /// that connections and statements get no answer at all): each scrape answers within the census's deadline
    /// plus a connection attempt, without the queue series (docs/metrics.md, "On PostgreSQL"); /healthz says why;
    /// the series come back by themselves once the database answers again.
    @Test func queueSeriesAreLeftOutWhileTheDatabaseDoesNotAnswer() throws {
        let cluster = try PostgresCluster()
        defer { cluster.destroy() }
        let live = try LiveServer(store: .postgres, database: try migratedTestDatabase(cluster))
        defer { live.stop() }
        func queueSeries(_ body: String) -> [String] {
            body.split(separator: "\n").map(String.init).filter {
                $0.hasPrefix("payhook_queue_oldest_event_age_seconds{") || $0.hasPrefix("payhook_spool_files{")
            }
        }
        #expect(queueSeries(try live.get("/metrics").body).count == 6)

        try cluster.stop(mode: "fast")
        let refused = ContinuousClock.now
        let down = try live.get("/metrics")
        #expect(refused.duration(to: .now) < .seconds(3))
        #expect(down.status == 200)
        #expect(queueSeries(down.body).isEmpty, "\(down.body)")
        #expect(down.body.contains("payhook_build_info{"))
        #expect(try HTTPReply.exchange(Self.healthz, port: live.port).status == 503)

        try cluster.start()
        #expect(waitUntil(timeout: .seconds(15)) { (try? queueSeries(live.get("/metrics").body).count) == 6 })
        // A census is reused for ten times as long as it took (QueueGauges); one that opened a new session takes
        // tens of milliseconds, so after this pause the next scrape asks the database again.
        usleep(3_000_000)

        let stopped = try Self.stopAll(cluster)
        defer { for pid in stopped { kill(pid, SIGCONT) } }
        let hung = ContinuousClock.now
        let silent = try live.get("/metrics")
        let took = hung.duration(to: .now)
        #expect(took < .seconds(8), "a scrape waited \(took) for a database that does not answer")
        #expect(silent.status == 200)
        #expect(queueSeries(silent.body).isEmpty, "\(silent.body)")
        // The census that timed out is not tried again at once: the next scrape does not wait.
        let again = ContinuousClock.now
        #expect(queueSeries(try live.get("/metrics").body).isEmpty)
        #expect(again.duration(to: .now) < .seconds(1))
    }

    /// SIGSTOP to the cluster's postmaster and every process it started (its children, from /proc); returns them.
    static func stopAll(_ cluster: PostgresCluster) throws -> [pid_t] {
        let pidFile = try String(contentsOfFile: cluster.directory + "/data/postmaster.pid", encoding: .utf8)
        let postmaster = try #require(pidFile.split(separator: "\n").first.flatMap { pid_t($0) })
        var pids = [postmaster]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = pid_t(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { continue }
            // "pid (comm) state ppid …": the parent is the second field after the command's closing parenthesis.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, pid_t(fields[1]) == postmaster { pids.append(pid) }
        }
        for pid in pids { kill(pid, SIGSTOP) }
        return pids
    }

    static let healthz = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

    /// Every id in `ids` has its ledger row; the queue has a row for each ledger row and none without one. With
    /// `seenOnce`, no row was stored or seen twice (the load sends each event once).
    static func checkStored(
        _ ids: [String], cluster: PostgresCluster, database: String, seenOnce: Bool = true,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let ledger = try cluster.rows("SELECT encode(id, 'hex') FROM payhook_ledger", database)
        #expect(Set(ledger).count == ledger.count, sourceLocation: sourceLocation)
        let missing = Set(ids).subtracting(ledger)
        #expect(missing.isEmpty, "answered success but not stored: \(missing.sorted())", sourceLocation: sourceLocation)
        let queued = try cluster.rows("SELECT count(*) FROM payhook_queue", database)
        #expect(queued == ["\(ledger.count)"], sourceLocation: sourceLocation)
        let orphans = try cluster.rows(
            "SELECT count(*) FROM payhook_queue q WHERE NOT EXISTS (SELECT 1 FROM payhook_ledger l WHERE l.id = q.id)", database)
        #expect(orphans == ["0"], sourceLocation: sourceLocation)
        guard seenOnce else { return }
        let twice = try cluster.rows("SELECT count(*) FROM payhook_ledger WHERE seen_count <> 1", database)
        #expect(twice == ["0"], "an event of the load was stored or seen twice", sourceLocation: sourceLocation)
    }

    /// A unified callback of the demo tenant for an order of its own, signed as the platform signs.
    struct Callback: Sendable {
        let request: [UInt8]
        /// The event id: the SHA-256 of its dedupe key, in hex.
        let id: String

        init(order: String) throws {
            var spec = CallbackBuilder.Spec(kind: .unified)
            spec.tenant = "demo"
            spec.orderRef = order
            let built = try CallbackBuilder.build(spec, config: try demoConfig(spool: "/nonexistent"))
            let target = built.path + "?" + (built.query ?? "")
            request = Array("GET \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
            id = Hex.encode(Digest.sha256(Array("unified/demo/\(order)/SUCCESSPAY".utf8)))
        }
    }

    /// One `payhook serve` on the database, on a port of its own; its log goes to a file in `dir`.
    final class Instance {
        let process: Process
        let exit: ChildExit
        let port: Int
        var isRunning: Bool { exit.isRunning }

        init(dir: TemporaryDirectory, conninfo: String, name: String, timeoutSeconds: Int = 10) throws {
            let secret = Paths.fixtures.appendingPathComponent("secrets/demo.secret").path
            try dir.write("\(name).toml", """
                listen = "127.0.0.1:0"
                shutdown_grace_s = 2
                ledger_retention_days = 36500
                max_connections_per_ip = 256

                [store]
                kind = "postgres"
                url = "\(conninfo)"
                connections = 8
                timeout_s = \(timeoutSeconds)
                instance = "\(name)"

                [[unified]]
                path = "/notify/unified"
                domain_code = "demo"
                secret_file = "\(secret)"
                """)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: try payhookBinary())
            process.arguments = ["serve", "--config", dir.file("\(name).toml"), "--listen", "127.0.0.1:0"]
            let out = Pipe()
            process.standardOutput = out
            _ = FileManager.default.createFile(atPath: dir.file("\(name).log"), contents: nil)
            process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: dir.file("\(name).log")))
            try process.run()
            var line = Data()
            while !line.contains(0x0a) {
                let chunk = out.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                line.append(chunk)
            }
            let text = String(decoding: line, as: UTF8.self)
            guard let match = text.firstMatch(of: #/payhook listening on 127\.0\.0\.1:(\d+) store postgres/#), let port = Int(match.1) else {
                process.terminate()
                let log = (try? String(contentsOfFile: dir.file("\(name).log"), encoding: .utf8)) ?? ""
                throw TestFailure("\(name) did not start: \(text) \(log)")
            }
            self.process = process
            self.exit = ChildExit(process)
            self.port = port
        }

        /// SIGTERM, then SIGKILL if it has not exited within a few seconds.
        func stop() {
            guard exit.isRunning else { return }
            kill(process.processIdentifier, SIGTERM)
            if exit.wait(timeout: .seconds(5)) == nil {
                kill(process.processIdentifier, SIGKILL)
                exit.wait(timeout: .seconds(5))
            }
        }
    }

    /// What became of one callback of a ``Load``.
    struct Outcome: Sendable {
        var callback: Callback
        var sent: ContinuousClock.Instant
        var answered: ContinuousClock.Instant
        /// nil: no answer (connection refused or reset, or no response within 10 s).
        var status: Int?
        var retryAfter: String?
        var success: Bool { status == 200 }
    }

    /// Client threads sending distinct callbacks, each to the next port in turn, one at a time per thread, until
    /// ``finish()``; every answer (or its absence) is recorded.
    final class Load: Sendable {
        let prefix: String
        let ports: [Int]
        private let outcomes = Mutex<[Outcome]>([])
        private let stopping = Latch()
        private let threads = Mutex<[Background<Void>]>([])

        init(prefix: String, ports: [Int]) {
            self.prefix = "\(prefix)-\(UInt32.random(in: 0...UInt32.max))"
            self.ports = ports
        }

        func run(clients: Int) {
            let started = (0..<clients).map { client in
                Background { [self] in
                    var number = 0
                    while !stopping.isOpen {
                        number += 1
                        // Building fails only if the demo config does: then the test's counts fail, not spin.
                        guard let callback = try? Callback(order: "\(prefix)-\(client)-\(number)") else { return }
                        let port = ports[number % ports.count]
                        let sent = ContinuousClock.now
                        let reply = try? HTTPReply.exchange(callback.request, port: port)
                        let outcome = Outcome(
                            callback: callback, sent: sent, answered: .now, status: reply?.status,
                            retryAfter: reply?.headers["retry-after"])
                        outcomes.withLock { $0.append(outcome) }
                        // A refused connection answers at once: no need to spin on it.
                        if reply == nil || reply?.status != 200 { usleep(20_000) }
                    }
                }
            }
            threads.withLock { $0 += started }
        }

        var successes: Int { outcomes.withLock { $0.filter(\.success).count } }

        func count(sentAfter instant: ContinuousClock.Instant, success: Bool? = nil) -> Int {
            outcomes.withLock { $0.filter { $0.sent > instant && (success == nil || $0.success == success) }.count }
        }

        /// Stops the clients, waits for their last answers, and returns every outcome.
        func finish() -> [Outcome] {
            stopping.open()
            for thread in threads.withLock({ $0 }) { _ = thread.join(timeout: .seconds(30)) }
            return outcomes.withLock { $0 }
        }
    }
}
}

extension PostgresCluster {
    /// The rows of `sql` on the database `conninfo` names, one line each (columns joined by `|`).
    func rows(_ sql: String, _ conninfo: String) throws -> [String] {
        let target = conninfo == "postgres" ? self.conninfo() : conninfo
        return try psql(sql, conninfo: target).split(separator: "\n").map(String.init)
    }
}
