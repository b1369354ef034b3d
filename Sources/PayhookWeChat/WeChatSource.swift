public import PayhookCore
import PayhookCrypto

/// WeChat Pay API v2 notifications: payment results (signed, docs/protocols.md §4) and refund results
/// (`req_info` encrypted, docs/protocols.md §5), POSTed as XML.
///
/// One instance serves one configured path; the notification's `mch_id` picks the tenant and only that
/// tenant's keys are tried (docs/contract.md §2).
public struct WeChatSource: CallbackSource {
    public static let paySource = "wechat.pay"
    public static let refundSource = "wechat.refund"


    public let path: String
    private let tenants: [String: WeChatTenant]
    /// A notification whose own time (`time_end`, refund `success_time`) is older than this is refused: the
    /// dedupe ledger may no longer hold its key (README, "Replays and the ledger's retention").
    public let maxCallbackAgeMilliseconds: Int64

    /// - Parameter maxCallbackAgeMilliseconds: the running config's `maxCallbackAgeMilliseconds` (``ReplayWindow``).
    public init(path: String, tenants: [WeChatTenant], maxCallbackAgeMilliseconds: Int64 = ReplayWindow.defaultMaxCallbackAgeMilliseconds) {
        self.path = path
        var byMerchant: [String: WeChatTenant] = [:]
        for tenant in tenants where tenant.path == path { byMerchant[tenant.mchID] = tenant }
        self.tenants = byMerchant
        self.maxCallbackAgeMilliseconds = maxCallbackAgeMilliseconds
    }

    public var method: String { "POST" }

    public var kind: String { "wechat" }

    /// Its verdicts are offered for reuse (``Verdict/reuse``), and read no header field.
    public var verdictHeaders: [String]? { [] }

    /// Byte for byte the acknowledgement WeChat documents (docs/protocols.md §3.4, docs/contract.md §3): no whitespace.
    public static let successXML = "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"

    public var successAnswer: Answer {
        Answer(status: 200, contentType: "text/xml; charset=utf-8", body: Array(Self.successXML.utf8))
    }

    public func failureAnswer(status: Int, reason: String) -> Answer {
        Answer(status: status, contentType: "text/xml; charset=utf-8", body: Array(Self.failureXML(reason).utf8))
    }

    /// The FAIL answer with a short reason. The reason is our own text, but it is still kept to printable
    /// ASCII without `]]>` so it cannot break out of its CDATA section.
    public static func failureXML(_ reason: String) -> String {
        let message = LogText.printable(reason, limit: 80).replacing("]]>", with: "]]?")
        return "<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[\(message)]]></return_msg></xml>"
    }

    public func process(_ request: CallbackRequest, nowMilliseconds: Int64) -> Verdict {
        // Strict parse before any value is used: no DTD, no entities, no nesting (docs/protocols.md §3.2).
        let elements: [FlatXMLElement]
        do {
            elements = try FlatXML.parse(request.body, root: "xml")
        } catch {
            return .refused(.malformed("body is not a flat <xml> notification: \(error)"), source: kind, tenant: nil)
        }
        var values: [String: String] = [:]
        for element in elements { values[element.name] = element.text }
        // The tenant label: the configured merchant the body names, if any (Verdict's rule).
        let named = values["mch_id"].flatMap { tenants[$0] == nil ? nil : $0 }

        switch values["return_code"] {
        case "SUCCESS":
            break
        case "FAIL":
            // A communication failure report: no sign, no result. Acknowledged, never queued (docs/contract.md §3).
            // Neither a payment nor a refund, so it counts under the path's kind.
            return .acknowledged("return_code FAIL: \(LogText.printable(values["return_msg"] ?? "", limit: 80))", source: kind, tenant: named)
        default:
            return .refused(.malformed("return_code must be SUCCESS or FAIL"), source: kind, tenant: named)
        }
        // A result notification: a refund's result is encrypted in req_info, a payment's is signed in the clear
        // (docs/protocols.md §4, §5). From here on every verdict counts under the event source it would be stored as.
        let source = values["req_info"] == nil ? Self.paySource : Self.refundSource
        guard let mchID = values["mch_id"], !mchID.isEmpty else {
            return .refused(.malformed("mch_id is missing, so no tenant can be chosen"), source: source, tenant: nil)
        }
        guard let tenant = tenants[mchID] else {
            return .refused(.unknownTenant("no [[wechat]] tenant with mch_id '\(LogText.printable(mchID))' on \(path)"), source: source, tenant: nil)
        }
        if let expected = tenant.appID, values["appid"] != expected {
            return .refused(.unknownTenant("appid does not match the tenant's appid"), source: source, tenant: mchID)
        }
        if let reqInfo = values["req_info"] {
            return refund(reqInfo: reqInfo, tenant: tenant, request: request, now: nowMilliseconds)
        }
        return payment(elements, values, tenant: tenant, request: request, now: nowMilliseconds)
    }

    /// Refuses a notification about an event older than the replay window: after `payhook queue gc` pruned its
    /// ledger entry, a replay of it would otherwise be stored as a new event.
    private func tooOld(_ time: Int64?, field: String, now: Int64) -> Refusal? {
        guard let time, time < now - maxCallbackAgeMilliseconds else { return nil }
        return .semantic("\(field) is older than the replay window (\(maxCallbackAgeMilliseconds / 86_400_000) days, ledger_retention_days minus one)")
    }

    // MARK: - Payment results

    /// Which key position verified and with which algorithm.
    public struct PaymentMatch: Sendable, Equatable {
        public let type: WeChatSignType
        public let keyPosition: Int
        public init(type: WeChatSignType, keyPosition: Int) {
            self.type = type
            self.keyPosition = keyPosition
        }
    }

    /// Verifies a payment notification's `sign` (docs/protocols.md §4.2, §4.3): the algorithm is the one
    /// `sign_type` names, else the one the sign's length implies, and only if the tenant accepts it.
    public static func verifyPayment(_ elements: [FlatXMLElement], tenant: WeChatTenant) -> Result<PaymentMatch, Refusal> {
        var values: [String: String] = [:]
        for element in elements { values[element.name] = element.text }
        guard let sign = values[WeChatSigning.signElement], !sign.isEmpty else {
            return .failure(.badSignature("sign is missing"))
        }
        let type: WeChatSignType
        switch WeChatSigning.claimedType(signType: values[WeChatSigning.signTypeElement], sign: sign) {
        case .failure(.unknownSignType):
            return .failure(.badSignature("sign_type is neither MD5 nor HMAC-SHA256"))
        case .failure(.unknownLength):
            return .failure(.badSignature("sign is neither 32 (MD5) nor 64 (HMAC-SHA256) hex characters"))
        case .success(let claimed):
            type = claimed
        }
        guard tenant.signTypes.contains(type) else {
            return .failure(.badSignature("\(type.rawValue) is not in this tenant's sign_types"))
        }
        guard sign.utf8.count == type.hexLength, let presented = Hex.decode(sign) else {
            return .failure(.badSignature("sign is not \(type.hexLength) hexadecimal characters"))
        }
        var matched: Int?
        // Every key is tried, so timing does not tell which position matched.
        for (index, key) in tenant.keys.enumerated() {
            let message = Array(WeChatSigning.stringToSign(elements, key: key.value).utf8)
            let expected: [UInt8]
            switch type {
            case .md5: expected = Digest.md5(message)
            case .hmacSHA256: expected = Digest.hmacSHA256(key: Array(key.value.utf8), message: message)
            }
            if Digest.constantTimeEquals(expected, presented), matched == nil { matched = index + 1 }
        }
        guard let matched else {
            return .failure(.badSignature("sign does not match (\(type.rawValue), \(tenant.keys.count) key(s) tried)"))
        }
        return .success(PaymentMatch(type: type, keyPosition: matched))
    }

    private func payment(
        _ elements: [FlatXMLElement], _ values: [String: String], tenant: WeChatTenant, request: CallbackRequest, now: Int64
    ) -> Verdict {
        func refused(_ refusal: Refusal) -> Verdict { .refused(refusal, source: Self.paySource, tenant: tenant.mchID) }
        let match: PaymentMatch
        switch Self.verifyPayment(elements, tenant: tenant) {
        case .failure(let refusal): return refused(refusal)
        case .success(let m): match = m
        }
        let timeEnd: Int64?
        switch WeChatFields.checkPayment(values, elements: elements) {
        case .failure(let problem):
            return refused(.semantic(problem.message))
        case .success(let time):
            if let refusal = tooOld(time, field: "time_end", now: now) { return refused(refusal) }
            timeEnd = time
        }
        guard let outTradeNo = values["out_trade_no"], !outTradeNo.isEmpty else {
            return refused(.semantic("out_trade_no is missing or empty"))
        }
        guard let resultCode = values["result_code"], resultCode == "SUCCESS" || resultCode == "FAIL" else {
            return refused(.semantic("result_code must be SUCCESS or FAIL"))
        }
        guard let amount = values["total_fee"].flatMap(DecimalDigits.nonNegative) else {
            return refused(.semantic("total_fee must be a non-negative integer number of fen"))
        }
        let currency = values["fee_type"].flatMap { $0.isEmpty ? nil : $0 } ?? "CNY"
        let key = DedupeKey(source: Self.paySource, parts: [tenant.mchID, outTradeNo, resultCode])
        // `fields`: what the signature covers, that is every non-empty child but `sign`.
        let fields = elements.filter { $0.name != WeChatSigning.signElement && !$0.text.isEmpty }
            .map { FormParameter(name: $0.name, value: $0.text) }
        var verified = event(
            key: key, source: Self.paySource, tenant: tenant, orderRef: outTradeNo, status: resultCode,
            amount: amount, currency: currency, verifiedWith: match.type.eventName, fields: fields, request: request)
        verified.secretPosition = match.keyPosition
        verified.fingerprintRule = WeChatFingerprint.payment
        var verdict = Verdict.accepted(verified)
        // The verdict depends on the body, the tenant's config and, through the `time_end` check only, on the
        // clock: a byte-identical retry gets it again while that check passes (``VerdictReuse``).
        verdict.reuse = .replayWindow(time: timeEnd, maxAgeMilliseconds: maxCallbackAgeMilliseconds)
        return verdict
    }

    // MARK: - Refund results

    /// The AES key for `req_info`: the 32 ASCII characters of the lowercase hex MD5 of the APIv2 key
    /// (docs/protocols.md §5; the hex text itself is the key, not its 16 raw bytes).
    public static func refundKey(apiKey: String) -> [UInt8] {
        Array(Hex.encode(Digest.md5(Array(apiKey.utf8))).utf8)
    }

    /// Decrypts `req_info` with each of the tenant's keys; the first that yields strict PKCS#7 padding, a strict
    /// flat `<root>` document and a document of the documented shape (``WeChatFields/checkRefund(_:)``) wins.
    /// Returns the decrypted fields, or why nothing did.
    ///
    /// AES-256-ECB has no integrity: the only evidence that WeChat wrote this document is that it decrypts, under
    /// this merchant's key, to exactly what WeChat writes. Every way that fails is the same refusal (401, one
    /// answer text), so answers cannot tell a padding failure from a parse failure from a field check.
    public static func decryptRefund(_ reqInfo: String, tenant: WeChatTenant) -> Result<[FlatXMLElement], Refusal> {
        decryptRefundWithPosition(reqInfo, tenant: tenant).map(\.fields)
    }

    /// As `decryptRefund`, also telling which key position decrypted it and the checked refund.
    public static func decryptRefundWithPosition(
        _ reqInfo: String, tenant: WeChatTenant
    ) -> Result<(fields: [FlatXMLElement], keyPosition: Int, refund: WeChatFields.Refund), Refusal> {
        guard let ciphertext = Base64.decode(reqInfo) else {
            return .failure(.malformed("req_info is not base64"))
        }
        guard !ciphertext.isEmpty, ciphertext.count % 16 == 0 else {
            return .failure(.malformed("req_info is not a whole number of AES blocks"))
        }
        // A copy of one of the ciphertext's own blocks is the cheapest ECB splice; a genuine one never repeats.
        guard !WeChatFields.repeatsBlock(ciphertext) else {
            return .failure(.badSignature("req_info repeats a 16-byte ciphertext block (an ECB splice)"))
        }
        var failure = "req_info does not decrypt under the tenant's key(s) (bad padding)"
        for (index, key) in tenant.keys.enumerated() {
            guard let plain = Cipher.aes256ECBDecrypt(key: refundKey(apiKey: key.value), ciphertext: ciphertext) else { continue }
            guard let fields = try? FlatXML.parse(plain, root: "root") else {
                failure = "req_info decrypts, but not to a flat <root> document, under the tenant's key(s)"
                continue
            }
            switch WeChatFields.checkRefund(fields) {
            case .success(let refund):
                return .success((fields, index + 1, refund))
            case .failure(let problem):
                failure = "req_info decrypts to a document WeChat does not write: \(problem.message)"
            }
        }
        return .failure(.badSignature(failure))
    }

    private func refund(reqInfo: String, tenant: WeChatTenant, request: CallbackRequest, now: Int64) -> Verdict {
        let fields: [FlatXMLElement]
        let keyPosition: Int
        let refund: WeChatFields.Refund
        switch Self.decryptRefundWithPosition(reqInfo, tenant: tenant) {
        case .failure(let refusal): return .refused(refusal, source: Self.refundSource, tenant: tenant.mchID)
        case .success(let decrypted): (fields, keyPosition, refund) = decrypted
        }
        if let refusal = tooOld(refund.successTime, field: "success_time", now: now) {
            return .refused(refusal, source: Self.refundSource, tenant: tenant.mchID)
        }
        let key = DedupeKey(source: Self.refundSource, parts: [tenant.mchID, refund.outRefundNo, refund.status])
        var verified = event(
            key: key, source: Self.refundSource, tenant: tenant, orderRef: refund.outTradeNo, status: refund.status,
            amount: refund.refundFee, currency: "CNY", verifiedWith: "aes-256-ecb",
            fields: fields.map { FormParameter(name: $0.name, value: $0.text) }, request: request)
        verified.secretPosition = keyPosition
        verified.fingerprintRule = WeChatFingerprint.refund
        var verdict = Verdict.accepted(verified)
        // As for a payment, through `success_time`; a refund that did not succeed has none.
        verdict.reuse = .replayWindow(time: refund.successTime, maxAgeMilliseconds: maxCallbackAgeMilliseconds)
        return verdict
    }

    private func event(
        key: DedupeKey, source: String, tenant: WeChatTenant, orderRef: String, status: String, amount: Int64,
        currency: String, verifiedWith: String, fields: [FormParameter], request: CallbackRequest
    ) -> Event {
        Event(
            id: Hex.encode(Digest.sha256(key.bytes)), source: source, tenant: tenant.mchID,
            orderRef: orderRef, status: status, amount: amount, currency: currency, dedupeKey: key,
            verifiedWith: verifiedWith, receivedAtMilliseconds: request.receivedAtMilliseconds,
            remoteAddress: request.remoteAddress, fields: fields,
            // FlatXML accepted the body, so it is valid UTF-8 and this conversion is exact.
            raw: Event.RawRequest(method: request.method, target: request.target, body: String(decoding: request.body, as: UTF8.self)))
    }
}
