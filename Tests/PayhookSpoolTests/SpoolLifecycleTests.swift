import Glibc
import PayhookSpool
import PayhookSpoolFormat
import PayhookTestSupport
import Testing

@Suite("Opening, locking, probing, refusing")
struct SpoolLifecycleTests {
    @Test("a second Spool on the same directory is refused with the holder's pid; after close() it opens")
    func lock() throws {
        let directory = try TemporaryDirectory()
        let first = try openSpool(directory.spool)
        #expect(try contents(directory.spool + "/.lock") == Array("\(getpid())\n".utf8))

        let error = #expect(throws: SpoolError.self) { try openSpool(directory.spool) }
        #expect(error?.code == .locked)
        #expect(error?.message == "spool \(directory.spool) is in use by another payhook (pid \(getpid()))")

        first.close()
        first.close()
        let second = try openSpool(directory.spool + "/")
        #expect(second.directory == directory.spool)
        let stillLocked = #expect(throws: SpoolError.self) { try openSpool(directory.spool) }
        #expect(stillLocked?.code == .locked)
        second.close()
    }

    @Test("releasing the last reference releases the lock")
    func deinitReleasesLock() throws {
        let directory = try TemporaryDirectory()
        do {
            let spool = try openSpool(directory.spool)
            #expect(spool.recovery.isEmpty)
        }
        let again = try openSpool(directory.spool)
        again.close()
    }

    @Test("a closed Spool refuses to store or probe")
    func closedSpool() throws {
        let directory = try TemporaryDirectory()
        let spool = try openSpool(directory.spool)
        spool.close()
        let error = #expect(throws: SpoolError.self) { try spool.store(makeRecord(id: testID(400))) }
        #expect(error?.code == .closed)
        #expect(throws: SpoolError.self) { try spool.probe() }
        #expect(try names(directory.spool + "/new") == [])
    }

    @Test("probe checks every folder a store writes, writes, syncs and removes a file in tmp/, and throws while the disk fails")
    func probe() throws {
        let directory = try TemporaryDirectory()
        let fileSystem = RecordingFileSystem(root: directory.spool)
        let spool = try openSpool(directory.spool, fileSystem: fileSystem)
        defer { spool.close() }

        var start = fileSystem.eventCount
        try spool.probe()
        let calls = fileSystem.events(since: start)
        // Without unnamed files (this file system has none) the folders are checked with faccessat(2).
        let checks = calls.prefix { $0.operation == .access }
        #expect(checks.map(\.path) == ["tmp", "new", "ids", "conflicts", "corrupt"])
        let file = calls.dropFirst(checks.count)
        #expect(file.map(\.operation) == [.open, .write, .fsync, .close, .unlink])
        #expect(file.allSatisfy { $0.path.hasPrefix("tmp/probe.") })
        #expect(try names(directory.spool + "/tmp") == [])

        fileSystem.inject(.init(operation: .fsync, path: .prefix("tmp/"), errno: EIO, persistent: true))
        let error = #expect(throws: SpoolError.self) { try spool.probe() }
        #expect(error?.code == .io)
        #expect(error?.message.hasPrefix("fsync tmp/probe.") == true)
        #expect(error?.message.hasSuffix(": Input/output error") == true)
        #expect(throws: SpoolError.self) { try spool.probe() }
        #expect(try names(directory.spool + "/tmp") == [])

        fileSystem.setInjecting(false)
        start = fileSystem.eventCount
        try spool.probe()
        #expect(fileSystem.events(since: start).allSatisfy { $0.failure == nil })
    }

    @Test("malformed ids are refused without touching the disk",
          arguments: [
              "../x",
              String(repeating: "A", count: 64),
              String(repeating: "a", count: 63),
              String(repeating: "a", count: 65),
              String(repeating: "a", count: 63) + "g",
              String(repeating: "a", count: 63) + "/",
              "",
              String(repeating: "é", count: 32),
          ])
    func invalidIDs(_ id: String) throws {
        let directory = try TemporaryDirectory()
        let fileSystem = RecordingFileSystem(root: directory.spool)
        let spool = try openSpool(directory.spool, fileSystem: fileSystem)
        defer { spool.close() }

        let start = fileSystem.eventCount
        let error = #expect(throws: SpoolError.self) {
            try spool.store(SpoolRecord(id: id, fingerprint: "f", bytes: recordBytes(id: id, fingerprint: "f", body: "b")))
        }
        #expect(error?.code == .invalidRecord)
        #expect(error?.message.contains("64 lowercase hex characters") == true)
        #expect(fileSystem.events(since: start).isEmpty)
    }

    @Test("a record whose bytes do not inspect to its own id and fingerprint is refused without touching the disk")
    func inconsistentRecord() throws {
        let directory = try TemporaryDirectory()
        let fileSystem = RecordingFileSystem(root: directory.spool)
        let spool = try openSpool(directory.spool, fileSystem: fileSystem)
        defer { spool.close() }
        let start = fileSystem.eventCount

        let records = [
            SpoolRecord(id: testID(401), fingerprint: "f", bytes: Array("not a record".utf8)),
            SpoolRecord(id: testID(401), fingerprint: "f", bytes: recordBytes(id: testID(402), fingerprint: "f", body: "")),
            SpoolRecord(id: testID(401), fingerprint: "f", bytes: recordBytes(id: testID(401), fingerprint: "g", body: "")),
        ]
        for record in records {
            let error = #expect(throws: SpoolError.self) { try spool.store(record) }
            #expect(error?.code == .invalidRecord)
        }
        #expect(fileSystem.events(since: start).isEmpty)
    }

    @Test("a missing spool directory is created with its subfolders, and the parent is synced")
    func createsLayout() throws {
        let directory = try TemporaryDirectory()
        let fileSystem = RecordingFileSystem(root: directory.spool)
        let spool = try openSpool(directory.spool, fileSystem: fileSystem)
        defer { spool.close() }

        #expect(try names(directory.spool) == [".lock", "conflicts", "corrupt", "cur", "ids", "new", "tmp"])
        for folder in ["tmp", "new", "cur", "ids", "conflicts", "corrupt"] {
            #expect(try posix.stat(directory.spool + "/" + folder).kind == .directory)
        }
        let log = fileSystem.events
        let madeRoot = log.firstIndex { $0.operation == .mkdir && $0.path == "." } ?? -1
        let syncedParent = log.firstIndex { $0.operation == .fsync && $0.path == directory.path } ?? -1
        let madeLast = log.lastIndex { $0.operation == .mkdir } ?? -1
        let syncedRoot = log.firstIndex { $0.operation == .fsync && $0.path == "." } ?? -1
        #expect(madeRoot >= 0 && madeRoot < syncedParent)
        #expect(madeLast >= 0 && madeLast < syncedRoot)
        #expect(log.filter { $0.operation == .mkdir }.count == 7)
    }

    @Test("an existing layout is reused, and its entries are synced again in case the process that made them was killed first")
    func reusesLayout() throws {
        let directory = try TemporaryDirectory()
        try openSpool(directory.spool).close()
        let fileSystem = RecordingFileSystem(root: directory.spool)
        let spool = try openSpool(directory.spool, fileSystem: fileSystem)
        defer { spool.close() }
        #expect(fileSystem.events.filter { $0.operation == .mkdir }.allSatisfy { $0.failure == EEXIST })
        // mkdir says EEXIST also for a directory whose entry never reached the disk: kill -9 keeps the page cache.
        // So the parent and the spool directory are synced at every start, before anything is stored.
        let syncs = fileSystem.events.filter { $0.operation == .fsync }.map(\.path)
        #expect(syncs.prefix(2) == [directory.path, "."])
        #expect(Set(syncs.dropFirst(2)) == ["tmp", "new", "cur", "ids", "conflicts", "corrupt"])
        #expect(fileSystem.events.allSatisfy { $0.failure == nil || $0.operation == .mkdir })
    }

    @Test("a missing parent directory is a clear error, and nothing is created")
    func missingParent() throws {
        let directory = try TemporaryDirectory()
        let spoolPath = directory.path + "/missing/spool"
        let error = #expect(throws: SpoolError.self) { try openSpool(spoolPath) }
        #expect(error?.code == .layout)
        #expect(error?.errno == ENOENT)
        #expect(error?.message
            == "create spool directory \(spoolPath): No such file or directory (its parent directory must exist)")
        #expect(!exists(directory.path + "/missing"))
    }

    @Test("a spool path that is a file is refused")
    func pathIsAFile() throws {
        let directory = try TemporaryDirectory()
        try writeFile(directory.spool, [])
        let error = #expect(throws: SpoolError.self) { try openSpool(directory.spool) }
        #expect(error?.code == .layout)
        #expect(error?.message == "spool directory \(directory.spool) is not a directory")
    }

    @Test("subfolders on different devices are refused: hard links cannot cross file systems")
    func differentDevices() throws {
        let directory = try TemporaryDirectory()
        try openSpool(directory.spool).close()
        let fileSystem = RecordingFileSystem(root: directory.spool)
        fileSystem.overrideDevice(of: "ids", with: 0xdead)

        let error = #expect(throws: SpoolError.self) { try openSpool(directory.spool, fileSystem: fileSystem) }
        #expect(error?.code == .layout)
        #expect(error?.message.contains("ids/") == true)
        #expect(error?.message.contains("different devices") == true)
        // The failed start released its lock.
        try openSpool(directory.spool).close()
    }

    @Test("a subfolder that is not a directory is refused")
    func subfolderIsAFile() throws {
        let directory = try TemporaryDirectory()
        try openSpool(directory.spool).close()
        _ = rmdir(directory.spool + "/corrupt")
        try writeFile(directory.spool + "/corrupt", [])
        let error = #expect(throws: SpoolError.self) { try openSpool(directory.spool) }
        #expect(error?.code == .layout)
        #expect(error?.message == "spool subfolder corrupt/ is not a directory")
    }

    @Test("SpoolError and SpoolErrno describe themselves in one line")
    func errorDescriptions() {
        #expect(SpoolErrno(EIO).description == "Input/output error")
        #expect(SpoolErrno(ENOSPC).description == "No space left on device")
        let error = SpoolError(code: .io, message: "fsync new/: Input/output error", errno: EIO)
        #expect("\(error)" == "fsync new/: Input/output error")
        #expect(SpoolError.Code.locked.description == "locked")
        #expect(SpoolError.Code("custom") != .io)
    }
}
