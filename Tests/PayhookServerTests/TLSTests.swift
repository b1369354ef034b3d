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

/// `tls_cert_file` / `tls_key_file` in the config file (docs/proxy.md, "Alone, with native TLS").
@Suite struct TLSConfigTests {
    static let certificate = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    static let key = "-----BEGIN PRIVATE KEY-----\nSECRETKEYMATERIAL\n-----END PRIVATE KEY-----\n"

    static func load(_ text: String, files: [String: String]) -> Result<Config, ConfigError> {
        let loader = ConfigLoader(readFile: { path in
            guard let text = files[path] else { throw TestFailure("No such file or directory") }
            return Array(text.utf8)
        }, environment: [:])
        let tenant = "\n[[unified]]\npath = \"/u\"\ndomain_code = \"a\"\nsecret = \"0123456789abcdef0123456789abcdef\"\n"
        return Result { () throws(ConfigError) in try loader.load(text: text + tenant, path: "/etc/payhook/p.toml").config }
    }

    @Test("both keys: paths resolved against the config's folder, contents reach the listener")
    func both() throws {
        let dir = try TemporaryDirectory()
        let pair = try TestCertificate.make(in: dir, name: "a")
        let config = try Self.load("tls_cert_file = \"cert.pem\"\ntls_key_file = \"/k/key.pem\"",
                                   files: ["/etc/payhook/cert.pem": pair.certificatePEM, "/k/key.pem": pair.keyPEM]).get()
        #expect(config.tlsCertFile == "/etc/payhook/cert.pem")
        #expect(config.tlsKeyFile == "/k/key.pem")
        #expect(config.listenerLimits.tls?.certificatePEM == pair.certificatePEM)
        #expect(config.listenerLimits.tls?.keyPEM == pair.keyPEM)
        let plain = try Self.load("", files: [:]).get()
        #expect(plain.listenerLimits.tls == nil)
    }

    @Test("one without the other, an unreadable file or a wrong PEM: a config error with file:line, never key material")
    func refused() throws {
        guard case .failure(let one) = Self.load("\ntls_key_file = \"key.pem\"", files: ["/etc/payhook/key.pem": Self.key]) else {
            Issue.record("accepted a key without a certificate"); return
        }
        #expect(one.description == "/etc/payhook/p.toml:2: tls_key_file is set but tls_cert_file is not: native TLS needs both, or neither for plain HTTP")
        guard case .failure(let missing) = Self.load("tls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\"", files: ["/etc/payhook/k.pem": Self.key]) else {
            Issue.record("accepted an unreadable certificate"); return
        }
        #expect(missing.issues.count == 1)
        #expect(missing.description.hasPrefix("/etc/payhook/p.toml:1: tls_cert_file: cannot read /etc/payhook/c.pem"), "\(missing)")
        // The key given as the certificate and the reverse: both named, the key's contents never shown.
        guard case .failure(let swapped) = Self.load("tls_cert_file = \"k.pem\"\ntls_key_file = \"c.pem\"",
                                                      files: ["/etc/payhook/k.pem": Self.key, "/etc/payhook/c.pem": Self.certificate]) else {
            Issue.record("accepted swapped files"); return
        }
        #expect(swapped.description == """
            /etc/payhook/p.toml:1: tls_cert_file: /etc/payhook/k.pem is not a PEM certificate
            /etc/payhook/p.toml:2: tls_key_file: /etc/payhook/c.pem is not a PEM private key
            """)
        #expect(!swapped.description.contains("SECRETKEYMATERIAL"))
        #expect(!"\(TLSConfigTests.credentials)".contains("SECRETKEYMATERIAL"))
    }

    @Test("GnuTLS reads the pair as the listener will: a broken certificate, a broken or encrypted key, another certificate's key, each named with its file")
    func gnutlsRefuses() throws {
        let dir = try TemporaryDirectory()
        let a = try TestCertificate.make(in: dir, name: "a")
        let b = try TestCertificate.make(in: dir, name: "b")
        let encrypted = try MeasuringSuites.TLSProcessTests.run(["openssl", "pkey", "-in", dir.file("a.key"), "-aes256", "-passout", "pass:test-only-pass"])
        try #require(encrypted.status == 0 && encrypted.output.contains("ENCRYPTED PRIVATE KEY"), "\(encrypted.output)")
        let text = "tls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\""
        func refusal(certificate: String, key: String) throws -> String {
            guard case .failure(let error) = Self.load(text, files: ["/etc/payhook/c.pem": certificate, "/etc/payhook/k.pem": key]) else {
                throw TestFailure("accepted")
            }
            #expect(error.issues.count == 1, "\(error)")
            #expect(!error.description.contains(a.keyLine) && !error.description.contains(b.keyLine), "key material in \(error)")
            return error.description
        }
        #expect(try refusal(certificate: Self.certificate, key: a.keyPEM)
            .hasPrefix("/etc/payhook/p.toml:1: tls_cert_file: /etc/payhook/c.pem: no usable certificate: "))
        #expect(try refusal(certificate: a.certificatePEM, key: Self.key)
            .hasPrefix("/etc/payhook/p.toml:2: tls_key_file: /etc/payhook/k.pem: no usable private key"))
        #expect(try refusal(certificate: a.certificatePEM, key: encrypted.output)
            .hasPrefix("/etc/payhook/p.toml:2: tls_key_file: /etc/payhook/k.pem: no usable private key (an encrypted key is not supported)"))
        #expect(try refusal(certificate: a.certificatePEM, key: b.keyPEM)
            .hasPrefix("/etc/payhook/p.toml:2: tls_key_file: the key in /etc/payhook/k.pem does not belong to the certificate in /etc/payhook/c.pem: "))
        // A chain (leaf first, then another certificate) is accepted with the leaf's key.
        #expect((try? Self.load(text, files: ["/etc/payhook/c.pem": a.certificatePEM + b.certificatePEM, "/etc/payhook/k.pem": a.keyPEM]).get()) != nil)
    }

    static var credentials: Any {
        (try? load("tls_cert_file = \"c\"\ntls_key_file = \"k\"", files: ["/etc/payhook/c": certificate, "/etc/payhook/k": key]).get().tls) as Any
    }
}

extension MeasuringSuites {
/// `payhook serve` with native TLS, against real TLS clients (curl, openssl s_client).
@Suite(.timeLimit(.minutes(2)))
struct TLSProcessTests {
    /// Runs `arguments` with `input` on stdin; its exit status and stdout+stderr.
    static func run(_ arguments: [String], input: String = "") throws -> (status: Int32, output: String) {
        try runCommand(arguments, input: input)
    }

    @Test("HTTPS only: a callback through curl --cacert is answered 200 and stored; TLS 1.1 refused, 1.2 and 1.3 served; plain HTTP gets no payhook answer")
    func serveHTTPS() throws {
        let dir = try TemporaryDirectory()
        let made = try Self.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                                 "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "1",
                                 "-keyout", dir.file("key.pem"), "-out", dir.file("cert.pem")])
        try #require(made.status == 0, "\(made.output)")
        let path = try ProxyProcessTests.config(dir, listen: "\"127.0.0.1:0\"",
                                                extra: "tls_cert_file = \"cert.pem\"\ntls_key_file = \"key.pem\"")
        let (process, lines) = try ProxyProcessTests.serve(["--config", path], lines: 1)
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }
        try #require(lines.count == 1, "\(lines)")
        let match = try #require(lines[0].firstMatch(of: #/payhook listening on 127\.0\.0\.1:(\d+) /#))
        let port = String(match.1)

        let query = try Paths.fixture("unified/success.query")
        let curl = try Self.run(["curl", "-sS", "--cacert", dir.file("cert.pem"), "-o", "/dev/null", "-w", "%{http_code}",
                                 "https://127.0.0.1:\(port)/notify/unified?\(query)"])
        #expect(curl.output == "200", "\(curl.output)")
        #expect(listing(dir.file("spool/new")).count == 1)

        // SECLEVEL=0 lets this client offer TLS 1.1, so a refusal is the server's.
        let old = try Self.run(["openssl", "s_client", "-connect", "127.0.0.1:\(port)", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"])
        #expect(old.status != 0, "\(old.output)")
        for version in ["-tls1_2", "-tls1_3"] {
            let ok = try Self.run(["openssl", "s_client", "-connect", "127.0.0.1:\(port)", version, "-CAfile", dir.file("cert.pem")])
            #expect(ok.status == 0 && ok.output.contains("Verify return code: 0 (ok)"), "\(version): \(ok.output)")
        }

        // Plain HTTP to the TLS port: no HTTP answer from payhook.
        let plain = try? HTTPReply.exchange("GET /notify/unified?\(query) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", port: Int(port)!)
        #expect(plain == nil, "\(String(describing: plain))")
        #expect(listing(dir.file("spool/new")).count == 1)
    }
}
}
