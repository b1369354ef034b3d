public import Foundation
import Glibc
import PayhookSpoolFormat
// The queue's vocabulary (EventQueue and its value types) is PayhookStore's; every user of the spool's queue sees
// it through this module.
public import PayhookStore
import Synchronization

/// The consumer's view of a payhook spool: list, show, take, ack, nack, requeue, revive and gc.
///
/// It never creates the spool and never touches the server's `.lock`; the only folders it creates are its
/// own, `attempts/` and `dead/`, which the server ignores. Event files in new/ and cur/ keep their name
/// `<id>.json`, because the server's startup recovery moves any other name there to corrupt/. What an event file
/// is, how it is read and how a file that is none is set aside are PayhookSpoolFormat's, the same for the server.
/// Safe to use from many threads and processes at once: claiming is a rename(2), and the rename that
/// succeeds owns the event.
public final class QueueDirectory: Sendable {
    /// The spool directory, without trailing slashes.
    public let root: String

    /// The largest file the queue tools read or move out of new/, cur/, dead/ and attempts/: 16 MiB
    /// (`SpoolFormat.maximumFileSize`, the server's limit too).
    public static let maximumFileSize: Int64 = SpoolFormat.maximumFileSize

    /// received_at of the files seen in new/, by id, checked against the inode, so that a taker reads each
    /// file once however often it scans. An id's content never changes, so a name with the same inode has
    /// the same received_at.
    private let order = Mutex<[String: OrderKey]>([:])
    /// Suffixes for the names this process makes (sidecar temporaries, quarantined files whose name is taken).
    let uniqueNames = SpoolUniqueNames()

    private struct OrderKey: Sendable {
        var inode: UInt64
        var receivedAt: Date?
    }

    /// Opens an existing spool. Throws `.noSpool` when `path` is not a directory holding new/ and cur/.
    public init(_ path: String) throws(QueueError) {
        self.root = SpoolFormat.normalize(path)
        guard !self.root.isEmpty else {
            throw QueueError(.noSpool, "the spool directory path is empty")
        }
        guard SpoolPosix.isDirectory(self.root) else {
            let exists = (try? SpoolPosix.status(self.root)) != nil
            throw QueueError(
                .noSpool,
                exists ? "spool \(self.root) is not a directory" : "spool directory \(self.root) does not exist"
            )
        }
        for folder in ["new", "cur"] where !SpoolPosix.isDirectory(self.root + "/" + folder) {
            throw QueueError(.noSpool, "\(self.root) is not a payhook spool: it has no \(folder)/ folder")
        }
    }

    /// The full path of a path relative to the spool.
    public func path(_ relative: String) -> String {
        root + "/" + relative
    }

    /// The event file of `id` in `location`.
    public func eventPath(_ id: String, in location: QueueLocation) -> String {
        path("\(location.rawValue)/\(EventID.fileName(id))")
    }

    func uniqueSuffix() -> String {
        uniqueNames.next()
    }

    // MARK: - Reading

    /// The event files of a folder: (id, entry). Other names are not events and are left alone.
    func scan(_ folder: String) throws(QueueError) -> [(id: String, entry: SpoolDirectoryEntry)] {
        let entries: [SpoolDirectoryEntry]
        do {
            entries = try SpoolPosix.readDirectory(path(folder))
        } catch {
            // dead/ exists only once something died.
            if error.code == ENOENT && folder == "dead" { return [] }
            throw .io("read directory", folder + "/", error.code)
        }
        return entries.compactMap { entry in
            EventID.fromFileName(entry.name).map { (id: $0, entry: entry) }
        }
    }

    /// Reads the event `id` in `location`. nil when the file is not there; a file that is not a valid event
    /// is moved to corrupt/ and reported through `quarantined` (then nil too).
    func read(
        _ id: String, in location: QueueLocation, quarantined: inout [QueueQuarantine]
    ) throws(QueueError) -> QueueEntry? {
        let relative = "\(location.rawValue)/\(EventID.fileName(id))"
        guard let bytes = try readSpoolFile(relative, quarantined: &quarantined) else { return nil }
        let event: QueueEvent
        do {
            event = try QueueEvent.parse(bytes, expectedID: id)
        } catch {
            if let moved = try quarantine(relative, reason: error.reason) {
                quarantined.append(moved)
            }
            return nil
        }
        let sidecar = location == .dead ? "dead/\(id).error.json" : "attempts/\(id).json"
        let record = (try? readSpoolFile(sidecar, quarantined: &quarantined)).flatMap { $0 }.flatMap(QueueAttemptRecord.decode)
        return QueueEntry(event: event, location: location, path: path(relative), record: record)
    }

    /// A spool file's contents (`SpoolPosix.readRegular`, at most ``maximumFileSize``), or nil when it is gone.
    /// A file that cannot be read is not known to be corrupt: that is an error, never a reason to set it aside.
    func readRegularFile(_ relative: String) throws(QueueError) -> SpoolFileContent? {
        do {
            return try SpoolPosix.readRegular(path(relative), limit: Self.maximumFileSize)
        } catch {
            if error.code == ENOENT { return nil }
            throw .io("read", relative, error.code)
        }
    }

    /// Reads a file of new/, cur/, dead/ or attempts/ whole, if it is a regular file of at most
    /// ``maximumFileSize`` (`SpoolPosix.readRegular`: never following a symbolic link, never blocking on a FIFO).
    /// Anything else there (a symbolic link, FIFO, socket, device, directory, or a file too large) is moved
    /// to corrupt/ as it is, reported through `quarantined`, and nil returned; nil too when the file is gone.
    func readSpoolFile(_ relative: String, quarantined: inout [QueueQuarantine]) throws(QueueError) -> [UInt8]? {
        guard let content = try readRegularFile(relative) else { return nil }
        switch content {
        case .bytes(let bytes):
            return bytes
        case .refused(let reason):
            if let moved = try quarantine(relative, reason: reason) { quarantined.append(moved) }
            return nil
        }
    }

    /// Checks that an event file about to be moved out of its folder is a regular file of at most
    /// ``maximumFileSize``, the same test a read makes (`SpoolPosix.openRegular`), so that nack, revive, requeue
    /// and dead-lettering never pass on a symbolic link, FIFO or device. Anything else is moved to corrupt/
    /// and thrown as `.corrupt`. Returns false when the file is gone.
    func requireRegular(_ relative: String) throws(QueueError) -> Bool {
        let opened: SpoolOpenedFile
        do {
            opened = try SpoolPosix.openRegular(path(relative), limit: Self.maximumFileSize)
        } catch {
            if error.code == ENOENT { return false }
            throw .io("open", relative, error.code)
        }
        switch opened {
        case .file(let fd, _):
            SpoolPosix.close(fd)
            return true
        case .refused(let reason):
            guard let moved = try quarantine(relative, reason: reason) else { return false }
            throw corrupt(moved)
        }
    }

    /// The error for a file found not to be a valid event, after it was moved to corrupt/.
    func corrupt(_ moved: QueueQuarantine) -> QueueError {
        QueueError(.corrupt, "\(moved.from) is not a valid event (\(moved.reason)); moved to \(moved.to)")
    }

    /// The attempts bookkeeping of an event in new/ or cur/ (`attempts/<id>.json`), if any. A file there
    /// that is not a regular file within ``maximumFileSize`` is moved to corrupt/ and counts as none.
    public func attemptRecord(_ id: String) -> QueueAttemptRecord? {
        var quarantined: [QueueQuarantine] = []
        return (try? readSpoolFile("attempts/\(id).json", quarantined: &quarantined)).flatMap { $0 }
            .flatMap(QueueAttemptRecord.decode)
    }

    /// A dead letter's record (`dead/<id>.error.json`), if any; checked as ``attemptRecord(_:)`` is.
    public func deadRecord(_ id: String) -> QueueAttemptRecord? {
        var quarantined: [QueueQuarantine] = []
        return (try? readSpoolFile("dead/\(id).error.json", quarantined: &quarantined)).flatMap { $0 }
            .flatMap(QueueAttemptRecord.decode)
    }

    /// Moves a file that is not a valid event to corrupt/, where it is kept, never deleted: the directory entry
    /// itself (a symbolic link as a link, a FIFO or device without opening it, a directory by rename), never
    /// replacing a file already there, exactly as the server's recovery does (`SpoolQuarantine.move`). Then
    /// corrupt/ and the folder it left are synced. Returns nil when the file was gone already.
    func quarantine(_ relative: String, reason: String) throws(QueueError) -> QueueQuarantine? {
        _ = try? SpoolPosix.makeDirectory(path("corrupt"))
        let destination: String?
        do {
            destination = try SpoolQuarantine.move(
                relative, root: root, fileSystem: PosixFileSystem(), uniqueSuffix: uniqueSuffix)
        } catch {
            throw .io(error.operation, error.path, error.errno.code)
        }
        guard let destination else { return nil }
        // The new name first, then the old one: a crash in between leaves the file in both places at worst.
        try? SpoolPosix.syncDirectory(path("corrupt"))
        try? SpoolPosix.syncDirectory(path(String(relative.prefix { $0 != "/" })))
        return QueueQuarantine(from: relative, to: destination, reason: reason)
    }

    // MARK: - list, show

    /// The events in new/, cur/ and dead/ that pass `filter`, oldest `received_at` first (ties by id).
    /// Files that are not valid events are moved to corrupt/ and reported.
    public func list(_ filter: QueueFilter = QueueFilter()) throws(QueueError) -> QueueListing {
        var entries: [QueueEntry] = []
        var quarantined: [QueueQuarantine] = []
        for location in QueueLocation.allCases where filter.locations.contains(location) {
            for (id, _) in try scan(location.rawValue) {
                // A file moved by a consumer between readdir and read is simply not listed: a listing is a
                // snapshot of a queue that is moving.
                guard let entry = try read(id, in: location, quarantined: &quarantined) else { continue }
                if filter.admits(entry) { entries.append(entry) }
            }
        }
        entries.sort { Self.precedes(($0.event.receivedAt, $0.id, $0.location), ($1.event.receivedAt, $1.id, $1.location)) }
        return QueueListing(entries: entries, quarantined: quarantined)
    }

    /// Take order: received_at (missing ones first, so they are not starved), then id, then location.
    static func precedes(
        _ a: (Date?, String, QueueLocation), _ b: (Date?, String, QueueLocation)
    ) -> Bool {
        let left = a.0 ?? .distantPast
        let right = b.0 ?? .distantPast
        if left != right { return left < right }
        if a.1 != b.1 { return a.1 < b.1 }
        return a.2 < b.2
    }

    /// The event `id`, wherever it is. Throws `.unknownEvent` when it is in none of new/, cur/, dead/, and
    /// `.corrupt` when its file is not a valid event (the file is then in corrupt/).
    public func show(_ id: String) throws(QueueError) -> QueueEntry {
        try requireValid(id)
        var quarantined: [QueueQuarantine] = []
        // Twice: a consumer may move the file from a folder not yet looked at to one already looked at.
        for _ in 0..<2 {
            for location in QueueLocation.allCases {
                if let entry = try read(id, in: location, quarantined: &quarantined) { return entry }
                if let moved = quarantined.first { throw corrupt(moved) }
            }
        }
        throw unknown(id)
    }

    func requireValid(_ id: String) throws(QueueError) {
        guard EventID.isValid(id) else {
            throw QueueError(.invalidArgument, "\(EventID.quoted(id)) is not an event id (64 lowercase hex characters)")
        }
    }

    /// The error for an id found nowhere, saying whether the ledger still remembers it.
    func unknown(_ id: String) -> QueueError {
        let remembered = (try? SpoolPosix.status(path("ids/\(id)"))) != nil
        let hint = remembered ? " (ids/ still records it: it was stored and has been acknowledged since)" : ""
        return QueueError(.unknownEvent, "no event \(id) in new/, cur/ or dead/ of spool \(root)\(hint)")
    }

    /// Where the event `id` is now, if anywhere.
    public func location(of id: String) -> QueueLocation? {
        QueueLocation.allCases.first { (try? SpoolPosix.status(eventPath(id, in: $0))) != nil }
    }

    /// The error for an event that is not in cur/ when an operation needs it there.
    func notTaken(_ id: String, operation: String) -> QueueError {
        switch location(of: id) {
        case .new?:
            return QueueError(.wrongState, "event \(id) is waiting in new/ and was not taken; nothing to \(operation)")
        case .dead?:
            return QueueError(
                .wrongState,
                "event \(id) is a dead letter in dead/; `payhook queue revive` returns it to new/"
            )
        case .cur?, nil:
            return unknown(id)
        }
    }

    // MARK: - take

    /// Claims the oldest event in new/ (by `received_at`, ties by id) by renaming it into cur/, and returns
    /// it. Without `wait`, returns `.empty` at once when there is none. With `wait`, blocks until one
    /// arrives, `timeout` seconds pass (`.timedOut`) or `stop` is triggered (`.stopped`); waiting uses
    /// inotify(7), not polling.
    public func take(wait: Bool = false, timeout: Double? = nil, stop: (any QueueStop)? = nil) throws(QueueError) -> QueueTakeResult {
        guard wait else { return try takeOnce() }
        // The watch is set up before new/ is listed: an event linked in between listing and watching would
        // otherwise raise no notification and wait for the next one (inotify(7): a watch reports only what
        // happens after inotify_add_watch).
        let watcher = try QueueWatcher(path("new"), shown: "new/")
        let deadline = timeout.map { Date().addingTimeInterval($0) }
        var quarantined: [QueueQuarantine] = []
        while true {
            var result = try takeOnce()
            quarantined += result.quarantined
            if result.entry != nil {
                result.quarantined = quarantined
                return result
            }
            if stop?.isTriggered == true {
                return QueueTakeResult(outcome: .stopped, entry: nil, quarantined: quarantined)
            }
            let remaining = deadline.map { $0.timeIntervalSinceNow }
            if let remaining, remaining <= 0 {
                return QueueTakeResult(outcome: .timedOut, entry: nil, quarantined: quarantined)
            }
            _ = try watcher.wait(timeout: remaining, stop: stop)
        }
    }

    /// One attempt to claim the oldest event in new/.
    func takeOnce() throws(QueueError) -> QueueTakeResult {
        var quarantined: [QueueQuarantine] = []
        let candidates = try orderedCandidates(quarantined: &quarantined)
        for id in candidates {
            let name = EventID.fileName(id)
            // rename(2) is the claim. Of several consumers renaming the same new/ name, exactly one succeeds:
            // the rename is atomic, and once it is done the source name no longer exists, so every other
            // rename of it fails with ENOENT. The target cannot exist: an id is in one folder at a time.
            do {
                try SpoolPosix.rename(path("new/\(name)"), path("cur/\(name)"))
            } catch {
                if error.code == ENOENT { continue }
                throw .io("rename", "new/\(name) to cur/", error.code)
            }
            guard let entry = try read(id, in: .cur, quarantined: &quarantined) else { continue }
            return QueueTakeResult(outcome: .taken, entry: entry, quarantined: quarantined)
        }
        return QueueTakeResult(outcome: .empty, entry: nil, quarantined: quarantined)
    }

    /// The ids in new/, in take order. received_at comes from the cache where the inode is known, otherwise from
    /// the file (read once, outside the lock); a file that is no event is set aside on the way.
    private func orderedCandidates(quarantined: inout [QueueQuarantine]) throws(QueueError) -> [String] {
        let files = try scan("new")
        // Look up what is known under one lock; read the others outside it.
        var candidates: [(receivedAt: Date?, id: String)] = []
        var unknown: [(id: String, entry: SpoolDirectoryEntry)] = []
        order.withLock { cache in
            for file in files {
                if let key = cache[file.id], key.inode == file.entry.inode {
                    candidates.append((key.receivedAt, file.id))
                } else {
                    unknown.append(file)
                }
            }
        }
        var learned: [String: OrderKey] = [:]
        for file in unknown {
            guard let receivedAt = try receivedAt(of: file.id, quarantined: &quarantined) else { continue }
            candidates.append((receivedAt, file.id))
            learned[file.id] = OrderKey(inode: file.entry.inode, receivedAt: receivedAt)
        }
        let present = Set(files.map(\.id))
        order.withLock { cache in
            cache.merge(learned) { _, new in new }
            // Forget names that left new/, so the cache stays as large as the queue.
            if cache.count > present.count + learned.count {
                cache = cache.filter { present.contains($0.key) }
            }
        }
        candidates.sort { Self.precedes(($0.receivedAt, $0.id, .new), ($1.receivedAt, $1.id, .new)) }
        return candidates.map(\.id)
    }

    /// The received_at of new/<id>.json for ordering: `.some(nil)` when it has none readable, nil when the file
    /// is gone or was set aside. A symbolic link, FIFO, device or oversized file is set aside here, before any
    /// rename: it is never claimed, so what it points to is never handed to a consumer.
    private func receivedAt(of id: String, quarantined: inout [QueueQuarantine]) throws(QueueError) -> Date?? {
        guard let bytes = try readSpoolFile("new/\(EventID.fileName(id))", quarantined: &quarantined) else { return nil }
        if let quick = QueueEvent.quickReceivedAt(bytes) { return .some(quick) }
        // No plain received_at: parse it all, which also sets aside a file that is no event.
        guard let entry = try read(id, in: .new, quarantined: &quarantined) else { return nil }
        return .some(entry.event.receivedAt)
    }

    // MARK: - ack, nack, release, dead letters, revive

    /// Acknowledges a taken event: deletes cur/<id>.json (the ledger's hard link in ids/ keeps the dedupe
    /// key) and its attempts bookkeeping.
    public func ack(_ id: String) throws(QueueError) {
        try requireValid(id)
        do {
            try SpoolPosix.unlink(eventPath(id, in: .cur))
        } catch {
            if error.code == ENOENT { throw notTaken(id, operation: "acknowledge") }
            throw .io("unlink", "cur/\(id).json", error.code)
        }
        removeAttempts(id)
    }

    /// Returns a taken event to new/ and raises its attempt count. Returns the new count.
    @discardableResult
    public func nack(_ id: String, reason: String? = nil) throws(QueueError) -> Int {
        try requireValid(id)
        guard try requireRegular("cur/\(id).json") else { throw notTaken(id, operation: "return") }
        let text = reason.map { "nack: \($0)" } ?? "nack"
        let record = try recordFailure(id, QueueFailure(reason: text))
        do {
            try SpoolPosix.rename(eventPath(id, in: .cur), eventPath(id, in: .new))
        } catch {
            if error.code == ENOENT {
                removeAttempts(id)
                throw notTaken(id, operation: "return")
            }
            throw .io("rename", "cur/\(id).json to new/", error.code)
        }
        return record.attempts
    }

    /// Returns a taken event to new/ without counting an attempt (a worker that stops before running it).
    public func release(_ id: String) throws(QueueError) {
        guard try requireRegular("cur/\(id).json") else { return }
        do {
            try SpoolPosix.rename(eventPath(id, in: .cur), eventPath(id, in: .new))
        } catch {
            if error.code == ENOENT { return }
            throw .io("rename", "cur/\(id).json to new/", error.code)
        }
    }

    /// Adds one failed attempt to `attempts/<id>.json` (creating it) and returns the record written.
    @discardableResult
    public func recordFailure(_ id: String, _ failure: QueueFailure) throws(QueueError) -> QueueAttemptRecord {
        try requireValid(id)
        do {
            try SpoolPosix.makeDirectory(path("attempts"))
        } catch {
            throw .io("create", "attempts/", error.code)
        }
        let previous = attemptRecord(id)?.attempts ?? 0
        let record = QueueAttemptRecord(id: id, attempts: previous + 1, lastError: failure)
        do {
            try SpoolPosix.writeFileAtomically(
                record.encoded(),
                to: path("attempts/\(id).json"),
                temporary: path("attempts/.\(id).\(uniqueSuffix()).tmp")
            )
        } catch {
            throw .io("write", "attempts/\(id).json", error.code)
        }
        return record
    }

    func removeAttempts(_ id: String) {
        try? SpoolPosix.unlink(path("attempts/\(id).json"))
    }

    /// Moves a taken event to dead/: first `dead/<id>.error.json` (the record, with `dead_at`), then the event
    /// file itself by rename(2), both made durable; then its attempts bookkeeping goes.
    public func deadLetter(_ id: String, record: QueueAttemptRecord) throws(QueueError) {
        try requireValid(id)
        guard try requireRegular("cur/\(id).json") else { throw notTaken(id, operation: "move to dead/") }
        do {
            if try SpoolPosix.makeDirectory(path("dead")) { try? SpoolPosix.syncDirectory(root) }
        } catch {
            throw .io("create", "dead/", error.code)
        }
        var dead = record
        dead.deadAt = QueueTime.formatRFC3339(Date())
        do {
            try SpoolPosix.writeFileAtomically(
                dead.encoded(),
                to: path("dead/\(id).error.json"),
                temporary: path("dead/.\(id).\(uniqueSuffix()).tmp")
            )
        } catch {
            throw .io("write", "dead/\(id).error.json", error.code)
        }
        do {
            try SpoolPosix.rename(eventPath(id, in: .cur), eventPath(id, in: .dead))
        } catch {
            try? SpoolPosix.unlink(path("dead/\(id).error.json"))
            if error.code == ENOENT { throw notTaken(id, operation: "move to dead/") }
            throw .io("rename", "cur/\(id).json to dead/", error.code)
        }
        do {
            try SpoolPosix.syncDirectory(path("dead"))
            try SpoolPosix.syncDirectory(path("cur"))
        } catch {
            throw .io("fsync", "dead/", error.code)
        }
        removeAttempts(id)
    }

    /// Returns a dead letter to new/ with a fresh attempt count; its error record is removed.
    public func revive(_ id: String) throws(QueueError) {
        try requireValid(id)
        let present = try requireRegular("dead/\(id).json")
        do throws(SpoolErrno) {
            guard present else { throw SpoolErrno(ENOENT) }
            try SpoolPosix.rename(eventPath(id, in: .dead), eventPath(id, in: .new))
        } catch {
            if error.code != ENOENT { throw .io("rename", "dead/\(id).json to new/", error.code) }
            switch location(of: id) {
            case .new?: throw QueueError(.wrongState, "event \(id) is already waiting in new/")
            case .cur?: throw QueueError(.wrongState, "event \(id) is taken (in cur/), not a dead letter")
            case .dead?, nil: throw unknown(id)
            }
        }
        try? SpoolPosix.unlink(path("dead/\(id).error.json"))
        removeAttempts(id)
        try? SpoolPosix.syncDirectory(path("new"))
    }

    // MARK: - requeue

    /// Returns to new/ every cur/ entry taken at least `olderThan` seconds ago (a consumer that died without
    /// acknowledging it), raising its attempt count. Entries whose file a running `consume` worker holds
    /// locked (flock(2)) are left alone and reported as busy, however old.
    ///
    /// The age is measured from the file's status-change time (ctime): rename(2) updates it on Linux file
    /// systems, so it is no earlier than the take. The modification time cannot serve: it is the event's
    /// write time, shared with its ids/ hard link, which `gc` reads.
    public func requeue(olderThan: Double, now: Date = Date()) throws(QueueError) -> QueueRequeueReport {
        var report = QueueRequeueReport()
        for (id, entry) in try scan("cur").sorted(by: { $0.id < $1.id }) {
            try requeue(id, "cur/\(entry.name)", olderThan: olderThan, now: now, into: &report)
        }
        return report
    }

    /// One cur/ entry of ``requeue(olderThan:now:)``: left alone while young or held, set aside when it is no
    /// regular file within the limit, otherwise counted as a failed attempt and renamed back to new/.
    private func requeue(
        _ id: String, _ relative: String, olderThan: Double, now: Date, into report: inout QueueRequeueReport
    ) throws(QueueError) {
        let status: SpoolFileStatus
        do {
            guard let found = try SpoolPosix.status(path(relative)) else { return }
            status = found
        } catch {
            throw .io("stat", relative, error.code)
        }
        let age = now.timeIntervalSince(Date(timeIntervalSince1970: status.changed.secondsSince1970))
        // Whatever its age, an entry that is not a regular file within the limit was never taken by a
        // consumer (take sets such files aside before claiming): it is set aside now.
        guard status.refusal(limit: Self.maximumFileSize) != nil || age >= olderThan else { return }
        // Opened as a read would open it (no link followed, no blocking on a FIFO): the descriptor is what the
        // flock below tests.
        let opened: SpoolOpenedFile
        do {
            opened = try SpoolPosix.openRegular(path(relative), limit: Self.maximumFileSize)
        } catch {
            if error.code == ENOENT { return }
            throw .io("open", relative, error.code)
        }
        let fd: Int32
        switch opened {
        case .file(let descriptor, _):
            fd = descriptor
        case .refused(let reason):
            if let moved = try quarantine(relative, reason: reason) { report.quarantined.append(moved) }
            return
        }
        defer { SpoolPosix.close(fd) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            if errno == EWOULDBLOCK {
                report.busy.append(id)
                return
            }
            throw .io("lock", relative, errno)
        }
        let reason = "requeued after \(QueueTime.formatDuration(age)) in cur/ without an acknowledgement"
        let record = try recordFailure(id, QueueFailure(at: now, reason: reason))
        do {
            try SpoolPosix.rename(path(relative), eventPath(id, in: .new))
        } catch {
            if error.code == ENOENT {
                // Acknowledged meanwhile: its bookkeeping goes with it.
                removeAttempts(id)
                return
            }
            throw .io("rename", "\(relative) to new/", error.code)
        }
        report.requeued.append(QueueRequeued(id: id, age: age, attempts: record.attempts))
    }
}
