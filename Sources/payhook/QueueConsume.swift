import ArgumentParser
import Foundation
import Logging
import PayhookConfig
import PayhookCore
import PayhookHTTP
import PayhookPostgres
import PayhookQueue
import PayhookServer
import PayhookSpoolFormat
import PayhookStore

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
            database ([store] kind = "postgres") any number may run, on any hosts: each event is leased to one. \
            --metrics-listen serves its counters and the queue's oldest-event age at /metrics (docs/metrics.md).
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

    @Option(name: .customLong("log-format"), help: "text (key=value pairs, logfmt) or json (one JSON object per line), as payhook serve writes.")
    var logFormat = "text"

    @Option(
        name: .customLong("metrics-listen"),
        help: ArgumentHelp(
            "Serve Prometheus metrics at http://ADDRESS/metrics: events processed, failed attempts, dead letters, each worker's attempt, the last success, the queue's oldest-event age (host:port or [ipv6]:port; port 0 picks a free port, printed on stdout).",
            valueName: "address"))
    var metricsListen: String?

    func validate() throws {
        guard concurrency >= 1, concurrency <= 256 else { throw ValidationError("--concurrency must be between 1 and 256") }
        guard maxAttempts >= 1 else { throw ValidationError("--max-attempts must be at least 1") }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
        guard ConfigLoader.logFormats.contains(logFormat) else { throw ValidationError("--log-format must be text or json") }
        if let metricsListen {
            do {
                _ = try ListenAddress.parse(metricsListen)
            } catch {
                throw ValidationError("--metrics-listen: \(error)")
            }
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
        let format = logFormat
        let logger = Logger(label: "payhook.queue") { label in lineLogHandler(format: format, label: label, level: level) }
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
        let metrics = try metricsListen.map { address in
            try serveMetrics(consumer, on: address, census: try census(of: queue), logger: logger)
        }
        defer { metrics?.stop() }
        _ = try QueueCLI.attempt(consumer.run())
    }

    /// How the metrics read the queue's census (docs/metrics.md): the spool's folders, or the database through
    /// a session of its own, named by the same config `--config` gave.
    private func census(of queue: any EventQueue) throws -> @Sendable () -> QueueCensus? {
        if let directory = queue as? QueueDirectory {
            let root = directory.root
            return {
                let census = SpoolCensus.take(root)
                return QueueCensus(counts: census.counts, oldestReceived: census.oldestWritten)
            }
        }
        guard let path = spool.configPath, case .postgres(let database) = try ConfigFile.loadOrExit(path).config.store else {
            return { nil }
        }
        let reader = PostgresCensusReader(
            settings: PGSettings(
                conninfo: database.url.value, connections: 1, statementTimeoutSeconds: Double(database.timeoutSeconds),
                applicationName: "payhook queue metrics"))
        return { reader.census() }
    }

    /// A running `--metrics-listen` listener.
    private struct MetricsListener {
        let http: HTTPServer
        func stop() { _ = http.shutdown(grace: .seconds(1)) }
    }

    /// Starts the metrics listener on `address`, prints where it listens on stdout (port 0 picks one), and
    /// registers the consumer's metrics. A listener that cannot start is a one-sentence error, exit 1.
    private func serveMetrics(
        _ consumer: QueueConsumer, on address: String, census: @escaping @Sendable () -> QueueCensus?, logger: Logger
    ) throws -> MetricsListener {
        let metrics = Metrics()
        metrics.gauge(
            "payhook_consume_processed_total", help: "Events whose command exited 0, acknowledged.", type: "counter"
        ) { [([], Double(consumer.progress.summary.acknowledged))] }
        metrics.gauge(
            "payhook_consume_failed_attempts_total",
            help: "Failed attempts: a command that exited non-zero, was killed or ran past --command-timeout.", type: "counter"
        ) { [([], Double(consumer.progress.summary.failures))] }
        metrics.gauge(
            "payhook_consume_dead_lettered_total", help: "Events moved to dead/ after --max-attempts failures.", type: "counter"
        ) { [([], Double(consumer.progress.summary.deadLettered))] }
        metrics.gauge(
            "payhook_consume_current_attempt",
            help: "By worker: the attempt it is on (1 on an event's first try), 0 while it holds no event."
        ) { consumer.progress.attempts.enumerated().map { ([("worker", String($0.offset))], Double($0.element)) } }
        metrics.gauge(
            "payhook_consume_last_success_timestamp_seconds", help: "When the last event was acknowledged (Unix time); 0 before the first."
        ) { [([], consumer.progress.lastSuccess ?? 0)] }
        QueueGauges.register(on: metrics, files: false, fetch: census)
        metrics.buildInfo()
        let http: HTTPServer
        do {
            var limits = HTTPLimits()
            limits.threads = 2
            limits.maxConnections = 16
            limits.maxConnectionsPerIP = 8
            http = try HTTPServer(
                listen: [try ListenAddress.parse(address)], limits: limits, handler: MetricsEndpoint(metrics: metrics), logger: logger)
        } catch {
            Output.err("error: cannot serve metrics on \(address): \(error)")
            throw ExitCode(1)
        }
        Output.out("payhook queue consume metrics on \(http.boundAddress)")
        return MetricsListener(http: http)
    }
}
