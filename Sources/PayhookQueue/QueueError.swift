import PayhookSpoolFormat
import PayhookStore

extension QueueError {
    /// "<operation> <path>: <strerror>" for a failed system call.
    static func io(_ operation: String, _ path: String, _ code: Int32) -> QueueError {
        QueueError(.io, "\(operation) \(path): \(Posix.describe(code))", errno: code)
    }
}
