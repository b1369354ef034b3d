import Glibc
import PayhookSpool
import PayhookSpoolFormat
import PayhookTestSupport
import Testing

/// A spool whose folders it cannot write (a restore as another user, a read-only mount, an immutable folder)
/// must neither open nor look healthy. The tests run as root, for whom permission bits do not stop anything,
/// so the refusals are injected through the file-system seam: on the unnamed file (O_TMPFILE) opened in the
/// folder where the file system has them, on faccessat(2) where it does not.
@Suite("Folders the spool cannot write")
struct SpoolWritableTests {
    struct Case: Sendable, CustomStringConvertible {
        let folder: String
        let errno: CInt
        let unnamedFiles: Bool
        var description: String { "\(folder)/ \(String(cString: strerror(errno))), \(unnamedFiles ? "unnamed" : "named") files" }
    }

    static let cases: [Case] = ["new", "ids"].flatMap { folder in
        [EACCES, EROFS, EPERM].flatMap { errno in
            [false, true].map { Case(folder: folder, errno: errno, unnamedFiles: $0) }
        }
    }

    /// The refusal of creating files in `folder`, as the seam sees it.
    static func refusal(_ folder: String, _ errno: CInt, unnamedFiles: Bool) -> [RecordingFileSystem.Fault] {
        [
            unnamedFiles
                ? .init(operation: .open, path: .exact(folder + "/"), errno: errno, persistent: true)
                : .init(operation: .access, path: .exact(folder), errno: errno, persistent: true),
            // What a store meets: its link into the folder is refused.
            .init(operation: .link, path: .prefix(folder + "/"), errno: errno, persistent: true),
        ]
    }

    @Test("opening refuses a spool with a folder it cannot write, naming the folder", arguments: cases)
    func openRefuses(_ test: Case) throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        try openSpool(root).close()
        let fileSystem = RecordingFileSystem(root: root, unnamedFiles: test.unnamedFiles)
        for fault in Self.refusal(test.folder, test.errno, unnamedFiles: test.unnamedFiles) {
            fileSystem.inject(fault)
        }

        let error = #expect(throws: SpoolError.self) { try openSpool(root, fileSystem: fileSystem) }
        #expect(error?.code == .notWritable)
        #expect(error?.errno == test.errno)
        let call = test.unnamedFiles ? "open(O_TMPFILE)" : "faccessat(W_OK|X_OK)"
        #expect(error?.message == "spool folder \(test.folder)/ is not writable: \(call): "
            + "\(SpoolErrno(test.errno)) (check its owner, mode, mount options and immutable flag)")
        // The check made no name in any folder, and the failed open released its lock.
        #expect(!fileSystem.events.contains { $0.creates && $0.path != ".lock" })
        for folder in ["tmp", "new", "ids", "conflicts", "corrupt"] {
            #expect(try names(root + "/" + folder) == [])
        }
        try openSpool(root).close()
    }

    @Test("the open-time check creates no name in new/: it opens an unnamed file there, or asks faccessat(2)",
          arguments: [false, true])
    func checkLeavesNoName(unnamedFiles: Bool) throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let fileSystem = RecordingFileSystem(root: root, unnamedFiles: unnamedFiles)
        let spool = try openSpool(root, fileSystem: fileSystem)
        defer { spool.close() }
        let log = fileSystem.events
        for folder in ["tmp", "new", "ids", "conflicts", "corrupt"] {
            if unnamedFiles {
                #expect(log.contains { $0.operation == .open && $0.path == folder + "/" && !$0.creates })
            } else {
                #expect(log.contains { $0.operation == .access && $0.path == folder })
            }
        }
        #expect(!log.contains { $0.creates && !$0.path.hasPrefix("tmp/") && $0.path != ".lock" })
        #expect(!log.contains { $0.operation == .link && !$0.path.hasPrefix("tmp/") })
        #expect(try names(root + "/new") == [])
    }

    @Test("a folder that turns unwritable after the open fails stores and the probe; once repaired, both work again",
          arguments: cases)
    func probeFollowsStores(_ test: Case) throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let fileSystem = RecordingFileSystem(root: root, unnamedFiles: test.unnamedFiles)
        let spool = try openSpool(root, fileSystem: fileSystem)
        defer { spool.close() }
        let earlier = makeRecord(id: testID(0x300))
        #expect(try spool.store(earlier) == .stored)
        try spool.probe()

        for fault in Self.refusal(test.folder, test.errno, unnamedFiles: test.unnamedFiles) {
            fileSystem.inject(fault)
        }
        let record = makeRecord(id: testID(0x301))
        let failed = #expect(throws: SpoolError.self) { try spool.store(record) }
        #expect(failed?.errno == test.errno)
        let probed = #expect(throws: SpoolError.self) { try spool.probe() }
        #expect(probed?.code == .notWritable)
        #expect(probed?.message.hasPrefix("spool folder \(test.folder)/ is not writable: ") == true)
        // A duplicate is answered without writing: it says nothing about writing, and health stays failed.
        #expect(try spool.store(earlier) == .duplicate)
        #expect((#expect(throws: SpoolError.self) { try spool.probe() })?.code == .notWritable)
        #expect(spool.isHealthy, "a refused link is not a failed directory fsync")

        // Repaired: the probe passes by itself, before any store succeeded, and stores work.
        fileSystem.setInjecting(false)
        try spool.probe()
        #expect(try spool.store(record) == .stored)
        try spool.probe()
    }

    @Test("a store refused by an unwritable folder fails the probe even when the folder is repaired before the next probe")
    func repairBeforeProbe() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let fileSystem = RecordingFileSystem(root: root)
        let spool = try openSpool(root, fileSystem: fileSystem)
        defer { spool.close() }
        for fault in Self.refusal("new", EACCES, unnamedFiles: false) {
            fileSystem.inject(fault)
        }
        #expect(throws: SpoolError.self) { try spool.store(makeRecord(id: testID(0x310))) }
        #expect((#expect(throws: SpoolError.self) { try spool.probe() })?.code == .notWritable)
        fileSystem.setInjecting(false)
        // The probe's checks re-check exactly what refused the store (creating a file in new/): they pass now.
        try spool.probe()
    }

    @Test("a store failure the probe cannot re-check (EIO on a link) fails the probe until a store writes again")
    func unrecheckableFailure() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let fileSystem = RecordingFileSystem(root: root)
        let spool = try openSpool(root, fileSystem: fileSystem)
        defer { spool.close() }
        let earlier = makeRecord(id: testID(0x320))
        #expect(try spool.store(earlier) == .stored)
        fileSystem.inject(.init(operation: .link, path: .prefix("new/"), errno: EIO))

        let failed = #expect(throws: SpoolError.self) { try spool.store(makeRecord(id: testID(0x321))) }
        #expect(failed?.code == .io)
        for _ in 0..<2 {
            let probed = #expect(throws: SpoolError.self) { try spool.probe() }
            #expect(probed?.code == .io)
            #expect(probed?.errno == EIO)
            #expect(probed?.message.contains("the last store failed (link tmp/") == true)
        }
        // Neither a refused record nor a duplicate proves that writing works.
        #expect((#expect(throws: SpoolError.self) { try spool.store(SpoolRecord(id: "bad", fingerprint: "f", bytes: [])) })?.code == .invalidRecord)
        #expect(try spool.store(earlier) == .duplicate)
        #expect(throws: SpoolError.self) { try spool.probe() }
        #expect(try spool.store(makeRecord(id: testID(0x322))) == .stored)
        try spool.probe()
    }
}
