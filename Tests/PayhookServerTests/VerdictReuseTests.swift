import Foundation
import Logging
import PayhookAlipay
import PayhookCore
import PayhookHTTP
import PayhookLock
@testable import PayhookServer
@_spi(Testing) import PayhookSpool
import PayhookSpoolFormat
import PayhookTestSupport
import PayhookStore
import PayhookUnified
import PayhookWeChat
import PayhookXxPay
import Testing

/// A retry that is the same bytes as an earlier retry, whose event the store holds, is answered as a duplicate
/// without being parsed and verified again (docs/architecture.md, "Retries that are the same bytes"), and
/// nothing else is.
@Suite struct VerdictReuseTests {
    static let secret = "reuse-secret-3c9d"
    static let path = "/notify/unified"
    static let payTime: Int64 = 1_767_225_600_000
    static let maxAge: Int64 = 2 * 86_400_000

    /// A made-up source whose verdict reads the `X-Tag` header and the body: it accepts anything, offering reuse
    /// for all time, unless `offer` is false (then it names no headers either, as a source that never offers
    /// reuse does).
    struct Tagged: CallbackSource {
        var offer = true
        var kind: String { "tagged" }
        var method: String { "POST" }
        var verdictHeaders: [String]? { offer ? ["X-Tag"] : nil }
        var successAnswer: Answer { .text(200, "ok") }
        func failureAnswer(status: Int, reason: String) -> Answer { .text(status, "no") }
        func process(_ request: CallbackRequest, nowMilliseconds: Int64) -> Verdict {
            let tag = request.headerValues("X-Tag").joined(separator: ",")
            let body = String(decoding: request.body, as: UTF8.self)
            let key = DedupeKey(source: "tagged", parts: [tag, body])
            let event = Event(
                id: Hex.encode(Array(key.text.utf8.prefix(32))), source: "tagged", tenant: "t", orderRef: body, status: tag,
                amount: 1, currency: "CNY", dedupeKey: key, verifiedWith: "none",
                receivedAtMilliseconds: request.receivedAtMilliseconds, remoteAddress: request.remoteAddress,
                fields: [FormParameter(name: "tag", value: tag), FormParameter(name: "body", value: body)],
                raw: Event.RawRequest(method: request.method, target: request.target, body: body))
            var verdict = Verdict.accepted(event)
            if offer { verdict.reuse = VerdictReuse(notBefore: .min, notAfter: .max) }
            return verdict
        }
    }

    /// An in-memory store that records what it was given, and checks that a fingerprint handed to it is the
    /// event's own.
    final class Recording: EventStore, @unchecked Sendable {
        struct Stored { let event: Event; let fingerprint: String }
        let state = Locked((fingerprints: [String: String](), given: [Stored](), asked: 0))
        /// Whether it tells a duplicate at once (``EventStore/isStoredDuplicate(id:fingerprint:)``), as the spool does.
        var answersAtOnce = false

        func isStoredDuplicate(id: String, fingerprint: String) -> Bool {
            guard answersAtOnce else { return false }
            return state.withLock { state in
                state.asked += 1
                return state.fingerprints[id] == fingerprint
            }
        }

        func store(_ event: Event) throws(StoreError) -> StoreOutcome {
            record(event, fingerprint: event.fingerprint)
        }

        func store(_ event: Event, fingerprint: String, completion: @escaping @Sendable (Result<StoreOutcome, StoreError>) -> Void) {
            completion(.success(record(event, fingerprint: fingerprint)))
        }

        private func record(_ event: Event, fingerprint: String) -> StoreOutcome {
            state.withLock { state in
                state.given.append(Stored(event: event, fingerprint: fingerprint))
                guard let known = state.fingerprints[event.id] else {
                    state.fingerprints[event.id] = fingerprint
                    return .stored
                }
                return known == fingerprint ? .duplicate : .conflict(auditCopy: nil, disposition: .dropped)
            }
        }

        var given: [Stored] { state.withLock { $0.given } }
        var asked: Int { state.withLock { $0.asked } }
        func probe() throws(StoreError) {}
        var unhealthyReason: String? { nil }
        func counts() -> StoreCounts { StoreCounts() }
        func census() -> QueueCensus? { nil }
        func recordRetention(seconds: Int) throws(StoreError) {}
        func close() {}
    }

    /// A router over `sources` on a recording store, with a clock the test sets.
    struct Rig {
        let router: Router
        let store = Recording()
        let clock = Locked(VerdictReuseTests.payTime)

        init(_ sources: [String: any CallbackSource], answersAtOnce: Bool = true) {
            var logger = Logger(label: "reuse-test")
            logger.logLevel = .critical
            let clock = self.clock
            store.answersAtOnce = answersAtOnce
            router = Router(sources: sources, store: store, logger: logger, clock: { clock.withLock { $0 } })
        }

        /// The value of `payhook_requests_total` for one outcome on the unified source's tenant `demo`.
        func requests(_ outcome: String) -> Int {
            let prefix = "payhook_requests_total{source=\"unified\",tenant=\"demo\",outcome=\"\(outcome)\"} "
            let line = router.metrics.render().split(separator: "\n").first { $0.hasPrefix(prefix) }
            return line.flatMap { Int($0.dropFirst(prefix.count)) } ?? 0
        }

        func set(_ now: Int64) { clock.withLock { $0 = now } }

        func send(
            _ target: String, method: String = "GET", headers: [(name: String, value: String)] = [], body: String = "",
            from remote: String = "127.0.0.1", at seconds: Double = 1_767_225_600
        ) -> HTTPResponse {
            router.handle(HTTPRequest(
                head: HTTPRequestHead(
                    method: method, target: target, headers: headers, remoteAddress: remote,
                    receivedAt: Date(timeIntervalSince1970: seconds)),
                body: Array(body.utf8)))
        }
    }

    static func unified(secrets: [String] = [secret]) -> UnifiedSource {
        let tenant = UnifiedTenant(
            path: path, domainCode: "demo", secrets: secrets.map(Secret.init), signScheme: .valuesSHA1, line: 1)
        return UnifiedSource(path: path, tenants: [tenant], maxCallbackAgeMilliseconds: maxAge)
    }

    /// A genuine unified callback target for `requestKey`, signed with `secret`.
    static func target(_ requestKey: String, secret: String = secret, money: String = "100") -> String {
        let parameters = [
            FormParameter(name: "money", value: money), FormParameter(name: "requestKey", value: requestKey),
            FormParameter(name: "payTime", value: String(payTime)), FormParameter(name: "orderSn", value: "sn-\(requestKey)"),
            FormParameter(name: "payTypeCode", value: "Wechat"), FormParameter(name: "currencyType", value: "CNY"),
            FormParameter(name: "payStatus", value: "SUCCESSPAY"), FormParameter(name: "domainCode", value: "demo"),
        ]
        let sign = UnifiedSigner.sign(parameters, scheme: .valuesSHA1, secret: secret)
        return path + "?" + UnifiedSigner.query(parameters + [FormParameter(name: "sign", value: sign)])
    }

    static func text(_ response: HTTPResponse) -> String { String(decoding: response.body, as: UTF8.self) }

    /// The first delivery is stored and the second found a duplicate, both verified; from the third on, the
    /// kept verdict answers, with the same answer, log outcome and metrics as a verified duplicate.
    @Test func aRetryOfAStoredEventIsAnsweredWithoutVerifyingItAgain() throws {
        let source = CountingSource(Self.unified())
        let rig = Rig([Self.path: source])
        let target = Self.target("r-1")
        #expect(Self.text(rig.send(target)) == "success")
        #expect(rig.router.verified.count == 0, "a callback sent once is kept")
        #expect(Self.text(rig.send(target)) == "success")
        #expect(source.count == 2)
        #expect(rig.router.verified.count == 1)
        for _ in 0..<3 {
            let retry = rig.send(target, from: "10.0.0.9")
            #expect(retry.status == 200 && Self.text(retry) == "success")
        }
        #expect(source.count == 2, "a retry was parsed and verified again")
        #expect(rig.store.given.count == 2, "a duplicate the store knew at once reached its store call")
        #expect(rig.store.asked == 3)
        #expect(rig.requests("accepted") == 1)
        #expect(rig.requests("duplicate") == 4)
        #expect(rig.router.metrics.render().contains(
            "payhook_verified_secret_position_total{source=\"unified\",tenant=\"demo\",position=\"1\"} 5"))
        // The fingerprint handed to the store with each event is the event's own.
        for stored in rig.store.given { #expect(stored.fingerprint == stored.event.fingerprint) }
    }

    /// Where the store cannot tell a duplicate at once (the database store), every request is verified.
    @Test func aStoreThatCannotTellAtOnceGetsEveryRequestVerified() {
        let source = CountingSource(Self.unified())
        let rig = Rig([Self.path: source], answersAtOnce: false)
        let target = Self.target("r-2")
        for _ in 0..<4 { #expect(Self.text(rig.send(target)) == "success") }
        #expect(source.count == 4)
        #expect(rig.store.given.count == 4)
        #expect(rig.requests("duplicate") == 3)
    }

    /// A kept verdict whose event the store now holds with another fingerprint (another variant stored first)
    /// is not a duplicate there: the request is verified and stored, and the conflict answered as one.
    @Test func aKeptVerdictTheStoreDoesNotConfirmGoesTheUsualWay() {
        let source = CountingSource(Self.unified())
        let rig = Rig([Self.path: source])
        let target = Self.target("r-3")
        for _ in 0..<2 { #expect(Self.text(rig.send(target)) == "success") }
        let id = rig.store.given[0].event.id
        rig.store.state.withLock { $0.fingerprints[id] = "another" }
        #expect(Self.text(rig.send(target)) == "success")
        #expect(source.count == 3)
        #expect(rig.store.given.count == 3)
        #expect(rig.requests("conflict_dropped") == 1)
    }

    /// The spool tells a duplicate at once only when its ledger entry is durable with the same fingerprint;
    /// in every other case, errors included, it says false and leaves the answer to its store.
    @Test func theSpoolTellsADuplicateOnlyWhenItIsDurable() throws {
        let dir = try TemporaryDirectory()
        let spool = try Spool(
            directory: dir.file("spool"), inspector: EventFileInspector.payhook,
            logger: Logger(label: "reuse-test") { _ in SwiftLogNoOpLogHandler() })
        let store = SpoolEventStore(spool)
        func event(_ key: String, money: String = "100") throws -> Event {
            let target = Self.target(key, money: money)
            let request = CallbackRequest(
                method: "GET", target: target, query: String(target.split(separator: "?", maxSplits: 1)[1]), body: [],
                remoteAddress: "127.0.0.1", receivedAtMilliseconds: Self.payTime)
            guard case .accepted(let event) = Self.unified().process(request, nowMilliseconds: Self.payTime).outcome else {
                throw Failure("not accepted")
            }
            return event
        }
        let first = try event("s-1")
        #expect(!store.isStoredDuplicate(id: first.id, fingerprint: first.fingerprint))
        #expect(try store.store(first) == .stored)
        #expect(store.isStoredDuplicate(id: first.id, fingerprint: first.fingerprint))
        let other = try event("s-1", money: "200")
        #expect(other.id == first.id)
        #expect(!store.isStoredDuplicate(id: other.id, fingerprint: other.fingerprint))

        // While a store of an id is in flight, its retry is not known at once.
        spool.suspendCommits()
        let second = try event("s-2")
        let done = Handoff<Result<StoreOutcome, StoreError>>()
        store.store(second) { done.give($0) }
        #expect(!store.isStoredDuplicate(id: second.id, fingerprint: second.fingerprint))
        spool.resumeCommits()
        #expect(try done.wait().get() == .stored)
        #expect(store.isStoredDuplicate(id: second.id, fingerprint: second.fingerprint))

        // A closed spool answers false, not an error or a crash: the store call that follows reports it.
        store.close()
        #expect(!store.isStoredDuplicate(id: first.id, fingerprint: first.fingerprint))
        #expect(throws: StoreError.self) { try store.store(first) }
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    @Test func anyOtherBytesAreVerifiedAfresh() throws {
        let source = CountingSource(Self.unified())
        let rig = Rig([Self.path: source])
        let target = Self.target("r-4")
        for _ in 0..<2 { #expect(Self.text(rig.send(target)) == "success") }
        #expect(source.count == 2)
        // A forged variant (another amount under the old sign) is checked, and refused.
        let forged = target.replacingOccurrences(of: "money=100", with: "money=999")
        for _ in 0..<2 { #expect(rig.send(forged).status == 401) }
        #expect(source.count == 4)
        // The sign in uppercase is another string of bytes: verified again, valid, and a duplicate of the
        // stored event already, so its verdict is kept from then on.
        let sign = String(target.split(separator: "sign=")[1])
        let upper = target.replacingOccurrences(of: sign, with: sign.uppercased())
        #expect(Self.text(rig.send(upper)) == "success")
        #expect(source.count == 5)
        // A body on the GET is part of the request too.
        #expect(Self.text(rig.send(target, body: "x")) == "success")
        #expect(source.count == 6)
        // The original and its uppercase twin are answered from their kept verdicts.
        #expect(Self.text(rig.send(target)) == "success")
        #expect(Self.text(rig.send(upper)) == "success")
        #expect(source.count == 6)
    }

    @Test func refusalsAreNeverKept() {
        let source = CountingSource(Self.unified())
        let rig = Rig([Self.path: source])
        let forged = Self.target("r-5", secret: "not-the-secret")
        for _ in 0..<3 { #expect(rig.send(forged).status == 401) }
        #expect(source.count == 3)
        #expect(rig.router.verified.count == 0)
    }

    @Test func theReplayWindowStillEndsAtItsOwnTime() {
        let source = CountingSource(Self.unified())
        let rig = Rig([Self.path: source])
        let target = Self.target("r-6")
        for _ in 0..<2 { #expect(Self.text(rig.send(target)) == "success") }
        // Last millisecond of the window: still the kept verdict.
        rig.set(Self.payTime + Self.maxAge)
        #expect(Self.text(rig.send(target)) == "success")
        #expect(source.count == 2)
        // One past it: verified again, and refused as too old, as it would be without the kept verdict.
        rig.set(Self.payTime + Self.maxAge + 1)
        #expect(rig.send(target).status == 400)
        #expect(source.count == 3)
        // The refusal dropped the kept verdict: back inside the window, the next retry is verified and kept again.
        rig.set(Self.payTime)
        for _ in 0..<2 { #expect(Self.text(rig.send(target)) == "success") }
        #expect(source.count == 4)
        // Before the window's start (a clock stepped back, payTime more than a day ahead): refused too.
        rig.set(Self.payTime - UnifiedFields.payTimeFutureSlackMilliseconds)
        #expect(Self.text(rig.send(target)) == "success")
        #expect(source.count == 4)
        rig.set(Self.payTime - UnifiedFields.payTimeFutureSlackMilliseconds - 1)
        #expect(rig.send(target).status == 400)
        #expect(source.count == 5)
    }

    @Test func aReloadForgetsTheKeptVerdicts() {
        let old = CountingSource(Self.unified(secrets: [Self.secret]))
        let rig = Rig([Self.path: old])
        let target = Self.target("r-7")
        for _ in 0..<3 { #expect(Self.text(rig.send(target)) == "success") }
        #expect(old.count == 2)
        // The secret is rotated away: the same bytes must now fail verification.
        let rotated = CountingSource(Self.unified(secrets: ["a-new-secret"]))
        rig.router.replaceSources([Self.path: rotated])
        #expect(rig.send(target).status == 401)
        #expect(rotated.count == 1)
    }

    static let sampleLabels = EventLabels(Event(
        id: "e", source: "s", tenant: "t", orderRef: "", status: "", amount: 0, currency: "",
        dedupeKey: DedupeKey(source: "s", parts: []), verifiedWith: "", receivedAtMilliseconds: 0, remoteAddress: "",
        fields: [], raw: Event.RawRequest(method: "GET", target: "/", body: "")))

    static func key(_ target: String) -> VerifiedRequests.Key {
        VerifiedRequests.Key(
            CallbackRequest(method: "GET", target: target, query: nil, body: [], remoteAddress: "", receivedAtMilliseconds: 0),
            headers: [])
    }

    @Test func aVerdictFromBeforeAReloadIsNotKeptAfterIt() {
        let rig = Rig([Self.path: Self.unified()])
        rig.router.replaceSources([Self.path: Self.unified()])
        // A request that started before the reload finishes after it, once the table was emptied, and keeps
        // its verdict under the old generation…
        rig.router.verified.keep(
            Self.key("/x"), labels: Self.sampleLabels, fingerprint: "f", signature: SignatureNotes(),
            reuse: VerdictReuse(notBefore: .min, notAfter: .max), generation: 0)
        #expect(rig.router.verified.count == 1)
        // …which the new generation does not take, and drops.
        #expect(rig.router.verified.verdict(for: Self.key("/x"), generation: 1, nowMilliseconds: 0) == nil)
        #expect(rig.router.verified.count == 0)
    }

    @Test func theHeadersASourceReadsArePartOfTheRequest() {
        let source = CountingSource(Tagged())
        let rig = Rig(["/t": source])
        func send(_ headers: [(name: String, value: String)], _ body: String) {
            #expect(Self.text(rig.send("/t", method: "POST", headers: headers, body: body)) == "ok")
        }
        for _ in 0..<2 { send([(name: "X-Tag", value: "a")], "b") }
        #expect(source.count == 2)
        send([(name: "x-tag", value: "a"), (name: "User-Agent", value: "z")], "b")
        #expect(source.count == 2, "the same tag under another spelling of its name, and another unread header")
        send([(name: "X-Tag", value: "c")], "b")
        #expect(source.count == 3)
        send([(name: "X-Tag", value: "a"), (name: "X-Tag", value: "a")], "b")
        #expect(source.count == 4, "a repeated header is another request")
        // Parts are length-delimited: the tag "ab" with an empty body is not the tag "a" with the body "b".
        send([(name: "X-Tag", value: "ab")], "")
        #expect(source.count == 5)
        #expect(rig.store.given.map(\.event.status) == ["a", "a", "c", "a,a", "ab"])
    }

    @Test func aSourceThatOffersNoReuseIsVerifiedEveryTime() {
        let source = CountingSource(Tagged(offer: false))
        let rig = Rig(["/t": source])
        for _ in 0..<3 { #expect(Self.text(rig.send("/t", method: "POST", body: "b")) == "ok") }
        #expect(source.count == 3)
        #expect(rig.router.verified.count == 0)
    }

    /// Alipay, XxPay, Jeepay and WeChat Pay v2 offer reuse too: a real notification of each, retried, is
    /// verified twice and then answered from its kept verdict with its sender's own success answer; the same
    /// notification with one signed value changed is refused every time, and its clock's window ends where its
    /// replay check does.
    @Test func formAndXMLSourcesReuseTheirVerdictsToo() throws {
        // The tenants and paths of the real vectors (ProviderLiveTests.swift).
        let tenants = try Providers.tenants()
        let (a, x, j) = (Providers.alipayPath, Providers.xxpayPath, Providers.jeepayPath)
        let alipay = AlipaySource(path: a, tenants: tenants.alipay, maxCallbackAgeMilliseconds: Self.maxAge)
        let xxpay = XxPaySource(path: x, tenants: tenants.xxpay, maxCallbackAgeMilliseconds: Self.maxAge)
        let jeepay = JeepaySource(path: j, tenants: tenants.jeepay, maxCallbackAgeMilliseconds: Self.maxAge)
        let wechat = WeChatSource(path: "/w", tenants: [WeChatTenant(
            path: "/w", mchID: "10000100", appID: nil, keys: [Secret("192006250b4c09247ec02edce69f6a2d")],
            signTypes: [.md5, .hmacSHA256], line: 1)], maxCallbackAgeMilliseconds: Self.maxAge)
        let text = { (name: String) throws -> String in String(decoding: try Providers.fixture(name), as: UTF8.self) }
        // Each: the source, its path, the target and body of a genuine notification, one signed value of it
        // and a forgery of that value, the notification's own time, and the sender's success answer.
        let cases: [(source: any CallbackSource, path: String, target: String, body: String, value: String, forged: String,
                     time: Int64, answer: String)] = [
            (alipay, a, a, try text("alipay/a1-yuque-trade.form"), "total_amount=0.10", "total_amount=0.11",
             try #require(BeijingTime.milliseconds("2019-08-15 15:56:25", dashed: true)), "success"),
            (xxpay, x, x + "?" + (try text("xxpay/x-1-generated.query")), "", "&amount=1&", "&amount=2&", 1_514_779_200_000, "success"),
            (jeepay, j, j, try text("jeepay/j1-real-notify.form"), "&amount=1&", "&amount=2&", 1_756_625_913_248, "SUCCESS"),
            (wechat, "/w", "/w", try text("wechat/pay-md5.xml"), "<total_fee><![CDATA[101]]>", "<total_fee><![CDATA[102]]>",
             try #require(BeijingTime.milliseconds("20140903131540", dashed: false)), WeChatSource.successXML),
        ]
        for item in cases {
            let source = CountingSource(item.source)
            let rig = Rig([item.path: source])
            rig.set(item.time)
            for _ in 0..<4 {
                let response = rig.send(item.target, method: "POST", body: item.body)
                #expect(response.status == 200 && Self.text(response) == item.answer, "\(item.path)")
            }
            #expect(source.count == 2, "\(item.path): a retry was verified again")
            #expect(rig.store.given.count == 2)
            // A forgery under the old signature: checked, and refused, every time.
            for _ in 0..<2 {
                let response = item.body.isEmpty
                    ? rig.send(item.target.replacingOccurrences(of: item.value, with: item.forged), method: "POST")
                    : rig.send(item.target, method: "POST", body: item.body.replacingOccurrences(of: item.value, with: item.forged))
                #expect(response.status == 401, "\(item.path)")
            }
            #expect(source.count == 4)
            // Past the replay window the kept verdict is not used: verified again, and refused as too old.
            rig.set(item.time + Self.maxAge + 1)
            #expect(rig.send(item.target, method: "POST", body: item.body).status == 400, "\(item.path)")
            #expect(source.count == 5)
        }
    }

    @Test func theTableIsBounded() {
        let verified = VerifiedRequests()
        let always = VerdictReuse(notBefore: .min, notAfter: .max)
        func keep(_ target: String) {
            verified.keep(Self.key(target), labels: Self.sampleLabels, fingerprint: "f", signature: SignatureNotes(), reuse: always, generation: 0)
        }
        for n in 0..<VerifiedRequests.maxEntries { keep("/\(n)") }
        #expect(verified.count == VerifiedRequests.maxEntries)
        #expect(verified.verdict(for: Self.key("/0"), generation: 0, nowMilliseconds: 0) != nil)
        // One more starts the table afresh, with that one only.
        keep("/new")
        #expect(verified.count == 1)
        #expect(verified.verdict(for: Self.key("/0"), generation: 0, nowMilliseconds: 0) == nil)
        #expect(verified.verdict(for: Self.key("/new"), generation: 0, nowMilliseconds: 0) != nil)
        // So do large requests, long before the count is reached.
        let large = 256 * 1024
        let fit = VerifiedRequests.maxBytes / large
        for n in 0..<(fit + 2) { keep("/\(n)" + String(repeating: "x", count: large)) }
        #expect(verified.count < fit)
    }
}
