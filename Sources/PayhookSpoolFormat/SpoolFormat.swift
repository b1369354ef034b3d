import Glibc
import Synchronization

/// The spool directory's layout: what each side may find there and what it is called.
///
/// ```
/// SPOOL/
///   tmp/           the server's files being written; nobody else reads them
///   new/           events waiting: <id>.json
///   cur/           events a consumer has taken: <id>.json (renamed from new/); deleting one acknowledges it
///   ids/           the dedupe ledger: ids/<id> is a hard link to the event's file
///   conflicts/     audit copies of correctly signed events whose id was known with other content
///   corrupt/       files that were not valid events; moved here, never deleted (``SpoolQuarantine``)
///   .lock          flock(2)ed by the running server
///   .retention     the ledger retention in seconds, "604800\n" (``SpoolRetentionFile``)
///
///   attempts/      (queue tools) attempts/<id>.json: failed attempts of an event in new/ or cur/
///   dead/          (queue tools) dead letters: dead/<id>.json and dead/<id>.error.json
///   .consume.lock  (queue tools) flock(2)ed by the one `payhook queue consume` worker
/// ```
///
/// In new/, cur/ and dead/ an event file is named exactly `<id>.json` (``EventID``) and holds a valid event
/// (``EventFile``); anything else found under an event name there is moved to corrupt/ by whichever side finds
/// it first, the server's startup recovery or a queue tool. docs/consumers.md describes the same layout for
/// the authors of consumers.
public enum SpoolFormat {
    /// The server's folders, in the order they are created and checked.
    public static let serverFolders = ["tmp", "new", "cur", "ids", "conflicts", "corrupt"]
    /// The folders the server creates names in; cur/ is the consumers' (they rename into it).
    public static let serverWrittenFolders = ["tmp", "new", "ids", "conflicts", "corrupt"]
    /// The folders the queue tools add when they first need them. The server ignores them.
    public static let consumerFolders = ["attempts", "dead"]
    /// The folders whose event files a consumer sees, in take order: waiting, taken, dead.
    public static let eventFolders = ["new", "cur", "dead"]

    /// Held (flock(2)) by the running server; holds its pid.
    public static let lockFile = ".lock"
    /// Held by the one `payhook queue consume` worker of the spool; holds its pid.
    public static let consumeLockFile = ".consume.lock"

    /// The largest file either side reads or moves out of new/, cur/, dead/ and attempts/: 16 MiB. An event holds
    /// one callback request, whose body the server caps at max_body_bytes (64 KiB by default, docs/limits.md),
    /// with its parsed fields and JSON escaping: a few hundred KiB at most, even with a raised cap. A larger file
    /// is not one the server wrote, and reading it whole would only exhaust memory.
    public static let maximumFileSize: Int64 = 16 << 20

    /// The spool directory as given, without trailing slashes ("/" stays "/").
    public static func normalize(_ directory: String) -> String {
        var result = Substring(directory)
        while result.count > 1, result.hasSuffix("/") {
            result = result.dropLast()
        }
        return String(result)
    }
}

/// Event ids: exactly 64 lowercase hex characters (the SHA-256 of the dedupe key), so an id can never name
/// another path ("../x", "a/b") and one event has exactly one spelling and one file name, `<id>.json`.
public enum EventID {
    /// The length of an id, in characters (and bytes).
    public static let length = 64

    /// Whether `text` is a well-formed event id.
    public static func isValid(_ text: String) -> Bool {
        var count = 0
        for byte in text.utf8 {
            count += 1
            guard count <= length else { return false }
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"): continue
            default: return false
            }
        }
        return count == length
    }

    /// The event file's name: `<id>.json`.
    public static func fileName(_ id: String) -> String {
        id + ".json"
    }

    /// The id of an event file name `<id>.json`, or nil for any other name.
    public static func fromFileName(_ name: String) -> String? {
        guard name.utf8.count == length + 5, name.hasSuffix(".json") else { return nil }
        let id = String(decoding: name.utf8.prefix(length), as: UTF8.self)
        return isValid(id) ? id : nil
    }

    /// The id of a raw directory entry name, or nil when it is no event file name.
    public static func fromFileName(_ name: SpoolName) -> String? {
        name.string.flatMap(fromFileName)
    }

    /// A value as shown in a message: quoted, cut short, printable ASCII only, since it may be anything.
    public static func quoted(_ text: String) -> String {
        let shown = text.unicodeScalars.prefix(80).map { scalar -> String in
            scalar.isASCII && scalar.value >= 0x20 && scalar.value < 0x7f ? String(scalar) : "?"
        }
        return "\"" + shown.joined() + (text.unicodeScalars.count > 80 ? "…" : "") + "\""
    }
}

/// Unique suffixes for the names either side makes in the spool (tmp/ files, conflict copies, quarantined
/// files whose name was taken, the queue's sidecar temporaries): "<pid>.<counter>.<microseconds>", unique within
/// a process by the counter, across processes by the pid, and across a pid reused after a restart by the clock
/// (the maildir(5) naming scheme).
public final class SpoolUniqueNames: Sendable {
    private let processID: CInt
    private let clock: @Sendable () -> UInt64
    private let counter = Atomic<UInt64>(0)

    /// - Parameters:
    ///   - processID: this process's pid (from the writer's file system, so that a test can replay names).
    ///   - clock: the wall clock in microseconds since the epoch.
    public init(processID: CInt, clock: @escaping @Sendable () -> UInt64) {
        self.processID = processID
        self.clock = clock
    }

    /// Names for this process, on the real clock.
    public convenience init() {
        let system = PosixFileSystem()
        self.init(processID: system.processID(), clock: { system.currentTimeMicroseconds() })
    }

    /// The next suffix.
    public func next() -> String {
        let count = counter.wrappingAdd(1, ordering: .relaxed).newValue
        return "\(processID).\(count).\(clock())"
    }
}

/// `.retention`: how long the server's dedupe ledger must keep entries, for `payhook queue gc` in another
/// process. Exactly the decimal number of seconds, at least 1, and a newline ("604800\n"). The server writes it
/// (atomically, by rename) only in this form, and the queue tools accept only this form: a guess could prune
/// ledger entries the server still needs to recognise a replay.
public enum SpoolRetentionFile {
    /// The file's name, in the spool directory itself: recovery and the layout checks look only at the
    /// subfolders, and skip dotfiles there too, so it is never taken for a record or for something foreign.
    public static let name = ".retention"
    /// The most a valid file holds: 20 digits hold any 64-bit count of seconds, plus the newline.
    public static let maximumSize: Int64 = 21

    /// The file's contents for `seconds`, or nil when `seconds` is below 1 (zero would mean "keep nothing").
    public static func encode(seconds: Int) -> [UInt8]? {
        guard seconds > 0 else { return nil }
        return Array("\(seconds)\n".utf8)
    }

    /// The seconds a file's contents hold, or nil when they are not in the one accepted form.
    public static func decode(_ bytes: [UInt8]) -> Int64? {
        let digits = bytes.dropLast()
        guard bytes.last == UInt8(ascii: "\n"), !digits.isEmpty, digits.count < Int(maximumSize),
            digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            let seconds = Int64(String(decoding: digits, as: UTF8.self)), seconds > 0
        else { return nil }
        return seconds
    }
}
