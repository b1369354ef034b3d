internal import COpenSSL

/// AES: ECB for WeChat Pay v2 refund notifications' `req_info` (docs/protocols.md §5), GCM for WeChat Pay
/// v3 resources (CipherGCM.swift, docs/protocols.md §7).
///
/// ECB has no integrity of its own; callers must parse the plaintext strictly and treat a successful
/// decryption only as "made with this key".
public enum Cipher {
    /// Decrypts and removes PKCS#7 padding, checked strictly (pad length 1...16 and every pad byte equal to
    /// it). OpenSSL's own padding check is switched off so that every rule is ours and explicit.
    /// nil when the key is not 32 bytes, the input is empty or not whole blocks, or the padding is wrong.
    public static func aes256ECBDecrypt(key: [UInt8], ciphertext: [UInt8]) -> [UInt8]? {
        guard key.count == 32, !ciphertext.isEmpty, ciphertext.count % 16 == 0 else { return nil }
        guard let plain = run(encrypt: false, key: key, input: ciphertext) else { return nil }
        guard let pad = plain.last, pad >= 1, pad <= 16, Int(pad) <= plain.count else { return nil }
        guard plain.suffix(Int(pad)).allSatisfy({ $0 == pad }) else { return nil }
        return Array(plain.dropLast(Int(pad)))
    }

    /// Pads with PKCS#7 and encrypts: what the payment platform does, for `payhook sign` and tests.
    public static func aes256ECBEncrypt(key: [UInt8], plaintext: [UInt8]) -> [UInt8]? {
        guard key.count == 32 else { return nil }
        let pad = 16 - plaintext.count % 16
        return run(encrypt: true, key: key, input: plaintext + [UInt8](repeating: UInt8(pad), count: pad))
    }

    private static func run(encrypt: Bool, key: [UInt8], input: [UInt8]) -> [UInt8]? {
        guard let context = EVP_CIPHER_CTX_new() else { return nil }
        defer { EVP_CIPHER_CTX_free(context) }
        guard EVP_CipherInit_ex(context, EVP_aes_256_ecb(), nil, key, nil, encrypt ? 1 : 0) == 1,
            EVP_CIPHER_CTX_set_padding(context, 0) == 1
        else { return nil }
        var output = [UInt8](repeating: 0, count: input.count + 16)
        var written: Int32 = 0
        var final: Int32 = 0
        let ok = output.withUnsafeMutableBufferPointer { out -> Bool in
            guard let base = out.baseAddress,
                EVP_CipherUpdate(context, base, &written, input, Int32(input.count)) == 1
            else { return false }
            return EVP_CipherFinal_ex(context, base + Int(written), &final) == 1
        }
        guard ok else { return nil }
        return Array(output.prefix(Int(written + final)))
    }
}
