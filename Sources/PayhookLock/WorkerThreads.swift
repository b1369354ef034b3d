import Dispatch

/// Dedicated threads for jobs that block in the kernel, started as they are needed, up to `limit`.
///
/// For the spool's stores (PayhookSpool/Spool.swift, docs/architecture.md "Waiting without a thread"): a store
/// writes its record, fsyncs it and waits for its batch's directory fsyncs, which takes as long as the disk
/// takes. Run on a listener thread, that wait held up every other connection of the thread; run here, the
/// listener thread only parses and verifies, and the connection waits suspended. Not Swift's cooperative pool
/// nor a Dispatch queue: a blocked pool thread starves unrelated work, and Dispatch's own limit on threads is
/// not one the spool can reason about (the number of stores in flight is what bounds its durable throughput).
///
/// A thread is started only when a job finds none idle, so a spool that stores one event at a time keeps one
/// thread; threads stay until ``stop()``. Jobs run in the order they were submitted, each on one thread.
public final class WorkerThreads: Sendable {
    private struct State {
        var jobs: [@Sendable () -> Void] = []
        /// The next job to run; the jobs before it are taken and dropped from time to time (run()).
        var next = 0
        var threads = 0
        var idle = 0
        var stopping = false
        var pending: Int { jobs.count - next }
    }

    /// The most threads this starts.
    public let limit: Int
    private let state = Locked(State())
    /// One signal per idle thread woken: for a job, or by stop().
    private let wakeUp = DispatchSemaphore(value: 0)

    public init(limit: Int) {
        self.limit = max(1, limit)
    }

    /// Runs `job` on one of the threads, now or once one is free. Returns false, without running it, after
    /// ``stop()``, or when no thread could be started and none runs (the caller then answers the job itself).
    public func submit(_ job: @escaping @Sendable () -> Void) -> Bool {
        enum Route { case refused, wake, start, queued }
        let route = state.withLock { state -> Route in
            guard !state.stopping else { return .refused }
            state.jobs.append(job)
            // A waiting thread is taken off the idle count as it is signalled, so that a burst of jobs wakes
            // each waiting thread once and starts threads for the rest.
            if state.idle > 0 {
                state.idle -= 1
                return .wake
            }
            // Every thread is busy: one takes the job when it is done with its own.
            guard state.threads < limit else { return .queued }
            state.threads += 1
            return .start
        }
        switch route {
        case .refused:
            return false
        case .wake:
            wakeUp.signal()
        case .queued:
            break
        case .start:
            // A new thread looks at the queue before it waits, so it needs no signal.
            do {
                _ = try startDetachedThread { [self] in self.run() }
            } catch {
                // The busy threads still take the job, if there are any; with none, the caller answers it.
                let orphaned = state.withLock { state -> Bool in
                    state.threads -= 1
                    guard state.threads == 0 else { return false }
                    state.jobs.removeLast()
                    return true
                }
                if orphaned { return false }
            }
        }
        return true
    }

    /// Refuses new jobs. The threads still run every job submitted before, then end; nothing waits for them.
    public func stop() {
        // Busy threads end when they find the queue empty; the waiting ones are woken for it.
        let idle = state.withLock { state -> Int in
            state.stopping = true
            defer { state.idle = 0 }
            return state.idle
        }
        for _ in 0..<idle { wakeUp.signal() }
    }

    /// Threads started and not yet ended.
    public var threadCount: Int {
        state.withLock { $0.threads }
    }

    /// Threads waiting for a job.
    public var idleCount: Int {
        state.withLock { $0.idle }
    }

    private func run() {
        while true {
            let job = state.withLock { state -> (@Sendable () -> Void)?? in
                if state.pending > 0 {
                    let job = state.jobs[state.next]
                    state.next += 1
                    // Jobs taken are dropped once they are half the array, not only when it drains: a queue that
                    // never empties under a long burst would otherwise keep every finished job (and what it
                    // captured, an event) alive. Amortised, each job is moved at most once.
                    if state.next == state.jobs.count {
                        state.jobs.removeAll(keepingCapacity: true)
                        state.next = 0
                    } else if state.next >= 32, state.next * 2 >= state.jobs.count {
                        state.jobs.removeFirst(state.next)
                        state.next = 0
                    }
                    return .some(job)
                }
                if state.stopping {
                    state.threads -= 1
                    return .none
                }
                state.idle += 1
                return .some(nil)
            }
            switch job {
            case .none:
                return
            case .some(let job?):
                job()
            case .some(nil):
                // submit() took this thread off the idle count when it signalled.
                wakeUp.wait()
            }
        }
    }
}
