public import Foundation

/// The limits the listener enforces. Every field maps to a libmicrohttpd option
/// or to a check made in the access handler.
public struct HTTPLimits: Sendable, Equatable {
    /// When set, every daemon serves HTTPS only with this certificate and key (docs/proxy.md, "Alone, with
    /// native TLS").
    public var tls: TLSCredentials? = nil
    /// Seconds of inactivity after which a connection is closed
    /// (MHD_OPTION_CONNECTION_TIMEOUT). It is reset by every byte read or
    /// written, so on its own it does not bound a slowly trickled request;
    /// `headerDeadlineSeconds` and `requestDeadlineSeconds` do. 0 disables it.
    public var connectionTimeoutSeconds: Int = 10
    /// Concurrent connections for the whole daemon (MHD_OPTION_CONNECTION_LIMIT).
    /// With a thread pool, libmicrohttpd splits this evenly across the pool's
    /// threads; a thread whose share is full stops accepting and the others
    /// take the new connections, so all of them are usable (measured). Past
    /// the limit, new connections are not refused: they wait in the kernel's
    /// listen queue until a slot frees.
    public var maxConnections: Int = 256
    /// Concurrent connections from one IP address
    /// (MHD_OPTION_PER_IP_CONNECTION_LIMIT); extra ones are closed right after
    /// accept. 0 means no per-IP limit.
    public var maxConnectionsPerIP: Int = 32
    /// Memory pool per connection (MHD_OPTION_CONNECTION_MEMORY_LIMIT). The
    /// request line and headers must fit into it: libmicrohttpd answers 414
    /// for a request line and 431 for headers that do not.
    public var connectionMemoryLimitBytes: Int = 32768
    /// Largest accepted request body; a larger one is answered with
    /// `HTTPHandler.refusal(413, for:)` and never reaches `handle`. A chunked
    /// body (no Content-Length) that runs more than this many bytes past
    /// the cap is not read to its end: the connection is closed unanswered.
    public var maxBodyBytes: Int = 65536
    /// Seconds a whole request may take, counted from the arrival of its
    /// request line; past it the request is answered 408 or its connection
    /// is closed, and it never reaches `handle`.
    ///
    /// It is checked each time libmicrohttpd calls the access handler: once
    /// the headers are complete, for every piece of body, and at the end;
    /// a watchdog thread also closes a connection whose body is still not
    /// complete at the deadline (a client that stopped sending). A request
    /// already given to `handle` is never cut off.
    public var requestDeadlineSeconds: Double = 30
    /// Seconds a connection may take to deliver a complete request head
    /// (request line and headers), counted from its accept, or on a
    /// kept-alive connection from the end of the previous request; the
    /// shorter of this and `requestDeadlineSeconds` applies.
    ///
    /// libmicrohttpd calls the application only once the headers are
    /// complete, and every byte resets `connectionTimeoutSeconds`, so a
    /// client trickling header bytes (slowloris) would otherwise hold its
    /// connection indefinitely. A watchdog thread tracks every connection
    /// (MHD_OPTION_NOTIFY_CONNECTION) and shuts down the socket of one that
    /// is late; it is closed without an answer. It also bounds how long an
    /// idle kept-alive connection stays open.
    public var headerDeadlineSeconds: Double = 10
    /// Threads in libmicrohttpd's pool (MHD_OPTION_THREAD_POOL_SIZE); each one
    /// polls its own connections and runs their handlers.
    ///
    /// A handler that would wait (for a disk, a database) answers later
    /// through ``HTTPHandler/handle(_:answer:)`` and its connection is
    /// suspended meanwhile, so threads only do work and need not cover the
    /// connections that wait. payhook's own default follows the cores
    /// (`Config.defaultThreads`); this one is for a listener used alone.
    public var threads: Int = 8
    /// Peers whose X-Forwarded-For / X-Real-IP give the client's address (docs/proxy.md). For a request
    /// from one of them, `HTTPRequestHead.remoteAddress` is the forwarded client and `maxConnectionsPerIP`
    /// counts concurrent requests per forwarded address (answered 429 past it) instead of connections per
    /// peer, which all come from the proxy. Empty (the default): no header is believed and the per-IP
    /// limit is libmicrohttpd's, at accept time.
    public var trustedProxies = TrustedProxies()

    /// The defaults documented on each field.
    public init() {}
}

/// A request line and its headers, as received.
public struct HTTPRequestHead: Sendable {
    /// The method token, e.g. "GET", "POST".
    public let method: String
    /// The request target exactly as received: raw, not percent-decoded, "+"
    /// left alone, e.g. "/notify/unified?money=1&payTypeName=%E6%94%AF+x".
    public let target: String
    /// Header fields in arrival order; names as sent by the client.
    public let headers: [(name: String, value: String)]
    /// The client's IP address without port, e.g. "127.0.0.1" or "::1": the peer's, or, when the peer is
    /// one of `HTTPLimits.trustedProxies`, the address its X-Forwarded-For / X-Real-IP names.
    public let remoteAddress: String
    /// The TCP peer's IP address; differs from `remoteAddress` only behind a trusted proxy.
    public let peerAddress: String
    /// Wall-clock time at which the request line arrived.
    public let receivedAt: Date

    /// Creates a head; the server builds these, tests and callers may too.
    public init(
        method: String,
        target: String,
        headers: [(name: String, value: String)],
        remoteAddress: String,
        peerAddress: String? = nil,
        receivedAt: Date
    ) {
        self.method = method
        self.target = target
        self.headers = headers
        self.remoteAddress = remoteAddress
        self.peerAddress = peerAddress ?? remoteAddress
        self.receivedAt = receivedAt
        // Split once: routing, logging and metrics read the path several times per request.
        if let mark = target.utf8.firstIndex(of: UInt8(ascii: "?")) {
            path = String(target[..<mark])
            query = String(target[target.index(after: mark)...])
        } else {
            path = target
            query = nil
        }
    }

    /// The target up to (not including) the first "?", raw.
    public let path: String

    /// The raw text after the first "?", or nil when the target has no "?".
    public let query: String?

    /// The value of the first header whose name matches `name`, ignoring ASCII case.
    public func header(_ name: String) -> String? {
        headers.first { HTTPHeaderName.equals($0.name, name) }?.value
    }
}

/// Header field names compared as RFC 9110 section 5.1 says: case-insensitively. Field names are tokens, so
/// ASCII case is the only case there is; comparing bytes avoids building a lowercased copy (Unicode case
/// mapping) of every name of every request.
public enum HTTPHeaderName {
    public static func equals(_ a: String, _ b: String) -> Bool {
        a.utf8.count == b.utf8.count && a.utf8.elementsEqual(b.utf8) { lower($0) == lower($1) }
    }

    @inline(__always)
    static func lower(_ byte: UInt8) -> UInt8 {
        byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
    }
}

/// A complete request: its head and its whole body.
public struct HTTPRequest: Sendable {
    /// The request line and headers.
    public let head: HTTPRequestHead
    /// The body bytes exactly as received (chunked framing removed).
    public let body: [UInt8]

    /// Creates a request from its parts.
    public init(head: HTTPRequestHead, body: [UInt8]) {
        self.head = head
        self.body = body
    }
}

/// An answer to send. `Content-Length` and `Date` are added by libmicrohttpd;
/// a `Content-Length` or `Transfer-Encoding` given here is ignored.
public struct HTTPResponse: Sendable {
    /// The status code; anything outside 200...599 is replaced by a 500.
    public var status: Int
    /// Header fields to send, in order. Names must be HTTP tokens and values
    /// must not contain CR, LF or NUL, or the response is replaced by a 500.
    public var headers: [(name: String, value: String)]
    /// The body bytes.
    public var body: [UInt8]

    /// A response whose body is `body` encoded as UTF-8, with a `Content-Type`
    /// header followed by `headers`.
    public init(status: Int, contentType: String, body: String, headers: [(name: String, value: String)] = []) {
        self.init(status: status, contentType: contentType, body: Array(body.utf8), headers: headers)
    }

    /// A response with a `Content-Type` header followed by `headers`.
    public init(status: Int, contentType: String, body: [UInt8], headers: [(name: String, value: String)] = []) {
        self.status = status
        self.headers = [(name: "Content-Type", value: contentType)] + headers
        self.body = body
    }

    /// A response with exactly the given headers (no `Content-Type` is added).
    public init(status: Int, headers: [(name: String, value: String)], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

/// What the listener asks of the application. Called on libmicrohttpd's
/// threads, concurrently for different connections.
public protocol HTTPHandler: Sendable {
    /// Called once the request head is complete, before any body byte is read.
    /// A non-nil answer is sent at once and the body is not read (used for 404/405).
    func head(_ head: HTTPRequestHead) -> HTTPResponse?
    /// Called with the complete request; may block (it waits for an fsync), so it runs on an MHD pool thread.
    func handle(_ request: HTTPRequest) -> HTTPResponse
    /// Called with the complete request instead of ``handle(_:)``: `answer` is called exactly once, on any
    /// thread, now or later, with what makes the response. When it comes later the connection is suspended
    /// meanwhile (MHD_suspend_connection), so the listener thread serves its other connections instead of
    /// waiting (docs/architecture.md, "Waiting without a thread"), and the maker runs on a listener thread
    /// once the connection is resumed: whoever calls `answer` (a store's writer thread) only hands it over.
    /// The default calls ``handle(_:)`` and answers at once.
    func handle(_ request: HTTPRequest, answer: @escaping @Sendable (@escaping HTTPAnswer) -> Void)
    /// The answer for a request the server itself refuses: 413 (body over
    /// maxBodyBytes) or 408 (deadline passed); also 400 for a request whose
    /// framing is unusable (a malformed `Content-Length`, `Content-Length`
    /// together with `Transfer-Encoding`, a `Transfer-Encoding` other than
    /// `chunked`, an HTTP/1.1 request without `Host`, more than one `Host`)
    /// and 503 for a request that arrives on a kept-alive connection after
    /// `HTTPServer.shutdown` began.
    func refusal(_ status: Int, for head: HTTPRequestHead) -> HTTPResponse
}

/// Makes the response of a request whose handling finished (see ``HTTPHandler/handle(_:answer:)``).
public typealias HTTPAnswer = @Sendable () -> HTTPResponse

extension HTTPHandler {
    public func handle(_ request: HTTPRequest, answer: @escaping @Sendable (@escaping HTTPAnswer) -> Void) {
        let response = handle(request)
        answer { response }
    }
}

/// A PEM certificate (chain) and its PEM private key, as read from `tls_cert_file` and `tls_key_file`.
/// The description never shows the key.
public struct TLSCredentials: Sendable, Equatable, CustomStringConvertible {
    public var certificatePEM: String
    public var keyPEM: String

    public init(certificatePEM: String, keyPEM: String) {
        self.certificatePEM = certificatePEM
        self.keyPEM = keyPEM
    }

    public var description: String { "TLSCredentials(certificate: \(certificatePEM.utf8.count) bytes, key: redacted)" }
}
