public import PayhookCore
import PayhookCrypto

/// Alipay's asynchronous notifications: `POST application/x-www-form-urlencoded`, RSA2 over the sorted
/// parameters (docs/contract.md §3.4, docs/protocols.md §9).
///
/// One instance serves one configured path; the notification's `app_id` picks the tenant, and only that
/// tenant's Alipay public keys are tried.
public struct AlipaySource: CallbackSource {
    /// The path's kind, in logs and metrics.
    public static let kindName = "alipay"
    /// Trade notifications (`notify_type=trade_status_sync`).
    public static let tradeSource = "alipay.trade"
    /// Open-platform notifications, accepted only from tenants with `gateway_notifications = true`.
    public static let eventSource = "alipay.event"

    /// The trade states Alipay notifies (docs/protocols.md §9.3).
    public static let tradeStates: Set<String> = ["WAIT_BUYER_PAY", "TRADE_SUCCESS", "TRADE_FINISHED", "TRADE_CLOSED"]

    /// Fields that decide an event's identity or amount. None of them ever holds `&` or `=`, and no other value
    /// may hold `&name=` for one of them: the signed string has no escaping, so a value holding `&out_biz_no=R1`
    /// signs the same as two parameters, and a sender of genuine notifications could otherwise have one
    /// re-split into another event (README, "Alipay notifications").
    public static let keyFields = [
        "app_id", "out_trade_no", "trade_status", "out_biz_no", "total_amount", "trade_no", "refund_fee", "seller_id",
        "notify_id", "notify_type", "notify_time",
    ]

    /// A retry of one event must agree on these to be a duplicate; anything else differing is a conflict. The
    /// delivery's own fields (`notify_time`, `sign_type`, `charset`) may change between retries.
    public static let tradeFingerprintFields = [
        "app_id", "out_trade_no", "trade_status", "out_biz_no", "total_amount", "trade_no", "refund_fee", "seller_id",
        "buyer_id", "gmt_payment", "gmt_refund",
    ]

    public static let fingerprintRules: [String: FingerprintRule] = [
        tradeSource: FingerprintRule(name: "alipay-trade") { fields, _ in
            let values = Dictionary(fields.map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first })
            return Event.fingerprint(of: tradeFingerprintFields.map { FormParameter(name: $0, value: values[$0] ?? "") }, resource: nil)
        },
        eventSource: .excluding(["notify_time", "sign_type", "charset"]),
    ]

    public let path: String
    private let tenants: [String: AlipayTenant]
    public let maxCallbackAgeMilliseconds: Int64

    public init(path: String, tenants: [AlipayTenant], maxCallbackAgeMilliseconds: Int64 = ReplayWindow.defaultMaxCallbackAgeMilliseconds) {
        self.path = path
        var byApp: [String: AlipayTenant] = [:]
        for tenant in tenants where tenant.path == path { byApp[tenant.appID] = tenant }
        self.tenants = byApp
        self.maxCallbackAgeMilliseconds = maxCallbackAgeMilliseconds
    }

    public var kind: String { Self.kindName }
    public var method: String { "POST" }

    /// Its verdicts are offered for reuse (``Verdict/reuse``), and read no header field.
    public var verdictHeaders: [String]? { [] }

    /// Alipay stops retrying on exactly `success`, seven bytes (docs/protocols.md §9.4).
    public var successAnswer: Answer {
        .text(200, "success")
    }

    public func failureAnswer(status: Int, reason: String) -> Answer {
        .text(status, "fail")
    }

    /// What the form held, read once: the decoded bytes (what is signed) and their text in the form's charset.
    public struct Form: Sendable {
        public var raw: [RawFormParameter]
        public var parameters: [FormParameter]
        public var charset: TextCharset

        public func value(_ name: String) -> String? {
            parameters.first { $0.name == name }?.value
        }
    }

    /// Decodes a notification body: strict form decoding to bytes, then text in the charset its `charset`
    /// parameter names, if `allowed` holds it. Throws the refusal to answer with.
    public static func readForm(_ body: [UInt8], allowed: Set<TextCharset>) throws(Refusal) -> Form {
        let raw: [RawFormParameter]
        do {
            raw = try FormQuery.decodeBytes(body)
        } catch {
            throw .malformed(error.description)
        }
        return try readForm(raw, allowed: allowed)
    }

    /// The same, for a body already decoded to bytes.
    public static func readForm(_ raw: [RawFormParameter], allowed: Set<TextCharset>) throws(Refusal) -> Form {
        guard !raw.isEmpty else { throw .malformed("the body holds no form parameters") }
        var charset = TextCharset.utf8
        if let named = raw.first(where: { $0.name == Array("charset".utf8) }) {
            let name = String(decoding: named.value, as: UTF8.self)
            guard let known = TextCharset(name: name) else {
                throw .malformed("charset '\(LogText.printable(name, limit: 32))' is not one payhook reads (utf-8, gbk)")
            }
            guard allowed.contains(known) else {
                throw .malformed("charset \(known.rawValue) is not in the tenant's charsets")
            }
            charset = known
        }
        var parameters: [FormParameter] = []
        parameters.reserveCapacity(raw.count)
        for parameter in raw {
            guard let name = charset.decode(parameter.name), let value = charset.decode(parameter.value) else {
                throw .malformed("parameter '\(LogText.printable(String(decoding: parameter.name, as: UTF8.self), limit: 32))' is not valid \(charset.rawValue)")
            }
            parameters.append(FormParameter(name: name, value: value))
        }
        return Form(raw: raw, parameters: parameters, charset: charset)
    }

    public func process(_ request: CallbackRequest, nowMilliseconds: Int64) -> Verdict {
        func refused(_ refusal: Refusal, source: String, tenant: String? = nil) -> Verdict {
            .refused(refusal, source: source, tenant: tenant)
        }
        // `app_id` is ASCII in every charset, so the tenant (and with it the charsets allowed) is found from the
        // raw bytes before any text is made.
        let raw: [RawFormParameter]
        do {
            raw = try FormQuery.decodeBytes(request.body)
        } catch {
            return refused(.malformed(error.description), source: Self.kindName)
        }
        // Names are ASCII in both charsets: `trade_status` shows a trade notification before the text is decoded.
        // Until the request shows its kind, its label is the path's (`Verdict`, Sources/PayhookCore/Source.swift).
        let isTrade = raw.contains { $0.name == Array("trade_status".utf8) }
        let shown = isTrade ? Self.tradeSource : Self.kindName
        guard let appIDBytes = raw.first(where: { $0.name == Array("app_id".utf8) })?.value, !appIDBytes.isEmpty else {
            return refused(.malformed("parameter 'app_id' is missing, so no tenant can be chosen"), source: shown)
        }
        let appID = String(decoding: appIDBytes, as: UTF8.self)
        guard appIDBytes.allSatisfy({ $0 < 0x80 }), let tenant = tenants[appID] else {
            return refused(
                .unknownTenant("no [[alipay]] tenant with app_id '\(LogText.printable(appID, limit: 32))' on \(path)"), source: shown)
        }
        let source = isTrade || !tenant.gatewayNotifications ? Self.tradeSource : Self.eventSource
        let form: Form
        do {
            form = try Self.readForm(raw, allowed: tenant.charsets)
        } catch {
            return refused(error, source: source, tenant: appID)
        }
        let match: Match
        switch Self.verify(form, tenant: tenant, trade: source == Self.tradeSource) {
        case .failure(let refusal): return refused(refusal, source: source, tenant: appID)
        case .success(let found): match = found
        }
        if let refusal = Self.checkMoves(form.parameters) { return refused(refusal, source: source, tenant: appID) }
        var values: [String: String] = [:]
        for parameter in form.parameters { values[parameter.name] = parameter.value }
        // A pinned seller is required of trade notifications, which always name theirs; open-platform ones
        // name none, and are checked only when they do.
        if let expected = tenant.sellerID, values["seller_id"] != expected, source == Self.tradeSource || values["seller_id"] != nil {
            return refused(.semantic("seller_id is missing or does not match the tenant's seller_id"), source: source, tenant: appID)
        }
        guard let notifyTime = values["notify_time"].flatMap({ BeijingTime.milliseconds($0, dashed: true) }) else {
            return refused(.semantic("notify_time is missing or not yyyy-MM-dd HH:mm:ss"), source: source, tenant: appID)
        }
        if notifyTime < nowMilliseconds - maxCallbackAgeMilliseconds {
            return refused(
                .semantic("notify_time is older than the replay window (\(maxCallbackAgeMilliseconds / 86_400_000) days, ledger_retention_days minus one)"),
                source: source, tenant: appID)
        }
        let checked: Checked
        switch source == Self.tradeSource ? Self.checkTrade(values, tenant: tenant) : Self.checkGateway(values) {
        case .failure(let refusal): return refused(refusal, source: source, tenant: appID)
        case .success(let result): checked = result
        }
        // `fields` holds what the signature covers: non-empty values other than `sign` (and `sign_type` under
        // the trade rule, which leaves it out of the signed string).
        let signedTypeToo = match.rule == .withSignType
        let fields = form.parameters.filter { parameter in
            !parameter.value.isEmpty && parameter.name != AlipaySigning.signParameter
                && (signedTypeToo || parameter.name != AlipaySigning.signTypeParameter)
        }
        let key = DedupeKey(source: source, parts: checked.keyParts)
        var event = Event(
            id: Hex.encode(Digest.sha256(key.bytes)),
            source: source,
            tenant: appID,
            orderRef: checked.orderRef,
            status: checked.status,
            amount: checked.amount,
            currency: checked.currency,
            dedupeKey: key,
            verifiedWith: match.type.verifiedWith,
            receivedAtMilliseconds: request.receivedAtMilliseconds,
            remoteAddress: request.remoteAddress,
            fields: fields,
            raw: Event.RawRequest(method: request.method, target: request.target, body: String(decoding: request.body, as: UTF8.self))
        )
        event.secretPosition = match.keyPosition
        event.fingerprintRule = Self.fingerprintRules[source] ?? .allFields
        var verdict = Verdict.accepted(event)
        // The verdict depends on the body, the tenant's config and, through the `notify_time` check only, on the
        // clock: a byte-identical retry gets it again while that check passes (``VerdictReuse``).
        verdict.reuse = .replayWindow(time: notifyTime, maxAgeMilliseconds: maxCallbackAgeMilliseconds)
        return verdict
    }

    /// What verification found: the key that verified (1-based, in file order), the algorithm and the rule.
    public struct Match: Sendable, Equatable {
        public let keyPosition: Int
        public let type: AlipaySignType
        public let rule: AlipaySigning.Rule
        public init(keyPosition: Int, type: AlipaySignType, rule: AlipaySigning.Rule) {
            self.keyPosition = keyPosition
            self.type = type
            self.rule = rule
        }
    }

    /// Checks `sign` with each of the tenant's keys. Trade notifications are checked under the trade rule only;
    /// open-platform ones with `sign_type` kept first, then without, as Alipay's own SDK does.
    public static func verify(_ form: Form, tenant: AlipayTenant, trade: Bool) -> Result<Match, Refusal> {
        guard let sign = form.value(AlipaySigning.signParameter), !sign.isEmpty else {
            return .failure(.badSignature("parameter 'sign' is missing"))
        }
        // Standard base64 decodes `+`; a `sign` whose `+` arrived unescaped was decoded to a space and is refused
        // here as not base64, the sender's bug and not a reason to guess.
        guard let signature = Base64.decode(sign) else {
            return .failure(.badSignature("sign is not base64"))
        }
        let typeName = form.value(AlipaySigning.signTypeParameter) ?? AlipaySignType.rsa2.rawValue
        guard let type = AlipaySignType(rawValue: typeName) else {
            return .failure(.badSignature("sign_type '\(LogText.printable(typeName, limit: 16))' is not RSA2 or RSA"))
        }
        guard tenant.signTypes.contains(type) else {
            return .failure(.badSignature("sign_type \(type.rawValue) is not in the tenant's sign_types"))
        }
        let rules: [AlipaySigning.Rule] = trade ? [.withoutSignType] : [.withSignType, .withoutSignType]
        for rule in rules {
            let content = AlipaySigning.content(form.raw, rule: rule)
            if let position = AlipaySigning.verify(content: content, signature: signature, type: type, keys: tenant.keys) {
                return .success(Match(keyPosition: position, type: type, rule: rule))
            }
        }
        return .failure(.badSignature("sign does not verify (\(type.rawValue), \(tenant.keys.count) key(s) tried)"))
    }

    /// Refuses a value that could stand for several parameters of the signed string (see ``keyFields``).
    public static func checkMoves(_ parameters: [FormParameter]) -> Refusal? {
        FieldMoves.refusal(parameters, keyFields: keyFields, signParameter: AlipaySigning.signParameter)
    }

    struct Checked {
        var keyParts: [String]
        var orderRef: String
        var status: String
        var amount: Int64
        var currency: String
    }

    /// The documented checks of a trade notification (docs/protocols.md §9.3).
    static func checkTrade(_ values: [String: String], tenant: AlipayTenant) -> Result<Checked, Refusal> {
        let status = values["trade_status"] ?? ""
        guard tradeStates.contains(status) else {
            return .failure(.semantic("trade_status '\(LogText.printable(status, limit: 32))' is not one of \(tradeStates.sorted().joined(separator: ", "))"))
        }
        for name in ["out_trade_no", "trade_no", "notify_id"] where (values[name] ?? "").isEmpty {
            return .failure(.semantic("\(name) is missing"))
        }
        let orderRef = values["out_trade_no"] ?? ""
        guard orderRef.utf8.count <= 64 else { return .failure(.semantic("out_trade_no is longer than 64 characters")) }
        guard let total = values["total_amount"], let amount = DecimalDigits.fen(yuan: total) else {
            return .failure(.semantic("total_amount is missing or not a yuan amount with at most two decimals"))
        }
        if let refund = values["refund_fee"] {
            guard let refunded = DecimalDigits.fen(yuan: refund) else {
                return .failure(.semantic("refund_fee is not a yuan amount with at most two decimals"))
            }
            guard refunded <= amount else { return .failure(.semantic("refund_fee is more than total_amount")) }
        }
        let refundRequest = values["out_biz_no"] ?? ""
        return .success(
            Checked(
                keyParts: [tenant.appID, orderRef, status, refundRequest], orderRef: orderRef, status: status, amount: amount,
                currency: "CNY"))
    }

    /// An open-platform notification: identified by what it is and Alipay's notification id, which stays the same
    /// across retries (docs/protocols.md §9.5). It carries no trade amount.
    static func checkGateway(_ values: [String: String]) -> Result<Checked, Refusal> {
        let type = values["notify_type"] ?? ""
        let id = values["notify_id"] ?? ""
        guard !type.isEmpty, !id.isEmpty else {
            return .failure(.semantic("a notification without trade_status needs notify_type and notify_id"))
        }
        let appID = values["app_id"] ?? ""
        // order_ref is never empty (schema/event.v1.schema.json): the notification id when no order is named.
        let orderRef = values["out_trade_no"].flatMap { $0.isEmpty ? nil : $0 } ?? id
        return .success(Checked(keyParts: [appID, type, id], orderRef: orderRef, status: type, amount: 0, currency: ""))
    }
}
