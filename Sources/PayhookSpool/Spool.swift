#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
public import Logging
import PayhookLock
public import PayhookSpoolFormat

/// A durable, Maildir-like queue directory with a dedupe ledger.
///
/// ```
/// SPOOL/
///   tmp/        files being written (unnamed, O_TMPFILE, where the file system allows); consumers never read it
///   new/        published records, one file each, named <id>.json
///   cur/        records a consumer took (renamed from new/); deleting one acknowledges it
///   ids/        the dedupe ledger: ids/<id> is a hard link to the record's inode
///   conflicts/  audit copies of records whose id was known with other content: one per content, capped
///   corrupt/    files recovery could not parse; never deleted
///   .lock       flock'ed while a Spool is open; holds the holder's pid
///   .retention  the dedupe ledger's retention in seconds, "604800\n" (recordRetention(seconds:))
/// ```
///
/// Records are opaque: the spool only needs an id, a fingerprint, and an inspector that reads both back.
/// One `Spool` may be used from many threads; stores of different ids run concurrently, and their directory
/// fsyncs are shared by group commit (docs/durability.md §5): one writer thread publishes whatever stores are
/// pending as one batch, and answers each only once the batch is durable (a store that finds the writer idle
/// publishes itself, as a batch of one).
public final class Spool: Sendable {
    /// The spool directory, as given (without trailing slashes).
    public let directory: String
    /// What startup recovery repaired.
    public let recovery: SpoolRecoveryReport

    private let context: SpoolContext
    private let state: Locked<State>
    /// The writer that publishes stores in batches (docs/durability.md §5).
    private let committer: SpoolGroupCommit
    /// Where ``store(id:fingerprint:bytes:completion:)`` runs the stores that write: each blocks in its file's
    /// fsync and in its batch's, and the caller's thread must not.
    private let storeThreads: WorkerThreads
    /// What is in conflicts/, so that each conflicting content is kept once and within the caps.
    private let conflicts: SpoolConflictIndex

    private struct State {
        /// The .lock descriptor; nil once closed.
        var lockDescriptor: CInt?
        /// Stores in progress, per id, and how many callers use (or wait for) each one's gate.
        var inFlight: [String: (gate: Gate, users: Int)] = [:]
    }

    /// Fingerprints of ledger entries read before, by id, with the inode they were read from. A retry storm
    /// re-sends the same few events; for each repeat the ledger check is then one stat(2) instead of reading
    /// and parsing the entry. Entries never change in place (an entry is a hard link to an immutable record
    /// file), and one whose inode differs (removed by retention, stored again) is read afresh.
    private let knownFingerprints = Locked([String: (inode: UInt64, fingerprint: String)]())
    /// Bounds the memory of ``knownFingerprints``: about 1 KiB per entry at most.
    static let knownFingerprintLimit = 4096

    /// Lets one store of an id run at a time; the others wait for it.
    private final class Gate: Sendable {
        let semaphore = DispatchSemaphore(value: 1)
    }

    /// Opens the spool at `directory`: creates the layout if missing (the directory itself and its subfolders,
    /// not its parents), takes the lock (a second open throws `.locked`), checks that all subfolders are on
    /// one device and that the spool can create files in every folder it writes (tmp/, new/, ids/, conflicts/,
    /// corrupt/; `.notWritable` names the first that refuses), then runs recovery (see ``recovery``).
    ///
    /// - Parameters:
    ///   - directory: The spool directory. Its parent must exist.
    ///   - inspector: Reads id and fingerprint back out of stored bytes.
    ///   - fileSystem: The file-system calls to use; tests pass one that injects faults.
    ///   - logger: Receives recovery's summary (notice), quarantined files (error), failed clean-ups (warning) and
    ///     the failed directory fsync that makes the spool unhealthy (critical).
    ///   - minimumFreeBytes: The free-space guard (docs/durability.md §7, Postfix's `queue_minfree`): while the spool's
    ///     file system has fewer bytes available than this, ``store(_:)`` and ``probe()`` throw `.noSpace` before
    ///     writing anything. 0, the default, switches the guard off. It needs a file system whose
    ///     ``SpoolFileSystem/availableBytes(_:)`` works, as ``PosixFileSystem``'s does.
    ///   - maxBatch: Group commit (docs/durability.md §5): at most this many concurrent stores share one fsync(new/)
    ///     and one fsync(ids/). At least 1; 1 publishes one store at a time.
    ///   - onBatch: Called with the size of every batch, on the thread that publishes it (the writer, or a lone
    ///     store), before it touches the disk; for a metrics histogram. It must be quick and must not store into
    ///     this spool. ``batchSizeHistogram`` keeps the same numbers.
    ///   - conflictLimits: How many audit copies of conflicting records conflicts/ may hold, per record id and in
    ///     all. Each distinct content is kept once; beyond a cap nothing is written (see ``SpoolOutcome``).
    ///     conflicts/ is listed at open to count what is there.
    ///   - storeThreads: The most stores ``store(id:fingerprint:bytes:completion:)`` runs at once, each on a
    ///     thread of its own that waits for the disk; more wait for a thread. Stores in flight bound durable
    ///     throughput (Little's law: stores in flight ÷ the time one takes), so this is set above the number of
    ///     stores a batch usually gathers. Threads are started as stores need them.
    public init(
        directory: String,
        inspector: any SpoolRecordInspector,
        fileSystem: any SpoolFileSystem = PosixFileSystem(),
        logger: Logger,
        minimumFreeBytes: UInt64 = 0,
        maxBatch: Int = 128,
        onBatch: (@Sendable (Int) -> Void)? = nil,
        conflictLimits: SpoolConflictLimits = SpoolConflictLimits(),
        storeThreads: Int = 64
    ) throws(SpoolError) {
        let root = SpoolFormat.normalize(directory)
        guard !root.isEmpty else {
            throw SpoolError(code: .layout, message: "the spool directory path is empty")
        }
        let context = SpoolContext(
            root: root,
            fileSystem: fileSystem,
            inspector: inspector,
            logger: logger,
            minimumFreeBytes: minimumFreeBytes
        )
        try SpoolLayout.create(context)
        let lockDescriptor = try SpoolLayout.lock(context)
        let report: SpoolRecoveryReport
        let conflicts = SpoolConflictIndex(context: context, limits: conflictLimits)
        do throws(SpoolError) {
            try SpoolLayout.check(context)
            try SpoolLayout.checkWritable(context)
            report = try SpoolRecovery.run(context)
            context.checkUnnamedFiles()
            // Counted from disk, so that the caps hold across restarts.
            try conflicts.recount()
        } catch {
            context.closeQuietly(lockDescriptor, shown: SpoolFormat.lockFile)
            throw error
        }
        self.directory = root
        self.recovery = report
        self.context = context
        self.conflicts = conflicts
        self.state = Locked(State(lockDescriptor: lockDescriptor))
        self.committer = SpoolGroupCommit(context: context, maxBatch: maxBatch, onBatch: onBatch)
        self.storeThreads = WorkerThreads(limit: storeThreads)
        committer.start()
        if !report.isEmpty {
            logger.notice("spool recovery: \(report)", metadata: ["spool": "\(root)"])
        }
    }

    deinit {
        close()
    }

    // MARK: - Health and counters

    /// False once a directory fsync has failed (in a store, a conflict or a roll-back). From then on the spool
    /// no longer knows which names in that directory are durable: after a failed fsync the kernel may have
    /// dropped the unwritten entries and will not report it again, so a later fsync that succeeds proves
    /// nothing (docs/durability.md §6, PostgreSQL's "fsyncgate"). Every ``store(_:)`` and ``probe()`` then throws
    /// `.unhealthy`. Nothing clears it: close this spool and open a new one (or restart the process), whose
    /// recovery re-checks new/ and ids/ from what is actually on disk. A failed fsync of a record *file* does
    /// not make the spool unhealthy: that file is discarded and never published (rule 1).
    public var isHealthy: Bool {
        context.monitor.unhealthyCause == nil
    }

    /// The failed directory fsync that made the spool unhealthy, e.g. "fsync new/: Input/output error";
    /// nil while it is healthy.
    public var unhealthyReason: SpoolError? {
        context.monitor.unhealthyCause
    }

    /// Storage errors since this spool was opened, by kind, keyed by ``SpoolFailureKind/rawValue`` ("write",
    /// "fsync_file", "fsync_dir", "open", "link", "unlink", "read", "close", "min_free", "other"). Every kind
    /// is present, at 0 until it happens. Thread-safe; meant for a metrics exporter.
    public var failureCounts: [String: Int] {
        Dictionary(uniqueKeysWithValues: context.monitor.counts.map { ($0.key.rawValue, $0.value) })
    }

    /// Group commit (docs/durability.md §5): batch size → how many batches of that size the writer published since
    /// this spool was opened. Sizes run from 1 to ``maxBatch``; a size that never happened is absent. Thread-safe;
    /// for a metrics exporter (payhook exports it as `payhook_spool_commit_batch_size`), or to see how many directory
    /// fsync pairs the stores shared (the number of batches against the sum of their sizes).
    public var batchSizeHistogram: [Int: Int] {
        committer.histogram
    }

    /// The most stores one batch publishes (the `maxBatch` given at init, at least 1).
    public var maxBatch: Int {
        committer.maxBatch
    }

    /// Test hook: the writer takes no batch until ``resumeCommits()``, so that a test can gather several stores
    /// and have them published as one batch. ``close()`` still ends them (with `.closed`).
    @_spi(Testing)
    public func suspendCommits() {
        committer.suspend()
    }

    @_spi(Testing)
    public func resumeCommits() {
        committer.resume()
    }

    /// Test hook: the state of this spool's writer thread, which stays readable after the spool is released.
    @_spi(Testing)
    public var writerStatus: SpoolWriterStatus {
        committer.status
    }

    /// Test hook: how many stores wait for the writer and were not taken into a batch yet.
    @_spi(Testing)
    public var pendingCommits: Int {
        committer.pendingCount
    }

    /// Test hook: the store threads started, and how many of them wait for a store.
    @_spi(Testing)
    public var storeThreadCount: (started: Int, idle: Int) {
        (storeThreads.threadCount, storeThreads.idleCount)
    }

    /// Conflicting records since this spool was opened, by what became of them, keyed by
    /// ``SpoolConflictDisposition/rawValue``: "kept" (a new audit copy), "repeated" (its content was kept
    /// already), "dropped" (over a cap). Every key is present, at 0 until it happens. Thread-safe; for metrics.
    public var conflictCounts: [String: Int] {
        Dictionary(uniqueKeysWithValues: conflicts.counts.map { ($0.key.rawValue, $0.value) })
    }

    /// How many conflicting records had one disposition since this spool was opened.
    public func conflictCount(_ disposition: SpoolConflictDisposition) -> Int {
        conflicts.counts[disposition, default: 0]
    }

    /// The number of files in conflicts/ as the spool believes it: listed at open, plus the copies it kept since,
    /// minus those it found gone, corrected whenever it lists the folder again (before a drop over a cap). Files
    /// another process removed are only noticed then. Thread-safe; for a metrics gauge.
    public var conflictFiles: Int {
        conflicts.files
    }

    /// The caps on audit copies this spool was opened with.
    public var conflictLimits: SpoolConflictLimits {
        conflicts.limits
    }

    /// How many storage errors of one kind happened since this spool was opened.
    public func failureCount(_ kind: SpoolFailureKind) -> Int {
        context.monitor.counts[kind, default: 0]
    }

    /// Stops the writer and releases the lock. Safe to call twice; `deinit` calls it too. Later calls to
    /// ``store(_:)`` and ``probe()`` throw `.closed`. Stores waiting for the writer that it has not taken into a
    /// batch yet throw `.closed` (nothing of theirs was published); the batch being published is finished
    /// first, so every store is answered and none stays blocked, and the lock is only released once the writer
    /// has stopped. A store still writing its tmp/ file is not waited for, so close only once the callers have
    /// stopped storing.
    public func close() {
        let descriptor = state.withLock { state -> CInt? in
            defer { state.lockDescriptor = nil }
            return state.lockDescriptor
        }
        guard let descriptor else { return }
        // Before the lock goes: another process may open the spool as soon as it is released, and its recovery
        // must not run while this writer still links.
        committer.stop()
        // Stores not started yet still run, and throw .closed.
        storeThreads.stop()
        // Closing the descriptor releases the flock; the explicit unlock also covers a copy of the descriptor
        // that a fork without exec would still hold.
        try? context.fileSystem.flock(descriptor, operation: LOCK_UN)
        context.closeQuietly(descriptor, shown: SpoolFormat.lockFile)
    }

    /// Stores a record durably. Blocking; returns only once the outcome is durable.
    ///
    /// - Returns: `.stored` when the record is now published in new/ and entered in the ledger; `.duplicate`
    ///   when the ledger already has this id with the same fingerprint (nothing is written); `.conflict` when
    ///   it has this id with another fingerprint: the incoming bytes are kept in conflicts/ (`.kept`), or
    ///   were kept before (`.repeated`), or are over a cap of ``conflictLimits`` (`.dropped`). Fingerprints are
    ///   compared byte for byte.
    /// - Throws: `.invalidRecord` before touching the disk when the id is not 64 lowercase hex characters or the
    ///   bytes do not inspect to the record's own id and fingerprint; `.io` (or `.inconsistent`) when a step
    ///   failed, in which case nothing half-written is visible in new/ and the store may be retried; `.noSpace`
    ///   when the free-space guard refused it before writing; `.unhealthy` once a directory fsync has failed
    ///   (see ``isHealthy``); `.closed` after ``close()``. Every error means "not stored": answer so that the
    ///   sender retries.
    public func store(_ record: SpoolRecord) throws(SpoolError) -> SpoolOutcome {
        // The bytes exist already, so they are checked before the disk is touched, and only once.
        try validateID(record.id)
        try validateBytes(record)
        return try store(id: record.id, fingerprint: record.fingerprint, bytesChecked: true) { record.bytes }
    }

    /// Stores a record whose bytes are built only if they are to be written: a duplicate is answered from the
    /// ledger alone, without building (or re-reading) an event file. Retry storms are mostly duplicates
    /// (docs/protocols.md: WeChat re-sends every unacknowledged notification on a schedule).
    ///
    /// Outcomes and errors as ``store(_:)``. `bytes` runs at most once, inside the single-flight section of this
    /// id, and its result is checked against `id` and `fingerprint` (`.invalidRecord`) before anything is written.
    public func store(id: String, fingerprint: String, bytes: () -> [UInt8]) throws(SpoolError) -> SpoolOutcome {
        try validateID(id)
        return try store(id: id, fingerprint: fingerprint, bytesChecked: false, bytes: bytes)
    }

    /// ``store(id:fingerprint:bytes:)`` that does not hold the calling thread while the disk works: the outcome
    /// goes to `completion`, exactly once. A duplicate the ledger already holds durably is answered on the
    /// calling thread before this returns (one stat(2)); every other store runs on one of the spool's store
    /// threads, which writes and fsyncs the record and hands it to the writer; `completion` is called once the
    /// outcome is durable, by the writer after the batch's directory fsyncs (or by the store thread, for what
    /// needs no batch), so it must only hand the answer on: the writer's next batch waits for it. So a listener
    /// thread serving callbacks never waits for the disk, and a slow disk holds up only the stores that write
    /// (docs/architecture.md, "Waiting without a thread").
    public func store(
        id: String, fingerprint: String, bytes: @escaping @Sendable () -> [UInt8],
        completion: @escaping @Sendable (Result<SpoolOutcome, SpoolError>) -> Void
    ) {
        do throws(SpoolError) {
            if try isDurableDuplicate(id: id, fingerprint: fingerprint) {
                completion(.success(.duplicate))
                return
            }
        } catch {
            completion(.failure(error))
            return
        }
        storeOnStoreThread(id: id, fingerprint: fingerprint, bytes: bytes, completion: completion)
    }

    /// The second half of ``store(id:fingerprint:bytes:completion:)``, for a caller that asked
    /// ``isDurableDuplicate(id:fingerprint:)`` itself first (so that a duplicate costs it no closure): the full
    /// store, on a store thread.
    public func storeOnStoreThread(
        id: String, fingerprint: String, bytes: @escaping @Sendable () -> [UInt8],
        completion: @escaping @Sendable (Result<SpoolOutcome, SpoolError>) -> Void
    ) {
        // The store thread writes and fsyncs the record, hands it to the writer and takes its next store; the
        // writer finishes this one once its batch is durable (SpoolGroupCommit).
        let submitted = storeThreads.submit { [self] in
            store(id: id, fingerprint: fingerprint, bytesChecked: false, bytes: bytes, completion: completion)
        }
        // Closed (the store ends .closed), or no thread could be started: the caller's thread stores.
        if !submitted {
            store(id: id, fingerprint: fingerprint, bytesChecked: false, bytes: bytes, completion: completion)
        }
    }

    /// Whether the ledger holds `id` with this fingerprint durably, read without the id's gate, so that a retry
    /// storm's duplicates never wait for a thread or for one another. False sends the store down the full path.
    ///
    /// An entry is linked into ids/ before its batch's fsync(ids/) returns, and only by a store holding the
    /// id's gate (storeChecked, SpoolGroupCommit.enterInLedger). So the entry is read first and the gates looked
    /// at after: if no store of this id is in flight then, whichever store linked the entry has left its gate,
    /// after its fsync(ids/) returned; had that fsync failed, the spool is unhealthy, which is checked last.
    ///
    /// True is a store's outcome, `.duplicate`, counted as one; false writes and counts nothing. Throws what
    /// ``store(id:fingerprint:bytes:)`` would throw before writing (an invalid id, closed, unhealthy, an
    /// unreadable ledger entry).
    public func isDurableDuplicate(id: String, fingerprint: String) throws(SpoolError) -> Bool {
        try validateID(id)
        try requireUsable()
        do throws(SpoolError) {
            guard case .present(fingerprint: let known?) = try ledgerEntry(id), SpoolBytes.same(known, fingerprint),
                  state.withLock({ $0.inFlight[id] == nil })
            else { return false }
            try requireHealthy()
        } catch {
            context.monitor.storeEnded(.failed(error))
            throw error
        }
        context.monitor.storeEnded(.wroteNothing)
        context.logger.debug("duplicate of ids/\(id)", metadata: ["spool": "\(directory)"])
        return true
    }

    /// The blocking store: the one below, waited for.
    private func store(
        id: String, fingerprint: String, bytesChecked: Bool, bytes: () -> [UInt8]
    ) throws(SpoolError) -> SpoolOutcome {
        let answer = Handoff<Result<SpoolOutcome, SpoolError>>()
        store(id: id, fingerprint: fingerprint, bytesChecked: bytesChecked, bytes: bytes) { answer.give($0) }
        return try answer.wait().get()
    }

    /// Every store's steps (docs/durability.md §3.1). `completion` gets the outcome exactly once, once it is
    /// durable: on the calling thread for anything that needs no batch (a duplicate, a conflict, a failure before
    /// publishing) or when the calling thread published a batch of one itself; otherwise on the writer thread,
    /// after the batch holding this record is durable. Until then this store holds its id's gate.
    private func store(
        id: String, fingerprint: String, bytesChecked: Bool, bytes: () -> [UInt8],
        completion: @escaping @Sendable (Result<SpoolOutcome, SpoolError>) -> Void
    ) {
        do throws(SpoolError) {
            try requireUsable()
        } catch {
            context.monitor.storeEnded(.failed(error))
            completion(.failure(error))
            return
        }
        // Step 1, single flight per id: a second store of the same id waits here until the first finished,
        // then looks at the ledger itself. It does not take over the first one's outcome, which may have been
        // a failure, and whose record may differ from this one. Nor does it answer from a ledger entry another
        // store has linked but not yet made durable: that store holds this gate until its batch's fsyncs return.
        let gate = enter(id)
        let finish: @Sendable (Result<SpoolOutcome, SpoolError>) -> Void = { [self] result in
            // A directory fsync that failed in another store while this one ran may have dropped entries this one
            // relies on, and this store's own fsync succeeding afterwards does not prove otherwise (isHealthy).
            let checked = result.flatMap { outcome in
                Result { () throws(SpoolError) in
                    try requireHealthy()
                    return outcome
                }
            }
            leave(id, gate)
            // The health probe fails while the most recent store failed for a reason in the storage (probe()).
            switch checked {
            case .success(let outcome): context.monitor.storeEnded(outcome.wroteSomething ? .wrote : .wroteNothing)
            case .failure(let error): context.monitor.storeEnded(.failed(error))
            }
            completion(checked)
        }
        do throws(SpoolError) {
            // Step 2: the ledger decides.
            let entry = try ledgerEntry(id)
            if case .present(fingerprint: let known?) = entry, SpoolBytes.same(known, fingerprint) {
                context.logger.debug("duplicate of ids/\(id)", metadata: ["spool": "\(directory)"])
                finish(.success(.duplicate))
                return
            }
            let record = SpoolRecord(id: id, fingerprint: fingerprint, bytes: bytes())
            if !bytesChecked { try validateBytes(record) }
            guard entry == .absent else {
                finish(.success(try handleConflict(record)))
                return
            }
            try publish(record, then: finish)
        } catch {
            finish(.failure(error))
        }
    }

    /// Health probe: fails whenever stores would fail, and passes again by itself once the cause is repaired.
    ///
    /// Before touching the disk it throws `.closed`, `.unhealthy` or (from the free-space guard) `.noSpace`, as a
    /// store would. Then it checks, as opening does, that the spool can create files in every folder a store
    /// writes (tmp/, new/, ids/, conflicts/, corrupt/), with unnamed files that no consumer can see
    /// (`.notWritable` names the folder), and creates, writes, fsyncs and unlinks a small file in tmp/.
    ///
    /// It also throws while the most recent store ended in a storage error (`.io`, `.noSpace`, `.notWritable`,
    /// `.inconsistent`; not an invalid record or a duplicate), with that error's code and errno, until a later
    /// store succeeds or these checks show the cause repaired: they pass after having failed since, or the cause
    /// is one they re-check (a folder refusing new files, no space, no descriptors), so that their passing means
    /// it is gone. A cause they cannot reproduce (an EIO on a link) keeps the probe failing until a store
    /// succeeds: health never says ok while stores fail for a reason the probe cannot see.
    public func probe() throws(SpoolError) {
        try requireUsable()
        do throws(SpoolError) {
            for folder in SpoolFormat.serverWrittenFolders {
                try context.checkWritable(folder)
            }
            let temporary = try context.writeDurableTemporary(
                Array("probe\n".utf8),
                stem: "probe",
                suffix: context.uniqueSuffix()
            )
            do {
                try context.fileSystem.unlink(context.path(temporary))
            } catch {
                throw context.failure(.unlink, "unlink", temporary, error)
            }
        } catch {
            context.monitor.probeFailed()
            throw error
        }
        if let failure = context.monitor.probePassed() {
            throw SpoolError(
                code: failure.code,
                message: "the last store failed (\(failure)); the probe's own checks pass but cannot re-check "
                    + "that failure, so the spool counts as failing until a store succeeds",
                errno: failure.errno
            )
        }
    }

    // MARK: - Ledger retention

    /// Records how long the dedupe ledger keeps entries, for `payhook queue gc` in another process: writes the
    /// file `<spool>/.retention` holding the decimal number of seconds and one "\n" ("604800\n"), durably and
    /// atomically. It is written as tmp/retention.<unique> (a leftover is removed by recovery), fsynced, renamed
    /// over `.retention` (rename(2) replaces it atomically: a reader sees the old contents or the new, never a
    /// mix), and the spool directory is fsynced so that the new name survives a crash (fsync(2), NOTES).
    ///
    /// The free-space guard does not apply to these few bytes. A failed fsync of the spool directory throws but
    /// does not make the spool unhealthy: its other entries (the subfolders, `.lock`) were synced at open and
    /// only this file's name is in doubt; call again to be sure of it.
    ///
    /// - Throws: `.invalidArgument` for a number of seconds below 1 (nothing written), `.closed` after
    ///   ``close()``, `.io` when a step failed (the previous `.retention`, if any, is then still in place).
    public func recordRetention(seconds: Int) throws(SpoolError) {
        // The reader (`payhook queue gc`) takes only what SpoolRetentionFile decodes: zero would mean "keep nothing".
        guard let contents = SpoolRetentionFile.encode(seconds: seconds) else {
            throw SpoolError(code: .invalidArgument, message: "record retention: \(seconds) seconds is not positive")
        }
        let open = state.withLock { $0.lockDescriptor != nil }
        guard open else {
            throw SpoolError(code: .closed, message: "spool \(directory) is closed")
        }
        let target = SpoolRetentionFile.name
        let temporary = try context.writeDurableTemporary(
            contents, stem: "retention", suffix: context.uniqueSuffix(), checkingFreeSpace: false
        )
        do {
            try context.fileSystem.rename(context.path(temporary), context.path(target))
        } catch {
            context.removeTemporary(temporary)
            throw context.failure(.other, "rename", "\(temporary) to \(target)", error)
        }
        try context.fsyncDirectory(atPath: directory, shown: directory, marksUnhealthy: false)
    }

    // MARK: - Store steps

    private func validateID(_ id: String) throws(SpoolError) {
        guard EventID.isValid(id) else {
            throw SpoolError(
                code: .invalidRecord,
                message: "store \(EventID.quoted(id)): a record id must be 64 lowercase hex characters"
            )
        }
    }

    private func validateBytes(_ record: SpoolRecord) throws(SpoolError) {
        // Recovery and the ledger check read id and fingerprint back through the inspector. A record whose bytes
        // say something else would be quarantined at the next start, or never be recognised as a duplicate.
        guard let info = context.inspector.inspect(record.bytes),
              SpoolBytes.same(info.id, record.id), SpoolBytes.same(info.fingerprint, record.fingerprint)
        else {
            throw SpoolError(
                code: .invalidRecord,
                message: "store new/\(record.id).json: the record's bytes do not inspect to its own id and fingerprint"
            )
        }
    }

    private func requireUsable() throws(SpoolError) {
        let open = state.withLock { $0.lockDescriptor != nil }
        guard open else {
            throw SpoolError(code: .closed, message: "spool \(directory) is closed")
        }
        try requireHealthy()
    }

    private func requireHealthy() throws(SpoolError) {
        guard let cause = context.monitor.unhealthyCause else { return }
        throw SpoolError(
            code: .unhealthy,
            message: "spool \(directory) is unhealthy since \(cause); which records are durable is unknown "
                + "until it is reopened: restart payhook so that recovery re-checks it"
        )
    }

    private func enter(_ id: String) -> Gate {
        let gate = state.withLock { state -> Gate in
            if let entry = state.inFlight[id] {
                state.inFlight[id] = (entry.gate, entry.users + 1)
                return entry.gate
            }
            let gate = Gate()
            state.inFlight[id] = (gate, 1)
            return gate
        }
        gate.semaphore.wait()
        return gate
    }

    private func leave(_ id: String, _ gate: Gate) {
        gate.semaphore.signal()
        state.withLock { state in
            guard let entry = state.inFlight[id] else { return }
            state.inFlight[id] = entry.users > 1 ? (entry.gate, entry.users - 1) : nil
        }
    }

    private enum LedgerEntry: Equatable {
        case absent
        /// The fingerprint of the entry; nil when it cannot be read back as a record of this id, which the
        /// incoming record is then kept beside as a conflict, as for any other difference.
        case present(fingerprint: String?)
    }

    private func ledgerEntry(_ id: String) throws(SpoolError) -> LedgerEntry {
        let ledger = "ids/\(id)"
        guard let status = try context.status(ledger) else { return .absent }
        if let known = knownFingerprints.withLock({ $0[id] }), known.inode == status.inode {
            return .present(fingerprint: known.fingerprint)
        }
        let existing: [UInt8]
        do {
            existing = try context.fileSystem.readFile(context.path(ledger))
        } catch where error.rawValue == ENOENT {
            return .absent
        } catch {
            throw context.failure(.read, "read", ledger, error)
        }
        guard let info = context.inspector.inspect(existing), info.id == id else { return .present(fingerprint: nil) }
        knownFingerprints.withLock { known in
            if known.count >= Self.knownFingerprintLimit { known.removeAll(keepingCapacity: true) }
            known[id] = (status.inode, info.fingerprint)
        }
        return .present(fingerprint: info.fingerprint)
    }

    /// A record whose id the ledger knows with other content. Its content is kept once for audit: a repeat of
    /// content that has a copy in conflicts/ writes nothing, and neither does one over a cap of
    /// ``conflictLimits``; both are still answered as dealt with, since retrying would change nothing.
    private func handleConflict(_ record: SpoolRecord) throws(SpoolError) -> SpoolOutcome {
        if let copy = try conflicts.existingCopy(of: record.id, fingerprint: record.fingerprint) {
            conflicts.count(.repeated)
            context.logger.debug(
                "record \(record.id) differs from the one in the ledger; its content is kept already in \(copy)",
                metadata: ["spool": "\(directory)"]
            )
            return .conflict(auditFile: copy, disposition: .repeated)
        }
        switch try conflicts.reserve(record.id) {
        case .refused(let limit):
            if let dropped = conflicts.noteDrop() {
                let message = "record \(record.id) differs from the one in the ledger and is not kept: conflicts/ is "
                    + "at its limit of \(limit) (\(dropped) conflicting record(s) not kept since the last such warning)"
                context.logger.warning("\(message)", metadata: ["spool": "\(directory)"])
            }
            return .conflict(auditFile: nil, disposition: .dropped)
        case .granted:
            let audit: String
            do throws(SpoolError) {
                audit = try keepConflict(record)
            } catch {
                conflicts.release()
                throw error
            }
            conflicts.kept(record.id, String(audit.dropFirst("conflicts/".count)), fingerprint: record.fingerprint)
            conflicts.count(.kept)
            return .conflict(auditFile: audit, disposition: .kept)
        }
    }

    /// Keeps the bytes of a record whose id is known with other content in conflicts/<id>.<unique>.json,
    /// durably, for audit; returns that path. The original record is not touched.
    ///
    /// `<unique>` is the tmp/ suffix (pid, counter, microseconds) plus `I<inode>` of the file itself, as Postfix
    /// names queue files (`src/local/maildir.c`: device, inode and microseconds). Pid, counter and clock alone
    /// repeat after a restart that gets the same pid with the clock set back, and link(2) then fails with
    /// EEXIST on an earlier audit file; no two files alive at once share an inode, so this name cannot collide.
    private func keepConflict(_ record: SpoolRecord) throws(SpoolError) -> String {
        let suffix = context.uniqueSuffix()
        let temporary = try context.writeDurableTemporary(record.bytes, stem: record.id, suffix: suffix)
        let inode: UInt64
        do throws(SpoolError) {
            guard let status = try context.status(temporary) else {
                throw SpoolError(code: .io, message: "stat \(temporary): \(SpoolErrno(ENOENT))", errno: ENOENT)
            }
            inode = status.inode
        } catch {
            context.removeTemporary(temporary)
            throw error
        }
        let audit = "conflicts/\(record.id).\(suffix).I\(inode).json"
        do {
            try context.fileSystem.link(context.path(temporary), context.path(audit))
        } catch {
            context.removeTemporary(temporary)
            throw context.failure(.link, "link", "\(temporary) to \(audit)", error)
        }
        do throws(SpoolError) {
            try context.fsyncDirectory("conflicts")
        } catch {
            // Not reported as kept, so not left there either.
            do {
                try context.fileSystem.unlink(context.path(audit))
            } catch {
                context.monitor.count(.unlink)
                context.logger.warning("unlink \(audit): \(error)", metadata: ["spool": "\(directory)"])
            }
            context.removeTemporary(temporary)
            throw error
        }
        context.removeTemporary(temporary)
        context.logger.warning(
            "record \(record.id) differs from the one in the ledger; kept it in \(audit)",
            metadata: ["spool": "\(directory)"]
        )
        return audit
    }

    /// Steps 3 to 7: write the record (an unnamed file, or in tmp/), publish it in new/, enter it in the ledger;
    /// `then` gets the outcome once it is durable. Throws only what fails before the record is handed to the
    /// writer (`then` is not called then).
    private func publish(
        _ record: SpoolRecord, then: @escaping @Sendable (Result<SpoolOutcome, SpoolError>) -> Void
    ) throws(SpoolError) {
        // Step 3, on the caller's thread: the contents are durable under no name a consumer reads (an unnamed
        // file, or tmp/). The file fsyncs of concurrent stores overlap here (the block layer merges concurrent
        // flushes); only the directory steps are serialised, in the writer (docs/durability.md §5).
        let temporary = try context.writeDurableRecord(
            record.bytes,
            stem: record.id,
            suffix: context.uniqueSuffix()
        )
        let id = record.id

        // Steps 4 to 6, by the writer (or here, when it is idle), batched with whatever other stores are pending:
        // link into new/, one fsync(new/) for the batch, link into ids/, one fsync(ids/). `then` runs only after
        // that last fsync returned, so nobody is answered before the batch holding their record is durable
        // (docs/contract.md §4, invariant 1).
        committer.commit(SpoolGroupCommit.Request(id: id, temporary: temporary)) { [self] result in
            // Step 7: the temporary has done its job (or the store failed and was taken back): a tmp/ name is
            // unlinked (a leftover is removed by recovery), an unnamed file closed. Only after the batch, so that
            // the batch's steps hold nothing but what orders durability.
            context.removeTemporary(temporary)
            switch result {
            case .success:
                context.logger.debug("stored new/\(id).json", metadata: ["spool": "\(directory)"])
                then(.success(.stored))
            case .failure(let error):
                then(.failure(error))
            }
        }
    }
}
