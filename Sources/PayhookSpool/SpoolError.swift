#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import PayhookSpoolFormat

/// A failure of a ``Spool`` operation.
///
/// `description` is one sentence that names the operation, the path relative to the spool and, when a system
/// call failed, the errno text: "fsync new/: Input/output error".
public struct SpoolError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of failure this is. New codes may be added; switch with a `default` case.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// The code's name, e.g. "io".
        public let name: String

        /// Creates a code; the ones below are those the spool itself uses.
        public init(_ name: String) {
            self.name = name
        }

        public var description: String { name }

        /// A file-system call failed; `errno` says how.
        public static let io = Code("io")
        /// Another open ``Spool`` (in this or another process) holds the directory's `.lock`.
        public static let locked = Code("locked")
        /// The directory layout is unusable: a missing parent, a subfolder that is not a directory, or
        /// subfolders on different devices (hard links cannot cross file systems).
        public static let layout = Code("layout")
        /// The record was refused before anything touched the disk: a malformed id, or bytes that do not
        /// inspect to the record's own id and fingerprint.
        public static let invalidRecord = Code("invalidRecord")
        /// The spool found a state that only startup recovery repairs (a published record without a
        /// ledger entry); restarting fixes it.
        public static let inconsistent = Code("inconsistent")
        /// The ``Spool`` was closed; open a new one.
        public static let closed = Code("closed")
        /// A directory fsync failed earlier, so the spool no longer knows which names in it are durable; it
        /// refuses every store and probe until it is closed and opened again, which runs recovery
        /// (docs/durability.md §6, rule 2). See ``Spool/isHealthy``.
        public static let unhealthy = Code("unhealthy")
        /// The spool's file system has less free space than the configured minimum
        /// (`minimumFreeBytes`); nothing was written. Stores work again once space is freed.
        public static let noSpace = Code("noSpace")
        /// A folder the spool writes in (tmp/, new/, ids/, conflicts/, corrupt/) does not let it create files:
        /// wrong owner or mode (after a restore as another user), a read-only mount, an immutable flag. `errno`
        /// says which (`EACCES`, `EROFS`, `EPERM`). Opening refuses it; ``Spool/probe()`` reports it.
        public static let notWritable = Code("notWritable")
        /// An argument outside its range (e.g. a negative retention); nothing was written.
        public static let invalidArgument = Code("invalidArgument")
    }

    /// The kind of failure.
    public let code: Code
    /// One sentence naming the operation, the path relative to the spool, and the errno text when there is one.
    public let message: String
    /// The `errno` of the failed call, when a system call failed.
    public let errno: CInt?

    /// Creates an error.
    public init(code: Code, message: String, errno: CInt? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    public var description: String { message }

    /// "`operation` `path`: `errno text`", code `.io`.
    static func io(_ operation: String, _ path: String, _ error: SpoolErrno, code: Code = .io) -> SpoolError {
        SpoolError(code: code, message: "\(operation) \(path): \(error)", errno: error.rawValue)
    }
}
