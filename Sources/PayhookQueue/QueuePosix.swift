import Glibc
import PayhookSpoolFormat

/// What the queue's process-level code (running commands, waiting) needs beyond the spool's file calls, which
/// are PayhookSpoolFormat's `SpoolPosix`: one POSIX layer for the server and the queue tools alike.
enum Posix {
    static func describe(_ code: Int32) -> String {
        SpoolErrno(code).description
    }

    /// A spool file opened for reading as every reader opens it (`SpoolPosix.openRegular`).
    static func openRegular(_ path: String, limit: Int64) throws(SpoolErrno) -> SpoolOpenedFile {
        try SpoolPosix.openRegular(path, limit: limit)
    }

    /// The file of a descriptor opened by `openRegular` made blocking again, for a reader that does not expect
    /// O_NONBLOCK (a consumer's command reading it as stdin).
    static func clearNonBlocking(_ fd: Int32) {
        SpoolPosix.clearNonBlocking(fd)
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

extension SpoolErrno {
    /// The raw errno, as the queue's callers read it.
    var code: Int32 { rawValue }
}
