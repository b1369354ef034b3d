import Foundation
import PayhookTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// What a new user meets first on the command line: a port without a host, a duration without a unit, the
/// examples of `sign --help`, the options of `serve --help`, `make clean`, and `simulate` to an https:// URL.
/// All through the real binary (or the real Makefile).
@Suite struct CommandLineTests {
    /// Runs `command` with bash in `directory`, the payhook binary first on the PATH.
    static func shell(_ command: String, in directory: String) throws -> (status: Int32, output: String) {
        let binaryFolder = URL(fileURLWithPath: try payhookBinary()).deletingLastPathComponent().path
        let path = binaryFolder + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        return try runCommand(["bash", "-c", command], directory: directory, environment: ["PATH": path])
    }

    @Test("--listen 8080 says the host is missing and shows the usual three")
    func aPortAloneNamesTheMissingHost() throws {
        let result = try ProcessTests.run(["serve", "--config", Paths.fixtures.appendingPathComponent("demo.toml").path, "--listen", "8080"])
        #expect(result.status == 2)
        #expect(result.stderr.contains("--listen: invalid listen address \"8080\": missing host; write 127.0.0.1:8080 (this host only), 0.0.0.0:8080 (every IPv4 address) or [::]:8080 (every IPv6 address)"), "\(result.stderr)")
    }

    @Test("a duration without a unit, or no duration at all, says which units exist", arguments: [
        (["queue", "requeue", "--older-than", "30"], "\"30\" has no unit; a duration is a number with one of ms, s, m, h or d (500ms, 90s, 15m, 2h, 7d, 1h30m)"),
        (["queue", "consume", "--exec", "true", "--backoff", "1.5"], "\"1.5\" has no unit; a duration is a number with one of ms, s, m, h or d"),
        (["queue", "take", "--timeout", "10"], "\"10\" has no unit"),
        (["queue", "gc", "--older-than", "3x"], "\"3x\" is not a duration; write a number with one of ms, s, m, h or d"),
    ])
    func durationsWithoutAUnitNameTheUnits(arguments: [String], message: String) throws {
        let dir = try TemporaryDirectory()
        let result = try ProcessTests.run(arguments + ["--spool", dir.path])
        #expect(result.status == 2)
        #expect(result.stderr.contains(message), "\(result.stderr)")
        // The option's default still shows in its help, which a transform alone would hide.
        let help = try ProcessTests.run(["queue", "consume", "--help"])
        #expect(help.stdout.contains("(default: 1s)") && help.stdout.contains("(default: 5m)"), "\(help.stdout)")
    }

    @Test("every example of sign --help pastes into a shell as printed and reaches the server it names")
    func signHelpExamplesRun() throws {
        let help = try ProcessTests.run(["sign", "--help"])
        #expect(help.status == 0)
        let lines = help.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let start = try #require(lines.firstIndex { $0.hasSuffix("pastes into a shell as it is:") }, "\(help.stdout)")
        let examples = lines[(start + 1)...].prefix { $0.hasPrefix("  ") }
        #expect(examples.count >= 10, "\(help.stdout)")

        let dir = try TemporaryDirectory()
        // From the repository's root, as the help says, while a server serves the demo config: its Fixtures
        // are linked into a scratch folder so that the files the examples write land there.
        try FileManager.default.createSymbolicLink(atPath: dir.file("Fixtures"), withDestinationPath: Paths.fixtures.path)
        let child = try ServeChild(
            config: Paths.fixtures.appendingPathComponent("demo.toml").path, log: dir.file("payhook.log"),
            arguments: ["--listen", "127.0.0.1:0", "--spool", dir.file("spool")])
        let script = "set -eu\n" + examples.joined(separator: "\n").replacingOccurrences(of: "127.0.0.1:8080", with: "127.0.0.1:\(child.port)")
        let run = try Self.shell(script, in: dir.path)
        #expect(run.status == 0, "\(script)\n\(run.output)")
        #expect(run.output.contains("verdict: VERIFIED"), "\(run.output)")
        // unified, wechat-pay, alipay, xxpay, jeepay and the simulated v3 payment: one event each.
        let stored = try FileManager.default.contentsOfDirectory(atPath: dir.file("spool/new")).filter { $0.hasSuffix(".json") }
        #expect(stored.count == 6, "\(stored)\n\(run.output)\n\(child.log)")
    }

    @Test("serve --help describes every option it takes, the signals and the exit codes")
    func serveHelpDescribesEveryOption() throws {
        let help = try ProcessTests.run(["serve", "--help"])
        #expect(help.status == 0)
        let text = help.stdout
        let usage = try #require(text.split(separator: "\n").first { $0.hasPrefix("USAGE: payhook serve") })
        let options = usage.matches(of: #/--([a-z-]+)/#).map { String($0.1) }
        #expect(options == ["config", "listen", "spool", "log-level", "log-format"], "\(usage)")
        let section = try #require(text.range(of: "OPTIONS:\n")).upperBound
        let optionLines = text[section...].split(separator: "\n")
        for option in options {
            // Its line and the lines wrapped under it, up to the next option.
            let first = try #require(optionLines.firstIndex { $0.hasPrefix("  --\(option) ") }, "--\(option) is not in OPTIONS:\n\(text)")
            let rest = optionLines[(first + 1)...].prefix { $0.hasPrefix("                        ") }
            let description = ([optionLines[first]] + rest).joined(separator: " ")
                .replacingOccurrences(of: #"^\s*--[a-z-]+ <[^>]+>\s*"#, with: "", options: .regularExpression)
            #expect(description.split(separator: " ").count >= 8, "--\(option) is described in too few words: \(description)")
        }
        for topic in ["SIGTERM", "SIGHUP", "SIGUSR1", "Exit 1", "Exit 2", "shutdown_grace_s"] {
            #expect(text.contains(topic), "serve --help does not mention \(topic)")
        }
    }

    @Test("make clean keeps the build and removes the demo spool; make distclean removes the build too")
    func makeCleanKeepsTheBuild() throws {
        let dir = try TemporaryDirectory()
        try FileManager.default.copyItem(atPath: Paths.root.appendingPathComponent("Makefile").path, toPath: dir.file("Makefile"))
        for folder in [".build/debug", ".build-fuzz", "Fixtures/spool/new", "bench/.data/last-run"] {
            try FileManager.default.createDirectory(atPath: dir.file(folder), withIntermediateDirectories: true)
        }
        let exists = { (path: String) in FileManager.default.fileExists(atPath: dir.file(path)) }
        let clean = try Self.shell("make -s clean", in: dir.path)
        #expect(clean.status == 0, "\(clean.output)")
        #expect(exists(".build/debug") && exists(".build-fuzz"))
        #expect(!exists("Fixtures/spool") && !exists("bench/.data"))
        let distclean = try Self.shell("make -s distclean", in: dir.path)
        #expect(distclean.status == 0, "\(distclean.output)")
        #expect(!exists(".build") && !exists(".build-fuzz"))
        #expect(exists("Makefile"))
    }
}

extension MeasuringSuites {
    /// `payhook simulate` to an https:// URL: the real binary against payhook's own native TLS listener.
    @Suite struct SimulateHTTPSTests {
        @Test("simulate sends over TLS to an https:// URL, trusting --cacert; a certificate it cannot trust is a clear failure")
        func simulateSpeaksHTTPS() throws {
            let dir = try TemporaryDirectory()
            let pair = try TestCertificate.make(in: dir, name: "server")
            try TLSReloadTests.install(pair, in: dir)
            chmod(dir.file("key.pem"), 0o600)
            let config = try TLSReloadTests.config(dir)
            let child = try ServeChild(config: config, log: dir.file("payhook.log"), https: true)
            let url = "https://127.0.0.1:\(child.port)/notify/unified"

            let sent = try ProcessTests.run(["simulate", "unified", "--config", config, "--url", url, "--cacert", dir.file("cert.pem"), "--count", "2"])
            #expect(sent.status == 0, "\(sent.stdout)\(sent.stderr)")
            #expect(sent.stdout == "#1 200 success\n#2 200 success\n", "\(sent.stdout)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir.file("spool/new")).filter { $0.hasSuffix(".json") }.count == 1)
            // The name in the URL is checked too: the certificate names localhost as well as 127.0.0.1.
            let byName = try ProcessTests.run(["simulate", "unified", "--config", config, "--url", "https://localhost:\(child.port)/notify/unified", "--cacert", dir.file("cert.pem")])
            #expect(byName.status == 0, "\(byName.stdout)\(byName.stderr)")

            // Without --cacert the system's authorities do not know this certificate.
            let untrusted = try ProcessTests.run(["simulate", "unified", "--config", config, "--url", url])
            #expect(untrusted.status == 1)
            #expect(untrusted.stdout.contains("the server's certificate is not trusted as 127.0.0.1 by the system's trusted certificates (give --cacert FILE for a private one)"), "\(untrusted.stdout)")
            // Trusting another certificate (for the same names) does not trust this one.
            let other = try TestCertificate.make(in: dir, name: "other")
            try dir.write("other-cert.pem", other.certificatePEM)
            let misnamed = try ProcessTests.run(["simulate", "unified", "--config", config, "--url", url, "--cacert", dir.file("other-cert.pem")])
            #expect(misnamed.status == 1)
            #expect(misnamed.stdout.contains("is not trusted as 127.0.0.1 by the certificates in \(dir.file("other-cert.pem"))"), "\(misnamed.stdout)")
            // Plain HTTP to the TLS port gets no HTTP answer; --cacert with http:// is a usage error.
            let plain = try ProcessTests.run(["simulate", "unified", "--config", config, "--url", "http://127.0.0.1:\(child.port)/notify/unified"])
            #expect(plain.status == 1)
            let mixed = try ProcessTests.run(["simulate", "unified", "--config", config, "--url", "http://127.0.0.1:\(child.port)/", "--cacert", dir.file("cert.pem")])
            #expect(mixed.status == 2 && mixed.stderr.contains("--cacert is for https:// URLs"), "\(mixed.stderr)")
            // A URL of another scheme says which two exist.
            let ftp = try ProcessTests.run(["simulate", "unified", "--config", config, "--url", "ftp://127.0.0.1/"])
            #expect(ftp.status == 1 && ftp.stderr.contains("the URL must start with http:// or https://"), "\(ftp.stderr)")
        }
    }
}
