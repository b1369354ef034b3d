import ArgumentParser
import Foundation
import PayhookCore
import PayhookQueue
import PayhookSpoolFormat
import PayhookStore

/// `payhook queue export --since DAY --until DAY`: every event stored in a window, acknowledged or not, for
/// reconciliation (docs/consumers.md, `export`).
struct QueueExport: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Export every event received in a window of days, acknowledged or not, as CSV or JSON lines.",
        discussion: """
            For reconciliation: each event stored (waiting, taken, dead or acknowledged and still in the ledger) \
            whose received_at lies in [--since, --until], once, oldest first. Conflict copies are not events and \
            are left out. DAY is a date (2026-11-01: that whole day in the local time zone, $TZ; --until includes \
            its day) or an RFC 3339 time (exact; both ends included). Columns: id, received_at, source, tenant, \
            order_ref, amount_fen (the amount in fen), currency, status, state (new, cur, dead or acknowledged). \
            CSV follows RFC 4180 (a header line, CRLF line ends, fields with a comma, quote or line break quoted); \
            a text field starting with =, +, -, @, a tab or a carriage return gets a leading ' so that no \
            spreadsheet runs it as a formula. --format jsonl prints one JSON object per line, the same keys. The \
            window exported is noted on stderr. Only what the ledger still holds can be exported: gc prunes \
            acknowledged events after the retention. Exit 1 when a file was not a valid event (named on stderr).
            """
    )

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case csv, jsonl
    }

    @OptionGroup var spool: QueueSpoolOption

    @Option(name: .long, help: ArgumentHelp("The first day (2026-11-01, local time) or time (RFC 3339) of the window.", valueName: "day"))
    var since: String

    @Option(name: .long, help: ArgumentHelp("The last day (included) or time of the window.", valueName: "day"))
    var until: String

    @Option(name: .long, help: "csv (RFC 4180, with a header line) or jsonl (one JSON object per line).")
    var format: Format = .csv

    func validate() throws {
        guard let start = QueueDay.parse(since) else { throw Self.malformed("--since", since) }
        guard let end = QueueDay.parse(until) else { throw Self.malformed("--until", until) }
        guard QueueDay.window(since: start, until: end) != nil else {
            throw ValidationError("--until \(EventID.quoted(until)) ends before --since \(EventID.quoted(since)) starts")
        }
    }

    static func malformed(_ name: String, _ value: String) -> ValidationError {
        ValidationError(
            "\(name) must be a date (2026-11-01) or an RFC 3339 time (2026-11-01T00:00:00+08:00); got \(EventID.quoted(value))")
    }

    func run() throws {
        guard let start = QueueDay.parse(since), let end = QueueDay.parse(until),
            let window = QueueDay.window(since: start, until: end)
        else { throw ExitCode(2) }
        let queue = try spool.open()
        var query = QueueSearch()
        query.places = [.new, .cur, .dead, .acknowledged]
        query.window = window
        query.includeBytes = false
        let result = try QueueCLI.attempt(queue.search(query))
        var writer = BufferedOutput()
        if format == .csv { writer.write(QueueExportFormat.csvHeader()) }
        for item in result.items {
            writer.write(format == .csv ? QueueExportFormat.csvLine(item) : QueueExportFormat.jsonLine(item))
        }
        writer.flush()
        let from = window.since.map(QueueTime.formatRFC3339) ?? "-"
        let to = window.until.map(QueueTime.formatRFC3339) ?? "-"
        let count = result.items.count
        Output.err(
            "note: exported \(count) event\(count == 1 ? "" : "s") of \(queue.name) received from \(from) to \(to) "
                + (window.untilExclusive ? "(excluded)" : "(included)"))
        if QueueCLI.report(result) { throw ExitCode(1) }
    }
}

/// The rows of `queue export`: one definition of the columns for both formats.
enum QueueExportFormat {
    /// The columns, in order; docs/consumers.md documents each.
    static let columns = ["id", "received_at", "source", "tenant", "order_ref", "amount_fen", "currency", "status", "state"]

    /// An item's cells: text, or the amount as an integer; nil where the event has no such field.
    enum Cell {
        case text(String?)
        case integer(Int64?)
    }

    static func cells(_ item: QueueStoredEvent) -> [Cell] {
        let event = item.event
        return [
            .text(event.id), .text(event.receivedAtText), .text(event.source), .text(event.tenant), .text(event.orderRef),
            .integer(event.amount), .text(event.currency), .text(event.status), .text(item.place.rawValue),
        ]
    }

    static func csvHeader() -> String {
        columns.joined(separator: ",") + "\r\n"
    }

    /// One CSV record, RFC 4180: fields separated by commas, the record ended by CRLF, a field quoted (its quotes
    /// doubled) when it holds a comma, a quote, a CR or an LF. A missing value is an empty field.
    static func csvLine(_ item: QueueStoredEvent) -> String {
        cells(item).map { cell -> String in
            switch cell {
            case .integer(let value): return value.map(String.init) ?? ""
            case .text(let value): return csvField(guardFormula(value ?? ""))
            }
        }.joined(separator: ",") + "\r\n"
    }

    /// Spreadsheet formula injection (OWASP "CSV Injection"): a cell starting with `=`, `+`, `-`, `@`, a tab or
    /// a carriage return is read as a formula by Excel, LibreOffice and Google Sheets, and an order_ref is text an
    /// attacker chooses. Such a text field gets a leading `'`, which spreadsheets take as "text" and do not show.
    /// The amount is written from an integer and needs none.
    static func guardFormula(_ text: String) -> String {
        guard let first = text.unicodeScalars.first, ["=", "+", "-", "@", "\t", "\r"].contains(first) else { return text }
        return "'" + text
    }

    static func csvField(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { $0 == "," || $0 == "\"" || $0 == "\r" || $0 == "\n" }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// One JSON object on one line, the columns as keys in their order, null where the event has no value.
    static func jsonLine(_ item: QueueStoredEvent) -> String {
        var json = JSONText()
        json.raw("{")
        for (index, (name, cell)) in zip(columns, cells(item)).enumerated() {
            if index > 0 { json.raw(",") }
            json.string(name)
            json.raw(":")
            switch cell {
            case .text(let value?): json.string(value)
            case .integer(let value?): json.integer(value)
            case .text(nil), .integer(nil): json.raw("null")
            }
        }
        json.raw("}\n")
        return String(decoding: json.bytes, as: UTF8.self)
    }
}

/// Standard output in 64 KiB writes: an export of a month is many lines.
struct BufferedOutput {
    private var buffer: [UInt8] = []

    mutating func write(_ text: String) {
        buffer.append(contentsOf: text.utf8)
        if buffer.count >= 1 << 16 { flush() }
    }

    mutating func flush() {
        guard !buffer.isEmpty else { return }
        FileHandle.standardOutput.write(Data(buffer))
        buffer.removeAll(keepingCapacity: true)
    }
}
