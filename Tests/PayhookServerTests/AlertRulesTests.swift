import Foundation
import PayhookTestSupport
import Testing

/// docs/alerts.md's rules, loaded by Debian's promtool (`make test-deps` installs the `prometheus` package):
/// `promtool check rules` on the block as documented, and `promtool test rules` with
/// Fixtures/alerts/alerts.test.yml, which proves that the stuck-consumer, dead-letter and storage alerts fire on
/// synthetic series and stay quiet otherwise. The rules, docs/metrics.md and the alert table must also agree.
@Suite(.timeLimit(.minutes(1)))
struct AlertRulesTests {
    static let promtool = "/usr/bin/promtool"

    /// The one ```yaml block of docs/alerts.md.
    static func rules() throws -> String {
        let text = try String(contentsOfFile: URL(fileURLWithPath: repositoryRoot).appendingPathComponent("docs/alerts.md").path, encoding: .utf8)
        let blocks = text.matches(of: #/```yaml\n((?s).*?)```/#).map { String($0.1) }
        try #require(blocks.count == 1, "docs/alerts.md should hold exactly one yaml block, not \(blocks.count)")
        return blocks[0]
    }

    /// Runs promtool in `directory`; its exit status and stdout+stderr.
    static func promtool(_ arguments: [String], in directory: String) throws -> (status: Int32, output: String) {
        guard FileManager.default.isExecutableFile(atPath: promtool) else {
            throw TestFailure("promtool is not installed (\(promtool)): run `make test-deps` (Debian package prometheus)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: promtool)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        let out = Pipe()
        process.standardOutput = out
        process.standardError = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test func rulesLoadAndTheirUnitTestsPass() throws {
        let dir = try TemporaryDirectory()
        let rules = try Self.rules()
        try rules.write(toFile: dir.file("alerts.rules.yml"), atomically: true, encoding: .utf8)
        let count = rules.matches(of: #/- alert: /#).count
        let checked = try Self.promtool(["check", "rules", "alerts.rules.yml"], in: dir.path)
        #expect(checked.status == 0, "\(checked.output)")
        #expect(checked.output.contains("SUCCESS: \(count) rules found"), "\(checked.output)")

        let unitTests = try String(contentsOfFile: Paths.fixtures.appendingPathComponent("alerts/alerts.test.yml").path, encoding: .utf8)
        for alert in ["PayhookConsumerStuck", "PayhookDeadLetters"] {
            #expect(unitTests.contains("alertname: \(alert)\n"), "the unit tests leave \(alert) out")
        }
        try unitTests.write(toFile: dir.file("alerts.test.yml"), atomically: true, encoding: .utf8)
        let tested = try Self.promtool(["test", "rules", "alerts.test.yml"], in: dir.path)
        #expect(tested.status == 0, "\(tested.output)")
        #expect(tested.output.contains("SUCCESS"), "\(tested.output)")
    }

    /// The unit tests are not vacuous: with the stuck-consumer threshold raised out of reach, promtool fails them.
    @Test func theUnitTestsNoticeABrokenRule() throws {
        let dir = try TemporaryDirectory()
        let rules = try Self.rules()
        let broken = rules.replacing(#"payhook_queue_oldest_event_age_seconds{folder="new"} > 900"#, with: #"payhook_queue_oldest_event_age_seconds{folder="new"} > 90000"#)
        try #require(broken != rules)
        try broken.write(toFile: dir.file("alerts.rules.yml"), atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(
            atPath: Paths.fixtures.appendingPathComponent("alerts/alerts.test.yml").path, toPath: dir.file("alerts.test.yml"))
        let tested = try Self.promtool(["test", "rules", "alerts.test.yml"], in: dir.path)
        #expect(tested.status != 0, "\(tested.output)")
        #expect(tested.output.contains("alertname: PayhookConsumerStuck"), "\(tested.output)")
    }

    /// Every metric an expression reads is documented, every alert docs/metrics.md names exists, and the table of
    /// alerts.md lists exactly the rules.
    @Test func rulesMetricsAndTablesAgree() throws {
        let rules = try Self.rules()
        let documented = Set(try MetricsDocumentationTests.documented().keys)
        let read = Set(rules.matches(of: #/payhook_[a-z_]+/#).map { String($0.0) })
        #expect(read.subtracting(documented).isEmpty, "read by the rules, not in docs/metrics.md: \(read.subtracting(documented).sorted())")
        let alerts = Set(rules.matches(of: #/- alert: (\w+)/#).map { String($0.1) })
        let metricsDoc = try String(contentsOfFile: URL(fileURLWithPath: repositoryRoot).appendingPathComponent("docs/metrics.md").path, encoding: .utf8)
        let named = Set(metricsDoc.matches(of: #/`(Payhook\w+)`/#).map { String($0.1) })
        #expect(named.subtracting(alerts).isEmpty, "named in docs/metrics.md, no such rule: \(named.subtracting(alerts).sorted())")
        let alertsDoc = try String(contentsOfFile: URL(fileURLWithPath: repositoryRoot).appendingPathComponent("docs/alerts.md").path, encoding: .utf8)
        let table = Set(alertsDoc.matches(of: #/\n\| `(Payhook\w+)` \|/#).map { String($0.1) })
        #expect(table == alerts, "table \(table.sorted()) vs rules \(alerts.sorted())")
    }
}
