import Foundation
import PayhookCore
public import PayhookHTTP
import PayhookStore
public import PayhookAlipay
public import PayhookUnified
public import PayhookWeChat
public import PayhookXxPay

/// payhook's configuration (docs/contract.md §2), after validation.
public struct Config: Sendable, Equatable {
    /// The file it was read from.
    public var file: String
    /// `host:port` or `[ipv6]:port`: the first (or only) address of `listen`, the one `payhook serve`'s
    /// first "listening on" line names.
    public var listen: String
    /// The other addresses of `listen = [...]`, in the file's order (docs/proxy.md): `[::]` is IPv6-only,
    /// so serving both families takes two.
    public var alsoListen: [String] = []
    /// `trusted_proxies`: the peers whose X-Forwarded-For / X-Real-IP name the client (docs/proxy.md).
    public var trustedProxies = TrustedProxies()
    /// `tls_cert_file` and `tls_key_file`, resolved against the config file's folder: both or neither
    /// (docs/proxy.md, "Alone, with native TLS").
    public var tlsCertFile: String? = nil
    public var tlsKeyFile: String? = nil
    /// Their contents, read when the config is loaded; nil serves plain HTTP.
    public var tls: TLSCredentials? = nil
    /// The queue directory, resolved against the config file's folder.
    public var spool: String
    public var maxBodyBytes: Int
    public var connectionTimeoutSeconds: Int
    public var maxConnections: Int
    public var maxConnectionsPerIP: Int
    public var connectionMemoryLimitBytes: Int
    public var requestDeadlineSeconds: Int
    /// A request line and headers not complete within this are cut (slowloris on the head).
    public var headerDeadlineSeconds: Int
    /// Listener threads; why the default is what it is, in ``HTTPLimits/threads`` and ``defaultThreads(for:)``.
    public var threads: Int
    public var shutdownGraceSeconds: Int
    /// Below this much free space in the spool's file system, callbacks are refused with 503 before
    /// anything is written (Postfix's `queue_minfree`, docs/durability.md §7). 0 turns the guard off.
    public var minFreeBytes: Int
    public var logLevel: String
    /// `text` (swift-log's default lines) or `json` (one JSON object per line).
    public var logFormat: String
    /// How long `payhook queue gc` keeps dedupe-ledger entries (it reads this from the spool, where `serve`
    /// records it). A callback whose own payment time is older than this minus one day is refused, so a key
    /// can never be pruned while a replay of its callback would still be accepted.
    public var ledgerRetentionDays: Int
    /// Audit copies kept in conflicts/ per event id, and in all; beyond either, a conflict is counted and
    /// dropped (still answered success: the stored event is the one that counts).
    public var maxConflictsPerEvent: Int
    public var maxConflicts: Int
    public var unified: [UnifiedTenant]
    public var wechat: [WeChatTenant]
    /// `[[wechat_v3]]`: WeChat Pay API v3 notifications (docs/contract.md §3.3).
    public var wechatV3: [WeChatV3Tenant]
    /// `[[alipay]]`: Alipay asynchronous notifications (docs/contract.md §3.4).
    public var alipay: [AlipayTenant]
    /// `[[xxpay]]` and `[[jeepay]]`: XxPay and Jeepay merchant notifications (docs/contract.md §3.5).
    public var xxpay: [XxPayTenant]
    public var jeepay: [JeepayTenant]
    /// `[store]`: the spool (default) or PostgreSQL (docs/contract.md §7).
    public var store: StoreChoice = .spool

    public static let defaultListen = "127.0.0.1:8080"
    /// The listener's own defaults, which are the config file's for the keys that set them: one home for
    /// each number, in PayhookHTTP, where the reasons for them are.
    public static let listenerDefaults = HTTPLimits()

    /// `threads` when the file does not set it: two per core of this machine, at most 64, and at least 8 on the
    /// spool, 4 on PostgreSQL.
    ///
    /// A callback waiting for its store parks its connection, not its thread (docs/architecture.md, "Waiting
    /// without a thread"): on PostgreSQL while its group commit runs, on the spool while a store thread writes
    /// and fsyncs it. So listener threads only do work: parsing, verifying, answering. More of them than the
    /// cores can run only adds context switches. The floors differ because the spool answers a duplicate on the
    /// listener thread itself (one `stat`), while on PostgreSQL every callback, duplicates included, is a write
    /// that parks. Measured on the 2-core bench VM at 64 connections: on the spool 8 threads answered the most
    /// duplicates, on PostgreSQL 4 threads did about a fifth more than 8 at a lower p99 (the runs are in
    /// bench/README.md, "PostgreSQL, measured", and bench/results/profiles.md).
    public static func defaultThreads(for store: StoreChoice) -> Int {
        defaultThreads(for: store, cores: ProcessInfo.processInfo.activeProcessorCount)
    }

    /// ``defaultThreads(for:)`` on a machine with `cores` cores.
    public static func defaultThreads(for store: StoreChoice, cores: Int) -> Int {
        let floor = if case .spool = store { 8 } else { 4 }
        return min(64, max(floor, 2 * cores))
    }
    public static let defaultMaxCallbackAgeMilliseconds = ReplayWindow.defaultMaxCallbackAgeMilliseconds

    /// The oldest payment time a callback may carry under a retention of `retentionDays` (``ReplayWindow``,
    /// which the sources apply).
    public static func maxCallbackAge(retentionDays: Int) -> Int64 {
        ReplayWindow.maxCallbackAge(retentionDays: retentionDays)
    }

    /// The oldest payment time a callback may carry under this config.
    public var maxCallbackAgeMilliseconds: Int64 { Self.maxCallbackAge(retentionDays: ledgerRetentionDays) }

    public init(file: String, spool: String) {
        let listener = Self.listenerDefaults
        self.file = file
        self.listen = Self.defaultListen
        self.spool = spool
        self.maxBodyBytes = listener.maxBodyBytes
        self.connectionTimeoutSeconds = listener.connectionTimeoutSeconds
        self.maxConnections = listener.maxConnections
        self.maxConnectionsPerIP = listener.maxConnectionsPerIP
        self.connectionMemoryLimitBytes = listener.connectionMemoryLimitBytes
        // The file's deadlines are whole seconds; the listener's defaults are too.
        self.requestDeadlineSeconds = Int(listener.requestDeadlineSeconds)
        self.headerDeadlineSeconds = Int(listener.headerDeadlineSeconds)
        self.threads = listener.threads
        self.shutdownGraceSeconds = 10
        self.minFreeBytes = 16 * 1024 * 1024
        self.logLevel = "info"
        self.logFormat = "text"
        self.ledgerRetentionDays = ReplayWindow.defaultLedgerRetentionDays
        self.maxConflictsPerEvent = ConflictCaps.defaultPerEvent
        self.maxConflicts = ConflictCaps.defaultTotal
        self.unified = []
        self.wechat = []
        self.wechatV3 = []
        self.alipay = []
        self.xxpay = []
        self.jeepay = []
    }

    /// Every listen address, the first one first.
    public var listenAddresses: [String] { [listen] + alsoListen }

    /// The listener's limits under this config.
    public var listenerLimits: HTTPLimits {
        var limits = HTTPLimits()
        limits.connectionTimeoutSeconds = connectionTimeoutSeconds
        limits.maxConnections = maxConnections
        limits.maxConnectionsPerIP = maxConnectionsPerIP
        limits.connectionMemoryLimitBytes = connectionMemoryLimitBytes
        limits.maxBodyBytes = maxBodyBytes
        limits.requestDeadlineSeconds = Double(requestDeadlineSeconds)
        limits.headerDeadlineSeconds = Double(headerDeadlineSeconds)
        limits.threads = threads
        limits.trustedProxies = trustedProxies
        limits.tls = tls
        return limits
    }
}

/// One problem found in a configuration, with the file and line it concerns.
public struct ConfigIssue: Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int?
    public var message: String

    public init(file: String, line: Int?, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    public var description: String {
        if let line { return "\(file):\(line): \(message)" }
        return "\(file): \(message)"
    }
}

/// Every problem found in a configuration; loading reports them all at once.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var issues: [ConfigIssue]
    public init(issues: [ConfigIssue]) { self.issues = issues }
    public var description: String { issues.map(\.description).joined(separator: "\n") }
}
