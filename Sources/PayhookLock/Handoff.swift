public import Dispatch

/// An answer given once by one thread and waited for by another: a group commit's writer answers each store
/// of its batch through one (PayhookSpool/SpoolGroupCommit.swift, PayhookPostgres/PostgresGroupCommit.swift).
/// The first answer counts; a later one (a batch that finished after its waiter gave up) is dropped.
public final class Handoff<Value: Sendable>: Sendable {
    private let value = Locked<Value?>(nil)
    private let given = DispatchSemaphore(value: 0)

    public init() {}

    /// Whether an answer was given already.
    public var isGiven: Bool { value.withLock { $0 != nil } }

    /// Gives the answer; false (and nothing changes) when one was given before.
    @discardableResult
    public func give(_ answer: Value) -> Bool {
        let first = value.withLock { value -> Bool in
            guard value == nil else { return false }
            value = answer
            return true
        }
        if first { given.signal() }
        return first
    }

    /// Waits for the answer.
    public func wait() -> Value {
        given.wait()
        // Set before the signal and never changed after it.
        return value.withLock { $0 }!
    }

    /// Waits for the answer until `deadline`; nil when none was given by then.
    public func wait(until deadline: DispatchTime) -> Value? {
        guard given.wait(timeout: deadline) == .success else { return nil }
        return value.withLock { $0 }
    }
}
