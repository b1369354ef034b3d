internal import COpenSSL

/// Why a key or a certificate could not be read. The text names what was wrong with the input, never any
/// of the input itself: a misplaced private key must not end up in a log.
public enum CryptoError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Empty, or larger than `PEM.maximumLength`.
    case inputSize
    /// No "PUBLIC KEY" PEM block that OpenSSL could decode.
    case malformedPublicKey
    /// No "CERTIFICATE" PEM block that OpenSSL could decode.
    case malformedCertificate
    /// The certificate decoded but its serial number, validity or public key could not be read.
    case unreadableCertificateField

    public var description: String {
        switch self {
        case .inputSize: "the PEM input is empty or too large"
        case .malformedPublicKey: "not a PEM public key (expected -----BEGIN PUBLIC KEY-----)"
        case .malformedCertificate: "not a PEM X.509 certificate (expected -----BEGIN CERTIFICATE-----)"
        case .unreadableCertificateField: "the certificate's serial number, validity or public key cannot be read"
        }
    }
}

/// Reading PEM text through an OpenSSL memory BIO.
enum PEM {
    /// A key or certificate file is a few kilobytes; anything this large is not one.
    static let maximumLength = 1 << 20

    /// Runs `body` with a read-only memory BIO over `bytes`; nil when the input is empty, too large, or OpenSSL
    /// cannot allocate the BIO. OpenSSL's error queue is cleared afterwards, so one bad file leaves nothing
    /// behind for the next call on this thread (ERR_clear_error(3)).
    static func withBIO<T>(_ bytes: [UInt8], _ body: (OpaquePointer) -> T?) -> T? {
        defer { ERR_clear_error() }
        guard !bytes.isEmpty, bytes.count <= maximumLength else { return nil }
        return bytes.withUnsafeBytes { buffer -> T? in
            guard let base = buffer.baseAddress, let bio = BIO_new_mem_buf(base, Int32(buffer.count)) else { return nil }
            defer { BIO_free(bio) }
            return body(bio)
        }
    }
}

/// The passphrase callback for every PEM read: it refuses to give one (a negative return, pem_password_cb in
/// PEM_read_bio_PrivateKey(3)). Without it OpenSSL falls back to prompting on the terminal for an encrypted
/// block, which would hang a server; an encrypted key is simply unreadable here.
func refusePassphrase(_ buffer: UnsafeMutablePointer<CChar>?, _ size: Int32, _ writing: Int32, _ user: UnsafeMutableRawPointer?)
    -> Int32
{
    -1
}
