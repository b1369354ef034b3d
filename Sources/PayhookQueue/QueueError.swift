/// An error from a queue operation: one sentence that names the spool file or event id concerned.
///
/// Every kind maps to exit status 1 on the command line ("bad input or failed check"); the kind lets
/// callers and tests tell the cases apart without matching on the text.
public struct QueueError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, broadly.
    public enum Kind: String, Sendable, Equatable {
        /// The spool directory does not exist or is not a payhook spool.
        case noSpool
        /// No event with this id in new/, cur/ or dead/.
        case unknownEvent
        /// The event exists, but not where the operation needs it (e.g. `ack` of an event still in new/).
        case wrongState
        /// The event file is not a valid event; it was moved to corrupt/.
        case corrupt
        /// Another `consume` worker holds the spool's consume lock.
        case busy
        /// A value given to an operation is not acceptable (checked again here, not only by the CLI).
        case invalidArgument
        /// A file the server keeps in the spool for the queue tools (`.retention`) is not in the form it
        /// writes; the tools refuse to guess.
        case malformedSpoolFile
        /// A system call failed.
        case io
    }

    /// What went wrong, broadly.
    public let kind: Kind
    /// One sentence naming the file or id.
    public let message: String
    /// The errno behind an `.io` error, when there is one.
    public let errno: Int32?

    /// Creates an error; `message` should be one sentence naming the file or id.
    public init(_ kind: Kind, _ message: String, errno: Int32? = nil) {
        self.kind = kind
        self.message = message
        self.errno = errno
    }

    /// The message.
    public var description: String { message }

    /// "<operation> <path>: <strerror>" for a failed system call.
    static func io(_ operation: String, _ path: String, _ code: Int32) -> QueueError {
        QueueError(.io, "\(operation) \(path): \(Posix.describe(code))", errno: code)
    }
}
