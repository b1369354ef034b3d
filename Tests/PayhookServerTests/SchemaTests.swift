import Foundation
import PayhookTestSupport
import Testing

/// schema/event.v1.schema.json describes the files payhook really writes. Checked with Python's
/// `jsonschema` (an implementation independent of ours; `make test` installs it).
@Suite(.timeLimit(.minutes(2)))
struct SchemaTests {
    static let validator = """
        import json, sys
        from jsonschema import Draft202012Validator
        schema = json.load(open(sys.argv[1]))
        Draft202012Validator.check_schema(schema)
        validator = Draft202012Validator(schema)
        bad = 0
        for path in sys.argv[2:]:
            errors = list(validator.iter_errors(json.load(open(path, encoding="utf-8"))))
            for e in errors:
                print(f"{path}: {e.json_path}: {e.message}")
            bad += bool(errors)
        print(f"checked {len(sys.argv) - 2} invalid {bad}")
        """

    static func validate(_ files: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", validator, Paths.root.appendingPathComponent("schema/event.v1.schema.json").path] + files
        let out = Pipe()
        process.standardOutput = out
        process.standardError = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test func realEventFilesMatchTheSchema() throws {
        let live = try LiveServer()
        defer { live.stop() }
        for fixture in ["success", "refund", "sibling"] {
            #expect(try live.get("/notify/unified?" + (try Paths.fixture("unified/\(fixture).query"))).body == "success")
        }
        let files = live.events().map { live.spool + "/new/" + $0 }
        #expect(files.count == 3)
        let result = try Self.validate(files)
        #expect(result.status == 0)
        #expect(result.output.contains("checked 3 invalid 0"), "\(result.output)")

        // The check has teeth: a file with a string amount and an extra key is refused.
        let broken = live.dir.file("broken.json")
        var object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: files[0]))) as? [String: Any])
        object["amount"] = "100"
        object["unexpected"] = true
        try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: broken))
        let rejected = try Self.validate([broken])
        #expect(rejected.output.contains("checked 1 invalid 1"), "\(rejected.output)")
    }
}
