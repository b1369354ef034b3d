/// A callback as the listener received it, reduced to what a source needs.
public struct CallbackRequest: Sendable {
    public var method: String
    /// The request target exactly as received (raw, not percent-decoded): `path?query`.
    public var target: String
    /// The raw text after the first `?`, nil when there is none.
    public var query: String?
    /// Header fields in arrival order, names as sent. Sources that sign headers (WeChat Pay v3's
    /// `Wechatpay-*`) read them through ``headerValues(_:)``.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    public var remoteAddress: String
    public var receivedAtMilliseconds: Int64

    public init(
        method: String, target: String, query: String?, headers: [(name: String, value: String)] = [],
        body: [UInt8], remoteAddress: String, receivedAtMilliseconds: Int64
    ) {
        self.method = method
        self.target = target
        self.query = query
        self.headers = headers
        self.body = body
        self.remoteAddress = remoteAddress
        self.receivedAtMilliseconds = receivedAtMilliseconds
    }

    /// Every value of the header `name`, in arrival order. Names compare ASCII case-insensitively (RFC 9110
    /// §5.1); a source decides what a repeated header means (a signed one repeated is a refusal, since which
    /// copy was signed cannot be known).
    public func headerValues(_ name: String) -> [String] {
        let wanted = Array(name.utf8)
        return headers.compactMap { field in
            let got = Array(field.name.utf8)
            guard got.count == wanted.count else { return nil }
            for (a, b) in zip(got, wanted) where Self.lowercased(a) != Self.lowercased(b) { return nil }
            return field.value
        }
    }

    private static func lowercased(_ byte: UInt8) -> UInt8 {
        (0x41...0x5A).contains(byte) ? byte | 0x20 : byte
    }
}

/// Why a callback was not accepted. Each maps to one HTTP status (docs/contract.md §3) and one metrics outcome.
public enum Refusal: Error, Sendable, Equatable {
    /// 400: the request could not be parsed (bad escapes, repeated names, missing routing field).
    case malformed(String)
    /// 401: no configured tenant for the callback's tenant field.
    case unknownTenant(String)
    /// 401: the signature is missing, malformed or does not verify with any of the tenant's secrets.
    case badSignature(String)
    /// 400: verified, but a field fails the documented semantic checks.
    case semantic(String)

    public var status: Int {
        switch self {
        case .malformed, .semantic: return 400
        case .unknownTenant, .badSignature: return 401
        }
    }

    /// The outcome label for logs and metrics.
    public var outcome: String {
        switch self {
        case .malformed: return "malformed"
        case .unknownTenant: return "unknown_tenant"
        case .badSignature: return "bad_signature"
        case .semantic: return "rejected"
        }
    }

    /// A sentence for the operator's log. It never contains a secret or an expected signature.
    public var reason: String {
        switch self {
        case .malformed(let r), .unknownTenant(let r), .badSignature(let r), .semantic(let r): return r
        }
    }
}

/// What a source made of one callback, and the labels it goes by in metrics, found in the same pass, so
/// nothing parses a request twice to name it.
///
/// The labels follow one rule for every outcome. `source` is the event source (``Event/source``) once the
/// request showed which kind of event it is, so a refusal and an acceptance of one kind of callback count
/// under one name; before that, the path's kind (``CallbackSource/kind``). `tenant` is the configured tenant
/// the request's routing field names, once that field was read; nil before, and when it names none, so it
/// is never request text.
public struct Verdict: Sendable, Equatable {
    public enum Outcome: Sendable, Equatable {
        case accepted(Event)
        case refused(Refusal)
        /// Answered with success but not queued: a notification that reports a communication failure carries
        /// no payment result and no signature; retrying it helps no one.
        case acknowledged(String)
    }

    public var outcome: Outcome
    public var source: String
    public var tenant: String?
    /// What the signature check learnt about the key the request named, for sources whose requests name one.
    public var signature = SignatureNotes()
    /// When an accepted verdict holds for a byte-identical request too (``VerdictReuse``); nil when the source
    /// does not say, and then every request is verified afresh.
    public var reuse: VerdictReuse?

    public init(_ outcome: Outcome, source: String, tenant: String?) {
        self.outcome = outcome
        self.source = source
        self.tenant = tenant
    }

    /// An accepted event: its own source and tenant are the labels.
    public static func accepted(_ event: Event) -> Verdict {
        Verdict(.accepted(event), source: event.source, tenant: event.tenant)
    }

    public static func refused(_ refusal: Refusal, source: String, tenant: String?) -> Verdict {
        Verdict(.refused(refusal), source: source, tenant: tenant)
    }

    public static func acknowledged(_ reason: String, source: String, tenant: String?) -> Verdict {
        Verdict(.acknowledged(reason), source: source, tenant: tenant)
    }
}

/// The time window in which a byte-identical request would get the same accepted verdict again: the window of
/// the source's time checks (a `payTime` neither too far ahead nor older than the replay window).
///
/// A retry is usually the same bytes as the delivery before it, and its signature check, parsing and field checks
/// give the same answer again: they depend on the request's method, target, body and the source's
/// ``CallbackSource/verdictHeaders`` only, and on the clock through the checks this window bounds. The router
/// keeps the verdicts of requests that proved to be retries, to answer the next such retry without repeating
/// that work (docs/architecture.md, "Retries that are the same bytes").
public struct VerdictReuse: Sendable, Equatable {
    /// The earliest and latest clock readings (Unix milliseconds, inclusive) at which the time checks pass.
    public var notBefore: Int64
    public var notAfter: Int64

    public init(notBefore: Int64, notAfter: Int64) {
        self.notBefore = notBefore
        self.notAfter = notAfter
    }

    /// The window of a replay check alone, one that refuses a notification whose own `time` is older than
    /// `now - maxAgeMilliseconds` and has no bound ahead (Alipay's `notify_time`, XxPay's `paySuccTime`,
    /// Jeepay's `reqTime`, WeChat Pay v2's `time_end` and `success_time`): every clock reading up to
    /// `time + maxAgeMilliseconds`, inclusive. A notification without a time (a WeChat refund that did not
    /// succeed) is not checked against the clock at all, and its window is every reading.
    public static func replayWindow(time: Int64?, maxAgeMilliseconds: Int64) -> VerdictReuse {
        guard let time else { return VerdictReuse(notBefore: .min, notAfter: .max) }
        let (notAfter, overflow) = time.addingReportingOverflow(maxAgeMilliseconds)
        return VerdictReuse(notBefore: .min, notAfter: overflow ? .max : notAfter)
    }
}

/// What a source that picks its verification key by a name in the request (WeChat Pay v3's `Wechatpay-Serial`)
/// saw, for the metrics an operator needs to watch a key migration finish (docs/contract.md §3.3).
public struct SignatureNotes: Sendable, Equatable {
    /// The configured key the request named, by its configured id: never request text, so a metric labelled
    /// with it has as many series as the config has keys. nil when the request named none or an unknown one.
    public var keyID: String?
    /// Whether the signature verified with that key; nil when it was not checked.
    public var verified: Bool?
    /// The request named a key no tenant on the path has.
    public var unknownKeyID = false
    /// A deliberate bad signature the sender uses to probe whether signatures are checked (WeChat Pay's
    /// `WECHATPAY/SIGNTEST/`), refused and counted apart from forgeries.
    public var probe = false
    /// The sender's signing time minus payhook's clock, in seconds, when the request carried one.
    public var clockSkewSeconds: Int64?

    public init() {}
}

/// One kind of payment callback: turns a request into a verified event or a refusal, and knows the exact
/// answer bytes its sender expects. A source never touches the disk; the server stores what it accepts.
public protocol CallbackSource: Sendable {
    /// A short name for the kind of path, in logs and metrics (the source module's own name for it).
    var kind: String { get }
    /// The HTTP method this source's sender uses.
    var method: String { get }
    /// Every method the path answers; any other is a 405 before the body is read. Most senders use one; XxPay's
    /// documentation says GET while its sender POSTs (docs/protocols.md §10.1), so its path takes both.
    var methods: [String] { get }
    /// Verifies and parses one request, once: the verdict carries its metrics labels too.
    func process(_ request: CallbackRequest, nowMilliseconds: Int64) -> Verdict
    /// The answer that tells the sender the event is stored (or was stored before).
    var successAnswer: Answer { get }
    /// The answer for any failure; the sender retries after it.
    func failureAnswer(status: Int, reason: String) -> Answer
    /// The header fields ``process(_:nowMilliseconds:)`` reads, by name, when the source offers its accepted
    /// verdicts for reuse (``Verdict/reuse``): a retry gets a kept verdict only when their values are the same
    /// too. nil (the default) when it never offers reuse, so the router keeps nothing for its requests.
    ///
    /// A source that offers reuse promises that its verdict depends on the request's method, target, body and
    /// these headers only, and on the clock only within the window it states: the event's labels, id and
    /// fingerprint are then the same for every such retry.
    var verdictHeaders: [String]? { get }
}

extension CallbackSource {
    public var methods: [String] { [method] }
    public var verdictHeaders: [String]? { nil }
}

/// Bytes to send back, with their status.
public struct Answer: Sendable, Equatable {
    public var status: Int
    public var contentType: String
    public var body: [UInt8]

    public init(status: Int, contentType: String, body: [UInt8]) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    /// A word in plain UTF-8 text: what the form-posting senders expect (`success`, `SUCCESS`, `fail`).
    public static func text(_ status: Int, _ word: String) -> Answer {
        Answer(status: status, contentType: "text/plain; charset=utf-8", body: Array(word.utf8))
    }
}
