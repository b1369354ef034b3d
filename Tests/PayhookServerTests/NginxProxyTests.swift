import Foundation
import PayhookTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension MeasuringSuites {
/// Debian's real nginx in front of a real `payhook serve`, with a config made from docs/nginx.conf (only its
/// lines marked "# @name" are rewritten, plus the temporary-file paths an unprivileged nginx needs), over TLS
/// with a certificate made here. One of the measuring suites: it holds requests open and counts them.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct NginxProxyTests {
    static let nginx = "/usr/sbin/nginx"

    /// A started nginx; stopped (SIGQUIT, then SIGKILL) by `stop`.
    final class Nginx {
        let process: Process
        let port: Int
        init(process: Process, port: Int) {
            self.process = process
            self.port = port
        }
        func stop() {
            guard process.isRunning else { return }
            kill(process.processIdentifier, SIGQUIT)
            let deadline = Date().addingTimeInterval(5)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
    }

    /// A free TCP port on 127.0.0.1: bound to port 0, read back, closed. nginx cannot bind port 0 itself,
    /// so another process may take the port in between; `startNginx` retries on that.
    static func freePort() throws -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw TestFailure("socket: \(errno)") }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                bind(descriptor, raw, length) == 0 && getsockname(descriptor, raw, &length) == 0
            }
        }
        guard bound else { throw TestFailure("bind: \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// docs/nginx.conf with each "# @name" line's value replaced (a nil value drops the line), and the
    /// temporary-file folders put under `prefix` (Debian's nginx defaults them to /var/lib/nginx).
    static func nginxConfig(_ values: [String: String?], prefix: String, replacing: [String: String] = [:]) throws -> String {
        let sample = try String(contentsOf: Paths.root.appendingPathComponent("docs/nginx.conf"), encoding: .utf8)
        var rewritten: Set<String> = []
        var lines: [String] = []
        for line in sample.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if !line.trimmingCharacters(in: .whitespaces).hasPrefix("#"), let mark = line.range(of: "# @") {
                let name = String(line[mark.upperBound...]).trimmingCharacters(in: .whitespaces)
                guard let entry = values[name] else { throw TestFailure("docs/nginx.conf: no value for @\(name)") }
                rewritten.insert(name)
                guard let value = entry else { continue }
                // "directive value;  # @name" → "directive <value>;"
                let statement = line[..<mark.lowerBound].trimmingCharacters(in: .whitespaces)
                guard let space = statement.firstIndex(of: " "), statement.hasSuffix(";") else {
                    throw TestFailure("docs/nginx.conf: unexpected marked line \(line)")
                }
                let indent = line.prefix { $0 == " " }
                lines.append("\(indent)\(statement[..<space]) \(value);")
                continue
            }
            if let replacement = replacing[line.trimmingCharacters(in: .whitespaces)] {
                lines.append(line.prefix { $0 == " " } + replacement)
                rewritten.insert(line.trimmingCharacters(in: .whitespaces))
                continue
            }
            lines.append(line)
            if line.trimmingCharacters(in: .whitespaces) == "http {" {
                for kind in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
                    lines.append("    \(kind)_temp_path \(prefix)/\(kind)_temp;")
                }
            }
        }
        let missing = Set(values.keys).union(replacing.keys).subtracting(rewritten)
        if !missing.isEmpty { throw TestFailure("docs/nginx.conf lacks the marked lines \(missing.sorted())") }
        return lines.joined(separator: "\n")
    }

    /// Starts nginx as the current user with a private prefix, on a free port (retried when the port was
    /// taken in between), in front of payhook at `upstream`.
    static func startNginx(_ dir: TemporaryDirectory, name: String, upstream: Int, replacing: [String: String] = [:]) throws -> Nginx {
        let prefix = dir.file(name)
        try FileManager.default.createDirectory(atPath: prefix, withIntermediateDirectories: true)
        for attempt in 1...5 {
            let port = try freePort()
            let config = try nginxConfig([
                "upstream": "127.0.0.1:\(upstream)",
                "listen": "127.0.0.1:\(port) ssl",
                "listen_ipv6": nil,
                "tls_cert": dir.file("cert.pem"),
                "tls_key": dir.file("key.pem"),
                "access_log": "\(prefix)/access.log",
            ], prefix: prefix, replacing: replacing)
            try config.write(toFile: "\(prefix)/nginx.conf", atomically: true, encoding: .utf8)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: nginx)
            process.arguments = ["-p", prefix, "-c", "\(prefix)/nginx.conf", "-e", "\(prefix)/error.log",
                                 "-g", "daemon off; pid \(prefix)/nginx.pid;"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            let started = Nginx(process: process, port: port)
            let up = waitUntil(timeout: .seconds(10)) {
                !process.isRunning || (try? RawClient(port: port)) != nil
            }
            if up && process.isRunning { return started }
            started.stop()
            let log = (try? String(contentsOfFile: "\(prefix)/error.log", encoding: .utf8)) ?? ""
            if !log.contains("Address already in use") || attempt == 5 {
                throw TestFailure("nginx did not start: \(log)")
            }
        }
        throw TestFailure("nginx did not start")
    }

    /// curl over TLS from the loopback address `source`; returns the status and the body.
    static func curl(_ url: String, source: String, headers: [String] = []) throws -> (status: Int, body: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        process.arguments = ["-sS", "-k", "--http1.1", "--max-time", "10", "--interface", source, "-o", "-",
                             "-w", "\n%{http_code}"] + headers.flatMap { ["-H", $0] } + [url]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard let newline = text.lastIndex(of: "\n"), let status = Int(text[text.index(after: newline)...]) else {
            throw TestFailure("curl gave no status: \(text)")
        }
        return (status, String(text[..<newline]))
    }

    /// A GET with a 4-byte chunked body (curl's `-T -` from a pipe) sent from `source`, only half of it written
    /// until `finish`.
    final class SlowRequest {
        let process: Process
        let input = Pipe()
        let output = Pipe()
        init(_ url: String, source: String) throws {
            process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
            process.arguments = ["-sS", "-k", "--http1.1", "--max-time", "20", "--interface", source, "-X", "GET",
                                 "-H", "Expect:", "-T", "-", "-o", "/dev/null",
                                 "-w", "%{http_code}", url]
            process.standardInput = input
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            try process.run()
            input.fileHandleForWriting.write(Data("ab".utf8))
        }
        func finish() -> Int? {
            input.fileHandleForWriting.write(Data("cd".utf8))
            try? input.fileHandleForWriting.close()
            let data = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return Int(String(decoding: data, as: UTF8.self))
        }
    }

    static func makeCertificate(_ dir: TemporaryDirectory) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                             "-keyout", dir.file("key.pem"), "-out", dir.file("cert.pem"), "-days", "1",
                             "-subj", "/CN=localhost"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw TestFailure("openssl req failed") }
    }

    /// payhook trusting only 127.0.0.1 (where nginx connects from), two requests per client address.
    static func startPayhook(_ dir: TemporaryDirectory) throws -> (Process, Int) {
        let secret = Paths.fixtures.appendingPathComponent("secrets/demo.secret").path
        try dir.write("payhook.toml", """
            listen = "127.0.0.1:0"
            trusted_proxies = ["127.0.0.1/32", "::1/128"]
            max_connections_per_ip = 2
            spool = "spool"
            shutdown_grace_s = 2
            ledger_retention_days = 36500

            [[unified]]
            path = "/notify/unified"
            domain_code = "demo"
            secret_file = "\(secret)"
            """)
        let (process, _, port) = try ProcessTests.startServe(dir.file("payhook.toml"))
        return (process, port)
    }

    /// The remote_addr of every stored event.
    static func remoteAddresses(_ dir: TemporaryDirectory) throws -> [String] {
        try listing(dir.file("spool/new")).map { name in
            let data = try Data(contentsOf: URL(fileURLWithPath: dir.file("spool/new/\(name)")))
            let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            return try #require(object["remote_addr"] as? String)
        }
    }

    @Test("through nginx over TLS: remote_addr is the address nginx saw, never the client's own X-Forwarded-For; direct, a forged header is ignored")
    func remoteAddressThroughNginx() throws {
        let dir = try TemporaryDirectory()
        try Self.makeCertificate(dir)
        let (payhook, upstream) = try Self.startPayhook(dir)
        defer { if payhook.isRunning { kill(payhook.processIdentifier, SIGTERM); payhook.waitUntilExit() } }
        let proxy = try Self.startNginx(dir, name: "nginx", upstream: upstream)
        defer { proxy.stop() }

        let query = try Paths.fixture("unified/success.query")
        let reply = try Self.curl("https://127.0.0.1:\(proxy.port)/notify/unified?\(query)", source: "127.0.0.5",
                                  headers: ["X-Forwarded-For: 203.0.113.9", "X-Real-IP: 203.0.113.9"])
        #expect(reply.status == 200)
        #expect(reply.body == "success")
        #expect(try Self.remoteAddresses(dir) == ["127.0.0.5"])

        // The same kind of request straight to payhook from an untrusted peer: both headers ignored.
        let refund = try Paths.fixture("unified/refund.query")
        let client = try RawClient(port: upstream, source: "127.0.0.6")
        client.send("GET /notify/unified?\(refund) HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\r\nX-Real-IP: 203.0.113.9\r\nConnection: close\r\n\r\n")
        let direct = try HTTPReply.read(client)
        #expect(direct.status == 200)
        #expect(try Self.remoteAddresses(dir).sorted() == ["127.0.0.5", "127.0.0.6"])
    }

    @Test("through nginx: more than max_connections_per_ip slow requests from one client get 429; another client still gets through")
    func limitPerForwardedAddress() throws {
        let dir = try TemporaryDirectory()
        try Self.makeCertificate(dir)
        let (payhook, upstream) = try Self.startPayhook(dir)
        defer { if payhook.isRunning { kill(payhook.processIdentifier, SIGTERM); payhook.waitUntilExit() } }
        // The shipped file reads whole bodies before payhook sees a request (proxy_request_buffering on), so a
        // slow body never reaches payhook; with buffering off it does, and payhook's own limit is what stops it.
        let proxy = try Self.startNginx(dir, name: "nginx-unbuffered", upstream: upstream,
                                        replacing: ["proxy_request_buffering on;": "proxy_request_buffering off;"])
        defer { proxy.stop() }
        let url = "https://127.0.0.1:\(proxy.port)/notify/unified?\(try Paths.fixture("unified/success.query"))"

        func inFlight() -> Int {
            guard let reply = try? HTTPReply.exchange("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", port: upstream),
                  let line = reply.body.split(separator: "\n").first(where: { $0.hasPrefix("payhook_inflight_requests ") }),
                  let value = Double(line.split(separator: " ").last ?? "")
            else { return -1 }
            // The scrape itself is in flight too.
            return Int(value) - 1
        }
        let held = try (0..<2).map { _ in try SlowRequest(url, source: "127.0.0.7") }
        #expect(waitUntil(timeout: .seconds(10)) { inFlight() == 2 }, "in flight: \(inFlight())")
        let third = try Self.curl(url, source: "127.0.0.7")
        #expect(third.status == 429)
        let other = try Self.curl(url, source: "127.0.0.8")
        #expect(other.status == 200)
        #expect(held.map { $0.finish() } == [200, 200])
        // The slots are back: the same client gets through again.
        #expect(try Self.curl(url, source: "127.0.0.7").status == 200)
        // The refusal is counted under its own outcome, so an operator can tell it from other refusals.
        let metrics = try HTTPReply.exchange("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", port: upstream).body
        #expect(metrics.split(separator: "\n").contains { $0.hasPrefix("payhook_requests_total{") && $0.contains("outcome=\"too_many_requests\"") && $0.hasSuffix(" 1") })
        #expect(metrics.contains("payhook_forwarding_headers_ignored_total 0"))
    }
}
}
