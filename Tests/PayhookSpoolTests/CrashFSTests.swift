import Glibc
import PayhookSpool
import PayhookSpoolFormat
import Testing

/// Pins down the persistence model that ``CrashFS`` claims, so that the power-loss enumeration checks the spool
/// against the model its documentation describes.
@Suite("CrashFS: the persistence model")
struct CrashFSTests {
    /// The contents of `path` in a crash state, nil when the name is not there.
    private func contents(_ path: String, in image: CrashFS.Image) -> [UInt8]? {
        var inode = CrashFS.Image.rootInode
        for component in path.split(separator: "/") {
            guard let next = image.directories[inode]?[String(component)] else { return nil }
            inode = next
        }
        return image.files[inode]
    }

    /// What the crash states at the end of the log hold at `paths`.
    private func outcomes(_ fileSystem: CrashFS, _ paths: [String]) -> Set<[[UInt8]?]> {
        let states = fileSystem.crashStates(at: fileSystem.log.count).states
        return Set(states.map { state in paths.map { contents($0, in: state.image) } })
    }

    private func syncDirectory(_ path: String, _ fileSystem: CrashFS) throws(SpoolErrno) {
        let fd = try fileSystem.open(path, flags: O_RDONLY | O_DIRECTORY, mode: 0)
        try fileSystem.fsync(fd)
        try fileSystem.close(fd)
    }

    private func write(_ text: String, to fd: CInt, _ fileSystem: CrashFS) throws {
        let bytes = Array(text.utf8)
        _ = try bytes.withUnsafeBytes { buffer in try fileSystem.write(fd, buffer) }
    }

    @Test("data is durable at fsync of the file, a name at fsync of its directory; until then each may be lost")
    func fileAndDirectory() throws {
        let fileSystem = CrashFS(image: .with(directories: ["/d"]))
        let fd = try fileSystem.open("/d/f", flags: O_CREAT | O_EXCL | O_WRONLY, mode: 0o644)
        try write("hello world!", to: fd, fileSystem)
        let full = Array("hello world!".utf8)
        // Name dropped or kept; data kept, dropped, zero-filled (size without data) or torn (half of it).
        #expect(outcomes(fileSystem, ["/d/f"]) == [
            [nil], [full], [[]], [[UInt8](repeating: 0, count: 12)], [Array("hello ".utf8)],
        ])

        try fileSystem.fsync(fd)
        #expect(outcomes(fileSystem, ["/d/f"]) == [[nil], [full]], "fsync of the file does not persist its name")

        try syncDirectory("/d", fileSystem)
        #expect(outcomes(fileSystem, ["/d/f"]) == [[full]])

        try fileSystem.unlink("/d/f")
        #expect(outcomes(fileSystem, ["/d/f"]) == [[nil], [full]], "an unsynced unlink may be undone")
        try syncDirectory("/d", fileSystem)
        #expect(outcomes(fileSystem, ["/d/f"]) == [[nil]])
        try fileSystem.close(fd)
    }

    @Test("a directory's unsynced changes persist as a prefix; directories are independent of each other")
    func prefixesPerDirectory() throws {
        let fileSystem = CrashFS(image: .with(directories: ["/d", "/e"]))
        for path in ["/d/a", "/d/b", "/e/c"] {
            let fd = try fileSystem.open(path, flags: O_CREAT | O_EXCL | O_WRONLY, mode: 0o644)
            try fileSystem.fsync(fd)
            try fileSystem.close(fd)
        }
        let present = outcomes(fileSystem, ["/d/a", "/d/b", "/e/c"]).map { $0.map { $0 != nil } }
        // b never without a (created after it in the same directory); c with or without either.
        #expect(Set(present) == [
            [false, false, false], [true, false, false], [true, true, false],
            [false, false, true], [true, false, true], [true, true, true],
        ])
    }

    @Test("a rename between directories is atomic: the file is in one place or the other, never both or neither")
    func atomicRename() throws {
        let fileSystem = CrashFS(image: .with(directories: ["/d", "/e"]))
        let fd = try fileSystem.open("/d/f", flags: O_CREAT | O_EXCL | O_WRONLY, mode: 0o644)
        try write("x", to: fd, fileSystem)
        try fileSystem.fsync(fd)
        try fileSystem.close(fd)
        try syncDirectory("/d", fileSystem)
        try fileSystem.rename("/d/f", "/e/f")
        let present = outcomes(fileSystem, ["/d/f", "/e/f"]).map { $0.map { $0 != nil } }
        #expect(Set(present) == [[true, false], [false, true]])
        try syncDirectory("/e", fileSystem)
        #expect(Set(outcomes(fileSystem, ["/d/f", "/e/f"]).map { $0.map { $0 != nil } }) == [[false, true]])
    }

    @Test("an ignored fsync reports success and makes nothing durable")
    func ignoredFsync() throws {
        let fileSystem = CrashFS(image: .with(directories: ["/d"]))
        fileSystem.ignoreFsync { $0 == "/d" }
        let fd = try fileSystem.open("/d/f", flags: O_CREAT | O_EXCL | O_WRONLY, mode: 0o644)
        try fileSystem.fsync(fd)
        try fileSystem.close(fd)
        try syncDirectory("/d", fileSystem)
        #expect(outcomes(fileSystem, ["/d/f"]) == [[nil], [[]]])
    }

    @Test("a killed process changes nothing more; after the restart locks are free, the pid differs, the cache stays")
    func killAndRestart() throws {
        let fileSystem = CrashFS(image: .with(directories: ["/d"]))
        let lock = try fileSystem.open("/d/.lock", flags: O_CREAT | O_RDWR, mode: 0o644)
        try fileSystem.flock(lock, operation: LOCK_EX | LOCK_NB)
        let pid = fileSystem.processID()
        fileSystem.killAfter(effects: 1)
        try fileSystem.mkdir("/d/x", mode: 0o755)
        #expect(fileSystem.isDead)
        #expect(throws: SpoolErrno(EIO)) { try fileSystem.mkdir("/d/y", mode: 0o755) }
        #expect(throws: SpoolErrno(EIO)) { try fileSystem.readDirectory("/d") }

        fileSystem.restart()
        #expect(fileSystem.processID() != pid)
        #expect(Set(try fileSystem.readDirectory("/d")) == [".lock", "x"])
        let again = try fileSystem.open("/d/.lock", flags: O_RDWR, mode: 0)
        try fileSystem.flock(again, operation: LOCK_EX | LOCK_NB)
        #expect(throws: SpoolErrno(EBADF)) { try fileSystem.close(lock) }
        // Still unsynced: a power loss now may lose x, which the dead process made.
        #expect(outcomes(fileSystem, ["/d/x"]).contains([nil]))
    }

    @Test("a full disk fails writes with ENOSPC, counted in 4 KiB blocks; unlinking frees them")
    func capacity() throws {
        let fileSystem = CrashFS(image: .with(directories: ["/d"]))
        fileSystem.limitCapacity(to: 8192)
        #expect(try fileSystem.availableBytes("/d") == 8192)
        let block = [UInt8](repeating: 1, count: 4096)
        for name in ["a", "b"] {
            let fd = try fileSystem.open("/d/" + name, flags: O_CREAT | O_EXCL | O_WRONLY, mode: 0o644)
            _ = try block.withUnsafeBytes { buffer in try fileSystem.write(fd, buffer) }
            try fileSystem.close(fd)
        }
        #expect(try fileSystem.availableBytes("/d") == 0)
        let fd = try fileSystem.open("/d/c", flags: O_CREAT | O_EXCL | O_WRONLY, mode: 0o644)
        #expect(throws: SpoolErrno(ENOSPC)) {
            _ = try [UInt8(1)].withUnsafeBytes { buffer in try fileSystem.write(fd, buffer) }
        }
        try fileSystem.unlink("/d/a")
        _ = try [UInt8(1)].withUnsafeBytes { buffer in try fileSystem.write(fd, buffer) }
        try fileSystem.close(fd)
    }
}
