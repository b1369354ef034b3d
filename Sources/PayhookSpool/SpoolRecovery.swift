#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Logging

/// What startup recovery repaired. Empty after a clean shutdown.
public struct SpoolRecoveryReport: Sendable, Equatable, CustomStringConvertible {
    /// Names of the files removed from tmp/ (writes that never completed), sorted.
    public var removedTemporaryFiles: [String]
    /// Paths relative to the spool ("new/x.json", "cur/y.json") of the files moved to corrupt/ because they
    /// did not parse, or their name did not match their id; in the order they were found (new/, then cur/,
    /// each sorted).
    public var quarantined: [String]
    /// Ids of the records in new/ or cur/ that had no ids/ entry and were linked into the ledger, in the
    /// order they were found.
    public var relinkedLedgerEntries: [String]

    public init(removedTemporaryFiles: [String] = [], quarantined: [String] = [], relinkedLedgerEntries: [String] = []) {
        self.removedTemporaryFiles = removedTemporaryFiles
        self.quarantined = quarantined
        self.relinkedLedgerEntries = relinkedLedgerEntries
    }

    /// True when recovery found nothing to repair.
    public var isEmpty: Bool {
        removedTemporaryFiles.isEmpty && quarantined.isEmpty && relinkedLedgerEntries.isEmpty
    }

    /// One line, e.g. "removed 1 temporary file, quarantined 1 file (new/x.json), relinked 2 ledger entries".
    public var description: String {
        if isEmpty { return "nothing to repair" }
        func count(_ number: Int, _ singular: String, _ plural: String) -> String {
            "\(number) \(number == 1 ? singular : plural)"
        }
        var parts: [String] = []
        if !removedTemporaryFiles.isEmpty {
            parts.append("removed \(count(removedTemporaryFiles.count, "temporary file", "temporary files"))")
        }
        if !quarantined.isEmpty {
            parts.append(
                "quarantined \(count(quarantined.count, "file", "files")) (\(quarantined.joined(separator: ", ")))"
            )
        }
        if !relinkedLedgerEntries.isEmpty {
            parts.append("relinked \(count(relinkedLedgerEntries.count, "ledger entry", "ledger entries"))")
        }
        return parts.joined(separator: ", ")
    }
}

/// Startup recovery: brings the spool back to the state the store protocol promises after any crash.
/// It runs under the lock before anything is stored, and running it twice changes nothing the second time.
enum SpoolRecovery {
    static func run(_ context: SpoolContext) throws(SpoolError) -> SpoolRecoveryReport {
        var report = SpoolRecoveryReport()
        report.removedTemporaryFiles = try clearTemporaryFiles(context)
        // A previous process may have changed any folder and been killed before syncing it. kill -9 keeps the
        // page cache, so those changes look done, but a power loss can still undo them, and recovery is about to
        // build on them: relink ids/ entries for records in new/ (an ids/ entry must imply a durable record) and
        // let stores answer "duplicate" for what it finds. So every folder is synced first, whatever it holds,
        // as PostgreSQL does at startup for "issued-but-unsynced writes pending against the data directory ...
        // before anything that's done in the new run" (SyncDataDirectory, src/backend/storage/file/fd.c). This
        // also syncs tmp/ after the clean-up above. Without it, the kill-then-power-loss enumeration in
        // PowerLossTests loses acknowledged records.
        for folder in SpoolLayout.subfolders {
            try context.fsyncDirectory(folder)
        }
        var relinked = false
        for folder in ["new", "cur"] {
            let result = try checkRecords(in: folder, context)
            report.quarantined += result.quarantined
            report.relinkedLedgerEntries += result.relinked
            relinked = relinked || !result.relinked.isEmpty
        }
        if relinked {
            try context.fsyncDirectory("ids")
        }
        return report
    }

    /// The names in a folder that recovery looks at: everything but dotfiles, sorted so that runs are
    /// reproducible.
    private static func entries(of folder: String, _ context: SpoolContext) throws(SpoolError) -> [String] {
        do {
            return try context.fileSystem.readDirectory(context.path(folder))
                .filter { !$0.hasPrefix(".") }
                .sorted()
        } catch {
            throw .io("read directory", folder + "/", error)
        }
    }

    /// The status of `relative` when it is a regular file recovery should look at. Anything else (a
    /// directory, a symlink, a device) is left alone with a warning; a name that vanished meanwhile is
    /// skipped. Both give nil.
    private static func regularFile(_ relative: String, _ context: SpoolContext) throws(SpoolError) -> SpoolFileStatus? {
        guard let status = try context.status(relative) else { return nil }
        guard status.kind == .regular else {
            context.logger.warning(
                "recovery left \(relative) alone: not a regular file",
                metadata: ["spool": "\(context.root)"]
            )
            return nil
        }
        return status
    }

    /// Unlinks every file in tmp/. The store protocol only acknowledges a record after it is linked into new/
    /// and ids/, and only one spool writes here (the lock), so nothing in tmp/ was ever acknowledged. The caller
    /// syncs tmp/ afterwards.
    private static func clearTemporaryFiles(_ context: SpoolContext) throws(SpoolError) -> [String] {
        var removed: [String] = []
        for name in try entries(of: "tmp", context) {
            let relative = "tmp/\(name)"
            guard try regularFile(relative, context) != nil else { continue }
            do {
                try context.fileSystem.unlink(context.path(relative))
            } catch where error.rawValue == ENOENT {
                continue
            } catch {
                throw .io("unlink", relative, error)
            }
            removed.append(name)
        }
        return removed
    }

    /// Checks each record file in new/ or cur/: one that does not parse, or whose name is not "<id>.json",
    /// goes to corrupt/; a valid one without a ledger entry is linked into ids/. That second case is a crash
    /// between fsync(new/) and fsync(ids/); the reverse (an ids/ entry whose record was never durably
    /// published) cannot happen, because store links into ids/ only after fsync(new/) succeeded.
    private static func checkRecords(
        in folder: String,
        _ context: SpoolContext
    ) throws(SpoolError) -> (quarantined: [String], relinked: [String]) {
        var quarantined: [String] = []
        var relinked: [String] = []
        for name in try entries(of: folder, context) {
            let relative = "\(folder)/\(name)"
            guard let status = try regularFile(relative, context) else { continue }
            let bytes: [UInt8]
            do {
                bytes = try context.fileSystem.readFile(context.path(relative))
            } catch where error.rawValue == ENOENT {
                // Taken by a consumer meanwhile.
                continue
            } catch {
                // An unreadable file is not known to be corrupt; stop rather than move a good record aside.
                throw .io("read", relative, error)
            }
            guard let info = context.inspector.inspect(bytes), context.isWellFormed(info) else {
                if try quarantine(relative, name: name, reason: "it is not a valid record", context) {
                    quarantined.append(relative)
                }
                continue
            }
            guard name == "\(info.id).json" else {
                if try quarantine(relative, name: name, reason: "its name does not match its id \(info.id)", context) {
                    quarantined.append(relative)
                }
                continue
            }
            let ledger = "ids/\(info.id)"
            if let entry = try context.status(ledger) {
                if entry.inode != status.inode {
                    context.logger.warning(
                        "recovery: \(relative) and \(ledger) are different files; the ledger entry is kept",
                        metadata: ["spool": "\(context.root)"]
                    )
                }
                continue
            }
            do {
                try context.fileSystem.link(context.path(relative), context.path(ledger))
            } catch where error.rawValue == ENOENT {
                // A consumer moved it meanwhile: from new/ it is found again in cur/; from cur/ it was
                // acknowledged, and without a ledger entry a resend would be stored again (delivered twice,
                // never lost).
                continue
            } catch {
                throw .io("link", "\(relative) to \(ledger)", error)
            }
            context.logger.info("recovery relinked \(relative) to \(ledger)", metadata: ["spool": "\(context.root)"])
            relinked.append(info.id)
        }
        if !quarantined.isEmpty {
            // The new name first, then the old one: a crash in between leaves the file in both places at worst
            // (rename is atomic, so it is in one of them in memory), never in neither.
            try context.fsyncDirectory("corrupt")
            try context.fsyncDirectory(folder)
        }
        return (quarantined, relinked)
    }

    /// Moves a file into corrupt/ under its own name, or with a unique suffix if that name is taken.
    /// Files there are kept for inspection, never deleted. Returns false when the file was gone (a consumer
    /// took it meanwhile).
    private static func quarantine(
        _ relative: String,
        name: String,
        reason: String,
        _ context: SpoolContext
    ) throws(SpoolError) -> Bool {
        var destination = "corrupt/\(name)"
        // rename(2) would silently replace an earlier file of the same name; only this process writes to
        // corrupt/ (the lock), so checking first is enough.
        if try context.status(destination) != nil {
            destination += ".\(context.uniqueSuffix())"
        }
        do {
            try context.fileSystem.rename(context.path(relative), context.path(destination))
        } catch where error.rawValue == ENOENT {
            return false
        } catch {
            throw .io("rename", "\(relative) to \(destination)", error)
        }
        context.logger.error(
            "recovery moved \(relative) to \(destination): \(reason)",
            metadata: ["spool": "\(context.root)"]
        )
        return true
    }
}
