/// Text from the network, made fit for a log line.
///
/// A request target carries the callback's fields and its signature in the
/// query (README.md, "Configuration": the unified platform's callbacks are
/// GETs), so only the path part of a target is ever logged, and a peer's
/// bytes are escaped so that they cannot forge or break a log line (a CR,
/// LF or ESC would otherwise reach the terminal or the log collector as is).
public enum LogText {
    /// Longest path logged, in bytes before escaping.
    public static let maxPathBytes = 128

    /// The path of a raw request target (everything before the first "?"),
    /// at most `maxPathBytes` bytes of it (then "…"), escaped (`escape`).
    public static func path(_ target: String) -> String {
        var bytes = Substring(target).utf8.prefix { $0 != UInt8(ascii: "?") }
        var cut = false
        if bytes.count > maxPathBytes {
            bytes = bytes.prefix(maxPathBytes)
            cut = true
        }
        return escape(bytes) + (cut ? "…" : "")
    }

    /// A message of libmicrohttpd's own (MHD_OPTION_EXTERNAL_LOGGER), which
    /// can quote the request's URL: from each "?" to the next space or
    /// quote is replaced by "?…", so no query text survives, then the rest
    /// is escaped.
    public static func libraryMessage(_ message: String) -> String {
        libraryMessage(bytes: message.utf8)
    }

    /// `libraryMessage` of raw bytes, which need not be UTF-8.
    public static func libraryMessage<Bytes: Sequence>(bytes message: Bytes) -> String where Bytes.Element == UInt8 {
        var out = ""
        var pending: [UInt8] = []
        var inQuery = false
        for byte in message {
            if inQuery {
                guard byte == UInt8(ascii: " ") || byte == UInt8(ascii: "'") || byte == UInt8(ascii: "`")
                    || byte == UInt8(ascii: "\"") else { continue }
                inQuery = false
            } else if byte == UInt8(ascii: "?") {
                out += escape(pending) + "?…"
                pending.removeAll(keepingCapacity: true)
                inQuery = true
                continue
            }
            pending.append(byte)
        }
        return out + escape(pending)
    }

    /// Printable ASCII stays as it is, except `"` and `\`, which become
    /// `\"` and `\\`; every other byte (controls, DEL, and each byte of a
    /// non-ASCII character) becomes `\xNN`.
    public static func escape<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        var out = ""
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "\""):
                out += "\\\""
            case UInt8(ascii: "\\"):
                out += "\\\\"
            case 0x20...0x7E:
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789abcdef".utf8)
                out += "\\x"
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(byte >> 4)]))
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(byte & 0x0F)]))
            }
        }
        return out
    }
}
