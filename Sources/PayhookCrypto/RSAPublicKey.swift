internal import COpenSSL

/// A public key read from PEM: a SubjectPublicKeyInfo ("-----BEGIN PUBLIC KEY-----", what WeChat Pay hands out
/// as its "WeChat Pay public key") or the key inside an X.509 certificate (a platform certificate).
///
/// Any algorithm OpenSSL knows is read, so that a caller can say precisely what is wrong with a configured key:
/// `isRSA` and `bits` are exposed and `isRSA2048` is the check WeChat Pay v3 keys must pass. Verification
/// (`Signature.verifyRSASHA256`) refuses anything that is not RSA.
///
/// Sendable: the EVP_PKEY is never modified after init, and OpenSSL objects are safe to share between threads
/// as long as nothing mutates them; each verification makes its own EVP_MD_CTX (openssl-threads(7)).
public final class RSAPublicKey: @unchecked Sendable, Equatable {
    /// Owned: one reference, released in deinit.
    let pkey: OpaquePointer
    /// RSA with PKCS#1 v1.5 signatures (EVP_PKEY_RSA). An RSA-PSS-only key, an EC or an Ed25519 key is not.
    public let isRSA: Bool
    /// The key's size in bits (the modulus for RSA; EVP_PKEY_get_bits(3)).
    public let bits: Int
    /// The key type as OpenSSL names it ("RSA", "RSA-PSS", "EC", "ED25519", …; EVP_PKEY_get0_type_name(3)),
    /// "unknown" when it has none: for saying what a configured key is instead of RSA-2048.
    public let typeName: String
    /// The length of every signature this key can produce, in bytes (EVP_PKEY_get_size(3)).
    let signatureLength: Int

    /// The key as DER SubjectPublicKeyInfo (i2d_PUBKEY(3)): what two keys are compared by, so that a reload
    /// can tell a changed key from the same one read again.
    let der: [UInt8]

    /// Takes ownership of one reference to `pkey`.
    init(owning pkey: OpaquePointer) {
        self.pkey = pkey
        isRSA = EVP_PKEY_get_base_id(pkey) == EVP_PKEY_RSA
        bits = Int(EVP_PKEY_get_bits(pkey))
        typeName = EVP_PKEY_get0_type_name(pkey).map { String(cString: $0) } ?? "unknown"
        signatureLength = Int(EVP_PKEY_get_size(pkey))
        var encoded: UnsafeMutablePointer<UInt8>?
        let length = i2d_PUBKEY(pkey, &encoded)
        if length > 0, let encoded {
            der = Array(UnsafeBufferPointer(start: encoded, count: Int(length)))
            CRYPTO_free(encoded, nil, 0)
        } else {
            der = []
        }
    }

    /// The same key: equal DER encodings (two keys OpenSSL cannot encode are never equal).
    public static func == (lhs: RSAPublicKey, rhs: RSAPublicKey) -> Bool {
        !lhs.der.isEmpty && lhs.der == rhs.der
    }

    deinit { EVP_PKEY_free(pkey) }

    /// RSA with a 2048-bit modulus: what `Wechatpay-Signature-Type: WECHATPAY2-SHA256-RSA2048` promises
    /// (docs/protocols.md §7).
    public var isRSA2048: Bool { isRSA && bits == 2048 }

    /// Reads the first "PUBLIC KEY" block of PEM text (SubjectPublicKeyInfo, RFC 5280 §4.1.2.7). Other blocks
    /// before it are skipped, as PEM_read_bio_PUBKEY(3) does.
    public convenience init(pem: [UInt8]) throws(CryptoError) {
        guard !pem.isEmpty, pem.count <= PEM.maximumLength else { throw .inputSize }
        let key = PEM.withBIO(pem) { bio in PEM_read_bio_PUBKEY(bio, nil, refusePassphrase, nil) }
        guard let key else { throw .malformedPublicKey }
        self.init(owning: key)
    }

    public convenience init(pem: String) throws(CryptoError) {
        try self.init(pem: Array(pem.utf8))
    }

    /// The public key of the first certificate in PEM text (see `X509Certificate`).
    public convenience init(certificatePEM: [UInt8]) throws(CryptoError) {
        let certificate = try X509Certificate(pem: certificatePEM)
        // The certificate's key object gets a second owner: this one (EVP_PKEY_up_ref(3)).
        guard EVP_PKEY_up_ref(certificate.publicKey.pkey) == 1 else { throw .unreadableCertificateField }
        self.init(owning: certificate.publicKey.pkey)
    }

    public convenience init(certificatePEM: String) throws(CryptoError) {
        try self.init(certificatePEM: Array(certificatePEM.utf8))
    }
}
