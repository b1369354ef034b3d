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
        try runCommand(["python3", "-c", validator, Paths.root.appendingPathComponent("schema/event.v1.schema.json").path] + files)
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

    /// The Alipay, XxPay and Jeepay sources' files (real vectors, Fixtures/alipay, Fixtures/xxpay,
    /// Fixtures/jeepay) match, and the schema's rules for them have teeth: each of these edits makes a file invalid.
    @Test func alipayXxPayAndJeepayEventFilesMatchTheSchema() throws {
        let clock = WeChatV3LiveTests.Clock()
        let live = try Providers.server(clock)
        defer { live.stop() }
        for name in ["A-1", "A-2", "X-1", "J-1"] {
            let vector = try ProviderLiveTests.vector(name)
            clock.set(vector.madeAt)
            #expect(try vector.post(live).status == 200, "\(name)")
        }
        let files = live.events().map { live.spool + "/new/" + $0 }
        #expect(files.count == 4)
        let result = try Self.validate(files)
        #expect(result.status == 0)
        #expect(result.output.contains("checked 4 invalid 0"), "\(result.output)")

        var bySource: [String: [String: Any]] = [:]
        for file in files {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file))) as? [String: Any])
            bySource[try #require(object["source"] as? String)] = object
        }
        #expect(Set(bySource.keys) == ["alipay.trade", "alipay.event", "xxpay.pay", "jeepay.pay"])
        let edits: [(String, (inout [String: Any]) -> Void)] = [
            ("alipay.event", { $0["currency"] = "CNY" }),
            ("alipay.event", { $0["amount"] = 1 }),
            ("alipay.event", { $0["order_ref"] = "" }),
            ("alipay.trade", { $0["currency"] = "" }),
            ("alipay.trade", { $0["verified_with"] = "md5" }),
            ("alipay.trade", { $0["status"] = "SUCCESS" }),
            ("alipay.trade", { $0["resource"] = [String: Any]() }),
            ("alipay.trade", { $0["dedupe_key"] = "alipay.trade/2019073166072302/20190815155618536-564-57/TRADE_SUCCESS" }),
            ("alipay.trade", { object in
                var fields = object["fields"] as? [String: String] ?? [:]
                fields["sign_type"] = "RSA2"
                object["fields"] = fields
            }),
            ("xxpay.pay", { $0["verified_with"] = "rsa2" }),
            ("xxpay.pay", { $0["status"] = "SUCCESS" }),
            ("jeepay.pay", { $0["status"] = "7" }),
            ("jeepay.pay", { $0["dedupe_key"] = "xxpay.pay/M1700000000/20240101000001/2" }),
        ]
        var broken: [String] = []
        for (index, (source, edit)) in edits.enumerated() {
            var object = try #require(bySource[source])
            edit(&object)
            let path = live.dir.file("broken-\(index).json")
            try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: path))
            broken.append(path)
        }
        let rejected = try Self.validate(broken)
        #expect(rejected.output.contains("checked \(edits.count) invalid \(edits.count)"), "\(rejected.output)")
    }
}
