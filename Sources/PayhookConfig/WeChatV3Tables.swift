import PayhookCore
import PayhookCrypto
import PayhookTOML
import PayhookWeChat

extension TenantTables {
    /// `[[wechat_v3]]`: WeChat Pay API v3 merchants. Several may share a path: `Wechatpay-Serial` narrows the
    /// tenants whose keys are tried, and the merchant the decrypted resource names picks one (README,
    /// "Configuration"). So (`path`, `mch_id`) is the route that must be unique.
    static let wechatV3 = TenantTables(
        name: "wechat_v3", routingKey: "mch_id",
        read: { loader, table, c, config in
            if let tenant = loader.wechatV3Tenant(table, &c) { config.wechatV3.append(tenant) }
        },
        check: { _, _ in })
}

extension ConfigLoader {
    static let wechatV3Kind = "[[wechat_v3]]"
    /// The length of every APIv3 key: the AES-256 key of the resources, taken as written (docs/protocols.md §7.1).
    static let apiV3KeyBytes = 32
    static let publicKeyIDPrefix = "PUB_KEY_ID_"
    static let maxClockSkewRange: ClosedRange<Int64> = 1...3600

    func wechatV3Tenant(_ table: TOMLTable, _ c: inout Context) -> WeChatV3Tenant? {
        let kind = Self.wechatV3Kind
        let known: Set<String> = [
            "path", "mch_id", "appid", "api_v3_key", "api_v3_key_file", "api_v3_key_env", "public_key_file", "public_key_id",
            "platform_cert_files", "max_clock_skew_s",
        ]
        let (path, before) = checkKeysAndPath(table, known: known, kind: kind, &c)
        let mchID = requiredString(table, "mch_id", kind, &c)
        var appID: String?
        if let node = table["appid"], let value = string(node, "appid", &c) {
            if value.isEmpty { c.error(node.line, "appid must not be empty (leave it out to accept any appid)") }
            appID = value
        }
        var skew = WeChatV3Tenant.defaultMaxClockSkewSeconds
        if let node = table["max_clock_skew_s"] {
            let range = Self.maxClockSkewRange
            if case .integer(let value) = node.value, range.contains(value) {
                skew = value
            } else {
                c.error(node.line, "max_clock_skew_s must be an integer between \(range.lowerBound) and \(range.upperBound)")
            }
        }
        // Only the position of a bad key is named, never its text or its length.
        let keys = loadSecrets(
            table, names: ("api_v3_key", "api_v3_key_file", "api_v3_key_env"), what: kind,
            check: { $0.utf8.count == Self.apiV3KeyBytes ? nil : "not \(Self.apiV3KeyBytes) bytes: an APIv3 key is exactly \(Self.apiV3KeyBytes)" },
            &c)
        let publicKey = wechatV3PublicKey(table, &c)
        let certificates = wechatV3Certificates(table, &c)
        if table["public_key_file"] == nil && table["public_key_id"] == nil && table["platform_cert_files"] == nil {
            c.error(table.line, "\(kind) needs public_key_file + public_key_id, platform_cert_files, or both: the keys WeChat Pay signs with")
        }
        guard c.issues.count == before, let path, let mchID, let keys else { return nil }
        return WeChatV3Tenant(
            path: path, mchID: mchID, appID: appID, apiV3Keys: keys, publicKey: publicKey, platformCertificates: certificates,
            maxClockSkewSeconds: skew, line: table.line)
    }

    /// Public-key mode: `public_key_file` and `public_key_id`, both or neither.
    func wechatV3PublicKey(_ table: TOMLTable, _ c: inout Context) -> WeChatV3Tenant.PublicKey? {
        let fileNode = table["public_key_file"]
        let idNode = table["public_key_id"]
        if let fileNode, idNode == nil {
            c.error(fileNode.line, "public_key_file needs public_key_id: the \(Self.publicKeyIDPrefix)… id WeChat Pay shows beside the key")
        }
        if let idNode, fileNode == nil {
            c.error(idNode.line, "public_key_id needs public_key_file: the WeChat Pay public key it names")
        }
        var id: String?
        if let idNode, let value = string(idNode, "public_key_id", &c) {
            if Self.isPublicKeyID(value) {
                id = value
            } else {
                c.error(idNode.line, "public_key_id must be \(Self.publicKeyIDPrefix) followed by printable ASCII without spaces, as WeChat Pay shows it")
            }
        }
        var key: RSAPublicKey?
        if let fileNode, let path = filePath(fileNode, "public_key_file", &c) {
            key = readPublicKey(path, line: fileNode.line, &c)
        }
        guard let id, let key else { return nil }
        return WeChatV3Tenant.PublicKey(id: id, key: key)
    }

    static func isPublicKeyID(_ text: String) -> Bool {
        text.hasPrefix(publicKeyIDPrefix) && text.utf8.count > publicKeyIDPrefix.utf8.count
            && text.utf8.allSatisfy { (0x21...0x7e).contains($0) }
    }

    private func readPublicKey(_ path: String, line: Int, _ c: inout Context) -> RSAPublicKey? {
        guard let bytes = readKeyFile(path, "public_key_file", line: line, &c) else { return nil }
        let key: RSAPublicKey
        do {
            key = try RSAPublicKey(pem: bytes)
        } catch {
            // A platform certificate in the wrong key is a likely mix-up between the two modes.
            let hint = (try? X509Certificate(pem: bytes)) != nil ? "; it holds a certificate, which belongs in platform_cert_files" : ""
            c.error(line, "public_key_file \(path): \(error)\(hint)")
            return nil
        }
        guard key.isRSA2048 else {
            c.error(line, "public_key_file \(path) holds \(Self.describe(key)), not an RSA-2048 key: it is not WeChat Pay's public key")
            return nil
        }
        return key
    }

    /// Platform-certificate mode: `platform_cert_files`, each a PEM certificate with an RSA-2048 key and a serial
    /// of its own.
    func wechatV3Certificates(_ table: TOMLTable, _ c: inout Context) -> [X509Certificate] {
        guard let node = table["platform_cert_files"] else { return [] }
        guard case .array(let items) = node.value, !items.isEmpty else {
            c.error(node.line, "platform_cert_files must be a non-empty array of file names")
            return []
        }
        let now = self.now()
        var certificates: [X509Certificate] = []
        var serials: [String: String] = [:]
        for item in items {
            guard let path = filePath(item, "platform_cert_files", &c),
                let bytes = readKeyFile(path, "platform certificate", line: item.line, &c)
            else { continue }
            let certificate: X509Certificate
            do {
                certificate = try X509Certificate(pem: bytes)
            } catch {
                c.error(item.line, "platform certificate \(path): \(error)")
                continue
            }
            // `Wechatpay-Serial` names a certificate by a positive hexadecimal integer (docs/protocols.md §7.1).
            guard let serial = X509Certificate.normalizedSerial(certificate.serialHex) else {
                c.error(item.line, "platform certificate \(path): its serial number is not a positive integer, so no Wechatpay-Serial can name it")
                continue
            }
            guard certificate.publicKey.isRSA2048 else {
                c.error(item.line, "platform certificate \(path) (serial \(serial)) holds \(Self.describe(certificate.publicKey)), not an RSA-2048 key: it is not a WeChat Pay platform certificate")
                continue
            }
            if let first = serials[serial] {
                c.error(item.line, "platform certificate \(path) has serial \(serial), as \(first) does: each certificate of a table needs its own serial")
                continue
            }
            serials[serial] = path
            if !certificate.isValid(at: now) {
                let when = now < certificate.notBefore ? "not valid yet" : "expired"
                c.warn(
                    item.line,
                    "platform certificate \(path) (serial \(serial)) is \(when): valid from \(Self.date(certificate.notBefore)) to \(Self.date(certificate.notAfter)); notifications it signs are refused outside that period"
                )
            }
            certificates.append(certificate)
        }
        return certificates
    }

    /// A non-empty string naming a file, resolved against the config file's folder.
    private func filePath(_ node: TOMLNode, _ key: String, _ c: inout Context) -> String? {
        guard case .string(let value) = node.value else {
            c.error(node.line, key == "platform_cert_files" ? "platform_cert_files may hold only strings (file names)" : "\(key) must be a string")
            return nil
        }
        guard !value.isEmpty else {
            c.error(node.line, "\(key) must not name an empty file name")
            return nil
        }
        return Self.resolve(value, against: c.baseDirectory)
    }

    /// The bytes of a key or certificate file, or nil after reporting why it cannot be read.
    func readKeyFile(_ path: String, _ what: String, line: Int, _ c: inout Context) -> [UInt8]? {
        do {
            return try readFile(path)
        } catch {
            c.error(line, "cannot read \(what) \(path): \(error)")
            return nil
        }
    }

    /// What a key is, for a message that refuses it: "an RSA-1024 key", "an EC key (256 bits)".
    static func describe(_ key: RSAPublicKey) -> String {
        if key.isRSA { return "an RSA-\(key.bits) key" }
        let name = key.typeName
        // "an" before a letter whose name starts with a vowel sound ("an EC", "an RSA-PSS", "a DSA").
        let article = name.first.map { "AEFHILMNORSXaefhilmnorsx".contains($0) } == true ? "an" : "a"
        return "\(article) \(name) key (\(key.bits) bits)"
    }

    /// Unix seconds as RFC 3339 UTC without fractions: `2025-05-09T01:57:10Z`.
    static func date(_ seconds: Int64) -> String {
        let text = Timestamp.rfc3339(milliseconds: seconds * 1000)
        return text.hasSuffix(".000Z") ? String(text.dropLast(5)) + "Z" : text
    }
}
