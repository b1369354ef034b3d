public import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Whether a child `Process` has exited, and how, found with waitpid(2) rather than Foundation's own watch.
///
/// In the test process Foundation sometimes never learns that a child exited (the child stays a zombie and
/// `waitUntilExit()` waits forever; seen with `runuser … pg_ctl start` from the live suites), so the helpers
/// that run commands reap their children themselves. Whoever reaps first wins: when Foundation did, its own
/// `isRunning` and `terminationStatus` are read instead.
public final class ChildExit: @unchecked Sendable {
    private let process: Process
    private let lock = NSLock()
    private var status: Int32?

    public init(_ process: Process) { self.process = process }

    /// The exit status (128 + the signal's number for a signalled child), or nil while it runs.
    public func poll() -> Int32? {
        lock.lock()
        defer { lock.unlock() }
        if let status { return status }
        var raw: Int32 = 0
        let pid = process.processIdentifier
        let reaped = waitpid(pid, &raw, WNOHANG)
        if reaped == pid {
            let signal = raw & 0x7f
            status = signal == 0 ? (raw >> 8) & 0xff : 128 + signal
        } else if reaped < 0 && errno == ECHILD && !process.isRunning {
            status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        }
        return status
    }

    public var isRunning: Bool { poll() == nil }

    /// Waits up to `timeout` for the exit; its status, or nil if it still runs.
    @discardableResult
    public func wait(timeout: Duration) -> Int32? {
        _ = waitUntil(timeout: timeout) { poll() != nil }
        return poll()
    }
}
