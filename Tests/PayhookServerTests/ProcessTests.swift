import Foundation
import PayhookTestSupport
import Testing

extension MeasuringSuites {
/// The `payhook` executable itself: exit codes, `check-config`, and `serve`'s signal handling. One of the
/// measuring suites: a signalled server must react within a fraction of a second.
@Suite(.timeLimit(.minutes(2)))
struct ProcessTests {
    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func run(_ arguments: [String], timeout: TimeInterval = 30, directory: String? = nil) throws -> Run {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try payhookBinary())
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            process.terminate()
            throw TestFailure("payhook \(arguments) did not finish in \(timeout) s")
        }
        return Run(
            status: process.terminationStatus,
            stdout: String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self),
            stderr: String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
    }

    /// A config like the demo's, with its spool in `dir` and the secret file referenced absolutely.
    static func writeConfig(_ dir: TemporaryDirectory) throws -> String {
        let secret = Paths.fixtures.appendingPathComponent("secrets/demo.secret").path
        try dir.write("payhook.toml", """
            listen = "127.0.0.1:0"
            spool = "spool"
            shutdown_grace_s = 5
            ledger_retention_days = 36500

            [[unified]]
            path = "/notify/unified"
            domain_code = "demo"
            secret_file = "\(secret)"
            """)
        return dir.file("payhook.toml")
    }

    @Test func checkConfigAcceptsTheDemoConfig() throws {
        let result = try Self.run(["check-config", "--config", Paths.fixtures.appendingPathComponent("demo.toml").path])
        #expect(result.status == 0)
        #expect(result.stdout.contains("ok"))
        #expect(result.stdout.contains("2 [[unified]], 1 [[wechat]], 1 [[wechat_v3]], 4 [[alipay]], 1 [[xxpay]] and 2 [[jeepay]] tenants"))
        #expect(!result.stdout.contains("demo-secret-rotate-me"))
    }

    @Test func checkConfigListsEveryProblemWithFileAndLine() throws {
        let dir = try TemporaryDirectory()
        try dir.write("empty.secret", "\n   \n")
        try FileManager.default.createDirectory(atPath: dir.file("folder.secret"), withIntermediateDirectories: false)
        try dir.write("bad.toml", """
            listen = "127.0.0.1"
            colour = "blue"

            [[unified]]
            path = "/notify/unified"
            domain_code = "a"
            secret_file = "missing.secret"

            [[unified]]
            path = "/notify/unified"
            domain_code = "b"
            secret_file = "empty.secret"
            sign_scheme = "md5"

            [[unified]]
            path = "/notify/unified"
            domain_code = "c"
            secret = "inline-secret-value"
            secret_env = "SOME_VAR"

            [[unified]]
            path = "/notify/unified"
            domain_code = "d"
            secret = "inline-secret-d1"
            extra = 1

            [[unified]]
            path = "/notify/unified"
            domain_code = "d"
            secret = "inline-secret-d2"

            [[unified]]
            path = "/notify/unified"
            domain_code = "e"
            secret_file = "folder.secret"
            """)
        let file = dir.file("bad.toml")
        let result = try Self.run(["check-config", "--config", file])
        #expect(result.status == 1)
        let expected = [
            "\(file):1: listen:",
            "\(file):2: unknown key 'colour'",
            "\(file):7: cannot read secret_file \(dir.path)/missing.secret: No such file or directory",
            "\(file):12: secret_file holds no secret (it is empty)",
            "\(file):13: sign_scheme 'md5' is not known",
            "\(file):15: [[unified]] sets secret and secret_env; use exactly one",
            "\(file):25: unknown key 'extra' in [[unified]]",
            "\(file):27: [[unified]] path '/notify/unified' with domain_code 'd' is already claimed by the table at line 21",
            "\(file):35: cannot read secret_file \(dir.path)/folder.secret: Is a directory",
            "\(file): 9 problems found",
        ]
        for line in expected {
            #expect(result.stderr.contains(line), "missing: \(line)\n\(result.stderr)")
        }
        #expect(!result.stderr.contains("inline-secret-value"))
        #expect(!result.stderr.contains("inline-secret-d1") && !result.stderr.contains("inline-secret-d2"))
    }

    @Test func checkConfigNamesEveryWeChatV3KeyProblem() throws {
        let dir = try TemporaryDirectory()
        let keys = Paths.fixtures.appendingPathComponent("wechat-v3").path
        // Line 2 is a 31-byte key: the message names the line, never the key.
        try dir.write("v3.key", "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb\nshort-v3-key-0123456789abcdefgh\n")
        try dir.write("bad.toml", """
            [[wechat_v3]]
            path = "/notify/wechatpay"
            mch_id = "1900000100"
            api_v3_key_file = "v3.key"
            public_key_file = "\(keys)/test-only-ec-p256-public.pem"
            public_key_id = "PUB_KEY_ID_0000000000000024101100397200000006"
            platform_cert_files = ["\(keys)/go-sdk/wechatpay_certificate.pem", "\(keys)/test-only-rsa1024-certificate.pem", "\(keys)/go-sdk/wechatpay_certificate.pem"]
            max_clock_skew_s = 0

            [[wechat_v3]]
            path = "/notify/wechatpay"
            mch_id = "1900000100"
            api_v3_key_file = "v3.key"
            """)
        let file = dir.file("bad.toml")
        let result = try Self.run(["check-config", "--config", file])
        #expect(result.status == 1)
        let expected = [
            "\(file):8: max_clock_skew_s must be an integer between 1 and 3600",
            "\(file):4: api_v3_key_file \(dir.path)/v3.key, line 2: not 32 bytes",
            "\(file):5: public_key_file \(keys)/test-only-ec-p256-public.pem holds an EC key (256 bits), not an RSA-2048 key",
            "\(file):7: platform certificate \(keys)/test-only-rsa1024-certificate.pem (serial A1B2C3D4E5F60718293A4B5C6D7E8F901) holds an RSA-1024 key",
            "\(file):7: platform certificate \(keys)/go-sdk/wechatpay_certificate.pem has serial D7CE59D1F522D701, as \(keys)/go-sdk/wechatpay_certificate.pem does",
            "\(file):13: api_v3_key_file \(dir.path)/v3.key, line 2: not 32 bytes",
            "\(file):10: [[wechat_v3]] needs public_key_file + public_key_id, platform_cert_files, or both",
            "\(file):10: [[wechat_v3]] path '/notify/wechatpay' with mch_id '1900000100' is already claimed by the table at line 1",
            "\(file): 8 problems found",
        ]
        for line in expected {
            #expect(result.stderr.contains(line), "missing: \(line)\n\(result.stderr)")
        }
        #expect(!result.stderr.contains("short-v3-key") && !result.stderr.contains("a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"))
    }

    @Test func checkConfigWarnsOfAnExpiredPlatformCertificate() throws {
        let dir = try TemporaryDirectory()
        let keys = Paths.fixtures.appendingPathComponent("wechat-v3").path
        try dir.write("v3.key", "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb\n")
        try dir.write("ok.toml", """
            [[wechat_v3]]
            path = "/notify/wechatpay"
            mch_id = "1900000100"
            api_v3_key_file = "v3.key"
            platform_cert_files = ["\(keys)/merchant_certificate.pem"]
            """)
        let file = dir.file("ok.toml")
        let result = try Self.run(["check-config", "--config", file])
        #expect(result.status == 0)
        #expect(result.stdout.contains("0 [[unified]], 0 [[wechat]], 1 [[wechat_v3]], 0 [[alipay]], 0 [[xxpay]] and 0 [[jeepay]] tenants"))
        #expect(result.stderr.contains(
            "warning: \(file):5: platform certificate \(keys)/merchant_certificate.pem (serial 5F1C72E2A8931B72A2E13AF8DEE92471EB397115) is expired: valid from 2022-05-10T01:57:10Z to 2025-05-09T01:57:10Z"),
            "\(result.stderr)")
    }

    @Test func usageErrorsExitTwo() throws {
        #expect(try Self.run(["serve"]).status == 2)
        #expect(try Self.run(["no-such-command"]).status == 2)
        #expect(try Self.run(["serve", "--config", "x.toml", "--listen", "nonsense"]).status == 2)
        let help = try Self.run(["--help"])
        #expect(help.status == 0)
        #expect(help.stdout.contains("check-config"))
    }

    @Test func missingConfigIsAClearErrorExitOne() throws {
        let result = try Self.run(["check-config", "--config", "/nonexistent/payhook.toml"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("/nonexistent/payhook.toml: cannot read the config file: No such file or directory"))
        #expect(try Self.run(["serve", "--config", "/nonexistent/payhook.toml"]).status == 1)
    }

    /// Starts `payhook serve`, returns the process, its stdout reader and the port it printed.
    static func startServe(_ config: String, extra: [String] = []) throws -> (Process, Pipe, Int) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try payhookBinary())
        process.arguments = ["serve", "--config", config] + extra
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        var line = Data()
        let handle = out.fileHandleForReading
        while !line.contains(0x0a) {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard let match = text.firstMatch(of: #/listening on 127\.0\.0\.1:(\d+)/#), let port = Int(match.1) else {
            process.terminate()
            throw TestFailure("no listening line: \(text)")
        }
        return (process, out, port)
    }

    static func waitForExit(_ process: Process, seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        return !process.isRunning
    }

    /// SIGTERM: stop accepting, finish the request in flight, exit 0.
    @Test func sigtermFinishesTheRequestInFlightAndExitsZero() throws {
        let dir = try TemporaryDirectory()
        let config = try Self.writeConfig(dir)
        let (process, _, port) = try Self.startServe(config)
        defer { if process.isRunning { process.terminate() } }
        let query = try Paths.fixture("unified/success.query")

        // A request whose head is not finished yet is in flight when the signal arrives.
        let client = try RawClient(port: port)
        client.send("GET /notify/unified?\(query) HTTP/1.1\r\nHost: x\r\n")
        usleep(300_000)
        kill(process.processIdentifier, SIGTERM)
        usleep(300_000)
        #expect(process.isRunning, "payhook exited with a request in flight")

        // New connections are no longer accepted.
        #expect(throws: (any Error).self) { _ = try HTTPReply.exchange("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", port: port) }

        client.send("Connection: close\r\n\r\n")
        let reply = try HTTPReply.read(client)
        #expect(reply.status == 200)
        #expect(reply.body == "success")
        #expect(Self.waitForExit(process, seconds: 10))
        #expect(process.terminationReason == .exit)
        #expect(process.terminationStatus == 0)
        #expect(listing(dir.file("spool/new")).count == 1)
    }

    @Test func sigintWhenIdleExitsZero() throws {
        let dir = try TemporaryDirectory()
        let (process, _, port) = try Self.startServe(try Self.writeConfig(dir))
        defer { if process.isRunning { process.terminate() } }
        #expect(try HTTPReply.exchange("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", port: port).body == "ok")
        kill(process.processIdentifier, SIGINT)
        #expect(Self.waitForExit(process, seconds: 10))
        #expect(process.terminationStatus == 0)
    }

    @Test func secondServerOnTheSameSpoolRefusesToStart() throws {
        let dir = try TemporaryDirectory()
        let config = try Self.writeConfig(dir)
        let (first, _, _) = try Self.startServe(config)
        defer {
            kill(first.processIdentifier, SIGTERM)
            _ = Self.waitForExit(first, seconds: 10)
        }
        let second = try Self.run(["serve", "--config", config])
        #expect(second.status == 1)
        #expect(second.stderr.contains("in use by another payhook (pid \(first.processIdentifier))"))
    }
}
}

/// The name the other suites use for its helpers.
typealias ProcessTests = MeasuringSuites.ProcessTests
