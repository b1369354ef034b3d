import Foundation
public import Logging
public import PayhookCore
public import PayhookHTTP
import PayhookLock
public import PayhookStore

/// Maps each request to a source, stores what the source accepts, and answers in the sender's format.
///
/// docs/contract.md §3: success only once the event is durable or was stored before; 400 malformed, 401 bad
/// signature or unknown tenant, 404 unknown path, 405 wrong method, 413 too large, 503 could not store.
public final class Router: HTTPHandler {
    public static let healthPath = "/healthz"
    public static let metricsPath = "/metrics"

    /// The sources by path. SIGHUP replaces the whole table at once (``replaceSources(_:)``, docs/reload.md):
    /// each request reads it once, so a request in flight finishes with the sources it started with.
    private let table: Locked<(sources: [String: any CallbackSource], generation: UInt64)>
    /// The accepted verdicts of recent requests, for retries that are the same bytes (``VerifiedRequests``).
    let verified = VerifiedRequests()
    let store: any EventStore
    let logger: Logger
    let metrics: Metrics
    let clock: @Sendable () -> Int64

    /// - Parameter clock: "now" in Unix milliseconds, for the semantic checks (tests pin it).
    public init(
        sources: [String: any CallbackSource], store: any EventStore, logger: Logger, metrics: Metrics = Metrics(),
        clock: @escaping @Sendable () -> Int64 = Router.wallClock
    ) {
        self.table = Locked((sources: sources, generation: 0))
        self.store = store
        self.logger = logger
        self.metrics = metrics
        self.clock = clock
    }

    /// The source serving `path`, looked up under the lock: copying the whole table out first would retain and
    /// release it for every request.
    func source(for path: String) -> (any CallbackSource)? {
        table.withLock { $0.sources[path] }
    }

    /// ``source(for:)`` with the table's generation, which tells the verdicts its sources made from older ones.
    private func route(_ path: String) -> (source: any CallbackSource, generation: UInt64)? {
        table.withLock { table in table.sources[path].map { ($0, table.generation) } }
    }

    /// Swaps in a new table of sources: the next request uses it, requests in flight keep the old one. Verdicts
    /// the old sources made are not reused: a reload may have changed a tenant's secrets or checks.
    public func replaceSources(_ sources: [String: any CallbackSource]) {
        table.withLock { table in
            table.sources = sources
            table.generation &+= 1
        }
        verified.removeAll()
    }

    public static let wallClock: @Sendable () -> Int64 = { Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) }

    /// Routing decisions that need no body: unknown paths and wrong methods are answered before the body
    /// is read.
    public func head(_ head: HTTPRequestHead) -> HTTPResponse? {
        if head.path == Self.healthPath || head.path == Self.metricsPath {
            return head.method == "GET" || head.method == "HEAD" ? nil : Self.plain(405, "method not allowed\n", allow: "GET")
        }
        guard let source = source(for: head.path) else {
            log(head, outcome: "not_found", status: 404, level: .info, reason: "no route for this path")
            metrics.request(source: "", tenant: "", outcome: "not_found", route: "", seconds: nil)
            return Self.plain(404, "not found\n")
        }
        guard source.methods.contains(head.method) else {
            let allowed = source.methods.joined(separator: ", ")
            log(head, outcome: "wrong_method", status: 405, level: .info, reason: "\(allowed) expected")
            metrics.request(source: source.kind, tenant: "", outcome: "wrong_method", route: source.kind, seconds: nil)
            var response = Self.response(source.failureAnswer(status: 405, reason: Self.answerReason(405)))
            response.headers.append((name: "Allow", value: allowed))
            return response
        }
        return nil
    }

    public func refusal(_ status: Int, for head: HTTPRequestHead) -> HTTPResponse {
        let (outcome, reason): (String, String) =
            switch status {
            case 413: ("too_large", "body larger than max_body_bytes")
            case 408: ("deadline", "request not complete within request_deadline_s")
            case 400: ("malformed", "malformed request framing (Content-Length, Transfer-Encoding or Host)")
            case 429: ("too_many_requests", "more than max_connections_per_ip requests in flight from one forwarded address")
            case 503: ("shutting_down", "payhook is shutting down")
            default: ("refused", "refused by the listener")
            }
        log(head, outcome: outcome, status: status, level: .notice, reason: reason)
        let source = source(for: head.path)
        let kind = source?.kind ?? ""
        metrics.request(source: kind, tenant: "", outcome: outcome, route: kind, seconds: Self.seconds(since: head))
        if let source {
            return Self.response(source.failureAnswer(status: status, reason: Self.answerReason(status)))
        }
        return Self.plain(status, Self.answerReason(status) + "\n")
    }

    public func handle(_ request: HTTPRequest) -> HTTPResponse {
        let response = Handoff<HTTPAnswer>()
        handle(request) { response.give($0) }
        return response.wait()()
    }

    /// The store's answer may come later, from its writer thread (a database's group commit): the listener
    /// thread is then free for other connections meanwhile, and what follows the store (metrics, the log line,
    /// the answer's bytes) runs when the answer is made, on a listener thread again (HTTPHandler).
    public func handle(_ request: HTTPRequest, answer: @escaping @Sendable (@escaping HTTPAnswer) -> Void) {
        let head = request.head
        if head.path == Self.healthPath {
            let response: HTTPResponse
            do {
                try store.probe()
                response = Self.plain(200, "ok")
            } catch {
                logger.error("health probe failed", metadata: ["error": "\(error)"])
                response = Self.plain(503, "spool not writable\n", retryAfter: true)
            }
            answer { response }
            return
        }
        if head.path == Self.metricsPath {
            let response = HTTPResponse(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: metrics.render())
            answer { response }
            return
        }
        guard let (source, generation) = route(head.path) else {
            answer { Self.plain(404, "not found\n") }
            return
        }
        let started = ContinuousClock.now
        let callback = CallbackRequest(
            method: head.method, target: head.target, query: head.query, headers: head.headers, body: request.body,
            remoteAddress: head.remoteAddress,
            receivedAtMilliseconds: Int64((head.receivedAt.timeIntervalSince1970 * 1000).rounded(.down)))
        let now = clock()
        let key = source.verdictHeaders.map { VerifiedRequests.Key(callback, headers: $0) }
        // A retry that is the same bytes as a request found to be a duplicate before, whose event the store
        // still holds durably with the same fingerprint, is answered as a duplicate again without being parsed
        // and verified again (docs/architecture.md, "Retries that are the same bytes"). Anything else goes the
        // usual way.
        if let key, let kept = verified.verdict(for: key, generation: generation, nowMilliseconds: now),
            store.isStoredDuplicate(id: kept.labels.id, fingerprint: kept.fingerprint)
        {
            metrics.signature(kept.signature, source: source.kind, tenant: kept.labels.tenant)
            answer { [self] in stored(.success(.duplicate), event: kept.labels, head: head, source: source, started: started) }
            return
        }
        // The verdict carries its own labels (`Verdict` in Sources/PayhookCore/Source.swift): the request is
        // parsed once, by the source, whatever the outcome.
        let verdict = source.process(callback, nowMilliseconds: now)
        metrics.signature(verdict.signature, source: source.kind, tenant: verdict.tenant ?? "")
        switch verdict.outcome {
        case .refused(let refusal):
            log(head, outcome: refusal.outcome, status: refusal.status, level: .warning, started: started, reason: refusal.reason)
            metrics.request(source: verdict.source, tenant: verdict.tenant ?? "", outcome: refusal.outcome, route: source.kind, seconds: Self.seconds(since: head))
            let response = Self.response(source.failureAnswer(status: refusal.status, reason: Self.answerReason(refusal.status)))
            answer { response }
        case .acknowledged(let reason):
            log(head, outcome: "acknowledged", status: 200, level: .notice, started: started, reason: reason)
            metrics.request(source: verdict.source, tenant: verdict.tenant ?? "", outcome: "acknowledged", route: source.kind, seconds: Self.seconds(since: head))
            let response = Self.response(source.successAnswer)
            answer { response }
        case .accepted(let event):
            // The answer's closures keep only what the answer reads of the event, not the event with all its
            // fields: they are made for every stored callback, duplicates included.
            let labels = EventLabels(event)
            let fingerprint = event.fingerprint
            // A verdict is kept once its request proved to be a retry, so that callbacks sent once cost the
            // table nothing.
            let (reuse, signature) = (verdict.reuse, verdict.signature)
            store.store(event, fingerprint: fingerprint) { [self] result in
                if let key, let reuse, case .success(.duplicate) = result {
                    verified.keep(key, labels: labels, fingerprint: fingerprint, signature: signature, reuse: reuse, generation: generation)
                }
                answer { self.stored(result, event: labels, head: head, source: source, started: started) }
            }
        }
    }

    /// The answer to a verified event once its store finished: success only for a stored event (or a duplicate
    /// or conflict of one), 503 with Retry-After when it may not be durable.
    private func stored(
        _ result: Result<StoreOutcome, StoreError>, event: EventLabels, head: HTTPRequestHead, source: any CallbackSource,
        started: ContinuousClock.Instant
    ) -> HTTPResponse {
        switch result {
        case .success(let outcome):
            // Invariant 5: a conflict is never delivered again. Whether its audit copy is written now, was
            // written before, or is dropped over the caps, the stored event is the one that counts and the
            // sender is told success; only a new copy is worth an error line, since a flood of validly
            // signed variants must not flood the log either (README, "Defences against attacks").
            let (label, level, reason): (String, Logger.Level, String?)
            switch outcome {
            case .stored: (label, level, reason) = ("accepted", .info, nil)
            case .duplicate: (label, level, reason) = ("duplicate", .info, nil)
            case .conflict(let auditFile, .kept):
                (label, level, reason) = ("conflict", .error, "same dedupe key, different verified fields; kept as \(auditFile ?? "?"), not delivered")
            case .conflict(let auditFile, .repeated):
                (label, level, reason) = ("conflict_repeated", .info, "same conflicting content as \(auditFile ?? "?"); not delivered")
            case .conflict(_, .dropped):
                (label, level, reason) = ("conflict_dropped", .notice, "conflict over max_conflicts_per_event or max_conflicts; counted, not kept, not delivered")
            }
            metrics.request(source: event.source, tenant: event.tenant, outcome: label, route: source.kind, seconds: Self.seconds(since: head))
            if let position = event.secretPosition { metrics.verified(source: event.source, tenant: event.tenant, position: position) }
            log(head, outcome: label, status: 200, level: level, event: event, started: started, reason: reason)
            return Self.response(source.successAnswer)
        case .failure(let error):
            log(head, outcome: "storage_error", status: 503, level: .error, event: event, started: started, reason: "\(error)")
            metrics.request(source: event.source, tenant: event.tenant, outcome: "storage_error", route: source.kind, seconds: Self.seconds(since: head))
            metrics.storageError(Self.errnoName(error.errno))
            var response = Self.response(source.failureAnswer(status: 503, reason: Self.answerReason(503)))
            response.headers.append((name: "Retry-After", value: "30"))
            return response
        }
    }

    private func log(
        _ head: HTTPRequestHead, outcome: String, status: Int, level: Logger.Level, event: EventLabels? = nil,
        started: ContinuousClock.Instant? = nil, reason: String? = nil
    ) {
        // The metadata costs more than the request's signature check; build it only for a line that is written.
        guard level >= logger.logLevel else { return }
        var metadata: Logger.Metadata = [
            "http.method": "\(LogText.printable(head.method, limit: 16))",
            "http.path": "\(LogText.printable(head.path, limit: 128))",
            "http.status": .stringConvertible(status),
            "outcome": "\(outcome)",
            "remote": "\(head.remoteAddress)",
        ]
        // Behind a trusted proxy `remote` is the forwarded client; the proxy that said so is kept beside it
        // (docs/proxy.md).
        if head.peerAddress != head.remoteAddress {
            metadata["peer"] = "\(head.peerAddress)"
        }
        if let event {
            metadata["source"] = "\(event.source)"
            metadata["tenant"] = "\(LogText.printable(event.tenant, limit: 64))"
            metadata["event.id"] = "\(event.id)"
        }
        if let started {
            // Milliseconds to the microsecond, a number in JSON logs.
            let elapsed = (ContinuousClock.now - started) / .microseconds(1)
            metadata["latency_ms"] = .stringConvertible(elapsed.rounded() / 1000)
        }
        if let reason { metadata["reason"] = "\(reason)" }
        logger.log(level: level, "request", metadata: metadata)
    }


    /// The one short reason an answer with this status carries, whatever the refusal was. The detailed reason
    /// goes to the log only: in an answer it would be an oracle, telling a sender which merchants exist, how
    /// many keys were tried, or whether a spliced `req_info` failed its padding, its XML or a field check.
    public static func answerReason(_ status: Int) -> String {
        switch status {
        case 400: return "malformed request"
        case 401: return "verification failed"
        case 404: return "not found"
        case 405: return "method not allowed"
        case 408: return "request timeout"
        case 413: return "body too large"
        case 503: return "try again later"
        default: return "refused"
        }
    }

    /// Seconds since the request line arrived.
    static func seconds(since head: HTTPRequestHead) -> Double {
        max(0, Date().timeIntervalSince(head.receivedAt))
    }

    /// A stable label for the errors a disk gives; anything else is `other`.
    static func errnoName(_ code: CInt?) -> String {
        switch code {
        case ENOSPC: return "ENOSPC"
        case EIO: return "EIO"
        case EMFILE: return "EMFILE"
        case ENFILE: return "ENFILE"
        case EDQUOT: return "EDQUOT"
        case EROFS: return "EROFS"
        case EACCES: return "EACCES"
        case EPERM: return "EPERM"
        case EEXIST: return "EEXIST"
        case ENOENT: return "ENOENT"
        default: return "other"
        }
    }

    /// An answer without a content type (WeChat Pay v3's empty 204) gets no `Content-Type` header.
    static func response(_ answer: Answer) -> HTTPResponse {
        if answer.contentType.isEmpty { return HTTPResponse(status: answer.status, headers: [], body: answer.body) }
        return HTTPResponse(status: answer.status, contentType: answer.contentType, body: answer.body)
    }

    static func plain(_ status: Int, _ body: String, allow: String? = nil, retryAfter: Bool = false) -> HTTPResponse {
        var headers: [(name: String, value: String)] = []
        if let allow { headers.append((name: "Allow", value: allow)) }
        if retryAfter { headers.append((name: "Retry-After", value: "30")) }
        return HTTPResponse(status: status, contentType: "text/plain; charset=utf-8", body: body, headers: headers)
    }
}

/// What the answer to a stored event reports of it: its metrics labels and the log line's fields.
struct EventLabels: Sendable {
    let source: String
    let tenant: String
    let id: String
    let secretPosition: Int?

    init(_ event: Event) {
        source = event.source
        tenant = event.tenant
        id = event.id
        secretPosition = event.secretPosition
    }
}
