import ArgumentParser
import Foundation
import PayhookQueue
import PayhookStore

/// `payhook queue gc`: retention of the dedupe ledger and clean-up of leftovers.
struct QueueGC: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Prune old dedupe-ledger entries (ids/), conflict copies (conflicts/) and leftovers in tmp/; say what was removed.",
        discussion: """
            A ledger entry ids/<id> is pruned when it was written longer ago than --older-than (its mtime) and \
            its event has left the spool (acknowledged); until then a retry of the callback is still a \
            duplicate. Conflict copies in conflicts/ go by the same age. --older-than defaults to the ledger \
            retention the server records in SPOOL/.retention (its config ledger_retention_days), or 7d on a \
            spool without that file; a shorter --older-than is refused (exit 1), since the server may still \
            need those entries to recognise a replay, and a malformed .retention is an error (exit 1). tmp/ \
            files younger than --tmp-older-than may be a store in progress and are never removed. Events in \
            new/, cur/ and dead/, and corrupt/ are never touched. On ext4, prefer several runs with --limit \
            over one huge deletion (docs/consumers.md).
            """
    )

    @OptionGroup var spool: QueueSpoolOption

    @Option(name: .customLong("older-than"), help: ArgumentHelp("Ledger retention; default and minimum: the server's, from SPOOL/.retention (7d without it).", valueName: "duration"), transform: QueueDuration.parse)
    var olderThan: QueueDuration?

    @Option(name: .customLong("tmp-older-than"), help: ArgumentHelp("Minimum age of a tmp/ file to remove (at least 1m). (default: 1h)", valueName: "duration"), transform: QueueDuration.parse)
    var tmpOlderThan = QueueDuration(seconds: 3600, text: "1h")

    @Flag(name: .customLong("dry-run"), help: "Print what would be removed; remove nothing.")
    var dryRun = false

    @Option(name: .long, help: "Remove at most this many files (oldest ledger entries first).")
    var limit: Int?

    func validate() throws {
        guard tmpOlderThan.seconds >= QueueGCOptions.minimumTemporaryAge else {
            throw ValidationError("--tmp-older-than must be at least 1m: younger tmp/ files may be stores in progress")
        }
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
    }

    func run() throws {
        let queue = try spool.open()
        let recorded = try QueueCLI.attempt(queue.retention())
        if let olderThan, let recorded, olderThan.seconds < recorded.seconds {
            Output.err(
                "error: --older-than \(olderThan.text) would prune ledger entries the server still needs to "
                    + "recognise replays; the server runs with a retention of \(QueueTime.formatDuration(recorded.seconds)) "
                    + "(config ledger_retention_days), recorded in \(recorded.source)"
            )
            throw ExitCode(1)
        }
        if let olderThan, olderThan.seconds < 86400 {
            Output.err(
                "warning: --older-than \(olderThan.text) is shorter than WeChat Pay's 24h retry window; "
                    + "a retry arriving later would be stored again"
            )
        }
        var options = QueueGCOptions()
        options.ledgerAge = olderThan?.seconds
        options.temporaryAge = tmpOlderThan.seconds
        options.dryRun = dryRun
        options.limit = limit
        let report = try QueueCLI.attempt(queue.gc(options))
        let verb = dryRun ? "would remove" : "removed"
        for item in report.removed {
            Output.out("\(verb) \(item.path): \(item.reason)")
        }
        let ledger = report.removed.filter { $0.kind == .ledgerEntry }.count
        let conflicts = report.removed.filter { $0.kind == .conflictCopy }.count
        let temporary = report.removed.filter { $0.kind == .temporaryFile }.count
        let other = report.removed.count - ledger - conflicts - temporary
        var summary = "\(verb) \(report.removed.count) file\(report.removed.count == 1 ? "" : "s") "
            + "(\(ledger) ledger entr\(ledger == 1 ? "y" : "ies"), \(conflicts) conflict cop\(conflicts == 1 ? "y" : "ies"), "
            + "\(temporary) in tmp/, \(other) queue sidecar\(other == 1 ? "" : "s"))"
        if report.keptPending > 0 {
            summary += "; kept \(report.keptPending) old ledger entr\(report.keptPending == 1 ? "y" : "ies") whose events are still queued"
        }
        if report.limited { summary += "; stopped at --limit \(limit ?? 0), run again for more" }
        Output.out(summary)
    }
}
