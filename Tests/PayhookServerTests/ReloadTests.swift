import Foundation
import PayhookAlipay
import PayhookCore
import PayhookTestSupport
import PayhookUnified
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension MeasuringSuites {
/// SIGHUP reloads the tenants' secrets and keys without a restart; SIGUSR1, SIGUSR2 and SIGPIPE never stop the
/// server (docs/reload.md). Through the real binary: signals are the point.
@Suite(.timeLimit(.minutes(2)))
struct ReloadTests {
    static let oldSecret = "reload-old-secret-5b1f9c"
    static let newSecret = "reload-new-secret-7d2e4a"

    /// A unified callback for tenant `domain` with its own request key, signed (values-sha1) with `secret`; a
    /// GET request on a keep-alive connection unless `close`.
    static func unified(_ key: String, secret: String, domain: String = "demo", close: Bool = false) throws -> String {
        let fixture = try FormQuery.decode(try Paths.fixture("unified/success.query"))
        let parameters = fixture.filter { $0.name != "sign" }.map { parameter in
            switch parameter.name {
            case "requestKey": FormParameter(name: "requestKey", value: "reload-\(key)")
            case "orderSn": FormParameter(name: "orderSn", value: "reload-order-\(key)")
            case "domainCode": FormParameter(name: "domainCode", value: domain)
            default: parameter
            }
        }
        let sign = UnifiedSigner.sign(parameters, scheme: .valuesSHA1, secret: secret)
        let query = UnifiedSigner.query(parameters + [FormParameter(name: "sign", value: sign)])
        return "GET /notify/unified?\(query) HTTP/1.1\r\nHost: 127.0.0.1\r\n\(close ? "Connection: close\r\n" : "")\r\n"
    }

    /// One callback on a new connection.
    static func send(_ request: String, to child: ServeChild) throws -> HTTPReply {
        try HTTPReply.exchange(request, port: child.port)
    }

    /// One response on an open keep-alive connection.
    static func exchange(_ client: RawClient, _ request: String) throws -> HTTPReply {
        client.send(request)
        return HTTPReply(try #require(client.readResponse(timeout: .seconds(10)), "no response on the kept-alive connection"))
    }

    static func config(_ dir: TemporaryDirectory, tenants: String = "", extra: String = "") throws -> String {
        try dir.write("payhook.toml", """
            listen = "127.0.0.1:0"
            spool = "spool"
            shutdown_grace_s = 5
            ledger_retention_days = 36500
            \(extra)

            [[unified]]
            path = "/notify/unified"
            domain_code = "demo"
            secret_file = "tenant.secret"
            \(tenants)
            """)
        return dir.file("payhook.toml")
    }

    /// The secret file is rotated: the old secret verifies before SIGHUP, the new one after it and the old one no
    /// longer, and the keep-alive connection opened before the reload serves requests on both sides of it.
    @Test func sighupRotatesAUnifiedSecretWithoutDroppingAKeptAliveConnection() throws {
        let dir = try TemporaryDirectory()
        try dir.write("tenant.secret", Self.oldSecret + "\n")
        let child = try ServeChild(config: try Self.config(dir), log: dir.file("payhook.log"))
        let metrics = try child.metrics()
        #expect(try ServeChild.sample(metrics, #"payhook_reloads_total{result="ok"}"#) == 0)
        #expect(try ServeChild.sample(metrics, #"payhook_reloads_total{result="failed"}"#) == 0)
        #expect(try ServeChild.sample(metrics, "payhook_last_reload_success_timestamp_seconds") == 0)

        let client = try RawClient(port: child.port)
        let before = try Self.exchange(client, try Self.unified("1", secret: Self.oldSecret))
        #expect(before.status == 200)
        #expect(before.body == "success")

        try dir.write("tenant.secret", Self.newSecret + "\n")
        let started = Int(Date().timeIntervalSince1970)
        try child.reload()
        #expect(try child.reloads() == (ok: 1, failed: 0))
        #expect(try ServeChild.sample(try child.metrics(), "payhook_last_reload_success_timestamp_seconds") >= started)

        // The same TCP connection, still open: a new one could not reuse this socket.
        #expect(client.readSome(timeout: .milliseconds(200)) == .timedOut, "the kept-alive connection was closed by the reload")
        let after = try Self.exchange(client, try Self.unified("2", secret: Self.newSecret))
        #expect(after.status == 200)
        #expect(after.body == "success")
        let old = try Self.send(try Self.unified("3", secret: Self.oldSecret, close: true), to: child)
        #expect(old.status == 401)
        #expect(listing(dir.file("spool/new")).count == 2)

        #expect(child.log.contains("reloaded"))
        #expect(!child.log.contains(Self.oldSecret) && !child.log.contains(Self.newSecret))
    }

    /// A reload that fails keeps every old key: a deleted secret file, then a config syntax error with a new
    /// secret file beside it (nothing of it half-applied). Each is logged at error level with the file and the
    /// reason, and counted; a good config afterwards applies, with a tenant added.
    @Test func aFailedReloadKeepsTheOldSecretsWhole() throws {
        let dir = try TemporaryDirectory()
        try dir.write("tenant.secret", Self.oldSecret + "\n")
        let config = try Self.config(dir)
        let child = try ServeChild(config: config, log: dir.file("payhook.log"))

        try FileManager.default.removeItem(atPath: dir.file("tenant.secret"))
        try child.reload()
        #expect(try child.reloads() == (ok: 0, failed: 1))
        #expect(try Self.send(try Self.unified("1", secret: Self.oldSecret, close: true), to: child).status == 200)
        let missing = child.log.split(separator: "\n").first { $0.contains("reload failed") }
        #expect(missing?.contains(" level=error ") == true, "\(child.log)")
        #expect(missing?.contains("cannot read secret_file \(dir.file("tenant.secret")): No such file or directory") == true, "\(child.log)")

        try dir.write("tenant.secret", Self.newSecret + "\n")
        try dir.write("payhook.toml", (try String(contentsOfFile: config, encoding: .utf8)) + "\n[[unified\n")
        try child.reload()
        #expect(try child.reloads() == (ok: 0, failed: 2))
        #expect(try Self.send(try Self.unified("2", secret: Self.oldSecret, close: true), to: child).status == 200)
        #expect(try Self.send(try Self.unified("3", secret: Self.newSecret, close: true), to: child).status == 401)
        #expect(child.log.contains("\(config):"), "the syntax error names the config file")
        #expect(try ServeChild.sample(try child.metrics(), "payhook_last_reload_success_timestamp_seconds") == 0)

        try dir.write("added.secret", "reload-added-secret-93ac1f\n")
        _ = try Self.config(dir, tenants: """

            [[unified]]
            path = "/notify/unified"
            domain_code = "added"
            secret_file = "added.secret"
            """)
        try child.reload()
        #expect(try child.reloads() == (ok: 1, failed: 2))
        #expect(try Self.send(try Self.unified("4", secret: Self.newSecret, close: true), to: child).status == 200)
        #expect(try Self.send(try Self.unified("5", secret: "reload-added-secret-93ac1f", domain: "added", close: true), to: child).status == 200)
        #expect(try Self.send(try Self.unified("6", secret: Self.oldSecret, close: true), to: child).status == 401)
        #expect(!child.log.contains(Self.oldSecret) && !child.log.contains(Self.newSecret) && !child.log.contains("reload-added-secret"))
    }

    /// A change to a setting that needs a restart is logged and ignored; the secrets in the same reload apply.
    @Test func aRestartOnlyChangeIsLoggedAndTheRestStillApplies() throws {
        let dir = try TemporaryDirectory()
        try dir.write("tenant.secret", Self.oldSecret + "\n")
        let child = try ServeChild(config: try Self.config(dir), log: dir.file("payhook.log"))
        try dir.write("tenant.secret", Self.newSecret + "\n")
        _ = try Self.config(dir, extra: "threads = 3\nmax_body_bytes = 1024")
        try child.reload()
        #expect(try child.reloads() == (ok: 1, failed: 0))
        #expect(try Self.send(try Self.unified("1", secret: Self.newSecret, close: true), to: child).status == 200)
        let line = child.log.split(separator: "\n").first { $0.contains("need a restart") }
        #expect(line?.contains("threads, max_body_bytes") == true, "\(child.log)")
        // The listener keeps its start's limit: a body of 2,000 bytes is not refused as too large.
        let body = String(repeating: "a", count: 2000)
        let reply = try HTTPReply.exchange(
            "POST /notify/unified HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)",
            port: child.port)
        #expect(reply.status != 413)
    }

    /// An Alipay public key file rotated: a notification signed with the test-only key is refused while the file
    /// holds another app's key, and accepted once it holds the test-only key and payhook got SIGHUP.
    @Test func sighupRotatesAnAlipayPublicKey() throws {
        let dir = try TemporaryDirectory()
        let keys = Paths.fixtures.appendingPathComponent("alipay")
        try dir.write("alipay.pem", try String(contentsOf: keys.appendingPathComponent("a1-alipay-public-key.pem"), encoding: .utf8))
        try dir.write("payhook.toml", """
            listen = "127.0.0.1:0"
            spool = "spool"
            shutdown_grace_s = 5

            [[alipay]]
            path = "/notify/alipay"
            app_id = "\(Providers.freshApp)"
            alipay_public_key_file = "alipay.pem"
            """)
        let child = try ServeChild(config: dir.file("payhook.toml"), log: dir.file("payhook.log"))
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        func beijing(_ milliseconds: Int64) -> String { BeijingTime.text(milliseconds: milliseconds, compact: false) }
        let payment: [(String, String)] = [
            ("app_id", Providers.freshApp), ("charset", "utf-8"), ("notify_type", "trade_status_sync"),
            ("notify_id", "2026010100222000000000000000000009"), ("notify_time", beijing(now - 5_000)), ("sign_type", "RSA2"),
            ("out_trade_no", "RELOAD-ORDER-1"), ("trade_no", "2026010122001400000000000009"), ("trade_status", "TRADE_SUCCESS"),
            ("total_amount", "100.00"), ("seller_id", "2088000000000001"), ("buyer_id", "2088102000000001"),
            ("gmt_payment", beijing(now - 60_000)), ("subject", "reload"),
        ]
        let body = try Providers.signedAlipay(payment)
        func post() throws -> HTTPReply {
            let head = "POST /notify/alipay HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: \(Providers.form)\r\nContent-Length: \(body.count)\r\n\r\n"
            return try HTTPReply.exchange(Array(head.utf8) + body, port: child.port)
        }
        #expect(try post().status == 401)
        try dir.write("alipay.pem", try String(contentsOf: keys.appendingPathComponent("test-only-alipay-public-key.pem"), encoding: .utf8))
        try child.reload()
        #expect(try child.reloads() == (ok: 1, failed: 0))
        let accepted = try post()
        #expect(accepted.status == 200)
        #expect(accepted.body == "success")
        #expect(listing(dir.file("spool/new")).count == 1)
    }

    /// SIGUSR1 (a status line), SIGUSR2 and SIGPIPE: the process stays alive and serves the next callback.
    @Test(arguments: [SIGUSR1, SIGUSR2, SIGPIPE])
    func aSignalThatIsNotAStopKeepsServing(signal: Int32) throws {
        let dir = try TemporaryDirectory()
        try dir.write("tenant.secret", Self.oldSecret + "\n")
        let child = try ServeChild(config: try Self.config(dir), log: dir.file("payhook.log"))
        child.signal(signal)
        usleep(300_000)
        #expect(child.isRunning, "payhook exited on signal \(signal)")
        let reply = try Self.send(try Self.unified("1", secret: Self.oldSecret, close: true), to: child)
        #expect(reply.status == 200)
        #expect(reply.body == "success")
        #expect(child.isRunning)
        if signal == SIGUSR1 {
            #expect(waitUntil(timeout: .seconds(2)) { child.log.contains("status") && child.log.contains("reloads.ok=0") }, "\(child.log)")
        }
    }
}
}
