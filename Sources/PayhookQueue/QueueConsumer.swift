import Foundation
import Glibc
import Logging
import PayhookSpoolFormat
import Synchronization

/// How `consume` runs.
public struct QueueConsumeOptions: Sendable {
    /// The command, run as `/bin/sh -c COMMAND` once per event.
    public var command: String
    /// Events processed at once, each by its own worker thread.
    public var concurrency = 1
    /// After this many failed attempts an event goes to dead/.
    public var maxAttempts = 5
    /// The wait after the first failure, in seconds; it doubles with each further failure.
    public var backoff: Double = 1
    /// The longest wait between attempts, in seconds.
    public var maxBackoff: Double = 300
    /// A command still running after this many seconds gets SIGTERM (SIGKILL 5 s later) and counts as failed.
    public var commandTimeout: Double?
    /// On stop, how long commands in flight may still run before they are killed and their events returned.
    public var grace: Double = 30
    /// Exit once new/ is empty instead of waiting for more.
    public var drain = false
    /// The shell that runs the command.
    public var shell = "/bin/sh"
    /// Pass the command's stderr through to ours (it is kept for the dead-letter record either way).
    public var forwardStderr = true
    /// How much of the command's stderr to keep for `last_error.stderr_tail`.
    public var stderrTailBytes = 4096

    /// Options for `command` with the defaults.
    public init(command: String) {
        self.command = command
    }

    /// The wait before the next attempt after `failures` failures: backoff × 2^(failures−1), at most maxBackoff.
    public func delay(afterFailures failures: Int) -> Double {
        let exponent = Double(max(0, min(failures - 1, 62)))
        return min(maxBackoff, backoff * pow(2, exponent))
    }
}

/// What a `consume` run did.
public struct QueueConsumeSummary: Sendable, Equatable {
    /// Events whose command exited 0, acknowledged.
    public var acknowledged = 0
    /// Events moved to dead/.
    public var deadLettered = 0
    /// Events returned to new/ because the worker stopped first.
    public var released = 0
    /// Failed attempts.
    public var failures = 0
    /// Files moved to corrupt/.
    public var quarantined = 0

    /// An empty summary.
    public init() {}
}

/// The long-running worker behind `payhook queue consume --exec CMD`.
///
/// It takes events one at a time per worker thread (`concurrency` threads), runs the command with the event
/// on stdin, acknowledges on exit 0, retries a failure after an exponential backoff (the event stays in cur/
/// meanwhile, so events keep their order per worker), and after `maxAttempts` failures moves it to dead/.
/// Between events it waits with inotify(7). Only one `consume` runs per spool: it holds `.consume.lock`.
public final class QueueConsumer: Sendable {
    /// The spool.
    public let directory: QueueDirectory
    /// How it runs.
    public let options: QueueConsumeOptions
    private let logger: Logger
    private let stop: QueueStopSignal
    private let tally = Mutex(QueueConsumeSummary())
    private let failure = Mutex<QueueError?>(nil)

    /// Creates a consumer; ``run()`` starts it. `stop` ends it: triggered, it stops taking events and lets
    /// the commands in flight finish within `grace`; hurried, it kills them at once.
    public init(directory: QueueDirectory, options: QueueConsumeOptions, logger: Logger, stop: QueueStopSignal) {
        self.directory = directory
        self.options = options
        self.logger = logger
        self.stop = stop
    }

    /// Runs until `stop` is triggered (or, with `drain`, until new/ is empty), then returns what it did.
    /// Throws `.busy` when another `consume` holds the spool, or the first error that stopped a worker.
    public func run() throws(QueueError) -> QueueConsumeSummary {
        guard options.concurrency >= 1, options.maxAttempts >= 1, options.backoff >= 0, options.maxBackoff >= 0 else {
            throw QueueError(.invalidArgument, "consume needs concurrency and max attempts of at least 1 and backoffs of 0 or more")
        }
        let lock = try QueueConsumeLock(directory)
        defer { lock.release() }
        logger.info(
            "consuming \(directory.root) with \(options.concurrency) worker\(options.concurrency == 1 ? "" : "s")",
            metadata: ["spool": "\(directory.root)"]
        )
        let group = DispatchGroup()
        for index in 0..<options.concurrency {
            group.enter()
            let thread = Thread { [self] in
                defer { group.leave() }
                do throws(QueueError) {
                    try work(index)
                } catch {
                    failure.withLock { if $0 == nil { $0 = error } }
                    logger.error("worker \(index) stopped: \(error)", metadata: ["spool": "\(directory.root)"])
                    // One worker's file-system error stops the others too: a spool that fails for one
                    // fails for all.
                    stop.trigger()
                }
            }
            thread.start()
        }
        group.wait()
        if let error = failure.withLock({ $0 }) { throw error }
        let summary = tally.withLock { $0 }
        let line = "stopped: \(summary.acknowledged) acknowledged, \(summary.failures) failed attempts, "
            + "\(summary.deadLettered) dead-lettered, \(summary.released) returned to new/"
        logger.info("\(line)", metadata: ["spool": "\(directory.root)"])
        return summary
    }

    private func work(_ index: Int) throws(QueueError) {
        // Watch before the first listing (see QueueDirectory.take).
        let watcher = try QueueWatcher(directory.path("new"), shown: "new/")
        while !stop.isTriggered {
            let result = try directory.takeOnce()
            for moved in result.quarantined {
                tally.withLock { $0.quarantined += 1 }
                logger.error("\(moved)", metadata: ["spool": "\(directory.root)"])
            }
            guard let entry = result.entry else {
                if options.drain { return }
                _ = try watcher.wait(timeout: nil, stop: stop)
                continue
            }
            try process(entry)
        }
    }

    /// Runs the command for one taken event until it is acknowledged, dead-lettered or released.
    private func process(_ entry: QueueEntry) throws(QueueError) {
        let id = entry.id
        // The id is in every message; the spool in the metadata.
        let metadata: Logger.Metadata = ["spool": "\(directory.root)"]
        // While the event is in hand its file is flock(2)ed: `requeue` leaves locked entries alone, and the
        // kernel drops the lock when this process dies, kill -9 included, which makes exactly the events of a
        // dead worker requeueable. The descriptor is close-on-exec, so the command does not inherit the lock.
        // O_NOFOLLOW and O_NONBLOCK: should the name have been replaced since the take read it, a symbolic
        // link is not followed and a FIFO does not block the open (open(2), fifo(7)).
        let lockDescriptor = open(entry.path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        if lockDescriptor >= 0 { _ = flock(lockDescriptor, LOCK_EX | LOCK_NB) }
        defer { if lockDescriptor >= 0 { close(lockDescriptor) } }

        var failures = entry.attempts
        while true {
            let attempt = failures + 1
            logger.info("running attempt \(attempt) of \(id)", metadata: metadata)
            let outcome = QueueCommandRunner.run(request(for: entry, attempt: attempt), stop: stop)
            if outcome.interrupted {
                try settle(id, metadata) { () throws(QueueError) in try directory.release(id) }
                tally.withLock { $0.released += 1 }
                logger.notice("stopping: \(id) returned to new/ unprocessed (its command was killed)", metadata: metadata)
                return
            }
            if outcome.succeeded {
                try settle(id, metadata) { () throws(QueueError) in try directory.ack(id) }
                tally.withLock { $0.acknowledged += 1 }
                logger.info("acknowledged \(id)", metadata: metadata)
                return
            }
            let failure = QueueFailure(
                reason: outcome.reason(timeout: options.commandTimeout),
                exitStatus: { if case .exited(let status) = outcome.end { return status } else { return nil } }(),
                signal: { if case .signaled(let signal) = outcome.end { return signal } else { return nil } }(),
                stderrTail: outcome.stderrTail,
                command: options.command
            )
            let record = try directory.recordFailure(id, failure)
            failures = record.attempts
            tally.withLock { $0.failures += 1 }
            if failures >= options.maxAttempts {
                try settle(id, metadata) { () throws(QueueError) in try directory.deadLetter(id, record: record) }
                tally.withLock { $0.deadLettered += 1 }
                logger.error(
                    "\(id) moved to dead/ after \(failures) failed attempts; last: \(failure.reason)", metadata: metadata)
                return
            }
            let delay = options.delay(afterFailures: failures)
            if !stop.isTriggered {
                logger.warning(
                    "attempt \(attempt) of \(id) failed (\(failure.reason)); retrying in \(QueueTime.formatDuration(delay))",
                    metadata: metadata
                )
            }
            if stop.sleep(delay) {
                try settle(id, metadata) { () throws(QueueError) in try directory.release(id) }
                tally.withLock { $0.released += 1 }
                logger.notice(
                    "stopping: \(id) returned to new/ after \(failures) failed attempt\(failures == 1 ? "" : "s")",
                    metadata: metadata)
                return
            }
        }
    }

    /// Runs a final step for an event. When the event is no longer where this worker left it (someone ran
    /// `ack` or `requeue --older-than` by hand), that is logged and the worker goes on; so is a file replaced
    /// meanwhile by something that is not an event file (moved to corrupt/ by the step); any other error
    /// stops it.
    private func settle(_ id: String, _ metadata: Logger.Metadata, _ step: () throws(QueueError) -> Void) throws(QueueError) {
        do {
            try step()
        } catch {
            if error.kind == .corrupt {
                tally.withLock { $0.quarantined += 1 }
                logger.error("\(error)", metadata: metadata)
                return
            }
            guard error.kind == .wrongState || error.kind == .unknownEvent else { throw error }
            logger.warning("\(error)", metadata: metadata)
        }
    }

    private func request(for entry: QueueEntry, attempt: Int) -> QueueCommandRunner.Request {
        var environment = ProcessInfo.processInfo.environment
        environment["PAYHOOK_EVENT_ID"] = entry.id
        environment["PAYHOOK_EVENT_PATH"] = Self.absolute(entry.path)
        environment["PAYHOOK_EVENT_ATTEMPT"] = String(attempt)
        environment["PAYHOOK_MAX_ATTEMPTS"] = String(options.maxAttempts)
        environment["PAYHOOK_SPOOL"] = Self.absolute(directory.root)
        return QueueCommandRunner.Request(
            shell: options.shell,
            command: options.command,
            inputPath: entry.path,
            environment: environment.map { "\($0.key)=\($0.value)" }.sorted(),
            timeout: options.commandTimeout,
            grace: options.grace,
            tailLimit: options.stderrTailBytes,
            forwardStderr: options.forwardStderr
        )
    }

    /// Marks every descriptor this process inherited (3 and above) close-on-exec, so that commands started
    /// later get only stdin, stdout and stderr. Without this a descriptor the worker's own parent passed down,
    /// such as the socket a supervisor watches to learn that the worker exited, would live on in every command
    /// and in whatever a command leaves running, and the supervisor would not see the worker die. Call once at
    /// start-up, before any thread exists; the worker itself keeps using those descriptors.
    public static func keepInheritedDescriptorsFromCommands() {
        guard let entries = try? SpoolPosix.readDirectory("/proc/self/fd") else { return }
        for entry in entries {
            guard let fd = entry.name.string.flatMap({ Int32($0) }), fd > 2 else { continue }
            let flags = fcntl(fd, F_GETFD)
            if flags >= 0 { _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
        }
    }

    /// `path` made absolute against the working directory, so the command may change directory.
    static func absolute(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        return FileManager.default.currentDirectoryPath + "/" + path
    }
}

/// `.consume.lock` in the spool: flock(2)ed by the one `consume` worker allowed per spool, with its pid inside
/// for the refusal message. The server's `.lock` is never touched. The file stays after release: removing a
/// lock file races with a newcomer that has just opened it and would lock a name no one else sees.
final class QueueConsumeLock {
    private let fd: Int32

    init(_ directory: QueueDirectory) throws(QueueError) {
        let path = directory.path(".consume.lock")
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
        _ = flock(fd, LOCK_UN)
        close(fd)
    }

    /// The pid recorded in the lock file, when it can be read.
    private static func holder(_ path: String) -> Int32? {
        guard case .bytes(let bytes)? = try? SpoolPosix.readRegular(path, limit: 64) else { return nil }
        return Int32(String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
