import Foundation
import PayhookTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `payhook check-config` as a process: what would refuse every payment is caught before the service starts
/// (docs/deploy.md §1), and the spool it names is the folder a consumer must be given.
@Suite struct CheckConfigTests {
    static let goodKey = "192006250b4c09247ec02edce69f6a2d"

    @Test("a WeChat APIv2 key that is not 32 characters is an error naming its file and line, never the key")
    func aWeChatKeyOfTheWrongLengthIsRefused() throws {
        let dir = try TemporaryDirectory()
        // Line 2 is 33 characters: a stray quote pasted with the key.
        try dir.write("wechat.key", "\(Self.goodKey)\n\"\(Self.goodKey)\n")
        try dir.write("short.key", "k3y-of-31-characters-0123456789\n")
        chmod(dir.file("wechat.key"), 0o600)
        chmod(dir.file("short.key"), 0o600)
        try dir.write("p.toml", """
            [[wechat]]
            path = "/w"
            mch_id = "1"
            api_key_file = "wechat.key"

            [[wechat]]
            path = "/w"
            mch_id = "2"
            api_key_file = "short.key"
            """)
        let file = dir.file("p.toml")
        let result = try ProcessTests.run(["check-config", "--config", file])
        #expect(result.status == 1)
        let problem = "an APIv2 key is 32 characters long and this one is not, so every notification would fail its signature"
        #expect(result.stderr.contains("error: \(file):4: api_key_file \(dir.path)/wechat.key, line 2: \(problem)"), "\(result.stderr)")
        #expect(result.stderr.contains("error: \(file):9: api_key_file \(dir.path)/short.key, line 1: \(problem)"), "\(result.stderr)")
        #expect(result.stderr.contains("\(file): 2 problems found"), "\(result.stderr)")
        #expect(!result.stderr.contains(Self.goodKey) && !result.stderr.contains("k3y-of"))

        // The same file with the stray line removed passes.
        try dir.write("wechat.key", "\(Self.goodKey)\n")
        try dir.write("p.toml", "[[wechat]]\npath = \"/w\"\nmch_id = \"1\"\napi_key_file = \"wechat.key\"\n")
        let fixed = try ProcessTests.run(["check-config", "--config", file])
        #expect(fixed.status == 0, "\(fixed.stderr)")
        #expect(fixed.stderr.isEmpty, "\(fixed.stderr)")
    }

    @Test("a secret file every user may read is a warning naming it and its mode; owner- and group-only files are not")
    func worldReadableSecretFilesAreWarnedAbout() throws {
        let dir = try TemporaryDirectory()
        // Each merchant its own key: a shared one is warned about too, which is not what this test is about.
        for (index, name) in ["open.key", "group.key", "own.key"].enumerated() {
            try dir.write(name, "\(Self.goodKey.dropLast())\(index)\n")
        }
        chmod(dir.file("open.key"), 0o644)
        chmod(dir.file("group.key"), 0o640)
        chmod(dir.file("own.key"), 0o600)
        try dir.write("unified.secret", "shared-secret\n")
        chmod(dir.file("unified.secret"), 0o604)
        try dir.write("p.toml", """
            [[wechat]]
            path = "/a"
            mch_id = "1"
            api_key_file = "open.key"

            [[wechat]]
            path = "/b"
            mch_id = "2"
            api_key_file = "group.key"

            [[wechat]]
            path = "/c"
            mch_id = "3"
            api_key_file = "own.key"

            [[unified]]
            path = "/u"
            domain_code = "d"
            secret_file = "unified.secret"
            """)
        let file = dir.file("p.toml")
        let result = try ProcessTests.run(["check-config", "--config", file])
        #expect(result.status == 0, "a warning does not fail the check: \(result.stderr)")
        let warnings = result.stderr.split(separator: "\n").filter { $0.hasPrefix("warning: ") }
        #expect(warnings.sorted() == [
            "warning: \(file):19: secret_file \(dir.path)/unified.secret can be read by every user on this host (mode 0604); chmod o-r it (0600, or 0640 with payhook's group)",
            "warning: \(file):4: api_key_file \(dir.path)/open.key can be read by every user on this host (mode 0644); chmod o-r it (0600, or 0640 with payhook's group)",
        ], "\(result.stderr)")
        #expect(!result.stderr.contains(Self.goodKey) && !result.stderr.contains("shared-secret"))
    }

    @Test("a TLS private key every user may read is warned about; the certificate, which is public, is not")
    func worldReadableTLSKeyIsWarnedAbout() throws {
        let dir = try TemporaryDirectory()
        let pair = try TestCertificate.make(in: dir, name: "a")
        try dir.write("cert.pem", pair.certificatePEM)
        try dir.write("key.pem", pair.keyPEM)
        chmod(dir.file("cert.pem"), 0o644)
        chmod(dir.file("key.pem"), 0o644)
        try dir.write("p.toml", """
            tls_cert_file = "cert.pem"
            tls_key_file = "key.pem"
            [[unified]]
            path = "/u"
            domain_code = "a"
            secret_env = "HOME"
            """)
        let file = dir.file("p.toml")
        let open = try ProcessTests.run(["check-config", "--config", file])
        #expect(open.status == 0, "\(open.stderr)")
        #expect(open.stderr == "warning: \(file):2: tls_key_file \(dir.path)/key.pem can be read by every user on this host (mode 0644); chmod o-r it (0600, or 0640 with payhook's group)\n")
        chmod(dir.file("key.pem"), 0o600)
        let closed = try ProcessTests.run(["check-config", "--config", file])
        #expect(closed.status == 0 && closed.stderr.isEmpty, "\(closed.stderr)")
    }

    @Test("a clash between tables is shown together with the other errors of those tables")
    func crossTableErrorsAreShownWithTheTablesOwnErrors() throws {
        let dir = try TemporaryDirectory()
        try dir.write("p.toml", """
            [[unified]]
            path = "/notify"
            domain_code = "a"
            secret_env = "PAYHOOK_TEST_NEVER_SET_4711"

            [[wechat]]
            path = "/notify"
            mch_id = "1"
            api_key = "short"
            sign_types = ["SHA1"]

            [[unified]]
            path = "/u"
            domain_code = "b"
            secret = "s"
            colour = "blue"

            [[unified]]
            path = "/u"
            domain_code = "b"
            secret = "s2"
            """)
        let file = dir.file("p.toml")
        let result = try ProcessTests.run(["check-config", "--config", file])
        #expect(result.status == 1)
        for line in [
            "error: \(file):4: secret_env: environment variable PAYHOOK_TEST_NEVER_SET_4711 is not set",
            "error: \(file):10: sign_types may hold only \"MD5\", \"HMAC-SHA256\"",
            "error: \(file):16: unknown key 'colour' in [[unified]]",
            // Both tables of each clash have errors of their own; the clash is still named.
            "error: \(file):6: [[wechat]] path '/notify' is already used by the [[unified]] table at line 1",
            "error: \(file):18: [[unified]] path '/u' with domain_code 'b' is already claimed by the table at line 12",
        ] {
            #expect(result.stderr.contains(line), "missing: \(line)\n\(result.stderr)")
        }
        #expect(!result.stderr.contains("short\n") && !result.stderr.contains("'short'"))
    }

    @Test("the spool is printed as the absolute folder serve would open, from wherever check-config runs")
    func theResolvedSpoolIsPrinted() throws {
        let dir = try TemporaryDirectory()
        try FileManager.default.createDirectory(atPath: dir.file("etc"), withIntermediateDirectories: false)
        try dir.write("etc/p.toml", "spool = \"queue\"\n[[unified]]\npath = \"/u\"\ndomain_code = \"a\"\nsecret_env = \"HOME\"\n")
        let relative = try ProcessTests.run(["check-config", "--config", "etc/p.toml"], directory: dir.path)
        #expect(relative.status == 0, "\(relative.stderr)")
        let real = try #require(realpath(dir.path, nil).map { pointer in
            defer { free(pointer) }
            return String(cString: pointer)
        })
        #expect(relative.stdout.contains(", spool \(real)/etc/queue, "), "\(relative.stdout)")
        let absolute = try ProcessTests.run(["check-config", "--config", dir.file("etc/p.toml")])
        #expect(absolute.stdout.contains(", spool \(dir.path)/etc/queue, "), "\(absolute.stdout)")
    }
}
