import Foundation
public import PayhookStore

extension PostgresEventQueue {
    /// The most rows one `gc` statement deletes: a long delete holds its locks and bloats one transaction, so a
    /// large prune is many short ones.
    static let gcBatch = 500

    /// Prunes what the database keeps for the receiving side:
    /// - `payhook_ledger` rows acknowledged longer than the ledger age before `options.now` (`acked_at`), oldest
    ///   first; a row whose event is still queued (waiting, taken or dead) is never deleted, however old, and is
    ///   counted in `keptPending`;
    /// - `payhook_conflict` copies received as long ago.
    /// The ledger age defaults to the retention `payhook serve` records in `payhook_settings` and may not be
    /// shorter (the server may still need those rows to recognise a replay), as the spool's gc refuses. There are
    /// no temporary files or sidecars in the database; `temporaryAge` is checked as the spool checks it, so one
    /// command line means the same on both. `limit` caps the rows removed in one run, `dryRun` removes nothing.
    public func gc(_ options: QueueGCOptions) throws(QueueError) -> QueueGCReport {
        let recorded = try retention()
        let ledgerAge = options.ledgerAge ?? recorded?.seconds ?? QueueGCOptions.defaultLedgerAge
        if let recorded, ledgerAge < recorded.seconds {
            throw QueueError(
                .invalidArgument,
                "a ledger age of \(QueueTime.formatDuration(ledgerAge)) would prune ledger entries the server still "
                    + "needs to recognise replays; the server runs with a retention of "
                    + "\(QueueTime.formatDuration(recorded.seconds)) (config ledger_retention_days), recorded in \(recorded.source)"
            )
        }
        guard options.temporaryAge >= QueueGCOptions.minimumTemporaryAge else {
            throw QueueError(
                .invalidArgument,
                "a temporary-file age below \(QueueTime.formatDuration(QueueGCOptions.minimumTemporaryAge)) is refused")
        }
        guard ledgerAge >= 0, ledgerAge.isFinite else { throw QueueError(.invalidArgument, "the ledger age must be 0 or more") }
        if let limit = options.limit, limit < 1 { throw QueueError(.invalidArgument, "the limit must be at least 1") }
        var report = QueueGCReport()
        report.ledgerAge = ledgerAge
        report.serverRetention = recorded?.seconds
        report.dryRun = options.dryRun
        let cutoff = String(options.now.timeIntervalSince1970 - ledgerAge)
        var budget = options.limit ?? Int.max

        // Ledger rows, oldest acknowledgement first; NOT EXISTS keeps every row whose event is still queued.
        budget = try prune(
            kind: .ledgerEntry, budget: budget, options: options, report: &report,
            select: (
                "payhook_gc_ledger_select",
                """
                SELECT encode(l.id, 'hex'), extract(epoch FROM l.acked_at)::float8 FROM payhook_ledger l
                 WHERE l.acked_at < to_timestamp($1::float8)
                   AND NOT EXISTS (SELECT 1 FROM payhook_queue q WHERE q.id = l.id)
                 ORDER BY l.acked_at, l.id LIMIT $2::bigint
                """),
            delete: (
                "payhook_gc_ledger_delete",
                """
                DELETE FROM payhook_ledger d USING (
                    SELECT l.id FROM payhook_ledger l
                     WHERE l.acked_at < to_timestamp($1::float8)
                       AND NOT EXISTS (SELECT 1 FROM payhook_queue q WHERE q.id = l.id)
                     ORDER BY l.acked_at, l.id LIMIT $2::bigint
                       FOR UPDATE OF l SKIP LOCKED
                ) old
                 WHERE d.id = old.id AND NOT EXISTS (SELECT 1 FROM payhook_queue q WHERE q.id = d.id)
                RETURNING encode(d.id, 'hex'), extract(epoch FROM d.acked_at)::float8
                """),
            cutoff: cutoff
        ) { id, at in
            ("payhook_ledger/\(id)", "ledger entry acknowledged \(QueueTime.formatRFC3339(at)) "
                + "(\(QueueTime.formatDuration(options.now.timeIntervalSince(at))) ago)")
        }

        // Conflict copies, as old.
        _ = try prune(
            kind: .conflictCopy, budget: budget, options: options, report: &report,
            select: (
                "payhook_gc_conflict_select",
                """
                SELECT conflict_id::text, extract(epoch FROM received_at)::float8 FROM payhook_conflict
                 WHERE received_at < to_timestamp($1::float8)
                 ORDER BY received_at, conflict_id LIMIT $2::bigint
                """),
            delete: (
                "payhook_gc_conflict_delete",
                """
                DELETE FROM payhook_conflict d USING (
                    SELECT conflict_id FROM payhook_conflict
                     WHERE received_at < to_timestamp($1::float8)
                     ORDER BY received_at, conflict_id LIMIT $2::bigint
                       FOR UPDATE SKIP LOCKED
                ) old
                 WHERE d.conflict_id = old.conflict_id
                RETURNING d.conflict_id::text, extract(epoch FROM d.received_at)::float8
                """),
            cutoff: cutoff
        ) { id, at in
            ("payhook_conflict/\(id)", "conflict copy written \(QueueTime.formatRFC3339(at)) "
                + "(\(QueueTime.formatDuration(options.now.timeIntervalSince(at))) ago)")
        }

        // Old rows kept because their event is still queued, as the spool counts ids/ entries with other links.
        let pending = try database { (connection, deadline) throws(PGError) in
            try connection.query(
                "payhook_gc_pending",
                """
                SELECT count(*) FROM payhook_ledger l JOIN payhook_queue q ON q.id = l.id
                 WHERE l.stored_at < to_timestamp($1::float8)
                """, [.text(cutoff)], deadline: deadline)
        }
        report.keptPending = Int(pending.int(0, 0) ?? 0)
        return report
    }

    /// Removes (or, in a dry run, lists) eligible rows in batches until none is left or the budget is spent;
    /// returns the budget left.
    private func prune(
        kind: QueueGCItem.Kind, budget start: Int, options: QueueGCOptions, report: inout QueueGCReport,
        select: (name: String, sql: String), delete: (name: String, sql: String), cutoff: String,
        describe: (String, Date) -> (path: String, reason: String)
    ) throws(QueueError) -> Int {
        var budget = start
        func record(_ rows: PGRows) {
            for row in 0..<rows.count {
                guard let id = rows[row, 0] else { continue }
                let at = Date(timeIntervalSince1970: rows[row, 1].flatMap(Double.init) ?? 0)
                let (path, reason) = describe(id, at)
                report.removed.append(QueueGCItem(path: path, reason: reason, kind: kind))
            }
        }
        if options.dryRun {
            // One more than the budget, to tell whether the limit stopped the run.
            let want = budget == Int.max ? Int64.max : Int64(budget) + 1
            let rows = try database { (connection, deadline) throws(PGError) in
                try connection.query(select.name, select.sql, [.text(cutoff), .text(String(want))], deadline: deadline)
            }
            let shown = min(rows.count, budget)
            record(PGRows(rows: Array(rows.rows.prefix(shown))))
            if rows.count > budget { report.limited = true }
            return budget - shown
        }
        while true {
            if budget == 0 {
                let more = try database { (connection, deadline) throws(PGError) in
                    try connection.query(select.name, select.sql, [.text(cutoff), .text("1")], deadline: deadline)
                }
                if !more.isEmpty { report.limited = true }
                return 0
            }
            let batch = min(budget, Self.gcBatch)
            let rows = try database { (connection, deadline) throws(PGError) in
                try connection.query(delete.name, delete.sql, [.text(cutoff), .text(String(batch))], deadline: deadline)
            }
            record(rows)
            budget -= rows.count
            if rows.count < batch { return budget }
        }
    }
}
