import Dispatch
import PayhookLock
import Testing

/// The spool's store threads (PayhookLock/WorkerThreads.swift).
@Suite struct WorkerThreadsTests {
    final class Token: Sendable {}

    /// A weak reference a test can read from any thread.
    final class Watch: @unchecked Sendable {
        private let lock = Locked(())
        private weak var token: Token?
        init(_ token: Token) { self.token = token }
        var isAlive: Bool { lock.withLock { _ in token != nil } }
    }

    @Test func jobsTakenAreReleasedWhileTheQueueNeverDrains() throws {
        let workers = WorkerThreads(limit: 1)
        defer { workers.stop() }
        let started = DispatchSemaphore(value: 0)
        let proceed = DispatchSemaphore(value: 0)
        var watches: [Watch] = []
        // Each job holds a token and waits for the test; one thread, so the others queue.
        func submit() {
            let token = Token()
            watches.append(Watch(token))
            let accepted = workers.submit { withExtendedLifetime(token) { started.signal(); proceed.wait() } }
            #expect(accepted)
        }
        for _ in 0..<4 { submit() }
        // Let 200 jobs finish one by one, adding one each time, so that at least three always wait.
        for finished in 0..<200 {
            #expect(started.wait(timeout: .now() + 30) == .success, "job \(finished) never started")
            submit()
            proceed.signal()
        }
        // The thread ran 200 jobs and is on the 201st; the queue was never empty. The early jobs' captures are
        // gone all the same.
        #expect(started.wait(timeout: .now() + 30) == .success)
        #expect(watches.prefix(100).allSatisfy { !$0.isAlive }, "finished jobs are still held by the queue")
        #expect(watches.suffix(3).allSatisfy { $0.isAlive })
        for _ in 0..<watches.count { proceed.signal() }
    }

    @Test func stopRefusesNewJobsAndRunsThoseSubmittedBefore() throws {
        let workers = WorkerThreads(limit: 2)
        let ran = Locked(0)
        let hold = DispatchSemaphore(value: 0)
        let done = DispatchSemaphore(value: 0)
        for _ in 0..<5 {
            let accepted = workers.submit { hold.wait(); ran.withLock { $0 += 1 }; done.signal() }
            #expect(accepted)
        }
        workers.stop()
        let late = workers.submit { Issue.record("a job submitted after stop() ran") }
        #expect(!late)
        for _ in 0..<5 { hold.signal() }
        for _ in 0..<5 { #expect(done.wait(timeout: .now() + 30) == .success) }
        #expect(ran.withLock { $0 } == 5)
        #expect(workers.threadCount <= 2)
    }
}
