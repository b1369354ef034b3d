#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Logging
import PayhookLock

/// Group commit for the database store (docs/durability.md §11.3).
///
/// A listener thread does not run its store statement on a session of its own: it hands the statement's values
/// to one of a few writer threads and blocks until the transaction holding them has committed (or failed). A
/// writer takes everything pending (up to ``maxBatch``) and sends it as one transaction in libpq's pipeline mode
/// (``PGConnection/transaction(_:_:deadline:)``): `BEGIN`, one store statement per callback, `COMMIT`, one
/// round trip. The batch's callbacks are answered only after that COMMIT returned without a warning, so the
/// contract's rule holds for each of them: success only once its row is committed (and replicated, when the
/// operator asks for synchronous standbys). Batches form by themselves, as in the spool's writer
/// (PayhookSpool/SpoolGroupCommit.swift): while a writer waits for its commit, the next stores queue up.
///
/// Why: 64 concurrent callbacks on 64 sessions are 64 backends competing for the database's CPU and 64
/// commits; measured on this project's 2-core VM, their p99 was twice the 50 ms target while a few writers
/// carrying batches stay under it (bench/README.md, "PostgreSQL, measured").
///
/// Each batch's statements run in the order of their event ids, so two batches (from two writers or two
/// instances) that touch the same ledger rows lock them in the same order and cannot deadlock. A statement the
/// server refuses rolls its batch back; that callback gets the refusal and the others are stored again, each in
/// a transaction of its own, so one bad event never fails its neighbours. A broken session, a timeout or a
/// warning fails the whole batch: every callback in it is told to try again, and a retry of one that did
/// commit is a duplicate.
final class PostgresGroupCommit: @unchecked Sendable {
    /// One callback's statement, waiting for its batch.
    final class Request: @unchecked Sendable {
        let key: [UInt8]
        let values: [PGValue]
        let deadline: ContinuousClock.Instant
        private let answer = Handoff<Result<PGRows, PGError>>()
        /// Called with the first answer, when the caller asked not to wait (``submit(key:values:completion:)``).
        private let completion: (@Sendable (Result<PGRows, PGError>) -> Void)?

        init(key: [UInt8], values: [PGValue], deadline: ContinuousClock.Instant,
             completion: (@Sendable (Result<PGRows, PGError>) -> Void)? = nil) {
            self.key = key
            self.values = values
            self.deadline = deadline
            self.completion = completion
        }

        /// Whether an answer was given already (by its batch, or by the waiter giving up).
        var answered: Bool { answer.isGiven }

        /// The first answer counts; a later one (a batch that finished after its waiter gave up) is dropped.
        func complete(_ outcome: Result<PGRows, PGError>) {
            if answer.give(outcome) { completion?(outcome) }
        }

        /// The time after which nobody waits for this request any more: shortly after its deadline, since the
        /// writer bounds each transaction by the oldest deadline in it.
        var givenUpAt: DispatchTime {
            DispatchTime.now() + .nanoseconds(Int(Self.nanoseconds(until: deadline) + 500_000_000))
        }

        /// Whether ``givenUpAt`` has passed.
        var givenUp: Bool { ContinuousClock.now > deadline + .milliseconds(500) }

        /// Waits for the answer until shortly after the deadline: the writer bounds each transaction by the
        /// oldest deadline in it, so this only ends early when the writer could not even start one in time
        /// (all busy, or connecting to a server that does not answer).
        func wait() -> Result<PGRows, PGError> {
            if let given = answer.wait(until: givenUpAt) { return given }
            // Given up: a batch that still commits it answers nobody, and the sender's retry is a duplicate.
            answer.give(.failure(PGError(.timeout, "the database did not answer in time")))
            return answer.wait()
        }

        private static func nanoseconds(until deadline: ContinuousClock.Instant) -> Int64 {
            let left = ContinuousClock.now.duration(to: deadline)
            guard left > .zero else { return 0 }
            return left.components.seconds * 1_000_000_000 + left.components.attoseconds / 1_000_000_000
        }
    }

    private struct Queue {
        var pending: [Request] = []
        /// Requests submitted without waiting and not answered yet, pending or in a batch: the sweeper answers
        /// those whose time is up (``submit(key:values:completion:)``).
        var unwaited: [Request] = []
        var stopping = false
        /// Writers waiting for work, and the wake-ups sent to them and not yet taken: a store wakes a writer only
        /// when one is idle and not already woken, so a batch of k costs one wake-up, not k (on a loaded 2-core
        /// machine every needless wake-up is a context switch taken from the callbacks).
        var idle = 0
        var woken = 0
        /// Batch size → how many batches had it.
        var histogram: [Int: Int] = [:]
    }

    let writers: Int
    let maxBatch: Int
    private let pool: PGPool
    private let statementName: String
    private let statement: String
    private let logger: Logger
    private let queue = Locked(Queue())
    /// One signal per request and one per writer at stop; a writer waits on it for work.
    private let wakeUp = DispatchSemaphore(value: 0)
    /// Signalled by each writer when it exits.
    private let exited = DispatchSemaphore(value: 0)
    /// Signalled at stop, to end the sweeper.
    private let sweeperStop = DispatchSemaphore(value: 0)
    /// How often the sweeper looks for requests whose time is up.
    static let sweepInterval = DispatchTimeInterval.milliseconds(250)

    /// `pool` opens the writers' sessions (set up like every other payhook session) and gives the deadlines.
    init(pool: PGPool, writers: Int, maxBatch: Int, statementName: String, statement: String, logger: Logger) {
        self.pool = pool
        self.writers = max(1, writers)
        self.maxBatch = max(1, maxBatch)
        self.statementName = statementName
        self.statement = statement
        self.logger = logger
    }

    /// Starts the writer threads: dedicated threads, not tasks on Swift's cooperative pool, since they block on
    /// the database for as long as it takes.
    func start() {
        for index in 0..<writers {
            do {
                _ = try startDetachedThread { [self] in self.run() }
            } catch {
                logger.critical("cannot start database writer \(index + 1) of \(writers) (error \(error.code))")
                exited.signal()
            }
        }
        do {
            _ = try startDetachedThread { [self] in
                while sweeperStop.wait(timeout: .now() + Self.sweepInterval) == .timedOut { sweep() }
            }
        } catch {
            logger.critical("cannot start the database writers' sweeper (error \(error.code)): a store nobody takes waits until the writers come back")
        }
    }

    /// Answers "try again" to every unwaited request whose time is up, and forgets the answered ones. One
    /// thread for all of them rather than a timer per request: a timer would keep its request's statement
    /// (the event's bytes) alive until it fired, seconds after the answer, which at thousands of callbacks
    /// per second is tens of megabytes.
    func sweep() {
        let expired = queue.withLock { queue -> [Request] in
            queue.unwaited.removeAll { $0.answered }
            return queue.unwaited.filter(\.givenUp)
        }
        for request in expired {
            request.complete(.failure(PGError(.timeout, "the database did not answer in time")))
        }
    }

    /// Hands one statement to the writers and blocks until its transaction committed or failed.
    func submit(key: [UInt8], values: [PGValue]) -> Result<PGRows, PGError> {
        let request = Request(key: key, values: values, deadline: pool.deadline())
        if let refused = enqueue(request) { return .failure(refused) }
        return request.wait()
    }

    /// Hands one statement to the writers without waiting: `completion` gets the answer once, from the writer
    /// that committed it, or a timeout shortly after the deadline when no writer could take it in time (the
    /// answer the blocking ``submit(key:values:)`` gives then too).
    func submit(key: [UInt8], values: [PGValue], completion: @escaping @Sendable (Result<PGRows, PGError>) -> Void) {
        let request = Request(key: key, values: values, deadline: pool.deadline(), completion: completion)
        if let refused = enqueue(request, unwaited: true) {
            request.complete(.failure(refused))
        }
    }

    /// Queues `request` and wakes an idle writer; the error when the store is closed.
    private func enqueue(_ request: Request, unwaited: Bool = false) -> PGError? {
        let (accepted, wake) = queue.withLock { queue -> (Bool, Bool) in
            guard !queue.stopping else { return (false, false) }
            queue.pending.append(request)
            if unwaited { queue.unwaited.append(request) }
            guard queue.idle > queue.woken else { return (true, false) }
            queue.woken += 1
            return (true, true)
        }
        guard accepted else { return PGError(.connection, "the database store is closed") }
        if wake { wakeUp.signal() }
        return nil
    }

    /// Unwaited requests the sweeper still holds (tests read it: answered ones are forgotten at the next sweep).
    var unwaitedCount: Int { queue.withLock { $0.unwaited.count } }

    /// Batch size → count, since the start (tests read it to see that batches form).
    var histogram: [Int: Int] { queue.withLock { $0.histogram } }

    /// Stops the writers: what they have not taken fails as closed; a batch in flight finishes first, and this
    /// waits for it (bounded by its deadline). Safe to call twice.
    func stop() {
        let (abandoned, wasStopping) = queue.withLock { queue in
            defer {
                queue.stopping = true
                queue.pending = []
            }
            return (queue.pending, queue.stopping)
        }
        for request in abandoned {
            request.complete(.failure(PGError(.connection, "the database store is closed")))
        }
        guard !wasStopping else { return }
        sweeperStop.signal()
        for _ in 0..<writers { wakeUp.signal() }
        let until = DispatchTime.now() + .nanoseconds(Int(pool.settings.statementTimeoutSeconds * 1e9) + 1_000_000_000)
        for _ in 0..<writers where exited.wait(timeout: until) == .timedOut {
            logger.warning("a database writer did not finish its batch before the store closed")
            break
        }
    }

    private func run() {
        defer { exited.signal() }
        var connection: PGConnection?
        while true {
            let taken = queue.withLock { queue -> [Request]? in
                if queue.stopping { return nil }
                // A request whose waiter gave up is not stored: it was answered 503 already.
                queue.pending.removeAll { $0.answered }
                let count = min(queue.pending.count, maxBatch)
                if count == 0 {
                    queue.idle += 1
                    return []
                }
                let batch = Array(queue.pending.prefix(count))
                queue.pending.removeFirst(count)
                queue.histogram[count, default: 0] += 1
                return batch
            }
            guard let batch = taken else { return }
            if batch.isEmpty {
                wakeUp.wait()
                queue.withLock { queue in
                    queue.idle -= 1
                    queue.woken = max(0, queue.woken - 1)
                }
                continue
            }
            commit(batch, on: &connection)
        }
    }

    /// Stores one batch, answering each of its requests.
    private func commit(_ unsorted: [Request], on connection: inout PGConnection?) {
        // The same lock order in every batch (see the type's comment).
        let batch = unsorted.sorted { $0.key.lexicographicallyPrecedes($1.key) }
        let session: PGConnection
        do {
            session = try ready(&connection)
        } catch {
            for request in batch { request.complete(.failure(error)) }
            return
        }
        let deadline = batch.map(\.deadline).min() ?? pool.deadline()
        do {
            switch try session.transaction(statementName, batch.map(\.values), deadline: deadline) {
            case .committed(let rows):
                for (request, rows) in zip(batch, rows) { request.complete(.success(rows)) }
            case .rolledBack(let index, let error):
                batch[index].complete(.failure(error))
                logger.error("the database refused one store of a batch; the others are stored one by one: \(error)")
                for (position, request) in batch.enumerated() where position != index {
                    alone(request, on: session)
                }
            }
        } catch {
            for request in batch { request.complete(.failure(error)) }
        }
        if !session.usable { connection = nil }
    }

    /// One request in a transaction of its own, after its batch was rolled back by another's statement.
    private func alone(_ request: Request, on session: PGConnection) {
        guard session.usable else {
            request.complete(.failure(PGError(.connection, "the database connection is closed")))
            return
        }
        do {
            switch try session.transaction(statementName, [request.values], deadline: request.deadline) {
            case .committed(let rows): request.complete(.success(rows[0]))
            case .rolledBack(_, let error): request.complete(.failure(error))
            }
        } catch {
            request.complete(.failure(error))
        }
    }

    /// The writer's session, opened (and the statement prepared) when it has none or the one it had is gone.
    private func ready(_ connection: inout PGConnection?) throws(PGError) -> PGConnection {
        if let existing = connection, existing.stillOpen() { return existing }
        connection = nil
        let fresh = try pool.openDedicated()
        try fresh.prepare(statementName, statement, deadline: pool.deadline())
        connection = fresh
        return fresh
    }
}
