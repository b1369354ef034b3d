import Foundation
import Logging
public import PayhookConfig
import PayhookCore
import PayhookHTTP
import PayhookLock
import PayhookStore

/// What a reload did, for the caller and the tests. The log line and the metrics say the same (docs/reload.md).
public enum ReloadResult: Sendable, Equatable {
    /// The new tenants are in use. `ignored` names the settings that changed but need a restart.
    case applied(ignored: [String])
    /// Nothing changed; `reason` names the file and the problem, never a secret's value.
    case failed(reason: String)
}

/// The reload counters behind `payhook_reloads_total` and `payhook_last_reload_success_timestamp_seconds`, and
/// the config now in effect: the start's settings with the last good reload's tenants.
struct ReloadState: Sendable {
    var config: Config
    var succeeded = 0
    var failed = 0
    /// Unix seconds of the last successful reload; 0 until one succeeds.
    var lastSuccess: Double = 0
}

extension PayhookServer {
    /// The settings a reload cannot change, by their config key (docs/reload.md, "What needs a restart"): the
    /// listener, the store and the process-wide logging are built once at start. `ledger_retention_days` is
    /// among them because the store records it for `payhook queue gc` at start (README, "Replays and the
    /// ledger's retention"), and the sources' replay window must match what was recorded.
    static let restartOnlySettings: [(key: String, differs: @Sendable (Config, Config) -> Bool)] = [
        ("listen", { $0.listenAddresses != $1.listenAddresses }),
        ("trusted_proxies", { $0.trustedProxies != $1.trustedProxies }),
        // A new certificate and key are presented from the next handshake on (docs/reload.md, "Certificates");
        // turning TLS on or off changes what the listener speaks, which only a restart does.
        ("tls_cert_file", { ($0.tls == nil) != ($1.tls == nil) }),
        ("tls_key_file", { ($0.tls == nil) != ($1.tls == nil) }),
        ("spool", { $0.spool != $1.spool }),
        ("store", { $0.store != $1.store }),
        ("threads", { $0.threads != $1.threads }),
        ("max_body_bytes", { $0.maxBodyBytes != $1.maxBodyBytes }),
        ("connection_timeout_s", { $0.connectionTimeoutSeconds != $1.connectionTimeoutSeconds }),
        ("max_connections", { $0.maxConnections != $1.maxConnections }),
        ("max_connections_per_ip", { $0.maxConnectionsPerIP != $1.maxConnectionsPerIP }),
        ("connection_memory_limit_bytes", { $0.connectionMemoryLimitBytes != $1.connectionMemoryLimitBytes }),
        ("request_deadline_s", { $0.requestDeadlineSeconds != $1.requestDeadlineSeconds }),
        ("header_deadline_s", { $0.headerDeadlineSeconds != $1.headerDeadlineSeconds }),
        ("shutdown_grace_s", { $0.shutdownGraceSeconds != $1.shutdownGraceSeconds }),
        ("min_free_bytes", { $0.minFreeBytes != $1.minFreeBytes }),
        ("log_level", { $0.logLevel != $1.logLevel }),
        ("log_format", { $0.logFormat != $1.logFormat }),
        ("ledger_retention_days", { $0.ledgerRetentionDays != $1.ledgerRetentionDays }),
        ("max_conflicts_per_event", { $0.maxConflictsPerEvent != $1.maxConflictsPerEvent }),
        ("max_conflicts", { $0.maxConflicts != $1.maxConflicts }),
    ]

    /// `current` with what a reload can change taken from `loaded`: every tenant table, and the listener's
    /// certificate and key while TLS stays on. Nothing else.
    static func withReloadable(of loaded: Config, _ current: Config) -> Config {
        var merged = current
        merged.unified = loaded.unified
        merged.wechat = loaded.wechat
        merged.wechatV3 = loaded.wechatV3
        merged.alipay = loaded.alipay
        merged.xxpay = loaded.xxpay
        merged.jeepay = loaded.jeepay
        if current.tls != nil, loaded.tls != nil {
            merged.tls = loaded.tls
            merged.tlsCertFile = loaded.tlsCertFile
            merged.tlsKeyFile = loaded.tlsKeyFile
        }
        return merged
    }

    /// The restart-only settings that differ between the config in effect and a freshly loaded one, by key.
    static func ignoredChanges(current: Config, loaded: Config) -> [String] {
        var keys = restartOnlySettings.filter { $0.differs(current, loaded) }.map(\.key)
        // A setting added to Config later and not yet listed above is still never applied (``withReloadable``
        // copies only what it names); it is reported under one name rather than silently.
        if keys.isEmpty && withReloadable(of: current, loaded) != current { keys.append("other settings") }
        return keys
    }

    /// SIGHUP (docs/reload.md): reads the config file again, with every secret, key and certificate file it
    /// names, builds new sources and swaps them into the router in one step, and hands a new TLS certificate
    /// and key to the listener. Requests in flight finish with the old sources; connections and the listener
    /// are untouched, and an open TLS connection keeps the certificate it was given. When anything fails the
    /// old sources and certificate stay in use, whole, and the reason is logged at error level.
    ///
    /// - Parameter overrides: what the command line set over the file (`--listen`, `--spool`), applied to the
    ///   new config as at start so that they do not read as changes.
    @discardableResult
    public func reload(overrides: (inout Config) -> Void = { _ in }) -> ReloadResult {
        let started = ContinuousClock.now
        let current = reloadState.withLock { $0.config }
        // The reasons name the file, the line and the problem; they never quote a secret (check-config prints
        // the loader's sentences, README "Configuration"; GnuTLS's never show the files).
        func failed(_ reason: String) -> ReloadResult {
            reloadState.withLock { $0.failed += 1 }
            logger.error(
                "reload failed, still serving with the previous tenants, keys and certificate",
                metadata: ["config": "\(current.file)", "reason": "\(reason)"])
            return .failed(reason: reason)
        }
        let loaded: ConfigLoader.Loaded
        do {
            loaded = try ConfigFile.load(path: current.file)
        } catch {
            return failed(error.description)
        }
        for warning in loaded.warnings { logger.warning("\(warning)") }
        var fresh = loaded.config
        overrides(&fresh)
        let ignored = Self.ignoredChanges(current: current, loaded: fresh)
        let merged = Self.withReloadable(of: fresh, current)
        // The certificate first: it is the one step that can still fail, and nothing has changed yet.
        if let tls = merged.tls, tls != current.tls {
            do {
                try http.replaceCertificates(with: tls)
            } catch {
                return failed(error.description)
            }
        }
        // Building the sources cannot fail: the loader has read and checked every secret, key and certificate.
        router.replaceSources(Self.sources(merged))
        let now = Date().timeIntervalSince1970
        reloadState.withLock {
            $0.config = merged
            $0.succeeded += 1
            $0.lastSuccess = now
        }
        if !ignored.isEmpty {
            logger.warning(
                "reload: these settings changed but need a restart; the running values are kept",
                metadata: ["config": "\(current.file)", "settings": "\(ignored.joined(separator: ", "))"])
        }
        var metadata = Self.tenantCounts(merged)
        metadata["config"] = "\(current.file)"
        if let fingerprint = http.certificateFingerprint { metadata["tls.sha256"] = "\(fingerprint)" }
        metadata["duration_ms"] = .stringConvertible(((ContinuousClock.now - started) / .microseconds(100)).rounded() / 10)
        logger.notice("reloaded", metadata: metadata)
        return .applied(ignored: ignored)
    }

    /// The config in effect: the start's settings with the tenants of the last successful reload.
    public var currentConfig: Config { reloadState.withLock { $0.config } }

    /// Reloads since start: (succeeded, failed).
    public var reloadCounts: (succeeded: Int, failed: Int) { reloadState.withLock { ($0.succeeded, $0.failed) } }

    /// How many tenants of each kind, as the "serving" and "reloaded" lines give them.
    static func tenantCounts(_ config: Config) -> Logger.Metadata {
        [
            "unified.tenants": .stringConvertible(config.unified.count), "wechat.tenants": .stringConvertible(config.wechat.count),
            "wechat_v3.tenants": .stringConvertible(config.wechatV3.count), "alipay.tenants": .stringConvertible(config.alipay.count),
            "xxpay.tenants": .stringConvertible(config.xxpay.count), "jeepay.tenants": .stringConvertible(config.jeepay.count),
        ]
    }

    /// SIGUSR1's one status line (docs/reload.md): what is running, nothing secret.
    public func logStatus() {
        let counts = reloadCounts
        var metadata = Self.tenantCounts(currentConfig)
        metadata["listen"] = "\(http.boundAddress)"
        metadata["inflight"] = .stringConvertible(http.inFlight)
        metadata["store.healthy"] = .stringConvertible(store.unhealthyReason == nil)
        metadata["reloads.ok"] = .stringConvertible(counts.succeeded)
        metadata["reloads.failed"] = .stringConvertible(counts.failed)
        logger.notice("status", metadata: metadata)
    }

    /// The reload metrics, every series present from start.
    func registerReloadMetrics() {
        let state = reloadState
        metrics.gauge(
            "payhook_reloads_total", help: "Reloads (SIGHUP) since start, by result: ok (the new tenants are in use) or failed (the old ones stay).",
            type: "counter"
        ) {
            let (ok, failed) = state.withLock { ($0.succeeded, $0.failed) }
            return [([("result", "failed")], Double(failed)), ([("result", "ok")], Double(ok))]
        }
        metrics.gauge(
            "payhook_last_reload_success_timestamp_seconds", help: "Unix time of the last successful reload; 0 until one succeeds."
        ) {
            [([], state.withLock { $0.lastSuccess })]
        }
    }
}
