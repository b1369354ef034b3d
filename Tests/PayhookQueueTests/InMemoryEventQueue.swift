import Foundation
import PayhookQueue
import PayhookSpoolFormat
import PayhookStore
import PayhookTestSupport
import Synchronization

/// A queue held in memory: the test double of `EventQueue`, a second backend that the queue's code must work
/// with unchanged. It keeps the protocol's promises (one taker per event, attempts counted by nack and requeue,
/// dead letters revived with a fresh count, held events left alone by requeue) and nothing of the spool's:
/// no folders, no ledger, no quarantine. A taken event's bytes are written to a file of its own, which is what
/// a consume worker hands its command as stdin.
final class InMemoryEventQueue: EventQueue {
    private struct Item {
        var event: QueueEvent
        var location: QueueLocation
        var record: QueueAttemptRecord?
        var takenAt: Date?
        var held = false
    }

    private struct State {
        var items: [String: Item] = [:]
        /// Acknowledged events, as a ledger keeps them.
        var acknowledged: [String: QueueEvent] = [:]
        var consumerLocked = false
    }

    private let state = Mutex(State())
    /// Where taken events' bytes are written for commands to read.
    let scratch: TemporaryDirectory
    var folder: String { scratch.path }
    let name = "memory"

    init() throws {
        scratch = try TemporaryDirectory(prefix: "payhook-memory-queue")
    }

    /// Adds a waiting event.
    func add(_ event: QueueEvent) {
        state.withLock { $0.items[event.id] = Item(event: event, location: .new) }
    }

    /// Where `id` is, if anywhere.
    func location(of id: String) -> QueueLocation? {
        state.withLock { $0.items[id]?.location }
    }

    func describe(_ location: QueueLocation) -> String {
        "memory \(location.rawValue)"
    }

    private func entry(_ item: Item) -> QueueEntry {
        QueueEntry(event: item.event, location: item.location, path: "\(folder)/\(item.event.id).json", record: item.record)
    }

    private static func inOrder(_ a: QueueEntry, _ b: QueueEntry) -> Bool {
        let left = a.event.receivedAt ?? .distantPast
        let right = b.event.receivedAt ?? .distantPast
        if left != right { return left < right }
        if a.id != b.id { return a.id < b.id }
        return a.location < b.location
    }

    func list(_ filter: QueueFilter) throws(QueueError) -> QueueListing {
        let entries = state.withLock { state in
            state.items.values.filter { filter.locations.contains($0.location) }.map(entry).filter(filter.admits)
        }
        return QueueListing(entries: entries.sorted(by: Self.inOrder))
    }

    private func requireValid(_ id: String) throws(QueueError) {
        guard EventID.isValid(id) else { throw QueueError(.invalidArgument, "\(EventID.quoted(id)) is not an event id") }
    }

    func show(_ id: String) throws(QueueError) -> QueueEntry {
        try requireValid(id)
        guard let item = state.withLock({ $0.items[id] }) else { throw QueueError(.unknownEvent, "no event \(id)") }
        return entry(item)
    }

    func search(_ query: QueueSearch) throws(QueueError) -> QueueSearchResult {
        let items = state.withLock { state in
            let queued = state.items.values.map { QueueStoredEvent(entry($0)) }
            let acknowledged = state.acknowledged.values.map {
                QueueStoredEvent(event: $0, place: .acknowledged, path: "memory/acknowledged/\($0.id)")
            }
            return (queued + acknowledged).filter { query.places.contains($0.place) && query.admits($0.event) }
        }
        return QueueSearchResult(items: items.sorted(by: QueueStoredEvent.precedes))
    }

    func ids(startingWith prefix: String, limit: Int) throws(QueueError) -> [String] {
        let ids = state.withLock { Set($0.items.keys).union($0.acknowledged.keys) }
        return Array(ids.filter { $0.hasPrefix(prefix) }.sorted().prefix(limit))
    }

    func take(wait: Bool, timeout: Double?, stop: (any QueueStop)?) throws(QueueError) -> QueueTakeResult {
        let deadline = timeout.map { Date().addingTimeInterval($0) }
        while true {
            let claimed: Item? = state.withLock { state in
                let waiting = state.items.values.filter { $0.location == .new }.map(entry).sorted(by: Self.inOrder)
                guard let first = waiting.first else { return nil }
                state.items[first.id]?.location = .cur
                state.items[first.id]?.takenAt = Date()
                return state.items[first.id]
            }
            if let claimed {
                let taken = entry(claimed)
                guard FileManager.default.createFile(atPath: taken.path, contents: Data(claimed.event.bytes)) else {
                    throw QueueError(.io, "write \(taken.path)")
                }
                return QueueTakeResult(outcome: .taken, entry: taken)
            }
            guard wait else { return QueueTakeResult(outcome: .empty, entry: nil) }
            if stop?.isTriggered == true { return QueueTakeResult(outcome: .stopped, entry: nil) }
            if let deadline, Date() >= deadline { return QueueTakeResult(outcome: .timedOut, entry: nil) }
            // A double may poll.
            usleep(2_000)
        }
    }

    /// Runs `change` on the taken event `id`, or throws as the spool does when it is not taken.
    private func whileTaken(_ id: String, _ change: (inout Item) -> Void) throws(QueueError) {
        try requireValid(id)
        let before: QueueLocation? = state.withLock { state in
            guard var item = state.items[id] else { return nil }
            let before = item.location
            if before == .cur {
                change(&item)
                state.items[id] = item
            }
            return before
        }
        switch before {
        case nil: throw QueueError(.unknownEvent, "no event \(id)")
        case .new?: throw QueueError(.wrongState, "event \(id) is waiting and was not taken")
        case .dead?: throw QueueError(.wrongState, "event \(id) is a dead letter")
        case .cur?: return
        }
    }

    func ack(_ id: String) throws(QueueError) {
        try requireValid(id)
        let found: QueueLocation? = state.withLock { state in
            let location = state.items[id]?.location
            if location == .cur { state.acknowledged[id] = state.items.removeValue(forKey: id)?.event }
            return location
        }
        switch found {
        case .cur?: return
        case nil: throw QueueError(.unknownEvent, "no event \(id)")
        case .new?, .dead?: throw QueueError(.wrongState, "event \(id) is not taken")
        }
    }

    func nack(_ id: String, reason: String?) throws(QueueError) -> Int {
        let record = try recordFailure(id, QueueFailure(reason: reason.map { "nack: \($0)" } ?? "nack"))
        try release(id)
        return record.attempts
    }

    func release(_ id: String) throws(QueueError) {
        try whileTaken(id) { item in
            item.location = .new
            item.takenAt = nil
        }
    }

    func recordFailure(_ id: String, _ failure: QueueFailure) throws(QueueError) -> QueueAttemptRecord {
        var written: QueueAttemptRecord?
        try whileTaken(id) { item in
            item.record = QueueAttemptRecord(id: id, attempts: (item.record?.attempts ?? 0) + 1, lastError: failure)
            written = item.record
        }
        return written!
    }

    func deadLetter(_ id: String, record: QueueAttemptRecord) throws(QueueError) {
        try whileTaken(id) { item in
            var dead = record
            dead.deadAt = QueueTime.formatRFC3339(Date())
            item.record = dead
            item.location = .dead
        }
    }

    func requeue(olderThan: Double, now: Date) throws(QueueError) -> QueueRequeueReport {
        var report = QueueRequeueReport()
        state.withLock { state in
            for (id, item) in state.items.sorted(by: { $0.key < $1.key }) where item.location == .cur {
                let age = now.timeIntervalSince(item.takenAt ?? now)
                guard age >= olderThan else { continue }
                if item.held {
                    report.busy.append(id)
                    continue
                }
                let attempts = (item.record?.attempts ?? 0) + 1
                state.items[id]?.record = QueueAttemptRecord(
                    id: id, attempts: attempts, lastError: QueueFailure(reason: "requeued"))
                state.items[id]?.location = .new
                report.requeued.append(QueueRequeued(id: id, age: age, attempts: attempts))
            }
        }
        return report
    }

    func revive(_ id: String) throws(QueueError) {
        try requireValid(id)
        let found: QueueLocation? = state.withLock { state in
            let location = state.items[id]?.location
            if location == .dead {
                state.items[id]?.location = .new
                state.items[id]?.record = nil
            }
            return location
        }
        switch found {
        case .dead?: return
        case nil: throw QueueError(.unknownEvent, "no event \(id)")
        case .new?, .cur?: throw QueueError(.wrongState, "event \(id) is not a dead letter")
        }
    }

    func gc(_ options: QueueGCOptions) throws(QueueError) -> QueueGCReport {
        // Nothing is kept beyond the events themselves.
        var report = QueueGCReport()
        report.dryRun = options.dryRun
        return report
    }

    func retention() throws(QueueError) -> QueueRetention? {
        nil
    }

    func lockConsumer() throws(QueueError) -> any QueueLease {
        let taken = state.withLock { state in
            defer { state.consumerLocked = true }
            return state.consumerLocked
        }
        if taken { throw QueueError(.busy, "\(name) already has a consume worker") }
        return Lease { [weak self] in self?.state.withLock { $0.consumerLocked = false } }
    }

    func hold(_ entry: QueueEntry) -> (any QueueLease)? {
        state.withLock { $0.items[entry.id]?.held = true }
        return Lease { [weak self] in self?.state.withLock { $0.items[entry.id]?.held = false } }
    }

    /// A lease that runs its release once.
    final class Lease: QueueLease {
        private let action: Mutex<(@Sendable () -> Void)?>

        init(_ action: @escaping @Sendable () -> Void) {
            self.action = Mutex(action)
        }

        func release() {
            action.withLock { action in
                action?()
                action = nil
            }
        }
    }
}
