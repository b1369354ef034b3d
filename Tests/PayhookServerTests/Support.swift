import Foundation
import InMemoryLogging
import Logging
import PayhookConfig
import PayhookCore
import PayhookServer
import PayhookSpool

/// Where the package root is, found from this file's path.
enum Paths {
    static let root: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let fixtures = root.appendingPathComponent("Fixtures")

    static func fixture(_ name: String) throws -> String {
        let text = try String(contentsOf: fixtures.appendingPathComponent(name), encoding: .utf8)
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The built `payhook` executable, next to the test bundle (`swift build` puts both in one folder).
    static func payhookBinary() throws -> URL {
        if let explicit = ProcessInfo.processInfo.environment["PAYHOOK_BIN"] { return URL(fileURLWithPath: explicit) }
        var candidates: [URL] = []
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var dir = bundle.deletingLastPathComponent()
        for _ in 0..<5 {
            candidates.append(dir.appendingPathComponent("payhook"))
            dir = dir.deletingLastPathComponent()
        }
        candidates.append(root.appendingPathComponent(".build/debug/payhook"))
        for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate.path) {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate.path, isDirectory: &isDirectory), !isDirectory.boolValue {
                return candidate
            }
        }
        throw TestFailure("payhook binary not found next to \(bundle.path); run `swift build` first")
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A fresh directory under /tmp, removed by `remove()`.
final class TempDir: @unchecked Sendable {
    let path: String
    init() throws {
        var template = Array("/tmp/payhook-test-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw TestFailure("mkdtemp failed") }
        path = String(cString: made)
    }
    func file(_ name: String) -> String { path + "/" + name }
    func write(_ name: String, _ text: String) throws {
        try text.write(toFile: file(name), atomically: false, encoding: .utf8)
    }
    func remove() { try? FileManager.default.removeItem(atPath: path) }
    deinit { remove() }
}

/// Files directly inside a folder, sorted; dotfiles left out.
func listing(_ path: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
}

/// The demo tenants of Fixtures/demo.toml, with a throwaway spool.
func demoConfig(spool: String, listen: String = "127.0.0.1:0") throws -> Config {
    var config = try ConfigFile.load(path: Paths.fixtures.appendingPathComponent("demo.toml").path).config
    config.spool = spool
    config.listen = listen
    return config
}

/// A server on port 0 with its own spool and an in-memory log.
final class LiveServer: @unchecked Sendable {
    let dir: TempDir
    let server: PayhookServer
    let log: InMemoryLogHandler
    var port: Int { server.http.boundAddress.port }
    var spool: String { server.config.spool }

    init(dir: TempDir? = nil, fileSystem: any SpoolFileSystem = PosixFileSystem(), configure: (inout Config) -> Void = { _ in }) throws {
        let dir = try dir ?? TempDir()
        self.dir = dir
        var config = try demoConfig(spool: dir.file("spool"))
        configure(&config)
        let log = InMemoryLogHandler()
        self.log = log
        let logger = Logger(label: "payhook-test") { _ in
            var handler = log
            handler.logLevel = .trace
            return handler
        }
        server = try PayhookServer(config: config, logger: logger, fileSystem: fileSystem)
    }

    func get(_ target: String) throws -> HTTPReply {
        try RawHTTP.send("GET \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", port: port)
    }

    func events() -> [String] { listing(spool + "/new") }

    func stop() { server.shutdown() }
}

struct HTTPReply {
    var status: Int
    var headers: [String: String]
    var body: String
}

/// A minimal HTTP/1.1 client over a raw socket, so tests can send exactly the bytes they mean,
/// malformed ones included. Loopback only; every read has a timeout.
enum RawHTTP {
    static func connect(port: Int, host: String = "127.0.0.1") throws -> Int32 {
        let v6 = host.contains(":")
        let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket failed") }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var result: Int32
        if v6 {
            var addr = sockaddr_in6()
            addr.sin6_family = sa_family_t(AF_INET6)
            addr.sin6_port = in_port_t(UInt16(port).bigEndian)
            inet_pton(AF_INET6, host, &addr.sin6_addr)
            result = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        } else {
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            inet_pton(AF_INET, host, &addr.sin_addr)
            result = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
        guard result == 0 else {
            let e = errno
            close(fd)
            throw TestFailure("connect to port \(port) failed: \(String(cString: strerror(e)))")
        }
        return fd
    }

    static func write(_ fd: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }

    /// Reads until the peer closes (requests say `Connection: close`) or the timeout passes.
    static func readAll(_ fd: Int32) -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            out.append(contentsOf: buffer[0..<n])
        }
        return out
    }

    static func send(_ request: String, port: Int, host: String = "127.0.0.1") throws -> HTTPReply {
        try send(Array(request.utf8), port: port, host: host)
    }

    static func send(_ request: [UInt8], port: Int, host: String = "127.0.0.1") throws -> HTTPReply {
        let fd = try connect(port: port, host: host)
        defer { close(fd) }
        write(fd, request)
        return try parse(readAll(fd))
    }

    static func parse(_ bytes: [UInt8]) throws -> HTTPReply {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw TestFailure("no HTTP response: \(text.prefix(200))") }
        let head = text[..<split.lowerBound].components(separatedBy: "\r\n")
        let statusParts = head[0].split(separator: " ")
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { throw TestFailure("bad status line \(head[0])") }
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return HTTPReply(status: status, headers: headers, body: String(text[split.upperBound...]))
    }
}
