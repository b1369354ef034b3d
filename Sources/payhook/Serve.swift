import ArgumentParser
import Foundation
import Logging
import PayhookConfig
import PayhookCore
import PayhookHTTP
import PayhookServer

/// `payhook serve --config FILE`: runs until SIGTERM or SIGINT, then stops accepting, finishes the
/// requests in flight and exits 0. SIGHUP reloads the tenants' secrets and keys, SIGUSR1 logs a status line,
/// SIGUSR2 and SIGPIPE are ignored (docs/reload.md).
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the listener until SIGTERM/SIGINT; SIGHUP reloads secrets and keys.",
        discussion: """
            Prints "payhook listening on ADDRESS spool DIR" (or "store postgres") once per address when it \
            serves, then logs to standard error. Signals: SIGTERM or SIGINT stop accepting, finish the requests \
            in flight (up to shutdown_grace_s) and exit 0; SIGHUP re-reads the config's secrets, keys and \
            certificates, keeping the old ones if that fails; SIGUSR1 logs a status line; SIGUSR2 and SIGPIPE \
            are ignored. Exit 1: the config is invalid (every problem is listed, as by check-config), an address \
            cannot be bound, or the store is unusable at start or turns unhealthy (a restart re-checks it). \
            Exit 2: a bad option. The options below override the config file for this run only; a reload keeps \
            them.
            """
    )

    @Option(name: .long, help: ArgumentHelp("The TOML config file: listeners, store, tenants and their secrets.", valueName: "file"))
    var config: String

    @Option(name: .long, help: ArgumentHelp("Listen on this one address instead of the config's whole listen list: host:port or [ipv6]:port, e.g. 127.0.0.1:8080, 0.0.0.0:8080, [::]:8080; port 0 picks a free port, printed at start.", valueName: "host:port"))
    var listen: String?

    @Option(name: .long, help: ArgumentHelp("The spool (queue directory) to store events in, instead of the config's spool; not used with [store] kind = \"postgres\".", valueName: "dir"))
    var spool: String?

    @Option(name: .customLong("log-level"), help: ArgumentHelp("The least severe log lines written, instead of the config's log_level: trace, debug, info, notice, warning, error or critical.", valueName: "level"))
    var logLevel: String?

    @Option(name: .customLong("log-format"), help: ArgumentHelp("Log lines as text (key=value, the default) or json (one JSON object per line), instead of the config's log_format.", valueName: "format"))
    var logFormat: String?

    func validate() throws {
        if let logLevel, !ConfigLoader.logLevels.contains(logLevel) {
            throw ValidationError("--log-level must be one of \(ConfigLoader.logLevels.joined(separator: ", "))")
        }
        if let logFormat, !ConfigLoader.logFormats.contains(logFormat) {
            throw ValidationError("--log-format must be text or json")
        }
        if let listen {
            do {
                _ = try ListenAddress.parse(listen)
            } catch {
                throw ValidationError("--listen: \(error)")
            }
        }
    }

    func run() throws {
        // Block the signals payhook acts on before any thread exists, so every thread inherits the mask and the
        // signals wait for sigtimedwait(2) below instead of killing the process mid-request: SIGTERM/SIGINT
        // stop, SIGHUP reloads, SIGUSR1 logs a status line, SIGUSR2 is ignored (each would otherwise kill by
        // default; docs/reload.md). SIGPIPE is ignored outright: a write to a connection the peer closed must
        // fail with EPIPE on that connection, not end the process.
        var signals = sigset_t()
        sigemptyset(&signals)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2] { sigaddset(&signals, signal) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)
        Foundation.signal(SIGPIPE, SIG_IGN)

        var loaded = try ConfigFile.loadOrExit(config)
        if let listen {
            loaded.config.listen = listen
            loaded.config.alsoListen = []
        }
        if let spool { loaded.config.spool = spool }
        let level = Logger.Level(rawValue: logLevel ?? loaded.config.logLevel) ?? .info
        let format = logFormat ?? loaded.config.logFormat
        LoggingSystem.bootstrap { label in lineLogHandler(format: format, label: label, level: level) }
        let logger = Logger(label: "payhook")
        for warning in loaded.warnings { logger.warning("\(warning)") }

        let server: PayhookServer
        do {
            server = try PayhookServer(config: loaded.config, logger: logger)
        } catch {
            Output.err("payhook: \(error)")
            throw ExitCode(1)
        }
        // One line on stdout with the real address, so scripts (and tests using port 0) can find it.
        // Tests and the crash harness read the port from this line; for the database it names the store kind.
        // One line per address, the first address first, all in the same format (docs/proxy.md).
        for address in server.http.boundAddresses {
            if case .postgres = loaded.config.store {
                Output.out("payhook listening on \(address) store postgres")
            } else {
                Output.out("payhook listening on \(address) spool \(loaded.config.spool)")
            }
        }

        // systemd's Type=notify: started once every address serves (docs/deploy.md §3).
        let notifier = ServiceNotifier(environment: ProcessInfo.processInfo.environment)
        let serving = "serving on \(server.http.boundAddresses.map(\.description).joined(separator: " "))"
        notifier.ready(status: serving)

        // A reload applies what the command line set over the file again, so that it does not read as a change.
        let overrides: (inout Config) -> Void = { [listen, spool] config in
            if let listen { config.listen = listen }
            if let spool { config.spool = spool }
        }
        let reason = server.waitForStop { timeout in
            var limit = timespec(tv_sec: Int(timeout.components.seconds), tv_nsec: Int(timeout.components.attoseconds / 1_000_000_000))
            let signal = sigtimedwait(&signals, nil, &limit)
            switch signal {
            case SIGTERM, SIGINT:
                return signal
            case SIGHUP:
                // On this thread, between two waits: one reload at a time, and a SIGHUP sent during a reload
                // stays pending and runs the next one.
                logger.notice("reloading", metadata: ["signal": "SIGHUP"])
                notifier.reloading()
                switch server.reload(overrides: overrides) {
                case .applied: notifier.ready(status: serving)
                case .failed: notifier.ready(status: "\(serving); the last reload failed, the previous keys stay (see the log)")
                }
            case SIGUSR1:
                server.logStatus()
            case SIGUSR2:
                logger.info("ignored", metadata: ["signal": "SIGUSR2"])
            default:
                break
            }
            return nil
        }
        switch reason {
        case .signal(let signal):
            logger.notice("stopping", metadata: ["signal": "\(signal == SIGTERM ? "SIGTERM" : "SIGINT")"])
            notifier.stopping(status: "stopping: finishing the requests in flight")
            server.shutdown()
        case .unhealthy(let why):
            // Everything is already answered 503; stop, and let the supervisor restart payhook so that
            // recovery re-checks what is durable (docs/durability.md §6).
            logger.critical("spool unhealthy, exiting for a restart", metadata: ["reason": "\(why)"])
            notifier.stopping(status: "the spool is unhealthy, exiting for a restart")
            server.shutdown()
            Output.err("payhook: the spool is unhealthy (\(why)); restart payhook so that recovery re-checks it")
            throw ExitCode(1)
        }
    }
}
