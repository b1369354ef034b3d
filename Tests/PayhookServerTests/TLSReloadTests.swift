import Foundation
import PayhookTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension MeasuringSuites {
/// SIGHUP hands a new certificate and key to the HTTPS listener (docs/reload.md, "Certificates"), against a real
/// TLS client (Python's ssl module, OpenSSL underneath) and the real binary.
@Suite(.timeLimit(.minutes(2)))
struct TLSReloadTests {
    /// A TLS client on one connection: it prints the SHA-256 of the certificate it was given, then for each
    /// path read on stdin sends a GET on that same connection and prints the status (or "closed").
    static let client = """
        import hashlib, socket, ssl, sys
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection = context.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10))
        print(hashlib.sha256(connection.getpeercert(binary_form=True)).hexdigest(), flush=True)
        replies = connection.makefile("rb")
        for line in sys.stdin:
            connection.sendall(("GET %s HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n" % line.strip()).encode())
            status = replies.readline().split()
            if not status:
                print("closed", flush=True)
                break
            length = 0
            while True:
                header = replies.readline()
                if header in (b"\\r\\n", b""):
                    break
                name, _, value = header.decode().partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            replies.read(length)
            print(status[1].decode(), flush=True)
        """

    /// A running client: its first line (the fingerprint) read, requests sent one line at a time.
    final class Connection {
        let process = Process()
        private let input = Pipe()
        private let output = Pipe()
        private var buffered = ""
        /// The SHA-256 (hex) of the certificate this connection was given.
        private(set) var servedFingerprint = ""

        init(port: Int) throws {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", "-c", TLSReloadTests.client, "\(port)"]
            process.standardInput = input
            process.standardOutput = output
            process.standardError = output
            try process.run()
            let first = try line()
            try #require(first.count == 64, "no fingerprint: \(first)")
            servedFingerprint = first
        }

        /// The next line the client prints, within 10 s.
        func line() throws -> String {
            let handle = output.fileHandleForReading
            let deadline = ContinuousClock.now + .seconds(10)
            while !buffered.contains("\n"), ContinuousClock.now < deadline {
                var descriptor = pollfd(fd: handle.fileDescriptor, events: Int16(POLLIN), revents: 0)
                guard poll(&descriptor, 1, 100) > 0 else { continue }
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                buffered += String(decoding: chunk, as: UTF8.self)
            }
            guard let end = buffered.firstIndex(of: "\n") else { throw TestFailure("the TLS client printed no line: \(buffered)") }
            let line = String(buffered[..<end])
            buffered = String(buffered[buffered.index(after: end)...])
            return line
        }

        /// GET `path` on the open connection; the status, or "closed".
        func get(_ path: String) throws -> String {
            input.fileHandleForWriting.write(Data((path + "\n").utf8))
            return try line()
        }

        deinit {
            try? input.fileHandleForWriting.close()
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
        }
    }

    static func config(_ dir: TemporaryDirectory) throws -> String {
        try ProxyProcessTests.config(dir, listen: "\"127.0.0.1:0\"", extra: "tls_cert_file = \"cert.pem\"\ntls_key_file = \"key.pem\"")
    }

    static func install(_ pair: TestCertificate, in dir: TemporaryDirectory, key: String? = nil) throws {
        try dir.write("cert.pem", pair.certificatePEM)
        try dir.write("key.pem", key ?? pair.keyPEM)
    }

    /// Seconds from now to the certificate's notAfter, from the expiry metric.
    static func daysLeft(_ child: ServeChild) throws -> Double {
        let expiry = try ServeChild.sample(try child.metrics(), "payhook_tls_certificate_expiry_timestamp_seconds")
        return (Double(expiry) - Date().timeIntervalSince1970) / 86400
    }

    @Test func sighupPresentsTheNewCertificateAndKeepsOpenConnections() throws {
        let dir = try TemporaryDirectory()
        let first = try TestCertificate.make(in: dir, name: "first", days: 1)
        let second = try TestCertificate.make(in: dir, name: "second", days: 30)
        #expect(first.fingerprint != second.fingerprint)
        try Self.install(first, in: dir)
        let check = try ProcessTests.run(["check-config", "--config", try Self.config(dir)])
        #expect(check.status == 0 && check.stdout.contains(", tls \(dir.file("cert.pem")), "), "\(check.stdout)")
        let child = try ServeChild(config: try Self.config(dir), log: dir.file("payhook.log"), https: true)
        #expect(try Self.daysLeft(child) > 0.9 && Self.daysLeft(child) <= 1.0)
        #expect(child.log.contains("tls.sha256=\(first.fingerprint)"), "the serving line names the certificate: \(child.log)")

        let open = try Connection(port: child.port)
        #expect(open.servedFingerprint == first.fingerprint)
        #expect(try open.get("/healthz") == "200")

        // Rotated in place, as certbot or an operator would: the same paths, new contents.
        try Self.install(second, in: dir)
        try child.reload()
        #expect(try child.reloads() == (ok: 1, failed: 0))
        #expect(try Connection(port: child.port).servedFingerprint == second.fingerprint)
        #expect(try Self.daysLeft(child) > 29.9 && Self.daysLeft(child) <= 30.0)
        // The connection opened before the reload is the same one, still served, on its first certificate.
        #expect(try open.get("/healthz") == "200")
        let reloaded = child.log.split(separator: "\n").first { $0.contains("reloaded") }
        #expect(reloaded?.contains(second.fingerprint) == true, "\(child.log)")
        #expect(!child.log.contains("need a restart"), "\(child.log)")

        // Another certificate's key: the reload fails whole, the running pair stays.
        let third = try TestCertificate.make(in: dir, name: "third")
        try Self.install(second, in: dir, key: third.keyPEM)
        try child.reload()
        #expect(try child.reloads() == (ok: 1, failed: 1))
        #expect(try Connection(port: child.port).servedFingerprint == second.fingerprint)
        let failed = child.log.split(separator: "\n").first { $0.contains("reload failed") }
        #expect(failed?.contains("does not belong to the certificate in \(dir.file("cert.pem"))") == true, "\(child.log)")
        #expect(try open.get("/healthz") == "200")

        // A broken certificate file: refused the same way.
        try dir.write("cert.pem", "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
        try dir.write("key.pem", third.keyPEM)
        try child.reload()
        #expect(try child.reloads() == (ok: 1, failed: 2))
        #expect(try Connection(port: child.port).servedFingerprint == second.fingerprint)

        // Back to a good pair: applied.
        try Self.install(third, in: dir)
        try child.reload()
        #expect(try child.reloads() == (ok: 2, failed: 2))
        #expect(try Connection(port: child.port).servedFingerprint == third.fingerprint)
        #expect(try open.get("/healthz") == "200")

        for pair in [first, second, third] {
            #expect(!child.log.contains(pair.keyLine), "key material in the log")
        }
    }

    /// Turning TLS on (or off) changes what the listener speaks: logged as needing a restart, the listener stays
    /// plain HTTP, and the tenants in the same reload still apply.
    @Test func turningTLSOnNeedsARestart() throws {
        let dir = try TemporaryDirectory()
        let pair = try TestCertificate.make(in: dir, name: "pair")
        try Self.install(pair, in: dir)
        let plain = try ProxyProcessTests.config(dir, listen: "\"127.0.0.1:0\"")
        let child = try ServeChild(config: plain, log: dir.file("payhook.log"))
        _ = try Self.config(dir)
        try child.reload()
        #expect(try child.reloads() == (ok: 1, failed: 0))
        let line = child.log.split(separator: "\n").first { $0.contains("need a restart") }
        #expect(line?.contains("tls_cert_file, tls_key_file") == true, "\(child.log)")
        #expect(try HTTPReply.exchange("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", port: child.port).status == 200)
    }
}
}
