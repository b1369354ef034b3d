public import PayhookCore
import PayhookCrypto

/// The string Alipay signs and how it is checked (docs/protocols.md §9.2).
///
/// Every parameter but `sign` and `sign_type` (for open-platform notifications, only `sign`), empty values
/// dropped, sorted by name in byte order, `name=value` joined with `&`, over the decoded bytes in the
/// notification's own charset: nothing is re-encoded between the wire and the check.
public enum AlipaySigning {
    public static let signParameter = "sign"
    public static let signTypeParameter = "sign_type"

    /// Which parameters the signed string leaves out.
    public enum Rule: String, Sendable, Equatable {
        /// Trade notifications: `sign` and `sign_type` (Alipay's "rsaCheckV1").
        case withoutSignType = "v1"
        /// Open-platform notifications: `sign` only ("rsaCheckV2").
        case withSignType = "v2"
    }

    /// The signed string's bytes.
    public static func content(_ parameters: [RawFormParameter], rule: Rule) -> [UInt8] {
        let sign = Array(signParameter.utf8)
        let signType = Array(signTypeParameter.utf8)
        let signed = parameters.filter { parameter in
            !parameter.value.isEmpty && parameter.name != sign && (rule == .withSignType || parameter.name != signType)
        }
        // Names are unique (repeats are refused before this), so a byte-order sort of names is total.
        let sorted = signed.sorted { $0.name.lexicographicallyPrecedes($1.name) }
        var out: [UInt8] = []
        for (index, parameter) in sorted.enumerated() {
            if index > 0 { out.append(UInt8(ascii: "&")) }
            out += parameter.name
            out.append(UInt8(ascii: "="))
            out += parameter.value
        }
        return out
    }

    /// The signed string of text parameters in UTF-8, for payhook's own signer and for tests.
    public static func content(_ parameters: [FormParameter], rule: Rule) -> [UInt8] {
        content(parameters.map { RawFormParameter(name: Array($0.name.utf8), value: Array($0.value.utf8)) }, rule: rule)
    }

    /// The 1-based position of the first key whose signature of `content` `signature` is; nil when none.
    public static func verify(content: [UInt8], signature: [UInt8], type: AlipaySignType, keys: [AlipayTenant.Key]) -> Int? {
        for (index, key) in keys.enumerated()
        where Signature.verifyRSA(type.digest, key: key.key, message: content, signature: signature) {
            return index + 1
        }
        return nil
    }

    /// `sign` for the given parameters: base64 of the RSA signature over ``content(_:rule:)``; nil when the PEM
    /// holds no usable RSA private key.
    public static func sign(_ parameters: [FormParameter], type: AlipaySignType, rule: Rule = .withoutSignType, privateKeyPEM: [UInt8])
        -> String?
    {
        guard let signature = Signature.signRSA(type.digest, privateKeyPEM: privateKeyPEM, message: content(parameters, rule: rule))
        else { return nil }
        return Base64.encode(signature)
    }
}
