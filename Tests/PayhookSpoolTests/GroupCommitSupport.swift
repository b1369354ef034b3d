import Dispatch
import Foundation
@_spi(Testing) import PayhookSpool
import Testing

/// Stores `records` from one thread each and holds the spool's writer until `pending` of them wait for it, so
/// that those are published as one batch (group commit, docs/durability.md §5); then runs `whilePending` (to inject
/// a fault, or to close the spool) and lets the writer go. `afterEach` runs on each storing thread right after
/// its store returned, before anything else can happen on that thread (to note an acknowledgement).
///
/// Returns each store's result, in the order of `records`; nil (and a recorded issue) when the stores did not
/// all return within `timeout`, which means some store was left blocked.
func storeAsOneBatch(
    _ spool: Spool,
    _ records: [SpoolRecord],
    pending: Int? = nil,
    timeout: Double = 30,
    whilePending: () -> Void = {},
    afterEach: @escaping @Sendable (SpoolRecord, Result<SpoolOutcome, SpoolError>) -> Void = { _, _ in }
) -> [Result<SpoolOutcome, SpoolError>]? {
    let expected = pending ?? records.count
    spool.suspendCommits()
    let results = Shared<[Int: Result<SpoolOutcome, SpoolError>]>([:])
    let done = DispatchGroup()
    for (index, record) in records.enumerated() {
        done.enter()
        let thread = Thread {
            let result = Result { () throws(SpoolError) in try spool.store(record) }
            afterEach(record, result)
            results.update { $0[index] = result }
            done.leave()
        }
        thread.start()
    }
    let deadline = Date(timeIntervalSinceNow: timeout)
    while spool.pendingCommits < expected, Date() < deadline {
        usleep(200)
    }
    if spool.pendingCommits < expected {
        Issue.record("only \(spool.pendingCommits) of \(expected) stores reached the writer within \(timeout) s")
    }
    whilePending()
    spool.resumeCommits()
    guard done.wait(timeout: .now() + timeout) == .success else {
        Issue.record("a store was still blocked \(timeout) s after the writer was let go")
        return nil
    }
    let collected = results.current
    return records.indices.compactMap { collected[$0] }
}
