import PayhookLock
#if canImport(Glibc)
import Glibc
#endif

/// How payhook reaches its database: where, how many sessions at most, how long to wait.
public struct PGSettings: Sendable {
    /// A libpq connection string: `postgresql://…` or `host=… dbname=…`. May hold a password (from the
    /// environment): it never appears in a message.
    public var conninfo: String
    /// At most this many sessions; a caller finding all busy waits up to ``acquireTimeoutSeconds``.
    public var connections: Int
    /// How long one statement may take before it is given up (and its session closed), in seconds. Not a
    /// server-side `statement_timeout`: that could cancel a commit's wait for a synchronous standby, which
    /// commits locally anyway (docs/durability.md, "PostgreSQL").
    public var statementTimeoutSeconds: Double
    /// libpq's `connect_timeout`.
    public var connectTimeoutSeconds: Int
    /// How long a caller waits for a free session.
    public var acquireTimeoutSeconds: Double
    /// The sessions' `application_name` (`pg_stat_activity` shows it).
    public var applicationName: String

    public init(
        conninfo: String, connections: Int = 8, statementTimeoutSeconds: Double = 10, connectTimeoutSeconds: Int = 2,
        acquireTimeoutSeconds: Double = 2, applicationName: String = "payhook"
    ) {
        self.conninfo = conninfo
        self.connections = max(1, connections)
        self.statementTimeoutSeconds = statementTimeoutSeconds
        self.connectTimeoutSeconds = connectTimeoutSeconds
        self.acquireTimeoutSeconds = acquireTimeoutSeconds
        self.applicationName = applicationName
    }
}

/// A fixed number of blocking sessions shared by threads: a thread borrows one for a statement and gives it
/// back. A session that broke is dropped and a new one is opened on the next borrow, so serving resumes by
/// itself once the server is back.
final class PGPool: @unchecked Sendable {
    let settings: PGSettings
    private struct State {
        var idle: [PGConnection] = []
        var open = 0
        var closed = false
    }
    private let state = Locked(State())
    private let slots: UnsafeMutablePointer<sem_t>
    /// Runs on every new session before its first use (`SET`s); a failure drops it.
    private let setUp: @Sendable (PGConnection) throws(PGError) -> Void

    init(_ settings: PGSettings, setUp: @escaping @Sendable (PGConnection) throws(PGError) -> Void) {
        self.settings = settings
        self.setUp = setUp
        slots = .allocate(capacity: 1)
        sem_init(slots, 0, UInt32(settings.connections))
    }

    deinit {
        sem_destroy(slots)
        slots.deallocate()
    }

    /// A deadline for a statement started now.
    func deadline() -> ContinuousClock.Instant {
        .now + .milliseconds(Int64(settings.statementTimeoutSeconds * 1000))
    }

    /// Runs `body` with a session of its own. A session left unusable by `body` is closed.
    func withConnection<T>(_ body: (PGConnection) throws(PGError) -> T) throws(PGError) -> T {
        try acquireSlot()
        defer { sem_post(slots) }
        let connection = try take()
        defer { give(connection) }
        return try body(connection)
    }

    /// Closes idle sessions; later borrows fail.
    func close() {
        let idle = state.withLock { state -> [PGConnection] in
            state.closed = true
            defer { state.idle.removeAll() }
            return state.idle
        }
        _ = idle
    }

    /// Opens a session outside the pool (LISTEN, a consumer's advisory lock), set up like the pooled ones.
    func openDedicated() throws(PGError) -> PGConnection {
        let connection = try PGConnection(
            conninfo: settings.conninfo, applicationName: settings.applicationName,
            connectTimeoutSeconds: settings.connectTimeoutSeconds)
        try setUp(connection)
        return connection
    }

    private func acquireSlot() throws(PGError) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let nanoseconds = Int(now.tv_nsec) + Int(settings.acquireTimeoutSeconds * 1e9)
        var until = timespec(tv_sec: now.tv_sec + nanoseconds / 1_000_000_000, tv_nsec: nanoseconds % 1_000_000_000)
        while sem_timedwait(slots, &until) != 0 {
            if errno == EINTR { continue }
            throw PGError(.timeout, "every database connection is busy (\(settings.connections) in use)")
        }
    }

    private func take() throws(PGError) -> PGConnection {
        while true {
            let reused = state.withLock { state -> (PGConnection?, Bool) in
                if state.closed { return (nil, true) }
                if let connection = state.idle.popLast() { return (connection, false) }
                state.open += 1
                return (nil, false)
            }
            if reused.1 { throw PGError(.connection, "the database store is closed") }
            if let connection = reused.0 {
                // An idle session whose server went away (a restart, a crash, a terminated backend) would fail
                // the caller's statement, and after a database restart every idle session did so once: as many
                // 503s in a row as the pool held sessions, with the database back. Drop it and take another.
                if Self.closedByServer(connection) {
                    state.withLock { $0.open -= 1 }
                    continue
                }
                return connection
            }
            do {
                return try openDedicated()
            } catch {
                state.withLock { $0.open -= 1 }
                throw error
            }
        }
    }

    /// Whether an idle session's socket is readable: the server sent something unasked (the FATAL of a
    /// shutdown) or closed it (its backend died). A pooled session has no statement out and does not LISTEN, so
    /// a healthy one has nothing to read. A zero-timeout poll(2), no round trip.
    static func closedByServer(_ connection: PGConnection) -> Bool {
        let socket = connection.socket
        if socket < 0 { return true }
        var descriptor = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, 0) > 0
    }

    private func give(_ connection: PGConnection) {
        state.withLock { state in
            if connection.usable && !state.closed {
                state.idle.append(connection)
            } else {
                state.open -= 1
            }
        }
    }
}
