import ArgumentParser
import Foundation
import PayhookQueue
import PayhookSpoolFormat
import PayhookStore

/// `payhook queue find --order-ref REF`: "did the callback for order X arrive?", wherever its events are.
struct QueueFind: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "find",
        abstract: "Find an order's events wherever they are: new/, cur/, dead/, acknowledged in the ledger, or conflicts/.",
        discussion: """
            --order-ref matches the events' order_ref exactly, byte for byte (requestKey, out_trade_no, \
            mchOrderNo, ...); --tenant and --source narrow the search and may be repeated. Each event found is \
            one line, oldest received_at first, whose LOCATION says where it is: new, cur or dead (queued), \
            acknowledged (consumed; only the dedupe ledger keeps it, until gc) or conflicts (an audit copy of a \
            correctly signed callback whose id was stored with other content; never queued; its line names the \
            copy and what it conflicts with). --json prints the objects of list --json with acknowledged_at, \
            conflict_copy and conflicts_with added. On a spool this reads every event file of new/, cur/, dead/, \
            ids/ and conflicts/; the database uses its order_ref index. Exit 0 whether or not anything was \
            found; 1 when a file was not a valid event (named on stderr; the rest is still printed) or the queue \
            cannot be read.
            """
    )

    @OptionGroup var spool: QueueSpoolOption

    @Option(name: .customLong("order-ref"), help: ArgumentHelp("The order reference to look for (the events' order_ref).", valueName: "ref"))
    var orderRef: String

    @Option(name: .long, help: ArgumentHelp("Only this tenant (domainCode, mch_id, app_id, ...); repeatable.", valueName: "tenant"))
    var tenant: [String] = []

    @Option(name: .long, help: ArgumentHelp("Only this source (unified, wechat.pay, ...); repeatable.", valueName: "source"))
    var source: [String] = []

    @Flag(name: .long, help: "Print a JSON array (one object per event, every key always present) instead of a table.")
    var json = false

    func run() throws {
        let queue = try spool.open()
        var query = QueueSearch()
        query.orderRef = orderRef
        query.tenants = Set(tenant)
        query.sources = Set(source)
        let result = try QueueCLI.attempt(queue.search(query))
        if json {
            Output.out(QueueFormat.storedJSON(result.items))
        } else if result.items.isEmpty {
            let narrowed = tenant.isEmpty && source.isEmpty ? "" : " for the tenants and sources given"
            Output.out(
                "no event with order_ref \"\(QueueFormat.printable(orderRef))\"\(narrowed) in new/, cur/, dead/, "
                    + "the ledger or conflicts/ of \(queue.name)")
        } else {
            Output.out(QueueFormat.storedTable(result.items))
        }
        if QueueCLI.report(result) { throw ExitCode(1) }
    }
}

extension QueueCLI {
    /// Reports what a search set aside (moved to corrupt/) or could not read (left in place) on stderr. Returns
    /// whether there was any.
    static func report(_ result: QueueSearchResult) -> Bool {
        let moved = report(result.quarantined)
        for skipped in result.skipped { Output.err("error: \(skipped)") }
        return moved || !result.skipped.isEmpty
    }

    /// The event `reference` names, an id or a unique prefix of one; exit 1 when no stored event or conflict copy
    /// has such an id, or when several do (they are listed).
    static func resolve(_ reference: QueueReference, in queue: any EventQueue) throws -> String {
        switch reference {
        case .id(let id), .conflictCopy(let id, _):
            return id
        case .prefix(let prefix):
            // One more than listed, to tell "these" from "at least these".
            let shown = 10
            let matches = try attempt(queue.ids(startingWith: prefix, limit: shown + 1))
            guard matches.count != 1 else { return matches[0] }
            if matches.isEmpty {
                Output.err("error: no event id starts with \(prefix) in \(queue.name)")
            } else {
                let count = matches.count > shown ? "more than \(shown)" : "\(matches.count)"
                Output.err(
                    "error: ID prefix \(prefix) is ambiguous: \(count) events of \(queue.name) start with it: "
                        + matches.prefix(shown).joined(separator: ", ") + "; give more of the id")
            }
            throw ExitCode(1)
        }
    }

    /// The usage check of `show`'s ID: an id, a prefix of at least 8 hex characters, `<id>.json` or a
    /// conflict copy's name (exit 2 through ValidationError, saying which rule the text breaks).
    static func validateReference(_ text: String) throws {
        do {
            _ = try QueueReference.parse(text, prefixes: true, conflictCopies: true)
        } catch {
            switch error {
            case .empty:
                throw ValidationError("ID must not be empty")
            case .tooShort(let count):
                throw ValidationError(
                    "ID \(EventID.quoted(text)) is too short: an id prefix needs at least \(QueueReference.minimumPrefix) "
                        + "hex characters, this has \(count)")
            case .tooLong(let count):
                throw ValidationError("ID \(EventID.quoted(text)) is too long: an event id has 64 hex characters, this has \(count)")
            case .notHex, .prefixNotAllowed, .conflictCopyNotAllowed:
                throw ValidationError(
                    "ID must be an event id (64 lowercase hex characters), a prefix of one of at least "
                        + "\(QueueReference.minimumPrefix), its file name <id>.json or a conflict copy's name "
                        + "<id>.<...>.json; \(EventID.quoted(text)) is not lowercase hex")
            }
        }
    }
}
