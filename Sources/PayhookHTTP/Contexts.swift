import CMicroHTTPD
import Foundation
import Logging
import PayhookLock

/// Everything the C callbacks of one daemon need, reached through MHD's `cls`.
///
/// Ownership: `HTTPServer.init` hands MHD one retained reference
/// (`Unmanaged.passRetained`) as the `cls` of every callback, and that
/// reference is released only after `MHD_stop_daemon` has returned, because
/// until then any pool thread may still call back with it.
final class DaemonContext: Sendable {
    enum Phase: Sendable {
        /// Inside MHD_start_daemon: messages are kept for the error sentence.
        case starting
        /// Serving: MHD's messages are mostly caused by peers, so they go to debug.
        case serving
        /// Shutdown began: new requests are refused with 503.
        case draining
    }

    struct State: Sendable {
        var phase: Phase = .starting
        /// Every request whose request line arrived and that has not ended,
        /// by the key of its connection (`Callbacks.key`); a connection has
        /// at most one such request at a time. This table owns each
        /// `RequestContext` (see there). An entry leaves it exactly once:
        /// on MHD_OPTION_NOTIFY_COMPLETED, or on
        /// MHD_CONNECTION_NOTIFY_CLOSED for a request libmicrohttpd dropped
        /// without that notification, or when the daemon has stopped.
        var live: [Int: RequestContext] = [:]
        var startupMessages: [String] = []

        /// Requests whose request line arrived and that have not ended.
        var inFlight: Int { live.count }
    }

    let limits: HTTPLimits
    let handler: any HTTPHandler
    let logger: Logger
    let deadline: Duration
    /// Bytes of an over-cap body that are read and dropped before the
    /// connection is closed instead of answered 413 (see `access`).
    let overflowAllowance: Int
    let watchdog: ConnectionWatchdog
    /// Shared by every daemon of the server (see ClientLimits).
    let clients: ClientLimits
    let state = Locked(State())
    /// The certificate and key presented on HTTPS, shared by every daemon of the server; held here too
    /// because MHD's certificate callback reads it until the daemon has stopped, and this context outlives
    /// its daemon.
    let certificates: TLSCertificates?

    init(limits: HTTPLimits, handler: any HTTPHandler, logger: Logger, clients: ClientLimits, certificates: TLSCertificates?) {
        self.certificates = certificates
        self.limits = limits
        self.clients = clients
        self.handler = handler
        self.logger = logger
        self.deadline = ConnectionWatchdog.duration(seconds: limits.requestDeadlineSeconds)
        self.overflowAllowance = limits.maxBodyBytes
        self.watchdog = ConnectionWatchdog(limits: limits, logger: logger)
    }

    var inFlight: Int { state.withLock { $0.inFlight } }
    var isDraining: Bool { state.withLock { $0.phase == .draining } }

    /// Registers the request that just arrived on `connection`, made by
    /// `make` with whether shutdown had begun (under the same lock, so a
    /// request is either counted before the drain looks or refused with
    /// 503). A request still registered for the same connection cannot be
    /// live (libmicrohttpd starts the next request of a connection only
    /// after the previous one ended), so it is replaced and no longer counted.
    func requestArrived(
        connection: Int,
        _ make: (_ draining: Bool) -> RequestContext
    ) -> (request: RequestContext, replaced: Bool) {
        let (request, previous) = state.withLock { state in
            let request = make(state.phase == .draining)
            return (request, state.live.updateValue(request, forKey: connection))
        }
        if let previous { ended(previous) }
        return (request, previous != nil)
    }

    /// A request left `live`: give back its forwarded-address slot, if it took one, and make the answer its
    /// handler gave but libmicrohttpd never asked for. That happens when the client hung up while the request
    /// was parked: once resumed, the connection is closed without another access-handler call. The answer's
    /// bytes have nowhere to go, but making it is what writes the request's log line and counts it
    /// (HTTPHandler.handle(_:answer:)), and its work, a stored event above all, was done. An answer given after
    /// this is made at once by whoever gives it (`Callbacks.access`).
    private func ended(_ request: RequestContext) {
        let (slot, undelivered) = request.state.withLock { state -> (String?, HTTPAnswer?) in
            defer {
                state.limitSlot = nil
                state.answer = nil
                state.ended = true
            }
            return (state.limitSlot, state.answer)
        }
        if let slot { clients.release(slot) }
        if let undelivered {
            _ = undelivered()
            logger.debug("the connection closed before its answer was sent; the request is logged and counted as answered",
                         metadata: ["path": "\(LogText.path(request.target))", "remote": "\(request.remoteAddress)"])
        }
    }

    /// Ends the request whose `*con_cls` is `request`
    /// (MHD_OPTION_NOTIFY_COMPLETED). Only the entry that is this very
    /// request is removed, so a completion can never end another request,
    /// and a request already ended is not ended again.
    func requestCompleted(_ request: UnsafeMutableRawPointer, connection: Int) {
        let removed = state.withLock { state -> RequestContext? in
            guard let live = state.live[connection], Unmanaged.passUnretained(live).toOpaque() == request else { return nil }
            return state.live.removeValue(forKey: connection)
        }
        if let removed { ended(removed) }
    }

    /// Ends the request `connection` still has, if any
    /// (MHD_CONNECTION_NOTIFY_CLOSED). Returns the request when there was
    /// one: libmicrohttpd closed the connection without completing it.
    func connectionClosed(_ connection: Int) -> RequestContext? {
        let removed = state.withLock { $0.live.removeValue(forKey: connection) }
        if let removed { ended(removed) }
        return removed
    }

    /// Answers every request whose connection is suspended waiting for its handler with `refusal` (503) and
    /// resumes its connection: MHD_stop_daemon must not find a suspended connection (it aborts the process,
    /// daemon.c "called while we have suspended connections"). A handler answering later is ignored.
    /// Returns how many.
    func resumeParked(_ refusal: @escaping @Sendable (HTTPRequestHead) -> HTTPResponse) -> Int {
        let all = state.withLock { $0.live }
        var count = 0
        for (connection, request) in all {
            let resume = request.state.withLock { state -> Bool in
                guard state.parked, !state.answered, let head = state.head else { return false }
                state.answered = true
                state.parked = false
                state.answer = { refusal(head) }
                return true
            }
            if resume, let pointer = OpaquePointer(bitPattern: connection) {
                MHD_resume_connection(pointer)
                count += 1
            }
        }
        return count
    }

    /// Ends every request still registered; called once MHD_stop_daemon has
    /// returned, when no callback can reach them any more. Returns how many.
    func releaseAll() -> Int {
        let removed = state.withLock { state in
            let all = Array(state.live.values)
            state.live.removeAll()
            return all
        }
        removed.forEach(ended)
        return removed.count
    }

    /// Records MHD's own error log: kept for the startup error, then debug
    /// while serving (peers can trigger these at will), notice otherwise.
    /// `message` is already cut and escaped (`Callbacks.log`).
    func logFromMHD(_ message: String) {
        let phase = state.withLock { state -> Phase in
            if state.phase == .starting, state.startupMessages.count < 16 {
                state.startupMessages.append(message)
            }
            return state.phase
        }
        switch phase {
        case .serving:
            logger.debug("libmicrohttpd: \(message)")
        case .starting, .draining:
            logger.notice("libmicrohttpd: \(message)")
        }
    }
}

/// One request, created by the URI log callback when the request line arrives
/// and handed to MHD as the request's initial `*con_cls`.
///
/// Ownership: the only strong reference is the entry in
/// `DaemonContext.State.live`; `*con_cls` holds an unretained pointer
/// (`Unmanaged.passUnretained`) that the access handler borrows. The entry
/// is removed by the request-completed callback or, for a request
/// libmicrohttpd closed without completing, by the connection-closed
/// notification. Both run on the connection's own pool thread after its
/// last access-handler call, so the pointer is never used after the
/// release.
///
/// Why not a retained `*con_cls` released on completion: libmicrohttpd
/// 0.9.75 closes a connection whose query arguments overflow the
/// connection's memory pool ("Not enough memory in pool to allocate header
/// record!") without answering and without MHD_OPTION_NOTIFY_COMPLETED,
/// although the URI log callback already ran; a reference owned by
/// `*con_cls` leaked there, with the whole request target in it.
final class RequestContext: Sendable {
    struct State: Sendable {
        /// Set by the first access-handler call (headers complete).
        var head: HTTPRequestHead?
        var body: [UInt8] = []
        /// Set once the body outgrew the cap; later bytes are discarded.
        var bodyOverflowed = false
        /// Body bytes received past the cap, all dropped.
        var overflowBytes = 0
        /// The forwarded client address whose slot (ClientLimits.acquire) this request holds until it
        /// leaves `DaemonContext.State.live`.
        var limitSlot: String?
        /// The handler's answer, once given (HTTPHandler.handle(_:answer:)), until the access handler queues it.
        var answer: HTTPAnswer?
        /// Whether the answer was given; a second one is ignored.
        var answered = false
        /// The connection is suspended waiting for the answer; whoever gives it resumes the connection.
        var parked = false
        /// The request left `DaemonContext.State.live`: an answer given from now on is made where it is given.
        var ended = false
    }

    let target: String
    let remoteAddress: String
    let receivedAt: Date
    let started: ContinuousClock.Instant
    /// The request line arrived after shutdown began.
    let arrivedWhileDraining: Bool
    let state = Locked(State())

    init(target: String, remoteAddress: String, arrivedWhileDraining: Bool) {
        self.target = target
        self.remoteAddress = remoteAddress
        self.receivedAt = Date()
        self.started = ContinuousClock.now
        self.arrivedWhileDraining = arrivedWhileDraining
    }
}
