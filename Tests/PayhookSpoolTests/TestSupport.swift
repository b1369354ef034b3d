import Foundation
import Glibc
import Logging
import PayhookSpool
import PayhookSpoolFormat
import PayhookTestSupport
import Synchronization
import Testing

// MARK: - Records

/// Records for the tests: a small JSON object {"id":…,"fingerprint":…,"body":…}. The spool never looks inside.
struct TestInspector: SpoolRecordInspector {
    func inspect(_ bytes: [UInt8]) -> SpoolRecordInfo? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
              let id = object["id"] as? String,
              let fingerprint = object["fingerprint"] as? String
        else { return nil }
        return SpoolRecordInfo(id: id, fingerprint: fingerprint)
    }
}

/// A 64-hex-character id made from a number, so tests can tell ids apart.
func testID(_ number: Int) -> String {
    let hex = String(number, radix: 16)
    return String(repeating: "a", count: 64 - hex.count) + hex
}

func recordBytes(id: String, fingerprint: String, body: String) -> [UInt8] {
    Array(#"{"id":"\#(id)","fingerprint":"\#(fingerprint)","body":"\#(body)"}"#.utf8)
}

func makeRecord(id: String, fingerprint: String = "fp-1", body: String = "payment 42") -> SpoolRecord {
    SpoolRecord(id: id, fingerprint: fingerprint, bytes: recordBytes(id: id, fingerprint: fingerprint, body: body))
}

// MARK: - Directories and files

extension TemporaryDirectory {
    /// A spool directory inside it (not yet created).
    var spool: String { path + "/spool" }
}

let posix = PosixFileSystem()

func names(_ directory: String) throws -> [String] {
    try posix.readDirectory(directory).sorted()
}

func contents(_ path: String) throws -> [UInt8] {
    try posix.readFile(path)
}

func exists(_ path: String) -> Bool {
    (try? posix.stat(path)) != nil
}

func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else {
        throw TestFailure("cannot create \(path)")
    }
}

func makeLink(_ existing: String, _ newPath: String) throws {
    try posix.link(existing, newPath)
}

// MARK: - Opening spools

func openSpool(
    _ directory: String,
    fileSystem: any SpoolFileSystem = PosixFileSystem(),
    logs: LogStore = LogStore(),
    minimumFreeBytes: UInt64 = 0,
    conflictLimits: SpoolConflictLimits = SpoolConflictLimits(),
    storeThreads: Int = 64
) throws(SpoolError) -> Spool {
    try Spool(
        directory: directory,
        inspector: TestInspector(),
        fileSystem: fileSystem,
        logger: logs.logger(),
        minimumFreeBytes: minimumFreeBytes,
        conflictLimits: conflictLimits,
        storeThreads: storeThreads
    )
}

// MARK: - Logs

/// Collects what the spool logs.
final class LogStore: Sendable {
    struct Entry: Sendable {
        let level: Logger.Level
        let message: String
    }

    private let entries = Mutex<[Entry]>([])

    func logger() -> Logger {
        Logger(label: "payhook.spool.test") { _ in CapturingLogHandler(store: self) }
    }

    func append(_ entry: Entry) {
        entries.withLock { $0.append(entry) }
    }

    var all: [Entry] {
        entries.withLock { $0 }
    }

    func messages(at level: Logger.Level) -> [String] {
        all.filter { $0.level == level }.map(\.message)
    }
}

struct CapturingLogHandler: LogHandler {
    let store: LogStore
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        store.append(LogStore.Entry(level: event.level, message: event.message.description))
    }
}

/// A value shared between threads.
final class Shared<Value: Sendable>: Sendable {
    private let value: Mutex<Value>

    init(_ value: Value) {
        self.value = Mutex(value)
    }

    func update<R: Sendable>(_ body: (inout Value) -> R) -> R {
        value.withLock { body(&$0) }
    }

    var current: Value {
        value.withLock { $0 }
    }
}

/// Runs `body` on `count` threads that all start at once, and returns their results.
func runConcurrently<R: Sendable>(_ count: Int, _ body: @escaping @Sendable (Int) -> R) -> [R] {
    let results = Shared<[Int: R]>([:])
    let ready = DispatchGroup()
    let start = DispatchSemaphore(value: 0)
    let done = DispatchGroup()
    for index in 0..<count {
        ready.enter()
        done.enter()
        let thread = Thread {
            ready.leave()
            start.wait()
            let result = body(index)
            results.update { $0[index] = result }
            done.leave()
        }
        thread.start()
    }
    ready.wait()
    for _ in 0..<count { start.signal() }
    done.wait()
    let collected = results.current
    return (0..<count).compactMap { collected[$0] }
}

// MARK: - A file system that records calls and injects faults

/// Forwards every call to ``PosixFileSystem``, records it (paths relative to the spool), and fails chosen calls
/// with a chosen errno while fault injection is switched on.
final class RecordingFileSystem: SpoolFileSystem {
    enum Operation: String, Sendable {
        case open, write, fsync, truncate, close, flock, link, rename, unlink, mkdir, readDirectory, readFile, stat
        case access
        /// Not a call: a marker a test puts into the log.
        case mark
    }

    enum PathMatch: Sendable, CustomStringConvertible {
        case any
        case exact(String)
        case prefix(String)

        func matches(_ path: String) -> Bool {
            switch self {
            case .any: true
            case .exact(let expected): path == expected
            case .prefix(let prefix): path.hasPrefix(prefix)
            }
        }

        var description: String {
            switch self {
            case .any: "any path"
            case .exact(let path): path
            case .prefix(let prefix): prefix + "*"
            }
        }
    }

    struct Event: Sendable, CustomStringConvertible {
        let operation: Operation
        /// For calls on a descriptor, the path it was opened with; for link and rename, the destination.
        let path: String
        let source: String?
        let flags: CInt?
        /// The errno the call failed with, injected or real.
        let failure: CInt?

        var creates: Bool {
            operation == .open && (flags ?? 0) & O_CREAT != 0
        }

        var description: String {
            var text = "\(operation.rawValue) \(path)"
            if let source { text = "\(operation.rawValue) \(source) -> \(path)" }
            if let failure { text += " ! \(String(cString: strerror(failure)))" }
            return text
        }
    }

    struct Fault: Sendable {
        var operation: Operation
        var path: PathMatch = .any
        var errno: CInt
        /// Fails the nth matching call (1 = the first one counted while injection is on).
        var nth: Int = 1
        /// Also fails every matching call after the nth.
        var persistent = false
        /// Runs just before the call fails, e.g. to play a consumer.
        var action: (@Sendable () -> Void)?
    }

    private struct State {
        var events: [Event] = []
        var descriptors: [CInt: String] = [:]
        var faults: [(fault: Fault, seen: Int)] = []
        var injecting = true
        var deviceOverrides: [String: UInt64] = [:]
        var writeLimit: Int?
        var pauses: [(operation: Operation, path: PathMatch, action: @Sendable () -> Void)] = []
    }

    let root: String
    /// Whether ``openUnnamed(inDirectory:mode:)`` forwards to the real O_TMPFILE or throws `EOPNOTSUPP`, as a
    /// file system without unnamed files does (the spool then names its files in tmp/).
    let unnamedFiles: Bool
    private let real = PosixFileSystem()
    private let state = Mutex(State())

    init(root: String, unnamedFiles: Bool = false) {
        self.root = root
        self.unnamedFiles = unnamedFiles
    }

    // Control

    /// Adds a fault (counting starts now).
    func inject(_ fault: Fault) {
        state.withLock { $0.faults.append((fault, 0)) }
    }

    /// Runs `action` on the calling thread just before the next matching call is made (once), e.g. to hold a
    /// store inside its batch until the test lets it go.
    func pause(before operation: Operation, path: PathMatch, _ action: @escaping @Sendable () -> Void) {
        state.withLock { $0.pauses.append((operation, path, action)) }
    }

    /// Switches fault injection on or off; recording goes on either way.
    func setInjecting(_ on: Bool) {
        state.withLock { $0.injecting = on }
    }

    /// Makes stat report another st_dev for a path relative to the spool.
    func overrideDevice(of path: String, with device: UInt64) {
        state.withLock { $0.deviceOverrides[path] = device }
    }

    /// Makes every write(2) write at most `size` bytes, as a short write would.
    func limitWrites(to size: Int) {
        state.withLock { $0.writeLimit = size }
    }

    func mark(_ label: String) {
        record(Event(operation: .mark, path: label, source: nil, flags: nil, failure: nil))
    }

    var events: [Event] {
        state.withLock { $0.events }
    }

    var eventCount: Int {
        state.withLock { $0.events.count }
    }

    func events(since index: Int) -> [Event] {
        Array(events.dropFirst(index))
    }

    // Plumbing

    private func relative(_ path: String) -> String {
        if path == root { return "." }
        if path.hasPrefix(root + "/") { return String(path.dropFirst(root.count + 1)) }
        return path
    }

    private func path(of fd: CInt) -> String {
        state.withLock { $0.descriptors[fd] } ?? "fd \(fd)"
    }

    private func record(_ event: Event) {
        state.withLock { $0.events.append(event) }
    }

    private func perform<T>(
        _ operation: Operation,
        _ path: String,
        source: String? = nil,
        flags: CInt? = nil,
        _ call: () throws(SpoolErrno) -> T
    ) throws(SpoolErrno) -> T {
        let pause = state.withLock { state -> (@Sendable () -> Void)? in
            guard let index = state.pauses.firstIndex(where: { $0.operation == operation && $0.path.matches(path) })
            else { return nil }
            return state.pauses.remove(at: index).action
        }
        pause?()
        let injected = state.withLock { state -> (CInt, (@Sendable () -> Void)?)? in
            guard state.injecting else { return nil }
            for index in state.faults.indices {
                let fault = state.faults[index].fault
                guard fault.operation == operation, fault.path.matches(path) else { continue }
                state.faults[index].seen += 1
                let seen = state.faults[index].seen
                if seen == fault.nth || (fault.persistent && seen > fault.nth) {
                    return (fault.errno, fault.action)
                }
            }
            return nil
        }
        if let (code, action) = injected {
            action?()
            // close(2) releases the descriptor even when it reports an error.
            if operation == .close { _ = try? call() }
            record(Event(operation: operation, path: path, source: source, flags: flags, failure: code))
            throw SpoolErrno(code)
        }
        do {
            let result = try call()
            record(Event(operation: operation, path: path, source: source, flags: flags, failure: nil))
            return result
        } catch {
            record(Event(operation: operation, path: path, source: source, flags: flags, failure: error.rawValue))
            throw error
        }
    }

    // SpoolFileSystem

    func open(_ path: String, flags: CInt, mode: mode_t) throws(SpoolErrno) -> CInt {
        let shown = relative(path)
        let fd = try perform(.open, shown, flags: flags) { () throws(SpoolErrno) in
            try real.open(path, flags: flags, mode: mode)
        }
        state.withLock { $0.descriptors[fd] = shown }
        return fd
    }

    func write(_ fd: CInt, _ bytes: UnsafeRawBufferPointer) throws(SpoolErrno) -> Int {
        let limit = state.withLock { $0.writeLimit } ?? bytes.count
        return try perform(.write, path(of: fd)) { () throws(SpoolErrno) in
            try real.write(fd, UnsafeRawBufferPointer(rebasing: bytes.prefix(limit)))
        }
    }

    func fsync(_ fd: CInt) throws(SpoolErrno) {
        try perform(.fsync, path(of: fd)) { () throws(SpoolErrno) in try real.fsync(fd) }
    }

    func truncate(_ fd: CInt, length: Int64) throws(SpoolErrno) {
        try perform(.truncate, path(of: fd)) { () throws(SpoolErrno) in try real.truncate(fd, length: length) }
    }

    func close(_ fd: CInt) throws(SpoolErrno) {
        defer { _ = state.withLock { $0.descriptors.removeValue(forKey: fd) } }
        try perform(.close, path(of: fd)) { () throws(SpoolErrno) in try real.close(fd) }
    }

    func flock(_ fd: CInt, operation: CInt) throws(SpoolErrno) {
        try perform(.flock, path(of: fd)) { () throws(SpoolErrno) in try real.flock(fd, operation: operation) }
    }

    func link(_ existing: String, _ newPath: String) throws(SpoolErrno) {
        try perform(.link, relative(newPath), source: relative(existing)) { () throws(SpoolErrno) in
            try real.link(existing, newPath)
        }
    }

    /// Recorded as an `open` of "<directory>/" (e.g. "tmp/"), so that faults on the prefix "tmp/" hit unnamed
    /// files as they hit named ones; so are the writes and fsyncs on its descriptor.
    func openUnnamed(inDirectory path: String, mode: mode_t) throws(SpoolErrno) -> CInt {
        guard unnamedFiles else { throw SpoolErrno(EOPNOTSUPP) }
        let shown = relative(path) + "/"
        let fd = try perform(.open, shown, flags: PosixFileSystem.temporaryFileFlag | O_WRONLY) { () throws(SpoolErrno) in
            try real.openUnnamed(inDirectory: path, mode: mode)
        }
        state.withLock { $0.descriptors[fd] = shown }
        return fd
    }

    func link(descriptor fd: CInt, _ newPath: String) throws(SpoolErrno) {
        try perform(.link, relative(newPath), source: path(of: fd)) { () throws(SpoolErrno) in
            try real.link(descriptor: fd, newPath)
        }
    }

    func rename(_ oldPath: String, _ newPath: String) throws(SpoolErrno) {
        try perform(.rename, relative(newPath), source: relative(oldPath)) { () throws(SpoolErrno) in
            try real.rename(oldPath, newPath)
        }
    }

    func unlink(_ path: String) throws(SpoolErrno) {
        try perform(.unlink, relative(path)) { () throws(SpoolErrno) in try real.unlink(path) }
    }

    func mkdir(_ path: String, mode: mode_t) throws(SpoolErrno) {
        try perform(.mkdir, relative(path)) { () throws(SpoolErrno) in try real.mkdir(path, mode: mode) }
    }

    func readDirectory(_ path: String) throws(SpoolErrno) -> [String] {
        try perform(.readDirectory, relative(path)) { () throws(SpoolErrno) in try real.readDirectory(path) }
    }

    func readFile(_ path: String) throws(SpoolErrno) -> [UInt8] {
        try perform(.readFile, relative(path)) { () throws(SpoolErrno) in try real.readFile(path) }
    }

    func stat(_ path: String) throws(SpoolErrno) -> SpoolFileStatus {
        let shown = relative(path)
        var status = try perform(.stat, shown) { () throws(SpoolErrno) in try real.stat(path) }
        if let device = state.withLock({ $0.deviceOverrides[shown] }) {
            status.device = device
        }
        return status
    }

    func access(_ path: String, mode: CInt) throws(SpoolErrno) {
        try perform(.access, relative(path)) { () throws(SpoolErrno) in try real.access(path, mode: mode) }
    }

    func processID() -> CInt {
        real.processID()
    }

    func currentTimeMicroseconds() -> UInt64 {
        real.currentTimeMicroseconds()
    }
}
