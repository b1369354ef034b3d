#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import PayhookSpoolFormat

/// Creating and checking the spool's folders, and its lock.
enum SpoolLayout {
    /// The subfolders, in the order they are created and checked (the layout is PayhookSpoolFormat's, shared
    /// with the queue tools).
    static let subfolders = SpoolFormat.serverFolders
    /// The subfolders the spool itself creates names in. cur/ is the consumers' (they rename into it).
    static let writtenFolders = SpoolFormat.serverWrittenFolders
    static let lockFile = SpoolFormat.lockFile

    /// The directory that holds `directory`, whose entry for it must be synced after creating it.
    static func parent(of directory: String) -> String {
        guard let slash = directory.lastIndex(of: "/") else { return "." }
        if slash == directory.startIndex { return "/" }
        return String(directory[..<slash])
    }

    /// Creates the spool directory (not its parents) and the subfolders that are missing, and makes their entries
    /// durable by syncing the directories that hold them (fsync(2), NOTES): the parent, then the spool directory.
    ///
    /// Both are synced at every start, not only when this call created something. A previous process may have
    /// made the directories and been killed before its fsync: kill -9 keeps the page cache, so the directories
    /// are there and mkdir says EEXIST, but a power loss after this start could still take them away, with
    /// every record acknowledged since (the kill-then-power-loss enumeration in PowerLossTests shows it).
    static func create(_ context: SpoolContext) throws(SpoolError) {
        let fileSystem = context.fileSystem
        let root = context.root
        var createdRoot = false
        do {
            try fileSystem.mkdir(root, mode: 0o755)
            createdRoot = true
        } catch where error.rawValue == EEXIST {
            // Already there; checked below.
        } catch where error.rawValue == ENOENT {
            throw SpoolError(
                code: .layout,
                message: "create spool directory \(root): \(error) (its parent directory must exist)",
                errno: error.rawValue
            )
        } catch {
            throw SpoolError.io("create spool directory", root, error)
        }
        let parent = parent(of: root)
        do throws(SpoolError) {
            try context.fsyncDirectory(atPath: parent, shown: parent)
        } catch where !createdRoot && error.errno == EACCES {
            // An operator made the spool directory inside a parent this user may not read; syncing that entry
            // was then the operator's business, and refusing to start would not help.
            context.logger.warning(
                "\(error); the spool directory's entry in \(parent) is not synced",
                metadata: ["spool": "\(root)"]
            )
        }

        let rootStatus: SpoolFileStatus
        do {
            rootStatus = try fileSystem.stat(root)
        } catch {
            throw SpoolError.io("stat spool directory", root, error)
        }
        // A symbolic link to a directory is accepted for the spool itself (not for its subfolders, below).
        if rootStatus.kind != .directory && rootStatus.kind != .symbolicLink {
            throw SpoolError(code: .layout, message: "spool directory \(root) is not a directory")
        }

        for folder in subfolders {
            do {
                try fileSystem.mkdir(context.path(folder), mode: 0o755)
            } catch where error.rawValue == EEXIST {
                continue
            } catch {
                throw SpoolError.io("create", folder + "/", error)
            }
        }
        try context.fsyncDirectory(atPath: root, shown: root)
    }

    /// Takes the spool's lock: flock(LOCK_EX|LOCK_NB) on .lock, held until the descriptor is closed, and
    /// records this process's pid in the file so that a second opener can say who holds it. Returns the
    /// descriptor.
    static func lock(_ context: SpoolContext) throws(SpoolError) -> CInt {
        let fileSystem = context.fileSystem
        let fd: CInt
        do {
            fd = try fileSystem.open(context.path(lockFile), flags: O_RDWR | O_CREAT, mode: 0o644)
        } catch {
            throw .io("open", lockFile, error)
        }
        do {
            try fileSystem.flock(fd, operation: LOCK_EX | LOCK_NB)
        } catch {
            context.closeQuietly(fd, shown: lockFile)
            // flock locks belong to the open file description, so a second Spool in the same process is refused
            // just like one in another process.
            if error.rawValue == EWOULDBLOCK {
                let holder = lockHolder(context).map { "pid \($0)" } ?? "pid unknown"
                throw SpoolError(
                    code: .locked,
                    message: "spool \(context.root) is in use by another payhook (\(holder))",
                    errno: error.rawValue
                )
            }
            throw .io("lock", lockFile, error)
        }
        // Write first, then cut off what an earlier, longer pid left: a reader in between sees a first line
        // that is either the old pid or the new one, never an empty file.
        let contents = Array("\(context.processID)\n".utf8)
        let written: Int
        do {
            written = try contents.withUnsafeBytes { buffer throws(SpoolErrno) -> Int in
                try fileSystem.write(fd, buffer)
            }
            try fileSystem.truncate(fd, length: Int64(written))
        } catch {
            // The pid is only for the message above; the lock itself is held.
            context.logger.warning("write \(lockFile): \(error)", metadata: ["spool": "\(context.root)"])
        }
        return fd
    }

    /// The pid recorded in .lock, if it can be read.
    private static func lockHolder(_ context: SpoolContext) -> CInt? {
        guard let bytes = try? context.fileSystem.readFile(context.path(lockFile)) else { return nil }
        let firstLine = bytes.prefix { $0 != UInt8(ascii: "\n") }.prefix(16)
        guard let text = String(validating: firstLine, as: UTF8.self) else { return nil }
        return CInt(text)
    }

    /// Checks that every subfolder is a real directory and that all are on one device: the spool moves
    /// records between them with link(2), which fails with EXDEV across file systems.
    static func check(_ context: SpoolContext) throws(SpoolError) {
        var device: (folder: String, id: UInt64)?
        for folder in subfolders {
            guard let status = try context.status(folder) else {
                throw SpoolError(code: .layout, message: "spool subfolder \(folder)/ is missing", errno: ENOENT)
            }
            guard status.kind == .directory else {
                throw SpoolError(code: .layout, message: "spool subfolder \(folder)/ is not a directory")
            }
            if let device, device.id != status.device {
                throw SpoolError(
                    code: .layout,
                    message: "spool subfolders \(device.folder)/ and \(folder)/ are on different devices; "
                        + "hard links need them on one file system"
                )
            }
            device = device ?? (folder, status.device)
        }
    }

    /// Refuses a spool whose folders it could open but not write in (``SpoolContext/checkWritable(_:counted:)``):
    /// such a spool would answer every store with an error while looking healthy. Runs before recovery, which
    /// writes in tmp/ and corrupt/ itself.
    static func checkWritable(_ context: SpoolContext) throws(SpoolError) {
        for folder in writtenFolders {
            try context.checkWritable(folder, counted: false)
        }
    }
}
