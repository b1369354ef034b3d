import Glibc
import PayhookSpool
import Testing

/// `<spool>/.retention`: written by the server at start, read by `payhook queue gc` in another process, whose
/// reader depends on the exact format "<seconds>\n".
@Suite("Ledger retention file")
struct SpoolRetentionTests {
    @Test("recordRetention writes exactly the seconds and one newline, and recordedRetention reads it back")
    func roundTrip() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let spool = try openSpool(root)
        defer { spool.close() }
        #expect(Spool.recordedRetention(directory: root) == nil)

        try spool.recordRetention(seconds: 604_800)
        #expect(try contents(root + "/.retention") == Array("604800\n".utf8))
        #expect(Spool.recordedRetention(directory: root) == 604_800)
        #expect(Spool.recordedRetention(directory: root + "/") == 604_800)

        try spool.recordRetention(seconds: 86_400)
        #expect(try contents(root + "/.retention") == Array("86400\n".utf8))
        #expect(Spool.recordedRetention(directory: root) == 86_400)
        try spool.recordRetention(seconds: 0)
        #expect(try contents(root + "/.retention") == Array("0\n".utf8))
        #expect(try names(root + "/tmp") == [])
    }

    @Test("the file is written in tmp/, fsynced, renamed over .retention, then the spool directory is fsynced")
    func durableOrder() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let fileSystem = RecordingFileSystem(root: root)
        let spool = try openSpool(root, fileSystem: fileSystem)
        defer { spool.close() }
        let start = fileSystem.eventCount
        try spool.recordRetention(seconds: 3600)
        let log = fileSystem.events(since: start)
        let create = log.firstIndex { $0.creates && $0.path.hasPrefix("tmp/retention.") }
        let temporary = create.map { log[$0].path } ?? "?"
        let fsyncFile = log.firstIndex { $0.operation == .fsync && $0.path == temporary }
        let rename = log.firstIndex { $0.operation == .rename && $0.source == temporary && $0.path == ".retention" }
        let fsyncRoot = log.firstIndex { $0.operation == .fsync && $0.path == "." }
        #expect(create != nil && fsyncFile != nil && rename != nil && fsyncRoot != nil, "\(log)")
        if let create, let fsyncFile, let rename, let fsyncRoot {
            #expect(create < fsyncFile && fsyncFile < rename && rename < fsyncRoot)
        }
        #expect(!log.contains { $0.path.hasPrefix("new/") || $0.path.hasPrefix("ids/") })
    }

    @Test("recordedRetention is nil for anything but a decimal number with at most one trailing newline")
    func unparseable() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        try openSpool(root).close()
        for text in ["", "\n", "abc\n", "12 \n", " 12\n", "-5\n", "+5\n", "12\n\n", "1.5\n", "604800s\n",
                     "99999999999999999999999\n"] {
            try writeFile(root + "/.retention", Array(text.utf8))
            #expect(Spool.recordedRetention(directory: root) == nil, "\(text.debugDescription)")
        }
        try writeFile(root + "/.retention", Array("42".utf8))
        #expect(Spool.recordedRetention(directory: root) == 42)
        #expect(Spool.recordedRetention(directory: directory.path + "/absent") == nil)
    }

    @Test("a negative retention is refused and writes nothing; a closed spool refuses too")
    func refusals() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let spool = try openSpool(root)
        try spool.recordRetention(seconds: 60)
        #expect((#expect(throws: SpoolError.self) { try spool.recordRetention(seconds: -1) })?.code == .invalidArgument)
        #expect(Spool.recordedRetention(directory: root) == 60)
        spool.close()
        #expect((#expect(throws: SpoolError.self) { try spool.recordRetention(seconds: 5) })?.code == .closed)
        #expect(Spool.recordedRetention(directory: root) == 60)
    }

    @Test(".retention is left alone by recovery and the layout checks; a leftover temporary of it is cleared")
    func recoveryLeavesItAlone() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        do {
            let spool = try openSpool(root)
            try spool.recordRetention(seconds: 604_800)
            spool.close()
        }
        // A crash between writing the temporary and renaming it leaves this behind.
        try writeFile(root + "/tmp/retention.1.2.3", Array("7\n".utf8))
        let reopened = try openSpool(root)
        defer { reopened.close() }
        #expect(reopened.recovery == SpoolRecoveryReport(removedTemporaryFiles: ["retention.1.2.3"]))
        #expect(try contents(root + "/.retention") == Array("604800\n".utf8))
        #expect(try names(root) == [".lock", ".retention", "conflicts", "corrupt", "cur", "ids", "new", "tmp"])
        #expect(try names(root + "/corrupt") == [])
        try reopened.probe()
    }
}
