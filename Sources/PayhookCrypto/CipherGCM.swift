internal import COpenSSL

/// AES-GCM (RFC 5116 §5.1 AEAD_AES_128_GCM, §5.2 AEAD_AES_256_GCM), the cipher of WeChat Pay v3 resources
/// (docs/protocols.md §7): a 12-byte nonce, associated data that may be empty, and the 16-byte tag appended
/// to the ciphertext.
extension Cipher {
    /// The length of every tag this module produces or accepts; shorter tags are refused (RFC 5116 §5.1).
    public static let gcmTagLength = 16
    /// The only nonce length accepted (RFC 5116 §5.1: N_MIN = N_MAX = 12).
    public static let gcmNonceLength = 12

    /// Decrypts `ciphertextAndTag` (the ciphertext with the 16-byte tag after it) with AES-256-GCM.
    ///
    /// nil, and nothing of the plaintext, when the key is not 32 bytes, the nonce not 12, the input shorter
    /// than a tag, or the tag does not authenticate this ciphertext and associated data under this key and
    /// nonce. The caller cannot tell these apart, and must not need to.
    public static func aes256GCMDecrypt(key: [UInt8], nonce: [UInt8], associatedData: [UInt8], ciphertextAndTag: [UInt8])
        -> [UInt8]?
    {
        guard key.count == 32 else { return nil }
        return gcmOpen(EVP_aes_256_gcm(), key: key, nonce: nonce, associatedData: associatedData, ciphertextAndTag: ciphertextAndTag)
    }

    /// Encrypts with AES-256-GCM and returns the ciphertext with the 16-byte tag appended: what WeChat Pay
    /// does, for payhook's own signer and simulator and for tests. A nonce must never be used twice with one
    /// key (RFC 5116 §3.1); callers make a fresh random one per message. nil when the key is not 32 bytes or
    /// the nonce not 12.
    public static func aes256GCMEncrypt(key: [UInt8], nonce: [UInt8], associatedData: [UInt8], plaintext: [UInt8]) -> [UInt8]? {
        guard key.count == 32 else { return nil }
        return gcmSeal(EVP_aes_256_gcm(), key: key, nonce: nonce, associatedData: associatedData, plaintext: plaintext)
    }

    /// TEST SEAM, not for production: `aes256GCMDecrypt` with a 16-byte key, i.e. AES-128-GCM.
    ///
    /// One known-answer vector needs it: the certificate-mode notification in WeChat Pay's Go SDK test suite
    /// (Fixtures/wechat-v3/README.md) was encrypted under the 16-character test key `testMchAPIv3Key0`, which
    /// Go's AES accepts as AES-128. A real APIv3 key is 32 bytes and a v3 resource's algorithm is
    /// AEAD_AES_256_GCM, so production code calls `aes256GCMDecrypt`, which refuses any other key length;
    /// this function is internal so that only `@testable` test code can reach it.
    static func testSeamAES128GCMDecrypt(key: [UInt8], nonce: [UInt8], associatedData: [UInt8], ciphertextAndTag: [UInt8])
        -> [UInt8]?
    {
        guard key.count == 16 else { return nil }
        return gcmOpen(EVP_aes_128_gcm(), key: key, nonce: nonce, associatedData: associatedData, ciphertextAndTag: ciphertextAndTag)
    }

    /// OpenSSL's AEAD calls take int lengths; nothing near that size is a notification.
    private static let gcmMaximumLength = Int(Int32.max) - 64

    private static func gcmOpen(
        _ cipher: OpaquePointer?, key: [UInt8], nonce: [UInt8], associatedData: [UInt8], ciphertextAndTag: [UInt8]
    ) -> [UInt8]? {
        guard let cipher, nonce.count == gcmNonceLength, ciphertextAndTag.count >= gcmTagLength,
            ciphertextAndTag.count <= gcmMaximumLength, associatedData.count <= gcmMaximumLength
        else { return nil }
        let ciphertext = Array(ciphertextAndTag.dropLast(gcmTagLength))
        var tag = Array(ciphertextAndTag.suffix(gcmTagLength))
        defer { ERR_clear_error() }
        guard let context = EVP_CIPHER_CTX_new() else { return nil }
        defer { EVP_CIPHER_CTX_free(context) }
        guard EVP_DecryptInit_ex(context, cipher, nil, nil, nil) == 1,
            EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_IVLEN, Int32(gcmNonceLength), nil) == 1,
            EVP_DecryptInit_ex(context, nil, nil, key, nonce) == 1,
            addAssociatedData(context, associatedData, encrypt: false)
        else { return nil }
        // One spare block: GCM is a stream mode and writes exactly as many bytes as it reads.
        var plaintext = [UInt8](repeating: 0, count: ciphertext.count + 16)
        var written: Int32 = 0
        var final: Int32 = 0
        let ok = plaintext.withUnsafeMutableBufferPointer { out -> Bool in
            guard let base = out.baseAddress else { return false }
            if !ciphertext.isEmpty {
                guard EVP_DecryptUpdate(context, base, &written, ciphertext, Int32(ciphertext.count)) == 1 else { return false }
            }
            guard EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_TAG, Int32(gcmTagLength), &tag) == 1 else { return false }
            // The tag is checked here; a mismatch returns 0 (EVP_DecryptFinal_ex(3), "GCM and OCB Modes").
            return EVP_DecryptFinal_ex(context, base + Int(written), &final) > 0
        }
        guard ok else {
            // Unauthenticated plaintext is not handed out, nor left in memory for longer than needed.
            for index in plaintext.indices { plaintext[index] = 0 }
            return nil
        }
        return Array(plaintext.prefix(Int(written + final)))
    }

    private static func gcmSeal(
        _ cipher: OpaquePointer?, key: [UInt8], nonce: [UInt8], associatedData: [UInt8], plaintext: [UInt8]
    ) -> [UInt8]? {
        guard let cipher, nonce.count == gcmNonceLength, plaintext.count <= gcmMaximumLength,
            associatedData.count <= gcmMaximumLength
        else { return nil }
        defer { ERR_clear_error() }
        guard let context = EVP_CIPHER_CTX_new() else { return nil }
        defer { EVP_CIPHER_CTX_free(context) }
        guard EVP_EncryptInit_ex(context, cipher, nil, nil, nil) == 1,
            EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_IVLEN, Int32(gcmNonceLength), nil) == 1,
            EVP_EncryptInit_ex(context, nil, nil, key, nonce) == 1,
            addAssociatedData(context, associatedData, encrypt: true)
        else { return nil }
        var output = [UInt8](repeating: 0, count: plaintext.count + 16 + gcmTagLength)
        var written: Int32 = 0
        var final: Int32 = 0
        let ok = output.withUnsafeMutableBufferPointer { out -> Bool in
            guard let base = out.baseAddress else { return false }
            if !plaintext.isEmpty {
                guard EVP_EncryptUpdate(context, base, &written, plaintext, Int32(plaintext.count)) == 1 else { return false }
            }
            guard EVP_EncryptFinal_ex(context, base + Int(written), &final) == 1 else { return false }
            return EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_GET_TAG, Int32(gcmTagLength), base + Int(written + final)) == 1
        }
        guard ok else { return nil }
        return Array(output.prefix(Int(written + final) + gcmTagLength))
    }

    /// Feeds the associated data: an update with no output buffer (EVP_EncryptInit(3), "GCM and OCB Modes").
    /// Empty associated data needs no call.
    private static func addAssociatedData(_ context: OpaquePointer, _ data: [UInt8], encrypt: Bool) -> Bool {
        guard !data.isEmpty else { return true }
        var ignored: Int32 = 0
        let result =
            encrypt
            ? EVP_EncryptUpdate(context, nil, &ignored, data, Int32(data.count))
            : EVP_DecryptUpdate(context, nil, &ignored, data, Int32(data.count))
        return result == 1
    }
}
