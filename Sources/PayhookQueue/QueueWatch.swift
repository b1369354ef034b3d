import CPayhookShim
import Foundation
import Glibc
public import PayhookStore
import Synchronization

/// Tells waiting queue operations to stop: a `take --wait`, a `consume` worker between events, a backoff
/// sleep. Triggering is one-way. A second level, ``hurry()``, tells `consume` to stop waiting for commands in
/// flight too (a second SIGTERM).
///
/// Each level is a pipe whose read end becomes readable when triggered and stays so, so that any number of
/// threads can include it in poll(2) next to their own descriptors.
public final class QueueStopSignal: QueueStop {
    private let stopPipe: (read: Int32, write: Int32)
    private let hurryPipe: (read: Int32, write: Int32)
    private let level = Atomic<Int>(0)

    /// Creates an untriggered signal.
    public init() throws(QueueError) {
        stopPipe = try Self.makePipe()
        do {
            hurryPipe = try Self.makePipe()
        } catch {
            close(stopPipe.read)
            close(stopPipe.write)
            throw error
        }
    }

    private static func makePipe() throws(QueueError) -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        guard payhook_pipe2(&fds, O_CLOEXEC | O_NONBLOCK) == 0 else { throw QueueError.io("create", "a pipe", errno) }
        return (fds[0], fds[1])
    }

    deinit {
        for fd in [stopPipe.read, stopPipe.write, hurryPipe.read, hurryPipe.write] { close(fd) }
    }

    /// Asks every waiter to stop. Async-signal-safe in effect (an atomic and a write(2)), but meant to be
    /// called from a thread that took the signal with sigwait(3).
    public func trigger() {
        var one: UInt8 = 1
        if level.compareExchange(expected: 0, desired: 1, ordering: .sequentiallyConsistent).exchanged {
            _ = write(stopPipe.write, &one, 1)
        }
    }

    /// Stops at once: like ``trigger()``, and commands in flight are not waited for either.
    public func hurry() {
        trigger()
        var one: UInt8 = 1
        if level.compareExchange(expected: 1, desired: 2, ordering: .sequentiallyConsistent).exchanged {
            _ = write(hurryPipe.write, &one, 1)
        }
    }

    /// Whether ``trigger()`` (or ``hurry()``) was called.
    public var isTriggered: Bool { level.load(ordering: .sequentiallyConsistent) >= 1 }
    /// Whether ``hurry()`` was called.
    public var isHurried: Bool { level.load(ordering: .sequentiallyConsistent) >= 2 }

    var stopDescriptor: Int32 { stopPipe.read }
    /// The stop level's read end, readable once triggered (``QueueStop``).
    public var triggerDescriptor: Int32 { stopPipe.read }
    var hurryDescriptor: Int32 { hurryPipe.read }

    /// Sleeps `seconds`, or less if triggered meanwhile. Returns true when triggered.
    public func sleep(_ seconds: Double) -> Bool {
        if isTriggered { return true }
        var fds = [pollfd(fd: stopDescriptor, events: Int16(POLLIN), revents: 0)]
        let deadline = Date().addingTimeInterval(seconds)
        while !isTriggered {
            let remaining = deadline.timeIntervalSinceNow
            if remaining <= 0 { break }
            _ = Posix.poll(&fds, timeout: Posix.milliseconds(remaining))
        }
        return isTriggered
    }
}

/// Waits for names to appear in a folder with inotify(7), instead of polling it.
///
/// The events watched are the three ways an event file can appear in new/: IN_CREATE (the server publishes
/// with link(2), which inotify(7) reports as IN_CREATE, as it does open(2) with O_CREAT), IN_MOVED_TO (a
/// rename into the folder: nack, requeue, revive, or another writer's tmp-then-rename) and IN_CLOSE_WRITE (a
/// writer that creates the file in place and closes it once written). Whatever arrives, the caller lists the
/// folder again; the notification only ends the wait.
final class QueueWatcher {
    private let fd: Int32
    private let shown: String

    /// Starts watching `directory` (shown in messages as `shown`). Set this up before listing the folder.
    init(_ directory: String, shown: String) throws(QueueError) {
        let fd = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        guard fd >= 0 else { throw QueueError.io("inotify_init1 for", shown, errno) }
        let mask = UInt32(IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE | IN_ONLYDIR)
        guard inotify_add_watch(fd, directory, mask) >= 0 else {
            let code = errno
            close(fd)
            throw QueueError.io("watch", shown, code)
        }
        self.fd = fd
        self.shown = shown
    }

    deinit {
        close(fd)
    }

    enum Wake: Equatable {
        case changed, timedOut, stopped
    }

    /// Blocks until something appears in the folder, `timeout` seconds pass (nil: no limit) or `stop` is
    /// triggered. The notifications read are discarded.
    func wait(timeout: Double?, stop: (any QueueStop)?) throws(QueueError) -> Wake {
        var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
        if let stop { fds.append(pollfd(fd: stop.triggerDescriptor, events: Int16(POLLIN), revents: 0)) }
        if stop?.isTriggered == true { return .stopped }
        let ready = Posix.poll(&fds, timeout: Posix.milliseconds(timeout))
        if ready < 0 { throw QueueError.io("poll", shown, errno) }
        if stop?.isTriggered == true { return .stopped }
        if fds[0].revents == 0 { return .timedOut }
        try drain()
        return .changed
    }

    /// Reads every pending notification. IN_IGNORED means the watch is gone (the folder was removed or its
    /// file system unmounted): waiting on would never end.
    private func drain() throws(QueueError) {
        var buffer = [UInt8](repeating: 0, count: 8192)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { return }
                throw QueueError.io("read inotify events for", shown, errno)
            }
            if count == 0 { return }
            // struct inotify_event: int wd; uint32_t mask, cookie, len; char name[len].
            var offset = 0
            while offset + 16 <= count {
                let mask = buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self) }
                let length = buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self) }
                if mask & UInt32(IN_IGNORED) != 0 {
                    throw QueueError(.noSpool, "\(shown) was removed while waiting for events")
                }
                offset += 16 + Int(length)
            }
        }
    }
}
