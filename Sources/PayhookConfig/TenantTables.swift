import PayhookTOML

/// One kind of `[[name]]` table in the config file: one provider's tenants. What the loader knows of a
/// provider is here and in that provider's file beside this one (how a table is read, what else its tenants
/// must satisfy), so a new provider adds its own file and one entry to ``ConfigLoader/tenantTables``; the
/// loader's shared checks (unknown keys, one tenant per path and routing value, one kind of sender per path)
/// cover it unchanged.
struct TenantTables: Sendable {
    /// Where one tenant is reached: its path and the value of the request field that picks it there.
    struct Route {
        let path: String
        let key: String
        let line: Int
    }

    /// The table name: `[[name]]`.
    let name: String
    /// The config key holding the routing value: read from each table for the route checks, and named in their messages.
    let routingKey: String
    /// Reads one table into `config`, or reports why it cannot.
    let read: @Sendable (ConfigLoader, TOMLTable, inout ConfigLoader.Context, inout Config) -> Void
    /// Checks that need every tenant of this kind at once.
    let check: @Sendable (Config, inout ConfigLoader.Context) -> Void
}

extension ConfigLoader {
    /// Every provider's tables, in the order they are read, checked and named in messages.
    static let tenantTables: [TenantTables] = [.unified, .wechat, .wechatV3, .alipay, .xxpay, .jeepay]
}
