import Glibc
import Logging
import PayhookSpool
import PayhookSpoolFormat
import PayhookTestSupport
import Testing

/// docs/durability.md §6: a failed fsync of a record file fails that store only; a failed fsync of a directory
/// leaves the spool not knowing which names are durable, so it refuses everything until it is reopened.
@Suite("Health and failure counters")
struct SpoolHealthTests {
    @Test("a failed directory fsync makes the spool unhealthy: every later store and probe is refused until it is reopened")
    func directoryFsyncFailure() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let fileSystem = RecordingFileSystem(root: root)
        let logs = LogStore()
        let spool = try openSpool(root, fileSystem: fileSystem, logs: logs)
        let earlier = makeRecord(id: testID(500))
        #expect(try spool.store(earlier) == .stored)
        #expect(spool.isHealthy)
        #expect(spool.unhealthyReason == nil)
        fileSystem.inject(.init(operation: .fsync, path: .exact("new"), errno: EIO))

        let record = makeRecord(id: testID(501))
        let failed = #expect(throws: SpoolError.self) { try spool.store(record) }
        #expect(failed?.code == .io)
        #expect(failed?.message == "fsync new/: Input/output error")
        #expect(!spool.isHealthy)
        #expect(spool.unhealthyReason == failed)
        #expect(logs.messages(at: .critical) == [
            "fsync new/: Input/output error; the spool refuses every store until it is reopened and recovery has re-checked it",
        ])

        // The disk works again, but what the failed fsync dropped is unknown: a new record, a duplicate of an
        // earlier one, and the health probe are all refused, without touching the disk.
        fileSystem.setInjecting(false)
        let start = fileSystem.eventCount
        for attempt in [makeRecord(id: testID(502)), earlier, record] {
            let refused = #expect(throws: SpoolError.self) { try spool.store(attempt) }
            #expect(refused?.code == .unhealthy)
            #expect(refused?.errno == nil)
            #expect(refused?.message == "spool \(root) is unhealthy since fsync new/: Input/output error; which "
                + "records are durable is unknown until it is reopened: restart payhook so that recovery re-checks it")
        }
        #expect((#expect(throws: SpoolError.self) { try spool.probe() })?.code == .unhealthy)
        #expect(fileSystem.events(since: start).isEmpty)
        #expect(spool.failureCount(.fsyncDirectory) == 1)
        #expect(spool.failureCounts.values.reduce(0, +) == 1, "refusals are not storage errors")
        #expect(logs.messages(at: .critical).count == 1)

        // Reopening runs recovery, which syncs every folder again; the new spool is healthy.
        spool.close()
        let reopened = try openSpool(root, fileSystem: fileSystem)
        defer { reopened.close() }
        #expect(reopened.isHealthy)
        #expect(reopened.failureCounts.values.allSatisfy { $0 == 0 })
        #expect(try reopened.store(earlier) == .duplicate)
        #expect(try reopened.store(record) == .stored)
        try reopened.probe()
    }

    @Test("a directory that cannot even be opened for its fsync fails the store, but the spool stays healthy")
    func directoryOpenFailure() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let fileSystem = RecordingFileSystem(root: root)
        let spool = try openSpool(root, fileSystem: fileSystem)
        defer { spool.close() }
        fileSystem.inject(.init(operation: .open, path: .exact("new"), errno: EMFILE))

        let record = makeRecord(id: testID(510))
        let error = #expect(throws: SpoolError.self) { try spool.store(record) }
        #expect(error?.message == "open new/: Too many open files")
        // No fsync ran, so no error state was consumed: nothing is known to be lost, and the link was taken back.
        #expect(spool.isHealthy)
        #expect(spool.failureCount(.open) == 1)
        #expect(try names(root + "/new") == [])
        #expect(try names(root + "/tmp") == [])
        #expect(try spool.store(record) == .stored)
    }

    @Test("a store whose own fsyncs succeeded is not acknowledged once another store's directory fsync has failed")
    func inFlightStoreIsNotAcknowledged() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let fileSystem = RecordingFileSystem(root: root)
        let spool = try openSpool(root, fileSystem: fileSystem)
        defer { spool.close() }
        let first = makeRecord(id: testID(520))
        let second = makeRecord(id: testID(521))
        let holder = Shared<Spool?>(spool)
        let secondResult = Shared<SpoolError?>(nil)
        // While the first store removes its tmp/ name (its last step, after fsync(ids/)), a second store runs and
        // its fsync of new/ fails (the first store's was call 1, this is call 2).
        fileSystem.inject(.init(operation: .fsync, path: .exact("new"), errno: EIO, nth: 2))
        fileSystem.inject(.init(operation: .unlink, path: .prefix("tmp/\(first.id)."), errno: EIO, action: {
            guard let spool = holder.current else { return }
            do throws(SpoolError) {
                _ = try spool.store(second)
            } catch {
                secondResult.update { $0 = error }
            }
        }))

        let error = #expect(throws: SpoolError.self) { try spool.store(first) }
        #expect(secondResult.current?.message == "fsync new/: Input/output error")
        #expect(error?.code == .unhealthy)
        holder.update { $0 = nil }
    }

    @Test("the failure counters count from many threads at once")
    func countersAreThreadSafe() throws {
        let directory = try TemporaryDirectory()
        let fileSystem = RecordingFileSystem(root: directory.spool)
        let spool = try openSpool(directory.spool, fileSystem: fileSystem)
        defer { spool.close() }
        fileSystem.inject(.init(operation: .write, path: .prefix("tmp/"), errno: ENOSPC, persistent: true))

        let results = runConcurrently(16) { index in
            (try? spool.store(makeRecord(id: testID(600 + index)))) == nil
        }
        #expect(results.allSatisfy { $0 })
        #expect(spool.failureCount(.write) == 16)
        #expect(spool.failureCounts["write"] == 16)
        #expect(Set(spool.failureCounts.keys) == Set(SpoolFailureKind.allCases.map(\.rawValue)))
        #expect(spool.failureCounts.keys.contains("fsync_dir"))
        #expect(spool.isHealthy)
    }

    @Test("the free-space guard refuses before writing, counts it, and lets stores through again once there is room")
    func freeSpaceGuard() throws {
        let fileSystem = CrashWorkload.freshFileSystem()
        fileSystem.limitCapacity(to: 64 * 1024)
        let logs = LogStore()
        let spool = try openSpool(CrashWorkload.root, fileSystem: fileSystem, logs: logs, minimumFreeBytes: 16 * 1024)
        defer { spool.close() }

        var stored: [SpoolRecord] = []
        var refusal: SpoolError?
        for index in 0..<64 {
            let record = makeRecord(id: testID(700 + index))
            do {
                #expect(try spool.store(record) == .stored)
                stored.append(record)
            } catch {
                refusal = error
                break
            }
        }
        // CrashFS counts 4 KiB per file: the lock file and 12 records leave 12 KiB, below the 16 KiB minimum.
        #expect(stored.count == 12)
        #expect(refusal?.code == .noSpace)
        #expect(refusal?.errno == ENOSPC)
        #expect(refusal?.message.hasPrefix("write tmp/\(testID(712)).") == true)
        #expect(refusal?.message.hasSuffix(": only 12288 bytes free on the spool's file system, below the minimum of 16384") == true)
        #expect(try fileSystem.availableBytes(CrashWorkload.root) > 0, "refused before the disk was full")
        #expect(spool.failureCount(.belowMinimumFree) == 1)
        #expect(spool.failureCount(.write) == 0)
        #expect(fileSystem.entries(CrashWorkload.root + "/tmp").isEmpty)
        #expect((#expect(throws: SpoolError.self) { try spool.probe() })?.code == .noSpace)
        #expect(spool.isHealthy)
        // A duplicate needs no space.
        #expect(try spool.store(stored[0]) == .duplicate)

        // A consumer deletes two records and the ledger forgets them (as pruning does): room again.
        for record in stored.prefix(2) {
            try fileSystem.unlink(CrashWorkload.root + "/new/\(record.id).json")
            try fileSystem.unlink(CrashWorkload.root + "/ids/\(record.id)")
        }
        #expect(try spool.store(makeRecord(id: testID(700 + stored.count))) == .stored)
        try spool.probe()
    }

    @Test("a file system that cannot report free space (the protocol's default) is not guarded")
    func guardNeedsStatvfs() throws {
        let directory = try TemporaryDirectory()
        let fileSystem = RecordingFileSystem(root: directory.spool)
        #expect(throws: SpoolErrno(ENOSYS)) { try fileSystem.availableBytes(directory.spool) }
        let spool = try openSpool(directory.spool, fileSystem: fileSystem, minimumFreeBytes: .max)
        defer { spool.close() }
        #expect(try spool.store(makeRecord(id: testID(800))) == .stored)
        #expect(spool.failureCount(.belowMinimumFree) == 0)

        // The real file system reports it: a minimum larger than any disk refuses everything.
        let guarded = try TemporaryDirectory()
        let refusing = try openSpool(guarded.spool, minimumFreeBytes: .max)
        defer { refusing.close() }
        #expect((#expect(throws: SpoolError.self) { try refusing.store(makeRecord(id: testID(801))) })?.code == .noSpace)
        #expect(try names(guarded.spool + "/tmp") == [])
    }
}
