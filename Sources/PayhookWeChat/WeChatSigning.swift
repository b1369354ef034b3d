public import PayhookCore

/// WeChat Pay v2 signature algorithms (docs/protocols.md §4.2, §4.3).
public enum WeChatSignType: String, Sendable, CaseIterable, Hashable {
    case md5 = "MD5"
    case hmacSHA256 = "HMAC-SHA256"

    /// The name used in events' `verified_with`.
    public var eventName: String {
        switch self {
        case .md5: return "md5"
        case .hmacSHA256: return "hmac-sha256"
        }
    }

    /// Hex length of a signature of this type: 32 for MD5, 64 for HMAC-SHA256.
    public var hexLength: Int {
        switch self {
        case .md5: return 32
        case .hmacSHA256: return 64
        }
    }
}

/// Builds the string WeChat Pay v2 signs. Pure, so `payhook verify` can show it with the key masked.
public enum WeChatSigning {
    public static let signElement = "sign"
    public static let signTypeElement = "sign_type"

    /// Every child of `<xml>` except `sign` (`sign_type` included: it is signed, and dropping it breaks real
    /// notifications, docs/protocols.md §4.2 step 1), empty values dropped (step 2), names in byte order (step
    /// 3), joined `name=value` with `&`, values raw (step 4), then `&key=` and the APIv2 key (step 5).
    public static func stringToSign(_ elements: [FlatXMLElement], key: String) -> String {
        let pairs = elements.filter { $0.name != signElement && !$0.text.isEmpty }
            .sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
            .map { "\($0.name)=\($0.text)" }
        return pairs.joined(separator: "&") + "&key=" + key
    }

    /// Which algorithm a notification claims (docs/protocols.md §4.3): `sign_type` when present, else the
    /// signature's length. nil when neither tells.
    public static func claimedType(signType: String?, sign: String) -> Result<WeChatSignType, WeChatTypeError> {
        if let signType, !signType.isEmpty {
            guard let type = WeChatSignType(rawValue: signType) else { return .failure(.unknownSignType) }
            return .success(type)
        }
        switch sign.utf8.count {
        case 32: return .success(.md5)
        case 64: return .success(.hmacSHA256)
        default: return .failure(.unknownLength)
        }
    }

    public enum WeChatTypeError: Error, Sendable, Equatable {
        case unknownSignType
        case unknownLength
    }
}
