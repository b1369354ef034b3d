import Dispatch
import Foundation
import Logging
@_spi(Testing) import PayhookSpool
import PayhookSpoolFormat
import PayhookTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// ``Spool/store(id:fingerprint:bytes:completion:)``: the caller's thread (a listener thread) never waits for the
/// disk; a durable duplicate is answered on it at once, everything that writes on the spool's store threads, and
/// nothing is answered before it is durable (docs/architecture.md, "Waiting without a thread").
@Suite("Stores that do not hold the caller's thread")
struct AsyncStoreTests {
    /// What a completion received, and on which thread.
    final class Answer: Sendable {
        private let value = Shared<(result: Result<SpoolOutcome, SpoolError>, thread: pthread_t)?>(nil)
        private let done = DispatchSemaphore(value: 0)

        var completion: @Sendable (Result<SpoolOutcome, SpoolError>) -> Void {
            { result in
                self.value.update { $0 = (result, pthread_self()) }
                self.done.signal()
            }
        }

        /// Whether it has been answered, without waiting.
        var isAnswered: Bool { value.current != nil }

        func wait(seconds: Double = 30) throws -> (result: Result<SpoolOutcome, SpoolError>, thread: pthread_t) {
            guard done.wait(timeout: .now() + seconds) == .success, let value = value.current else {
                throw TestFailure("no answer within \(seconds) s")
            }
            return value
        }
    }

    static func store(_ spool: Spool, _ record: SpoolRecord) -> Answer {
        let answer = Answer()
        let bytes = record.bytes
        spool.store(id: record.id, fingerprint: record.fingerprint, bytes: { bytes }, completion: answer.completion)
        return answer
    }

    @Test("a duplicate the ledger holds durably is answered on the calling thread before store returns")
    func durableDuplicateIsAnsweredInline() throws {
        let directory = try TemporaryDirectory()
        let spool = try openSpool(directory.spool)
        defer { spool.close() }
        let record = makeRecord(id: testID(1))
        #expect(try spool.store(record) == .stored)

        let answer = Self.store(spool, record)
        #expect(answer.isAnswered, "the duplicate waited for a store thread")
        let (result, thread) = try answer.wait()
        #expect(try result.get() == .duplicate)
        #expect(pthread_equal(thread, pthread_self()) != 0)
    }

    @Test("a new record is stored on a store thread: store returns at once, the answer comes once it is durable")
    func newRecordIsAnsweredFromAStoreThreadOnceDurable() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let spool = try openSpool(root)
        defer { spool.close() }
        let record = makeRecord(id: testID(2))

        spool.suspendCommits()
        let answer = Self.store(spool, record)
        // Returned while the record waits for its batch, which cannot be published while commits are held.
        try waitUntil("the store reaches the writer") { spool.pendingCommits == 1 }
        #expect(!answer.isAnswered)
        #expect(try names(root + "/new").isEmpty)
        spool.resumeCommits()

        let (result, thread) = try answer.wait()
        #expect(try result.get() == .stored)
        #expect(pthread_equal(thread, pthread_self()) == 0)
        #expect(try names(root + "/new") == ["\(record.id).json"])
        #expect(try names(root + "/ids") == [record.id])
    }

    @Test("a retry arriving while the first store's ledger entry is linked but not yet durable waits for that store")
    func ledgerEntryNotYetDurableIsNotAnswered() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let fileSystem = RecordingFileSystem(root: root)
        let spool = try openSpool(root, fileSystem: fileSystem)
        defer { spool.close() }
        let record = makeRecord(id: testID(3))

        // Hold the first store inside its batch, between the link into ids/ and the fsync(ids/) that makes it
        // durable.
        let reached = DispatchSemaphore(value: 0)
        let proceed = DispatchSemaphore(value: 0)
        fileSystem.pause(before: .fsync, path: .exact("ids")) {
            reached.signal()
            proceed.wait()
        }
        let first = Self.store(spool, record)
        guard reached.wait(timeout: .now() + 30) == .success else {
            proceed.signal()
            throw TestFailure("the first store never reached fsync(ids/)")
        }
        #expect(exists(root + "/ids/" + record.id), "the ledger entry is linked before its fsync")

        let retry = Self.store(spool, record)
        // Answering now, from an entry a crash could still take away, would tell the sender "done" for an event
        // that may be lost.
        #expect(!retry.isAnswered, "the retry was answered from a ledger entry that is not durable yet")
        #expect(!first.isAnswered)
        proceed.signal()

        #expect(try first.wait().result.get() == .stored)
        #expect(try retry.wait().result.get() == .duplicate)
    }

    @Test("close() answers every store not yet durable with .closed, those waiting for the writer too, and publishes none")
    func closeAnswersEveryWaitingStore() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let spool = try openSpool(root, storeThreads: 1)
        spool.suspendCommits()
        let answers = (0..<3).map { Self.store(spool, makeRecord(id: testID(10 + $0))) }
        // One store thread carries all three to the writer: it does not wait for a batch.
        try waitUntil("the three stores reach the writer") { spool.pendingCommits == 3 }
        #expect(answers.allSatisfy { !$0.isAnswered })
        spool.close()

        for answer in answers {
            let result = try answer.wait().result
            #expect(throws: SpoolError.self) { try result.get() }
            if case .failure(let error) = result { #expect(error.code == .closed) }
        }
        #expect(try names(root + "/new").isEmpty)
        #expect(try names(root + "/ids").isEmpty)
    }

    @Test("store threads are started as stores need them, up to the limit; none waits for a batch, and every store is answered once")
    func storeThreadsGrowToTheLimit() throws {
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let fileSystem = RecordingFileSystem(root: root)
        let spool = try openSpool(root, fileSystem: fileSystem, storeThreads: 4)
        defer { spool.close() }
        // One at a time: one thread serves them all.
        for number in 0..<5 {
            let answer = Self.store(spool, makeRecord(id: testID(20 + number)))
            #expect(try answer.wait().result.get() == .stored)
            // The thread answers from inside its job; it is idle only once back in its loop.
            try waitUntil("the store thread is idle again") { spool.storeThreadCount.idle == 1 }
        }
        #expect(spool.storeThreadCount.started == 1)

        // Twelve stores whose record fsyncs are held: each holds its thread meanwhile, so four threads start and
        // no more, and the other stores wait for one of them.
        let held = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        for _ in 0..<12 {
            fileSystem.pause(before: .fsync, path: .prefix("tmp/")) {
                held.signal()
                release.wait()
            }
        }
        spool.suspendCommits()
        let answers = (0..<12).map { Self.store(spool, makeRecord(id: testID(40 + $0))) }
        for number in 1...4 where held.wait(timeout: .now() + 30) == .timedOut {
            for _ in 0..<12 { release.signal() }
            throw TestFailure("only \(number - 1) stores reached their record's fsync")
        }
        #expect(held.wait(timeout: .now() + 0.2) == .timedOut, "a fifth store ran without a thread of its own")
        #expect(spool.storeThreadCount.started == 4)
        for _ in 0..<12 { release.signal() }

        // Every record written and handed to the writer, which holds its batches: the threads are idle again, not
        // waiting for the batch, and nobody is answered before it is durable.
        try waitUntil("all twelve stores wait for the writer") { spool.pendingCommits == 12 }
        try waitUntil("the four store threads are idle") { spool.storeThreadCount.idle == 4 }
        #expect(spool.storeThreadCount.started == 4)
        #expect(answers.allSatisfy { !$0.isAnswered })
        spool.resumeCommits()
        for answer in answers {
            #expect(try answer.wait().result.get() == .stored)
        }
        #expect(try names(root + "/new").count == 17)
    }

    func waitUntil(_ what: String, seconds: Double = 30, _ condition: () -> Bool) throws {
        let deadline = Date(timeIntervalSinceNow: seconds)
        while !condition() {
            guard Date() < deadline else { throw TestFailure("\(what): not within \(seconds) s") }
            usleep(1000)
        }
    }
}
