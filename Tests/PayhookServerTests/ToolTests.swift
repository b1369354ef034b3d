import Foundation
import PayhookTestSupport
import Testing

/// `payhook sign`, `simulate` and `verify`, run as processes, and cross-checked against implementations
/// that share no code with payhook: wechatpy for WeChat Pay, Fixtures/unified/make_samples.py for the
/// unified platform (Tests/crosscheck/wechatpy_check.py drives both).
@Suite(.timeLimit(.minutes(3)))
struct ToolTests {
    static var demo: String { Paths.fixtures.appendingPathComponent("demo.toml").path }

    /// Runs one of the independent implementations in Tests/crosscheck.
    static func python(_ arguments: [String], script: String = "Tests/crosscheck/wechatpy_check.py") throws -> ProcessTests.Run {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", Paths.root.appendingPathComponent(script).path] + arguments
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let output = out.fileHandleForReading.readDataToEndOfFile()
        let error = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return .init(status: process.terminationStatus, stdout: String(decoding: output, as: UTF8.self), stderr: String(decoding: error, as: UTF8.self))
    }

    /// `payhook sign` output, checked by the independent implementation.
    @Test(arguments: [
        (["wechat-pay"], "check-wechat-pay"),
        (["wechat-pay", "--sign-type", "HMAC-SHA256"], "check-wechat-pay"),
        (["wechat-pay", "--sign-type", "HMAC-SHA256", "--omit-sign-type"], "check-wechat-pay"),
        (["wechat-pay", "--field", "attach=支付 & <测试>", "--field", "device_info="], "check-wechat-pay"),
        (["wechat-refund"], "check-wechat-refund"),
        (["wechat-refund", "--field", "refund_recv_accout=支付用户零钱"], "check-wechat-refund"),
        (["unified", "--tenant", "demo"], "check-unified"),
        (["unified", "--tenant", "demo", "--field", "payTypeName=支付宝 支付+"], "check-unified"),
    ])
    func signedOutputVerifiesIndependently(arguments: [String], check: String) throws {
        let signed = try ProcessTests.run(["sign"] + arguments + ["--config", Self.demo])
        #expect(signed.status == 0, "\(signed.stderr)")
        let output = signed.stdout.trimmingCharacters(in: .newlines)
        let dir = try TemporaryDirectory()
        try dir.write("capture", output)
        let checked = try Self.python([check, check == "check-unified" ? output : dir.file("capture")])
        #expect(checked.status == 0, "\(checked.stdout) \(checked.stderr)")
        // And payhook's own verify agrees.
        let verified = try ProcessTests.run(["verify", "--config", Self.demo, dir.file("capture")])
        #expect(verified.status == 0, "\(verified.stdout)")
        #expect(!signed.stdout.contains("192006250b4c09247ec02edce69f6a2d"))
    }

    @Test func brokenOutputFailsIndependently() throws {
        for (kind, check) in [("wechat-pay", "check-wechat-pay"), ("unified", "check-unified")] {
            let signed = try ProcessTests.run(["sign", kind, "--tenant", kind == "unified" ? "demo" : "10000100", "--config", Self.demo, "--break", "tamper"])
            #expect(signed.status == 0)
            let dir = try TemporaryDirectory()
            let output = signed.stdout.trimmingCharacters(in: .newlines)
            try dir.write("capture", output)
            #expect(try Self.python([check, check == "check-unified" ? output : dir.file("capture")]).status != 0)
            #expect(try ProcessTests.run(["verify", "--config", Self.demo, dir.file("capture")]).status == 1)
        }
    }

    /// Notifications signed by wechatpy (and refunds encrypted with `cryptography`) are accepted by the
    /// live server, each stored once.
    @Test func wechatpySignedNotificationsAreAccepted() throws {
        let made = try Self.python(["make-wechat", "24", "20261122"])
        #expect(made.status == 0, "\(made.stderr)")
        let bodies = try #require(try JSONSerialization.jsonObject(with: Data(made.stdout.utf8)) as? [String])
        #expect(bodies.count == 24)
        let live = try LiveServer()
        defer { live.stop() }
        for body in bodies {
            let reply = try WeChatLiveTests.post(live, Array(body.utf8))
            #expect(reply.status == 200, "\(reply.body) for \(body.prefix(120))")
            #expect(reply.body == WeChatLiveTests.success)
        }
        #expect(live.events().count == 24)
        let verifiedWith = live.events().compactMap { name -> String? in
            let data = try? Data(contentsOf: URL(fileURLWithPath: live.spool + "/new/" + name))
            return (data.flatMap { try? JSONSerialization.jsonObject(with: $0) } as? [String: Any])?["verified_with"] as? String
        }
        #expect(Set(verifiedWith) == ["md5", "hmac-sha256", "aes-256-ecb"])
    }

    @Test func simulateSendsDuplicatesConcurrently() throws {
        let live = try LiveServer()
        defer { live.stop() }
        let url = "http://127.0.0.1:\(live.port)/notify/unified"
        let result = try ProcessTests.run(["simulate", "unified", "--tenant", "demo", "--config", Self.demo, "--url", url, "--count", "20", "--concurrency", "5"])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.count == 20)
        #expect(lines.allSatisfy { $0.hasSuffix(" 200 success") })
        #expect(lines.first == "#1 200 success")
        #expect(result.stderr.contains("sent 20, 20 answered success, 0 not"))
        #expect(live.events().count == 1)

        let wechat = try ProcessTests.run(["simulate", "wechat-refund", "--config", Self.demo, "--url", "http://127.0.0.1:\(live.port)/notify/wechat", "--count", "3"])
        #expect(wechat.status == 0, "\(wechat.stdout) \(wechat.stderr)")
        #expect(wechat.stdout.contains("200 \(WeChatLiveTests.success)"))
        #expect(live.events().count == 2)
    }

    @Test(arguments: ["tamper", "wrong-key", "strip-sign"])
    func simulateBrokenCallbacksAreRefused(breakage: String) throws {
        let live = try LiveServer()
        defer { live.stop() }
        for (kind, path, tenant) in [("unified", "/notify/unified", "demo"), ("wechat-pay", "/notify/wechat", "10000100"), ("wechat-refund", "/notify/wechat", "10000100")] {
            let result = try ProcessTests.run(["simulate", kind, "--tenant", tenant, "--config", Self.demo, "--url", "http://127.0.0.1:\(live.port)\(path)", "--break", breakage])
            #expect(result.status == 1, "\(kind) \(breakage): \(result.stdout)")
            #expect(result.stdout.hasPrefix("#1 401 "), "\(kind) \(breakage): \(result.stdout)")
        }
        #expect(live.events().isEmpty)
    }

    @Test func simulateReportsAnUnreachableServer() throws {
        let result = try ProcessTests.run(["simulate", "unified", "--tenant", "demo", "--config", Self.demo, "--url", "http://127.0.0.1:1/notify/unified"])
        #expect(result.status == 1)
        #expect(result.stdout.contains("#1 error connect to 127.0.0.1:1"))
    }

    @Test func signRefusesUnknownTenantsAndBadFields() throws {
        let unknown = try ProcessTests.run(["sign", "unified", "--tenant", "nobody", "--config", Self.demo])
        #expect(unknown.status == 1)
        #expect(unknown.stderr.contains("no [[unified]] table with domain_code 'nobody'"))
        let ambiguous = try ProcessTests.run(["sign", "unified", "--config", Self.demo])
        #expect(ambiguous.status == 1)
        #expect(ambiguous.stderr.contains("choose one with --tenant (demo, sibling)"))
        #expect(try ProcessTests.run(["sign", "unified", "--config", Self.demo, "--field", "novalue"]).status == 2)
        #expect(try ProcessTests.run(["sign", "paypal", "--config", Self.demo]).status == 2)
        #expect(try ProcessTests.run(["sign", "unified", "--tenant", "demo", "--key-index", "2", "--config", Self.demo]).status == 1)
    }

    @Test func verifyExplainsAGoodCallbackWithSecretsMasked() throws {
        let result = try ProcessTests.run(["verify", "--config", Self.demo, Paths.fixtures.appendingPathComponent("unified/success.query").path])
        #expect(result.status == 0)
        #expect(result.stdout.contains("scheme: values-sha1"))
        // The secret's place among the sorted values is not shown (VerifyLeakTests).
        #expect(result.stdout.contains("string to sign: these values and the secret *** sorted together by UTF-16 code units, then concatenated (where *** falls is not shown): 100 | 1767225600000 | 20260101000000000001 | CNY | SUCCESSPAY | Wechat | demo | demo-order-1001 | 微信支付"))
        #expect(result.stdout.contains("signature: OK, secret #1 of 1"))
        #expect(result.stdout.contains("dedupe key: unified/demo/demo-order-1001/SUCCESSPAY"))
        #expect(!result.stdout.contains("demo-secret-rotate-me"))

        let wechat = try ProcessTests.run(["verify", "--config", Self.demo, Paths.fixtures.appendingPathComponent("wechat/pay-hmac.xml").path])
        #expect(wechat.status == 0)
        #expect(wechat.stdout.contains("algorithm: HMAC-SHA256 (from sign_type HMAC-SHA256)"))
        #expect(wechat.stdout.contains("&key=***"))
        #expect(!wechat.stdout.contains("192006250b4c09247ec02edce69f6a2d"))

        let refund = try ProcessTests.run(["verify", "--config", Self.demo, Paths.fixtures.appendingPathComponent("wechat/refund.xml").path])
        #expect(refund.status == 0)
        #expect(refund.stdout.contains("dedupe key: wechat.refund/10000100/R20240101000001/SUCCESS"))
    }

    @Test func verifyReadsAStoredEventAndStandardInput() throws {
        let live = try LiveServer()
        defer { live.stop() }
        #expect(try live.get("/notify/unified?" + (try Paths.fixture("unified/success.query"))).body == "success")
        let event = live.spool + "/new/" + (live.events().first ?? "")
        let result = try ProcessTests.run(["verify", "--config", Self.demo, event])
        #expect(result.status == 0)
        #expect(result.stdout.contains("input: event file"))
        #expect(result.stdout.contains("VERIFIED"))
    }

    /// verify judges an event file by the one definition the queue tools and the server's recovery use: a stored
    /// event with a member repeated (which a lenient JSON reader would take, last value winning) is not re-checked.
    @Test func verifyRefusesAnEventFileTheQueueWouldSetAside() throws {
        let live = try LiveServer()
        defer { live.stop() }
        #expect(try live.get("/notify/unified?" + (try Paths.fixture("unified/success.query"))).body == "success")
        let stored = try String(contentsOfFile: live.spool + "/new/" + (live.events().first ?? ""), encoding: .utf8)
        let edited = live.dir.file("edited.json")
        try stored.replacingOccurrences(of: "\"amount\": 100,", with: "\"amount\": 100, \"amount\": 999999,")
            .write(toFile: edited, atomically: false, encoding: .utf8)
        #expect(try String(contentsOfFile: edited, encoding: .utf8) != stored)
        let result = try ProcessTests.run(["verify", "--config", Self.demo, edited])
        #expect(result.status != 0)
        #expect(result.stdout.contains("not a payhook event"))
        #expect(!result.stdout.contains("VERIFIED"))
    }

    /// The mistakes the README walks through, each diagnosed.
    @Test(arguments: [
        ("wechat-empty-value-signed.xml", "hint: it matches when empty values are signed"),
        ("wechat-url-encoded-value.xml", "hint: it matches when values are URL-encoded"),
        ("wechat-sign-type-not-signed.xml", "hint: it matches when sign_type is left out of the string"),
        ("wechat-v3-key-used.xml", "check that api_key is this merchant's APIv2 key"),
        ("unified-url-encoded-value.query", "hint: it matches when the values are signed URL-encoded"),
    ])
    func verifyDiagnosesCommonMistakes(file: String, hint: String) throws {
        let result = try ProcessTests.run(["verify", "--config", Self.demo, Paths.fixtures.appendingPathComponent("mistakes/\(file)").path])
        #expect(result.status == 1)
        #expect(result.stdout.contains(hint), "\(result.stdout)")
        #expect(result.stdout.contains("verdict: REFUSED with 401"))
    }

    @Test func verifyRefusesXXEWithoutUsingIt() throws {
        let result = try ProcessTests.run(["verify", "--config", Self.demo, Paths.fixtures.appendingPathComponent("wechat/xxe-file.xml").path])
        #expect(result.status == 1)
        #expect(result.stdout.contains("FAILED: not a flat <xml> notification"))
        #expect(!result.stdout.contains("root:"))
    }
}
