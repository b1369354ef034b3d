import Foundation
import Glibc
public import PayhookSpoolFormat
public import PayhookStore

/// Everything a stopped spool holds that another store must take over (`payhook db import`): every dedupe entry
/// (acknowledged events included, so a late retry stays a duplicate), the events still waiting, taken or dead
/// with their attempts, the audit copies of conflicts, and the retention the server recorded. Read only; the
/// spool is not changed.
public struct SpoolSnapshot: Sendable {
    public var events: [ImportedEvent] = []
    public var conflicts: [ImportedConflict] = []
    public var retention: QueueRetention?
    /// Files that are not valid events (or not regular files), left where they are, one sentence each.
    public var skipped: [String] = []

    /// Reads `directory`. Refuses a spool a `payhook serve` still holds: what it stores after the read would not
    /// be moved.
    ///
    /// - Parameter inspector: how each source fingerprints its events (the server's own inspector), so that a
    ///   retry reaching the database after the move is a duplicate, not a conflict.
    public static func read(_ directory: String, inspector: EventFileInspector) throws(QueueError) -> SpoolSnapshot {
        let queue = try QueueDirectory(directory)
        let root = queue.root
        try refuseIfServed(root)
        var snapshot = SpoolSnapshot()
        snapshot.retention = try queue.retention()

        // Where each pending event is, with its attempts bookkeeping, through the queue's own reader (which
        // applies the same validity rules as the consumers).
        let listing = try queue.list()
        var pending: [String: QueueEntry] = [:]
        for entry in listing.entries { pending[entry.id] = entry }
        snapshot.skipped += listing.quarantined.map { "\($0)" }

        var seen = Set<String>()
        for name in names(root + "/ids") {
            guard let id = EventID.isValid(name) ? name : nil else {
                snapshot.skipped.append("ids/\(name): not an event id")
                continue
            }
            let path = root + "/ids/" + name
            guard let (bytes, modified) = readRegular(path) else {
                snapshot.skipped.append("ids/\(name): not a readable regular file")
                continue
            }
            let event: EventFile
            do {
                event = try EventFile.parse(bytes, fileName: EventID.fileName(id))
            } catch {
                snapshot.skipped.append("ids/\(name): \(error)")
                continue
            }
            seen.insert(id)
            var imported = ImportedEvent(
                id: id, dedupeKey: event.dedupeKey, source: event.source, tenant: event.tenant, orderRef: event.orderRef,
                status: event.status, amount: event.amount, currency: event.currency, fingerprint: inspector.info(event).fingerprint,
                bytes: bytes, receivedAt: event.receivedAt, state: .acknowledged, ledgerTime: modified)
            if let entry = pending[id] {
                imported.state = entry.location == .dead ? .dead : .new
                imported.record = entry.record
            }
            snapshot.events.append(imported)
        }
        // An event in new/, cur/ or dead/ always has its ledger entry (docs/durability.md §3); one without is
        // reported rather than guessed at.
        for id in pending.keys.sorted() where !seen.contains(id) {
            snapshot.skipped.append("\(pending[id]!.location.rawValue)/\(EventID.fileName(id)): no ledger entry in ids/, not moved")
        }

        for name in names(root + "/conflicts") where name.hasSuffix(".json") {
            let id = String(name.prefix(EventID.length))
            let path = root + "/conflicts/" + name
            guard EventID.isValid(id), let (bytes, modified) = readRegular(path),
                let info = try? inspector.inspect(bytes, fileName: EventID.fileName(id)) as SpoolRecordInfo?
            else {
                snapshot.skipped.append("conflicts/\(name): not a valid conflict copy")
                continue
            }
            snapshot.conflicts.append(ImportedConflict(id: id, fingerprint: info.fingerprint, bytes: bytes, writtenAt: modified))
        }
        return snapshot
    }

    /// The server holds `.lock` with flock(2) while it serves (docs/durability.md §2).
    static func refuseIfServed(_ root: String) throws(QueueError) {
        let fd = open(root + "/" + SpoolFormat.lockFile, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return }
        defer { close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) != 0 {
            throw QueueError(.busy, "a payhook serve is running on \(root): stop it first, so that nothing it stores afterwards is left behind")
        }
        flock(fd, LOCK_UN)
    }

    private static func names(_ folder: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
    }

    /// The bytes and modification time of a regular file within the spool's size limit; nil otherwise.
    private static func readRegular(_ path: String) -> ([UInt8], Date)? {
        var status = stat()
        guard lstat(path, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG, Int64(status.st_size) <= SpoolFormat.maximumFileSize,
            let data = FileManager.default.contents(atPath: path)
        else { return nil }
        let modified = Date(timeIntervalSince1970: Double(status.st_mtim.tv_sec) + Double(status.st_mtim.tv_nsec) / 1e9)
        return ([UInt8](data), modified)
    }
}
