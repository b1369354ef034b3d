import Foundation
import PayhookCore
public import PayhookStore

extension PostgresEventQueue {
    /// The most ledger rows one search statement returns: a month's export is read in pages of this many
    /// (keyset pagination on `received_at, id`), so that no single result holds them all.
    public static let searchPage = 5000

    /// Every event and conflict copy of the database that passes `query` (``EventQueue/search(_:)``):
    /// - `payhook_ledger` rows, left-joined to `payhook_queue`: a row with a queue row is in that row's `state`,
    ///   one without is acknowledged (its `acked_at` kept) until `gc` deletes it. Each event is one ledger row,
    ///   so each is found once. Filters on `order_ref`, `tenant`, `source`, `status` and `received_at` run in
    ///   the database (`payhook_ledger_order` and `payhook_ledger_received` serve the first and the last);
    /// - `payhook_conflict` rows, the audit copies, with where the event of their id is now. Their table keeps
    ///   only the bytes, so their fields are read from the JSON (`QueueEvent.decode`) and filtered here; a copy
    ///   that is not an event object is reported in `skipped`.
    public func search(_ query: QueueSearch) throws(QueueError) -> QueueSearchResult {
        var result = QueueSearchResult()
        let stored = query.places.subtracting([.conflicts])
        if !stored.isEmpty { result.items = try ledgerRows(query, places: stored) }
        if query.places.contains(.conflicts) { try conflictRows(query, into: &result) }
        result.items.sort(by: QueueStoredEvent.precedes)
        return result
    }

    /// The ids of ledger rows and conflict copies that start with `prefix`, sorted, at most `limit`: two range
    /// scans of the primary key and the conflicts' index (every id of the prefix lies between the prefix padded
    /// with 0s and with fs).
    public func ids(startingWith prefix: String, limit: Int) throws(QueueError) -> [String] {
        let utf8 = Array(prefix.utf8)
        guard utf8.count <= 64, utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }),
            let low = Hex.decode(prefix + String(repeating: "0", count: 64 - utf8.count)),
            let high = Hex.decode(prefix + String(repeating: "f", count: 64 - utf8.count))
        else {
            throw QueueError(.invalidArgument, "\(Self.quoted(prefix)) is not the start of an event id (lowercase hex)")
        }
        let rows = try database { (connection, deadline) throws(PGError) in
            try connection.query(
                "payhook_queue_prefix",
                """
                SELECT encode(found.id, 'hex') FROM (
                    SELECT id FROM payhook_ledger WHERE id BETWEEN $1::bytea AND $2::bytea
                    UNION SELECT id FROM payhook_conflict WHERE id BETWEEN $1::bytea AND $2::bytea
                ) found
                 ORDER BY found.id LIMIT $3::bigint
                """, [.bytes(low), .bytes(high), .text(String(max(0, limit)))], deadline: deadline)
        }
        return (0..<rows.count).compactMap { rows[$0, 0] }
    }

    /// Ledger rows in `places` (new, cur, dead, acknowledged), page by page.
    private func ledgerRows(_ query: QueueSearch, places: Set<QueuePlace>) throws(QueueError) -> [QueueStoredEvent] {
        func array(_ values: Set<String>) -> PGValue { values.isEmpty ? .null : .text(Self.textArray(values.sorted())) }
        let window = query.window
        var after: (receivedAt: String, id: [UInt8])?
        var items: [QueueStoredEvent] = []
        while true {
            let values: [PGValue] = [
                query.orderRef.map { .text($0) } ?? .null,
                array(query.sources), array(query.tenants), array(query.statuses),
                query.ids.map { .text(Self.textArray($0.sorted())) } ?? .null,
                .text(Self.textArray(places.map(\.rawValue).sorted())),
                window?.since.map { .text(String($0.timeIntervalSince1970)) } ?? .null,
                window?.until.map { .text(String($0.timeIntervalSince1970)) } ?? .null,
                .text(window?.untilExclusive == true ? "true" : "false"),
                after.map { .text($0.receivedAt) } ?? .null,
                after.map { .bytes($0.id) } ?? .null,
                .text(query.includeBytes ? "true" : "false"),
                .text(String(Self.searchPage)),
            ]
            let rows = try database { (connection, deadline) throws(PGError) in
                try connection.query(
                    "payhook_queue_search",
                    """
                    SELECT encode(l.id, 'hex'), CASE WHEN $12::boolean THEN l.event END, l.source, l.tenant, l.order_ref,
                           l.status, l.amount, l.currency, round(extract(epoch FROM l.received_at) * 1000)::bigint,
                           coalesce(q.state, 'acknowledged'), q.attempts, q.last_error,
                           round(extract(epoch FROM q.updated_at) * 1000)::bigint,
                           round(extract(epoch FROM q.dead_at) * 1000)::bigint,
                           round(extract(epoch FROM l.acked_at) * 1000)::bigint, l.received_at::text
                      FROM payhook_ledger l LEFT JOIN payhook_queue q ON q.id = l.id
                     WHERE ($1::text IS NULL OR l.order_ref = $1::text)
                       AND ($2::text[] IS NULL OR l.source = ANY($2::text[]))
                       AND ($3::text[] IS NULL OR l.tenant = ANY($3::text[]))
                       AND ($4::text[] IS NULL OR l.status = ANY($4::text[]))
                       AND ($5::text[] IS NULL OR l.id = ANY(ARRAY(SELECT decode(x, 'hex') FROM unnest($5::text[]) x)))
                       AND coalesce(q.state, 'acknowledged') = ANY($6::text[])
                       AND ($7::float8 IS NULL OR l.received_at >= to_timestamp($7::float8))
                       AND ($8::float8 IS NULL OR CASE WHEN $9::boolean THEN l.received_at < to_timestamp($8::float8)
                                                       ELSE l.received_at <= to_timestamp($8::float8) END)
                       AND ($10::timestamptz IS NULL OR (l.received_at, l.id) > ($10::timestamptz, $11::bytea))
                     ORDER BY l.received_at, l.id
                     LIMIT $13::bigint
                    """, values, deadline: deadline)
            }
            for row in 0..<rows.count {
                guard let item = storedEvent(rows, row) else { continue }
                // The database applied the filters; admits() agrees, and keeps the protocol's one definition.
                if query.admits(item.event) { items.append(item) }
            }
            guard rows.count == Self.searchPage, let last = rows[rows.count - 1, 15], let id = rows[rows.count - 1, 0],
                let key = Hex.decode(id)
            else { return items }
            after = (last, key)
        }
    }

    /// One row of the ledger search.
    private func storedEvent(_ rows: PGRows, _ row: Int) -> QueueStoredEvent? {
        guard let id = rows[row, 0], let place = rows[row, 9].flatMap(QueuePlace.init(rawValue:)) else { return nil }
        let received = rows.int(row, 8).map { Date(timeIntervalSince1970: Double($0) / 1000) }
        let event = QueueEvent(
            id: id, bytes: rows.bytes(row, 1) ?? [], source: rows[row, 2], tenant: rows[row, 3], orderRef: rows[row, 4],
            status: rows[row, 5], amount: rows.int(row, 6), currency: rows[row, 7],
            receivedAtText: received.map(QueueTime.formatRFC3339), receivedAt: received)
        guard let location = place.location else {
            let acked = rows.int(row, 14).map { Date(timeIntervalSince1970: Double($0) / 1000) }
            return QueueStoredEvent(event: event, place: .acknowledged, path: "payhook_ledger/\(id)", acknowledgedAt: acked)
        }
        let record = Self.record(rows, row, id: id)
        // As list shows it: an event this instance took names the file it wrote.
        let path = location == .cur ? takenFile(id) ?? "payhook_queue/\(id)" : "payhook_queue/\(id)"
        return QueueStoredEvent(event: event, place: place, path: path, record: record)
    }

    /// The conflict copies of the ids searched (all of them without `ids`), filtered by their own fields.
    private func conflictRows(_ query: QueueSearch, into result: inout QueueSearchResult) throws(QueueError) {
        let rows = try database { (connection, deadline) throws(PGError) in
            try connection.query(
                "payhook_queue_conflicts",
                """
                SELECT c.conflict_id::text, encode(c.id, 'hex'), c.event,
                       CASE WHEN q.state IS NOT NULL THEN q.state WHEN l.id IS NOT NULL THEN 'acknowledged' END
                  FROM payhook_conflict c
                  LEFT JOIN payhook_ledger l ON l.id = c.id
                  LEFT JOIN payhook_queue q ON q.id = c.id
                 WHERE ($1::text[] IS NULL OR c.id = ANY(ARRAY(SELECT decode(x, 'hex') FROM unnest($1::text[]) x)))
                 ORDER BY c.received_at, c.conflict_id
                """, [query.ids.map { .text(Self.textArray($0.sorted())) } ?? .null], deadline: deadline)
        }
        for row in 0..<rows.count {
            guard let number = rows[row, 0], let id = rows[row, 1] else { continue }
            let path = "payhook_conflict/\(number)"
            guard let bytes = rows.bytes(row, 2), let event = QueueEvent.decode(bytes, keepBytes: query.includeBytes) else {
                result.skipped.append(QueueSkipped(path: path, reason: "it is not a JSON object with a string \"id\""))
                continue
            }
            guard event.id.utf8.elementsEqual(id.utf8) else {
                result.skipped.append(QueueSkipped(path: path, reason: "its id \(Self.quoted(event.id)) is not the row's"))
                continue
            }
            guard query.admits(event) else { continue }
            result.items.append(
                QueueStoredEvent(
                    event: event, place: .conflicts, path: path,
                    conflictName: QueueReference.conflictCopyName(id: id, tag: number),
                    conflictsWith: rows[row, 3].flatMap(QueuePlace.init(rawValue:))))
        }
    }
}
