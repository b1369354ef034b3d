import CMicroHTTPD

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The listener's certificate chain and private key, parsed by GnuTLS and replaceable while the daemons serve
/// (docs/reload.md, "Certificates"). Every daemon of a server shares one; each handshake presents the pair that
/// is current when it starts, and a connection already open keeps the pair it was given.
public final class TLSCertificates: @unchecked Sendable {
    /// The C store behind MHD's certificate callback (Sources/CMicroHTTPD/shim.h). Freed only in `deinit`,
    /// which runs once the server and every daemon context holding this object are gone, so after every daemon
    /// that could call back has stopped.
    let store: UnsafeMutablePointer<payhook_tls_store>
    /// The GnuTLS priority string handed to MHD, which keeps the pointer (HTTPServer.tlsPriorities).
    let priorities: UnsafeMutablePointer<CChar>

    /// Parses `credentials` and checks that the key belongs to the certificate.
    public init(_ credentials: TLSCredentials) throws(TLSCredentialsError) {
        let pair = try Self.parse(credentials)
        guard let store = payhook_tls_store_create(pair) else {
            payhook_tls_pair_free(pair)
            throw TLSCredentialsError(part: .pair, reason: "out of memory")
        }
        self.store = store
        self.priorities = strdup(HTTPServer.tlsPriorities)
    }

    /// Presents `credentials` from the next handshake on. On error the current pair stays.
    public func replace(with credentials: TLSCredentials) throws(TLSCredentialsError) {
        payhook_tls_store_replace(store, try Self.parse(credentials))
    }

    /// The SHA-256 fingerprint of the leaf certificate now presented, as lower-case hex: which certificate is
    /// served, for the reload log line. A certificate is public; this never depends on the key.
    public var fingerprint: String {
        var digest = [UInt8](repeating: 0, count: 32)
        guard payhook_tls_store_fingerprint(store, &digest) == 0 else { return "unknown" }
        return digest.map { byte in (byte < 16 ? "0" : "") + String(byte, radix: 16) }.joined()
    }

    /// When the certificate now presented stops being valid (its notAfter), in Unix seconds; nil when it
    /// cannot be read.
    public var notAfter: Int64? {
        let end = payhook_tls_store_not_after(store)
        return end < 0 ? nil : Int64(end)
    }

    /// Whether GnuTLS accepts `credentials` as a listener's pair: nil when it does, else what it refused and
    /// why (GnuTLS's own sentence, which never quotes the files). The config loader calls this so that
    /// `check-config` and a reload refuse a pair the listener could not use.
    public static func problem(with credentials: TLSCredentials) -> TLSCredentialsError? {
        do {
            payhook_tls_pair_free(try parse(credentials))
            return nil
        } catch {
            return error
        }
    }

    private static func parse(_ credentials: TLSCredentials) throws(TLSCredentialsError) -> UnsafeMutablePointer<payhook_tls_pair> {
        var pair: UnsafeMutablePointer<payhook_tls_pair>?
        var stage: Int32 = 0
        let result = credentials.certificatePEM.withCString { certificate in
            credentials.keyPEM.withCString { key in
                payhook_tls_pair_parse(certificate, strlen(certificate), key, strlen(key), &pair, &stage)
            }
        }
        guard result == 0, let pair else {
            let reason = gnutls_strerror(result).map { String(cString: $0) } ?? "GnuTLS error \(result)"
            let part: TLSCredentialsError.Part = switch stage {
            case PAYHOOK_TLS_STAGE_CERTIFICATE: .certificate
            case PAYHOOK_TLS_STAGE_KEY: .key
            default: .pair
            }
            throw TLSCredentialsError(part: part, reason: reason)
        }
        return pair
    }

    deinit {
        payhook_tls_store_free(store)
        free(priorities)
    }
}

/// Why GnuTLS refused a certificate and key: which part, and its sentence for the error, never the files'
/// contents.
public struct TLSCredentialsError: Error, Sendable, CustomStringConvertible {
    public enum Part: Sendable {
        /// The certificate file holds no certificate GnuTLS can read.
        case certificate
        /// The key file holds no private key GnuTLS can read (an encrypted key is one).
        case key
        /// Both read, but the key is not the certificate's.
        case pair
    }

    public let part: Part
    public let reason: String

    public var description: String {
        switch part {
        case .certificate: "the certificate is unusable: \(reason)"
        case .key: "the private key is unusable: \(reason)"
        case .pair: "the private key does not belong to the certificate: \(reason)"
        }
    }
}
