import Foundation
import Logging
import PayhookConfig
import PayhookCore
import PayhookHTTP
import PayhookServer
import PayhookStore
import PayhookTestSupport
import Synchronization
import Testing

/// A second ``EventStore``, in memory: what a new backend has to provide, and nothing more. Serving with it
/// needs no change to the router, the sources or the command line (docs/architecture.md, "Where a new store
/// goes").
final class MemoryEventStore: EventStore {
    struct State {
        var events: [String: (fingerprint: String, bytes: [UInt8])] = [:]
        var conflicts: [String: Int] = [:]
        var failNextStores = 0
        var probeFailure: String?
        var unhealthy: String?
        var retentionSeconds: Int?
        var closed = false
    }
    let state = Mutex(State())

    func store(_ event: Event) throws(StoreError) -> StoreOutcome {
        let (id, fingerprint, bytes) = (event.id, event.fingerprint, event.jsonBytes)
        let result: Result<StoreOutcome, StoreError> = state.withLock { state in
            if state.closed { return .failure(StoreError("closed")) }
            if state.failNextStores > 0 {
                state.failNextStores -= 1
                return .failure(StoreError("write failed: No space left on device", errno: ENOSPC))
            }
            guard let known = state.events[id] else {
                state.events[id] = (fingerprint, bytes())
                return .success(.stored)
            }
            if known.fingerprint == fingerprint { return .success(.duplicate) }
            state.conflicts[ConflictDisposition.kept.rawValue, default: 0] += 1
            return .success(.conflict(auditCopy: "memory:\(id)", disposition: .kept))
        }
        return try result.get()
    }

    func probe() throws(StoreError) {
        if let reason = state.withLock({ $0.probeFailure ?? $0.unhealthy }) { throw StoreError(reason) }
    }

    var unhealthyReason: String? { state.withLock { $0.unhealthy } }

    func counts() -> StoreCounts {
        state.withLock { state in
            StoreCounts(conflicts: state.conflicts)
        }
    }

    func census() -> QueueCensus? { state.withLock { QueueCensus(counts: ["new": $0.events.count], oldestReceived: [:]) } }

    func recordRetention(seconds: Int) throws(StoreError) {
        state.withLock { $0.retentionSeconds = seconds }
    }

    func close() { state.withLock { $0.closed = true } }

    /// The stored events, decoded, by id.
    func events() throws -> [String: [String: Any]] {
        let stored = state.withLock { $0.events.mapValues(\.bytes) }
        var decoded: [String: [String: Any]] = [:]
        for (id, bytes) in stored {
            decoded[id] = try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any]
        }
        return decoded
    }
}

/// The live server, unchanged, on the in-memory store: every answer docs/contract.md §3 gives for a store's outcome.
@Suite(.timeLimit(.minutes(2)))
struct StoreSeamTests {
    final class Live: @unchecked Sendable {
        let dir: TemporaryDirectory
        let store = MemoryEventStore()
        let server: PayhookServer
        init() throws {
            dir = try TemporaryDirectory()
            let config = try demoConfig(spool: dir.file("unused-spool"))
            server = try PayhookServer(config: config, logger: Logger(label: "payhook-test") { _ in SwiftLogNoOpLogHandler() }, store: store)
        }
        var port: Int { server.http.boundAddress.port }
        func get(_ target: String) throws -> HTTPReply {
            try HTTPReply.exchange("GET \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", port: port)
        }
        deinit { server.shutdown() }
    }

    @Test func storedDuplicateAndConflictAnswerAsWithTheSpool() throws {
        let live = try Live()
        #expect(try live.get(UnifiedLiveTests.target("success")).body == "success")
        #expect(try live.get(UnifiedLiveTests.target("duplicate")).body == "success")
        let conflict = try live.get(UnifiedLiveTests.target("conflict"))
        #expect(conflict.status == 200)
        #expect(conflict.body == "success")
        let events = try live.store.events()
        #expect(events.count == 1)
        let event = try #require(events.values.first)
        #expect(event["dedupe_key"] as? String == "unified/demo/demo-order-1001/SUCCESSPAY")
        #expect(event["amount"] as? Int == 100)
        // The spool was never opened: the configured directory does not exist.
        #expect(!FileManager.default.fileExists(atPath: live.dir.file("unused-spool")))
        // The retention the consumer side needs reached the store.
        #expect(live.store.state.withLock { $0.retentionSeconds } == live.server.config.ledgerRetentionDays * 86_400)
        let metrics = try live.get("/metrics").body
        #expect(metrics.contains("payhook_conflicts_total{disposition=\"kept\"} 1"))
        #expect(metrics.contains("payhook_spool_files{folder=\"new\"} 1"))
        #expect(metrics.contains("outcome=\"conflict\""))
    }

    @Test func aFailedStoreIsAnswered503AndTheRetryStored() throws {
        let live = try Live()
        live.store.state.withLock { $0.failNextStores = 1 }
        let failed = try live.get(UnifiedLiveTests.target("success"))
        #expect(failed.status == 503)
        #expect(failed.headers["retry-after"] == "30")
        #expect(try live.store.events().isEmpty)
        #expect(try live.get("/metrics").body.contains("payhook_storage_errors_total{error=\"ENOSPC\"} 1"))
        #expect(try live.get(UnifiedLiveTests.target("success")).body == "success")
        #expect(try live.store.events().count == 1)
    }

    @Test func healthAndStopFollowTheStore() throws {
        let live = try Live()
        #expect(try live.get("/healthz").status == 200)
        live.store.state.withLock { $0.probeFailure = "cannot write" }
        #expect(try live.get("/healthz").status == 503)
        live.store.state.withLock {
            $0.probeFailure = nil
            $0.unhealthy = "lost track of what is durable"
        }
        #expect(try live.get("/healthz").status == 503)
        #expect(try live.get("/metrics").body.contains("payhook_spool_healthy 0"))
        #expect(live.server.waitForStop { _ in nil } == .unhealthy("lost track of what is durable"))
    }
}
