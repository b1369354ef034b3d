import Glibc
import Logging
import PayhookSpool
import PayhookSpoolFormat
import PayhookTestSupport
import Testing

@Suite("Storing records")
struct SpoolStoreTests {
    @Test("a stored record is one file in new/, hard-linked from ids/, with tmp/ empty")
    func storeWritesOneRecord() throws {
        let directory = try TemporaryDirectory()
        let spool = try openSpool(directory.spool)
        defer { spool.close() }
        let record = makeRecord(id: testID(1))

        #expect(try spool.store(record) == .stored)

        let root = directory.spool
        #expect(try names(root + "/new") == ["\(record.id).json"])
        #expect(try contents(root + "/new/\(record.id).json") == record.bytes)
        #expect(try names(root + "/ids") == [record.id])
        let published = try posix.stat(root + "/new/\(record.id).json")
        let ledger = try posix.stat(root + "/ids/\(record.id)")
        #expect(published.inode == ledger.inode)
        #expect(published.linkCount == 2)
        #expect(published.kind == .regular)
        #expect(try names(root + "/tmp") == [])
        #expect(try names(root + "/cur") == [])
        #expect(try names(root + "/conflicts") == [])
    }

    @Test("a record is written as an unnamed file and linked through its descriptor: no tmp/ name is made or removed")
    func recordsAreUnnamedFiles() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let fileSystem = RecordingFileSystem(root: root, unnamedFiles: true)
        let logs = LogStore()
        let spool = try openSpool(root, fileSystem: fileSystem, logs: logs)
        defer { spool.close() }
        let records = (0..<3).map { makeRecord(id: testID(60 + $0)) }
        let start = fileSystem.eventCount
        for record in records {
            #expect(try spool.store(record) == .stored)
        }
        let log = fileSystem.events(since: start)
        #expect(log.filter { $0.operation == .open && $0.path == "tmp/" }.count == records.count)
        #expect(!log.contains { $0.path.hasPrefix("tmp/") && ($0.creates && $0.path != "tmp/" || $0.operation == .unlink) })
        for record in records {
            // Both names come from the open descriptor, in this order, and name one inode with the record.
            let links = log.filter {
                $0.operation == .link && ($0.path == "new/\(record.id).json" || $0.path == "ids/\(record.id)")
            }
            #expect(links.map(\.path) == ["new/\(record.id).json", "ids/\(record.id)"])
            #expect(links.allSatisfy { $0.source == "tmp/" })
            #expect(try contents(root + "/new/\(record.id).json") == record.bytes)
            #expect(try posix.stat(root + "/new/\(record.id).json").inode == posix.stat(root + "/ids/\(record.id)").inode)
        }
        #expect(try names(root + "/tmp") == [])
        #expect(logs.messages(at: .notice).isEmpty)
    }

    @Test("without unnamed files the spool says so once and writes named files in tmp/, removed after the store")
    func fallsBackToNamedFiles() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let fileSystem = RecordingFileSystem(root: root, unnamedFiles: false)
        let logs = LogStore()
        let spool = try openSpool(root, fileSystem: fileSystem, logs: logs)
        defer { spool.close() }
        let records = (0..<2).map { makeRecord(id: testID(70 + $0)) }
        let start = fileSystem.eventCount
        for record in records {
            #expect(try spool.store(record) == .stored)
        }
        let log = fileSystem.events(since: start)
        for record in records {
            #expect(log.contains { $0.creates && $0.path.hasPrefix("tmp/\(record.id).") })
            #expect(log.contains { $0.operation == .unlink && $0.path.hasPrefix("tmp/\(record.id).") })
            #expect(try contents(root + "/new/\(record.id).json") == record.bytes)
        }
        #expect(try names(root + "/tmp") == [])
        let notices = logs.messages(at: .notice).filter { $0.contains("no unnamed files") }
        #expect(notices.count == 1, "\(logs.messages(at: .notice))")
    }

    @Test("unnamed files that cannot be linked (a security policy, no /proc) are found at open; named files are used")
    func unlinkableUnnamedFilesAreFoundAtOpen() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let fileSystem = RecordingFileSystem(root: root, unnamedFiles: true)
        fileSystem.inject(.init(operation: .link, path: .exact("tmp/unnamed-check"), errno: EACCES))
        let logs = LogStore()
        let spool = try openSpool(root, fileSystem: fileSystem, logs: logs)
        defer { spool.close() }
        let notices = logs.messages(at: .notice).filter { $0.contains("could not be linked") }
        #expect(notices.count == 1, "\(logs.messages(at: .notice))")
        #expect(notices.first?.contains("Permission denied") == true)
        let record = makeRecord(id: testID(80))
        let start = fileSystem.eventCount
        #expect(try spool.store(record) == .stored)
        let log = fileSystem.events(since: start)
        #expect(log.contains { $0.creates && $0.path.hasPrefix("tmp/\(record.id).") })
        #expect(!log.contains { $0.operation == .open && $0.path == "tmp/" })
        #expect(try contents(root + "/new/\(record.id).json") == record.bytes)
        #expect(try names(root + "/tmp") == [])
        #expect(spool.failureCounts.values.allSatisfy { $0 == 0 })
    }

    @Test("the same record again is a duplicate and writes nothing")
    func sameRecordIsDuplicate() throws {
        let directory = try TemporaryDirectory()
        let fileSystem = RecordingFileSystem(root: directory.spool)
        let spool = try openSpool(directory.spool, fileSystem: fileSystem)
        defer { spool.close() }
        let record = makeRecord(id: testID(2))
        #expect(try spool.store(record) == .stored)

        let before = fileSystem.eventCount
        #expect(try spool.store(record) == .duplicate)
        let calls = fileSystem.events(since: before)
        #expect(!calls.isEmpty, "the ledger is read")
        #expect(calls.allSatisfy { $0.operation == .readFile || $0.operation == .stat }, "\(calls)")
        #expect(!calls.contains { $0.creates || $0.operation == .write || $0.operation == .link })
        #expect(try names(directory.spool + "/new") == ["\(record.id).json"])
        #expect(try names(directory.spool + "/tmp") == [])
    }

    @Test("store(id:fingerprint:bytes:) builds the bytes only for a record it writes: never for a duplicate")
    func lazyBytes() throws {
        let directory = try TemporaryDirectory()
        let fileSystem = RecordingFileSystem(root: directory.spool)
        let spool = try openSpool(directory.spool, fileSystem: fileSystem)
        defer { spool.close() }
        let record = makeRecord(id: testID(3))
        var built = 0
        let build = { () -> [UInt8] in
            built += 1
            return record.bytes
        }
        #expect(try spool.store(id: record.id, fingerprint: record.fingerprint, bytes: build) == .stored)
        #expect(built == 1)
        #expect(try contents(directory.spool + "/new/\(record.id).json") == record.bytes)

        let before = fileSystem.eventCount
        #expect(try spool.store(id: record.id, fingerprint: record.fingerprint, bytes: build) == .duplicate)
        #expect(built == 1, "a duplicate is answered from the ledger alone")
        #expect(fileSystem.events(since: before).allSatisfy { $0.operation == .readFile || $0.operation == .stat })

        // Another fingerprint under the same id is a conflict: those bytes are kept, so they are built.
        let other = makeRecord(id: record.id, fingerprint: "fp-2", body: "payment 43")
        let outcome = try spool.store(id: other.id, fingerprint: other.fingerprint) { other.bytes }
        guard case .conflict = outcome else {
            Issue.record("expected a conflict, got \(outcome)")
            return
        }
    }

    @Test("store(id:fingerprint:bytes:) refuses built bytes that do not inspect to the id and fingerprint, writing nothing")
    func lazyBytesChecked() throws {
        let directory = try TemporaryDirectory()
        let fileSystem = RecordingFileSystem(root: directory.spool)
        let spool = try openSpool(directory.spool, fileSystem: fileSystem)
        defer { spool.close() }
        let before = fileSystem.eventCount
        for bytes in [Array("not a record".utf8), recordBytes(id: testID(5), fingerprint: "f", body: ""),
                      recordBytes(id: testID(4), fingerprint: "g", body: "")] {
            let error = #expect(throws: SpoolError.self) {
                try spool.store(id: testID(4), fingerprint: "f") { bytes }
            }
            #expect(error?.code == .invalidRecord)
        }
        let calls = fileSystem.events(since: before)
        #expect(calls.allSatisfy { $0.operation == .readFile || $0.operation == .stat }, "only the ledger is read: \(calls)")
        #expect(try names(directory.spool + "/new") == [])
        #expect(try names(directory.spool + "/tmp") == [])
    }

    @Test("a duplicate is recognised after the consumer took the record and after it acknowledged it")
    func duplicateAfterConsumer() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let spool = try openSpool(root)
        defer { spool.close() }
        let record = makeRecord(id: testID(3))
        #expect(try spool.store(record) == .stored)

        // The consumer takes it.
        try posix.rename(root + "/new/\(record.id).json", root + "/cur/\(record.id).json")
        #expect(try spool.store(record) == .duplicate)
        #expect(try names(root + "/new") == [])

        // The consumer acknowledges it.
        try posix.unlink(root + "/cur/\(record.id).json")
        #expect(try posix.stat(root + "/ids/\(record.id)").linkCount == 1)
        #expect(try spool.store(record) == .duplicate)
        #expect(try names(root + "/new") == [])
        #expect(try names(root + "/cur") == [])
    }

    @Test("a duplicate is recognised across a restart")
    func duplicateAcrossRestart() throws {
        let directory = try TemporaryDirectory()
        let record = makeRecord(id: testID(4))
        do {
            let spool = try openSpool(directory.spool)
            #expect(try spool.store(record) == .stored)
            spool.close()
        }
        let reopened = try openSpool(directory.spool)
        defer { reopened.close() }
        #expect(reopened.recovery.isEmpty)
        #expect(try reopened.store(record) == .duplicate)
        #expect(try names(directory.spool + "/new") == ["\(record.id).json"])
    }

    @Test("the same id with another fingerprint is a conflict: kept for audit, the original stays")
    func conflictKeepsAuditCopy() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let logs = LogStore()
        let spool = try openSpool(root, logs: logs)
        defer { spool.close() }
        let original = makeRecord(id: testID(5), fingerprint: "fp-original", body: "amount 10")
        let other = makeRecord(id: testID(5), fingerprint: "fp-other", body: "amount 99")
        #expect(try spool.store(original) == .stored)

        let outcome = try spool.store(other)
        guard case .conflict(let auditFile?, .kept) = outcome else {
            Issue.record("expected a new audit copy, got \(outcome)")
            return
        }
        #expect(auditFile.hasPrefix("conflicts/\(other.id)."))
        #expect(auditFile.hasSuffix(".json"))
        #expect(try contents(root + "/" + auditFile) == other.bytes)
        #expect(try names(root + "/conflicts").map { "conflicts/" + $0 } == [auditFile])
        #expect(try names(root + "/new") == ["\(original.id).json"])
        #expect(try contents(root + "/new/\(original.id).json") == original.bytes)
        #expect(try contents(root + "/ids/\(original.id)") == original.bytes)
        #expect(try names(root + "/tmp") == [])
        #expect(logs.messages(at: .warning).contains { $0.contains(auditFile) })

        // The original is still recognised; the same conflicting content again names the copy it has; another
        // conflicting content gets its own.
        #expect(try spool.store(original) == .duplicate)
        #expect(try spool.store(other) == .conflict(auditFile: auditFile, disposition: .repeated))
        let third = makeRecord(id: testID(5), fingerprint: "fp-third", body: "amount 98")
        guard case .conflict(let thirdFile?, .kept) = try spool.store(third) else {
            Issue.record("expected a new audit copy")
            return
        }
        #expect(thirdFile != auditFile)
        #expect(try names(root + "/conflicts").count == 2)
    }

    @Test("an audit copy never collides with one kept before a restart that reused the pid and set the clock back")
    func auditNamesSurviveRepeatedPidAndClock() throws {
        let original = makeRecord(id: testID(11), fingerprint: "fp-1")
        let changed = makeRecord(id: testID(11), fingerprint: "fp-2", body: "other amount")
        let changedAgain = makeRecord(id: testID(11), fingerprint: "fp-3", body: "a third amount")
        let other = makeRecord(id: testID(12))
        let first = CrashWorkload.freshFileSystem()
        let before = try Spool(directory: "/crash/spool", inspector: TestInspector(), fileSystem: first, logger: CrashChecker.quiet)
        #expect(try before.store(original) == .stored)
        guard case .conflict(let kept?, .kept) = try before.store(changed) else {
            Issue.record("expected a new audit copy")
            return
        }
        before.close()

        // The same tree after a reboot: the service got the same pid and the clock started over, so pid, counter
        // and microseconds repeat (CrashFS's pid and clock are deterministic). Only the inode tells the names apart.
        let second = CrashFS(image: first.currentImage)
        let after = try Spool(directory: "/crash/spool", inspector: TestInspector(), fileSystem: second, logger: CrashChecker.quiet)
        defer { after.close() }
        #expect(try after.store(other) == .stored)
        guard case .conflict(let keptAgain?, .kept) = try after.store(changedAgain) else {
            Issue.record("expected a new audit copy")
            return
        }
        #expect(keptAgain != kept)
        #expect(second.entries("/crash/spool/conflicts").count == 2)
        #expect(kept.hasPrefix("conflicts/\(changed.id).1000.2."))
        #expect(keptAgain.hasPrefix("conflicts/\(changed.id).1000.2."))
    }

    @Test("50 threads storing the same record: exactly one stores, 49 are duplicates")
    func concurrentSameRecord() throws {
        let directory = try TemporaryDirectory()
        let spool = try openSpool(directory.spool)
        defer { spool.close() }
        let record = makeRecord(id: testID(6))

        let outcomes = runConcurrently(50) { _ in Result { () throws(SpoolError) in try spool.store(record) } }

        let values = outcomes.compactMap { try? $0.get() }
        #expect(values.count == 50)
        #expect(values.filter { $0 == .stored }.count == 1)
        #expect(values.filter { $0 == .duplicate }.count == 49)
        #expect(try names(directory.spool + "/new") == ["\(record.id).json"])
        #expect(try names(directory.spool + "/tmp") == [])
    }

    @Test("50 threads storing distinct records: all 50 are stored")
    func concurrentDistinctRecords() throws {
        let directory = try TemporaryDirectory()
        let spool = try openSpool(directory.spool)
        defer { spool.close() }

        let outcomes = runConcurrently(50) { index in
            Result { () throws(SpoolError) in try spool.store(makeRecord(id: testID(1000 + index))) }
        }

        let values = outcomes.compactMap { try? $0.get() }
        #expect(values.count == 50)
        #expect(values.allSatisfy { $0 == .stored })
        let expected = (0..<50).map { "\(testID(1000 + $0)).json" }.sorted()
        #expect(try names(directory.spool + "/new") == expected)
        #expect(try names(directory.spool + "/ids").count == 50)
        #expect(try names(directory.spool + "/tmp") == [])
    }

    @Test("concurrent stores of one id with two contents: one stored, the rest duplicates or conflicts")
    func concurrentMixedContents() throws {
        let directory = try TemporaryDirectory()
        let spool = try openSpool(directory.spool)
        defer { spool.close() }
        let first = makeRecord(id: testID(7), fingerprint: "fp-a")
        let second = makeRecord(id: testID(7), fingerprint: "fp-b", body: "other")

        let outcomes = runConcurrently(20) { index in
            Result { () throws(SpoolError) in try spool.store(index.isMultiple(of: 2) ? first : second) }
        }

        let values = outcomes.compactMap { try? $0.get() }
        #expect(values.count == 20)
        #expect(values.filter { $0 == .stored }.count == 1)
        let winner = try TestInspector().inspect(contents(directory.spool + "/ids/\(first.id)"))
        let winnerIsFirst = winner?.fingerprint == "fp-a"
        let conflicts = values.filter { if case .conflict = $0 { true } else { false } }
        // The 10 stores of the other content conflict, and its one audit copy is written once; the other 9 of
        // the winner's are duplicates.
        #expect(conflicts.count == 10)
        #expect(conflicts.filter { if case .conflict(_, .kept) = $0 { true } else { false } }.count == 1)
        #expect(conflicts.filter { if case .conflict(_, .repeated) = $0 { true } else { false } }.count == 9)
        #expect(values.filter { $0 == .duplicate }.count == 9)
        #expect(try names(directory.spool + "/conflicts").count == 1)
        #expect(try contents(directory.spool + "/new/\(first.id).json") == (winnerIsFirst ? first : second).bytes)
    }

    @Test("waiting stores re-check the ledger after a failed store instead of taking over its outcome")
    func waitersRetryAfterFailure() throws {
        let directory = try TemporaryDirectory()
        let fileSystem = RecordingFileSystem(root: directory.spool)
        let spool = try openSpool(directory.spool, fileSystem: fileSystem)
        defer { spool.close() }
        let record = makeRecord(id: testID(8))
        // A failed fsync of the record file fails only that store (a failed directory fsync would make the
        // spool unhealthy and fail the waiters too, see SpoolHealthTests).
        fileSystem.inject(.init(operation: .fsync, path: .prefix("tmp/"), errno: EIO))

        let outcomes = runConcurrently(10) { _ in Result { () throws(SpoolError) in try spool.store(record) } }

        let failures = outcomes.compactMap { result -> SpoolError? in
            if case .failure(let error) = result { error } else { nil }
        }
        let values = outcomes.compactMap { try? $0.get() }
        #expect(failures.count == 1)
        #expect(failures.allSatisfy {
            $0.message.hasPrefix("fsync tmp/\(record.id).") && $0.message.hasSuffix(": Input/output error")
        })
        #expect(spool.isHealthy)
        #expect(values.filter { $0 == .stored }.count == 1)
        #expect(values.filter { $0 == .duplicate }.count == 8)
        #expect(try names(directory.spool + "/new") == ["\(record.id).json"])
        #expect(try names(directory.spool + "/tmp") == [])
    }

    /// With group commit (docs/durability.md §5) the links and directory fsyncs run on the spool's writer thread,
    /// but a store on its own is a batch of one: the calls and their order are those of a store that publishes
    /// by itself. Batches of several stores are checked in GroupCommitTests.
    @Test("the durability order: write, fsync file, link new/, fsync new/, link ids/, fsync ids/, unlink tmp/, return")
    func durabilityOrder() throws {
        let directory = try TemporaryDirectory()
        let fileSystem = RecordingFileSystem(root: directory.spool)
        let spool = try openSpool(directory.spool, fileSystem: fileSystem)
        defer { spool.close() }
        let record = makeRecord(id: testID(9))

        let start = fileSystem.eventCount
        #expect(try spool.store(record) == .stored)
        fileSystem.mark("return")
        let log = fileSystem.events(since: start)

        func position(_ description: String, _ matches: (RecordingFileSystem.Event) -> Bool) -> Int {
            let found = log.firstIndex(where: matches)
            #expect(found != nil, "no \(description) in \(log)")
            return found ?? -1
        }
        let create = position("create tmp/") { $0.creates && $0.path.hasPrefix("tmp/\(record.id).") }
        let temporary = log[max(create, 0)].path
        let write = position("write tmp/") { $0.operation == .write && $0.path == temporary }
        let fsyncFile = position("fsync tmp/") { $0.operation == .fsync && $0.path == temporary }
        let closeFile = position("close tmp/") { $0.operation == .close && $0.path == temporary }
        let linkNew = position("link new/") {
            $0.operation == .link && $0.source == temporary && $0.path == "new/\(record.id).json"
        }
        let fsyncNew = position("fsync new/") { $0.operation == .fsync && $0.path == "new" }
        let linkIDs = position("link ids/") {
            $0.operation == .link && $0.source == temporary && $0.path == "ids/\(record.id)"
        }
        let fsyncIDs = position("fsync ids/") { $0.operation == .fsync && $0.path == "ids" }
        let unlinkTemporary = position("unlink tmp/") { $0.operation == .unlink && $0.path == temporary }
        let returned = position("return") { $0.operation == .mark }

        #expect(create < write)
        #expect(write < fsyncFile)
        #expect(fsyncFile < closeFile)
        #expect(closeFile < linkNew)
        #expect(linkNew < fsyncNew)
        #expect(fsyncNew < linkIDs)
        #expect(linkIDs < fsyncIDs)
        #expect(fsyncIDs < unlinkTemporary)
        #expect(unlinkTemporary < returned)
        #expect(!log.contains { $0.operation == .rename }, "records are published with link, never rename")
        #expect(log.filter { $0.operation == .fsync }.count == 3)
        #expect(spool.batchSizeHistogram == [1: 1])
        // Step 2 comes first: the ledger is looked up and has no entry.
        let readLedger = position("stat ids/") {
            $0.operation == .stat && $0.path == "ids/\(record.id)" && $0.failure == ENOENT
        }
        #expect(readLedger < create)
        #expect(log.filter { $0.failure != nil }.count == 1)
        // The tmp file is created exclusively, write-only, close-on-exec (added by the POSIX layer).
        let flags = log[max(create, 0)].flags ?? 0
        #expect(flags & O_EXCL != 0 && flags & O_WRONLY != 0)
    }

    @Test("short writes are continued until every byte is written")
    func shortWrites() throws {
        let directory = try TemporaryDirectory()
        let fileSystem = RecordingFileSystem(root: directory.spool)
        fileSystem.limitWrites(to: 1000)
        let spool = try openSpool(directory.spool, fileSystem: fileSystem)
        defer { spool.close() }
        let record = makeRecord(id: testID(10), body: String(repeating: "x", count: 300_000))

        let start = fileSystem.eventCount
        #expect(try spool.store(record) == .stored)

        #expect(try contents(directory.spool + "/new/\(record.id).json") == record.bytes)
        let writes = fileSystem.events(since: start).filter { $0.operation == .write }
        #expect(writes.count == (record.bytes.count + 999) / 1000)
    }
}
