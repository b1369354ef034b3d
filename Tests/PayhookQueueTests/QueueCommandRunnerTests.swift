import Foundation
import PayhookTestSupport
import Testing

@testable import PayhookQueue

extension MeasuringSuites {
/// `QueueCommandRunner` on its own: what one run of a command reports, which signal ends it and when. One of the
/// measuring suites: its commands are children of this process, some of them timed.
@Suite(.timeLimit(.minutes(1)))
struct QueueCommandRunnerTests {
    let folder: TemporaryDirectory
    let input: String

    init() throws {
        folder = try TemporaryDirectory(prefix: "payhook-queue-test")
        input = folder.file("event.json")
        try folder.write("event.json", "hello\nworld\n")
    }

    func request(_ command: String, timeout: Double? = nil, grace: Double = 10, tailLimit: Int = 100)
        -> QueueCommandRunner.Request
    {
        QueueCommandRunner.Request(
            shell: "/bin/sh", command: command, inputPath: input,
            environment: ["PATH=" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")],
            timeout: timeout, grace: grace, tailLimit: tailLimit, forwardStderr: false)
    }

    /// Where a command says it has started, for a test that must not signal it before then.
    var ready: String { folder.file("ready") }

    /// Runs `request` on a thread of its own; `whenReady` runs once the command has created `ready`.
    func runInBackground(
        _ request: QueueCommandRunner.Request, stop: QueueStopSignal, whenReady: @escaping @Sendable () -> Void
    ) throws -> (outcome: QueueCommandOutcome, afterReady: Double) {
        let run = Background { QueueCommandRunner.run(request, stop: stop) }
        try #require(eventually { FileManager.default.fileExists(atPath: ready) })
        let readyAt = Date()
        whenReady()
        let outcome = try #require(run.join(timeout: .seconds(30)))
        return (outcome, Date().timeIntervalSince(readyAt))
    }

    @Test func theEventIsStdinAndTheExitStatusAndStderrAreReported() throws {
        let outcome = QueueCommandRunner.run(request("cat >&2; exit 3"), stop: try QueueStopSignal())
        #expect(outcome.end == .exited(3))
        #expect(outcome.stderrTail == "hello\nworld\n")
        #expect(!outcome.timedOut && !outcome.interrupted)
        #expect(outcome.reason(timeout: nil) == "exit status 3")
    }

    /// More than one read's worth and more than twice the limit: only the last `tailLimit` bytes are kept.
    @Test func onlyTheLastBytesOfStderrAreKept() throws {
        let command = "head -c 20000 /dev/zero | tr '\\0' x >&2; printf END >&2"
        let outcome = QueueCommandRunner.run(request(command, tailLimit: 16), stop: try QueueStopSignal())
        #expect(outcome.end == .exited(0))
        #expect(outcome.stderrTail == String(repeating: "x", count: 13) + "END")
    }

    /// A process the command leaves behind keeps the stderr pipe open: the run ends with the command anyway.
    @Test func aBackgroundProcessHoldingStderrDoesNotDelayTheOutcome() throws {
        let started = Date()
        let outcome = QueueCommandRunner.run(
            request("echo early >&2; sleep 5 >/dev/null & exit 0"), stop: try QueueStopSignal())
        #expect(outcome.end == .exited(0))
        #expect(outcome.stderrTail == "early\n")
        #expect(Date().timeIntervalSince(started) < 4)
    }

    @Test func whatCannotStartSaysWhy() throws {
        let stop = try QueueStopSignal()
        var missing = request("true")
        missing.inputPath = folder.file("missing.json")
        #expect(
            QueueCommandRunner.run(missing, stop: stop).end
                == .notStarted("open \(missing.inputPath): \(Posix.describe(ENOENT))"))

        let fifo = folder.file("fifo.json")
        #expect(mkfifo(fifo, 0o600) == 0)
        var special = request("true")
        special.inputPath = fifo
        let refused = QueueCommandRunner.run(special, stop: stop)
        guard case .notStarted(let why) = refused.end else {
            Issue.record("a FIFO was run as input: \(refused)")
            return
        }
        #expect(why.hasPrefix("\(fifo): "))

        var noShell = request("true")
        noShell.shell = folder.file("no-such-shell")
        let outcome = QueueCommandRunner.run(noShell, stop: stop)
        #expect(outcome.end == .notStarted("\(noShell.shell): \(Posix.describe(ENOENT))"))
        #expect(outcome.stderrTail == "")
        #expect(outcome.reason(timeout: nil) == "could not start: \(noShell.shell): \(Posix.describe(ENOENT))")
    }

    @Test func theTimeoutSendsSIGTERM() throws {
        let outcome = QueueCommandRunner.run(request("exec sleep 20", timeout: 0.2), stop: try QueueStopSignal())
        #expect(outcome.end == .signaled(SIGTERM))
        #expect(outcome.timedOut && !outcome.interrupted)
        #expect(outcome.reason(timeout: 0.2) == "timed out after 200ms (killed by signal 15)")
    }

    /// A stop before the command finishes gives it the grace period: one that ends within it is not interrupted.
    @Test func aCommandEndingWithinTheGraceIsNotInterrupted() throws {
        let stop = try QueueStopSignal()
        stop.trigger()
        let outcome = QueueCommandRunner.run(request("sleep 0.2; exit 5", grace: 10), stop: stop)
        #expect(outcome.end == .exited(5))
        #expect(!outcome.timedOut && !outcome.interrupted)
    }

    @Test func whenTheGraceRunsOutTheCommandGetsSIGTERM() throws {
        let stop = try QueueStopSignal()
        let (outcome, _) = try runInBackground(request(": > '\(ready)'; exec sleep 20", grace: 0.2), stop: stop) {
            stop.trigger()
        }
        #expect(outcome.end == .signaled(SIGTERM))
        #expect(outcome.interrupted && !outcome.timedOut)
    }

    /// Hurried, the grace is over at once, and a command that ignores SIGTERM gets SIGKILL a second later
    /// rather than after the usual `killAfter`.
    @Test func hurriedACommandIgnoringSIGTERMIsKilledASecondLater() throws {
        let stop = try QueueStopSignal()
        let (outcome, elapsed) = try runInBackground(
            request("trap '' TERM; : > '\(ready)'; exec sleep 20", grace: 30), stop: stop
        ) {
            stop.hurry()
        }
        #expect(outcome.end == .signaled(SIGKILL))
        #expect(outcome.interrupted && !outcome.timedOut)
        #expect(elapsed >= 0.9)
        #expect(elapsed < QueueCommandRunner.killAfter - 0.5)
    }
}
}
