import PayhookCore
#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif

/// Where a stored event, or a copy of one, is: the three states of ``QueueLocation``, and the two places the
/// queue keeps what no consumer takes any more: acknowledged events the dedupe ledger still holds (for the spool
/// `ids/`, for the database `payhook_ledger` rows without a `payhook_queue` row) and the audit copies of
/// correctly signed duplicates with other content (`conflicts/`, `payhook_conflict`). The raw values are the
/// command line's words (`queue find`, `list --location conflicts`, `export`'s `state` column).
public enum QueuePlace: String, Sendable, Codable, OrderedByCases {
    /// Waiting for a consumer.
    case new
    /// Taken, not yet acknowledged.
    case cur
    /// Given up on.
    case dead
    /// Acknowledged; only the dedupe ledger keeps it, until `gc`.
    case acknowledged
    /// An audit copy of a callback whose id the ledger knows with other content; never queued.
    case conflicts

    /// The place of an event in `location`.
    public init(_ location: QueueLocation) {
        switch location {
        case .new: self = .new
        case .cur: self = .cur
        case .dead: self = .dead
        }
    }

    /// The queue state, for the first three; nil for acknowledged events and conflict copies.
    public var location: QueueLocation? {
        QueueLocation(rawValue: rawValue)
    }

    // Ordered as `allCases` is (``OrderedByCases``): new, cur, dead, acknowledged, conflicts.
}

/// An event found by ``EventQueue/search(_:)``: wherever it is, acknowledged ones and conflict copies included.
public struct QueueStoredEvent: Sendable, Equatable {
    /// The event (for a conflict copy: the copy's contents, whose id is the stored event's). Its `bytes` are empty
    /// when the search asked for none (``QueueSearch/includeBytes``).
    public let event: QueueEvent
    /// Where it is.
    public let place: QueuePlace
    /// Where its bytes are kept: for the spool the file (`new/<id>.json`, `ids/<id>`, `conflicts/<name>`,
    /// absolute); for the database the row (`payhook_queue/<id>`, `payhook_ledger/<id>`, `payhook_conflict/<n>`).
    public let path: String
    /// The attempts bookkeeping of an event in new, cur or dead, if any.
    public let record: QueueAttemptRecord?
    /// When it was acknowledged, where the queue records it (the database's `acked_at`; the spool does not).
    public let acknowledgedAt: Date?
    /// A conflict copy's name, what `queue show` accepts for it: its file name in conflicts/, for the database
    /// `<id>.<conflict_id>.json`. nil for everything else.
    public let conflictName: String?
    /// A conflict copy's counterpart: where the event stored under the same id is now (nil when the ledger no
    /// longer has it). nil for everything else.
    public let conflictsWith: QueuePlace?

    /// A search result; the last four apply only where the doc of each says.
    public init(
        event: QueueEvent, place: QueuePlace, path: String, record: QueueAttemptRecord? = nil, acknowledgedAt: Date? = nil,
        conflictName: String? = nil, conflictsWith: QueuePlace? = nil
    ) {
        self.event = event
        self.place = place
        self.path = path
        self.record = record
        self.acknowledgedAt = acknowledgedAt
        self.conflictName = conflictName
        self.conflictsWith = conflictsWith
    }

    /// An event of new, cur or dead as `list` and `show` found it.
    public init(_ entry: QueueEntry) {
        self.init(event: entry.event, place: QueuePlace(entry.location), path: entry.path, record: entry.record)
    }

    /// The event id (a conflict copy's is the id of the event it conflicts with).
    public var id: String { event.id }
    /// Failed attempts so far (0 for acknowledged events and conflict copies, which have no bookkeeping).
    public var attempts: Int { record?.attempts ?? 0 }

    /// The entry `list` and `show` use, for an event in new, cur or dead.
    public var entry: QueueEntry? {
        place.location.map { QueueEntry(event: event, location: $0, path: path, record: record) }
    }

    /// The order of every search result: `received_at` (missing ones first, as `take` orders), then id, then
    /// place (an event before its conflict copies), then the copy's name.
    public static func precedes(_ a: QueueStoredEvent, _ b: QueueStoredEvent) -> Bool {
        let left = a.event.receivedAt ?? .distantPast
        let right = b.event.receivedAt ?? .distantPast
        if left != right { return left < right }
        if a.id != b.id { return a.id < b.id }
        if a.place != b.place { return a.place < b.place }
        return (a.conflictName ?? "") < (b.conflictName ?? "")
    }
}

/// A span of `received_at` times: from `since` (inclusive) to `until`, inclusive, or exclusive when
/// `untilExclusive` (a day given as a date ends where the next one starts). nil ends are open.
public struct QueueWindow: Sendable, Equatable {
    /// The first instant in the window; nil: no lower bound.
    public var since: Date?
    /// The end of the window; nil: no upper bound.
    public var until: Date?
    /// Whether `until` itself is outside the window (the next local midnight after a date).
    public var untilExclusive: Bool

    /// A window from `since` to `until`.
    public init(since: Date? = nil, until: Date? = nil, untilExclusive: Bool = false) {
        self.since = since
        self.until = until
        self.untilExclusive = untilExclusive
    }

    /// Whether `date` is in the window.
    public func contains(_ date: Date) -> Bool {
        if let since, date < since { return false }
        if let until {
            if untilExclusive ? date >= until : date > until { return false }
        }
        return true
    }
}

/// What ``EventQueue/search(_:)`` looks for. Empty sets and nil values mean "any".
public struct QueueSearch: Sendable {
    /// Where to look (everywhere by default).
    public var places: Set<QueuePlace> = Set(QueuePlace.allCases)
    /// Only these event ids (exact).
    public var ids: Set<String>?
    /// Only events whose `order_ref` is exactly this text, byte for byte.
    public var orderRef: String?
    /// Only these `source` values.
    public var sources: Set<String> = []
    /// Only these `tenant` values.
    public var tenants: Set<String> = []
    /// Only these `status` values.
    public var statuses: Set<String> = []
    /// Only events received in this window (events without a readable `received_at` are left out).
    public var window: QueueWindow?
    /// Whether the results carry the events' bytes; an export needs only the fields, and leaves them out.
    public var includeBytes = true

    /// A search of every place for every event.
    public init() {}

    /// Whether `event` passes the search's filters (its place aside, which a backend applies while looking).
    public func admits(_ event: QueueEvent) -> Bool {
        if let ids, !ids.contains(event.id) { return false }
        if let orderRef, !Self.same(event.orderRef, orderRef) { return false }
        if !sources.isEmpty && !sources.contains(event.source ?? "") { return false }
        if !tenants.isEmpty && !tenants.contains(event.tenant ?? "") { return false }
        if !statuses.isEmpty && !statuses.contains(event.status ?? "") { return false }
        if let window {
            guard let received = event.receivedAt, window.contains(received) else { return false }
        }
        return true
    }

    /// Byte-for-byte equality: an order ref is attacker-supplied text, and two refs that are canonically
    /// equivalent Unicode (which `String ==` would call equal) are different orders.
    static func same(_ value: String?, _ wanted: String) -> Bool {
        guard let value else { return false }
        return value.utf8.elementsEqual(wanted.utf8)
    }
}

/// Something a search found where an event or a conflict copy should be and could not read as one. Unlike a file
/// in new/, cur/ or dead/, it is left where it is: the ledger and conflicts/ belong to the receiving side.
public struct QueueSkipped: Sendable, Equatable, CustomStringConvertible {
    /// Where it is: for the spool relative to it (`ids/<id>`, `conflicts/<name>`); for the database the row.
    public let path: String
    /// Why, one clause: "it is not valid JSON".
    public let reason: String

    /// Something left in place at `path`, for `reason`.
    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }

    /// "ids/x is not a valid event (it is not valid JSON); left in place".
    public var description: String { "\(path) is not a valid event (\(reason)); left in place" }
}

/// What ``EventQueue/search(_:)`` found.
public struct QueueSearchResult: Sendable {
    /// The matches, in ``QueueStoredEvent/precedes(_:_:)`` order; each event once per place (an event of new/
    /// is not listed again as acknowledged, although the spool's ledger holds it too).
    public var items: [QueueStoredEvent]
    /// Files of new/, cur/ and dead/ that were not valid events, moved to corrupt/ on the way.
    public var quarantined: [QueueQuarantine]
    /// Ledger entries and conflict copies that could not be read as events, left in place.
    public var skipped: [QueueSkipped]

    /// A result holding these.
    public init(items: [QueueStoredEvent] = [], quarantined: [QueueQuarantine] = [], skipped: [QueueSkipped] = []) {
        self.items = items
        self.quarantined = quarantined
        self.skipped = skipped
    }
}

extension QueueEvent {
    /// The fields the queue tools show, read from an event's JSON bytes with the strict reader (`JSONReader`);
    /// a member missing or of another type is nil. nil when the bytes are not a JSON object with a string `id`.
    /// For copies the database keeps as bytes only (`payhook_conflict`): the spool's files are checked in full
    /// (`EventFile`).
    public static func decode(_ bytes: [UInt8], keepBytes: Bool = true) -> QueueEvent? {
        guard let document = JSONReader.parse(bytes), case .object = document,
            let id = document["id"]?.stringValue
        else { return nil }
        var amount: Int64?
        if case .number(let text)? = document["amount"] { amount = Int64(text) }
        let received = document["received_at"]?.stringValue
        return QueueEvent(
            id: id, bytes: keepBytes ? bytes : [], source: document["source"]?.stringValue,
            tenant: document["tenant"]?.stringValue, orderRef: document["order_ref"]?.stringValue,
            status: document["status"]?.stringValue, amount: amount, currency: document["currency"]?.stringValue,
            receivedAtText: received, receivedAt: received.flatMap(QueueTime.parseRFC3339))
    }

    /// The same event without its bytes.
    public func withoutBytes() -> QueueEvent {
        QueueEvent(
            id: id, bytes: [], source: source, tenant: tenant, orderRef: orderRef, status: status, amount: amount,
            currency: currency, receivedAtText: receivedAtText, receivedAt: receivedAt)
    }
}
