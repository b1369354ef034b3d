internal import COpenSSL

/// Whether a certificate file chains to a trusted root: the optional check of an Alipay public-key certificate
/// (`alipayCertPublicKey_RSA2.crt`, which holds the key and then its intermediate) against Alipay's root bundle
/// (`alipayRootCert.crt`), docs/protocols.md §9.2.
///
/// It runs when the configuration is loaded, never per request. Validity periods are not judged here
/// (X509_V_FLAG_NO_CHECK_TIME): whether a certificate is current is the loader's separate warning, so that a
/// chain problem and an expiry are told apart.
public enum X509Chain {
    /// How many certificates a PEM file may hold before it is refused as not a certificate file.
    static let maximumCertificates = 16

    /// The number of `CERTIFICATE` blocks OpenSSL reads from `pem`, in order; 0 when there is none.
    public static func certificateCount(pem: [UInt8]) -> Int {
        let certificates = read(pem)
        defer { certificates.forEach { X509_free($0) } }
        return certificates.count
    }

    /// nil when the first certificate of `leafPEM` chains, through the other certificates of `leafPEM` as
    /// intermediates, to one of the certificates of `rootsPEM`; otherwise why not, in OpenSSL's words
    /// (X509_verify_cert_error_string(3)).
    public static func problem(leafPEM: [UInt8], rootsPEM: [UInt8]) -> String? {
        let chain = read(leafPEM)
        let roots = read(rootsPEM)
        defer {
            chain.forEach { X509_free($0) }
            roots.forEach { X509_free($0) }
            ERR_clear_error()
        }
        guard let leaf = chain.first else { return "no certificate in the file" }
        guard !roots.isEmpty else { return "no certificate in the root file" }
        guard let store = X509_STORE_new() else { return "out of memory" }
        defer { X509_STORE_free(store) }
        for root in roots where X509_STORE_add_cert(store, root) != 1 {
            // A root listed twice is not an error worth refusing the bundle for.
            ERR_clear_error()
        }
        guard let untrusted = OPENSSL_sk_new_null() else { return "out of memory" }
        defer { OPENSSL_sk_free(untrusted) }
        for intermediate in chain.dropFirst() {
            guard OPENSSL_sk_push(untrusted, UnsafeRawPointer(intermediate)) > 0 else { return "out of memory" }
        }
        guard let context = X509_STORE_CTX_new() else { return "out of memory" }
        defer { X509_STORE_CTX_free(context) }
        guard X509_STORE_CTX_init(context, store, leaf, untrusted) == 1 else { return "cannot start the check" }
        X509_STORE_CTX_set_flags(context, UInt(X509_V_FLAG_NO_CHECK_TIME))
        if X509_verify_cert(context) == 1 { return nil }
        let code = X509_STORE_CTX_get_error(context)
        guard let text = X509_verify_cert_error_string(Int(code)) else { return "verification error \(code)" }
        return String(cString: text)
    }

    private static func read(_ pem: [UInt8]) -> [OpaquePointer] {
        PEM.withBIO(pem) { bio -> [OpaquePointer] in
            var certificates: [OpaquePointer] = []
            while certificates.count < maximumCertificates, let x509 = PEM_read_bio_X509(bio, nil, refusePassphrase, nil) {
                certificates.append(x509)
            }
            return certificates
        } ?? []
    }
}
