import Foundation
import Glibc

/// What lstat(2) says about a path, reduced to what the queue needs.
struct FileStatus: Sendable, Equatable {
    enum Kind: Sendable, Equatable {
        case regular, directory, symbolicLink, fifo, socket, device, other

        init(mode: mode_t) {
            switch mode & S_IFMT {
            case S_IFREG: self = .regular
            case S_IFDIR: self = .directory
            case S_IFLNK: self = .symbolicLink
            case S_IFIFO: self = .fifo
            case S_IFSOCK: self = .socket
            case S_IFCHR, S_IFBLK: self = .device
            default: self = .other
            }
        }

        /// "a symbolic link", "a named pipe (FIFO)", …: what a spool file was instead of a regular file.
        var article: String {
            switch self {
            case .regular: return "a regular file"
            case .directory: return "a directory"
            case .symbolicLink: return "a symbolic link"
            case .fifo: return "a named pipe (FIFO)"
            case .socket: return "a socket"
            case .device: return "a device"
            case .other: return "a special file"
            }
        }
    }
    var kind: Kind
    var inode: UInt64
    var links: UInt64
    var size: Int64
    /// Last data modification (st_mtime). For an event file this is when the server wrote it; ids/<id> shares it.
    var modified: Date
    /// Last status change (st_ctime). rename(2) sets it on Linux file systems, so for a file in cur/ it is no
    /// earlier than the moment it was taken.
    var changed: Date
}

/// One name from readdir(3) with its inode number.
struct DirectoryEntry: Sendable, Equatable {
    var name: String
    var inode: UInt64
}

/// Thin, checked wrappers over the system calls the queue uses. Every failure comes back as a `QueueError`
/// naming the path as the spool shows it; ENOENT is often expected (another consumer moved the file first)
/// and is reported by the callers' own `catch` of `Posix.Failure`.
enum Posix {
    /// A failed system call: its errno.
    struct Failure: Error, Sendable {
        let code: Int32
    }

    static func describe(_ code: Int32) -> String {
        String(cString: strerror(code))
    }

    private static func date(_ time: timespec) -> Date {
        Date(timeIntervalSince1970: Double(time.tv_sec) + Double(time.tv_nsec) / 1_000_000_000)
    }

    /// lstat(2); nil when nothing is there.
    static func status(_ path: String) throws(Failure) -> FileStatus? {
        var raw = stat()
        guard lstat(path, &raw) == 0 else {
            let code = errno
            if code == ENOENT || code == ENOTDIR { return nil }
            throw Failure(code: code)
        }
        return FileStatus(
            kind: FileStatus.Kind(mode: raw.st_mode),
            inode: UInt64(raw.st_ino),
            links: UInt64(raw.st_nlink),
            size: Int64(raw.st_size),
            modified: date(raw.st_mtim),
            changed: date(raw.st_ctim)
        )
    }

    /// stat(2), following symbolic links (for the spool directory itself, which may be a link).
    static func isDirectory(_ path: String) -> Bool {
        var raw = stat()
        return stat(path, &raw) == 0 && raw.st_mode & S_IFMT == S_IFDIR
    }

    /// The entries of a directory except "." and "..", unsorted.
    static func readDirectory(_ path: String) throws(Failure) -> [DirectoryEntry] {
        guard let handle = opendir(path) else { throw Failure(code: errno) }
        defer { closedir(handle) }
        var entries: [DirectoryEntry] = []
        while true {
            errno = 0
            guard let entry = readdir(handle) else {
                if errno != 0 { throw Failure(code: errno) }
                break
            }
            let name = withUnsafePointer(to: entry.pointee.d_name) { pointer in
                pointer.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name == "." || name == ".." { continue }
            entries.append(DirectoryEntry(name: name, inode: UInt64(entry.pointee.d_ino)))
        }
        return entries
    }

    /// What `openRegular` found at a path.
    enum Opened {
        /// A regular file of at most the limit, open for reading; the caller closes it.
        case file(fd: Int32, size: Int64)
        /// Something that must not be read as a spool file; why, as "it is …". Nothing was left open.
        case refused(String)
    }

    /// Opens a spool file for reading only if it is a regular file of at most `limit` bytes, without
    /// following a symbolic link and without blocking.
    ///
    /// lstat(2) first, so that a device, FIFO or socket is never opened at all; then open(2) with O_NOFOLLOW
    /// (a symbolic link put there since fails with ELOOP instead of being followed, open(2)) and O_NONBLOCK
    /// (a FIFO put there since does not block the open waiting for a writer, fifo(7)); then fstat(2) on the
    /// descriptor, which is what is read, so a name swapped between the calls cannot slip through.
    /// ENOENT (the file left meanwhile) is thrown, as by the other calls.
    static func openRegular(_ path: String, limit: Int64) throws(Failure) -> Opened {
        guard let status = try status(path) else { throw Failure(code: ENOENT) }
        guard status.kind == .regular else { return .refused("it is \(status.kind.article), not a regular file") }
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else {
            let code = errno
            if code == ELOOP { return .refused("it is \(FileStatus.Kind.symbolicLink.article), not a regular file") }
            throw Failure(code: code)
        }
        var raw = stat()
        guard fstat(fd, &raw) == 0 else {
            let code = errno
            close(fd)
            throw Failure(code: code)
        }
        let kind = FileStatus.Kind(mode: raw.st_mode)
        guard kind == .regular else {
            close(fd)
            return .refused("it is \(kind.article), not a regular file")
        }
        guard Int64(raw.st_size) <= limit else {
            close(fd)
            return .refused(tooLarge(Int64(raw.st_size), limit))
        }
        return .file(fd: fd, size: Int64(raw.st_size))
    }

    private static func tooLarge(_ size: Int64, _ limit: Int64) -> String {
        "it is \(size) bytes, more than the \(limit) bytes a spool file may have"
    }

    /// What `readRegular` found at a path.
    enum Content {
        /// The whole file.
        case bytes([UInt8])
        /// Not read; why, as "it is …".
        case refused(String)
    }

    /// Reads a whole spool file through `openRegular`: a regular file of at most `limit` bytes, never more
    /// than `limit` bytes read (a file that grew past it since the fstat is refused as well).
    static func readRegular(_ path: String, limit: Int64) throws(Failure) -> Content {
        let fd: Int32
        let size: Int64
        switch try openRegular(path, limit: limit) {
        case .refused(let reason): return .refused(reason)
        case .file(let opened, let length):
            fd = opened
            size = length
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(size))
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            // One byte past the limit is enough to tell that the file is too large.
            let wanted = min(buffer.count, Int(limit) + 1 - bytes.count)
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, wanted) }
            if count < 0 {
                if errno == EINTR { continue }
                throw Failure(code: errno)
            }
            if count == 0 { break }
            bytes.append(contentsOf: buffer[0..<count])
            if bytes.count > Int(limit) { return .refused("it grew past \(limit) bytes while being read") }
        }
        return .bytes(bytes)
    }

    /// The file of a descriptor opened by `openRegular` made blocking again, for a reader that does not
    /// expect O_NONBLOCK (a consumer's command reading it as stdin).
    static func clearNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
    }

    /// Writes `bytes` to `path` so that a reader sees either the old file or the complete new one: a hidden
    /// temporary name in the same folder, fsync, then rename(2) over the target ("If newpath already exists,
    /// it will be atomically replaced", rename(2)).
    static func writeFileAtomically(_ bytes: [UInt8], to path: String, temporary: String) throws(Failure) {
        let fd = open(temporary, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Failure(code: errno) }
        var failure: Int32?
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(fd, buffer.baseAddress.map { $0 + offset }, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    return
                }
                if written == 0 {
                    failure = EIO
                    return
                }
                offset += written
            }
        }
        if failure == nil, fsync(fd) != 0 { failure = errno }
        if close(fd) != 0, failure == nil { failure = errno }
        if failure == nil, Glibc.rename(temporary, path) != 0 { failure = errno }
        if let failure {
            Glibc.unlink(temporary)
            throw Failure(code: failure)
        }
    }

    /// fsync(2) of a directory, so that the names created or removed in it survive a crash (fsync(2), NOTES).
    static func syncDirectory(_ path: String) throws(Failure) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(code: errno) }
        defer { close(fd) }
        if fsync(fd) != 0 { throw Failure(code: errno) }
    }

    static func rename(_ from: String, _ to: String) throws(Failure) {
        if Glibc.rename(from, to) != 0 { throw Failure(code: errno) }
    }

    /// linkat(2) without AT_SYMLINK_FOLLOW: a symbolic link is linked itself, never its target.
    static func link(_ from: String, _ to: String) throws(Failure) {
        if linkat(AT_FDCWD, from, AT_FDCWD, to, 0) != 0 { throw Failure(code: errno) }
    }

    /// rename(2) of a directory to a name where nothing is (checked with lstat(2) first; EEXIST when
    /// something is). Between the check and the rename, the only thing rename(2) could replace there is an
    /// empty directory ("newpath can be an empty directory", rename(2)), so nothing held can be lost; a file
    /// or a non-empty directory makes it fail (ENOTDIR, ENOTEMPTY), also reported as EEXIST.
    static func renameDirectoryNoReplace(_ from: String, _ to: String) throws(Failure) {
        if try status(to) != nil { throw Failure(code: EEXIST) }
        if Glibc.rename(from, to) != 0 {
            let code = errno
            throw Failure(code: code == ENOTDIR || code == ENOTEMPTY || code == EISDIR ? EEXIST : code)
        }
    }

    static func unlink(_ path: String) throws(Failure) {
        if Glibc.unlink(path) != 0 { throw Failure(code: errno) }
    }

    /// mkdir(2); an existing directory is fine.
    static func makeDirectory(_ path: String) throws(Failure) -> Bool {
        if mkdir(path, 0o755) == 0 { return true }
        let code = errno
        if code == EEXIST, isDirectory(path) { return false }
        throw Failure(code: code)
    }

    /// Sets a file's modification time (tests age files with it).
    static func setModificationTime(_ path: String, _ date: Date) throws(Failure) {
        let seconds = date.timeIntervalSince1970.rounded(.down)
        let nanoseconds = (date.timeIntervalSince1970 - seconds) * 1_000_000_000
        var times = [
            timespec(tv_sec: Int(seconds), tv_nsec: Int(nanoseconds)),
            timespec(tv_sec: Int(seconds), tv_nsec: Int(nanoseconds)),
        ]
        if utimensat(AT_FDCWD, path, &times, AT_SYMLINK_NOFOLLOW) != 0 { throw Failure(code: errno) }
    }

    static func setNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
    }

    /// poll(2) retried on EINTR; `timeout` in milliseconds, -1 for none.
    static func poll(_ fds: inout [pollfd], timeout: Int32) -> Int32 {
        while true {
            let result = fds.withUnsafeMutableBufferPointer { Glibc.poll($0.baseAddress, nfds_t($0.count), timeout) }
            if result < 0 && errno == EINTR { continue }
            return result
        }
    }

    /// Milliseconds for poll(2) from seconds, rounded up so a wait never ends just short of its deadline.
    static func milliseconds(_ seconds: Double?) -> Int32 {
        guard let seconds else { return -1 }
        if seconds <= 0 { return 0 }
        return Int32(min((seconds * 1000).rounded(.up), Double(Int32.max)))
    }
}
