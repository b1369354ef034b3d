import CPayhookShim
public import Glibc

/// An `errno` value reported by a file-system call.
///
/// Its `description` is the C library's text for it (`strerror(3)`), e.g. "Input/output error".
public struct SpoolErrno: Error, Sendable, Hashable, CustomStringConvertible {
    /// The raw `errno` value (`EIO`, `ENOSPC`, …).
    public let rawValue: CInt

    /// Wraps a raw `errno` value.
    public init(_ rawValue: CInt) {
        self.rawValue = rawValue
    }

    /// The C library's text for the value, e.g. "No space left on device".
    public var description: String {
        // glibc's strerror returns a pointer into its static message table for every known value and a
        // thread-local buffer for unknown ones (glibc ≥ 2.32), so reading it right away is safe here.
        guard let text = strerror(rawValue) else { return "errno \(rawValue)" }
        return String(cString: text)
    }
}

/// A file name exactly as readdir(3) returned it: a name need not be UTF-8, and one that is not must still be
/// removable, movable and nameable in a message, never silently mangled into another name.
public struct SpoolName: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The name's bytes, without a terminating NUL.
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    public init(_ text: String) {
        self.bytes = Array(text.utf8)
    }

    /// The name as text, or nil when it is not valid UTF-8 (such a name is never an event's).
    public var string: String? {
        String(validating: bytes, as: UTF8.self)
    }

    /// Whether the name starts with a dot: another tool's temporary or internal file, never an event.
    public var isHidden: Bool {
        bytes.first == UInt8(ascii: ".")
    }

    /// The name for messages: itself when it is UTF-8, otherwise each byte that is not as `\xNN`.
    public var description: String {
        if let string { return string }
        var shown = ""
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte < 0x80 {
                shown.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                let hex = String(byte, radix: 16)
                shown += "\\x" + (hex.count == 1 ? "0" : "") + hex
            }
            index += 1
        }
        return shown
    }

    /// Byte order, the order `ls` uses under the C locale.
    public static func < (lhs: SpoolName, rhs: SpoolName) -> Bool {
        lhs.bytes.lexicographicallyPrecedes(rhs.bytes)
    }
}

/// One directory entry: its name and inode number (`d_ino`).
public struct SpoolDirectoryEntry: Sendable, Equatable {
    public var name: SpoolName
    public var inode: UInt64

    public init(name: SpoolName, inode: UInt64) {
        self.name = name
        self.inode = inode
    }
}

/// A path as the system calls take it: text, or a folder's path with a raw name (``SpoolName``) appended.
public protocol SpoolPathRepresentable {
    /// Calls `body` with the path as a NUL-terminated C string.
    func withSpoolPath<Result>(_ body: (UnsafePointer<CChar>) -> Result) -> Result
}

extension String: SpoolPathRepresentable {
    public func withSpoolPath<Result>(_ body: (UnsafePointer<CChar>) -> Result) -> Result {
        withCString(body)
    }
}

/// A path held as bytes, so that a name that is not UTF-8 reaches the system call unchanged.
public struct SpoolPath: SpoolPathRepresentable, Sendable, Hashable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init(_ text: String) {
        bytes = Array(text.utf8)
    }

    /// `folder` + "/" + `name`.
    public init(_ folder: String, _ name: SpoolName) {
        bytes = Array(folder.utf8) + [UInt8(ascii: "/")] + name.bytes
    }

    public func withSpoolPath<Result>(_ body: (UnsafePointer<CChar>) -> Result) -> Result {
        (bytes + [0]).withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { body($0.baseAddress!) }
        }
    }

    public var description: String { SpoolName(bytes: bytes).description }
}

/// What reading a spool file found (``SpoolPosix/readRegular(_:limit:)``).
public enum SpoolFileContent: Sendable, Equatable {
    /// The whole file.
    case bytes([UInt8])
    /// Not read: the entry is no regular file within the limit. Why, as "it is …".
    case refused(String)
}

/// What ``SpoolPosix/openRegular(_:limit:)`` found at a path.
public enum SpoolOpenedFile: Sendable, Equatable {
    /// A regular file of at most the limit, open for reading (`O_NONBLOCK` set); the caller closes it.
    case file(descriptor: CInt, size: Int64)
    /// Something that must not be read as a spool file; why, as "it is …". Nothing was left open.
    case refused(String)
}

/// The system calls every reader and writer of a spool uses, in one place, so that the server and the queue
/// tools treat the same directory entry the same way:
///
/// - every call that can be interrupted is retried on `EINTR` (close(2) excepted: see ``close(_:)``);
/// - every descriptor is opened with `O_CLOEXEC`, so a consumer's command never inherits a spool file;
/// - names are kept as the bytes readdir(3) gave (``SpoolName``);
/// - a spool file is read only if it is a regular file, opened with `O_NOFOLLOW` (a symbolic link is never
///   followed) and `O_NONBLOCK` (a FIFO never blocks the open), checked with fstat(2) on the descriptor that is
///   read (docs/consumers.md, section 3).
///
/// Failures throw the `errno` (``SpoolErrno``); ENOENT is often expected (another process moved the file first)
/// and is left to the callers.
public enum SpoolPosix {
    /// Runs a call that returns -1 and sets errno on failure, again while it fails with EINTR.
    @discardableResult
    public static func retrying(_ call: () -> CInt) throws(SpoolErrno) -> CInt {
        while true {
            let result = call()
            if result >= 0 { return result }
            let error = errno
            if error != EINTR { throw SpoolErrno(error) }
        }
    }

    // MARK: - Status

    /// lstat(2): a symbolic link is reported as one, never followed. Throws ENOENT when nothing is there.
    public static func lstat(_ path: some SpoolPathRepresentable) throws(SpoolErrno) -> SpoolFileStatus {
        var raw = Glibc.stat()
        try retrying { path.withSpoolPath { Glibc.lstat($0, &raw) } }
        return SpoolFileStatus(raw)
    }

    /// lstat(2); nil when nothing is there (ENOENT, or ENOTDIR for a path through something that is no folder).
    public static func status(_ path: some SpoolPathRepresentable) throws(SpoolErrno) -> SpoolFileStatus? {
        do {
            return try lstat(path)
        } catch where error.rawValue == ENOENT || error.rawValue == ENOTDIR {
            return nil
        }
    }

    /// stat(2), following symbolic links (for the spool directory itself, which may be a link).
    public static func isDirectory(_ path: String) -> Bool {
        var raw = Glibc.stat()
        guard (try? retrying({ systemStat(path, &raw) })) != nil else { return false }
        return raw.st_mode & S_IFMT == S_IFDIR
    }

    /// The entries of a directory except "." and "..", unsorted, with their names as raw bytes.
    public static func readDirectory(_ path: some SpoolPathRepresentable) throws(SpoolErrno) -> [SpoolDirectoryEntry] {
        // glibc's opendir opens the directory with O_CLOEXEC; open(2) inside it is not interrupted by signals
        // on local file systems, and a NULL with EINTR is retried all the same.
        var handle: OpaquePointer?
        try retrying {
            handle = path.withSpoolPath { opendir($0) }
            return handle == nil ? -1 : 0
        }
        guard let handle else { throw SpoolErrno(EIO) }
        defer { closedir(handle) }
        var entries: [SpoolDirectoryEntry] = []
        while true {
            // readdir returns NULL both at the end and on error; only errno tells them apart.
            errno = 0
            guard let entry = readdir(handle) else {
                let error = errno
                if error != 0 { throw SpoolErrno(error) }
                return entries
            }
            let name: [UInt8] = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                Array(raw.prefix { $0 != 0 })
            }
            if name == [UInt8(ascii: ".")] || name == [UInt8(ascii: "."), UInt8(ascii: ".")] { continue }
            entries.append(SpoolDirectoryEntry(name: SpoolName(bytes: name), inode: UInt64(entry.pointee.d_ino)))
        }
    }

    // MARK: - Reading

    /// open(2) with `O_CLOEXEC` added.
    public static func open(_ path: some SpoolPathRepresentable, flags: CInt, mode: mode_t = 0) throws(SpoolErrno) -> CInt {
        try retrying { path.withSpoolPath { Glibc.open($0, flags | O_CLOEXEC, mode) } }
    }

    /// Opens a spool file for reading only if it is a regular file of at most `limit` bytes, without following a
    /// symbolic link and without blocking.
    ///
    /// lstat(2) first, so that a device, FIFO or socket is never opened at all; then open(2) with O_NOFOLLOW (a
    /// symbolic link put there since fails with ELOOP instead of being followed, open(2)) and O_NONBLOCK (a FIFO
    /// put there since does not block the open waiting for a writer, fifo(7)); then fstat(2) on the descriptor,
    /// which is what is read, so a name swapped between the calls cannot slip through. ENOENT (the file left
    /// meanwhile) is thrown.
    public static func openRegular(_ path: some SpoolPathRepresentable, limit: Int64) throws(SpoolErrno) -> SpoolOpenedFile {
        if let refusal = try lstat(path).refusal(limit: limit) { return .refused(refusal) }
        let fd: CInt
        do {
            fd = try open(path, flags: O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY)
        } catch where error.rawValue == ELOOP {
            return .refused(SpoolFileStatus.Kind.symbolicLink.notRegular)
        }
        var raw = Glibc.stat()
        do {
            try retrying { fstat(fd, &raw) }
        } catch {
            close(fd)
            throw error
        }
        let status = SpoolFileStatus(raw)
        if let refusal = status.refusal(limit: limit) {
            close(fd)
            return .refused(refusal)
        }
        return .file(descriptor: fd, size: status.size)
    }

    /// Reads a whole spool file through ``openRegular(_:limit:)``: a regular file of at most `limit` bytes, and
    /// never more than `limit` bytes read (a file that grew past it since the fstat is refused as well).
    public static func readRegular(_ path: some SpoolPathRepresentable, limit: Int64) throws(SpoolErrno) -> SpoolFileContent {
        let fd: CInt
        let size: Int64
        switch try openRegular(path, limit: limit) {
        case .refused(let reason): return .refused(reason)
        case .file(let opened, let length):
            fd = opened
            size = length
        }
        defer { close(fd) }
        guard let bytes = try readAll(fd, limit: limit, expected: size) else {
            return .refused("it grew past \(limit) bytes while being read")
        }
        return .bytes(bytes)
    }

    /// Reads `fd` to its end; nil when it holds more than `limit` bytes (one byte past it is all that is read).
    public static func readAll(_ fd: CInt, limit: Int64 = .max, expected: Int64 = 0) throws(SpoolErrno) -> [UInt8]? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(max(0, min(expected, limit))))
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let room = limit - Int64(bytes.count)
            let wanted = room >= Int64(buffer.count) ? buffer.count : Int(room) + 1
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, wanted) }
            if count < 0 {
                let error = errno
                if error == EINTR { continue }
                throw SpoolErrno(error)
            }
            if count == 0 { return bytes }
            bytes.append(contentsOf: buffer[0..<count])
            if Int64(bytes.count) > limit { return nil }
        }
    }

    /// The file of a descriptor opened by ``openRegular(_:limit:)`` made blocking again, for a reader that does
    /// not expect O_NONBLOCK (a consumer's command reading it as stdin).
    public static func clearNonBlocking(_ fd: CInt) {
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
    }

    // MARK: - Writing

    /// Writes all of `bytes`, looping over short writes and EINTR.
    public static func writeAll(_ fd: CInt, _ bytes: [UInt8]) throws(SpoolErrno) {
        let failure: SpoolErrno? = bytes.withUnsafeBytes { buffer -> SpoolErrno? in
            var offset = 0
            while offset < buffer.count {
                let written = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    let error = errno
                    if error == EINTR { continue }
                    return SpoolErrno(error)
                }
                // write(2) to a regular file returns 0 only for a zero count; anything else would loop forever.
                if written == 0 { return SpoolErrno(EIO) }
                offset += written
            }
            return nil
        }
        if let failure { throw failure }
    }

    /// fsync(2). Retrying after EINTR is not retrying after a failure: the call was interrupted before it reported
    /// anything, so no error state has been consumed yet. A real failure must never be "retried" on the same
    /// descriptor (docs/durability.md).
    public static func fsync(_ fd: CInt) throws(SpoolErrno) {
        try retrying { Glibc.fsync(fd) }
    }

    /// close(2), never retried: on Linux the descriptor is released even when close returns EINTR, and a retry
    /// could close a descriptor another thread has just been given (close(2), "Dealing with error returns").
    /// EINTR therefore counts as success.
    public static func close(_ fd: CInt) {
        _ = Glibc.close(fd)
    }

    /// close(2) whose failure is reported (a deferred write error on some file systems), EINTR excepted.
    public static func closeChecked(_ fd: CInt) throws(SpoolErrno) {
        if Glibc.close(fd) != 0 {
            let error = errno
            if error != EINTR { throw SpoolErrno(error) }
        }
    }

    /// Writes `bytes` to `path` so that a reader sees either the old file or the complete new one: `temporary`
    /// (a hidden name in the same folder) created with O_EXCL, written, fsynced and closed, then rename(2) over
    /// the target ("If newpath already exists, it will be atomically replaced", rename(2)). On failure the
    /// temporary is removed.
    public static func writeFileAtomically(_ bytes: [UInt8], to path: String, temporary: String) throws(SpoolErrno) {
        let fd = try open(temporary, flags: O_CREAT | O_EXCL | O_WRONLY, mode: 0o644)
        do throws(SpoolErrno) {
            do throws(SpoolErrno) {
                try writeAll(fd, bytes)
                try fsync(fd)
            } catch {
                close(fd)
                throw error
            }
            try closeChecked(fd)
            try rename(temporary, path)
        } catch {
            _ = try? unlink(temporary)
            throw error
        }
    }

    /// fsync(2) of a directory, so that the names created or removed in it survive a crash (fsync(2), NOTES).
    public static func syncDirectory(_ path: some SpoolPathRepresentable) throws(SpoolErrno) {
        let fd = try open(path, flags: O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        try fsync(fd)
    }

    // MARK: - Names

    /// rename(2): replaces `to` if it exists.
    public static func rename(_ from: some SpoolPathRepresentable, _ to: some SpoolPathRepresentable) throws(SpoolErrno) {
        try retrying { from.withSpoolPath { source in to.withSpoolPath { Glibc.rename(source, $0) } } }
    }

    /// Moves the directory entry `from` to `to` without ever replacing what is at `to` (EEXIST then), whatever
    /// `from` is: a regular file, a symbolic link (moved as a link, its target untouched), a FIFO, socket or
    /// device (never opened), a directory.
    ///
    /// renameat2(2) with RENAME_NOREPLACE does it atomically. Where the file system lacks the flag (EINVAL), a
    /// non-directory is hard-linked to `to` (link(2) never replaces) and then unlinked from `from`; when that
    /// unlink finds `from` gone, another process moved it first, and the link is taken back and ENOENT thrown.
    /// A directory cannot be hard-linked (EPERM): it is renamed after checking that nothing is at `to`; in
    /// between, the only thing rename(2) could replace there is an empty directory ("newpath can be an empty
    /// directory", rename(2)), so nothing held is lost, and a file or non-empty directory makes it fail, which
    /// is reported as EEXIST too.
    public static func renameNoReplace(_ from: some SpoolPathRepresentable, _ to: some SpoolPathRepresentable) throws(SpoolErrno) {
        do {
            try retrying { from.withSpoolPath { source in to.withSpoolPath { payhook_rename_noreplace(source, $0) } } }
            return
        } catch where error.rawValue == EINVAL || error.rawValue == ENOSYS || error.rawValue == EOPNOTSUPP {
            // The flag is unsupported here; below.
        }
        if try lstat(from).kind == .directory {
            if try status(to) != nil { throw SpoolErrno(EEXIST) }
            do {
                try rename(from, to)
            } catch where [ENOTDIR, ENOTEMPTY, EISDIR, EEXIST].contains(error.rawValue) {
                throw SpoolErrno(EEXIST)
            }
            return
        }
        try link(from, to)
        do {
            try unlink(from)
        } catch {
            _ = try? unlink(to)
            throw error
        }
    }

    /// linkat(2) without AT_SYMLINK_FOLLOW: a second name for `existing`; a symbolic link is linked itself, never
    /// its target. Fails with EEXIST rather than replacing `newPath`.
    public static func link(_ existing: some SpoolPathRepresentable, _ newPath: some SpoolPathRepresentable) throws(SpoolErrno) {
        try retrying {
            existing.withSpoolPath { source in newPath.withSpoolPath { linkat(AT_FDCWD, source, AT_FDCWD, $0, 0) } }
        }
    }

    /// unlink(2).
    public static func unlink(_ path: some SpoolPathRepresentable) throws(SpoolErrno) {
        try retrying { path.withSpoolPath { Glibc.unlink($0) } }
    }

    /// mkdir(2). Returns false when a directory is there already.
    @discardableResult
    public static func makeDirectory(_ path: String, mode: mode_t = 0o755) throws(SpoolErrno) -> Bool {
        do {
            try retrying { Glibc.mkdir(path, mode) }
            return true
        } catch where error.rawValue == EEXIST && isDirectory(path) {
            return false
        }
    }
}

extension SpoolFileStatus {
    init(_ raw: stat) {
        self.init(
            device: UInt64(raw.st_dev),
            inode: UInt64(raw.st_ino),
            linkCount: UInt64(raw.st_nlink),
            size: Int64(raw.st_size),
            kind: Kind(mode: raw.st_mode),
            modified: SpoolTimestamp(raw.st_mtim),
            changed: SpoolTimestamp(raw.st_ctim)
        )
    }
}

extension SpoolFileStatus.Kind {
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
}

extension SpoolTimestamp {
    init(_ time: timespec) {
        self.init(seconds: Int64(time.tv_sec), nanoseconds: Int64(time.tv_nsec))
    }
}

// The C functions under names that the types of the same name cannot shadow.
private func systemStat(_ path: String, _ status: inout stat) -> CInt { stat(path, &status) }
