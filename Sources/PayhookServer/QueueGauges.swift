import Foundation
import PayhookLock
public import PayhookStore

/// The queue's gauges on `/metrics`, for `payhook serve` and for `payhook queue consume --metrics-listen`:
/// `payhook_queue_oldest_event_age_seconds{folder}` (new and cur, 0 when empty: what shows a stuck consumer) and,
/// for the server, `payhook_spool_files{folder}` (docs/metrics.md).
///
/// Both come from one ``QueueCensus``, fetched at the start of a scrape (``Metrics/onScrape(_:)``), not once per
/// gauge. Fetching costs a pass over the spool's folders or one statement on the database, so a census is reused
/// for ten times as long as it took to fetch (at most 30 s): however often `/metrics` is asked, and anyone who can
/// reach the port can ask, counting takes at most about a tenth of one core. On a small spool that is a fraction
/// of a millisecond, so every scrape sees a fresh census; the ages are computed from the census's arrival times
/// at each scrape, so they grow between fetches all the same.
public final class QueueGauges: Sendable {
    /// A census is reused for this many times the time it took.
    static let reuseFactor = 10.0
    /// …and never longer than this, in seconds.
    static let longestReuse = 30.0

    private struct State {
        var census: QueueCensus?
        var fetchedAt: ContinuousClock.Instant?
        var cost: Duration = .zero
    }

    private let fetch: @Sendable () -> QueueCensus?
    private let state = Locked(State())

    /// Registers the gauges on `metrics`: the oldest-age gauge always, `payhook_spool_files` when `files`. The
    /// registrations keep what they need alive as long as `metrics`.
    ///
    /// - Parameter fetch: the census now, nil when it cannot be read (a database that does not answer): the
    ///   series are then left out of the scrape.
    public static func register(on metrics: Metrics, files: Bool, fetch: @escaping @Sendable () -> QueueCensus?) {
        QueueGauges(fetch: fetch).register(on: metrics, files: files)
    }

    init(fetch: @escaping @Sendable () -> QueueCensus?) {
        self.fetch = fetch
    }

    private func register(on metrics: Metrics, files: Bool) {
        metrics.onScrape { [self] in refresh() }
        metrics.gauge(
            "payhook_queue_oldest_event_age_seconds",
            help: "Seconds since the oldest event in new (waiting) or cur (taken) arrived; 0 when there is none. Grows while no consumer takes or finishes events."
        ) { [self] in
            guard let census = current else { return [] }
            let ages = census.oldestAges(now: Date().timeIntervalSince1970)
            return QueueCensus.datedFolders.map { ([("folder", $0)], ages[$0] ?? 0) }
        }
        if files {
            metrics.gauge(
                "payhook_spool_files",
                help: "Events in new (waiting), cur (taken) and dead (dead letters, one per event), conflict copies in conflicts, quarantined files in corrupt (the spool only)."
            ) { [self] in
                guard let census = current else { return [] }
                return census.counts.sorted { $0.key < $1.key }.map { ([("folder", $0.key)], Double($0.value)) }
            }
        }
    }

    /// The census the last scrape fetched or reused.
    var current: QueueCensus? { state.withLock { $0.census } }

    /// Fetches a census unless the last one is still young enough to reuse (see the type's description).
    func refresh() {
        let now = ContinuousClock.now
        let due = state.withLock { state -> Bool in
            guard let fetchedAt = state.fetchedAt else { return true }
            let reuse = min(state.cost * Self.reuseFactor, .seconds(Self.longestReuse))
            return now - fetchedAt >= reuse
        }
        guard due else { return }
        let census = fetch()
        let cost = ContinuousClock.now - now
        state.withLock {
            $0.census = census
            $0.fetchedAt = now
            $0.cost = cost
        }
    }
}
