import ArgumentParser
import Foundation
import Logging
import PayhookQueue

/// `payhook queue consume --exec CMD`: the long-running worker.
struct QueueConsume: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consume",
        abstract: "Run a command once per event: exit 0 acknowledges, a failure is retried, then dead-lettered.",
        discussion: """
            CMD runs as /bin/sh -c CMD with the event JSON on stdin and PAYHOOK_EVENT_ID, PAYHOOK_EVENT_PATH \
            (its file in cur/), PAYHOOK_EVENT_ATTEMPT (1, 2, …), PAYHOOK_MAX_ATTEMPTS, PAYHOOK_QUEUE and (for a \
            spool) PAYHOOK_SPOOL in its environment; its stdout and stderr are passed through. A failure is retried after --backoff, \
            doubling up to --max-backoff; after --max-attempts failures the event goes to dead/ with the last \
            error in dead/<id>.error.json. SIGTERM or SIGINT: no new event is taken, commands in flight may \
            finish within --grace (then they are killed and their events returned to new/), exit 0; a second \
            signal kills them at once. One consume per spool (.consume.lock); a second one exits 1. With a \
            database ([store] kind = "postgres") any number may run, on any hosts: each event is leased to one.
            """
    )

    @OptionGroup var spool: QueueSpoolOption

    @Option(name: .customLong("exec"), help: ArgumentHelp("The command, run by /bin/sh -c.", valueName: "cmd"))
    var command: String

    @Option(name: .long, help: "Events processed in parallel.")
    var concurrency = 1

    @Option(name: .customLong("max-attempts"), help: "Failed attempts before an event goes to dead/.")
    var maxAttempts = 5

    @Option(name: .long, help: ArgumentHelp("Wait after the first failure; doubles after each further one. (default: 1s)", valueName: "duration"), transform: QueueDuration.parse)
    var backoff = QueueDuration(seconds: 1, text: "1s")

    @Option(name: .customLong("max-backoff"), help: ArgumentHelp("Longest wait between attempts. (default: 5m)", valueName: "duration"), transform: QueueDuration.parse)
    var maxBackoff = QueueDuration(seconds: 300, text: "5m")

    @Option(name: .customLong("command-timeout"), help: ArgumentHelp("Kill a command running longer (a failed attempt).", valueName: "duration"), transform: QueueDuration.parse)
    var commandTimeout: QueueDuration?

    @Option(name: .long, help: ArgumentHelp("On SIGTERM, how long commands in flight may still run. (default: 30s)", valueName: "duration"), transform: QueueDuration.parse)
    var grace = QueueDuration(seconds: 30, text: "30s")

    @Option(
        name: .long,
        help: ArgumentHelp(
            "With a database: how long an event stays leased to a worker that stops renewing it (a killed one) before another may take it. (default: 60s)",
            valueName: "duration"), transform: QueueDuration.parse)
    var lease = QueueDuration(seconds: 60, text: "60s")

    @Flag(name: .long, help: "Exit 0 once new/ is empty instead of waiting for more events.")
    var drain = false

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"

    func validate() throws {
        guard concurrency >= 1, concurrency <= 256 else { throw ValidationError("--concurrency must be between 1 and 256") }
        guard maxAttempts >= 1 else { throw ValidationError("--max-attempts must be at least 1") }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
        guard lease.seconds >= 1 else { throw ValidationError("--lease must be at least 1s") }
        if let commandTimeout, commandTimeout.seconds <= 0 {
            throw ValidationError("--command-timeout must be above 0")
        }
    }

    func run() throws {
        // The database dead-letters an event whose consumer died once that makes --max-attempts failures.
        let queue = try spool.open(maxAttempts: maxAttempts, leaseSeconds: lease.seconds)
        let stop = try QueueCLI.attempt(QueueStopSignal())
        let level = Logger.Level(rawValue: logLevel) ?? .info
        var logger = Logger(label: "payhook.queue") { label in StreamLogHandler.standardError(label: label) }
        logger.logLevel = level
        // Before any thread exists: no descriptor can be opened or closed meanwhile, and every worker thread
        // inherits the blocked signal mask.
        QueueConsumer.keepInheritedDescriptorsFromCommands()
        let signalLogger = logger
        let graceText = grace.text
        QueueCLI.handleStopSignals(stop) { name, count in
            if count == 1 {
                signalLogger.notice("received \(name): taking no new events; commands in flight have \(graceText) to finish")
            } else {
                signalLogger.notice("received \(name) again: killing the commands in flight and returning their events to new/")
            }
        }

        var options = QueueConsumeOptions(command: command)
        options.concurrency = concurrency
        options.maxAttempts = maxAttempts
        options.backoff = backoff.seconds
        options.maxBackoff = maxBackoff.seconds
        options.commandTimeout = commandTimeout?.seconds
        options.grace = grace.seconds
        options.drain = drain
        let consumer = QueueConsumer(queue: queue, options: options, logger: logger, stop: stop)
        _ = try QueueCLI.attempt(consumer.run())
    }
}
