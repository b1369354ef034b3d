/// Text from a request, made safe for a log line or an error message.
public enum LogText {
    /// Printable ASCII only (anything else becomes `?`), cut to `limit` characters with `…`, so a hostile
    /// value can neither forge log lines nor flood them.
    public static func printable(_ text: some StringProtocol, limit: Int = 64) -> String {
        var out = ""
        var count = 0
        for scalar in text.unicodeScalars {
            if count == limit { return out + "…" }
            out.unicodeScalars.append(scalar.isASCII && scalar.value >= 0x20 && scalar.value < 0x7f ? scalar : "?")
            count += 1
        }
        return out
    }
}
