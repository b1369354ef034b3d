import Foundation
import Glibc
import PayhookSpoolFormat
public import PayhookStore

extension QueueDirectory {
    /// Prunes what the queue no longer needs:
    /// - ledger entries `ids/<id>` whose mtime (the event's write time) is older than `ledgerAge` and whose
    ///   event has left the spool (link count 1: the ledger's is the only name left);
    /// - the server's audit copies of conflicting callbacks, regular files in conflicts/ whose mtime is
    ///   older than `ledgerAge`: they matter as long as the entries they conflicted with;
    /// - files in tmp/ older than `temporaryAge` (a younger one may be a store in progress);
    /// - the queue's own stale leftovers: `attempts/<id>.json` of events no longer in new/ or cur/, error
    ///   records in dead/ without their event, and hidden temporary files in attempts/ and dead/, each older
    ///   than `temporaryAge`.
    /// Never touches new/, cur/, dead/ events, corrupt/ or `.lock`. Names are handled as the bytes the directory
    /// holds, so a leftover whose name is not UTF-8 is removed like any other.
    ///
    /// `ledgerAge` defaults to the retention the server records in `.retention`, and may not be shorter:
    /// see ``serverRetention()``.
    public func gc(_ options: QueueGCOptions) throws(QueueError) -> QueueGCReport {
        let recorded = try serverRetention()
        let ledgerAge = options.ledgerAge ?? recorded ?? QueueGCOptions.defaultLedgerAge
        if let recorded, ledgerAge < recorded {
            throw QueueError(
                .invalidArgument,
                "a ledger age of \(QueueTime.formatDuration(ledgerAge)) would prune ledger entries the server still "
                    + "needs to recognise replays; the server runs with a retention of "
                    + "\(QueueTime.formatDuration(recorded)) (config ledger_retention_days), recorded in "
                    + "\(path(Self.retentionFile))"
            )
        }
        guard options.temporaryAge >= QueueGCOptions.minimumTemporaryAge else {
            throw QueueError(
                .invalidArgument,
                "a temporary-file age below \(QueueTime.formatDuration(QueueGCOptions.minimumTemporaryAge)) "
                    + "could delete a store in progress in \(root)/tmp/"
            )
        }
        var pruner = Pruner(directory: self, options: options)
        pruner.report.ledgerAge = ledgerAge
        pruner.report.serverRetention = recorded
        try pruner.pruneLedger(olderThan: ledgerAge)
        try pruner.pruneConflicts(olderThan: ledgerAge)
        try pruner.pruneTemporaryFiles()
        try pruner.pruneAttempts()
        try pruner.pruneDeadRecords()
        try pruner.syncTouchedFolders()
        return pruner.report
    }

    /// One `gc` run: what it removed so far and how many more files it may remove.
    private struct Pruner {
        let directory: QueueDirectory
        let options: QueueGCOptions
        var report = QueueGCReport()
        var budget: Int

        init(directory: QueueDirectory, options: QueueGCOptions) {
            self.directory = directory
            self.options = options
            self.budget = options.limit ?? Int.max
            report.dryRun = options.dryRun
        }

        func age(_ status: SpoolFileStatus) -> Double {
            options.now.timeIntervalSince(Self.date(status.modified))
        }

        static func date(_ time: SpoolTimestamp) -> Date {
            Date(timeIntervalSince1970: time.secondsSince1970)
        }

        /// Removes `name` from `folder` (unless this is a dry run) and reports it. Returns false, removing nothing,
        /// once the limit is reached.
        mutating func remove(_ folder: String, _ name: SpoolName, _ reason: String) throws(QueueError) -> Bool {
            let relative = "\(folder)/\(name)"
            guard budget > 0 else {
                report.limited = true
                return false
            }
            if !options.dryRun {
                do {
                    try SpoolPosix.unlink(SpoolPath(directory.path(folder), name))
                } catch {
                    if error.code == ENOENT { return true }
                    throw .io("unlink", relative, error.code)
                }
            }
            budget -= 1
            report.removed.append(QueueGCItem(path: relative, reason: reason, kind: Self.kind(of: folder)))
            return true
        }

        /// What a file removed from `folder` is.
        static func kind(of folder: String) -> QueueGCItem.Kind {
            switch folder {
            case "ids": .ledgerEntry
            case "conflicts": .conflictCopy
            case "tmp": .temporaryFile
            default: .sidecar
            }
        }

        /// The regular files of a folder with their status, sorted by name; none when the folder is missing.
        /// Anything but a regular file there is not a leftover of payhook's and is left alone.
        func regularFiles(in folder: String) throws(QueueError) -> [(name: SpoolName, status: SpoolFileStatus)] {
            let entries: [SpoolDirectoryEntry]
            do {
                entries = try SpoolPosix.readDirectory(directory.path(folder)).sorted { $0.name < $1.name }
            } catch {
                if error.code == ENOENT { return [] }
                throw .io("read directory", folder + "/", error.code)
            }
            var files: [(name: SpoolName, status: SpoolFileStatus)] = []
            for entry in entries {
                let status: SpoolFileStatus?
                do {
                    status = try SpoolPosix.status(SpoolPath(directory.path(folder), entry.name))
                } catch {
                    throw .io("stat", "\(folder)/\(entry.name)", error.code)
                }
                if let status, status.kind == .regular { files.append((entry.name, status)) }
            }
            return files
        }

        /// ids/, oldest first, so that a limited run prunes the oldest entries. ids/<id> is a hard link to the
        /// event's inode: a link count above 1 means the event is still in new/, cur/ or dead/ (or a store is
        /// finishing), and a retry must still be a duplicate.
        mutating func pruneLedger(olderThan ledgerAge: Double) throws(QueueError) {
            let ledger = try regularFiles(in: "ids")
                .filter { $0.name.string.map(EventID.isValid) == true }
                .sorted { ($0.status.modified, $0.name) < ($1.status.modified, $1.name) }
            for (name, status) in ledger where age(status) > ledgerAge {
                if status.linkCount > 1 {
                    report.keptPending += 1
                    continue
                }
                let reason = "ledger entry written \(QueueTime.formatRFC3339(Self.date(status.modified))) "
                    + "(\(QueueTime.formatDuration(age(status))) ago), its event acknowledged"
                if try !remove("ids", name, reason) { break }
            }
        }

        /// conflicts/: the server's audit copies of callbacks that conflicted with a stored event
        /// (conflicts/<id>.<…>.json). Kept as long as the ledger keeps its entries, then pruned by the same age,
        /// oldest first.
        mutating func pruneConflicts(olderThan ledgerAge: Double) throws(QueueError) {
            let conflicts = try regularFiles(in: "conflicts")
                .sorted { ($0.status.modified, $0.name) < ($1.status.modified, $1.name) }
            for (name, status) in conflicts where age(status) > ledgerAge {
                let reason = "conflict copy written \(QueueTime.formatRFC3339(Self.date(status.modified))) "
                    + "(\(QueueTime.formatDuration(age(status))) ago)"
                if try !remove("conflicts", name, reason) { break }
            }
        }

        /// tmp/: the server's files being written. Only old ones are leftovers of a crash.
        mutating func pruneTemporaryFiles() throws(QueueError) {
            for (name, status) in try regularFiles(in: "tmp") where age(status) > options.temporaryAge {
                if try !remove("tmp", name, "temporary file \(QueueTime.formatDuration(age(status))) old") { break }
            }
        }

        /// attempts/: unfinished sidecars, and the records of events no longer in new/ or cur/.
        mutating func pruneAttempts() throws(QueueError) {
            for (name, status) in try regularFiles(in: "attempts") where age(status) > options.temporaryAge {
                if name.isHidden {
                    if try !remove("attempts", name, "unfinished sidecar \(QueueTime.formatDuration(age(status))) old") { break }
                } else if let id = EventID.fromFileName(name), ![.new, .cur].contains(directory.location(of: id)) {
                    if try !remove("attempts", name, "attempts record of an event no longer in new/ or cur/") { break }
                }
            }
        }

        /// dead/: unfinished sidecars, and error records whose dead letter is gone.
        mutating func pruneDeadRecords() throws(QueueError) {
            for (name, status) in try regularFiles(in: "dead") where age(status) > options.temporaryAge {
                if name.isHidden {
                    if try !remove("dead", name, "unfinished sidecar \(QueueTime.formatDuration(age(status))) old") { break }
                } else if let text = name.string, text.hasSuffix(".error.json") {
                    let id = String(text.dropLast(".error.json".count))
                    guard EventID.isValid(id), (try? SpoolPosix.status(directory.eventPath(id, in: .dead))) ?? nil == nil
                    else { continue }
                    if try !remove("dead", name, "error record without its dead letter") { break }
                }
            }
        }

        /// Makes the pruning durable, so that a crash cannot bring back half of a round (docs/durability.md).
        func syncTouchedFolders() throws(QueueError) {
            guard !options.dryRun else { return }
            let touched = Set(report.removed.compactMap { $0.path.split(separator: "/").first.map(String.init) })
            for folder in touched.sorted() {
                do {
                    try SpoolPosix.syncDirectory(directory.path(folder))
                } catch {
                    throw .io("fsync", folder + "/", error.code)
                }
            }
        }
    }

    /// The file in which the server records its ledger retention.
    static let retentionFile = SpoolRetentionFile.name

    /// The ledger retention the server runs with, in seconds, from `.retention` in the spool
    /// (`SpoolRetentionFile`: exactly the decimal number of seconds and a newline, "604800\n"). nil when the file
    /// is absent (spools of servers from before it).
    ///
    /// The server refuses a callback whose own payment time is older than this retention minus one day, so
    /// a replay it still accepts is of an event stored less than the retention ago: any younger ledger
    /// entry may still be what recognises it as a duplicate. Read like an event file (a regular file, no
    /// link followed, no blocking, `SpoolPosix.readRegular`) and at most a few bytes; anything else there, or any
    /// other content, is `.malformedSpoolFile`: a guess could prune entries the server still needs.
    public func serverRetention() throws(QueueError) -> Double? {
        let shown = path(Self.retentionFile)
        let content: SpoolFileContent
        do {
            content = try SpoolPosix.readRegular(shown, limit: SpoolRetentionFile.maximumSize)
        } catch {
            if error.code == ENOENT { return nil }
            throw .io("read", shown, error.code)
        }
        let bytes: [UInt8]
        switch content {
        case .bytes(let read): bytes = read
        case .refused(let reason):
            throw QueueError(.malformedSpoolFile, "\(shown) cannot be the server's recorded ledger retention: \(reason)")
        }
        guard let seconds = SpoolRetentionFile.decode(bytes) else {
            let text = String(decoding: bytes, as: UTF8.self)
            throw QueueError(
                .malformedSpoolFile,
                "\(shown) must hold the server's ledger retention as a positive whole number of seconds and a "
                    + "newline (e.g. \"604800\\n\"); it holds \(EventID.quoted(text))"
            )
        }
        return Double(seconds)
    }
}
