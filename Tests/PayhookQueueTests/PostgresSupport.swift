import Foundation
import Logging
import PayhookCore
import PayhookPostgres
import PayhookStore
import PayhookTestSupport

/// A fresh, migrated database of the shared test cluster, with the receiving side's store to seed it: events enter
/// through `PostgresEventStore.store` exactly as `payhook serve` stores them, so ids and bytes are the real ones.
final class TestDatabase: @unchecked Sendable {
    let cluster: PostgresCluster
    let conninfo: String
    let name: String
    let store: PostgresEventStore

    static let quiet = Logger(label: "payhook.queue.pg-test") { _ in SwiftLogNoOpLogHandler() }

    init() throws {
        cluster = try PostgresCluster.shared()
        conninfo = try cluster.createDatabase("q")
        name = String(conninfo.split(separator: "=").last ?? "")
        _ = try PostgresDatabase(settings: PGSettings(conninfo: conninfo)).migrate(by: "test")
        store = try PostgresEventStore(settings: PGSettings(conninfo: conninfo), instance: "test", logger: Self.quiet)
    }

    deinit {
        store.close()
    }

    /// A queue over this database. `retryDelay` 0 makes a nack ready at once, as the spool's is.
    func queue(
        lease: Double = 60, maxAttempts: Int = 5, retryDelay: Double = 0, pollInterval: Double = 0.5, instance: String = "test-consumer"
    ) throws -> PostgresEventQueue {
        try PostgresEventQueue(
            settings: PGSettings(conninfo: conninfo, connections: 4), instance: instance, leaseSeconds: lease,
            maxAttempts: maxAttempts, retryDelay: retryDelay, pollInterval: pollInterval)
    }

    /// The event as a source would build it; its bytes are `Event.jsonBytes`, as stored.
    static func event(
        id: String, tenant: String = "demo", orderRef: String = "order-1", status: String = "SUCCESSPAY",
        receivedAt: String = "2026-11-22T02:34:50.123Z", money: String = "100"
    ) -> Event {
        let milliseconds = Int64(((QueueTime.parseRFC3339(receivedAt)?.timeIntervalSince1970 ?? 0) * 1000).rounded())
        return Event(
            id: id, source: "unified", tenant: tenant, orderRef: orderRef, status: status, amount: 100, currency: "CNY",
            dedupeKey: DedupeKey(source: "unified", parts: [tenant, orderRef, status]), verifiedWith: "values-sha1",
            receivedAtMilliseconds: milliseconds, remoteAddress: "127.0.0.1",
            fields: [FormParameter(name: "money", value: money), FormParameter(name: "requestKey", value: orderRef)],
            raw: Event.RawRequest(method: "GET", target: "/notify/unified?money=\(money)&requestKey=\(orderRef)", body: ""))
    }

    /// Stores an event; fails unless it is new.
    @discardableResult
    func add(_ event: Event) throws -> Event {
        let outcome = try store.store(event)
        guard outcome == .stored else { throw TestFailure("store \(event.id): \(outcome)") }
        return event
    }

    /// Stores `count` events received a second apart, oldest first; returns their ids in that order.
    func addMany(_ count: Int, tag: String = "e") throws -> [String] {
        var ids: [String] = []
        for index in 0..<count {
            let tail = String(index + 1, radix: 16)
            let id = tag + String(repeating: "0", count: 64 - tag.count - tail.count) + tail
            let stamp = QueueTime.formatRFC3339(Date(timeIntervalSince1970: 1_795_800_000 + Double(index)))
            try add(Self.event(id: id, orderRef: "order-\(index)", receivedAt: stamp))
            ids.append(id)
        }
        return ids
    }

    /// Runs SQL in this database through psql; its unaligned, tuples-only output, trimmed.
    @discardableResult
    func sql(_ text: String) throws -> String {
        try cluster.psql(text, database: name).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A config file naming this database through `url_env` (the URL itself is only in the child's environment).
    func config(in folder: TemporaryDirectory, variable: String = "PAYHOOK_TEST_DATABASE_URL") throws -> String {
        let path = folder.file("payhook.toml")
        let text = """
            spool = "\(folder.path)/unused-spool"

            [store]
            kind = "postgres"
            url_env = "\(variable)"
            instance = "cli-test"

            [[unified]]
            path = "/notify/unified"
            domain_code = "demo"
            secret_env = "PAYHOOK_TEST_UNIFIED_SECRET"

            """
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// The child environment the config needs.
    var environment: [String: String] { ["PAYHOOK_TEST_DATABASE_URL": conninfo, "PAYHOOK_TEST_UNIFIED_SECRET": "s3cr3t"] }
}
