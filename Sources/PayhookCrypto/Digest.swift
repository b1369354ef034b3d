internal import COpenSSL

/// Message digests and MACs computed by OpenSSL's EVP interface.
///
/// Only this module talks to OpenSSL; callers see byte arrays. Every function takes the exact bytes to
/// digest: callers must hash what they received, never a re-encoded copy.
public enum Digest {
    /// SHA-1 (20 bytes). Used by the unified platform's `values-sha1` and `salted-sha1` schemes.
    public static func sha1(_ data: some Collection<UInt8>) -> [UInt8] {
        evpDigest(fetchedSHA1 ?? EVP_sha1(), data)
    }

    /// SHA-256 (32 bytes). Used for event ids.
    public static func sha256(_ data: some Collection<UInt8>) -> [UInt8] {
        evpDigest(fetchedSHA256 ?? EVP_sha256(), data)
    }

    /// MD5 (16 bytes). WeChat Pay v2 signs with it; it is never used for anything of ours.
    public static func md5(_ data: some Collection<UInt8>) -> [UInt8] {
        evpDigest(fetchedMD5 ?? EVP_md5(), data)
    }

    // Fetched once. `EVP_sha1()` and its kind are OpenSSL 1.1's static objects: in OpenSSL 3 every digest
    // made with one fetches the algorithm from the provider again, under the method store's lock (crypto(7),
    // "Implicit fetching" and "Performance": fetch explicitly and reuse what was fetched). These run
    // for every callback, duplicates included. nil (no such algorithm in the default provider) falls back to
    // the implicit fetch. Never freed: they live as long as the process.
    private nonisolated(unsafe) static let fetchedSHA1 = EVP_MD_fetch(nil, "SHA1", nil)
    private nonisolated(unsafe) static let fetchedSHA256 = EVP_MD_fetch(nil, "SHA256", nil)
    private nonisolated(unsafe) static let fetchedMD5 = EVP_MD_fetch(nil, "MD5", nil)

    /// HMAC-SHA256 (32 bytes).
    public static func hmacSHA256(key: some Collection<UInt8>, message: some Collection<UInt8>) -> [UInt8] {
        let key = Array(key)
        let message = Array(message)
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let result = key.withUnsafeBytes { keyBuffer in
            message.withUnsafeBytes { messageBuffer in
                out.withUnsafeMutableBufferPointer { outBuffer in
                    HMAC(
                        EVP_sha256(), keyBuffer.baseAddress, Int32(keyBuffer.count),
                        messageBuffer.baseAddress?.assumingMemoryBound(to: UInt8.self), messageBuffer.count,
                        outBuffer.baseAddress, &length)
                }
            }
        }
        // HMAC() only fails on allocation failure inside OpenSSL; there is no sane way to go on.
        precondition(result != nil, "OpenSSL HMAC failed")
        return Array(out.prefix(Int(length)))
    }

    /// Compares two byte strings in time that depends only on their lengths (OpenSSL `CRYPTO_memcmp(3)`),
    /// so a caller probing signatures learns nothing from how long a mismatch takes.
    public static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        if a.isEmpty { return true }
        return a.withUnsafeBytes { pa in
            b.withUnsafeBytes { pb in
                CRYPTO_memcmp(pa.baseAddress, pb.baseAddress, a.count) == 0
            }
        }
    }

    private static func evpDigest(_ md: OpaquePointer?, _ data: some Collection<UInt8>) -> [UInt8] {
        // `withContiguousStorageIfAvailable` reads an array (or a slice, or a String's UTF-8 bytes) in place;
        // only other collections are copied first. The digest is written straight into the returned array.
        let digest = { (input: UnsafeRawBufferPointer) -> [UInt8] in
            [UInt8](unsafeUninitializedCapacity: Int(EVP_MAX_MD_SIZE)) { output, count in
                var length: UInt32 = 0
                let ok = EVP_Digest(input.baseAddress, input.count, output.baseAddress, &length, md, nil)
                // EVP_Digest fails only when OpenSSL cannot allocate a context.
                precondition(ok == 1, "OpenSSL EVP_Digest failed")
                count = Int(length)
            }
        }
        if let done = data.withContiguousStorageIfAvailable({ digest(UnsafeRawBufferPointer($0)) }) { return done }
        return Array(data).withUnsafeBytes(digest)
    }
}
