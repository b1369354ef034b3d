internal import COpenSSL

/// What a WeChat Pay platform certificate contributes to verifying a v3 notification: the serial number that
/// `Wechatpay-Serial` names, the validity period, and the public key (docs/protocols.md §7).
///
/// Only the certificate itself is read: no chain, issuer or signature on the certificate is checked here.
/// Platform certificates reach the configuration from the merchant, who downloaded them over WeChat Pay's
/// authenticated API; whether to trust one is the configuration's decision, not this type's.
public struct X509Certificate: Sendable, Equatable {
    /// The serial number as uppercase hexadecimal without leading zeros ("0" for zero). RFC 5280 §4.1.2.2
    /// requires a positive serial; a certificate that breaks the rule with a negative one gets a leading "-",
    /// which `sameSerial` never matches.
    public let serialHex: String
    /// Start of the validity period, Unix seconds.
    public let notBefore: Int64
    /// End of the validity period (inclusive, RFC 5280 §4.1.2.5), Unix seconds.
    public let notAfter: Int64
    /// The subject public key. Any algorithm is read; see `RSAPublicKey.isRSA2048`.
    public let publicKey: RSAPublicKey

    /// Reads the first "CERTIFICATE" block of PEM text; other blocks before it are skipped, later ones ignored
    /// (PEM_read_bio_X509(3)).
    public init(pem: [UInt8]) throws(CryptoError) {
        guard !pem.isEmpty, pem.count <= PEM.maximumLength else { throw .inputSize }
        let read = PEM.withBIO(pem) { bio in PEM_read_bio_X509(bio, nil, refusePassphrase, nil) }
        guard let x509 = read else { throw .malformedCertificate }
        defer {
            X509_free(x509)
            ERR_clear_error()
        }
        guard let serial = Self.serialHex(of: x509),
            let notBefore = Self.unixSeconds(X509_get0_notBefore(x509)),
            let notAfter = Self.unixSeconds(X509_get0_notAfter(x509))
        else { throw .unreadableCertificateField }
        // X509_get_pubkey(3) returns a new reference, which RSAPublicKey then owns.
        guard let key = X509_get_pubkey(x509) else { throw .unreadableCertificateField }
        self.serialHex = serial
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.publicKey = RSAPublicKey(owning: key)
    }

    public init(pem: String) throws(CryptoError) {
        try self.init(pem: Array(pem.utf8))
    }

    /// Whether `unixSeconds` lies within notBefore...notAfter.
    public func isValid(at unixSeconds: Int64) -> Bool {
        notBefore <= unixSeconds && unixSeconds <= notAfter
    }

    /// Whether a `Wechatpay-Serial` value names this certificate (see `sameSerial`).
    public func hasSerial(_ serial: some StringProtocol) -> Bool {
        Self.sameSerial(serialHex, serial)
    }

    /// A hexadecimal serial in one spelling: uppercase, leading zeros removed ("0" for zero). nil unless the
    /// text is one or more hexadecimal digits and nothing else (no sign, prefix, colons or spaces).
    ///
    /// Serials are integers. WeChat's documentation shows 40 uppercase digits, but real certificates have
    /// shorter ones and a DER integer may carry a leading zero byte, so neither length nor case may decide.
    public static func normalizedSerial(_ text: some StringProtocol) -> String? {
        let digits = Array(text.utf8)
        guard !digits.isEmpty, digits.allSatisfy(isHexDigit) else { return nil }
        let significant = digits.drop { $0 == UInt8(ascii: "0") }
        if significant.isEmpty { return "0" }
        return String(decoding: significant.map(uppercased), as: UTF8.self)
    }

    /// Whether two hexadecimal serials are the same integer, whatever their case, length or leading zeros.
    /// false when either is not plain hexadecimal (so a `PUB_KEY_ID_…` never matches a certificate).
    public static func sameSerial(_ a: some StringProtocol, _ b: some StringProtocol) -> Bool {
        guard let a = normalizedSerial(a), let b = normalizedSerial(b) else { return false }
        return a == b
    }

    private static func isHexDigit(_ c: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(c)
            || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(c)
    }

    private static func uppercased(_ c: UInt8) -> UInt8 {
        (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(c) ? c - 32 : c
    }

    /// The serial's magnitude as big-endian bytes (BN_bn2bin(3)), spelled in hex here rather than by
    /// BN_bn2hex, which keeps a leading zero nibble and allocates a string to be freed.
    private static func serialHex(of x509: OpaquePointer) -> String? {
        guard let integer = X509_get0_serialNumber(x509), let number = ASN1_INTEGER_to_BN(integer, nil) else { return nil }
        defer { BN_free(number) }
        var bytes = [UInt8](repeating: 0, count: (Int(BN_num_bits(number)) + 7) / 8)
        if !bytes.isEmpty { guard BN_bn2bin(number, &bytes) == Int32(bytes.count) else { return nil } }
        let digits: [UInt8] = Array("0123456789ABCDEF".utf8)
        var hex: [UInt8] = []
        for byte in bytes {
            hex.append(digits[Int(byte >> 4)])
            hex.append(digits[Int(byte & 0x0f)])
        }
        let magnitude = normalizedSerial(String(decoding: hex, as: UTF8.self)) ?? "0"
        return BN_is_negative(number) != 0 ? "-" + magnitude : magnitude
    }

    /// An ASN.1 UTCTime or GeneralizedTime as Unix seconds: its distance from the epoch, which
    /// ASN1_TIME_diff(3) computes from the validated time without going through the local time zone.
    private static func unixSeconds(_ time: UnsafePointer<ASN1_TIME>?) -> Int64? {
        guard let time, let epoch = ASN1_TIME_set(nil, 0) else { return nil }
        defer { ASN1_TIME_free(epoch) }
        var days: Int32 = 0
        var seconds: Int32 = 0
        guard ASN1_TIME_diff(&days, &seconds, epoch, time) == 1 else { return nil }
        return Int64(days) * 86_400 + Int64(seconds)
    }
}
