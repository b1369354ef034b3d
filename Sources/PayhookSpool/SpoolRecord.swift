#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

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

/// How the spool compares ids and fingerprints: byte for byte, in UTF-8.
///
/// Swift's `String ==` compares by Unicode canonical equivalence, so "é" written precomposed (U+00E9) equals
/// "e" followed by U+0301. Two callbacks whose verified fields differ only that way are different content (a
/// signature covers the bytes, not their canonical form), and must be told apart: as a conflict, never as a
/// duplicate that is silently dropped.
enum SpoolBytes {
    /// Whether two strings are the same bytes.
    ///
    /// Every duplicate is answered after this comparison, so it compares the strings' contiguous UTF-8 storage
    /// with memcmp(3): the generic `elementsEqual` over two `UTF8View`s cost about 50 instructions a byte, 8% of a
    /// duplicate's work (valgrind --tool=callgrind over 2,000 duplicates).
    static func same(_ a: String, _ b: String) -> Bool {
        var a = a, b = b
        guard a.utf8.count == b.utf8.count else { return false }
        // withUTF8 makes the storage contiguous (a no-op for native strings, a copy for bridged ones) and hands
        // out a pointer to it.
        return a.withUTF8 { pa in
            b.withUTF8 { pb in pa.count == 0 || memcmp(pa.baseAddress!, pb.baseAddress!, pa.count) == 0 }
        }
    }
}

/// Reads the id and fingerprint back out of a record's bytes. The spool itself knows nothing of the format.
public protocol SpoolRecordInspector: Sendable {
    /// Parses a stored record; nil when the bytes are not a valid record (it then goes to corrupt/).
    func inspect(_ bytes: [UInt8]) -> SpoolRecordInfo?
}

/// One record to store: an opaque byte string identified by an id.
public struct SpoolRecord: Sendable {
    /// The record's id, 64 lowercase hex characters; the record file is new/<id>.json.
    public let id: String
    /// Equal fingerprints mean the same verified content (a duplicate); different ones mean a conflict.
    public let fingerprint: String
    /// The file contents, written verbatim. The spool's inspector must read `id` and `fingerprint` back out of them.
    public let bytes: [UInt8]

    /// Creates a record. Nothing is checked here; ``Spool/store(_:)`` refuses a malformed id.
    public init(id: String, fingerprint: String, bytes: [UInt8]) {
        self.id = id
        self.fingerprint = fingerprint
        self.bytes = bytes
    }
}

/// What ``Spool/store(_:)`` did with a record, once that is durable. Every case means the record is dealt
/// with: answer the sender with success.
public enum SpoolOutcome: Sendable, Equatable {
    /// The record is published in new/ and entered in the ledger.
    case stored
    /// The ledger already holds a record with this id and the same fingerprint; nothing was written.
    case duplicate
    /// The ledger holds a record with this id but another fingerprint; the original stays, and the incoming
    /// record is not delivered. `disposition` says what became of it:
    /// - `.kept`: its bytes were written, durably, as the new audit copy `auditFile` (a path relative to the
    ///   spool, "conflicts/<id>.<unique>.json"). Worth an operator's attention.
    /// - `.repeated`: the same content (id and fingerprint) already has its audit copy, `auditFile`; nothing
    ///   was written.
    /// - `.dropped`: over a cap of ``SpoolConflictLimits``; nothing was written and `auditFile` is nil.
    case conflict(auditFile: String?, disposition: SpoolConflictDisposition)

    /// Whether the store wrote something and made it durable.
    var wroteSomething: Bool {
        switch self {
        case .stored, .conflict(_, .kept): true
        case .duplicate, .conflict(_, .repeated), .conflict(_, .dropped): false
        }
    }
}

/// Record ids: exactly 64 lowercase hex characters, so an id can never name another path ("../x", "a/b")
/// and one record has exactly one spelling.
enum SpoolRecordID {
    static let length = 64

    static func isValid(_ id: String) -> Bool {
        var count = 0
        for byte in id.utf8 {
            count += 1
            guard count <= length else { return false }
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"): continue
            default: return false
            }
        }
        return count == length
    }

    /// The id as shown in an error message: cut short and with only printable ASCII, since it may be anything.
    static func quoted(_ id: String) -> String {
        let shown = id.unicodeScalars.prefix(80).map { scalar -> String in
            scalar.isASCII && scalar.value >= 0x20 && scalar.value < 0x7f ? String(scalar) : "?"
        }
        return "\"" + shown.joined() + (id.unicodeScalars.count > 80 ? "…" : "") + "\""
    }
}
