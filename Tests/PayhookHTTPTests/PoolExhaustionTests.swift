import Foundation
import PayhookHTTP
import PayhookTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

// A request target whose query has more arguments than the connection's
// memory pool has room for: libmicrohttpd 0.9.75 logs "Not enough memory in
// pool to allocate header record!" and closes the connection without an
// answer and without MHD_OPTION_NOTIFY_COMPLETED, after the URI log callback
// already registered the request (Sources/PayhookHTTP/Contexts.swift,
// RequestContext). Every such request must still be ended and released.

/// 1,000 arguments in a 15 kB target: the target fits the 32 KiB pool
/// (a 40 kB one gets 414, HostileClientTests.oversizedHeaders), its
/// arguments' records do not.
private func manyArgumentsRequest(_ index: Int) -> [UInt8] {
    let query = (0..<1000).map { "k\($0)=v\(index % 10)vvvvvvvvv" }.joined(separator: "&")
    return Array("GET /flood/\(index)?\(query) HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
}

private struct FloodOutcome: Sendable {
    var sent = 0
    var connectFailures = 0
    /// Statuses of any answers (none are expected: MHD closes unanswered).
    var answers: [Int] = []
}

extension PayhookHTTPSuite {
@Suite("Memory pool exhaustion")
struct PoolExhaustionTests {
    @Test("4,000 requests whose arguments overflow the connection's memory pool: in-flight returns to 0, RSS stays flat, stop is immediate, valid callbacks still served")
    func manyArgumentsFlood() throws {
        var limits = HTTPLimits()
        limits.threads = 4
        limits.connectionMemoryLimitBytes = 32768
        limits.connectionTimeoutSeconds = 3
        let handler = hostileHandler()
        let server = try startServer(limits: limits, handler: handler)
        defer { _ = server.shutdown(grace: .zero) }
        let port = server.boundAddress.port

        // Warm up: the allocator's and MHD's pools reach their working size.
        let warmUp = measureLegitimate(port: port, count: 200)
        #expect(warmUp.failures == 0, "warm-up: \(warmUp)")
        for index in 0..<200 {
            _ = exchange(port: port, manyArgumentsRequest(index), timeout: .seconds(2))
        }
        #expect(waitUntil(timeout: .seconds(3)) { server.inFlight == 0 }, "after the warm-up: \(server.inFlight) in flight")
        let rss = RSSWatch()

        let perSender = 2000
        let senders = ["127.0.0.2", "127.0.0.3"].enumerated().map { offset, source in
            Background { () -> FloodOutcome in
                var outcome = FloodOutcome()
                let start = ContinuousClock.now
                for index in 0..<perSender where ContinuousClock.now - start < .seconds(20) {
                    guard let client = try? RawClient(port: port, source: source) else {
                        outcome.connectFailures += 1
                        continue
                    }
                    client.send(manyArgumentsRequest(offset * perSender + index))
                    if let response = client.readResponse(timeout: .seconds(2)) {
                        outcome.answers.append(response.status)
                    }
                    outcome.sent += 1
                    if index % 100 == 0 { rss.sample() }
                }
                return outcome
            }
        }
        let outcomes = senders.compactMap { $0.join(timeout: .seconds(25)) }
        try #require(outcomes.count == 2, "both senders finished")
        let sent = outcomes.map(\.sent).reduce(0, +)
        #expect(sent == 2 * perSender, "sent \(sent); connect failures \(outcomes.map(\.connectFailures))")
        // The premise: MHD closes these connections without an answer.
        #expect(outcomes.allSatisfy { $0.answers.isEmpty }, "answers: \(Set(outcomes.flatMap(\.answers)))")

        // (a) Every request ended, although MHD never reported them completed.
        #expect(waitUntil(timeout: .seconds(3)) { server.inFlight == 0 && server.openConnections == 0 },
                "in flight \(server.inFlight), open \(server.openConnections)")
        // (b) Memory: 4,000 leaked requests held at least their 15 kB targets (60 MB).
        let growth = rss.growth
        #expect(growth < 16 * mebibyte, "RSS grew by \(growth / 1024) KiB over the warmed-up \(rss.before / mebibyte) MiB")
        // A valid request is still served, and the handler saw none of the flood.
        let after = measureLegitimate(port: port, count: 20)
        #expect(after.failures == 0, "after the flood: \(after)")
        #expect(handler.log.withLock { $0.heads.allSatisfy { $0.path == "/notify/legit" } })
        #expect(waitUntil(timeout: .seconds(3)) { server.inFlight == 0 })

        // (c) Nothing holds the stop up: it drains at once.
        let stopStart = ContinuousClock.now
        let drained = server.shutdown(grace: .seconds(3))
        let stopTook = elapsed(since: stopStart)
        #expect(drained, "shutdown reported requests still in flight")
        #expect(stopTook < 1.0, "shutdown took \(stopTook) s")
        print("hostile: pool exhaustion: \(sent) requests closed unanswered by libmicrohttpd; RSS +\(growth / 1024) KiB "
            + "(from \(rss.before / mebibyte) MiB); stop took \(String(format: "%.3f", stopTook)) s")
    }
}
}
