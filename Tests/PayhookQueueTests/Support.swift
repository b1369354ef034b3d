import Foundation
import PayhookTestSupport
import Testing

/// A spool laid out the way `payhook serve` leaves it, in a fresh temporary folder removed at deinit.
/// Events are written the way the server writes them: a file in tmp/, hard-linked to new/<id>.json, then to
/// ids/<id>, then the tmp/ name removed.
final class TestSpool: @unchecked Sendable {
    private let directory: TemporaryDirectory
    let base: String
    let root: String
    private var counter = 0

    init(create: Bool = true) throws {
        directory = try TemporaryDirectory(prefix: "payhook-queue-test")
        base = directory.path
        root = base + "/spool"
        if create {
            for folder in ["", "/tmp", "/new", "/cur", "/ids", "/conflicts", "/corrupt"] {
                try FileManager.default.createDirectory(atPath: root + folder, withIntermediateDirectories: false)
            }
        }
    }

    func path(_ relative: String) -> String { root + "/" + relative }

    /// A 64-hex id, unique in this spool; `tag` (hex) makes ids readable in failures.
    func makeID(_ tag: String = "e") -> String {
        counter += 1
        let tail = String(counter, radix: 16)
        return tag + String(repeating: "0", count: 64 - tag.count - tail.count) + tail
    }

    /// The bytes of an event file shaped like docs/contract.md §5 (two-space indent, final newline, as the server
    /// writes).
    static func eventJSON(
        id: String, source: String = "unified", tenant: String = "demo", orderRef: String = "order-1",
        status: String = "SUCCESSPAY", amount: Int = 100, receivedAt: String = "2026-11-22T02:34:50.123Z"
    ) -> String {
        """
        {
          "schema": "payhook.event.v1",
          "id": "\(id)",
          "source": "\(source)",
          "tenant": "\(tenant)",
          "order_ref": "\(orderRef)",
          "status": "\(status)",
          "amount": \(amount),
          "currency": "CNY",
          "dedupe_key": "\(source)/\(tenant)/\(orderRef)/\(status)",
          "verified_with": "values-sha1",
          "received_at": "\(receivedAt)",
          "remote_addr": "127.0.0.1",
          "fields": {
            "money": "\(amount)",
            "requestKey": "\(orderRef)",
            "payTypeName": "微信支付"
          },
          "raw": {
            "method": "GET",
            "target": "/notify/unified?money=\(amount)&requestKey=\(orderRef)",
            "body": ""
          }
        }

        """
    }

    /// Publishes an event like the server does and returns its id.
    @discardableResult
    func add(
        id: String? = nil, source: String = "unified", tenant: String = "demo", orderRef: String? = nil,
        status: String = "SUCCESSPAY", amount: Int = 100, receivedAt: String = "2026-11-22T02:34:50.123Z"
    ) throws -> String {
        let id = id ?? makeID()
        let text = Self.eventJSON(
            id: id, source: source, tenant: tenant, orderRef: orderRef ?? "order-\(id.suffix(6))", status: status,
            amount: amount, receivedAt: receivedAt)
        try publish(id: id, bytes: Array(text.utf8))
        return id
    }

    /// Publishes raw bytes under new/<id>.json the way the server does (tmp → new → ids, tmp removed).
    func publish(id: String, bytes: [UInt8]) throws {
        let temporary = path("tmp/\(id).\(getpid()).1.1")
        guard FileManager.default.createFile(atPath: temporary, contents: Data(bytes)) else {
            throw TestFailure("create \(temporary)")
        }
        guard link(temporary, path("new/\(id).json")) == 0, link(temporary, path("ids/\(id)")) == 0 else {
            throw TestFailure("link \(temporary): \(String(cString: strerror(errno)))")
        }
        unlink(temporary)
    }

    /// Publishes `count` events received one second apart, oldest first; returns their ids in that order.
    func addMany(_ count: Int, tag: String = "e") throws -> [String] {
        var ids: [String] = []
        for index in 0..<count {
            let seconds = index % 60
            let minutes = (index / 60) % 60
            let hours = index / 3600
            let stamp = String(format: "2026-11-22T%02d:%02d:%02d.000Z", hours, minutes, seconds)
            ids.append(try add(id: makeID(tag), receivedAt: stamp))
        }
        return ids
    }

    /// Names in a folder, sorted; dotfiles left out.
    func list(_ folder: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path(folder))) ?? []).filter { !$0.hasPrefix(".") }.sorted()
    }

    func exists(_ relative: String) -> Bool {
        FileManager.default.fileExists(atPath: path(relative))
    }

    func read(_ relative: String) throws -> String {
        try String(contentsOfFile: path(relative), encoding: .utf8)
    }

    func write(_ relative: String, _ text: String) throws {
        guard FileManager.default.createFile(atPath: path(relative), contents: Data(text.utf8)) else {
            throw TestFailure("create \(relative)")
        }
    }

    /// A symbolic link at `relative` pointing to `target`.
    func symlink(_ relative: String, to target: String) throws {
        guard Foundation.symlink(target, path(relative)) == 0 else {
            throw TestFailure("symlink \(relative): \(String(cString: strerror(errno)))")
        }
    }

    /// A FIFO (named pipe) at `relative`, with no writer.
    func fifo(_ relative: String) throws {
        guard mkfifo(path(relative), 0o644) == 0 else {
            throw TestFailure("mkfifo \(relative): \(String(cString: strerror(errno)))")
        }
    }

    /// A sparse file of `size` bytes at `relative`: `prefix`, then a hole made by ftruncate(2), so that it
    /// takes no disk space.
    func sparse(_ relative: String, prefix: String, size: Int) throws {
        let fd = open(path(relative), O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard fd >= 0 else { throw TestFailure("create \(relative): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(prefix.utf8)
        guard bytes.withUnsafeBytes({ Foundation.write(fd, $0.baseAddress, $0.count) }) == bytes.count,
            ftruncate(fd, off_t(size)) == 0
        else {
            throw TestFailure("write \(relative): \(String(cString: strerror(errno)))")
        }
    }

    /// The file type (S_IFREG, S_IFLNK, …) lstat(2) reports for `relative`, or nil when nothing is there.
    func lstatKind(_ relative: String) -> mode_t? {
        var raw = stat()
        guard lstat(path(relative), &raw) == 0 else { return nil }
        return raw.st_mode & S_IFMT
    }

    /// The target of the symbolic link at `relative`.
    func readLink(_ relative: String) -> String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: path(relative))
    }

    /// Sets a file's modification time `seconds` into the past.
    func age(_ relative: String, by seconds: Double) throws {
        let date = Date().addingTimeInterval(-seconds)
        try FileManager.default.setAttributes([.modificationDate: date], ofItemAtPath: path(relative))
    }
}

struct RunResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// A child process whose stdout and stderr go to files (so a chatty child can never block on a full pipe).
final class Child: @unchecked Sendable {
    let process = Process()
    private let folder: TemporaryDirectory
    private let outPath: String
    private let errPath: String

    init(_ executable: String, _ arguments: [String], environment: [String: String] = [:], stdin: String? = nil) throws {
        folder = try TemporaryDirectory(prefix: "payhook-queue-child")
        let folder = folder.path
        outPath = folder + "/stdout"
        errPath = folder + "/stderr"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var merged = ProcessInfo.processInfo.environment
        merged.merge(environment) { _, new in new }
        process.environment = merged
        process.standardOutput = FileHandle(forWritingAtPath: outPath)
        process.standardError = FileHandle(forWritingAtPath: errPath)
        if let stdin {
            let input = folder + "/stdin"
            _ = FileManager.default.createFile(atPath: input, contents: Data(stdin.utf8))
            process.standardInput = FileHandle(forReadingAtPath: input)
        } else {
            process.standardInput = FileHandle(forReadingAtPath: "/dev/null")
        }
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }
    var stdout: String { (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "" }

    /// Waits up to `seconds` for the child to exit; kills it and throws if it does not. Blocks this test's
    /// thread, which is all the wait needs (see Waiting.swift in PayhookTestSupport).
    @discardableResult
    func finish(within seconds: Double = 20) throws -> RunResult {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(5_000) }
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
            throw TestFailure("\(process.arguments ?? []) did not finish within \(seconds) s; stderr: \(stderr)")
        }
        process.waitUntilExit()
        return RunResult(status: process.terminationStatus, stdout: stdout, stderr: stderr)
    }

    deinit {
        if process.isRunning { kill(pid, SIGKILL) }
    }
}

/// Runs `payhook ARGUMENTS…` to completion.
@discardableResult
func payhook(_ arguments: String..., environment: [String: String] = [:], within seconds: Double = 20) throws -> RunResult {
    try Child(try payhookBinary(), arguments, environment: environment).finish(within: seconds)
}

/// Waits until `condition` holds, checking every 10 ms, for at most `seconds`. Returns whether it held.
func eventually(within seconds: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return true }
        usleep(10_000)
    }
    return try condition()
}

/// CPU time (user + system) a process has used so far, in clock ticks, from /proc/<pid>/stat.
func cpuTicks(_ pid: Int32) -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = text.lastIndex(of: ")")
    else { return nil }
    // Fields after "(comm)": state is field 3; utime and stime are fields 14 and 15 (proc(5)).
    let fields = text[text.index(after: close)...].split(separator: " ")
    guard fields.count > 13, let user = Int(fields[11]), let system = Int(fields[12]) else { return nil }
    return user + system
}
