public import PayhookCore
import PayhookCrypto

/// The unified pay platform's `bgUrl` callback: `GET <path>?money=…&requestKey=…&…&sign=…`
/// (docs/protocols.md §2, docs/contract.md §3 "Unified platform callbacks").
///
/// One instance serves one configured path; the callback's `domainCode` picks the tenant, and only that
/// tenant's secrets are tried.
public struct UnifiedSource: CallbackSource {
    public static let sourceName = "unified"

    /// ``Event/fingerprintRule`` of the events this module writes, for reading stored events back: every field,
    /// since the platform signs nothing that changes between deliveries of one callback.
    public static let fingerprintRules: [String: FingerprintRule] = [sourceName: .allFields]

    public let path: String
    private let tenants: [String: UnifiedTenant]
    /// A callback whose `payTime` is older than this is refused: the dedupe ledger may no longer hold its key
    /// (README, "Replays and the ledger's retention").
    public let maxCallbackAgeMilliseconds: Int64

    /// - Parameters:
    ///   - tenants: every `[[unified]]` table configured for one path.
    ///   - maxCallbackAgeMilliseconds: the running config's `maxCallbackAgeMilliseconds` (``ReplayWindow``).
    public init(path: String, tenants: [UnifiedTenant], maxCallbackAgeMilliseconds: Int64 = ReplayWindow.defaultMaxCallbackAgeMilliseconds) {
        self.path = path
        var byCode: [String: UnifiedTenant] = [:]
        for tenant in tenants where tenant.path == path { byCode[tenant.domainCode] = tenant }
        self.tenants = byCode
        self.maxCallbackAgeMilliseconds = maxCallbackAgeMilliseconds
    }

    public var method: String { "GET" }

    public var kind: String { Self.sourceName }

    /// Its verdicts are offered for reuse (``Verdict/reuse``), and read no header field.
    public var verdictHeaders: [String]? { [] }

    /// The platform treats the body `success` as processed and anything else as a failure (docs/protocols.md §2.1).
    public var successAnswer: Answer {
        .text(200, "success")
    }

    public func failureAnswer(status: Int, reason: String) -> Answer {
        .text(status, "fail")
    }

    public func process(_ request: CallbackRequest, nowMilliseconds: Int64) -> Verdict {
        // Every unified callback is one kind of event, so the source label is known from the start; the tenant
        // label once `domainCode` named a configured tenant.
        func refused(_ refusal: Refusal, tenant: String? = nil) -> Verdict {
            .refused(refusal, source: Self.sourceName, tenant: tenant)
        }
        let parameters: [FormParameter]
        do {
            parameters = try FormQuery.decode(request.query ?? "")
        } catch {
            return refused(.malformed(error.description))
        }
        let values = UnifiedValues(parameters)

        guard let domainCode = values.domainCode, !domainCode.isEmpty else {
            return refused(.malformed("parameter 'domainCode' is missing, so no tenant can be chosen"))
        }
        guard let tenant = tenants[domainCode] else {
            return refused(.unknownTenant("no [[unified]] tenant with domain_code '\(LogText.printable(domainCode))' on \(path)"))
        }
        let match: Match
        switch Self.verify(parameters, sign: values.sign, tenant: tenant) {
        case .failure(let refusal):
            return refused(refusal, tenant: domainCode)
        case .success(let found):
            match = found
        }
        let checked: UnifiedFields.Checked
        switch UnifiedFields.check(values, nowMilliseconds: nowMilliseconds, maxAgeMilliseconds: maxCallbackAgeMilliseconds) {
        case .failure(let error): return refused(.semantic(error.message), tenant: domainCode)
        case .success(let passed): checked = passed
        }
        let requestKey = values.requestKey ?? ""
        let payStatus = values.payStatus ?? ""
        if let refusal = Self.checkMoves(parameters, requestKey: requestKey, tenant: tenant) {
            return refused(refusal, tenant: domainCode)
        }
        let key = DedupeKey(source: Self.sourceName, parts: [domainCode, requestKey, payStatus])
        // `fields` holds what the signature covers: non-empty values other than `sign`. An empty value
        // adds nothing to the signed string, so its presence is not authenticated and it is left out.
        let fields = parameters.filter { $0.name != UnifiedSigning.signParameter && !$0.value.isEmpty }
        let event = Event(
            id: Hex.encode(Digest.sha256(key.bytes)),
            source: Self.sourceName,
            tenant: domainCode,
            orderRef: requestKey,
            status: payStatus,
            amount: checked.money,
            currency: values.currencyType ?? "",
            dedupeKey: key,
            verifiedWith: tenant.signScheme.rawValue,
            receivedAtMilliseconds: request.receivedAtMilliseconds,
            remoteAddress: request.remoteAddress,
            fields: fields,
            raw: Event.RawRequest(method: request.method, target: request.target, body: String(decoding: request.body, as: UTF8.self))
        )
        var verified = event
        verified.secretPosition = match.secretPosition
        var verdict = Verdict.accepted(verified)
        // The verdict depends on the query, the tenant's config and, through the `payTime` checks only, on the
        // clock: a byte-identical retry gets it again while those checks pass (``VerdictReuse``).
        verdict.reuse = Self.reuseWindow(payTime: checked.payTime, maxAgeMilliseconds: maxCallbackAgeMilliseconds)
        return verdict
    }

    /// The clock readings at which ``UnifiedFields/check(_:nowMilliseconds:maxAgeMilliseconds:)`` passes for this
    /// `payTime`: from `payTimeFutureSlackMilliseconds` before it to `maxAgeMilliseconds` after it, both inclusive.
    static func reuseWindow(payTime: Int64, maxAgeMilliseconds: Int64) -> VerdictReuse {
        let (notBefore, under) = payTime.subtractingReportingOverflow(UnifiedFields.payTimeFutureSlackMilliseconds)
        let (notAfter, over) = payTime.addingReportingOverflow(maxAgeMilliseconds)
        return VerdictReuse(notBefore: under ? .min : notBefore, notAfter: over ? .max : notAfter)
    }

    /// The checks against moved values that the dedupe key depends on (README, "The weakness of
    /// values-sha1"). `values-sha1` signs the sorted values without their names, so any value of a genuine
    /// callback can be moved into `requestKey`, making a new dedupe key for the same payment; a genuine
    /// `requestKey` is the merchant's own order key and never equals another parameter's value. Names are
    /// signed under `salted-sha1`, so there only the pattern applies.
    public static func checkMoves(_ parameters: [FormParameter], requestKey: String, tenant: UnifiedTenant) -> Refusal? {
        if tenant.signScheme == .valuesSHA1 {
            for parameter in parameters where parameter.name != "requestKey" && parameter.name != UnifiedSigning.signParameter {
                // Lengths first: nearly every value differs in length, and this runs for every duplicate too.
                if parameter.value.utf8.count == requestKey.utf8.count, parameter.value.utf8.elementsEqual(requestKey.utf8) {
                    return .semantic("requestKey equals the value of another parameter (\(LogText.printable(parameter.name, limit: 32))): a value moved under values-sha1")
                }
            }
        }
        if let pattern = tenant.requestKeyPattern, !pattern.matches(requestKey) {
            return .semantic("requestKey does not match the tenant's request_key_pattern")
        }
        return nil
    }

    /// What verification found; `secretPosition` is the 1-based line of the secret that matched.
    public struct Match: Sendable, Equatable {
        public let secretPosition: Int
        public init(secretPosition: Int) { self.secretPosition = secretPosition }
    }

    /// Checks `sign` against each of the tenant's secrets. The comparison is over the decoded 20 bytes in
    /// constant time, so upper- and lowercase hex both verify and timing reveals nothing.
    public static func verify(_ parameters: [FormParameter], sign: String?, tenant: UnifiedTenant) -> Result<Match, Refusal> {
        guard let sign, !sign.isEmpty else {
            return .failure(.badSignature("parameter 'sign' is missing"))
        }
        guard sign.utf8.count == 40, let presented = Hex.decode(sign) else {
            return .failure(.badSignature("sign is not 40 hexadecimal characters"))
        }
        var matched: Int?
        // Try every secret even after a match, so the time taken does not tell which position matched.
        for (index, secret) in tenant.secrets.enumerated() {
            let expected = Digest.sha1(UnifiedSigning.message(tenant.signScheme, parameters, secret: secret.value))
            if Digest.constantTimeEquals(expected, presented), matched == nil { matched = index + 1 }
        }
        guard let matched else {
            return .failure(.badSignature("sign does not match (\(tenant.signScheme.rawValue), \(tenant.secrets.count) secret(s) tried)"))
        }
        return .success(Match(secretPosition: matched))
    }

}
