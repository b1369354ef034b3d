/// How many events a store holds, by place, and when the oldest waiting and the oldest taken one arrived: what
/// `/metrics` exports as `payhook_spool_files` and `payhook_queue_oldest_event_age_seconds` (docs/metrics.md).
/// Places use the spool's folder names; the database's queue states have the same names.
public struct QueueCensus: Sendable, Equatable {
    /// The places whose oldest event is dated: waiting and taken.
    public static let datedFolders = ["new", "cur"]

    /// By place: `new`, `cur` and `dead` count events (a dead letter once, however many files it has),
    /// `conflicts` audit copies, `corrupt` quarantined files (the spool only).
    public var counts: [String: Int]
    /// By place of ``datedFolders`` that holds an event: when the oldest one there arrived, in Unix seconds.
    public var oldestReceived: [String: Double]

    public init(counts: [String: Int], oldestReceived: [String: Double]) {
        self.counts = counts
        self.oldestReceived = oldestReceived
    }

    /// Seconds from the arrival of the oldest event in each of ``datedFolders`` to `now`, 0 for a place that holds
    /// none (never negative, whatever the clocks did).
    public func oldestAges(now: Double) -> [String: Double] {
        var ages: [String: Double] = [:]
        for folder in Self.datedFolders {
            ages[folder] = oldestReceived[folder].map { max(0, now - $0) } ?? 0
        }
        return ages
    }
}
