import Foundation
import InMemoryLogging
import Logging
import PayhookConfig
import PayhookCore
import PayhookHTTP
import PayhookServer
import PayhookTestSupport
import Testing

/// The unified bgUrl path end to end: a real listener on port 0, a real spool on disk or a real database.
@Suite(.timeLimit(.minutes(2)))
struct UnifiedLiveTests {
    static let path = "/notify/unified"

    static func target(_ fixture: String) throws -> String {
        path + "?" + (try Paths.fixture("unified/\(fixture).query"))
    }

    @Test(arguments: StoreKind.allCases)
    func successStoresOneEventAndAnswersSuccess(store: StoreKind) throws {
        let live = try LiveServer(store: store)
        defer { live.stop() }
        let target = try Self.target("success")
        let reply = try live.get(target)
        #expect(reply.status == 200)
        #expect(reply.body == "success")
        let events = live.events()
        #expect(events.count == 1)
        let name = try #require(events.first)
        let data = try live.eventData(name)
        let event = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(name == "\(event["id"] as? String ?? "").json")
        #expect(event["schema"] as? String == "payhook.event.v1")
        #expect(event["source"] as? String == "unified")
        #expect(event["tenant"] as? String == "demo")
        #expect(event["order_ref"] as? String == "demo-order-1001")
        #expect(event["status"] as? String == "SUCCESSPAY")
        #expect(event["amount"] as? Int == 100)
        #expect(event["currency"] as? String == "CNY")
        #expect(event["dedupe_key"] as? String == "unified/demo/demo-order-1001/SUCCESSPAY")
        #expect(event["verified_with"] as? String == "values-sha1")
        #expect(event["remote_addr"] as? String == "127.0.0.1")
        let fields = try #require(event["fields"] as? [String: String])
        #expect(fields["payTypeName"] == "微信支付")
        #expect(fields["sign"] == nil)
        let raw = try #require(event["raw"] as? [String: String])
        #expect(raw["method"] == "GET")
        #expect(raw["target"] == target)
        #expect(raw["body"] == "")
        // The secret is nowhere in the file.
        #expect(!String(decoding: data, as: UTF8.self).contains("demo-secret-rotate-me"))
        if store == .spool { #expect(listing(live.spool + "/tmp").isEmpty) }
    }

    @Test(arguments: StoreKind.allCases)
    func duplicateRefundAndConflict(store: StoreKind) throws {
        let live = try LiveServer(store: store)
        defer { live.stop() }
        #expect(try live.get(Self.target("success")).body == "success")
        // A retry with the parameters in another order: success, no new event.
        let duplicate = try live.get(Self.target("duplicate"))
        #expect(duplicate.status == 200)
        #expect(duplicate.body == "success")
        #expect(live.events().count == 1)
        // The refund of the same order is a new state: a second event.
        #expect(try live.get(Self.target("refund")).body == "success")
        #expect(live.events().count == 2)
        // Same key as success.query, other money: kept for audit, not delivered, logged as a conflict.
        let conflict = try live.get(Self.target("conflict"))
        #expect(conflict.status == 200)
        #expect(conflict.body == "success")
        #expect(live.events().count == 2)
        let audit = try live.conflictCopies()
        #expect(audit.count == 1)
        let auditText = String(decoding: audit.first ?? Data(), as: UTF8.self)
        #expect(auditText.contains("\"money\": \"999\""))
        #expect(live.log.entries.contains { $0.level == .error && $0.metadata["outcome"] == "conflict" })
    }

    @Test(arguments: StoreKind.allCases)
    func duplicateAfterRestartIsNotStoredAgain(store: StoreKind) throws {
        let dir = try TemporaryDirectory()
        let database = store == .postgres ? try migratedTestDatabase() : nil
        do {
            let first = try LiveServer(store: store, database: database, dir: dir)
            #expect(try first.get(Self.target("success")).body == "success")
            first.stop()
        }
        let second = try LiveServer(store: store, database: database, dir: dir)
        defer { second.stop() }
        #expect(second.events().count == 1)
        let reply = try second.get(Self.target("duplicate"))
        #expect(reply.body == "success")
        #expect(second.events().count == 1)
        #expect(second.log.entries.contains { $0.metadata["outcome"] == "duplicate" })
    }

    @Test func duplicateAfterTheConsumerAcknowledgedIsStillADuplicate() throws {
        let live = try LiveServer()
        defer { live.stop() }
        #expect(try live.get(Self.target("success")).body == "success")
        let name = try #require(live.events().first)
        // A consumer takes the event (rename into cur/) and acknowledges it (delete).
        #expect(rename(live.spool + "/new/" + name, live.spool + "/cur/" + name) == 0)
        #expect(unlink(live.spool + "/cur/" + name) == 0)
        #expect(try live.get(Self.target("success")).body == "success")
        #expect(live.events().isEmpty)
        #expect(listing(live.spool + "/cur").isEmpty)
    }

    @Test(arguments: StoreKind.allCases)
    func fiftyConcurrentIdenticalCallbacksGiveOneEvent(store: StoreKind) throws {
        let live = try LiveServer(store: store) { $0.maxConnectionsPerIP = 64 }
        defer { live.stop() }
        let target = try Self.target("success")
        // Fifty threads, not tasks: tasks would take turns on the cooperative pool's two threads.
        let senders = (0..<50).map { _ in Background { Result { try live.get(target) } } }
        var replies: [HTTPReply] = []
        for sender in senders { replies.append(try #require(sender.join(timeout: .seconds(30))).get()) }
        #expect(replies.count == 50)
        #expect(replies.allSatisfy { $0.status == 200 && $0.body == "success" })
        #expect(live.events().count == 1)
        #expect(try live.ledgerCount() == 1)
        let outcomes = live.log.entries.compactMap { $0.metadata["outcome"].map { "\($0)" } }
        #expect(outcomes.filter { $0 == "accepted" }.count == 1)
        #expect(outcomes.filter { $0 == "duplicate" }.count == 49)
    }

    @Test(arguments: StoreKind.allCases)
    func secondTenantWithSaltedScheme(store: StoreKind) throws {
        let live = try LiveServer(store: store)
        defer { live.stop() }
        #expect(try live.get(Self.target("sibling")).body == "success")
        let name = try #require(live.events().first)
        let text = String(decoding: try live.eventData(name), as: UTF8.self)
        #expect(text.contains("\"verified_with\": \"salted-sha1\""))
        #expect(text.contains("\"tenant\": \"sibling\""))
    }

    @Test(arguments: StoreKind.allCases)
    func healthz(store: StoreKind) throws {
        let live = try LiveServer(store: store)
        defer { live.stop() }
        let reply = try live.get("/healthz")
        #expect(reply.status == 200)
        #expect(reply.body == "ok")
    }

    @Test func ipv6Listener() throws {
        guard let inet6 = try? String(contentsOfFile: "/proc/net/if_inet6", encoding: .utf8),
            inet6.contains("00000000000000000000000000000001")
        else {
            // No IPv6 loopback here: the listener must say so clearly rather than pretend.
            let dir = try TemporaryDirectory()
            var config = try demoConfig(spool: dir.file("spool"), listen: "[::1]:0")
            config.listen = "[::1]:0"
            #expect(throws: PayhookServer.StartError.self) { try PayhookServer(config: config, logger: .init(label: "t")) }
            return
        }
        let live = try LiveServer { $0.listen = "[::1]:0" }
        defer { live.stop() }
        #expect(live.server.http.boundAddress.host == "::1")
        let reply = try HTTPReply.exchange(
            "GET \(try Self.target("success")) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", port: live.port, host: "::1")
        #expect(reply.body == "success")
        let name = try #require(live.events().first)
        let text = try String(contentsOfFile: live.spool + "/new/" + name, encoding: .utf8)
        #expect(text.contains("\"remote_addr\": \"::1\""))
    }
}
