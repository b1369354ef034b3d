import PayhookCore
import PayhookTOML
import PayhookWeChat

extension TenantTables {
    /// `[[wechat]]`: WeChat Pay merchants, routed by the notification's `mch_id`.
    static let wechat = TenantTables(
        name: "wechat", routingKey: "mch_id",
        read: { loader, table, c, config in
            if let tenant = loader.wechatTenant(table, &c) { config.wechat.append(tenant) }
        },
        check: { config, c in ConfigLoader.checkSharedKeys(config.wechat, &c) })
}

extension ConfigLoader {
    func wechatTenant(_ table: TOMLTable, _ c: inout Context) -> WeChatTenant? {
        let known: Set<String> = ["path", "mch_id", "appid", "api_key", "api_key_file", "api_key_env", "sign_types"]
        let (path, before) = checkKeysAndPath(table, known: known, kind: "[[wechat]]", &c)
        let mchID = requiredString(table, "mch_id", "[[wechat]]", &c)
        var appID: String?
        if let node = table["appid"], let value = string(node, "appid", &c) {
            if value.isEmpty { c.error(node.line, "appid must not be empty (leave it out to accept any appid)") }
            appID = value
        }
        let signTypes = names(
            table, "sign_types", default: Set(WeChatSignType.allCases), parse: { WeChatSignType(rawValue: $0) },
            allowed: WeChatSignType.allCases.map(\.rawValue), &c)
        // An APIv2 key is always 32 characters (docs/protocols.md §4, the signing steps). Any other
        // length is a paste gone wrong (a quote, a prefix, half a key), and every notification would fail its
        // signature; the message names the line of the key, never its length or content.
        let keys = loadSecrets(
            table, names: ("api_key", "api_key_file", "api_key_env"), what: "[[wechat]]",
            check: { $0.unicodeScalars.count == 32 ? nil : "an APIv2 key is 32 characters long and this one is not, so every notification would fail its signature" },
            &c)
        guard c.issues.count == before, let path, let mchID, let keys, let signTypes else { return nil }
        return WeChatTenant(path: path, mchID: mchID, appID: appID, keys: keys, signTypes: signTypes, line: table.line)
    }

    static func checkSharedKeys(_ tenants: [WeChatTenant], _ c: inout Context) {
        // A refund notification names its merchant only in the unsigned outer `mch_id`, and its req_info decrypts
        // under any merchant sharing the key: two tenants on one path with a common APIv2 key would let one
        // merchant's refund be stored as the other's.
        // On different paths the same replay needs the attacker to post to the other path: warned, not refused.
        var keyOwners: [String: [WeChatTenant]] = [:]
        for tenant in tenants {
            var reported = false
            for key in tenant.keys {
                for owner in keyOwners[key.value, default: []] where owner.mchID != tenant.mchID && !reported {
                    reported = true
                    let shared = "[[wechat]] mch_id '\(tenant.mchID)' shares an APIv2 key with mch_id '\(owner.mchID)' (line \(owner.line))"
                    if owner.path == tenant.path {
                        c.error(tenant.line, "\(shared) on path '\(tenant.path)': a refund notification is routed by its unsigned outer mch_id and would decrypt under either, so one merchant's refund could be stored as the other's; give each merchant its own key or its own path")
                    } else {
                        c.warn(tenant.line, "\(shared): a refund notification of one, posted to the other's path, would decrypt there too; give each merchant its own key")
                    }
                }
                keyOwners[key.value, default: []].append(tenant)
            }
        }
    }
}
