import Foundation
import PayhookConfig
import PayhookHTTP
import PayhookTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `listen` as a list and `trusted_proxies` in the config file, and what `serve` and `check-config` show of
/// them (docs/proxy.md).
@Suite struct ProxyConfigTests {
    static let tenant = """

        [[unified]]
        path = "/u"
        domain_code = "a"
        secret = "0123456789abcdef0123456789abcdef"
        """

    enum Loaded {
        case success(Config)
        case failure([String])

        func get() throws -> Config {
            guard case .success(let config) = self else { throw TestFailure("refused: \(self)") }
            return config
        }
    }

    static func load(_ text: String) -> Loaded {
        let loader = ConfigLoader(readFile: { _ in [] }, environment: [:])
        do {
            return .success(try loader.load(text: text + tenant, path: "/etc/payhook/p.toml").config)
        } catch {
            return .failure(error.issues.map { $0.description })
        }
    }

    @Test("listen: a string or a list; each address checked with its line; the first is `listen`")
    func listenList() throws {
        let single = try Self.load(#"listen = "[::1]:9000""#).get()
        #expect(single.listenAddresses == ["[::1]:9000"])
        let both = try Self.load(#"listen = ["0.0.0.0:8080", "[::]:8080"]"#).get()
        #expect(both.listen == "0.0.0.0:8080")
        #expect(both.listenAddresses == ["0.0.0.0:8080", "[::]:8080"])
        #expect(both.listenerLimits.trustedProxies.isEmpty)

        let bad = "listen = [\n  \"127.0.0.1:8080\",\n  \"::1:8080\",\n  \"127.0.0.1:8080\",\n]"
        guard case .failure(let issues) = Self.load(bad) else { Issue.record("accepted \(bad)"); return }
        #expect(issues.contains { $0.hasPrefix("/etc/payhook/p.toml:3: listen: invalid listen address \"::1:8080\"") }, "\(issues)")
        #expect(issues.contains("/etc/payhook/p.toml:4: listen: \"127.0.0.1:8080\" is given twice"), "\(issues)")
        guard case .failure(let empty) = Self.load("listen = []") else { Issue.record("accepted an empty list"); return }
        #expect(empty == ["/etc/payhook/p.toml:1: listen must name at least one address"])
        guard case .failure(let number) = Self.load("listen = [8080]") else { Issue.record("accepted a number"); return }
        #expect(number == ["/etc/payhook/p.toml:1: listen must be a string or an array of strings"])
        let threads = "threads = 2\nmax_connections = 2\nlisten = [\"127.0.0.1:1\", \"127.0.0.1:2\", \"127.0.0.1:3\"]"
        guard case .failure(let few) = Self.load(threads) else { Issue.record("accepted 3 addresses on 2 threads"); return }
        #expect(few.contains { $0.contains(":3: listen has 3 addresses but threads is 2") }, "\(few)")
    }

    @Test("trusted_proxies: IPv4 and IPv6 CIDR blocks reach the listener; a malformed one is refused with file:line")
    func trustedProxies() throws {
        let config = try Self.load(#"trusted_proxies = ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]"#).get()
        #expect(config.listenerLimits.trustedProxies.blocks.map { $0.description } == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"])
        let text = "trusted_proxies = [\n  \"127.0.0.1/32\",\n  \"10.0.0.1/8\",\n  \"::1/129\",\n  \"proxy.example\",\n]"
        guard case .failure(let issues) = Self.load(text) else { Issue.record("accepted \(text)"); return }
        #expect(issues.count == 3, "\(issues)")
        #expect(issues.contains { $0.hasPrefix("/etc/payhook/p.toml:3: trusted_proxies: invalid CIDR block \"10.0.0.1/8\": bits are set past the /8 prefix; the block is 10.0.0.0/8") }, "\(issues)")
        #expect(issues.contains { $0.hasPrefix("/etc/payhook/p.toml:4: trusted_proxies: invalid CIDR block \"::1/129\"") }, "\(issues)")
        #expect(issues.contains { $0.hasPrefix("/etc/payhook/p.toml:5: trusted_proxies: invalid CIDR block \"proxy.example\"") }, "\(issues)")
        guard case .failure(let string) = Self.load(#"trusted_proxies = "127.0.0.1/32""#) else { Issue.record("accepted a string"); return }
        #expect(string.count == 1 && string[0].hasPrefix("/etc/payhook/p.toml:1: trusted_proxies must be an array of CIDR blocks"))
    }
}

extension MeasuringSuites {
/// `payhook serve` on several addresses and `check-config` with them, as processes.
@Suite(.timeLimit(.minutes(2)))
struct ProxyProcessTests {
    static func config(_ dir: TemporaryDirectory, listen: String, extra: String = "") throws -> String {
        let secret = Paths.fixtures.appendingPathComponent("secrets/demo.secret").path
        try dir.write("payhook.toml", """
            listen = \(listen)
            \(extra)
            spool = "spool"
            shutdown_grace_s = 2
            ledger_retention_days = 36500

            [[unified]]
            path = "/notify/unified"
            domain_code = "demo"
            secret_file = "\(secret)"
            """)
        return dir.file("payhook.toml")
    }

    /// Starts `payhook serve` with `arguments` and reads its first `count` stdout lines.
    static func serve(_ arguments: [String], lines count: Int, timeout: Duration = .seconds(10)) throws -> (Process, [String]) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try payhookBinary())
        process.arguments = ["serve"] + arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Bounded: a missing line must fail the test, not hang it (poll(2) before each read).
        var text = ""
        let handle = out.fileHandleForReading
        let deadline = ContinuousClock.now + timeout
        while text.filter({ $0 == "\n" }).count < count, ContinuousClock.now < deadline {
            var descriptor = pollfd(fd: handle.fileDescriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, 100) > 0 else { continue }
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
        }
        return (process, text.split(separator: "\n").map(String.init))
    }

    @Test("serve on two addresses: one 'listening on' line each, the first as before (the harnesses' patterns still match it); both serve; SIGTERM stops both")
    func serveTwoAddresses() throws {
        let dir = try TemporaryDirectory()
        let second = hasIPv6Loopback() ? "[::1]:0" : "127.0.0.1:0"
        let path = try Self.config(dir, listen: "[\"127.0.0.1:0\", \"\(second)\"]")
        let (process, lines) = try Self.serve(["--config", path], lines: 2)
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }
        try #require(lines.count == 2, "\(lines)")
        let spool = dir.file("spool")
        // The patterns of bench/run.py and Tests/crash/crash_test.py (and hostile_run.py), on the first line.
        let bench = try #require(lines[0].firstMatch(of: #/payhook listening on (\S+):(\d+) /#))
        #expect(bench.1 == "127.0.0.1")
        let crash = try #require(lines[0].wholeMatch(of: #/payhook listening on 127\.0\.0\.1:(\d+) spool (.+)/#))
        #expect(crash.2 == spool)
        let first = try #require(Int(crash.1))
        let secondMatch = try #require(lines[1].wholeMatch(of: #/payhook listening on (\S+):(\d+) spool (.+)/#))
        #expect(secondMatch.1 == (second.hasPrefix("[") ? "[::1]" : "127.0.0.1"))
        #expect(secondMatch.3 == spool)
        let secondPort = try #require(Int(secondMatch.2))
        #expect(secondPort != first)

        let query = try Paths.fixture("unified/success.query")
        let host = second.hasPrefix("[") ? "::1" : "127.0.0.1"
        let one = try HTTPReply.exchange("GET /notify/unified?\(query) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", port: first)
        let two = try HTTPReply.exchange("GET /notify/unified?\(query) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", port: secondPort, host: host)
        #expect(one.status == 200 && two.status == 200)
        #expect(listing(dir.file("spool/new")).count == 1, "the second is a duplicate of the first: one store behind both")

        kill(process.processIdentifier, SIGTERM)
        #expect(ProcessTests.waitForExit(process, seconds: 10))
        #expect(process.terminationStatus == 0)
        #expect(throws: (any Error).self) { _ = try RawClient(port: first) }
        #expect(throws: (any Error).self) { _ = try RawClient(host: host, port: secondPort) }
    }

    @Test("--listen replaces the whole list; check-config names every address and the trusted proxies, and refuses a bad CIDR with file:line")
    func commandLine() throws {
        let dir = try TemporaryDirectory()
        let path = try Self.config(dir, listen: #"["127.0.0.1:8080", "[::]:8080"]"#, extra: #"trusted_proxies = ["127.0.0.1/32", "::1/128"]"#)
        let check = try ProcessTests.run(["check-config", "--config", path])
        #expect(check.status == 0)
        #expect(check.stdout.contains("ok (listen 127.0.0.1:8080 [::]:8080, spool "), "\(check.stdout)")
        #expect(check.stdout.contains(", trusted_proxies 127.0.0.1/32 ::1/128, "), "\(check.stdout)")

        let bad = try Self.config(dir, listen: #""127.0.0.1:8080""#, extra: #"trusted_proxies = ["10.0.0.0/40"]"#)
        let refused = try ProcessTests.run(["check-config", "--config", bad])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("error: \(bad):2: trusted_proxies: invalid CIDR block \"10.0.0.0/40\": the prefix length must be a number in 0...32"), "\(refused.stderr)")

        // Without the override this would print two lines, for 127.0.0.2 and 127.0.0.3.
        let two = try Self.config(dir, listen: #"["127.0.0.2:0", "127.0.0.3:0"]"#)
        let (process, lines) = try Self.serve(["--config", two, "--listen", "127.0.0.1:0"], lines: 2, timeout: .seconds(2))
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }
        #expect(lines.count == 1, "\(lines)")
        #expect(lines.first?.hasPrefix("payhook listening on 127.0.0.1:") == true, "\(lines)")
        kill(process.processIdentifier, SIGTERM)
        #expect(ProcessTests.waitForExit(process, seconds: 10))
    }
}
}

/// True when the machine has the IPv6 loopback address ::1 configured.
private func hasIPv6Loopback() -> Bool {
    guard let table = try? String(contentsOfFile: "/proc/net/if_inet6", encoding: .utf8) else { return false }
    return table.split(separator: "\n").contains { $0.hasPrefix("00000000000000000000000000000001") }
}
