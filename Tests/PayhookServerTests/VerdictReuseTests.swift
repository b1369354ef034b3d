import Foundation
import Logging
import PayhookCore
import PayhookHTTP
import PayhookLock
@testable import PayhookServer
import PayhookStore
import PayhookUnified
import Testing

/// A retry that is the same bytes as a request accepted before gets that request's verdict without being parsed
/// and verified again (docs/architecture.md, "Retries that are the same bytes"), and nothing else does.
@Suite struct VerdictReuseTests {
    static let secret = "reuse-secret-3c9d"
    static let path = "/notify/unified"
    static let payTime: Int64 = 1_767_225_600_000
    static let maxAge: Int64 = 2 * 86_400_000

    /// A source that counts the requests it was asked to verify, and forwards to the one it wraps.
    final class Counting: CallbackSource, @unchecked Sendable {
        let wrapped: any CallbackSource
        let calls = Locked(0)
        init(_ wrapped: any CallbackSource) { self.wrapped = wrapped }
        var kind: String { wrapped.kind }
        var method: String { wrapped.method }
        var methods: [String] { wrapped.methods }
        var verdictHeaders: [String] { wrapped.verdictHeaders }
        var successAnswer: Answer { wrapped.successAnswer }
        func failureAnswer(status: Int, reason: String) -> Answer { wrapped.failureAnswer(status: status, reason: reason) }
        func process(_ request: CallbackRequest, nowMilliseconds: Int64) -> Verdict {
            calls.withLock { $0 += 1 }
            return wrapped.process(request, nowMilliseconds: nowMilliseconds)
        }
        var count: Int { calls.withLock { $0 } }
    }

    /// A made-up source whose verdict reads the `X-Tag` header and the body: it accepts anything, offering reuse
    /// for the whole window it is given, unless `offer` is false.
    struct Tagged: CallbackSource {
        var offer = true
        var kind: String { "tagged" }
        var method: String { "POST" }
        var verdictHeaders: [String] { ["X-Tag"] }
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
        let state = Locked((fingerprints: [String: String](), given: [Stored]()))

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

        init(_ sources: [String: any CallbackSource]) {
            var logger = Logger(label: "reuse-test")
            logger.logLevel = .critical
            let clock = self.clock
            router = Router(sources: sources, store: store, logger: logger, clock: { clock.withLock { $0 } })
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

    @Test func aRetryOfTheSameBytesIsNotVerifiedAgainAndCarriesItsOwnArrival() throws {
        let source = Counting(Self.unified())
        let rig = Rig([Self.path: source])
        let target = Self.target("r-1")
        #expect(Self.text(rig.send(target)) == "success")
        #expect(source.count == 1)
        let retry = rig.send(target, from: "10.0.0.9", at: 1_767_225_700.25)
        #expect(retry.status == 200 && Self.text(retry) == "success")
        #expect(source.count == 1, "the retry was parsed and verified again")

        let given = rig.store.given
        try #require(given.count == 2)
        // The retry's event is what verifying it would have made: the same event, with its own arrival.
        let fresh = try #require({ if case .accepted(let e) = Self.unified().process(
            CallbackRequest(method: "GET", target: target, query: String(target.split(separator: "?", maxSplits: 1)[1]),
                            body: [], remoteAddress: "10.0.0.9", receivedAtMilliseconds: 1_767_225_700_250),
            nowMilliseconds: Self.payTime).outcome { return e } else { return nil } }())
        #expect(given[1].event == fresh)
        #expect(given[1].event.remoteAddress == "10.0.0.9")
        #expect(given[1].event.receivedAtMilliseconds == 1_767_225_700_250)
        #expect(given[0].event.remoteAddress == "127.0.0.1")
        // The fingerprint handed over with it is the event's own.
        for stored in given { #expect(stored.fingerprint == stored.event.fingerprint) }
    }

    @Test func anyOtherBytesAreVerifiedAfresh() throws {
        let source = Counting(Self.unified())
        let rig = Rig([Self.path: source])
        let target = Self.target("r-2")
        #expect(Self.text(rig.send(target)) == "success")
        // A forged variant (another amount under the old sign) is checked, and refused.
        let forged = target.replacingOccurrences(of: "money=100", with: "money=999")
        #expect(rig.send(forged).status == 401)
        #expect(source.count == 2)
        // The sign in uppercase is another string of bytes: verified again, and valid.
        let sign = String(target.split(separator: "sign=")[1])
        let upper = target.replacingOccurrences(of: sign, with: sign.uppercased())
        #expect(Self.text(rig.send(upper)) == "success")
        #expect(source.count == 3)
        // A body on the GET is part of the request too.
        #expect(Self.text(rig.send(target, body: "x")) == "success")
        #expect(source.count == 4)
        // The original is still served from its kept verdict.
        #expect(Self.text(rig.send(target)) == "success")
        #expect(source.count == 4)
    }

    @Test func refusalsAreNeverKept() {
        let source = Counting(Self.unified())
        let rig = Rig([Self.path: source])
        let forged = Self.target("r-3", secret: "not-the-secret")
        for _ in 0..<3 { #expect(rig.send(forged).status == 401) }
        #expect(source.count == 3)
        #expect(rig.router.verified.count == 0)
    }

    @Test func theReplayWindowStillEndsAtItsOwnTime() {
        let source = Counting(Self.unified())
        let rig = Rig([Self.path: source])
        let target = Self.target("r-4")
        #expect(Self.text(rig.send(target)) == "success")
        // Last millisecond of the window: still the kept verdict.
        rig.set(Self.payTime + Self.maxAge)
        #expect(Self.text(rig.send(target)) == "success")
        #expect(source.count == 1)
        // One past it: verified again, and refused as too old, as it would be without the kept verdict.
        rig.set(Self.payTime + Self.maxAge + 1)
        #expect(rig.send(target).status == 400)
        #expect(source.count == 2)
        // A clock stepped back before the window's start (payTime more than a day ahead) is refused too.
        rig.set(Self.payTime)
        #expect(Self.text(rig.send(target)) == "success")
        rig.set(Self.payTime - UnifiedFields.payTimeFutureSlackMilliseconds - 1)
        #expect(rig.send(target).status == 400)
    }

    @Test func aReloadForgetsTheKeptVerdicts() {
        let old = Counting(Self.unified(secrets: [Self.secret]))
        let rig = Rig([Self.path: old])
        let target = Self.target("r-5")
        #expect(Self.text(rig.send(target)) == "success")
        #expect(Self.text(rig.send(target)) == "success")
        #expect(old.count == 1)
        // The secret is rotated away: the same bytes must now fail verification.
        let rotated = Counting(Self.unified(secrets: ["a-new-secret"]))
        rig.router.replaceSources([Self.path: rotated])
        #expect(rig.send(target).status == 401)
        #expect(rotated.count == 1)
    }

    @Test func aVerdictFromBeforeAReloadIsNotKeptAfterIt() {
        let rig = Rig([Self.path: Self.unified()])
        let key = VerifiedRequests.Key(
            CallbackRequest(method: "GET", target: "/x", query: nil, body: [], remoteAddress: "", receivedAtMilliseconds: 0),
            headers: [])
        let verdict = Tagged().process(
            CallbackRequest(method: "GET", target: "/x", query: nil, body: [], remoteAddress: "", receivedAtMilliseconds: 0),
            nowMilliseconds: 0)
        guard case .accepted(let event) = verdict.outcome else { Issue.record("not accepted"); return }
        // A request that started before the reload keeps its verdict under the old generation…
        rig.router.verified.keep(
            key, event: event, fingerprint: event.fingerprint, signature: SignatureNotes(),
            reuse: VerdictReuse(notBefore: .min, notAfter: .max), generation: 0)
        rig.router.replaceSources([Self.path: Self.unified()])
        // …which the new generation does not take, and drops.
        #expect(rig.router.verified.verdict(for: key, generation: 1, nowMilliseconds: 0) == nil)
        #expect(rig.router.verified.count == 0)
    }

    @Test func theHeadersASourceReadsArePartOfTheRequest() {
        let source = Counting(Tagged())
        let rig = Rig(["/t": source])
        #expect(Self.text(rig.send("/t", method: "POST", headers: [(name: "X-Tag", value: "a")], body: "b")) == "ok")
        #expect(Self.text(rig.send("/t", method: "POST", headers: [(name: "x-tag", value: "a"), (name: "User-Agent", value: "z")], body: "b")) == "ok")
        #expect(source.count == 1, "the same tag under another spelling of its name, and another unread header")
        #expect(Self.text(rig.send("/t", method: "POST", headers: [(name: "X-Tag", value: "c")], body: "b")) == "ok")
        #expect(source.count == 2)
        #expect(Self.text(rig.send("/t", method: "POST", headers: [(name: "X-Tag", value: "a"), (name: "X-Tag", value: "a")], body: "b")) == "ok")
        #expect(source.count == 3, "a repeated header is another request")
        // Parts are length-delimited: the tag "ab" with an empty body is not the tag "a" with the body "b".
        #expect(Self.text(rig.send("/t", method: "POST", headers: [(name: "X-Tag", value: "ab")], body: "")) == "ok")
        #expect(source.count == 4)
        let given = rig.store.given.map(\.event.status)
        #expect(given == ["a", "a", "c", "a,a", "ab"])
    }

    @Test func aSourceThatOffersNoReuseIsVerifiedEveryTime() {
        let source = Counting(Tagged(offer: false))
        let rig = Rig(["/t": source])
        for _ in 0..<3 { #expect(Self.text(rig.send("/t", method: "POST", body: "b")) == "ok") }
        #expect(source.count == 3)
        #expect(rig.router.verified.count == 0)
    }

    @Test func theTableIsBounded() {
        let verified = VerifiedRequests()
        let event = Event(
            id: "e", source: "s", tenant: "t", orderRef: "", status: "", amount: 0, currency: "", dedupeKey: DedupeKey(source: "s", parts: []),
            verifiedWith: "", receivedAtMilliseconds: 0, remoteAddress: "", fields: [], raw: Event.RawRequest(method: "GET", target: "/", body: ""))
        func key(_ n: Int, size: Int = 0) -> VerifiedRequests.Key {
            VerifiedRequests.Key(
                CallbackRequest(method: "GET", target: "/\(n)" + String(repeating: "x", count: size), query: nil, body: [],
                                remoteAddress: "", receivedAtMilliseconds: 0),
                headers: [])
        }
        let always = VerdictReuse(notBefore: .min, notAfter: .max)
        for n in 0..<VerifiedRequests.maxEntries {
            verified.keep(key(n), event: event, fingerprint: "", signature: SignatureNotes(), reuse: always, generation: 0)
        }
        #expect(verified.count == VerifiedRequests.maxEntries)
        #expect(verified.verdict(for: key(0), generation: 0, nowMilliseconds: 0) != nil)
        // One more starts the table afresh, with that one only.
        verified.keep(key(-1), event: event, fingerprint: "", signature: SignatureNotes(), reuse: always, generation: 0)
        #expect(verified.count == 1)
        #expect(verified.verdict(for: key(0), generation: 0, nowMilliseconds: 0) == nil)
        #expect(verified.verdict(for: key(-1), generation: 0, nowMilliseconds: 0) != nil)
        // So do large requests, long before the count is reached.
        let large = 256 * 1024
        for n in 0..<(VerifiedRequests.maxBytes / (large * 4) + 2) {
            verified.keep(key(n, size: large), event: event, fingerprint: "", signature: SignatureNotes(), reuse: always, generation: 0)
        }
        #expect(verified.count < VerifiedRequests.maxBytes / (large * 4) + 1)
    }
}
