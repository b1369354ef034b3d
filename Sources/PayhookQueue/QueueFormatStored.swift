public import Foundation
public import PayhookStore

/// How the queue tools print what ``EventQueue/search(_:)`` finds (`queue find`, `list --location conflicts`,
/// `show` of an acknowledged event or a conflict copy): the forms of ``QueueFormat``'s listing, with the two
/// places only a search reaches.
extension QueueFormat {
    /// A table with a header line, as ``table(_:)`` with the places of a search in LOCATION (`new`, `cur`,
    /// `dead`, `acknowledged`, `conflicts`). A conflict copy's ID cell is its name (which starts with the id of
    /// the event it conflicts with) and says where that event is now. Missing values show as "-"; values from
    /// the callback are escaped (``printable(_:)``).
    public static func storedTable(_ items: [QueueStoredEvent]) -> String {
        columns(header: "LOCATION", items.map { item in
            [item.place.rawValue] + eventCells(item.event)
                + [item.place.location == nil ? "-" : String(item.attempts), identification(item)]
        })
    }

    /// The ID cell: the id, or for a conflict copy its name and what it conflicts with.
    static func identification(_ item: QueueStoredEvent) -> String {
        guard item.place == .conflicts else { return item.id }
        return "\(item.conflictName ?? item.id) (\(counterpart(item)))"
    }

    /// What a conflict copy conflicts with, for people: "conflicts with the acknowledged event".
    public static func counterpart(_ item: QueueStoredEvent) -> String {
        switch item.conflictsWith {
        case .new?: return "conflicts with the event waiting in new"
        case .cur?: return "conflicts with the event taken in cur"
        case .dead?: return "conflicts with the dead letter"
        case .acknowledged?: return "conflicts with the acknowledged event"
        case .conflicts?, nil: return "the event it conflicts with is no longer in the ledger"
        }
    }

    /// The results as a JSON array (pretty, keys sorted), one object per item with every key always present:
    /// those of ``json(_:)`` (`location` one of the five places), and `acknowledged_at` (null unless the queue
    /// records it: the database), `conflict_copy` (a copy's name, else null) and `conflicts_with` (for a copy,
    /// where the event of its id is now: `new`, `cur`, `dead`, `acknowledged`, or null when gone).
    public static func storedJSON(_ items: [QueueStoredEvent]) -> String {
        encode(items.map { item in
            JSONItem(
                id: item.id, location: item.place.rawValue, path: item.path, event: item.event, attempts: item.attempts,
                record: item.record,
                search: JSONItem.Search(
                    acknowledgedAt: item.acknowledgedAt.map(QueueTime.formatRFC3339), conflictCopy: item.conflictName,
                    conflictsWith: item.conflictsWith?.rawValue))
        })
    }

    /// One search result for people. An event of new/, cur/ or dead/ is shown exactly as ``pretty(_:now:)`` shows
    /// it; an acknowledged event or a conflict copy the same way, with its own location line and without the
    /// attempts bookkeeping it does not have.
    public static func pretty(_ item: QueueStoredEvent, now: Date = Date()) -> String {
        if let entry = item.entry { return pretty(entry, now: now) }
        // The members as pretty() prints them (one definition of how a member is shown), under this item's
        // location: its first line is the location, its last the attempts of an event that has none.
        var lines = pretty(QueueEntry(event: item.event, location: .new, path: item.path, record: nil), now: now)
            .split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.first?.hasPrefix("location ") == true { lines.removeFirst() }
        if lines.last?.hasPrefix("attempts ") == true { lines.removeLast() }
        var head: [String] = []
        switch item.place {
        case .acknowledged:
            head.append(label("location") + "acknowledged (only the dedupe ledger keeps it, until gc)")
            if let at = item.acknowledgedAt { head.append(label("acknowledged_at") + local(QueueTime.formatRFC3339(at))) }
        default:
            head.append(label("location") + "conflicts (an audit copy of a correctly signed callback with other content; never queued)")
            head.append(label("conflict_copy") + (item.conflictName ?? "-"))
            let state: String
            switch item.conflictsWith {
            case .new?: state = "waiting in new"
            case .cur?: state = "taken in cur"
            case .dead?: state = "a dead letter"
            case .acknowledged?: state = "acknowledged"
            case .conflicts?, nil: state = "no longer in the ledger"
            }
            head.append(label("conflicts_with") + "event \(item.id), \(state)")
        }
        return (head + lines).joined(separator: "\n")
    }

    /// A label padded as pretty() pads its names: at least 16 columns, one space after.
    static func label(_ name: String) -> String {
        name.padding(toLength: max(name.count + 1, 16), withPad: " ", startingAt: 0)
    }
}
