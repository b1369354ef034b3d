import Foundation
import PayhookConfig
import PayhookCore
import PayhookHTTP
import PayhookServer
import PayhookTestSupport
import PayhookTools
import Synchronization
import Testing

/// `/metrics`: Prometheus text exposition whose counters move with each outcome.
@Suite(.timeLimit(.minutes(2)))
struct MetricsTests {
    static func scrape(_ live: LiveServer) throws -> [String: Double] {
        let reply = try live.get("/metrics")
        #expect(reply.status == 200)
        #expect(reply.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true)
        var samples: [String: Double] = [:]
        for line in reply.body.split(separator: "\n") where !line.hasPrefix("#") {
            // name{labels} value, the exposition format's sample line.
            let match = line.wholeMatch(of: #/([a-z_]+(?:\{[^}]*\})?) (-?[0-9.e+-]+|\+Inf|NaN)/#)
            #expect(match != nil, "not a sample line: \(line)")
            if let match { samples[String(match.1)] = Double(match.2) }
        }
        return samples
    }

    /// Scrapes until `condition` holds (a queue census may be reused for a while after a slow one: QueueGauges),
    /// at most 35 s; returns the last scrape, which the caller's expectations then check.
    static func scrape(_ live: LiveServer, until condition: ([String: Double]) -> Bool) throws -> [String: Double] {
        var samples = try scrape(live)
        let deadline = ContinuousClock.now + .seconds(35)
        while !condition(samples), ContinuousClock.now < deadline {
            usleep(20_000)
            samples = try scrape(live)
        }
        return samples
    }

    @Test func countersMoveWithEachOutcome() throws {
        let disk = FailingDisk()
        let live = try LiveServer(fileSystem: disk)
        defer { live.stop() }
        let success = try Paths.fixture("unified/success.query")
        let before = try Self.scrape(live)
        #expect(before["payhook_requests_total{source=\"unified\",tenant=\"demo\",outcome=\"accepted\"}"] == nil)
        #expect(before["payhook_build_info{version=\"0.1.0\",commit=\"unknown\",schema=\"payhook.event.v1\"}"] == 1)

        _ = try live.get("/notify/unified?" + success)
        _ = try live.get("/notify/unified?" + success)
        _ = try live.get("/notify/unified?" + (try Paths.fixture("unified/conflict.query")))
        _ = try live.get("/notify/unified?" + (try Paths.fixture("unified/tampered.query")))
        _ = try live.get("/notify/unified?" + success.replacing("domainCode=demo", with: "domainCode=attacker-chosen"))
        _ = try live.get("/notify/unified?" + success + "&money=1")
        _ = try live.get("/nowhere")
        _ = try WeChatLiveTests.post(live, Array(try Data(contentsOf: Paths.fixtures.appendingPathComponent("wechat/refund.xml"))))
        disk.failure.withLock { $0 = ENOSPC }
        _ = try live.get("/notify/unified?" + (try Paths.fixture("unified/refund.query")))
        disk.failure.withLock { $0 = nil }

        let after = try Self.scrape(live) { $0["payhook_spool_files{folder=\"new\"}"] == 2 }
        func requests(_ source: String, _ tenant: String, _ outcome: String) -> Double? {
            after["payhook_requests_total{source=\"\(source)\",tenant=\"\(tenant)\",outcome=\"\(outcome)\"}"]
        }
        #expect(requests("unified", "demo", "accepted") == 1)
        #expect(requests("unified", "demo", "duplicate") == 1)
        #expect(requests("unified", "demo", "conflict") == 1)
        #expect(requests("unified", "demo", "bad_signature") == 1)
        #expect(requests("unified", "", "unknown_tenant") == 1)
        // A malformed query cannot be attributed to a tenant.
        #expect(requests("unified", "", "malformed") == 1)
        #expect(requests("", "", "not_found") == 1)
        #expect(requests("wechat.refund", "10000100", "accepted") == 1)
        #expect(requests("unified", "demo", "storage_error") == 1)
        #expect(after["payhook_storage_errors_total{error=\"ENOSPC\"}"] == 1)
        #expect(after["payhook_verified_secret_position_total{source=\"unified\",tenant=\"demo\",position=\"1\"}"] == 3)
        #expect(after["payhook_verified_secret_position_total{source=\"wechat.refund\",tenant=\"10000100\",position=\"1\"}"] == 1)
        // Every request that reached the unified route: 7 above, counted whatever their outcome.
        #expect(after["payhook_request_duration_seconds_count{route=\"unified\"}"] == 7)
        #expect(after["payhook_request_duration_seconds_bucket{route=\"unified\",le=\"+Inf\"}"] == 7)
        #expect(after["payhook_request_duration_seconds_count{route=\"wechat\"}"] == 1)
        #expect(after["payhook_spool_files{folder=\"new\"}"] == 2)
        #expect(after["payhook_spool_files{folder=\"conflicts\"}"] == 1)
        #expect(after["payhook_inflight_requests"] == 1)  // the scrape itself
        // Group commit: the two stored events went through the writer (one at a time here), the duplicate and
        // the conflict's audit copy did not, and the failed store never reached it.
        #expect(after["payhook_spool_commit_batch_size_count"] == 2)
        #expect(after["payhook_spool_commit_batch_size_sum"] == 2)
        #expect(after["payhook_spool_commit_batch_size_bucket{le=\"1\"}"] == 2)
        #expect(after["payhook_spool_commit_batch_size_bucket{le=\"+Inf\"}"] == 2)
        #expect(before["payhook_spool_commit_batch_size_count"] == 0)
        // Request text never becomes a label.
        #expect(!after.keys.contains { $0.contains("attacker-chosen") })
    }

    /// The queue gauges: every folder's series from the first scrape, dead letters counted once however many
    /// files they have, and the age of the oldest waiting and taken event, which is what shows a stuck consumer.
    @Test func queueSeriesArePresentFromStartAndFollowTheOldestEvent() throws {
        let live = try LiveServer()
        defer { live.stop() }
        func files(_ samples: [String: Double], _ folder: String) -> Double? { samples["payhook_spool_files{folder=\"\(folder)\"}"] }
        func age(_ samples: [String: Double], _ folder: String) -> Double? {
            samples["payhook_queue_oldest_event_age_seconds{folder=\"\(folder)\"}"]
        }
        let start = try Self.scrape(live)
        for folder in ["new", "cur", "dead", "conflicts", "corrupt"] { #expect(files(start, folder) == 0, "\(folder)") }
        #expect(age(start, "new") == 0 && age(start, "cur") == 0)

        _ = try live.get("/notify/unified?" + (try Paths.fixture("unified/success.query")))
        _ = try live.get("/notify/unified?" + (try Paths.fixture("unified/refund.query")))
        let stored = live.events()
        try #require(stored.count == 2)
        // The first arrived an hour ago, as far as the spool can tell: its file was written then.
        let old = stored[0]
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-3600)], ofItemAtPath: live.spool + "/new/" + old)
        let waiting = try Self.scrape(live) { age($0, "new") ?? 0 > 3000 }
        #expect(files(waiting, "new") == 2)
        #expect((3599...3660).contains(age(waiting, "new") ?? -1), "\(String(describing: age(waiting, "new")))")
        #expect(age(waiting, "cur") == 0)

        // A consumer takes it (rename keeps the file's time): new/ holds only the fresh one, cur/ the old one.
        #expect(rename(live.spool + "/new/" + old, live.spool + "/cur/" + old) == 0)
        let taken = try Self.scrape(live) { files($0, "cur") == 1 }
        #expect((0..<60).contains(age(taken, "new") ?? -1))
        #expect((3599...3660).contains(age(taken, "cur") ?? -1))

        // It becomes a dead letter: the event and its error record, one event.
        let id = String(old.dropLast(5))
        try FileManager.default.createDirectory(atPath: live.spool + "/dead", withIntermediateDirectories: true)
        #expect(rename(live.spool + "/cur/" + old, live.spool + "/dead/" + old) == 0)
        try Data("{}".utf8).write(to: URL(fileURLWithPath: live.spool + "/dead/\(id).error.json"))
        let dead = try Self.scrape(live) { files($0, "cur") == 0 }
        #expect(files(dead, "dead") == 1)
        #expect(files(dead, "cur") == 0)
        #expect(age(dead, "cur") == 0)
        #expect(files(dead, "new") == 1)
    }

    /// The same gauges on PostgreSQL, from the queue's states and the ledger's `received_at`.
    @Test func queueSeriesOnPostgres() throws {
        let live = try LiveServer(store: .postgres)
        defer { live.stop() }
        func files(_ samples: [String: Double], _ folder: String) -> Double? { samples["payhook_spool_files{folder=\"\(folder)\"}"] }
        func age(_ samples: [String: Double], _ folder: String) -> Double? {
            samples["payhook_queue_oldest_event_age_seconds{folder=\"\(folder)\"}"]
        }
        let start = try Self.scrape(live)
        for folder in ["new", "cur", "dead", "conflicts"] { #expect(files(start, folder) == 0, "\(folder)") }
        #expect(age(start, "new") == 0 && age(start, "cur") == 0)

        _ = try live.get("/notify/unified?" + (try Paths.fixture("unified/success.query")))
        _ = try live.get("/notify/unified?" + (try Paths.fixture("unified/refund.query")))
        let ids = try live.sql("SELECT encode(id, 'hex') FROM payhook_queue ORDER BY 1")
        try #require(ids.count == 2)
        _ = try live.sql("UPDATE payhook_ledger SET received_at = now() - interval '1 hour' WHERE id = decode('\(ids[0])', 'hex')")
        let waiting = try Self.scrape(live) { age($0, "new") ?? 0 > 3000 }
        #expect(files(waiting, "new") == 2)
        #expect((3599...3660).contains(age(waiting, "new") ?? -1), "\(String(describing: age(waiting, "new")))")
        #expect(age(waiting, "cur") == 0)

        _ = try live.sql("UPDATE payhook_queue SET state = 'cur' WHERE id = decode('\(ids[0])', 'hex')")
        let taken = try Self.scrape(live) { files($0, "cur") == 1 }
        #expect((0..<60).contains(age(taken, "new") ?? -1))
        #expect((3599...3660).contains(age(taken, "cur") ?? -1))

        _ = try live.sql("UPDATE payhook_queue SET state = 'dead' WHERE id = decode('\(ids[0])', 'hex')")
        let dead = try Self.scrape(live) { files($0, "cur") == 0 }
        #expect(files(dead, "dead") == 1)
        #expect(age(dead, "cur") == 0)
    }

    @Test func semanticRejectionsAreCountedApart() throws {
        let live = try LiveServer()
        defer { live.stop() }
        var spec = CallbackBuilder.Spec(kind: .unified)
        spec.tenant = "demo"
        spec.status = "PAID"
        let built = try CallbackBuilder.build(spec, config: try demoConfig(spool: "/x"))
        #expect(try live.get("/notify/unified?" + (built.query ?? "")).status == 400)
        #expect(try Self.scrape(live)["payhook_requests_total{source=\"unified\",tenant=\"demo\",outcome=\"rejected\"}"] == 1)
    }
}

/// `Metrics` on its own, without a server.
@Suite struct MetricsRegistryTests {
    /// The sample lines of an exposition, `name{labels}` → value as printed.
    static func samples(_ text: String) -> [String: String] {
        var samples: [String: String] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " ") else { continue }
            samples[String(line[..<space])] = String(line[line.index(after: space)...])
        }
        return samples
    }

    /// Each instance has its own registry (no process-wide bootstrap), so two servers in one process, as in
    /// these tests, count apart.
    @Test func instancesCountApart() {
        let first = Metrics()
        let second = Metrics()
        first.request(source: "unified", tenant: "demo", outcome: "accepted", route: "unified", seconds: 0.002)
        first.request(source: "unified", tenant: "demo", outcome: "accepted", route: "unified", seconds: 0.002)
        second.request(source: "unified", tenant: "demo", outcome: "duplicate", route: "unified", seconds: nil)
        first.verified(source: "unified", tenant: "demo", position: 2)
        first.storageError("EIO")

        let text = first.render()
        let samples = Self.samples(text)
        let others = Self.samples(second.render())
        let accepted = "payhook_requests_total{source=\"unified\",tenant=\"demo\",outcome=\"accepted\"}"
        let duplicate = "payhook_requests_total{source=\"unified\",tenant=\"demo\",outcome=\"duplicate\"}"
        #expect(samples[accepted] == "2")
        #expect(samples[duplicate] == nil)
        #expect(others[accepted] == nil)
        #expect(others[duplicate] == "1")
        #expect(samples["payhook_request_duration_seconds_bucket{route=\"unified\",le=\"0.001\"}"] == "0")
        #expect(samples["payhook_request_duration_seconds_bucket{route=\"unified\",le=\"0.0025\"}"] == "2")
        #expect(samples["payhook_request_duration_seconds_count{route=\"unified\"}"] == "2")
        #expect(samples["payhook_verified_secret_position_total{source=\"unified\",tenant=\"demo\",position=\"2\"}"] == "1")
        #expect(samples["payhook_storage_errors_total{error=\"EIO\"}"] == "1")
        #expect(text.contains("# HELP payhook_requests_total Callback requests by source, tenant and outcome.\n# TYPE payhook_requests_total counter\n"))
        #expect(text.contains("# TYPE payhook_request_duration_seconds histogram\n"))
        // A request with no latency (answered before routing) is counted but not timed.
        #expect(Self.samples(second.render()).keys.allSatisfy { !$0.hasPrefix("payhook_request_duration_seconds") })
    }

    /// A reading's series follow each scrape: a gauge takes the new value, a counter kept elsewhere is copied
    /// whole (an integer, and lower again if its keeper starts over), and a label set no longer returned is gone.
    @Test func readingsFollowEachScrape() {
        let metrics = Metrics()
        let state = Mutex((folders: ["new": 3.0, "dead": 1.0], failures: 5.0))
        metrics.gauge("payhook_test_files", help: "Files by folder.") {
            state.withLock { s in s.folders.map { ([("folder", $0.key)], $0.value) } }
        }
        metrics.gauge("payhook_test_failures", help: "Failures kept elsewhere.", type: "counter") {
            [([], state.withLock { $0.failures })]
        }
        let before = metrics.render()
        #expect(before.contains("# TYPE payhook_test_files gauge\n"))
        #expect(before.contains("# TYPE payhook_test_failures counter\n"))
        #expect(Double(Self.samples(before)["payhook_test_files{folder=\"dead\"}"] ?? "") == 1)
        #expect(Self.samples(before)["payhook_test_failures"] == "5")

        state.withLock { $0 = (folders: ["new": 4], failures: 2) }
        let after = Self.samples(metrics.render())
        #expect(Double(after["payhook_test_files{folder=\"new\"}"] ?? "") == 4)
        #expect(after["payhook_test_files{folder=\"dead\"}"] == nil)
        #expect(after["payhook_test_failures"] == "2")
    }
}

/// docs/metrics.md against what runs: every metric family a running `payhook serve` and a running `payhook queue
/// consume --metrics-listen` expose has a row there with its type and process, and every row is exposed by the
/// processes it names. An undocumented metric, or a row for one that is gone, fails.
@Suite(.timeLimit(.minutes(2)))
struct MetricsDocumentationTests {
    struct Row: Equatable {
        var type: String
        var exposedBy: Set<String>
    }

    /// The rows of docs/metrics.md's tables, by metric name.
    static func documented() throws -> [String: Row] {
        let text = try String(contentsOfFile: URL(fileURLWithPath: repositoryRoot).appendingPathComponent("docs/metrics.md").path, encoding: .utf8)
        var rows: [String: Row] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("| `payhook_") {
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).dropFirst().map {
                $0.trimmingCharacters(in: .whitespaces)
            }
            try #require(cells.count >= 6, "docs/metrics.md: a row without its six cells: \(line)")
            let name = String(cells[0].dropFirst().prefix { $0 != "`" && $0 != "{" })
            #expect(rows[name] == nil, "docs/metrics.md: \(name) has two rows")
            rows[name] = Row(
                type: cells[1], exposedBy: Set(cells[3].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }))
        }
        return rows
    }

    /// The metric families of an exposition with their types, from its `# TYPE` lines; every sample line must
    /// belong to one of them.
    static func families(_ exposition: String) -> [String: String] {
        var types: [String: String] = [:]
        for line in exposition.split(separator: "\n") where line.hasPrefix("# TYPE ") {
            let parts = line.split(separator: " ")
            if parts.count == 4 { types[String(parts[2])] = String(parts[3]) }
        }
        for line in exposition.split(separator: "\n") where !line.hasPrefix("#") {
            let name = String(line.prefix { $0 != "{" && $0 != " " })
            let family = ["_bucket", "_sum", "_count"].reduce(name) { name, suffix in
                types[name] == nil && name.hasSuffix(suffix) ? String(name.dropLast(suffix.count)) : name
            }
            #expect(types[family] != nil, "a sample without its # TYPE line: \(line)")
        }
        return types
    }

    /// Compares what `process` exposes with the rows that name it, both ways, and the types.
    static func compare(_ exposed: [String: String], process: String, documented: [String: Row]) {
        let expected = Set(documented.filter { $0.value.exposedBy.contains(process) }.keys)
        let names = Set(exposed.keys)
        #expect(names.subtracting(expected).isEmpty, "\(process) exposes metrics docs/metrics.md does not list for it: \(names.subtracting(expected).sorted())")
        #expect(expected.subtracting(names).isEmpty, "docs/metrics.md lists metrics \(process) did not expose: \(expected.subtracting(names).sorted())")
        for (name, type) in exposed {
            if let row = documented[name] { #expect(row.type == type, "\(name) is a \(type), documented as \(row.type)") }
        }
    }

    @Test func everyMetricOfServeIsDocumented() throws {
        let documented = try Self.documented()
        // A server driven until every family it can have exists: an accepted callback (requests, latency, secret
        // position), a failed store (storage errors), WeChat Pay v3 notifications (key checks, clock skew, a
        // SIGNTEST probe, an unknown serial).
        let disk = FailingDisk()
        let vectors = try WeChatV3LiveTests.vectors()
        let clock = WeChatV3LiveTests.Clock()
        clock.set(Router.wallClock())
        let tenants = try WeChatV3LiveTests.tenants()
        let live = try LiveServer(fileSystem: disk, configure: { $0.wechatV3 = tenants }, clock: { clock.now })
        defer { live.stop() }
        #expect(try live.get("/notify/unified?" + (try Paths.fixture("unified/success.query"))).status == 200)
        disk.failure.withLock { $0 = ENOSPC }
        #expect(try live.get("/notify/unified?" + (try Paths.fixture("unified/refund.query"))).status == 503)
        disk.failure.withLock { $0 = nil }
        let v4 = try #require(vectors["V3-4"])
        clock.set(WeChatV3LiveTests.signedAt(v4) + 7_000)
        #expect(try WeChatV3LiveTests.post(live, v4).status == 204)
        let probe = v4.headers.merging(["Wechatpay-Signature": "WECHATPAY/SIGNTEST/" + v4.headers["Wechatpay-Signature"]!]) { $1 }
        #expect(try WeChatV3LiveTests.post(live, v4, headers: probe).status == 401)
        #expect(try WeChatV3LiveTests.post(live, v4, headers: v4.headers.merging(["Wechatpay-Serial": "1234ABCD"]) { $1 }).status == 401)
        var exposed = Self.families(try live.get("/metrics").body)

        // Native TLS adds the certificate's expiry: a server with a certificate, read in process (it speaks HTTPS only).
        let dir = try TemporaryDirectory()
        let certificate = try TestCertificate.make(in: dir, name: "metrics")
        let tls = try LiveServer(configure: { $0.tls = TLSCredentials(certificatePEM: certificate.certificatePEM, keyPEM: certificate.keyPEM) })
        defer { tls.stop() }
        exposed.merge(Self.families(tls.server.metrics.render())) { first, _ in first }
        Self.compare(exposed, process: "serve", documented: documented)
    }

    @Test func everyMetricOfConsumeIsDocumented() throws {
        let documented = try Self.documented()
        let live = try LiveServer()
        defer { live.stop() }
        #expect(try live.get("/notify/unified?" + (try Paths.fixture("unified/success.query"))).status == 200)
        let dir = try TemporaryDirectory()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try payhookBinary())
        process.arguments = ["queue", "consume", "--spool", live.spool, "--exec", "true", "--metrics-listen", "127.0.0.1:0"]
        _ = FileManager.default.createFile(atPath: dir.file("stdout"), contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: dir.file("stdout"))
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer {
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
        }
        var port: Int?
        #expect(waitUntil(timeout: .seconds(10)) {
            let out = (try? String(contentsOfFile: dir.file("stdout"), encoding: .utf8)) ?? ""
            port = out.firstMatch(of: #/metrics on 127\.0\.0\.1:(\d+)\n/#).flatMap { Int($0.1) }
            return port != nil
        })
        let reply = try HTTPReply.exchange(
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", port: try #require(port))
        #expect(reply.status == 200)
        Self.compare(Self.families(reply.body), process: "consume", documented: documented)
    }
}
