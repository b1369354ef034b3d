import CMicroHTTPD

#if canImport(Glibc)
import Glibc
#endif

/// One TLS client session over a connected socket: what `payhook simulate https://…` sends through. It uses
/// GnuTLS, the library the listener's own TLS is built on (docs/proxy.md, "Alone, with native TLS"), so HTTPS
/// needs no further library. TLS 1.2 and 1.3 only, as the listener; the server's certificate is verified
/// against the system's trusted authorities, or against `trustFile` alone when one is given (a private CA or a
/// self-signed certificate), and must name `host` (a DNS name, or an IP address in its subjectAltName).
public final class TLSClientSession {
    /// Why the session could not be set up or used, in one sentence.
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    private var session: gnutls_session_t?
    private var credentials: gnutls_certificate_credentials_t?

    /// Performs the handshake on `socket` (connected, blocking; its timeouts apply), verifying the server as
    /// `host`. The socket stays the caller's to close.
    public init(socket: Int32, host: String, trustFile: String?) throws(Failure) {
        func failure(_ what: String, _ code: Int32) -> Failure {
            Failure(description: "\(what): \(gnutls_strerror(code).map { String(cString: $0) } ?? "GnuTLS error \(code)")")
        }
        var credentials: gnutls_certificate_credentials_t?
        var code = gnutls_certificate_allocate_credentials(&credentials)
        guard code == GNUTLS_E_SUCCESS, let credentials else { throw failure("TLS set-up", code) }
        self.credentials = credentials
        if let trustFile {
            code = gnutls_certificate_set_x509_trust_file(credentials, trustFile, GNUTLS_X509_FMT_PEM)
            // The count of certificates read, or an error; none read is an error too.
            if code <= 0 {
                throw code < 0
                    ? failure("cannot read the trusted certificates in \(trustFile)", code)
                    : Failure(description: "no PEM certificate in \(trustFile)")
            }
        } else {
            code = gnutls_certificate_set_x509_system_trust(credentials)
            if code < 0 { throw failure("cannot load the system's trusted certificates", code) }
        }
        var session: gnutls_session_t?
        code = gnutls_init(&session, UInt32(GNUTLS_CLIENT))
        guard code == GNUTLS_E_SUCCESS, let session else { throw failure("TLS set-up", code) }
        self.session = session
        code = gnutls_priority_set_direct(session, "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2", nil)
        if code != GNUTLS_E_SUCCESS { throw failure("TLS set-up", code) }
        code = gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, UnsafeMutableRawPointer(credentials))
        if code != GNUTLS_E_SUCCESS { throw failure("TLS set-up", code) }
        // Server Name Indication carries DNS names only (RFC 6066 §3), never an address literal.
        if !Self.isAddressLiteral(host) {
            code = gnutls_server_name_set(session, GNUTLS_NAME_DNS, host, host.utf8.count)
            if code != GNUTLS_E_SUCCESS { throw failure("TLS set-up", code) }
        }
        gnutls_session_set_verify_cert(session, host, 0)
        gnutls_transport_set_int2(session, socket, socket)
        repeat {
            code = gnutls_handshake(session)
        } while code < 0 && gnutls_error_is_fatal(code) == 0 && code != GNUTLS_E_AGAIN
        guard code == GNUTLS_E_SUCCESS else {
            if code == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR {
                let status = gnutls_session_get_verify_cert_status(session)
                var text = gnutls_datum_t()
                var reason = "verification failed"
                if gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0) == GNUTLS_E_SUCCESS, let data = text.data {
                    reason = String(cString: data).trimmingSpaces()
                    free(data)
                }
                let trust = trustFile.map { "the certificates in \($0)" } ?? "the system's trusted certificates (give --cacert FILE for a private one)"
                throw Failure(description: "the server's certificate is not trusted as \(host) by \(trust): \(reason)")
            }
            if code == GNUTLS_E_AGAIN { throw Failure(description: "TLS handshake with \(host): timed out") }
            throw failure("TLS handshake with \(host)", code)
        }
    }

    deinit {
        if let session { gnutls_deinit(session) }
        if let credentials { gnutls_certificate_free_credentials(credentials) }
    }

    /// Sends all of `bytes`.
    public func send(_ bytes: [UInt8]) throws(Failure) {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { gnutls_record_send(session, $0.baseAddress, $0.count) }
            if sent == Int(GNUTLS_E_INTERRUPTED) { continue }
            guard sent > 0 else { throw Failure(description: "TLS send: \(Self.reason(Int32(truncatingIfNeeded: sent)))") }
            offset += sent
        }
    }

    /// Reads until the server closes: with close_notify, or (as many servers do after `Connection: close`) by
    /// closing the socket once everything was sent; whether that cut a response short is the HTTP parser's to
    /// say, from Content-Length or chunking.
    public func receiveAll() throws(Failure) -> [UInt8] {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            let read = buffer.withUnsafeMutableBytes { gnutls_record_recv(session, $0.baseAddress, $0.count) }
            if read > 0 {
                bytes.append(contentsOf: buffer[0..<read])
                continue
            }
            if read == 0 || read == Int(GNUTLS_E_PREMATURE_TERMINATION) { return bytes }
            if read == Int(GNUTLS_E_INTERRUPTED) { continue }
            if read == Int(GNUTLS_E_AGAIN) { throw Failure(description: "TLS receive: timed out") }
            throw Failure(description: "TLS receive: \(Self.reason(Int32(truncatingIfNeeded: read)))")
        }
    }

    static func reason(_ code: Int32) -> String {
        gnutls_strerror(code).map { String(cString: $0) } ?? "GnuTLS error \(code)"
    }

    static func isAddressLiteral(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }
}

extension String {
    /// Without the spaces GnuTLS leaves at the end of its sentences.
    fileprivate func trimmingSpaces() -> String {
        var text = self
        while text.last == " " { text.removeLast() }
        return text
    }
}
