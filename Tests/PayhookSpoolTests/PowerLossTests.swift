import Dispatch
import Glibc
@_spi(Testing) import PayhookSpool
import PayhookSpoolFormat
import PayhookTestSupport
import Testing

/// A workload for ``CrashFS``: stores (unique, duplicate, conflict), a health probe and a consumer, run against
/// a spool at /crash/spool, with every acknowledgement written into the log.
enum CrashWorkload {
    static let root = "/crash/spool"
    static let paymentA = makeRecord(id: testID(0xA1), fingerprint: "fp-1", body: "payment 1")
    static let paymentAChanged = makeRecord(id: testID(0xA1), fingerprint: "fp-2", body: "payment 1, other amount")
    static let paymentB = makeRecord(id: testID(0xB2), body: "payment 2")
    static let paymentC = makeRecord(id: testID(0xC3), body: "payment 3")
    static let paymentD = makeRecord(id: testID(0xD4), body: "payment 4")
    static let paymentE = makeRecord(id: testID(0xE5), body: "payment 5")

    enum Step {
        case store(SpoolRecord)
        /// Stores from one thread per record, published by the writer as one batch (group commit): they share
        /// one fsync(new/) and one fsync(ids/), and each is acknowledged only after both.
        case batch([SpoolRecord])
        /// A store through ``Spool/store(id:fingerprint:bytes:completion:)``, as the server makes it: a durable
        /// duplicate answered on the calling thread, everything else on a store thread; acknowledged when the
        /// completion is called.
        case answered(SpoolRecord)
        case probe
        /// A consumer takes the record (rename new/ → cur/, sync both) and deletes it (unlink, sync cur/).
        case consume(String)
    }

    /// unique A, conflicting A, unique B, B consumed, duplicate B after that, duplicate A, probe, unique C.
    static let steps: [Step] = [
        .store(paymentA), .store(paymentAChanged), .store(paymentB), .consume(paymentB.id),
        .store(paymentB), .store(paymentA), .probe, .store(paymentC),
    ]

    /// The order in which the sender retries: the first record of each id before the one that conflicts.
    static let records = [paymentA, paymentB, paymentAChanged, paymentC]

    /// The same kinds of step with concurrent stores: unique A, B and C as one batch of three, B consumed,
    /// duplicate B after that, conflicting A, then unique D and E as a batch of two.
    static let batchedSteps: [Step] = [
        .batch([paymentA, paymentB, paymentC]), .consume(paymentB.id), .store(paymentB), .store(paymentAChanged),
        .batch([paymentD, paymentE]),
    ]

    static let batchedRecords = [paymentA, paymentB, paymentAChanged, paymentC, paymentD, paymentE]

    /// ``steps`` with every store answered through the completion.
    static let answeredSteps: [Step] = steps.map { step in
        if case .store(let record) = step { return .answered(record) }
        return step
    }

    static func checker(records: [SpoolRecord] = records) -> CrashChecker {
        CrashChecker(root: root, records: records)
    }

    /// `unnamedFiles`: records are written as unnamed files (O_TMPFILE), or, without, as tmp/ names.
    static func freshFileSystem(unnamedFiles: Bool = false) -> CrashFS {
        CrashFS(image: .with(directories: ["/crash"]), unnamedFiles: unnamedFiles)
    }

    /// Opens a spool on `fileSystem` and runs `steps`, noting each acknowledgement; closes the spool at the end,
    /// after copying its batch sizes into `batchSizes`.
    /// Throws at the first failure (for a killed process: at the first call after its death).
    @discardableResult
    static func run(_ steps: [Step], on fileSystem: CrashFS, batchSizes: Shared<[Int: Int]>? = nil) throws -> [SpoolOutcome] {
        let spool = try Spool(directory: root, inspector: TestInspector(), fileSystem: fileSystem, logger: CrashChecker.quiet)
        defer {
            batchSizes?.update { $0 = spool.batchSizeHistogram }
            spool.close()
        }
        var outcomes: [SpoolOutcome] = []
        for step in steps {
            switch step {
            case .store(let record):
                let outcome = try spool.store(record)
                fileSystem.note(.acknowledged(id: record.id, fingerprint: record.fingerprint, outcome: outcome))
                outcomes.append(outcome)
            case .batch(let records):
                // Each storing thread notes its own acknowledgement the moment its store returns, so the log
                // shows exactly when each sender could have been answered.
                let results = storeAsOneBatch(spool, records, afterEach: { record, result in
                    guard case .success(let outcome) = result else { return }
                    fileSystem.note(.acknowledged(id: record.id, fingerprint: record.fingerprint, outcome: outcome))
                })
                guard let results else { throw TestFailure("a batched store never returned") }
                for result in results {
                    outcomes.append(try result.get())
                }
            case .answered(let record):
                let answer = Shared<Result<SpoolOutcome, SpoolError>?>(nil)
                let done = DispatchSemaphore(value: 0)
                let bytes = record.bytes
                spool.store(id: record.id, fingerprint: record.fingerprint, bytes: { bytes }) { result in
                    // Noted on whichever thread answers, the moment it does.
                    if case .success(let outcome) = result {
                        fileSystem.note(.acknowledged(id: record.id, fingerprint: record.fingerprint, outcome: outcome))
                    }
                    answer.update { $0 = result }
                    done.signal()
                }
                guard done.wait(timeout: .now() + 30) == .success, let result = answer.current else {
                    throw TestFailure("a store never answered")
                }
                outcomes.append(try result.get())
            case .probe:
                try spool.probe()
            case .consume(let id):
                try consume(id, on: fileSystem)
            }
        }
        return outcomes
    }

    /// What `payhook queue take` and `ack` do, durably: rename into cur/, sync both directories, then delete
    /// and sync cur/.
    static func consume(_ id: String, on fileSystem: CrashFS) throws(SpoolErrno) {
        fileSystem.note(.consumerStarted(id: id))
        try fileSystem.rename(root + "/new/\(id).json", root + "/cur/\(id).json")
        try syncDirectory(root + "/cur", on: fileSystem)
        try syncDirectory(root + "/new", on: fileSystem)
        try fileSystem.unlink(root + "/cur/\(id).json")
        try syncDirectory(root + "/cur", on: fileSystem)
        fileSystem.note(.consumed(id: id))
    }

    static func syncDirectory(_ path: String, on fileSystem: CrashFS) throws(SpoolErrno) {
        let fd = try fileSystem.open(path, flags: O_RDONLY | O_DIRECTORY, mode: 0)
        defer { try? fileSystem.close(fd) }
        try fileSystem.fsync(fd)
    }
}

/// A workload to explore: stores one at a time, or concurrent stores published in batches.
enum CrashWorkloadKind: String, CaseIterable, Sendable, CustomStringConvertible {
    case oneAtATime = "one store at a time"
    case batched = "batched concurrent stores"
    case answered = "stores answered from the store threads"

    var description: String { rawValue }

    var steps: [CrashWorkload.Step] {
        switch self {
        case .oneAtATime: CrashWorkload.steps
        case .batched: CrashWorkload.batchedSteps
        case .answered: CrashWorkload.answeredSteps
        }
    }

    var checker: CrashChecker {
        switch self {
        case .oneAtATime, .answered: CrashWorkload.checker()
        case .batched: CrashWorkload.checker(records: CrashWorkload.batchedRecords)
        }
    }

    /// How many stores answer stored, duplicate and conflict.
    var expectedOutcomes: (stored: Int, duplicate: Int, conflict: Int) {
        switch self {
        case .oneAtATime, .answered: (3, 2, 1)
        case .batched: (5, 1, 1)
        }
    }
}

/// An fsync the spool makes, to delete in a variant and see the checker catch it.
enum RemovedFsync: String, CaseIterable, Sendable, CustomStringConvertible {
    /// The record file, before it is linked into new/ (ALICE: "fsync the data before the rename that publishes it").
    case recordFile = "the record file in tmp/"
    /// new/ after the link (ALICE: "fsync the directory after the rename, before declaring success").
    case newDirectory = "new/"
    /// ids/ after the ledger link: without it a consumed record's ledger entry can vanish.
    case ledgerDirectory = "ids/"
    /// conflicts/ after the audit copy is linked.
    case conflictsDirectory = "conflicts/"

    var description: String { rawValue }

    func matches(_ path: String) -> Bool {
        let root = CrashWorkload.root
        switch self {
        case .recordFile: return path.hasPrefix(root + "/tmp/")
        case .newDirectory: return path == root + "/new"
        case .ledgerDirectory: return path == root + "/ids"
        case .conflictsDirectory: return path == root + "/conflicts"
        }
    }

    /// What the checker must report when this fsync is missing.
    var expectedViolation: String {
        switch self {
        case .recordFile: "was quarantined"
        case .newDirectory: "is missing from new/ and cur/"
        case .ledgerDirectory: "delivered twice"
        case .conflictsDirectory: "of an acknowledged conflict is missing"
        }
    }
}

@Suite("Simulated power loss (CrashFS)")
struct PowerLossTests {
    @Test("every crash point of a workload leaves states in which recovery keeps every acknowledged record",
          arguments: CrashWorkloadKind.allCases, [false, true])
    func everyCrashPoint(_ workload: CrashWorkloadKind, unnamedFiles: Bool) throws {
        let clock = ContinuousClock()
        let start = clock.now
        let fileSystem = CrashWorkload.freshFileSystem(unnamedFiles: unnamedFiles)
        let histogram = Shared<[Int: Int]>([:])
        let outcomes = try CrashWorkload.run(workload.steps, on: fileSystem, batchSizes: histogram)
        let expected = workload.expectedOutcomes
        #expect(outcomes.count == expected.stored + expected.duplicate + expected.conflict)
        #expect(outcomes.first == .stored)
        #expect(outcomes.filter { $0 == .stored }.count == expected.stored)
        #expect(outcomes.filter { $0 == .duplicate }.count == expected.duplicate)
        // The batches really were batches: three stores, then two, each sharing one fsync(new/) and one
        // fsync(ids/); one at a time, each of the three new records had its own.
        #expect(histogram.current == (workload == .batched ? [3: 1, 2: 1] : [1: 3]))

        var exploration = CrashExploration()
        exploration.explore(fileSystem, positions: 0...fileSystem.log.count, checker: workload.checker)
        print("power loss, one process, \(workload), \(unnamedFiles ? "unnamed" : "named") files: \(exploration.summary) in \(clock.now - start)")
        // Unnamed records never get a tmp/ name, named ones do; audit copies of conflicts always do (and so
        // does the health probe's file).
        let tmpNames = fileSystem.log.filter {
            $0.description.hasPrefix("create \(CrashWorkload.root)/tmp/") && !$0.description.contains("/tmp/probe.")
        }.count
        #expect(tmpNames == (unnamedFiles ? 0 : expected.stored) + expected.conflict)
        #expect(exploration.violations.isEmpty, "\(exploration.violations.prefix(5).joined(separator: "\n"))")
        #expect(exploration.crashPoints == fileSystem.log.count + 1)
        #expect(exploration.statesChecked > exploration.crashPoints)
        // With every fsync in place nothing torn is ever published, so recovery never has to quarantine.
        #expect(exploration.quarantined == 0)
    }

    @Test("the checker catches a spool with one fsync removed",
          arguments: RemovedFsync.allCases, CrashWorkloadKind.allCases)
    func removedFsyncIsCaught(_ removed: RemovedFsync, _ workload: CrashWorkloadKind) throws {
        // With unnamed files where the record file is concerned (they are the default on Linux); the other
        // fsyncs do not depend on how the record was written.
        let fileSystem = CrashWorkload.freshFileSystem(unnamedFiles: removed == .recordFile)
        fileSystem.ignoreFsync { removed.matches($0) }
        // Without a crash the workload cannot tell the difference: every answer is the same.
        let outcomes = try CrashWorkload.run(workload.steps, on: fileSystem)
        #expect(outcomes.filter { $0 == .stored }.count == workload.expectedOutcomes.stored)
        #expect(fileSystem.log.contains { if case .note(.ignoredFsync) = $0.effect { true } else { false } })

        var exploration = CrashExploration()
        exploration.stopAtFirstViolation = true
        exploration.explore(fileSystem, positions: 0...fileSystem.log.count, checker: workload.checker)
        print("power loss without the fsync of \(removed), \(workload): \(exploration.summary)")
        for violation in exploration.violations.prefix(3) {
            print("  \(violation)")
        }
        #expect(!exploration.violations.isEmpty, "removing the fsync of \(removed) went unnoticed")
        #expect(
            exploration.violations.contains { $0.contains(removed.expectedViolation) },
            "\(exploration.violations.prefix(3))"
        )
    }

    /// kill -9 keeps the page cache, so on its own it cannot lose anything a later fsync covers; but what the
    /// dead process left unsynced is still at the mercy of a power loss after the restart. The new process must
    /// not build on it (acknowledge a duplicate, enter it in the ledger) before making it durable itself.
    @Test("a process killed at any point, restarted, then a power loss at any point: nothing acknowledged is lost",
          arguments: [false, true])
    func killThenPowerLoss(unnamedFiles: Bool) throws {
        let clock = ContinuousClock()
        let start = clock.now
        let steps: [CrashWorkload.Step] = [
            .store(CrashWorkload.paymentA), .store(CrashWorkload.paymentAChanged), .store(CrashWorkload.paymentB),
        ]
        let complete = CrashWorkload.freshFileSystem(unnamedFiles: unnamedFiles)
        try CrashWorkload.run(steps, on: complete)
        let operations = complete.log.filter { !$0.isNote }.count

        var exploration = CrashExploration()
        var killPoints = 0
        for kill in 1..<operations {
            let fileSystem = CrashWorkload.freshFileSystem(unnamedFiles: unnamedFiles)
            fileSystem.killAfter(effects: kill)
            // Usually the store in progress throws; a death just before the last unlink of tmp/ only loses that
            // clean-up, which the store shrugs off.
            _ = try? CrashWorkload.run(steps, on: fileSystem)
            #expect(fileSystem.isDead)
            fileSystem.restart()
            let restarted = fileSystem.log.count
            // The sender retries everything it was not told about, and some of what it was.
            try CrashWorkload.run(steps, on: fileSystem)
            exploration.explore(
                fileSystem,
                positions: restarted...fileSystem.log.count,
                checker: CrashWorkload.checker(),
                onlyBeforeSyncs: true
            )
            killPoints += 1
        }
        print("kill -9 at \(killPoints) points, restart, then power loss: \(exploration.summary) in \(clock.now - start)")
        #expect(killPoints == operations - 1)
        #expect(exploration.violations.isEmpty, "\(exploration.violations.prefix(5).joined(separator: "\n"))")
    }
}
