public import PayhookCore
import PayhookCrypto

/// Builds WeChat Pay v2 notifications the way WeChat does: for `payhook sign`, `payhook simulate` and
/// tests.
public enum WeChatSigner {
    /// The uppercase hex signature of `elements` (docs/protocols.md §4.2).
    public static func sign(_ elements: [FlatXMLElement], type: WeChatSignType, key: String) -> String {
        let message = Array(WeChatSigning.stringToSign(elements, key: key).utf8)
        switch type {
        case .md5: return Hex.encode(Digest.md5(message)).uppercased()
        case .hmacSHA256: return Hex.encode(Digest.hmacSHA256(key: Array(key.utf8), message: message)).uppercased()
        }
    }

    /// `req_info` for a refund notification: the inner `<root>` document, AES-256-ECB with PKCS#7 under the
    /// MD5-hex of the key, base64 (docs/protocols.md §5).
    public static func reqInfo(_ inner: [FlatXMLElement], key: String) -> String {
        let plaintext = Array(document(inner, root: "root").utf8)
        return Base64.encode(Cipher.aes256ECBEncrypt(key: WeChatSource.refundKey(apiKey: key), plaintext: plaintext) ?? [])
    }

    /// One flat XML document, every value in CDATA (a value containing `]]>` is split across two CDATA
    /// sections, the standard way to carry it).
    public static func document(_ elements: [FlatXMLElement], root: String) -> String {
        var out = "<\(root)>"
        for element in elements {
            let escaped = element.text.replacing("]]>", with: "]]]]><![CDATA[>")
            out += "<\(element.name)><![CDATA[\(escaped)]]></\(element.name)>"
        }
        return out + "</\(root)>"
    }
}
