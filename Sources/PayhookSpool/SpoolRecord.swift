// The spool's on-disk format (layout, ids, the record inspector, the POSIX calls and the file-system seam) is
// PayhookSpoolFormat's; every client of the writer sees it through this module.
import PayhookSpoolFormat

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
