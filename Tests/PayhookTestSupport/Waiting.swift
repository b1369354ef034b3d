import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

// Tests wait by blocking their own thread, never by awaiting: Swift Testing runs every test, synchronous or
// not, on Swift's cooperative pool, which has one thread per core. A test that sleeps or waits there holds
// its thread but needs nothing else from the pool; a test that awaits (Task.sleep, a Task, a continuation)
// needs a free pool thread to go on, and may not get one for as long as other tests block them all, which
// made deadlines pass and, once, a whole run hang (a consumer test whose Task never started).

/// Polls `condition` every 5 ms until it holds or `timeout` passes.
public func waitUntil(timeout: Duration = .seconds(2), _ condition: () -> Bool) -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if condition() { return true }
        usleep(5_000)
    }
    return condition()
}

/// A one-shot latch a blocked thread waits on, with a bounded wait.
public final class Latch: Sendable {
    private let state = Mutex(false)

    public init() {}

    public func open() { state.withLock { $0 = true } }
    public var isOpen: Bool { state.withLock { $0 } }

    /// Waits until opened or `timeout` passed; true if opened.
    public func wait(timeout: Duration) -> Bool {
        waitUntil(timeout: timeout) { isOpen }
    }
}

/// Runs `body` at once on a thread of its own (not the cooperative pool's); `join` waits for it (bounded).
public final class Background<Value: Sendable>: Sendable {
    private let result = Mutex<Value?>(nil)
    private let finished = Latch()

    public init(_ body: @escaping @Sendable () -> Value) {
        let thread = Thread { [self] in
            let value = body()
            result.withLock { $0 = value }
            finished.open()
        }
        thread.start()
    }

    /// What `body` returned, or nil if it has not returned within `timeout`.
    public func join(timeout: Duration) -> Value? {
        guard finished.wait(timeout: timeout) else { return nil }
        return result.withLock { $0 }
    }
}
