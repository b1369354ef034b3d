#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import PayhookLock

/// The kinds of storage error a ``Spool`` counts (``Spool/failureCounts``). The raw values are meant as metric
/// labels, e.g. `payhook_spool_errors_total{kind="fsync_dir"}`.
///
/// Each failed file-system call the spool treats as an error is counted once, under the call that failed, whether
/// it made a store or probe fail or was only logged (a tmp/ file that could not be removed). Outcomes that are
/// part of normal operation are not counted: a ledger entry that does not exist yet, a file a consumer already
/// took, an existing folder at startup.
public enum SpoolFailureKind: String, CaseIterable, Sendable, CustomStringConvertible {
    /// open(2): creating a tmp/ file (EMFILE, ENOSPC, EACCES, …) or opening a directory to sync it.
    case open
    /// write(2) of a record (ENOSPC, EIO, EDQUOT, …).
    case write
    /// fsync(2) of a record file. The store fails; the spool stays healthy (docs/durability.md §6, rule 1).
    case fsyncFile = "fsync_file"
    /// fsync(2) of a directory. The spool turns unhealthy (docs/durability.md §6, rule 2).
    case fsyncDirectory = "fsync_dir"
    /// link(2) into new/, ids/ or conflicts/ (EEXIST there means a record published without a ledger entry).
    case link
    /// unlink(2) of a tmp/ file or of a record being taken back.
    case unlink
    /// Reading a ledger entry.
    case read
    /// close(2), which can report a deferred write error.
    case close
    /// The free-space guard refused a write (``SpoolError/Code/noSpace``); not a failed call.
    case belowMinimumFree = "min_free"
    /// Anything else (stat, statvfs, …).
    case other

    public var description: String { rawValue }
}

/// The failure counters and the health flag of one open spool. Shared by every thread that stores.
final class SpoolMonitor: Sendable {
    private struct State {
        var counts: [SpoolFailureKind: Int] = [:]
        /// Set by the first failed directory fsync, never cleared: only a new ``Spool`` (recovery) clears it.
        var unhealthyCause: SpoolError?
        /// The storage error of the most recent store that ended in one; nil once a later store succeeded, or
        /// once the probe saw the cause repaired (``probeFailed()``, ``probePassed()``).
        var storeFailure: SpoolError?
        /// Whether a probe's own checks failed since ``storeFailure`` was set: when they pass again, what broke
        /// is repaired.
        var probeFailedSinceStoreFailure = false
    }

    private let state = Locked(State())

    func count(_ kind: SpoolFailureKind) {
        state.withLock { $0.counts[kind, default: 0] += 1 }
    }

    /// Every kind, including those at zero, so that an exporter shows them all from the start.
    var counts: [SpoolFailureKind: Int] {
        state.withLock { state in
            Dictionary(uniqueKeysWithValues: SpoolFailureKind.allCases.map { ($0, state.counts[$0, default: 0]) })
        }
    }

    /// Records the first cause; returns true when this call made the spool unhealthy.
    @discardableResult
    func markUnhealthy(_ cause: SpoolError) -> Bool {
        state.withLock { state in
            guard state.unhealthyCause == nil else { return false }
            state.unhealthyCause = cause
            return true
        }
    }

    var unhealthyCause: SpoolError? {
        state.withLock { $0.unhealthyCause }
    }

    // MARK: Store failures, for the health probe

    /// The failures that make a store fail for a reason in the storage: the disk, the folders, free space.
    /// Not a malformed record, not a closed spool (a caller's doing), not `.unhealthy` (the probe refuses that
    /// by itself, for good).
    static func isStorageFailure(_ error: SpoolError) -> Bool {
        [.io, .noSpace, .notWritable, .inconsistent].contains(error.code)
    }

    /// Failures the probe's own checks would meet again while their cause lasts: a folder that refuses new
    /// files (EACCES, EPERM, EROFS: the probe opens an unnamed file in every folder a store writes), a full disk
    /// or quota and the free-space guard (the probe writes and fsyncs a file in tmp/), and no descriptors left
    /// (the probe opens some). When the checks pass, such a cause is gone. An EIO, say, is not reproducible on
    /// demand: a probe that passes proves nothing about it, so only a store that succeeds (or checks that failed
    /// and then passed) clears it.
    static func probeCanRecheck(_ error: SpoolError) -> Bool {
        if error.code == .noSpace || error.code == .notWritable { return true }
        guard let errno = error.errno else { return false }
        return [EACCES, EPERM, EROFS, ENOSPC, EDQUOT, EMFILE, ENFILE].contains(errno)
    }

    /// How a store that got past its argument checks ended, as far as the health probe cares.
    enum StoreEnding {
        /// It wrote and made durable a record or an audit copy: writing works.
        case wrote
        /// It was answered without writing (a duplicate, a conflict already kept or over a cap): that proves
        /// nothing about writing, so it changes nothing.
        case wroteNothing
        case failed(SpoolError)
    }

    func storeEnded(_ ending: StoreEnding) {
        // Most stores of a retry storm are duplicates: they take no lock here.
        if case .wroteNothing = ending { return }
        state.withLock { state in
            switch ending {
            case .wrote:
                state.storeFailure = nil
                state.probeFailedSinceStoreFailure = false
            case .wroteNothing:
                break
            case .failed(let error):
                guard Self.isStorageFailure(error) else { return }
                state.storeFailure = error
                state.probeFailedSinceStoreFailure = false
            }
        }
    }

    func probeFailed() {
        state.withLock { state in
            if state.storeFailure != nil { state.probeFailedSinceStoreFailure = true }
        }
    }

    /// The probe's checks passed. Returns the failure that still stands: the last store's storage error when
    /// the checks cannot vouch for its repair (see ``probeCanRecheck(_:)``); nil, clearing it, when they can.
    func probePassed() -> SpoolError? {
        state.withLock { state -> SpoolError? in
            guard let failure = state.storeFailure else { return nil }
            if state.probeFailedSinceStoreFailure || Self.probeCanRecheck(failure) {
                state.storeFailure = nil
                state.probeFailedSinceStoreFailure = false
                return nil
            }
            return failure
        }
    }

    /// The last store's storage error, while it stands.
    var storeFailure: SpoolError? {
        state.withLock { $0.storeFailure }
    }
}
