import Foundation
import PayhookAlipay
import PayhookCore
import PayhookTestSupport
import PayhookXxPay
import Testing

/// `payhook sign`, `simulate` and `verify` for Alipay, XxPay and Jeepay, run as processes with the demo config
/// (Fixtures/demo.toml): what `sign` prints is accepted by `verify` and by an implementation that shares no code
/// with payhook (Tests/crosscheck/sign_check.py: `cryptography` and `hashlib`), every `--break` is refused with
/// its reason, `simulate` gets each sender's success answer from a live server, the real notifications of
/// Fixtures/alipay and Fixtures/jeepay verify and a changed copy is explained, and no output holds a secret.
@Suite(.timeLimit(.minutes(3)))
struct ProviderToolTests {
    static var demo: String { ToolTests.demo }
    static var privateKey: String { Paths.fixtures.appendingPathComponent("alipay/test-only-alipay-private-key.pem").path }
    static let alipayApp = "2021000000000001"
    static let jeepayApp = "65a0b1c2d3e4f5a6b7c8d9e0"
    static let jeepayRealApp = "68219e426e70ed6a5e4229b6"

    static func fixture(_ name: String) throws -> String {
        try String(contentsOf: Paths.fixtures.appendingPathComponent(name), encoding: .utf8)
    }

    /// What no output may hold: the secrets of the demo's XxPay and Jeepay tenants, and every line of the body of
    /// the Alipay private key.
    static var secrets: [String] {
        get throws {
            var secrets: [String] = []
            for name in ["xxpay.reskey", "jeepay.appsecret", "jeepay-j1.appsecret"] {
                secrets += try fixture("secrets/" + name).split(whereSeparator: \.isNewline).map(String.init).filter { !$0.isEmpty }
            }
            secrets += try fixture("alipay/test-only-alipay-private-key.pem").split(separator: "\n").map(String.init).filter { !$0.hasPrefix("-----") }
            return secrets
        }
    }

    static func expectNoSecrets(_ run: ProcessTests.Run, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let text = run.stdout + run.stderr
        for secret in try secrets {
            #expect(!text.contains(secret), "a secret was printed", sourceLocation: sourceLocation)
        }
        // A PEM block's first line (a message may name the label, as the one for a public key given as private does).
        #expect(!text.contains("PRIVATE KEY-----\n"), sourceLocation: sourceLocation)
    }

    /// `payhook sign KIND` with the demo config (and, for alipay, the test-only private key and the app it pairs with).
    static func sign(_ arguments: [String]) throws -> ProcessTests.Run {
        var all = ["sign"] + arguments + ["--config", demo]
        if arguments.first == "alipay" {
            all += ["--private-key", privateKey]
            if !arguments.contains("--tenant") { all += ["--tenant", alipayApp] }
        }
        if arguments.first == "jeepay" && !arguments.contains("--tenant") { all += ["--tenant", jeepayApp] }
        let run = try ProcessTests.run(all)
        try expectNoSecrets(run)
        return run
    }

    static func verify(_ file: String, config: String = demo, _ extra: [String] = []) throws -> ProcessTests.Run {
        let run = try ProcessTests.run(["verify", "--config", config] + extra + [file])
        try expectNoSecrets(run)
        return run
    }

    /// The parameters of a printed form body or query.
    static func parameters(_ printed: String) throws -> [String: String] {
        let list = try FormQuery.decode(printed.trimmingCharacters(in: .newlines))
        return Dictionary(list.map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first })
    }

    static func lastLine(_ text: String) -> String {
        text.split(separator: "\n").last.map(String.init) ?? ""
    }

    // MARK: - sign, then verify

    struct Case: Sendable, CustomTestStringConvertible {
        var arguments: [String]
        /// Parameters the printed notification must hold.
        var holds: [String: String] = [:]
        /// The dedupe key `verify` must report.
        var dedupeKey: String?
        var testDescription: String { arguments.joined(separator: " ") }
    }

    @Test(arguments: [
        Case(arguments: ["alipay"], holds: ["total_amount": "1.00", "trade_status": "TRADE_SUCCESS", "sign_type": "RSA2", "charset": "utf-8", "notify_type": "trade_status_sync"]),
        Case(
            arguments: ["alipay", "--amount", "12345", "--order-ref", "ORDER-7", "--status", "TRADE_FINISHED"],
            holds: ["total_amount": "123.45", "out_trade_no": "ORDER-7", "trade_status": "TRADE_FINISHED"],
            dedupeKey: "alipay.trade/2021000000000001/ORDER-7/TRADE_FINISHED/"),
        Case(
            arguments: ["alipay", "--amount", "5", "--order-ref", "ORDER-8", "--refund-ref", "REFUND-8"],
            holds: ["total_amount": "0.05", "refund_fee": "0.05", "out_biz_no": "REFUND-8", "trade_status": "TRADE_SUCCESS"],
            dedupeKey: "alipay.trade/2021000000000001/ORDER-8/TRADE_SUCCESS/REFUND-8"),
        Case(
            arguments: ["alipay", "--amount", "30", "--refund-ref", "REFUND-9", "--order-ref", "ORDER-9", "--field", "total_amount=100.00"],
            holds: ["total_amount": "100.00", "refund_fee": "0.30", "out_biz_no": "REFUND-9"],
            dedupeKey: "alipay.trade/2021000000000001/ORDER-9/TRADE_SUCCESS/REFUND-9"),
        Case(
            arguments: ["alipay", "--field", "subject=支付宝 测试 & <商品>", "--field", "body="],
            holds: ["subject": "支付宝 测试 & <商品>"]),
        Case(arguments: ["xxpay"], holds: ["amount": "100", "status": "2", "mchId": "20001223", "currency": "cny"]),
        Case(
            arguments: ["xxpay", "--amount", "7", "--order-ref", "X-7", "--status", "3", "--key-index", "1", "--field", "subject=捐助 商品"],
            holds: ["amount": "7", "mchOrderNo": "X-7", "status": "3", "subject": "捐助 商品"],
            dedupeKey: "xxpay.pay/20001223/X-7/3"),
        Case(arguments: ["jeepay"], holds: ["amount": "100", "state": "2", "mchNo": "M1700000000", "appId": "65a0b1c2d3e4f5a6b7c8d9e0"]),
        Case(
            arguments: ["jeepay", "--tenant", "68219e426e70ed6a5e4229b6", "--order-ref", "J-5", "--status", "5", "--amount", "1"],
            holds: ["mchNo": "M1747033666", "state": "5", "amount": "1"],
            dedupeKey: "jeepay.pay/M1747033666/J-5/5"),
    ])
    func signedOutputVerifies(c: Case) throws {
        let signed = try Self.sign(c.arguments)
        #expect(signed.status == 0, "\(signed.stderr)")
        #expect(signed.stderr.isEmpty, "\(signed.stderr)")
        let parameters = try Self.parameters(signed.stdout)
        for (name, value) in c.holds { #expect(parameters[name] == value, "\(name)") }
        #expect(parameters["sign"]?.isEmpty == false)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        switch c.arguments[0] {
        case "alipay":
            // notify_time is Beijing time now.
            let time = try #require(parameters["notify_time"].flatMap { BeijingTime.milliseconds($0, dashed: true) })
            #expect(abs(time - now) < 10_000)
        case "xxpay":
            #expect(abs((Int64(parameters["paySuccTime"] ?? "") ?? 0) - now) < 10_000)
        default:
            #expect(abs((Int64(parameters["reqTime"] ?? "") ?? 0) - now) < 10_000)
        }

        let dir = try TemporaryDirectory()
        try dir.write("capture", signed.stdout)
        let verified = try Self.verify(dir.file("capture"))
        #expect(verified.status == 0, "\(verified.stdout)")
        #expect(Self.lastLine(verified.stdout) == "verdict: VERIFIED (payhook answers success and stores it once)")
        if let key = c.dedupeKey { #expect(verified.stdout.contains("dedupe key: \(key)\n"), "\(verified.stdout)") }
        switch c.arguments[0] {
        case "alipay":
            #expect(verified.stdout.contains("input: form body"))
            #expect(verified.stdout.contains("RSA2: verifies with key #1 of 1"))
            #expect(verified.stdout.contains(" 0 day(s) before now (now from the wall clock)"))
        case "xxpay":
            #expect(verified.stdout.contains("input: query string (checked as the query of a POST with an empty body"))
            #expect(verified.stdout.contains("signature: OK, secret #1 of 1 (***)"))
            #expect(verified.stdout.contains("&key=***\n"))
        default:
            #expect(verified.stdout.contains("signature: OK, secret #1 of 1 (***)"))
        }
    }

    /// The printed notification checked by Tests/crosscheck/sign_check.py, which shares no code with payhook;
    /// a tampered one it refuses.
    @Test(arguments: [
        ["alipay"],
        ["alipay", "--field", "subject=中文商品 测试", "--sign-type", "RSA"],
        ["alipay", "--refund-ref", "R-1", "--field", "body=退款 & 说明"],
        ["xxpay", "--field", "subject=中文 Subject", "--field", "param1=Zz aA"],
        ["jeepay", "--field", "subject=中文 Subject", "--field", "extParam={\"uid\":\"7\"}"],
        ["jeepay", "--tenant", "68219e426e70ed6a5e4229b6", "--field", "body=测试使用"],
    ])
    func signedOutputVerifiesIndependently(arguments: [String]) throws {
        let kind = arguments[0]
        let signed = try Self.sign(arguments)
        #expect(signed.status == 0, "\(signed.stderr)")
        let dir = try TemporaryDirectory()
        try dir.write("capture", signed.stdout)
        let checked = try ToolTests.python(["check", kind, dir.file("capture")], script: "Tests/crosscheck/sign_check.py")
        #expect(checked.status == 0, "\(checked.stdout) \(checked.stderr)")
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(checked.stdout.utf8)) as? [String: String])
        for field in arguments.indices.filter({ arguments[$0] == "--field" }).map({ arguments[$0 + 1] }) {
            let parts = field.split(separator: "=", maxSplits: 1).map(String.init)
            #expect(parsed[parts[0]] == parts[1])
        }
        if arguments.contains("RSA") { #expect(parsed["sign_type"] == "RSA") }

        let tampered = try Self.sign(arguments + ["--break", "tamper"])
        try dir.write("tampered", tampered.stdout)
        let refused = try ToolTests.python(["check", kind, dir.file("tampered")], script: "Tests/crosscheck/sign_check.py")
        #expect(refused.status == 1)
        #expect(refused.stdout.contains(kind == "alipay" ? "the RSA signature does not verify" : "the MD5 signature does not match"))
    }

    /// `--sign-type RSA` signs with SHA1withRSA: the demo tenant accepts RSA2 only, so `sign` warns and `verify`
    /// says why it refuses; a tenant that lists RSA accepts it.
    @Test func rsaSignTypeIsSignedAndJudgedByTheTenantsSignTypes() throws {
        let signed = try Self.sign(["alipay", "--sign-type", "RSA", "--order-ref", "RSA-1"])
        #expect(signed.status == 0)
        #expect(signed.stderr == "warning: the [[alipay]] tenant 2021000000000001 accepts sign_types RSA2, not RSA, so payhook will refuse this notification\n")
        #expect(try Self.parameters(signed.stdout)["sign_type"] == "RSA")
        let dir = try TemporaryDirectory()
        try dir.write("capture", signed.stdout)
        let demo = try Self.verify(dir.file("capture"))
        #expect(demo.status == 1)
        #expect(demo.stdout.contains("sign_type: RSA (SHA1withRSA); the tenant's sign_types: RSA2\nFAILED: sign_type RSA is not in the tenant's sign_types\nhint: add \"RSA\" to sign_types"))
        #expect(Self.lastLine(demo.stdout) == "verdict: REFUSED with 401 (bad_signature): sign_type RSA is not in the tenant's sign_types")

        let key = Paths.fixtures.appendingPathComponent("alipay/test-only-alipay-public-key.pem").path
        try dir.write("rsa.toml", """
            spool = "spool"
            ledger_retention_days = 36500

            [[alipay]]
            path = "/notify/alipay"
            app_id = "2021000000000001"
            alipay_public_key_file = "\(key)"
            sign_types = ["RSA2", "RSA"]
            """)
        let accepting = try Self.verify(dir.file("capture"), config: dir.file("rsa.toml"))
        #expect(accepting.status == 0, "\(accepting.stdout)")
        #expect(accepting.stdout.contains("RSA: verifies with key #1 of 1"))
        #expect(accepting.stdout.contains("dedupe key: alipay.trade/2021000000000001/RSA-1/TRADE_SUCCESS/"))
    }

    // MARK: - --break

    @Test(arguments: [
        ("alipay", "tamper", "RSA2: does NOT verify with key #1 of 1 (", "sign does not verify (RSA2, 1 key(s) tried)"),
        ("alipay", "wrong-key", "RSA2: does NOT verify with key #1 of 1 (", "sign does not verify (RSA2, 1 key(s) tried)"),
        ("alipay", "strip-sign", "FAILED: parameter 'sign' is missing\n", "parameter 'sign' is missing"),
        ("xxpay", "tamper", "signature: does NOT match with any of the tenant's 1 secret(s) (***)", "sign does not match (md5, 1 secret(s) tried)"),
        ("xxpay", "wrong-key", "signature: does NOT match with any of the tenant's 1 secret(s) (***)", "sign does not match (md5, 1 secret(s) tried)"),
        ("xxpay", "strip-sign", "FAILED: parameter 'sign' is missing", "parameter 'sign' is missing"),
        ("jeepay", "tamper", "signature: does NOT match with any of the tenant's 1 secret(s) (***)", "sign does not match (md5, 1 secret(s) tried)"),
        ("jeepay", "wrong-key", "signature: does NOT match with any of the tenant's 1 secret(s) (***)", "sign does not match (md5, 1 secret(s) tried)"),
        ("jeepay", "strip-sign", "FAILED: parameter 'sign' is missing", "parameter 'sign' is missing"),
    ])
    func everyBreakageIsRefusedForItsReason(kind: String, breakage: String, step: String, reason: String) throws {
        let signed = try Self.sign([kind, "--break", breakage, "--amount", "250"])
        #expect(signed.status == 0, "\(signed.stderr)")
        #expect(signed.stderr.isEmpty)
        let parameters = try Self.parameters(signed.stdout)
        #expect((parameters["sign"] == nil) == (breakage == "strip-sign"))
        // tamper changes the amount after signing; the others keep it.
        let amount = kind == "alipay" ? parameters["total_amount"] : parameters["amount"]
        #expect(amount == (kind == "alipay" ? (breakage == "tamper" ? "2.51" : "2.50") : (breakage == "tamper" ? "251" : "250")))
        let dir = try TemporaryDirectory()
        try dir.write("capture", signed.stdout)
        let verified = try Self.verify(dir.file("capture"))
        #expect(verified.status == 1)
        #expect(verified.stdout.contains(step), "\(verified.stdout)")
        #expect(Self.lastLine(verified.stdout) == "verdict: REFUSED with 401 (bad_signature): \(reason)")
        if breakage != "strip-sign" {
            #expect(verified.stdout.contains(kind == "alipay" ? "hint: no common variant verifies either" : "hint: no common variant matches either"))
        }
        // The signature payhook expected for the tampered parameters is never shown.
        if kind != "alipay", breakage == "tamper" {
            let secret = try Self.fixture(kind == "xxpay" ? "secrets/xxpay.reskey" : "secrets/jeepay.appsecret").trimmingCharacters(in: .newlines)
            let form = try FormQuery.decode(signed.stdout.trimmingCharacters(in: .newlines))
            let expected = MD5KeySigning.sign(form, secret: Array(secret.utf8))
            #expect(expected != parameters["sign"])
            #expect(!verified.stdout.uppercased().contains(expected))
        }
    }

    // MARK: - simulate against a live server

    @Test func simulateGetsEachSendersSuccessAndEventsVerifyAgain() throws {
        let live = try LiveServer()
        defer { live.stop() }
        let base = "http://127.0.0.1:\(live.port)"
        // The URL forms the other kinds take: the tenant's path from a bare authority or "/", or a path given.
        let runs: [([String], String)] = [
            (["alipay", "--tenant", Self.alipayApp, "--private-key", Self.privateKey, "--url", base + "/", "--count", "3"], "success"),
            (["alipay", "--tenant", Self.alipayApp, "--private-key", Self.privateKey, "--url", base, "--refund-ref", "RF-1", "--order-ref", "O-1"], "success"),
            (["xxpay", "--url", base + "/notify/xxpay", "--count", "2"], "success"),
            (["jeepay", "--tenant", Self.jeepayApp, "--url", base + "/", "--count", "2", "--concurrency", "2"], "SUCCESS"),
            (["jeepay", "--tenant", Self.jeepayRealApp, "--url", base + "/notify/jeepay"], "SUCCESS"),
        ]
        for (arguments, answer) in runs {
            let result = try ProcessTests.run(["simulate"] + arguments + ["--config", Self.demo])
            try Self.expectNoSecrets(result)
            #expect(result.status == 0, "\(arguments): \(result.stdout) \(result.stderr)")
            let count = Int(arguments.firstIndex(of: "--count").map { arguments[$0 + 1] } ?? "1") ?? 1
            #expect(result.stdout == (1...count).map { "#\($0) 200 \(answer)\n" }.joined(), "\(arguments)")
            #expect(result.stderr.contains("sent \(count), \(count) answered success, 0 not"))
        }
        let events = live.events()
        #expect(events.count == runs.count)
        var sources: [String] = []
        for name in events {
            let file = live.spool + "/new/" + name
            let object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file))) as? [String: Any])
            sources.append(object["source"] as? String ?? "")
            let verified = try Self.verify(file)
            #expect(verified.status == 0, "\(verified.stdout)")
            #expect(verified.stdout.contains("input: event file \(name.dropLast(".json".count))"))
            #expect(verified.stdout.contains("now from the event's received_at"))
            #expect(verified.stdout.contains("event id: \(name.dropLast(".json".count))"))
            #expect(Self.lastLine(verified.stdout).hasPrefix("verdict: VERIFIED"))
        }
        #expect(sources.sorted() == [AlipaySource.tradeSource, AlipaySource.tradeSource, JeepaySource.sourceName, JeepaySource.sourceName, XxPaySource.sourceName])

        // A stored event whose raw body was changed afterwards is refused, and why is said.
        let alipayEvent = try #require(events.first { name in
            (try? String(contentsOfFile: live.spool + "/new/" + name, encoding: .utf8))?.contains("out_biz_no=RF-1") == true
        })
        let stored = try String(contentsOfFile: live.spool + "/new/" + alipayEvent, encoding: .utf8)
        #expect(stored.contains("&total_amount=1.00&"))
        let edited = live.dir.file("edited.json")
        try stored.replacingOccurrences(of: "&total_amount=1.00&", with: "&total_amount=9.00&").write(toFile: edited, atomically: false, encoding: .utf8)
        let refused = try Self.verify(edited)
        #expect(refused.status == 1)
        #expect(refused.stdout.contains("RSA2: does NOT verify with key #1 of 1"))
        #expect(Self.lastLine(refused.stdout) == "verdict: REFUSED with 401 (bad_signature): sign does not verify (RSA2, 1 key(s) tried)")
    }

    @Test(arguments: ["tamper", "wrong-key", "strip-sign"])
    func simulateBrokenNotificationsAreRefused(breakage: String) throws {
        let live = try LiveServer()
        defer { live.stop() }
        let base = "http://127.0.0.1:\(live.port)/"
        for (arguments, answer) in [
            (["alipay", "--tenant", Self.alipayApp, "--private-key", Self.privateKey], "fail"), (["xxpay"], "fail"),
            (["jeepay", "--tenant", Self.jeepayApp], "FAIL"),
        ] {
            let result = try ProcessTests.run(["simulate"] + arguments + ["--config", Self.demo, "--url", base, "--break", breakage])
            try Self.expectNoSecrets(result)
            #expect(result.status == 1)
            #expect(result.stdout == "#1 401 \(answer)\n", "\(arguments) \(breakage): \(result.stdout)")
            #expect(result.stderr.contains("sent 1, 0 answered success, 1 not"))
        }
        #expect(live.events().isEmpty)
    }

    // MARK: - verify: the real notifications, and changed copies of them

    @Test(arguments: [
        ("alipay/a1-yuque-trade.form", "dedupe key: alipay.trade/2019073166072302/20190815155618536-564-57/TRADE_SUCCESS/"),
        ("alipay/a2-servicemarket.form", "dedupe key: alipay.event/2017122801303261/servicemarket_order_notify/2019030800222102023008121054923345"),
        ("alipay/a3-sandbox-cert-plus.form", "dedupe key: alipay.trade/9021000122682882/1703147160/TRADE_SUCCESS/"),
        ("jeepay/j1-real-notify.form", "dedupe key: jeepay.pay/M1747033666/2025831153825967041216/2"),
        ("xxpay/x-1-generated.query", "dedupe key: xxpay.pay/20001223/G20180101120000000001/2"),
    ])
    func realVectorsVerifyWithTheDemoConfig(file: String, key: String) throws {
        let verified = try Self.verify(Paths.fixtures.appendingPathComponent(file).path)
        #expect(verified.status == 0, "\(verified.stdout)")
        #expect(verified.stdout.contains(key + "\n"))
        #expect(Self.lastLine(verified.stdout) == "verdict: VERIFIED (payhook answers success and stores it once)")
        if file.contains("a2") {
            #expect(verified.stdout.contains("kind: open-platform notification (no trade_status; gateway_notifications = true)"))
            #expect(verified.stdout.contains("string signed (rule v2): \"app_id=2017122801303261&charset=UTF-8&"))
        }
        if file.contains("a3") {
            // The `+` of the subject, sent as %2B, is signed as a plus.
            #expect(verified.stdout.contains("&subject=yansongda+测试 - 1&"))
        }
    }

    /// One signed value changed in each real notification (or the notification otherwise spoiled), and what
    /// `verify` says about it.
    @Test(arguments: [
        ("alipay/a1-yuque-trade.form", "&total_amount=0.10&", "&total_amount=0.11&",
         ["RSA2: does NOT verify with key #1 of 1", "hint: no common variant verifies either"],
         "verdict: REFUSED with 401 (bad_signature): sign does not verify (RSA2, 1 key(s) tried)"),
        ("alipay/a1-yuque-trade.form", "&app_id=2019073166072302&", "&app_id=2019073166072399&",
         ["FAILED: no [[alipay]] table with app_id '2019073166072399'; the configured app_ids: 2021000000000001, 2019073166072302, 2017122801303261, 9021000122682882"],
         "verdict: REFUSED with 401 (unknown_tenant): no [[alipay]] tenant with app_id '2019073166072399' on /notify/alipay"),
        ("alipay/a1-yuque-trade.form", "&sign_type=RSA2&", "&sign_type=RSA&",
         ["FAILED: sign_type RSA is not in the tenant's sign_types", "hint: add \"RSA\" to sign_types"],
         "verdict: REFUSED with 401 (bad_signature): sign_type RSA is not in the tenant's sign_types"),
        ("alipay/a1-yuque-trade.form", "&sign_type=RSA2&", "&sign_type=MD5&",
         ["FAILED: sign_type 'MD5' is not RSA2 or RSA"], "verdict: REFUSED with 401 (bad_signature): sign_type 'MD5' is not RSA2 or RSA"),
        ("alipay/a1-yuque-trade.form", "charset=utf-8&", "charset=gbk&",
         ["FAILED: charset gbk is not in the tenant's charsets", "hint: add \"gbk\" to the tenant's charsets"],
         "verdict: REFUSED with 400 (malformed): charset gbk is not in the tenant's charsets"),
        ("alipay/a1-yuque-trade.form", "sign=QfTb8tqE1BMhS5qAnXtvsF3%2FjBkEvu9q9en0pdbBUDDjvKycZhQb7h8GDs4FKfi049PynaNuatxSgLb%2FnLWZpXyyh0LEWdK2S6Ri7nPwrVgOs08zugLO20vOQz44y3ti2Ncm8%2FwZts1Fr2gZ7pShnVX3d1B50hbsXnObT1r%2FU8ONNQjWXd0HIul4TG%2BQ3f",
         "sign=QfTb8tqE1BMhS5qAnXtvsF3%2FjBkEvu9q9en0pdbBUDDjvKycZhQb7h8GDs4FKfi049PynaNuatxSgLb%2FnLWZpXyyh0LEWdK2S6Ri7nPwrVgOs08zugLO20vOQz44y3ti2Ncm8%2FwZts1Fr2gZ7pShnVX3d1B50hbsXnObT1r%2FU8ONNQjWXd0HIul4TG+Q3f",
         ["FAILED: sign is not base64 (344 characters)", "hint: it holds spaces: a '+' of the base64 reached the body unescaped"],
         "verdict: REFUSED with 401 (bad_signature): sign is not base64"),
        ("alipay/a2-servicemarket.form", "&total_price=0.00&", "&total_price=9.00&",
         ["string signed (rule v2): ", "string signed (rule v1): ", "RSA2: does NOT verify with key #1 of 1"],
         "verdict: REFUSED with 401 (bad_signature): sign does not verify (RSA2, 1 key(s) tried)"),
        ("alipay/a3-sandbox-cert-plus.form", "yansongda%2B", "yansongda+",
         ["RSA2: does NOT verify with key #1 of 1"], "verdict: REFUSED with 401 (bad_signature): sign does not verify (RSA2, 1 key(s) tried)"),
        ("jeepay/j1-real-notify.form", "&amount=1&", "&amount=100&",
         ["signature: does NOT match with any of the tenant's 1 secret(s) (***)", "hint: no common variant matches either"],
         "verdict: REFUSED with 401 (bad_signature): sign does not match (md5, 1 secret(s) tried)"),
        ("jeepay/j1-real-notify.form", "appId=68219e426e70ed6a5e4229b6", "appId=68219e426e70ed6a5e4229b7",
         ["FAILED: no [[jeepay]] table with app_id '68219e426e70ed6a5e4229b7'; the configured app_ids: 65a0b1c2d3e4f5a6b7c8d9e0 (mch_no M1700000000), 68219e426e70ed6a5e4229b6 (mch_no M1747033666)"],
         "verdict: REFUSED with 401 (unknown_tenant): no [[jeepay]] tenant with app_id '68219e426e70ed6a5e4229b7' on /notify/jeepay"),
        ("jeepay/j1-real-notify.form", "mchNo=M1747033666", "mchNo=M1700000000",
         ["mchNo: M1700000000; the tenant's mch_no M1747033666: NOT the same"],
         "verdict: REFUSED with 401 (bad_signature): sign does not match (md5, 1 secret(s) tried)"),
        ("jeepay/j1-real-notify.form", "&sign=76553A94D38639AF0B60D8F7EBB62CE7", "&sign=76553A94D38639AF0B60D8F7EBB62CE",
         ["FAILED: sign is not 32 hexadecimal characters"], "verdict: REFUSED with 401 (bad_signature): sign is not 32 hexadecimal characters"),
        ("xxpay/x-1-generated.query", "&status=2&", "&status=3&",
         ["signature: does NOT match with any of the tenant's 1 secret(s) (***)", "hint: no common variant matches either: check that key_file holds the merchant's resKey"],
         "verdict: REFUSED with 401 (bad_signature): sign does not match (md5, 1 secret(s) tried)"),
        ("xxpay/x-1-generated.query", "mchId=20001223", "mchId=20001224",
         ["FAILED: no [[xxpay]] table with mch_id '20001224'; the configured mch_ids: 20001223"],
         "verdict: REFUSED with 401 (unknown_tenant): no [[xxpay]] tenant with mch_id '20001224' on /notify/xxpay"),
    ])
    func changedVectorsAreExplained(file: String, from: String, to: String, lines: [String], verdict: String) throws {
        let original = try Self.fixture(file)
        #expect(original.contains(from))
        let dir = try TemporaryDirectory()
        try dir.write("changed", original.replacingOccurrences(of: from, with: to))
        let verified = try Self.verify(dir.file("changed"))
        #expect(verified.status == 1)
        for line in lines { #expect(verified.stdout.contains(line), "\(line)\n\(verified.stdout)") }
        #expect(Self.lastLine(verified.stdout) == verdict, "\(verified.stdout)")
    }

    /// A signature that verifies, then a check the signature cannot make: the semantic refusal is the verdict.
    @Test func aFailingCheckAfterTheSignatureIsTheVerdict() throws {
        let signed = try Self.sign(["alipay", "--status", "TRADE_PAID"])
        #expect(signed.status == 0)
        let dir = try TemporaryDirectory()
        try dir.write("capture", signed.stdout)
        let verified = try Self.verify(dir.file("capture"))
        #expect(verified.status == 1)
        #expect(verified.stdout.contains("RSA2: verifies with key #1 of 1"))
        #expect(Self.lastLine(verified.stdout) == "verdict: REFUSED with 400 (rejected): trade_status 'TRADE_PAID' is not one of TRADE_CLOSED, TRADE_FINISHED, TRADE_SUCCESS, WAIT_BUYER_PAY")

        // A notification years old, judged by a config whose replay window is the default week.
        let key = Paths.fixtures.appendingPathComponent("alipay/a1-alipay-public-key.pem").path
        try dir.write("week.toml", """
            spool = "spool"

            [[alipay]]
            path = "/notify/alipay"
            app_id = "2019073166072302"
            alipay_public_key_file = "\(key)"
            """)
        let old = try Self.verify(Paths.fixtures.appendingPathComponent("alipay/a1-yuque-trade.form").path, config: dir.file("week.toml"))
        #expect(old.status == 1)
        #expect(old.stdout.contains("RSA2: verifies with key #1 of 1"))
        #expect(old.stdout.contains("the replay window is 6 day(s) (ledger_retention_days minus one): OUTSIDE, so payhook refuses it as a possible replay"))
        #expect(Self.lastLine(old.stdout).hasPrefix("verdict: REFUSED with 400 (rejected): notify_time is older than the replay window"))
    }

    /// A whole HTTP request as captured (request line, headers, body) is read too; its path picks the tenants.
    @Test func httpRequestCapturesVerify() throws {
        let alipay = try Self.sign(["alipay"])
        let xxpay = try Self.sign(["xxpay"])
        let body = alipay.stdout.trimmingCharacters(in: .newlines)
        let query = xxpay.stdout.trimmingCharacters(in: .newlines)
        let dir = try TemporaryDirectory()
        try dir.write("alipay.http", "POST /notify/alipay HTTP/1.1\r\nHost: example.com\r\nContent-Type: application/x-www-form-urlencoded; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        try dir.write("xxpay.http", "POST /notify/xxpay?\(query) HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\n\r\n")
        let a = try Self.verify(dir.file("alipay.http"))
        #expect(a.status == 0, "\(a.stdout)")
        #expect(a.stdout.hasPrefix("input: header block after a request line (3 header(s); body \(body.utf8.count) bytes, its end from Content-Length)\nsource: Alipay"))
        let x = try Self.verify(dir.file("xxpay.http"))
        #expect(x.status == 0, "\(x.stdout)")
        #expect(x.stdout.contains("parameters: 16, from the query"))
        // Another path than the capture's names no tenant of the kind.
        let elsewhere = try Self.verify(dir.file("xxpay.http"), ["--path", "/notify/elsewhere"])
        #expect(elsewhere.status == 1)
        #expect(elsewhere.stdout.contains("FAILED: no [[xxpay]] table with mch_id '20001223' on /notify/elsewhere; the configured mch_ids on /notify/elsewhere: none"))
    }

    // MARK: - the command line

    @Test func usageMistakesAreOneSentence() throws {
        let usage: [([String], String)] = [
            (["sign", "alipay", "--config", Self.demo, "--tenant", Self.alipayApp], "alipay needs --private-key FILE"),
            (["sign", "alipay", "--config", Self.demo, "--private-key", Self.privateKey, "--sign-type", "MD5"], "--sign-type MD5 is not an Alipay sign_type: RSA2 or RSA"),
            (["sign", "wechat-pay", "--config", Self.demo, "--sign-type", "RSA2"], "--sign-type RSA2 is not a wechat-pay algorithm: MD5 or HMAC-SHA256"),
            (["sign", "xxpay", "--config", Self.demo, "--sign-type", "RSA2"], "--sign-type is for wechat-pay and alipay; xxpay always signs with MD5"),
            (["sign", "jeepay", "--config", Self.demo, "--refund-ref", "R"], "--refund-ref is for wechat-refund, wechat-v3-refund and alipay; jeepay notifies payments only"),
            (["sign", "xxpay", "--config", Self.demo, "--private-key", Self.privateKey], "--private-key and --serial are for wechat-v3-pay and wechat-v3-refund, not xxpay (alipay takes --private-key too)"),
            (["sign", "alipay", "--config", Self.demo, "--private-key", Self.privateKey, "--serial", "X"], "--serial is for wechat-v3-pay and wechat-v3-refund, not alipay"),
            (["sign", "alipay", "--config", Self.demo, "--private-key", Self.privateKey, "--break", "stale"], "--break stale does not apply to alipay, whose breakages are tamper, wrong-key, strip-sign"),
            (["simulate", "jeepay", "--config", Self.demo, "--url", "http://127.0.0.1:1/", "--omit-sign-type"], "--omit-sign-type is for wechat-pay, not jeepay"),
        ]
        for (arguments, message) in usage {
            let result = try ProcessTests.run(arguments)
            try Self.expectNoSecrets(result)
            #expect(result.status == 2, "\(arguments): \(result.stderr)")
            #expect(result.stderr.contains(message), "\(arguments): \(result.stderr)")
        }
        let failures: [([String], String)] = [
            (["sign", "jeepay", "--config", Self.demo], "payhook: the config has 2 [[jeepay]] tables; choose one with --tenant (65a0b1c2d3e4f5a6b7c8d9e0, 68219e426e70ed6a5e4229b6)\n"),
            (["sign", "alipay", "--config", Self.demo, "--private-key", Self.privateKey, "--tenant", "1"], "payhook: the config has no [[alipay]] table with app_id '1'\n"),
            (["sign", "xxpay", "--config", Self.demo, "--key-index", "2"], "payhook: --key-index 2 is out of range: the tenant has 1 secret(s)\n"),
            (["sign", "alipay", "--config", Self.demo, "--tenant", Self.alipayApp, "--private-key", Self.privateKey, "--field", "charset=GBK"],
             "payhook: payhook sign alipay writes UTF-8 only: charset 'GBK' would have the receiver read UTF-8 bytes as something else\n"),
            (["sign", "alipay", "--config", Self.demo, "--tenant", Self.alipayApp, "--private-key", Paths.fixtures.appendingPathComponent("alipay/test-only-alipay-public-key.pem").path],
             "payhook: --private-key holds no PEM private key (expected -----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)\n"),
        ]
        for (arguments, message) in failures {
            let result = try ProcessTests.run(arguments)
            try Self.expectNoSecrets(result)
            #expect(result.status == 1, "\(arguments): \(result.stderr)")
            #expect(result.stderr == message, "\(arguments)")
            #expect(result.stdout.isEmpty)
        }
        // A private key that is not the pair of the tenant's public key: printed, with a warning.
        let other = try ProcessTests.run([
            "sign", "alipay", "--config", Self.demo, "--tenant", "2019073166072302", "--private-key", Self.privateKey,
        ])
        try Self.expectNoSecrets(other)
        #expect(other.status == 0)
        #expect(other.stderr.contains("warning: the signature does not verify with the tenant's 1 Alipay public key(s): --private-key is not the private half of alipay_public_key_file"))
    }

    @Test func helpDocumentsTheNewKinds() throws {
        let help = try ProcessTests.run(["sign", "--help"])
        #expect(help.status == 0)
        let text = help.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(text.contains("wechat-v3-refund, alipay, xxpay or jeepay"))
        #expect(text.contains("for alipay, makes a refund notification: out_biz_no is this, refund_fee (all refunded so far) is --amount as yuan"))
        #expect(text.contains("alipay: RSA2 (SHA256withRSA, the default) or RSA (SHA1withRSA)"))
        #expect(text.contains("100 is total_amount=1.00"))
        #expect(text.contains("unified and xxpay print the query string (XxPay puts it on a POST with an empty body)"))
    }
}
