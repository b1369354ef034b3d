import ArgumentParser
import Foundation
import PayhookConfig
import PayhookCore
import PayhookPostgres
import PayhookQueue
import PayhookServer
import PayhookSpoolFormat
import PayhookStore

/// `payhook queue …`: the consumer's tools over the spool (docs/contract.md §5; docs/consumers.md).
///
/// Exit codes, as for every payhook command: 0 ok; 1 bad input or a failed check (no such spool, unknown id,
/// an ambiguous id prefix, an event not where the operation needs it, a corrupt event file, a second `consume`,
/// nothing to take); 2 usage (unknown option, a malformed ID, id prefix, duration or day).
struct Queue: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queue",
        abstract: "Read and consume the queue: list, show, find, export, take, ack, nack, requeue, revive, consume, gc.",
        discussion: """
            Every subcommand takes --spool DIR, the queue directory payhook serve writes, or --config FILE (else \
            $PAYHOOK_CONFIG), the config payhook serve runs with: its [store] names the spool or the PostgreSQL \
            database. An ID is the event's id: 64 lowercase hex characters, or its file name <id>.json; show also \
            takes a unique prefix of at least 8 of them and a conflict copy's name. Anything else is a usage \
            error (exit 2). find answers "did the callback for this order arrive?" wherever its events are \
            (queued, acknowledged in the ledger, or conflict copies); export writes every event of a window of \
            days as CSV or JSON lines for reconciliation. See docs/consumers.md for the protocol and the files \
            involved.
            """,
        subcommands: [
            QueueList.self, QueueShow.self, QueueFind.self, QueueExport.self, QueueTake.self, QueueAck.self,
            QueueNack.self, QueueRequeue.self, QueueRevive.self, QueueConsume.self, QueueGC.self,
        ]
    )
}

/// `--spool DIR` or `--config FILE` (else `$PAYHOOK_CONFIG`), shared by every queue subcommand: which queue the
/// subcommand works on. Exactly one: a spool given twice ways could disagree.
struct QueueSpoolOption: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The spool (queue directory) payhook serve writes.", valueName: "dir"))
    var spool: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "The config payhook serve runs with (default: $PAYHOOK_CONFIG); its [store] names the spool or the database.",
            valueName: "file"))
    var config: String?

    /// The environment variable `--config` falls back on.
    static let configVariable = "PAYHOOK_CONFIG"

    func validate() throws {
        if spool != nil && config != nil {
            throw ValidationError("give --spool DIR or --config FILE, not both")
        }
        if spool == nil && configPath == nil {
            throw ValidationError("missing --spool DIR or --config FILE (or $\(Self.configVariable))")
        }
    }

    /// `--config`, else `$PAYHOOK_CONFIG` when `--spool` is not given.
    var configPath: String? {
        if let config { return config }
        guard spool == nil, let value = ProcessInfo.processInfo.environment[Self.configVariable], !value.isEmpty else { return nil }
        return value
    }

    /// The one place that turns the options into a queue backend: the subcommands get an `any EventQueue` and use
    /// nothing else (docs/architecture.md §6). `--spool`, or a config whose `[store]` is the spool: its directory
    /// (`QueueDirectory`); a config with `[store] kind = "postgres"`: the database (`PostgresEventQueue`).
    /// `maxAttempts` is `consume --max-attempts`, which the database applies to events whose lease expired;
    /// `leaseSeconds` is how long a take's lease lasts there without renewal (`consume --lease`, default 60 s);
    /// `keepTakenFiles` keeps a taken event's file after the command exits (`take --format path` prints it).
    /// Reports why it cannot be opened (exit 1); never shows the database's URL, which may hold a password.
    func open(maxAttempts: Int? = nil, leaseSeconds: Double? = nil, keepTakenFiles: Bool = false) throws -> any EventQueue {
        if let spool { return try QueueCLI.attempt(QueueDirectory(spool)) }
        guard let path = configPath else { throw ExitCode(2) }
        let loaded = try ConfigFile.loadOrExit(path)
        switch loaded.config.store {
        case .spool:
            return try QueueCLI.attempt(QueueDirectory(loaded.config.spool))
        case .postgres(let database):
            let settings = PGSettings(
                conninfo: database.url.value, connections: database.connections ?? 8,
                statementTimeoutSeconds: Double(database.timeoutSeconds),
                acquireTimeoutSeconds: Double(database.timeoutSeconds), applicationName: "payhook queue")
            let instance = database.instance ?? PayhookServer.defaultInstance()
            return try QueueCLI.attempt(
                PostgresEventQueue(
                    settings: settings, instance: instance, leaseSeconds: leaseSeconds ?? 60, maxAttempts: maxAttempts ?? 5,
                    keepTakenFiles: keepTakenFiles))
        }
    }
}

/// A duration option or argument: `90s`, `15m`, `2h`, `7d`, `1h30m`, `500ms`. Options declare
/// `transform: QueueDuration.parse`, so that a refused value says why (a number without its unit, most often)
/// and which units exist, instead of only that it is invalid. With a transform the parser prints no default,
/// so an option that has one names it in its help.
struct QueueDuration: ExpressibleByArgument, CustomStringConvertible, Sendable {
    var seconds: Double
    var text: String

    init?(argument: String) {
        guard let seconds = QueueTime.parseDuration(argument) else { return nil }
        self.seconds = seconds
        self.text = argument
    }

    init(seconds: Double, text: String) {
        self.seconds = seconds
        self.text = text
    }

    var defaultValueDescription: String { text }
    var description: String { text }

    /// The units a duration may use, for messages.
    static let units = "ms, s, m, h or d (500ms, 90s, 15m, 2h, 7d, 1h30m)"

    /// Parses a duration option's value, or says what is wrong with it.
    static func parse(_ text: String) throws -> QueueDuration {
        if let duration = QueueDuration(argument: text) { return duration }
        if !text.isEmpty, Double(text) != nil {
            throw ValidationError("\(EventID.quoted(text)) has no unit; a duration is a number with one of \(units)")
        }
        throw ValidationError("\(EventID.quoted(text)) is not a duration; write a number with one of \(units)")
    }
}

/// Helpers shared by the queue subcommands.
enum QueueCLI {
    /// Prints a queue error as one sentence on stderr and returns exit code 1 to throw.
    static func fail(_ error: QueueError) -> ExitCode {
        Output.err("error: \(error.message)")
        return ExitCode(1)
    }

    /// Runs one queue operation; its error becomes that sentence and exit code 1.
    static func attempt<T>(_ operation: @autoclosure () throws(QueueError) -> T) throws(ExitCode) -> T {
        do {
            return try operation()
        } catch {
            throw fail(error)
        }
    }

    /// Reports files moved to corrupt/ on stderr. Returns whether there were any.
    @discardableResult
    static func report(_ quarantined: [QueueQuarantine]) -> Bool {
        for moved in quarantined {
            // attempts/<id>.json and dead/<id>.error.json are records beside an event, not events.
            let record = moved.from.hasPrefix("attempts/") || moved.from.hasSuffix(".error.json")
            let what = record ? "an attempts record" : "a valid event"
            Output.err("error: \(moved.from) is not \(what) (\(moved.reason)); moved to \(moved.to), kept there for inspection")
        }
        return !quarantined.isEmpty
    }

    /// The usage check for an ID argument (exit 2 through ArgumentParser's ValidationError): an event id, or its
    /// file name `<id>.json` (what `ls` prints).
    static func validate(id: String) throws {
        do {
            guard case .id = try QueueReference.parse(id) else { throw QueueReference.Problem.notHex }
        } catch {
            throw ValidationError(
                "ID must be an event id, 64 lowercase hex characters, or its file name <id>.json; got \(EventID.quoted(id))"
            )
        }
    }

    /// The event id of an ID argument that passed ``validate(id:)``: `<id>.json` without `.json`.
    static func eventID(_ argument: String) -> String {
        if case .id(let id)? = try? QueueReference.parse(argument) { return id }
        return argument
    }

    /// Blocks SIGTERM and SIGINT in this thread (and so in every thread started after), and starts a thread that
    /// takes them with sigwait(3): the first triggers `stop`, a second one hurries it. Call before any thread is
    /// started so that no thread is left with the default action, which would kill the process mid-step.
    static func handleStopSignals(
        _ stop: QueueStopSignal, onSignal: (@Sendable (_ name: String, _ count: Int) -> Void)? = nil
    ) {
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGTERM)
        sigaddset(&signals, SIGINT)
        pthread_sigmask(SIG_BLOCK, &signals, nil)
        let waiter = Thread {
            var received: Int32 = 0
            var count = 0
            while true {
                var set = sigset_t()
                sigemptyset(&set)
                sigaddset(&set, SIGTERM)
                sigaddset(&set, SIGINT)
                guard sigwait(&set, &received) == 0 else { continue }
                count += 1
                onSignal?(received == SIGTERM ? "SIGTERM" : "SIGINT", count)
                if count == 1 { stop.trigger() } else { stop.hurry() }
            }
        }
        waiter.start()
    }
}

/// The ID argument of the commands that act on one event, checked before the spool is opened
/// (a malformed id is a usage error, exit 2). `<id>.json`, what `ls` prints, stands for the id.
struct QueueEventID: ParsableArguments {
    @Argument(help: ArgumentHelp("The event id (64 lowercase hex characters), or its file name <id>.json.", valueName: "id"))
    var argument: String

    /// The event id, `.json` taken off.
    var id: String { QueueCLI.eventID(argument) }

    func validate() throws {
        try QueueCLI.validate(id: argument)
    }
}
