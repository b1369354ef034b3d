public import PayhookCore
public import PayhookCrypto

/// The signature algorithms of Alipay's `sign_type` (docs/protocols.md §9.2).
public enum AlipaySignType: String, Sendable, Equatable, CaseIterable {
    /// SHA256withRSA: what every current app uses.
    case rsa2 = "RSA2"
    /// SHA1withRSA: apps created before 2018 may still use it; accepted only when a tenant lists it.
    case rsa = "RSA"

    /// The digest inside the RSASSA-PKCS1-v1_5 signature.
    public var digest: Signature.Digest {
        switch self {
        case .rsa2: return .sha256
        case .rsa: return .sha1
        }
    }

    /// The event's `verified_with`.
    public var verifiedWith: String { rawValue.lowercased() }
}

/// One `[[alipay]]` table: an Alipay app receiving asynchronous notifications (docs/contract.md §3.4).
public struct AlipayTenant: Sendable, Equatable {
    /// One Alipay public key the tenant accepts: from a PEM public key, or from an Alipay public-key certificate
    /// (certificate mode). Notifications name no key, so every key is tried, in file order (rotation).
    public struct Key: Sendable, Equatable {
        /// Where the key came from, for messages: `keys/alipay.pem` or `keys/alipay.crt (serial 1A2B…)`. Never
        /// key material.
        public var label: String
        public var key: RSAPublicKey
        public init(label: String, key: RSAPublicKey) {
            self.label = label
            self.key = key
        }
    }

    public var path: String
    /// The app the notifications are for: the routing value.
    public var appID: String
    /// When set, a notification naming another `seller_id` is refused.
    public var sellerID: String?
    public var keys: [Key]
    /// `sign_type` values accepted; RSA2 only unless the config lists RSA too.
    public var signTypes: Set<AlipaySignType>
    /// The `charset` values accepted; UTF-8 only unless the config lists GBK too.
    public var charsets: Set<TextCharset>
    /// Open-platform notifications (`alipay.open.*`, service market orders): those without `trade_status`,
    /// signed over the parameters with `sign_type` kept ("rsaCheckV2"). Off by default: a trade-only app has no
    /// reason to accept anything else.
    public var gatewayNotifications: Bool
    public var line: Int

    public init(
        path: String, appID: String, sellerID: String? = nil, keys: [Key], signTypes: Set<AlipaySignType> = [.rsa2],
        charsets: Set<TextCharset> = [.utf8], gatewayNotifications: Bool = false, line: Int = 0
    ) {
        self.path = path
        self.appID = appID
        self.sellerID = sellerID
        self.keys = keys
        self.signTypes = signTypes
        self.charsets = charsets
        self.gatewayNotifications = gatewayNotifications
        self.line = line
    }
}
