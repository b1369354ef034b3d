import Foundation
import PayhookCore
import PayhookStore
import PayhookTestSupport
import Testing

/// `payhook queue consume --metrics-listen` over PostgreSQL: the queue's ages come from the database (the ledger's
/// `received_at` of the oldest waiting and taken events), through a session of the worker's own.
@Suite(.timeLimit(.minutes(2)))
struct ConsumeMetricsPostgresTests {
    @Test func theQueueAgeComesFromTheDatabase() throws {
        let setup = try PostgresQueueCLITests.Setup()
        let hourAgo = QueueTime.formatRFC3339(Date().addingTimeInterval(-3600))
        let old = try setup.database.add(TestDatabase.event(id: String(repeating: "a", count: 64), orderRef: "old", receivedAt: hourAgo)).id
        let fresh = try setup.database.add(
            TestDatabase.event(id: String(repeating: "b", count: 64), orderRef: "fresh", receivedAt: QueueTime.formatRFC3339(Date()))).id
        let marks = setup.folder.path
        let command = """
            touch "\(marks)/started.$PAYHOOK_EVENT_ID"
            while [ ! -e "\(marks)/release" ]; do sleep 0.05; done
            """
        let worker = try setup.child(["consume", "--exec", command, "--metrics-listen", "127.0.0.1:0"])
        let port = try #require(MeasuringSuites.QueueConsumeTests.metricsPort(worker), "\(worker.stderr)")
        // The oldest is taken first, and held while its command waits.
        #expect(eventually { FileManager.default.fileExists(atPath: "\(marks)/started.\(old)") }, "\(worker.stderr)")
        // A census may be reused for a while after a slow one (QueueGauges): scrape until it shows the take.
        var running: [String: Double] = [:]
        _ = try eventually(within: 35) {
            running = try MeasuringSuites.QueueConsumeTests.scrape(port)
            return running["payhook_queue_oldest_event_age_seconds{folder=\"cur\"}"] ?? 0 > 0
        }
        #expect((3599...3660).contains(running["payhook_queue_oldest_event_age_seconds{folder=\"cur\"}"] ?? -1), "\(running)")
        #expect((0..<60).contains(running["payhook_queue_oldest_event_age_seconds{folder=\"new\"}"] ?? -1), "\(running)")
        #expect(running["payhook_consume_current_attempt{worker=\"0\"}"] == 1)
        #expect(running["payhook_consume_processed_total"] == 0)

        _ = FileManager.default.createFile(atPath: "\(marks)/release", contents: nil)
        var done: [String: Double] = [:]
        _ = try eventually(within: 35) {
            done = try MeasuringSuites.QueueConsumeTests.scrape(port)
            return done["payhook_consume_processed_total"] == 2 && done["payhook_queue_oldest_event_age_seconds{folder=\"cur\"}"] == 0
        }
        #expect(done["payhook_consume_processed_total"] == 2)
        #expect(FileManager.default.fileExists(atPath: "\(marks)/started.\(fresh)"))
        #expect(done["payhook_queue_oldest_event_age_seconds{folder=\"cur\"}"] == 0)
        #expect(done["payhook_queue_oldest_event_age_seconds{folder=\"new\"}"] == 0)
        // No spool series from a worker: the server counts the queue.
        #expect(!done.keys.contains { $0.hasPrefix("payhook_spool_files") })
        kill(worker.pid, SIGTERM)
        #expect(try worker.finish(within: 10).status == 0)
    }
}
