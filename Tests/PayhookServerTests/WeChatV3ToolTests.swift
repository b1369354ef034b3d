import Foundation
import PayhookConfig
import PayhookCore
import PayhookCrypto
import PayhookTestSupport
@testable import PayhookTools
import PayhookWeChat
import Testing

/// `payhook sign`, `simulate` and `verify` for WeChat Pay v3, at the library level: what the builder makes is
/// judged by `WeChatV3Source.process` (the server's code), every deliberate fault is refused for its own
/// reason, and the explanation names each step without ever showing a key. The tenants are built in code with
/// the SDK test key pair of Fixtures/wechat-v3 (its README says where each file comes from).
@Suite(.timeLimit(.minutes(3)))
struct WeChatV3ToolTests {
    static let path = "/notify/wechatpay"
    static let mchID = "1900000100"
    static let keyID = "PUB_KEY_ID_0000000000000024101100397200000006"
    static let apiV3Key = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"
    /// A second APIv3 key, for rotation: 32 characters, like every APIv3 key.
    static let nextAPIV3Key = "Zq9Xw2Lm4Np6Rs8Tu0Vb3Cd5Ef7Gh1Jk"

    static func fixture(_ name: String) throws -> String {
        try String(contentsOf: Paths.fixtures.appendingPathComponent("wechat-v3/\(name)"), encoding: .utf8)
    }

    static var privateKey: String { get throws { try fixture("wechat_pay_private_key.pem") } }

    /// A line from the middle of the private key: no output may ever hold it.
    static var privateKeyLine: String {
        get throws { try privateKey.split(separator: "\n")[5].trimmingCharacters(in: .whitespaces) }
    }

    static func tenant(keys: [String] = [apiV3Key], publicKey: Bool = true, certificates: [String] = []) throws -> WeChatV3Tenant {
        WeChatV3Tenant(
            path: path, mchID: mchID, apiV3Keys: keys.map(Secret.init),
            publicKey: publicKey ? .init(id: keyID, key: try RSAPublicKey(pem: try fixture("wechat_pay_public_key.pem"))) : nil,
            platformCertificates: try certificates.map { try X509Certificate(pem: try fixture($0)) })
    }

    static func config(_ tenants: [WeChatV3Tenant]) -> Config {
        var config = Config(file: "payhook.toml", spool: "spool")
        config.wechatV3 = tenants
        return config
    }

    static func spec(_ kind: CallbackBuilder.Kind, _ breakage: CallbackBuilder.Breakage? = nil) throws -> CallbackBuilder.Spec {
        var spec = CallbackBuilder.Spec(kind: kind)
        spec.privateKey = Secret(try privateKey)
        spec.breakage = breakage
        return spec
    }

    static func request(_ built: CallbackBuilder.Built, at now: Int64) -> CallbackRequest {
        CallbackRequest(
            method: built.method, target: built.path, query: nil, headers: built.headers.map { (name: $0.name, value: $0.value) },
            body: built.body, remoteAddress: "192.0.2.7", receivedAtMilliseconds: now)
    }

    /// The server's verdict on a built notification: the source `serve` builds for the path.
    static func process(_ built: CallbackBuilder.Built, _ config: Config, at now: Int64 = WallClock.milliseconds()) -> Verdict {
        WeChatV3Source(path: built.path, tenants: config.wechatV3, maxCallbackAgeMilliseconds: config.maxCallbackAgeMilliseconds)
            .process(request(built, at: now), nowMilliseconds: now)
    }

    static func accepted(_ verdict: Verdict, sourceLocation: SourceLocation = #_sourceLocation) throws -> Event {
        guard case .accepted(let event) = verdict.outcome else {
            Issue.record("not accepted: \(verdict.outcome)", sourceLocation: sourceLocation)
            throw CancellationError()
        }
        return event
    }

    static func refusal(_ verdict: Verdict) -> Refusal? {
        if case .refused(let refusal) = verdict.outcome { return refusal }
        return nil
    }

    /// What `payhook sign` prints, as a file holds it: the printable text and the one line break after it.
    static func printed(_ built: CallbackBuilder.Built) -> [UInt8] {
        Array((built.printable + "\n").utf8)
    }

    static func expectNoSecrets(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(!text.contains(apiV3Key), sourceLocation: sourceLocation)
        #expect(!text.contains(nextAPIV3Key), sourceLocation: sourceLocation)
        #expect(!text.contains(try privateKeyLine), sourceLocation: sourceLocation)
        #expect(!text.contains("PRIVATE KEY"), sourceLocation: sourceLocation)
    }

    // MARK: - sign

    struct Case: Sendable, CustomTestStringConvertible {
        var kind: CallbackBuilder.Kind
        var amount: Int64 = 100
        var orderRef: String?
        var refundRef: String?
        var status: String?
        var fields: [(String, String)] = []
        var keyPosition = 1
        var source: String
        var expectedStatus: String
        var testDescription: String { "\(kind.rawValue) \(status ?? "") \(fields.map(\.0))" }
    }

    @Test(arguments: [
        Case(kind: .wechatV3Pay, source: "wechat.pay", expectedStatus: "SUCCESS"),
        Case(kind: .wechatV3Pay, amount: 250, orderRef: "ORDER-2024_0001", source: "wechat.pay", expectedStatus: "SUCCESS"),
        Case(
            kind: .wechatV3Pay, fields: [("attach", "支付 & <测试> \"quoted\""), ("bank_type", "CMB_DEBIT"), ("amount:", #"{"total":7,"currency":"CNY"}"#)],
            source: "wechat.pay", expectedStatus: "SUCCESS"),
        Case(kind: .wechatV3Pay, keyPosition: 2, source: "wechat.pay", expectedStatus: "SUCCESS"),
        Case(kind: .wechatV3Refund, source: "wechat.refund", expectedStatus: "SUCCESS"),
        Case(kind: .wechatV3Refund, amount: 60, orderRef: "O-1", refundRef: "R-1", status: "ABNORMAL", source: "wechat.refund", expectedStatus: "ABNORMAL"),
        Case(kind: .wechatV3Refund, status: "CLOSED", fields: [("user_received_account", "招商银行信用卡0403")], source: "wechat.refund", expectedStatus: "CLOSED"),
    ])
    func signedNotificationsAreAcceptedByTheServersCode(c: Case) throws {
        let config = Self.config([try Self.tenant(keys: [Self.apiV3Key, Self.nextAPIV3Key])])
        var spec = try Self.spec(c.kind)
        spec.amount = c.amount
        spec.orderRef = c.orderRef
        spec.refundRef = c.refundRef
        spec.status = c.status
        spec.fields = c.fields.map { FormParameter(name: $0.0, value: $0.1) }
        spec.keyPosition = c.keyPosition
        let built = try CallbackBuilder.build(spec, config: config)
        #expect(built.warnings.isEmpty)
        #expect(built.method == "POST")
        #expect(built.path == Self.path)
        #expect(built.contentType == "application/json")
        #expect(built.headers.map(\.name) == WeChatV3Source.Header.all)
        let event = try Self.accepted(Self.process(built, config))
        #expect(event.source == c.source)
        #expect(event.tenant == Self.mchID)
        #expect(event.status == c.expectedStatus)
        #expect(event.secretPosition == c.keyPosition)
        #expect(event.raw.headers == built.headers)
        if c.fields.contains(where: { $0.0 == "amount:" }) {
            #expect(event.amount == 7)
        } else {
            #expect(event.amount == c.amount)
        }
        if let orderRef = c.orderRef { #expect(event.orderRef == orderRef) }
        if let refundRef = c.refundRef { #expect(event.dedupeKey.text.contains("/\(refundRef)/")) }
        for (name, value) in c.fields where !name.hasSuffix(":") {
            #expect(event.resource?[name]?.stringValue == value)
        }
        let envelope = try #require(JSONReader.parse(built.body))
        #expect(envelope["event_type"]?.stringValue == (c.kind == .wechatV3Pay ? "TRANSACTION.SUCCESS" : "REFUND.\(c.expectedStatus)"))
        #expect(envelope["resource"]?["associated_data"]?.stringValue == (c.kind == .wechatV3Pay ? "transaction" : "refund"))
        // A refund that did not succeed has no success_time, as WeChat sends it.
        #expect((event.resource?["success_time"] != nil) == (c.expectedStatus == "SUCCESS"))

        // What `payhook sign` prints verifies too, and explains the whole way, with no key in it.
        let report = Explainer.explain(Self.printed(built), config: config)
        #expect(report.verified, "\(report.lines.joined(separator: "\n"))")
        #expect(report.lines.contains { $0.contains("the file's final line break is not part of it") })
        #expect(report.lines.contains("resource: decrypts with APIv3 key #\(c.keyPosition) of 2 (***, ***) of mch_id \(Self.mchID)"))
        try Self.expectNoSecrets(report.lines.joined(separator: "\n"))
        try Self.expectNoSecrets(built.printable)
    }

    @Test func everyCallIsFresh() throws {
        let config = Self.config([try Self.tenant()])
        let a = try CallbackBuilder.build(try Self.spec(.wechatV3Pay), config: config)
        let b = try CallbackBuilder.build(try Self.spec(.wechatV3Pay), config: config)
        func header(_ built: CallbackBuilder.Built, _ name: String) -> String? { built.headers.first { $0.name == name }?.value }
        #expect(header(a, "Wechatpay-Nonce") != header(b, "Wechatpay-Nonce"))
        #expect(header(a, "Wechatpay-Nonce")?.count == 32)
        #expect(header(a, "Wechatpay-Serial") == Self.keyID)
        #expect(header(a, "Wechatpay-Signature-Type") == "WECHATPAY2-SHA256-RSA2048")
        let now = WallClock.milliseconds() / 1000
        #expect(abs((Int64(header(a, "Wechatpay-Timestamp") ?? "") ?? 0) - now) <= 5)
        let (ea, eb) = (try #require(JSONReader.parse(a.body)), try #require(JSONReader.parse(b.body)))
        #expect(ea["id"] != eb["id"])
        #expect(ea["resource"]?["nonce"]?.stringValue?.count == 12)
        #expect(ea["resource"]?["nonce"] != eb["resource"]?["nonce"])
        #expect(try Self.accepted(Self.process(a, config)).orderRef != (try Self.accepted(Self.process(b, config))).orderRef)
    }

    /// The serial: the public key id when the tenant has one, else its first certificate's serial; --serial wins.
    @Test func theSerialNamesTheTenantsKey() throws {
        let certificateOnly = Self.config([try Self.tenant(publicKey: false, certificates: ["test-only-platform-certificate.pem"])])
        let built = try CallbackBuilder.build(try Self.spec(.wechatV3Pay), config: certificateOnly)
        #expect(built.headers.first { $0.name == "Wechatpay-Serial" }?.value == "3C5A0F2B7D19E4A6")
        #expect(try Self.accepted(Self.process(built, certificateOnly)).tenant == Self.mchID)
        let report = Explainer.explain(Self.printed(built), config: certificateOnly)
        #expect(report.verified)
        #expect(report.lines.contains { $0.hasPrefix("serial: 3C5A0F2B7D19E4A6 names the platform certificate 3C5A0F2B7D19E4A6, valid ") && $0.contains("(valid now)") })

        let both = Self.config([try Self.tenant(certificates: ["test-only-platform-certificate.pem"])])
        var spec = try Self.spec(.wechatV3Refund)
        spec.serial = "3c5a0f2b7d19e4a6"
        let lowercase = try CallbackBuilder.build(spec, config: both)
        #expect(lowercase.headers.first { $0.name == "Wechatpay-Serial" }?.value == "3c5a0f2b7d19e4a6")
        #expect(try Self.accepted(Self.process(lowercase, both)).source == "wechat.refund")
    }

    /// A private key that is not the pair of the key the serial names is signed with, and the sender warned.
    @Test func aMismatchedPrivateKeyIsWarnedAbout() throws {
        let config = Self.config([try Self.tenant()])
        var spec = try Self.spec(.wechatV3Pay)
        spec.privateKey = Secret(String(decoding: try #require(Signature.generateRSAPrivateKeyPEM()), as: UTF8.self))
        let built = try CallbackBuilder.build(spec, config: config)
        #expect(built.warnings.count == 1)
        #expect(built.warnings.first?.contains("not the private half of the tenant's key \(Self.keyID)") == true)
        #expect(Self.refusal(Self.process(built, config))?.status == 401)

        spec = try Self.spec(.wechatV3Pay)
        spec.serial = "PUB_KEY_ID_NOT_CONFIGURED"
        #expect(try CallbackBuilder.build(spec, config: config).warnings.first?.contains("has no key with serial 'PUB_KEY_ID_NOT_CONFIGURED'") == true)
    }

    @Test func badPrivateKeysAndMissingTenantsAreOneSentence() throws {
        let config = Self.config([try Self.tenant()])
        func failure(_ change: (inout CallbackBuilder.Spec) throws -> Void, config other: Config? = nil) throws -> String {
            var spec = try Self.spec(.wechatV3Pay)
            try change(&spec)
            do {
                _ = try CallbackBuilder.build(spec, config: other ?? config)
            } catch {
                return error.description
            }
            Issue.record("built")
            return ""
        }
        #expect(try failure { $0.privateKey = nil } == "wechat-v3-pay needs --private-key FILE: the RSA private key that signs in WeChat Pay's place")
        #expect(try failure { $0.privateKey = Secret(try Self.fixture("test-only-encrypted-private-key.pem")) }.contains("encrypted key"))
        #expect(try failure { $0.privateKey = Secret(try Self.fixture("test-only-ec-p256-private-key.pem")) }.contains("not an RSA private key"))
        #expect(try failure { $0.privateKey = Secret(try Self.fixture("wechat_pay_public_key.pem")) }.contains("holds no PEM private key"))
        #expect(try failure { $0.keyPosition = 2 } == "--key-index 2 is out of range: the tenant has 1 APIv3 key(s)")
        #expect(try failure { $0.tenant = "1234" } == "the config has no [[wechat_v3]] table with mch_id '1234'")
        #expect(try failure({ _ in }, config: Self.config([])) == "the config has no [[wechat_v3]] table")
        #expect(try failure { $0.fields = [FormParameter(name: "amount:", value: "{oops")] }.contains("is not followed by one JSON value"))
        // A spec never describes its private key.
        let spec = try Self.spec(.wechatV3Pay)
        try Self.expectNoSecrets(String(describing: spec))
        try Self.expectNoSecrets(String(reflecting: spec))
    }

    @Test func breakagesApplyToTheirOwnKinds() throws {
        let config = Self.config([try Self.tenant()])
        for kind in CallbackBuilder.Kind.allCases {
            for breakage in CallbackBuilder.Breakage.allCases {
                let applies = CallbackBuilder.Breakage.applicable(to: kind).contains(breakage)
                #expect((breakage.problem(for: kind) == nil) == applies)
                guard !applies, kind.isWeChatV3 else { continue }
                #expect(throws: CallbackBuilder.Failure.self) { try CallbackBuilder.build(try Self.spec(kind, breakage), config: config) }
            }
        }
        #expect(CallbackBuilder.Breakage.tamper.problem(for: .wechatV3Pay)
            == "--break tamper does not apply to wechat-v3-pay, whose breakages are signtest, stale, wrong-key, wrong-serial, tampered")
        #expect(CallbackBuilder.Breakage.stale.problem(for: .unified)
            == "--break stale does not apply to unified, whose breakages are tamper, wrong-key, strip-sign")
    }

    // MARK: - --break, refused by the server and explained by verify

    @Test(arguments: [
        (CallbackBuilder.Breakage.signtest, "Wechatpay-Signature is a WECHATPAY/SIGNTEST/ probe", "signature: a WECHATPAY/SIGNTEST/ probe, not a signature"),
        (.stale, "Wechatpay-Timestamp is -600 s from now, beyond max_clock_skew_s", "skew -600 s; window ±300 s (max_clock_skew_s): OUTSIDE"),
        (.wrongSerial, "no [[wechat_v3]] tenant on /notify/wechatpay has the key Wechatpay-Serial", "names no key of the [[wechat_v3]] tenants on /notify/wechatpay; their keys: \(keyID)"),
        (.wrongKey, "Wechatpay-Signature does not verify with the key Wechatpay-Serial names", "RSA: does NOT verify with \(keyID) of mch_id \(mchID)"),
        (.tampered, "Wechatpay-Signature does not verify with the key Wechatpay-Serial names", "RSA: does NOT verify with \(keyID) of mch_id \(mchID)"),
    ])
    func eachBreakageIsRefusedForItsReason(breakage: CallbackBuilder.Breakage, reason: String, explanation: String) throws {
        let config = Self.config([try Self.tenant()])
        for kind in [CallbackBuilder.Kind.wechatV3Pay, .wechatV3Refund] {
            // One clock for building, the server and verify, so that the stale skew is exactly -600 s.
            let now = WallClock.milliseconds()
            let built = try CallbackBuilder.build(try Self.spec(kind, breakage), config: config, nowMilliseconds: now)
            #expect(built.warnings.isEmpty)
            let verdict = Self.process(built, config, at: now)
            let refusal = try #require(Self.refusal(verdict))
            #expect(refusal.status == 401)
            #expect(refusal.reason.hasPrefix(reason), "\(refusal.reason)")
            #expect(verdict.signature.probe == (breakage == .signtest))
            #expect(verdict.signature.unknownKeyID == (breakage == .wrongSerial))

            let report = Explainer.explain(Self.printed(built), config: config, nowMilliseconds: now)
            let text = report.lines.joined(separator: "\n")
            #expect(!report.verified)
            #expect(text.contains(explanation), "\(text)")
            #expect(report.lines.last == "verdict: REFUSED with 401 (bad_signature): \(refusal.reason)")
            try Self.expectNoSecrets(text)
            try Self.expectNoSecrets(built.printable)
        }
    }

    @Test func theBreakagesChangeOnlyWhatTheySay() throws {
        let config = Self.config([try Self.tenant()])
        func header(_ built: CallbackBuilder.Built, _ name: String) -> String { built.headers.first { $0.name == name }?.value ?? "" }
        let signtest = try CallbackBuilder.build(try Self.spec(.wechatV3Pay, .signtest), config: config)
        #expect(header(signtest, "Wechatpay-Signature").hasPrefix("WECHATPAY/SIGNTEST/"))
        #expect(Base64.decode(String(header(signtest, "Wechatpay-Signature").dropFirst("WECHATPAY/SIGNTEST/".count)))?.count == 256)
        // Stale: correctly signed, so the same notification verifies ten minutes back.
        let now = WallClock.milliseconds()
        let stale = try CallbackBuilder.build(try Self.spec(.wechatV3Pay, .stale), config: config, nowMilliseconds: now)
        let then = (Int64(header(stale, "Wechatpay-Timestamp")) ?? 0) * 1000
        #expect(then == now / 1000 * 1000 - 600_000)
        #expect(try Self.accepted(Self.process(stale, config, at: then)).source == "wechat.pay")
        // Tampered: the body differs from a signed one in its summary alone.
        let tampered = try CallbackBuilder.build(try Self.spec(.wechatV3Pay, .tampered), config: config)
        #expect(JSONReader.parse(tampered.body)?["summary"]?.stringValue == "支付成功 (changed after signing)")
        let wrongSerial = try CallbackBuilder.build(try Self.spec(.wechatV3Pay, .wrongSerial), config: config)
        #expect(header(wrongSerial, "Wechatpay-Serial").hasPrefix("PUB_KEY_ID_"))
        #expect(header(wrongSerial, "Wechatpay-Serial") != Self.keyID)
    }

    // MARK: - verify

    /// The explanation, step by step in the server's order, for a good notification captured with its request
    /// line, CRLF line ends, lower-case header names and a Content-Length.
    @Test func verifyExplainsEachStepInTheServersOrder() throws {
        let config = Self.config([try Self.tenant()])
        let built = try CallbackBuilder.build(try Self.spec(.wechatV3Pay), config: config)
        var capture = "POST \(Self.path) HTTP/1.1\r\nHost: example.com\r\nContent-Type: application/json\r\nContent-Length: \(built.body.count)\r\n"
        for header in built.headers { capture += "\(header.name.lowercased()): \(header.value)\r\n" }
        let bytes = Array((capture + "\r\n").utf8) + built.body
        let report = Explainer.explain(bytes, config: config)
        #expect(report.verified, "\(report.lines.joined(separator: "\n"))")
        let order = [
            "input: header block after a request line (8 header(s); body \(built.body.count) bytes, its end from Content-Length)",
            "source: WeChat Pay v3", "path: /notify/wechatpay (from the request line)",
            "headers: wechatpay-timestamp, wechatpay-nonce, wechatpay-signature, wechatpay-serial, wechatpay-signature-type found",
            "signature type: WECHATPAY2-SHA256-RSA2048", "serial: \(Self.keyID) names the WeChat Pay public key \(Self.keyID) of mch_id \(Self.mchID)",
            "timestamp: ", "string signed: \"", "signature: 344 base64 characters, 256 bytes", "RSA: verifies with \(Self.keyID) of mch_id \(Self.mchID)",
            "envelope: id ", "resource: decrypts with APIv3 key #1 of 1 (***) of mch_id \(Self.mchID)",
            "merchant: the resource names \(Self.mchID); the tenant is mch_id \(Self.mchID): the same",
            "resource checks: OK: wechat.pay", "success_time: ", "checks: OK", "dedupe key: wechat.pay/\(Self.mchID)/", "event id: ",
            "verdict: VERIFIED",
        ]
        var index = 0
        for prefix in order {
            guard let found = report.lines[index...].firstIndex(where: { $0.hasPrefix(prefix) }) else {
                Issue.record("no line '\(prefix)' after line \(index): \(report.lines.joined(separator: "\n"))")
                return
            }
            index = found + 1
        }
        // The string signed: escaped, the body shortened, with its length and digest.
        let message = WeChatV3Source.SignedHeaders(
            timestamp: built.headers[0].value, nonce: built.headers[1].value, signature: "", serial: "", signatureType: nil
        ).message(body: built.body)
        let signed = try #require(report.lines.first { $0.hasPrefix("string signed:") })
        #expect(signed.hasPrefix("string signed: \"\(built.headers[0].value)\\n\(built.headers[1].value)\\n{\\\"id\\\":\\\""))
        #expect(signed.contains("bytes not shown …]"))
        #expect(signed.hasSuffix("}}\\n\" (\(message.count) bytes, SHA-256 \(Hex.encode(Digest.sha256(message))))"))
        try Self.expectNoSecrets(report.lines.joined(separator: "\n"))
    }

    @Test func verifyFindsThePathAndRefusesOtherPaths() throws {
        let config = Self.config([try Self.tenant()])
        let built = try CallbackBuilder.build(try Self.spec(.wechatV3Refund), config: config)
        let plain = Explainer.explain(Self.printed(built), config: config)
        #expect(plain.lines.contains("path: /notify/wechatpay (the config's only [[wechat_v3]] path; give --path to choose another)"))
        #expect(plain.verified)
        let elsewhere = Explainer.explain(Array("POST /notify/other HTTP/1.1\n".utf8) + Self.printed(built), config: config)
        #expect(!elsewhere.verified)
        #expect(elsewhere.lines.contains { $0.hasPrefix("FAILED: no [[wechat_v3]] tenant is on /notify/other (from the request line)") })
        let overridden = Explainer.explain(Array("POST /notify/other HTTP/1.1\n".utf8) + Self.printed(built), config: config, path: Self.path)
        #expect(overridden.verified)
        let get = Explainer.explain(Array("GET /notify/wechatpay HTTP/1.1\n".utf8) + Self.printed(built), config: config)
        #expect(get.lines.contains { $0.contains("serve answers 405") })
        #expect(!get.verified)
        #expect(!Explainer.explain(Self.printed(built), config: Self.config([])).verified)
    }

    @Test func verifyExplainsBrokenCaptures() throws {
        let config = Self.config([try Self.tenant()])
        let built = try CallbackBuilder.build(try Self.spec(.wechatV3Pay), config: config)
        func explain(_ text: [UInt8]) -> String { Explainer.explain(text, config: config).lines.joined(separator: "\n") }
        let head = built.headers.map { "\($0.name): \($0.value)\n" }.joined()
        // No empty line: no body.
        #expect(explain(Array(head.utf8)).contains("FAILED: no empty line ends the header block"))
        // A signed header left out.
        let noNonce = built.headers.filter { $0.name != "Wechatpay-Nonce" }.map { "\($0.name): \($0.value)\n" }.joined()
        #expect(explain(Array((noNonce + "\n").utf8) + built.body).contains("FAILED: Wechatpay-Nonce missing or empty"))
        // Repeated.
        #expect(explain(Array((head + "wechatpay-nonce: x\n\n").utf8) + built.body).contains("FAILED: Wechatpay-Nonce is repeated"))
        // Another signature type.
        let rsa1024 = head.replacingOccurrences(of: "WECHATPAY2-SHA256-RSA2048", with: "WECHATPAY2-SHA256-RSA1024")
        #expect(explain(Array((rsa1024 + "\n").utf8) + built.body).contains("FAILED: signature type 'WECHATPAY2-SHA256-RSA1024' is not WECHATPAY2-SHA256-RSA2048"))
        // A body whose final line break was signed: verify says so.
        var spec = try Self.spec(.wechatV3Pay)
        spec.fields = [FormParameter(name: "attach", value: "x")]
        let signedWithBreak = try CallbackBuilder.build(spec, config: config)
        let now = Int64(signedWithBreak.headers[0].value)!
        let message = WeChatV3Source.SignedHeaders(
            timestamp: signedWithBreak.headers[0].value, nonce: signedWithBreak.headers[1].value, signature: "", serial: "", signatureType: nil
        ).message(body: signedWithBreak.body + [0x0A])
        let signature = Base64.encode(try #require(Signature.signRSASHA256(privateKeyPEM: try Self.privateKey, message: message)))
        let withBreak = signedWithBreak.headers.map { "\($0.name): \($0.name == "Wechatpay-Signature" ? signature : $0.value)\n" }.joined()
        let hinted = Explainer.explain(Array((withBreak + "\n").utf8) + signedWithBreak.body + [0x0A], config: config, nowMilliseconds: now * 1000)
        #expect(hinted.lines.contains { $0.hasPrefix("hint: it verifies when the capture's final line break is part of the body") })
        #expect(!hinted.verified)
        // A wrong APIv3 key: verified by RSA, but the resource does not open; the keys are still not shown.
        let rotated = try Self.tenant(keys: [Self.nextAPIV3Key])
        let report = Explainer.explain(Self.printed(built), config: Self.config([rotated]))
        let text = report.lines.joined(separator: "\n")
        #expect(text.contains("resource: does not decrypt with any of mch_id \(Self.mchID)'s 1 APIv3 key(s) (***)"))
        #expect(text.contains("verdict: REFUSED with 401 (bad_signature): resource does not decrypt under the tenant's APIv3 key(s)"))
        try Self.expectNoSecrets(text)
        // Another merchant's keys: decrypted, and the merchant named.
        var other = try Self.tenant()
        other.mchID = "1900000999"
        let misrouted = Explainer.explain(Self.printed(built), config: Self.config([other])).lines.joined(separator: "\n")
        #expect(misrouted.contains("merchant: the resource names \(Self.mchID); the tenant is mch_id 1900000999: NOT the same"))
        #expect(misrouted.contains("verdict: REFUSED with 401 (unknown_tenant)"))
        // A semantic refusal: trade_state must be SUCCESS in a TRANSACTION.SUCCESS.
        var closed = try Self.spec(.wechatV3Pay)
        closed.status = "CLOSED"
        let semantic = Explainer.explain(Self.printed(try CallbackBuilder.build(closed, config: config)), config: config).lines.joined(separator: "\n")
        #expect(semantic.contains("FAILED: resource: TRANSACTION.SUCCESS with trade_state CLOSED"))
        #expect(semantic.contains("verdict: REFUSED with 400 (rejected)"))
    }

    @Test func verifyShowsAnExpiredCertificate() throws {
        // The Java SDK's merchant certificate expired in 2025: a tenant that still lists it is told so.
        let config = Self.config([try Self.tenant(publicKey: false, certificates: ["merchant_certificate.pem"])])
        var spec = try Self.spec(.wechatV3Pay)
        spec.serial = "5F1C72E2A8931B72A2E13AF8DEE92471EB397115"
        let built = try CallbackBuilder.build(spec, config: config)
        #expect(built.warnings.count == 1)
        let text = Explainer.explain(Self.printed(built), config: config).lines.joined(separator: "\n")
        #expect(text.contains("names the platform certificate 5F1C72E2A8931B72A2E13AF8DEE92471EB397115, valid 2022-05-10"))
        #expect(text.contains("(NOT valid now)"))
        #expect(text.contains("not used: the certificate is outside its validity period"))
        #expect(text.contains("verdict: REFUSED with 401 (bad_signature)"))
    }

    @Test func shownBytesAreEscapedAndShortened() {
        #expect(Explainer.shown(Array("a\"b\\c\n\r\t\u{1B}支付\u{FEFF}".utf8)) == "a\\\"b\\\\c\\n\\r\\t\\u{1B}支付\\u{FEFF}")
        #expect(Explainer.shown([0x61, 0xFF, 0x0A]) == "a\\xFF\\n")
        let long = Array(String(repeating: "支", count: 200).utf8)
        let shortened = Explainer.shownShortened(long)
        #expect(shortened.contains("bytes not shown …]"))
        #expect(!shortened.contains("\u{FFFD}"))
        #expect(Explainer.shownShortened(Array("short".utf8)) == "short")
    }

    /// A query capture or a URL is still one; only a block of `Name: value` lines is a header block.
    @Test func onlyHeaderBlocksAreReadAsHeaderBlocks() {
        #expect(Explainer.isHeaderBlock(Array("Wechatpay-Serial: x\n\n{}".utf8)))
        #expect(Explainer.isHeaderBlock(Array("POST /notify HTTP/1.1\r\nA: b\r\n\r\n".utf8)))
        #expect(!Explainer.isHeaderBlock(Array("http://127.0.0.1/notify?x=1\n\n".utf8)))
        #expect(!Explainer.isHeaderBlock(Array("money=100&sign=ab\n\n".utf8)))
        #expect(!Explainer.isHeaderBlock(Array("Wechatpay-Serial: x".utf8)))
    }

    // MARK: - Against a live server

    /// An event file the server wrote verifies again, judged at its received_at: also a day later.
    @Test func aStoredEventVerifiesAgainAtItsReceivedAt() throws {
        let tenant = try Self.tenant()
        let live = try LiveServer(configure: { $0.wechatV3 = [tenant] })
        defer { live.stop() }
        let config = Self.config([tenant])
        for kind in [CallbackBuilder.Kind.wechatV3Pay, .wechatV3Refund] {
            let built = try CallbackBuilder.build(try Self.spec(kind), config: config)
            let reply = try HTTPReply.exchange(built.request(authority: "127.0.0.1:\(live.port)"), port: live.port)
            #expect(reply.status == 204)
            #expect(reply.body.isEmpty)
        }
        #expect(live.events().count == 2)
        for name in live.events() {
            let file = Array(try Data(contentsOf: URL(fileURLWithPath: live.spool + "/new/" + name)))
            let dayLater = WallClock.milliseconds() + 86_400_000
            let report = Explainer.explain(file, config: config, nowMilliseconds: dayLater)
            let text = report.lines.joined(separator: "\n")
            #expect(report.verified, "\(text)")
            #expect(text.contains("input: event file \(name.dropLast(".json".count))"))
            #expect(text.contains("path: /notify/wechatpay (from the event's raw.target)"))
            #expect(text.contains("from the event's received_at "))
            #expect(text.contains("not the wall clock"))
            #expect(text.contains("event id: \(name.dropLast(".json".count))"))
            try Self.expectNoSecrets(text)
            try Self.expectNoSecrets(String(decoding: file, as: UTF8.self))
        }
    }

    /// Sent five times (what `payhook simulate --count 5` does, through the same client): five 204s, one event.
    @Test func duplicatesAreAnsweredAndStoredOnce() throws {
        let tenant = try Self.tenant()
        let live = try LiveServer(configure: { $0.wechatV3 = [tenant] })
        defer { live.stop() }
        let built = try CallbackBuilder.build(try Self.spec(.wechatV3Pay), config: Self.config([tenant]))
        let target = try HTTPClient.Target(url: "http://127.0.0.1:\(live.port)/")
        let request = built.request(authority: target.authority, path: target.path == "/" ? built.path : target.path)
        for _ in 1...5 {
            let response = try HTTPClient.exchange(request, host: target.host, port: target.port)
            #expect(response.status == 204)
            #expect(built.isSuccess(status: response.status, body: response.body))
        }
        #expect(live.events().count == 1)
        let refused = try CallbackBuilder.build(try Self.spec(.wechatV3Pay, .tampered), config: Self.config([tenant]))
        let answer = try HTTPClient.exchange(refused.request(authority: target.authority), host: target.host, port: target.port)
        #expect(answer.status == 401)
        #expect(!refused.isSuccess(status: answer.status, body: answer.body))
        #expect(String(decoding: answer.body, as: UTF8.self).hasPrefix(#"{"code":"FAIL","message":"#))
        #expect(live.events().count == 1)
    }

    // MARK: - The command line

    static var demo: String { Paths.fixtures.appendingPathComponent("demo.toml").path }
    static var privateKeyFile: String { Paths.fixtures.appendingPathComponent("wechat-v3/wechat_pay_private_key.pem").path }

    /// Usage mistakes are exit 2 before anything is read; what is wrong with a file or the config is exit 1.
    @Test func theCommandLineSaysWhatIsWrongInOneSentence() throws {
        let usage: [([String], String)] = [
            (["sign", "wechat-v3-pay", "--config", Self.demo], "wechat-v3-pay needs --private-key FILE"),
            (["sign", "wechat-v3-refund", "--config", Self.demo, "--private-key", Self.privateKeyFile, "--break", "tamper"],
             "--break tamper does not apply to wechat-v3-refund, whose breakages are signtest, stale, wrong-key, wrong-serial, tampered"),
            (["sign", "unified", "--tenant", "demo", "--config", Self.demo, "--break", "stale"],
             "--break stale does not apply to unified, whose breakages are tamper, wrong-key, strip-sign"),
            (["sign", "unified", "--tenant", "demo", "--config", Self.demo, "--private-key", Self.privateKeyFile],
             "--private-key and --serial are for wechat-v3-pay and wechat-v3-refund, not unified"),
            (["sign", "wechat-v3-pay", "--config", Self.demo, "--private-key", Self.privateKeyFile, "--sign-type", "MD5"],
             "--sign-type and --omit-sign-type are for wechat-pay"),
            (["simulate", "wechat-v3-pay", "--config", Self.demo, "--url", "http://127.0.0.1:1/", "--break", "strip-sign", "--private-key", Self.privateKeyFile],
             "--break strip-sign does not apply to wechat-v3-pay"),
        ]
        for (arguments, message) in usage {
            let result = try ProcessTests.run(arguments)
            #expect(result.status == 2, "\(arguments): \(result.stderr)")
            #expect(result.stderr.contains(message), "\(arguments): \(result.stderr)")
            try Self.expectNoSecrets(result.stdout + result.stderr)
        }
        let dir = try TemporaryDirectory()
        let unifiedOnly = try ProcessTests.writeConfig(dir)
        let unreadable = try ProcessTests.run(["sign", "wechat-v3-pay", "--config", unifiedOnly, "--private-key", dir.file("missing.pem")])
        #expect(unreadable.status == 1)
        #expect(unreadable.stderr == "payhook: cannot read --private-key \(dir.file("missing.pem")): No such file or directory\n")
        let noTable = try ProcessTests.run(["sign", "wechat-v3-pay", "--config", unifiedOnly, "--private-key", Self.privateKeyFile])
        #expect(noTable.status == 1)
        #expect(noTable.stderr == "payhook: the config has no [[wechat_v3]] table\n")
        try Self.expectNoSecrets(noTable.stdout + noTable.stderr)

        // verify of a header block against a config without v3 tenants.
        let built = try CallbackBuilder.build(try Self.spec(.wechatV3Pay), config: Self.config([try Self.tenant()]))
        try dir.write("capture.txt", built.printable + "\n")
        let verified = try ProcessTests.run(["verify", "--config", unifiedOnly, dir.file("capture.txt")])
        #expect(verified.status == 1)
        #expect(verified.stdout.contains("FAILED: the config has no [[wechat_v3]] table"))
    }

    @Test func signsHelpDocumentsTheV3Output() throws {
        let help = try ProcessTests.run(["sign", "--help"])
        #expect(help.status == 0)
        let text = help.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(text.contains("wechat-v3-pay and wechat-v3-refund print the signed headers"))
        #expect(text.contains("the one final line break printed after it is not part of it"))
        #expect(text.contains("--private-key"))
    }
}

/// `payhook sign`, `simulate` and `verify` for v3 as processes, with the demo config's `[[wechat_v3]]` tenant
/// (merchant 1900000100, public-key mode, the APIv3 key of Fixtures/secrets/wechat-v3.key) and the private half
/// of its key.
@Suite(.timeLimit(.minutes(3)))
struct WeChatV3CommandTests {
    static var demo: String { WeChatV3ToolTests.demo }
    static var key: String { WeChatV3ToolTests.privateKeyFile }

    static func sign(_ arguments: [String]) throws -> ProcessTests.Run {
        try ProcessTests.run(["sign"] + arguments + ["--config", demo, "--private-key", key])
    }

    static func expectNoSecrets(_ run: ProcessTests.Run, sourceLocation: SourceLocation = #_sourceLocation) throws {
        try WeChatV3ToolTests.expectNoSecrets(run.stdout + run.stderr, sourceLocation: sourceLocation)
    }

    /// `payhook sign` output checked by an implementation that shares no code with payhook: Python's
    /// `cryptography` verifies the RSA signature over the printed headers and body and opens the resource
    /// (Tests/crosscheck/wechatpay_v3.py, `check`); a tampered one it refuses.
    @Test(arguments: [
        (["wechat-v3-pay", "--amount", "7", "--field", "attach=门店 \"12\""], "TRANSACTION.SUCCESS"),
        (["wechat-v3-refund", "--status", "CLOSED"], "REFUND.CLOSED"),
    ])
    func signedOutputVerifiesIndependently(arguments: [String], eventType: String) throws {
        let signed = try Self.sign(arguments)
        #expect(signed.status == 0, "\(signed.stderr)")
        let dir = try TemporaryDirectory()
        try dir.write("capture", signed.stdout)
        let checked = try Self.python(["check", dir.file("capture")])
        #expect(checked.status == 0, "\(checked.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(checked.stdout.utf8)) as? [String: Any])
        #expect(object["event_type"] as? String == eventType)
        let resource = try #require(object["resource"] as? [String: Any])
        #expect(resource["mchid"] as? String == "1900000100")
        if arguments.contains("7") {
            #expect((resource["amount"] as? [String: Any])?["total"] as? Int == 7)
            #expect(resource["attach"] as? String == "门店 \"12\"")
        }
        let tampered = try Self.sign(arguments + ["--break", "tampered"])
        try dir.write("tampered", tampered.stdout)
        #expect(try Self.python(["check", dir.file("tampered")]).status != 0)
    }

    static func python(_ arguments: [String]) throws -> ProcessTests.Run {
        try ToolTests.python(arguments, script: "Tests/crosscheck/wechatpay_v3.py")
    }


    @Test(arguments: [
        ["wechat-v3-pay"],
        ["wechat-v3-pay", "--amount", "1", "--order-ref", "DEMO-ORDER-7", "--field", "attach=门店 12", "--field", "payer:={\"openid\":\"o-demo\"}"],
        ["wechat-v3-refund"],
        ["wechat-v3-refund", "--status", "ABNORMAL", "--refund-ref", "DEMO-REFUND-7", "--amount", "40"],
    ])
    func signedOutputVerifies(arguments: [String]) throws {
        let signed = try Self.sign(arguments)
        #expect(signed.status == 0, "\(signed.stderr)")
        #expect(signed.stderr.isEmpty)
        #expect(signed.stdout.hasPrefix("Wechatpay-Timestamp: "))
        #expect(signed.stdout.hasSuffix("}}\n"))
        try Self.expectNoSecrets(signed)
        // The printed body is exactly the body signed: the server's code accepts it as read back.
        let parts = signed.stdout.dropLast().components(separatedBy: "\n\n")
        #expect(parts.count == 2)
        let headers = parts[0].split(separator: "\n").map { line -> (name: String, value: String) in
            let colon = line.firstIndex(of: ":")!
            return (String(line[..<colon]), String(line[colon...].dropFirst(2)))
        }
        let config = try demoConfig(spool: "/nonexistent")
        let now = WallClock.milliseconds()
        let verdict = WeChatV3Source(path: "/notify/wechatpay", tenants: config.wechatV3, maxCallbackAgeMilliseconds: config.maxCallbackAgeMilliseconds)
            .process(CallbackRequest(method: "POST", target: "/notify/wechatpay", query: nil, headers: headers, body: Array(parts[1].utf8), remoteAddress: "-", receivedAtMilliseconds: now), nowMilliseconds: now)
        let event = try WeChatV3ToolTests.accepted(verdict)
        #expect(event.tenant == "1900000100")
        if arguments.contains("DEMO-ORDER-7") {
            #expect(event.orderRef == "DEMO-ORDER-7")
            #expect(event.amount == 1)
            #expect(event.resource?["attach"]?.stringValue == "门店 12")
            #expect(event.resource?["payer"]?["openid"]?.stringValue == "o-demo")
        }
        if arguments.contains("ABNORMAL") {
            #expect(event.dedupeKey.text == "wechat.refund/1900000100/DEMO-REFUND-7/ABNORMAL")
            #expect(event.amount == 40)
        }

        let dir = try TemporaryDirectory()
        try dir.write("n.txt", signed.stdout)
        let verified = try ProcessTests.run(["verify", "--config", Self.demo, dir.file("n.txt")])
        #expect(verified.status == 0, "\(verified.stdout)")
        #expect(verified.stdout.contains("the file's final line break is not part of it"))
        #expect(verified.stdout.contains("of mch_id 1900000100 (") && verified.stdout.contains("demo.toml:"))
        #expect(verified.stdout.contains("resource: decrypts with APIv3 key #1 of 1 (***) of mch_id 1900000100"))
        #expect(verified.stdout.contains("verdict: VERIFIED"))
        try Self.expectNoSecrets(verified)
    }

    @Test(arguments: [
        ("signtest", "signature: a WECHATPAY/SIGNTEST/ probe", "probe, refused as WeChat Pay expects"),
        ("stale", "(max_clock_skew_s): OUTSIDE", "beyond max_clock_skew_s"),
        ("wrong-key", "RSA: does NOT verify with PUB_KEY_ID_0000000000000024101100397200000006", "does not verify with the key Wechatpay-Serial names"),
        ("wrong-serial", "names no key of the [[wechat_v3]] tenants on /notify/wechatpay", "has the key Wechatpay-Serial"),
        ("tampered", "hint: the body, Wechatpay-Timestamp or Wechatpay-Nonce changed after signing", "does not verify with the key Wechatpay-Serial names"),
    ])
    func brokenOutputIsExplained(breakage: String, step: String, reason: String) throws {
        let signed = try Self.sign(["wechat-v3-refund", "--break", breakage])
        #expect(signed.status == 0, "\(signed.stderr)")
        try Self.expectNoSecrets(signed)
        let verified = try Self.verifyStandardInput(signed.stdout)
        #expect(verified.status == 1)
        #expect(verified.stdout.contains(step), "\(verified.stdout)")
        let last = verified.stdout.split(separator: "\n").last.map(String.init) ?? ""
        #expect(last.hasPrefix("verdict: REFUSED with 401 (bad_signature): ") && last.contains(reason), "\(last)")
        try Self.expectNoSecrets(verified)
    }

    /// `payhook verify -`: the capture on standard input.
    static func verifyStandardInput(_ capture: String) throws -> ProcessTests.Run {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try payhookBinary())
        process.arguments = ["verify", "--config", demo, "-"]
        let input = Pipe()
        let out = Pipe()
        let err = Pipe()
        process.standardInput = input
        process.standardOutput = out
        process.standardError = err
        try process.run()
        input.fileHandleForWriting.write(Data(capture.utf8))
        try input.fileHandleForWriting.close()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return .init(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
    }

    /// Five sends of one notification: five 204s, one event, which `payhook verify` checks again.
    @Test func simulateStoresOneEventForFiveSendsAndItVerifiesAgain() throws {
        let live = try LiveServer()
        defer { live.stop() }
        let result = try ProcessTests.run([
            "simulate", "wechat-v3-pay", "--config", Self.demo, "--private-key", Self.key, "--url", "http://127.0.0.1:\(live.port)/",
            "--count", "5", "--concurrency", "2",
        ])
        #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
        #expect(result.stdout == (1...5).map { "#\($0) 204\n" }.joined())
        #expect(result.stderr.contains("sent 5, 5 answered success, 0 not"))
        try Self.expectNoSecrets(result)
        #expect(live.events().count == 1)

        let refund = try ProcessTests.run([
            "simulate", "wechat-v3-refund", "--config", Self.demo, "--private-key", Self.key,
            "--url", "http://127.0.0.1:\(live.port)/notify/wechatpay", "--status", "CLOSED",
        ])
        #expect(refund.status == 0, "\(refund.stdout) \(refund.stderr)")
        #expect(live.events().count == 2)

        for name in live.events() {
            let verified = try ProcessTests.run(["verify", "--config", Self.demo, live.spool + "/new/" + name])
            #expect(verified.status == 0, "\(verified.stdout)")
            #expect(verified.stdout.contains("from the event's received_at"))
            #expect(verified.stdout.contains("event id: \(name.dropLast(".json".count))"))
            try Self.expectNoSecrets(verified)
        }
    }

    @Test(arguments: ["signtest", "stale", "wrong-key", "wrong-serial", "tampered"])
    func simulateBrokenNotificationsAreRefused(breakage: String) throws {
        let live = try LiveServer()
        defer { live.stop() }
        let result = try ProcessTests.run([
            "simulate", "wechat-v3-pay", "--config", Self.demo, "--private-key", Self.key, "--url", "http://127.0.0.1:\(live.port)/",
            "--break", breakage,
        ])
        #expect(result.status == 1)
        #expect(result.stdout == "#1 401 {\"code\":\"FAIL\",\"message\":\"verification failed\"}\n", "\(result.stdout)")
        #expect(result.stderr.contains("sent 1, 0 answered success, 1 not"))
        #expect(live.events().isEmpty)
    }
}
