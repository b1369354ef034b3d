#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import PayhookLock
import PayhookSpoolFormat
import Synchronization

/// What the spool's parts share: the directory, the file-system seam and the helpers every step uses.
/// Paths inside it are relative to the spool ("tmp/x", "new/"), which is also how messages name them.
final class SpoolContext: Sendable {
    let root: String
    let fileSystem: any SpoolFileSystem
    let inspector: any SpoolRecordInspector
    let logger: Logger
    let processID: CInt
    /// Below this many free bytes on the spool's file system nothing new is written (0: no guard).
    let minimumFreeBytes: UInt64
    /// Failure counters and the health flag.
    let monitor = SpoolMonitor()
    /// Unique suffixes for names in tmp/, conflicts/ and corrupt/, on the file system's pid and clock.
    let uniqueNames: SpoolUniqueNames
    /// Whether records are still written as unnamed files (O_TMPFILE); false once the file system refused one.
    private let unnamedFiles = Atomic<Bool>(true)

    init(
        root: String,
        fileSystem: any SpoolFileSystem,
        inspector: any SpoolRecordInspector,
        logger: Logger,
        minimumFreeBytes: UInt64 = 0
    ) {
        self.root = root
        self.fileSystem = fileSystem
        self.inspector = inspector
        self.logger = logger
        self.minimumFreeBytes = minimumFreeBytes
        let processID = fileSystem.processID()
        self.processID = processID
        self.uniqueNames = SpoolUniqueNames(processID: processID, clock: { fileSystem.currentTimeMicroseconds() })
    }

    /// Counts a failed call and describes it: "`operation` `path`: `errno text`", code `.io`.
    func failure(_ kind: SpoolFailureKind, _ operation: String, _ path: String, _ error: SpoolErrno) -> SpoolError {
        monitor.count(kind)
        return .io(operation, path, error)
    }

    /// The full path of a path relative to the spool.
    func path(_ relative: String) -> String {
        root + "/" + relative
    }

    /// "<pid>.<counter>.<microseconds>" (``SpoolUniqueNames``), the suffix the queue tools use too.
    func uniqueSuffix() -> String {
        uniqueNames.next()
    }

    /// Makes the entries of a directory durable: fsync(2) on a file does not persist its directory entry,
    /// the directory itself has to be synced (fsync(2), NOTES). A new descriptor is opened each time, and a
    /// failed fsync is reported, never retried on the same descriptor: after a failure the kernel may already
    /// have dropped the dirty state, so a second fsync could "succeed" without having written anything
    /// (PostgreSQL's "fsyncgate", 2018; https://wiki.postgresql.org/wiki/Fsync_Errors).
    func fsyncDirectory(_ relative: String) throws(SpoolError) {
        try fsyncDirectory(atPath: path(relative), shown: relative + "/")
    }

    /// - Parameter marksUnhealthy: false only where the directory holds no record's name (the spool directory
    ///   itself, after ``Spool/recordRetention(seconds:)``), so that a failure there puts no record in doubt.
    func fsyncDirectory(atPath fullPath: String, shown: String, marksUnhealthy: Bool = true) throws(SpoolError) {
        let fd: CInt
        do {
            fd = try fileSystem.open(fullPath, flags: O_RDONLY | O_DIRECTORY, mode: 0)
        } catch {
            // Nothing was synced and no error state was consumed: the spool stays healthy.
            throw failure(.open, "open", shown, error)
        }
        do {
            try fileSystem.fsync(fd)
        } catch {
            closeQuietly(fd, shown: shown)
            let cause = failure(.fsyncDirectory, "fsync", shown, error)
            guard marksUnhealthy else { throw cause }
            // The kernel may have dropped the entries it failed to write and will not report that again, so
            // which names in this directory are durable is now unknown (docs/durability.md §6, rule 2; PostgreSQL
            // PANICs in this case). Only recovery at the next open can tell.
            if monitor.markUnhealthy(cause) {
                logger.critical(
                    "\(cause); the spool refuses every store until it is reopened and recovery has re-checked it",
                    metadata: ["spool": "\(root)"]
                )
            }
            throw cause
        }
        closeQuietly(fd, shown: shown)
    }

    /// The free-space guard (docs/durability.md §7, Postfix's queue_minfree): refuses to write when the spool's
    /// file system has less than ``minimumFreeBytes`` available, so that the sender is told to retry before
    /// the disk is actually full. A file system that cannot tell (ENOSYS) is not guarded; any other statvfs
    /// failure is logged and the write goes ahead, since the write itself reports a full or failing disk.
    func checkFreeSpace(for shown: String) throws(SpoolError) {
        guard minimumFreeBytes > 0 else { return }
        let available: UInt64
        do {
            available = try fileSystem.availableBytes(root)
        } catch where error.rawValue == ENOSYS {
            return
        } catch {
            monitor.count(.other)
            logger.warning(
                "statvfs \(root): \(error); writing without the free-space check",
                metadata: ["spool": "\(root)"]
            )
            return
        }
        guard available < minimumFreeBytes else { return }
        monitor.count(.belowMinimumFree)
        throw SpoolError(
            code: .noSpace,
            message: "write \(shown): only \(available) bytes free on the spool's file system, "
                + "below the minimum of \(minimumFreeBytes)",
            errno: ENOSPC
        )
    }

    /// Checks that the spool can create files in `folder` (relative to the spool), without making a name anyone
    /// could see: consumers list new/ and claim whatever file is there. An unnamed file (O_TMPFILE) is opened in
    /// the folder and closed again; open(2) refuses it with EACCES (no write or search permission), EROFS (a
    /// read-only file system) or EPERM (an immutable folder, chattr(1)) exactly where creating a name would be
    /// refused. Where unnamed files are unsupported (EOPNOTSUPP, EISDIR, open(2)) or cannot be made for another
    /// reason (ENOSPC, EMFILE: not a question of permission), faccessat(2) with W_OK|X_OK decides instead. A
    /// file system that can answer neither (ENOSYS) is not refused.
    ///
    /// Throws `.notWritable` naming the folder. Unless `counted` is false (at open, where the spool is refused
    /// anyway), the failed call is counted: `open` for the unnamed file, `other` for faccessat.
    func checkWritable(_ folder: String, counted: Bool = true) throws(SpoolError) {
        let shown = folder + "/"
        func refusal(_ call: String, _ error: SpoolErrno, _ kind: SpoolFailureKind) -> SpoolError {
            if counted { monitor.count(kind) }
            return SpoolError(
                code: .notWritable,
                message: "spool folder \(shown) is not writable: \(call): \(error) "
                    + "(check its owner, mode, mount options and immutable flag)",
                errno: error.rawValue
            )
        }
        do {
            let fd = try fileSystem.openUnnamed(inDirectory: path(folder), mode: 0o600)
            // Closing it frees it: it never had a name.
            closeQuietly(fd, shown: shown + " (unnamed check)")
            return
        } catch where [EACCES, EPERM, EROFS].contains(error.rawValue) {
            throw refusal("open(O_TMPFILE)", error, .open)
        } catch {
            // Unsupported here, or failed for a reason that says nothing about permission: ask faccessat(2).
        }
        do {
            try fileSystem.access(path(folder), mode: W_OK | X_OK)
        } catch where error.rawValue == ENOSYS {
            return
        } catch {
            throw refusal("faccessat(W_OK|X_OK)", error, .other)
        }
    }

    /// A record's contents made durable under no name a consumer reads, ready to be linked into place.
    enum Temporary: Sendable {
        /// tmp/<stem>.<suffix>, relative to the spool; closed.
        case named(String)
        /// An unnamed file (O_TMPFILE) in tmp/'s file system, still open: it is linked through its descriptor.
        /// `shown` names it in messages: the name it would have had, with " (unnamed)".
        case unnamed(descriptor: CInt, shown: String)

        /// How messages name it: "tmp/<stem>.<suffix>", with " (unnamed)" for an unnamed file.
        var shown: String {
            switch self {
            case .named(let path): path
            case .unnamed(_, let shown): shown
            }
        }
    }

    /// Writes a record as an unnamed file (O_TMPFILE) in tmp/ where the file system has them (see
    /// ``checkUnnamedFiles()``), and as tmp/<stem>.<suffix> (``writeDurableTemporary(_:stem:suffix:)``) where it
    /// does not. An unnamed file needs no directory entry in tmp/ and no unlink afterwards, so concurrent stores
    /// do not queue for tmp/'s lock (in `perf`, creating and unlinking tmp/ names was 30-59% of the CPU of
    /// storing on the bench disk), and a crash before it is linked leaves nothing behind (docs/durability.md §3).
    /// On failure nothing is left behind.
    func writeDurableRecord(_ bytes: [UInt8], stem: String, suffix: String) throws(SpoolError) -> Temporary {
        guard unnamedFiles.load(ordering: .relaxed) else {
            return .named(try writeDurableTemporary(bytes, stem: stem, suffix: suffix))
        }
        let shown = "tmp/\(stem).\(suffix) (unnamed)"
        try checkFreeSpace(for: shown)
        let fd: CInt
        do {
            fd = try fileSystem.openUnnamed(inDirectory: path("tmp"), mode: 0o644)
        } catch {
            throw failure(.open, "create", shown, error)
        }
        // Closing an unnamed file is all it takes to discard it.
        try writeAndSync(fd, bytes, shown: shown) { closeQuietly(fd, shown: shown) }
        return .unnamed(descriptor: fd, shown: shown)
    }

    /// Before the first store: makes an unnamed file in tmp/, links it to a name and removes that name. Where
    /// any step fails, the spool writes named files from the start: a file system without O_TMPFILE
    /// (EOPNOTSUPP, or EISDIR from a kernel that predates it, open(2)), or one without /proc mounted, or a
    /// policy that forbids the link through /proc/self/fd, would otherwise fail every store.
    func checkUnnamedFiles() {
        guard unnamedFiles.load(ordering: .relaxed) else { return }
        // Recovery has just emptied tmp/ and the spool's lock keeps other processes out, so a fixed name is free.
        let check = "tmp/unnamed-check"
        let fd: CInt
        do {
            fd = try fileSystem.openUnnamed(inDirectory: path("tmp"), mode: 0o644)
        } catch {
            stopUnnamedFiles("the spool's file system has no unnamed files (O_TMPFILE: \(error))")
            return
        }
        defer { closeQuietly(fd, shown: check + " (unnamed)") }
        do {
            try fileSystem.link(descriptor: fd, path(check))
        } catch {
            stopUnnamedFiles("an unnamed file in tmp/ could not be linked to a name (linkat through /proc/self/fd: \(error))")
            return
        }
        // A leftover name only costs a clean-up: recovery removes everything in tmp/ at the next start.
        removeTemporary(check)
    }

    /// Switches to named files in tmp/ for good, saying why once.
    private func stopUnnamedFiles(_ reason: String) {
        guard unnamedFiles.exchange(false, ordering: .relaxed) else { return }
        logger.notice("\(reason); records are written as named files in tmp/", metadata: ["spool": "\(root)"])
    }

    /// Gives a written record the name `relative` (in new/ or ids/): link(2) of a named file, linkat(2) of an
    /// unnamed one. Fails with EEXIST rather than replacing anything.
    func link(_ temporary: Temporary, to relative: String) throws(SpoolErrno) {
        switch temporary {
        case .named(let name):
            try fileSystem.link(path(name), path(relative))
        case .unnamed(let fd, _):
            try fileSystem.link(descriptor: fd, path(relative))
        }
    }

    /// Lets go of a record's temporary once its store is over: unlinks a named one, closes an unnamed one
    /// (which frees it unless it was linked). A failure is only logged.
    func removeTemporary(_ temporary: Temporary) {
        switch temporary {
        case .named(let name):
            removeTemporary(name)
        case .unnamed(let fd, _):
            closeQuietly(fd, shown: temporary.shown)
        }
    }

    /// Writes `bytes` to a new file tmp/<stem>.<suffix> and makes its contents durable: create with O_EXCL,
    /// write everything, fsync, close, each result checked. Returns the file's path relative to the spool.
    /// `checkingFreeSpace: false` skips the free-space guard, for a few bytes of the spool's own bookkeeping.
    /// On failure the file is removed again and nothing is left behind.
    func writeDurableTemporary(
        _ bytes: [UInt8], stem: String, suffix: String, checkingFreeSpace: Bool = true
    ) throws(SpoolError) -> String {
        let temporary = "tmp/\(stem).\(suffix)"
        if checkingFreeSpace { try checkFreeSpace(for: temporary) }
        let fd: CInt
        do {
            fd = try fileSystem.open(path(temporary), flags: O_CREAT | O_EXCL | O_WRONLY, mode: 0o644)
        } catch {
            throw failure(.open, "create", temporary, error)
        }
        try writeAndSync(fd, bytes, shown: temporary) {
            closeQuietly(fd, shown: temporary)
            removeTemporary(temporary)
        }
        do {
            // close(2) can report a deferred write error (e.g. on network file systems); it is checked too.
            try fileSystem.close(fd)
        } catch {
            removeTemporary(temporary)
            throw failure(.close, "close", temporary, error)
        }
        return temporary
    }

    /// Writes all of `bytes` to a new file and fsyncs it. On failure runs `discard`, which gets rid of the file,
    /// and throws; the spool stays healthy, since the file was never published (docs/durability.md §6, rule 1).
    private func writeAndSync(
        _ fd: CInt, _ bytes: [UInt8], shown: String, discard: () -> Void
    ) throws(SpoolError) {
        if let error = writeAll(fd, bytes) {
            discard()
            throw failure(.write, "write", shown, error)
        }
        do {
            try fileSystem.fsync(fd)
        } catch {
            // No second fsync on this descriptor (see fsyncDirectory): the file is discarded instead.
            discard()
            throw failure(.fsyncFile, "fsync", shown, error)
        }
    }

    /// Writes all of `bytes`, looping over short writes. Returns the error that stopped it, if any.
    private func writeAll(_ fd: CInt, _ bytes: [UInt8]) -> SpoolErrno? {
        bytes.withUnsafeBytes { buffer -> SpoolErrno? in
            var offset = 0
            while offset < buffer.count {
                let written: Int
                do throws(SpoolErrno) {
                    written = try fileSystem.write(fd, UnsafeRawBufferPointer(rebasing: buffer[offset...]))
                } catch {
                    return error
                }
                // write(2) to a regular file returns 0 only for a zero count; anything else would loop forever.
                guard written > 0 else { return SpoolErrno(EIO) }
                offset += written
            }
            return nil
        }
    }

    /// Unlinks a tmp/ file whose job is over. A failure is only logged: startup recovery removes whatever
    /// is left in tmp/.
    func removeTemporary(_ temporary: String) {
        do {
            try fileSystem.unlink(path(temporary))
        } catch where error.rawValue == ENOENT {
            return
        } catch {
            monitor.count(.unlink)
            logger.warning(
                "unlink \(temporary): \(error); recovery removes it at the next start",
                metadata: ["spool": "\(root)"]
            )
        }
    }

    /// Closes a descriptor whose result no longer matters (a read-only directory descriptor, or a file that is
    /// being discarded); a failure is only logged.
    func closeQuietly(_ fd: CInt, shown: String) {
        do {
            try fileSystem.close(fd)
        } catch {
            monitor.count(.close)
            logger.warning("close \(shown): \(error)", metadata: ["spool": "\(root)"])
        }
    }

    /// lstat of a path relative to the spool; nil when nothing is there.
    func status(_ relative: String) throws(SpoolError) -> SpoolFileStatus? {
        do {
            return try fileSystem.stat(path(relative))
        } catch where error.rawValue == ENOENT {
            return nil
        } catch {
            throw failure(.other, "stat", relative, error)
        }
    }
}
