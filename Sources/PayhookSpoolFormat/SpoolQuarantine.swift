import Glibc

/// Setting aside what is not a valid event where it was found: moving it into corrupt/, where it is kept for
/// inspection and never deleted. The server's recovery and the queue tools both do it with
/// ``move(_:root:fileSystem:uniqueSuffix:)``.
public enum SpoolQuarantine {
    /// A failed step of a move: the operation, the paths as messages show them (relative to the spool) and the
    /// errno.
    public struct Failure: Error, Sendable, Equatable {
        public let operation: String
        public let path: String
        public let errno: SpoolErrno
    }

    /// Moves the directory entry `relative` (a path inside the spool at `root`) into corrupt/, where it is kept
    /// for inspection and never deleted: under its own name, or `<name>.<unique>` when that is taken. Returns the
    /// new path relative to the spool, or nil when the entry was gone already (another process moved it first).
    ///
    /// Both the server's recovery and the queue tools quarantine with this, while the other may be doing the same,
    /// so nothing is ever replaced: the move is ``SpoolFileSystem/renameNoReplace(_:_:)``, which fails with
    /// EEXIST where a check-then-rename could overwrite a file another process has just put there. The entry
    /// itself is moved, never what it points to: a symbolic link stays a link with its target untouched, and a
    /// FIFO or device is never opened.
    ///
    /// Durability is the caller's: afterwards it syncs corrupt/ first and then the folder the entry left, so that
    /// a crash in between leaves the file in both places at worst (rename is atomic, so it is in one of them in
    /// memory), never in neither.
    public static func move(
        _ relative: String,
        root: String,
        fileSystem: any SpoolFileSystem,
        uniqueSuffix: () -> String
    ) throws(Failure) -> String? {
        let name = relative.split(separator: "/").last.map(String.init) ?? relative
        var destination = "corrupt/\(name)"
        for _ in 0..<3 {
            do {
                try fileSystem.renameNoReplace(root + "/" + relative, root + "/" + destination)
                return destination
            } catch where error.rawValue == EEXIST {
                destination = "corrupt/\(name).\(uniqueSuffix())"
            } catch where error.rawValue == ENOENT {
                // The entry is gone, unless it is corrupt/ that is missing.
                if (try? fileSystem.stat(root + "/" + relative)) == nil { return nil }
                throw Failure(operation: "rename", path: "\(relative) to \(destination)", errno: error)
            } catch {
                throw Failure(operation: "rename", path: "\(relative) to \(destination)", errno: error)
            }
        }
        throw Failure(operation: "rename", path: "\(relative) to \(destination)", errno: SpoolErrno(EEXIST))
    }
}
