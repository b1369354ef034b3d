import Foundation
public import PayhookConfig
public import PayhookCore
import PayhookUnified
public import PayhookWeChat

/// Builds a correctly signed callback of any supported kind from a config tenant: the engine behind
/// `payhook sign` and `payhook simulate`. It can also break the callback on purpose.
public enum CallbackBuilder {
    public enum Kind: String, CaseIterable, Sendable {
        case unified
        case wechatPay = "wechat-pay"
        case wechatRefund = "wechat-refund"
    }

    /// Deliberate faults, to see the receiver refuse them.
    public enum Breakage: String, CaseIterable, Sendable {
        /// A signed value changed after signing (for a refund: a ciphertext byte flipped).
        case tamper
        /// Signed with a key that is not the tenant's.
        case wrongKey = "wrong-key"
        /// The signature left out (for a refund: `req_info` left out).
        case stripSign = "strip-sign"
    }

    public struct Spec: Sendable {
        public var kind: Kind
        /// `domain_code` or `mch_id`; may be omitted when the config has one tenant of the kind.
        public var tenant: String?
        public var amount: Int64 = 100
        /// `requestKey` / `out_trade_no`; a fresh unique one when nil.
        public var orderRef: String?
        /// `out_refund_no` for refunds; a fresh unique one when nil.
        public var refundRef: String?
        /// `payStatus`, `result_code` or `refund_status`; the kind's success value when nil.
        public var status: String?
        /// Extra or replaced fields (for a refund: fields of the encrypted document).
        public var fields: [FormParameter] = []
        /// Which of the tenant's secrets signs (1-based, in file order).
        public var keyPosition: Int = 1
        /// WeChat payment: the algorithm; the tenant's first accepted one when nil (MD5 before HMAC).
        public var signType: WeChatSignType?
        /// WeChat payment: leave `sign_type` out of the notification (the length then tells).
        public var omitSignType = false
        public var breakage: Breakage?

        public init(kind: Kind) { self.kind = kind }
    }

    public struct Built: Sendable {
        public var method: String
        public var path: String
        public var query: String?
        public var body: [UInt8]
        public var contentType: String?

        /// What `payhook sign` prints: the query string, or the XML body.
        public var printable: String { query ?? String(decoding: body, as: UTF8.self) }

        /// The complete HTTP/1.1 request for `host`.
        public func request(authority: String, path overridePath: String? = nil) -> [UInt8] {
            var target = overridePath ?? path
            if let query { target += "?" + query }
            var head = "\(method) \(target) HTTP/1.1\r\nHost: \(authority)\r\nConnection: close\r\nUser-Agent: payhook-simulate\r\n"
            if let contentType { head += "Content-Type: \(contentType)\r\n" }
            if method == "POST" { head += "Content-Length: \(body.count)\r\n" }
            return Array((head + "\r\n").utf8) + body
        }
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public static func build(_ spec: Spec, config: Config, nowMilliseconds: Int64 = WallClock.milliseconds()) throws(Failure) -> Built {
        let unique = "\(nowMilliseconds)\(Int.random(in: 100_000...999_999))"
        switch spec.kind {
        case .unified:
            let tenant = try pick(config.unified, spec.tenant, name: "domain_code", kind: "[[unified]]") { $0.domainCode }
            let secret = try secret(tenant.secrets, spec.keyPosition)
            var parameters = [
                ("money", String(spec.amount)), ("requestKey", spec.orderRef ?? "payhook-sim-\(unique)"),
                ("payTime", String(nowMilliseconds)), ("orderSn", "SIM\(unique)"), ("payTypeCode", "Wechat"),
                ("payTypeName", "微信支付"), ("currencyType", "CNY"), ("payStatus", spec.status ?? "SUCCESSPAY"),
                ("domainCode", tenant.domainCode),
            ].map { FormParameter(name: $0.0, value: $0.1) }
            parameters = merge(parameters, spec.fields)
            let signingSecret = spec.breakage == .wrongKey ? "payhook-wrong-key-\(unique)" : secret
            let sign = UnifiedSigner.sign(parameters, scheme: tenant.signScheme, secret: signingSecret)
            if spec.breakage == .tamper {
                parameters = parameters.map { $0.name == "money" ? FormParameter(name: "money", value: String(spec.amount + 1)) : $0 }
            }
            if spec.breakage != .stripSign { parameters.append(FormParameter(name: "sign", value: sign)) }
            return Built(method: "GET", path: tenant.path, query: UnifiedSigner.query(parameters), body: [], contentType: nil)

        case .wechatPay:
            let tenant = try pick(config.wechat, spec.tenant, name: "mch_id", kind: "[[wechat]]") { $0.mchID }
            let key = try secret(tenant.keys, spec.keyPosition)
            let type = spec.signType ?? (tenant.signTypes.contains(.md5) ? .md5 : .hmacSHA256)
            var elements = [
                ("appid", tenant.appID ?? "wx0000000000000000"), ("mch_id", tenant.mchID),
                ("nonce_str", nonce()), ("result_code", spec.status ?? "SUCCESS"), ("return_code", "SUCCESS"),
                ("openid", "oPayhookSimulatedOpenID000000"), ("is_subscribe", "N"), ("trade_type", "JSAPI"),
                ("bank_type", "CFT"), ("total_fee", String(spec.amount)), ("cash_fee", String(spec.amount)),
                ("fee_type", "CNY"), ("transaction_id", "4200\(unique)"), ("out_trade_no", spec.orderRef ?? "payhook-sim-\(unique)"),
                ("time_end", beijingTime(nowMilliseconds, compact: true)),
            ].map { FlatXMLElement(name: $0.0, text: $0.1) }
            if !spec.omitSignType { elements.append(FlatXMLElement(name: "sign_type", text: type.rawValue)) }
            elements = merge(elements, spec.fields)
            let signingKey = spec.breakage == .wrongKey ? "payhook-wrong-key-\(unique)" : key
            let sign = WeChatSigner.sign(elements, type: type, key: signingKey)
            if spec.breakage == .tamper {
                elements = elements.map { $0.name == "total_fee" ? FlatXMLElement(name: "total_fee", text: String(spec.amount + 1)) : $0 }
            }
            if spec.breakage != .stripSign { elements.append(FlatXMLElement(name: "sign", text: sign)) }
            return Built(method: "POST", path: tenant.path, query: nil, body: Array(WeChatSigner.document(elements, root: "xml").utf8), contentType: "text/xml")

        case .wechatRefund:
            let tenant = try pick(config.wechat, spec.tenant, name: "mch_id", kind: "[[wechat]]") { $0.mchID }
            let key = try secret(tenant.keys, spec.keyPosition)
            var inner = [
                ("transaction_id", "4200\(unique)"), ("out_trade_no", spec.orderRef ?? "payhook-sim-\(unique)"),
                ("refund_id", "5000\(unique)"), ("out_refund_no", spec.refundRef ?? "payhook-refund-\(unique)"),
                ("total_fee", String(spec.amount)), ("refund_fee", String(spec.amount)),
                ("settlement_total_fee", String(spec.amount)), ("settlement_refund_fee", String(spec.amount)),
                ("refund_status", spec.status ?? "SUCCESS"), ("success_time", beijingTime(nowMilliseconds, compact: false)),
                ("refund_recv_accout", "支付用户零钱"), ("refund_account", "REFUND_SOURCE_RECHARGE_FUNDS"),
                ("refund_request_source", "API"),
            ].map { FlatXMLElement(name: $0.0, text: $0.1) }
            inner = merge(inner, spec.fields)
            let encryptionKey = spec.breakage == .wrongKey ? "payhook-wrong-key-\(unique)" : key
            var reqInfo = WeChatSigner.reqInfo(inner, key: encryptionKey)
            if spec.breakage == .tamper, var bytes = Base64.decode(reqInfo), !bytes.isEmpty {
                bytes[bytes.count - 1] ^= 0x5a
                reqInfo = Base64.encode(bytes)
            }
            var outer = [
                ("return_code", "SUCCESS"), ("appid", tenant.appID ?? "wx0000000000000000"), ("mch_id", tenant.mchID),
                ("nonce_str", nonce()),
            ].map { FlatXMLElement(name: $0.0, text: $0.1) }
            if spec.breakage != .stripSign { outer.append(FlatXMLElement(name: "req_info", text: reqInfo)) }
            return Built(method: "POST", path: tenant.path, query: nil, body: Array(WeChatSigner.document(outer, root: "xml").utf8), contentType: "text/xml")
        }
    }

    private static func pick<T>(_ tenants: [T], _ wanted: String?, name: String, kind: String, id: (T) -> String) throws(Failure) -> T {
        if let wanted {
            guard let tenant = tenants.first(where: { id($0) == wanted }) else {
                throw Failure(description: "the config has no \(kind) table with \(name) '\(wanted)'")
            }
            return tenant
        }
        guard tenants.count == 1, let only = tenants.first else {
            throw Failure(description: tenants.isEmpty
                ? "the config has no \(kind) table"
                : "the config has \(tenants.count) \(kind) tables; choose one with --tenant (\(tenants.map(id).joined(separator: ", ")))")
        }
        return only
    }

    private static func secret(_ secrets: [Secret], _ position: Int) throws(Failure) -> String {
        guard position >= 1, position <= secrets.count else {
            throw Failure(description: "--key-index \(position) is out of range: the tenant has \(secrets.count) secret(s)")
        }
        return secrets[position - 1].value
    }

    /// Fields given on the command line replace same-named defaults or are added at the end.
    private static func merge(_ base: [FormParameter], _ extra: [FormParameter]) -> [FormParameter] {
        var result = base
        for field in extra {
            if let index = result.firstIndex(where: { $0.name == field.name }) { result[index] = field } else { result.append(field) }
        }
        return result
    }

    private static func merge(_ base: [FlatXMLElement], _ extra: [FormParameter]) -> [FlatXMLElement] {
        merge(base.map { FormParameter(name: $0.name, value: $0.text) }, extra).map { FlatXMLElement(name: $0.name, text: $0.value) }
    }

    private static func nonce() -> String {
        Hex.encode((0..<16).map { _ in UInt8.random(in: 0...255) })
    }

    /// WeChat writes times in Beijing time (UTC+8): `yyyyMMddHHmmss`, or `yyyy-MM-dd HH:mm:ss` for refunds.
    static func beijingTime(_ milliseconds: Int64, compact: Bool) -> String {
        let text = Timestamp.rfc3339(milliseconds: milliseconds + 8 * 3600 * 1000)  // 2026-11-22T10:34:50.123Z
        let date = text.prefix(10)
        let time = text.dropFirst(11).prefix(8)
        return compact ? String(date.replacing("-", with: "") + time.replacing(":", with: "")) : "\(date) \(time)"
    }
}
