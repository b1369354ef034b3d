import Foundation
import PayhookSpoolFormat
import PayhookStore

/// An event of the spool: a file is one exactly when PayhookSpoolFormat's `EventFile` accepts it under its name,
/// the definition the server applies too, before storing and in its startup recovery, so that no file is kept
/// by one side and set aside by the other.
extension QueueEvent {
    /// The event read from a parsed event file.
    init(_ file: EventFile, bytes: [UInt8]) {
        self.init(
            id: file.id, bytes: bytes, source: file.source, tenant: file.tenant, orderRef: file.orderRef,
            status: file.status, amount: file.amount, currency: file.currency, receivedAtText: file.receivedAt,
            receivedAt: QueueTime.parseRFC3339(file.receivedAt))
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

