import Foundation
import PayhookTestSupport
import Testing

/// Structured logs from the real binary: one JSON object per line, one line per request, nothing secret.
@Suite(.timeLimit(.minutes(2)))
struct LogTests {
    /// Runs `payhook serve` with `extra` flags, sends `targets`, stops it, returns its stderr lines.
    static func serveAndCollect(_ extra: [String], targets: [String]) throws -> [String] {
        let dir = try TemporaryDirectory()
        let config = try ProcessTests.writeConfig(dir)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try payhookBinary())
        process.arguments = ["serve", "--config", config] + extra
        let out = Pipe()
        process.standardOutput = out
        _ = FileManager.default.createFile(atPath: dir.file("stderr"), contents: nil)
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: dir.file("stderr")))
        process.standardError = err
        try process.run()
        var line = Data()
        while !line.contains(0x0a) {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        guard let match = String(decoding: line, as: UTF8.self).firstMatch(of: #/:(\d+) spool/#), let port = Int(match.1) else {
            process.terminate()
            throw TestFailure("no listening line")
        }
        for target in targets {
            _ = try HTTPReply.exchange("GET \(target) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", port: port)
        }
        kill(process.processIdentifier, SIGTERM)
        #expect(ProcessTests.waitForExit(process, seconds: 10))
        try err.close()
        return try String(contentsOfFile: dir.file("stderr"), encoding: .utf8).split(separator: "\n").map(String.init)
    }

    @Test func jsonLinesOneObjectPerRequest() throws {
        let query = try Paths.fixture("unified/success.query")
        let lines = try Self.serveAndCollect(["--log-format", "json"], targets: [
            "/notify/unified?" + query, "/notify/unified?" + (try Paths.fixture("unified/tampered.query")),
        ])
        let objects = try lines.map { line -> [String: Any] in
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not a JSON object: \(line)")
            #expect(object["ts"] is String && object["level"] is String && object["msg"] is String)
            return object
        }
        let requests = objects.filter { $0["msg"] as? String == "request" }
        #expect(requests.count == 2)
        let accepted = try #require(requests.first { $0["outcome"] as? String == "accepted" })
        #expect(accepted["source"] as? String == "unified")
        #expect(accepted["tenant"] as? String == "demo")
        #expect(accepted["http.status"] as? Int == 200)
        #expect((accepted["event.id"] as? String)?.count == 64)
        #expect(accepted["latency_ms"] as? Double != nil)
        let refused = try #require(requests.first { $0["outcome"] as? String == "bad_signature" })
        #expect(refused["level"] as? String == "warning")
        #expect(refused["http.status"] as? Int == 401)
        let all = lines.joined(separator: "\n")
        #expect(!all.contains("demo-secret-rotate-me"))
        #expect(!all.contains("sign="))
        #expect(!all.contains("requestKey"))
    }

    /// The fields of a request line as a typed reader needs them: JSONDecoder refuses a number written as a
    /// string ("200") and a boolean written as a number, so decoding proves the types, not only the values.
    struct RequestLine: Decodable {
        let msg: String
        let status: Int
        /// Not on a line answered before routing (404).
        let latency: Double?
        let outcome: String
        enum CodingKeys: String, CodingKey {
            case msg, outcome
            case status = "http.status"
            case latency = "latency_ms"
        }
    }

    struct StoppedLine: Decodable {
        let msg: String
        let drained: Bool
    }

    struct ListeningLine: Decodable {
        let threads: Int
        let maxConnections: Int
        let address: String
    }

    /// JSON lines carry numbers as numbers and booleans as booleans, and text from a request as an escaped
    /// string that reads back as sent.
    @Test func jsonValuesAreTyped() throws {
        let forged = "x%22%20outcome%3Daccepted%0A%5C"
        let lines = try Self.serveAndCollect(["--log-format", "json"], targets: [
            "/notify/unified?" + (try Paths.fixture("unified/success.query")), "/nowhere",
            "/notify/unified?domainCode=\(forged)&sign=0",
        ])
        let decoder = JSONDecoder()
        let requests = lines.filter { $0.contains(#""msg":"request""#) }
        #expect(requests.count == 3)
        let decoded = try requests.map { try decoder.decode(RequestLine.self, from: Data($0.utf8)) }
        #expect(decoded.map(\.status).sorted() == [200, 401, 404])
        #expect(decoded.filter { $0.status != 404 }.allSatisfy { ($0.latency ?? -1) >= 0 })
        #expect(requests.contains { $0.contains(#""http.status":200,"#) })
        let stopped = try #require(lines.first { $0.contains(#""msg":"stopped""#) })
        #expect(try decoder.decode(StoppedLine.self, from: Data(stopped.utf8)).drained)
        let listening = try #require(lines.first { $0.contains("HTTP server listening") })
        let limits = try decoder.decode(ListeningLine.self, from: Data(listening.utf8))
        #expect(limits.threads > 0 && limits.maxConnections >= limits.threads)
        // The unknown tenant's name reaches the reason as printable text, inside one JSON string.
        let refused = try #require(requests.first { $0.contains("unknown_tenant") })
        let object = try #require(try JSONSerialization.jsonObject(with: Data(refused.utf8)) as? [String: Any])
        #expect((object["reason"] as? String)?.contains("\" outcome=accepted?\\") == true, "\(refused)")
        #expect(object["outcome"] as? String == "unknown_tenant")
    }

    /// Every line `payhook serve --log-format text` writes reads back with a strict logfmt reader, request text
    /// included: the same fields as the JSON line, nothing more.
    @Test func everyTextLineIsLogfmt() throws {
        let forged = "x%22%20outcome%3Daccepted%20http.status%3D200%0Areason%3Dnone%5C%E5%BE%AE"
        let lines = try Self.serveAndCollect(["--log-format", "text"], targets: [
            "/notify/unified?" + (try Paths.fixture("unified/success.query")), "/nowhere",
            "/notify/unified?domainCode=\(forged)&sign=0",
        ])
        #expect(lines.count >= 8)
        for line in lines {
            let fields = try #require(Logfmt.fields(line), "not logfmt: \(line)")
            #expect(fields["ts"] != nil && fields["level"] != nil && fields["label"] == "payhook" && fields["msg"] != nil, "\(line)")
        }
        let requests = lines.compactMap(Logfmt.fields).filter { $0["msg"] == "request" }
        #expect(requests.count == 3)
        let accepted = try #require(requests.first { $0["outcome"] == "accepted" })
        #expect(accepted["http.status"] == "200")
        #expect(accepted["event.id"]?.count == 64)
        #expect(Double(accepted["latency_ms"] ?? "") != nil)
        let refused = try #require(requests.first { $0["outcome"] == "unknown_tenant" })
        #expect(refused["http.status"] == "401")
        #expect(refused["reason"]?.contains("\" outcome=accepted http.status=200?reason=none\\") == true, "\(refused)")
        let stopped = try #require(lines.compactMap(Logfmt.fields).first { $0["msg"] == "stopped" })
        #expect(stopped["drained"] == "true")
    }

    @Test func logLevelFlagFiltersLines() throws {
        let query = try Paths.fixture("unified/success.query")
        let lines = try Self.serveAndCollect(["--log-format", "json", "--log-level", "warning"], targets: [
            "/notify/unified?" + query, "/notify/unified?" + (try Paths.fixture("unified/tampered.query")),
        ])
        let messages = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(!messages.isEmpty)
        #expect(messages.allSatisfy { ["warning", "error", "critical"].contains($0["level"] as? String ?? "") })
        #expect(messages.contains { $0["outcome"] as? String == "bad_signature" })
        #expect(!messages.contains { $0["outcome"] as? String == "accepted" })
    }

    @Test func badLogFormatIsAUsageError() throws {
        #expect(try ProcessTests.run(["serve", "--config", "x.toml", "--log-format", "xml"]).status == 2)
    }
}
