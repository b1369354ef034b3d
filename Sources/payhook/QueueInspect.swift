import ArgumentParser
import Foundation
import PayhookQueue
import PayhookSpoolFormat
import PayhookStore

/// `payhook queue list`: the events in new/, cur/ and dead/.
struct QueueList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the events in new/, cur/ and dead/, oldest first (the order take follows).",
        discussion: """
            Filters combine with AND; a repeated filter matches any of its values. --since and --until take a \
            local date (2026-11-22; for --until, to the end of that day) or date-time (2026-11-22 10:30), in the \
            zone TZ names, an RFC 3339 time (2026-11-22T02:34:50Z) or a duration meaning that long ago (2h, 7d). \
            The table shows times in that local zone and amounts in their unit (¥1.00 (100 fen)); --json keeps \
            UTC and fen. Exit 1 when a file was not a valid event (it is moved to corrupt/ and named on stderr; \
            the list is still printed).
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

    @Option(name: .long, help: ArgumentHelp("Only events in this folder: new, cur or dead; repeatable.", valueName: "folder"))
    var location: [String] = []

    @Option(name: .long, help: ArgumentHelp("Only events received at or after this local date or time, RFC 3339 time, or this long ago.", valueName: "time"))
    var since: String?

    @Option(name: .long, help: ArgumentHelp("Only events received at or before this local date (its end) or time, RFC 3339 time, or this long ago.", valueName: "time"))
    var until: String?

    func validate() throws {
        for value in location where QueueLocation(rawValue: value) == nil {
            throw ValidationError("--location must be new, cur or dead; got \(EventID.quoted(value))")
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

    private var filtered: Bool {
        !(source.isEmpty && tenant.isEmpty && status.isEmpty && location.isEmpty && since == nil && until == nil)
    }
}

/// `payhook queue show ID`: one event, pretty or raw.
struct QueueShow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show one event wherever it is (new/, cur/ or dead/), with its attempts and last error.",
        discussion: """
            Exit 1 when no event has this id (the message says whether ids/ still remembers it, i.e. it was \
            acknowledged), or when its file is not a valid event (it is moved to corrupt/).
            """
    )

    @OptionGroup var spool: QueueSpoolOption

    @Flag(name: .long, help: "Print the event file's JSON exactly as stored.")
    var json = false

    @OptionGroup var event: QueueEventID
    var id: String { event.id }

    func run() throws {
        let queue = try spool.open()
        let entry = try QueueCLI.attempt(queue.show(id))
        if json {
            var bytes = entry.event.bytes
            if bytes.last != UInt8(ascii: "\n") { bytes.append(UInt8(ascii: "\n")) }
            FileHandle.standardOutput.write(Data(bytes))
        } else {
            Output.out(QueueFormat.pretty(entry))
        }
    }
}
