import Foundation
import Logging
import PayhookHTTP
import PayhookTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

// Each test starts a server, measures the latency of valid callbacks from
// 127.0.0.1 without attack (the baseline), then runs one attack from other
// loopback addresses (127.0.0.2 and up, so that per-IP accounting sees a
// different client) and measures valid callbacks again while it runs. They
// must all be answered, with a p99 under `latencyBound(baseline:)`, and the
// RSS of this process (the server runs in it) must grow by less than 64 MiB.
// Measurements are printed with the prefix "hostile:" (docs/limits.md).

/// Limits shaped like the production defaults (4 threads, 256 connections,
/// 32 per address, 32 KiB per connection, 64 KiB bodies) with deadlines short
/// enough for a test.
private func hostileLimits() -> HTTPLimits {
    var limits = HTTPLimits()
    limits.threads = 4
    limits.maxConnections = 256
    limits.maxConnectionsPerIP = 32
    limits.connectionMemoryLimitBytes = 32768
    limits.maxBodyBytes = 65536
    limits.connectionTimeoutSeconds = 3
    limits.headerDeadlineSeconds = 1.5
    limits.requestDeadlineSeconds = 2
    return limits
}

private let rssBound = 64 * mebibyte

/// The status code of a response that starts with `bytes`, if it is one.
private func statusOf(_ bytes: [UInt8]) -> Int? {
    let text = String(decoding: bytes.prefix(12), as: UTF8.self)
    guard text.hasPrefix("HTTP/1."), text.count >= 12 else { return nil }
    return Int(text.dropFirst(9).prefix(3))
}

private func report(_ name: String, baseline: Latencies, attacked: Latencies, rss: RSSWatch, _ extra: String = "") {
    print("hostile: \(name): baseline \(baseline); under attack \(attacked); bound \(Int(latencyBound(baseline: baseline) * 1000))ms;"
        + " RSS +\(rss.growth / 1024) KiB (from \(rss.before / mebibyte) MiB)\(extra.isEmpty ? "" : "; " + extra)")
}

// MARK: - Slowloris

private enum Trickle: Sendable {
    /// "GET /slow" and then one more URI byte per tick: the request line never ends.
    case requestLine
    /// A request line, then one more byte of a header value per tick.
    case headers
    /// A complete head declaring 60,000 body bytes, then one body byte per tick.
    case body
}

private struct TrickleStats: Sendable {
    var opened = 0
    /// Closed by the server before the first trickled byte (the per-IP limit).
    var refusedAtOnce = 0
    /// Lifetimes (connect to close seen) of connections the server closed
    /// while bytes were still being trickled.
    var cutOff: [Double] = []
    /// Status codes of any answers the server sent.
    var answers: [Int] = []
    /// Age of the oldest connection still open when the attack stopped.
    var oldestAtStop = 0.0
}

/// Keeps `slots` connections from `source`, each trickling one byte every
/// `tick`, and opens a new one whenever the server closes one.
private func trickleAttack(port: Int, source: String, slots: Int, kind: Trickle, tick: Duration = .milliseconds(200),
                           stop: StopFlag, limit: Duration, onTick: @Sendable () -> Void) -> TrickleStats {
    struct Slot {
        let client: RawClient
        let opened: ContinuousClock.Instant
        var ticks = 0
    }
    var stats = TrickleStats()
    var live: [Slot?] = Array(repeating: nil, count: slots)
    func connect(_ index: Int) {
        live[index] = nil
        guard let client = try? RawClient(port: port, source: source) else { return }
        stats.opened += 1
        switch kind {
        case .requestLine: client.send("GET /slow")
        case .headers: client.send("GET /slow HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        case .body: client.send("POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n")
        }
        live[index] = Slot(client: client, opened: .now)
    }
    let start = ContinuousClock.now
    for index in 0..<slots { connect(index) }
    while keepGoing(stop, since: start, limit: limit) {
        nap(tick)
        onTick()
        for index in 0..<slots {
            guard var slot = live[index] else {
                connect(index)
                continue
            }
            var ended = false
            switch slot.client.readSome(timeout: .zero) {
            case .timedOut:
                slot.client.send([0x61])
                slot.ticks += 1
                live[index] = slot
            case .data(let bytes):
                if let status = statusOf(bytes) { stats.answers.append(status) }
                ended = true
            case .closed, .reset:
                ended = true
            }
            if ended {
                if slot.ticks == 0 {
                    stats.refusedAtOnce += 1
                } else {
                    stats.cutOff.append(elapsed(since: slot.opened))
                }
                connect(index)
            }
        }
    }
    for slot in live.compactMap({ $0 }) where slot.client.readSome(timeout: .zero) == .timedOut {
        stats.oldestAtStop = max(stats.oldestAtStop, elapsed(since: slot.opened))
    }
    return stats
}

// MARK: - Idle flood

private struct FloodStats: Sendable {
    var opened = 0
    var connectFailures = 0
    var openedIn = 0.0
    /// Closed by the server without any byte sent.
    var closed = 0
    /// Still open when the attack stopped.
    var heldOpen = 0
}

/// Outcome of one attack request: the status, or nil when the server closed
/// the connection without an answer; and how long it took.
private struct Shot: Sendable {
    var kind: String
    var status: Int?
    var took: Double
}

/// Runs `shoot` in a loop on a background thread until stopped (or 8 s),
/// pausing `gap` between shots, and collects the outcomes.
private func shooter(gap: Duration = .milliseconds(5), onShot: @escaping @Sendable () -> Void = {},
                     _ shoot: @escaping @Sendable (Int) -> Shot) -> Attacker<[Shot]> {
    Attacker { stop in
        var shots: [Shot] = []
        let start = ContinuousClock.now
        var index = 0
        while keepGoing(stop, since: start, limit: .seconds(8)) {
            shots.append(shoot(index))
            onShot()
            index += 1
            nap(gap)
        }
        return shots
    }
}

/// Deterministic bytes (xorshift) for garbage that is the same on every run.
private func garbage(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed | 1
    return (0..<count).map { _ in
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return UInt8(truncatingIfNeeded: state)
    }
}

extension PayhookHTTPSuite {
@Suite("Hostile clients")
struct HostileClientTests {
    @Test("slowloris: trickled request lines, headers and bodies are cut off at their deadlines; valid callbacks keep their latency")
    func slowloris() throws {
        let limits = hostileLimits()
        let handler = hostileHandler()
        let server = try startServer(limits: limits, handler: handler)
        defer { _ = server.shutdown(grace: .seconds(2)) }
        let port = server.boundAddress.port

        let baseline = measureLegitimate(port: port, count: 100)
        let rss = RSSWatch()
        let open = ConnectionWatch()
        let onTick: @Sendable () -> Void = {
            rss.sample()
            open.sample(server)
        }
        // 48 slots per address against a per-IP limit of 32: 16 are refused
        // at once and retried every tick, 32 trickle. The inactivity timeout
        // (3 s) never fires, since every slot sends a byte every 200 ms.
        let attackLimit = Duration.seconds(8)
        let lines = Attacker { stop in
            trickleAttack(port: port, source: "127.0.0.2", slots: 48, kind: .requestLine, stop: stop, limit: attackLimit, onTick: onTick)
        }
        let headers = Attacker { stop in
            trickleAttack(port: port, source: "127.0.0.3", slots: 48, kind: .headers, stop: stop, limit: attackLimit, onTick: onTick)
        }
        let bodies = Attacker { stop in
            trickleAttack(port: port, source: "127.0.0.4", slots: 48, kind: .body, stop: stop, limit: attackLimit, onTick: onTick)
        }
        let attackStart = ContinuousClock.now
        pause(milliseconds: 300)
        let attacked = measureLegitimate(port: port, count: 100, pause: .milliseconds(25))
        // Long enough that a connection nobody cuts off would be older than
        // any bound below when the attack stops.
        while elapsed(since: attackStart) < 3.8 { pause(milliseconds: 50) }
        let lineStats = try #require(lines.finish())
        let headerStats = try #require(headers.finish())
        let bodyStats = try #require(bodies.finish())

        expectNormalService(attacked, baseline: baseline, expected: 100)
        #expect(rss.growth < rssBound)
        // Per-IP limit: 3 addresses × 32, plus the one legitimate connection.
        #expect(open.highest <= 3 * 32 + 2, "open connections peaked at \(open.highest)")

        let headBound = limits.headerDeadlineSeconds + 1.0
        let bodyBound = limits.requestDeadlineSeconds + 1.0
        for (name, stats, bound) in [("request line", lineStats, headBound), ("headers", headerStats, headBound),
                                     ("body", bodyStats, bodyBound)] {
            #expect(stats.refusedAtOnce > 0, "\(name): the per-IP limit refused the extra slots")
            #expect(stats.cutOff.count >= 16, "\(name): trickling connections were cut off (\(stats.cutOff.count))")
            #expect((stats.cutOff.max() ?? 0) < bound, "\(name): longest-lived trickler \(stats.cutOff.max() ?? 0) s ≥ \(bound) s")
            #expect((stats.cutOff.min() ?? 0) > min(limits.headerDeadlineSeconds, limits.requestDeadlineSeconds) - 0.2,
                    "\(name): nothing is cut before its deadline")
            #expect(stats.oldestAtStop < bound, "\(name): a trickler was \(stats.oldestAtStop) s old when the attack stopped")
            #expect(stats.answers.allSatisfy { $0 == 408 }, "\(name): answers \(stats.answers)")
        }
        #expect(handler.log.withLock { $0.requests.allSatisfy { $0.head.path == "/notify/legit" } })
        #expect(waitUntil(timeout: .seconds(3)) { server.inFlight == 0 && server.openConnections == 0 })
        report("slowloris", baseline: baseline, attacked: attacked, rss: rss,
               "cut off: request line \(lineStats.cutOff.count) (max \(String(format: "%.2f", lineStats.cutOff.max() ?? 0)) s), "
                   + "headers \(headerStats.cutOff.count) (max \(String(format: "%.2f", headerStats.cutOff.max() ?? 0)) s), "
                   + "body \(bodyStats.cutOff.count) (max \(String(format: "%.2f", bodyStats.cutOff.max() ?? 0)) s); "
                   + "refused at once \(lineStats.refusedAtOnce + headerStats.refusedAtOnce + bodyStats.refusedAtOnce); "
                   + "peak open \(open.highest)")
    }

    @Test("2,000 idle connections from four addresses: each address keeps exactly its 32, the rest are closed at once; valid callbacks keep their latency")
    func idleFlood() throws {
        var limits = hostileLimits()
        // No timeout or deadline fires during the test: the per-IP limit alone is under test.
        limits.connectionTimeoutSeconds = 20
        limits.headerDeadlineSeconds = 20
        limits.requestDeadlineSeconds = 20
        let handler = hostileHandler()
        let server = try startServer(limits: limits, handler: handler)
        defer { _ = server.shutdown(grace: .seconds(2)) }
        let port = server.boundAddress.port
        let baseline = measureLegitimate(port: port, count: 100)

        let sources = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
        let held = sources.count * limits.maxConnectionsPerIP
        try withOpenFileLimit(atLeast: 4096) { fileLimit in
            // One descriptor per attacking socket, one more on the server side
            // for the accepted ones, and room for everything else.
            let wanted = 2000
            let total = min(wanted, fileLimit - held - 512)
            if total < wanted {
                print("hostile: the open-file limit (\(fileLimit)) allows only \(total) idle connections")
            }
            let rss = RSSWatch()
            let open = ConnectionWatch()
            let closesSeen = Mutex(0)
            let flood = Attacker { stop -> FloodStats in
                var stats = FloodStats()
                var clients: [RawClient] = []
                clients.reserveCapacity(total)
                let start = ContinuousClock.now
                for index in 0..<total where !stop.isRaised {
                    if let client = try? RawClient(port: port, source: sources[index % sources.count]) {
                        clients.append(client)
                    } else {
                        stats.connectFailures += 1
                    }
                    if index % 100 == 0 {
                        open.sample(server)
                        rss.sample()
                    }
                }
                stats.opened = clients.count
                stats.openedIn = elapsed(since: start)
                var closed = [Bool](repeating: false, count: clients.count)
                func countCloses() {
                    for (index, client) in clients.enumerated() where !closed[index] {
                        let outcome = client.readSome(timeout: .zero)
                        if outcome == .closed || outcome == .reset { closed[index] = true }
                    }
                    let count = closed.filter { $0 }.count
                    closesSeen.withLock { $0 = count }
                }
                // Hold every socket, idle, until told to stop; watch the closes come in.
                while keepGoing(stop, since: start, limit: .seconds(15)) {
                    countCloses()
                    open.sample(server)
                    rss.sample()
                    pause(milliseconds: 50)
                }
                countCloses()
                stats.closed = closed.filter { $0 }.count
                stats.heldOpen = clients.count - stats.closed
                return stats
            }
            pause(milliseconds: 100)
            let attacked = measureLegitimate(port: port, count: 100, pause: .milliseconds(15))
            // Let the flood settle (bounded): every refused connection seen closed.
            _ = waitUntil(timeout: .seconds(5)) { closesSeen.withLock { $0 } >= total - held }
            let stats = try #require(flood.finish(timeout: .seconds(20)))

            expectNormalService(attacked, baseline: baseline, expected: 100)
            #expect(stats.opened == total && stats.connectFailures == 0, "\(stats)")
            #expect(stats.heldOpen == held, "exactly \(limits.maxConnectionsPerIP) per address stay open: \(stats)")
            #expect(stats.closed == total - held, "the rest are closed by the server: \(stats)")
            #expect(open.highest <= held + 2, "open connections peaked at \(open.highest)")
            #expect(rss.growth < rssBound)
            #expect(waitUntil(timeout: .seconds(3)) { server.openConnections == 0 })
            #expect(handler.log.withLock { $0.heads.allSatisfy { $0.path == "/notify/legit" } })
            report("idle flood", baseline: baseline, attacked: attacked, rss: rss,
                   "\(stats.opened) connections opened in \(String(format: "%.2f", stats.openedIn)) s, "
                       + "\(stats.heldOpen) held, \(stats.closed) closed at once; peak open \(open.highest)")
        }
    }

    @Test("maxConnections split over 4 pool threads still admits exactly maxConnections; when idle attackers from many addresses hold every slot, the head deadline frees them")
    func connectionLimitAndExhaustion() throws {
        var limits = hostileLimits()
        limits.threads = 4
        limits.maxConnections = 40  // libmicrohttpd gives each pool thread 10
        limits.maxConnectionsPerIP = 8
        limits.connectionTimeoutSeconds = 30  // so only the watchdog can free a slot
        limits.requestDeadlineSeconds = 30
        limits.headerDeadlineSeconds = 1.5
        let handler = hostileHandler()
        let server = try startServer(limits: limits, handler: handler)
        defer { _ = server.shutdown(grace: .seconds(2)) }
        let port = server.boundAddress.port
        let baseline = measureLegitimate(port: port, count: 50)

        // Five addresses × 8 idle connections: every slot.
        var holders: [RawClient] = []
        for address in 1...5 {
            for _ in 0..<8 { holders.append(try RawClient(port: port, source: "127.0.1.\(address)")) }
        }
        #expect(waitUntil(timeout: .seconds(1)) { server.openConnections == 40 },
                "all 40 slots are used although each pool thread has only 10: \(server.openConnections)")
        // Eight more from a sixth address find no slot. They are neither
        // accepted nor refused: they wait in the kernel's listen queue.
        var queued: [RawClient] = []
        for _ in 0..<8 { queued.append(try RawClient(port: port, source: "127.0.1.6")) }
        pause(milliseconds: 200)
        #expect(server.openConnections == 40)
        #expect(queued.allSatisfy { $0.readSome(timeout: .zero) == .timedOut })

        // A valid callback now waits behind them until the watchdog cuts the
        // first 40 at their head deadline; then the queue is accepted.
        let start = ContinuousClock.now
        let response = exchange(port: port, validCallback(0), timeout: .seconds(6))
        let waited = elapsed(since: start)
        #expect(response?.status == 200)
        // Typically 1.3–1.5 s. The slack covers a sweep, a loaded machine and
        // one lost SYN on loopback (retried after 1 s); without the watchdog
        // the wait would be the 30 s inactivity timeout.
        #expect(waited < limits.headerDeadlineSeconds + 2.5,
                "a valid callback waited \(waited) s for a slot; \(server.openConnections) open")
        // Holders accepted a little later are cut by the next sweep.
        var holderClosed = [Bool](repeating: false, count: holders.count)
        #expect(waitUntil(timeout: .seconds(1)) {
            for (index, holder) in holders.enumerated() where !holderClosed[index] {
                let outcome = holder.readSome(timeout: .zero)
                holderClosed[index] = outcome == .closed || outcome == .reset
            }
            return holderClosed.allSatisfy { $0 }
        }, "the idle holders were cut off: \(holderClosed.filter { $0 }.count) of \(holders.count)")
        holders.removeAll()
        queued.removeAll()
        #expect(waitUntil(timeout: .seconds(3)) { server.openConnections == 0 })
        print("hostile: exhaustion: baseline \(baseline); with all 40 slots held by 5 addresses a valid callback waited "
            + "\(String(format: "%.2f", waited)) s (head deadline \(limits.headerDeadlineSeconds) s)")
    }

    @Test("oversized request lines and headers get 414/431 from the memory limit; valid callbacks keep their latency")
    func oversizedHeaders() throws {
        let limits = hostileLimits()
        let handler = hostileHandler()
        let server = try startServer(limits: limits, handler: handler)
        defer { _ = server.shutdown(grace: .seconds(2)) }
        let port = server.boundAddress.port
        let baseline = measureLegitimate(port: port, count: 100)
        let rss = RSSWatch()
        let onShot: @Sendable () -> Void = { rss.sample() }

        let bigValue = String(repeating: "h", count: 40_000)
        let manyLines = (0..<700).map { "X-Many-\($0): \(String(repeating: "v", count: 48))\r\n" }.joined()
        let longTarget = "/" + String(repeating: "u", count: 40_000)
        let floodLine = Array("X-Flood: \(String(repeating: "f", count: 1000))\r\n".utf8)
        let fixed: @Sendable (Int, String) -> Shot = { index, source in
            let start = ContinuousClock.now
            switch index % 4 {
            case 0:
                let response = exchange(port: port, source: source, "GET /attack HTTP/1.1\r\nHost: x\r\nX-Big: \(bigValue)\r\n\r\n")
                return Shot(kind: "one 40 kB header", status: response?.status, took: elapsed(since: start))
            case 1:
                let response = exchange(port: port, source: source, "GET /attack HTTP/1.1\r\nHost: x\r\n\(manyLines)\r\n")
                return Shot(kind: "700 header lines", status: response?.status, took: elapsed(since: start))
            case 2:
                let response = exchange(port: port, source: source, "GET \(longTarget) HTTP/1.1\r\nHost: x\r\n\r\n")
                return Shot(kind: "40 kB URI", status: response?.status, took: elapsed(since: start))
            default:
                // Endless header lines, up to 1 MiB, until the server stops reading.
                guard let client = try? RawClient(port: port, source: source) else {
                    return Shot(kind: "endless headers", status: nil, took: 0)
                }
                client.send("GET /attack HTTP/1.1\r\nHost: x\r\n")
                var sent = 0
                while sent < 1 << 20, client.readSome(timeout: .zero) == .timedOut, client.send(floodLine) {
                    sent += floodLine.count
                }
                let response = client.readResponse(timeout: .seconds(2))
                return Shot(kind: "endless headers", status: response?.status, took: elapsed(since: start))
            }
        }
        let attackers = [
            shooter(onShot: onShot) { fixed($0, "127.0.0.2") },
            shooter(onShot: onShot) { fixed($0 + 2, "127.0.0.3") },
        ]
        pause(milliseconds: 100)
        let attacked = measureLegitimate(port: port, count: 100, pause: .milliseconds(15))
        let shots = attackers.compactMap { $0.finish() }.flatMap { $0 }

        expectNormalService(attacked, baseline: baseline, expected: 100)
        #expect(rss.growth < rssBound)
        for kind in ["one 40 kB header", "700 header lines", "40 kB URI", "endless headers"] {
            let ofKind = shots.filter { $0.kind == kind }
            #expect(ofKind.count >= 3, "\(kind): \(ofKind.count) attempts")
            let expected = kind == "40 kB URI" ? 414 : 431
            // A flood that is still being written when the server answers
            // and closes may see the close (a reset) before the answer.
            let acceptable: Set<Int?> = kind == "endless headers" ? [expected, nil] : [expected]
            #expect(ofKind.allSatisfy { acceptable.contains($0.status) },
                    "\(kind): \(Set(ofKind.map { $0.status.map(String.init) ?? "closed" }))")
            #expect(ofKind.allSatisfy { $0.took < 2.5 }, "\(kind): answered at once")
        }
        #expect(handler.log.withLock { $0.heads.allSatisfy { $0.path == "/notify/legit" } }, "no oversized head reached the handler")
        #expect(waitUntil(timeout: .seconds(3)) { server.inFlight == 0 && server.openConnections == 0 })
        report("oversized headers", baseline: baseline, attacked: attacked, rss: rss, "\(shots.count) attack requests")
    }

    @Test("chunked bodies: over the cap → 413; endless → closed long before the deadline; valid callbacks keep their latency")
    func chunkedBodies() throws {
        var limits = hostileLimits()
        limits.requestDeadlineSeconds = 5
        limits.headerDeadlineSeconds = 5
        let handler = hostileHandler()
        let server = try startServer(limits: limits, handler: handler)
        defer { _ = server.shutdown(grace: .seconds(2)) }
        let port = server.boundAddress.port
        let baseline = measureLegitimate(port: port, count: 100)
        let rss = RSSWatch()
        let onShot: @Sendable () -> Void = { rss.sample() }

        let chunk = [UInt8](repeating: 0x63, count: 16 * 1024)
        let framedChunk = Array("4000\r\n".utf8) + chunk + [13, 10]
        let oversized = Array("POST /attack/over HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
            + chunked(Array(repeating: Array(chunk[0..<4096]), count: 25))  // 100 KiB against a 64 KiB cap
        let shoot: @Sendable (Int, String) -> Shot = { index, source in
            let start = ContinuousClock.now
            switch index % 3 {
            case 0:
                let response = exchange(port: port, source: source, oversized)
                return Shot(kind: "100 KiB chunked", status: response?.status, took: elapsed(since: start))
            default:
                // Endless: 16 KiB chunks, or one chunk declared 4 GiB long,
                // written as fast as the server reads, for at most 4 s.
                let endlessChunks = index % 3 == 1
                guard let client = try? RawClient(port: port, source: source) else {
                    return Shot(kind: "endless", status: nil, took: 0)
                }
                client.send("POST /attack/endless HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
                if !endlessChunks { client.send("FFFFFFFF\r\n") }
                var status: Int?
                while ContinuousClock.now - start < .seconds(4) {
                    if case .data(let bytes) = client.readSome(timeout: .zero) {
                        status = statusOf(bytes)
                        break
                    }
                    if !client.send(endlessChunks ? framedChunk : chunk) { break }
                }
                return Shot(kind: endlessChunks ? "endless chunks" : "endless 4 GiB chunk", status: status, took: elapsed(since: start))
            }
        }
        let attackers = [
            shooter(gap: .milliseconds(20), onShot: onShot) { shoot($0, "127.0.0.2") },
            shooter(gap: .milliseconds(20), onShot: onShot) { shoot($0 + 1, "127.0.0.3") },
        ]
        pause(milliseconds: 100)
        let attacked = measureLegitimate(port: port, count: 100, pause: .milliseconds(15))
        let shots = attackers.compactMap { $0.finish() }.flatMap { $0 }

        expectNormalService(attacked, baseline: baseline, expected: 100)
        #expect(rss.growth < rssBound)
        let over = shots.filter { $0.kind == "100 KiB chunked" }
        #expect(over.count >= 3)
        #expect(over.allSatisfy { $0.status == 413 }, "\(over.map(\.status))")
        for kind in ["endless chunks", "endless 4 GiB chunk"] {
            let endless = shots.filter { $0.kind == kind }
            #expect(endless.count >= 3, "\(kind): \(endless.count) attempts")
            // The request deadline is 5 s; the server stops reading once the
            // body is a cap's worth over the cap.
            #expect(endless.allSatisfy { $0.took < 1.5 }, "\(kind): closed after \(endless.map(\.took).max() ?? 0) s")
            #expect(endless.allSatisfy { $0.status == nil || (400...499).contains($0.status!) }, "\(kind): \(endless.map(\.status))")
        }
        #expect(handler.log.withLock { $0.requests.allSatisfy { $0.head.path == "/notify/legit" } })
        #expect(waitUntil(timeout: .seconds(3)) { server.inFlight == 0 && server.openConnections == 0 })
        let worst = shots.filter { $0.kind != "100 KiB chunked" }.map(\.took).max() ?? 0
        report("chunked bodies", baseline: baseline, attacked: attacked, rss: rss,
               "\(shots.count) attack requests, endless bodies closed after at most \(String(format: "%.3f", worst)) s")
    }

    @Test("pipelined garbage: requests before the garbage are answered, the garbage gets 400 or a close, nothing after it is handled")
    func pipelinedGarbage() throws {
        let limits = hostileLimits()
        let handler = hostileHandler()
        let server = try startServer(limits: limits, handler: handler)
        defer { _ = server.shutdown(grace: .seconds(2)) }
        let port = server.boundAddress.port
        let baseline = measureLegitimate(port: port, count: 100)
        let rss = RSSWatch()
        let onShot: @Sendable () -> Void = { rss.sample() }

        let pipelined = String(repeating: "GET /attack/pipe HTTP/1.1\r\nHost: x\r\n\r\n", count: 20)
        let after = String(repeating: "GET /attack/after HTTP/1.1\r\nHost: x\r\n\r\n", count: 5)
        let tlsHello: [UInt8] = [0x16, 0x03, 0x01, 0x00, 0xA5, 0x01, 0x00, 0x00, 0xA1, 0x03, 0x03]
        let kinds: [(name: String, bytes: [UInt8], answered: Int)] = [
            ("20 requests, a TLS hello, 5 requests", Array(pipelined.utf8) + tlsHello + Array("\r\n\r\n".utf8) + Array(after.utf8), 20),
            ("20 requests, a bad header line, 5 requests",
             Array(pipelined.utf8) + Array("GET /attack/bad HTTP/1.1\r\nno colon here\r\n\r\n".utf8) + Array(after.utf8), 20),
            ("a body longer than its Content-Length",
             Array("POST /attack/pipe HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\u{1}\u{2}\u{3} NOT HTTP\r\n\r\n".utf8)
                + Array(after.utf8), 1),
            ("64 KiB of random bytes", garbage(65536, seed: 7), 0),
        ]
        let shoot: @Sendable (Int, String) -> Shot = { index, source in
            let kind = kinds[index % kinds.count]
            let start = ContinuousClock.now
            guard let client = try? RawClient(port: port, source: source) else { return Shot(kind: kind.name, status: -1, took: 0) }
            client.send(kind.bytes)
            var answered = 0
            var errorStatus: Int?
            // Read answers until the server closes (bounded: 40 answers, 3 s).
            while answered < 40, ContinuousClock.now - start < .seconds(3) {
                guard let response = client.readResponse(timeout: .seconds(3) - (ContinuousClock.now - start)) else { break }
                if response.status == 200, response.text == "echo /attack/pipe" {
                    answered += 1
                } else {
                    errorStatus = response.status
                    break
                }
            }
            let closed = client.waitForClose(timeout: .seconds(2)).outcome != .timedOut
            // Encode: the expected number of 200s, then 400 or a close, then a close.
            let ok = answered == kind.answered && (errorStatus == nil || errorStatus == 400) && closed
            return Shot(kind: kind.name, status: ok ? 0 : (errorStatus ?? 1000 + answered), took: elapsed(since: start))
        }
        let attackers = [
            shooter(onShot: onShot) { shoot($0, "127.0.0.2") },
            shooter(onShot: onShot) { shoot($0 + 2, "127.0.0.3") },
        ]
        pause(milliseconds: 100)
        let attacked = measureLegitimate(port: port, count: 100, pause: .milliseconds(15))
        let shots = attackers.compactMap { $0.finish() }.flatMap { $0 }

        expectNormalService(attacked, baseline: baseline, expected: 100)
        #expect(rss.growth < rssBound)
        for kind in kinds {
            let ofKind = shots.filter { $0.kind == kind.name }
            #expect(ofKind.count >= 3, "\(kind.name): \(ofKind.count) attempts")
            #expect(ofKind.allSatisfy { $0.status == 0 }, "\(kind.name): \(ofKind.map(\.status))")
        }
        let paths = Set(handler.log.withLock { $0.requests.map(\.head.path) })
        #expect(paths.isSubset(of: ["/notify/legit", "/attack/pipe"]), "handled: \(paths)")
        #expect(waitUntil(timeout: .seconds(3)) { server.inFlight == 0 && server.openConnections == 0 })
        report("pipelined garbage", baseline: baseline, attacked: attacked, rss: rss, "\(shots.count) attack connections")
    }

    @Test("clients that stop or disconnect mid-body: memory stays bounded, nothing reaches the handler, every request is released")
    func disconnectMidBody() throws {
        var limits = hostileLimits()
        limits.connectionTimeoutSeconds = 10
        limits.requestDeadlineSeconds = 10
        limits.headerDeadlineSeconds = 5
        let handler = hostileHandler()
        let server = try startServer(limits: limits, handler: handler)
        defer { _ = server.shutdown(grace: .seconds(2)) }
        let port = server.boundAddress.port
        let baseline = measureLegitimate(port: port, count: 100)
        let rss = RSSWatch()

        // Phase 1: 150 connections from five addresses each declare a body
        // just at the cap, send 60,000 of its 65,536 bytes and stall: the
        // most body memory attackers can make the server hold at once.
        let head = Array("POST /attack/hold HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n".utf8)
        let partial = [UInt8](repeating: 0x62, count: 60_000)
        var holders: [RawClient] = []
        for index in 0..<150 {
            let client = try RawClient(port: port, source: "127.0.2.\(index % 5 + 1)")
            client.send(head + partial)
            holders.append(client)
        }
        #expect(waitUntil(timeout: .seconds(3)) { server.inFlight == 150 }, "in flight: \(server.inFlight)")
        pause(milliseconds: 200)
        rss.sample()
        let holdingGrowth = rss.growth
        let attackedHolding = measureLegitimate(port: port, count: 50, pause: .milliseconds(10))

        // Phase 2: they all go away mid-body, half with a reset; meanwhile
        // 300 more connections send part of a body and disconnect at once.
        for (index, client) in holders.enumerated() where index % 2 == 0 { abortOnClose(client) }
        holders.removeAll()
        let churn = shooter(gap: .zero, onShot: { rss.sample() }) { index in
            let start = ContinuousClock.now
            guard index < 300, let client = try? RawClient(port: port, source: "127.0.0.\(index % 4 + 2)") else {
                nap(.milliseconds(20))
                return Shot(kind: "idle", status: nil, took: 0)
            }
            client.send(head + Array(partial[0..<(index * 997 % 60_000)]))
            if index % 2 == 0 { abortOnClose(client) }
            return Shot(kind: "churn", status: nil, took: elapsed(since: start))
        }
        let attackedChurn = measureLegitimate(port: port, count: 50, pause: .milliseconds(20))
        let shots = try #require(churn.finish())
        // libmicrohttpd 0.9.75 leaves a connection whose client sent part of
        // a request and closed at once in CLOSE_WAIT until the inactivity
        // timeout (10 s here); the watchdog releases it within two sweeps.
        let releaseStart = ContinuousClock.now
        let released = waitUntil(timeout: .seconds(3)) { server.inFlight == 0 && server.openConnections == 0 }
        let releaseTook = elapsed(since: releaseStart)

        var attacked = attackedHolding
        attacked.samples += attackedChurn.samples
        attacked.failures += attackedChurn.failures
        expectNormalService(attacked, baseline: baseline, expected: 100)
        #expect(shots.filter { $0.kind == "churn" }.count == 300)
        #expect(holdingGrowth < rssBound, "holding 150 near-cap bodies grew RSS by \(holdingGrowth / 1024) KiB")
        #expect(rss.growth < rssBound)
        #expect(handler.log.withLock { $0.requests.allSatisfy { $0.head.path == "/notify/legit" } }, "no partial body was handled")
        #expect(released && releaseTook < 1.5,
                "released after \(releaseTook) s; in flight \(server.inFlight), open \(server.openConnections)")
        report("disconnect mid-body", baseline: baseline, attacked: attacked, rss: rss,
               "holding 150 bodies of 60,000 bytes grew RSS by \(holdingGrowth / 1024) KiB; "
                   + "after 300 abandoned requests every connection was released \(String(format: "%.2f", releaseTook)) s after the churn")
    }
}
}
