import Dispatch
import Foundation
import Logging
@_spi(Testing) import PayhookSpool
import PayhookSpoolFormat
import PayhookTestSupport
import Testing

/// Group commit (docs/durability.md §5): concurrent stores share the directory fsyncs, and none is answered before
/// the batch holding its record is durable (docs/contract.md §4, invariant 1).
@Suite("Group commit")
struct GroupCommitTests {
    @Test("64 concurrent stores share directory fsyncs, and each returns only after the fsync(ids/) covering its link")
    func concurrentStoresShareFsyncs() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let fileSystem = RecordingFileSystem(root: root)
        let spool = try openSpool(root, fileSystem: fileSystem)
        defer { spool.close() }
        let count = 64
        let records = (0..<count).map { makeRecord(id: testID(7000 + $0)) }

        let start = fileSystem.eventCount
        // The writer waits until a few stores are pending, so that batching does not depend on the scheduler;
        // the rest join batches as they arrive, as under real load.
        let results = storeAsOneBatch(spool, records, pending: 8, afterEach: { record, _ in
            fileSystem.mark("return \(record.id)")
        })
        let log = fileSystem.events(since: start)

        #expect(results?.count == count)
        #expect(results?.allSatisfy { (try? $0.get()) == .stored } == true)
        let syncsOfNew = log.indices.filter { log[$0].operation == .fsync && log[$0].path == "new" }
        let syncsOfLedger = log.indices.filter { log[$0].operation == .fsync && log[$0].path == "ids" }
        #expect(syncsOfNew.count < count, "no batching: \(syncsOfNew.count) fsyncs of new/ for \(count) stores")
        #expect(syncsOfLedger.count < count, "no batching: \(syncsOfLedger.count) fsyncs of ids/ for \(count) stores")
        #expect(syncsOfNew.count == syncsOfLedger.count)
        let histogram = spool.batchSizeHistogram
        #expect(histogram.reduce(0) { $0 + $1.key * $1.value } == count)
        #expect(histogram.values.reduce(0, +) == syncsOfLedger.count)
        #expect(histogram.keys.contains { $0 >= 8 })
        print("group commit: \(count) concurrent stores, \(syncsOfNew.count) fsyncs of new/, "
            + "\(syncsOfLedger.count) of ids/, batch sizes \(histogram.sorted { $0.key < $1.key })")

        // Calls are recorded once they returned, so "fsync(ids/) before the return marker" means the fsync had
        // completed before the store returned.
        for record in records {
            let linkNew = log.firstIndex { $0.operation == .link && $0.path == "new/\(record.id).json" }
            let linkLedger = log.firstIndex { $0.operation == .link && $0.path == "ids/\(record.id)" }
            let returned = log.firstIndex { $0.operation == .mark && $0.path == "return \(record.id)" }
            guard let linkNew, let linkLedger, let returned else {
                let found = "link new/ \(linkNew as Int?), link ids/ \(linkLedger as Int?), return \(returned as Int?)"
                Issue.record("\(record.id.suffix(4)): \(found)")
                continue
            }
            let syncNew = syncsOfNew.first { $0 > linkNew }
            let syncLedger = syncsOfLedger.first { $0 > linkLedger }
            #expect(syncNew.map { $0 < linkLedger } == true, "\(record.id.suffix(4)) entered in ids/ before fsync(new/)")
            #expect(syncLedger.map { $0 < returned } == true, "\(record.id.suffix(4)) returned before fsync(ids/)")
        }
        #expect(try names(root + "/new").count == count)
        #expect(try names(root + "/ids").count == count)
        #expect(try names(root + "/tmp") == [])
    }

    @Test("a lone store with the writer idle publishes on its own thread, a batch of one, with the same steps")
    func loneStorePublishesInline() throws {
        let directory = try TemporaryDirectory()
        let fileSystem = RecordingFileSystem(root: directory.spool)
        let publishers = Shared<[pthread_t]>([])
        let spool = try Spool(
            directory: directory.spool, inspector: TestInspector(), fileSystem: fileSystem, logger: LogStore().logger(),
            onBatch: { _ in publishers.update { $0.append(pthread_self()) } })
        defer { spool.close() }
        let record = makeRecord(id: testID(7200))
        let start = fileSystem.eventCount
        #expect(try spool.store(record) == .stored)
        let threads = publishers.current
        #expect(threads.count == 1)
        #expect(threads.first.map { pthread_equal($0, pthread_self()) != 0 } == true, "published by another thread")
        #expect(spool.batchSizeHistogram == [1: 1])
        let steps = fileSystem.events(since: start)
            .filter { [.link, .fsync].contains($0.operation) && ["new", "ids"].contains($0.path.split(separator: "/").first.map(String.init)) }
            .map { "\($0.operation) \($0.path)" }
        #expect(steps == ["link new/\(record.id).json", "fsync new", "link ids/\(record.id)", "fsync ids"])
    }

    @Test("a failed fsync(new/) fails every store of its batch, takes back their records and makes the spool unhealthy")
    func failedDirectoryFsyncFailsTheBatch() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let fileSystem = RecordingFileSystem(root: root)
        let logs = LogStore()
        let spool = try openSpool(root, fileSystem: fileSystem, logs: logs)
        defer { spool.close() }
        let records = (0..<5).map { makeRecord(id: testID(7100 + $0)) }
        let taken = records[0]
        // A consumer takes the first record between its link into new/ and the failed fsync: that one is
        // delivered anyway, so its ledger entry is made (the existing rule); the others are taken back.
        fileSystem.inject(.init(operation: .fsync, path: .exact("new"), errno: EIO, action: {
            _ = try? PosixFileSystem().rename(root + "/new/\(taken.id).json", root + "/cur/\(taken.id).json")
        }))

        let start = fileSystem.eventCount
        let results = try #require(storeAsOneBatch(spool, records))
        let log = fileSystem.events(since: start)

        #expect(spool.batchSizeHistogram == [5: 1])
        #expect(log.filter { $0.operation == .fsync && $0.path == "new" }.count == 1)
        for result in results {
            guard case .failure(let error) = result else {
                Issue.record("a store of the failed batch was answered \(result)")
                continue
            }
            #expect(error.code == .io)
            #expect(error.message == "fsync new/: Input/output error")
        }
        #expect(try names(root + "/new") == [])
        #expect(try names(root + "/cur") == ["\(taken.id).json"])
        #expect(try names(root + "/ids") == [taken.id])
        #expect(try names(root + "/tmp") == [])
        #expect(!spool.isHealthy)
        #expect(spool.unhealthyReason?.message == "fsync new/: Input/output error")
        #expect(spool.failureCount(.fsyncDirectory) == 1)
        #expect(logs.messages(at: .critical).count == 1)
        #expect(logs.messages(at: .warning).filter { $0.hasPrefix("took back new/") }.count == 4)

        fileSystem.setInjecting(false)
        #expect((#expect(throws: SpoolError.self) { try spool.store(records[1]) })?.code == .unhealthy)
        spool.close()
        let reopened = try openSpool(root)
        defer { reopened.close() }
        #expect(reopened.recovery == SpoolRecoveryReport())
        #expect(try reopened.store(taken) == .duplicate)
        for record in records.dropFirst() {
            #expect(try reopened.store(record) == .stored)
        }
    }

    @Test("a failed link fails only its own store; the rest of the batch is stored")
    func failedLinkFailsOnlyItsStore() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let fileSystem = RecordingFileSystem(root: root)
        let spool = try openSpool(root, fileSystem: fileSystem)
        defer { spool.close() }
        let records = (0..<6).map { makeRecord(id: testID(7200 + $0)) }
        let intoNew = records[1]
        let intoLedger = records[4]
        fileSystem.inject(.init(operation: .link, path: .exact("new/\(intoNew.id).json"), errno: EIO))
        fileSystem.inject(.init(operation: .link, path: .exact("ids/\(intoLedger.id)"), errno: EIO))

        let start = fileSystem.eventCount
        let results = try #require(storeAsOneBatch(spool, records))
        let log = fileSystem.events(since: start)

        #expect(spool.batchSizeHistogram == [6: 1])
        #expect(log.filter { $0.operation == .fsync && ($0.path == "new" || $0.path == "ids") }.count == 2)
        for (record, result) in zip(records, results) {
            switch result {
            case .success(let outcome):
                #expect(record.id != intoNew.id && record.id != intoLedger.id)
                #expect(outcome == .stored)
            case .failure(let error):
                #expect(record.id == intoNew.id || record.id == intoLedger.id, "\(error)")
                #expect(error.code == .io)
            }
        }
        let stored = records.filter { $0.id != intoNew.id && $0.id != intoLedger.id }
        #expect(try names(root + "/new") == stored.map { "\($0.id).json" }.sorted())
        #expect(try names(root + "/ids") == stored.map(\.id).sorted())
        #expect(try names(root + "/tmp") == [])
        #expect(spool.isHealthy)
        #expect(spool.failureCount(.link) == 2)

        fileSystem.setInjecting(false)
        #expect(try spool.store(intoNew) == .stored)
        #expect(try spool.store(intoLedger) == .stored)
    }

    @Test("close() with stores waiting for the writer: each throws .closed, none stays blocked, nothing is published")
    func closeWithPendingStores() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let spool = try openSpool(root)
        let records = (0..<8).map { makeRecord(id: testID(7300 + $0)) }

        // storeAsOneBatch waits (bounded) for every store to return and records an issue if one stays blocked.
        let results = try #require(storeAsOneBatch(spool, records, timeout: 20, whilePending: { spool.close() }))

        #expect(results.count == records.count)
        for result in results {
            guard case .failure(let error) = result else {
                Issue.record("a store pending at close() was answered \(result)")
                continue
            }
            #expect(error.code == .closed)
        }
        #expect(spool.batchSizeHistogram.isEmpty)
        #expect(try names(root + "/new") == [])
        #expect(try names(root + "/ids") == [])
        #expect(try names(root + "/tmp") == [])
        #expect((#expect(throws: SpoolError.self) { try spool.store(records[0]) })?.code == .closed)
        spool.close()

        // The lock was released only after the writer stopped: a new spool opens, and the records store.
        let reopened = try openSpool(root)
        defer { reopened.close() }
        #expect(reopened.recovery == SpoolRecoveryReport())
        for record in records {
            #expect(try reopened.store(record) == .stored)
        }
    }

    @Test("releasing a spool without close() stops its writer thread")
    func writerThreadDoesNotLeak() throws {
        let directory = try TemporaryDirectory()
        var spool: Spool? = try openSpool(directory.spool)
        let status = try #require(spool?.writerStatus)
        #expect(status.isRunning)
        #expect(try spool?.store(makeRecord(id: testID(7400))) == .stored)
        // deinit closes the spool, which waits for the writer to exit before it returns.
        spool = nil
        #expect(!status.isRunning)
        // And the lock went with it.
        let reopened = try openSpool(directory.spool)
        reopened.close()
    }
}
