import PayhookAlipay
import PayhookCore
import PayhookCrypto
import PayhookTOML

extension TenantTables {
    /// `[[alipay]]`: Alipay apps, routed by the notification's `app_id` (docs/contract.md §3.4).
    static let alipay = TenantTables(
        name: "alipay", routingKey: "app_id",
        read: { loader, table, c, config in
            if let tenant = loader.alipayTenant(table, &c) { config.alipay.append(tenant) }
        },
        check: { _, _ in })
}

extension ConfigLoader {
    static let alipayKind = "[[alipay]]"

    func alipayTenant(_ table: TOMLTable, _ c: inout Context) -> AlipayTenant? {
        let kind = Self.alipayKind
        let known: Set<String> = [
            "path", "app_id", "alipay_public_key_file", "alipay_root_cert_file", "seller_id", "sign_types", "charsets",
            "gateway_notifications",
        ]
        let (path, before) = checkKeysAndPath(table, known: known, kind: kind, &c)
        let appID = requiredString(table, "app_id", kind, &c)
        var sellerID: String?
        if let node = table["seller_id"], let value = string(node, "seller_id", &c) {
            if value.isEmpty { c.error(node.line, "seller_id must not be empty (leave it out to accept any seller)") }
            sellerID = value
        }
        let signTypes = names(
            table, "sign_types", default: [.rsa2], parse: { AlipaySignType(rawValue: $0) }, allowed: AlipaySignType.allCases.map(\.rawValue), &c)
        let charsets = names(
            table, "charsets", default: [.utf8], parse: { TextCharset(name: $0) }, allowed: TextCharset.allCases.map(\.rawValue), &c)
        var gateway = false
        if let node = table["gateway_notifications"] {
            if case .boolean(let value) = node.value {
                gateway = value
            } else {
                c.error(node.line, "gateway_notifications must be true or false")
            }
        }
        let keys = alipayKeys(table, &c)
        guard c.issues.count == before, let path, let appID, let signTypes, let charsets, let keys else { return nil }
        return AlipayTenant(
            path: path, appID: appID, sellerID: sellerID, keys: keys, signTypes: signTypes, charsets: charsets,
            gatewayNotifications: gateway, line: table.line)
    }

    /// `alipay_public_key_file`: one file name or several. Each file may hold PEM public keys, an Alipay public-key
    /// certificate (`alipayCertPublicKey_RSA2.crt`: the first certificate is Alipay's, the ones after it are its
    /// issuers, chain material and not keys, as Alipay's SDKs read the file) or one bare base64 key as Alipay's
    /// console shows it. Every key must be RSA-2048 or larger; with `alipay_root_cert_file`, every certificate
    /// must chain to it.
    func alipayKeys(_ table: TOMLTable, _ c: inout Context) -> [AlipayTenant.Key]? {
        guard let node = table["alipay_public_key_file"] else {
            c.error(table.line, "\(Self.alipayKind) needs alipay_public_key_file: Alipay's public key or public-key certificate")
            return nil
        }
        var names: [(String, Int)] = []
        switch node.value {
        case .string(let name): names = [(name, node.line)]
        case .array(let items) where !items.isEmpty:
            for item in items {
                guard case .string(let name) = item.value else {
                    c.error(item.line, "alipay_public_key_file may hold only strings (file names)")
                    return nil
                }
                names.append((name, item.line))
            }
        default:
            c.error(node.line, "alipay_public_key_file must be a file name or a non-empty array of file names")
            return nil
        }
        var roots: [UInt8]?
        if let rootNode = table["alipay_root_cert_file"], let name = string(rootNode, "alipay_root_cert_file", &c) {
            let path = Self.resolve(name, against: c.baseDirectory)
            if let bytes = readKeyFile(path, "alipay_root_cert_file", line: rootNode.line, &c) {
                if X509Chain.certificateCount(pem: bytes) == 0 {
                    c.error(rootNode.line, "alipay_root_cert_file \(path) holds no PEM certificate")
                } else {
                    roots = bytes
                }
            }
        }
        let now = self.now()
        var keys: [AlipayTenant.Key] = []
        for (name, line) in names {
            guard !name.isEmpty else {
                c.error(line, "alipay_public_key_file must not name an empty file name")
                continue
            }
            let path = Self.resolve(name, against: c.baseDirectory)
            guard let bytes = readKeyFile(path, "alipay_public_key_file", line: line, &c) else { continue }
            var blocks = PEMFile.blocks(bytes)
            if blocks.isEmpty, let wrapped = PEMFile.wrapBareKey(bytes) { blocks = PEMFile.blocks(wrapped) }
            var found = 0
            let certificates = blocks.filter { $0.label == "CERTIFICATE" }
            for block in blocks {
                switch block.label {
                case "PUBLIC KEY":
                    guard let key = try? RSAPublicKey(pem: block.pem) else {
                        c.error(line, "alipay_public_key_file \(path): a PUBLIC KEY block is not a readable public key")
                        continue
                    }
                    guard checkAlipayKey(key, "alipay_public_key_file \(path)", line: line, &c) else { continue }
                    found += 1
                    keys.append(AlipayTenant.Key(label: found == 1 ? path : "\(path) (key \(found))", key: key))
                case "CERTIFICATE":
                    guard let certificate = try? X509Certificate(pem: block.pem) else {
                        c.error(line, "alipay_public_key_file \(path): a CERTIFICATE block is not a readable certificate")
                        continue
                    }
                    if block != certificates.first { continue }
                    let label = "\(path) (certificate \(certificate.serialHex))"
                    guard checkAlipayKey(certificate.publicKey, label, line: line, &c) else { continue }
                    if let roots, let problem = X509Chain.problem(leafPEM: certificates.flatMap(\.pem), rootsPEM: roots) {
                        c.error(line, "\(label) does not chain to alipay_root_cert_file: \(problem)")
                        continue
                    }
                    if !certificate.isValid(at: now) {
                        let when = now < certificate.notBefore ? "not valid yet" : "expired"
                        c.warn(
                            line,
                            "\(label) is \(when): valid from \(Self.date(certificate.notBefore)) to \(Self.date(certificate.notAfter)); its key is still tried, since notifications name no certificate, but Alipay has probably moved to a new one"
                        )
                    }
                    found += 1
                    keys.append(AlipayTenant.Key(label: label, key: certificate.publicKey))
                case "PRIVATE KEY", "RSA PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
                    c.error(line, "alipay_public_key_file \(path) holds a private key: it belongs to the app, never in payhook; give Alipay's public key instead")
                default:
                    continue
                }
            }
            if found == 0 && !blocks.contains(where: { $0.label.contains("PRIVATE KEY") }) {
                c.error(line, "alipay_public_key_file \(path) holds no public key and no Alipay public-key certificate (expected -----BEGIN PUBLIC KEY----- or -----BEGIN CERTIFICATE-----, or the one-line base64 key Alipay shows)")
            }
        }
        return keys.isEmpty ? nil : keys
    }

    /// Alipay signs with RSA-2048 keys; a smaller or non-RSA key is not Alipay's.
    private func checkAlipayKey(_ key: RSAPublicKey, _ what: String, line: Int, _ c: inout Context) -> Bool {
        guard key.isRSA, key.bits >= 2048 else {
            c.error(line, "\(what) holds \(Self.describe(key)), not an RSA key of 2048 bits or more: it is not Alipay's public key")
            return false
        }
        return true
    }
}
