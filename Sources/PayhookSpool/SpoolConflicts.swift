public import PayhookStore
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import PayhookLock
import PayhookSpoolFormat

/// Bounds on the audit copies the spool keeps in conflicts/.
///
/// A conflict is a record whose id the ledger knows with another fingerprint. A sender, or anyone replaying a
/// validly signed callback with an unsigned field changed, can make any number of them; each used to be a new
/// fsynced file, so a loop of them filled the disk until the free-space guard refused real payments. Now each
/// distinct content (id and fingerprint) is kept once, and beyond these caps nothing more is written.
public struct SpoolConflictLimits: Sendable, Equatable {
    /// At most this many audit copies per record id (distinct contents); 0 keeps none.
    public var perRecord: Int
    /// At most this many files in conflicts/ altogether, whatever put them there; 0 keeps none.
    public var total: Int
    /// Before a conflict is dropped over a cap, conflicts/ is listed again, in case another process (`payhook
    /// queue gc`) removed files since; at most once per this interval, so that a flood of conflicts over the cap
    /// costs no directory reads. Zero lists it before every drop.
    public var recountInterval: Duration

    /// The defaults: ``ConflictCaps`` (16 copies per record, 1000 in all), conflicts/ listed again at most every 10
    /// seconds.
    public init(
        perRecord: Int = ConflictCaps.defaultPerEvent, total: Int = ConflictCaps.defaultTotal,
        recountInterval: Duration = .seconds(10)
    ) {
        self.perRecord = max(0, perRecord)
        self.total = max(0, total)
        self.recountInterval = max(.zero, recountInterval)
    }
}

/// What the spool did with a conflicting record (``SpoolOutcome/conflict(auditFile:disposition:)``). The raw
/// values are meant as metric labels.
public enum SpoolConflictDisposition: String, Sendable, CaseIterable, CustomStringConvertible {
    /// A new audit copy was written and made durable in conflicts/.
    case kept
    /// This content (same id, same fingerprint byte for byte) already has an audit copy in conflicts/; nothing
    /// was written.
    case repeated
    /// Over a cap (``SpoolConflictLimits``): nothing was written, and this content is not kept.
    case dropped

    public var description: String { rawValue }
}

/// What the spool believes is in conflicts/: the copies of each id, with their fingerprints once read, and how
/// many files there are in all. Built from a listing at open, corrected whenever a file turns out missing, and
/// listed again (at a bounded rate) before a conflict is dropped over a cap. Every decision for one id runs
/// under that id's single-flight gate in ``Spool``; the total is shared, so a new copy reserves its place in it
/// before writing.
final class SpoolConflictIndex: Sendable {
    enum Fingerprint: Sendable {
        case unknown
        case known(String)
        /// Not a record of this id (or unreadable): never the same content as anything.
        case unusable
    }

    struct Copy: Sendable {
        let name: String
        var fingerprint: Fingerprint
    }

    private struct State {
        var byID: [String: [Copy]] = [:]
        /// Files believed in conflicts/ (dotfiles aside), those of no record id included.
        var files = 0
        /// New copies being written: counted against the total until they are in ``byID`` or given up.
        var reserved = 0
        var lastRecount: ContinuousClock.Instant?
        var lastDropLog: ContinuousClock.Instant?
        var droppedSinceLog = 0
        var counts: [SpoolConflictDisposition: Int] = [:]
    }

    let limits: SpoolConflictLimits
    private let context: SpoolContext
    private let state = Locked(State())
    private static let clock = ContinuousClock()

    init(context: SpoolContext, limits: SpoolConflictLimits) {
        self.context = context
        self.limits = limits
    }

    // MARK: Counters

    func count(_ disposition: SpoolConflictDisposition) {
        state.withLock { $0.counts[disposition, default: 0] += 1 }
    }

    var counts: [SpoolConflictDisposition: Int] {
        state.withLock { state in
            Dictionary(uniqueKeysWithValues: SpoolConflictDisposition.allCases.map { ($0, state.counts[$0, default: 0]) })
        }
    }

    /// Files in conflicts/ as the spool believes, copies being written included.
    var files: Int {
        state.withLock { $0.files + $0.reserved }
    }

    // MARK: Listing

    /// The record id an audit file's name starts with ("<id>.<unique>.json"), if any.
    static func recordID(ofFile name: String) -> String? {
        let utf8 = name.utf8
        guard utf8.count > EventID.length,
              utf8[utf8.index(utf8.startIndex, offsetBy: EventID.length)] == UInt8(ascii: ".")
        else { return nil }
        let id = String(name.prefix(EventID.length))
        return EventID.isValid(id) ? id : nil
    }

    /// Lists conflicts/ and replaces what the index believes with it, keeping the fingerprints read before of
    /// the files still there. Dotfiles are skipped, as recovery skips them: another tool's temporary files.
    /// A copy of another id kept between the listing and its use here is missed until the next listing: the
    /// total may then be exceeded by as many copies as were being written at once, never by more.
    func recount() throws(SpoolError) {
        let names: [String]
        do {
            names = try context.fileSystem.readDirectory(context.path("conflicts")).filter { !$0.hasPrefix(".") }
        } catch {
            throw context.failure(.other, "read directory", "conflicts/", error)
        }
        let now = Self.clock.now
        state.withLock { state in
            var byID: [String: [Copy]] = [:]
            for name in names {
                guard let id = Self.recordID(ofFile: name) else { continue }
                let known = state.byID[id]?.first { $0.name == name }?.fingerprint ?? .unknown
                byID[id, default: []].append(Copy(name: name, fingerprint: known))
            }
            state.byID = byID
            state.files = names.count
            state.lastRecount = now
        }
    }

    // MARK: Decisions, under the id's gate

    /// The audit copy of `id` with exactly this fingerprint, if one is still there. Reads the fingerprints of the
    /// id's copies not read yet (the first conflict of an id after an open); after that, a repeat costs one
    /// lstat(2) of the copy, which also notices a copy removed by another process.
    func existingCopy(of id: String, fingerprint: String) throws(SpoolError) -> String? {
        let copies = state.withLock { $0.byID[id] ?? [] }
        for copy in copies {
            var current = copy.fingerprint
            if case .unknown = current {
                guard let read = try readFingerprint(copy.name, id: id) else {
                    forget(id, copy.name)
                    continue
                }
                current = read
                state.withLock { state in
                    guard let index = state.byID[id]?.firstIndex(where: { $0.name == copy.name }) else { return }
                    state.byID[id]?[index].fingerprint = read
                }
            }
            guard case .known(let known) = current, SpoolBytes.same(known, fingerprint) else { continue }
            if try context.status("conflicts/\(copy.name)") != nil {
                return "conflicts/\(copy.name)"
            }
            forget(id, copy.name)
        }
        return nil
    }

    /// The fingerprint in an audit file; nil when the file is gone. A file that cannot be read or is not a
    /// record of `id` is `.unusable`: it still counts against the caps, but matches nothing.
    private func readFingerprint(_ name: String, id: String) throws(SpoolError) -> Fingerprint? {
        let relative = "conflicts/\(name)"
        let bytes: [UInt8]
        do {
            bytes = try context.fileSystem.readFile(context.path(relative))
        } catch where error.rawValue == ENOENT {
            return nil
        } catch {
            context.monitor.count(.read)
            context.logger.warning(
                "read \(relative): \(error); it is not compared with new conflicts",
                metadata: ["spool": "\(context.root)"]
            )
            return .unusable
        }
        guard let info = context.inspector.inspect(bytes), SpoolBytes.same(info.id, id) else { return .unusable }
        return .known(info.fingerprint)
    }

    /// A copy found missing: removed by another process.
    private func forget(_ id: String, _ name: String) {
        state.withLock { state in
            guard let index = state.byID[id]?.firstIndex(where: { $0.name == name }) else { return }
            state.byID[id]?.remove(at: index)
            if state.byID[id]?.isEmpty == true { state.byID[id] = nil }
            state.files = max(0, state.files - 1)
        }
    }

    enum Reservation {
        /// Room for one more copy: write it, then ``kept(_:_:fingerprint:)`` or ``release()``.
        case granted
        /// Over a cap; `limit` says which, for the log.
        case refused(limit: String)
    }

    /// Reserves room for a new copy of `id`, listing conflicts/ again first (at most once per
    /// ``SpoolConflictLimits/recountInterval``) when the caps look reached, in case files were removed.
    func reserve(_ id: String) throws(SpoolError) -> Reservation {
        let now = Self.clock.now
        var first = tryReserve(id)
        if case .refused = first {
            let due = state.withLock { state -> Bool in
                guard let last = state.lastRecount else { return true }
                return now - last >= limits.recountInterval
            }
            if due {
                try recount()
                first = tryReserve(id)
            }
        }
        return first
    }

    private func tryReserve(_ id: String) -> Reservation {
        state.withLock { state -> Reservation in
            if state.byID[id, default: []].count >= limits.perRecord {
                return .refused(limit: "\(limits.perRecord) audit copies per record")
            }
            if state.files + state.reserved >= limits.total {
                return .refused(limit: "\(limits.total) files in conflicts/")
            }
            state.reserved += 1
            return .granted
        }
    }

    /// The reserved copy is durable as conflicts/`name`.
    func kept(_ id: String, _ name: String, fingerprint: String) {
        state.withLock { state in
            state.reserved = max(0, state.reserved - 1)
            // A recount while it was written may have listed it already.
            if state.byID[id]?.contains(where: { $0.name == name }) != true {
                state.byID[id, default: []].append(Copy(name: name, fingerprint: .known(fingerprint)))
                state.files += 1
            }
        }
    }

    /// The reserved copy was not kept.
    func release() {
        state.withLock { $0.reserved = max(0, $0.reserved - 1) }
    }

    /// Counts a drop; returns how many were dropped since the last warning when one is due (the first, then at
    /// most one a minute), so that a flood over the cap does not flood the log either.
    func noteDrop() -> Int? {
        let now = Self.clock.now
        return state.withLock { state -> Int? in
            state.counts[.dropped, default: 0] += 1
            state.droppedSinceLog += 1
            if let last = state.lastDropLog, now - last < .seconds(60) { return nil }
            state.lastDropLog = now
            defer { state.droppedSinceLog = 0 }
            return state.droppedSinceLog
        }
    }
}
