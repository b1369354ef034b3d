import PayhookCore
import PayhookCrypto

/// Reads the parameters of an XxPay or Jeepay notification, strictly (FormQuery's rules: UTF-8, no repeated
/// name, no malformed escape).
enum MerchantNotifyForm {
    /// The query's parameters, then the body's; a name in both is as repeated as a name twice in one, since
    /// which copy was signed cannot be known.
    static func read(_ request: CallbackRequest, query: Bool) throws(Refusal) -> [FormParameter] {
        var parameters: [FormParameter] = []
        do {
            if query, let text = request.query { parameters = try FormQuery.decode(text) }
            if !request.body.isEmpty {
                guard let body = String(validating: request.body, as: UTF8.self) else {
                    throw Refusal.malformed("the body is not UTF-8")
                }
                // A set of the query's names: a body of thousands of names must cost linear time, not quadratic.
                let inQuery = Set(parameters.map(\.name))
                for parameter in try FormQuery.decode(body) {
                    if inQuery.contains(parameter.name) {
                        throw Refusal.malformed(FormQueryError.repeatedName(parameter.name).description + " (query and body)")
                    }
                    parameters.append(parameter)
                }
            }
        } catch let error as FormQueryError {
            throw .malformed(error.description)
        } catch let error as Refusal {
            throw error
        } catch {
            throw .malformed("\(error)")
        }
        guard !parameters.isEmpty else { throw .malformed("the notification holds no parameters") }
        return parameters
    }

    static func values(_ parameters: [FormParameter]) -> [String: String] {
        var values: [String: String] = [:]
        for parameter in parameters { values[parameter.name] = parameter.value }
        return values
    }

    /// Epoch milliseconds as XxPay and Jeepay write times (`paySuccTime`, `reqTime`).
    static func milliseconds(_ text: String?) -> Int64? {
        text.flatMap(DecimalDigits.nonNegative)
    }
}

/// What XxPay and Jeepay payment notifications share once the signature verified (docs/protocols.md §10.3,
/// §10.4): the state in its set, the two order numbers, the amount in whole fen, the notification's own time
/// within the replay window, and then the event, keyed `[merchant, mchOrderNo, state]`.
struct MerchantPayment {
    let source: String
    /// The state's field (`status`, `state`), its values, and how a message lists them.
    let stateField: String
    let states: Set<String>
    let statesText: String
    /// The epoch-milliseconds field the replay window is judged by (`paySuccTime`, `reqTime`).
    let timeField: String
    let fingerprintRule: FingerprintRule

    func verdict(
        _ parameters: [FormParameter], _ values: [String: String], tenant: String, position: Int, request: CallbackRequest,
        now: Int64, maxAge: Int64
    ) -> Verdict {
        func refused(_ reason: String) -> Verdict { .refused(.semantic(reason), source: source, tenant: tenant) }
        let status = values[stateField] ?? ""
        guard states.contains(status) else {
            return refused("\(stateField) '\(LogText.printable(status, limit: 8))' is not one of \(statesText)")
        }
        for name in ["mchOrderNo", "payOrderId"] where (values[name] ?? "").isEmpty {
            return refused("\(name) is missing (only payment notifications are read)")
        }
        guard let amount = values["amount"].flatMap(DecimalDigits.nonNegative) else {
            return refused("amount is missing or not a whole number of fen")
        }
        guard let time = MerchantNotifyForm.milliseconds(values[timeField]) else {
            return refused("\(timeField) is missing or not epoch milliseconds")
        }
        if time < now - maxAge {
            return refused("\(timeField) is older than the replay window (\(maxAge / 86_400_000) days, ledger_retention_days minus one)")
        }
        let orderRef = values["mchOrderNo"] ?? ""
        let key = DedupeKey(source: source, parts: [tenant, orderRef, status])
        var event = Event(
            id: Hex.encode(Digest.sha256(key.bytes)),
            source: source,
            tenant: tenant,
            orderRef: orderRef,
            status: status,
            amount: amount,
            currency: MerchantCurrency.code(values["currency"]),
            dedupeKey: key,
            verifiedWith: "md5",
            receivedAtMilliseconds: request.receivedAtMilliseconds,
            remoteAddress: request.remoteAddress,
            fields: parameters.filter { $0.name != MD5KeySigning.signParameter && !$0.value.isEmpty },
            raw: Event.RawRequest(method: request.method, target: request.target, body: String(decoding: request.body, as: UTF8.self))
        )
        event.secretPosition = position
        event.fingerprintRule = fingerprintRule
        var verdict = Verdict.accepted(event)
        // The verdict depends on the query, the body, the tenant's config and, through the check of `timeField`
        // only, on the clock: a byte-identical retry gets it again while that check passes (``VerdictReuse``).
        verdict.reuse = .replayWindow(time: time, maxAgeMilliseconds: maxAge)
        return verdict
    }
}

/// XxPay and Jeepay write the currency in lowercase (`cny`); events carry ISO 4217's uppercase, CNY when the
/// notification names none. `fields` keep the value as sent.
enum MerchantCurrency {
    static func code(_ text: String?) -> String {
        guard let text, !text.isEmpty else { return "CNY" }
        return String(decoding: text.utf8.map { (0x61...0x7A).contains($0) ? $0 - 0x20 : $0 }, as: UTF8.self)
    }
}
