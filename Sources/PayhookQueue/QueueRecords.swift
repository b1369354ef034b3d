import Foundation
import PayhookStore

/// The attempts bookkeeping as the spool keeps it: `attempts/<id>.json` and `dead/<id>.error.json`, pretty,
/// key-sorted JSON (docs/consumers.md, section 6).
extension QueueAttemptRecord {
    /// Pretty, key-sorted JSON with a final newline.
    func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Encoding a struct of strings and integers cannot fail; an empty object is the fallback anyway.
        let data = (try? encoder.encode(self)) ?? Data("{}".utf8)
        return Array(data) + [UInt8(ascii: "\n")]
    }

    /// Parses a record; nil when the bytes are not one (a damaged sidecar counts as no bookkeeping).
    static func decode(_ bytes: [UInt8]) -> QueueAttemptRecord? {
        try? JSONDecoder().decode(QueueAttemptRecord.self, from: Data(bytes))
    }
}
