#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import PayhookSpoolFormat

/// What startup recovery repaired. Empty after a clean shutdown.
public struct SpoolRecoveryReport: Sendable, Equatable, CustomStringConvertible {
    /// Names of the files removed from tmp/ (writes that never completed), sorted.
    public var removedTemporaryFiles: [String]
    /// Paths relative to the spool ("new/x.json", "cur/y.json") of the entries moved to corrupt/ because they
    /// were not regular files, did not parse, or their name did not match their id; in the order they were
    /// found (new/, then cur/, each sorted).
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

    /// The status of `relative` in tmp/ when it is a regular file recovery should remove. Anything else (a
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

    /// Checks each entry in new/ or cur/ as the queue tools check an event file (PayhookSpoolFormat): one that is
    /// not a regular file within ``SpoolFormat/maximumFileSize``, does not inspect to a valid record, or is not
    /// named "<id>.json" after its own id goes to corrupt/; a valid one without a ledger entry is linked into
    /// ids/. That second case is a crash between fsync(new/) and fsync(ids/); the reverse (an ids/ entry whose
    /// record was never durably published) cannot happen, because store links into ids/ only after fsync(new/)
    /// succeeded.
    private static func checkRecords(
        in folder: String,
        _ context: SpoolContext
    ) throws(SpoolError) -> (quarantined: [String], relinked: [String]) {
        var quarantined: [String] = []
        var relinked: [String] = []
        for name in try entries(of: folder, context) {
            let relative = "\(folder)/\(name)"
            switch try judge(relative, name: name, context) {
            case .gone:
                continue
            case .invalid(let reason):
                if try quarantine(relative, reason: reason, context) {
                    quarantined.append(relative)
                }
            case .valid(let info, let status):
                if try relink(relative, info, status, context) {
                    relinked.append(info.id)
                }
            }
        }
        if !quarantined.isEmpty {
            // The new name first, then the old one: a crash in between leaves the file in both places at worst
            // (rename is atomic, so it is in one of them in memory), never in neither.
            try context.fsyncDirectory("corrupt")
            try context.fsyncDirectory(folder)
        }
        return (quarantined, relinked)
    }

    /// What recovery found at a name in new/ or cur/.
    private enum Verdict {
        /// Nothing there any more: a consumer took it meanwhile.
        case gone
        /// Not a valid record there, and why.
        case invalid(String)
        /// A valid record, with the status it was read with.
        case valid(SpoolRecordInfo, SpoolFileStatus)
    }

    /// Judges one entry as the queue tools would: the entry's type and size (``SpoolFileStatus/refusal(limit:)``),
    /// then its contents and name through the inspector (``SpoolRecordInspector/inspect(_:fileName:)``).
    private static func judge(_ relative: String, name: String, _ context: SpoolContext) throws(SpoolError) -> Verdict {
        guard let status = try context.status(relative) else { return .gone }
        if let refusal = status.refusal() { return .invalid(refusal) }
        let bytes: [UInt8]
        do {
            bytes = try context.fileSystem.readFile(context.path(relative))
        } catch where error.rawValue == ENOENT {
            return .gone
        } catch {
            // An unreadable file is not known to be corrupt; stop rather than move a good record aside.
            throw .io("read", relative, error)
        }
        do {
            return .valid(try context.inspector.inspect(bytes, fileName: name), status)
        } catch {
            return .invalid(error.reason)
        }
    }

    /// Links a valid record without a ledger entry into ids/. Returns whether it did.
    private static func relink(
        _ relative: String, _ info: SpoolRecordInfo, _ status: SpoolFileStatus, _ context: SpoolContext
    ) throws(SpoolError) -> Bool {
        let ledger = "ids/\(info.id)"
        if let entry = try context.status(ledger) {
            if entry.inode != status.inode {
                context.logger.warning(
                    "recovery: \(relative) and \(ledger) are different files; the ledger entry is kept",
                    metadata: ["spool": "\(context.root)"]
                )
            }
            return false
        }
        do {
            try context.fileSystem.link(context.path(relative), context.path(ledger))
        } catch where error.rawValue == ENOENT {
            // A consumer moved it meanwhile: from new/ it is found again in cur/; from cur/ it was
            // acknowledged, and without a ledger entry a resend would be stored again (delivered twice,
            // never lost).
            return false
        } catch {
            throw .io("link", "\(relative) to \(ledger)", error)
        }
        context.logger.info("recovery relinked \(relative) to \(ledger)", metadata: ["spool": "\(context.root)"])
        return true
    }

    /// Moves an entry into corrupt/ (``SpoolQuarantine/move(_:root:fileSystem:uniqueSuffix:)``, as the queue tools
    /// do: never replacing a file there, which a queue tool may be quarantining into at the same moment). Files
    /// there are kept for inspection, never deleted. Returns false when the entry was gone (a consumer took it
    /// meanwhile).
    private static func quarantine(_ relative: String, reason: String, _ context: SpoolContext) throws(SpoolError) -> Bool {
        let destination: String?
        do {
            destination = try SpoolQuarantine.move(
                relative, root: context.root, fileSystem: context.fileSystem, uniqueSuffix: context.uniqueSuffix)
        } catch {
            throw .io(error.operation, error.path, error.errno)
        }
        guard let destination else { return false }
        context.logger.error(
            "recovery moved \(relative) to \(destination): \(reason)",
            metadata: ["spool": "\(context.root)"]
        )
        return true
    }
}
