public import PayhookCore
import PayhookCrypto

/// The signature XxPay and its successor Jeepay put on merchant notifications (docs/protocols.md §10.2):
/// every non-empty `name=value&` string, the strings sorted case-insensitively (Java's
/// `String.CASE_INSENSITIVE_ORDER`, over whole strings, not names), then `key=` and the secret, MD5, uppercase
/// hex. `sign` itself is left out.
public enum MD5KeySigning {
    public static let signParameter = "sign"

    /// The signed string for `secret`.
    public static func message(_ parameters: [FormParameter], secret: [UInt8]) -> [UInt8] {
        signedPrefix(parameters) + secret
    }

    /// The signed string up to the secret: the sorted `name=value&` pieces and `key=`. The same for every secret
    /// of a tenant, so verification builds and sorts it once. `keepingEmpty` signs empty values too: not the rule,
    /// one of the mistakes `payhook verify` tries when a signature does not match.
    public static func signedPrefix(_ parameters: [FormParameter], keepingEmpty: Bool = false) -> [UInt8] {
        // Each piece with its sort key, made once: comparing re-made keys would allocate on every comparison.
        var pieces: [(key: [UInt16], bytes: [UInt8])] = []
        for parameter in parameters where parameter.name != signParameter && (keepingEmpty || !parameter.value.isEmpty) {
            let text = parameter.name + "=" + parameter.value + "&"
            pieces.append((key: text.utf16.map(lower), bytes: Array(text.utf8)))
        }
        pieces.sort { $0.key.lexicographicallyPrecedes($1.key) }
        var out: [UInt8] = []
        for piece in pieces { out += piece.bytes }
        out += Array("key=".utf8)
        return out
    }

    /// The uppercase hex MD5 of ``message(_:secret:)``: what the sender puts in `sign`.
    public static func sign(_ parameters: [FormParameter], secret: [UInt8]) -> String {
        Hex.encode(Digest.md5(message(parameters, secret: secret))).uppercased()
    }

    /// Java's `CASE_INSENSITIVE_ORDER` compares UTF-16 code units, each case-folded. Only ASCII letters are
    /// folded here (no Java-style Unicode case mapping; no notification field name is outside ASCII), and a
    /// shorter string that is a prefix of a longer one comes first, as `lexicographicallyPrecedes` has it.
    private static func lower(_ unit: UInt16) -> UInt16 {
        (0x41...0x5A).contains(unit) ? unit | 0x20 : unit
    }

    /// The 1-based position of the first secret whose signature `sign` is, compared over the decoded 16 bytes
    /// in constant time (so either case verifies and timing says nothing); every secret is tried even after a
    /// match. `.failure` carries why not, never the expected value.
    public static func verify(_ parameters: [FormParameter], sign: String?, secrets: [Secret]) -> Result<Int, Refusal> {
        guard let sign, !sign.isEmpty else { return .failure(.badSignature("parameter 'sign' is missing")) }
        guard sign.utf8.count == 32, let presented = Hex.decode(sign) else {
            return .failure(.badSignature("sign is not 32 hexadecimal characters"))
        }
        let prefix = signedPrefix(parameters)
        var matched: Int?
        for (index, secret) in secrets.enumerated() {
            let expected = Digest.md5(prefix + Array(secret.value.utf8))
            if Digest.constantTimeEquals(expected, presented), matched == nil { matched = index + 1 }
        }
        guard let matched else {
            return .failure(.badSignature("sign does not match (md5, \(secrets.count) secret(s) tried)"))
        }
        return .success(matched)
    }

    /// Refuses a value that could stand for several `name=value&` strings of the signed text: a field in `key`
    /// holding `&` or `=`, or any value holding `&name=` for one of them (docs/protocols.md §10.2).
    public static func checkMoves(_ parameters: [FormParameter], keyFields: [String]) -> Refusal? {
        FieldMoves.refusal(parameters, keyFields: keyFields, signParameter: signParameter)
    }
}
