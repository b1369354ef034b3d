import Glibc
import Logging
import PayhookSpool
import PayhookSpoolFormat

/// The ALICE-style checker (docs/durability.md §10.1 and §10.2): given a state a crash left and what had been
/// acknowledged before it, open a spool on that state (recovery runs), check the invariants, let the sender
/// retry every record, and check again.
///
/// Invariants (docs/contract.md §4, docs/durability.md §1 and §8):
/// 1. Every record whose store returned `.stored` or `.duplicate` before the crash is present exactly once in
///    new/ ∪ cur/ with exactly its bytes, and ids/<id> names the same inode, unless a consumer had taken it.
/// 2. Every file in new/ and cur/ is a complete record under its own name: nothing partial or unparsable.
///    Recovery may move such a file to corrupt/, but an acknowledged record never ends up there.
/// 3. No ids/ entry without its record (unless a consumer took that record).
/// 4. The audit copy of every acknowledged conflict is in conflicts/.
/// 5. tmp/ is empty after recovery.
/// 6. The sender's retries all succeed: the first record of each id is `.stored` or `.duplicate` (never
///    `.stored` once a consumer had durably consumed it: that would deliver it twice), a record with another
///    fingerprint is a `.conflict`; afterwards every id is present once, with its first record's bytes.
/// 7. Recovery is idempotent: reopening after that repairs nothing.
struct CrashChecker {
    let root: String
    /// Every record the workload stores, in the order the sender would retry them.
    let records: [SpoolRecord]

    static let quiet = Logger(label: "payhook.spool.crash") { _ in SwiftLogNoOpLogHandler() }

    /// What the notes before the crash point say.
    struct Expectations: Hashable {
        /// id → fingerprint of the acknowledged stored (or duplicate) record.
        var acknowledged: [String: String] = [:]
        /// Acknowledged conflicts: audit file → fingerprint of the conflicting record.
        var auditFiles: [String: String] = [:]
        var consumerStarted: Set<String> = []
        var consumed: Set<String> = []

        init(_ entries: ArraySlice<CrashFS.LogEntry>) {
            for entry in entries {
                guard case .note(let note) = entry.effect else { continue }
                switch note {
                case .acknowledged(let id, let fingerprint, .stored), .acknowledged(let id, let fingerprint, .duplicate):
                    acknowledged[id] = acknowledged[id] ?? fingerprint
                case .acknowledged(_, let fingerprint, .conflict(let auditFile?, _)):
                    // A new copy, or the one a repeat of the same content was answered with: either way durable.
                    auditFiles[auditFile] = fingerprint
                case .consumerStarted(let id):
                    consumerStarted.insert(id)
                case .consumed(let id):
                    consumed.insert(id)
                default:
                    break
                }
            }
        }
    }

    struct Result {
        var violations: [String] = []
        var quarantined = 0
        var relinked = 0
    }

    private func record(_ id: String, _ fingerprint: String) -> SpoolRecord? {
        records.first { $0.id == id && $0.fingerprint == fingerprint }
    }

    func check(_ state: CrashFS.CrashState, _ expected: Expectations) -> Result {
        var result = Result()
        let fileSystem = CrashFS(image: state.image)
        let spool: Spool
        do {
            spool = try Spool(directory: root, inspector: TestInspector(), fileSystem: fileSystem, logger: Self.quiet)
        } catch {
            result.violations.append("\(state.description): recovery failed: \(error)")
            return result
        }
        result.quarantined = spool.recovery.quarantined.count
        result.relinked = spool.recovery.relinkedLedgerEntries.count
        for problem in inspect(fileSystem, acknowledged: expected.acknowledged, expected) {
            result.violations.append("\(state.description): after recovery: \(problem)")
        }

        // The sender retries everything: what it was told before stays true, nothing is lost or stored twice.
        var first: [String: String] = [:]
        for record in records {
            let original = first[record.id] ?? record.fingerprint
            first[record.id] = original
            let outcome: SpoolOutcome
            do {
                outcome = try spool.store(record)
            } catch {
                result.violations.append("\(state.description): retry of \(short(record)) failed: \(error)")
                continue
            }
            let fine: Bool
            switch outcome {
            case .stored:
                fine = record.fingerprint == original && !expected.consumed.contains(record.id)
            case .duplicate:
                fine = record.fingerprint == original
            case .conflict:
                fine = record.fingerprint != original
            }
            if !fine {
                let why = expected.consumed.contains(record.id) ? " (it was consumed: delivered twice)" : ""
                result.violations.append("\(state.description): retry of \(short(record)) answered \(outcome)\(why)")
            }
        }
        // Now every record is acknowledged (a record a consumer had started to take may be gone for good).
        var everything: [String: String] = first
        for id in expected.consumed { everything[id] = nil }
        for problem in inspect(fileSystem, acknowledged: everything, expected) {
            result.violations.append("\(state.description): after the retries: \(problem)")
        }
        spool.close()

        do {
            let again = try Spool(directory: root, inspector: TestInspector(), fileSystem: fileSystem, logger: Self.quiet)
            if !again.recovery.isEmpty {
                result.violations.append("\(state.description): a second recovery still repaired: \(again.recovery)")
            }
            again.close()
        } catch {
            result.violations.append("\(state.description): reopening failed: \(error)")
        }
        return result
    }

    private func short(_ record: SpoolRecord) -> String {
        "\(record.id.suffix(4))/\(record.fingerprint)"
    }

    /// The invariants on the tree as the spool sees it now.
    private func inspect(_ fileSystem: CrashFS, acknowledged: [String: String], _ expected: Expectations) -> [String] {
        var problems: [String] = []
        let tmp = fileSystem.entries(root + "/tmp")
        if !tmp.isEmpty {
            problems.append("tmp/ is not empty: \(tmp.keys.sorted())")
        }
        // Every published file is a complete record under its own name.
        var holders: [String: [(path: String, inode: Int)]] = [:]
        for folder in ["new", "cur"] {
            for (name, inode) in fileSystem.entries(root + "/" + folder).sorted(by: { $0.key < $1.key }) {
                let bytes = fileSystem.bytes(ofInode: inode) ?? []
                guard let info = TestInspector().inspect(bytes), name == "\(info.id).json",
                      record(info.id, info.fingerprint)?.bytes == bytes
                else {
                    problems.append("\(folder)/\(name) is not a complete record (\(bytes.count) bytes)")
                    continue
                }
                holders[info.id, default: []].append(("\(folder)/\(name)", inode))
            }
        }
        let ledger = fileSystem.entries(root + "/ids")
        for (id, fingerprint) in acknowledged.sorted(by: { $0.key < $1.key }) where !expected.consumed.contains(id) {
            let found = holders[id] ?? []
            if found.isEmpty {
                if !expected.consumerStarted.contains(id) {
                    problems.append("acknowledged record \(id.suffix(4)) is missing from new/ and cur/")
                }
                continue
            }
            if found.count > 1 {
                problems.append("acknowledged record \(id.suffix(4)) is there \(found.count) times: \(found.map(\.path))")
            }
            let bytes = fileSystem.bytes(ofInode: found[0].inode)
            if bytes != record(id, fingerprint)?.bytes {
                problems.append("acknowledged record \(id.suffix(4)) has other contents than were acknowledged")
            }
            if ledger[id] == nil {
                problems.append("acknowledged record \(id.suffix(4)) has no ids/ entry")
            } else if ledger[id] != found[0].inode {
                problems.append("ids/\(id.suffix(4)) is not a link to \(found[0].path)")
            }
        }
        for name in fileSystem.entries(root + "/corrupt").keys.sorted() {
            if acknowledged.keys.contains(where: { name.hasPrefix($0) }) {
                problems.append("acknowledged record \(name.prefix(64).suffix(4)) was quarantined as corrupt/\(name)")
            }
        }
        for (id, inode) in ledger.sorted(by: { $0.key < $1.key }) {
            if expected.consumerStarted.contains(id) { continue }
            if !(holders[id] ?? []).contains(where: { $0.inode == inode }) {
                problems.append("ids/\(id.suffix(4)) has no record in new/ or cur/")
            }
        }
        let conflicts = fileSystem.entries(root + "/conflicts")
        for (auditFile, fingerprint) in expected.auditFiles.sorted(by: { $0.key < $1.key }) {
            let name = String(auditFile.dropFirst("conflicts/".count))
            let id = String(name.prefix(64))
            guard let inode = conflicts[name], fileSystem.bytes(ofInode: inode) == record(id, fingerprint)?.bytes else {
                problems.append("the audit copy \(auditFile) of an acknowledged conflict is missing or incomplete")
                continue
            }
        }
        return problems
    }
}

/// Enumerates crash points over a recorded log and checks every state each one may leave.
struct CrashExploration {
    var crashPoints = 0
    /// Combinations of per-directory prefixes and per-file fates, before deduplication.
    var combinations = 0
    /// Distinct (state, acknowledgements) pairs that were opened and checked.
    var statesChecked = 0
    var quarantined = 0
    var relinked = 0
    var violations: [String] = []

    private struct Key: Hashable {
        let state: [Int]
        let expected: CrashChecker.Expectations
    }

    private var checked: Set<Key> = []
    private let numbers = CrashFS.OutcomeNumbers()
    /// Stop once a crash point produced a violation (to show that a broken spool is caught, quickly).
    var stopAtFirstViolation = false

    /// Checks every crash point at log positions `positions` (a position is "after that many log entries").
    ///
    /// With `onlyBeforeSyncs`, only the positions just before an fsync and the last one are checked. Nothing
    /// becomes durable between two fsyncs, so the unsynced operations of each directory at an earlier position
    /// are a prefix of those just before the next fsync, and every state an earlier crash may leave is among
    /// the states of that later one, whose acknowledgements include the earlier ones. (A file's "torn" and
    /// "zero-filled" fates are the same too while each record is written by one write call, as with CrashFS,
    /// which never writes short.) ALICE and CrashMonkey likewise check at persistence points.
    mutating func explore(
        _ fileSystem: CrashFS,
        positions: ClosedRange<Int>,
        checker: CrashChecker,
        onlyBeforeSyncs: Bool = false
    ) {
        let log = fileSystem.log
        for position in positions {
            if stopAtFirstViolation, !violations.isEmpty { return }
            if onlyBeforeSyncs, position < positions.upperBound {
                guard case .sync = log[position].effect else { continue }
            }
            crashPoints += 1
            let expected = CrashChecker.Expectations(log[..<position])
            let (states, count) = fileSystem.crashStates(at: position, numbers: numbers) { key in
                checked.insert(Key(state: key, expected: expected)).inserted
            }
            combinations += count
            for state in states {
                statesChecked += 1
                let result = checker.check(state, expected)
                quarantined += result.quarantined
                relinked += result.relinked
                violations += result.violations
            }
        }
    }

    var summary: String {
        "\(crashPoints) crash points, \(combinations) combinations, \(statesChecked) distinct states checked, "
            + "\(quarantined) files quarantined, \(relinked) ledger entries relinked, \(violations.count) violations"
    }
}
