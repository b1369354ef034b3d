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
        /// Requests whose request line arrived and whose completion was not yet notified.
        var inFlight = 0
        var startupMessages: [String] = []
    }

    let limits: HTTPLimits
    let handler: any HTTPHandler
    let logger: Logger
    let deadline: Duration
    /// Bytes of an over-cap body that are read and dropped before the
    /// connection is closed instead of answered 413 (see `access`).
    let overflowAllowance: Int
    let watchdog: ConnectionWatchdog
    let state = Locked(State())

    init(limits: HTTPLimits, handler: any HTTPHandler, logger: Logger) {
        self.limits = limits
        self.handler = handler
        self.logger = logger
        self.deadline = ConnectionWatchdog.duration(seconds: limits.requestDeadlineSeconds)
        self.overflowAllowance = limits.maxBodyBytes
        self.watchdog = ConnectionWatchdog(limits: limits, logger: logger)
    }

    var inFlight: Int { state.withLock { $0.inFlight } }
    var isDraining: Bool { state.withLock { $0.phase == .draining } }

    /// Records MHD's own error log: kept for the startup error, then debug
    /// while serving (peers can trigger these at will), notice otherwise.
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
/// Ownership: the URI log callback returns one retained reference
/// (`Unmanaged.passRetained`); the request-completed callback takes it back
/// and releases it. Every access-handler call in between only borrows it.
final class RequestContext: Sendable {
    struct State: Sendable {
        /// Set by the first access-handler call (headers complete).
        var head: HTTPRequestHead?
        var body: [UInt8] = []
        /// Set once the body outgrew the cap; later bytes are discarded.
        var bodyOverflowed = false
        /// Body bytes received past the cap, all dropped.
        var overflowBytes = 0
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
