import Glibc
import Logging
import PayhookSpool
import PayhookSpoolFormat
import PayhookTestSupport
import Testing

/// The faults a store must survive: it throws, leaves nothing half-written in new/, and works again once the
/// fault is gone.
enum StoreFault: String, CaseIterable, Sendable, CustomStringConvertible {
    case noSpaceOnWrite
    case ioErrorOnWrite
    case noSpaceOnCreate
    case ioErrorOnFileFsync
    case ioErrorOnNewDirectoryFsync
    case tooManyFilesOnOpen
    case ioErrorOnLinkIntoNew
    case ioErrorOnLinkIntoLedger

    var description: String { rawValue }

    var fault: RecordingFileSystem.Fault {
        switch self {
        case .noSpaceOnWrite: .init(operation: .write, path: .prefix("tmp/"), errno: ENOSPC)
        case .ioErrorOnWrite: .init(operation: .write, path: .prefix("tmp/"), errno: EIO)
        case .noSpaceOnCreate: .init(operation: .open, path: .prefix("tmp/"), errno: ENOSPC)
        case .ioErrorOnFileFsync: .init(operation: .fsync, path: .prefix("tmp/"), errno: EIO)
        case .ioErrorOnNewDirectoryFsync: .init(operation: .fsync, path: .exact("new"), errno: EIO)
        case .tooManyFilesOnOpen: .init(operation: .open, path: .any, errno: EMFILE)
        case .ioErrorOnLinkIntoNew: .init(operation: .link, path: .prefix("new/"), errno: EIO)
        case .ioErrorOnLinkIntoLedger: .init(operation: .link, path: .prefix("ids/"), errno: EIO)
        }
    }

    /// Whether the record was already linked into new/ when the fault hit, so that it had to be taken back.
    var rollsBack: Bool {
        self == .ioErrorOnNewDirectoryFsync || self == .ioErrorOnLinkIntoLedger
    }

    /// The counter the failure is counted under.
    var kind: SpoolFailureKind {
        switch self {
        case .noSpaceOnWrite, .ioErrorOnWrite: .write
        case .noSpaceOnCreate, .tooManyFilesOnOpen: .open
        case .ioErrorOnFileFsync: .fsyncFile
        case .ioErrorOnNewDirectoryFsync: .fsyncDirectory
        case .ioErrorOnLinkIntoNew, .ioErrorOnLinkIntoLedger: .link
        }
    }

    /// Whether the health probe's own checks would meet this fault again while it lasts (no space, no
    /// descriptors: the probe writes a file and opens descriptors), so that their passing shows it gone.
    var probeRechecks: Bool {
        switch self {
        case .noSpaceOnWrite, .noSpaceOnCreate, .tooManyFilesOnOpen: true
        default: false
        }
    }

    /// Only a failed directory fsync leaves the spool unsure of what is durable (docs/durability.md §6, rule 2).
    var makesUnhealthy: Bool {
        self == .ioErrorOnNewDirectoryFsync
    }

    func messageMatches(_ message: String, id: String) -> Bool {
        let temporary = "tmp/\(id)."
        switch self {
        case .noSpaceOnWrite:
            return message.hasPrefix("write \(temporary)") && message.hasSuffix(": No space left on device")
        case .ioErrorOnWrite:
            return message.hasPrefix("write \(temporary)") && message.hasSuffix(": Input/output error")
        case .noSpaceOnCreate:
            return message.hasPrefix("create \(temporary)") && message.hasSuffix(": No space left on device")
        case .ioErrorOnFileFsync:
            return message.hasPrefix("fsync \(temporary)") && message.hasSuffix(": Input/output error")
        case .ioErrorOnNewDirectoryFsync:
            return message == "fsync new/: Input/output error"
        case .tooManyFilesOnOpen:
            return message.hasPrefix("create \(temporary)") && message.hasSuffix(": Too many open files")
        case .ioErrorOnLinkIntoNew:
            return message.hasPrefix("link \(temporary)") && message.hasSuffix(" to new/\(id).json: Input/output error")
        case .ioErrorOnLinkIntoLedger:
            return message.hasPrefix("link \(temporary)") && message.hasSuffix(" to ids/\(id): Input/output error")
        }
    }
}

@Suite("Storing under injected faults")
struct SpoolFaultTests {
    @Test("a failed store leaves nothing behind, is counted, and the same record stores once the fault is gone",
          arguments: StoreFault.allCases, [false, true])
    func failedStoreRecovers(_ storeFault: StoreFault, unnamedFiles: Bool) throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let fileSystem = RecordingFileSystem(root: root, unnamedFiles: unnamedFiles)
        let logs = LogStore()
        let spool = try openSpool(root, fileSystem: fileSystem, logs: logs)
        let record = makeRecord(id: testID(100))
        fileSystem.inject(storeFault.fault)

        let start = fileSystem.eventCount
        let error = #expect(throws: SpoolError.self) { try spool.store(record) }
        let log = fileSystem.events(since: start)

        #expect(error?.code == .io)
        #expect(error?.errno == storeFault.fault.errno)
        #expect(storeFault.messageMatches(error?.message ?? "", id: record.id), "\(error?.message ?? "no error")")
        #expect(log.contains { $0.failure == storeFault.fault.errno }, "the fault was hit: \(log)")
        // The record was written as the file system allows: unnamed (nothing created or unlinked in tmp/), or
        // as a tmp/ name.
        let namedInTmp = log.contains { $0.creates && $0.path.hasPrefix("tmp/\(record.id).") }
        #expect(namedInTmp == !unnamedFiles || storeFault == .noSpaceOnCreate || storeFault == .tooManyFilesOnOpen)
        #expect(!unnamedFiles || !log.contains { $0.operation == .unlink && $0.path.hasPrefix("tmp/") })
        #expect(try names(root + "/new") == [])
        #expect(try names(root + "/ids") == [])
        #expect(try names(root + "/tmp") == [])
        // A failed fsync is never tried again on the same descriptor (or at all) within the store.
        if storeFault.fault.operation == .fsync {
            #expect(log.filter { $0.operation == .fsync && storeFault.fault.path.matches($0.path) }.count == 1)
        }
        let tookBack = log.contains { $0.operation == .unlink && $0.path == "new/\(record.id).json" }
        #expect(tookBack == storeFault.rollsBack)
        // Counted once, under the call that failed, and nothing else.
        var expectedCounts = Dictionary(uniqueKeysWithValues: SpoolFailureKind.allCases.map { ($0.rawValue, 0) })
        expectedCounts[storeFault.kind.rawValue] = 1
        #expect(spool.failureCounts == expectedCounts)
        #expect(spool.isHealthy == !storeFault.makesUnhealthy)
        #expect(logs.messages(at: .critical).count == (storeFault.makesUnhealthy ? 1 : 0))

        fileSystem.setInjecting(false)
        var store = spool
        if storeFault.makesUnhealthy {
            // Even with the disk working again, the spool refuses until it is reopened (recovery).
            let refused = #expect(throws: SpoolError.self) { try spool.store(record) }
            #expect(refused?.code == .unhealthy)
            #expect(throws: SpoolError.self) { try spool.probe() }
            #expect(try names(root + "/new") == [])
            spool.close()
            store = try openSpool(root, fileSystem: fileSystem)
            #expect(store.isHealthy)
        } else if storeFault.probeRechecks {
            try spool.probe()
        } else {
            // The probe cannot reproduce this failure on demand, so it reports the last store's failure until a
            // store writes again (Spool.probe()).
            let probed = #expect(throws: SpoolError.self) { try spool.probe() }
            #expect(probed?.errno == storeFault.fault.errno)
        }
        #expect(try store.store(record) == .stored)
        try store.probe()
        #expect(try contents(root + "/new/\(record.id).json") == record.bytes)
        #expect(try names(root + "/tmp") == [])
        store.close()

        let reopened = try openSpool(root)
        defer { reopened.close() }
        #expect(reopened.recovery == SpoolRecoveryReport())
        #expect(try reopened.store(record) == .duplicate)
    }

    @Test("a failing fsync of ids/ keeps the durable record and makes the spool unhealthy; after reopening, the retry is a duplicate")
    func ledgerFsyncFailure() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let fileSystem = RecordingFileSystem(root: root)
        let logs = LogStore()
        let spool = try openSpool(root, fileSystem: fileSystem, logs: logs)
        let record = makeRecord(id: testID(101))
        fileSystem.inject(.init(operation: .fsync, path: .exact("ids"), errno: EIO))

        let error = #expect(throws: SpoolError.self) { try spool.store(record) }
        #expect(error?.message == "fsync ids/: Input/output error")
        #expect(try names(root + "/new") == ["\(record.id).json"])
        #expect(try names(root + "/ids") == [record.id])
        #expect(try names(root + "/tmp") == [])
        #expect(logs.messages(at: .error).contains { $0.contains("ids/\(record.id) may not be durable") })
        #expect(!spool.isHealthy)
        #expect(spool.unhealthyReason?.message == "fsync ids/: Input/output error")
        #expect(spool.failureCount(.fsyncDirectory) == 1)

        fileSystem.setInjecting(false)
        // Even a duplicate is refused: after the failed fsync the spool cannot tell whether ids/ still says so.
        #expect((#expect(throws: SpoolError.self) { try spool.store(record) })?.code == .unhealthy)
        spool.close()
        let reopened = try openSpool(root)
        defer { reopened.close() }
        #expect(reopened.recovery == SpoolRecoveryReport())
        #expect(try reopened.store(record) == .duplicate)
    }

    @Test("when a consumer took the record before fsync(new/) failed, the ledger entry is made anyway")
    func consumerTookRecordBeforeFailure() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let fileSystem = RecordingFileSystem(root: root)
        let spool = try openSpool(root, fileSystem: fileSystem)
        let record = makeRecord(id: testID(102))
        let published = root + "/new/\(record.id).json"
        let taken = root + "/cur/\(record.id).json"
        fileSystem.inject(.init(operation: .fsync, path: .exact("new"), errno: EIO, action: {
            _ = try? PosixFileSystem().rename(published, taken)
        }))

        let error = #expect(throws: SpoolError.self) { try spool.store(record) }
        #expect(error?.message == "fsync new/: Input/output error")
        #expect(try names(root + "/new") == [])
        #expect(try names(root + "/cur") == ["\(record.id).json"])
        #expect(try posix.stat(root + "/ids/\(record.id)").inode == posix.stat(taken).inode)
        #expect(try names(root + "/tmp") == [])
        #expect(!spool.isHealthy)

        fileSystem.setInjecting(false)
        #expect((#expect(throws: SpoolError.self) { try spool.store(record) })?.code == .unhealthy)
        spool.close()
        let reopened = try openSpool(root)
        defer { reopened.close() }
        #expect(reopened.recovery == SpoolRecoveryReport())
        #expect(try reopened.store(record) == .duplicate)
    }

    @Test("a failed unlink of the tmp name is only logged; recovery removes the leftover")
    func temporaryUnlinkFailure() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let fileSystem = RecordingFileSystem(root: root)
        let logs = LogStore()
        let spool = try openSpool(root, fileSystem: fileSystem, logs: logs)
        let record = makeRecord(id: testID(103))
        fileSystem.inject(.init(operation: .unlink, path: .prefix("tmp/"), errno: EIO))

        #expect(try spool.store(record) == .stored)
        let leftovers = try names(root + "/tmp")
        #expect(leftovers.count == 1)
        #expect(leftovers.allSatisfy { $0.hasPrefix("\(record.id).") })
        #expect(logs.messages(at: .warning).contains { $0.hasPrefix("unlink tmp/\(record.id).") })
        #expect(try posix.stat(root + "/new/\(record.id).json").linkCount == 3)
        spool.close()

        let reopened = try openSpool(root)
        defer { reopened.close() }
        #expect(reopened.recovery == SpoolRecoveryReport(removedTemporaryFiles: leftovers))
        #expect(try names(root + "/tmp") == [])
        #expect(try posix.stat(root + "/new/\(record.id).json").linkCount == 2)
    }

    @Test("a record published without a ledger entry is refused at run time and repaired by recovery")
    func publishedWithoutLedgerEntry() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let logs = LogStore()
        let spool = try openSpool(root, logs: logs)
        let record = makeRecord(id: testID(104))
        try writeFile(root + "/new/\(record.id).json", record.bytes)

        let error = #expect(throws: SpoolError.self) { try spool.store(record) }
        #expect(error?.code == .inconsistent)
        #expect(error?.errno == EEXIST)
        #expect(error?.message.contains("to new/\(record.id).json: File exists") == true)
        #expect(logs.messages(at: .error).count == 1)
        #expect(try names(root + "/tmp") == [])
        spool.close()

        let reopened = try openSpool(root)
        defer { reopened.close() }
        #expect(reopened.recovery == SpoolRecoveryReport(relinkedLedgerEntries: [record.id]))
        #expect(try reopened.store(record) == .duplicate)
    }

    @Test("a ledger entry that cannot be looked up or read fails the store without writing", arguments: [
        RecordingFileSystem.Operation.stat, .readFile,
    ])
    func ledgerReadFailure(_ operation: RecordingFileSystem.Operation) throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let fileSystem = RecordingFileSystem(root: root)
        let spool = try openSpool(root, fileSystem: fileSystem)
        defer { spool.close() }
        let record = makeRecord(id: testID(105))
        // An entry to read: a lookup that finds none stores without reading anything.
        #expect(try spool.store(record) == .stored)
        fileSystem.inject(.init(operation: operation, path: .prefix("ids/"), errno: EIO))

        let start = fileSystem.eventCount
        let error = #expect(throws: SpoolError.self) { try spool.store(record) }
        let verb = operation == .stat ? "stat" : "read"
        #expect(error?.message == "\(verb) ids/\(record.id): Input/output error")
        #expect(!fileSystem.events(since: start).contains { $0.creates || $0.operation == .write })
        fileSystem.setInjecting(false)
        #expect(try spool.store(record) == .duplicate)
    }

    @Test("a repeated duplicate is answered from one stat(2) of its ledger entry; a replaced entry is read again")
    func repeatedDuplicates() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let fileSystem = RecordingFileSystem(root: root)
        let spool = try openSpool(root, fileSystem: fileSystem)
        defer { spool.close() }
        let record = makeRecord(id: testID(106))
        #expect(try spool.store(record) == .stored)
        #expect(try spool.store(record) == .duplicate)  // reads and parses the entry once

        var start = fileSystem.eventCount
        #expect(try spool.store(record) == .duplicate)
        #expect(fileSystem.events(since: start).map(\.operation) == [.stat])

        // Retention removed the entry and the record came back under a new inode with other content: the
        // remembered fingerprint no longer applies, and the entry is read again.
        let other = makeRecord(id: record.id, fingerprint: "fp-other", body: "payment 44")
        try posix.unlink(root + "/ids/\(record.id)")
        let replacement = root + "/replacement"
        let descriptor = open(replacement, O_CREAT | O_WRONLY, 0o644)
        _ = other.bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        _ = close(descriptor)
        try posix.link(replacement, root + "/ids/\(record.id)")
        try posix.unlink(replacement)
        start = fileSystem.eventCount
        let outcome = try spool.store(record)
        guard case .conflict = outcome else {
            Issue.record("expected a conflict against the replaced entry, got \(outcome)")
            return
        }
        #expect(fileSystem.events(since: start).contains { $0.operation == .readFile && $0.path == "ids/\(record.id)" })
    }

    @Test("a conflict whose audit copy cannot be made durable fails and leaves no audit file")
    func conflictFsyncFailure() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let fileSystem = RecordingFileSystem(root: root)
        let spool = try openSpool(root, fileSystem: fileSystem)
        defer { spool.close() }
        let original = makeRecord(id: testID(106), fingerprint: "fp-1")
        let other = makeRecord(id: testID(106), fingerprint: "fp-2", body: "changed")
        #expect(try spool.store(original) == .stored)
        fileSystem.inject(.init(operation: .fsync, path: .exact("conflicts"), errno: EIO))

        let error = #expect(throws: SpoolError.self) { try spool.store(other) }
        #expect(error?.message == "fsync conflicts/: Input/output error")
        #expect(try names(root + "/conflicts") == [])
        #expect(try names(root + "/tmp") == [])
        #expect(try contents(root + "/new/\(original.id).json") == original.bytes)
        #expect(!spool.isHealthy)

        fileSystem.setInjecting(false)
        #expect((#expect(throws: SpoolError.self) { try spool.store(other) })?.code == .unhealthy)
        spool.close()
        let reopened = try openSpool(root)
        defer { reopened.close() }
        guard case .conflict(let auditFile?, .kept) = try reopened.store(other) else {
            Issue.record("expected a new audit copy")
            return
        }
        #expect(try contents(root + "/" + auditFile) == other.bytes)
    }

    @Test("a disk that stays full fails every store, and stores work again once it has room")
    func persistentFault() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let fileSystem = RecordingFileSystem(root: root)
        let spool = try openSpool(root, fileSystem: fileSystem)
        defer { spool.close() }
        fileSystem.inject(.init(operation: .write, path: .any, errno: ENOSPC, persistent: true))

        for index in 0..<5 {
            let error = #expect(throws: SpoolError.self) { try spool.store(makeRecord(id: testID(200 + index))) }
            #expect(error?.errno == ENOSPC)
        }
        #expect(try names(root + "/tmp") == [])
        fileSystem.setInjecting(false)
        for index in 0..<5 {
            #expect(try spool.store(makeRecord(id: testID(200 + index))) == .stored)
        }
        #expect(try names(root + "/new").count == 5)
    }
}
