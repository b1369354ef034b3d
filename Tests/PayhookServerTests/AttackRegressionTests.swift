import Foundation
import InMemoryLogging
import Logging
import PayhookConfig
import PayhookCore
import PayhookCrypto
import PayhookServer
import PayhookSpool
import PayhookSpoolFormat
import PayhookTestSupport
import PayhookTools
import PayhookWeChat
import Synchronization
import Testing

/// Answers carry one short reason per status: no oracle in what a sender reads back (README, "HTTP answers").
@Suite(.timeLimit(.minutes(1)))
struct AnswerOracleTests {
    static func refundBody(_ plaintext: String, key: String = "192006250b4c09247ec02edce69f6a2d", mchID: String = "10000100") -> [UInt8] {
        let reqInfo = Base64.encode(Cipher.aes256ECBEncrypt(key: WeChatSource.refundKey(apiKey: key), plaintext: Array(plaintext.utf8)) ?? [])
        return Array("<xml><return_code>SUCCESS</return_code><appid><![CDATA[wx2421b1c4370ec43b]]></appid><mch_id><![CDATA[\(mchID)]]></mch_id><nonce_str><![CDATA[n]]></nonce_str><req_info><![CDATA[\(reqInfo)]]></req_info></xml>".utf8)
    }

    @Test func everyWeChatVerificationFailureReadsTheSame() throws {
        let live = try LiveServer()
        defer { live.stop() }
        let genuine = try String(contentsOf: Paths.fixtures.appendingPathComponent("wechat/pay-md5.xml"), encoding: .utf8)
        let fieldCheck = "<root><out_refund_no>R1</out_refund_no><refund_status>DONE</refund_status></root>"
        let bodies: [(String, [UInt8])] = [
            ("unknown merchant", Array(genuine.replacing("10000100", with: "10000999").utf8)),
            ("wrong sign", Array(genuine.replacing("1BD3EFE70A2F57EF61421D3AD5BC4865", with: "1BD3EFE70A2F57EF61421D3AD5BC4866").utf8)),
            ("bad padding", Self.refundBody("x", key: "another-key-entirely")),
            ("not XML", Self.refundBody("just some text")),
            ("field check", Self.refundBody(fieldCheck)),
        ]
        var answers: Set<String> = []
        for (name, body) in bodies {
            let reply = try WeChatLiveTests.post(live, body)
            #expect(reply.status == 401, "\(name)")
            answers.insert(reply.body)
        }
        #expect(answers == [WeChatSource.failureXML("verification failed")])
        // The detail is in the log, for the operator.
        let reasons = live.log.entries.compactMap { $0.metadata["reason"].map { "\($0)" } }
        #expect(reasons.contains { $0.contains("bad padding") })
        #expect(reasons.contains { $0.contains("mch_id") })
        #expect(reasons.contains { $0.contains("does not write") })
    }

    @Test func answerReasonsDependOnTheStatusOnly() {
        for status in [400, 401, 404, 405, 408, 413, 503] {
            let reason = Router.answerReason(status)
            #expect(!reason.isEmpty && reason.count < 32)
        }
        #expect(Router.answerReason(400) != Router.answerReason(401))
    }
}

/// `payhook verify` must not show anything that depends on a secret's value.
@Suite struct VerifyLeakTests {
    static func config(secret: String) throws -> Config {
        let text = """
            spool = "spool"
            [[unified]]
            path = "/notify/unified"
            domain_code = "demo"
            secret = "\(secret)"
            """
        return try ConfigLoader(readFile: { _ in [] }, environment: [:]).load(text: text, path: "/x/payhook.toml").config
    }

    @Test func theValuesSha1StringIsTheSameWhereverTheSecretSorts() throws {
        let query = try Paths.fixture("unified/success.query")
        // "!" sorts before every value, "~~~~" after every ASCII one; the old output put *** at each place.
        var outputs: Set<[String]> = []
        for secret in ["!!!!", "5", "Dz", "m", "~~~~", "\u{4E00}"] {
            let report = Explainer.explain(Array(query.utf8), config: try Self.config(secret: secret), nowMilliseconds: 1_767_225_600_000)
            outputs.insert(report.lines.filter { $0.hasPrefix("string to sign") })
            if ["!!!!", "~~~~", "\u{4E00}"].contains(secret) { #expect(!report.lines.joined().contains(secret)) }
        }
        #expect(outputs.count == 1)
    }
}

/// `payhook verify` checks what `serve` would receive, byte for byte.
@Suite struct VerifyUnchangedTests {
    static let demo = try! ConfigFile.load(path: Paths.fixtures.appendingPathComponent("demo.toml").path).config

    @Test func whitespaceAroundAQueryIsNotTrimmedAway() throws {
        let query = try Paths.fixture("unified/success.query")
        #expect(Explainer.explain(Array(query.utf8), config: Self.demo).verified)
        // The line ending a text file has is not part of the capture.
        #expect(Explainer.explain(Array((query + "\n").utf8), config: Self.demo).verified)
        #expect(Explainer.explain(Array((query + "\r\n").utf8), config: Self.demo).verified)
        // Anything else is: no request target holds a space, a tab or a second line.
        for changed in [" " + query, query + " ", query + "\t\n", query + "\n\n", "\n" + query] {
            let report = Explainer.explain(Array(changed.utf8), config: Self.demo)
            #expect(!report.verified, "\(changed.debugDescription)")
            #expect(report.lines.contains { $0.hasPrefix("FAILED") })
        }
    }

    @Test func anXMLCaptureIsCheckedAsServeReceivesIt() throws {
        let body = try String(contentsOf: Paths.fixtures.appendingPathComponent("wechat/pay-md5.xml"), encoding: .utf8)
        let source = PayhookServerSources.wechat(Self.demo)
        for capture in ["\n" + body, body + "\n", "x" + body, body + "x", "\u{0B}" + body] {
            let served = source.process(
                CallbackRequest(method: "POST", target: "/notify/wechat", query: nil, body: Array(capture.utf8), remoteAddress: "-", receivedAtMilliseconds: 0),
                nowMilliseconds: 0).outcome
            let accepted: Bool
            if case .accepted = served { accepted = true } else { accepted = false }
            #expect(Explainer.explain(Array(capture.utf8), config: Self.demo, nowMilliseconds: 0).verified == accepted, "\(capture.prefix(3).debugDescription)")
        }
    }
}

/// The sources `serve` builds, for comparing `verify` with them.
enum PayhookServerSources {
    static func wechat(_ config: Config) -> WeChatSource {
        WeChatSource(path: "/notify/wechat", tenants: config.wechat, maxCallbackAgeMilliseconds: config.maxCallbackAgeMilliseconds)
    }
}

/// Text log lines: request text can never read as another field or another line, and every line is logfmt.
@Suite struct TextLogTests {
    @Test func aHostileReasonStaysOneField() throws {
        let hostile = "mch_id 'x' outcome=accepted http.status=200\nforged line level=info reason=\"a\\\"b\""
        let line = TextLineFormat.line(
            level: .warning, label: "payhook", message: "request",
            metadata: ["outcome": "unknown_tenant", "http.status": "401", "reason": "\(hostile)", "http.path": "/a b\u{7}"],
            milliseconds: 0)
        #expect(line.filter { $0 == "\n" }.count == 1 && line.hasSuffix("\n"))
        #expect(!line.contains("\u{7}"))
        let fields = try #require(Logfmt.fields(line), "not logfmt: \(line)")
        #expect(fields["outcome"] == "unknown_tenant")
        #expect(fields["http.status"] == "401")
        // Escaped, not lost: the reader gets the value back byte for byte.
        #expect(fields["reason"] == hostile)
        #expect(fields["http.path"] == "/a b\u{7}")
        #expect(fields["msg"] == "request")
        #expect(fields["level"] == "warning")
        #expect(fields.count == 8)
    }

    @Test func plainValuesStayBareAndTextIsEscaped() {
        let line = TextLineFormat.line(
            level: .info, label: "payhook", message: "request",
            metadata: ["remote": "[::1]", "event.id": "abc123", "tenant": "微信", "empty": "", "http.status": .stringConvertible(200)],
            milliseconds: 0)
        #expect(line == "ts=1970-01-01T00:00:00.000Z level=info label=payhook msg=request empty=\"\" event.id=abc123 http.status=200 remote=[::1] tenant=\"\\xe5\\xbe\\xae\\xe4\\xbf\\xa1\"\n")
        #expect(Logfmt.fields(line)?["tenant"] == "微信")
        let quoted = TextLineFormat.line(level: .notice, label: "payhook", message: "libmicrohttpd: a=b", metadata: [:], milliseconds: 0)
        #expect(quoted == "ts=1970-01-01T00:00:00.000Z level=notice label=payhook msg=\"libmicrohttpd: a=b\"\n")
        // A key is payhook's own; one that could not stand bare is made safe rather than quoted.
        let key = TextLineFormat.line(level: .info, label: "payhook", message: "m", metadata: ["a b=c": "1"], milliseconds: 0)
        #expect(key == "ts=1970-01-01T00:00:00.000Z level=info label=payhook msg=m a_b_c=1\n")
    }
}

extension LogTests {
    @Test func textLinesCannotBeForgedByRequestText() throws {
        // An unknown domainCode is quoted into the refusal's reason; here it tries to end the field early.
        let forged = "x%20outcome%3Daccepted%20http.status%3D200%0Areason%3Dnone"
        let lines = try Self.serveAndCollect(["--log-format", "text"], targets: ["/notify/unified?domainCode=\(forged)&sign=0"])
        let requests = lines.filter { $0.contains(" msg=request ") }
        #expect(requests.count == 1)
        let request = try #require(requests.first)
        let fields = try #require(Logfmt.fields(request), "not logfmt: \(request)")
        #expect(fields["outcome"] == "unknown_tenant")
        #expect(fields["http.status"] == "401")
        #expect(fields["reason"]?.contains("outcome=accepted") == true)
        #expect(!lines.contains { $0.hasPrefix("reason=none") })
    }
}

/// The real file system, except that the folders in `blocked` (names like "new") refuse new files as a
/// folder owned by another user would: EACCES for creating, linking or probing in them. Tests run as root,
/// for whom chmod would not do.
final class UnwritableFolders: SpoolFileSystem {
    let real = PosixFileSystem()
    let blocked = Mutex<Set<String>>([])

    private func check(_ path: String, folder: Bool = false) throws(SpoolErrno) {
        let parts = path.split(separator: "/")
        let name = folder ? parts.last : parts.dropLast().last
        if let name, blocked.withLock({ $0.contains(String(name)) }) { throw SpoolErrno(EACCES) }
    }

    func open(_ path: String, flags: CInt, mode: mode_t) throws(SpoolErrno) -> CInt {
        if flags & O_CREAT != 0 { try check(path) }
        return try real.open(path, flags: flags, mode: mode)
    }
    func openUnnamed(inDirectory path: String, mode: mode_t) throws(SpoolErrno) -> CInt {
        try check(path, folder: true)
        return try real.openUnnamed(inDirectory: path, mode: mode)
    }
    func link(descriptor fd: CInt, _ newPath: String) throws(SpoolErrno) {
        try check(newPath)
        try real.link(descriptor: fd, newPath)
    }
    func link(_ existing: String, _ newPath: String) throws(SpoolErrno) {
        try check(newPath)
        try real.link(existing, newPath)
    }
    func access(_ path: String, mode: CInt) throws(SpoolErrno) {
        try check(path, folder: true)
        try real.access(path, mode: mode)
    }
    func write(_ fd: CInt, _ bytes: UnsafeRawBufferPointer) throws(SpoolErrno) -> Int { try real.write(fd, bytes) }
    func fsync(_ fd: CInt) throws(SpoolErrno) { try real.fsync(fd) }
    func truncate(_ fd: CInt, length: Int64) throws(SpoolErrno) { try real.truncate(fd, length: length) }
    func close(_ fd: CInt) throws(SpoolErrno) { try real.close(fd) }
    func flock(_ fd: CInt, operation: CInt) throws(SpoolErrno) { try real.flock(fd, operation: operation) }
    func rename(_ oldPath: String, _ newPath: String) throws(SpoolErrno) {
        try check(newPath)
        try real.rename(oldPath, newPath)
    }
    func unlink(_ path: String) throws(SpoolErrno) { try real.unlink(path) }
    func mkdir(_ path: String, mode: mode_t) throws(SpoolErrno) { try real.mkdir(path, mode: mode) }
    func readDirectory(_ path: String) throws(SpoolErrno) -> [String] { try real.readDirectory(path) }
    func readFile(_ path: String) throws(SpoolErrno) -> [UInt8] { try real.readFile(path) }
    func stat(_ path: String) throws(SpoolErrno) -> SpoolFileStatus { try real.stat(path) }
    func availableBytes(_ path: String) throws(SpoolErrno) -> UInt64 { try real.availableBytes(path) }
    func processID() -> CInt { real.processID() }
    func currentTimeMicroseconds() -> UInt64 { real.currentTimeMicroseconds() }
}

/// `/healthz` tells the truth: it fails whenever stores fail (README, "HTTP answers").
@Suite(.timeLimit(.minutes(1)))
struct HealthTruthTests {
    @Test(arguments: ["new", "ids"])
    func startRefusesAFolderItCannotWrite(folder: String) throws {
        let disk = UnwritableFolders()
        _ = disk.blocked.withLock { $0.insert(folder) }
        // The spool is created first, so its folders exist and only writing into them fails.
        let dir = try TemporaryDirectory()
        do {
            let spool = try Spool(directory: dir.file("spool"), inspector: EventFileInspector.payhook, logger: Logger(label: "test"))
            spool.close()
        }
        #expect {
            _ = try LiveServer(dir: dir, fileSystem: disk)
        } throws: { error in
            "\(error)".contains("spool folder \(folder)/ is not writable")
        }
    }

    @Test(arguments: ["new", "ids"])
    func healthFailsWhileStoresFailAndRecovers(folder: String) throws {
        let disk = UnwritableFolders()
        let live = try LiveServer(fileSystem: disk)
        defer { live.stop() }
        #expect(try live.get("/healthz").status == 200)
        _ = disk.blocked.withLock { $0.insert(folder) }
        let query = try Paths.fixture("unified/success.query")
        #expect(try live.get("/notify/unified?" + query).status == 503)
        #expect(try live.get("/healthz").status == 503)
        disk.blocked.withLock { $0.removeAll() }
        #expect(try live.get("/healthz").status == 200)
        #expect(try live.get("/notify/unified?" + query).body == "success")
        #expect(live.events().count == 1)
    }
}

/// A flood of validly signed variants of one genuine callback keeps at most the configured number of audit
/// copies, answers success, and counts the rest (README, "Defences against attacks").
@Suite(.timeLimit(.minutes(1)))
struct ConflictFloodTests {
    @Test func variantsBeyondTheCapsAreCountedNotKept() throws {
        let live = try LiveServer { config in
            config.maxConflictsPerEvent = 3
            config.maxConflicts = 5
        }
        defer { live.stop() }
        let genuine = try Paths.fixture("unified/success.query")
        #expect(try live.get("/notify/unified?" + genuine).body == "success")
        // values-sha1 does not sign names: renaming orderSn keeps the signature and changes the fields.
        for index in 0..<12 {
            let variant = genuine.replacing("orderSn=", with: "orderSn\(index)=")
            let reply = try live.get("/notify/unified?" + variant)
            #expect(reply.status == 200 && reply.body == "success")
        }
        // The same variant again writes nothing new.
        #expect(try live.get("/notify/unified?" + genuine.replacing("orderSn=", with: "orderSn0=")).body == "success")
        #expect(listing(live.spool + "/conflicts").count == 3)
        #expect(live.events().count == 1)
        let metrics = try live.get("/metrics").body
        #expect(metrics.contains("payhook_conflicts_total{disposition=\"kept\"} 3"))
        #expect(metrics.contains("payhook_conflicts_total{disposition=\"dropped\"} 9"))
        #expect(metrics.contains("payhook_conflicts_total{disposition=\"repeated\"} 1"))
        #expect(metrics.contains("outcome=\"conflict_dropped\"} 9"))
        // Only the copies written are error lines.
        #expect(live.log.entries.filter { $0.level == .error }.count == 3)
    }
}

/// `serve` records `ledger_retention_days` in the spool, and `payhook queue gc` honours it: the two sides of
/// one file format, tested together.
@Suite(.timeLimit(.minutes(1)))
struct RetentionHandOverTests {
    @Test func gcRefusesToPruneKeysTheServerStillNeeds() throws {
        let live = try LiveServer { $0.ledgerRetentionDays = 30 }
        defer { live.stop() }
        #expect(try String(contentsOfFile: live.spool + "/.retention", encoding: .utf8) == "\(30 * 86_400)\n")
        let short = try ProcessTests.run(["queue", "gc", "--spool", live.spool, "--older-than", "8d"])
        #expect(short.status == 1)
        #expect(short.stderr.contains("the server runs with a retention of 30d"))
        let enough = try ProcessTests.run(["queue", "gc", "--spool", live.spool, "--dry-run"])
        #expect(enough.status == 0)
    }
}
