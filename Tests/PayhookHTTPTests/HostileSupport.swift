import Foundation
import PayhookHTTP
import PayhookTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

// Tools for the hostile-client tests: a legitimate sender that measures its
// latency, background attackers bounded in time, and the process's RSS.
// Every loop here is bounded in count and in time.

// MARK: - Legitimate traffic

/// A valid callback as a payment platform sends it: one POST with a small XML
/// body on a fresh connection from 127.0.0.1.
func validCallback(_ index: Int) -> [UInt8] {
    let body = """
        <xml><return_code><![CDATA[SUCCESS]]></return_code><appid><![CDATA[wx2421b1c4370ec43b]]></appid>\
        <mch_id><![CDATA[10000100]]></mch_id><nonce_str><![CDATA[\(index)]]></nonce_str>\
        <out_trade_no><![CDATA[order-\(index)]]></out_trade_no><result_code><![CDATA[SUCCESS]]></result_code>\
        <total_fee>101</total_fee><sign><![CDATA[8C6CDB6C1D7DCE5D34A7F4C53A0E1DD5]]></sign></xml>
        """
    let head = "POST /notify/legit?n=\(index) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
        + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n"
    return Array((head + body).utf8)
}

/// The handler of the hostile tests: legitimate callbacks get "success",
/// anything else an echo of its path; both are counted.
func hostileHandler() -> TestHandler {
    TestHandler(onHandle: { request in
        if request.head.path == "/notify/legit" {
            return HTTPResponse(status: 200, contentType: "text/plain", body: "success")
        }
        return HTTPResponse(status: 200, contentType: "text/plain", body: "echo \(request.head.path)")
    })
}

/// Latencies of legitimate requests, in seconds, and how many failed.
struct Latencies: CustomStringConvertible {
    var samples: [Double] = []
    var failures = 0

    var count: Int { samples.count + failures }

    func percentile(_ fraction: Double) -> Double {
        guard !samples.isEmpty else { return .infinity }
        let sorted = samples.sorted()
        let rank = Int((fraction * Double(sorted.count)).rounded(.up)) - 1
        return sorted[Swift.min(Swift.max(rank, 0), sorted.count - 1)]
    }

    var p50: Double { percentile(0.50) }
    var p99: Double { percentile(0.99) }
    var max: Double { samples.max() ?? .infinity }

    var description: String {
        String(format: "n=%d failed=%d p50=%.1fms p99=%.1fms max=%.1fms",
               count, failures, p50 * 1000, p99 * 1000, max * 1000)
    }
}

/// Sends `count` valid callbacks one after another, `pause` apart, each on a
/// new connection, and times each from connect to the whole response. A
/// request that gets no answer within 3 s, or not "200 success", is a
/// failure; after `budget` the remaining ones count as failures unsent.
func measureLegitimate(port: Int, count: Int, pause: Duration = .zero, budget: Duration = .seconds(15)) -> Latencies {
    var result = Latencies()
    let clock = ContinuousClock()
    let end = clock.now + budget
    for index in 0..<count {
        guard clock.now < end else {
            result.failures += count - index
            break
        }
        let start = clock.now
        let response = exchange(port: port, validCallback(index), timeout: .seconds(3))
        let took = elapsed(since: start)
        if let response, response.status == 200, response.text == "success" {
            result.samples.append(took)
        } else {
            result.failures += 1
        }
        if pause > .zero {
            nap(pause)
        }
    }
    return result
}

/// The bound a legitimate request's p99 must stay under during an attack:
/// ten times the p99 measured on the same server without attack, but at
/// least 500 ms so that scheduling noise on a loaded 2-core machine does not
/// count as a failure.
func latencyBound(baseline: Latencies) -> Double {
    Swift.max(10 * baseline.p99, 0.5)
}

/// Checks the legitimate traffic measured during an attack against the baseline.
func expectNormalService(_ attacked: Latencies, baseline: Latencies, expected: Int,
                         sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(baseline.failures == 0, "baseline: \(baseline)", sourceLocation: sourceLocation)
    #expect(attacked.count == expected, sourceLocation: sourceLocation)
    #expect(attacked.failures == 0, "every valid callback is answered during the attack: \(attacked)",
            sourceLocation: sourceLocation)
    let bound = latencyBound(baseline: baseline)
    #expect(attacked.p99 < bound,
            "p99 under attack \(attacked.p99 * 1000) ms ≥ bound \(bound * 1000) ms (baseline \(baseline))",
            sourceLocation: sourceLocation)
}

// MARK: - Attackers

/// A flag the test raises to stop its attackers.
final class StopFlag: Sendable {
    private let raised = Mutex(false)
    func raise() { raised.withLock { $0 = true } }
    var isRaised: Bool { raised.withLock { $0 } }
}

/// Runs `body` on a background thread; `body` must return by itself once
/// `stop` is raised or its own time limit passed. `finish` raises the flag
/// and waits (bounded) for the result.
final class Attacker<Value: Sendable>: Sendable {
    let stop = StopFlag()
    private let run: Background<Value>

    init(_ body: @escaping @Sendable (StopFlag) -> Value) {
        let flag = stop
        run = Background { body(flag) }
    }

    func finish(timeout: Duration = .seconds(10)) -> Value? {
        stop.raise()
        return run.join(timeout: timeout)
    }
}

/// True while `stop` is not raised and `limit` has not passed since `start`.
func keepGoing(_ stop: StopFlag, since start: ContinuousClock.Instant, limit: Duration) -> Bool {
    !stop.isRaised && ContinuousClock.now - start < limit
}

func pause(milliseconds: Int) {
    usleep(useconds_t(milliseconds * 1000))
}

/// Sleeps the calling thread for `duration`.
func nap(_ duration: Duration) {
    let microseconds = duration.components.seconds * 1_000_000 + duration.components.attoseconds / 1_000_000_000_000
    if microseconds > 0 { usleep(useconds_t(clamping: microseconds)) }
}

/// Closes the socket with a reset (SO_LINGER 0) instead of a FIN when it is released.
func abortOnClose(_ client: RawClient) {
    var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
    _ = setsockopt(client.descriptor, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
}

// MARK: - Process resources

/// The resident set size of this process (VmRSS in /proc/self/status), in bytes.
/// The server runs in this process, so its memory is counted here.
func residentBytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        let digits = line.split(separator: " ").compactMap { Int($0) }
        if let kilobytes = digits.first { return kilobytes * 1024 }
    }
    return 0
}

let mebibyte = 1024 * 1024

/// Tracks the highest RSS seen; `sample` is cheap enough to call in loops.
final class RSSWatch: Sendable {
    let before: Int
    private let peak: Mutex<Int>

    init() {
        before = residentBytes()
        peak = Mutex(before)
    }

    func sample() {
        let now = residentBytes()
        peak.withLock { $0 = Swift.max($0, now) }
    }

    /// Growth of the peak over the starting RSS, in bytes.
    var growth: Int {
        sample()
        return peak.withLock { $0 } - before
    }
}

/// Raises the soft limit on open files to at least `wanted` (as far as the
/// hard limit allows) for the duration of `body`, then restores it. Returns
/// what `body` returned and the limit that was in force.
func withOpenFileLimit<T>(atLeast wanted: Int, _ body: (Int) throws -> T) rethrows -> T {
    var original = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &original) == 0 else {
        return try body(256)
    }
    // RLIM_INFINITY is ~0 (the C macro does not import as a constant).
    let infinity = rlim_t.max
    var raised = original
    if original.rlim_cur != infinity, original.rlim_cur < rlim_t(wanted) {
        raised.rlim_cur = original.rlim_max == infinity ? rlim_t(wanted) : Swift.min(rlim_t(wanted), original.rlim_max)
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised)
    }
    var inForce = rlimit()
    _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &inForce)
    defer { _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &original) }
    let limit = inForce.rlim_cur == infinity ? Int.max : Int(inForce.rlim_cur)
    return try body(limit)
}

/// Samples `server.openConnections` and keeps the highest value.
final class ConnectionWatch: Sendable {
    private let peak = Mutex(0)

    func sample(_ server: HTTPServer) {
        let now = server.openConnections
        peak.withLock { $0 = Swift.max($0, now) }
    }

    var highest: Int { peak.withLock { $0 } }
}
