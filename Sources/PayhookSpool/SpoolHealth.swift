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
    /// fsync(2) of a record file. The store fails; the spool stays healthy (reliability.md §6, rule 1).
    case fsyncFile = "fsync_file"
    /// fsync(2) of a directory. The spool turns unhealthy (reliability.md §6, rule 2).
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
}
