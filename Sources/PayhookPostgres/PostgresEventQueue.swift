import CLibPQ
import Dispatch
public import Foundation
import PayhookCore
import PayhookLock
public import PayhookStore
#if canImport(Glibc)
import Glibc
#endif

/// PostgreSQL as the consumers' ``EventQueue``: the `payhook queue` commands and the `consume` worker over the
/// tables `PostgresEventStore` fills (docs/consumers.md, "The database queue"; docs/architecture.md §6).
///
/// `payhook_queue.state` is the ``QueueLocation``: `new` waiting, `cur` taken, `dead` given up on. What the spool
/// does with a rename, the database does with a row:
///
/// - **Leases.** ``take(wait:timeout:stop:)`` claims one row with `FOR UPDATE SKIP LOCKED`, so of any number of
///   consumers on any number of hosts exactly one gets each event, and marks it `cur` with a fresh lease (a uuid,
///   who took it, until when: ``leaseSeconds``). A consumer that dies stops renewing nothing; once its lease has
///   expired, the next take by anyone returns the event to the waiting ones with a failed attempt counted (a dead
///   letter once that makes ``maxAttempts``, the rule `consume` applies to failures), and only then.
/// - **Holds.** A `consume` worker ``hold(_:)``s the event in hand: a thread renews its lease while the command
///   runs, however long, and marks it `held`, which ``requeue(olderThan:now:)`` respects (the spool's flock(2)).
///   If the worker dies, the renewals stop and the lease runs out.
/// - **Acks** need the lease this instance took the event with: an ack after the lease expired and someone else
///   took the event is refused ("lease lost"), since that consumer now owns it. A `cur` event this instance did
///   not take (an operator's `payhook queue ack ID`) is acknowledged without one.
/// - **The event file.** ``QueueEntry/path`` of a taken event is a file holding exactly its bytes (a consumer's
///   stdin and `PAYHOOK_EVENT_PATH`), written into a private folder of this instance (mode 0700 under `$TMPDIR`
///   or /tmp) and removed when the event is acknowledged, returned, released or dead-lettered. Listings and
///   `show` write no file: their `path` names the row, `payhook_queue/<id>`.
/// - **Wake-ups.** A waiting take listens on `payhook_queue` in a session of its own and polls the socket and the
///   stop descriptor; the receiving side's `PostgresWaker` notifies after stores, debounced and outside the
///   store's transaction. A lost notification costs at most ``pollInterval``: the claim is retried that often.
///
/// Nothing here names the connection string: it may hold a password.
public final class PostgresEventQueue: EventQueue, @unchecked Sendable {
    let pool: PGPool
    /// Who takes events (`leased_by`): `[store] instance`, or the host name and process id.
    public let instance: String
    /// How long a take's lease lasts without renewal, in seconds.
    public let leaseSeconds: Double
    /// Failed attempts after which an event whose lease expired becomes a dead letter (`consume --max-attempts`).
    public let maxAttempts: Int
    /// `nack`'s first delay, in seconds; it doubles with each failed attempt, up to ``maxRetryDelay``.
    public let retryDelay: Double
    /// `nack`'s longest delay, in seconds.
    public let maxRetryDelay: Double
    /// Keep the files of taken events when this instance goes (`payhook queue take --format path` prints one).
    public let keepTakenFiles: Bool
    /// The longest a waiting take sleeps between two claims, whatever the notifications (0.5 s by default).
    public let pollInterval: Double

    private struct State {
        /// The lease of each event this instance took and still holds.
        var leases: [String: String] = [:]
        /// The private folder of event files, once made.
        var folder: String?
        /// LISTENing sessions not in use, kept for the next waiting take.
        var listeners: [PGConnection] = []
    }
    private let state = Locked(State())

    /// Connects and checks that the schema is the one this payhook knows. Throws `.io` when the database cannot
    /// be reached, `.noSpool` when its schema is missing, older or newer (`payhook db migrate`).
    public init(
        settings: PGSettings, instance: String, leaseSeconds: Double = 60, maxAttempts: Int = 5,
        retryDelay: Double = 1, maxRetryDelay: Double = 300, keepTakenFiles: Bool = false, pollInterval: Double = 0.5
    ) throws(QueueError) {
        guard leaseSeconds > 0, maxAttempts >= 1, retryDelay >= 0, maxRetryDelay >= 0 else {
            throw QueueError(.invalidArgument, "a lease must last more than 0 s and max attempts be at least 1")
        }
        pool = PGPool(settings, setUp: PostgresSession.setUp)
        self.instance = instance
        self.leaseSeconds = leaseSeconds
        self.maxAttempts = maxAttempts
        self.retryDelay = retryDelay
        self.maxRetryDelay = maxRetryDelay
        self.keepTakenFiles = keepTakenFiles
        self.pollInterval = max(0.01, pollInterval)
        try database { (connection, deadline) throws(PGError) in
            try PostgresSchema.check(connection, deadline: deadline)
        }
    }

    deinit {
        let (folder, leases) = state.withLock { state in
            state.listeners.removeAll()
            return (state.folder, state.leases)
        }
        pool.close()
        guard let folder else { return }
        if !keepTakenFiles {
            for id in leases.keys { unlink(folder + "/" + id + ".json") }
        }
        // Only once empty: the files of a `take` that keeps them stay where it printed them.
        rmdir(folder)
    }

    // MARK: - Names

    /// "the database (payhook_queue)": never the connection string.
    public var name: String { "the database (payhook_queue)" }

    /// "the database (payhook_queue, state new)".
    public func describe(_ location: QueueLocation) -> String {
        "the database (payhook_queue, state \(location.rawValue))"
    }

    // MARK: - Errors

    /// A database failure as a queue error; the connection string never appears (PGError never carries it).
    static func queueError(_ error: PGError) -> QueueError {
        switch error.kind {
        case .connection, .timeout:
            let prefix = "cannot connect to the database: "
            let text = error.description.hasPrefix(prefix) ? String(error.description.dropFirst(prefix.count)) : error.description
            return QueueError(.io, "cannot reach the database: \(text)")
        case .schema:
            return QueueError(.noSpool, error.message)
        case .statement, .warning:
            return QueueError(.io, "the database failed: \(error.description)")
        }
    }

    /// Runs `body` on a pooled session with a statement deadline; database errors become queue errors.
    func database<T>(_ body: (PGConnection, ContinuousClock.Instant) throws(PGError) -> T) throws(QueueError) -> T {
        do {
            return try pool.withConnection { (connection) throws(PGError) -> T in
                try body(connection, pool.deadline())
            }
        } catch {
            throw Self.queueError(error)
        }
    }

    /// Runs `body` in one transaction.
    func transaction<T>(_ body: (PGConnection, ContinuousClock.Instant) throws(PGError) -> T) throws(QueueError) -> T {
        try database { (connection, deadline) throws(PGError) -> T in
            try connection.run("BEGIN", deadline: deadline)
            do throws(PGError) {
                let result = try body(connection, deadline)
                try connection.run("COMMIT", deadline: deadline)
                return result
            } catch {
                if connection.usable { try? connection.run("ROLLBACK", deadline: deadline) }
                throw error
            }
        }
    }

    func requireValid(_ id: String) throws(QueueError) -> [UInt8] {
        let utf8 = Array(id.utf8)
        guard utf8.count == 64, utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }),
            let bytes = Hex.decode(id)
        else {
            throw QueueError(.invalidArgument, "\(Self.quoted(id)) is not an event id (64 lowercase hex characters)")
        }
        return bytes
    }

    /// An id as messages show text that may be anything: quoted, control characters escaped, cut at 80.
    static func quoted(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars.prefix(80) {
            out += scalar.value < 0x20 || scalar.value == 0x7F ? "\\u{\(String(scalar.value, radix: 16))}" : String(scalar)
        }
        return "\"\(out)\(text.unicodeScalars.count > 80 ? "…" : "")\""
    }

    // MARK: - Rows

    /// The columns an entry is built from, over `q` (payhook_queue) and `l` (payhook_ledger).
    static let entryColumns = """
        encode(l.id, 'hex'), l.event, l.source, l.tenant, l.order_ref, l.status, l.amount, l.currency,
        round(extract(epoch FROM l.received_at) * 1000)::bigint, q.state, q.attempts, q.last_error,
        round(extract(epoch FROM q.updated_at) * 1000)::bigint, round(extract(epoch FROM q.dead_at) * 1000)::bigint
        """

    func entry(_ rows: PGRows, _ row: Int, path: String? = nil) -> QueueEntry? {
        guard let id = rows[row, 0], let bytes = rows.bytes(row, 1),
            let location = rows[row, 9].flatMap(QueueLocation.init(rawValue:))
        else { return nil }
        let received = rows.int(row, 8).map { Date(timeIntervalSince1970: Double($0) / 1000) }
        let event = QueueEvent(
            id: id, bytes: bytes, source: rows[row, 2], tenant: rows[row, 3], orderRef: rows[row, 4], status: rows[row, 5],
            amount: rows.int(row, 6), currency: rows[row, 7], receivedAtText: received.map(QueueTime.formatRFC3339),
            receivedAt: received)
        return QueueEntry(event: event, location: location, path: path ?? "payhook_queue/\(id)", record: Self.record(rows, row, id: id))
    }

    /// The attempts bookkeeping of a queue row (columns 10 to 13: attempts, last error, updated, dead at), or nil
    /// when nothing failed yet: as the spool, which writes none until then (a revived event starts afresh).
    static func record(_ rows: PGRows, _ row: Int, id: String) -> QueueAttemptRecord? {
        let attempts = Int(rows.int(row, 10) ?? 0)
        let lastError = rows[row, 11].flatMap(Self.decodeFailure)
        let deadAt = rows.int(row, 13).map { Date(timeIntervalSince1970: Double($0) / 1000) }
        guard attempts > 0 || lastError != nil || deadAt != nil else { return nil }
        let updated = rows.int(row, 12).map { Date(timeIntervalSince1970: Double($0) / 1000) } ?? Date()
        return QueueAttemptRecord(id: id, attempts: attempts, updatedAt: updated, deadAt: deadAt, lastError: lastError)
    }

    /// `last_error`: a ``QueueFailure`` as JSON, the shape the spool's records use (docs/consumers.md §6).
    static func encodeFailure(_ failure: QueueFailure) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(failure)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    static func decodeFailure(_ text: String) -> QueueFailure? {
        try? JSONDecoder().decode(QueueFailure.self, from: Data(text.utf8))
    }

    /// A text[] parameter in PostgreSQL's array syntax, every element quoted.
    static func textArray(_ values: some Sequence<String>) -> String {
        let items = values.map { value -> String in
            var escaped = ""
            for character in value {
                if character == "\"" || character == "\\" { escaped.append("\\") }
                escaped.append(character)
            }
            return "\"\(escaped)\""
        }
        return "{" + items.joined(separator: ",") + "}"
    }

    // MARK: - list, show

    public func list(_ filter: QueueFilter) throws(QueueError) -> QueueListing {
        func array(_ values: Set<String>) -> PGValue { values.isEmpty ? .null : .text(Self.textArray(values.sorted())) }
        let values: [PGValue] = [
            array(filter.sources), array(filter.tenants), array(filter.statuses),
            .text(Self.textArray(filter.locations.map(\.rawValue).sorted())),
            filter.since.map { .text(String($0.timeIntervalSince1970)) } ?? .null,
            filter.until.map { .text(String($0.timeIntervalSince1970)) } ?? .null,
        ]
        let rows = try database { (connection, deadline) throws(PGError) in
            try connection.query(
                "payhook_queue_list",
                """
                SELECT \(Self.entryColumns)
                  FROM payhook_queue q JOIN payhook_ledger l ON l.id = q.id
                 WHERE ($1::text[] IS NULL OR l.source = ANY($1::text[]))
                   AND ($2::text[] IS NULL OR l.tenant = ANY($2::text[]))
                   AND ($3::text[] IS NULL OR l.status = ANY($3::text[]))
                   AND q.state = ANY($4::text[])
                   AND ($5::float8 IS NULL OR l.received_at >= to_timestamp($5::float8))
                   AND ($6::float8 IS NULL OR l.received_at <= to_timestamp($6::float8))
                 ORDER BY l.received_at, l.id, CASE q.state WHEN 'new' THEN 0 WHEN 'cur' THEN 1 ELSE 2 END
                """, values, deadline: deadline)
        }
        let leases = state.withLock { $0 }
        var entries: [QueueEntry] = []
        for row in 0..<rows.count {
            guard var entry = entry(rows, row) else { continue }
            entry = withLocalPath(entry, leases)
            // The database applied the filter; admits() agrees, and keeps the protocol's one definition.
            if filter.admits(entry) { entries.append(entry) }
        }
        return QueueListing(entries: entries)
    }

    /// An entry this instance took shows the file it wrote.
    private func withLocalPath(_ entry: QueueEntry, _ state: State) -> QueueEntry {
        guard entry.location == .cur, state.leases[entry.id] != nil, let folder = state.folder else { return entry }
        return QueueEntry(event: entry.event, location: entry.location, path: "\(folder)/\(entry.id).json", record: entry.record)
    }

    /// The file this instance wrote for a taken event it still holds, if any (what `list` shows as its path).
    func takenFile(_ id: String) -> String? {
        state.withLock { state in
            guard state.leases[id] != nil, let folder = state.folder else { return nil }
            return "\(folder)/\(id).json"
        }
    }

    public func show(_ id: String) throws(QueueError) -> QueueEntry {
        let key = try requireValid(id)
        let rows = try database { (connection, deadline) throws(PGError) in
            try connection.query(
                "payhook_queue_show",
                "SELECT \(Self.entryColumns) FROM payhook_queue q JOIN payhook_ledger l ON l.id = q.id WHERE q.id = $1::bytea",
                [.bytes(key)], deadline: deadline)
        }
        guard !rows.isEmpty, let found = entry(rows, 0) else { throw try unknown(id, key) }
        return withLocalPath(found, state.withLock { $0 })
    }

    /// The error for an id in no state, saying whether the ledger still remembers it.
    func unknown(_ id: String, _ key: [UInt8]) throws(QueueError) -> QueueError {
        let rows = try database { (connection, deadline) throws(PGError) in
            try connection.query(
                "payhook_queue_remembered", "SELECT EXISTS (SELECT 1 FROM payhook_ledger WHERE id = $1::bytea)",
                [.bytes(key)], deadline: deadline)
        }
        let hint = rows.bool(0, 0) == true
            ? " (payhook_ledger still records it: it was stored and has been acknowledged since)" : ""
        return QueueError(.unknownEvent, "no event \(id) waiting, taken or dead in \(name)\(hint)")
    }

    /// Why an operation that needs the event taken found no row to change: the lease this instance held was lost,
    /// or the event is waiting, dead or unknown.
    func notTaken(_ id: String, _ key: [UInt8], operation: String, lease: String?) throws(QueueError) -> QueueError {
        let rows = try database { (connection, deadline) throws(PGError) in
            try connection.query(
                "payhook_queue_state", "SELECT state FROM payhook_queue WHERE id = $1::bytea", [.bytes(key)], deadline: deadline)
        }
        let current = rows.isEmpty ? nil : rows[0, 0].flatMap(QueueLocation.init(rawValue:))
        if lease != nil, current != nil {
            return QueueError(
                .wrongState, "lease lost: taken again by another consumer after its lease expired (event \(id) is \(current!.rawValue) now); nothing to \(operation)")
        }
        switch current {
        case .new?:
            return QueueError(.wrongState, "event \(id) is waiting (new) and was not taken; nothing to \(operation)")
        case .dead?:
            return QueueError(.wrongState, "event \(id) is a dead letter; `payhook queue revive` returns it to the waiting ones")
        case .cur?, nil:
            return try unknown(id, key)
        }
    }

    // MARK: - take

    public func take(wait: Bool, timeout: Double?, stop: (any QueueStop)?) throws(QueueError) -> QueueTakeResult {
        guard wait else { return try takeOnce() }
        let deadline = timeout.map { Date().addingTimeInterval($0) }
        // LISTEN before the first claim, as the spool watches before it lists: a store committed in between
        // still wakes this wait.
        var listener = try? borrowListener()
        defer { if let listener { giveBack(listener) } }
        while true {
            _ = listener?.drainNotifications()
            let result = try takeOnce()
            if result.entry != nil { return result }
            if stop?.isTriggered == true { return QueueTakeResult(outcome: .stopped, entry: nil) }
            let remaining = deadline.map { $0.timeIntervalSinceNow }
            if let remaining, remaining <= 0 { return QueueTakeResult(outcome: .timedOut, entry: nil) }
            let slice = min(remaining ?? pollInterval, pollInterval)
            if Self.waitReadable(listener?.socket ?? -1, stop: stop?.triggerDescriptor ?? -1, seconds: slice),
                let current = listener, current.drainNotifications() == 0
            {
                // Readable without a notification: the session may have ended (a server restart). Ask it once;
                // a broken one is replaced, and meanwhile the claims go on every poll interval.
                try? current.run("SELECT 1", deadline: .now + .seconds(2))
                if !current.usable {
                    listener = try? makeListener()
                }
            } else if listener == nil {
                listener = try? makeListener()
            }
        }
    }

    /// Waits up to `seconds` for `socket` or `stop` to become readable; true when the socket is.
    static func waitReadable(_ socket: Int32, stop: Int32, seconds: Double) -> Bool {
        var descriptors = [pollfd(fd: socket, events: Int16(POLLIN), revents: 0), pollfd(fd: stop, events: Int16(POLLIN), revents: 0)]
        let milliseconds = Int32(max(0, min(seconds, 3600)) * 1000) + 1
        // poll(2) ignores a negative descriptor.
        guard poll(&descriptors, 2, milliseconds) > 0 else { return false }
        return descriptors[0].revents != 0
    }

    private func makeListener() throws(QueueError) -> PGConnection {
        do {
            let connection = try pool.openDedicated()
            try connection.run("LISTEN payhook_queue", deadline: pool.deadline())
            return connection
        } catch {
            throw Self.queueError(error)
        }
    }

    private func borrowListener() throws(QueueError) -> PGConnection {
        if let idle = state.withLock({ $0.listeners.popLast() }) { return idle }
        return try makeListener()
    }

    private func giveBack(_ listener: PGConnection) {
        guard listener.usable else { return }
        state.withLock { state in
            if state.listeners.count < 16 { state.listeners.append(listener) }
        }
    }

    /// Returns events whose lease expired to the waiting ones, counting a failed attempt each (a dead letter once
    /// that makes ``maxAttempts``), then claims the oldest ready one.
    func takeOnce() throws(QueueError) -> QueueTakeResult {
        try expireLeases()
        let lease = UUID().uuidString.lowercased()
        let rows = try database { (connection, deadline) throws(PGError) in
            try connection.query(
                "payhook_queue_take",
                """
                WITH next AS (
                    SELECT q.id FROM payhook_queue q JOIN payhook_ledger l ON l.id = q.id
                     WHERE q.state = 'new' AND q.run_at <= now()
                     ORDER BY l.received_at, q.id
                     LIMIT 1
                       FOR UPDATE OF q SKIP LOCKED
                )
                UPDATE payhook_queue q
                   SET state = 'cur', lease = $1::uuid, leased_by = $2::text, leased_at = now(),
                       lease_until = now() + make_interval(secs => $3::float8), held = false
                  FROM next, payhook_ledger l
                 WHERE q.id = next.id AND l.id = q.id
                RETURNING \(Self.entryColumns)
                """, [.text(lease), .text(instance), .text(String(leaseSeconds))], deadline: deadline)
        }
        guard !rows.isEmpty, let claimed = entry(rows, 0) else { return QueueTakeResult(outcome: .empty, entry: nil) }
        let path: String
        do {
            path = try writeEventFile(claimed)
        } catch {
            // Unusable without its file: give it back untouched rather than leave it leased to no one.
            state.withLock { $0.leases[claimed.id] = lease }
            try? release(claimed.id)
            throw error
        }
        state.withLock { $0.leases[claimed.id] = lease }
        return QueueTakeResult(
            outcome: .taken, entry: QueueEntry(event: claimed.event, location: .cur, path: path, record: claimed.record))
    }

    /// The expiry step of every take: any consumer's take does it for all, so events of a consumer that died
    /// come back without an operator.
    func expireLeases() throws(QueueError) {
        _ = try database { (connection, deadline) throws(PGError) in
            try connection.query(
                "payhook_queue_expire",
                """
                UPDATE payhook_queue
                   SET attempts = attempts + 1,
                       state = CASE WHEN attempts + 1 >= $1::integer THEN 'dead' ELSE 'new' END,
                       dead_at = CASE WHEN attempts + 1 >= $1::integer THEN now() END,
                       last_error = json_build_object(
                           'at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                           'reason', 'lease of ' || coalesce(leased_by, 'a consumer') || ' taken '
                               || to_char(leased_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                               || ' expired without an acknowledgement')::text,
                       lease = NULL, leased_by = NULL, leased_at = NULL, lease_until = NULL, held = false,
                       run_at = now(), updated_at = now()
                 WHERE state = 'cur' AND lease_until < now()
                """, [.text(String(maxAttempts))], deadline: deadline)
        }
    }

    // MARK: - The event files

    /// This instance's folder for event files: mkdtemp(3) makes it mode 0700, so only this user reads events.
    private func folder() throws(QueueError) -> String {
        if let existing = state.withLock({ $0.folder }) { return existing }
        let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array((base + "/payhook-queue-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else {
            throw QueueError(.io, "create a private folder for event files in \(base): \(String(cString: strerror(errno)))", errno: errno)
        }
        let path = String(cString: made)
        return state.withLock { state in
            if let existing = state.folder {
                rmdir(path)
                return existing
            }
            state.folder = path
            return path
        }
    }

    private func writeEventFile(_ entry: QueueEntry) throws(QueueError) -> String {
        let path = "\(try folder())/\(entry.id).json"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw QueueError(.io, "create \(path): \(String(cString: strerror(errno)))", errno: errno) }
        defer { close(fd) }
        var written = 0
        let bytes = entry.event.bytes
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
            if count < 0 {
                if errno == EINTR { continue }
                let code = errno
                unlink(path)
                throw QueueError(.io, "write \(path): \(String(cString: strerror(code)))", errno: code)
            }
            written += count
        }
        return path
    }

    /// Forgets the lease of `id` and removes its file; returns the lease this instance held, if any.
    @discardableResult
    private func forget(_ id: String) -> String? {
        let (lease, folder) = state.withLock { state in (state.leases.removeValue(forKey: id), state.folder) }
        if lease != nil, let folder { unlink("\(folder)/\(id).json") }
        return lease
    }

    private func lease(of id: String) -> String? {
        state.withLock { $0.leases[id] }
    }

    private static func leaseValue(_ lease: String?) -> PGValue {
        lease.map { .text($0) } ?? .null
    }

    // MARK: - ack, nack, release, failures, dead letters, revive

    /// Deletes the queue row and sets the ledger's `acked_at`, in one statement: the ledger keeps the dedupe key.
    public func ack(_ id: String) throws(QueueError) {
        let key = try requireValid(id)
        let lease = lease(of: id)
        let rows = try database { (connection, deadline) throws(PGError) in
            try connection.query(
                "payhook_queue_ack",
                """
                WITH gone AS (
                    DELETE FROM payhook_queue
                     WHERE id = $1::bytea AND state = 'cur' AND ($2::uuid IS NULL OR lease = $2::uuid)
                    RETURNING id
                )
                UPDATE payhook_ledger l SET acked_at = now() FROM gone WHERE l.id = gone.id RETURNING 1
                """, [.bytes(key), Self.leaseValue(lease)], deadline: deadline)
        }
        forget(id)
        if rows.isEmpty { throw try notTaken(id, key, operation: "acknowledge", lease: lease) }
    }

    /// Back to the waiting ones with a failed attempt, ready again after min(retryDelay × 2^(attempts−1),
    /// maxRetryDelay) (1 s, 2 s, 4 s … 5 min by default).
    public func nack(_ id: String, reason: String?) throws(QueueError) -> Int {
        let key = try requireValid(id)
        let lease = lease(of: id)
        let failure = QueueFailure(reason: reason.map { "nack: \($0)" } ?? "nack")
        let rows = try database { (connection, deadline) throws(PGError) in
            try connection.query(
                "payhook_queue_nack",
                """
                UPDATE payhook_queue
                   SET state = 'new', attempts = attempts + 1, last_error = $3::text, updated_at = now(),
                       run_at = now() + make_interval(secs => least($4::float8 * power(2, least(attempts, 40))::float8, $5::float8)),
                       lease = NULL, leased_by = NULL, leased_at = NULL, lease_until = NULL, held = false
                 WHERE id = $1::bytea AND state = 'cur' AND ($2::uuid IS NULL OR lease = $2::uuid)
                RETURNING attempts
                """,
                [.bytes(key), Self.leaseValue(lease), .text(Self.encodeFailure(failure)), .text(String(retryDelay)),
                 .text(String(maxRetryDelay))], deadline: deadline)
        }
        forget(id)
        guard let attempts = rows.isEmpty ? nil : rows.int(0, 0) else {
            throw try notTaken(id, key, operation: "return", lease: lease)
        }
        return Int(attempts)
    }

    /// Back to the waiting ones, ready at once, no attempt counted; nothing when it is not taken (any more).
    public func release(_ id: String) throws(QueueError) {
        let key = try requireValid(id)
        let lease = lease(of: id)
        _ = try database { (connection, deadline) throws(PGError) in
            try connection.query(
                "payhook_queue_release",
                """
                UPDATE payhook_queue
                   SET state = 'new', run_at = now(),
                       lease = NULL, leased_by = NULL, leased_at = NULL, lease_until = NULL, held = false
                 WHERE id = $1::bytea AND state = 'cur' AND ($2::uuid IS NULL OR lease = $2::uuid)
                """, [.bytes(key), Self.leaseValue(lease)], deadline: deadline)
        }
        forget(id)
    }

    /// One more failed attempt of a taken event, which stays taken (the worker retries it after its backoff).
    public func recordFailure(_ id: String, _ failure: QueueFailure) throws(QueueError) -> QueueAttemptRecord {
        let key = try requireValid(id)
        let lease = lease(of: id)
        let rows = try database { (connection, deadline) throws(PGError) in
            try connection.query(
                "payhook_queue_failure",
                """
                UPDATE payhook_queue SET attempts = attempts + 1, last_error = $3::text, updated_at = now()
                 WHERE id = $1::bytea AND state = 'cur' AND ($2::uuid IS NULL OR lease = $2::uuid)
                RETURNING attempts, round(extract(epoch FROM updated_at) * 1000)::bigint
                """, [.bytes(key), Self.leaseValue(lease), .text(Self.encodeFailure(failure))], deadline: deadline)
        }
        guard !rows.isEmpty, let attempts = rows.int(0, 0) else {
            throw try notTaken(id, key, operation: "record a failure of", lease: lease)
        }
        let updated = rows.int(0, 1).map { Date(timeIntervalSince1970: Double($0) / 1000) } ?? Date()
        return QueueAttemptRecord(id: id, attempts: Int(attempts), updatedAt: updated, lastError: failure)
    }

    public func deadLetter(_ id: String, record: QueueAttemptRecord) throws(QueueError) {
        let key = try requireValid(id)
        let lease = lease(of: id)
        let lastError: PGValue = record.lastError.map { .text(Self.encodeFailure($0)) } ?? .null
        let rows = try database { (connection, deadline) throws(PGError) in
            try connection.query(
                "payhook_queue_dead",
                """
                UPDATE payhook_queue
                   SET state = 'dead', dead_at = now(), updated_at = now(), attempts = $3::integer,
                       last_error = coalesce($4::text, last_error),
                       lease = NULL, leased_by = NULL, leased_at = NULL, lease_until = NULL, held = false
                 WHERE id = $1::bytea AND state = 'cur' AND ($2::uuid IS NULL OR lease = $2::uuid)
                RETURNING 1
                """, [.bytes(key), Self.leaseValue(lease), .text(String(record.attempts)), lastError], deadline: deadline)
        }
        forget(id)
        if rows.isEmpty { throw try notTaken(id, key, operation: "make a dead letter", lease: lease) }
    }

    public func revive(_ id: String) throws(QueueError) {
        let key = try requireValid(id)
        let rows = try database { (connection, deadline) throws(PGError) in
            try connection.query(
                "payhook_queue_revive",
                """
                UPDATE payhook_queue
                   SET state = 'new', attempts = 0, last_error = NULL, dead_at = NULL, updated_at = NULL, run_at = now()
                 WHERE id = $1::bytea AND state = 'dead'
                RETURNING 1
                """, [.bytes(key)], deadline: deadline)
        }
        guard rows.isEmpty else { return }
        let found = try database { (connection, deadline) throws(PGError) in
            try connection.query(
                "payhook_queue_state", "SELECT state FROM payhook_queue WHERE id = $1::bytea", [.bytes(key)], deadline: deadline)
        }
        switch found.isEmpty ? nil : found[0, 0].flatMap(QueueLocation.init(rawValue:)) {
        case .new?: throw QueueError(.wrongState, "event \(id) is already waiting (new)")
        case .cur?: throw QueueError(.wrongState, "event \(id) is taken (cur), not a dead letter")
        case .dead?, nil: throw try unknown(id, key)
        }
    }

    // MARK: - requeue, hold

    /// Returns every event taken at least `olderThan` seconds before `now` to the waiting ones, counting a failed
    /// attempt each, as the spool's requeue does whatever the lease says (an operator's word); events a running
    /// worker holds (``hold(_:)``: marked `held`, lease renewed) are left alone and reported busy. A held event
    /// whose worker died loses its renewals, and once its lease has expired it is requeued like the others.
    public func requeue(olderThan: Double, now: Date) throws(QueueError) -> QueueRequeueReport {
        guard olderThan >= 0, olderThan.isFinite else { throw QueueError(.invalidArgument, "requeue needs an age of 0 or more") }
        let cutoff = now.timeIntervalSince1970 - olderThan
        let (report, returned) = try transaction { (connection, deadline) throws(PGError) -> (QueueRequeueReport, [String]) in
            var report = QueueRequeueReport()
            var returned: [String] = []
            let candidates = try connection.query(
                "payhook_queue_requeue_candidates",
                """
                SELECT encode(id, 'hex'), extract(epoch FROM leased_at)::float8, held AND lease_until >= now()
                  FROM payhook_queue
                 WHERE state = 'cur' AND leased_at <= to_timestamp($1::float8)
                 ORDER BY id
                   FOR UPDATE SKIP LOCKED
                """, [.text(String(cutoff))], deadline: deadline)
            for row in 0..<candidates.count {
                guard let id = candidates[row, 0], let key = EventKey.bytes(id) else { continue }
                if candidates.bool(row, 2) == true {
                    report.busy.append(id)
                    continue
                }
                let leasedAt = candidates[row, 1].flatMap(Double.init) ?? cutoff
                let age = max(0, now.timeIntervalSince1970 - leasedAt)
                let reason = "requeued after \(QueueTime.formatDuration(age)) taken (cur) without an acknowledgement"
                let updated = try connection.query(
                    "payhook_queue_requeue",
                    """
                    UPDATE payhook_queue
                       SET state = 'new', attempts = attempts + 1, last_error = $2::text, updated_at = now(), run_at = now(),
                           lease = NULL, leased_by = NULL, leased_at = NULL, lease_until = NULL, held = false
                     WHERE id = $1::bytea AND state = 'cur'
                    RETURNING attempts
                    """, [.bytes(key), .text(Self.encodeFailure(QueueFailure(at: now, reason: reason)))], deadline: deadline)
                guard let attempts = updated.isEmpty ? nil : updated.int(0, 0) else { continue }
                report.requeued.append(QueueRequeued(id: id, age: age, attempts: Int(attempts)))
                returned.append(id)
            }
            return (report, returned)
        }
        for id in returned { forget(id) }
        return report
    }

    /// Marks the taken event `held` and renews its lease from a thread of its own every quarter lease, until the
    /// hold is released; nil when the event is not taken (with this instance's lease, if it has one).
    public func hold(_ entry: QueueEntry) -> (any QueueLease)? {
        guard let key = EventKey.bytes(entry.id) else { return nil }
        let lease = lease(of: entry.id)
        guard let rows = try? database({ (connection, deadline) throws(PGError) in
            try connection.query(
                "payhook_queue_hold",
                """
                UPDATE payhook_queue SET held = true, lease_until = now() + make_interval(secs => $3::float8)
                 WHERE id = $1::bytea AND state = 'cur' AND ($2::uuid IS NULL OR lease = $2::uuid)
                RETURNING lease::text
                """, [.bytes(key), Self.leaseValue(lease), .text(String(leaseSeconds))], deadline: deadline)
        }), !rows.isEmpty
        else { return nil }
        return PostgresEventHold(queue: self, key: key, lease: rows[0, 0])
    }

    /// One renewal of a held lease; false when the event is no longer taken with it.
    func renew(_ key: [UInt8], lease: String?, held: Bool) -> Bool {
        let rows = try? database { (connection, deadline) throws(PGError) in
            try connection.query(
                "payhook_queue_renew",
                """
                UPDATE payhook_queue
                   SET held = $3::boolean,
                       lease_until = CASE WHEN $3::boolean THEN now() + make_interval(secs => $4::float8) ELSE lease_until END
                 WHERE id = $1::bytea AND state = 'cur' AND ($2::uuid IS NULL OR lease = $2::uuid)
                RETURNING 1
                """, [.bytes(key), Self.leaseValue(lease), .text(held ? "true" : "false"), .text(String(leaseSeconds))],
                deadline: deadline)
        }
        return rows.map { !$0.isEmpty } ?? true
    }

    // MARK: - The consumer lock, retention

    /// A lease that holds nothing. The spool allows one `consume` per directory because its retries and holds
    /// live in one process's file locks; the database keeps every event's owner in its row (leases, `held`) and
    /// claims with `FOR UPDATE SKIP LOCKED`, so several `consume` workers on several hosts may run at once, which
    /// is the point of a shared database. An advisory lock here would only make them refuse each other.
    public func lockConsumer() throws(QueueError) -> any QueueLease {
        PostgresNoLease()
    }

    /// `ledger_retention_seconds` in `payhook_settings`, which `payhook serve` records.
    public func retention() throws(QueueError) -> QueueRetention? {
        let rows = try database { (connection, deadline) throws(PGError) in
            try connection.query(
                "payhook_queue_retention", "SELECT value FROM payhook_settings WHERE name = 'ledger_retention_seconds'", [],
                deadline: deadline)
        }
        guard !rows.isEmpty else { return nil }
        let source = "payhook_settings (ledger_retention_seconds)"
        guard let text = rows[0, 0], let seconds = Int(text), seconds > 0 else {
            throw QueueError(
                .malformedSpoolFile,
                "\(source) must hold the server's ledger retention as a positive whole number of seconds; it holds "
                    + Self.quoted(rows[0, 0] ?? ""))
        }
        return QueueRetention(seconds: Double(seconds), source: source)
    }
}

/// ``PostgresEventQueue/lockConsumer()``'s lease: nothing to let go.
struct PostgresNoLease: QueueLease {
    func release() {}
}

/// A worker's hold on a taken event: its row marked `held` and its lease renewed every quarter lease by a thread
/// of its own, until released (then the mark goes; the lease is left to the ack or return that follows). When the
/// process dies, the renewals stop and the lease expires by itself.
final class PostgresEventHold: QueueLease, @unchecked Sendable {
    private let queue: PostgresEventQueue
    private let key: [UInt8]
    private let lease: String?
    private let wake = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)
    private let released = Locked(false)

    init(queue: PostgresEventQueue, key: [UInt8], lease: String?) {
        self.queue = queue
        self.key = key
        self.lease = lease
        let interval = max(queue.leaseSeconds / 4, 0.01)
        let thread = Thread { [self] in
            defer { done.signal() }
            while wake.wait(timeout: .now() + interval) == .timedOut {
                if !queue.renew(key, lease: lease, held: true) { return }
            }
        }
        thread.start()
    }

    func release() {
        let first = released.withLock { value -> Bool in
            defer { value = true }
            return !value
        }
        guard first else { return }
        wake.signal()
        done.wait()
        _ = queue.renew(key, lease: lease, held: false)
    }

    deinit {
        release()
    }
}
