import Foundation
import PayhookServer
import PayhookTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A unix datagram socket standing in for systemd's notification socket (sd_notify(3)): bound at a path, or in
/// the abstract namespace when the name starts with "@".
final class NotifySocket {
    let descriptor: Int32
    let name: String

    init(name: String) throws {
        self.name = name
        descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw TestFailure("socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(name.utf8)
        let abstract = bytes.first == UInt8(ascii: "@")
        if abstract { bytes[0] = 0 }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 0 : 1))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) }
        }
        guard bound == 0 else { throw TestFailure("bind \(name): \(String(cString: strerror(errno)))") }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(descriptor) }

    /// The next datagram's `KEY=value` lines, or nil after 10 s without one.
    func receive() -> [String: String]? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = recv(descriptor, &buffer, buffer.count, 0)
        guard count > 0 else { return nil }
        var fields: [String: String] = [:]
        for line in String(decoding: buffer[..<count], as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1)
            fields[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        return fields
    }
}

@Suite struct ServiceNotifierTests {
    @Test("without NOTIFY_SOCKET, or with a name that is neither a path nor @abstract, nothing is sent")
    func inactive() {
        #expect(!ServiceNotifier(environment: [:]).isActive)
        #expect(!ServiceNotifier(environment: ["NOTIFY_SOCKET": "relative/notify"]).isActive)
        #expect(!ServiceNotifier(environment: ["NOTIFY_SOCKET": ""]).isActive)
        #expect(!ServiceNotifier(environment: ["NOTIFY_SOCKET": "/" + String(repeating: "x", count: 200)]).isActive)
        // A socket nobody listens on: sending does not fail or block the caller.
        ServiceNotifier(environment: ["NOTIFY_SOCKET": "/nonexistent/notify"]).ready(status: "serving")
    }

    @Test("an abstract socket (@name) gets one datagram per call; a newline in a status cannot add a field")
    func abstractNamespace() throws {
        let name = "@payhook-test-notify-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        let socket = try NotifySocket(name: name)
        let notifier = ServiceNotifier(environment: ["NOTIFY_SOCKET": name])
        #expect(notifier.isActive)
        notifier.ready(status: "serving\nREADY=0")
        let ready = try #require(socket.receive())
        #expect(ready["READY"] == "1")
        #expect(ready["STATUS"] == "serving READY=0")
        #expect(ready["MAINPID"] == "\(getpid())")
        notifier.reloading()
        let reloading = try #require(socket.receive())
        #expect(reloading["RELOADING"] == "1")
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let sent = try #require(reloading["MONOTONIC_USEC"].flatMap { UInt64($0) })
        let microseconds = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
        #expect(sent <= microseconds && microseconds - sent < 10_000_000)
        notifier.stopping(status: "stopping")
        #expect(socket.receive()?["STOPPING"] == "1")
    }
}

extension MeasuringSuites {
/// `payhook serve` under a service manager's notification socket, as systemd's `Type=notify` runs it
/// (packaging/payhook.service.in).
@Suite(.timeLimit(.minutes(2)))
struct ServeNotifyTests {
    @Test func readyOnceServingReloadingAroundSIGHUPAndStoppingOnSIGTERM() throws {
        let dir = try TemporaryDirectory()
        try dir.write("tenant.secret", ReloadTests.oldSecret + "\n")
        let socket = try NotifySocket(name: dir.file("notify.sock"))
        let child = try ServeChild(config: try ReloadTests.config(dir), log: dir.file("payhook.log"),
                                   environment: ["NOTIFY_SOCKET": dir.file("notify.sock")])
        let ready = try #require(socket.receive(), "no READY=1")
        #expect(ready["READY"] == "1")
        #expect(ready["MAINPID"] == "\(child.pid)")
        #expect(ready["STATUS"] == "serving on 127.0.0.1:\(child.port)")
        // Ready means serving: the first request after it is answered.
        #expect(try HTTPReply.exchange("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", port: child.port).status == 200)

        child.signal(SIGHUP)
        let reloading = try #require(socket.receive(), "no RELOADING=1")
        #expect(reloading["RELOADING"] == "1" && reloading["MONOTONIC_USEC"] != nil)
        let reloaded = try #require(socket.receive(), "no READY=1 after the reload")
        #expect(reloaded["READY"] == "1" && reloaded["STATUS"] == "serving on 127.0.0.1:\(child.port)")

        // A reload that fails still ends with READY=1, and the status says so.
        try FileManager.default.removeItem(atPath: dir.file("tenant.secret"))
        child.signal(SIGHUP)
        #expect(socket.receive()?["RELOADING"] == "1")
        let failed = try #require(socket.receive())
        #expect(failed["READY"] == "1")
        #expect(failed["STATUS"]?.contains("the last reload failed") == true, "\(failed)")

        child.signal(SIGTERM)
        let stopping = try #require(socket.receive(), "no STOPPING=1")
        #expect(stopping["STOPPING"] == "1")
        #expect(waitUntil(timeout: .seconds(15)) { !child.isRunning })
    }
}
}
