import CPayhookShim
public import Glibc

/// What `lstat(2)` says about a path, as far as the spool's readers and writers need it.
public struct SpoolFileStatus: Sendable, Equatable {
    /// The file type.
    public enum Kind: Sendable, Equatable {
        case regular, directory, symbolicLink, fifo, socket, device, other

        /// "a symbolic link", "a named pipe (FIFO)", …: what a spool file was instead of a regular file.
        public var article: String {
            switch self {
            case .regular: "a regular file"
            case .directory: "a directory"
            case .symbolicLink: "a symbolic link"
            case .fifo: "a named pipe (FIFO)"
            case .socket: "a socket"
            case .device: "a device"
            case .other: "a special file"
            }
        }

        /// "it is a symbolic link, not a regular file": why such an entry is not read as a spool file.
        public var notRegular: String {
            "it is \(article), not a regular file"
        }
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
    /// `st_mtim`, the last data modification. For an event file this is when the server wrote it; its ids/ link
    /// shares it.
    public var modified: SpoolTimestamp
    /// `st_ctim`, the last status change. rename(2) sets it on Linux file systems, so for a file in cur/ it is no
    /// earlier than the moment it was taken.
    public var changed: SpoolTimestamp

    /// Creates a status, e.g. in a ``SpoolFileSystem`` that replays a crash state.
    public init(
        device: UInt64, inode: UInt64, linkCount: UInt64, size: Int64, kind: Kind,
        modified: SpoolTimestamp = SpoolTimestamp(), changed: SpoolTimestamp = SpoolTimestamp()
    ) {
        self.device = device
        self.inode = inode
        self.linkCount = linkCount
        self.size = size
        self.kind = kind
        self.modified = modified
        self.changed = changed
    }

    /// Why an entry with this status is not read as a spool file (as "it is …"), or nil when it may be: it must be
    /// a regular file of at most `limit` bytes. The one test the server's recovery and the queue tools apply
    /// before reading an event file (docs/consumers.md, section 3).
    public func refusal(limit: Int64 = SpoolFormat.maximumFileSize) -> String? {
        guard kind == .regular else { return kind.notRegular }
        guard size <= limit else { return "it is \(size) bytes, more than the \(limit) bytes a spool file may have" }
        return nil
    }
}

/// A file time: seconds and nanoseconds since the epoch.
public struct SpoolTimestamp: Sendable, Equatable, Comparable {
    public var seconds: Int64
    public var nanoseconds: Int64

    public init(seconds: Int64 = 0, nanoseconds: Int64 = 0) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    /// Seconds since the epoch, for `Date(timeIntervalSince1970:)`.
    public var secondsSince1970: Double {
        Double(seconds) + Double(nanoseconds) / 1_000_000_000
    }

    public static func < (lhs: SpoolTimestamp, rhs: SpoolTimestamp) -> Bool {
        (lhs.seconds, lhs.nanoseconds) < (rhs.seconds, rhs.nanoseconds)
    }
}

/// Every file-system call the spool's writer makes goes through this protocol, so that tests can inject faults
/// (ENOSPC, EIO on write or fsync, EMFILE, …) and replay crash states. ``PosixFileSystem`` is the real one. The
/// steps the server and the queue tools share (``SpoolQuarantine``) go through it too.
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
    /// directory `path`, open for writing (docs/durability.md). It gets a name only through
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
    /// Moves the entry `oldPath` to `newPath`, failing with `EEXIST` rather than replacing anything there
    /// (``SpoolPosix/renameNoReplace(_:_:)``). The default implementation checks with ``stat(_:)`` and then calls
    /// ``rename(_:_:)``, which is enough for a file system in a test; ``PosixFileSystem`` does it atomically.
    func renameNoReplace(_ oldPath: String, _ newPath: String) throws(SpoolErrno)
    /// `unlink(2)`.
    func unlink(_ path: String) throws(SpoolErrno)
    /// `mkdir(2)`.
    func mkdir(_ path: String, mode: mode_t) throws(SpoolErrno)
    /// The names in a directory (`opendir(3)`/`readdir(3)`), without "." and "..", in no particular order. Names
    /// that are not UTF-8 are left out: they could not be passed back to the other calls unchanged.
    func readDirectory(_ path: String) throws(SpoolErrno) -> [String]
    /// The whole contents of a regular file, opened without following a symbolic link.
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
    /// lstat(2) then rename(2): EEXIST when something is at `newPath`. Not atomic; see
    /// ``PosixFileSystem/renameNoReplace(_:_:)`` for the real one.
    public func renameNoReplace(_ oldPath: String, _ newPath: String) throws(SpoolErrno) {
        do throws(SpoolErrno) {
            _ = try stat(newPath)
            throw SpoolErrno(EEXIST)
        } catch where error.rawValue == ENOENT {
            try rename(oldPath, newPath)
        }
    }

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

/// The real ``SpoolFileSystem``: the C library's calls through ``SpoolPosix``, retried on `EINTR`, with
/// `O_CLOEXEC` on every descriptor so that a child process never inherits a spool file or the lock.
public struct PosixFileSystem: SpoolFileSystem {
    /// The real file system.
    public init() {}

    public func open(_ path: String, flags: CInt, mode: mode_t) throws(SpoolErrno) -> CInt {
        try SpoolPosix.open(path, flags: flags, mode: mode)
    }

    public func write(_ fd: CInt, _ bytes: UnsafeRawBufferPointer) throws(SpoolErrno) -> Int {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return 0 }
        while true {
            let written = Glibc.write(fd, base, bytes.count)
            if written >= 0 { return written }
            let error = errno
            if error != EINTR { throw SpoolErrno(error) }
        }
    }

    public func fsync(_ fd: CInt) throws(SpoolErrno) {
        try SpoolPosix.fsync(fd)
    }

    public func truncate(_ fd: CInt, length: Int64) throws(SpoolErrno) {
        try SpoolPosix.retrying { ftruncate(fd, off_t(length)) }
    }

    public func close(_ fd: CInt) throws(SpoolErrno) {
        // The spool has already checked fsync before closing; see SpoolPosix.closeChecked for EINTR.
        try SpoolPosix.closeChecked(fd)
    }

    public func flock(_ fd: CInt, operation: CInt) throws(SpoolErrno) {
        try SpoolPosix.retrying { systemFlock(fd, operation) }
    }

    public func link(_ existing: String, _ newPath: String) throws(SpoolErrno) {
        try SpoolPosix.link(existing, newPath)
    }

    public func rename(_ oldPath: String, _ newPath: String) throws(SpoolErrno) {
        try SpoolPosix.rename(oldPath, newPath)
    }

    public func renameNoReplace(_ oldPath: String, _ newPath: String) throws(SpoolErrno) {
        try SpoolPosix.renameNoReplace(oldPath, newPath)
    }

    public func openUnnamed(inDirectory path: String, mode: mode_t) throws(SpoolErrno) -> CInt {
        try SpoolPosix.open(path, flags: Self.temporaryFileFlag | O_WRONLY, mode: mode)
    }

    public func link(descriptor fd: CInt, _ newPath: String) throws(SpoolErrno) {
        // open(2)'s O_TMPFILE example: linkat(fd, "", ..., AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH; without it,
        // where proc(5) is mounted, the file is linked through /proc/self/fd/N with AT_SYMLINK_FOLLOW instead
        // (docs/durability.md; swift-nio's fallback does the same).
        let source = "/proc/self/fd/\(fd)"
        try SpoolPosix.retrying { linkat(AT_FDCWD, source, AT_FDCWD, newPath, AT_SYMLINK_FOLLOW) }
    }

    /// `O_TMPFILE` (with the `O_DIRECTORY` bit open(2) requires), from the C headers through `CPayhookShim`.
    public static let temporaryFileFlag: CInt = payhook_o_tmpfile()

    public func unlink(_ path: String) throws(SpoolErrno) {
        try SpoolPosix.unlink(path)
    }

    public func mkdir(_ path: String, mode: mode_t) throws(SpoolErrno) {
        try SpoolPosix.retrying { Glibc.mkdir(path, mode) }
    }

    public func readDirectory(_ path: String) throws(SpoolErrno) -> [String] {
        try SpoolPosix.readDirectory(path).compactMap(\.name.string)
    }

    public func readFile(_ path: String) throws(SpoolErrno) -> [UInt8] {
        // O_NONBLOCK: should a FIFO have replaced the name since the caller's lstat, the open does not wait for a
        // writer (fifo(7)).
        let fd = try SpoolPosix.open(path, flags: O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY)
        defer { SpoolPosix.close(fd) }
        return try SpoolPosix.readAll(fd) ?? []
    }

    public func stat(_ path: String) throws(SpoolErrno) -> SpoolFileStatus {
        try SpoolPosix.lstat(path)
    }

    public func processID() -> CInt {
        getpid()
    }

    public func availableBytes(_ path: String) throws(SpoolErrno) -> UInt64 {
        var status = statvfs()
        try SpoolPosix.retrying { statvfs(path, &status) }
        return UInt64(status.f_bavail) * UInt64(status.f_frsize)
    }

    public func access(_ path: String, mode: CInt) throws(SpoolErrno) {
        // AT_EACCESS: judged by the effective ids, which are the ones open(2) and link(2) use (faccessat(2)).
        try SpoolPosix.retrying { faccessat(AT_FDCWD, path, mode, AT_EACCESS) }
    }

    public func currentTimeMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return UInt64(max(0, now.tv_sec)) * 1_000_000 + UInt64(max(0, now.tv_nsec) / 1000)
    }
}

// The C functions under names that the methods and types of the same name cannot shadow.
private func systemFlock(_ fd: CInt, _ operation: CInt) -> CInt { flock(fd, operation) }
