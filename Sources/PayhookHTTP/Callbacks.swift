import CMicroHTTPD
import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import PayhookLock

/// The bodies of the C callbacks given to MHD_start_daemon. Each one runs on
/// an MHD pool thread; a connection always stays on the same thread, so the
/// calls for one request never overlap, but calls for different requests do.
enum Callbacks {
    // MARK: URI log callback

    /// MHD_OPTION_URI_LOG_CALLBACK: called once per request as soon as the
    /// request line is parsed, with the URI before MHD unescapes it or splits
    /// off the query (microhttpd.h). The request is registered in
    /// `DaemonContext.State.live` under its connection, which counts it in
    /// `inFlight` until it ends.
    ///
    /// MHD usually calls the completed callback for every request it showed
    /// here (431, 400, timeout, shutdown), but not for all: 0.9.75 closes a
    /// connection whose query arguments overflow its memory pool without
    /// it. That is why the request is tied to its connection and ended on
    /// MHD_CONNECTION_NOTIFY_CLOSED too (`connectionChanged`).
    static func uriArrived(
        _ cls: UnsafeMutableRawPointer?,
        _ uri: UnsafePointer<CChar>?,
        _ connection: OpaquePointer?
    ) -> UnsafeMutableRawPointer? {
        guard let cls, let connection else { return nil }
        let daemon = Unmanaged<DaemonContext>.fromOpaque(cls).takeUnretainedValue()
        let target = uri.map { String(cString: $0) } ?? ""
        let remote = peerAddress(connection)
        let (request, replaced) = daemon.requestArrived(connection: key(connection)) { draining in
            RequestContext(target: target, remoteAddress: remote, arrivedWhileDraining: draining)
        }
        if replaced {
            daemon.logger.debug("request arrived on a connection whose previous request never ended",
                                metadata: ["remote": "\(remote)"])
        }
        // Unretained: `live` owns the request (see RequestContext).
        return Unmanaged.passUnretained(request).toOpaque()
    }

    // MARK: Request completed callback

    /// MHD_OPTION_NOTIFY_COMPLETED: ends the request registered by
    /// `uriArrived`, which releases it, and starts the head deadline of the
    /// connection's next request.
    static func requestCompleted(
        _ cls: UnsafeMutableRawPointer?,
        _ connection: OpaquePointer?,
        _ contextSlot: UnsafeMutablePointer<UnsafeMutableRawPointer?>?
    ) {
        guard let cls, let connection, let contextSlot, let raw = contextSlot.pointee else { return }
        contextSlot.pointee = nil
        let daemon = Unmanaged<DaemonContext>.fromOpaque(cls).takeUnretainedValue()
        // Matched by address, without dereferencing `raw`: should MHD ever
        // complete a request whose connection-closed notification already
        // ended it, the pointer would no longer be valid.
        daemon.requestCompleted(raw, connection: key(connection))
        daemon.watchdog.requestEnded(key(connection))
    }

    // MARK: Connection notifications

    /// MHD_OPTION_NOTIFY_CONNECTION: registers each accepted connection with
    /// the watchdog (with its socket, from MHD_CONNECTION_INFO_CONNECTION_FD)
    /// and forgets it when MHD closes it. Connections refused by the per-IP
    /// limit are closed before MHD creates them and never appear here.
    ///
    /// On HTTPS the connection's socket context becomes the server's certificate store, which the handshake's
    /// certificate callback reads (Sources/CMicroHTTPD/shim.h, payhook_tls_retrieve); MHD notifies a
    /// connection's start before it reads a byte from it, so before its handshake.
    static func connectionChanged(
        _ cls: UnsafeMutableRawPointer?,
        _ connection: OpaquePointer?,
        _ socketContext: UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
        _ code: MHD_ConnectionNotificationCode
    ) {
        guard let cls, let connection else { return }
        let daemon = Unmanaged<DaemonContext>.fromOpaque(cls).takeUnretainedValue()
        switch code {
        case .CONNECTION_NOTIFY_STARTED:
            if let certificates = daemon.certificates, let socketContext {
                socketContext.pointee = UnsafeMutableRawPointer(certificates.store)
            }
            let descriptor = payhook_connection_fd(connection)
            guard descriptor >= 0 else { return }
            let peer = peerAddress(connection)
            daemon.clients.opened(key(connection), peer: peer)
            daemon.watchdog.opened(key(connection), descriptor: descriptor, remoteAddress: peer)
        case .CONNECTION_NOTIFY_CLOSED:
            daemon.clients.closed(key(connection))
            daemon.watchdog.closed(key(connection))
            // MHD sends this after the completed callback of the
            // connection's last request, so a request still registered
            // here was dropped without one (see `uriArrived`).
            if let dropped = daemon.connectionClosed(key(connection)) {
                daemon.logger.debug("connection closed by libmicrohttpd before its request completed", metadata: [
                    "path": "\(LogText.path(dropped.target))", "remote": "\(dropped.remoteAddress)",
                ])
            }
        default:
            break
        }
    }

    /// The watchdog's key for a connection: MHD's handle, unique while the
    /// connection is open (it is removed on MHD_CONNECTION_NOTIFY_CLOSED,
    /// before MHD can reuse the memory).
    static func key(_ connection: OpaquePointer) -> Int {
        Int(bitPattern: UnsafeRawPointer(connection))
    }

    static func peerAddress(_ connection: OpaquePointer) -> String {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buffer in
            guard let base = buffer.baseAddress, payhook_connection_peer_ip(connection, base, buffer.count) == 0 else {
                return "unknown"
            }
            return String(cString: base)
        }
    }

    // MARK: Accept policy

    /// MHD_AcceptPolicyCallback, installed only when payhook applies the per-address limit itself
    /// (`ClientLimits.ownsPerAddressLimit`): refuses a direct peer that already has max_connections_per_ip
    /// connections open, as MHD_OPTION_PER_IP_CONNECTION_LIMIT would, and never a trusted proxy.
    static func acceptPolicy(_ cls: UnsafeMutableRawPointer?, _ address: UnsafePointer<sockaddr>?, _ length: socklen_t) -> MHD_Result {
        guard let cls, let address else { return .NO }
        let daemon = Unmanaged<DaemonContext>.fromOpaque(cls).takeUnretainedValue()
        let bytes: [UInt8]
        switch Int32(address.pointee.sa_family) {
        case AF_INET where Int(length) >= MemoryLayout<sockaddr_in>.size:
            bytes = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { pointer in
                withUnsafeBytes(of: pointer.pointee.sin_addr) { Array($0) }
            }
        case AF_INET6 where Int(length) >= MemoryLayout<sockaddr_in6>.size:
            bytes = address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { pointer in
                withUnsafeBytes(of: pointer.pointee.sin6_addr) { Array($0) }
            }
        default:
            return .YES
        }
        return daemon.clients.admits(IPAddress(bytes: bytes)) ? .YES : .NO
    }

    // MARK: Access handler

    /// The MHD_AccessHandlerCallback. microhttpd.h describes the sequence:
    /// one call once the headers are in (`*upload_data_size == 0`), one call
    /// per received piece of body (`*upload_data_size > 0`, which must be set
    /// to the number of bytes not consumed), and a last call with
    /// `*upload_data_size == 0` once the whole request is in. A response can
    /// only be queued in the first and the last call; queuing it in the first
    /// one makes MHD skip the body and close the connection after answering.
    static func access(
        _ cls: UnsafeMutableRawPointer?,
        _ connection: OpaquePointer?,
        _ method: UnsafePointer<CChar>?,
        _ version: UnsafePointer<CChar>?,
        _ uploadData: UnsafePointer<CChar>?,
        _ uploadDataSize: UnsafeMutablePointer<Int>?,
        _ contextSlot: UnsafeMutablePointer<UnsafeMutableRawPointer?>?
    ) -> MHD_Result {
        guard let cls, let connection, let uploadDataSize, let contextSlot else { return .NO }
        let daemon = Unmanaged<DaemonContext>.fromOpaque(cls).takeUnretainedValue()
        guard let raw = contextSlot.pointee else {
            // The URI log callback always installs a context; without one
            // there is nothing to track the request with, so answer 500.
            return queue(internalError(), on: connection, daemon: daemon, closeAfter: true)
        }
        let request = Unmanaged<RequestContext>.fromOpaque(raw).takeUnretainedValue()
        let expired = ContinuousClock.now - request.started > daemon.deadline
        let pending = uploadDataSize.pointee

        let existingHead = request.state.withLock { $0.head }
        guard let head = existingHead else {
            return headersComplete(request, method: method, version: version, connection: connection, daemon: daemon,
                                   expired: expired)
        }

        if pending > 0 {
            // MHD_queue_response is refused while body data is being
            // delivered, so a request past its deadline can only be cut off.
            if expired {
                daemon.logger.debug("closing connection: request deadline passed while reading the body",
                                    metadata: ["path": "\(LogText.path(head.target))", "remote": "\(head.remoteAddress)"])
                return .NO
            }
            let limit = daemon.limits.maxBodyBytes
            let keepReading = request.state.withLock { state -> Bool in
                if state.bodyOverflowed {
                    state.overflowBytes += pending
                    return state.overflowBytes <= daemon.overflowAllowance
                }
                if state.body.count + pending > limit {
                    // Chunked bodies carry no Content-Length, so the cap is
                    // enforced on the running total. Up to
                    // `overflowAllowance` more bytes are read and dropped so
                    // that a body somewhat over the cap still gets its 413
                    // with the last call.
                    state.bodyOverflowed = true
                    state.overflowBytes = state.body.count + pending - limit
                    state.body = []
                    return state.overflowBytes <= daemon.overflowAllowance
                }
                if let uploadData {
                    uploadData.withMemoryRebound(to: UInt8.self, capacity: pending) {
                        state.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: pending))
                    }
                }
                return true
            }
            if !keepReading {
                // An endless (or huge) chunked body: reading it to its end
                // would cost a pool thread and bandwidth until the deadline,
                // so the connection is closed without an answer.
                daemon.logger.debug("closing connection: chunked body far over the cap",
                                    metadata: ["path": "\(LogText.path(head.target))", "remote": "\(head.remoteAddress)"])
                return .NO
            }
            uploadDataSize.pointee = 0
            return .YES
        }

        // The whole request is in. Called again after a resume: the handler's answer is waiting.
        if let answer = request.state.withLock({ state -> HTTPAnswer? in
            defer { state.answer = nil }
            return state.answer
        }) {
            return queue(answer(), on: connection, daemon: daemon, closeAfter: false)
        }
        if expired {
            return refuse(408, head: head, on: connection, daemon: daemon, closeAfter: true)
        }
        let (body, overflowed) = request.state.withLock { state -> ([UInt8], Bool) in
            let body = state.body
            state.body = []
            return (body, state.bodyOverflowed)
        }
        if overflowed {
            return refuse(413, head: head, on: connection, daemon: daemon, closeAfter: true)
        }
        // From here on the watchdog leaves the connection alone; if it cut
        // the connection off first, the request goes no further.
        guard daemon.watchdog.beginHandling(key(connection)) else { return .NO }
        // MHD's connection handle, carried as a number: it stays valid while the connection is suspended,
        // since MHD frees a connection only after it was resumed and closed.
        let handle = Int(bitPattern: UnsafeRawPointer(connection))
        daemon.handler.handle(HTTPRequest(head: head, body: body)) { answer in
            // Any thread, once. Resumes the connection only if it was suspended below; an answer given before
            // that (inline, or by a fast writer) is found by the access handler itself. One given after the
            // request ended (its connection closed) is made here, for its log line and metrics
            // (DaemonContext.ended).
            let (resume, orphaned) = request.state.withLock { state -> (Bool, Bool) in
                guard !state.answered else { return (false, false) }
                state.answered = true
                if state.ended { return (false, true) }
                state.answer = answer
                defer { state.parked = false }
                return (state.parked, false)
            }
            if orphaned { _ = answer() }
            if resume, let suspended = OpaquePointer(bitPattern: handle) { MHD_resume_connection(suspended) }
        }
        let answered = request.state.withLock { state -> HTTPAnswer? in
            if let answer = state.answer {
                state.answer = nil
                return answer
            }
            // Suspended under the request's lock, so the answer cannot try to resume the connection before
            // it is suspended (microhttpd.h: resuming a connection that is not suspended is undefined).
            state.parked = true
            MHD_suspend_connection(connection)
            return nil
        }
        if let answered {
            return queue(answered(), on: connection, daemon: daemon, closeAfter: false)
        }
        return .YES
    }

    /// The first access-handler call: build the head and decide whether the
    /// body is wanted at all.
    private static func headersComplete(
        _ request: RequestContext,
        method: UnsafePointer<CChar>?,
        version: UnsafePointer<CChar>?,
        connection: OpaquePointer,
        daemon: DaemonContext,
        expired: Bool
    ) -> MHD_Result {
        let headers = requestHeaders(connection)
        let peer = request.remoteAddress
        let forwarded = daemon.clients.trusted.clientAddress(peer: peer, headers: headers)
        var client = peer
        switch forwarded {
        case .forwarded(let address):
            client = address.description
        case .malformed(let header):
            // Ignored: the request stays the proxy's own (docs/proxy.md). Logged once at warning, then
            // only counted, so a client sending garbage cannot flood the log.
            let level: Logger.Level = daemon.clients.countMalformed() ? .warning : .debug
            daemon.logger.log(level: level, "unusable \(header) from a trusted proxy ignored; the peer's address is used",
                              metadata: ["path": "\(LogText.path(request.target))", "peer": "\(peer)"])
        case .direct, .absent:
            break
        }
        let head = HTTPRequestHead(
            method: method.map { String(cString: $0) } ?? "",
            target: request.target,
            headers: headers,
            remoteAddress: client,
            peerAddress: peer,
            receivedAt: request.receivedAt
        )
        request.state.withLock { $0.head = head }

        // The head deadline is met; from now on the request deadline applies.
        guard daemon.watchdog.headComplete(key(connection), requestStarted: request.started) else {
            return .NO
        }
        if request.arrivedWhileDraining {
            return refuse(503, head: head, on: connection, daemon: daemon, closeAfter: true)
        }
        if expired {
            return refuse(408, head: head, on: connection, daemon: daemon, closeAfter: true)
        }
        // Refused here, before any body byte is read: answering in this
        // first call makes MHD skip the body, and closeAfter ends the
        // connection, so nothing the client sent after this head is taken
        // as a request.
        if framingProblem(head, version: version.map { String(cString: $0) } ?? "") != nil {
            return refuse(400, head: head, on: connection, daemon: daemon, closeAfter: true)
        }
        let declared = declaredLength(head)
        switch declared {
        case .malformed:
            return refuse(400, head: head, on: connection, daemon: daemon, closeAfter: true)
        case .length(let length) where length > UInt64(daemon.limits.maxBodyBytes):
            return refuse(413, head: head, on: connection, daemon: daemon, closeAfter: true)
        case .tooLarge:
            return refuse(413, head: head, on: connection, daemon: daemon, closeAfter: true)
        case .absent, .length:
            break
        }
        if let early = daemon.handler.head(head) {
            return queue(early, on: connection, daemon: daemon, closeAfter: false)
        }
        // Behind a trusted proxy every connection comes from the proxy, so max_connections_per_ip counts
        // the requests in flight per client address instead (docs/proxy.md). The slot is given back when
        // the request leaves `live` (DaemonContext.ended).
        if forwarded != .direct {
            guard daemon.clients.acquire(client) else {
                return refuseTooMany(head, on: connection, daemon: daemon)
            }
            request.state.withLock { $0.limitSlot = client }
        }
        if case .length(let length) = declared, length > 0 {
            // Sized once, after the checks above, instead of growing piece by piece.
            request.state.withLock { $0.body.reserveCapacity(Int(length)) }
        }
        return .YES
    }

    // MARK: Framing and Host

    enum FramingProblem: Equatable {
        /// Content-Length and Transfer-Encoding together. RFC 9112 section
        /// 6.1: a server "MAY reject a request that contains both
        /// Content-Length and Transfer-Encoding", and "MUST close the
        /// connection after responding" to one: when a proxy in front of
        /// this server read the other length, the bytes after the body
        /// would be a request it never saw (request smuggling). libmicrohttpd
        /// 0.9.75 reads such a request as chunked and keeps the connection.
        case lengthAndTransferEncoding
        /// A Transfer-Encoding other than exactly "chunked". RFC 9112
        /// section 6.1: when "the chunked transfer coding is not the final
        /// encoding, the message body length cannot be determined reliably;
        /// the server MUST respond with the 400 (Bad Request) status code
        /// and then close the connection". libmicrohttpd 0.9.75 decodes only
        /// a lone "chunked" and otherwise waits for the body to end with the
        /// connection; a coding before "chunked" (which the RFC would answer
        /// with 501) is refused the same way, since nothing here decodes it.
        case unsupportedTransferEncoding
        /// RFC 9112 section 3.2: "A server MUST respond with a 400 (Bad
        /// Request) status code to any HTTP/1.1 request message that lacks
        /// a Host header field". libmicrohttpd 0.9.75 checks this only
        /// with MHD_OPTION_STRICT_FOR_CLIENT (microhttpd.h), which would
        /// answer without the handler's `refusal`.
        case missingHost
        /// Same section: "... and to any request message that contains more
        /// than one Host header field", whatever its version.
        case duplicateHost
    }

    /// Why the head cannot be taken as one well-framed request, or nil.
    /// `version` is the protocol version of the request line as MHD passes
    /// it to the access handler, e.g. "HTTP/1.1".
    static func framingProblem(_ head: HTTPRequestHead, version: String) -> FramingProblem? {
        var lengths = 0
        var transferEncodings = 0
        var chunkedOnly = true
        var hosts = 0
        for field in head.headers {
            // ASCII case-insensitive (field names are tokens, RFC 9110 section 5.1), without building a
            // lowercased copy of every name of every request.
            if HTTPHeaderName.equals(field.name, "content-length") {
                lengths += 1
            } else if HTTPHeaderName.equals(field.name, "transfer-encoding") {
                transferEncodings += 1
                chunkedOnly = chunkedOnly
                    && field.value.trimmingCharacters(in: CharacterSet(charactersIn: " \t")).lowercased() == "chunked"
            } else if HTTPHeaderName.equals(field.name, "host") {
                hosts += 1
            }
        }
        if lengths > 0, transferEncodings > 0 { return .lengthAndTransferEncoding }
        if transferEncodings > 1 || !chunkedOnly { return .unsupportedTransferEncoding }
        if hosts > 1 { return .duplicateHost }
        if hosts == 0, requiresHost(version) { return .missingHost }
        return nil
    }

    /// HTTP/1.1 and any later 1.x; HTTP/1.0 may omit Host (RFC 9112 section
    /// 3.2 names HTTP/1.1 request messages only). MHD answers 505 to other
    /// major versions before calling the application.
    static func requiresHost(_ version: String) -> Bool {
        version.hasPrefix("HTTP/1.") && version != "HTTP/1.0"
    }

    // MARK: Content-Length

    enum DeclaredLength: Equatable {
        case absent
        case length(UInt64)
        /// Only digits, but more than fits in 64 bits.
        case tooLarge
        case malformed
    }

    /// Reads every Content-Length header. MHD already answers 400 for most
    /// malformed values before calling the application; this is the second
    /// line, and also catches differing duplicates (RFC 9110 section 8.6).
    static func declaredLength(_ head: HTTPRequestHead) -> DeclaredLength {
        var result = DeclaredLength.absent
        for field in head.headers where HTTPHeaderName.equals(field.name, "content-length") {
            let value = field.value.trimmingCharacters(in: CharacterSet(charactersIn: " \t"))
            let digits = value.utf8
            guard !digits.isEmpty, digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
                return .malformed
            }
            let this: DeclaredLength = UInt64(value).map { .length($0) } ?? .tooLarge
            if result != .absent, result != this {
                return .malformed
            }
            result = this
        }
        return result
    }

    // MARK: Headers

    private typealias HeaderList = [(name: String, value: String)]

    /// All request header fields in order, read with
    /// MHD_get_connection_values_n so that sizes come from MHD, not from NULs.
    static func requestHeaders(_ connection: OpaquePointer) -> [(name: String, value: String)] {
        var collected: HeaderList = []
        withUnsafeMutablePointer(to: &collected) { list in
            _ = MHD_get_connection_values_n(connection, .HEADER_KIND, { cls, _, key, keySize, value, valueSize in
                guard let cls else { return .YES }
                let list = cls.assumingMemoryBound(to: HeaderList.self)
                list.pointee.append((name: Callbacks.text(key, keySize), value: Callbacks.text(value, valueSize)))
                return .YES
            }, list)
        }
        return collected
    }

    static func text(_ pointer: UnsafePointer<CChar>?, _ count: Int) -> String {
        guard let pointer, count > 0 else { return "" }
        return pointer.withMemoryRebound(to: UInt8.self, capacity: count) {
            String(decoding: UnsafeBufferPointer(start: $0, count: count), as: UTF8.self)
        }
    }

    // MARK: Responses

    static func refuse(
        _ status: Int,
        head: HTTPRequestHead,
        on connection: OpaquePointer,
        daemon: DaemonContext,
        closeAfter: Bool
    ) -> MHD_Result {
        daemon.logger.debug("refusing request with \(status)",
                            metadata: ["path": "\(LogText.path(head.target))", "remote": "\(head.remoteAddress)"])
        var response = daemon.handler.refusal(status, for: head)
        // The refusal's status is the server's decision, not the handler's.
        response.status = status
        return queue(response, on: connection, daemon: daemon, closeAfter: closeAfter)
    }

    /// 429 with Retry-After for a forwarded client over its limit. Not through `refuse`'s debug line alone:
    /// the handler's refusal logs it like every other refused request.
    static func refuseTooMany(_ head: HTTPRequestHead, on connection: OpaquePointer, daemon: DaemonContext) -> MHD_Result {
        var response = daemon.handler.refusal(429, for: head)
        response.status = 429
        if !response.headers.contains(where: { $0.name.lowercased() == "retry-after" }) {
            response.headers.append((name: "Retry-After", value: "1"))
        }
        return queue(response, on: connection, daemon: daemon, closeAfter: true)
    }

    static func internalError() -> HTTPResponse {
        HTTPResponse(status: 500, contentType: "text/plain; charset=utf-8", body: "internal server error\n")
    }

    /// Builds an MHD response (the body is copied: MHD_RESPMEM_MUST_COPY) and
    /// queues it. A response MHD cannot represent (bad status, bad header)
    /// becomes a plain 500; if even that cannot be queued the connection is
    /// closed by returning MHD_NO.
    static func queue(
        _ response: HTTPResponse,
        on connection: OpaquePointer,
        daemon: DaemonContext,
        closeAfter: Bool
    ) -> MHD_Result {
        // During shutdown every answer closes its connection, so kept-alive
        // clients go away instead of sending more requests.
        let close = closeAfter || daemon.isDraining
        if let built = build(response, close: close) {
            let result = MHD_queue_response(connection, UInt32(response.status), built)
            MHD_destroy_response(built)
            return result
        }
        daemon.logger.error("handler produced a response that cannot be sent; answering 500 instead",
                            metadata: ["status": .stringConvertible(response.status)])
        let fallback = internalError()
        guard let built = build(fallback, close: close) else { return .NO }
        let result = MHD_queue_response(connection, UInt32(fallback.status), built)
        MHD_destroy_response(built)
        return result
    }

    private static func build(_ response: HTTPResponse, close: Bool) -> OpaquePointer? {
        guard (200...599).contains(response.status) else { return nil }
        for field in response.headers {
            guard isToken(field.name), isFieldValue(field.value) else { return nil }
        }
        let created: OpaquePointer? = response.body.withUnsafeBytes { bytes in
            MHD_create_response_from_buffer(
                bytes.count,
                bytes.count == 0 ? nil : UnsafeMutableRawPointer(mutating: bytes.baseAddress),
                .RESPMEM_MUST_COPY
            )
        }
        guard let created else { return nil }
        for field in response.headers {
            // MHD computes the framing itself; a second Content-Length or a
            // Transfer-Encoding from the application would contradict it.
            if HTTPHeaderName.equals(field.name, "content-length") || HTTPHeaderName.equals(field.name, "transfer-encoding") {
                continue
            }
            if close, HTTPHeaderName.equals(field.name, "connection") { continue }
            if MHD_add_response_header(created, field.name, field.value) != .YES {
                MHD_destroy_response(created)
                return nil
            }
        }
        // MHD recognises "Connection: close" and closes the connection once
        // the response is sent.
        if close, MHD_add_response_header(created, "Connection", "close") != .YES {
            MHD_destroy_response(created)
            return nil
        }
        return created
    }

    /// RFC 9110 token: the only characters allowed in a field name.
    static func isToken(_ text: String) -> Bool {
        guard !text.isEmpty else { return false }
        return text.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"):
                return true
            default:
                return "!#$%&'*+-.^_`|~".utf8.contains(byte)
            }
        }
    }

    /// A field value must not smuggle in a line break or a NUL.
    static func isFieldValue(_ text: String) -> Bool {
        !text.utf8.contains { $0 == 0x0D || $0 == 0x0A || $0 == 0x00 }
    }

    // MARK: Log callback

    /// MHD_OPTION_EXTERNAL_LOGGER: formats MHD's printf-style message. The
    /// message can quote the request's URL (e.g. "Failed to send the
    /// response headers for the request for `%s'", libmicrohttpd's
    /// connection.c), which MHD has percent-decoded, so it may hold any
    /// byte: it is cut and escaped by `LogText.libraryMessage` before
    /// anything keeps it.
    static func log(_ cls: UnsafeMutableRawPointer?, _ format: UnsafePointer<CChar>?, _ arguments: CVaListPointer?) {
        guard let cls, let format, let arguments else { return }
        let daemon = Unmanaged<DaemonContext>.fromOpaque(cls).takeUnretainedValue()
        var buffer = [CChar](repeating: 0, count: 512)
        _ = vsnprintf(&buffer, buffer.count, format, arguments)
        var bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        while bytes.last == UInt8(ascii: "\n") || bytes.last == UInt8(ascii: "\r") {
            bytes.removeLast()
        }
        daemon.logFromMHD(LogText.libraryMessage(bytes: bytes))
    }
}
