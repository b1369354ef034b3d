/// A secret (unified domain secret, WeChat API key). Its description is always `***`, so interpolating
/// one into a log line, an error or test output cannot leak it.
public struct Secret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    public let value: String
    public init(_ value: String) { self.value = value }
    public var description: String { "***" }
    public var debugDescription: String { "***" }
}

/// One `[[unified]]` table: a unified pay platform tenant (contract §2).
public struct UnifiedTenant: Sendable, Equatable {
    public var path: String
    public var domainCode: String
    /// Every valid secret, in file order; the position that verifies is counted, never the secret.
    public var secrets: [Secret]
    public var signScheme: UnifiedSignScheme
    /// `request_key_pattern`: when set, a verified callback's `requestKey` must match it as a whole. Under
    /// `values-sha1` this is what stops another value of a genuine callback (a `payTime`, an `orderSn`) from
    /// being moved into `requestKey` when the merchant's keys look like those values (README, "The weakness
    /// of values-sha1").
    public var requestKeyPattern: RequestKeyPattern?
    /// Where the table starts in the config file.
    public var line: Int

    public init(
        path: String, domainCode: String, secrets: [Secret], signScheme: UnifiedSignScheme,
        requestKeyPattern: RequestKeyPattern? = nil, line: Int
    ) {
        self.path = path
        self.domainCode = domainCode
        self.secrets = secrets
        self.signScheme = signScheme
        self.requestKeyPattern = requestKeyPattern
        self.line = line
    }
}

/// A compiled `request_key_pattern` (Swift `Regex` syntax), matched against the whole `requestKey`.
public struct RequestKeyPattern: @unchecked Sendable, Equatable, CustomStringConvertible {
    // @unchecked: `Regex<AnyRegexOutput>` is not declared Sendable, but a compiled regex is an immutable value
    // and matching never mutates it; it is only read after the config is loaded.
    public let source: String
    private let regex: Regex<AnyRegexOutput>

    /// Compiles the pattern; throws the compiler's sentence when it is not a valid regular expression.
    public init(_ source: String) throws {
        self.source = source
        self.regex = try Regex(source)
    }

    public func matches(_ text: String) -> Bool {
        (try? regex.wholeMatch(in: text)) != nil
    }

    public var description: String { source }

    public static func == (a: RequestKeyPattern, b: RequestKeyPattern) -> Bool { a.source == b.source }
}

/// One `[[wechat]]` table: a WeChat Pay merchant receiving v2 notifications (contract §2).
public struct WeChatTenant: Sendable, Equatable {
    public var path: String
    public var mchID: String
    /// When set, notifications naming another appid are refused.
    public var appID: String?
    /// Every valid APIv2 key, in file order (rotation).
    public var keys: [Secret]
    /// The signature algorithms accepted for payment notifications.
    public var signTypes: Set<WeChatSignType>
    public var line: Int

    public init(path: String, mchID: String, appID: String?, keys: [Secret], signTypes: Set<WeChatSignType>, line: Int) {
        self.path = path
        self.mchID = mchID
        self.appID = appID
        self.keys = keys
        self.signTypes = signTypes
        self.line = line
    }
}

/// payhook's configuration (contract §2), after validation.
public struct Config: Sendable, Equatable {
    /// The file it was read from.
    public var file: String
    /// `host:port` or `[ipv6]:port`.
    public var listen: String
    public var listenLine: Int?
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
    /// Listener threads. A thread whose handler waits for the disk stalls every connection it serves, and a
    /// group commit can only share its directory fsyncs among stores that wait at once, so this is sized for
    /// the disk's latency rather than for the cores (README, "Performance").
    public var threads: Int
    public var shutdownGraceSeconds: Int
    /// Below this much free space in the spool's file system, callbacks are refused with 503 before
    /// anything is written (Postfix's `queue_minfree`, reliability.md §2). 0 turns the guard off.
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

    public static let defaultListen = "127.0.0.1:8080"
    /// `threads` when the file does not set it, and `max_connections` is at least this.
    public static let defaultThreads = 32
    public static let defaultLedgerRetentionDays = 7
    /// The margin between the ledger's retention and the oldest callback accepted: gc runs daily, and a
    /// ledger entry's age is counted from when it was written, not from the payment.
    public static let replayMarginDays = 1
    public static let defaultMaxCallbackAgeMilliseconds = maxCallbackAge(retentionDays: defaultLedgerRetentionDays)

    /// The oldest payment time a callback may carry under a retention of `retentionDays`.
    public static func maxCallbackAge(retentionDays: Int) -> Int64 {
        Int64(retentionDays - replayMarginDays) * 86_400_000
    }

    /// The oldest payment time a callback may carry under this config.
    public var maxCallbackAgeMilliseconds: Int64 { Self.maxCallbackAge(retentionDays: ledgerRetentionDays) }

    public init(file: String, spool: String) {
        self.file = file
        self.listen = Self.defaultListen
        self.spool = spool
        self.maxBodyBytes = 65536
        self.connectionTimeoutSeconds = 10
        self.maxConnections = 256
        self.maxConnectionsPerIP = 32
        self.connectionMemoryLimitBytes = 32768
        self.requestDeadlineSeconds = 30
        self.headerDeadlineSeconds = 10
        self.threads = Self.defaultThreads
        self.shutdownGraceSeconds = 10
        self.minFreeBytes = 16 * 1024 * 1024
        self.logLevel = "info"
        self.logFormat = "text"
        self.ledgerRetentionDays = Self.defaultLedgerRetentionDays
        self.maxConflictsPerEvent = 16
        self.maxConflicts = 1000
        self.unified = []
        self.wechat = []
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
