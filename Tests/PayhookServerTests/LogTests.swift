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
        let objects = try lines.map { line -> [String: String] in
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String], "not a JSON object: \(line)")
            #expect(object["ts"] != nil && object["level"] != nil && object["msg"] != nil)
            return object
        }
        let requests = objects.filter { $0["msg"] == "request" }
        #expect(requests.count == 2)
        let accepted = try #require(requests.first { $0["outcome"] == "accepted" })
        #expect(accepted["source"] == "unified")
        #expect(accepted["tenant"] == "demo")
        #expect(accepted["http.status"] == "200")
        #expect(accepted["event.id"]?.count == 64)
        #expect(Double(accepted["latency_ms"] ?? "") != nil)
        let refused = try #require(requests.first { $0["outcome"] == "bad_signature" })
        #expect(refused["level"] == "warning")
        #expect(refused["http.status"] == "401")
        let all = lines.joined(separator: "\n")
        #expect(!all.contains("demo-secret-rotate-me"))
        #expect(!all.contains("sign="))
        #expect(!all.contains("requestKey"))
    }

    @Test func logLevelFlagFiltersLines() throws {
        let query = try Paths.fixture("unified/success.query")
        let lines = try Self.serveAndCollect(["--log-format", "json", "--log-level", "warning"], targets: [
            "/notify/unified?" + query, "/notify/unified?" + (try Paths.fixture("unified/tampered.query")),
        ])
        let messages = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: String] }
        #expect(!messages.isEmpty)
        #expect(messages.allSatisfy { ["warning", "error", "critical"].contains($0["level"] ?? "") })
        #expect(messages.contains { $0["outcome"] == "bad_signature" })
        #expect(!messages.contains { $0["outcome"] == "accepted" })
    }

    @Test func badLogFormatIsAUsageError() throws {
        #expect(try ProcessTests.run(["serve", "--config", "x.toml", "--log-format", "xml"]).status == 2)
    }
}
