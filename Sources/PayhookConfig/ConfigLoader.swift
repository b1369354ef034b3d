import PayhookCore
import PayhookHTTP
import PayhookTOML

/// Turns a TOML document into a validated `Config`, collecting every problem rather than stopping at the
/// first, so `payhook check-config` can list them all.
///
/// File and environment access are passed in, which keeps this module free of I/O and lets tests feed
/// secrets without touching the disk.
public struct ConfigLoader: Sendable {
    /// Reads a file's bytes; throws a sentence naming the problem ("No such file or directory").
    public var readFile: @Sendable (String) throws -> [UInt8]
    public var environment: [String: String]
    /// Checks the `listen` value; returns a sentence describing the problem, or nil. By default the
    /// listener's own parser (the listener owns the address syntax); tests pass a simpler rule.
    public var checkListen: @Sendable (String) -> String?
    /// The time now, Unix seconds: what a certificate's validity period is judged against when the config is
    /// loaded. The system's clock by default (``ConfigLoader/systemNow()``); tests pass a fixed one.
    public var now: @Sendable () -> Int64
    /// The permission bits of a file (`st_mode & 0o7777`), or nil when they cannot be known: a secret file that
    /// every user may read is warned about. ``ConfigFile`` passes stat(2)'s; by default nothing is known.
    public var fileMode: @Sendable (String) -> UInt32?

    public init(
        readFile: @escaping @Sendable (String) throws -> [UInt8], environment: [String: String],
        checkListen: @escaping @Sendable (String) -> String? = ConfigLoader.listenAddressProblem,
        now: @escaping @Sendable () -> Int64 = ConfigLoader.systemNow,
        fileMode: @escaping @Sendable (String) -> UInt32? = { _ in nil }
    ) {
        self.readFile = readFile
        self.environment = environment
        self.checkListen = checkListen
        self.now = now
        self.fileMode = fileMode
    }

    /// Warns when the secret file `path` (named by `key`) can be read by other users than its owner and group:
    /// anyone with a shell on the host could then forge callbacks that payhook accepts (docs/deploy.md §1, secret files).
    func warnIfOthersCanRead(_ path: String, key: String, line: Int?, _ c: inout Context) {
        guard let mode = fileMode(path), mode & 0o004 != 0 else { return }
        let octal = String(mode & 0o777, radix: 8)
        c.warn(line, "\(key) \(path) can be read by every user on this host (mode 0\(octal)); chmod o-r it (0600, or 0640 with payhook's group)")
    }

    /// Why the listener would refuse `text` as a `listen` address, or nil.
    @Sendable public static func listenAddressProblem(_ text: String) -> String? {
        do {
            _ = try ListenAddress.parse(text)
            return nil
        } catch {
            return "listen: \(error)"
        }
    }

    /// Paths reserved for payhook's own endpoints.
    public static let reservedPaths: Set<String> = ["/healthz", "/metrics"]
    public static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
    public static let logFormats = ["text", "json"]

    /// The result: a config, plus warnings that do not stop startup (an inline secret, for one).
    public struct Loaded: Sendable {
        public var config: Config
        public var warnings: [ConfigIssue]
    }

    public func load(path: String) throws(ConfigError) -> Loaded {
        let bytes: [UInt8]
        do {
            bytes = try readFile(path)
        } catch {
            throw ConfigError(issues: [ConfigIssue(file: path, line: nil, message: "cannot read the config file: \(error)")])
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ConfigError(issues: [ConfigIssue(file: path, line: nil, message: "the config file is not UTF-8")])
        }
        return try load(text: text, path: path)
    }

    public func load(text: String, path: String) throws(ConfigError) -> Loaded {
        let root: TOMLTable
        do {
            root = try TOML.parse(text)
        } catch {
            throw ConfigError(issues: [ConfigIssue(file: path, line: error.line, message: "\(error.message) (column \(error.column))")])
        }
        var context = Context(file: path, baseDirectory: Self.directory(of: path))
        let config = build(root, &context)
        if !context.issues.isEmpty { throw ConfigError(issues: context.issues) }
        return Loaded(config: config, warnings: context.warnings)
    }

    struct Context {
        let file: String
        let baseDirectory: String
        var issues: [ConfigIssue] = []
        var warnings: [ConfigIssue] = []

        mutating func error(_ line: Int?, _ message: String) {
            issues.append(ConfigIssue(file: file, line: line, message: message))
        }
        mutating func warn(_ line: Int?, _ message: String) {
            warnings.append(ConfigIssue(file: file, line: line, message: message))
        }
    }

    private static let topLevelIntegers: [(key: String, range: ClosedRange<Int64>, set: @Sendable (inout Config, Int) -> Void)] = [
        ("max_body_bytes", 1...16_777_216, { $0.maxBodyBytes = $1 }),
        ("connection_timeout_s", 1...3600, { $0.connectionTimeoutSeconds = $1 }),
        ("max_connections", 1...65536, { $0.maxConnections = $1 }),
        ("max_connections_per_ip", 1...65536, { $0.maxConnectionsPerIP = $1 }),
        ("connection_memory_limit_bytes", 4096...1_048_576, { $0.connectionMemoryLimitBytes = $1 }),
        ("request_deadline_s", 1...3600, { $0.requestDeadlineSeconds = $1 }),
        ("header_deadline_s", 1...3600, { $0.headerDeadlineSeconds = $1 }),
        ("threads", 2...256, { $0.threads = $1 }),
        ("shutdown_grace_s", 0...3600, { $0.shutdownGraceSeconds = $1 }),
        ("min_free_bytes", 0...(1 << 50), { $0.minFreeBytes = $1 }),
        // At least 2: one day is the replay margin, and WeChat Pay retries for 24 hours (README, "WeChat Pay v2 notifications").
        ("ledger_retention_days", 2...36500, { $0.ledgerRetentionDays = $1 }),
        ("max_conflicts_per_event", 1...1000, { $0.maxConflictsPerEvent = $1 }),
        ("max_conflicts", 1...1_000_000, { $0.maxConflicts = $1 }),
    ]

    private func build(_ root: TOMLTable, _ c: inout Context) -> Config {
        var config = Config(file: c.file, spool: Self.resolve("spool", against: c.baseDirectory))
        let known = Set(["listen", "trusted_proxies", "tls_cert_file", "tls_key_file", "spool", "store", "log_level", "log_format"] + Self.tenantTables.map(\.name) + Self.topLevelIntegers.map(\.key))
        for entry in root.entries where !known.contains(entry.key) {
            c.error(entry.keyLine, "unknown key '\(entry.key)'")
        }
        if let node = root["listen"] {
            readListen(node, &c, &config)
        }
        if let node = root["trusted_proxies"] {
            config.trustedProxies = readTrustedProxies(node, &c)
        }
        readTLS(root, &c, &config)
        if let node = root["spool"], let value = string(node, "spool", &c) {
            if value.isEmpty {
                c.error(node.line, "spool must not be empty")
            } else {
                config.spool = Self.resolve(value, against: c.baseDirectory)
            }
        }
        if let node = root["log_level"], let value = string(node, "log_level", &c) {
            if Self.logLevels.contains(value) {
                config.logLevel = value
            } else {
                c.error(node.line, "log_level must be one of \(Self.logLevels.joined(separator: ", "))")
            }
        }
        if let node = root["log_format"], let value = string(node, "log_format", &c) {
            if Self.logFormats.contains(value) {
                config.logFormat = value
            } else {
                c.error(node.line, "log_format must be text or json")
            }
        }
        for item in Self.topLevelIntegers {
            guard let node = root[item.key] else { continue }
            guard case .integer(let value) = node.value else {
                c.error(node.line, "\(item.key) must be an integer")
                continue
            }
            guard item.range.contains(value) else {
                c.error(node.line, "\(item.key) must be between \(item.range.lowerBound) and \(item.range.upperBound)")
                continue
            }
            item.set(&config, Int(value))
        }
        config.store = readStore(root, &c)
        // The listener divides its connection limit among its threads, so each needs at least one. An unset
        // `threads` follows a smaller `max_connections` down (to the minimum of 2) instead of failing on it.
        if root["threads"] == nil {
            config.threads = min(Config.defaultThreads(for: config.store), max(2, config.maxConnections))
        }
        if config.listenAddresses.count > config.threads {
            // One MHD daemon per address, each with at least one of the `threads` (docs/proxy.md).
            c.error(root["listen"]?.line, "listen has \(config.listenAddresses.count) addresses but threads is \(config.threads): each address needs at least one thread")
        }
        if config.maxConnections < config.threads {
            c.error(root["max_connections"]?.line ?? root["threads"]?.line, "max_connections (\(config.maxConnections)) must be at least threads (\(config.threads))")
        }
        var routes: [(kind: TenantTables, routes: [TenantTables.Route])] = []
        for kind in Self.tenantTables {
            let found = tables(root, kind.name, &c)
            for table in found { kind.read(self, table, &c, &config) }
            routes.append((kind, found.compactMap { Self.route(of: $0, routingKey: kind.routingKey) }))
        }
        if !Self.tenantTables.contains(where: { root.keys.contains($0.name) }) {
            let names = Self.tenantTables.map { "[[\($0.name)]]" }.joined(separator: " or ")
            c.error(nil, "no \(names) table: payhook would have nothing to receive")
        }
        checkRoutes(routes, &c)
        for kind in Self.tenantTables { kind.check(config, &c) }
        return config
    }

    /// The tables of an array of tables (`[[name]]`); anything else under that key is an error.
    private func tables(_ root: TOMLTable, _ name: String, _ c: inout Context) -> [TOMLTable] {
        guard let node = root[name] else { return [] }
        guard case .array(let items) = node.value else {
            c.error(node.line, "\(name) must be written as [[\(name)]] tables")
            return []
        }
        var result: [TOMLTable] = []
        for item in items {
            if case .table(let table) = item.value {
                result.append(table)
            } else {
                c.error(item.line, "\(name) must be written as [[\(name)]] tables")
            }
        }
        return result
    }

    /// Reads the one secret source a table names. Exactly one of the three keys must be present.
    ///
    /// `check` judges each secret; what it returns (a problem, never any of the secret) is reported with the
    /// line of the file or variable that holds that secret, counting blank lines, and the secrets are then
    /// refused.
    func loadSecrets(
        _ table: TOMLTable, names: (inline: String, file: String, env: String), what: String,
        check: (String) -> String? = { _ in nil }, _ c: inout Context
    ) -> [Secret]? {
        let present = [names.inline, names.file, names.env].filter { table[$0] != nil }
        guard present.count == 1 else {
            if present.isEmpty {
                c.error(table.line, "\(what) needs one of \(names.inline), \(names.file) or \(names.env)")
            } else {
                c.error(table.line, "\(what) sets \(present.joined(separator: " and ")); use exactly one")
            }
            return nil
        }
        let key = present[0]
        guard let node = table[key], let value = string(node, key, &c) else { return nil }
        let text: String
        // Where the secrets come from, for the problems `check` finds: never the secret itself.
        let origin: String
        switch key {
        case names.inline:
            c.warn(node.line, "\(names.inline) is written in the config file; prefer \(names.file) or \(names.env)")
            text = value
            origin = names.inline
        case names.file:
            let path = Self.resolve(value, against: c.baseDirectory)
            origin = "\(names.file) \(path)"
            let bytes: [UInt8]
            do {
                bytes = try readFile(path)
            } catch {
                c.error(node.line, "cannot read \(names.file) \(path): \(error)")
                return nil
            }
            guard let decoded = String(validating: bytes, as: UTF8.self) else {
                c.error(node.line, "\(names.file) \(path) is not UTF-8 text")
                return nil
            }
            warnIfOthersCanRead(path, key: names.file, line: node.line, &c)
            text = decoded
        default:
            origin = "\(names.env) \(value)"
            guard let fromEnvironment = environment[value] else {
                c.error(node.line, "\(names.env): environment variable \(value) is not set")
                return nil
            }
            text = fromEnvironment
        }
        // One secret per line; blank lines and surrounding whitespace ignored (docs/contract.md §2, rotation).
        var secrets: [Secret] = []
        var refused = false
        for (index, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let secret = line.trimmingWhitespace()
            if secret.isEmpty { continue }
            if let problem = check(secret) {
                c.error(node.line, "\(origin), line \(index + 1): \(problem)")
                refused = true
            }
            secrets.append(Secret(secret))
        }
        guard !secrets.isEmpty else {
            c.error(node.line, "\(key) holds no secret (it is empty)")
            return nil
        }
        return refused ? nil : secrets
    }

    /// What every provider's table checks first: no key it does not know, and a `path` that is a valid route.
    /// Returns the path (nil when missing) and the issue count before the table's own checks, by which the
    /// caller tells whether the rest of the table was valid.
    func checkKeysAndPath(
        _ table: TOMLTable, known: Set<String>, kind: String, _ c: inout Context
    ) -> (path: String?, before: Int) {
        for entry in table.entries where !known.contains(entry.key) {
            c.error(entry.keyLine, "unknown key '\(entry.key)' in \(kind)")
        }
        let before = c.issues.count
        let path = requiredString(table, "path", kind, &c)
        if let path, let node = table["path"] { checkPath(path, line: node.line, &c) }
        return (path, before)
    }

    func checkPath(_ path: String, line: Int, _ c: inout Context) {
        guard path.hasPrefix("/") else {
            c.error(line, "path '\(path)' must start with /")
            return
        }
        // Paths are compared with the raw request path, so only characters that need no escaping.
        let allowed = path.utf8.allSatisfy { b in
            (b >= 0x21 && b <= 0x7e) && b != UInt8(ascii: "?") && b != UInt8(ascii: "#") && b != UInt8(ascii: "%")
        }
        if !allowed {
            c.error(line, "path '\(path)' may hold only printable ASCII without spaces, ?, # or %")
        }
        if Self.reservedPaths.contains(path) {
            c.error(line, "path '\(path)' is reserved for payhook's own endpoint")
        }
    }

    /// Where a table claims to be reached, read from the table itself rather than from the tenant it became:
    /// a table with an error elsewhere (a bad key, a typo) still claims its path, and `check-config` shows a
    /// clash with another table together with that error instead of only after it is fixed. nil when the path
    /// or the routing value is not a string; that is reported by the table's own reader.
    static func route(of table: TOMLTable, routingKey: String) -> TenantTables.Route? {
        guard case .string(let path)? = table["path"]?.value, case .string(let key)? = table[routingKey]?.value else { return nil }
        return TenantTables.Route(path: path, key: key, line: table.line)
    }

    private func checkRoutes(_ all: [(kind: TenantTables, routes: [TenantTables.Route])], _ c: inout Context) {
        // One tenant per path and routing value: the request's routing field picks exactly one table.
        for (kind, routes) in all {
            var seen: [String: Int] = [:]
            for route in routes {
                let key = route.path + "\u{0}" + route.key
                if let first = seen[key] {
                    c.error(route.line, "[[\(kind.name)]] path '\(route.path)' with \(kind.routingKey) '\(route.key)' is already claimed by the table at line \(first)")
                } else {
                    seen[key] = route.line
                }
            }
        }
        // One path, one kind of sender: the answer format and method depend on it.
        var claimed: [String: (kind: String, line: Int)] = [:]
        for (kind, routes) in all {
            for route in routes {
                if let first = claimed[route.path], first.kind != kind.name {
                    c.error(route.line, "[[\(kind.name)]] path '\(route.path)' is already used by the [[\(first.kind)]] table at line \(first.line)")
                }
            }
            for route in routes where claimed[route.path] == nil { claimed[route.path] = (kind.name, route.line) }
        }
    }

    func requiredString(_ table: TOMLTable, _ key: String, _ what: String, _ c: inout Context) -> String? {
        guard let node = table[key] else {
            c.error(table.line, "\(what) is missing '\(key)'")
            return nil
        }
        guard let value = string(node, key, &c) else { return nil }
        guard !value.isEmpty else {
            c.error(node.line, "\(key) must not be empty")
            return nil
        }
        return value
    }

    /// `listen = "host:port"` or `listen = ["host:port", "[ipv6]:port", ...]`: at least one, no repeats.
    private func readListen(_ node: TOMLNode, _ c: inout Context, _ config: inout Config) {
        var items: [(line: Int, text: String)] = []
        switch node.value {
        case .string(let value):
            items = [(node.line, value)]
        case .array(let values):
            for value in values {
                guard case .string(let text) = value.value else {
                    c.error(value.line, "listen must be a string or an array of strings")
                    return
                }
                items.append((value.line, text))
            }
            if items.isEmpty {
                c.error(node.line, "listen must name at least one address")
                return
            }
        default:
            // The single string is the usual form, and the sentence existing configs were checked with.
            c.error(node.line, "listen must be a string")
            return
        }
        var seen: Set<String> = []
        for item in items {
            if let problem = checkListen(item.text) {
                c.error(item.line, problem)
            }
            if !seen.insert(item.text).inserted {
                c.error(item.line, "listen: \"\(item.text)\" is given twice")
            }
        }
        config.listen = items[0].text
        config.alsoListen = items.dropFirst().map(\.text)
    }

    /// `trusted_proxies = ["127.0.0.1/32", "::1/128"]`: CIDR blocks, each checked with the line it is on.
    private func readTrustedProxies(_ node: TOMLNode, _ c: inout Context) -> TrustedProxies {
        guard case .array(let values) = node.value else {
            c.error(node.line, "trusted_proxies must be an array of CIDR blocks, e.g. [\"127.0.0.1/32\", \"::1/128\"]")
            return TrustedProxies()
        }
        var blocks: [CIDRBlock] = []
        for value in values {
            guard case .string(let text) = value.value else {
                c.error(value.line, "trusted_proxies must be an array of CIDR blocks (strings)")
                continue
            }
            do {
                blocks.append(try CIDRBlock.parse(text))
            } catch {
                c.error(value.line, "trusted_proxies: \(error)")
            }
        }
        return TrustedProxies(blocks)
    }

    /// `tls_cert_file` and `tls_key_file` (docs/proxy.md, "Alone, with native TLS"): both or neither, each
    /// a readable PEM file of the right kind. Only the file names reach an error, never their contents.
    private func readTLS(_ root: TOMLTable, _ c: inout Context, _ config: inout Config) {
        let cert = root["tls_cert_file"]
        let key = root["tls_key_file"]
        if cert == nil && key == nil { return }
        guard let cert, let key else {
            let (given, missing) = cert != nil ? ("tls_cert_file", "tls_key_file") : ("tls_key_file", "tls_cert_file")
            c.error((cert ?? key)?.line, "\(given) is set but \(missing) is not: native TLS needs both, or neither for plain HTTP")
            return
        }
        var texts: [String] = []
        for (node, name, marker) in [(cert, "tls_cert_file", "CERTIFICATE-----"), (key, "tls_key_file", "PRIVATE KEY-----")] {
            guard let value = string(node, name, &c) else { continue }
            if value.isEmpty {
                c.error(node.line, "\(name) must not be empty")
                continue
            }
            let path = Self.resolve(value, against: c.baseDirectory)
            if name == "tls_cert_file" { config.tlsCertFile = path } else { config.tlsKeyFile = path }
            let bytes: [UInt8]
            do {
                bytes = try readFile(path)
            } catch {
                c.error(node.line, "\(name): cannot read \(path): \(error)")
                continue
            }
            guard let text = String(validating: bytes, as: UTF8.self), text.contains("-----BEGIN "), text.contains(marker) else {
                let kind = name == "tls_cert_file" ? "a PEM certificate" : "a PEM private key"
                c.error(node.line, "\(name): \(path) is not \(kind)")
                continue
            }
            if name == "tls_key_file" { warnIfOthersCanRead(path, key: name, line: node.line, &c) }
            texts.append(text)
        }
        guard texts.count == 2, let certPath = config.tlsCertFile, let keyPath = config.tlsKeyFile else { return }
        let credentials = TLSCredentials(certificatePEM: texts[0], keyPEM: texts[1])
        // GnuTLS reads the pair here as the listener will, so that check-config and a reload refuse what the
        // listener could not present (docs/reload.md, "Certificates").
        if let refused = TLSCertificates.problem(with: credentials) {
            switch refused.part {
            case .certificate: c.error(cert.line, "tls_cert_file: \(certPath): no usable certificate: \(refused.reason)")
            case .key: c.error(key.line, "tls_key_file: \(keyPath): no usable private key (an encrypted key is not supported): \(refused.reason)")
            case .pair: c.error(key.line, "tls_key_file: the key in \(keyPath) does not belong to the certificate in \(certPath): \(refused.reason)")
            }
            return
        }
        config.tls = credentials
    }

    func string(_ node: TOMLNode, _ key: String, _ c: inout Context) -> String? {
        guard case .string(let value) = node.value else {
            c.error(node.line, "\(key) must be a string")
            return nil
        }
        return value
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// Relative paths in the config are relative to the config file's folder (docs/contract.md §2).
    public static func resolve(_ path: String, against base: String) -> String {
        if path.hasPrefix("/") { return path }
        if base == "." { return path }
        return base.hasSuffix("/") ? base + path : base + "/" + path
    }
}

extension Substring {
    func trimmingWhitespace() -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
            let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        return String(scalars[first...last])
    }
}

extension ConfigLoader {
    /// A non-empty array of names from a fixed set (`sign_types`, `charsets`); `fallback` when the key is absent,
    /// nil after reporting every name that is not in the set.
    func names<T: Hashable>(
        _ table: TOMLTable, _ key: String, default fallback: Set<T>, parse: (String) -> T?, allowed: [String], _ c: inout Context
    ) -> Set<T>? {
        guard let node = table[key] else { return fallback }
        let listed = allowed.map { "\"\($0)\"" }.joined(separator: ", ")
        guard case .array(let items) = node.value, !items.isEmpty else {
            c.error(node.line, "\(key) must be a non-empty array of \(listed)")
            return nil
        }
        var chosen = Set<T>()
        var wrong = false
        for item in items {
            if case .string(let name) = item.value, let value = parse(name) {
                chosen.insert(value)
            } else {
                c.error(item.line, "\(key) may hold only \(listed)")
                wrong = true
            }
        }
        return wrong ? nil : chosen
    }
}
