import PayhookCore
#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
import Foundation
#endif

/// The storage seam on the consuming side: what the `payhook queue` commands and the `consume` worker need from
/// wherever events wait for consumers, the counterpart of ``EventStore``.
///
/// The spool directory (`QueueDirectory`, in PayhookQueue) is the first implementation. The command line obtains
/// an `any EventQueue` from one factory (its `--spool` option) and uses nothing else, so another backend (a
/// database chosen by the config, say) needs an implementation and one line in that factory, not changes to the
/// commands (docs/architecture.md).
///
/// The life of an event: it waits (``QueueLocation/new``) until ``take(wait:timeout:stop:)`` claims it for one
/// consumer (``QueueLocation/cur``); ``ack(_:)`` ends it; ``nack(_:reason:)`` and ``requeue(olderThan:now:)``
/// return it to waiting with a failed attempt counted; after too many, ``deadLetter(_:record:)`` gives up on it
/// (``QueueLocation/dead``) until ``revive(_:)``. Something found not to be a valid event on the way is set aside
/// and reported (``QueueQuarantine``), never delivered and never deleted. Delivery is at least once.
///
/// Every operation may be called from many threads and processes at once: of several takers of one event,
/// exactly one gets it.
public protocol EventQueue: Sendable {
    /// The queue as messages name it, and as `consume` passes it to commands in `PAYHOOK_QUEUE`: for the spool,
    /// its directory (also `PAYHOOK_SPOOL`); for the database, "the database (payhook_queue)", never its URL.
    var name: String { get }

    /// How messages name the place of events in `location`, e.g. "/srv/spool/new/".
    func describe(_ location: QueueLocation) -> String

    /// The events that pass `filter`, oldest `received_at` first (ties by id), the order `take` follows.
    func list(_ filter: QueueFilter) throws(QueueError) -> QueueListing

    /// The event `id`, wherever it is. Throws `.unknownEvent` when there is none, `.corrupt` when it is not a valid
    /// event (it is set aside).
    func show(_ id: String) throws(QueueError) -> QueueEntry

    /// Every stored event and conflict copy that passes `query`, wherever it is: waiting, taken, dead,
    /// acknowledged (kept by the dedupe ledger until `gc`) or a conflict copy, each event once per place, in
    /// ``QueueStoredEvent/precedes(_:_:)`` order. What `queue find`, `show` of an acknowledged event,
    /// `list --location conflicts` and `export` read. Files of new/, cur/ and dead/ that are not valid events are
    /// set aside as `list` sets them aside; ledger entries and conflict copies are only read, never moved.
    func search(_ query: QueueSearch) throws(QueueError) -> QueueSearchResult

    /// The ids of stored events and conflict copies that start with `prefix` (lowercase hex), sorted, at most
    /// `limit`: how `queue show` resolves an abbreviated id.
    func ids(startingWith prefix: String, limit: Int) throws(QueueError) -> [String]

    /// Claims the oldest waiting event for the caller. Without `wait`, ends `.empty` at once when none waits; with
    /// it, blocks until one arrives, `timeout` seconds pass (`.timedOut`) or `stop` is triggered (`.stopped`).
    func take(wait: Bool, timeout: Double?, stop: (any QueueStop)?) throws(QueueError) -> QueueTakeResult

    /// Acknowledges a taken event: it is done and gone; the receiving side still recognises a resend of it.
    func ack(_ id: String) throws(QueueError)

    /// Returns a taken event to the waiting ones and counts a failed attempt; returns the count.
    func nack(_ id: String, reason: String?) throws(QueueError) -> Int

    /// Returns a taken event to the waiting ones without counting an attempt (a worker that stops first).
    func release(_ id: String) throws(QueueError)

    /// Counts one failed attempt of a taken event, which stays taken; returns the record as written.
    func recordFailure(_ id: String, _ failure: QueueFailure) throws(QueueError) -> QueueAttemptRecord

    /// Gives up on a taken event: it becomes a dead letter with `record` (its `dead_at` set).
    func deadLetter(_ id: String, record: QueueAttemptRecord) throws(QueueError)

    /// Returns to the waiting ones every event taken at least `olderThan` seconds before `now` whose consumer is
    /// gone, counting a failed attempt each; one a running worker still holds (``hold(_:)``) is left alone.
    func requeue(olderThan: Double, now: Date) throws(QueueError) -> QueueRequeueReport

    /// Returns a dead letter to the waiting ones with a fresh attempt count.
    func revive(_ id: String) throws(QueueError)

    /// Prunes what is no longer needed: dedupe entries of acknowledged events older than the retention, conflict
    /// copies as old, leftovers of interrupted writes, stale bookkeeping.
    func gc(_ options: QueueGCOptions) throws(QueueError) -> QueueGCReport

    /// The dedupe retention the receiving side recorded (``gc(_:)``'s default and minimum ledger age), or nil when
    /// it recorded none.
    func retention() throws(QueueError) -> QueueRetention?

    /// Makes the caller the queue's one `consume` worker until the lease is released; throws `.busy` while
    /// another holds it.
    func lockConsumer() throws(QueueError) -> any QueueLease

    /// Marks a taken event as in a live worker's hands until the lease is released (or the process ends), so that
    /// ``requeue(olderThan:now:)`` leaves it alone however long it runs. nil when it cannot be marked.
    func hold(_ entry: QueueEntry) -> (any QueueLease)?
}

extension EventQueue {
    /// Every event, in take order.
    public func list() throws(QueueError) -> QueueListing {
        try list(QueueFilter())
    }
}

/// Something held until released: the consume worker's claim on a queue, or a worker's hold on an event.
public protocol QueueLease: Sendable {
    /// Lets go. Calling it again does nothing.
    func release()
}

/// Tells a waiting queue operation to stop (a signal arrived).
public protocol QueueStop: Sendable {
    /// Whether the wait should end.
    var isTriggered: Bool { get }
    /// A descriptor that becomes readable once triggered and stays so, for a backend that waits in poll(2) on
    /// its own descriptors too.
    var triggerDescriptor: Int32 { get }
}

/// Where an event is in its life: waiting, taken, or given up on. The raw values are the spool's folder names,
/// which are also the command line's words for the three states (`--location new|cur|dead`).
public enum QueueLocation: String, Sendable, Codable, OrderedByCases {
    /// Waiting for a consumer (new/).
    case new
    /// Taken by a consumer, not yet acknowledged (cur/).
    case cur
    /// Given up on after too many failed attempts (dead/).
    case dead

    // new before cur before dead, the order of the folders in listings: ``OrderedByCases``.
}

/// Cases that compare by their order in `allCases`: the order in which listings show them.
public protocol OrderedByCases: CaseIterable, Comparable where AllCases == [Self] {}

extension OrderedByCases {
    public static func < (lhs: Self, rhs: Self) -> Bool {
        (allCases.firstIndex(of: lhs) ?? 0) < (allCases.firstIndex(of: rhs) ?? 0)
    }
}

/// An event found in a queue, with where it is and its attempts bookkeeping.
public struct QueueEntry: Sendable, Equatable {
    /// The event.
    public let event: QueueEvent
    /// Which state it is in.
    public let location: QueueLocation
    /// A file holding exactly the event's bytes, which a consumer's command reads as stdin and finds in
    /// `PAYHOOK_EVENT_PATH`: for the spool, the event file itself (new/<id>.json, cur/<id>.json, dead/<id>.json);
    /// for the database, a file a take writes into the queue instance's private folder (listings name the row,
    /// `payhook_queue/<id>`, and write no file).
    public let path: String
    /// Its failed attempts so far and the last error, if any.
    public let record: QueueAttemptRecord?

    public init(event: QueueEvent, location: QueueLocation, path: String, record: QueueAttemptRecord?) {
        self.event = event
        self.location = location
        self.path = path
        self.record = record
    }

    /// The event id.
    public var id: String { event.id }
    /// Failed attempts so far.
    public var attempts: Int { record?.attempts ?? 0 }
}

/// Something that was not a valid event, set aside (for the spool: moved to corrupt/) and kept for inspection.
public struct QueueQuarantine: Sendable, Equatable, CustomStringConvertible {
    /// Where it was: for the spool, relative to it ("new/<id>.json").
    public let from: String
    /// Where it is now: for the spool, "corrupt/<id>.json", with a unique suffix if that was taken.
    public let to: String
    /// Why, e.g. "it is not valid JSON".
    public let reason: String

    public init(from: String, to: String, reason: String) {
        self.from = from
        self.to = to
        self.reason = reason
    }

    /// "moved new/x.json to corrupt/x.json: it is not valid JSON".
    public var description: String { "moved \(from) to \(to): \(reason)" }
}

/// Which events `list` shows. Empty sets mean "any".
public struct QueueFilter: Sendable {
    /// Only these `source` values.
    public var sources: Set<String> = []
    /// Only these `tenant` values.
    public var tenants: Set<String> = []
    /// Only these `status` values.
    public var statuses: Set<String> = []
    /// Only events in these states (all three by default).
    public var locations: Set<QueueLocation> = Set(QueueLocation.allCases)
    /// Only events received at or after this instant (events without a readable `received_at` are left out).
    public var since: Date?
    /// Only events received at or before this instant.
    public var until: Date?

    /// A filter that lets every event through.
    public init() {}

    /// Whether `entry` passes the filter (its location aside, which a backend applies while looking).
    public func admits(_ entry: QueueEntry) -> Bool {
        let event = entry.event
        if !sources.isEmpty && !sources.contains(event.source ?? "") { return false }
        if !tenants.isEmpty && !tenants.contains(event.tenant ?? "") { return false }
        if !statuses.isEmpty && !statuses.contains(event.status ?? "") { return false }
        if since != nil || until != nil {
            guard let received = event.receivedAt else { return false }
            if let since, received < since { return false }
            if let until, received > until { return false }
        }
        return true
    }
}

/// What `list` found.
public struct QueueListing: Sendable {
    /// Matching events, oldest `received_at` first (ties by id), the order `take` follows.
    public var entries: [QueueEntry]
    /// Files that were not valid events and were moved to corrupt/ on the way.
    public var quarantined: [QueueQuarantine]

    public init(entries: [QueueEntry], quarantined: [QueueQuarantine] = []) {
        self.entries = entries
        self.quarantined = quarantined
    }
}

/// What `take` did.
public struct QueueTakeResult: Sendable {
    /// How a take ended.
    public enum Outcome: Sendable, Equatable {
        /// An event was claimed: it is taken now (cur/) and belongs to the caller.
        case taken
        /// Nothing was waiting (without waiting).
        case empty
        /// Nothing arrived before the timeout.
        case timedOut
        /// The stop signal was triggered while waiting.
        case stopped
    }

    /// How it ended.
    public var outcome: Outcome
    /// The claimed event, when `outcome` is `.taken`.
    public var entry: QueueEntry?
    /// Files that were not valid events and were moved to corrupt/ on the way.
    public var quarantined: [QueueQuarantine]

    public init(outcome: Outcome, entry: QueueEntry?, quarantined: [QueueQuarantine] = []) {
        self.outcome = outcome
        self.entry = entry
        self.quarantined = quarantined
    }
}

/// One taken event that `requeue` returned to the waiting ones.
public struct QueueRequeued: Sendable, Equatable {
    /// The event id.
    public let id: String
    /// How long it had been taken, in seconds.
    public let age: Double
    /// Its failed attempts, this requeue included.
    public let attempts: Int

    public init(id: String, age: Double, attempts: Int) {
        self.id = id
        self.age = age
        self.attempts = attempts
    }
}

/// What `requeue` did.
public struct QueueRequeueReport: Sendable {
    /// Events returned to the waiting ones.
    public var requeued: [QueueRequeued] = []
    /// Ids of old enough events left alone because a running `consume` worker holds them (``EventQueue/hold(_:)``).
    public var busy: [String] = []
    /// Taken entries that were not valid (for the spool: not regular files within its 16 MiB limit), set aside.
    public var quarantined: [QueueQuarantine] = []

    public init() {}
}

/// What `gc` removes, and how carefully.
public struct QueueGCOptions: Sendable {
    /// Dedupe entries (for the spool: ids/) and conflict copies (conflicts/) written longer ago than this are
    /// pruned (a dedupe entry only once its event was acknowledged). nil, the default: the retention the server
    /// records (``EventQueue/retention()``), else ``defaultLedgerAge``. A value
    /// below the recorded retention is refused.
    public var ledgerAge: Double?
    /// Leftovers of interrupted writes (for the spool: tmp/) and the queue's own stale sidecars older than this are
    /// removed. Younger ones may be a store in progress, so this is never below ``minimumTemporaryAge``.
    public var temporaryAge: Double = 3600
    /// Report only; remove nothing.
    public var dryRun = false
    /// Remove at most this many files in one run (oldest ledger entries first), to delete in moderate batches.
    public var limit: Int?
    /// "Now", for the ages (tests move it).
    public var now = Date()

    /// The smallest `temporaryAge` accepted: a store in tmp/ lasts milliseconds, a minute is far above that.
    public static let minimumTemporaryAge: Double = 60

    /// The ledger age where no retention was recorded (a spool without `.retention`, written by servers before
    /// it existed): the config's default `ledger_retention_days` (``ReplayWindow``), above every provider's retry
    /// window.
    public static let defaultLedgerAge = Double(ReplayWindow.defaultLedgerRetentionDays) * 86400

    /// Default options.
    public init() {}
}

/// One file `gc` removed (or would remove, in a dry run).
public struct QueueGCItem: Sendable, Equatable {
    /// What was removed.
    public enum Kind: Sendable, Equatable {
        /// A dedupe ledger entry of an acknowledged event.
        case ledgerEntry
        /// An audit copy of a conflicting callback.
        case conflictCopy
        /// A leftover of a write the server never finished.
        case temporaryFile
        /// The queue's own bookkeeping (attempt records, dead letters' error records, unfinished sidecars).
        case sidecar
    }

    /// Where it was: for the spool, the path relative to it ("ids/<id>", "tmp/<name>", …).
    public let path: String
    /// Why: "ledger entry written 2026-… (8d ago), event gone", "temporary file 3h old", ….
    public let reason: String
    /// What it was.
    public let kind: Kind

    public init(path: String, reason: String, kind: Kind) {
        self.path = path
        self.reason = reason
        self.kind = kind
    }
}

/// What `gc` did.
public struct QueueGCReport: Sendable {
    /// Removed files (or, in a dry run, the files that would be removed), in the order handled.
    public var removed: [QueueGCItem] = []
    /// Dedupe entries old enough but kept because their event is still waiting, taken or dead.
    public var keptPending = 0
    /// The ledger age applied (to dedupe entries and conflict copies), in seconds.
    public var ledgerAge: Double = QueueGCOptions.defaultLedgerAge
    /// The retention the receiving side recorded (``EventQueue/retention()``), if any.
    public var serverRetention: Double?
    /// Whether the limit stopped the run before everything eligible was removed.
    public var limited = false
    /// Whether this was a dry run.
    public var dryRun = false

    public init() {}
}

/// The shortest time the receiving side needs its dedupe entries kept, as it recorded it.
public struct QueueRetention: Sendable, Equatable {
    /// In seconds.
    public var seconds: Double
    /// Where it is recorded, for messages: for the spool, its `.retention` file.
    public var source: String

    public init(seconds: Double, source: String) {
        self.seconds = seconds
        self.source = source
    }
}

/// One event's contents (schema/event.v1.schema.json): its bytes exactly as stored, and the fields
/// the listings show. A field a backend does not have is nil and shows as "-".
public struct QueueEvent: Sendable, Equatable {
    /// The event id: 64 lowercase hex characters, also the file name without `.json`.
    public let id: String
    /// The file's bytes, exactly as stored.
    public let bytes: [UInt8]
    /// `source`: `unified`, `wechat.pay` or `wechat.refund`.
    public let source: String?
    /// `tenant`: domainCode or mch_id.
    public let tenant: String?
    /// `order_ref`: requestKey, out_trade_no or out_refund_no.
    public let orderRef: String?
    /// `status`: payStatus, result_code or refund_status.
    public let status: String?
    /// `amount` in the smallest currency unit (fen).
    public let amount: Int64?
    /// `currency`.
    public let currency: String?
    /// `received_at` as written (RFC 3339, UTC, milliseconds).
    public let receivedAtText: String?
    /// `received_at` parsed; nil when missing or not RFC 3339.
    public let receivedAt: Date?

    public init(
        id: String, bytes: [UInt8], source: String?, tenant: String?, orderRef: String?, status: String?,
        amount: Int64?, currency: String?, receivedAtText: String?, receivedAt: Date?
    ) {
        self.id = id
        self.bytes = bytes
        self.source = source
        self.tenant = tenant
        self.orderRef = orderRef
        self.status = status
        self.amount = amount
        self.currency = currency
        self.receivedAtText = receivedAtText
        self.receivedAt = receivedAt
    }
}

/// Why one delivery attempt of an event failed; `last_error` of its ``QueueAttemptRecord``.
public struct QueueFailure: Codable, Sendable, Equatable {
    /// When it failed, RFC 3339 UTC with milliseconds.
    public var at: String
    /// One line for people: "exit status 3", "killed by signal 9", "timed out after 30s", "nack", ….
    public var reason: String
    /// The command's exit status, when it exited.
    public var exitStatus: Int32?
    /// The signal that ended the command, when one did.
    public var signal: Int32?
    /// The last bytes (at most 4 KiB) the command wrote to stderr, decoded as UTF-8.
    public var stderrTail: String?
    /// The command that was run (`consume --exec`).
    public var command: String?

    /// Creates a failure record.
    public init(
        at: Date = Date(), reason: String, exitStatus: Int32? = nil, signal: Int32? = nil,
        stderrTail: String? = nil, command: String? = nil
    ) {
        self.at = QueueTime.formatRFC3339(at)
        self.reason = reason
        self.exitStatus = exitStatus
        self.signal = signal
        self.stderrTail = stderrTail
        self.command = command
    }

    enum CodingKeys: String, CodingKey {
        case at, reason, command, signal
        case exitStatus = "exit_status"
        case stderrTail = "stderr_tail"
    }
}

/// The attempts bookkeeping of one event, with `dead_at` once it is a dead letter. Its JSON form (the coding
/// keys) is what the spool stores in `attempts/<id>.json` and `dead/<id>.error.json`.
public struct QueueAttemptRecord: Codable, Sendable, Equatable {
    /// The event id.
    public var id: String
    /// How many delivery attempts failed so far (a `nack` and a `requeue` count as one each).
    public var attempts: Int
    /// When this record was last written.
    public var updatedAt: String
    /// When the event became a dead letter (dead letters only).
    public var deadAt: String?
    /// The most recent failure.
    public var lastError: QueueFailure?

    /// Creates a record.
    public init(id: String, attempts: Int, updatedAt: Date = Date(), deadAt: Date? = nil, lastError: QueueFailure?) {
        self.id = id
        self.attempts = attempts
        self.updatedAt = QueueTime.formatRFC3339(updatedAt)
        self.deadAt = deadAt.map(QueueTime.formatRFC3339)
        self.lastError = lastError
    }

    enum CodingKeys: String, CodingKey {
        case id, attempts
        case updatedAt = "updated_at"
        case deadAt = "dead_at"
        case lastError = "last_error"
    }
}

/// An error from a queue operation: one sentence that names the spool file (or whatever the backend keeps) or
/// the event id concerned.
///
/// Every kind maps to exit status 1 on the command line ("bad input or failed check"); the kind lets
/// callers and tests tell the cases apart without matching on the text.
public struct QueueError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, broadly.
    public enum Kind: String, Sendable, Equatable {
        /// The queue is not there: for the spool, the directory does not exist or is not a payhook spool.
        case noSpool
        /// No event with this id waiting, taken or dead.
        case unknownEvent
        /// The event exists, but not where the operation needs it (e.g. `ack` of an event still in new/).
        case wrongState
        /// The event is not a valid event; it was set aside (for the spool: moved to corrupt/).
        case corrupt
        /// Another `consume` worker holds the queue (for the spool: its `.consume.lock`).
        case busy
        /// A value given to an operation is not acceptable (checked again here, not only by the CLI).
        case invalidArgument
        /// What the receiving side keeps for the queue tools (for the spool: `.retention`) is not in the form
        /// it writes; the tools refuse to guess.
        case malformedSpoolFile
        /// A system call failed.
        case io
    }

    /// What went wrong, broadly.
    public let kind: Kind
    /// One sentence naming the file or id.
    public let message: String
    /// The errno behind an `.io` error, when there is one.
    public let errno: Int32?

    /// Creates an error; `message` should be one sentence naming the file or id.
    public init(_ kind: Kind, _ message: String, errno: Int32? = nil) {
        self.kind = kind
        self.message = message
        self.errno = errno
    }

    /// The message.
    public var description: String { message }
}
