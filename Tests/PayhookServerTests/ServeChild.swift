import Foundation
import PayhookTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A `payhook serve` child with its log (stderr) in a file, for the signal tests.
///
/// Started with posix_spawn(3) rather than `Process`, with every signal at its default action and none blocked
/// (POSIX_SPAWN_SETSIGDEF, POSIX_SPAWN_SETSIGMASK), as a service manager starts it: a child otherwise inherits
/// the test process's blocked or ignored signals, and a signal the test process blocks would then never reach
/// payhook, so a test that payhook survives it would prove nothing.
final class ServeChild {
    let pid: pid_t
    let port: Int
    let logFile: String
    /// On an HTTPS listener (native TLS) /metrics is read with curl, which accepts any certificate: the tests
    /// check which certificate is served by its fingerprint instead.
    let https: Bool
    private let stdout: Int32
    private var status: Int32?

    /// `environment` is added to the test process's own; `arguments` follow `serve --config FILE`.
    init(config: String, log: String, https: Bool = false, environment: [String: String] = [:], arguments extra: [String] = []) throws {
        logFile = log
        self.https = https
        var pipeEnds: [Int32] = [0, 0]
        guard pipe(&pipeEnds) == 0 else { throw TestFailure("pipe: \(String(cString: strerror(errno)))") }
        // Close-on-exec, so that no other child the tests start holds the pipe open (dup2 clears it on fd 1).
        for end in pipeEnds { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, pipeEnds[1], 1)
        posix_spawn_file_actions_addopen(&actions, 2, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let arguments = [try payhookBinary(), "serve", "--config", config] + extra
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var child: pid_t = 0
        var variables = ProcessInfo.processInfo.environment
        variables.merge(environment) { _, added in added }
        var envp: [UnsafeMutablePointer<CChar>?] = variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in envp { free(pointer) } }
        let spawned = posix_spawn(&child, arguments[0], &actions, &attributes, &argv, &envp)
        close(pipeEnds[1])
        guard spawned == 0 else {
            close(pipeEnds[0])
            throw TestFailure("posix_spawn: \(String(cString: strerror(spawned)))")
        }
        pid = child
        stdout = pipeEnds[0]
        // The first line on stdout names the bound address (Sources/payhook/Serve.swift).
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while !line.contains(0x0a), read(stdout, &byte, 1) == 1 { line.append(byte) }
        let text = String(decoding: line, as: UTF8.self)
        guard let match = text.firstMatch(of: #/listening on 127\.0\.0\.1:(\d+)/#), let port = Int(match.1) else {
            kill(child, SIGKILL)
            _ = waitUntil(timeout: .seconds(5)) { waitpid(child, nil, WNOHANG) == child }
            close(pipeEnds[0])
            throw TestFailure("no listening line: \(text)")
        }
        self.port = port
    }

    deinit {
        if isRunning {
            kill(pid, SIGTERM)
            if !waitUntil(timeout: .seconds(10), { !isRunning }) {
                kill(pid, SIGKILL)
                _ = waitUntil(timeout: .seconds(5)) { !isRunning }
            }
        }
        close(stdout)
    }

    /// Whether the child still runs; reaps it once it has exited.
    var isRunning: Bool {
        if status != nil { return false }
        var raw: Int32 = 0
        if waitpid(pid, &raw, WNOHANG) == pid {
            status = raw
            return false
        }
        return true
    }

    func signal(_ signal: Int32) { kill(pid, signal) }

    var log: String { (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? "" }

    func metrics() throws -> String {
        if https {
            let curl = try MeasuringSuites.TLSProcessTests.run(["curl", "-sSk", "--max-time", "10", "https://127.0.0.1:\(port)/metrics"])
            guard curl.status == 0 else { throw TestFailure("curl /metrics: \(curl.output)") }
            return curl.output
        }
        return try HTTPReply.exchange("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", port: port).body
    }

    /// Sends SIGHUP and waits until `payhook_reloads_total` shows one more reload than before, of either result.
    func reload(sourceLocation: SourceLocation = #_sourceLocation) throws {
        let before = try reloads()
        signal(SIGHUP)
        let done = waitUntil(timeout: .seconds(10)) {
            guard let now = try? reloads() else { return false }
            return now.ok + now.failed > before.ok + before.failed
        }
        #expect(done, "no reload counted within 10 s", sourceLocation: sourceLocation)
    }

    /// `payhook_reloads_total` by result.
    func reloads() throws -> (ok: Int, failed: Int) {
        let text = try metrics()
        return (try Self.sample(text, #"payhook_reloads_total{result="ok"}"#), try Self.sample(text, #"payhook_reloads_total{result="failed"}"#))
    }

    /// The value of one series in a /metrics text.
    static func sample(_ metrics: String, _ series: String) throws -> Int {
        let line = try #require(metrics.split(separator: "\n").first { $0.hasPrefix(series + " ") }, "no \(series) in /metrics")
        return try #require(Double(line.dropFirst(series.count + 1)).map { Int($0) })
    }
}
