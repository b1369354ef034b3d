public import PayhookCore
public import PayhookCrypto

/// One `[[wechat_v3]]` table: a WeChat Pay merchant (or, in partner mode, service provider) receiving API v3
/// notifications (docs/contract.md §3.3).
public struct WeChatV3Tenant: Sendable, Equatable {
    /// A WeChat Pay public key and the id (`PUB_KEY_ID_…`) by which `Wechatpay-Serial` names it.
    public struct PublicKey: Sendable, Equatable {
        public var id: String
        public var key: RSAPublicKey
        public init(id: String, key: RSAPublicKey) {
            self.id = id
            self.key = key
        }
    }

    public var path: String
    /// `mchid`, `sp_mchid` (partner mode) or `combine_mchid`: the merchant whose keys these are.
    public var mchID: String
    /// When set, notifications naming another `appid` (`sp_appid`, `combine_appid`) are refused.
    public var appID: String?
    /// Every valid APIv3 key, in file order (rotation); each 32 bytes.
    public var apiV3Keys: [Secret]
    /// Public-key mode.
    public var publicKey: PublicKey?
    /// Platform-certificate mode; both during the migration from certificates to the public key.
    public var platformCertificates: [X509Certificate]
    /// `|now − Wechatpay-Timestamp|` above this is refused.
    public var maxClockSkewSeconds: Int64
    public var line: Int

    public static let defaultMaxClockSkewSeconds: Int64 = 300

    public init(
        path: String, mchID: String, appID: String? = nil, apiV3Keys: [Secret], publicKey: PublicKey? = nil,
        platformCertificates: [X509Certificate] = [], maxClockSkewSeconds: Int64 = defaultMaxClockSkewSeconds, line: Int = 0
    ) {
        self.path = path
        self.mchID = mchID
        self.appID = appID
        self.apiV3Keys = apiV3Keys
        self.publicKey = publicKey
        self.platformCertificates = platformCertificates
        self.maxClockSkewSeconds = maxClockSkewSeconds
        self.line = line
    }

    /// The key a `Wechatpay-Serial` value names in this tenant: the public key when it is its id exactly, else
    /// the platform certificate with that serial, compared as a hexadecimal integer (docs/protocols.md §7.1).
    public func key(forSerial serial: String) -> SignatureKey? {
        if let publicKey, publicKey.id == serial { return SignatureKey(keyID: publicKey.id, key: publicKey.key, certificate: nil) }
        if let certificate = platformCertificates.first(where: { $0.hasSerial(serial) }) {
            return SignatureKey(keyID: certificate.serialHex, key: certificate.publicKey, certificate: certificate)
        }
        return nil
    }

    /// A key chosen by serial, with the name it is counted under (the public key's id, or the certificate's
    /// serial in one spelling, never the request's text).
    public struct SignatureKey: Sendable {
        public let keyID: String
        public let key: RSAPublicKey
        public let certificate: X509Certificate?
    }

    /// Every key id this tenant knows: what the metrics may label with.
    public var keyIDs: [String] {
        (publicKey.map { [$0.id] } ?? []) + platformCertificates.map(\.serialHex)
    }
}
