import Foundation
public import PayhookAlipay
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
        /// WeChat Pay API v3: a `TRANSACTION.SUCCESS` notification, signed headers and an encrypted resource.
        case wechatV3Pay = "wechat-v3-pay"
        /// WeChat Pay API v3: a `REFUND.<status>` notification.
        case wechatV3Refund = "wechat-v3-refund"
        /// Alipay: a trade (or, with a refund reference, refund) notification, RSA-signed form (ProviderBuilder.swift).
        case alipay
        /// XxPay: MD5-signed parameters in the query of an empty POST.
        case xxpay
        /// Jeepay: MD5-signed form.
        case jeepay

        /// The v3 kinds sign with an RSA private key and send headers; the others sign with a shared secret.
        public var isWeChatV3: Bool { self == .wechatV3Pay || self == .wechatV3Refund }
        /// The kinds signed with an RSA private key the caller gives (`--private-key`).
        public var needsPrivateKey: Bool { isWeChatV3 || self == .alipay }
    }

    /// Deliberate faults, to see the receiver refuse them.
    public enum Breakage: String, CaseIterable, Sendable {
        /// A signed value changed after signing (for a refund: a ciphertext byte flipped).
        case tamper
        /// Signed with a key that is not the tenant's.
        case wrongKey = "wrong-key"
        /// The signature left out (for a refund: `req_info` left out).
        case stripSign = "strip-sign"
        /// v3: the signature replaced by a `WECHATPAY/SIGNTEST/` probe, as WeChat Pay sends to test receivers.
        case signtest
        /// v3: correctly signed, with a `Wechatpay-Timestamp` ten minutes old.
        case stale
        /// v3: a `Wechatpay-Serial` that no tenant in the config has.
        case wrongSerial = "wrong-serial"
        /// v3: the body changed after signing.
        case tampered

        /// The breakages each kind knows; `wrong-key` is the only one both families share.
        public static func applicable(to kind: Kind) -> [Breakage] {
            kind.isWeChatV3 ? [.signtest, .stale, .wrongKey, .wrongSerial, .tampered] : [.tamper, .wrongKey, .stripSign]
        }

        /// nil when it applies to `kind`, else the sentence that says it does not.
        public func problem(for kind: Kind) -> String? {
            let known = Self.applicable(to: kind)
            guard !known.contains(self) else { return nil }
            return "--break \(rawValue) does not apply to \(kind.rawValue), whose breakages are \(known.map(\.rawValue).joined(separator: ", "))"
        }
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
        /// Alipay: `sign_type`; RSA2 when nil.
        public var alipaySignType: AlipaySignType?
        /// WeChat payment: leave `sign_type` out of the notification (the length then tells).
        public var omitSignType = false
        public var breakage: Breakage?
        /// WeChat Pay v3 and Alipay: the RSA private key (PEM) that signs as the sender's does; required for them.
        /// A ``Secret``, so that no description of a spec can print it.
        public var privateKey: Secret?
        /// WeChat Pay v3: the `Wechatpay-Serial` sent; when nil, the tenant's public key id, else the serial of
        /// its first platform certificate.
        public var serial: String?

        public init(kind: Kind) { self.kind = kind }
    }

    public struct Built: Sendable {
        public var kind: Kind
        public var method: String
        public var path: String
        public var query: String?
        public var body: [UInt8]
        public var contentType: String?
        /// Header fields the callback carries besides Host, Content-Type and Content-Length: WeChat Pay v3's
        /// `Wechatpay-*`, in the order of ``WeChatV3Source/Header/all``; empty for the other kinds.
        public var headers: [FormParameter]
        /// Things the sender should know, for standard error: e.g. that the private key given is not the pair
        /// of the public key the serial names, so the receiver will refuse the callback.
        public var warnings: [String]

        public init(
            kind: Kind, method: String, path: String, query: String?, body: [UInt8], contentType: String?,
            headers: [FormParameter] = [], warnings: [String] = []
        ) {
            self.kind = kind
            self.method = method
            self.path = path
            self.query = query
            self.body = body
            self.contentType = contentType
            self.headers = headers
            self.warnings = warnings
        }

        /// What `payhook sign` prints: the query string, the XML body, or, for a callback with headers, a
        /// header block: one `Name: value` line per header, an empty line, then the body exactly. The body's
        /// bytes are what was signed; the line break `payhook sign` prints after them is not part of them,
        /// and `payhook verify` takes exactly one final line break off a header block for that reason.
        public var printable: String {
            if let query { return query }
            let text = String(decoding: body, as: UTF8.self)
            guard !headers.isEmpty else { return text }
            return headers.map { "\($0.name): \($0.value)\n" }.joined() + "\n" + text
        }

        /// Whether an answer is the one the callback's sender takes as success: the unified platform's
        /// `success`, WeChat v2's SUCCESS XML, or for v3 the status alone: WeChat Pay takes 200 or 204, with any
        /// body, as received (docs/protocols.md §8.6).
        public func isSuccess(status: Int, body answer: [UInt8]) -> Bool {
            switch kind {
            case .unified: return status == 200 && answer.starts(with: Array("success".utf8))
            case .wechatPay, .wechatRefund: return status == 200 && answer.starts(with: Array("<xml><return_code><![CDATA[SUCCESS]]></return_code>".utf8))
            case .wechatV3Pay, .wechatV3Refund: return status == 200 || status == 204
            // Alipay stops on exactly `success`; XxPay trims and ignores case; Jeepay ignores case, no trimming.
            case .alipay: return status == 200 && answer == Array("success".utf8)
            case .xxpay:
                return status == 200 && String(decoding: answer, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines).lowercased() == "success"
            case .jeepay: return status == 200 && String(decoding: answer, as: UTF8.self).lowercased() == "success"
            }
        }

        /// The complete HTTP/1.1 request for `host`.
        public func request(authority: String, path overridePath: String? = nil) -> [UInt8] {
            var target = overridePath ?? path
            if let query { target += "?" + query }
            var head = "\(method) \(target) HTTP/1.1\r\nHost: \(authority)\r\nConnection: close\r\nUser-Agent: payhook-simulate\r\n"
            if let contentType { head += "Content-Type: \(contentType)\r\n" }
            for header in headers { head += "\(header.name): \(header.value)\r\n" }
            if method == "POST" { head += "Content-Length: \(body.count)\r\n" }
            return Array((head + "\r\n").utf8) + body
        }
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public static func build(_ spec: Spec, config: Config, nowMilliseconds: Int64 = WallClock.milliseconds()) throws(Failure) -> Built {
        let unique = "\(nowMilliseconds)\(Int.random(in: 100_000...999_999))"
        if let breakage = spec.breakage, let problem = breakage.problem(for: spec.kind) { throw Failure(description: problem) }
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
            return Built(kind: spec.kind, method: "GET", path: tenant.path, query: UnifiedSigner.query(parameters), body: [], contentType: nil)

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
            return Built(kind: spec.kind, method: "POST", path: tenant.path, query: nil, body: Array(WeChatSigner.document(elements, root: "xml").utf8), contentType: "text/xml")

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
            return Built(kind: spec.kind, method: "POST", path: tenant.path, query: nil, body: Array(WeChatSigner.document(outer, root: "xml").utf8), contentType: "text/xml")

        case .wechatV3Pay, .wechatV3Refund:
            return try wechatV3(spec, config: config, nowMilliseconds: nowMilliseconds, unique: unique)

        case .alipay, .xxpay, .jeepay:
            return try provider(spec, config: config, nowMilliseconds: nowMilliseconds, unique: unique)
        }
    }

    static func pick<T>(_ tenants: [T], _ wanted: String?, name: String, kind: String, id: (T) -> String) throws(Failure) -> T {
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

    static func secret(_ secrets: [Secret], _ position: Int, what: String = "secret(s)") throws(Failure) -> String {
        guard position >= 1, position <= secrets.count else {
            throw Failure(description: "--key-index \(position) is out of range: the tenant has \(secrets.count) \(what)")
        }
        return secrets[position - 1].value
    }

    /// Fields given on the command line replace same-named defaults or are added at the end.
    static func merge(_ base: [FormParameter], _ extra: [FormParameter]) -> [FormParameter] {
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
        BeijingTime.text(milliseconds: milliseconds, compact: compact)
    }
}
