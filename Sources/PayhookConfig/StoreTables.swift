public import PayhookCore
import PayhookTOML

/// Where verified events are kept (docs/contract.md §7): the spool directory, or a PostgreSQL database that
/// several instances share.
public enum StoreChoice: Sendable, Equatable {
    /// The spool directory (`spool`), the default.
    case spool
    /// A PostgreSQL database.
    case postgres(DatabaseSettings)

    /// `spool` or `postgres`, as the config names it.
    public var kind: String {
        switch self {
        case .spool: return "spool"
        case .postgres: return "postgres"
        }
    }
}

/// `[store] kind = "postgres"`: how to reach the database.
public struct DatabaseSettings: Sendable, Equatable {
    /// The libpq connection string, a `postgresql://` URL or `key=value` pairs. A secret: it may hold a
    /// password (only when read from the environment).
    public var url: Secret
    /// The environment variable it came from, when it did (`url_env`).
    public var urlEnv: String?
    /// Writer sessions per instance, each committing batches of callbacks (docs/durability.md §11.3); nil: one.
    public var connections: Int?
    /// How long one store may wait for the database before the sender is told to try again.
    public var timeoutSeconds: Int
    /// The `received_by` this instance writes into the rows it stores; nil: the host name and process id.
    public var instance: String?

    public static let defaultTimeoutSeconds = 10

    public init(url: Secret, urlEnv: String? = nil, connections: Int? = nil, timeoutSeconds: Int = Self.defaultTimeoutSeconds, instance: String? = nil) {
        self.url = url
        self.urlEnv = urlEnv
        self.connections = connections
        self.timeoutSeconds = timeoutSeconds
        self.instance = instance
    }

    /// Where the URL came from, for messages that must not show it.
    public var origin: String {
        urlEnv.map { "the URL in $\($0)" } ?? "the url in the config"
    }
}

extension ConfigLoader {
    static let storeKeys: Set<String> = ["kind", "url", "url_env", "connections", "timeout_s", "instance"]

    /// Reads `[store]`; without one, the spool.
    func readStore(_ root: TOMLTable, _ c: inout Context) -> StoreChoice {
        guard let node = root["store"] else { return .spool }
        guard case .table(let table) = node.value else {
            c.error(node.line, "store must be a table: [store]")
            return .spool
        }
        for entry in table.entries where !Self.storeKeys.contains(entry.key) {
            c.error(entry.keyLine, "unknown key '\(entry.key)' in [store]")
        }
        var kind = "spool"
        if let node = table["kind"], let value = string(node, "kind", &c) {
            guard value == "spool" || value == "postgres" else {
                c.error(node.line, "[store] kind must be \"spool\" or \"postgres\"")
                return .spool
            }
            kind = value
        }
        if kind == "spool" {
            for key in ["url", "url_env", "connections", "timeout_s", "instance"] {
                if let entry = table.entry(key) { c.error(entry.keyLine, "[store] \(key) applies only to kind = \"postgres\"") }
            }
            return .spool
        }
        var settings = DatabaseSettings(url: Secret(""))
        switch (table["url"], table["url_env"]) {
        case (nil, nil):
            c.error(table.line, "[store] kind = \"postgres\" needs url_env (the name of an environment variable holding the URL) or url")
        case (.some, .some):
            c.error(table["url"]?.line, "[store] takes url or url_env, not both")
        case (let node?, nil):
            if let value = string(node, "url", &c) {
                if value.isEmpty {
                    c.error(node.line, "[store] url must not be empty")
                } else if ConnectionString.holdsPassword(value) {
                    // The config file is read by people and tools that should not learn the database password.
                    c.error(node.line, "[store] url holds a password: put the whole URL in an environment variable and name it with url_env, or keep the password in ~/.pgpass or $PGPASSFILE")
                } else {
                    settings.url = Secret(value)
                }
            }
        case (nil, let node?):
            if let name = string(node, "url_env", &c) {
                if let value = environment[name], !value.isEmpty {
                    settings.url = Secret(value)
                    settings.urlEnv = name
                } else {
                    c.error(node.line, "[store] url_env names $\(name), which is not set or empty")
                }
            }
        }
        if let node = table["connections"] {
            if case .integer(let value) = node.value, (1...1024).contains(value) {
                settings.connections = Int(value)
            } else {
                c.error(node.line, "[store] connections must be an integer between 1 and 1024")
            }
        }
        if let node = table["timeout_s"] {
            if case .integer(let value) = node.value, (1...600).contains(value) {
                settings.timeoutSeconds = Int(value)
            } else {
                c.error(node.line, "[store] timeout_s must be an integer between 1 and 600")
            }
        }
        if let node = table["instance"], let value = string(node, "instance", &c) {
            if value.isEmpty || value.utf8.count > 128 || value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
                c.error(node.line, "[store] instance must be 1 to 128 printable characters")
            } else {
                settings.instance = value
            }
        }
        return .postgres(settings)
    }

}
