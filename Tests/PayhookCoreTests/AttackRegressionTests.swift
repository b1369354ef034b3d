import Foundation
import PayhookConfig
import PayhookCore
import PayhookCrypto
import PayhookUnified
import PayhookWeChat
import Testing

/// Regression tests for attacks on the sources that once succeeded (README, "Guarantees"; docs/limits.md,
/// "Attacks and what stops them"). Each test fails on the code before its defence.
@Suite struct RefundSpliceTests {
    static let tenant = WeChatTests.tenant

    static func blocks(_ reqInfo: String) -> [[UInt8]] {
        let bytes = Base64.decode(reqInfo) ?? []
        return stride(from: 0, to: bytes.count, by: 16).map { Array(bytes[$0..<$0 + 16]) }
    }

    static func process(_ blocks: [[UInt8]]) -> Verdict.Outcome {
        WeChatTests.process(WeChatTests.refundBody(reqInfo: Base64.encode(blocks.flatMap { $0 })))
    }

    static var genuineKey: String {
        get throws { try #require(WeChatTests.accepted(WeChatTests.process(WeChatTests.refundBody(reqInfo: WeChatTests.encrypt(WeChatTests.refundPlain))))).dedupeKey.text }
    }

    @Test func insertingACopyOfAnyBlockAnywhereIsRefused() throws {
        // The attack: one genuine refund, each of its blocks copied into each position. Before the defence,
        // 57 distinct out_refund_no values came out of V2-R this way, each a new event answered SUCCESS.
        let genuine = Self.blocks(WeChatTests.encrypt(WeChatTests.refundPlain))
        var accepted = 0
        for block in genuine.indices {
            for position in 0...genuine.count {
                var spliced = genuine
                spliced.insert(genuine[block], at: position)
                if case .accepted = Self.process(spliced) { accepted += 1 }
            }
        }
        #expect(accepted == 0)
    }

    @Test func deletingSwappingOrMovingBlocksNeverMakesANewEvent() throws {
        // Without a repeated block, a splice must still decrypt to exactly the documented shape; cutting a block
        // out, swapping two neighbours or moving one elsewhere leaves markup or a malformed field behind.
        let genuine = Self.blocks(WeChatTests.encrypt(WeChatTests.refundPlain))
        let key = try Self.genuineKey
        var variants: [[[UInt8]]] = []
        for index in genuine.indices {
            var cut = genuine
            cut.remove(at: index)
            variants.append(cut)
            if index + 1 < genuine.count {
                var swapped = genuine
                swapped.swapAt(index, index + 1)
                variants.append(swapped)
            }
            for target in genuine.indices where target != index {
                var moved = genuine
                let block = moved.remove(at: index)
                moved.insert(block, at: target)
                variants.append(moved)
            }
        }
        for variant in variants {
            if case .accepted(let event) = Self.process(variant) {
                #expect(event.dedupeKey.text == key, "a spliced req_info made a new event: \(event.dedupeKey.text)")
            }
        }
    }

    @Test func repeatedBlocksAreFoundAnywhere() {
        let a = [UInt8](repeating: 1, count: 16), b = [UInt8](repeating: 2, count: 16)
        #expect(!WeChatFields.repeatsBlock(a + b))
        #expect(WeChatFields.repeatsBlock(a + b + a))
        #expect(WeChatFields.repeatsBlock(b + a + a))
        // Equal halves of different blocks are not a repeat.
        #expect(!WeChatFields.repeatsBlock(Array(a.prefix(8)) + Array(b.prefix(8)) + Array(b.prefix(8)) + Array(a.prefix(8))))
    }
}

/// The decrypted refund document must be exactly what WeChat writes (README, "WeChat Pay v2 notifications").
@Suite struct RefundDocumentTests {
    static let plain = WeChatTests.refundPlain

    static func verdict(_ plaintext: String) -> Verdict.Outcome {
        WeChatTests.process(WeChatTests.refundBody(reqInfo: WeChatTests.encrypt(plaintext)))
    }

    /// The plaintext with one element's text replaced (or the element removed when `text` is nil).
    static func with(_ name: String, _ text: String?) -> String {
        let pattern = try! Regex("<\(name)><!\\[CDATA\\[[^\\]]*\\]\\]></\(name)>")
        return plain.replacing(pattern, with: text.map { "<\(name)><![CDATA[\($0)]]></\(name)>" } ?? "")
    }

    @Test func theGenuineDocumentIsAccepted() throws {
        let event = try #require(WeChatTests.accepted(Self.verdict(Self.plain)))
        #expect(event.dedupeKey.parts == ["10000100", "R20240101000001", "SUCCESS"])
        #expect(event.amount == 101)
    }

    @Test(arguments: WeChatFields.requiredRefundFields)
    func everyRequiredFieldMustBePresent(name: String) {
        #expect(WeChatTests.refusal(Self.verdict(Self.with(name, nil)))?.status == 401)
        #expect(WeChatTests.refusal(Self.verdict(Self.with(name, "")))?.status == 401)
    }

    @Test(arguments: [
        ("transaction_id", "10044007402014090300050921681234"),  // 32 digits: the longest accepted
        ("refund_id", "50000408942018111907"),  // 20 digits: the shortest accepted
        ("out_refund_no", "R-2024_01|01*x@y"),
        ("out_refund_no", (0..<64).map { String($0 % 10) }.joined()),
        ("out_trade_no", String(repeating: "T", count: 32)),
        ("refund_account", "REFUND_SOURCE_UNSETTLED_FUNDS"),
        ("refund_request_source", "VENDOR_PLATFORM"),
        ("settlement_refund_fee", "101"),
        ("success_time", "2024-02-29 23:59:59"),
    ])
    func documentedVariantsAreAccepted(name: String, value: String) {
        #expect(WeChatTests.accepted(Self.verdict(Self.with(name, value))) != nil)
    }

    @Test(arguments: [
        ("transaction_id", "100440074020140903000509216812345"),  // 33 digits
        ("transaction_id", "1004400740x"),
        ("transaction_id", "1004400740201409030"),  // 19 digits: what is left after a block moved out
        ("refund_id", "-1"),
        ("out_refund_no", "R2024 0101"),
        ("out_refund_no", "R2024&x=1"),
        ("out_refund_no", String(repeating: "r", count: 65)),
        ("out_trade_no", String(repeating: "T", count: 33)),
        ("out_trade_no", "订单1"),
        ("total_fee", "01"),
        ("total_fee", "100"),  // below refund_fee 101
        ("refund_fee", "1.01"),
        ("settlement_refund_fee", "102"),  // above refund_fee
        ("settlement_total_fee", "102"),  // above total_fee
        ("refund_status", "success"),
        ("refund_account", "ANY"),
        ("refund_request_source", "api"),
        ("success_time", "2024-01-01T12:00:05"),
        ("success_time", "2024-02-30 12:00:05"),
        ("success_time", "2024-01-01 24:00:00"),
        ("success_time", "20240101120005"),
        ("success_time", nil),  // SUCCESS needs it
        ("refund_recv_accout", "a<b"),
        ("refund_recv_accout", "</refund_recv_accout><x>"),
    ] as [(String, String?)])
    func undocumentedValuesAreRefusedAsUnverified(name: String, value: String?) {
        let refusal = WeChatTests.refusal(Self.verdict(Self.with(name, value)))
        // One status and outcome for every way a req_info fails: no oracle between padding, XML and fields.
        #expect(refusal?.status == 401)
        #expect(refusal?.outcome == "bad_signature")
    }

    @Test func aFieldTwiceIsRefused() {
        let twice = Self.plain.replacing("</root>", with: "<out_refund_no><![CDATA[R2]]></out_refund_no></root>")
        #expect(WeChatTests.refusal(Self.verdict(twice))?.status == 401)
    }

    @Test func aFieldWeChatAddsLaterIsKept() throws {
        let extended = Self.plain.replacing("</root>", with: "<cash_refund_fee><![CDATA[101]]></cash_refund_fee></root>")
        let event = try #require(WeChatTests.accepted(Self.verdict(extended)))
        #expect(event.fields.contains(FormParameter(name: "cash_refund_fee", value: "101")))
    }

    @Test func refundsWithoutSuccessTimeAreAcceptedWhenNotSuccessful() throws {
        for status in ["CHANGE", "REFUNDCLOSE"] {
            let text = Self.with("success_time", nil).replacing("[SUCCESS]", with: "[\(status)]")
            #expect(try #require(WeChatTests.accepted(Self.verdict(text))).status == status)
        }
    }
}

/// `attach=x&bank_type=CFT` in one element signs the same as two elements (README, "WeChat Pay v2 notifications").
@Suite struct WeChatMergeTests {
    static func elements() throws -> [FlatXMLElement] {
        try FlatXML.parse(try WeChatTests.fixture("pay-md5.xml"), root: "xml")
    }

    /// Re-serialises elements, keeping the genuine `sign`.
    static func body(_ elements: [FlatXMLElement]) -> [UInt8] {
        Array(("<xml>" + elements.map { "<\($0.name)><![CDATA[\($0.text)]]></\($0.name)>" }.joined() + "</xml>").utf8)
    }

    /// Folds `absorbed` into the element before it in byte order, as `before&absorbed=value`.
    static func merge(_ absorbed: String, into host: String) throws -> [FlatXMLElement] {
        let all = try elements()
        let value = try #require(all.first { $0.name == absorbed }).text
        return all.filter { $0.name != absorbed }.map { element in
            element.name == host ? FlatXMLElement(name: host, text: element.text + "&\(absorbed)=\(value)") : element
        }
    }

    @Test func mergesStillVerifyButAreRefused() throws {
        let genuine = try Self.elements()
        // The genuine body is accepted, and each merge below signs the same string as it.
        #expect(WeChatTests.accepted(WeChatTests.process(Self.body(genuine))) != nil)
        let tenant = WeChatTests.tenant
        let cases = [
            ("is_subscribe", "fee_type"),  // into a code field
            ("out_trade_no", "openid"),  // into an id field: the dedupe key's own field
            ("total_fee", "time_end"),  // into a time
            ("bank_type", "attach"),  // into free text, dropping a required field
        ]
        for (absorbed, host) in cases {
            let merged = try Self.merge(absorbed, into: host)
            #expect(WeChatSigning.stringToSign(merged, key: "k") == WeChatSigning.stringToSign(genuine, key: "k"))
            #expect((try? WeChatSource.verifyPayment(merged, tenant: tenant).get()) != nil)
            let refusal = WeChatTests.refusal(WeChatTests.process(Self.body(merged)))
            #expect(refusal?.outcome == "rejected", "\(absorbed) into \(host)")
        }
    }

    @Test func freeTextMayHoldSeparators() throws {
        // attach is echoed from the merchant's order verbatim; '&' and '=' there are legitimate.
        let elements = try Self.elements().map { $0.name == "attach" ? FlatXMLElement(name: "attach", text: "a=1&b=2") : $0 }
            .filter { $0.name != "sign" }
        let sign = Hex.encode(Digest.md5(Array(WeChatSigning.stringToSign(elements, key: WeChatTests.key).utf8))).uppercased()
        let body = Self.body(elements + [FlatXMLElement(name: "sign", text: sign)])
        #expect(WeChatTests.accepted(WeChatTests.process(body)) != nil)
    }
}

/// Callbacks older than the ledger's retention minus a day are refused (Config.maxCallbackAge).
@Suite struct ReplayWindowTests {
    static let day: Int64 = 86_400_000

    @Test func theWindowIsTheRetentionMinusOneDay() {
        #expect(Config.defaultMaxCallbackAgeMilliseconds == 6 * Self.day)
        #expect(Config.maxCallbackAge(retentionDays: 30) == 29 * Self.day)
    }

    @Test func unifiedPayTime() throws {
        let payTime = Int64(1_763_700_000_000)
        let query = UnifiedSourceTests.signed(UnifiedSourceTests.good)
        let source = UnifiedSource(path: "/n", tenants: [UnifiedSourceTests.tenant])
        let request = UnifiedSourceTests.request(query)
        // Six days after the payment: still accepted. Six days and a millisecond: refused.
        #expect(WeChatTests.accepted(source.process(request, nowMilliseconds: payTime + 6 * Self.day).outcome) != nil)
        let refusal = WeChatTests.refusal(source.process(request, nowMilliseconds: payTime + 6 * Self.day + 1).outcome)
        #expect(refusal?.outcome == "rejected")
        #expect(refusal?.reason.contains("payTime") == true)
        // A longer retention widens the window.
        let long = UnifiedSource(path: "/n", tenants: [UnifiedSourceTests.tenant], maxCallbackAgeMilliseconds: Config.maxCallbackAge(retentionDays: 30))
        #expect(WeChatTests.accepted(long.process(request, nowMilliseconds: payTime + 20 * Self.day).outcome) != nil)
    }

    @Test func wechatTimeEndAndSuccessTime() throws {
        // V2-2: time_end 20140903131540 Beijing time; V2-R: success_time 2024-01-01 12:00:05 Beijing time.
        let timeEnd = try #require(WeChatFields.beijingTime("20140903131540", dashed: false))
        #expect(Timestamp.rfc3339(milliseconds: timeEnd) == "2014-09-03T05:15:40.000Z")
        let successTime = try #require(WeChatFields.beijingTime("2024-01-01 12:00:05", dashed: true))
        #expect(Timestamp.rfc3339(milliseconds: successTime) == "2024-01-01T04:00:05.000Z")
        let source = WeChatSource(path: "/w", tenants: [WeChatTests.tenant])
        func run(_ body: [UInt8], _ now: Int64) -> Verdict.Outcome {
            source.process(CallbackRequest(method: "POST", target: "/w", query: nil, body: body, remoteAddress: "-", receivedAtMilliseconds: now), nowMilliseconds: now).outcome
        }
        let pay = try WeChatTests.fixture("pay-md5.xml")
        #expect(WeChatTests.accepted(run(pay, timeEnd + 6 * Self.day)) != nil)
        #expect(WeChatTests.refusal(run(pay, timeEnd + 6 * Self.day + 1))?.reason.contains("time_end") == true)
        let refund = WeChatTests.refundBody(reqInfo: WeChatTests.encrypt(WeChatTests.refundPlain))
        #expect(WeChatTests.accepted(run(refund, successTime + 6 * Self.day)) != nil)
        #expect(WeChatTests.refusal(run(refund, successTime + 6 * Self.day + 1))?.reason.contains("success_time") == true)
    }

    @Test func aSuccessfulPaymentWithoutTimeEndIsRefused() throws {
        let elements = try WeChatMergeTests.elements().filter { $0.name != "time_end" && $0.name != "sign" }
        let sign = Hex.encode(Digest.md5(Array(WeChatSigning.stringToSign(elements, key: WeChatTests.key).utf8))).uppercased()
        let body = WeChatMergeTests.body(elements + [FlatXMLElement(name: "sign", text: sign)])
        #expect(WeChatTests.refusal(WeChatTests.process(body))?.reason.contains("time_end") == true)
    }
}

/// `values-sha1` signs values without names, so values can be moved between parameters (README).
@Suite struct RequestKeyMoveTests {
    static func pairs(_ changes: [String: String]) -> [(String, String)] {
        UnifiedSourceTests.good.map { ($0.0, changes[$0.0] ?? $0.1) }
    }

    @Test func requestKeyEqualToAnotherValueIsRefused() {
        // orderSn and requestKey carrying one value: refused under values-sha1, whatever the signature says.
        let query = UnifiedSourceTests.signed(Self.pairs(["requestKey": "SN1"]))
        let refusal = UnifiedSourceTests.refusal(UnifiedSourceTests.process(query))
        #expect(refusal?.outcome == "rejected")
        #expect(refusal?.reason.contains("orderSn") == true)
        // Under salted-sha1 names are signed, so nothing was moved.
        let salted = UnifiedTenant(path: "/n", domainCode: "test", secrets: [Secret("test")], signScheme: .saltedSHA1, line: 1)
        let saltedQuery = UnifiedSourceTests.signed(Self.pairs(["requestKey": "SN1"]), scheme: .saltedSHA1)
        #expect(WeChatTests.accepted(UnifiedSourceTests.process(saltedQuery, tenants: [salted])) != nil)
    }

    @Test func aSwapIsStoppedByTheRequestKeyPattern() throws {
        // The genuine callback, then requestKey and orderSn swapped: the same values, so the same signature, and
        // a new dedupe key. Only a pattern that the merchant's own keys match (and orderSn values do not) tells.
        let genuine = UnifiedSourceTests.signed(Self.pairs([:]))
        let sign = try #require(genuine.split(separator: "&").last).dropFirst(5)
        let swapped = Self.pairs(["requestKey": "SN1", "orderSn": "order-1"])
            .map { "\($0.0)=\(UnifiedSourceTests.encode($0.1))" }.joined(separator: "&") + "&sign=\(sign)"
        #expect(WeChatTests.accepted(UnifiedSourceTests.process(swapped))?.orderRef == "SN1")
        var tenant = UnifiedSourceTests.tenant
        tenant.requestKeyPattern = try RequestKeyPattern("order-[0-9]+")
        #expect(WeChatTests.accepted(UnifiedSourceTests.process(genuine, tenants: [tenant])) != nil)
        let refusal = UnifiedSourceTests.refusal(UnifiedSourceTests.process(swapped, tenants: [tenant]))
        #expect(refusal?.outcome == "rejected")
        #expect(refusal?.reason.contains("request_key_pattern") == true)
    }

    @Test func thePatternMatchesTheWholeKey() throws {
        let pattern = try RequestKeyPattern("order-[0-9]+")
        #expect(pattern.matches("order-12"))
        #expect(!pattern.matches("xorder-12"))
        #expect(!pattern.matches("order-12x"))
    }
}

/// Configuration that would let an attack through is refused at start (`payhook check-config`).
@Suite struct ConfigDefenceTests {
    static func wechat(_ tables: [(path: String, mchID: String, key: String)]) -> String {
        tables.map { "[[wechat]]\npath = \"\($0.path)\"\nmch_id = \"\($0.mchID)\"\napi_key_env = \"\($0.key)\"\n" }.joined(separator: "\n")
    }

    // APIv2 keys are 32 characters (ConfigLoader refuses others).
    static let env = [
        "KEY_A": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\nshared-key-0123456789abcdefghijk", "KEY_B": "shared-key-0123456789abcdefghijk",
        "KEY_C": "cccccccccccccccccccccccccccccccc",
    ]

    static func load(_ text: String) throws(ConfigError) -> ConfigLoader.Loaded {
        try ConfigLoaderTests.loader(env: Self.env).load(text: text, path: "/etc/payhook/p.toml")
    }

    @Test func twoMerchantsOnOnePathWithACommonKeyAreRefused() {
        // KEY_A holds two keys (rotation); its second line is B's key.
        let issues = ConfigLoaderTests.issues(Self.wechat([("/w", "1001", "KEY_A"), ("/w", "1002", "KEY_B")]), env: Self.env)
        #expect(issues.count == 1)
        #expect(issues.first?.hasPrefix("/etc/payhook/p.toml:6:") == true)
        #expect(issues.first?.contains("mch_id '1002' shares an APIv2 key with mch_id '1001' (line 1)") == true)
        // The key itself is never named.
        #expect(issues.first?.contains("shared-key") == false)
    }

    @Test func ownKeysOrOwnPathsAreAccepted() throws {
        #expect(ConfigLoaderTests.issues(Self.wechat([("/w", "1001", "KEY_A"), ("/w", "1002", "KEY_C")]), env: Self.env).isEmpty)
        // On separate paths it is a warning: a replay must also be posted to the other path.
        let loaded = try Self.load(Self.wechat([("/w1", "1001", "KEY_A"), ("/w2", "1002", "KEY_B")]))
        #expect(loaded.warnings.contains { $0.message.contains("shares an APIv2 key") })
    }

    @Test func retentionConflictCapsAndPattern() throws {
        let base = "[[unified]]\npath = \"/u\"\ndomain_code = \"a\"\nsecret_env = \"KEY_C\"\n"
        let defaults = try Self.load(base).config
        #expect(defaults.ledgerRetentionDays == 7)
        #expect(defaults.maxCallbackAgeMilliseconds == 6 * 86_400_000)
        #expect(defaults.maxConflictsPerEvent == 16 && defaults.maxConflicts == 1000)
        let set = try Self.load("ledger_retention_days = 30\nmax_conflicts_per_event = 2\nmax_conflicts = 50\n"
            + base + "request_key_pattern = \"ord-[0-9]{6}\"\n").config
        #expect(set.ledgerRetentionDays == 30 && set.maxConflictsPerEvent == 2 && set.maxConflicts == 50)
        #expect(set.unified.first?.requestKeyPattern?.matches("ord-123456") == true)
        #expect(set.unified.first?.requestKeyPattern?.matches("ord-12345") == false)
        // One day is the replay margin, so a retention of one day would accept nothing.
        #expect(ConfigLoaderTests.issues("ledger_retention_days = 1\n" + base, env: Self.env)
            == ["/etc/payhook/p.toml:1: ledger_retention_days must be between 2 and 36500"])
        #expect(ConfigLoaderTests.issues(base + "request_key_pattern = \"ord-(\"\n", env: Self.env).first?
            .hasPrefix("/etc/payhook/p.toml:5: request_key_pattern is not a valid regular expression") == true)
        #expect(ConfigLoaderTests.issues(base + "request_key_pattern = \".*\"\n", env: Self.env)
            == ["/etc/payhook/p.toml:5: request_key_pattern matches the empty string; it should describe your own keys"])
    }
}
