public import PayhookCore
public import PayhookStore
import PayhookSpoolFormat

/// The spool directory as the receiving side's ``EventStore``: the router stores through this and knows
/// nothing of folders, fsyncs or the ledger (docs/architecture.md).
public struct SpoolEventStore: EventStore {
    public let spool: Spool

    public init(_ spool: Spool) {
        self.spool = spool
    }

    public func store(_ event: Event) throws(StoreError) -> StoreOutcome {
        do {
            return Self.outcome(try spool.store(id: event.id, fingerprint: event.fingerprint, bytes: event.jsonBytes))
        } catch {
            throw StoreError(error)
        }
    }

    /// Stores without holding the caller's thread while the disk works (``Spool/store(id:fingerprint:bytes:completion:)``):
    /// a duplicate is answered at once, anything that writes from one of the spool's store threads.
    public func store(_ event: Event, completion: @escaping @Sendable (Result<StoreOutcome, StoreError>) -> Void) {
        store(event, fingerprint: event.fingerprint, completion: completion)
    }

    public func store(_ event: Event, fingerprint: String, completion: @escaping @Sendable (Result<StoreOutcome, StoreError>) -> Void) {
        // The duplicate first, before any closure captures the event: a retry storm is mostly duplicates.
        do {
            if try spool.isDurableDuplicate(id: event.id, fingerprint: fingerprint) {
                completion(.success(.duplicate))
                return
            }
        } catch {
            completion(.failure(StoreError(error)))
            return
        }
        spool.storeOnStoreThread(id: event.id, fingerprint: fingerprint, bytes: { event.jsonBytes() }) { result in
            completion(result.map(Self.outcome).mapError(StoreError.init))
        }
    }

    /// The ledger entry is durable with this fingerprint (one stat(2), ``Spool/isDurableDuplicate(id:fingerprint:)``);
    /// an error there (an unhealthy or closed spool) is left for the store that follows to report.
    public func isStoredDuplicate(id: String, fingerprint: String) -> Bool {
        (try? spool.isDurableDuplicate(id: id, fingerprint: fingerprint)) ?? false
    }

    public func probe() throws(StoreError) {
        do {
            try spool.probe()
        } catch {
            throw StoreError(error)
        }
    }

    public var unhealthyReason: String? {
        guard !spool.isHealthy else { return nil }
        return spool.unhealthyReason.map { "\($0)" } ?? "a directory fsync failed"
    }

    public func counts() -> StoreCounts {
        StoreCounts(failures: spool.failureCounts, conflicts: spool.conflictCounts, batchSizes: spool.batchSizeHistogram)
    }

    public func recordRetention(seconds: Int) throws(StoreError) {
        do {
            try spool.recordRetention(seconds: seconds)
        } catch {
            throw StoreError(error)
        }
    }

    public func close() {
        spool.close()
    }

    /// The spool's folders as ``SpoolCensus`` reads them: one readdir(3) pass per folder and one fstatat(2) per
    /// event in new/ and cur/. The oldest event's arrival is its file's modification time, which the server sets
    /// when it writes the event (within milliseconds of its `received_at`) and no take, nack or requeue changes.
    public func census() -> QueueCensus? {
        let census = SpoolCensus.take(spool.directory)
        return QueueCensus(counts: census.counts, oldestReceived: census.oldestWritten)
    }

    static func outcome(_ outcome: SpoolOutcome) -> StoreOutcome {
        switch outcome {
        case .stored: return .stored
        case .duplicate: return .duplicate
        case .conflict(let auditFile, let disposition):
            return .conflict(auditCopy: auditFile, disposition: Self.disposition(disposition))
        }
    }

    static func disposition(_ disposition: SpoolConflictDisposition) -> ConflictDisposition {
        switch disposition {
        case .kept: return .kept
        case .repeated: return .repeated
        case .dropped: return .dropped
        }
    }
}

extension StoreError {
    /// The spool's error as the seam reports it: its sentence, and the errno behind it for the metrics label.
    init(_ error: SpoolError) {
        self.init(error.description, errno: error.errno)
    }
}
