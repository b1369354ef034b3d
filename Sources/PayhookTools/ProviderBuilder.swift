import PayhookAlipay
import PayhookConfig
import PayhookCore
import PayhookCrypto
import PayhookUnified
import PayhookWeChat
import PayhookXxPay

/// Alipay, XxPay and Jeepay notifications for `payhook sign` and `simulate`, made from a config tenant the way
/// each sender makes them (Sources/PayhookAlipay/AlipaySigning.swift, Sources/PayhookXxPay/MD5KeySigning.swift
/// hold the rules the receiver checks; the real notifications in Fixtures/alipay, Fixtures/xxpay and
/// Fixtures/jeepay are the models for the fields):
///
/// - `alipay`: a trade notification (`notify_type=trade_status_sync`), `POST` form, `charset=utf-8`, signed
///   with RSA2 (or RSA) over every non-empty parameter but `sign` and `sign_type`, sorted by name, by a private
///   key the caller gives (Alipay's own never leaves Alipay). With `--refund-ref` it is the notification of a
///   refund: `out_biz_no`, `refund_fee` and `gmt_refund` added.
/// - `xxpay`: MD5 `&key=` with the merchant's resKey, the parameters in the query of a `POST` with an empty
///   body, as XxPay's sender sends them.
/// - `jeepay`: MD5 `&key=` with the app secret, `POST` form.
extension CallbackBuilder {
    /// The subject payhook's simulated orders carry: non-ASCII, as real subjects are.
    static let simulatedSubject = "payhook 模拟订单"

    static func provider(_ spec: Spec, config: Config, nowMilliseconds: Int64, unique: String) throws(Failure) -> Built {
        switch spec.kind {
        case .alipay: return try alipay(spec, config: config, now: nowMilliseconds, unique: unique)
        case .xxpay: return try xxpay(spec, config: config, now: nowMilliseconds, unique: unique)
        default: return try jeepay(spec, config: config, now: nowMilliseconds, unique: unique)
        }
    }

    // MARK: - Alipay

    static func alipay(_ spec: Spec, config: Config, now: Int64, unique: String) throws(Failure) -> Built {
        let tenant = try pick(config.alipay, spec.tenant, name: "app_id", kind: "[[alipay]]") { $0.appID }
        guard let privateKey = spec.privateKey else {
            throw Failure(description: "alipay needs --private-key FILE: the RSA private key that signs in Alipay's place")
        }
        let type = spec.alipaySignType ?? .rsa2
        let orderRef = spec.orderRef ?? "payhook-sim-\(unique)"
        let paid = BeijingTime.text(milliseconds: now - 2000, compact: false)
        var parameters = [
            ("gmt_create", BeijingTime.text(milliseconds: now - 10_000, compact: false)), ("charset", "utf-8"),
            ("subject", simulatedSubject), ("buyer_id", "2088" + padded(unique, 12)), ("invoice_amount", yuan(spec.amount)),
            ("notify_id", padded(unique, 34)),
            ("fund_bill_list", #"[{"amount":"\#(yuan(spec.amount))","fundChannel":"ALIPAYACCOUNT"}]"#),
            ("notify_type", "trade_status_sync"), ("trade_status", spec.status ?? "TRADE_SUCCESS"),
            ("receipt_amount", yuan(spec.amount)), ("buyer_pay_amount", yuan(spec.amount)), ("sign_type", type.rawValue),
            ("app_id", tenant.appID), ("seller_id", tenant.sellerID ?? "2088000000000001"), ("gmt_payment", paid),
            ("notify_time", BeijingTime.text(milliseconds: now, compact: false)), ("version", "1.0"), ("out_trade_no", orderRef),
            ("total_amount", yuan(spec.amount)), ("trade_no", BeijingTime.text(milliseconds: now, compact: true).prefix(8) + "22001" + padded(unique, 15)),
            ("auth_app_id", tenant.appID), ("buyer_logon_id", "pay***@example.com"), ("point_amount", "0.00"),
        ].map { FormParameter(name: $0.0, value: String($0.1)) }
        if let refundRef = spec.refundRef {
            // A refund notification: the trade's total_amount, what has been refunded in all (refund_fee) and the
            // refund request's own number; the trade stays TRADE_SUCCESS while part of it is left.
            parameters += [
                ("out_biz_no", refundRef), ("refund_fee", yuan(spec.amount)),
                ("gmt_refund", BeijingTime.text(milliseconds: now - 1000, compact: false) + ".000"),
            ].map { FormParameter(name: $0.0, value: $0.1) }
        }
        parameters = merge(parameters, spec.fields)
        if let charset = parameters.first(where: { $0.name == "charset" })?.value, TextCharset(name: charset) != .utf8 {
            throw Failure(description: "payhook sign alipay writes UTF-8 only: charset '\(LogText.printable(charset, limit: 32))' would have the receiver read UTF-8 bytes as something else")
        }
        let pem = Array(privateKey.value.utf8)
        // The given key signs even when another one is used, so that a bad --private-key is always reported.
        guard var sign = AlipaySigning.sign(parameters, type: type, rule: .withoutSignType, privateKeyPEM: pem) else {
            throw Failure(description: privateKeyProblem(privateKey.value))
        }
        var warnings: [String] = []
        if spec.breakage == .wrongKey {
            guard let other = Signature.generateRSAPrivateKeyPEM(),
                let wrong = AlipaySigning.sign(parameters, type: type, rule: .withoutSignType, privateKeyPEM: other)
            else { throw Failure(description: "OpenSSL could not make a throwaway RSA key for --break wrong-key") }
            sign = wrong
        } else if spec.breakage == nil {
            if !tenant.signTypes.contains(type) {
                let accepted = tenant.signTypes.map(\.rawValue).sorted().joined(separator: ", ")
                warnings.append("the [[alipay]] tenant \(tenant.appID) accepts sign_types \(accepted), not \(type.rawValue), so payhook will refuse this notification")
            }
            let content = AlipaySigning.content(parameters, rule: .withoutSignType)
            if let signature = Base64.decode(sign), AlipaySigning.verify(content: content, signature: signature, type: type, keys: tenant.keys) == nil {
                warnings.append("the signature does not verify with the tenant's \(tenant.keys.count) Alipay public key(s): --private-key is not the private half of alipay_public_key_file, so payhook will refuse this notification")
            }
        }
        if spec.breakage == .tamper {
            let changed = yuan(spec.amount + 1)
            parameters = parameters.map { $0.name == "total_amount" ? FormParameter(name: "total_amount", value: changed) : $0 }
        }
        if spec.breakage != .stripSign { parameters.append(FormParameter(name: AlipaySigning.signParameter, value: sign)) }
        return Built(
            kind: spec.kind, method: "POST", path: tenant.path, query: nil, body: Array(UnifiedSigner.query(parameters).utf8),
            contentType: "application/x-www-form-urlencoded; charset=utf-8", warnings: warnings)
    }

    /// Fen as Alipay writes yuan: two decimals, `100` → `1.00`.
    static func yuan(_ fen: Int64) -> String {
        let cents = fen % 100
        return "\(fen / 100).\(cents < 10 ? "0" : "")\(cents)"
    }

    // MARK: - XxPay and Jeepay

    static func xxpay(_ spec: Spec, config: Config, now: Int64, unique: String) throws(Failure) -> Built {
        let tenant = try pick(config.xxpay, spec.tenant, name: "mch_id", kind: "[[xxpay]]") { $0.mchID }
        let secret = try secret(tenant.keys, spec.keyPosition)
        let parameters = [
            ("payOrderId", "P01" + padded(unique, 21)), ("mchId", tenant.mchID), ("mchOrderNo", spec.orderRef ?? "payhook-sim-\(unique)"),
            ("channelId", "WX_JSAPI"), ("amount", String(spec.amount)), ("currency", "cny"), ("status", spec.status ?? "2"),
            ("clientIp", "127.0.0.1"), ("device", "WEB"), ("subject", simulatedSubject), ("channelOrderNo", "4200" + padded(unique, 24)),
            ("param1", ""), ("param2", ""), ("paySuccTime", String(now)), ("backType", "2"),
        ].map { FormParameter(name: $0.0, value: $0.1) }
        let signed = md5Signed(merge(parameters, spec.fields), spec: spec, secret: secret, unique: unique)
        return Built(kind: spec.kind, method: "POST", path: tenant.path, query: UnifiedSigner.query(signed), body: [], contentType: nil)
    }

    static func jeepay(_ spec: Spec, config: Config, now: Int64, unique: String) throws(Failure) -> Built {
        let tenant = try pick(config.jeepay, spec.tenant, name: "app_id", kind: "[[jeepay]]") { $0.appID }
        let secret = try secret(tenant.keys, spec.keyPosition)
        let parameters = [
            ("payOrderId", "P" + padded(unique, 19)), ("mchNo", tenant.mchNo), ("appId", tenant.appID),
            ("mchOrderNo", spec.orderRef ?? "payhook-sim-\(unique)"), ("ifCode", "wxpay"), ("wayCode", "WX_JSAPI"),
            ("amount", String(spec.amount)), ("currency", "cny"), ("state", spec.status ?? "2"), ("clientIp", "127.0.0.1"),
            ("subject", simulatedSubject), ("body", "payhook 模拟支付"), ("channelOrderNo", "4200" + padded(unique, 24)),
            ("errCode", ""), ("errMsg", ""), ("extParam", ""), ("createdAt", String(now - 8000)), ("successTime", String(now - 1000)),
            ("reqTime", String(now)),
        ].map { FormParameter(name: $0.0, value: $0.1) }
        let signed = md5Signed(merge(parameters, spec.fields), spec: spec, secret: secret, unique: unique)
        return Built(
            kind: spec.kind, method: "POST", path: tenant.path, query: nil, body: Array(UnifiedSigner.query(signed).utf8),
            contentType: "application/x-www-form-urlencoded")
    }

    /// `sign` added (or, with `--break`, a fault made): the one MD5 `&key=` rule both senders use.
    static func md5Signed(_ parameters: [FormParameter], spec: Spec, secret: String, unique: String) -> [FormParameter] {
        let key = spec.breakage == .wrongKey ? "payhook-wrong-key-\(unique)" : secret
        let sign = MD5KeySigning.sign(parameters, secret: Array(key.utf8))
        var sent = parameters
        if spec.breakage == .tamper {
            sent = sent.map { $0.name == "amount" ? FormParameter(name: "amount", value: String(spec.amount + 1)) : $0 }
        }
        if spec.breakage != .stripSign { sent.append(FormParameter(name: MD5KeySigning.signParameter, value: sign)) }
        return sent
    }

    // MARK: - --sign-type

    /// The `--sign-type` names, each for its own kind: WeChat v2's algorithms for `wechat-pay`, Alipay's
    /// `sign_type` for `alipay`.
    public static let wechatSignTypeNames = WeChatSignType.allCases.map(\.rawValue)
    public static let alipaySignTypeNames = AlipaySignType.allCases.map(\.rawValue)

    /// nil when `--sign-type name` fits `kind`, else the sentence that says why not. Kinds that sign in one way
    /// only and took the option without complaint before (unified, wechat-refund) still do.
    public static func signTypeProblem(_ name: String, for kind: Kind) -> String? {
        switch kind {
        case .wechatPay:
            return wechatSignTypeNames.contains(name) ? nil : "--sign-type \(name) is not a wechat-pay algorithm: \(wechatSignTypeNames.joined(separator: " or "))"
        case .alipay:
            return alipaySignTypeNames.contains(name) ? nil : "--sign-type \(name) is not an Alipay sign_type: \(alipaySignTypeNames.joined(separator: " or "))"
        case .xxpay, .jeepay:
            return "--sign-type is for wechat-pay and alipay; \(kind.rawValue) always signs with MD5"
        default:
            return nil
        }
    }
}

extension CallbackBuilder.Spec {
    /// Sets `--sign-type name` where it belongs (``CallbackBuilder/signTypeProblem(_:for:)`` said it fits).
    public mutating func setSignType(named name: String) {
        switch kind {
        case .alipay: alipaySignType = AlipaySignType(rawValue: name)
        default: signType = WeChatSignType(rawValue: name)
        }
    }
}
