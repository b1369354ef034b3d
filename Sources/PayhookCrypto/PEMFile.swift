/// The blocks of a PEM file, by label, for files that may hold several keys and certificates (an Alipay public
/// key file holding the current and the next key, or a certificate followed by its intermediate).
public enum PEMFile {
    public struct Block: Sendable, Equatable {
        /// What follows `-----BEGIN ` up to the closing dashes: `PUBLIC KEY`, `CERTIFICATE`.
        public let label: String
        /// The block's text from its BEGIN line to its END line, ready for ``RSAPublicKey/init(pem:)`` or
        /// ``X509Certificate/init(pem:)``.
        public let pem: [UInt8]
    }

    /// Every `-----BEGIN X-----` … `-----END X-----` block in order; text outside blocks is ignored, and a block
    /// without its END line is left out (the loader then reports what is missing).
    public static func blocks(_ bytes: [UInt8]) -> [Block] {
        let text = String(decoding: bytes, as: UTF8.self)
        var blocks: [Block] = []
        var current: (label: String, lines: [Substring])?
        for line in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            let trimmed = line.trimmingTrailingSpaces()
            if let open = current {
                current!.lines.append(trimmed)
                if trimmed == "-----END \(open.label)-----" {
                    blocks.append(Block(label: open.label, pem: Array((current!.lines.joined(separator: "\n") + "\n").utf8)))
                    current = nil
                }
            } else if trimmed.hasPrefix("-----BEGIN "), trimmed.hasSuffix("-----"), trimmed.count > 16 {
                let label = String(trimmed.dropFirst(11).dropLast(5))
                current = (label, [trimmed])
            }
        }
        return blocks
    }

    /// A bare base64 public key, as Alipay's console shows "支付宝公钥" (one line, no BEGIN/END), wrapped as a
    /// `PUBLIC KEY` block; nil when the text is anything else.
    public static func wrapBareKey(_ bytes: [UInt8]) -> [UInt8]? {
        // Bytes, not Characters: "\r\n" is one Character, and a set of Characters would miss a lone "\n".
        let blank: Set<UInt8> = [0x20, 0x09, 0x0D, 0x0A]
        let trimmed = bytes.drop(while: { blank.contains($0) }).reversed().drop(while: { blank.contains($0) }).reversed()
        let text = String(decoding: Array(trimmed), as: UTF8.self)
        guard !text.isEmpty, !text.contains("-----"),
            text.utf8.allSatisfy({ byte in
                (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || (0x30...0x39).contains(byte)
                    || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "/") || byte == UInt8(ascii: "=")
            })
        else { return nil }
        var lines: [String] = []
        var rest = Substring(text)
        while !rest.isEmpty {
            lines.append(String(rest.prefix(64)))
            rest = rest.dropFirst(64)
        }
        return Array(("-----BEGIN PUBLIC KEY-----\n" + lines.joined(separator: "\n") + "\n-----END PUBLIC KEY-----\n").utf8)
    }
}

extension Substring {
    fileprivate func trimmingTrailingSpaces() -> Substring {
        var end = endIndex
        while end > startIndex, self[index(before: end)] == " " || self[index(before: end)] == "\t" || self[index(before: end)] == "\r" {
            end = index(before: end)
        }
        return self[startIndex..<end]
    }
}
