import Glibc
import PayhookSpool
import PayhookTestSupport
import Testing

/// `<spool>/.retention`: written by the server at start, read by `payhook queue gc` in another process, whose
/// reader depends on the exact format "<seconds>\n".
@Suite("Ledger retention file")
struct SpoolRetentionTests {
    @Test("recordRetention writes exactly the seconds and one newline (the reader is the queue's, QueueRetentionTests)")
    func roundTrip() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let spool = try openSpool(root)
        defer { spool.close() }
        #expect(try names(root).contains(".retention") == false)

        try spool.recordRetention(seconds: 604_800)
        #expect(try contents(root + "/.retention") == Array("604800\n".utf8))

        try spool.recordRetention(seconds: 86_400)
        #expect(try contents(root + "/.retention") == Array("86400\n".utf8))
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

    @Test("a retention below one second is refused and writes nothing; a closed spool refuses too")
    func refusals() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let spool = try openSpool(root)
        try spool.recordRetention(seconds: 60)
        #expect((#expect(throws: SpoolError.self) { try spool.recordRetention(seconds: -1) })?.code == .invalidArgument)
        #expect((#expect(throws: SpoolError.self) { try spool.recordRetention(seconds: 0) })?.code == .invalidArgument)
        #expect(try contents(root + "/.retention") == Array("60\n".utf8))
        spool.close()
        #expect((#expect(throws: SpoolError.self) { try spool.recordRetention(seconds: 5) })?.code == .closed)
        #expect(try contents(root + "/.retention") == Array("60\n".utf8))
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
