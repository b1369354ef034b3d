#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import Logging
import PayhookLock
import PayhookSpoolFormat
import Synchronization

/// Group commit for the spool's publication steps (docs/durability.md §5).
///
/// Every store writes and fsyncs its own record file on its own thread; those file fsyncs overlap, and ext4's
/// jbd2 folds concurrent ones into one journal commit. What does not overlap by itself is the pair of
/// *directory* fsyncs: two per record if every store made its own. So the stores hand "publish this tmp/ file
/// as this id" to one writer thread, with what to do once that is done, and go on to their next store. The
/// writer takes everything pending (up to `maxBatch`), links each file into new/, makes one fsync(new/), links
/// each into ids/, makes one fsync(ids/), and only then finishes every store of the batch itself, each with its
/// own outcome: it lets go of the store's temporary and id and answers its caller, so a store's thread is not
/// woken again just to pass the answer on (bench/results/profiles.md counts the hand-offs). This is PostgreSQL's group
/// commit: one WAL flush makes every commit that is pending at that moment durable, and no backend reports its
/// commit before the flush that covers it returned. docs/contract.md §4, invariant 1 allows exactly this ("batching
/// fsyncs across concurrent requests is allowed; answering before the batch is durable is not").
///
/// Batches form by themselves: while the writer is inside one batch's fsyncs, the next stores queue up behind
/// it, so the batch size follows the load, one record when stores come one at a time (the same calls, in the
/// same order, as a store that publishes on its own thread). PostgreSQL's `commit_delay` (waiting a little
/// before the flush so that more commits can join, only when `commit_siblings` others are active) is not used:
/// on this project's VM the flushes are absorbed by the host (docs/durability.md §5, "Measured on a VM"), so a
/// deliberate wait would only add latency. Measure on the deployment disk before adding one.
///
/// A store that finds the writer idle and nothing pending publishes its own record on its own thread instead
/// (a batch of one, the same steps), so that a lone store pays no hand-off to the writer; `perf` showed the
/// futex waits of hand-offs at a tenth of the CPU of a store. While it does, it holds the writer's place:
/// stores arriving meanwhile queue up, and it wakes the writer for them when it is done. So batches still form
/// under load, and there is never more than one batch in flight.
///
/// The writer is a dedicated thread, not a task on Swift's cooperative pool: it blocks in fsync(2) for as long
/// as the disk takes, and a blocked pool thread would starve unrelated work.
final class SpoolGroupCommit: Sendable {
    /// A store handed to the writer: its durable tmp/ file, to be published under its id.
    struct Request: Sendable {
        let id: String
        let temporary: SpoolContext.Temporary
        var published: String { "new/\(id).json" }
        var ledger: String { "ids/\(id)" }
    }

    /// What finishes a store once its batch is durable (or failed): called exactly once, by the writer, by the
    /// store's own thread when it published a batch of one, or by ``stop()`` for a store it abandons.
    typealias Completion = @Sendable (Result<Void, SpoolError>) -> Void

    private struct Queue {
        var pending: [(request: Request, completion: Completion)] = []
        /// Set by ``stop()``: nothing more is accepted, and the writer exits once its current batch is done.
        var stopping = false
        /// Test hook (``suspend()``): the writer does not take a batch while this is set.
        var suspended = false
        /// Batch size → how many batches had that size.
        var histogram: [Int: Int] = [:]
        /// The writer thread, to tell whether ``stop()`` is called from inside a batch (a fault action in a test,
        /// a logger): that call cannot wait for the writer to finish.
        var writer: pthread_t?
        /// The thread publishing a batch right now, the writer or a store publishing its own record; nil when
        /// none is. At most one batch is in flight.
        var committer: pthread_t?
    }

    let maxBatch: Int
    private let context: SpoolContext
    private let onBatch: (@Sendable (Int) -> Void)?
    private let queue = Locked(Queue())
    /// One signal per request and one for each change of state; the writer waits on it for work. Taking a batch
    /// consumes one signal, so while requests are left (more than maxBatch were pending) the wait returns at once.
    private let wakeUp = DispatchSemaphore(value: 0)
    /// Signalled by the writer when it exits.
    private let exited = DispatchSemaphore(value: 0)
    /// Whether the writer thread runs; outlives the spool, so a test can see that dropping it stopped the thread.
    let status = SpoolWriterStatus()

    init(context: SpoolContext, maxBatch: Int, onBatch: (@Sendable (Int) -> Void)?) {
        self.context = context
        self.maxBatch = max(1, maxBatch)
        self.onBatch = onBatch
    }

    /// Starts the writer thread. It holds this object, not the ``Spool``, so that dropping the spool still runs
    /// its deinit, which stops the writer.
    func start() {
        status.set(running: true)
        let thread: pthread_t
        do {
            thread = try startDetachedThread { [self] in self.run() }
        } catch {
            // Without a thread no store could ever be answered; fail them instead of blocking them forever.
            context.logger.critical(
                "cannot start the spool writer thread: \(SpoolErrno(error.code))",
                metadata: ["spool": "\(context.root)"]
            )
            queue.withLock { $0.stopping = true }
            status.set(running: false)
            exited.signal()
            return
        }
        // Nobody joins it: stop() waits for `exited` instead.
        queue.withLock { $0.writer = thread }
    }

    /// Hands a durable tmp/ file to the writer; `completion` gets the outcome once its batch is durable (or
    /// failed). When the writer is idle and nothing is pending, the batch of one is published on the calling
    /// thread and `completion` runs there before this returns; otherwise it runs on the writer thread.
    func commit(_ request: Request, completion: @escaping Completion) {
        enum Route { case closed, inline, queued }
        let route = queue.withLock { queue -> Route in
            guard !queue.stopping else { return .closed }
            if queue.committer == nil, queue.pending.isEmpty, !queue.suspended {
                queue.committer = pthread_self()
                queue.histogram[1, default: 0] += 1
                return .inline
            }
            queue.pending.append((request, completion))
            return .queued
        }
        switch route {
        case .closed:
            completion(.failure(closedError()))
        case .queued:
            wakeUp.signal()
        case .inline:
            let (outcomes, waiting) = publishClaimed([request])
            // Stores that queued behind this one (and a stop() waiting for it) are the writer's now.
            if waiting { wakeUp.signal() }
            completion(outcomes[0])
        }
    }

    /// Publishes a batch the calling thread has claimed (it is `committer`), then gives up the claim. Returns
    /// the outcomes, in order, and whether stores (or a stop) are waiting for the writer.
    private func publishClaimed(_ batch: [Request]) -> (outcomes: [Result<Void, SpoolError>], waiting: Bool) {
        onBatch?(batch.count)
        let outcomes = publish(batch)
        let waiting = queue.withLock { queue -> Bool in
            queue.committer = nil
            return !queue.pending.isEmpty || queue.stopping
        }
        return (outcomes, waiting)
    }

    /// Stops the writer: requests it has not taken yet fail with `.closed`; the batch in progress finishes, and
    /// this waits for it (except when called on the writer thread itself, which cannot wait for itself).
    /// Safe to call twice.
    func stop() {
        let (abandoned, wasStopping, onWriter) = queue.withLock { queue in
            defer {
                queue.stopping = true
                queue.pending = []
            }
            let onWriter = [queue.writer, queue.committer].contains { thread in
                thread.map { pthread_equal($0, pthread_self()) != 0 } ?? false
            }
            return (queue.pending.map(\.completion), queue.stopping, onWriter)
        }
        for completion in abandoned {
            completion(.failure(closedError()))
        }
        guard !wasStopping else { return }
        wakeUp.signal()
        if !onWriter {
            exited.wait()
            // A store publishing its own record finishes its batch too (its stores are answered from it); the
            // spool is only closed after that. Such a batch is a few system calls, or one fsync.
            while queue.withLock({ $0.committer != nil }) {
                usleep(200)
            }
        }
    }

    /// Test hook: the writer takes no batch until ``resume()``, so that a test can make several stores pend and
    /// then have them published as one batch. ``stop()`` overrides it.
    func suspend() {
        queue.withLock { $0.suspended = true }
    }

    func resume() {
        queue.withLock { $0.suspended = false }
        wakeUp.signal()
    }

    /// How many stores wait for the writer and are not taken yet.
    var pendingCount: Int {
        queue.withLock { $0.pending.count }
    }

    var histogram: [Int: Int] {
        queue.withLock { $0.histogram }
    }

    private func closedError() -> SpoolError {
        SpoolError(code: .closed, message: "spool \(context.root) is closed")
    }

    // MARK: - The writer

    private func run() {
        defer {
            status.set(running: false)
            exited.signal()
        }
        while true {
            wakeUp.wait()
            let (batch, exit) = queue.withLock { queue -> ([(request: Request, completion: Completion)], Bool) in
                if queue.stopping { return ([], true) }
                // A store is publishing its own record: it wakes the writer again when it is done.
                if queue.suspended || queue.committer != nil { return ([], false) }
                let count = min(queue.pending.count, maxBatch)
                guard count > 0 else { return ([], false) }
                let batch = Array(queue.pending.prefix(count))
                queue.pending.removeFirst(count)
                queue.histogram[count, default: 0] += 1
                queue.committer = pthread_self()
                return (batch, false)
            }
            if exit { return }
            guard !batch.isEmpty else { continue }
            // Each store that queued meanwhile signalled wakeUp, so the writer needs no extra wake-up here.
            let (outcomes, _) = publishClaimed(batch.map(\.request))
            for (entry, outcome) in zip(batch, outcomes) {
                entry.completion(outcome)
            }
        }
    }

    /// Steps 4 to 6 of a store, for a whole batch; returns each request's outcome, in order. The temporaries
    /// (tmp/ names, or open unnamed files) are left for the stores to let go of once answered: they are only a
    /// clean-up (recovery removes leftover names), and a rollback of a store that a consumer overtook still
    /// needs its temporary to enter it in the ledger.
    private func publish(_ batch: [Request]) -> [Result<Void, SpoolError>] {
        var outcomes = [Result<Void, SpoolError>](repeating: .success(()), count: batch.count)
        if let refusal = unhealthyRefusal() {
            return outcomes.map { _ in .failure(refusal) }
        }
        let linked = linkIntoNew(batch, &outcomes)
        guard !linked.isEmpty, syncNew(batch, linked, &outcomes) else { return outcomes }
        let entered = enterInLedger(batch, linked, &outcomes)
        guard !entered.isEmpty else { return outcomes }
        syncLedger(batch, entered, &outcomes)
        return outcomes
    }

    /// A directory fsync failed in an earlier batch: which names are durable is unknown, so nothing more is
    /// published (the stores would be refused as unhealthy at the end anyway, docs/durability.md).
    private func unhealthyRefusal() -> SpoolError? {
        guard let cause = context.monitor.unhealthyCause else { return nil }
        return SpoolError(
            code: .unhealthy,
            message: "spool \(context.root) is unhealthy since \(cause); which records are durable is unknown "
                + "until it is reopened: restart payhook so that recovery re-checks it"
        )
    }

    /// Step 4, per record: publish with link(2), never rename(2). link fails with EEXIST where rename would
    /// silently replace a record that is already there. This is how maildir(5) delivers ("HOW A MESSAGE IS
    /// DELIVERED": write and fsync tmp/, link() into new/, and qmail-local unlinks the tmp name after). Returns
    /// the indexes of the records linked.
    private func linkIntoNew(_ batch: [Request], _ outcomes: inout [Result<Void, SpoolError>]) -> [Int] {
        var linked: [Int] = []
        for (index, request) in batch.enumerated() {
            do {
                try context.link(request.temporary, to: request.published)
                linked.append(index)
            } catch {
                context.monitor.count(.link)
                outcomes[index] = .failure(linkFailure(request, error))
            }
        }
        return linked
    }

    /// Why a link into new/ failed. EEXIST is a record in new/ without a ledger entry: a crash between fsync(new/)
    /// and fsync(ids/), or a rollback that could not unlink. Startup recovery links it into the ledger; until then
    /// this id cannot be stored.
    private func linkFailure(_ request: Request, _ error: SpoolErrno) -> SpoolError {
        guard error.rawValue == EEXIST else {
            return .io("link", "\(request.temporary.shown) to \(request.published)", error)
        }
        let failure = SpoolError(
            code: .inconsistent,
            message: "link \(request.temporary.shown) to \(request.published): \(error) (published without "
                + "a ledger entry; recovery repairs this at the next start)",
            errno: error.rawValue
        )
        context.logger.error("\(failure)", metadata: ["spool": "\(context.root)"])
        return failure
    }

    /// Step 5, once for the batch: make every new/ entry durable. If it fails, none of them is known to be
    /// durable, so every store of the batch fails and is taken back (the spool is now unhealthy). Returns whether
    /// it succeeded.
    private func syncNew(_ batch: [Request], _ linked: [Int], _ outcomes: inout [Result<Void, SpoolError>]) -> Bool {
        do throws(SpoolError) {
            try context.fsyncDirectory("new")
            return true
        } catch {
            for index in linked {
                rollBack(batch[index])
                outcomes[index] = .failure(error)
            }
            return false
        }
    }

    /// Step 6, per record: only now enter it in the ledger. An ids/ entry must imply that its record was durably
    /// published: a store that finds one answers "duplicate", and recovery only repairs the other direction (a
    /// record without an entry). Linking before fsync(new/) returned could leave, after a crash, an entry whose
    /// record was lost, and every retry of it would be answered "duplicate". Returns the indexes entered.
    private func enterInLedger(
        _ batch: [Request], _ linked: [Int], _ outcomes: inout [Result<Void, SpoolError>]
    ) -> [Int] {
        var entered: [Int] = []
        for index in linked {
            let request = batch[index]
            do {
                try context.link(request.temporary, to: request.ledger)
                entered.append(index)
            } catch {
                rollBack(request)
                outcomes[index] = .failure(
                    context.failure(.link, "link", "\(request.temporary.shown) to \(request.ledger)", error))
            }
        }
        return entered
    }

    /// Once for the batch: make every ledger entry durable; only then is any store of the batch answered.
    ///
    /// If it fails, the records are durable in new/; only their ledger entries may not survive a crash. Taking
    /// them back now could fail half-way and leave an entry without a record, which loses it; so both stay. The
    /// spool is now unhealthy (fsyncDirectory), so retries are refused until it is reopened; recovery then
    /// relinks lost entries from new/ or cur/, and a retry is answered "duplicate", which is true. If the
    /// consumer had already deleted a record, a retry stores it again (delivered twice, never lost).
    private func syncLedger(_ batch: [Request], _ entered: [Int], _ outcomes: inout [Result<Void, SpoolError>]) {
        do throws(SpoolError) {
            try context.fsyncDirectory("ids")
        } catch {
            for index in entered {
                let request = batch[index]
                context.logger.error(
                    "\(request.published) is published but \(request.ledger) may not be durable: \(error)",
                    metadata: ["spool": "\(context.root)"]
                )
                outcomes[index] = .failure(error)
            }
        }
    }

    /// Takes back a record whose publication failed after the link into new/ (fsync(new/), or its link into ids/).
    private func rollBack(_ request: Request) {
        let fileSystem = context.fileSystem
        let published = request.published
        let ledger = request.ledger
        do {
            try fileSystem.unlink(context.path(published))
            // new/ is not synced after this unlink: if a crash brings the record back, recovery enters it in
            // the ledger and it is delivered, while the sender, told "failure", retries and gets "duplicate".
            context.logger.warning(
                "took back \(published) after a failed store",
                metadata: ["spool": "\(context.root)"]
            )
        } catch where error.rawValue == ENOENT {
            // A consumer already took the record (renamed it to cur/, maybe deleted it). It will be delivered, so
            // the ledger entry is created anyway, best effort, so that the sender's retry is a duplicate.
            do throws(SpoolError) {
                do {
                    try context.link(request.temporary, to: ledger)
                } catch where error.rawValue == EEXIST {
                    // Already there.
                } catch {
                    throw context.failure(.link, "link", "\(request.temporary.shown) to \(ledger)", error)
                }
                try context.fsyncDirectory("ids")
            } catch {
                let message = "\(published) was taken by a consumer before it was durable, and \(ledger) "
                    + "could not be entered: \(error); a retry will store it again"
                context.logger.error("\(message)", metadata: ["spool": "\(context.root)"])
            }
        } catch {
            context.monitor.count(.unlink)
            let message = "unlink \(published): \(error); it stays published without a ledger entry until "
                + "recovery at the next start enters it"
            context.logger.error("\(message)", metadata: ["spool": "\(context.root)"])
        }
    }
}

/// Test hook: whether a spool's writer thread is still running. Kept after the spool itself is gone.
@_spi(Testing)
public final class SpoolWriterStatus: Sendable {
    private let running = Atomic<Bool>(false)

    public var isRunning: Bool {
        running.load(ordering: .acquiring)
    }

    func set(running value: Bool) {
        running.store(value, ordering: .releasing)
    }
}
