import Glibc
public import PayhookCore

/// Why a file found under an event name is not a valid event there: one sentence starting "it …" or "its …",
/// e.g. "it is not valid JSON". Quarantine messages read "moved new/x.json to corrupt/x.json: <reason>".
public struct SpoolFileProblem: Error, Sendable, Equatable, CustomStringConvertible {
    public let reason: String

    public init(_ reason: String) {
        self.reason = reason
    }

    public var description: String { reason }

    /// The one naming rule of new/, cur/ and dead/: a record's file is called `<id>.json`, with a well-formed id.
    /// Both the server's recovery and the queue tools judge a file's name by this.
    public static func checkName(_ fileName: String, id: String) throws(SpoolFileProblem) {
        guard SpoolBytes.same(fileName, EventID.fileName(id)) else {
            throw SpoolFileProblem("its id \(EventID.quoted(id)) does not match its file name")
        }
        guard EventID.isValid(id) else {
            throw SpoolFileProblem("its id \(EventID.quoted(id)) is not 64 lowercase hex characters")
        }
    }
}

/// What a ``SpoolRecordInspector`` reads out of a stored record.
///
/// Two infos are equal when their ids and fingerprints are equal byte for byte, not by Unicode canonical
/// equivalence as `String ==` would compare them.
public struct SpoolRecordInfo: Sendable, Equatable {
    /// The record's id: 64 lowercase hex characters.
    public let id: String
    /// Equal fingerprints mean the same verified content.
    public let fingerprint: String

    /// Creates the information an inspector read from a record.
    public init(id: String, fingerprint: String) {
        self.id = id
        self.fingerprint = fingerprint
    }

    public static func == (lhs: SpoolRecordInfo, rhs: SpoolRecordInfo) -> Bool {
        SpoolBytes.same(lhs.id, rhs.id) && SpoolBytes.same(lhs.fingerprint, rhs.fingerprint)
    }
}

/// Reads the id and fingerprint back out of a record's bytes. The spool's writer knows nothing of the record
/// format; ``EventFileInspector`` is the one for payhook's events, and tests of the writer bring their own.
public protocol SpoolRecordInspector: Sendable {
    /// Parses a stored record; nil when the bytes are not a valid record.
    func inspect(_ bytes: [UInt8]) -> SpoolRecordInfo?

    /// Parses the record stored under `fileName` in new/ or cur/, or throws why it is not a valid record there
    /// (it then goes to corrupt/). The default implementation calls ``inspect(_:)`` and then applies the naming
    /// rule, ``SpoolFileProblem/checkName(_:id:)``.
    func inspect(_ bytes: [UInt8], fileName: String) throws(SpoolFileProblem) -> SpoolRecordInfo
}

extension SpoolRecordInspector {
    public func inspect(_ bytes: [UInt8], fileName: String) throws(SpoolFileProblem) -> SpoolRecordInfo {
        guard let info = inspect(bytes) else { throw SpoolFileProblem("it is not a valid record") }
        try SpoolFileProblem.checkName(fileName, id: info.id)
        return info
    }
}

/// How the spool compares ids and fingerprints: byte for byte, in UTF-8.
///
/// Swift's `String ==` compares by Unicode canonical equivalence, so "é" written precomposed (U+00E9) equals
/// "e" followed by U+0301. Two callbacks whose verified fields differ only that way are different content (a
/// signature covers the bytes, not their canonical form), and must be told apart: as a conflict, never as a
/// duplicate that is silently dropped.
public enum SpoolBytes {
    /// Whether two strings are the same bytes.
    ///
    /// Every duplicate is answered after this comparison, so it compares the strings' contiguous UTF-8 storage
    /// with memcmp(3): the generic `elementsEqual` over two `UTF8View`s cost about 50 instructions a byte, 8% of a
    /// duplicate's work (valgrind --tool=callgrind over 2,000 duplicates).
    public static func same(_ a: String, _ b: String) -> Bool {
        var a = a, b = b
        guard a.utf8.count == b.utf8.count else { return false }
        // withUTF8 makes the storage contiguous (a no-op for native strings, a copy for bridged ones) and hands
        // out a pointer to it.
        return a.withUTF8 { pa in
            b.withUTF8 { pb in pa.count == 0 || memcmp(pa.baseAddress!, pb.baseAddress!, pa.count) == 0 }
        }
    }
}

/// One event file, `new/<id>.json`, read and checked: the single definition of "a valid event file" that the
/// server's writer (checking each event before storing it, and its startup recovery), and the queue tools
/// (list, show, take and the rest) all apply, so that no file is kept by one side and set aside by the other.
///
/// A valid event file is:
/// - strict RFC 8259 JSON (`JSONReader`): UTF-8, one value, nothing after it, no duplicate member names, no
///   unpaired surrogate escape, nesting at most 32 deep;
/// - one object with the members of `schema/event.v1.schema.json` and no others, each of its type: `schema`
///   equal to "payhook.event.v1"; `id` 64 lowercase hex characters, and the file's name `<id>.json` when it
///   has one; `amount` an integer; `fields` an object of strings; `resource`, which only some sources write,
///   an object; `raw` an object of the strings `method`, `target` and `body`, and optionally `headers`, an
///   object of strings; every other member a string.
///
/// The value rules of the schema (the enumerations of `source` and `verified_with`, the `received_at` pattern,
/// minimum lengths) are the writer's business and are not checked here: a reader that refused a file for them
/// would set aside an event the server wrote and answered success for.
public struct EventFile: Sendable, Equatable {
    /// The schema name every event file carries.
    public static let schema = Event.schema

    public let id: String
    public let source: String
    public let tenant: String
    public let orderRef: String
    public let status: String
    /// In the smallest currency unit (fen).
    public let amount: Int64
    public let currency: String
    public let dedupeKey: String
    public let verifiedWith: String
    /// As written: RFC 3339, UTC, milliseconds.
    public let receivedAt: String
    public let remoteAddress: String
    /// `fields`, in file order.
    public let fields: [FormParameter]
    /// The nested document some sources keep whole (``Event/resource``); nil when the file has none.
    public let resource: JSONValue?
    public let raw: Event.RawRequest

    /// What the writer compares to tell a duplicate from a conflict, by the rule of the event's source
    /// (``Event/fingerprintRule``).
    public func fingerprint(by rule: FingerprintRule) -> String {
        rule.fingerprint(fields: fields, resource: resource)
    }

    /// The members of the schema, in its order.
    public static let members = [
        "schema", "id", "source", "tenant", "order_ref", "status", "amount", "currency", "dedupe_key",
        "verified_with", "received_at", "remote_addr", "fields", "resource", "raw",
    ]

    /// The members only some sources write.
    public static let optionalMembers: Set<String> = ["resource"]

    /// Reads an event file's bytes, or throws why they are not a valid event. `fileName`, when given, is the name
    /// the file was found under, which must be `<id>.json`.
    ///
    /// The checks run in a fixed order, so that both sides give the same reason for the same file: the JSON, the
    /// object, `id` (and the name), then each member in schema order, then any member the schema does not have.
    public static func parse(_ bytes: [UInt8], fileName: String? = nil) throws(SpoolFileProblem) -> EventFile {
        guard let document = JSONReader.parse(bytes) else { throw SpoolFileProblem("it is not valid JSON") }
        guard case .object(let objectMembers) = document else { throw SpoolFileProblem("it is not a JSON object") }
        var found = [JSONValue?](repeating: nil, count: members.count)
        var unknown: String?
        for member in objectMembers {
            // Names compared byte for byte (JSONValue's subscript does the same), never by canonical equivalence.
            if let index = members.firstIndex(where: { SpoolBytes.same($0, member.key) }) {
                found[index] = member.value
            } else if unknown == nil {
                unknown = member.key
            }
        }
        let reader = MemberReader(found: found)

        guard case .string(let id)? = found[1] else { throw SpoolFileProblem("it has no string \"id\"") }
        if let fileName {
            try SpoolFileProblem.checkName(fileName, id: id)
        } else if !EventID.isValid(id) {
            throw SpoolFileProblem("its id \(EventID.quoted(id)) is not 64 lowercase hex characters")
        }
        let schema = try reader.string("schema")
        guard SpoolBytes.same(schema, Self.schema) else {
            throw SpoolFileProblem("its \"schema\" is \(EventID.quoted(schema)), not \"\(Self.schema)\"")
        }
        let event = EventFile(
            id: id,
            source: try reader.string("source"),
            tenant: try reader.string("tenant"),
            orderRef: try reader.string("order_ref"),
            status: try reader.string("status"),
            amount: try reader.integer("amount"),
            currency: try reader.string("currency"),
            dedupeKey: try reader.string("dedupe_key"),
            verifiedWith: try reader.string("verified_with"),
            receivedAt: try reader.string("received_at"),
            remoteAddress: try reader.string("remote_addr"),
            fields: try reader.fields(),
            resource: try reader.resource(),
            raw: try reader.raw()
        )
        if let unknown {
            throw SpoolFileProblem("it has a member \(EventID.quoted(unknown)) that \(Self.schema) does not define")
        }
        return event
    }

    /// The members found, by their index in ``members``, read with the type the schema gives them.
    private struct MemberReader {
        let found: [JSONValue?]

        func resource() throws(SpoolFileProblem) -> JSONValue? {
            guard let index = EventFile.members.firstIndex(of: "resource"), let value = found[index] else { return nil }
            guard case .object = value else { throw SpoolFileProblem("its \"resource\" is not an object") }
            return value
        }

        func value(_ name: String) throws(SpoolFileProblem) -> JSONValue {
            guard let index = EventFile.members.firstIndex(of: name), let value = found[index] else {
                throw SpoolFileProblem("it has no \"\(name)\"")
            }
            return value
        }

        func string(_ name: String) throws(SpoolFileProblem) -> String {
            guard case .string(let text) = try value(name) else { throw SpoolFileProblem("its \"\(name)\" is not a string") }
            return text
        }

        func integer(_ name: String) throws(SpoolFileProblem) -> Int64 {
            // JSONReader keeps the number's text; an integer is one without fraction or exponent, within 64 bits.
            guard case .number(let text) = try value(name), let number = Int64(text) else {
                throw SpoolFileProblem("its \"\(name)\" is not an integer")
            }
            return number
        }

        func fields() throws(SpoolFileProblem) -> [FormParameter] {
            guard case .object(let members) = try value("fields") else {
                throw SpoolFileProblem("its \"fields\" is not an object")
            }
            var fields: [FormParameter] = []
            fields.reserveCapacity(members.count)
            for member in members {
                guard case .string(let text) = member.value else {
                    throw SpoolFileProblem("its \"fields\" member \(EventID.quoted(member.key)) is not a string")
                }
                fields.append(FormParameter(name: member.key, value: text))
            }
            return fields
        }

        func raw() throws(SpoolFileProblem) -> Event.RawRequest {
            guard case .object(let members) = try value("raw") else { throw SpoolFileProblem("its \"raw\" is not an object") }
            let names = ["method", "target", "body"]
            var texts = [String?](repeating: nil, count: names.count)
            var headers: [FormParameter] = []
            for member in members {
                if SpoolBytes.same(member.key, "headers") {
                    guard case .object(let fields) = member.value else {
                        throw SpoolFileProblem("its \"raw\" member \"headers\" is not an object")
                    }
                    for field in fields {
                        guard case .string(let text) = field.value else {
                            throw SpoolFileProblem("its \"raw\" header \(EventID.quoted(field.key)) is not a string")
                        }
                        headers.append(FormParameter(name: field.key, value: text))
                    }
                    continue
                }
                guard let index = names.firstIndex(where: { SpoolBytes.same($0, member.key) }) else {
                    throw SpoolFileProblem("its \"raw\" has a member \(EventID.quoted(member.key)) the schema does not define")
                }
                guard case .string(let text) = member.value else {
                    throw SpoolFileProblem("its \"raw\" member \"\(names[index])\" is not a string")
                }
                texts[index] = text
            }
            for (index, name) in names.enumerated() where texts[index] == nil {
                throw SpoolFileProblem("its \"raw\" has no \"\(name)\"")
            }
            return Event.RawRequest(method: texts[0]!, target: texts[1]!, body: texts[2]!, headers: headers)
        }
    }

    /// `received_at` read straight from the text, without parsing the whole JSON: the first `"received_at"` key
    /// followed by a string of at most 40 bytes. Only to order the files in new/ cheaply (a taker may look at
    /// each of them on every take); the file that is then claimed is parsed in full. nil when not found.
    public static func quickReceivedAt(_ bytes: [UInt8]) -> String? {
        let key = Array("\"received_at\"".utf8)
        guard bytes.count > key.count else { return nil }
        var index = 0
        search: while index + key.count <= bytes.count {
            for offset in 0..<key.count where bytes[index + offset] != key[offset] {
                index += 1
                continue search
            }
            var cursor = index + key.count
            func skipSpace() {
                while cursor < bytes.count, [0x20, 0x09, 0x0a, 0x0d].contains(bytes[cursor]) { cursor += 1 }
            }
            skipSpace()
            guard cursor < bytes.count, bytes[cursor] == UInt8(ascii: ":") else { return nil }
            cursor += 1
            skipSpace()
            guard cursor < bytes.count, bytes[cursor] == UInt8(ascii: "\"") else { return nil }
            let start = cursor + 1
            guard let end = bytes[start...].prefix(40).firstIndex(of: UInt8(ascii: "\"")) else { return nil }
            return String(decoding: bytes[start..<end], as: UTF8.self)
        }
        return nil
    }
}

/// The ``SpoolRecordInspector`` of payhook's events: ``EventFile/parse(_:fileName:)`` and its fingerprint. The
/// server's spool is opened with it, so that what the writer checks before storing, what its recovery keeps,
/// and what the queue tools accept are one definition.
///
/// How a source fingerprints its events is that source's rule, so the inspector is handed the rules (by event
/// source) rather than knowing any provider; there is no default list, since an inspector without a source's
/// rule would see its stored events' duplicates as conflicts. A source it has no rule for gets
/// ``FingerprintRule/allFields``.
public struct EventFileInspector: SpoolRecordInspector {
    let fingerprintRules: [String: FingerprintRule]

    public init(fingerprintRules: [String: FingerprintRule]) {
        self.fingerprintRules = fingerprintRules
    }

    public func inspect(_ bytes: [UInt8]) -> SpoolRecordInfo? {
        guard let event = try? EventFile.parse(bytes) else { return nil }
        return info(event)
    }

    public func inspect(_ bytes: [UInt8], fileName: String) throws(SpoolFileProblem) -> SpoolRecordInfo {
        info(try EventFile.parse(bytes, fileName: fileName))
    }

    /// The id and fingerprint of an event already parsed.
    public func info(_ event: EventFile) -> SpoolRecordInfo {
        SpoolRecordInfo(id: event.id, fingerprint: event.fingerprint(by: fingerprintRules[event.source] ?? .allFields))
    }
}
