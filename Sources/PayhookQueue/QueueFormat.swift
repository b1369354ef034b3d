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
    public static func table(_ entries: [QueueEntry]) -> String {
        let header = ["LOCATION", "RECEIVED_AT", "SOURCE", "TENANT", "ORDER_REF", "STATUS", "AMOUNT", "ATTEMPTS", "ID"]
        var rows = [header]
        for entry in entries {
            let event = entry.event
            let amount = event.amount.map { amount in
                event.currency.map { "\(amount) \(printable($0))" } ?? "\(amount)"
            }
            rows.append([
                entry.location.rawValue,
                event.receivedAtText.map(printable) ?? "-",
                event.source.map(printable) ?? "-",
                event.tenant.map(printable) ?? "-",
                event.orderRef.map(printable) ?? "-",
                event.status.map(printable) ?? "-",
                amount ?? "-",
                String(entry.attempts),
                entry.id,
            ])
        }
        var widths = [Int](repeating: 0, count: header.count)
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
        let items = entries.map(ListItem.init)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(items) else { return "[]" }
        return String(decoding: data, as: UTF8.self)
    }

    private struct ListItem: Encodable {
        let entry: QueueEntry

        enum Keys: String, CodingKey {
            case id, location, path, source, tenant, status, amount, currency, attempts
            case orderRef = "order_ref"
            case receivedAt = "received_at"
            case lastError = "last_error"
            case deadAt = "dead_at"
        }

        func encode(to encoder: any Encoder) throws {
            // encode(_:forKey:) of an Optional writes null, so every object has the same keys.
            var container = encoder.container(keyedBy: Keys.self)
            let event = entry.event
            try container.encode(entry.id, forKey: .id)
            try container.encode(entry.location.rawValue, forKey: .location)
            try container.encode(entry.path, forKey: .path)
            try container.encode(event.source, forKey: .source)
            try container.encode(event.tenant, forKey: .tenant)
            try container.encode(event.orderRef, forKey: .orderRef)
            try container.encode(event.status, forKey: .status)
            try container.encode(event.amount, forKey: .amount)
            try container.encode(event.currency, forKey: .currency)
            try container.encode(event.receivedAtText, forKey: .receivedAt)
            try container.encode(entry.attempts, forKey: .attempts)
            try container.encode(entry.record?.lastError, forKey: .lastError)
            try container.encode(entry.record?.deadAt, forKey: .deadAt)
        }
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
            } else {
                line(name, display(value))
            }
        }
        if let record = entry.record {
            let noun = record.attempts == 1 ? "failed attempt" : "failed attempts"
            line("attempts", "\(record.attempts) \(noun)")
            if let deadAt = record.deadAt { line("dead_at", deadAt) }
            if let last = record.lastError {
                line("last_error", "\(printable(last.reason)) at \(last.at)")
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
