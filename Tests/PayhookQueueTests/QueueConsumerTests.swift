import Foundation
import Logging
import PayhookQueue
import Testing

/// `QueueConsumer` in-process: what a run reports, and stopping it.
@Suite(.timeLimit(.minutes(1)))
struct QueueConsumerTests {
    static let quiet = Logger(label: "payhook.queue.test") { _ in SwiftLogNoOpLogHandler() }

    @Test func aDrainingRunAcknowledgesRetriesAndDeadLettersAndSaysSo() async throws {
        let spool = try TestSpool()
        let good = try spool.addMany(3, tag: "a")
        let bad = try spool.add(id: spool.makeID("b"), orderRef: "poison")
        var options = QueueConsumeOptions(command: "if grep -q poison; then echo no >&2; exit 4; fi")
        options.concurrency = 2
        options.maxAttempts = 2
        options.backoff = 0.02
        options.drain = true
        options.forwardStderr = false
        let consumer = QueueConsumer(
            directory: try QueueDirectory(spool.root), options: options, logger: Self.quiet, stop: try QueueStopSignal())
        let summary = try await onThread { try consumer.run() }
        #expect(summary.acknowledged == good.count)
        #expect(summary.failures == 2)
        #expect(summary.deadLettered == 1)
        #expect(summary.released == 0)
        #expect(spool.list("dead") == ["\(bad).error.json", "\(bad).json"])
        let record = try #require(try QueueDirectory(spool.root).show(bad).record)
        #expect(record.attempts == 2)
        #expect(record.lastError?.exitStatus == 4)
        #expect(record.lastError?.stderrTail == "no\n")
        #expect(record.deadAt != nil)
    }

    @Test func stoppingReleasesTheEventInHandWhenTheGraceRunsOut() async throws {
        let spool = try TestSpool()
        let id = try spool.add()
        var options = QueueConsumeOptions(command: "exec sleep 20")
        options.grace = 0.1
        options.forwardStderr = false
        let stop = try QueueStopSignal()
        let consumer = QueueConsumer(directory: try QueueDirectory(spool.root), options: options, logger: Self.quiet, stop: stop)
        let run = StartedThread { try consumer.run() }
        #expect(await eventually { spool.list("cur") == ["\(id).json"] })
        try await Task.sleep(for: .milliseconds(100))
        stop.trigger()
        let summary = try await run.value
        #expect(summary.released == 1)
        #expect(summary.failures == 0)
        #expect(spool.list("new") == ["\(id).json"])
        #expect(!spool.exists("attempts/\(id).json"))
    }

    @Test func aSecondConsumerInTheSameProcessIsRefusedToo() async throws {
        let spool = try TestSpool()
        let stop = try QueueStopSignal()
        let first = QueueConsumer(
            directory: try QueueDirectory(spool.root), options: QueueConsumeOptions(command: "true"), logger: Self.quiet, stop: stop)
        let run = StartedThread { try first.run() }
        #expect(await eventually { ((try? spool.read(".consume.lock")) ?? "") == "\(getpid())\n" })
        let second = QueueConsumer(
            directory: try QueueDirectory(spool.root), options: QueueConsumeOptions(command: "true"), logger: Self.quiet,
            stop: try QueueStopSignal())
        #expect {
            _ = try second.run()
        } throws: { error in
            (error as? QueueError)?.kind == .busy
        }
        stop.trigger()
        _ = try await run.value
    }
}

/// Runs blocking work on a thread started at once, not from a task: a task needs a free thread of the cooperative
/// pool to start, and the `eventually` loops of the tests running alongside (a plain sleep, see Support.swift) can
/// hold every one of them, on a two-core machine both, for their whole ten seconds. The worker would then start
/// only after the expectations waiting for it had failed.
final class StartedThread<T: Sendable>: @unchecked Sendable {
    private let finished = DispatchSemaphore(value: 0)
    private var result: Result<T, any Error>?

    init(_ body: @escaping @Sendable () throws -> T) {
        Thread { [self] in
            result = Result { try body() }
            finished.signal()
        }.start()
    }

    /// The work's result, waited for on a thread of its own.
    var value: T {
        get async throws {
            try await onThread { [self] in
                finished.wait()
                return try result!.get()
            }
        }
    }
}
