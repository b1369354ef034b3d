internal import COpenSSL

/// RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 §8.2), what WeChat Pay v3 calls `SHA256withRSA`
/// (docs/protocols.md §7).
public enum Signature {
    /// Whether `signature` is `key`'s RSASSA-PKCS1-v1_5 SHA-256 signature of exactly `message`.
    ///
    /// false, never a crash, for every failure alike: a key that is not RSA (an EC key must not quietly
    /// verify ECDSA here), a signature whose length is not the key's modulus length (checked before OpenSSL
    /// sees it), a bad signature, or OpenSSL failing to allocate. The caller learns only yes or no.
    public static func verifyRSASHA256(key: RSAPublicKey, message: some Collection<UInt8>, signature: some Collection<UInt8>)
        -> Bool
    {
        verifyRSA(.sha256, key: key, message: message, signature: signature)
    }

    /// The digest inside an RSASSA-PKCS1-v1_5 signature: SHA-256 (Alipay's `RSA2`, WeChat Pay v3) or SHA-1
    /// (Alipay's legacy `RSA`, accepted only where a tenant lists it: docs/protocols.md §9).
    public enum Digest: Sendable, Equatable {
        case sha256
        case sha1

        var evpDigest: OpaquePointer? {
            switch self {
            case .sha256: return EVP_sha256()
            case .sha1: return EVP_sha1()
            }
        }
    }

    /// Whether `signature` is `key`'s RSASSA-PKCS1-v1_5 signature of exactly `message` with `digest`; the same
    /// yes-or-no rules as ``verifyRSASHA256(key:message:signature:)``.
    public static func verifyRSA(_ digest: Digest, key: RSAPublicKey, message: some Collection<UInt8>, signature: some Collection<UInt8>)
        -> Bool
    {
        guard key.isRSA, key.signatureLength > 0, signature.count == key.signatureLength else { return false }
        let message = Array(message)
        let signature = Array(signature)
        guard message.count < Int(Int32.max) else { return false }
        defer { ERR_clear_error() }
        guard let context = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(context) }
        var keyContext: OpaquePointer?
        guard EVP_DigestVerifyInit(context, &keyContext, digest.evpDigest, nil, key.pkey) == 1, let keyContext,
            EVP_PKEY_CTX_set_rsa_padding(keyContext, RSA_PKCS1_PADDING) == 1
        else { return false }
        // An empty Swift array may have no storage; OpenSSL is given a valid pointer and a length of 0.
        let result = withBytes(message) { messagePointer, messageLength in
            signature.withUnsafeBufferPointer { signatureBuffer in
                EVP_DigestVerify(context, signatureBuffer.baseAddress, signatureBuffer.count, messagePointer, messageLength)
            }
        }
        return result == 1
    }

    /// Signs `message` with an RSA private key in PEM, PKCS#8 ("-----BEGIN PRIVATE KEY-----") or PKCS#1
    /// ("-----BEGIN RSA PRIVATE KEY-----"): what WeChat Pay does, for payhook's own signer and simulator and
    /// for tests. nil when the PEM does not hold an unencrypted RSA private key (an encrypted one is refused,
    /// never prompted for) or OpenSSL fails.
    public static func signRSASHA256(privateKeyPEM: [UInt8], message: some Collection<UInt8>) -> [UInt8]? {
        signRSA(.sha256, privateKeyPEM: privateKeyPEM, message: message)
    }

    /// Signs with `digest` under the same rules as ``signRSASHA256(privateKeyPEM:message:)``.
    public static func signRSA(_ digest: Digest, privateKeyPEM: [UInt8], message: some Collection<UInt8>) -> [UInt8]? {
        let message = Array(message)
        guard message.count < Int(Int32.max) else { return nil }
        guard let key = PEM.withBIO(privateKeyPEM, { bio in PEM_read_bio_PrivateKey(bio, nil, refusePassphrase, nil) })
        else { return nil }
        defer {
            EVP_PKEY_free(key)
            ERR_clear_error()
        }
        guard EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA else { return nil }
        let length = Int(EVP_PKEY_get_size(key))
        guard length > 0, let context = EVP_MD_CTX_new() else { return nil }
        defer { EVP_MD_CTX_free(context) }
        var keyContext: OpaquePointer?
        guard EVP_DigestSignInit(context, &keyContext, digest.evpDigest, nil, key) == 1, let keyContext,
            EVP_PKEY_CTX_set_rsa_padding(keyContext, RSA_PKCS1_PADDING) == 1
        else { return nil }
        var signature = [UInt8](repeating: 0, count: length)
        var written = length
        let ok = withBytes(message) { messagePointer, messageLength in
            signature.withUnsafeMutableBufferPointer { out in
                EVP_DigestSign(context, out.baseAddress, &written, messagePointer, messageLength)
            }
        }
        guard ok == 1, written == length else { return nil }
        return signature
    }

    public static func signRSASHA256(privateKeyPEM: String, message: some Collection<UInt8>) -> [UInt8]? {
        signRSASHA256(privateKeyPEM: Array(privateKeyPEM.utf8), message: message)
    }

    /// A fresh RSA private key of `bits` bits as unencrypted PKCS#8 PEM, made at run time and never stored:
    /// `payhook sign --break wrong-key` signs with it, to show a receiver refusing a key that is nobody's.
    /// nil when OpenSSL fails or `bits` is below 2048.
    public static func generateRSAPrivateKeyPEM(bits: Int = 2048) -> [UInt8]? {
        guard bits >= 2048, bits <= 16384 else { return nil }
        defer { ERR_clear_error() }
        guard let context = EVP_PKEY_CTX_new_id(EVP_PKEY_RSA, nil) else { return nil }
        defer { EVP_PKEY_CTX_free(context) }
        var key: OpaquePointer?
        guard EVP_PKEY_keygen_init(context) == 1, EVP_PKEY_CTX_set_rsa_keygen_bits(context, Int32(bits)) == 1,
            EVP_PKEY_keygen(context, &key) == 1, let key
        else { return nil }
        defer { EVP_PKEY_free(key) }
        guard let bio = BIO_new(BIO_s_mem()) else { return nil }
        defer { BIO_free(bio) }
        guard PEM_write_bio_PrivateKey(bio, key, nil, nil, 0, nil, nil) == 1 else { return nil }
        let length = Int(BIO_ctrl_pending(bio))
        guard length > 0 else { return nil }
        var pem = [UInt8](repeating: 0, count: length)
        let read = pem.withUnsafeMutableBytes { BIO_read(bio, $0.baseAddress, Int32(length)) }
        guard read == Int32(length) else { return nil }
        return pem
    }

    private static func withBytes<T>(_ bytes: [UInt8], _ body: (UnsafePointer<UInt8>, Int) -> T) -> T {
        var empty: UInt8 = 0
        return bytes.withUnsafeBufferPointer { buffer in
            if let base = buffer.baseAddress { return body(base, buffer.count) }
            return withUnsafePointer(to: &empty) { body($0, 0) }
        }
    }
}
