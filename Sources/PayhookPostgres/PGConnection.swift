import CLibPQ
import PayhookCore
#if canImport(Glibc)
import Glibc
#endif

/// A failed database operation: one sentence for the log, the SQLSTATE when the server sent one, and whether the
/// connection is still usable afterwards. Never carries the connection string (it may hold a password).
public struct PGError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, broadly.
    public enum Kind: String, Sendable {
        /// The server could not be reached or the session broke (connection refused, lost, shut down).
        case connection
        /// No answer before the deadline; the connection was dropped.
        case timeout
        /// The server refused the statement (its SQLSTATE says why).
        case statement
        /// The statement succeeded but the server warned, e.g. "canceling wait for synchronous replication":
        /// the commit may not be durable where the operator asked it to be.
        case warning
        /// The schema is missing, older or newer than this payhook knows.
        case schema
    }

    public let kind: Kind
    public let message: String
    public let sqlState: String?

    public init(_ kind: Kind, _ message: String, sqlState: String? = nil) {
        self.kind = kind
        self.message = message
        self.sqlState = sqlState
    }

    public var description: String {
        if let sqlState { return "\(message) (SQLSTATE \(sqlState))" }
        return message
    }
}

/// One value sent with a statement. Text values go in libpq's text format, bytes in binary (bytea needs no
/// escaping that way).
enum PGValue: Sendable {
    case text(String)
    case bytes([UInt8])
    case null
}

/// The rows a statement returned, in text format, read out of libpq's result at once.
struct PGRows: Sendable {
    var rows: [[String?]]

    var count: Int { rows.count }
    var isEmpty: Bool { rows.isEmpty }

    subscript(row: Int, column: Int) -> String? { rows[row][column] }

    /// A `bytea` column in text format (`\x` + hex) as bytes.
    func bytes(_ row: Int, _ column: Int) -> [UInt8]? {
        guard let text = rows[row][column], text.hasPrefix("\\x") else { return nil }
        return Hex.decode(text.dropFirst(2))
    }

    func int(_ row: Int, _ column: Int) -> Int64? {
        rows[row][column].flatMap { Int64($0) }
    }

    func bool(_ row: Int, _ column: Int) -> Bool? {
        rows[row][column].map { $0 == "t" }
    }
}

/// Event ids as the tables key them: the 32 bytes of the 64-hex id (docs/durability.md §11.2).
enum EventKey {
    static func bytes(_ id: String) -> [UInt8]? {
        guard let bytes = Hex.decode(id), bytes.count == 32 else { return nil }
        return bytes
    }
}

/// What the server said besides the result: warnings arrive through libpq's notice receiver, not the result.
final class PGNotices {
    /// The first WARNING (or worse) seen since the last ``reset()``.
    var warning: PGError?
    /// The server sent FATAL or PANIC outside a statement (e.g. "terminating connection due to administrator
    /// command" to an idle session): the session is over even if its socket has not closed yet.
    var ended = false

    func reset() { warning = nil }
}

/// One blocking PostgreSQL session. Owned by one thread at a time (libpq: a `PGconn` must not be used by two
/// threads at once); ``PGPool`` hands it out.
///
/// Every statement is sent asynchronously and waited for with `poll(2)` up to a deadline, so a server that stops
/// answering costs a request its deadline, not a listener thread forever. A connection that timed out or broke is
/// closed, never reused: what it was doing is unknown.
final class PGConnection: @unchecked Sendable {
    private let conn: OpaquePointer
    private let notices = PGNotices()
    private var prepared: Set<String> = []
    /// False once the session broke or a statement timed out: the pool drops it.
    private(set) var usable = true

    /// Connects with `conninfo` (a `postgresql://` URL or `key=value` pairs). libpq's own defaults apply to
    /// what it does not name; `connect_timeout` bounds the wait for the server. The connection string never
    /// appears in an error: it may hold a password.
    init(conninfo: String, applicationName: String, connectTimeoutSeconds: Int) throws(PGError) {
        // Keywords before `dbname` are defaults the URL may override (libpq: with expand_dbname, "when key
        // words are repeated, the last processed value is retained").
        let keywords = ["connect_timeout", "application_name", "dbname"]
        let values = [String(connectTimeoutSeconds), applicationName, conninfo]
        let connection: OpaquePointer? = Self.withCStrings(keywords) { k in
            Self.withCStrings(values) { v in PQconnectdbParams(k, v, 1) }
        }
        guard let connection else { throw PGError(.connection, "cannot connect to the database: out of memory") }
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = Self.firstLine(String(cString: PQerrorMessage(connection)))
            PQfinish(connection)
            throw PGError(.connection, "cannot connect to the database: \(message)")
        }
        conn = connection
        PQsetNoticeReceiver(conn, { argument, result in
            guard let argument, let result else { return }
            let notices = Unmanaged<PGNotices>.fromOpaque(argument).takeUnretainedValue()
            let severity = PQresultErrorField(result, Int32(UInt8(ascii: "V"))).map { String(cString: $0) } ?? ""
            if severity == "FATAL" || severity == "PANIC" { notices.ended = true }
            // NOTICE, INFO, LOG and DEBUG are chatter; a WARNING on a commit means it may not be durable.
            guard ["WARNING", "ERROR", "FATAL", "PANIC"].contains(severity), notices.warning == nil else { return }
            let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            let message = PQresultErrorField(result, Int32(UInt8(ascii: "M"))).map { String(cString: $0) } ?? "warning"
            notices.warning = PGError(.warning, "the database warned: \(message)", sqlState: state)
        }, Unmanaged.passUnretained(notices).toOpaque())
    }

    deinit {
        PQfinish(conn)
    }

    /// The server's `server_version_num`, e.g. 150018.
    var serverVersion: Int { Int(PQserverVersion(conn)) }

    /// Runs `sql` once (no parameters, several statements allowed), e.g. `SET` or a migration step.
    func run(_ sql: String, deadline: ContinuousClock.Instant) throws(PGError) {
        try startAndWait(deadline: deadline) { PQsendQuery(conn, sql) }
    }

    /// Runs `sql` with `values` as `$1…`, preparing it on this connection the first time under `name`.
    /// Returns its rows (text format); throws a warning the server sent while running it.
    func query(_ name: String, _ sql: String, _ values: [PGValue], deadline: ContinuousClock.Instant) throws(PGError) -> PGRows {
        if !prepared.contains(name) {
            try startAndWait(deadline: deadline) { PQsendPrepare(conn, name, sql, 0, nil) }
            prepared.insert(name)
        }
        var rows = PGRows(rows: [])
        try startAndWait(deadline: deadline, rows: &rows) {
            Self.withValues(values) { pointers, lengths, formats in
                PQsendQueryPrepared(conn, name, Int32(values.count), pointers, lengths, formats, 0)
            }
        }
        return rows
    }

    /// Prepares `sql` under `name` on this session unless it already is.
    func prepare(_ name: String, _ sql: String, deadline: ContinuousClock.Instant) throws(PGError) {
        guard !prepared.contains(name) else { return }
        try startAndWait(deadline: deadline) { PQsendPrepare(conn, name, sql, 0, nil) }
        prepared.insert(name)
    }

    /// What became of a transaction sent by ``transaction(_:_:deadline:)``.
    enum BatchOutcome {
        /// COMMIT returned without a warning: every statement's rows, in the order sent.
        case committed([PGRows])
        /// The statement at `index` failed, so the transaction rolled back and nothing of it was written.
        case rolledBack(index: Int, error: PGError)
    }

    /// Runs the prepared statement `name` (see ``prepare(_:_:deadline:)``) once per element of `batch`, all in
    /// one transaction: `BEGIN`, the statements, `COMMIT` and one Sync sent in libpq's pipeline mode, so the whole
    /// batch costs one round trip and one commit (one WAL flush, one wait for synchronous standbys).
    ///
    /// Throws when the outcome of the COMMIT is unknown or not good enough: the session broke or timed out (it
    /// is then closed), or the server warned during the transaction (a cancelled wait for synchronous
    /// replication arrives as a warning on the COMMIT). A statement the server refused rolls the whole
    /// transaction back and is reported as ``BatchOutcome/rolledBack(index:error:)``.
    func transaction(_ name: String, _ batch: [[PGValue]], deadline: ContinuousClock.Instant) throws(PGError) -> BatchOutcome {
        guard usable else { throw PGError(.connection, "the database connection is closed") }
        do {
            return try pipelined(name, batch, deadline: deadline)
        } catch {
            // Left mid-pipeline (or warned): what the session still has queued is unknown, so it is not reused.
            if error.kind != .warning { usable = false }
            throw error
        }
    }

    private func pipelined(_ name: String, _ batch: [[PGValue]], deadline: ContinuousClock.Instant) throws(PGError) -> BatchOutcome {
        notices.reset()
        guard PQenterPipelineMode(conn) == 1 else { throw broken() }
        // Sent: BEGIN, the statements, COMMIT, then the Sync that ends the pipeline. Results come back in that
        // order; after the first failure every later command reports PGRES_PIPELINE_ABORTED up to the Sync.
        guard PQsendQueryParams(conn, "BEGIN", 0, nil, nil, nil, nil, 0) == 1 else { throw broken() }
        for values in batch {
            let sent = Self.withValues(values) { pointers, lengths, formats in
                PQsendQueryPrepared(conn, name, Int32(values.count), pointers, lengths, formats, 0)
            }
            guard sent == 1 else { throw broken() }
        }
        guard PQsendQueryParams(conn, "COMMIT", 0, nil, nil, nil, nil, 0) == 1,
            PQpipelineSync(conn) == 1
        else { throw broken() }
        try flush(until: deadline)
        // One entry per command sent (BEGIN, each statement, COMMIT): its rows, or why it failed.
        var rows: [PGRows] = []
        rows.reserveCapacity(batch.count)
        var failure: (index: Int, error: PGError)?
        var command = 0
        var endsSeen = 0
        var synced = false
        while !synced {
            while PQisBusy(conn) == 1 {
                try wait(for: Int16(POLLIN), until: deadline)
                guard PQconsumeInput(conn) == 1 else { throw broken() }
            }
            guard let result = PQgetResult(conn) else {
                // The end of one command's results. More ends than commands sent means libpq has nothing more
                // to give: the session is gone.
                endsSeen += 1
                if endsSeen > batch.count + 2 || PQstatus(conn) != CONNECTION_OK { throw broken() }
                continue
            }
            defer { PQclear(result) }
            let statement = command - 1  // BEGIN is command 0
            switch PQresultStatus(result) {
            case PGRES_PIPELINE_SYNC:
                synced = true
            case PGRES_TUPLES_OK:
                if statement >= 0 && statement < batch.count { rows.append(Self.rows(result)) }
                command += 1
            case PGRES_COMMAND_OK:
                if statement >= 0 && statement < batch.count { rows.append(PGRows(rows: [])) }
                command += 1
            case PGRES_PIPELINE_ABORTED:
                command += 1
            default:
                if failure == nil {
                    let error = Self.refusal(result)
                    if error.kind == .connection { usable = false }
                    // A failed BEGIN or COMMIT is no single statement's fault: the whole batch failed.
                    if statement < 0 || statement >= batch.count { throw error }
                    failure = (statement, error)
                }
                command += 1
            }
        }
        guard PQexitPipelineMode(conn) == 1 else { throw broken() }
        if PQstatus(conn) != CONNECTION_OK { usable = false }
        if let failure {
            // The server skipped the rest up to the Sync, COMMIT included, so the explicit transaction is still
            // open (and failed): end it before the session is used again.
            if PQtransactionStatus(conn) != PQTRANS_IDLE { try run("ROLLBACK", deadline: deadline) }
            return .rolledBack(index: failure.index, error: failure.error)
        }
        guard command == batch.count + 2, rows.count == batch.count else {
            usable = false
            throw PGError(.connection, "the database sent \(command) results for \(batch.count + 2) commands")
        }
        if let warning = notices.warning { throw warning }
        return .committed(rows)
    }

    /// Runs a statement that takes no parameters and returns rows, without preparing it.
    func select(_ sql: String, deadline: ContinuousClock.Instant) throws(PGError) -> PGRows {
        var rows = PGRows(rows: [])
        try startAndWait(deadline: deadline, rows: &rows) { PQsendQuery(conn, sql) }
        return rows
    }

    /// Notifications received on this session (`LISTEN`), after reading what the socket holds.
    func drainNotifications() -> Int {
        _ = PQconsumeInput(conn)
        var count = 0
        while let notification = PQnotifies(conn) {
            PQfreemem(notification)
            count += 1
        }
        return count
    }

    /// Whether a session that sat idle is still open, checked without a round trip before it is used again.
    ///
    /// A server that restarted, failed over or terminated the session (`pg_terminate_backend`) leaves it in the
    /// pool looking fine until a statement fails on it, and that failure is a 503 for a sender whose event could
    /// have been stored on a new session. An idle session receives nothing but the server's goodbye (an error
    /// message, then end of file) or an occasional parameter report, so whatever the socket holds is read first.
    func stillOpen() -> Bool {
        guard usable else { return false }
        // A few rounds: the goodbye's message and its end of file may be read apart.
        for _ in 0..<4 {
            var descriptor = pollfd(fd: PQsocket(conn), events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, 0)
            if ready == 0 { break }
            if ready < 0 {
                if errno == EINTR { continue }
                usable = false
                break
            }
            // Reading hands a message the server sent while idle to the notice receiver.
            if PQconsumeInput(conn) != 1 {
                usable = false
                break
            }
            _ = PQisBusy(conn)
            if descriptor.revents & Int16(POLLHUP | POLLERR) != 0 { usable = false }
        }
        if notices.ended || PQstatus(conn) != CONNECTION_OK { usable = false }
        return usable
    }

    /// The session's socket, for waiting on notifications with `poll(2)`.
    var socket: Int32 { PQsocket(conn) }

    private func startAndWait(deadline: ContinuousClock.Instant, _ send: () -> Int32) throws(PGError) {
        var ignored = PGRows(rows: [])
        try startAndWait(deadline: deadline, rows: &ignored, send)
    }

    private func startAndWait(deadline: ContinuousClock.Instant, rows: inout PGRows, _ send: () -> Int32) throws(PGError) {
        guard usable else { throw PGError(.connection, "the database connection is closed") }
        notices.reset()
        guard send() == 1 else { throw broken() }
        // Push the query out, then read until libpq has the whole answer.
        try flush(until: deadline)
        var failure: PGError?
        while true {
            while PQisBusy(conn) == 1 {
                try wait(for: Int16(POLLIN), until: deadline)
                guard PQconsumeInput(conn) == 1 else { throw broken() }
            }
            guard let result = PQgetResult(conn) else { break }
            defer { PQclear(result) }
            switch PQresultStatus(result) {
            case PGRES_TUPLES_OK:
                rows = Self.rows(result)
            case PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
                break
            default:
                if failure == nil { failure = Self.refusal(result) }
            }
        }
        if PQstatus(conn) != CONNECTION_OK { usable = false }
        if let failure {
            if failure.kind == .connection { usable = false }
            throw failure
        }
        if let warning = notices.warning { throw warning }
    }

    /// Sends what libpq has buffered, reading meanwhile so that a server busy writing its answer never blocks us.
    private func flush(until deadline: ContinuousClock.Instant) throws(PGError) {
        while true {
            let flushed = PQflush(conn)
            if flushed == 0 { return }
            if flushed < 0 { throw broken() }
            try wait(for: Int16(POLLOUT | POLLIN), until: deadline)
            guard PQconsumeInput(conn) == 1 else { throw broken() }
        }
    }

    /// The error a failed result reports. Class 08 (connection exception) and 57P (operator intervention:
    /// shutdown, crash) end the session; the server said so, but the socket may not have closed yet.
    private static func refusal(_ result: OpaquePointer) -> PGError {
        let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
        let message = firstLine(String(cString: PQresultErrorMessage(result)))
        let ended = state.map { $0.hasPrefix("08") || $0.hasPrefix("57P") } ?? true
        return PGError(ended ? .connection : .statement, "the database refused: \(message)", sqlState: state)
    }

    /// Waits until the socket is ready for `events` or the deadline passes (then the connection is given up).
    private func wait(for events: Int16, until deadline: ContinuousClock.Instant) throws(PGError) {
        let socket = PQsocket(conn)
        guard socket >= 0 else { throw broken() }
        while true {
            let left = ContinuousClock.now.duration(to: deadline)
            if left <= .zero {
                usable = false
                throw PGError(.timeout, "the database did not answer in time")
            }
            let milliseconds = Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
            var descriptor = pollfd(fd: socket, events: events, revents: 0)
            let ready = poll(&descriptor, 1, milliseconds)
            if ready > 0 { return }
            if ready < 0 && errno != EINTR { throw broken() }
        }
    }

    private func broken() -> PGError {
        usable = false
        let message = Self.firstLine(String(cString: PQerrorMessage(conn)))
        return PGError(.connection, "the database connection failed: \(message.isEmpty ? "connection lost" : message)")
    }

    private static func rows(_ result: OpaquePointer) -> PGRows {
        let count = Int(PQntuples(result))
        let fields = Int(PQnfields(result))
        var rows: [[String?]] = []
        rows.reserveCapacity(count)
        for row in 0..<count {
            var values: [String?] = []
            values.reserveCapacity(fields)
            for field in 0..<fields {
                if PQgetisnull(result, Int32(row), Int32(field)) == 1 {
                    values.append(nil)
                } else {
                    values.append(String(cString: PQgetvalue(result, Int32(row), Int32(field))))
                }
            }
            rows.append(values)
        }
        return PGRows(rows: rows)
    }

    /// libpq's messages end in a newline and may add a second line of detail ("Is the server running…").
    static func firstLine(_ text: String) -> String {
        let trimmed = text.split(separator: "\n", omittingEmptySubsequences: true)
        return trimmed.first.map { $0.trimmingCharacters() } ?? ""
    }

    private static func withCStrings<T>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> T) -> T {
        let copies: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
        defer { copies.forEach { free($0) } }
        var pointers: [UnsafePointer<CChar>?] = copies.map { UnsafePointer($0) }
        pointers.append(nil)
        return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
    }

    private static func withValues<T>(
        _ values: [PGValue],
        _ body: (UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<Int32>?, UnsafePointer<Int32>?) -> T
    ) -> T {
        // Every value is copied into one buffer that outlives the call; text values end in NUL as libpq reads
        // them as C strings.
        var storage: [UInt8] = []
        var offsets: [Int?] = []
        var lengths: [Int32] = []
        var formats: [Int32] = []
        for value in values {
            switch value {
            case .text(let text):
                offsets.append(storage.count)
                storage.append(contentsOf: text.utf8)
                storage.append(0)
                lengths.append(0)
                formats.append(0)
            case .bytes(let bytes):
                offsets.append(storage.count)
                storage.append(contentsOf: bytes)
                lengths.append(Int32(bytes.count))
                formats.append(1)
            case .null:
                offsets.append(nil)
                lengths.append(0)
                formats.append(0)
            }
        }
        storage.append(0)
        return storage.withUnsafeBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) { base in
                let pointers: [UnsafePointer<CChar>?] = offsets.map { $0.map { base + $0 } }
                return pointers.withUnsafeBufferPointer { p in
                    lengths.withUnsafeBufferPointer { l in
                        formats.withUnsafeBufferPointer { f in body(p.baseAddress, l.baseAddress, f.baseAddress) }
                    }
                }
            }
        }
    }
}

extension Substring {
    fileprivate func trimmingCharacters() -> String {
        var text = self
        while let last = text.last, last == " " || last == "\t" || last == "\r" { text.removeLast() }
        while let first = text.first, first == " " || first == "\t" { text.removeFirst() }
        return String(text)
    }
}
