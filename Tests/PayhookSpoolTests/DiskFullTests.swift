import Glibc
import Logging
import PayhookSpool
import PayhookSpoolFormat
import PayhookTestSupport
import Testing

/// A tmpfs of a fixed size mounted on a fresh directory (docs/durability.md §10.4: `mount -t tmpfs -o size=…`).
/// Mounting needs CAP_SYS_ADMIN; where it is refused, ``mount(bytes:)`` says why.
final class TmpfsMount {
    let directory: TemporaryDirectory
    private var mounted = true

    private init(directory: TemporaryDirectory) {
        self.directory = directory
    }

    var path: String { directory.path }

    enum Attempt {
        case mounted(TmpfsMount)
        case refused(String)
    }

    static func mount(bytes: Int) -> Attempt {
        let directory: TemporaryDirectory
        do {
            directory = try TemporaryDirectory()
        } catch {
            return .refused("no directory to mount on: \(error)")
        }
        let options = "size=\(bytes),mode=0755"
        guard Glibc.mount("tmpfs", directory.path, "tmpfs", 0, options) == 0 else {
            let error = SpoolErrno(errno)
            return .refused("mount -t tmpfs -o \(options) tmpfs \(directory.path): \(error)")
        }
        return .mounted(TmpfsMount(directory: directory))
    }

    func unmount() {
        guard mounted else { return }
        mounted = false
        // A lazy unmount as a fallback, so that a test that failed half-way never leaves a mount behind.
        if umount2(path, 0) != 0 {
            _ = umount2(path, CInt(MNT_DETACH))
        }
    }

    deinit {
        unmount()
    }
}

/// Fills a spool until its disk is full, and checks what docs/contract.md §4 (invariant 4) and docs/durability.md
/// §10.4 ask:
/// the failing store throws, nothing partial is visible, duplicates are still answered, the spool stays healthy,
/// and once space is freed stores succeed again without a restart.
struct DiskFullScenario {
    let root: String
    let fileSystem: any SpoolFileSystem
    /// A record per index, large enough to need its own 4 KiB page.
    static func record(_ index: Int) -> SpoolRecord {
        makeRecord(id: testID(0x9000 + index), body: String(repeating: "x", count: 3000) + " \(index)")
    }

    private func list(_ folder: String) throws -> [String] {
        try fileSystem.readDirectory(root + "/" + folder).sorted()
    }

    /// Stores until the disk refuses; returns what was stored and the error.
    private func fill(_ spool: Spool) -> (stored: [SpoolRecord], error: SpoolError?) {
        var stored: [SpoolRecord] = []
        for index in 0..<1000 {
            let record = Self.record(index)
            do {
                _ = try spool.store(record)
                stored.append(record)
            } catch {
                return (stored, error)
            }
        }
        return (stored, nil)
    }

    func run() throws {
        let spool = try Spool(directory: root, inspector: TestInspector(), fileSystem: fileSystem, logger: CrashChecker.quiet)
        defer { spool.close() }
        let (stored, error) = fill(spool)
        print("disk full: \(stored.count) records stored, then: \(error?.description ?? "no error")")
        let failed = Self.record(stored.count)
        #expect(stored.count >= 10, "room for at least a few records first")
        #expect(error?.code == .io)
        #expect(error?.errno == ENOSPC)
        #expect(error?.message.hasPrefix("write tmp/\(failed.id).") == true, "\(error?.description ?? "no error")")
        #expect(spool.failureCount(.write) == 1)
        #expect(spool.isHealthy, "ENOSPC on a record file is not a directory fsync failure")

        // Nothing partial is visible: new/ and ids/ hold exactly the stored records, complete; tmp/ is clean.
        #expect(try list("new") == stored.map { "\($0.id).json" }.sorted())
        #expect(try list("ids") == stored.map(\.id).sorted())
        #expect(try list("tmp") == [])
        for record in stored {
            #expect(try fileSystem.readFile(root + "/new/\(record.id).json") == record.bytes)
        }

        // Still full: the same record fails again, the probe fails (/healthz answers 503), duplicates are answered.
        #expect((#expect(throws: SpoolError.self) { try spool.store(failed) })?.errno == ENOSPC)
        #expect(throws: SpoolError.self) { try spool.probe() }
        #expect(try spool.store(stored[0]) == .duplicate)
        #expect(try spool.store(stored[stored.count - 1]) == .duplicate)
        #expect(try list("tmp") == [])

        // A consumer acknowledges three records and the ledger forgets them (pruning): their pages are free.
        for record in stored.prefix(3) {
            try fileSystem.rename(root + "/new/\(record.id).json", root + "/cur/\(record.id).json")
            try fileSystem.unlink(root + "/cur/\(record.id).json")
            try fileSystem.unlink(root + "/ids/\(record.id)")
        }
        #expect(try spool.store(failed) == .stored)
        #expect(try fileSystem.readFile(root + "/new/\(failed.id).json") == failed.bytes)
        try spool.probe()
        #expect(spool.isHealthy)
        #expect(try list("tmp") == [])
    }

    /// The same disk with a free-space minimum: the guard refuses before the disk is full.
    func runGuarded(minimumFreeBytes: UInt64) throws {
        let spool = try Spool(
            directory: root,
            inspector: TestInspector(),
            fileSystem: fileSystem,
            logger: CrashChecker.quiet,
            minimumFreeBytes: minimumFreeBytes
        )
        defer { spool.close() }
        let (stored, error) = fill(spool)
        print("free-space guard: \(stored.count) records stored, then: \(error?.description ?? "no error")")
        #expect(stored.count >= 5)
        #expect(error?.code == .noSpace)
        #expect(error?.errno == ENOSPC)
        #expect(spool.failureCount(.belowMinimumFree) == 1)
        #expect(spool.failureCount(.write) == 0, "the disk itself never said ENOSPC")
        let available = try fileSystem.availableBytes(root)
        #expect(available > 0 && available < minimumFreeBytes)
        #expect(try list("tmp") == [])
        #expect(try list("new").count == stored.count)
        #expect((#expect(throws: SpoolError.self) { try spool.probe() })?.code == .noSpace)
        #expect(try spool.store(stored[0]) == .duplicate)

        for record in stored.prefix(Int(minimumFreeBytes / 4096) + 2) {
            try fileSystem.unlink(root + "/new/\(record.id).json")
            try fileSystem.unlink(root + "/ids/\(record.id)")
        }
        #expect(try spool.store(Self.record(stored.count)) == .stored)
        try spool.probe()
    }
}

@Suite("A full disk")
struct DiskFullTests {
    static let size = 256 * 1024

    /// CrashFS with a tmpfs-like capacity: the seam's ENOSPC, for machines that may not mount.
    private func seamScenario() -> DiskFullScenario {
        let fileSystem = CrashWorkload.freshFileSystem()
        fileSystem.limitCapacity(to: Self.size)
        return DiskFullScenario(root: CrashWorkload.root, fileSystem: fileSystem)
    }

    @Test("a real 256 KiB tmpfs filled until ENOSPC (the seam's ENOSPC where mounting is not permitted)")
    func realDiskFull() throws {
        switch TmpfsMount.mount(bytes: Self.size) {
        case .mounted(let mount):
            defer { mount.unmount() }
            print("disk full: on a \(Self.size / 1024) KiB tmpfs at \(mount.path)")
            try DiskFullScenario(root: mount.path + "/spool", fileSystem: PosixFileSystem()).run()
        case .refused(let reason):
            print("disk full: cannot mount a tmpfs here (\(reason)); running the same checks on CrashFS's ENOSPC")
            try seamScenario().run()
        }
    }

    @Test("the same checks with the seam's ENOSPC (CrashFS with a 256 KiB capacity)")
    func seamDiskFull() throws {
        try seamScenario().run()
    }

    @Test("the free-space guard refuses before a real tmpfs is full (the seam's where mounting is not permitted)")
    func guardOnRealDisk() throws {
        switch TmpfsMount.mount(bytes: Self.size) {
        case .mounted(let mount):
            defer { mount.unmount() }
            try DiskFullScenario(root: mount.path + "/spool", fileSystem: PosixFileSystem())
                .runGuarded(minimumFreeBytes: 64 * 1024)
        case .refused(let reason):
            print("free-space guard: cannot mount a tmpfs here (\(reason)); using CrashFS's free space")
            try seamScenario().runGuarded(minimumFreeBytes: 64 * 1024)
        }
    }
}
