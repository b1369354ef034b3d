import Foundation
import Logging
import PayhookCore
import PayhookLock

/// Writes one JSON object per log line to standard error, for log shippers: `ts`, `level`, `label`,
/// `msg`, then every metadata key (for request lines: source, tenant, outcome, http.status, latency_ms,
/// event.id, reason). Whole lines are written with a single write(2) under a lock, so lines from
/// concurrent requests never interleave.
public struct JSONLineLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    private let label: String
    private static let lock = Locked(())

    public init(label: String) {
        self.label = label
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let line = Self.line(
            level: event.level, label: label, message: "\(event.message)",
            metadata: metadata.merging(event.metadata ?? [:]) { _, new in new }, milliseconds: Router.wallClock())
        let bytes = Array(line.utf8)
        Self.lock.withLock { _ in
            var offset = 0
            while offset < bytes.count {
                let written = bytes[offset...].withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
                if written <= 0 { return }
                offset += written
            }
        }
    }

    /// One line of JSON, keys in a fixed order then metadata sorted by key, ending in a newline.
    public static func line(level: Logger.Level, label: String, message: String, metadata: Logger.Metadata, milliseconds: Int64) -> String {
        var j = JSONText()
        j.raw("{\"ts\":")
        j.string(Timestamp.rfc3339(milliseconds: milliseconds))
        j.raw(",\"level\":")
        j.string(level.rawValue)
        j.raw(",\"label\":")
        j.string(label)
        j.raw(",\"msg\":")
        j.string(message)
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            j.raw(",")
            j.string(key)
            j.raw(":")
            j.string("\(value)")
        }
        j.raw("}\n")
        return String(decoding: j.bytes, as: UTF8.self)
    }
}
