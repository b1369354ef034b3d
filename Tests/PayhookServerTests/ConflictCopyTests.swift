import Foundation
import PayhookTestSupport
import Testing

/// A correctly signed callback whose id was stored with other content is kept as a conflict copy, answered
/// success and never queued: `payhook verify` of the copy says so instead of "stores it once", and the queue
/// tools list it with what it conflicts with. Against a live server on either store, through the real binary.
@Suite(.timeLimit(.minutes(2)))
struct ConflictCopyTests {
    static var demo: String { Paths.fixtures.appendingPathComponent("demo.toml").path }

    /// A unified callback for `order` signed with the demo tenant's secret, as a query string.
    static func signed(order: String, amount: Int) throws -> String {
        let run = try ProcessTests.run([
            "sign", "unified", "--config", demo, "--tenant", "demo", "--order-ref", order, "--amount", String(amount),
        ])
        guard run.status == 0 else { throw TestFailure("sign: \(run.stderr)") }
        return run.stdout.trimmingCharacters(in: .newlines)
    }

    /// A config naming the live server's store, for the queue commands.
    static func queueConfig(_ live: LiveServer) throws -> String {
        let secret = Paths.fixtures.appendingPathComponent("secrets/demo.secret").path
        let store = live.database.map { "\n[store]\nkind = \"postgres\"\nurl = \"\($0)\"\n" } ?? ""
        try live.dir.write("queue.toml", """
            spool = "\(live.spool)"

            [[unified]]
            path = "/notify/unified"
            domain_code = "demo"
            secret_file = "\(secret)"
            \(store)
            """)
        return live.dir.file("queue.toml")
    }

    @Test(arguments: StoreKind.allCases)
    func verifySaysAConflictCopyIsOneAndTheQueueListsIt(store: StoreKind) throws {
        let live = try LiveServer(store: store)
        defer { live.stop() }
        #expect(try live.get("/notify/unified?" + (try Self.signed(order: "C-1", amount: 100))).body == "success")
        // Same order, same status: the same id, with another amount. Answered success, kept for audit.
        #expect(try live.get("/notify/unified?" + (try Self.signed(order: "C-1", amount: 200))).body == "success")
        let name = try #require(live.events().first)
        let id = String(name.dropLast(".json".count))
        #expect(live.events() == [name])

        let config = try Self.queueConfig(live)
        let listed = try ProcessTests.run(["queue", "list", "--location", "conflicts", "--json", "--config", config])
        #expect(listed.status == 0, "\(listed.stderr)")
        let items = try #require(try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]])
        try #require(items.count == 1)
        #expect(items[0]["id"] as? String == id)
        #expect(items[0]["conflicts_with"] as? String == "new")
        #expect(items[0]["amount"] as? Int == 200)
        let copyName = try #require(items[0]["conflict_copy"] as? String)
        #expect(copyName.hasPrefix(id + ".") && copyName.hasSuffix(".json"))

        // The copy as a file of its own name: the spool's own file, or the database's bytes saved by show.
        let copy: String
        switch store {
        case .spool:
            copy = live.spool + "/conflicts/" + copyName
            #expect(listing(live.spool + "/conflicts") == [copyName])
        case .postgres:
            let shown = try ProcessTests.run(["queue", "show", "--json", "--config", config, copyName])
            #expect(shown.status == 0, "\(shown.stderr)")
            try live.dir.write(copyName, shown.stdout)
            copy = live.dir.file(copyName)
        }
        let verified = try ProcessTests.run(["verify", "--config", Self.demo, copy])
        #expect(verified.status == 0, "\(verified.stdout)")
        #expect(verified.stdout.contains("verdict: VERIFIED, but this is a conflict copy of event \(id): "))
        #expect(!verified.stdout.contains("stores it once"))

        // The same bytes under another name are judged as any event file; the stored event as before.
        try live.dir.write("renamed.json", try String(contentsOfFile: copy, encoding: .utf8))
        let renamed = try ProcessTests.run(["verify", "--config", Self.demo, live.dir.file("renamed.json")])
        #expect(renamed.stdout.contains("verdict: VERIFIED (payhook answers success and stores it once)"))
        try live.dir.write(name, String(decoding: try live.eventData(name), as: UTF8.self))
        let original = try ProcessTests.run(["verify", "--config", Self.demo, live.dir.file(name)])
        #expect(original.stdout.contains("verdict: VERIFIED (payhook answers success and stores it once)"))
        // A name that claims another event's copy is noted, not believed.
        let other = String(repeating: "0", count: 64)
        try live.dir.write("\(other).1.json", try String(contentsOfFile: copy, encoding: .utf8))
        let mislabelled = try ProcessTests.run(["verify", "--config", Self.demo, live.dir.file("\(other).1.json")])
        #expect(mislabelled.stdout.contains("note: the file's name says it is a conflict copy of event \(other), but it holds event \(id)"))
        #expect(mislabelled.stdout.contains("stores it once"))
    }
}
