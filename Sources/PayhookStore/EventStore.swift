public import PayhookCore

/// The storage seam on the receiving side: what the router needs from wherever events are kept.
///
/// The spool directory (`PayhookSpool`) and PostgreSQL (`PayhookPostgres`) implement it. A store is given the
/// verified event: its id (its dedupe key's hash), the fingerprint of its verified fields, the columns a
/// database indexes, and its bytes (`Event.jsonBytes()`, rendered only when the store needs them). The router
/// answers the sender success only after ``store(_:)`` returned, and 503 when it threw
/// (docs/architecture.md, "Where a new store goes").
public protocol EventStore: Sendable {
    /// Stores an event once. Returns `.stored` when it is now durable, `.duplicate` when an event with this id
    /// and fingerprint was stored before (nothing written), `.conflict` when this id was stored with another
    /// fingerprint (the original stays; the new one is never delivered).
    ///
    /// - Throws: when the event may not be durable; the caller answers "try again".
    func store(_ event: Event) throws(StoreError) -> StoreOutcome

    /// ``store(_:)`` whose result is handed to `completion` exactly once, on any thread, now or later. A store
    /// whose writes wait for a batch (a database's group commit) answers from its writer, so that the caller's
    /// thread is not held meanwhile. The default stores at once and calls `completion` before returning.
    func store(_ event: Event, completion: @escaping @Sendable (Result<StoreOutcome, StoreError>) -> Void)

    /// ``store(_:completion:)`` for a caller that holds the event's fingerprint already: `fingerprint` is
    /// ``Event/fingerprint`` of this event, which the router computes once, for the store and for the verdict it
    /// may keep (docs/architecture.md, "Retries that are the same bytes"). The default forwards to
    /// ``store(_:completion:)``, which computes it again.
    func store(_ event: Event, fingerprint: String, completion: @escaping @Sendable (Result<StoreOutcome, StoreError>) -> Void)

    /// Whether an event with this id and fingerprint is stored already, durably, as far as the store can tell at
    /// once without writing or waiting: the router then answers a retry it verified before as a duplicate
    /// without making its event again (docs/architecture.md, "Retries that are the same bytes"). false when the
    /// store cannot tell at once or at all (unhealthy, closed): the caller then stores the event as usual, which
    /// gives the outcome, or the error, for certain. The default is false.
    func isStoredDuplicate(id: String, fingerprint: String) -> Bool

    /// Checks that a store would succeed now (for `/healthz`), without storing anything.
    func probe() throws(StoreError)

    /// Why the store will refuse every write until it is reopened, or nil while it works. A process whose store
    /// turned unhealthy stops, so that a restart re-checks what is durable.
    var unhealthyReason: String? { get }

    /// Counters for `/metrics`, read at each scrape; cheap, from memory.
    func counts() -> StoreCounts

    /// Events waiting, taken and dead-lettered, conflict copies and quarantined files, by folder name, and when
    /// the oldest waiting and taken events arrived (`payhook_spool_files`, `payhook_queue_oldest_event_age_seconds`);
    /// nil when they cannot be read now (a database that does not answer). Apart from ``counts()`` because it
    /// reads the disk or the database: `/metrics` asks for it at most once per scrape, less often when it is slow
    /// (docs/metrics.md, "Cost").
    func census() -> QueueCensus?

    /// Tells the consumer side (its gc) the shortest time a dedupe entry must be kept.
    func recordRetention(seconds: Int) throws(StoreError)

    /// Ends every write; later calls throw. Safe to call twice.
    func close()
}

extension EventStore {
    public func store(_ event: Event, completion: @escaping @Sendable (Result<StoreOutcome, StoreError>) -> Void) {
        completion(Result { () throws(StoreError) in try store(event) })
    }

    public func store(_ event: Event, fingerprint: String, completion: @escaping @Sendable (Result<StoreOutcome, StoreError>) -> Void) {
        store(event, completion: completion)
    }

    public func isStoredDuplicate(id: String, fingerprint: String) -> Bool { false }
}

/// The caps on audit copies of conflicting variants, the same for every store: a flood of validly signed variants
/// of one event must not fill the disk (README, "Defences against attacks"). `max_conflicts_per_event` and
/// `max_conflicts` in the config default to these.
public enum ConflictCaps {
    /// At most this many kept variants per event id.
    public static let defaultPerEvent = 16
    /// At most this many kept variants in all.
    public static let defaultTotal = 1000
}

/// What became of one ``EventStore/store(_:)``.
public enum StoreOutcome: Sendable, Equatable {
    /// Durable, and delivered to consumers.
    case stored
    /// Stored before with the same fingerprint; nothing was written.
    case duplicate
    /// Stored before with another fingerprint. `auditCopy` names where this variant was kept for an operator
    /// (nil when it was not kept); it is never delivered.
    case conflict(auditCopy: String?, disposition: ConflictDisposition)
}

/// What a store did with a conflicting variant.
public enum ConflictDisposition: String, Sendable, CaseIterable {
    /// A new audit copy was written.
    case kept
    /// This exact variant already has its audit copy.
    case repeated
    /// Over a cap on audit copies: counted, not kept.
    case dropped
}

/// A store that failed: one sentence for the log, and the `errno` behind it when a system call failed (a
/// metrics label such as `ENOSPC`).
public struct StoreError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public var errno: Int32?

    public init(_ description: String, errno: Int32? = nil) {
        self.description = description
        self.errno = errno
    }
}

/// A store's counters, as `/metrics` exports them. Every map is keyed by the label value.
public struct StoreCounts: Sendable, Equatable {
    /// Failed operations since start, by kind (`payhook_spool_failures`).
    public var failures: [String: Int]
    /// Conflicting events since start, by ``ConflictDisposition`` raw value.
    public var conflicts: [String: Int]
    /// Events published together per commit: batch size → number of batches.
    public var batchSizes: [Int: Int]

    public init(failures: [String: Int] = [:], conflicts: [String: Int] = [:], batchSizes: [Int: Int] = [:]) {
        self.failures = failures
        self.conflicts = conflicts
        self.batchSizes = batchSizes
    }
}
