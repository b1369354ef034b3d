public import Foundation
import PayhookSpoolFormat
public import PayhookStore

/// How the queue tools print events: a table and a pretty form for people, JSON for scripts.
public enum QueueFormat {
    /// The schema's property order (schema/event.v1.schema.json), used when showing an event: the event file
    /// definition's, so that a member added there (`resource`) is shown in its place.
    static let memberOrder = EventFile.members

    /// A table with a header line; columns LOCATION, RECEIVED_AT, SOURCE, TENANT, ORDER_REF, STATUS, AMOUNT,
    /// ATTEMPTS and ID (last, so that a long id does not push the others about). Missing values show as "-".
    /// Times are local (``QueueTime/formatLocal(_:)``) and amounts in their unit (``amount(_:currency:)``): the
    /// table is for people; `--json` keeps UTC and fen.
    public static func table(_ entries: [QueueEntry]) -> String {
        columns(header: "LOCATION", entries.map { entry in
            [entry.location.rawValue] + eventCells(entry.event) + [String(entry.attempts), entry.id]
        })
    }

    /// The cells RECEIVED_AT, SOURCE, TENANT, ORDER_REF, STATUS and AMOUNT of an event, as people read them.
    static func eventCells(_ event: QueueEvent) -> [String] {
        [
            event.receivedAt.map(QueueTime.formatLocal) ?? event.receivedAtText.map(printable) ?? "-",
            event.source.map(printable) ?? "-",
            event.tenant.map(printable) ?? "-",
            event.orderRef.map(printable) ?? "-",
            event.status.map(printable) ?? "-",
            event.amount.map { amount($0, currency: event.currency) } ?? "-",
        ]
    }

    /// Rows under the header `first`, RECEIVED_AT, SOURCE, TENANT, ORDER_REF, STATUS, AMOUNT, ATTEMPTS, ID, each
    /// column as wide as its widest cell; the last column is not padded.
    static func columns(header first: String, _ body: [[String]]) -> String {
        let rows = [[first, "RECEIVED_AT", "SOURCE", "TENANT", "ORDER_REF", "STATUS", "AMOUNT", "ATTEMPTS", "ID"]] + body
        var widths = [Int](repeating: 0, count: rows[0].count)
        for row in rows {
            for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) }
        }
        return rows.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[index] - cell.count)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }

    /// The listing as a JSON array (pretty, keys sorted), one object per event: `id`, `location`, `path`,
    /// `source`, `tenant`, `order_ref`, `status`, `amount`, `currency`, `received_at`, `attempts`,
    /// `last_error` (null when none) and `dead_at` (null unless a dead letter). Missing event fields are null.
    public static func json(_ entries: [QueueEntry]) -> String {
        encode(entries.map { entry in
            JSONItem(id: entry.id, location: entry.location.rawValue, path: entry.path, event: entry.event,
                     attempts: entry.attempts, record: entry.record, search: nil)
        })
    }

    /// One object of a JSON listing: `list --json`'s keys, and with `search` those only a search has
    /// (``storedJSON(_:)``).
    struct JSONItem: Encodable {
        struct Search {
            var acknowledgedAt: String?
            var conflictCopy: String?
            var conflictsWith: String?
        }

        var id: String
        var location: String
        var path: String
        var event: QueueEvent
        var attempts: Int
        var record: QueueAttemptRecord?
        var search: Search?

        enum Keys: String, CodingKey {
            case id, location, path, source, tenant, status, amount, currency, attempts
            case orderRef = "order_ref"
            case receivedAt = "received_at"
            case lastError = "last_error"
            case deadAt = "dead_at"
            case acknowledgedAt = "acknowledged_at"
            case conflictCopy = "conflict_copy"
            case conflictsWith = "conflicts_with"
        }

        func encode(to encoder: any Encoder) throws {
            // encode(_:forKey:) of an Optional writes null, so every object has the same keys.
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(id, forKey: .id)
            try container.encode(location, forKey: .location)
            try container.encode(path, forKey: .path)
            try container.encode(event.source, forKey: .source)
            try container.encode(event.tenant, forKey: .tenant)
            try container.encode(event.orderRef, forKey: .orderRef)
            try container.encode(event.status, forKey: .status)
            try container.encode(event.amount, forKey: .amount)
            try container.encode(event.currency, forKey: .currency)
            try container.encode(event.receivedAtText, forKey: .receivedAt)
            try container.encode(attempts, forKey: .attempts)
            try container.encode(record?.lastError, forKey: .lastError)
            try container.encode(record?.deadAt, forKey: .deadAt)
            guard let search else { return }
            try container.encode(search.acknowledgedAt, forKey: .acknowledgedAt)
            try container.encode(search.conflictCopy, forKey: .conflictCopy)
            try container.encode(search.conflictsWith, forKey: .conflictsWith)
        }
    }

    /// A JSON array of `items`, pretty, keys sorted.
    static func encode(_ items: [JSONItem]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(items) else { return "[]" }
        return String(decoding: data, as: UTF8.self)
    }

    /// The event for people: where it is, each top-level member on its own line (schema order, then any
    /// others), `fields` and `raw` one level deep, then its attempts bookkeeping.
    public static func pretty(_ entry: QueueEntry, now: Date = Date()) -> String {
        var lines: [String] = []
        func line(_ name: String, _ value: String, indent: Int = 0) {
            let label = String(repeating: " ", count: indent) + name
            lines.append(label.padding(toLength: max(label.count + 1, 16), withPad: " ", startingAt: 0) + value)
        }
        switch entry.location {
        case .new: line("location", "new/ (waiting)")
        case .cur: line("location", "cur/ (taken, not yet acknowledged)")
        case .dead: line("location", "dead/ (dead letter)")
        }
        line("path", entry.path)
        let object = (try? JSONSerialization.jsonObject(with: Data(entry.event.bytes))) as? [String: Any] ?? [:]
        let known = Set(memberOrder)
        for name in memberOrder + object.keys.filter({ !known.contains($0) }).sorted() {
            guard let value = object[name] else { continue }
            if let nested = value as? [String: Any] {
                lines.append(name + ":")
                for key in nested.keys.sorted() {
                    line(printable(key), display(nested[key] ?? NSNull()), indent: 2)
                }
            } else if name == "amount", let minor = entry.event.amount {
                line(name, amount(minor, currency: entry.event.currency))
            } else if name == "received_at", let text = value as? String {
                line(name, local(text))
            } else {
                line(name, display(value))
            }
        }
        if let record = entry.record {
            let noun = record.attempts == 1 ? "failed attempt" : "failed attempts"
            line("attempts", "\(record.attempts) \(noun)")
            if let deadAt = record.deadAt { line("dead_at", local(deadAt)) }
            if let last = record.lastError {
                line("last_error", "\(printable(last.reason)) at \(local(last.at))")
                if let tail = last.stderrTail, !tail.isEmpty {
                    lines.append("last stderr:")
                    for text in tail.split(separator: "\n", omittingEmptySubsequences: false).suffix(20) {
                        lines.append("  " + printable(String(text)))
                    }
                }
            }
        } else {
            line("attempts", "0 failed attempts")
        }
        return lines.joined(separator: "\n")
    }

    /// ISO 4217 exponents other than 2: how many digits of an amount are the minor unit.
    static let exponents: [String: Int] = [
        "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0, "RWF": 0, "UGX": 0,
        "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
        "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    ]

    /// An amount for people, from the event's integer `amount` in the currency's smallest unit (docs/contract.md
    /// §3: fen for CNY): `¥1.00 (100 fen)`, `12.34 USD (1234 minor units)`, `500 JPY`; without a currency,
    /// `100 (smallest unit)`. The integer stays visible, since it is what the event and `--json` carry.
    public static func amount(_ minor: Int64, currency: String?) -> String {
        guard let currency else { return "\(minor) (smallest unit)" }
        // XxPay and Jeepay write `cny` (docs/consumers.md): codes are matched in any case.
        let code = currency.uppercased()
        let exponent = exponents[code] ?? 2
        if exponent == 0 { return "\(minor) \(printable(currency))" }
        var digits = String(minor.magnitude)
        if digits.count <= exponent { digits = String(repeating: "0", count: exponent + 1 - digits.count) + digits }
        let major = "\(minor < 0 ? "-" : "")\(digits.dropLast(exponent)).\(digits.suffix(exponent))"
        if code == "CNY" {
            return "\(minor < 0 ? "-" : "")¥\(major.drop { $0 == "-" }) (\(minor) fen)"
        }
        return "\(major) \(printable(currency)) (\(minor) minor units)"
    }

    /// An RFC 3339 time for people: local, then as written (`2026-11-22 10:34:50 +08:00 (2026-11-22T02:34:50.123Z)`);
    /// text that is not one is shown as it is, escaped.
    static func local(_ text: String) -> String {
        guard let date = QueueTime.parseRFC3339(text) else { return printable(text) }
        return "\(QueueTime.formatLocal(date)) (\(printable(text)))"
    }

    /// A JSON value for people: strings bare (control characters escaped), everything else as compact JSON.
    static func display(_ value: Any) -> String {
        if let text = value as? String { return text.isEmpty ? "\"\"" : printable(text) }
        guard let data = try? JSONSerialization.data(
            withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys, .withoutEscapingSlashes])
        else { return "null" }
        return String(decoding: data, as: UTF8.self)
    }

    /// Text with control characters escaped (`\n`, `\t`, `\u001b`), so that a value from a callback cannot
    /// move the cursor or forge a line of output.
    public static func printable(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\\": out += "\\\\"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7f || (0x80..<0xa0).contains(scalar.value) {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }
}
