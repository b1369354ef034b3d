import Foundation
import InMemoryLogging
import Logging
import PayhookCore
import PayhookQueue
import PayhookSpool
import PayhookSpoolFormat
import PayhookStore
import Testing

/// The writer (the server's spool: its store-time check and its startup recovery) and the consumer side (the
/// queue tools) judge the same file the same way, because both ask EventFile.
///
/// Before, the queue tools read events with JSONSerialization and asked only for an object whose "id" matched the
/// name, while the server used the strict JSONReader and the schema's members: a file with a duplicate "amount"
/// was delivered by `payhook queue take` (JSONSerialization keeps the last value) and moved to corrupt/ by the
/// server's next start. Each case below records what the old queue check made of it.
@Suite("The writer and the queue tools agree on what an event file is")
struct AgreementTests {
    static let id = String(repeating: "ab", count: 32)

    /// A file's bytes, the reason both sides must give (nil: a valid event both keep), and whether the queue's
    /// old check (a JSONSerialization object with a matching "id") accepted it.
    struct Case: Sendable, CustomStringConvertible {
        let label: String
        let bytes: [UInt8]
        let reason: String?
        let oldQueueAccepted: Bool
        var description: String { label }
    }

    static let cases: [Case] = [
        Case(label: "valid", bytes: Sample.bytes(), reason: nil, oldQueueAccepted: true),
        Case(
            label: "duplicate amount",
            bytes: Array(String(decoding: Sample.bytes(), as: UTF8.self)
                .replacingOccurrences(of: "\"amount\": 100,", with: "\"amount\": 100,\n  \"amount\": 999999,").utf8),
            reason: "it is not valid JSON", oldQueueAccepted: true),
        Case(
            label: "duplicate id, the last one matching the name",
            bytes: Array(String(decoding: Sample.bytes(), as: UTF8.self)
                .replacingOccurrences(of: "\"schema\"", with: "\"id\": \"\(String(repeating: "cd", count: 32))\",\n  \"schema\"").utf8),
            reason: "it is not valid JSON", oldQueueAccepted: true),
        Case(label: "byte order mark", bytes: [0xef, 0xbb, 0xbf] + Sample.bytes(), reason: "it is not valid JSON", oldQueueAccepted: true),
        Case(
            label: "unpaired surrogate",
            bytes: Sample.editing("tenant", to: #""tenant": "\ud800""#),
            reason: "it is not valid JSON", oldQueueAccepted: false),
        Case(label: "trailing garbage", bytes: Sample.bytes() + Array("x".utf8), reason: "it is not valid JSON", oldQueueAccepted: false),
        Case(label: "no tenant", bytes: Sample.editing("tenant", to: nil), reason: "it has no \"tenant\"", oldQueueAccepted: true),
        Case(
            label: "a member the schema lacks",
            bytes: Sample.editing("currency", to: #""currency": "CNY", "note": "paid""#),
            reason: "it has a member \"note\" that payhook.event.v1 does not define", oldQueueAccepted: true),
        Case(
            label: "another id",
            bytes: Sample.bytes(id: String(repeating: "cd", count: 32)),
            reason: "its id \"\(String(repeating: "cd", count: 32))\" does not match its file name", oldQueueAccepted: false),
    ]

    /// What JSONSerialization-based checking, the queue tools' before, made of the bytes.
    static func oldQueueCheck(_ bytes: [UInt8]) -> Bool {
        let object = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any]
        return object?["id"] as? String == id
    }

    /// A spool the server has created, with `bytes` published as new/<id>.json.
    static func spool(with bytes: [UInt8], in scratch: Scratch) throws -> String {
        let root = scratch.file("spool")
        try Spool(directory: root, inspector: EventFileInspector(fingerprintRules: [:]), logger: Logger(label: "test")).close()
        try scratch.write("spool/new/\(EventID.fileName(id))", bytes)
        return root
    }

    @Test("recovery, the store check and the queue tools give one verdict and one reason", arguments: cases)
    func oneVerdict(_ sample: Case) throws {
        #expect(Self.oldQueueCheck(sample.bytes) == sample.oldQueueAccepted)
        let file = "new/\(EventID.fileName(Self.id))"

        // The consumer side: list sets it aside, or lists it.
        let queueScratch = try Scratch()
        let queue = try QueueDirectory(try Self.spool(with: sample.bytes, in: queueScratch))
        let listing = try queue.list()
        #expect(listing.quarantined.map(\.reason) == [sample.reason].compactMap { $0 })
        #expect(listing.entries.map(\.id) == (sample.reason == nil ? [Self.id] : []))

        // The writer: startup recovery sets it aside with the same reason, or keeps it.
        let writerScratch = try Scratch()
        let root = try Self.spool(with: sample.bytes, in: writerScratch)
        let log = InMemoryLogHandler()
        let spool = try Spool(directory: root, inspector: EventFileInspector(fingerprintRules: [:]), logger: Logger(label: "test") { _ in log })
        defer { spool.close() }
        let moved = log.entries.filter { $0.level == .error }.map { "\($0.message)" }
        if let reason = sample.reason {
            #expect(spool.recovery.quarantined == [file])
            #expect(moved == ["recovery moved \(file) to corrupt/\(EventID.fileName(Self.id)): \(reason)"])
            #expect(writerScratch.names("spool/corrupt") == queueScratch.names("spool/corrupt"))
        } else {
            #expect(spool.recovery.quarantined.isEmpty)
            #expect(moved.isEmpty)
        }

        // The writer's store-time check: bytes that are no valid event of their own id are never stored.
        let fingerprint = Sample.event().fingerprint
        if sample.reason == nil {
            #expect(try spool.store(id: Self.id, fingerprint: fingerprint) { sample.bytes } == .duplicate)
        } else {
            #expect {
                _ = try spool.store(id: Self.id, fingerprint: fingerprint) { sample.bytes }
            } throws: { error in
                (error as? SpoolError)?.code == .invalidRecord
            }
        }
    }

    @Test("a valid event the writer stores is one the queue tools take, byte for byte")
    func storedIsTaken() throws {
        let scratch = try Scratch()
        let root = scratch.file("spool")
        let spool = try Spool(directory: root, inspector: EventFileInspector(fingerprintRules: [:]), logger: Logger(label: "test"))
        let event = Sample.event()
        #expect(try spool.store(id: event.id, fingerprint: event.fingerprint) { event.jsonBytes() } == .stored)
        spool.close()
        let taken = try QueueDirectory(root).take()
        #expect(taken.entry?.event.bytes == event.jsonBytes())
        #expect(taken.quarantined.isEmpty)
    }
}
