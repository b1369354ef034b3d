import ArgumentParser
import Foundation
import PayhookQueue
import PayhookStore

/// `payhook queue take`: claim the oldest waiting event.
struct QueueTake: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "take",
        abstract: "Claim the oldest event in new/ (rename into cur/) and print it.",
        discussion: """
            The event is yours once printed: process it, then `ack` it (or `nack` it to retry later). Exit 1 when \
            nothing is waiting, when --timeout passes first, or when SIGTERM/SIGINT arrives while waiting \
            (with --allow-empty: exit 0 and no output); nothing is claimed then. A file found not to be a \
            valid event on the way is moved to corrupt/ and named on stderr; if an event was still taken, the \
            exit status is 0.
            """
    )

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case json, id, path
    }

    @OptionGroup var spool: QueueSpoolOption

    @Flag(name: .long, help: "Block until an event arrives (inotify, no polling).")
    var wait = false

    @Option(name: .long, help: ArgumentHelp("Wait at most this long (implies --wait), e.g. 30s, 5m.", valueName: "duration"), transform: QueueDuration.parse)
    var timeout: QueueDuration?

    @Option(name: .long, help: "What to print: json (the event file as stored), id, or path (its file in cur/).")
    var format: Format = .json

    @Flag(name: .customLong("allow-empty"), help: "When no event is taken (nothing waiting, timeout, signal), print nothing and exit 0 instead of 1.")
    var allowEmpty = false

    func run() throws {
        // With a database, the printed path is a file of this process's own (docs/consumers.md): keep it.
        let queue = try spool.open(keepTakenFiles: format == .path)
        let waiting = wait || timeout != nil
        var stop: QueueStopSignal?
        if waiting {
            let signal = try QueueCLI.attempt(QueueStopSignal())
            QueueCLI.handleStopSignals(signal)
            stop = signal
        }
        let result = try QueueCLI.attempt(queue.take(wait: waiting, timeout: timeout?.seconds, stop: stop))
        QueueCLI.report(result.quarantined)
        guard let entry = result.entry else {
            // Scripts that wait in a loop tell "nothing yet" (exit 0, no output) from a real error (exit 1).
            if allowEmpty { return }
            switch result.outcome {
            case .timedOut:
                Output.err("error: no event arrived in \(queue.describe(.new)) within \(timeout?.text ?? "the timeout")")
            case .stopped:
                Output.err("error: stopped by a signal before an event arrived in \(queue.describe(.new))")
            case .empty, .taken:
                Output.err("error: no event waiting in \(queue.describe(.new))")
            }
            throw ExitCode(1)
        }
        switch format {
        case .json:
            var bytes = entry.event.bytes
            if bytes.last != UInt8(ascii: "\n") { bytes.append(UInt8(ascii: "\n")) }
            FileHandle.standardOutput.write(Data(bytes))
        case .id:
            Output.out(entry.id)
        case .path:
            Output.out(entry.path)
        }
    }
}

/// `payhook queue ack ID`.
struct QueueAck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ack",
        abstract: "Acknowledge a taken event: delete it from cur/ (ids/ keeps its dedupe key).",
        discussion: "Exit 1 when the event is not in cur/ (still waiting in new/, a dead letter, or unknown)."
    )

    @OptionGroup var spool: QueueSpoolOption

    @OptionGroup var event: QueueEventID
    var id: String { event.id }

    func run() throws {
        let queue = try spool.open()
        try QueueCLI.attempt(queue.ack(id))
        Output.out("acknowledged \(id)")
    }
}

/// `payhook queue nack ID`.
struct QueueNack: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nack",
        abstract: "Return a taken event to new/ and count a failed attempt.",
        discussion: "Exit 1 when the event is not in cur/."
    )

    @OptionGroup var spool: QueueSpoolOption

    @Option(name: .long, help: ArgumentHelp("Why, recorded as the attempt's last error.", valueName: "text"))
    var reason: String?

    @OptionGroup var event: QueueEventID
    var id: String { event.id }

    func run() throws {
        let queue = try spool.open()
        let attempts = try QueueCLI.attempt(queue.nack(id, reason: reason))
        Output.out("returned \(id) to new/ (\(attempts) failed attempt\(attempts == 1 ? "" : "s") so far)")
    }
}

/// `payhook queue requeue --older-than DURATION`.
struct QueueRequeue: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "requeue",
        abstract: "Return cur/ entries taken longer ago than a duration (a consumer that died) to new/.",
        discussion: """
            Each one returned counts a failed attempt. Entries a running consume worker holds (flock on the \
            file) are left alone however old; for other consumers, choose a duration above your longest \
            processing time. Age is counted from the take (the file's ctime, which rename sets). An entry \
            that is not a regular file (a symbolic link, FIFO, device, directory) or is larger than 16 MiB is \
            moved to corrupt/ whatever its age and named on stderr (exit 1).
            """
    )

    @OptionGroup var spool: QueueSpoolOption

    @Option(name: .customLong("older-than"), help: ArgumentHelp("Minimum time in cur/, e.g. 10m, 2h; 0 for all.", valueName: "duration"), transform: QueueDuration.parse)
    var olderThan: QueueDuration

    func run() throws {
        let queue = try spool.open()
        let report = try QueueCLI.attempt(queue.requeue(olderThan: olderThan.seconds, now: Date()))
        for item in report.requeued {
            Output.out(
                "returned \(item.id) to new/ after \(QueueTime.formatDuration(item.age)) in cur/ "
                    + "(\(item.attempts) failed attempt\(item.attempts == 1 ? "" : "s") so far)"
            )
        }
        for id in report.busy {
            Output.err("note: left \(id) in cur/: a running consume worker holds it")
        }
        Output.out("requeued \(report.requeued.count) event\(report.requeued.count == 1 ? "" : "s")")
        if QueueCLI.report(report.quarantined) { throw ExitCode(1) }
    }
}

/// `payhook queue revive ID`.
struct QueueRevive: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revive",
        abstract: "Return a dead letter to new/ with a fresh attempt count (its error record is removed).",
        discussion: "Exit 1 when the event is not in dead/."
    )

    @OptionGroup var spool: QueueSpoolOption

    @OptionGroup var event: QueueEventID
    var id: String { event.id }

    func run() throws {
        let queue = try spool.open()
        try QueueCLI.attempt(queue.revive(id))
        Output.out("returned \(id) from dead/ to new/")
    }
}
