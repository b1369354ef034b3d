import Foundation
import PayhookAlipay
import PayhookConfig
import PayhookCore
import PayhookCrypto
import PayhookTestSupport
import PayhookXxPay
import Testing

/// The `[[alipay]]`, `[[xxpay]]` and `[[jeepay]]` tables (docs/contract.md §3.4, §6.3): what loads, and every
/// mistake `check-config` must name with its line. Files are fed from memory; the key material is that of
/// Fixtures/alipay (its README says what each file is).
@Suite struct ProviderConfigTests {
    struct Missing: Error, CustomStringConvertible { var description: String { "No such file or directory" } }

    static let configPath = "/etc/payhook/p.toml"
    static func fixture(_ name: String) -> String {
        (try? String(contentsOfFile: repositoryRoot + "/Fixtures/" + name, encoding: .utf8)) ?? "missing fixture \(name)"
    }

    static let files: [String: String] = [
        "/etc/payhook/keys/alipay.pem": fixture("alipay/test-only-alipay-public-key.pem"),
        "/etc/payhook/keys/a1.pem": fixture("alipay/a1-alipay-public-key.pem"),
        "/etc/payhook/keys/both.pem": fixture("alipay/test-only-alipay-public-key.pem") + fixture("alipay/a1-alipay-public-key.pem"),
        "/etc/payhook/keys/bare.txt": fixture("alipay/a1-alipay-public-key.pem").split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined() + "\n",
        "/etc/payhook/keys/cert.crt": fixture("alipay/test-only-alipay-public-cert.crt"),
        "/etc/payhook/keys/sandbox.crt": fixture("alipay/a3-alipay-public-cert.crt"),
        "/etc/payhook/keys/root.crt": fixture("alipay/test-only-root-cert.crt"),
        "/etc/payhook/keys/other-root.crt": fixture("alipay/test-only-unrelated-root-cert.crt"),
        "/etc/payhook/keys/private.pem": fixture("alipay/test-only-alipay-private-key.pem"),
        "/etc/payhook/keys/rsa1024.pem": fixture("wechat-v3/test-only-rsa1024-public.pem"),
        "/etc/payhook/keys/ec.pem": fixture("wechat-v3/test-only-ec-p256-public.pem"),
        "/etc/payhook/keys/empty.pem": "nothing here\n",
        "/etc/payhook/secrets/xxpay": "resKey-one\nresKey-two\n",
        "/etc/payhook/secrets/jeepay": "app-secret\n",
    ]

    /// 2024-01-01: the sandbox certificate is valid then, expired at `later`.
    static let early = Timestamp.milliseconds(year: 2024, month: 1, day: 1) / 1000
    static let later = Timestamp.milliseconds(year: 2026, month: 1, day: 1) / 1000

    static func load(_ text: String, now: Int64 = early) throws(ConfigError) -> ConfigLoader.Loaded {
        try ConfigLoader(
            readFile: { path in
                guard let text = files[path] else { throw Missing() }
                return Array(text.utf8)
            }, environment: ["JEEPAY_SECRET": "from-env"], checkListen: { _ in nil }, now: { now }
        ).load(text: text, path: configPath)
    }

    static func issues(_ text: String) -> [String] {
        do {
            _ = try load(text)
            return []
        } catch {
            return error.issues.map(\.description)
        }
    }

    static func alipay(_ extra: String, keyFile: String = "\"keys/alipay.pem\"") -> String {
        """
        [[alipay]]
        path = "/notify/alipay"
        app_id = "2021000000000001"
        alipay_public_key_file = \(keyFile)
        \(extra)
        """
    }

    @Test func alipayDefaultsAndEveryKey() throws {
        let config = try Self.load(Self.alipay("")).config
        let tenant = try #require(config.alipay.first)
        #expect(tenant.appID == "2021000000000001")
        #expect(tenant.signTypes == [.rsa2])
        #expect(tenant.charsets == [.utf8])
        #expect(!tenant.gatewayNotifications)
        #expect(tenant.sellerID == nil)
        #expect(tenant.keys.count == 1)

        let all = try Self.load(
            Self.alipay(
                """
                seller_id = "2088000000000001"
                sign_types = ["RSA2", "RSA"]
                charsets = ["utf-8", "GBK"]
                gateway_notifications = true
                alipay_root_cert_file = "keys/root.crt"
                """, keyFile: #"["keys/both.pem", "keys/bare.txt", "keys/cert.crt"]"#)
        ).config.alipay[0]
        #expect(all.sellerID == "2088000000000001")
        #expect(all.signTypes == [.rsa2, .rsa])
        #expect(all.charsets == [.utf8, .gbk])
        #expect(all.gatewayNotifications)
        // Two keys from the first file, the bare one, and the certificate's (its intermediate is no key).
        #expect(all.keys.count == 4)
        let a1 = try RSAPublicKey(pem: Self.fixture("alipay/a1-alipay-public-key.pem"))
        #expect(all.keys[1].key == a1)
        #expect(all.keys[2].key == a1)
        let certificate = try X509Certificate(pem: Self.fixture("alipay/test-only-alipay-public-cert.crt"))
        #expect(all.keys[3].key == certificate.publicKey)
    }

    @Test func alipayMistakesAreNamedWithTheirLine() {
        let cases: [(String, String, String)] = [
            ("", "\"keys/missing.pem\"", "p.toml:4: cannot read alipay_public_key_file /etc/payhook/keys/missing.pem"),
            ("", "\"keys/private.pem\"", "p.toml:4: alipay_public_key_file /etc/payhook/keys/private.pem holds a private key"),
            ("", "\"keys/rsa1024.pem\"", "holds an RSA-1024 key, not an RSA key of 2048 bits or more"),
            ("", "\"keys/ec.pem\"", "holds an EC key (256 bits), not an RSA key"),
            ("", "\"keys/empty.pem\"", "holds no public key and no Alipay public-key certificate"),
            ("", "[]", "p.toml:4: alipay_public_key_file must be a file name or a non-empty array of file names"),
            ("sign_types = [\"RSA3\"]", "\"keys/alipay.pem\"", "p.toml:5: sign_types may hold only \"RSA2\", \"RSA\""),
            ("charsets = [\"gb2312\"]", "\"keys/alipay.pem\"", "p.toml:5: charsets may hold only \"utf-8\", \"gbk\""),
            ("gateway_notifications = \"yes\"", "\"keys/alipay.pem\"", "p.toml:5: gateway_notifications must be true or false"),
            ("seller_id = \"\"", "\"keys/alipay.pem\"", "p.toml:5: seller_id must not be empty"),
            ("alipay_root_cert_file = \"keys/other-root.crt\"", "\"keys/cert.crt\"", "does not chain to alipay_root_cert_file"),
            ("alipay_root_cert_file = \"keys/alipay.pem\"", "\"keys/cert.crt\"", "p.toml:5: alipay_root_cert_file /etc/payhook/keys/alipay.pem holds no PEM certificate"),
            ("colour = \"red\"", "\"keys/alipay.pem\"", "unknown key 'colour'"),
        ]
        for (extra, keyFile, expected) in cases {
            let found = Self.issues(Self.alipay(extra, keyFile: keyFile))
            #expect(found.contains { $0.contains(expected) }, "\(extra) \(keyFile): \(found)")
        }
        #expect(Self.issues("[[alipay]]\npath = \"/a\"\napp_id = \"1\"\n").contains { $0.contains("needs alipay_public_key_file") })
    }

    @Test func alipayChainIsCheckedOnlyWhenARootIsConfigured() throws {
        #expect(Self.issues(Self.alipay("alipay_root_cert_file = \"keys/root.crt\"", keyFile: "\"keys/cert.crt\"")).isEmpty)
        // The sandbox certificate's issuers are Alipay's test CAs, not the production roots: without a root
        // file it is used, with a root it does not chain to, it is refused.
        #expect(Self.issues(Self.alipay("", keyFile: "\"keys/sandbox.crt\"")).isEmpty)
        #expect(Self.issues(Self.alipay("alipay_root_cert_file = \"keys/root.crt\"", keyFile: "\"keys/sandbox.crt\"")).contains { $0.contains("does not chain") })
    }

    @Test func anExpiredAlipayCertificateIsAWarningAndStillTried() throws {
        let valid = try Self.load(Self.alipay("", keyFile: "\"keys/sandbox.crt\""), now: Self.early)
        #expect(valid.warnings.isEmpty)
        let expired = try Self.load(Self.alipay("", keyFile: "\"keys/sandbox.crt\""), now: Self.later)
        #expect(expired.config.alipay[0].keys.count == 1)
        #expect(expired.warnings.contains { $0.description.contains("is expired: valid from 2023-06-07T08:47:02Z to 2024-06-06T08:47:02Z") })
    }

    @Test func xxpayAndJeepayTables() throws {
        let config = try Self.load(
            """
            [[xxpay]]
            path = "/notify/xxpay"
            mch_id = "20001223"
            key_file = "secrets/xxpay"

            [[jeepay]]
            path = "/notify/jeepay"
            mch_no = "M1700000000"
            app_id = "65a0b1c2d3e4f5a6b7c8d9e0"
            key_env = "JEEPAY_SECRET"

            [[jeepay]]
            path = "/notify/jeepay"
            mch_no = "M1700000000"
            app_id = "another-app"
            key_file = "secrets/jeepay"
            """
        ).config
        #expect(config.xxpay == [XxPayTenant(path: "/notify/xxpay", mchID: "20001223", keys: [Secret("resKey-one"), Secret("resKey-two")], line: 1)])
        #expect(config.jeepay.map(\.appID) == ["65a0b1c2d3e4f5a6b7c8d9e0", "another-app"])
        #expect(config.jeepay[0].keys == [Secret("from-env")])
    }

    @Test func xxpayAndJeepayMistakes() {
        let missingKey = Self.issues("[[xxpay]]\npath = \"/x\"\nmch_id = \"1\"\n")
        #expect(missingKey.contains { $0.contains("[[xxpay]] (the merchant's resKey) needs one of key, key_file or key_env") })
        let missingApp = Self.issues("[[jeepay]]\npath = \"/j\"\nmch_no = \"M1\"\nkey_file = \"secrets/jeepay\"\n")
        #expect(missingApp.contains { $0.contains("app_id") })
        // One route per (path, routing value): two tables for one app on one path cannot both be meant.
        let twice = Self.issues(
            "[[jeepay]]\npath = \"/j\"\nmch_no = \"M1\"\napp_id = \"A\"\nkey_file = \"secrets/jeepay\"\n"
                + "[[jeepay]]\npath = \"/j\"\nmch_no = \"M2\"\napp_id = \"A\"\nkey_file = \"secrets/jeepay\"\n")
        #expect(!twice.isEmpty)
        // One kind of sender per path.
        let shared = Self.issues(
            "[[xxpay]]\npath = \"/p\"\nmch_id = \"1\"\nkey_file = \"secrets/xxpay\"\n"
                + "[[jeepay]]\npath = \"/p\"\nmch_no = \"M1\"\napp_id = \"A\"\nkey_file = \"secrets/jeepay\"\n")
        #expect(!shared.isEmpty)
    }
}
