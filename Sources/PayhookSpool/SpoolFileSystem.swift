import CPayhookShim
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What `lstat(2)` says about a path, as far as the spool needs it.
public struct SpoolFileStatus: Sendable, Equatable {
    /// The file type.
    public enum Kind: Sendable, Equatable {
        case regular, directory, symbolicLink, other
    }

    /// `st_dev`: hard links only work within one device.
    public var device: UInt64
    /// `st_ino`: a record and its ledger entry share it.
    public var inode: UInt64
    /// `st_nlink`: 2 while a record is in new/ or cur/ and in ids/, 1 once the consumer deleted it.
    public var linkCount: UInt64
    /// `st_size` in bytes.
    public var size: Int64
    /// The file type (`lstat`: a symbolic link is reported as such, not followed).
    public var kind: Kind

    /// Creates a status, e.g. in a ``SpoolFileSystem`` that replays a crash state.
    public init(device: UInt64, inode: UInt64, linkCount: UInt64, size: Int64, kind: Kind) {
        self.device = device
        self.inode = inode
        self.linkCount = linkCount
        self.size = size
        self.kind = kind
    }
}

/// Every file-system call a ``Spool`` makes goes through this protocol, so that tests can inject faults
/// (ENOSPC, EIO on write or fsync, EMFILE, …) and replay crash states. ``PosixFileSystem`` is the real one.
///
/// Each call either succeeds or throws the `errno` it failed with. Paths are absolute or relative to the
/// working directory, exactly as given. Implementations must be safe to call from many threads at once.
public protocol SpoolFileSystem: Sendable {
    /// `open(2)`. Returns the file descriptor. Implementations add `O_CLOEXEC`.
    func open(_ path: String, flags: CInt, mode: mode_t) throws(SpoolErrno) -> CInt
    /// `write(2)`: writes a prefix of `bytes` and returns how many bytes that was (a short write is not an error).
    func write(_ fd: CInt, _ bytes: UnsafeRawBufferPointer) throws(SpoolErrno) -> Int
    /// `fsync(2)`. A failure must never be "retried" on the same descriptor (see ``Spool``).
    func fsync(_ fd: CInt) throws(SpoolErrno)
    /// `ftruncate(2)`.
    func truncate(_ fd: CInt, length: Int64) throws(SpoolErrno)
    /// `close(2)`. The descriptor is released even when this throws.
    func close(_ fd: CInt) throws(SpoolErrno)
    /// `flock(2)` with `LOCK_EX`, `LOCK_NB`, `LOCK_UN`, …
    func flock(_ fd: CInt, operation: CInt) throws(SpoolErrno)
    /// `link(2)`: a second name for `existing`; fails with `EEXIST` rather than replacing `newPath`.
    func link(_ existing: String, _ newPath: String) throws(SpoolErrno)
    /// `open(2)` with `O_TMPFILE`: a new, empty regular file without a name, on the file system of the
    /// directory `path`, open for writing (reliability.md §1). It gets a name only through
    /// ``link(descriptor:_:)``, so a crash before that leaves nothing behind. Throws where there is no such thing
    /// (`EOPNOTSUPP`; `EISDIR` from a kernel that predates it); the spool tries once when it opens and then
    /// writes named files in tmp/ instead. The default implementation throws `EOPNOTSUPP`.
    func openUnnamed(inDirectory path: String, mode: mode_t) throws(SpoolErrno) -> CInt
    /// Gives the file open as `fd` (from ``openUnnamed(inDirectory:mode:)``) the name `newPath`; fails with
    /// `EEXIST` rather than replacing it. Callable again for a second name. The default implementation throws
    /// `EOPNOTSUPP`.
    func link(descriptor fd: CInt, _ newPath: String) throws(SpoolErrno)
    /// `rename(2)`: replaces `newPath` if it exists.
    func rename(_ oldPath: String, _ newPath: String) throws(SpoolErrno)
    /// `unlink(2)`.
    func unlink(_ path: String) throws(SpoolErrno)
    /// `mkdir(2)`.
    func mkdir(_ path: String, mode: mode_t) throws(SpoolErrno)
    /// The names in a directory (`opendir(3)`/`readdir(3)`), without "." and "..", in no particular order.
    func readDirectory(_ path: String) throws(SpoolErrno) -> [String]
    /// The whole contents of a regular file.
    func readFile(_ path: String) throws(SpoolErrno) -> [UInt8]
    /// `lstat(2)`; throws `ENOENT` when nothing is there.
    func stat(_ path: String) throws(SpoolErrno) -> SpoolFileStatus
    /// `getpid(2)`.
    func processID() -> CInt
    /// The wall clock in microseconds since the epoch (`clock_gettime(CLOCK_REALTIME)`), used in unique names.
    func currentTimeMicroseconds() -> UInt64
    /// `statvfs(3)`: the bytes an unprivileged writer may still use on the file system holding `path`
    /// (`f_bavail × f_frsize`). Only called when the spool has a free-space minimum. The default implementation
    /// throws `ENOSYS`, which switches the guard off; ``PosixFileSystem`` implements it.
    func availableBytes(_ path: String) throws(SpoolErrno) -> UInt64
    /// `faccessat(2)` with `AT_EACCESS`: succeeds when this process (by its effective ids) may access `path` as
    /// `mode` asks (`W_OK | X_OK` for creating names in a directory), throws `EACCES`, `EROFS`, `EPERM`, …
    /// otherwise. The spool asks only where it cannot try an unnamed file (``openUnnamed(inDirectory:mode:)``).
    /// The default implementation throws `ENOSYS`, which the spool takes as "cannot tell" and does not refuse.
    func access(_ path: String, mode: CInt) throws(SpoolErrno)
}

extension SpoolFileSystem {
    /// Not supported: throws `EOPNOTSUPP`, so the spool names its files in tmp/.
    public func openUnnamed(inDirectory path: String, mode: mode_t) throws(SpoolErrno) -> CInt {
        throw SpoolErrno(EOPNOTSUPP)
    }

    /// Not supported: throws `EOPNOTSUPP`.
    public func link(descriptor fd: CInt, _ newPath: String) throws(SpoolErrno) {
        throw SpoolErrno(EOPNOTSUPP)
    }

    /// Not supported: throws `ENOSYS`, so a free-space guard cannot refuse anything on this file system.
    public func availableBytes(_ path: String) throws(SpoolErrno) -> UInt64 {
        throw SpoolErrno(ENOSYS)
    }

    /// Not supported: throws `ENOSYS`, so the spool's writability check relies on unnamed files alone.
    public func access(_ path: String, mode: CInt) throws(SpoolErrno) {
        throw SpoolErrno(ENOSYS)
    }
}

/// The real ``SpoolFileSystem``: the C library's calls, retried on `EINTR`, with `O_CLOEXEC` on every
/// descriptor so that a child process never inherits a spool file or the lock.
public struct PosixFileSystem: SpoolFileSystem {
    /// The real file system.
    public init() {}

    public func open(_ path: String, flags: CInt, mode: mode_t) throws(SpoolErrno) -> CInt {
        try retryingOnInterrupt { systemOpen(path, flags | O_CLOEXEC, mode) }
    }

    public func write(_ fd: CInt, _ bytes: UnsafeRawBufferPointer) throws(SpoolErrno) -> Int {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return 0 }
        while true {
            let written = systemWrite(fd, base, bytes.count)
            if written >= 0 { return written }
            let error = errno
            if error != EINTR { throw SpoolErrno(error) }
        }
    }

    public func fsync(_ fd: CInt) throws(SpoolErrno) {
        // Retrying fsync after EINTR is not retrying after a failure: the call was interrupted before it
        // reported anything, so no error state has been consumed yet.
        _ = try retryingOnInterrupt { systemFsync(fd) }
    }

    public func truncate(_ fd: CInt, length: Int64) throws(SpoolErrno) {
        _ = try retryingOnInterrupt { systemFtruncate(fd, off_t(length)) }
    }

    public func close(_ fd: CInt) throws(SpoolErrno) {
        // Never retry close: on Linux the descriptor is released even when close returns EINTR, and a retry
        // could close a descriptor another thread has just been given (close(2), "Dealing with error returns").
        // EINTR therefore counts as success; the spool has already checked fsync before closing.
        if systemClose(fd) != 0 {
            let error = errno
            if error != EINTR { throw SpoolErrno(error) }
        }
    }

    public func flock(_ fd: CInt, operation: CInt) throws(SpoolErrno) {
        _ = try retryingOnInterrupt { systemFlock(fd, operation) }
    }

    public func link(_ existing: String, _ newPath: String) throws(SpoolErrno) {
        _ = try retryingOnInterrupt { systemLink(existing, newPath) }
    }

    public func rename(_ oldPath: String, _ newPath: String) throws(SpoolErrno) {
        _ = try retryingOnInterrupt { systemRename(oldPath, newPath) }
    }

    public func openUnnamed(inDirectory path: String, mode: mode_t) throws(SpoolErrno) -> CInt {
        try retryingOnInterrupt { systemOpen(path, Self.temporaryFileFlag | O_WRONLY | O_CLOEXEC, mode) }
    }

    public func link(descriptor fd: CInt, _ newPath: String) throws(SpoolErrno) {
        // open(2)'s O_TMPFILE example: linkat(fd, "", ..., AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH; without it,
        // where proc(5) is mounted, the file is linked through /proc/self/fd/N with AT_SYMLINK_FOLLOW instead
        // (reliability.md §1; swift-nio's fallback does the same).
        let source = "/proc/self/fd/\(fd)"
        _ = try retryingOnInterrupt { linkat(AT_FDCWD, source, AT_FDCWD, newPath, AT_SYMLINK_FOLLOW) }
    }

    /// `O_TMPFILE` (with the `O_DIRECTORY` bit open(2) requires), from the C headers through `CPayhookShim`.
    public static let temporaryFileFlag: CInt = payhook_o_tmpfile()

    public func unlink(_ path: String) throws(SpoolErrno) {
        _ = try retryingOnInterrupt { systemUnlink(path) }
    }

    public func mkdir(_ path: String, mode: mode_t) throws(SpoolErrno) {
        _ = try retryingOnInterrupt { systemMkdir(path, mode) }
    }

    public func readDirectory(_ path: String) throws(SpoolErrno) -> [String] {
        // glibc's opendir opens the directory with O_CLOEXEC.
        guard let directory = opendir(path) else { throw SpoolErrno(errno) }
        defer { closedir(directory) }
        var names: [String] = []
        while true {
            // readdir returns NULL both at the end and on error; only errno tells them apart.
            errno = 0
            guard let entry = readdir(directory) else {
                let error = errno
                if error != 0 { throw SpoolErrno(error) }
                return names
            }
            let name: String? = withUnsafePointer(to: entry.pointee.d_name) { tuple in
                UnsafeRawPointer(tuple).withMemoryRebound(
                    to: CChar.self,
                    capacity: MemoryLayout.size(ofValue: entry.pointee.d_name)
                ) { String(validatingCString: $0) }
            }
            // A name that is not valid UTF-8 could not be passed back to the other calls unchanged, so it is
            // left out rather than mangled.
            guard let name, name != ".", name != ".." else { continue }
            names.append(name)
        }
    }

    public func readFile(_ path: String) throws(SpoolErrno) -> [UInt8] {
        let fd = try open(path, flags: O_RDONLY | O_NOFOLLOW, mode: 0)
        defer { _ = systemClose(fd) }
        var contents: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let (count, error) = chunk.withUnsafeMutableBytes { buffer -> (Int, CInt) in
                let count = systemRead(fd, buffer.baseAddress, buffer.count)
                return (count, count < 0 ? errno : 0)
            }
            if count > 0 {
                contents.append(contentsOf: chunk[0..<count])
            } else if count == 0 {
                return contents
            } else if error != EINTR {
                throw SpoolErrno(error)
            }
        }
    }

    public func stat(_ path: String) throws(SpoolErrno) -> SpoolFileStatus {
        var status = systemStatBuffer()
        _ = try retryingOnInterrupt { systemLstat(path, &status) }
        let kind: SpoolFileStatus.Kind
        switch status.st_mode & S_IFMT {
        case S_IFREG: kind = .regular
        case S_IFDIR: kind = .directory
        case S_IFLNK: kind = .symbolicLink
        default: kind = .other
        }
        return SpoolFileStatus(
            device: UInt64(status.st_dev),
            inode: UInt64(status.st_ino),
            linkCount: UInt64(status.st_nlink),
            size: Int64(status.st_size),
            kind: kind
        )
    }

    public func processID() -> CInt {
        getpid()
    }

    public func availableBytes(_ path: String) throws(SpoolErrno) -> UInt64 {
        var status = statvfs()
        _ = try retryingOnInterrupt { systemStatvfs(path, &status) }
        return UInt64(status.f_bavail) * UInt64(status.f_frsize)
    }

    public func access(_ path: String, mode: CInt) throws(SpoolErrno) {
        // AT_EACCESS: judged by the effective ids, which are the ones open(2) and link(2) use (faccessat(2)).
        _ = try retryingOnInterrupt { faccessat(AT_FDCWD, path, mode, AT_EACCESS) }
    }

    public func currentTimeMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return UInt64(max(0, now.tv_sec)) * 1_000_000 + UInt64(max(0, now.tv_nsec) / 1000)
    }
}

/// Runs a call that returns -1 and sets errno on failure, again while it fails with EINTR.
private func retryingOnInterrupt(_ call: () -> CInt) throws(SpoolErrno) -> CInt {
    while true {
        let result = call()
        if result >= 0 { return result }
        let error = errno
        if error != EINTR { throw SpoolErrno(error) }
    }
}

// The C functions under names that the methods of the same name above cannot shadow.
private func systemOpen(_ path: String, _ flags: CInt, _ mode: mode_t) -> CInt { open(path, flags, mode) }
private func systemWrite(_ fd: CInt, _ buffer: UnsafeRawPointer, _ count: Int) -> Int { write(fd, buffer, count) }
private func systemRead(_ fd: CInt, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int { read(fd, buffer, count) }
private func systemFsync(_ fd: CInt) -> CInt { fsync(fd) }
private func systemFtruncate(_ fd: CInt, _ length: off_t) -> CInt { ftruncate(fd, length) }
private func systemClose(_ fd: CInt) -> CInt { close(fd) }
private func systemFlock(_ fd: CInt, _ operation: CInt) -> CInt { flock(fd, operation) }
private func systemLink(_ existing: String, _ newPath: String) -> CInt { link(existing, newPath) }
private func systemRename(_ oldPath: String, _ newPath: String) -> CInt { rename(oldPath, newPath) }
private func systemUnlink(_ path: String) -> CInt { unlink(path) }
private func systemMkdir(_ path: String, _ mode: mode_t) -> CInt { mkdir(path, mode) }
private func systemStatBuffer() -> stat { stat() }
private func systemLstat(_ path: String, _ status: inout stat) -> CInt { lstat(path, &status) }
private func systemStatvfs(_ path: String, _ status: inout statvfs) -> CInt { statvfs(path, &status) }
