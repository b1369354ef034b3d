import PayhookCore
import PayhookTOML
import PayhookUnified

extension TenantTables {
    /// `[[unified]]`: unified pay platform tenants, routed by the callback's `domainCode`.
    static let unified = TenantTables(
        name: "unified", routingKey: "domain_code",
        read: { loader, table, c, config in
            if let tenant = loader.unifiedTenant(table, &c) { config.unified.append(tenant) }
        },
        check: { _, _ in })
}

extension ConfigLoader {
    func unifiedTenant(_ table: TOMLTable, _ c: inout Context) -> UnifiedTenant? {
        let known: Set<String> = ["path", "domain_code", "secret", "secret_file", "secret_env", "sign_scheme", "request_key_pattern"]
        let (path, before) = checkKeysAndPath(table, known: known, kind: "[[unified]]", &c)
        let domainCode = requiredString(table, "domain_code", "[[unified]]", &c)
        var scheme = UnifiedSignScheme.valuesSHA1
        if let node = table["sign_scheme"], let value = string(node, "sign_scheme", &c) {
            if let parsed = UnifiedSignScheme(rawValue: value) {
                scheme = parsed
            } else {
                let allowed = UnifiedSignScheme.allCases.map(\.rawValue).joined(separator: " or ")
                c.error(node.line, "sign_scheme '\(value)' is not known (use \(allowed))")
            }
        }
        var pattern: RequestKeyPattern?
        if let node = table["request_key_pattern"], let value = string(node, "request_key_pattern", &c) {
            do {
                pattern = try RequestKeyPattern(value)
                if pattern?.matches("") == true {
                    c.error(node.line, "request_key_pattern matches the empty string; it should describe your own keys")
                }
            } catch {
                c.error(node.line, "request_key_pattern is not a valid regular expression: \(error)")
            }
        }
        let secrets = loadSecrets(table, names: ("secret", "secret_file", "secret_env"), what: "[[unified]]", &c)
        guard c.issues.count == before, let path, let domainCode, let secrets else { return nil }
        return UnifiedTenant(
            path: path, domainCode: domainCode, secrets: secrets, signScheme: scheme, requestKeyPattern: pattern,
            line: table.line)
    }
}
