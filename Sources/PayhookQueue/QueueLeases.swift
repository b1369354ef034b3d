import Foundation
import Glibc
import PayhookSpoolFormat
public import PayhookStore
import Synchronization

extension QueueDirectory: EventQueue {
    /// The spool directory.
    public var name: String { root }

    /// "<spool>/new/", "<spool>/cur/", "<spool>/dead/".
    public func describe(_ location: QueueLocation) -> String {
        "\(root)/\(location.rawValue)/"
    }

    /// ``serverRetention()``, recorded in `<spool>/.retention`.
    public func retention() throws(QueueError) -> QueueRetention? {
        try serverRetention().map { QueueRetention(seconds: $0, source: path(Self.retentionFile)) }
    }

    /// Takes `.consume.lock` (``QueueConsumeLock``).
    public func lockConsumer() throws(QueueError) -> any QueueLease {
        try QueueConsumeLock(self)
    }

    /// flock(2)s the taken event's file (``QueueEventHold``), which ``requeue(olderThan:now:)`` tests.
    public func hold(_ entry: QueueEntry) -> (any QueueLease)? {
        QueueEventHold(entry.path)
    }
}

/// A worker's hold on the event in its hands: its file in cur/, flock(2)ed. `requeue` leaves locked entries alone,
/// and the kernel drops the lock when this process dies, kill -9 included, which makes exactly the events of a
/// dead worker requeueable. The descriptor is close-on-exec, so the command does not inherit the lock. O_NOFOLLOW
/// and O_NONBLOCK: should the name have been replaced since the take read it, a symbolic link is not followed and
/// a FIFO does not block the open (open(2), fifo(7)).
final class QueueEventHold: QueueLease {
    private let fd: Int32
    private let released = Atomic<Bool>(false)

    init?(_ path: String) {
        guard let fd = try? SpoolPosix.open(path, flags: O_RDONLY | O_NOFOLLOW | O_NONBLOCK) else { return nil }
        _ = flock(fd, LOCK_EX | LOCK_NB)
        self.fd = fd
    }

    func release() {
        guard !released.exchange(true, ordering: .acquiringAndReleasing) else { return }
        SpoolPosix.close(fd)
    }

    deinit {
        release()
    }
}

/// `.consume.lock` in the spool: flock(2)ed by the one `consume` worker allowed per spool, with its pid inside
/// for the refusal message. The server's `.lock` is never touched. The file stays after release: removing a
/// lock file races with a newcomer that has just opened it and would lock a name no one else sees.
final class QueueConsumeLock: QueueLease {
    private let fd: Int32
    private let released = Atomic<Bool>(false)

    init(_ directory: QueueDirectory) throws(QueueError) {
        let path = directory.path(SpoolFormat.consumeLockFile)
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw QueueError.io("open", "\(directory.root)/.consume.lock", errno) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            close(fd)
            guard code == EWOULDBLOCK else { throw QueueError.io("lock", "\(directory.root)/.consume.lock", code) }
            let holder = Self.holder(path).map { "pid \($0)" } ?? "pid unknown"
            throw QueueError(
                .busy,
                "spool \(directory.root) already has a consume worker (\(holder), holding .consume.lock); "
                    + "run one per spool and raise its --concurrency instead"
            )
        }
        let text = Array("\(getpid())\n".utf8)
        let written = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if written >= 0 { _ = ftruncate(fd, off_t(written)) }
        self.fd = fd
    }

    func release() {
        guard !released.exchange(true, ordering: .acquiringAndReleasing) else { return }
        _ = flock(fd, LOCK_UN)
        close(fd)
    }

    /// The pid recorded in the lock file, when it can be read.
    private static func holder(_ path: String) -> Int32? {
        guard case .bytes(let bytes)? = try? SpoolPosix.readRegular(path, limit: 64) else { return nil }
        return Int32(String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
