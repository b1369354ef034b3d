import Foundation
import PayhookTestSupport
import Testing

/// The example consumers in Examples/ work against a real spool, as docs/consumers.md promises.
@Suite(.timeLimit(.minutes(1)))
struct QueueExampleTests {
    static let examples = repositoryRoot + "/Examples"

    /// The JSON objects in a file of one JSON object per line.
    static func objects(_ path: String) throws -> [[String: Any]] {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return try text.split(separator: "\n").map { line in
            guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw TestFailure("not a JSON object: \(line)")
            }
            return object
        }
    }

    @Test func theShellConsumerProcessesEveryEventOnceAndAcknowledgesIt() throws {
        let spool = try TestSpool()
        let ids = try spool.addMany(6)
        let out = spool.base + "/out.jsonl"
        let run = try Child("/bin/sh", [Self.examples + "/consumer.sh", spool.root], environment: [
            "PAYHOOK": try payhookBinary(), "OUT": out, "IDLE_TIMEOUT": "500ms",
        ]).finish(within: 30)
        #expect(run.status == 0, "\(run.stderr)")
        let processed = try Self.objects(out).compactMap { $0["id"] as? String }
        #expect(processed == ids)   // oldest first, each once
        #expect(spool.list("new").isEmpty)
        #expect(spool.list("cur").isEmpty)
        #expect(spool.list("ids") == ids.sorted())
        #expect(run.stderr.contains("consumer.sh: processed \(ids[0])"))
    }

    @Test func thePythonConsumerSpeaksTheProtocolDirectlyEvenWhenTwoRace() throws {
        let spool = try TestSpool()
        let ids = try spool.addMany(60)
        let corrupt = spool.makeID("f")
        try spool.publish(id: corrupt, bytes: Array("{\"id\": ".utf8))
        var consumers: [Child] = []
        for index in 0..<2 {
            consumers.append(try Child("/usr/bin/env", ["python3", Self.examples + "/consumer.py", spool.root, "--drain"], environment: [
                "OUT": spool.base + "/out.\(index).jsonl",
            ]))
        }
        var processed: [String] = []
        for (index, consumer) in consumers.enumerated() {
            let run = try consumer.finish(within: 30)
            #expect(run.status == 0, "\(run.stderr)")
            processed += try Self.objects(spool.base + "/out.\(index).jsonl").compactMap { $0["id"] as? String }
        }
        #expect(processed.count == ids.count)
        #expect(Set(processed) == Set(ids))
        #expect(spool.list("new").isEmpty)
        #expect(spool.list("cur").isEmpty)
        // The corrupt file was set aside, not deleted.
        #expect(spool.list("corrupt") == ["\(corrupt).json"])
        #expect(try spool.read("corrupt/\(corrupt).json") == "{\"id\": ")
    }
}
