import CMicroHTTPD
import Foundation
public import Logging
import PayhookLock

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An HTTP/1.1 listener on libmicrohttpd with a thread pool and the limits of
/// `HTTPLimits`, on one or several addresses: one MHD daemon per address, all
/// with the same handler. Serving starts in `init` and ends with `shutdown(grace:)`.
///
/// With several addresses, `threads` and `maxConnections` are totals for the
/// whole server, split evenly among the daemons (see `share`), so the thread
/// count and the database pool sized from it stay what the config says;
/// `maxConnectionsPerIP` applies per daemon when libmicrohttpd enforces it,
/// and to the whole server when payhook does (with `trustedProxies`).
public final class HTTPServer: Sendable {
    /// The handles only the lifecycle code touches; raw pointers are not
    /// Sendable, and every access goes through `lifecycle`'s lock.
    struct Running: @unchecked Sendable {
        let daemon: OpaquePointer
        let context: Unmanaged<DaemonContext>
        let address: ListenAddress
    }

    enum Lifecycle: Sendable {
        case running([Running])
        case stopping
        case stopped(allFinished: Bool)
    }

    private let contexts: [DaemonContext]
    private let certificates: TLSCertificates?
    private let clients: ClientLimits
    private let logger: Logger
    private let lifecycle: Locked<Lifecycle>
    /// Set once MHD_stop_daemon returned and the socket is closed; a class so
    /// that a background stop can outlive the server object.
    private final class StopSignal: Sendable {
        let stopped = Locked(false)
    }

    private let stopSignal = StopSignal()

    /// The first address actually bound, with the real port when 0 was asked for.
    public let boundAddress: ListenAddress
    /// Every address bound, in the order given.
    public let boundAddresses: [ListenAddress]

    /// One address; see `init(listen:limits:handler:logger:)` with a list.
    public convenience init(listen: ListenAddress, limits: HTTPLimits, handler: any HTTPHandler, logger: Logger) throws(HTTPServerError) {
        try self.init(listen: [listen], limits: limits, handler: handler, logger: logger)
    }

    /// Creates each listening socket itself (getaddrinfo, SO_REUSEADDR, IPV6_V6ONLY for v6, bind, listen, close-on-exec) and passes it to its own MHD daemon with MHD_OPTION_LISTEN_SOCKET, then starts serving. Every socket is bound before any daemon starts, so an address that cannot be bound leaves nothing running.
    public init(listen: [ListenAddress], limits: HTTPLimits, handler: any HTTPHandler, logger: Logger) throws(HTTPServerError) {
        if listen.isEmpty { throw HTTPServerError("cannot listen: no address given") }
        for address in listen {
            try Self.validate(listen: address, limits: limits)
        }
        if limits.threads < listen.count {
            throw HTTPServerError("cannot listen on \(listen.count) addresses with \(limits.threads) threads: each address needs at least one")
        }
        var sockets: [(descriptor: Int32, bound: ListenAddress)] = []
        for address in listen {
            do {
                sockets.append(try ListenSocket.open(address))
            } catch {
                for socket in sockets { _ = close(socket.descriptor) }
                throw error
            }
        }

        let clients = ClientLimits(trusted: limits.trustedProxies, perAddress: limits.maxConnectionsPerIP)
        let certificates: TLSCertificates?
        do {
            certificates = try limits.tls.map { credentials throws(TLSCredentialsError) in try TLSCertificates(credentials) }
        } catch {
            for socket in sockets { _ = close(socket.descriptor) }
            throw HTTPServerError("cannot serve HTTPS: the certificate and key were refused: \(error)")
        }
        var started: [Running] = []
        var contexts: [DaemonContext] = []
        for (index, socket) in sockets.enumerated() {
            let share = Self.share(limits, daemons: sockets.count, index: index)
            let context = DaemonContext(limits: share, handler: handler, logger: logger, clients: clients, certificates: certificates)
            do {
                started.append(try Self.start(context, descriptor: socket.descriptor, bound: socket.bound))
                contexts.append(context)
            } catch {
                // Stop what already serves and close the sockets no daemon took.
                for running in started {
                    running.context.takeUnretainedValue().watchdog.stop()
                    MHD_stop_daemon(running.daemon)
                    running.context.release()
                }
                for later in sockets[(index + 1)...] { _ = close(later.descriptor) }
                throw error
            }
        }

        self.contexts = contexts
        self.certificates = certificates
        self.clients = clients
        self.logger = logger
        self.boundAddress = sockets[0].bound
        self.boundAddresses = sockets.map(\.bound)
        self.lifecycle = Locked(.running(started))
        for (index, context) in contexts.enumerated() {
            logger.info("HTTP server listening", metadata: [
                "address": "\(boundAddresses[index])", "threads": .stringConvertible(context.limits.threads),
                "maxConnections": .stringConvertible(context.limits.maxConnections),
                "maxConnectionsPerIP": .stringConvertible(limits.maxConnectionsPerIP),
                "trustedProxies": "\(limits.trustedProxies.blocks.map(\.description).joined(separator: ","))",
            ])
        }
    }

    /// The limits of daemon `index` of `daemons`: `threads` and `maxConnections` split evenly (the first
    /// daemons take the remainder), everything else as given. Each share keeps at least one thread and at
    /// least as many connections as threads, since both totals are at least `daemons` and
    /// maxConnections ≥ threads.
    public static func share(_ limits: HTTPLimits, daemons: Int, index: Int) -> HTTPLimits {
        func part(_ total: Int) -> Int { total / daemons + (index < total % daemons ? 1 : 0) }
        var share = limits
        share.threads = part(limits.threads)
        share.maxConnections = part(limits.maxConnections)
        return share
    }

    /// The GnuTLS priority string of the HTTPS listener: GnuTLS's defaults, TLS 1.2 and 1.3 only
    /// (docs/proxy.md, "Alone, with native TLS").
    static let tlsPriorities = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

    /// Starts one daemon on `descriptor`; on failure the descriptor is closed and nothing is left running.
    private static func start(_ context: DaemonContext, descriptor: Int32, bound: ListenAddress) throws(HTTPServerError) -> Running {
        let limits = context.limits
        let ownLimit = context.clients.ownsPerAddressLimit
        var config = payhook_daemon_config(
            flags: payhook_daemon_flags(),
            thread_pool_size: UInt32(limits.threads),
            connection_timeout_seconds: UInt32(limits.connectionTimeoutSeconds),
            connection_limit: UInt32(limits.maxConnections),
            // With trusted proxies the accept policy below applies the limit, exempting the proxies.
            per_ip_connection_limit: ownLimit ? 0 : UInt32(limits.maxConnectionsPerIP),
            connection_memory_limit: limits.connectionMemoryLimitBytes,
            listen_socket: descriptor,
            tls_priorities: context.certificates.map { UnsafePointer($0.priorities) }
        )
        if context.certificates != nil, payhook_tls_supported() == 0 {
            _ = close(descriptor)
            throw HTTPServerError("cannot serve HTTPS on \(bound): this libmicrohttpd was built without TLS support (GnuTLS)")
        }
        let policy: MHD_AcceptPolicyCallback? = ownLimit
            ? { cls, address, length in Callbacks.acceptPolicy(cls, address, length) }
            : nil
        // The socket's identity, to tell after a failed start whether the descriptor number still names it.
        var identity = stat()
        let identified = fstat(descriptor, &identity) == 0
        // The retained reference becomes MHD's `cls`; see DaemonContext.
        let retained = Unmanaged.passRetained(context)
        let daemon = payhook_start_daemon(
            &config,
            policy,
            { cls, connection, _, method, version, uploadData, uploadDataSize, contextSlot in
                Callbacks.access(cls, connection, method, version, uploadData, uploadDataSize, contextSlot)
            },
            { cls, connection, contextSlot, _ in
                Callbacks.requestCompleted(cls, connection, contextSlot)
            },
            { cls, uri, connection in
                Callbacks.uriArrived(cls, uri, connection)
            },
            { cls, connection, socketContext, code in
                Callbacks.connectionChanged(cls, connection, socketContext, code)
            },
            { cls, format, arguments in
                Callbacks.log(cls, format, arguments)
            },
            retained.toOpaque()
        )
        guard let daemon else {
            let messages = context.state.withLock { $0.startupMessages }
            // MHD has not started a thread, so nothing can call back any more.
            retained.release()
            // Whether a failed MHD_start_daemon closed the given socket is not documented. Close it only if the
            // number still names the same socket: if MHD closed it, another thread of this process may already
            // have been given the number for a socket of its own, and closing that would cut off someone else's
            // listener or connection.
            var now = stat()
            if identified, fstat(descriptor, &now) == 0, now.st_dev == identity.st_dev, now.st_ino == identity.st_ino {
                _ = close(descriptor)
            }
            let detail = messages.last.map { ": \($0)" } ?? ""
            throw HTTPServerError("cannot start the HTTP server on \(bound): libmicrohttpd refused to start\(detail)")
        }
        context.state.withLock { $0.phase = .serving }
        context.watchdog.start()
        // `retained` stays MHD's reference until the daemon has stopped (drainAndStop).
        return Running(daemon: daemon, context: retained, address: bound)
    }

    /// Presents `credentials` on every listen address from the next TLS handshake on (SIGHUP, docs/reload.md,
    /// "Certificates"). Connections already open keep the certificate they were given; nothing is dropped. On
    /// error the running pair stays and the error gives GnuTLS's reason.
    public func replaceCertificates(with credentials: TLSCredentials) throws(HTTPServerError) {
        guard let certificates else {
            throw HTTPServerError("cannot replace the certificate: this server was started without TLS")
        }
        do {
            try certificates.replace(with: credentials)
        } catch {
            throw HTTPServerError("the new certificate and key were refused, the running pair is kept: \(error)")
        }
    }

    /// The SHA-256 fingerprint (hex) of the certificate presented now; nil on plain HTTP.
    public var certificateFingerprint: String? { certificates?.fingerprint }

    /// The notAfter (Unix seconds) of the certificate presented now; nil on plain HTTP.
    public var certificateNotAfter: Int64? { certificates?.notAfter }

    /// A server that is dropped without `shutdown` stops at once.
    deinit {
        _ = shutdown(grace: .zero)
    }

    /// Requests whose request line arrived and that are not completed.
    public var inFlight: Int {
        contexts.reduce(0) { $0 + $1.inFlight }
    }

    /// Requests in flight from `address` through a trusted proxy (what `maxConnectionsPerIP` is checked
    /// against for forwarded clients).
    public func forwardedInFlight(_ address: String) -> Int {
        clients.forwardedCount(IPAddress.parse(address)?.description ?? address)
    }

    /// X-Forwarded-For / X-Real-IP values from trusted proxies that were unusable and ignored.
    public var malformedForwardingHeaders: Int {
        clients.malformedHeaders
    }

    /// Connections accepted and not yet closed (at most `maxConnections`;
    /// further ones wait in the kernel's listen queue).
    public var openConnections: Int {
        contexts.reduce(0) { $0 + $1.watchdog.openConnections }
    }

    /// True once `shutdown(grace:)` has begun: no new connection is accepted.
    public var isShuttingDown: Bool {
        lifecycle.withLock { state in
            if case .running = state { return false }
            return true
        }
    }

    /// True once libmicrohttpd has fully stopped and the socket is closed.
    /// After a `shutdown` that returned false this happens only when the
    /// handlers still running have returned.
    public var isStopped: Bool {
        stopSignal.stopped.withLock { $0 }
    }

    /// Stops accepting new connections at once on every address (MHD_quiesce_daemon), waits up to `grace` for in-flight requests to finish, then stops the daemons and closes the sockets. Returns true if every in-flight request finished in time. Safe to call twice.
    ///
    /// Requests that arrive on already open connections after shutdown began
    /// are refused with 503, and every response sent from then on carries
    /// `Connection: close`. When `grace` runs out while a handler is still
    /// running, this returns false right away and the daemon is stopped on a
    /// background thread as soon as that handler returns: MHD_stop_daemon
    /// joins the pool threads and cannot interrupt a running access handler.
    public func shutdown(grace: Duration) -> Bool {
        enum Step {
            case begin([Running])
            case waitForOtherCall
            case done(Bool)
        }
        let step = lifecycle.withLock { state -> Step in
            switch state {
            case .running(let running):
                state = .stopping
                return .begin(running)
            case .stopping:
                return .waitForOtherCall
            case .stopped(let allFinished):
                return .done(allFinished)
            }
        }

        switch step {
        case .done(let allFinished):
            return allFinished
        case .waitForOtherCall:
            // The first call returns within its own grace; wait for its answer.
            while true {
                if case .stopped(let allFinished) = lifecycle.withLock({ $0 }) {
                    return allFinished
                }
                usleep(5_000)
            }
        case .begin(let running):
            let allFinished = drainAndStop(running, grace: grace)
            lifecycle.withLock { $0 = .stopped(allFinished: allFinished) }
            return allFinished
        }
    }

    private func drainAndStop(_ daemons: [Running], grace: Duration) -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + grace
        for running in daemons {
            running.context.takeUnretainedValue().state.withLock { $0.phase = .draining }
        }
        logger.notice("HTTP server shutting down", metadata: [
            "address": "\(boundAddresses.map(\.description).joined(separator: " "))", "inFlight": .stringConvertible(inFlight),
        ])

        // After MHD_quiesce_daemon no pool thread accepts from the socket,
        // but the kernel would still complete handshakes into the backlog.
        // shutdown() on a listening socket makes Linux leave the LISTEN
        // state, so new connections are refused (RST) instead of hanging.
        // The descriptor itself stays open: microhttpd.h says the quiesced
        // socket "must not be closed until AFTER MHD_stop_daemon".
        // Every daemon stops accepting before any request is waited for.
        let quiesced = daemons.map { running -> Int32 in
            let descriptor = MHD_quiesce_daemon(running.daemon)
            if descriptor >= 0 {
                stopListening(descriptor)
            }
            return descriptor
        }

        // One reading decides both the wait and the answer: a request that begins on an already accepted
        // connection just after the count reached zero (answered 503, the server is draining) would otherwise
        // make a drained stop report "not drained" without having waited at all.
        var remaining = inFlight
        while remaining > 0, clock.now < deadline {
            usleep(2_000)
            remaining = inFlight
        }
        let allFinished = remaining == 0
        if !allFinished {
            logger.warning("shutdown grace period over with requests still in flight", metadata: [
                "inFlight": .stringConvertible(inFlight),
            ])
        }

        let finish: @Sendable () -> Void = { [stopSignal, logger] in
            for (running, descriptor) in zip(daemons, quiesced) {
                let context = running.context.takeUnretainedValue()
                // No shutdown() on a connection socket from here on: MHD_stop_daemon closes them all.
                context.watchdog.stop()
                let handler = context.handler
                let parked = context.resumeParked { head in handler.refusal(503, for: head) }
                if parked > 0 {
                    logger.warning("requests still waiting for their store answered 503 at stop", metadata: ["count": .stringConvertible(parked)])
                }
                MHD_stop_daemon(running.daemon)
                // MHD ends each request through the completed callback or the
                // connection-closed notification while stopping; anything left
                // can no longer be reached by a callback and is released here.
                let leftover = context.releaseAll()
                if leftover > 0 {
                    logger.warning("requests still registered after the HTTP server stopped", metadata: ["count": .stringConvertible(leftover)])
                }
                // MHD closes the listen socket itself only if it was never
                // quiesced; after a successful quiesce it belongs to the caller.
                if descriptor >= 0 {
                    _ = close(descriptor)
                }
                // No MHD thread is left that could call back: drop MHD's reference.
                running.context.release()
                logger.notice("HTTP server stopped", metadata: ["address": "\(running.address)"])
            }
            stopSignal.stopped.withLock { $0 = true }
        }
        if allFinished {
            finish()
        } else {
            let thread = Thread(block: finish)
            thread.name = "payhook-http-stop"
            thread.start()
        }
        return allFinished
    }

    private static func validate(listen: ListenAddress, limits: HTTPLimits) throws(HTTPServerError) {
        func invalid(_ reason: String) -> HTTPServerError {
            HTTPServerError("cannot listen on \(listen): \(reason)")
        }
        if listen.host.isEmpty { throw invalid("the host is empty") }
        if !(0...65535).contains(listen.port) { throw invalid("port \(listen.port) is outside 0...65535") }
        let maxUInt32 = Int(UInt32.max)
        if !(1...1024).contains(limits.threads) {
            throw invalid("threads must be in 1...1024, not \(limits.threads)")
        }
        if !(limits.threads...maxUInt32).contains(limits.maxConnections) {
            // MHD gives each pool thread an equal share of the connection limit.
            throw invalid("maxConnections must be at least threads (\(limits.threads)), not \(limits.maxConnections)")
        }
        if !(0...maxUInt32).contains(limits.maxConnectionsPerIP) {
            throw invalid("maxConnectionsPerIP must be 0 (no limit) or positive, not \(limits.maxConnectionsPerIP)")
        }
        if !(0...maxUInt32).contains(limits.connectionTimeoutSeconds) {
            throw invalid("connectionTimeoutSeconds must be 0 (none) or positive, not \(limits.connectionTimeoutSeconds)")
        }
        if limits.connectionMemoryLimitBytes < 4096 {
            throw invalid("connectionMemoryLimitBytes must be at least 4096, not \(limits.connectionMemoryLimitBytes)")
        }
        if limits.maxBodyBytes < 0 {
            throw invalid("maxBodyBytes must not be negative, not \(limits.maxBodyBytes)")
        }
        if !(limits.requestDeadlineSeconds > 0 && limits.requestDeadlineSeconds <= 86_400) {
            throw invalid("requestDeadlineSeconds must be in (0, 86400], not \(limits.requestDeadlineSeconds)")
        }
        if !(limits.headerDeadlineSeconds > 0 && limits.headerDeadlineSeconds <= 86_400) {
            throw invalid("headerDeadlineSeconds must be in (0, 86400], not \(limits.headerDeadlineSeconds)")
        }
    }
}

/// shutdown(SHUT_RDWR) on the listening socket; a free function because
/// inside `HTTPServer` the name `shutdown` is the method.
private func stopListening(_ descriptor: Int32) {
    _ = shutdown(descriptor, Int32(SHUT_RDWR))
}

/// The event-loop flags every listener starts libmicrohttpd with (shim.h, payhook_daemon_flags), for tests and
/// diagnostics.
public struct ListenerFlags: Sendable {
    public let usesPoll: Bool
    public let usesEpoll: Bool
    /// MHD_USE_ITC: MHD_quiesce_daemon refuses to work on internal threads without it (microhttpd.h).
    public let usesInterThreadChannel: Bool
}

public func payhookListenerFlags() -> ListenerFlags {
    let flags = payhook_daemon_flags()
    func has(_ flag: UInt32) -> Bool { flags & flag == flag }
    return ListenerFlags(usesPoll: has(MHD_USE_POLL.rawValue), usesEpoll: has(MHD_USE_EPOLL.rawValue),
                         usesInterThreadChannel: has(MHD_USE_ITC.rawValue))
}
