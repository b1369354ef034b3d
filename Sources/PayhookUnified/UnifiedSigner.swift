public import PayhookCore
import PayhookCrypto

/// Builds correctly signed unified callbacks, the way the platform does: for `payhook sign`,
/// `payhook simulate` and tests.
public enum UnifiedSigner {
    /// The lowercase hex signature of `parameters` under `scheme` and `secret`.
    public static func sign(_ parameters: [FormParameter], scheme: UnifiedSignScheme, secret: String) -> String {
        Hex.encode(Digest.sha1(UnifiedSigning.message(scheme, parameters, secret: secret)))
    }

    /// `parameters` plus `sign`, form-encoded as Java's `URLEncoder` does (space as `+`; letters, digits
    /// and `.-*_` kept; everything else `%XX` of its UTF-8 bytes, uppercase).
    public static func query(_ parameters: [FormParameter]) -> String {
        parameters.map { encode($0.name) + "=" + encode($0.value) }.joined(separator: "&")
    }

    public static func encode(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "-"), UInt8(ascii: "*"),
                UInt8(ascii: "_"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: " "):
                out += "+"
            default:
                out += "%" + Hex.encode([byte]).uppercased()
            }
        }
        return out
    }
}
