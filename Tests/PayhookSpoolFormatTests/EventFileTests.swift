import Foundation
import PayhookCore
import PayhookSpoolFormat
import Testing

/// What a valid event file is: the one definition the server and the queue tools share (EventFile).
@Suite("EventFile: what a valid event file is")
struct EventFileTests {
    static let id = String(repeating: "ab", count: 32)
    static let name = EventID.fileName(id)

    static func reason(_ bytes: [UInt8], fileName: String? = name) -> String? {
        do {
            _ = try EventFile.parse(bytes, fileName: fileName)
            return nil
        } catch {
            return error.reason
        }
    }

    @Test("what the server writes is valid, and reads back to the server's own fingerprint")
    func serverOutputIsValid() throws {
        let event = Sample.event()
        let file = try EventFile.parse(event.jsonBytes(), fileName: Self.name)
        #expect(file.id == event.id)
        #expect(file.amount == 100)
        #expect(file.fields == event.fields)
        #expect(file.raw == event.raw)
        #expect(file.receivedAt == "2026-11-28T02:34:50.123Z")
        #expect(file.fingerprint(by: event.fingerprintRule) == event.fingerprint)
        #expect(EventFileInspector(fingerprintRules: [:]).inspect(event.jsonBytes()) == SpoolRecordInfo(id: event.id, fingerprint: event.fingerprint))
    }

    @Test(
        "not strict RFC 8259 JSON is not an event",
        arguments: [
            ("duplicate member", #"{"id": "a", "id": "b"}"#),
            ("duplicate inside fields", #"{"fields": {"money": "1", "money": "100"}}"#),
            ("unpaired high surrogate", #"{"id": "\ud800"}"#),
            ("unpaired low surrogate", #"{"id": "\udc00"}"#),
            ("trailing garbage", #"{"id": "a"} x"#),
            ("two documents", #"{"id": "a"}{}"#),
            ("byte order mark", "\u{FEFF}{\"id\": \"a\"}"),
            ("truncated", #"{"id": "trunc"#),
            ("empty", ""),
        ]
    )
    func notStrictJSON(_ label: String, _ text: String) {
        #expect(Self.reason(Array(text.utf8)) == "it is not valid JSON", "\(label)")
    }

    @Test("a duplicate member is refused even inside a complete, otherwise valid event")
    func duplicateAmountInAValidEvent() {
        // JSONSerialization keeps the last "amount", a first-wins reader the first: two readers, two amounts.
        let text = String(decoding: Sample.bytes(), as: UTF8.self)
            .replacingOccurrences(of: "\"amount\": 100,", with: "\"amount\": 100,\n  \"amount\": 999999,")
        #expect(Self.reason(Array(text.utf8)) == "it is not valid JSON")
        #expect(EventFileInspector(fingerprintRules: [:]).inspect(Array(text.utf8)) == nil)
    }

    @Test("bytes that are not UTF-8 are not an event")
    func notUTF8() {
        let bytes = Array(#"{"id": ""#.utf8) + [0xff, 0xfe] + Array(#""}"#.utf8)
        #expect(Self.reason(bytes) == "it is not valid JSON")
    }

    @Test("the object, the id and the name come first, in that order")
    func objectIDAndName() {
        #expect(Self.reason(Array("[1, 2, 3]".utf8)) == "it is not a JSON object")
        #expect(Self.reason(Array(#"{"schema": "payhook.event.v1"}"#.utf8)) == "it has no string \"id\"")
        #expect(Self.reason(Sample.editing("id", to: "\"id\": 7")) == "it has no string \"id\"")
        let other = String(repeating: "cd", count: 32)
        #expect(Self.reason(Sample.bytes(id: other)) == "its id \"\(other)\" does not match its file name")
        #expect(Self.reason(Sample.bytes(), fileName: "garbage.json") == "its id \"\(Self.id)\" does not match its file name")
        #expect(Self.reason(Sample.bytes(id: "ZZZ"), fileName: "ZZZ.json") == "its id \"ZZZ\" is not 64 lowercase hex characters")
        let upper = Self.id.uppercased()
        #expect(Self.reason(Sample.bytes(id: upper), fileName: nil) == "its id \"\(upper)\" is not 64 lowercase hex characters")
    }

    @Test("every member of the schema, with its type, and no other")
    func schemaMembers() {
        #expect(Self.reason(Sample.editing("schema", to: "\"schema\": \"payhook.event.v2\""))
            == "its \"schema\" is \"payhook.event.v2\", not \"payhook.event.v1\"")
        #expect(Self.reason(Sample.editing("schema", to: nil)) == "it has no \"schema\"")
        #expect(Self.reason(Sample.editing("tenant", to: nil)) == "it has no \"tenant\"")
        #expect(Self.reason(Sample.editing("tenant", to: "\"tenant\": null")) == "its \"tenant\" is not a string")
        #expect(Self.reason(Sample.editing("amount", to: "\"amount\": \"100\"")) == "its \"amount\" is not an integer")
        #expect(Self.reason(Sample.editing("amount", to: "\"amount\": 100.5")) == "its \"amount\" is not an integer")
        #expect(Self.reason(Sample.editing("amount", to: "\"amount\": 1e2")) == "its \"amount\" is not an integer")
        #expect(Self.reason(Sample.editing("amount", to: "\"amount\": true")) == "its \"amount\" is not an integer")
        #expect(Self.reason(Sample.editing("amount", to: "\"amount\": 99999999999999999999")) == "its \"amount\" is not an integer")
        #expect(Self.reason(Sample.editing("remote_addr", to: "\"remote_addr\": \"127.0.0.1\", \"extra\": 1"))
            == "it has a member \"extra\" that payhook.event.v1 does not define")
        let fields = String(decoding: Sample.bytes(), as: UTF8.self)
            .replacingOccurrences(of: "\"money\": \"100\"", with: "\"money\": 100")
        #expect(Self.reason(Array(fields.utf8)) == "its \"fields\" member \"money\" is not a string")
        let raw = String(decoding: Sample.bytes(), as: UTF8.self).replacingOccurrences(of: ",\n    \"body\": \"\"", with: "")
        #expect(Self.reason(Array(raw.utf8)) == "its \"raw\" has no \"body\"")
    }

    @Test("the schema's value rules are the writer's: an offset time or an unknown source is still an event")
    func valuesAreNotJudged() throws {
        let offset = Sample.editing("received_at", to: "\"received_at\": \"2026-11-22T10:34:50.123+08:00\"")
        #expect(try EventFile.parse(offset, fileName: Self.name).receivedAt == "2026-11-22T10:34:50.123+08:00")
        let source = Sample.editing("source", to: "\"source\": \"elsewhere\"")
        #expect(try EventFile.parse(source, fileName: Self.name).source == "elsewhere")
    }

    @Test("member names are compared byte for byte, never by canonical equivalence")
    func namesAreBytes() {
        // "K" (U+212A KELVIN SIGN) is canonically equivalent to "K"; a member named with it is another member.
        let text = String(decoding: Sample.bytes(), as: UTF8.self)
            .replacingOccurrences(of: "\"remote_addr\": \"127.0.0.1\"", with: "\"remote_addr\": \"127.0.0.1\", \"\u{212A}\": \"x\"")
        #expect(Self.reason(Array(text.utf8)) == "it has a member \"?\" that payhook.event.v1 does not define")
    }

    @Test("received_at is found without a full parse, only to order new/")
    func quickReceivedAt() {
        #expect(EventFile.quickReceivedAt(Sample.bytes()) == "2026-11-28T02:34:50.123Z")
        #expect(EventFile.quickReceivedAt(Array(#"{"received_at" : 5}"#.utf8)) == nil)
        #expect(EventFile.quickReceivedAt(Array("{}".utf8)) == nil)
    }

    @Test("the default inspector applies the same naming rule as EventFile")
    func defaultInspectorNamingRule() throws {
        struct Plain: SpoolRecordInspector {
            func inspect(_ bytes: [UInt8]) -> SpoolRecordInfo? {
                SpoolRecordInfo(id: String(decoding: bytes, as: UTF8.self), fingerprint: "f")
            }
        }
        let other = String(repeating: "cd", count: 32)
        #expect(throws: SpoolFileProblem("its id \"\(other)\" does not match its file name")) {
            _ = try Plain().inspect(Array(other.utf8), fileName: Self.name)
        }
        #expect(try Plain().inspect(Array(Self.id.utf8), fileName: Self.name).id == Self.id)
        #expect(throws: SpoolFileProblem("its id \"x\" is not 64 lowercase hex characters")) {
            _ = try Plain().inspect(Array("x".utf8), fileName: "x.json")
        }
    }
}

@Suite("Ids, names and .retention")
struct SpoolNamesTests {
    @Test func eventIDs() {
        let id = String(repeating: "0f", count: 32)
        #expect(EventID.isValid(id))
        #expect(!EventID.isValid(id.uppercased()))
        #expect(!EventID.isValid(String(id.dropLast())))
        #expect(!EventID.isValid(id + "0"))
        #expect(!EventID.isValid("../" + String(id.dropFirst(3))))
        #expect(EventID.fromFileName(id + ".json") == id)
        #expect(EventID.fromFileName(id + ".json.tmp") == nil)
        #expect(EventID.fromFileName(String(repeating: "é", count: 32) + ".json") == nil)
        #expect(EventID.fromFileName(SpoolName(bytes: Array(id.utf8) + Array(".json".utf8))) == id)
        #expect(EventID.fromFileName(SpoolName(bytes: [0xff] + Array(".json".utf8))) == nil)
        #expect(EventID.quoted("a\u{1b}[2Jb") == "\"a?[2Jb\"")
    }

    @Test func uniqueSuffixes() {
        let names = SpoolUniqueNames(processID: 42, clock: { 1_000_000 })
        #expect(names.next() == "42.1.1000000")
        #expect(names.next() == "42.2.1000000")
    }

    @Test(".retention: exactly positive seconds and a newline, both ways")
    func retention() {
        #expect(SpoolRetentionFile.encode(seconds: 604_800) == Array("604800\n".utf8))
        #expect(SpoolRetentionFile.encode(seconds: 0) == nil)
        #expect(SpoolRetentionFile.decode(Array("604800\n".utf8)) == 604_800)
        for text in ["604800", "0\n", "-1\n", " 1\n", "1 \n", "7d\n", "\n", "", "99999999999999999999\n"] {
            #expect(SpoolRetentionFile.decode(Array(text.utf8)) == nil, "\(text.debugDescription)")
        }
        for seconds in [1, 86_400, Int(Int64.max)] {
            #expect(SpoolRetentionFile.encode(seconds: seconds).flatMap(SpoolRetentionFile.decode) == Int64(seconds))
        }
    }
}
