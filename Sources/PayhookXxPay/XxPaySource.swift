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

    /// Its verdicts are offered for reuse (``Verdict/reuse``), and read no header field.
    public var verdictHeaders: [String]? { [] }

    /// The sender compares `trim().equalsIgnoreCase("success")`; payhook sends the exact word.
    public var successAnswer: Answer {
        .text(200, "success")
    }

    public func failureAnswer(status: Int, reason: String) -> Answer {
        .text(status, "fail")
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
        return Self.payment.verdict(
            parameters, values, tenant: mchID, position: position, request: request, now: nowMilliseconds, maxAge: maxCallbackAgeMilliseconds)
    }

    static let payment = MerchantPayment(
        source: sourceName, stateField: "status", states: states, statesText: "-2, -1, 0, 1, 2, 3", timeField: "paySuccTime",
        fingerprintRule: fingerprintRules[sourceName] ?? .allFields)
}
