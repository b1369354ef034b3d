import Foundation
import InMemoryLogging
import Logging
import PayhookConfig
import PayhookServer
import PayhookSpool
import PayhookSpoolFormat
import PayhookStore
import Synchronization
import Testing

/// Forwards to the real file system, but while `failure` is set, creating, writing and fsyncing files
/// fail with that errno: a disk that is full or failing.
final class FailingDisk: SpoolFileSystem {
    let real = PosixFileSystem()
    let failure = Mutex<CInt?>(nil)
    /// While set, only fsyncs of directories fail, with this errno.
    let directoryFsyncFailure = Mutex<CInt?>(nil)
    private let directories = Mutex<Set<CInt>>([])

    func check() throws(SpoolErrno) {
        if let errno = failure.withLock({ $0 }) { throw SpoolErrno(errno) }
    }

    func open(_ path: String, flags: CInt, mode: mode_t) throws(SpoolErrno) -> CInt {
        if flags & O_CREAT != 0 { try check() }
        let fd = try real.open(path, flags: flags, mode: mode)
        if flags & O_DIRECTORY != 0 { directories.withLock { _ = $0.insert(fd) } }
        return fd
    }
    func write(_ fd: CInt, _ bytes: UnsafeRawBufferPointer) throws(SpoolErrno) -> Int {
        try check()
        return try real.write(fd, bytes)
    }
    func fsync(_ fd: CInt) throws(SpoolErrno) {
        try check()
        if let errno = directoryFsyncFailure.withLock({ $0 }), directories.withLock({ $0.contains(fd) }) {
            throw SpoolErrno(errno)
        }
        try real.fsync(fd)
    }
    func truncate(_ fd: CInt, length: Int64) throws(SpoolErrno) { try real.truncate(fd, length: length) }
    func close(_ fd: CInt) throws(SpoolErrno) {
        directories.withLock { _ = $0.remove(fd) }
        try real.close(fd)
    }
    func flock(_ fd: CInt, operation: CInt) throws(SpoolErrno) { try real.flock(fd, operation: operation) }
    func link(_ existing: String, _ newPath: String) throws(SpoolErrno) { try real.link(existing, newPath) }
    func rename(_ oldPath: String, _ newPath: String) throws(SpoolErrno) { try real.rename(oldPath, newPath) }
    func unlink(_ path: String) throws(SpoolErrno) { try real.unlink(path) }
    func mkdir(_ path: String, mode: mode_t) throws(SpoolErrno) { try real.mkdir(path, mode: mode) }
    func readDirectory(_ path: String) throws(SpoolErrno) -> [String] { try real.readDirectory(path) }
    func readFile(_ path: String) throws(SpoolErrno) -> [UInt8] { try real.readFile(path) }
    func stat(_ path: String) throws(SpoolErrno) -> SpoolFileStatus { try real.stat(path) }
    func processID() -> CInt { real.processID() }
    func currentTimeMicroseconds() -> UInt64 { real.currentTimeMicroseconds() }
}

/// docs/contract.md §4 invariant 4: a failure to store is answered as a failure so the sender retries; it is
/// logged; serving goes on, and recovers when the disk does.
@Suite(.timeLimit(.minutes(2)))
struct StorageFailureTests {
    @Test(arguments: [ENOSPC, EIO])
    func unwritableSpoolAnswers503ThenRecovers(errno: CInt) throws {
        let disk = FailingDisk()
        let live = try LiveServer(fileSystem: disk)
        defer { live.stop() }
        let target = "/notify/unified?" + (try Paths.fixture("unified/success.query"))

        disk.failure.withLock { $0 = errno }
        let failed = try live.get(target)
        #expect(failed.status == 503)
        #expect(failed.body == "fail")
        #expect(failed.headers["retry-after"] == "30")
        #expect(live.events().isEmpty)
        #expect(listing(live.spool + "/ids").isEmpty)
        #expect(listing(live.spool + "/tmp").isEmpty)
        let health = try live.get("/healthz")
        #expect(health.status == 503)
        #expect(live.log.entries.contains { $0.level == .error && $0.metadata["outcome"] == "storage_error" })

        // Still serving: refusals that need no disk are answered as usual.
        #expect(try live.get("/notify/unified?" + (try Paths.fixture("unified/tampered.query"))).status == 401)

        // The disk is back: the sender's retry is stored, exactly once.
        disk.failure.withLock { $0 = nil }
        #expect(try live.get("/healthz").status == 200)
        let retried = try live.get(target)
        #expect(retried.status == 200)
        #expect(retried.body == "success")
        #expect(live.events().count == 1)
        #expect(try live.get(target).body == "success")
        #expect(live.events().count == 1)
    }

    @Test func wechatNotificationsGetTheFailXMLWhenTheSpoolFails() throws {
        let disk = FailingDisk()
        let live = try LiveServer(fileSystem: disk)
        defer { live.stop() }
        let body = Array(try Data(contentsOf: Paths.fixtures.appendingPathComponent("wechat/refund.xml")))
        disk.failure.withLock { $0 = EIO }
        let failed = try WeChatLiveTests.post(live, body)
        #expect(failed.status == 503)
        #expect(failed.body == "<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[try again later]]></return_msg></xml>")
        #expect(live.events().isEmpty)
        disk.failure.withLock { $0 = nil }
        #expect(try WeChatLiveTests.post(live, body).body == WeChatLiveTests.success)
        #expect(live.events().count == 1)
    }

    /// docs/durability.md §6: after a failed directory fsync payhook no longer knows which names are durable,
    /// so it answers 503 to everything, /healthz turns 503, and `payhook serve` stops for a restart.
    @Test func failedDirectoryFsyncMakesTheServerUnhealthy() throws {
        let disk = FailingDisk()
        let live = try LiveServer(fileSystem: disk)
        defer { live.stop() }
        #expect(try live.get("/notify/unified?" + (try Paths.fixture("unified/success.query"))).body == "success")
        disk.directoryFsyncFailure.withLock { $0 = EIO }
        let failed = try live.get("/notify/unified?" + (try Paths.fixture("unified/refund.query")))
        #expect(failed.status == 503)
        disk.directoryFsyncFailure.withLock { $0 = nil }
        // The disk works again, but nothing is acknowledged until a restart has re-checked the spool.
        #expect(try live.get("/notify/unified?" + (try Paths.fixture("unified/refund.query"))).status == 503)
        #expect(try live.get("/healthz").status == 503)
        #expect(live.server.store.unhealthyReason != nil)
        let metrics = try live.get("/metrics").body
        #expect(metrics.contains("payhook_spool_healthy 0"))
        #expect(metrics.contains("payhook_spool_failures{kind=\"fsync_dir\"} 1"))
        // `payhook serve` waits on this and exits for a restart.
        guard case .unhealthy = live.server.waitForStop(nextSignal: { _ in nil }) else {
            Issue.record("waitForStop did not report the unhealthy spool")
            return
        }
        #expect(live.server.waitForStop(nextSignal: { _ in nil }) != .signal(SIGTERM))
    }

    @Test func freeSpaceGuardRefusesBeforeWriting() throws {
        let live = try LiveServer { $0.minFreeBytes = Int.max / 2 }
        defer { live.stop() }
        let reply = try live.get("/notify/unified?" + (try Paths.fixture("unified/success.query")))
        #expect(reply.status == 503)
        #expect(live.events().isEmpty)
        #expect(try live.get("/healthz").status == 503)
        #expect(try live.get("/metrics").body.contains("payhook_spool_failures{kind=\"min_free\"} 2"))
    }
}

/// The database store's sessions outlive nothing: a restart, a failover or an operator's pg_terminate_backend
/// ends them while they sit idle in the pool.
@Suite(.timeLimit(.minutes(2)))
struct DatabaseSessionTests {
    /// A session the server ended while idle is not used for the next callback: the sender gets success, not a
    /// 503 per dead session, and /healthz does not flap to 503.
    @Test func sessionsEndedWhileIdleAreReplacedBeforeUse() throws {
        let live = try LiveServer(store: .postgres)
        defer { live.stop() }
        #expect(try live.get("/notify/unified?" + (try Paths.fixture("unified/success.query"))).body == "success")
        #expect(try live.get("/healthz").status == 200)
        let ended = try live.sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
        #expect(ended != ["0"])
        // The server closes them at once; give the sockets a moment to say so.
        usleep(200_000)
        #expect(try live.get("/healthz").status == 200)
        let reply = try live.get("/notify/unified?" + (try Paths.fixture("unified/refund.query")))
        #expect(reply.status == 200)
        #expect(reply.body == "success")
        #expect(live.events().count == 2)
    }
}
