import Foundation
import Logging
import PayhookQueue
import PayhookStore
import PayhookTestSupport
import Testing

extension MeasuringSuites {
/// `QueueConsumer` in-process: what a run reports, and stopping it. One of the measuring suites: its commands
/// are children of this process, stopped within a grace period.
@Suite(.timeLimit(.minutes(1)))
struct QueueConsumerTests {
    static let quiet = Logger(label: "payhook.queue.test") { _ in SwiftLogNoOpLogHandler() }

    @Test func aDrainingRunAcknowledgesRetriesAndDeadLettersAndSaysSo() throws {
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
        let summary = try consumer.run()
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

    /// The command gets stdin, stdout and stderr and nothing else, even from a process full of descriptors
    /// without close-on-exec (Foundation's pipes and its Process socket pairs are such). An inherited end of a
    /// pipe or socket pair would keep another process from seeing end-of-file, or Foundation from seeing a
    /// child exit, for as long as the command, or anything it leaves running, lives.
    @Test func theCommandInheritsNoOtherDescriptor() throws {
        let spool = try TestSpool()
        _ = try spool.add()
        let marker = spool.base + "/inherited-marker"
        _ = FileManager.default.createFile(atPath: marker, contents: nil)
        // Opened without O_CLOEXEC on purpose.
        let held = open(marker, O_RDONLY)
        #expect(held > 2)
        defer { close(held) }
        let listing = spool.base + "/descriptors"
        var options = QueueConsumeOptions(command: "ls -l /proc/self/fd/ > '\(listing)'")
        options.maxAttempts = 1
        options.drain = true
        options.forwardStderr = false
        let consumer = QueueConsumer(
            directory: try QueueDirectory(spool.root), options: options, logger: Self.quiet, stop: try QueueStopSignal())
        let summary = try consumer.run()
        #expect(summary.acknowledged == 1)
        let text = try String(contentsOfFile: listing, encoding: .utf8)
        // "lr-x------ 1 user group 64 Dec  3 16:42 3 -> /proc/4242/fd": descriptor 3 and up may only be the
        // one ls opened itself to read that folder.
        let inherited = text.split(separator: "\n").filter { line in
            let parts = line.components(separatedBy: " -> ")
            guard parts.count == 2, let number = parts[0].split(separator: " ").last.flatMap({ Int($0) }) else { return false }
            return number > 2 && !parts[1].hasPrefix("/proc/")
        }
        #expect(inherited.isEmpty, "the command inherited:\n\(inherited.joined(separator: "\n"))")
        #expect(!text.contains("inherited-marker"))
    }

    @Test func stoppingReleasesTheEventInHandWhenTheGraceRunsOut() throws {
        let spool = try TestSpool()
        let id = try spool.add()
        var options = QueueConsumeOptions(command: "exec sleep 20")
        options.grace = 0.1
        options.forwardStderr = false
        let stop = try QueueStopSignal()
        let consumer = QueueConsumer(directory: try QueueDirectory(spool.root), options: options, logger: Self.quiet, stop: stop)
        // On a thread of its own, started at once: the test waits for it to take the event, then stops it.
        let run = Background { Result { try consumer.run() } }
        #expect(eventually { spool.list("cur") == ["\(id).json"] })
        usleep(100_000)
        stop.trigger()
        let summary = try #require(run.join(timeout: .seconds(30))).get()
        #expect(summary.released == 1)
        #expect(summary.failures == 0)
        #expect(spool.list("new") == ["\(id).json"])
        #expect(!spool.exists("attempts/\(id).json"))
    }

    @Test func aSecondConsumerInTheSameProcessIsRefusedToo() throws {
        let spool = try TestSpool()
        let stop = try QueueStopSignal()
        let first = QueueConsumer(
            directory: try QueueDirectory(spool.root), options: QueueConsumeOptions(command: "true"), logger: Self.quiet, stop: stop)
        let run = Background { Result { try first.run() } }
        // Stopped whatever happens below, so that no consumer outlives the test.
        defer {
            stop.trigger()
            _ = run.join(timeout: .seconds(30))
        }
        try #require(eventually { ((try? spool.read(".consume.lock")) ?? "") == "\(getpid())\n" })
        let second = QueueConsumer(
            directory: try QueueDirectory(spool.root), options: QueueConsumeOptions(command: "true"), logger: Self.quiet,
            stop: try QueueStopSignal())
        #expect {
            _ = try second.run()
        } throws: { error in
            (error as? QueueError)?.kind == .busy
        }
        stop.trigger()
        _ = try #require(run.join(timeout: .seconds(30))).get()
    }
}
}
