import Foundation
import PayhookConfig
import PayhookCore
import PayhookCrypto
import PayhookWeChat

/// WeChat Pay API v3 notifications for `payhook sign` and `simulate`: what WeChat Pay sends, made from a
/// `[[wechat_v3]]` tenant and a private key the caller holds (WeChat Pay's own never leaves WeChat Pay, so this
/// is a test key whose public half the tenant is configured with).
///
/// The resource is encrypted with one of the tenant's APIv3 keys, the body signed as
/// `Wechatpay-Timestamp\nWechatpay-Nonce\nbody\n` (docs/protocols.md §7.1), and every random part (the
/// notification id, both nonces) is fresh on each call.
extension CallbackBuilder {
    /// How far in the past `--break stale` puts `Wechatpay-Timestamp`: twice the default clock window
    /// (``WeChatV3Tenant/defaultMaxClockSkewSeconds``), so that any window shorter than ten minutes refuses it.
    public static let staleSeconds: Int64 = 600

    static func wechatV3(_ spec: Spec, config: Config, nowMilliseconds: Int64, unique: String) throws(Failure) -> Built {
        let tenant = try pick(config.wechatV3, spec.tenant, name: "mch_id", kind: "[[wechat_v3]]") { $0.mchID }
        let apiV3Key = try secret(tenant.apiV3Keys, spec.keyPosition, what: "APIv3 key(s)")
        guard let privateKey = spec.privateKey else {
            throw Failure(description: "\(spec.kind.rawValue) needs --private-key FILE: the RSA private key that signs in WeChat Pay's place")
        }
        let serial: String
        if spec.breakage == .wrongSerial {
            serial = unknownSerial(config)
        } else if let given = spec.serial {
            serial = given
        } else if let id = tenant.publicKey?.id {
            serial = id
        } else if let certificate = tenant.platformCertificates.first {
            serial = certificate.serialHex
        } else {
            throw Failure(description: "the [[wechat_v3]] tenant \(tenant.mchID) has neither a public key nor a platform certificate for Wechatpay-Serial to name")
        }

        // The decrypted resource, then the fields given on the command line over it.
        let refund = spec.kind == .wechatV3Refund
        let status = spec.status ?? "SUCCESS"
        var resource = refund
            ? refundResource(spec, tenant: tenant, status: status, now: nowMilliseconds, unique: unique)
            : paymentResource(spec, tenant: tenant, status: status, now: nowMilliseconds, unique: unique)
        for field in spec.fields {
            resource = try setting(field, in: resource)
        }
        let plaintext = compact(.object(resource))

        let associatedData = refund ? "refund" : "transaction"
        let gcmNonce = randomText(Cipher.gcmNonceLength)
        guard let sealed = Cipher.aes256GCMEncrypt(
            key: Array(apiV3Key.utf8), nonce: Array(gcmNonce.utf8), associatedData: Array(associatedData.utf8), plaintext: plaintext)
        else {
            throw Failure(description: "APIv3 key #\(spec.keyPosition) of the tenant is not 32 bytes, so it cannot encrypt with AES-256-GCM")
        }
        let eventType = refund ? "REFUND.\(status)" : WeChatV3Resource.paymentEvent
        let summary = refund ? (["SUCCESS": "退款成功", "ABNORMAL": "退款异常", "CLOSED": "退款关闭"][status] ?? "退款通知") : "支付成功"
        func envelope(summary: String) -> [UInt8] {
            compact(.object([
                ("id", .string(UUID().uuidString.lowercased())),
                ("create_time", .string(beijingRFC3339(nowMilliseconds))),
                ("resource_type", .string(WeChatV3Source.resourceType)),
                ("event_type", .string(eventType)),
                ("summary", .string(summary)),
                ("resource", .object([
                    ("original_type", .string(associatedData)),
                    ("algorithm", .string(WeChatV3Source.algorithm)),
                    ("ciphertext", .string(Base64.encode(sealed))),
                    ("associated_data", .string(associatedData)),
                    ("nonce", .string(gcmNonce)),
                ])),
            ]))
        }
        var body = envelope(summary: summary)

        let timestamp = String(nowMilliseconds / 1000 - (spec.breakage == .stale ? staleSeconds : 0))
        let nonce = randomText(32)
        let headers = WeChatV3Source.SignedHeaders(timestamp: timestamp, nonce: nonce, signature: "", serial: serial, signatureType: nil)
        let message = headers.message(body: body)
        // The given key signs even when another one is used, so that a bad --private-key is always reported.
        guard var signature = Signature.signRSASHA256(privateKeyPEM: privateKey.value, message: message) else {
            throw Failure(description: privateKeyProblem(privateKey.value))
        }
        if spec.breakage == .wrongKey {
            guard let other = Signature.generateRSAPrivateKeyPEM(), let wrong = Signature.signRSASHA256(privateKeyPEM: other, message: message) else {
                throw Failure(description: "OpenSSL could not make a throwaway RSA key for --break wrong-key")
            }
            signature = wrong
        }
        var warnings: [String] = []
        if spec.breakage == nil {
            if let key = tenant.key(forSerial: serial) {
                if !Signature.verifyRSASHA256(key: key.key, message: message, signature: signature) {
                    warnings.append("the signature does not verify with the key Wechatpay-Serial names in the config: --private-key is not the private half of the tenant's key \(key.keyID), so payhook will refuse this notification")
                }
            } else {
                warnings.append("the tenant \(tenant.mchID) has no key with serial '\(LogText.printable(serial))', so payhook will refuse this notification")
            }
        }
        var signatureText = Base64.encode(signature)
        if spec.breakage == .signtest { signatureText = WeChatV3Source.signTestPrefix + signatureText }
        if spec.breakage == .tampered { body = envelope(summary: summary + " (changed after signing)") }

        let sent = [
            (WeChatV3Source.Header.timestamp, timestamp), (WeChatV3Source.Header.nonce, nonce),
            (WeChatV3Source.Header.signature, signatureText), (WeChatV3Source.Header.serial, serial),
            (WeChatV3Source.Header.signatureType, WeChatV3Source.signatureType),
        ].map { FormParameter(name: $0.0, value: $0.1) }
        return Built(
            kind: spec.kind, method: "POST", path: tenant.path, query: nil, body: body, contentType: "application/json",
            headers: sent, warnings: warnings)
    }

    /// A merchant-mode `TRANSACTION.SUCCESS` resource, in the member order of WeChat's own.
    static func paymentResource(_ spec: Spec, tenant: WeChatV3Tenant, status: String, now: Int64, unique: String) -> [(key: String, value: JSONValue)] {
        [
            ("mchid", .string(tenant.mchID)),
            ("appid", .string(tenant.appID ?? "wx0000000000000000")),
            ("out_trade_no", .string(spec.orderRef ?? "payhook-sim-\(unique)")),
            ("transaction_id", .string("4200" + padded(unique, 24))),
            ("trade_type", .string("JSAPI")),
            ("trade_state", .string(status)),
            ("trade_state_desc", .string("支付成功")),
            ("bank_type", .string("OTHERS")),
            ("attach", .string("")),
            ("success_time", .string(beijingRFC3339(now))),
            ("payer", .object([("openid", .string("oPayhookSimulatedOpenID000000"))])),
            ("amount", .object([
                ("total", .number(String(spec.amount))), ("payer_total", .number(String(spec.amount))),
                ("currency", .string("CNY")), ("payer_currency", .string("CNY")),
            ])),
        ]
    }

    /// A merchant-mode refund resource; `success_time` only for a successful refund, as WeChat sends it.
    static func refundResource(_ spec: Spec, tenant: WeChatV3Tenant, status: String, now: Int64, unique: String) -> [(key: String, value: JSONValue)] {
        var members: [(key: String, value: JSONValue)] = [
            ("mchid", .string(tenant.mchID)),
            ("out_trade_no", .string(spec.orderRef ?? "payhook-sim-\(unique)")),
            ("transaction_id", .string("4200" + padded(unique, 24))),
            ("out_refund_no", .string(spec.refundRef ?? "payhook-refund-\(unique)")),
            ("refund_id", .string("5000" + padded(unique, 24))),
            ("refund_status", .string(status)),
        ]
        if status == "SUCCESS" { members.append(("success_time", .string(beijingRFC3339(now)))) }
        members.append(("user_received_account", .string("支付用户零钱")))
        let amount = JSONValue.number(String(spec.amount))
        members.append(("amount", .object([("total", amount), ("refund", amount), ("payer_total", amount), ("payer_refund", amount)])))
        return members
    }

    /// `--field NAME=VALUE` sets the top-level member NAME to the string VALUE; `NAME:=JSON` (the name given
    /// with a trailing colon) to a JSON value, for numbers, objects and `null`. A member not there is added.
    static func setting(_ field: FormParameter, in members: [(key: String, value: JSONValue)]) throws(Failure) -> [(key: String, value: JSONValue)] {
        var name = field.name
        var value = JSONValue.string(field.value)
        if name.hasSuffix(":") {
            name.removeLast()
            guard let parsed = JSONReader.parse(Array(field.value.utf8)) else {
                throw Failure(description: "--field \(LogText.printable(name)):=… is not followed by one JSON value")
            }
            value = parsed
        }
        guard !name.isEmpty else { throw Failure(description: "--field needs a member name before = or :=") }
        var result = members
        if let index = result.firstIndex(where: { $0.key == name }) {
            result[index].value = value
        } else {
            result.append((name, value))
        }
        return result
    }

    /// Why a private key could not sign, from its PEM labels: one sentence that names the kind of input and
    /// never any of it.
    static func privateKeyProblem(_ pem: String) -> String {
        if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") || pem.contains("Proc-Type: 4,ENCRYPTED") {
            return "--private-key holds an encrypted key, and payhook asks for no passphrase: decrypt it with `openssl pkey` first"
        }
        if pem.contains("-----BEGIN EC PRIVATE KEY-----") {
            return "--private-key holds an EC key, not an RSA private key"
        }
        if !pem.contains("PRIVATE KEY-----") {
            return "--private-key holds no PEM private key (expected -----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)"
        }
        return "--private-key is not an RSA private key that OpenSSL can read"
    }

    /// A `Wechatpay-Serial` no tenant of the config has: a public key id of random digits, checked against every
    /// configured key (an underscore keeps it from being read as a certificate serial).
    static func unknownSerial(_ config: Config) -> String {
        while true {
            let serial = "PUB_KEY_ID_" + String((0..<34).map { _ in "0123456789".randomElement()! })
            if !config.wechatV3.contains(where: { $0.key(forSerial: serial) != nil }) { return serial }
        }
    }

    static func compact(_ value: JSONValue) -> [UInt8] {
        var text = JSONText()
        text.value(value)
        return text.bytes
    }

    /// Letters and digits: what WeChat's nonces are made of.
    static func randomText(_ count: Int) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
        return String((0..<count).map { _ in alphabet.randomElement()! })
    }

    static func padded(_ digits: String, _ width: Int) -> String {
        String(repeating: "0", count: max(0, width - digits.count)) + digits.suffix(width)
    }

    /// RFC 3339 in Beijing time, as v3 writes its times: `2024-01-01T12:00:05+08:00`.
    static func beijingRFC3339(_ milliseconds: Int64) -> String {
        String(Timestamp.rfc3339(milliseconds: milliseconds + 8 * 3600 * 1000).prefix(19)) + "+08:00"
    }
}
