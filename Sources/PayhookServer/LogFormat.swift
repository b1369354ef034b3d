import Foundation
public import Logging
import PayhookCore
import PayhookHTTP
import PayhookLock

/// A log line format: how one entry becomes one line of text, ending in a newline.
public protocol LogLineFormat: Sendable {
    static func line(level: Logger.Level, label: String, message: String, metadata: Logger.Metadata, milliseconds: Int64) -> String
}

/// Writes each entry to standard error as one line in `Format`, in a single write(2) under a lock, so that
/// lines from concurrent requests never interleave.
public struct LineLogHandler<Format: LogLineFormat>: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    private let label: String

    public init(label: String) {
        self.label = label
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let line = Format.line(
            level: event.level, label: label, message: "\(event.message)",
            metadata: metadata.merging(event.metadata ?? [:]) { _, new in new }, milliseconds: Router.wallClock())
        LogLineWriter.write(line)
    }
}

/// `log_format = "json"`: one JSON object per line, for log shippers: `ts`, `level`, `label`, `msg`, then every
/// metadata key (for request lines: source, tenant, outcome, http.status, latency_ms, event.id, reason).
public typealias JSONLineLogHandler = LineLogHandler<JSONLineFormat>

/// `log_format = "text"`, the default (``TextLineFormat``).
public typealias TextLineLogHandler = LineLogHandler<TextLineFormat>

public enum JSONLineFormat: LogLineFormat {
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

/// Writes one log line to standard error in a single write(2) under a lock, so that lines from concurrent
/// requests never interleave.
enum LogLineWriter {
    private static let lock = Locked(())

    static func write(_ line: String) {
        let bytes = Array(line.utf8)
        lock.withLock { _ in
            var offset = 0
            while offset < bytes.count {
                let written = bytes[offset...].withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
                if written <= 0 { return }
                offset += written
            }
        }
    }
}

/// The text log format: `<ts> <level> <label>: <msg> key=value key="quoted value" …`, one request per line.
///
/// Values come from requests (paths, tenants, reasons naming fields), so none may read as another field or
/// another line: a value made only of `A-Z a-z 0-9 . _ : / @ + , -` (and `[`, `]` for IPv6 peers) stands bare;
/// any other is quoted, with `"` and `\` escaped and every byte outside printable ASCII written as `\xNN`.
/// `reason=x outcome=accepted` inside a value therefore shows as `reason="x outcome=accepted"`.
public enum TextLineFormat: LogLineFormat {
    /// One line: timestamp, level, label, message (escaped; quoted when it holds `=` or `"`), then the metadata
    /// sorted by key, ending in a newline.
    public static func line(level: Logger.Level, label: String, message: String, metadata: Logger.Metadata, milliseconds: Int64) -> String {
        // A message is our own sentence, but some carry text from elsewhere (libmicrohttpd's): one holding `=` or
        // a quote is quoted, so that it cannot pass for fields either.
        let text = message.utf8.contains { $0 == UInt8(ascii: "=") || $0 == UInt8(ascii: "\"") }
            ? "\"" + escape(message) + "\"" : escape(message)
        var out = Timestamp.rfc3339(milliseconds: milliseconds) + " " + level.rawValue + " " + quote(label) + ": " + text
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            out += " " + quote(key) + "=" + quote("\(value)")
        }
        return out + "\n"
    }

    /// The listener's escaping (`PayhookHTTP.LogText.escape`): printable ASCII stays, `"` and `\` are escaped,
    /// every other byte (line breaks and UTF-8 included) becomes `\xNN`, so one entry is one line of plain text.
    static func escape(_ text: String) -> String {
        PayhookHTTP.LogText.escape(text.utf8)
    }

    /// The value bare when it is made of safe characters only, else in quotes with everything else escaped.
    static func quote(_ value: String) -> String {
        let safe = !value.isEmpty && value.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                return true
            default:
                return "._:/@+,-[]".utf8.contains(byte)
            }
        }
        return safe ? value : "\"" + escape(value) + "\""
    }
}
