import Foundation
public import Logging
public import PayhookConfig
import PayhookCore
public import PayhookHTTP
import PayhookLock
import PayhookPostgres
import PayhookSpool
public import PayhookSpoolFormat
public import PayhookStore
import PayhookUnified
import PayhookWeChat
import PayhookAlipay
import PayhookXxPay

/// A running payhook: store opened (the spool recovered), sources built from the config, listener serving.
public final class PayhookServer: Sendable {
    /// The config at start. Its tenants are replaced by a reload (SIGHUP, docs/reload.md); ``currentConfig`` is
    /// the one in effect.
    public let config: Config
    /// Where accepted events go; the spool directory unless the caller passed another ``EventStore``.
    public let store: any EventStore
    public let http: HTTPServer
    public let metrics: Metrics
    let logger: Logger
    /// Routes each request; a reload swaps its sources.
    let router: Router
    let reloadState: Locked<ReloadState>

    /// Why the server could not start; one sentence each.
    public struct StartError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Opens the store the config names, then starts listening. For the spool that takes its lock and runs
    /// recovery: nothing is served before recovery has finished (docs/durability.md §8). For PostgreSQL it
    /// connects and checks the schema.
    ///
    /// - Parameter fileSystem: the spool's file-system calls; tests pass one that injects faults.
    public convenience init(
        config: Config, logger: Logger, fileSystem: any SpoolFileSystem = PosixFileSystem(),
        clock: @escaping @Sendable () -> Int64 = Router.wallClock
    ) throws(StartError) {
        if case .postgres(let database) = config.store {
            let store: PostgresEventStore
            do {
                store = try PostgresEventStore(
                    settings: PGSettings(
                        conninfo: database.url.value, connections: database.connections ?? PostgresEventStore.defaultWriters,
                        statementTimeoutSeconds: Double(database.timeoutSeconds)),
                    instance: database.instance ?? Self.defaultInstance(),
                    maxBatch: PostgresEventStore.maxBatch(connections: config.maxConnections),
                    maxConflictsPerEvent: config.maxConflictsPerEvent, maxConflicts: config.maxConflicts, logger: logger)
            } catch {
                throw StartError(description: "cannot open the database store (\(database.origin)): \(error)")
            }
            try self.init(config: config, logger: logger, store: store, clock: clock)
            return
        }
        let spool: Spool
        do {
            spool = try Spool(
                directory: config.spool, inspector: EventFileInspector.payhook, fileSystem: fileSystem, logger: logger,
                minimumFreeBytes: UInt64(config.minFreeBytes),
                conflictLimits: SpoolConflictLimits(perRecord: config.maxConflictsPerEvent, total: config.maxConflicts))
        } catch {
            throw StartError(description: "cannot open spool \(config.spool): \(error)")
        }
        try self.init(config: config, logger: logger, store: SpoolEventStore(spool), clock: clock)
    }

    /// The `received_by` of this process's rows when `[store] instance` is not set, and who ran a `payhook db`
    /// command: host name and process id.
    public static func defaultInstance() -> String {
        "\(ProcessInfo.processInfo.hostName):\(ProcessInfo.processInfo.processIdentifier)"
    }

    /// Where events go, for messages: the spool's directory or "the database".
    static func storeName(_ config: Config) -> String {
        if case .postgres = config.store { return "the database" }
        return "spool \(config.spool)"
    }

    /// Serves with `store`, already opened (and recovered). The server owns it from here: it is closed when
    /// starting fails and on ``shutdown()``.
    public init(
        config: Config, logger: Logger, store: any EventStore,
        clock: @escaping @Sendable () -> Int64 = Router.wallClock
    ) throws(StartError) {
        self.config = config
        self.logger = logger
        self.store = store
        let listen: [ListenAddress]
        do {
            listen = try config.listenAddresses.map { (text) throws(HTTPServerError) in try ListenAddress.parse(text) }
        } catch {
            store.close()
            throw StartError(description: "\(config.file): listen: \(error)")
        }
        // `payhook queue gc` reads this and never prunes a ledger entry younger than it, so no key is pruned
        // while a replay of its callback would still pass the replay window (README, "Replays and the
        // ledger's retention"). Not serving is better than serving with gc unaware of the window.
        do {
            try store.recordRetention(seconds: config.ledgerRetentionDays * 86_400)
        } catch {
            store.close()
            throw StartError(description: "cannot record the ledger retention in \(Self.storeName(config)): \(error)")
        }
        let metrics = Metrics()
        self.metrics = metrics
        let router = Router(sources: Self.sources(config), store: store, logger: logger, metrics: metrics, clock: clock)
        self.router = router
        reloadState = Locked(ReloadState(config: config))
        do {
            http = try HTTPServer(listen: listen, limits: config.listenerLimits, handler: router, logger: logger)
        } catch {
            store.close()
            throw StartError(description: "\(error)")
        }
        registerGauges(config: config)
        registerReloadMetrics()
        var serving = Self.tenantCounts(config)
        serving["listen"] = "\(http.boundAddress)"
        serving["store"] = "\(config.store.kind)"
        serving["spool"] = "\(config.store == .spool ? config.spool : "-")"
        serving["tls.sha256"] = "\(http.certificateFingerprint ?? "-")"
        logger.notice("serving", metadata: serving)
    }

    /// Gauges read at each scrape of /metrics.
    private func registerGauges(config: Config) {
        let http = self.http
        metrics.gauge("payhook_inflight_requests", help: "Requests whose first line arrived and that are not answered yet.") {
            [([], Double(http.inFlight))]
        }
        metrics.gauge(
            "payhook_forwarding_headers_ignored_total",
            help: "X-Forwarded-For or X-Real-IP values from a trusted proxy ignored as malformed (docs/proxy.md).",
            type: "counter"
        ) {
            [([], Double(http.malformedForwardingHeaders))]
        }
        if config.tls != nil {
            metrics.gauge(
                "payhook_tls_certificate_expiry_timestamp_seconds",
                help: "notAfter of the certificate the listener presents now (Unix time); follows reloads (docs/reload.md)."
            ) {
                http.certificateNotAfter.map { [([], Double($0))] } ?? []
            }
        }
        let store = self.store
        QueueGauges.register(on: metrics, files: true) { store.census() }
        metrics.gauge("payhook_spool_healthy", help: "1 while the spool accepts events; 0 after a failed directory fsync (restart needed).") {
            [([], store.unhealthyReason == nil ? 1 : 0)]
        }
        metrics.gauge("payhook_spool_failures", help: "Failed spool operations since start, by kind (monotonic).", type: "counter") {
            store.counts().failures.sorted { $0.key < $1.key }.map { ([("kind", $0.key)], Double($0.value)) }
        }
        metrics.gauge(
            "payhook_conflicts_total",
            help: "Conflicting callbacks since start: kept (a new audit copy), repeated (that content was kept before), dropped (over max_conflicts_per_event or max_conflicts).",
            type: "counter"
        ) {
            store.counts().conflicts.sorted { $0.key < $1.key }.map { ([("disposition", $0.key)], Double($0.value)) }
        }
        metrics.histogram(
            "payhook_spool_commit_batch_size",
            help: "Stores committed together by one group commit: on the spool one fsync of new/ and one of ids/, on PostgreSQL one transaction.",
            bounds: [1, 2, 4, 8, 16, 32, 64, 128]
        ) { store.counts().batchSizes }
        metrics.buildInfo()
    }

    /// One source per configured path.
    static func sources(_ config: Config) -> [String: any CallbackSource] {
        var sources: [String: any CallbackSource] = [:]
        for path in Set(config.unified.map(\.path)) {
            sources[path] = UnifiedSource(
                path: path, tenants: config.unified.filter { $0.path == path },
                maxCallbackAgeMilliseconds: config.maxCallbackAgeMilliseconds)
        }
        for path in Set(config.wechat.map(\.path)) {
            sources[path] = WeChatSource(
                path: path, tenants: config.wechat.filter { $0.path == path },
                maxCallbackAgeMilliseconds: config.maxCallbackAgeMilliseconds)
        }
        for path in Set(config.wechatV3.map(\.path)) {
            sources[path] = WeChatV3Source(
                path: path, tenants: config.wechatV3, maxCallbackAgeMilliseconds: config.maxCallbackAgeMilliseconds)
        }
        for path in Set(config.alipay.map(\.path)) {
            sources[path] = AlipaySource(path: path, tenants: config.alipay, maxCallbackAgeMilliseconds: config.maxCallbackAgeMilliseconds)
        }
        for path in Set(config.xxpay.map(\.path)) {
            sources[path] = XxPaySource(path: path, tenants: config.xxpay, maxCallbackAgeMilliseconds: config.maxCallbackAgeMilliseconds)
        }
        for path in Set(config.jeepay.map(\.path)) {
            sources[path] = JeepaySource(path: path, tenants: config.jeepay, maxCallbackAgeMilliseconds: config.maxCallbackAgeMilliseconds)
        }
        return sources
    }

    /// Why `waitForStop` returned.
    public enum StopReason: Sendable, Equatable {
        case signal(Int32)
        /// A directory fsync failed: payhook no longer knows which names are durable and must restart so
        /// that recovery re-checks the spool (docs/durability.md §6, the PostgreSQL "fsyncgate" rule).
        case unhealthy(String)
    }

    /// Blocks until `nextSignal` reports a stop signal, or the spool turns unhealthy.
    ///
    /// - Parameter nextSignal: waits up to the given time for a signal and returns it, or nil on timeout
    ///   (`sigtimedwait(2)` in `payhook serve`).
    public func waitForStop(nextSignal: (Duration) -> Int32?) -> StopReason {
        while true {
            if let reason = store.unhealthyReason { return .unhealthy(reason) }
            if let signal = nextSignal(.milliseconds(250)) { return .signal(signal) }
        }
    }

    /// Stops accepting, lets requests in flight finish (up to the configured grace), stops the listener and
    /// releases the spool. Returns false when some request was still running at the deadline.
    @discardableResult
    public func shutdown() -> Bool {
        let drained = http.shutdown(grace: .seconds(config.shutdownGraceSeconds))
        store.close()
        logger.notice("stopped", metadata: ["drained": .stringConvertible(drained)])
        return drained
    }
}
