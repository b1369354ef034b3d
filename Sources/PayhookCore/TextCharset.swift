import Glibc

/// The charsets a signed form may be written in: UTF-8, and GBK for Alipay merchants whose orders were created
/// with `charset=GBK` (docs/protocols.md §9.1). A form is decoded to bytes, verified over those bytes, and only
/// then read as text in its charset, so nothing is re-encoded between what was signed and what is checked.
public enum TextCharset: String, Sendable, Equatable, CaseIterable {
    case utf8 = "utf-8"
    case gbk = "gbk"

    /// The charset a `charset` parameter or a config entry names, case-insensitively: `utf-8`/`utf8`, `gbk`.
    /// nil for any other name (GB2312 and GB18030 included: a sender that names them is not one payhook knows).
    public init?(name: String) {
        // ASCII letters only, compared as bytes: Unicode's lowercasing turns the Kelvin sign (U+212A) into `k`.
        let lowered = name.utf8.map { (0x41...0x5A).contains($0) ? $0 | 0x20 : $0 }
        if lowered.elementsEqual("utf-8".utf8) || lowered.elementsEqual("utf8".utf8) {
            self = .utf8
        } else if lowered.elementsEqual("gbk".utf8) {
            self = .gbk
        } else {
            return nil
        }
    }

    /// The text the bytes spell in this charset; nil when they are not valid in it. GBK goes through glibc's
    /// iconv(3) with no `//IGNORE` or `//TRANSLIT`, so an invalid or truncated sequence is refused, not guessed.
    public func decode(_ bytes: [UInt8]) -> String? {
        // ASCII is the same in both, and most values (amounts, ids, times) are ASCII.
        if bytes.allSatisfy({ $0 < 0x80 }) { return String(decoding: bytes, as: UTF8.self) }
        switch self {
        case .utf8:
            return String(validating: bytes, as: UTF8.self)
        case .gbk:
            return Self.iconvToUTF8(bytes, from: "GBK")
        }
    }

    private static func iconvToUTF8(_ bytes: [UInt8], from charset: String) -> String? {
        let converter = iconv_open("UTF-8", charset)
        guard converter != iconv_t(bitPattern: -1) else { return nil }
        defer { iconv_close(converter) }
        var input = bytes.map { CChar(bitPattern: $0) }
        // A GBK character is one or two bytes and becomes at most three in UTF-8; room for three per byte, since
        // the one-byte 0x80 is the euro sign, U+20AC.
        var output = [CChar](repeating: 0, count: bytes.count * 3 + 4)
        var inputLeft = input.count
        var outputLeft = output.count
        let result = input.withUnsafeMutableBufferPointer { inBuffer in
            output.withUnsafeMutableBufferPointer { outBuffer in
                var inPointer = inBuffer.baseAddress
                var outPointer = outBuffer.baseAddress
                return iconv(converter, &inPointer, &inputLeft, &outPointer, &outputLeft)
            }
        }
        guard result != -1, inputLeft == 0 else { return nil }
        let produced = output[0..<(output.count - outputLeft)].map { UInt8(bitPattern: $0) }
        return String(validating: produced, as: UTF8.self)
    }
}
