public import PayhookCore
import PayhookCrypto

/// Jeepay's merchant payment notification (jeequan/jeepay): `POST application/x-www-form-urlencoded`, MD5
/// `&key=` with the app secret (docs/contract.md §3.5, docs/protocols.md §10.4).
public struct JeepaySource: CallbackSource {
    public static let kindName = "jeepay"
    public static let sourceName = "jeepay.pay"

    /// `state`: 0 created, 1 paying, 2 paid, 3 failed, 4 cancelled, 5 refunded, 6 closed.
    public static let states: Set<String> = ["0", "1", "2", "3", "4", "5", "6"]

    public static let keyFields = [
        "mchNo", "appId", "mchOrderNo", "state", "amount", "payOrderId", "channelOrderNo", "successTime", "currency", "reqTime",
    ]

    /// `reqTime` is when the notification was made, not a fact of the payment: an operator re-sending it from
    /// Jeepay's console may change it without making a conflict.
    public static let fingerprintRules: [String: FingerprintRule] = [sourceName: .excluding(["reqTime"])]

    public let path: String
    private let tenants: [String: JeepayTenant]
    public let maxCallbackAgeMilliseconds: Int64

    public init(path: String, tenants: [JeepayTenant], maxCallbackAgeMilliseconds: Int64 = ReplayWindow.defaultMaxCallbackAgeMilliseconds) {
        self.path = path
        var byApp: [String: JeepayTenant] = [:]
        for tenant in tenants where tenant.path == path { byApp[tenant.appID] = tenant }
        self.tenants = byApp
        self.maxCallbackAgeMilliseconds = maxCallbackAgeMilliseconds
    }

    public var kind: String { Self.kindName }
    public var method: String { "POST" }

    /// Its verdicts are offered for reuse (``Verdict/reuse``), and read no header field.
    public var verdictHeaders: [String]? { [] }

    /// Jeepay compares `"SUCCESS".equalsIgnoreCase(body)` without trimming: exactly these seven bytes.
    public var successAnswer: Answer {
        .text(200, "SUCCESS")
    }

    public func failureAnswer(status: Int, reason: String) -> Answer {
        .text(status, "FAIL")
    }

    public func process(_ request: CallbackRequest, nowMilliseconds: Int64) -> Verdict {
        func refused(_ refusal: Refusal, tenant: String? = nil) -> Verdict {
            .refused(refusal, source: Self.sourceName, tenant: tenant)
        }
        let parameters: [FormParameter]
        do {
            parameters = try MerchantNotifyForm.read(request, query: false)
        } catch {
            return refused(error)
        }
        let values = MerchantNotifyForm.values(parameters)
        guard let appID = values["appId"], !appID.isEmpty else {
            return refused(.malformed("parameter 'appId' is missing, so no tenant can be chosen"))
        }
        guard let tenant = tenants[appID] else {
            return refused(.unknownTenant("no [[jeepay]] tenant with app_id '\(LogText.printable(appID, limit: 32))' on \(path)"))
        }
        let mchNo = tenant.mchNo
        let position: Int
        switch MD5KeySigning.verify(parameters, sign: values[MD5KeySigning.signParameter], secrets: tenant.keys) {
        case .failure(let refusal): return refused(refusal, tenant: mchNo)
        case .success(let found): position = found
        }
        guard values["mchNo"] == mchNo else {
            return refused(.unknownTenant("mchNo does not match the tenant's mch_no"), tenant: mchNo)
        }
        if let refusal = MD5KeySigning.checkMoves(parameters, keyFields: Self.keyFields) { return refused(refusal, tenant: mchNo) }
        if let success = values["successTime"], MerchantNotifyForm.milliseconds(success) == nil {
            return refused(.semantic("successTime is not epoch milliseconds"), tenant: mchNo)
        }
        return Self.payment.verdict(
            parameters, values, tenant: mchNo, position: position, request: request, now: nowMilliseconds, maxAge: maxCallbackAgeMilliseconds)
    }

    static let payment = MerchantPayment(
        source: sourceName, stateField: "state", states: states, statesText: "0 to 6", timeField: "reqTime",
        fingerprintRule: fingerprintRules[sourceName] ?? .allFields)
}
