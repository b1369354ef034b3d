#if canImport(Glibc)
public import Glibc
#elseif canImport(Darwin)
public import Darwin
#endif

/// pthread_create(3) failed; `code` is its error number.
public struct ThreadStartFailure: Error, Sendable {
    public let code: Int32
}

/// Starts `body` on a detached thread of its own and returns the thread. For the group commits' writers
/// (PayhookSpool/SpoolGroupCommit.swift, PayhookPostgres/PostgresGroupCommit.swift): they block in fsync(2) or
/// on the database for as long as it takes, which a task on Swift's cooperative pool must not do. Detached:
/// nobody joins it, and its resources go with it when `body` returns.
public func startDetachedThread(_ body: @escaping @Sendable () -> Void) throws(ThreadStartFailure) -> pthread_t {
    let argument = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var thread = pthread_t()
    let started = pthread_create(&thread, nil, { argument in
        guard let argument else { return nil }
        Unmanaged<ThreadBody>.fromOpaque(argument).takeRetainedValue().run()
        return nil
    }, argument)
    guard started == 0 else {
        Unmanaged<ThreadBody>.fromOpaque(argument).release()
        throw ThreadStartFailure(code: started)
    }
    pthread_detach(thread)
    return thread
}

/// The thread's entry point, passed through pthread_create's context pointer.
private final class ThreadBody: Sendable {
    let run: @Sendable () -> Void

    init(_ run: @escaping @Sendable () -> Void) {
        self.run = run
    }
}
