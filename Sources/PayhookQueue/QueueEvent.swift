import Foundation
import PayhookSpoolFormat

/// One event file's contents, as read from the spool (contract §5; schema/event.v1.schema.json).
///
/// A file is an event exactly when PayhookSpoolFormat's `EventFile` accepts it under its name: the definition
/// the server applies too, before storing and in its startup recovery, so that no file is kept by one side and
/// set aside by the other. The fields are optional here for the listings' sake: a value a backend does not
/// have shows as "-".
public struct QueueEvent: Sendable, Equatable {
    /// The event id: 64 lowercase hex characters, also the file name without `.json`.
    public let id: String
    /// The file's bytes, exactly as stored.
    public let bytes: [UInt8]
    /// `source`: `unified`, `wechat.pay` or `wechat.refund`.
    public let source: String?
    /// `tenant`: domainCode or mch_id.
    public let tenant: String?
    /// `order_ref`: requestKey, out_trade_no or out_refund_no.
    public let orderRef: String?
    /// `status`: payStatus, result_code or refund_status.
    public let status: String?
    /// `amount` in the smallest currency unit (fen).
    public let amount: Int64?
    /// `currency`.
    public let currency: String?
    /// `received_at` as written (RFC 3339, UTC, milliseconds).
    public let receivedAtText: String?
    /// `received_at` parsed; nil when missing or not RFC 3339.
    public let receivedAt: Date?

    /// The event read from a parsed event file.
    init(_ file: EventFile, bytes: [UInt8]) {
        self.id = file.id
        self.bytes = bytes
        self.source = file.source
        self.tenant = file.tenant
        self.orderRef = file.orderRef
        self.status = file.status
        self.amount = file.amount
        self.currency = file.currency
        self.receivedAtText = file.receivedAt
        self.receivedAt = QueueTime.parseRFC3339(file.receivedAt)
    }

    /// `received_at` read straight from the text (`EventFile.quickReceivedAt`), only to order the files in new/;
    /// the file a taker claims is then parsed in full. nil when not found (the caller falls back to a full parse).
    static func quickReceivedAt(_ bytes: [UInt8]) -> Date? {
        EventFile.quickReceivedAt(bytes).flatMap(QueueTime.parseRFC3339)
    }

    /// Parses an event file's bytes; `expectedID` is the id its file name says. Throws why they are not an event.
    static func parse(_ bytes: [UInt8], expectedID: String) throws(SpoolFileProblem) -> QueueEvent {
        QueueEvent(try EventFile.parse(bytes, fileName: EventID.fileName(expectedID)), bytes: bytes)
    }
}

/// Event ids: 64 lowercase hex characters (the SHA-256 of the dedupe key), so an id can never name another
/// path ("../x", "a/b") and one event has exactly one spelling. One definition, the spool format's.
public typealias QueueID = EventID
