import ArgumentParser
import Foundation
import PayhookQueue
import PayhookSpoolFormat
import PayhookStore

/// `payhook queue list`: the events in new/, cur/ and dead/, or the conflict copies (`--location conflicts`).
struct QueueList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the events in new/, cur/ and dead/, oldest first (the order take follows), or the conflict copies.",
        discussion: """
            Filters combine with AND; a repeated filter matches any of its values. --since and --until take a \
            local date (2026-11-22; for --until, to the end of that day) or date-time (2026-11-22 10:30), in the \
            zone TZ names, an RFC 3339 time (2026-11-22T02:34:50Z) or a duration meaning that long ago (2h, 7d). \
            The table shows times in that local zone and amounts in their unit (¥1.00 (100 fen)); --json keeps \
            UTC and fen. --location conflicts lists the conflict copies: audit copies of correctly signed \
            callbacks whose id was stored with other content (never queued), each named with what it conflicts \
            with (the event of its id, where it is now); with it, --json prints the objects of find --json. Exit 1 \
            when a file was not a valid event (it is moved to corrupt/, or for a conflict copy left in place, and \
            named on stderr; the list is still printed).
            """
    )

    @OptionGroup var spool: QueueSpoolOption

    @Flag(name: .long, help: "Print a JSON array (one object per event, every key always present) instead of a table.")
    var json = false

    @Option(name: .long, help: ArgumentHelp("Only this source (unified, wechat.pay, wechat.refund); repeatable.", valueName: "source"))
    var source: [String] = []

    @Option(name: .long, help: ArgumentHelp("Only this tenant (domainCode or mch_id); repeatable.", valueName: "tenant"))
    var tenant: [String] = []

    @Option(name: .long, help: ArgumentHelp("Only this status (e.g. SUCCESSPAY); repeatable.", valueName: "status"))
    var status: [String] = []

    @Option(name: .long, help: ArgumentHelp("Only events in this folder: new, cur, dead, or conflicts (the conflict copies); repeatable.", valueName: "folder"))
    var location: [String] = []

    @Option(name: .long, help: ArgumentHelp("Only events received at or after this local date or time, RFC 3339 time, or this long ago.", valueName: "time"))
    var since: String?

    @Option(name: .long, help: ArgumentHelp("Only events received at or before this local date (its end) or time, RFC 3339 time, or this long ago.", valueName: "time"))
    var until: String?

    func validate() throws {
        for value in location where QueueLocation(rawValue: value) == nil && value != QueuePlace.conflicts.rawValue {
            throw ValidationError("--location must be new, cur, dead or conflicts; got \(EventID.quoted(value))")
        }
        for (name, value) in [("--since", since), ("--until", until)] {
            if let value, QueueTime.parseInstant(value, now: Date()) == nil {
                throw ValidationError("\(name) must be \(QueueTime.instantForms); got \(EventID.quoted(value))")
            }
        }
    }

    func run() throws {
        let queue = try spool.open()
        let now = Date()
        var filter = QueueFilter()
        filter.sources = Set(source)
        filter.tenants = Set(tenant)
        filter.statuses = Set(status)
        if !location.isEmpty { filter.locations = Set(location.compactMap(QueueLocation.init(rawValue:))) }
        filter.since = since.flatMap { QueueTime.parseInstant($0, now: now) }
        filter.until = until.flatMap { QueueTime.parseInstant($0, now: now, endOfDay: true) }
        if location.contains(QueuePlace.conflicts.rawValue) { return try listWithConflicts(queue, filter) }
        let listing = try QueueCLI.attempt(queue.list(filter))
        if json {
            Output.out(QueueFormat.json(listing.entries))
        } else if listing.entries.isEmpty {
            Output.out("no events in new/, cur/ or dead/ of \(queue.name)\(filtered ? " matching the filters" : "")")
        } else {
            Output.out(QueueFormat.table(listing.entries))
        }
        if QueueCLI.report(listing.quarantined) { throw ExitCode(1) }
    }

    /// `--location conflicts` (with or without other folders): a search, printed as `find` prints it.
    private func listWithConflicts(_ queue: any EventQueue, _ filter: QueueFilter) throws {
        var query = QueueSearch()
        query.places = Set(location.compactMap(QueuePlace.init(rawValue:)))
        query.sources = filter.sources
        query.tenants = filter.tenants
        query.statuses = filter.statuses
        if filter.since != nil || filter.until != nil { query.window = QueueWindow(since: filter.since, until: filter.until) }
        let result = try QueueCLI.attempt(queue.search(query))
        if json {
            Output.out(QueueFormat.storedJSON(result.items))
        } else if result.items.isEmpty {
            let places = QueuePlace.allCases.filter(query.places.contains).map { "\($0.rawValue)/" }
            let shown = places.count == 1 ? places[0] : places.dropLast().joined(separator: ", ") + " or " + places[places.count - 1]
            let what = places == ["conflicts/"] ? "no conflict copies" : "no events"
            let narrowed = !(source.isEmpty && tenant.isEmpty && status.isEmpty && since == nil && until == nil)
            Output.out("\(what) in \(shown) of \(queue.name)\(narrowed ? " matching the filters" : "")")
        } else {
            Output.out(QueueFormat.storedTable(result.items))
        }
        if QueueCLI.report(result) { throw ExitCode(1) }
    }

    private var filtered: Bool {
        !(source.isEmpty && tenant.isEmpty && status.isEmpty && location.isEmpty && since == nil && until == nil)
    }
}

/// `payhook queue show ID`: one event, pretty or raw, wherever it is: queued, acknowledged, or a conflict copy.
struct QueueShow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show one event wherever it is (new/, cur/, dead/, acknowledged, or a conflict copy).",
        discussion: """
            ID is the event id, a unique prefix of it (at least 8 hex characters), its file name <id>.json, or a \
            conflict copy's name as find and list --location conflicts print it. An event of new/, cur/ or dead/ is \
            shown with its attempts and last error; one that was acknowledged, from the dedupe ledger, which keeps \
            it until gc; a conflict copy with what it conflicts with. An event's conflict copies are listed after \
            it. Exit 1 when no event has this id or prefix, when the prefix starts several ids (they are listed), \
            or when its file is not a valid event (it is moved to corrupt/). A prefix shorter than 8 or text that \
            is not hex is a usage error (exit 2).
            """
    )

    @OptionGroup var spool: QueueSpoolOption

    @Flag(name: .long, help: "Print the event file's JSON exactly as stored.")
    var json = false

    @Argument(
        help: ArgumentHelp(
            "The event id, a unique prefix of it (8 or more hex characters), <id>.json, or a conflict copy's name.",
            valueName: "id"))
    var reference: String

    func validate() throws {
        try QueueCLI.validateReference(reference)
    }

    func run() throws {
        let queue = try spool.open()
        let parsed = try QueueReference.parse(reference, prefixes: true, conflictCopies: true)
        let id = try QueueCLI.resolve(parsed, in: queue)
        let item: QueueStoredEvent
        var copies: [QueueStoredEvent] = []
        var result = QueueSearchResult()
        if case .conflictCopy(_, let name) = parsed {
            result = try QueueCLI.attempt(queue.search(Self.query(id, [.conflicts])))
            guard let copy = result.items.first(where: { $0.conflictName == name }) else {
                _ = QueueCLI.report(result)
                Output.err("error: no conflict copy \(name) in \(queue.name)")
                throw ExitCode(1)
            }
            item = copy
        } else {
            switch Self.queued(id, in: queue) {
            case .success(let entry):
                item = QueueStoredEvent(entry)
            case .failure(let error) where error.kind == .unknownEvent:
                // Not queued: acknowledged, if the ledger still has it.
                result = try QueueCLI.attempt(queue.search(Self.query(id, [.acknowledged, .conflicts])))
                guard let acknowledged = result.items.first(where: { $0.place == .acknowledged }) else {
                    _ = QueueCLI.report(result)
                    throw QueueCLI.fail(error)
                }
                item = acknowledged
            case .failure(let error):
                throw QueueCLI.fail(error)
            }
            if !json {
                if result.items.isEmpty { result = try QueueCLI.attempt(queue.search(Self.query(id, [.conflicts]))) }
                copies = result.items.filter { $0.place == .conflicts }
            }
        }
        if json {
            var bytes = item.event.bytes
            if bytes.last != UInt8(ascii: "\n") { bytes.append(UInt8(ascii: "\n")) }
            FileHandle.standardOutput.write(Data(bytes))
        } else {
            Output.out(QueueFormat.pretty(item))
            for copy in copies {
                Output.out(
                    "conflict copy   \(copy.conflictName ?? copy.path) (received \(copy.event.receivedAt.map(QueueTime.formatLocal) ?? copy.event.receivedAtText.map(QueueFormat.printable) ?? "-"))")
            }
        }
        if QueueCLI.report(result) { throw ExitCode(1) }
    }

    /// The event `id` in new/, cur/ or dead/, or why not.
    static func queued(_ id: String, in queue: any EventQueue) -> Result<QueueEntry, QueueError> {
        do {
            return .success(try queue.show(id))
        } catch {
            return .failure(error)
        }
    }

    /// A search for the event `id` in `places`.
    static func query(_ id: String, _ places: Set<QueuePlace>) -> QueueSearch {
        var query = QueueSearch()
        query.ids = [id]
        query.places = places
        return query
    }
}
