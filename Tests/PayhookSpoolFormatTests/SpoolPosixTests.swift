import Foundation
import PayhookSpoolFormat
import Testing

/// The POSIX layer both sides use: raw names, regular files only, no link followed, nothing replaced.
@Suite("SpoolPosix and SpoolQuarantine")
struct SpoolPosixTests {
    @Test("a name that is not UTF-8 is listed, statted and removed as its bytes")
    func rawNames() throws {
        let scratch = try Scratch()
        let name = SpoolName(bytes: Array("left".utf8) + [0xff, 0x2e, 0x74])
        let fd = try SpoolPosix.open(SpoolPath(scratch.path, name), flags: O_CREAT | O_EXCL | O_WRONLY, mode: 0o644)
        SpoolPosix.close(fd)
        let entries = try SpoolPosix.readDirectory(scratch.path)
        #expect(entries.map(\.name) == [name])
        #expect(name.string == nil)
        #expect(name.description == "left\\xff.t")
        #expect(try SpoolPosix.status(SpoolPath(scratch.path, name))?.kind == .regular)
        // The String-based seam leaves it out rather than hand back another name.
        #expect(try PosixFileSystem().readDirectory(scratch.path) == [])
        try SpoolPosix.unlink(SpoolPath(scratch.path, name))
        #expect(try SpoolPosix.readDirectory(scratch.path).isEmpty)
    }

    @Test("only a regular file within the limit is read; a link is not followed and a FIFO does not block")
    func readRegular() throws {
        let scratch = try Scratch()
        try scratch.write("event", Array("{}".utf8))
        #expect(try SpoolPosix.readRegular(scratch.file("event"), limit: 16) == .bytes(Array("{}".utf8)))
        #expect(try SpoolPosix.readRegular(scratch.file("event"), limit: 1)
            == .refused("it is 2 bytes, more than the 1 bytes a spool file may have"))
        #expect(symlink(scratch.file("event"), scratch.file("link")) == 0)
        #expect(try SpoolPosix.readRegular(scratch.file("link"), limit: 16) == .refused("it is a symbolic link, not a regular file"))
        #expect(mkfifo(scratch.file("fifo"), 0o644) == 0)
        #expect(try SpoolPosix.readRegular(scratch.file("fifo"), limit: 16) == .refused("it is a named pipe (FIFO), not a regular file"))
        #expect(mkdir(scratch.file("folder"), 0o755) == 0)
        #expect(try SpoolPosix.readRegular(scratch.file("folder"), limit: 16) == .refused("it is a directory, not a regular file"))
        #expect(throws: SpoolErrno(ENOENT)) { _ = try SpoolPosix.readRegular(scratch.file("missing"), limit: 16) }
    }

    @Test("renameNoReplace never replaces, whatever is moved", arguments: [true, false])
    func renameNoReplace(real: Bool) throws {
        let scratch = try Scratch()
        let fileSystem: any SpoolFileSystem = real ? PosixFileSystem() : PlainFileSystem()
        try scratch.write("a", Array("a".utf8))
        try scratch.write("b", Array("b".utf8))
        #expect(throws: SpoolErrno(EEXIST)) { try fileSystem.renameNoReplace(scratch.file("a"), scratch.file("b")) }
        #expect(try scratch.read("b") == Array("b".utf8))
        #expect(mkdir(scratch.file("d"), 0o755) == 0)
        #expect(throws: SpoolErrno(EEXIST)) { try fileSystem.renameNoReplace(scratch.file("d"), scratch.file("b")) }
        try fileSystem.renameNoReplace(scratch.file("d"), scratch.file("e"))
        #expect(symlink("/dev/zero", scratch.file("link")) == 0)
        try fileSystem.renameNoReplace(scratch.file("link"), scratch.file("moved"))
        #expect(try SpoolPosix.lstat(scratch.file("moved")).kind == .symbolicLink)
        #expect(throws: SpoolErrno(ENOENT)) { try fileSystem.renameNoReplace(scratch.file("gone"), scratch.file("x")) }
        #expect(scratch.names("") == ["a", "b", "e", "moved"])
    }

    @Test("quarantine keeps what corrupt/ holds, moves entries as they are, and says when the entry was gone")
    func quarantine() throws {
        let scratch = try Scratch()
        for folder in ["new", "corrupt"] { #expect(mkdir(scratch.file(folder), 0o755) == 0) }
        try scratch.write("corrupt/x.json", Array("earlier".utf8))
        try scratch.write("new/x.json", Array("later".utf8))
        #expect(mkfifo(scratch.file("new/f.json"), 0o644) == 0)
        var counter = 0
        func suffix() -> String {
            counter += 1
            return "s\(counter)"
        }
        let system = PosixFileSystem()
        #expect(try SpoolQuarantine.move("new/x.json", root: scratch.path, fileSystem: system, uniqueSuffix: suffix) == "corrupt/x.json.s1")
        #expect(try SpoolQuarantine.move("new/f.json", root: scratch.path, fileSystem: system, uniqueSuffix: suffix) == "corrupt/f.json")
        #expect(try SpoolQuarantine.move("new/x.json", root: scratch.path, fileSystem: system, uniqueSuffix: suffix) == nil)
        #expect(try scratch.read("corrupt/x.json") == Array("earlier".utf8))
        #expect(try scratch.read("corrupt/x.json.s1") == Array("later".utf8))
        #expect(try SpoolPosix.lstat(scratch.file("corrupt/f.json")).kind == .fifo)
        #expect(scratch.names("new").isEmpty)
        // A missing corrupt/ is an error, not "gone".
        try FileManager.default.removeItem(atPath: scratch.file("corrupt"))
        try scratch.write("new/y.json", [])
        #expect(throws: SpoolQuarantine.Failure.self) {
            _ = try SpoolQuarantine.move("new/y.json", root: scratch.path, fileSystem: system, uniqueSuffix: suffix)
        }
    }
}

/// A file system with only the protocol's required calls, so that its default `renameNoReplace` is used.
struct PlainFileSystem: SpoolFileSystem {
    let real = PosixFileSystem()
    func open(_ path: String, flags: CInt, mode: mode_t) throws(SpoolErrno) -> CInt { try real.open(path, flags: flags, mode: mode) }
    func write(_ fd: CInt, _ bytes: UnsafeRawBufferPointer) throws(SpoolErrno) -> Int { try real.write(fd, bytes) }
    func fsync(_ fd: CInt) throws(SpoolErrno) { try real.fsync(fd) }
    func truncate(_ fd: CInt, length: Int64) throws(SpoolErrno) { try real.truncate(fd, length: length) }
    func close(_ fd: CInt) throws(SpoolErrno) { try real.close(fd) }
    func flock(_ fd: CInt, operation: CInt) throws(SpoolErrno) { try real.flock(fd, operation: operation) }
    func link(_ existing: String, _ newPath: String) throws(SpoolErrno) { try real.link(existing, newPath) }
    func rename(_ oldPath: String, _ newPath: String) throws(SpoolErrno) { try real.rename(oldPath, newPath) }
    func unlink(_ path: String) throws(SpoolErrno) { try real.unlink(path) }
    func mkdir(_ path: String, mode: mode_t) throws(SpoolErrno) { try real.mkdir(path, mode: mode) }
    func readDirectory(_ path: String) throws(SpoolErrno) -> [String] { try real.readDirectory(path) }
    func readFile(_ path: String) throws(SpoolErrno) -> [UInt8] { try real.readFile(path) }
    func stat(_ path: String) throws(SpoolErrno) -> SpoolFileStatus { try real.stat(path) }
    func processID() -> CInt { real.processID() }
    func currentTimeMicroseconds() -> UInt64 { real.currentTimeMicroseconds() }
}
