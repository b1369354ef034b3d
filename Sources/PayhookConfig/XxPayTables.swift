import PayhookCore
import PayhookTOML
import PayhookXxPay

extension TenantTables {
    /// `[[xxpay]]`: merchants of an XxPay pay center, routed by the notification's `mchId` (docs/contract.md §3.5).
    static let xxpay = TenantTables(
        name: "xxpay", routingKey: "mch_id",
        read: { loader, table, c, config in
            if let tenant = loader.xxpayTenant(table, &c) { config.xxpay.append(tenant) }
        },
        check: { _, _ in })

    /// `[[jeepay]]`: apps of Jeepay merchants, routed by the notification's `appId` (docs/contract.md §3.5).
    static let jeepay = TenantTables(
        name: "jeepay", routingKey: "app_id",
        read: { loader, table, c, config in
            if let tenant = loader.jeepayTenant(table, &c) { config.jeepay.append(tenant) }
        },
        check: { _, _ in })
}

extension ConfigLoader {
    func xxpayTenant(_ table: TOMLTable, _ c: inout Context) -> XxPayTenant? {
        let kind = "[[xxpay]]"
        let known: Set<String> = ["path", "mch_id", "key", "key_file", "key_env"]
        let (path, before) = checkKeysAndPath(table, known: known, kind: kind, &c)
        let mchID = requiredString(table, "mch_id", kind, &c)
        let keys = loadSecrets(table, names: ("key", "key_file", "key_env"), what: kind + " (the merchant's resKey)", &c)
        guard c.issues.count == before, let path, let mchID, let keys else { return nil }
        return XxPayTenant(path: path, mchID: mchID, keys: keys, line: table.line)
    }

    func jeepayTenant(_ table: TOMLTable, _ c: inout Context) -> JeepayTenant? {
        let kind = "[[jeepay]]"
        let known: Set<String> = ["path", "mch_no", "app_id", "key", "key_file", "key_env"]
        let (path, before) = checkKeysAndPath(table, known: known, kind: kind, &c)
        let mchNo = requiredString(table, "mch_no", kind, &c)
        let appID = requiredString(table, "app_id", kind, &c)
        let keys = loadSecrets(table, names: ("key", "key_file", "key_env"), what: kind + " (the app secret)", &c)
        guard c.issues.count == before, let path, let mchNo, let appID, let keys else { return nil }
        return JeepayTenant(path: path, mchNo: mchNo, appID: appID, keys: keys, line: table.line)
    }
}
