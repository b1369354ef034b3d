import Foundation
import PayhookTestSupport
import Testing

/// Self-signed certificates made by the real `openssl` for the TLS tests, each valid for `days` days from now,
/// with its SHA-256 fingerprint as payhook logs it.
struct TestCertificate {
    let certificatePEM: String
    let keyPEM: String
    /// Lower-case hex of the DER certificate's SHA-256, no colons.
    let fingerprint: String

    /// Makes `<name>.crt` and `<name>.key` in `dir` (RSA 2048, CN and SAN localhost / 127.0.0.1).
    static func make(in dir: TemporaryDirectory, name: String, days: Int = 1) throws -> TestCertificate {
        let made = try MeasuringSuites.TLSProcessTests.run([
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "\(days)",
            "-keyout", dir.file("\(name).key"), "-out", dir.file("\(name).crt"),
        ])
        try #require(made.status == 0, "\(made.output)")
        let printed = try MeasuringSuites.TLSProcessTests.run(["openssl", "x509", "-in", dir.file("\(name).crt"), "-noout", "-fingerprint", "-sha256"])
        let line = try #require(printed.output.split(separator: "\n").first { $0.contains("Fingerprint=") }, "\(printed.output)")
        let fingerprint = line.split(separator: "=", maxSplits: 1)[1].replacingOccurrences(of: ":", with: "").lowercased()
        return TestCertificate(
            certificatePEM: try String(contentsOfFile: dir.file("\(name).crt"), encoding: .utf8),
            keyPEM: try String(contentsOfFile: dir.file("\(name).key"), encoding: .utf8),
            fingerprint: fingerprint)
    }

    /// A line from the middle of the key's base64: if it shows up in any output, key material leaked.
    var keyLine: String {
        let lines = keyPEM.split(separator: "\n").filter { !$0.hasPrefix("-----") }
        return String(lines[lines.count / 2])
    }
}
