import Glibc
import Logging
import PayhookSpool
import PayhookSpoolFormat
import PayhookTestSupport
import Testing

@Suite("Recovery at startup")
struct SpoolRecoveryTests {
    @Test("recovery removes tmp/ leftovers, relinks records without ledger entries, quarantines bad files")
    func repairsCrashStates() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        openAndClose(root)

        // A record stored cleanly, then taken and acknowledged: nothing to repair.
        let clean = makeRecord(id: testID(300))
        do {
            let spool = try openSpool(root)
            #expect(try spool.store(clean) == .stored)
            spool.close()
            try posix.rename(root + "/new/\(clean.id).json", root + "/cur/\(clean.id).json")
            try posix.unlink(root + "/cur/\(clean.id).json")
        }
        // Writes that never completed.
        try writeFile(root + "/tmp/\(testID(301)).1.1.1", Array("{\"id\":".utf8))
        try writeFile(root + "/tmp/\(testID(302)).1.2.1", recordBytes(id: testID(302), fingerprint: "f", body: "b"))
        // Crashes between fsync(new/) and fsync(ids/), in new/ and after the consumer took it to cur/.
        let inNew = makeRecord(id: testID(303))
        try writeFile(root + "/new/\(inNew.id).json", inNew.bytes)
        let inCur = makeRecord(id: testID(304))
        try writeFile(root + "/cur/\(inCur.id).json", inCur.bytes)
        // Files that are no records, or not under their own id.
        try writeFile(root + "/new/garbage.json", Array("not json at all".utf8))
        let misnamed = makeRecord(id: testID(305))
        try writeFile(root + "/new/\(testID(306)).json", misnamed.bytes)
        // Named after its id, but the id is not one (ids are 64 lowercase hex characters).
        try writeFile(root + "/cur/ZZZ.json", recordBytes(id: "ZZZ", fingerprint: "f", body: "b"))
        // Dotfiles are ignored everywhere.
        try writeFile(root + "/new/.hidden", Array("whatever".utf8))
        try writeFile(root + "/tmp/.keep", [])

        let logs = LogStore()
        let spool = try openSpool(root, logs: logs)
        let expected = SpoolRecoveryReport(
            removedTemporaryFiles: ["\(testID(301)).1.1.1", "\(testID(302)).1.2.1"],
            quarantined: ["new/\(testID(306)).json", "new/garbage.json", "cur/ZZZ.json"],
            relinkedLedgerEntries: [inNew.id, inCur.id]
        )
        #expect(spool.recovery == expected)
        #expect(spool.recovery.description
            == "removed 2 temporary files, quarantined 3 files (new/\(testID(306)).json, new/garbage.json, "
            + "cur/ZZZ.json), relinked 2 ledger entries")
        #expect(logs.messages(at: .notice) == ["spool recovery: \(expected)"])
        #expect(logs.messages(at: .error).count == 3)

        #expect(try names(root + "/tmp") == [".keep"])
        #expect(try names(root + "/new") == [".hidden", "\(inNew.id).json"])
        #expect(try names(root + "/cur") == ["\(inCur.id).json"])
        #expect(try names(root + "/corrupt") == ["\(testID(306)).json", "garbage.json", "ZZZ.json"].sorted())
        #expect(try contents(root + "/corrupt/garbage.json") == Array("not json at all".utf8))
        #expect(try contents(root + "/corrupt/\(testID(306)).json") == misnamed.bytes)
        #expect(try posix.stat(root + "/ids/\(inNew.id)").inode == posix.stat(root + "/new/\(inNew.id).json").inode)
        #expect(try posix.stat(root + "/ids/\(inCur.id)").inode == posix.stat(root + "/cur/\(inCur.id).json").inode)
        #expect(try names(root + "/ids") == [clean.id, inNew.id, inCur.id].sorted())

        // The repaired records are known to the ledger now.
        #expect(try spool.store(inNew) == .duplicate)
        #expect(try spool.store(inCur) == .duplicate)
        spool.close()

        // A second run finds nothing to do and logs nothing.
        let secondLogs = LogStore()
        let again = try openSpool(root, logs: secondLogs)
        defer { again.close() }
        #expect(again.recovery == SpoolRecoveryReport())
        #expect(again.recovery.isEmpty)
        #expect(again.recovery.description == "nothing to repair")
        #expect(secondLogs.messages(at: .notice).isEmpty)
        #expect(try names(root + "/corrupt").count == 3)
    }

    @Test("a quarantined file never replaces an earlier one of the same name")
    func quarantineKeepsEarlierFiles() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        openAndClose(root)
        try writeFile(root + "/corrupt/garbage.json", Array("first".utf8))
        try writeFile(root + "/new/garbage.json", Array("second".utf8))
        try writeFile(root + "/cur/garbage.json", Array("third".utf8))

        let spool = try openSpool(root)
        defer { spool.close() }
        #expect(spool.recovery == SpoolRecoveryReport(quarantined: ["new/garbage.json", "cur/garbage.json"]))
        let kept = try names(root + "/corrupt")
        #expect(kept.count == 3)
        #expect(kept.allSatisfy { $0.hasPrefix("garbage.json") })
        let all = try Set(kept.map { try contents(root + "/corrupt/" + $0) })
        #expect(all == [Array("first".utf8), Array("second".utf8), Array("third".utf8)])
    }

    @Test("recovery syncs what it changed: tmp/ after removing, corrupt/ then the source after moving, ids/ after linking")
    func recoverySyncs() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        openAndClose(root)
        try writeFile(root + "/tmp/leftover", [])
        try writeFile(root + "/new/garbage.json", Array("x".utf8))
        let record = makeRecord(id: testID(310))
        try writeFile(root + "/cur/\(record.id).json", record.bytes)

        let fileSystem = RecordingFileSystem(root: root)
        let spool = try openSpool(root, fileSystem: fileSystem)
        defer { spool.close() }
        let log = fileSystem.events
        func index(_ operation: RecordingFileSystem.Operation, _ path: String) -> Int {
            log.firstIndex { $0.operation == operation && $0.path == path } ?? -1
        }
        func lastIndex(_ operation: RecordingFileSystem.Operation, _ path: String) -> Int {
            log.lastIndex { $0.operation == operation && $0.path == path } ?? -1
        }
        #expect(index(.unlink, "tmp/leftover") >= 0)
        #expect(index(.unlink, "tmp/leftover") < lastIndex(.fsync, "tmp"))
        #expect(index(.rename, "corrupt/garbage.json") >= 0)
        #expect(index(.rename, "corrupt/garbage.json") < lastIndex(.fsync, "corrupt"))
        #expect(lastIndex(.fsync, "corrupt") < lastIndex(.fsync, "new"))
        #expect(index(.rename, "corrupt/garbage.json") < lastIndex(.fsync, "new"))
        #expect(index(.link, "ids/\(record.id)") >= 0)
        #expect(index(.link, "ids/\(record.id)") < lastIndex(.fsync, "ids"))
        // The record found in cur/ may have been put there by a process killed before it synced cur/: cur/ is
        // synced before the ledger entry that vouches for it is made (an ids/ entry implies a durable record).
        #expect(index(.fsync, "cur") < index(.link, "ids/\(record.id)"))
        #expect(index(.fsync, "new") < index(.link, "ids/\(record.id)"))
    }

    @Test("recovery syncs every folder before it builds on what a killed process left, even when nothing is wrong")
    func recoverySyncsEveryFolderFirst() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        openAndClose(root)
        let record = makeRecord(id: testID(311))
        try writeFile(root + "/new/\(record.id).json", record.bytes)

        let fileSystem = RecordingFileSystem(root: root)
        let spool = try openSpool(root, fileSystem: fileSystem)
        defer { spool.close() }
        #expect(spool.recovery == SpoolRecoveryReport(relinkedLedgerEntries: [record.id]))
        let log = fileSystem.events
        let relink = log.firstIndex { $0.operation == .link && $0.path == "ids/\(record.id)" } ?? -1
        #expect(relink >= 0)
        for folder in ["tmp", "new", "cur", "ids", "conflicts", "corrupt"] {
            let synced = log.firstIndex { $0.operation == .fsync && $0.path == folder } ?? Int.max
            #expect(synced < relink, "fsync \(folder)/ before relinking")
        }
    }

    @Test("a file recovery cannot read stops the start instead of being moved aside")
    func unreadableRecordStopsStartup() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        openAndClose(root)
        let record = makeRecord(id: testID(311))
        try writeFile(root + "/new/\(record.id).json", record.bytes)
        let fileSystem = RecordingFileSystem(root: root)
        fileSystem.inject(.init(operation: .readFile, path: .prefix("new/"), errno: EIO))

        let error = #expect(throws: SpoolError.self) { try openSpool(root, fileSystem: fileSystem) }
        #expect(error?.message == "read new/\(record.id).json: Input/output error")
        #expect(try names(root + "/new") == ["\(record.id).json"])
        #expect(try names(root + "/corrupt") == [])

        // The lock was released with the failed start.
        let spool = try openSpool(root)
        defer { spool.close() }
        #expect(spool.recovery == SpoolRecoveryReport(relinkedLedgerEntries: [record.id]))
    }

    @Test("a record a consumer moves to cur/ while recovery runs is entered in the ledger from cur/")
    func consumerMovesDuringRecovery() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        openAndClose(root)
        let record = makeRecord(id: testID(312))
        try writeFile(root + "/new/\(record.id).json", record.bytes)
        let fileSystem = RecordingFileSystem(root: root)
        // The consumer renames the file between recovery's read and its link; the link then finds nothing.
        fileSystem.inject(.init(operation: .link, path: .exact("ids/\(record.id)"), errno: ENOENT, action: {
            _ = try? PosixFileSystem().rename(root + "/new/\(record.id).json", root + "/cur/\(record.id).json")
        }))

        let spool = try openSpool(root, fileSystem: fileSystem)
        defer { spool.close() }
        #expect(spool.recovery == SpoolRecoveryReport(relinkedLedgerEntries: [record.id]))
        #expect(try posix.stat(root + "/ids/\(record.id)").inode == posix.stat(root + "/cur/\(record.id).json").inode)
        #expect(try names(root + "/corrupt") == [])
    }

    private func openAndClose(_ root: String) {
        do {
            try openSpool(root).close()
        } catch {
            Issue.record("cannot open \(root): \(error)")
        }
    }
}
