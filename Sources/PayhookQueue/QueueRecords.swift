import Foundation

/// Why one delivery attempt of an event failed. Stored as `last_error` in `attempts/<id>.json` and in a dead
/// letter's `dead/<id>.error.json`.
public struct QueueFailure: Codable, Sendable, Equatable {
    /// When it failed, RFC 3339 UTC with milliseconds.
    public var at: String
    /// One line for people: "exit status 3", "killed by signal 9", "timed out after 30s", "nack", ….
    public var reason: String
    /// The command's exit status, when it exited.
    public var exitStatus: Int32?
    /// The signal that ended the command, when one did.
    public var signal: Int32?
    /// The last bytes (at most 4 KiB) the command wrote to stderr, decoded as UTF-8.
    public var stderrTail: String?
    /// The command that was run (`consume --exec`).
    public var command: String?

    /// Creates a failure record.
    public init(
        at: Date = Date(), reason: String, exitStatus: Int32? = nil, signal: Int32? = nil,
        stderrTail: String? = nil, command: String? = nil
    ) {
        self.at = QueueTime.formatRFC3339(at)
        self.reason = reason
        self.exitStatus = exitStatus
        self.signal = signal
        self.stderrTail = stderrTail
        self.command = command
    }

    enum CodingKeys: String, CodingKey {
        case at, reason, command, signal
        case exitStatus = "exit_status"
        case stderrTail = "stderr_tail"
    }
}

/// The attempts bookkeeping of one event: `attempts/<id>.json` while it is in new/ or cur/, and
/// `dead/<id>.error.json` (with `dead_at`) once it is a dead letter.
public struct QueueAttemptRecord: Codable, Sendable, Equatable {
    /// The event id.
    public var id: String
    /// How many delivery attempts failed so far (a `nack` and a `requeue` count as one each).
    public var attempts: Int
    /// When this record was last written.
    public var updatedAt: String
    /// When the event was moved to dead/ (dead letters only).
    public var deadAt: String?
    /// The most recent failure.
    public var lastError: QueueFailure?

    /// Creates a record.
    public init(id: String, attempts: Int, updatedAt: Date = Date(), deadAt: Date? = nil, lastError: QueueFailure?) {
        self.id = id
        self.attempts = attempts
        self.updatedAt = QueueTime.formatRFC3339(updatedAt)
        self.deadAt = deadAt.map(QueueTime.formatRFC3339)
        self.lastError = lastError
    }

    enum CodingKeys: String, CodingKey {
        case id, attempts
        case updatedAt = "updated_at"
        case deadAt = "dead_at"
        case lastError = "last_error"
    }

    /// Pretty, key-sorted JSON with a final newline.
    func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Encoding a struct of strings and integers cannot fail; an empty object is the fallback anyway.
        let data = (try? encoder.encode(self)) ?? Data("{}".utf8)
        return Array(data) + [UInt8(ascii: "\n")]
    }

    /// Parses a record; nil when the bytes are not one (a damaged sidecar counts as no bookkeeping).
    static func decode(_ bytes: [UInt8]) -> QueueAttemptRecord? {
        try? JSONDecoder().decode(QueueAttemptRecord.self, from: Data(bytes))
    }
}
