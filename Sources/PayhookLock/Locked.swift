#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A value behind a mutex, with the `withLock` shape of the standard library's `Mutex`.
///
/// Why not `Synchronization.Mutex`: on Linux it is a priority-inheritance futex (FUTEX_LOCK_PI), so every
/// contended acquire goes through the kernel's rt_mutex and a context switch. Under load the listener threads
/// meet on a few short critical sections (the watchdog's table, the spool's in-flight map, the metrics), and
/// `perf` showed a quarter of the CPU in `_MutexHandle._lockSlow`, `rt_mutex_schedule` and the wake-ups it
/// causes. An adaptive pthread mutex (PTHREAD_MUTEX_ADAPTIVE_NP, pthread_mutexattr_settype(3)) spins briefly
/// before it sleeps, which suits critical sections of a few hundred nanoseconds.
public final class Locked<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    public init(_ value: Value) {
        self.value = value
        mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        #if canImport(Glibc)
        pthread_mutexattr_settype(&attributes, Int32(PTHREAD_MUTEX_ADAPTIVE_NP))
        #endif
        let status = pthread_mutex_init(mutex, &attributes)
        pthread_mutexattr_destroy(&attributes)
        precondition(status == 0, "pthread_mutex_init failed: \(status)")
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with exclusive access to the value.
    @inline(__always)
    public func withLock<Result, Failure: Error>(_ body: (inout Value) throws(Failure) -> Result) throws(Failure) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
