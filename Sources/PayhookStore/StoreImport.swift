#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif

/// One event moved from one store to another (`payhook db import`): its bytes exactly as stored, the columns a
/// database indexes, and where it was in its life.
public struct ImportedEvent: Sendable, Equatable {
    /// Where the event was.
    public enum State: String, Sendable, Equatable {
        /// Waiting for a consumer, or taken by one that is gone with the old store: delivered again.
        case new
        /// A dead letter, with its attempts and last error.
        case dead
        /// Acknowledged: only its dedupe entry remains, so that a late retry is still a duplicate.
        case acknowledged
    }

    public var id: String
    public var dedupeKey: String
    public var source: String
    public var tenant: String
    public var orderRef: String
    public var status: String
    public var amount: Int64
    public var currency: String
    /// What tells a duplicate from a conflict (the source's fingerprint rule applied to the event).
    public var fingerprint: String
    public var bytes: [UInt8]
    /// `received_at` as the event states it (RFC 3339).
    public var receivedAt: String
    public var state: State
    /// Its attempts bookkeeping (failed attempts, the last failure, when it became a dead letter), if any.
    public var record: QueueAttemptRecord?
    /// When its dedupe entry was written: the start of its retention once acknowledged.
    public var ledgerTime: Date

    public init(
        id: String, dedupeKey: String, source: String, tenant: String, orderRef: String, status: String, amount: Int64,
        currency: String, fingerprint: String, bytes: [UInt8], receivedAt: String, state: State,
        record: QueueAttemptRecord? = nil, ledgerTime: Date
    ) {
        self.id = id
        self.dedupeKey = dedupeKey
        self.source = source
        self.tenant = tenant
        self.orderRef = orderRef
        self.status = status
        self.amount = amount
        self.currency = currency
        self.fingerprint = fingerprint
        self.bytes = bytes
        self.receivedAt = receivedAt
        self.state = state
        self.record = record
        self.ledgerTime = ledgerTime
    }
}

/// An audit copy of a conflicting variant, moved with the events.
public struct ImportedConflict: Sendable, Equatable {
    public var id: String
    public var fingerprint: String
    public var bytes: [UInt8]
    /// When the copy was written.
    public var writtenAt: Date

    public init(id: String, fingerprint: String, bytes: [UInt8], writtenAt: Date) {
        self.id = id
        self.fingerprint = fingerprint
        self.bytes = bytes
        self.writtenAt = writtenAt
    }
}
