import Foundation
import Glibc
public import Logging
import PayhookSpoolFormat
public import PayhookStore
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

/// What a running `consume` has done so far and is doing now, for its metrics (`--metrics-listen`,
/// docs/metrics.md).
public struct QueueConsumeProgress: Sendable, Equatable {
    /// The counts so far, as ``QueueConsumer/run()`` returns them at the end.
    public var summary = QueueConsumeSummary()
    /// By worker (0, 1, …): the attempt the worker is on (1 on an event's first try, counting earlier failures),
    /// from the start of its command until the event is acknowledged, dead-lettered or returned (during a
    /// backoff, the attempt that failed); 0 while it holds no event.
    public var attempts: [Int]
    /// When the last event was acknowledged, in Unix seconds; nil before the first.
    public var lastSuccess: Double?

    /// Nothing done yet, `workers` idle workers.
    public init(workers: Int) {
        attempts = Array(repeating: 0, count: max(0, workers))
    }

    /// Counts an event's end and frees its worker in one step, so that no scrape sees the event counted while
    /// its worker still shows an attempt.
    mutating func finish(_ worker: Int, _ count: (inout QueueConsumeSummary) -> Void) {
        count(&summary)
        if attempts.indices.contains(worker) { attempts[worker] = 0 }
    }
}

/// The long-running worker behind `payhook queue consume --exec CMD`.
///
/// It takes events one at a time per worker thread (`concurrency` threads), runs the command with the event
/// on stdin, acknowledges on exit 0, retries a failure after an exponential backoff (the event stays taken
/// meanwhile, so events keep their order per worker), and after `maxAttempts` failures makes it a dead letter.
/// Between events it waits in ``EventQueue/take(wait:timeout:stop:)`` (for the spool, with inotify(7)). Only one
/// `consume` runs per queue (``EventQueue/lockConsumer()``; for the spool, `.consume.lock`).
///
/// It talks to its queue only through ``EventQueue``, so it runs the same over any backend.
public final class QueueConsumer: Sendable {
    /// The queue.
    public let queue: any EventQueue
    /// How it runs.
    public let options: QueueConsumeOptions
    private let logger: Logger
    private let stop: QueueStopSignal
    private let tally: Mutex<QueueConsumeProgress>
    private let failure = Mutex<QueueError?>(nil)

    /// Creates a consumer; ``run()`` starts it. `stop` ends it: triggered, it stops taking events and lets
    /// the commands in flight finish within `grace`; hurried, it kills them at once.
    public init(queue: any EventQueue, options: QueueConsumeOptions, logger: Logger, stop: QueueStopSignal) {
        self.queue = queue
        self.options = options
        self.logger = logger
        self.stop = stop
        tally = Mutex(QueueConsumeProgress(workers: options.concurrency))
    }

    /// What it has done so far and each worker's attempt now; read from any thread.
    public var progress: QueueConsumeProgress {
        tally.withLock { $0 }
    }

    /// A consumer of the spool `directory`.
    public convenience init(directory: QueueDirectory, options: QueueConsumeOptions, logger: Logger, stop: QueueStopSignal) {
        self.init(queue: directory, options: options, logger: logger, stop: stop)
    }

    /// Runs until `stop` is triggered (or, with `drain`, until new/ is empty), then returns what it did.
    /// Throws `.busy` when another `consume` holds the spool, or the first error that stopped a worker.
    public func run() throws(QueueError) -> QueueConsumeSummary {
        guard options.concurrency >= 1, options.maxAttempts >= 1, options.backoff >= 0, options.maxBackoff >= 0 else {
            throw QueueError(.invalidArgument, "consume needs concurrency and max attempts of at least 1 and backoffs of 0 or more")
        }
        let lock = try queue.lockConsumer()
        defer { lock.release() }
        logger.info(
            "consuming \(queue.name) with \(options.concurrency) worker\(options.concurrency == 1 ? "" : "s")",
            metadata: ["spool": "\(queue.name)"]
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
                    logger.error("worker \(index) stopped: \(error)", metadata: ["spool": "\(queue.name)"])
                    // One worker's file-system error stops the others too: a spool that fails for one
                    // fails for all.
                    stop.trigger()
                }
            }
            thread.start()
        }
        group.wait()
        if let error = failure.withLock({ $0 }) { throw error }
        let summary = tally.withLock { $0.summary }
        let line = "stopped: \(summary.acknowledged) acknowledged, \(summary.failures) failed attempts, "
            + "\(summary.deadLettered) dead-lettered, \(summary.released) returned to new/"
        logger.info("\(line)", metadata: ["spool": "\(queue.name)"])
        return summary
    }

    private func work(_ index: Int) throws(QueueError) {
        while !stop.isTriggered {
            // Without drain, the take waits for an event (or the stop); with it, an empty queue ends the worker.
            let result = try queue.take(wait: !options.drain, timeout: nil, stop: stop)
            for moved in result.quarantined {
                tally.withLock { $0.summary.quarantined += 1 }
                logger.error("\(moved)", metadata: ["spool": "\(queue.name)"])
            }
            guard let entry = result.entry else {
                if result.outcome == .empty { return }
                continue
            }
            try process(entry, worker: index)
        }
    }

    /// Runs the command for one taken event until it is acknowledged, dead-lettered or released.
    private func process(_ entry: QueueEntry, worker: Int) throws(QueueError) {
        let id = entry.id
        // The id is in every message, and with the queue and the attempt in the metadata (numbers as numbers in
        // JSON logs).
        var metadata: Logger.Metadata = ["spool": "\(queue.name)", "event.id": "\(id)", "worker": .stringConvertible(worker)]
        defer { tally.withLock { $0.attempts[worker] = 0 } }
        // While the event is in hand the queue knows it is (for the spool, its file is flock(2)ed, QueueEventHold):
        // `requeue` leaves it alone however long the command runs, and not once this process is gone.
        let hold = queue.hold(entry)
        defer { hold?.release() }

        var failures = entry.attempts
        while true {
            let attempt = failures + 1
            metadata["attempt"] = .stringConvertible(attempt)
            tally.withLock { $0.attempts[worker] = attempt }
            logger.info("running attempt \(attempt) of \(id)", metadata: metadata)
            let outcome = QueueCommandRunner.run(request(for: entry, attempt: attempt), stop: stop)
            if outcome.interrupted {
                try settle(id, metadata) { () throws(QueueError) in try queue.release(id) }
                tally.withLock { $0.finish(worker) { $0.released += 1 } }
                logger.notice("stopping: \(id) returned to new/ unprocessed (its command was killed)", metadata: metadata)
                return
            }
            if outcome.succeeded {
                try settle(id, metadata) { () throws(QueueError) in try queue.ack(id) }
                let now = Date().timeIntervalSince1970
                tally.withLock {
                    $0.finish(worker) { $0.acknowledged += 1 }
                    $0.lastSuccess = now
                }
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
            let record = try queue.recordFailure(id, failure)
            failures = record.attempts
            tally.withLock { $0.summary.failures += 1 }
            if failures >= options.maxAttempts {
                try settle(id, metadata) { () throws(QueueError) in try queue.deadLetter(id, record: record) }
                tally.withLock { $0.finish(worker) { $0.deadLettered += 1 } }
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
                try settle(id, metadata) { () throws(QueueError) in try queue.release(id) }
                tally.withLock { $0.finish(worker) { $0.released += 1 } }
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
                tally.withLock { $0.summary.quarantined += 1 }
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
        // PAYHOOK_SPOOL is a directory a command may rely on: only the spool has one. Over another backend (the
        // database) it is not set, not even as inherited, and PAYHOOK_QUEUE names the queue for every backend.
        if let directory = queue as? QueueDirectory {
            environment["PAYHOOK_SPOOL"] = Self.absolute(directory.root)
        } else {
            environment["PAYHOOK_SPOOL"] = nil
        }
        environment["PAYHOOK_QUEUE"] = queue is QueueDirectory ? Self.absolute(queue.name) : queue.name
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
