import Foundation

/// One event file's contents, as read from the spool (contract §5; schema/event.v1.schema.json).
///
/// The queue tools only insist on what they need: the file is a JSON object whose `id` is the file's own
/// name without `.json`. Every other field is read when present and shown as "-" when not, so that an event
/// the server accepts is never set aside here for lacking a field the tools merely display.
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

    /// Why bytes are not an event.
    enum Invalid: Error, Equatable {
        case notJSON
        case notObject
        case idMismatch(String?)

        var reason: String {
            switch self {
            case .notJSON: return "it is not valid JSON"
            case .notObject: return "it is not a JSON object"
            case .idMismatch(nil): return "it has no string \"id\""
            case .idMismatch(.some(let id)): return "its id \(QueueID.quoted(id)) does not match its file name"
            }
        }
    }

    /// `received_at` read straight from the text, without parsing the whole JSON: the first `"received_at"`
    /// key followed by a string. Used only to order the files in new/ (a taker may look at every one of them
    /// on each take); the file a taker claims is then parsed in full, and one that is not a valid event goes
    /// to corrupt/. nil when not found (the caller falls back to a full parse).
    static func quickReceivedAt(_ bytes: [UInt8]) -> Date? {
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
            return QueueTime.parseRFC3339(String(decoding: bytes[start..<end], as: UTF8.self))
        }
        return nil
    }

    /// Parses an event file's bytes; `expectedID` is the id its file name says.
    static func parse(_ bytes: [UInt8], expectedID: String) throws(Invalid) -> QueueEvent {
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: Data(bytes), options: [])
        } catch {
            throw .notJSON
        }
        guard let object = parsed as? [String: Any] else { throw .notObject }
        guard let id = object["id"] as? String else { throw .idMismatch(nil) }
        guard id == expectedID else { throw .idMismatch(id) }

        func text(_ name: String) -> String? { object[name] as? String }
        var amount: Int64?
        // JSONSerialization gives booleans as NSNumber too; `is Bool` tells them apart, and `as? Int64` is nil
        // for a number with a fraction.
        if let value = object["amount"], !(value is Bool) {
            amount = value as? Int64
        }
        let receivedAtText = text("received_at")
        return QueueEvent(
            id: id,
            bytes: bytes,
            source: text("source"),
            tenant: text("tenant"),
            orderRef: text("order_ref"),
            status: text("status"),
            amount: amount,
            currency: text("currency"),
            receivedAtText: receivedAtText,
            receivedAt: receivedAtText.flatMap(QueueTime.parseRFC3339)
        )
    }
}

/// Event ids: 64 lowercase hex characters (the SHA-256 of the dedupe key), so an id can never name another
/// path ("../x", "a/b") and one event has exactly one spelling.
public enum QueueID {
    /// Whether `text` is a well-formed event id.
    public static func isValid(_ text: String) -> Bool {
        var count = 0
        for byte in text.utf8 {
            count += 1
            guard count <= 64 else { return false }
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"): continue
            default: return false
            }
        }
        return count == 64
    }

    /// The id of an event file name `<id>.json`, or nil for any other name.
    static func fromFileName(_ name: String) -> String? {
        guard name.hasSuffix(".json") else { return nil }
        let id = String(name.dropLast(5))
        return isValid(id) ? id : nil
    }

    /// A value as shown in a message: quoted, cut short, printable ASCII only, since it may be anything.
    public static func quoted(_ text: String) -> String {
        let shown = text.unicodeScalars.prefix(80).map { scalar -> String in
            scalar.isASCII && scalar.value >= 0x20 && scalar.value < 0x7f ? String(scalar) : "?"
        }
        return "\"" + shown.joined() + (text.unicodeScalars.count > 80 ? "…" : "") + "\""
    }
}
