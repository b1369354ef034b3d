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

/// The handler `--log-format` / `log_format` names: `json` or `text`; anything else is text.
public func lineLogHandler(format: String, label: String, level: Logger.Level) -> any LogHandler {
    if format == "json" {
        var handler = JSONLineLogHandler(label: label)
        handler.logLevel = level
        return handler
    }
    var handler = TextLineLogHandler(label: label)
    handler.logLevel = level
    return handler
}

/// One JSON object per line, with typed values: a number logged as a number
/// (`"http.status": .stringConvertible(200)`) is a JSON number, a `Bool` a JSON boolean, an array or a dictionary
/// a JSON array or object; every other value is a JSON string, escaped (RFC 8259 §7).
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
            append(value, to: &j)
        }
        j.raw("}\n")
        return String(decoding: j.bytes, as: UTF8.self)
    }

    /// `value` as JSON: see the type's description.
    static func append(_ value: Logger.MetadataValue, to j: inout JSONText) {
        switch value {
        case .string(let text):
            j.string(text)
        case .stringConvertible(let convertible):
            if let number = number(convertible) {
                j.raw(number)
            } else {
                j.string(convertible.description)
            }
        case .array(let items):
            j.raw("[")
            for (index, item) in items.enumerated() {
                if index > 0 { j.raw(",") }
                append(item, to: &j)
            }
            j.raw("]")
        case .dictionary(let members):
            j.raw("{")
            for (index, member) in members.sorted(by: { $0.key < $1.key }).enumerated() {
                if index > 0 { j.raw(",") }
                j.string(member.key)
                j.raw(":")
                append(member.value, to: &j)
            }
            j.raw("}")
        }
    }

    /// The JSON spelling of a boolean or a finite number, nil for anything else. Swift prints a `Double` as the
    /// shortest digits that read back as it ("0.25", "1e-05", "5e+20"): each is a JSON number (RFC 8259 §6).
    /// NaN and the infinities have no JSON spelling and stay strings.
    static func number(_ value: any CustomStringConvertible) -> String? {
        switch value {
        case let flag as Bool: return flag ? "true" : "false"
        case let integer as any BinaryInteger: return "\(integer)"
        case let double as Double: return double.isFinite ? "\(double)" : nil
        case let float as Float: return float.isFinite ? "\(Double(float))" : nil
        default: return nil
        }
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

/// The text log format, logfmt: every line is `key=value` pairs, `ts=… level=… label=… msg=…` first, then the
/// metadata sorted by key, so that a logfmt parser (Loki's, Grafana's, `hl`, …) reads every field back:
///
///     ts=2026-11-22T02:34:50.123Z level=info label=payhook msg=request event.id=7f99… http.status=200 outcome=accepted
///
/// Values come from requests (paths, tenants, reasons naming fields), so none may read as another field or
/// another line: a value made only of `A-Z a-z 0-9 . _ : / @ + , -` (and `[`, `]` for IPv6 peers) stands bare;
/// any other (one holding a space, `=`, `"`, a control character or anything outside printable ASCII) is quoted,
/// with `"` and `\` escaped and every byte outside printable ASCII written as `\xNN` (the listener's escaping,
/// `PayhookHTTP.LogText.escape`). `reason=x outcome=accepted` inside a value therefore shows as
/// `reason="x outcome=accepted"`, and a line break as `\x0a`. Keys are payhook's own; a character in one that is
/// not safe bare becomes `_`.
public enum TextLineFormat: LogLineFormat {
    /// One line of `key=value` pairs ending in a newline.
    public static func line(level: Logger.Level, label: String, message: String, metadata: Logger.Metadata, milliseconds: Int64) -> String {
        var out = "ts=" + Timestamp.rfc3339(milliseconds: milliseconds) + " level=" + level.rawValue + " label=" + quote(label)
            + " msg=" + quote(message)
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            out += " " + self.key(key) + "=" + quote("\(value)")
        }
        return out + "\n"
    }

    /// The listener's escaping (`PayhookHTTP.LogText.escape`): printable ASCII stays, `"` and `\` are escaped,
    /// every other byte (line breaks and UTF-8 included) becomes `\xNN`, so one entry is one line of plain text.
    static func escape(_ text: String) -> String {
        PayhookHTTP.LogText.escape(text.utf8)
    }

    static func isSafe(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "._:/@+,-[]".utf8.contains(byte)
        }
    }

    /// The value bare when it is made of safe characters only, else in quotes with everything else escaped.
    static func quote(_ value: String) -> String {
        let safe = !value.isEmpty && value.utf8.allSatisfy(isSafe)
        return safe ? value : "\"" + escape(value) + "\""
    }

    /// A key as logfmt allows it: never quoted, so any character that is not safe bare becomes `_`.
    static func key(_ key: String) -> String {
        if !key.isEmpty, key.utf8.allSatisfy(isSafe) { return key }
        return key.isEmpty ? "_" : String(decoding: key.utf8.map { isSafe($0) ? $0 : UInt8(ascii: "_") }, as: UTF8.self)
    }
}
