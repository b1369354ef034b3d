import Glibc
import Logging
@_spi(Testing) import PayhookSpool
import PayhookSpoolFormat
import PayhookTestSupport
import Testing

/// One test at a time: the recount test counts on twenty stores finishing within a two-second interval.
@Suite("Conflicts: fingerprints as bytes, one audit copy per content, caps", .serialized)
struct SpoolConflictTests {
    /// "é" precomposed (U+00E9) and decomposed ("e" + U+0301): Swift's `String ==` calls them equal (canonical
    /// equivalence), but they are different bytes, so different verified content.
    static let precomposed = "payer Jos\u{E9}"
    static let decomposed = "payer Jose\u{301}"

    @Test("a fingerprint that differs from the ledger's only by Unicode normalization is a conflict, not a duplicate")
    func fingerprintsCompareAsBytes() throws {
        #expect(Self.precomposed == Self.decomposed, "the premise: String == says equal")
        #expect(!Array(Self.precomposed.utf8).elementsEqual(Array(Self.decomposed.utf8)))
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let spool = try openSpool(root)
        defer { spool.close() }
        let original = makeRecord(id: testID(0x900), fingerprint: Self.precomposed, body: "amount 10")
        let variant = makeRecord(id: testID(0x900), fingerprint: Self.decomposed, body: "amount 10")
        #expect(try spool.store(original) == .stored)

        let outcome = try spool.store(variant)
        guard case .conflict = outcome else {
            Issue.record("expected a conflict, got \(outcome)")
            return
        }
        #expect(try names(root + "/conflicts").count == 1)
        let kept = try names(root + "/conflicts").first.map { try contents(root + "/conflicts/" + $0) }
        #expect(kept == variant.bytes)
        // The lazy form, answered from the cached ledger fingerprint, tells them apart too.
        let again = try spool.store(id: variant.id, fingerprint: variant.fingerprint) { variant.bytes }
        #expect(again != .duplicate)
        #expect(try spool.store(original) == .duplicate)
        #expect(try contents(root + "/new/\(original.id).json") == original.bytes)
        #expect(SpoolRecordInfo(id: original.id, fingerprint: Self.precomposed)
            != SpoolRecordInfo(id: original.id, fingerprint: Self.decomposed))
    }

    // MARK: - One copy per content, caps

    /// A conflicting variant of `id`: same id, its own fingerprint and bytes.
    static func variant(_ id: String, _ number: Int) -> SpoolRecord {
        makeRecord(id: id, fingerprint: "fp-variant-\(number)", body: "amount \(number), unsigned field changed")
    }

    static func disposition(_ outcome: SpoolOutcome) -> SpoolConflictDisposition? {
        if case .conflict(_, let disposition) = outcome { disposition } else { nil }
    }

    /// What a store did to the disk beyond looking: creating, writing, linking, renaming, unlinking or syncing.
    static func writes(_ events: [RecordingFileSystem.Event]) -> [RecordingFileSystem.Event] {
        events.filter { [.open, .write, .fsync, .link, .rename, .unlink, .mkdir, .truncate].contains($0.operation) }
    }

    @Test("the same conflicting content again writes nothing: no file, no fsync, no read; it names the copy it has")
    func repeatWritesNothing() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let fileSystem = RecordingFileSystem(root: root)
        let logs = LogStore()
        let spool = try openSpool(root, fileSystem: fileSystem, logs: logs)
        defer { spool.close() }
        let id = testID(0x910)
        #expect(try spool.store(makeRecord(id: id)) == .stored)
        let variant = Self.variant(id, 1)
        guard case .conflict(let copy?, .kept) = try spool.store(variant) else {
            Issue.record("expected a new audit copy")
            return
        }
        let start = fileSystem.eventCount
        for _ in 0..<5 {
            #expect(try spool.store(variant) == .conflict(auditFile: copy, disposition: .repeated))
            #expect(try spool.store(id: variant.id, fingerprint: variant.fingerprint) { variant.bytes }
                == .conflict(auditFile: copy, disposition: .repeated))
        }
        let calls = fileSystem.events(since: start)
        #expect(calls.allSatisfy { $0.operation == .stat }, "only lstat: \(calls)")
        #expect(calls.contains { $0.operation == .stat && $0.path == copy }, "the copy is checked to be there")
        #expect(try names(root + "/conflicts").map { "conflicts/" + $0 } == [copy])
        #expect(spool.conflictCounts == ["kept": 1, "repeated": 10, "dropped": 0])
        #expect(spool.conflictFiles == 1)
        // Only the new copy is worth a warning.
        #expect(logs.messages(at: .warning).count == 1)
    }

    @Test("many distinct conflicting variants of one id keep at most perRecord copies; the rest write nothing")
    func perRecordCap() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let fileSystem = RecordingFileSystem(root: root)
        let limits = SpoolConflictLimits(perRecord: 4, total: 100)
        let spool = try openSpool(root, fileSystem: fileSystem, conflictLimits: limits)
        defer { spool.close() }
        let id = testID(0x920)
        #expect(try spool.store(makeRecord(id: id)) == .stored)

        var dispositions: [SpoolConflictDisposition?] = []
        var dropWrites: [RecordingFileSystem.Event] = []
        for number in 0..<50 {
            let start = fileSystem.eventCount
            let outcome = try spool.store(Self.variant(id, number))
            dispositions.append(Self.disposition(outcome))
            if case .conflict(nil, .dropped) = outcome {
                dropWrites += Self.writes(fileSystem.events(since: start))
            }
        }
        #expect(dispositions == Array(repeating: .kept, count: 4) + Array(repeating: .dropped, count: 46))
        #expect(dropWrites.isEmpty, "\(dropWrites)")
        #expect(try names(root + "/conflicts").count == 4)
        #expect(spool.conflictCounts == ["kept": 4, "repeated": 0, "dropped": 46])
        #expect(spool.conflictFiles == 4)
        // A kept content is still recognised at the cap.
        #expect(Self.disposition(try spool.store(Self.variant(id, 2))) == .repeated)
        // Another id has its own allowance.
        let other = testID(0x921)
        #expect(try spool.store(makeRecord(id: other)) == .stored)
        #expect(Self.disposition(try spool.store(Self.variant(other, 1))) == .kept)
    }

    @Test("conflicting variants over many ids keep at most total copies")
    func totalCap() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let spool = try openSpool(root, conflictLimits: SpoolConflictLimits(perRecord: 16, total: 10))
        defer { spool.close() }
        var dispositions: [SpoolConflictDisposition] = []
        for index in 0..<8 {
            let id = testID(0x930 + index)
            #expect(try spool.store(makeRecord(id: id)) == .stored)
            for number in 0..<3 {
                dispositions += [Self.disposition(try spool.store(Self.variant(id, number)))].compactMap { $0 }
            }
        }
        #expect(dispositions.count == 24)
        #expect(dispositions.filter { $0 == .kept }.count == 10)
        #expect(dispositions.filter { $0 == .dropped }.count == 14)
        #expect(try names(root + "/conflicts").count == 10)
        #expect(spool.conflictFiles == 10)
        #expect(spool.conflictCounts["dropped"] == 14)
    }

    @Test("concurrent conflicts over many ids never exceed the total")
    func totalCapConcurrently() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let spool = try openSpool(root, conflictLimits: SpoolConflictLimits(perRecord: 16, total: 7))
        defer { spool.close() }
        for index in 0..<20 {
            #expect(try spool.store(makeRecord(id: testID(0x940 + index))) == .stored)
        }
        let outcomes = runConcurrently(20) { index in
            (try? spool.store(Self.variant(testID(0x940 + index), 1))).flatMap(Self.disposition)
        }
        #expect(outcomes.filter { $0 == .kept }.count == 7)
        #expect(outcomes.filter { $0 == .dropped }.count == 13)
        #expect(try names(root + "/conflicts").count == 7)
    }

    @Test("copies removed by another process are noticed: the same content and new contents are kept again")
    func removedByAnotherProcess() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let limits = SpoolConflictLimits(perRecord: 2, total: 100, recountInterval: .zero)
        let spool = try openSpool(root, conflictLimits: limits)
        defer { spool.close() }
        let id = testID(0x950)
        #expect(try spool.store(makeRecord(id: id)) == .stored)
        #expect(Self.disposition(try spool.store(Self.variant(id, 1))) == .kept)
        #expect(Self.disposition(try spool.store(Self.variant(id, 2))) == .kept)
        #expect(Self.disposition(try spool.store(Self.variant(id, 3))) == .dropped)

        // `payhook queue gc` in another process prunes conflicts/.
        for name in try names(root + "/conflicts") {
            try posix.unlink(root + "/conflicts/" + name)
        }
        // The cache still counts 2: it lists the folder again before dropping, and keeps the new content.
        guard case .conflict(let third?, .kept) = try spool.store(Self.variant(id, 3)) else {
            Issue.record("expected a new audit copy after the removal")
            return
        }
        #expect(try contents(root + "/" + third) == Self.variant(id, 3).bytes)
        // Content whose copy was removed is not "repeated" against a file that is gone: it is kept again.
        #expect(Self.disposition(try spool.store(Self.variant(id, 1))) == .kept)
        #expect(try names(root + "/conflicts").count == 2)
        #expect(spool.conflictFiles == 2)
        #expect(Self.disposition(try spool.store(Self.variant(id, 4))) == .dropped)
    }

    @Test("a flood over the cap lists conflicts/ at most once per recount interval, and recovers once it passed")
    func recountIsRateLimited() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let fileSystem = RecordingFileSystem(root: root)
        let limits = SpoolConflictLimits(perRecord: 1, total: 100, recountInterval: .seconds(2))
        let spool = try openSpool(root, fileSystem: fileSystem, conflictLimits: limits)
        defer { spool.close() }
        let id = testID(0x960)
        #expect(try spool.store(makeRecord(id: id)) == .stored)
        #expect(Self.disposition(try spool.store(Self.variant(id, 0))) == .kept)
        for name in try names(root + "/conflicts") {
            try posix.unlink(root + "/conflicts/" + name)
        }
        // Listed at open moments ago: within the interval, drops cost no directory reads.
        let start = fileSystem.eventCount
        for number in 1...20 {
            #expect(Self.disposition(try spool.store(Self.variant(id, number))) == .dropped)
        }
        let listings = fileSystem.events(since: start).filter { $0.operation == .readDirectory }
        #expect(listings.count <= 1)
        usleep(2_100_000)
        #expect(Self.disposition(try spool.store(Self.variant(id, 21))) == .kept)
    }

    @Test("after reopening, the caps still hold, counted from conflicts/ on disk, and kept contents are recognised")
    func capsHoldAcrossReopen() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let limits = SpoolConflictLimits(perRecord: 3, total: 5)
        let first = testID(0x970)
        let second = testID(0x971)
        var kept: [String] = []
        do {
            let spool = try openSpool(root, conflictLimits: limits)
            defer { spool.close() }
            #expect(try spool.store(makeRecord(id: first)) == .stored)
            #expect(try spool.store(makeRecord(id: second)) == .stored)
            for number in 0..<3 {
                if case .conflict(let file?, .kept) = try spool.store(Self.variant(first, number)) { kept.append(file) }
            }
        }
        #expect(kept.count == 3)

        let fileSystem = RecordingFileSystem(root: root)
        let reopened = try openSpool(root, fileSystem: fileSystem, conflictLimits: limits)
        defer { reopened.close() }
        #expect(reopened.conflictFiles == 3)
        #expect(reopened.conflictCounts == ["kept": 0, "repeated": 0, "dropped": 0])
        #expect(Self.disposition(try reopened.store(Self.variant(first, 3))) == .dropped)
        #expect(try reopened.store(Self.variant(first, 1)) == .conflict(auditFile: kept[1], disposition: .repeated))
        #expect(Self.disposition(try reopened.store(Self.variant(second, 0))) == .kept)
        #expect(Self.disposition(try reopened.store(Self.variant(second, 1))) == .kept)
        #expect(Self.disposition(try reopened.store(Self.variant(second, 2))) == .dropped, "5 files in all")
        #expect(try names(root + "/conflicts").count == 5)
        // The copies made before the reopen were read once; repeats are answered from memory since.
        let start = fileSystem.eventCount
        #expect(Self.disposition(try reopened.store(Self.variant(first, 0))) == .repeated)
        #expect(fileSystem.events(since: start).allSatisfy { $0.operation == .stat })
    }

    @Test("a dropped conflict is still an outcome, not an error, and a failed audit copy gives its place back")
    func failedCopyReleasesItsPlace() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let fileSystem = RecordingFileSystem(root: root)
        let spool = try openSpool(root, fileSystem: fileSystem, conflictLimits: SpoolConflictLimits(perRecord: 1, total: 1))
        defer { spool.close() }
        let id = testID(0x980)
        #expect(try spool.store(makeRecord(id: id)) == .stored)
        fileSystem.inject(.init(operation: .link, path: .prefix("conflicts/"), errno: EIO))
        #expect(throws: SpoolError.self) { try spool.store(Self.variant(id, 1)) }
        #expect(spool.conflictFiles == 0)
        #expect(Self.disposition(try spool.store(Self.variant(id, 1))) == .kept)
        #expect(Self.disposition(try spool.store(Self.variant(id, 2))) == .dropped)
    }
}
