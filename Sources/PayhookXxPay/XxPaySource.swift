public import PayhookCore
import PayhookCrypto

/// XxPay's merchant notification (jmdhappy/xxpay-master): MD5 `&key=` over the parameters, which its sender puts
/// in the query of a `POST` with an empty body although its documentation says `GET` (docs/contract.md §3.5,
/// docs/protocols.md §10.3). Both methods are accepted, and a form body too.
public struct XxPaySource: CallbackSource {
    public static let kindName = "xxpay"
    public static let sourceName = "xxpay.pay"

    /// `status`: -2 expired, -1 failed, 0 created, 1 paying, 2 paid, 3 business complete.
    public static let states: Set<String> = ["-2", "-1", "0", "1", "2", "3"]

    /// Fields that decide an event's identity, amount or age (see ``MD5KeySigning/checkMoves(_:keyFields:)``).
    public static let keyFields = ["mchId", "mchOrderNo", "status", "amount", "payOrderId", "channelOrderNo", "paySuccTime", "currency"]

    /// `backType` says whether the sender is the pay center (2) or the buyer's browser being redirected (1): the
    /// same payment either way, so it does not make a conflict.
    public static let fingerprintRules: [String: FingerprintRule] = [sourceName: .excluding(["backType"])]

    public let path: String
    private let tenants: [String: XxPayTenant]
    public let maxCallbackAgeMilliseconds: Int64

    public init(path: String, tenants: [XxPayTenant], maxCallbackAgeMilliseconds: Int64 = ReplayWindow.defaultMaxCallbackAgeMilliseconds) {
        self.path = path
        var byID: [String: XxPayTenant] = [:]
        for tenant in tenants where tenant.path == path { byID[tenant.mchID] = tenant }
        self.tenants = byID
        self.maxCallbackAgeMilliseconds = maxCallbackAgeMilliseconds
    }

    public var kind: String { Self.kindName }
    public var method: String { "POST" }
    public var methods: [String] { ["POST", "GET"] }

    /// The sender compares `trim().equalsIgnoreCase("success")`; payhook sends the exact word.
    public var successAnswer: Answer {
        Answer(status: 200, contentType: "text/plain; charset=utf-8", body: Array("success".utf8))
    }

    public func failureAnswer(status: Int, reason: String) -> Answer {
        Answer(status: status, contentType: "text/plain; charset=utf-8", body: Array("fail".utf8))
    }

    public func process(_ request: CallbackRequest, nowMilliseconds: Int64) -> Verdict {
        func refused(_ refusal: Refusal, tenant: String? = nil) -> Verdict {
            .refused(refusal, source: Self.sourceName, tenant: tenant)
        }
        let parameters: [FormParameter]
        do {
            parameters = try MerchantNotifyForm.read(request, query: true)
        } catch {
            return refused(error)
        }
        let values = MerchantNotifyForm.values(parameters)
        guard let mchID = values["mchId"], !mchID.isEmpty else {
            return refused(.malformed("parameter 'mchId' is missing, so no tenant can be chosen"))
        }
        guard let tenant = tenants[mchID] else {
            return refused(.unknownTenant("no [[xxpay]] tenant with mch_id '\(LogText.printable(mchID, limit: 32))' on \(path)"))
        }
        let position: Int
        switch MD5KeySigning.verify(parameters, sign: values[MD5KeySigning.signParameter], secrets: tenant.keys) {
        case .failure(let refusal): return refused(refusal, tenant: mchID)
        case .success(let found): position = found
        }
        if let refusal = MD5KeySigning.checkMoves(parameters, keyFields: Self.keyFields) { return refused(refusal, tenant: mchID) }
        let status = values["status"] ?? ""
        guard Self.states.contains(status) else {
            return refused(.semantic("status '\(LogText.printable(status, limit: 8))' is not one of -2, -1, 0, 1, 2, 3"), tenant: mchID)
        }
        for name in ["mchOrderNo", "payOrderId"] where (values[name] ?? "").isEmpty {
            return refused(.semantic("\(name) is missing"), tenant: mchID)
        }
        guard let amount = values["amount"].flatMap(DecimalDigits.nonNegative) else {
            return refused(.semantic("amount is missing or not a whole number of fen"), tenant: mchID)
        }
        guard let paid = MerchantNotifyForm.milliseconds(values["paySuccTime"]) else {
            return refused(.semantic("paySuccTime is missing or not epoch milliseconds"), tenant: mchID)
        }
        if paid < nowMilliseconds - maxCallbackAgeMilliseconds {
            return refused(
                .semantic("paySuccTime is older than the replay window (\(maxCallbackAgeMilliseconds / 86_400_000) days, ledger_retention_days minus one)"),
                tenant: mchID)
        }
        let orderRef = values["mchOrderNo"] ?? ""
        let key = DedupeKey(source: Self.sourceName, parts: [mchID, orderRef, status])
        var event = Event(
            id: Hex.encode(Digest.sha256(Array(key.text.utf8))),
            source: Self.sourceName,
            tenant: mchID,
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
        event.fingerprintRule = Self.fingerprintRules[Self.sourceName] ?? .allFields
        return .accepted(event)
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
