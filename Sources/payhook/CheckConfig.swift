import ArgumentParser
import Foundation
import PayhookConfig
import PayhookHTTP

/// `payhook check-config --config FILE`: validates a config and lists every problem at once.
struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate a config file and list every problem (file:line), then exit 0 or 1."
    )

    @Option(name: .long, help: "The TOML config file.")
    var config: String

    func run() throws {
        let loaded: ConfigLoader.Loaded
        do {
            loaded = try ConfigFile.load(path: config)
        } catch {
            for issue in error.issues { Output.err("error: \(issue)") }
            Output.err("\(config): \(error.issues.count) problem\(error.issues.count == 1 ? "" : "s") found")
            throw ExitCode(1)
        }
        for warning in loaded.warnings { Output.err("warning: \(warning)") }
        let c = loaded.config
        let counts = [
            (c.unified.count, "unified"), (c.wechat.count, "wechat"), (c.wechatV3.count, "wechat_v3"), (c.alipay.count, "alipay"),
            (c.xxpay.count, "xxpay"), (c.jeepay.count, "jeepay"),
        ].map { "\($0.0) [[\($0.1)]]" }
        let tenants = counts.dropLast().joined(separator: ", ") + " and " + counts.last!
        // The database's URL is a secret: only where it comes from is shown.
        let store: String
        switch c.store {
        case .spool: store = "spool \(Self.absolute(c.spool))"
        case .postgres(let database): store = "store postgres (\(database.origin))"
        }
        let proxies = c.trustedProxies.isEmpty ? "" : ", trusted_proxies \(c.trustedProxies.blocks.map(\.description).joined(separator: " "))"
        // The certificate's path only: its fingerprint is logged by serve, and the key is never shown.
        let tls = c.tlsCertFile.map { ", tls \($0)" } ?? ""
        Output.out("\(config): ok (listen \(c.listenAddresses.joined(separator: " ")), \(store)\(proxies)\(tls), \(tenants) tenants)")
    }

    /// The spool as serve will open it from this folder: a relative `spool` is relative to the config file's
    /// folder (docs/contract.md §2), and that folder relative to where payhook starts; printed whole, so an
    /// operator sees the very folder a consumer must be given.
    static func absolute(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        let here = FileManager.default.currentDirectoryPath
        let relative = path.hasPrefix("./") ? String(path.dropFirst(2)) : path
        return here.hasSuffix("/") ? here + relative : here + "/" + relative
    }
}
