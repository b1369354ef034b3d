import CMicroHTTPD
import Foundation
import Logging
import PayhookLock

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Every connection libmicrohttpd has open, how far its current request got,
/// and the thread that cuts off the ones past their deadline.
///
/// Why it exists: MHD calls the application only once a request's headers
/// are complete. While header bytes arrive nothing is called, and
/// MHD_OPTION_CONNECTION_TIMEOUT is an inactivity timeout that every byte
/// resets, so a client sending one header byte a second holds its
/// connection for as long as it likes (measured on 0.9.75: more than 9 s
/// with a 2 s timeout). The watchdog learns of each connection from
/// MHD_OPTION_NOTIFY_CONNECTION (MHD_CONNECTION_NOTIFY_STARTED / _CLOSED),
/// takes its socket with MHD_CONNECTION_INFO_CONNECTION_FD, and once the
/// connection is late it calls `shutdown(fd, SHUT_RDWR)`: MHD then reads an
/// end of stream on its own thread and closes and frees the connection
/// through its normal path (request-completed, then connection-closed
/// notifications). The descriptor is never closed here; it stays MHD's.
///
/// It also closes connections whose client went away half-way: measured on
/// 0.9.75, when a client sends part of a request (an unfinished head, or a
/// head and part of its body) and closes its socket at once, MHD reads the
/// bytes and the end of stream but leaves the connection open (CLOSE_WAIT)
/// until the inactivity timeout, holding a connection slot and a per-IP slot.
/// A request whose client has finished sending can never complete, so when
/// the peer has shut down its side (POLLRDHUP/POLLHUP/POLLERR) and MHD has
/// read every byte it sent (FIONREAD is 0) on two sweeps in a row, without
/// the request moving on in between, the connection is shut down too.
///
/// Descriptor safety: MHD sends MHD_CONNECTION_NOTIFY_CLOSED before it
/// closes the socket, and `closed` removes the entry under the same lock
/// under which `sweep` calls shutdown(), so a descriptor number is never
/// used after MHD closed it (and possibly handed the number to a new socket).
final class ConnectionWatchdog: Sendable {
    enum Phase: Sendable, Equatable {
        /// No complete request head yet: just accepted, or the previous
        /// request on this kept-alive connection has ended. Bounded by the
        /// head deadline, counted from `since`.
        case awaitingHead
        /// The head is complete and the body is being read (or an early
        /// answer is being sent). Bounded by the request deadline, counted
        /// from the request line, like the 408 of the access handler.
        case readingBody
        /// The handler has the whole request, or its answer is going out.
        /// Never cut off: the handler may be waiting for an fsync, and an
        /// answer that was decided must not be lost.
        case handling
    }

    struct Entry: Sendable {
        let descriptor: Int32
        let remoteAddress: String
        var phase: Phase
        var since: ContinuousClock.Instant
        var cutOff = false
        /// The previous sweep found the peer finished sending with nothing
        /// left unread; reset whenever the request moves on.
        var peerGone = false
    }

    struct Counters: Sendable, Equatable {
        /// Connections cut off before their request head was complete.
        var headCutOffs = 0
        /// Connections cut off while their body was being read.
        var bodyCutOffs = 0
        /// Connections closed because their client had stopped sending for
        /// good before the request was complete.
        var abandonedCutOffs = 0
    }

    struct State: Sendable {
        var entries: [Int: Entry] = [:]
        /// False once `stop` ran: no shutdown() after that.
        var running = true
        var counters = Counters()
    }

    let headDeadline: Duration
    let requestDeadline: Duration
    /// How often the table is swept; a late connection lives at most this
    /// much past its deadline.
    let interval: Duration
    private let logger: Logger
    private let state = Locked(State())

    init(limits: HTTPLimits, logger: Logger) {
        let request = Self.duration(seconds: limits.requestDeadlineSeconds)
        let head = min(Self.duration(seconds: limits.headerDeadlineSeconds), request)
        self.headDeadline = head
        self.requestDeadline = request
        // A tenth of the shorter deadline, between 10 ms and 250 ms: at the
        // default 10 s a sweep every 250 ms over at most maxConnections
        // entries costs nothing measurable.
        self.interval = max(.milliseconds(10), min(.milliseconds(250), head / 10))
        self.logger = logger
    }

    static func duration(seconds: Double) -> Duration {
        .milliseconds(Int64((seconds * 1000).rounded(.up)))
    }

    // MARK: Events from the MHD callbacks (always on the connection's pool thread)

    /// MHD_CONNECTION_NOTIFY_STARTED.
    func opened(_ key: Int, descriptor: Int32, remoteAddress: String) {
        let entry = Entry(descriptor: descriptor, remoteAddress: remoteAddress,
                          phase: .awaitingHead, since: .now)
        state.withLock { $0.entries[key] = entry }
    }

    /// MHD_CONNECTION_NOTIFY_CLOSED; MHD closes the descriptor after this returns.
    func closed(_ key: Int) {
        state.withLock { _ = $0.entries.removeValue(forKey: key) }
    }

    /// The request head is complete. False if the connection was already cut
    /// off: the request must then go no further.
    func headComplete(_ key: Int, requestStarted: ContinuousClock.Instant) -> Bool {
        state.withLock { state in
            guard var entry = state.entries[key] else { return true }
            if entry.cutOff { return false }
            entry.phase = .readingBody
            entry.since = requestStarted
            entry.peerGone = false
            state.entries[key] = entry
            return true
        }
    }

    /// The whole request is in and goes to the handler. False if the
    /// connection was cut off first; checked and set under the lock that
    /// `sweep` holds, so a request is either cut off or handled, never both.
    func beginHandling(_ key: Int) -> Bool {
        state.withLock { state in
            guard var entry = state.entries[key] else { return true }
            if entry.cutOff { return false }
            entry.phase = .handling
            entry.peerGone = false
            state.entries[key] = entry
            return true
        }
    }

    /// The request ended (MHD_OPTION_NOTIFY_COMPLETED). On a kept-alive
    /// connection the next request's head is due within the head deadline.
    func requestEnded(_ key: Int) {
        state.withLock { state in
            guard var entry = state.entries[key], !entry.cutOff else { return }
            entry.phase = .awaitingHead
            entry.since = .now
            entry.peerGone = false
            state.entries[key] = entry
        }
    }

    // MARK: Queries

    /// Connections MHD has accepted and not yet closed.
    var openConnections: Int {
        state.withLock { $0.entries.count }
    }

    var counters: Counters {
        state.withLock { $0.counters }
    }

    // MARK: The sweeping thread

    enum Reason: Sendable {
        case lateHead, lateBody, abandoned
    }

    /// One pass over the table: every connection past its deadline, or
    /// abandoned by its client, is shut down. Returns false once the
    /// watchdog was stopped.
    @discardableResult
    func sweep(now: ContinuousClock.Instant = .now) -> Bool {
        var late: [(remote: String, reason: Reason)] = []
        let running = state.withLock { state -> Bool in
            guard state.running else { return false }
            var cut: [(key: Int, reason: Reason)] = []
            for (key, entry) in state.entries where !entry.cutOff && entry.phase != .handling {
                let limit = entry.phase == .awaitingHead ? headDeadline : requestDeadline
                if now - entry.since > limit {
                    cut.append((key, entry.phase == .awaitingHead ? .lateHead : .lateBody))
                    continue
                }
                // Under the lock, so the descriptor is still MHD's open socket.
                let gone = payhook_peer_finished_sending(entry.descriptor) != 0
                if gone, entry.peerGone {
                    cut.append((key, .abandoned))
                } else if gone != entry.peerGone {
                    state.entries[key]?.peerGone = gone
                }
            }
            for (key, reason) in cut {
                guard var entry = state.entries[key] else { continue }
                // SHUT_RDWR: MHD's next read returns 0 or fails and it closes
                // the connection itself; the peer sees a FIN (or a reset when
                // unread bytes remain at close).
                _ = shutdown(entry.descriptor, Int32(SHUT_RDWR))
                entry.cutOff = true
                state.entries[key] = entry
                switch reason {
                case .lateHead: state.counters.headCutOffs += 1
                case .lateBody: state.counters.bodyCutOffs += 1
                case .abandoned: state.counters.abandonedCutOffs += 1
                }
                late.append((entry.remoteAddress, reason))
            }
            return true
        }
        // Peers trigger these at will, so like MHD's own messages they go to debug.
        for (remote, reason) in late {
            let why = switch reason {
            case .lateHead: "request head not complete within its deadline"
            case .lateBody: "request body not complete within its deadline"
            case .abandoned: "client stopped sending before its request was complete"
            }
            logger.debug("closing connection: \(why)", metadata: ["remote": "\(remote)"])
        }
        return running
    }

    /// Starts the sweeping thread. It keeps a reference to the watchdog
    /// only, not to the server, and ends at the first sweep after `stop`.
    func start() {
        let thread = Thread { [self] in
            let pause = useconds_t(clamping: interval.components.seconds * 1_000_000
                + interval.components.attoseconds / 1_000_000_000_000)
            while true {
                usleep(pause)
                if !sweep() { return }
            }
        }
        thread.name = "payhook-http-watchdog"
        thread.start()
    }

    /// No shutdown() is called once this returns; called before
    /// MHD_stop_daemon, after which the descriptors are gone.
    func stop() {
        state.withLock { $0.running = false }
    }
}
