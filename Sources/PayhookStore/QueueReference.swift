/// How an operator names an event on the command line: its id (64 lowercase hex characters), its file name
/// `<id>.json` (what `ls` prints), a unique prefix of the id of at least ``minimumPrefix`` characters (`queue
/// show`), or the name of a conflict copy, `<id>.<tag>.json` (`queue show`, `payhook verify`).
///
/// A reference is only ever compared with names the queue lists; it is never made into a path, and the forms
/// are strict enough that no accepted text holds a `/`, a NUL or `..`.
public enum QueueReference: Sendable, Equatable {
    /// A whole event id.
    case id(String)
    /// The first 8 to 63 characters of an event id.
    case prefix(String)
    /// A conflict copy: the id of the event it conflicts with, and its whole name.
    case conflictCopy(id: String, name: String)

    /// The shortest prefix accepted: 8 hex characters (32 bits) rarely match two ids of one queue, and a
    /// shorter one would often be ambiguous.
    public static let minimumPrefix = 8
    /// The length of an event id.
    public static let idLength = 64
    /// The longest tag a conflict copy's name may have between `<id>.` and `.json`. The spool's are
    /// `<pid>.<counter>.<microseconds>.I<inode>` (about 40 characters), the database's the row's number.
    public static let maximumTagLength = 128

    /// Why a text is not a reference, for the usage error (exit 2).
    public enum Problem: Error, Sendable, Equatable {
        /// Nothing was given.
        case empty
        /// Hex, but fewer than ``minimumPrefix`` characters (the count given).
        case tooShort(Int)
        /// A prefix, where the command needs a whole id.
        case prefixNotAllowed
        /// A conflict copy's name, where the command needs an event.
        case conflictCopyNotAllowed
        /// Lowercase hex, but longer than an id (the count given).
        case tooLong(Int)
        /// Not lowercase hex, and not one of the file names.
        case notHex
    }

    /// Whether `text` is a well-formed event id.
    public static func isID(_ text: String) -> Bool {
        text.utf8.count == idLength && isLowercaseHex(text)
    }

    /// Reads a reference. `prefixes` and `conflictCopies` say whether the command accepts those forms.
    public static func parse(
        _ text: String, prefixes: Bool = false, conflictCopies: Bool = false
    ) throws(Problem) -> QueueReference {
        guard !text.isEmpty else { throw .empty }
        if let copy = conflictCopy(named: text) {
            guard conflictCopies else { throw .conflictCopyNotAllowed }
            return .conflictCopy(id: copy.id, name: text)
        }
        let utf8 = text.utf8
        if utf8.count == idLength + 5, text.hasSuffix(".json") {
            let stem = String(decoding: utf8.prefix(idLength), as: UTF8.self)
            if isID(stem) { return .id(stem) }
            throw .notHex
        }
        guard isLowercaseHex(text) else { throw .notHex }
        guard utf8.count <= idLength else { throw .tooLong(utf8.count) }
        if utf8.count == idLength { return .id(text) }
        guard utf8.count >= minimumPrefix else { throw .tooShort(utf8.count) }
        guard prefixes else { throw .prefixNotAllowed }
        return .prefix(text)
    }

    /// The parts of a conflict copy's name `<id>.<tag>.json`: a valid id, a dot, a tag of 1 to
    /// ``maximumTagLength`` ASCII letters, digits and single dots that starts with a digit (the spool's start with
    /// the writer's pid, the database's are a number) and does not end with a dot, and `.json`. nil for any other
    /// name, `<id>.json` and `<id>.json.json` included.
    public static func conflictCopy(named name: String) -> (id: String, tag: String)? {
        let bytes = Array(name.utf8)
        let suffix = Array(".json".utf8)
        guard bytes.count >= idLength + 1 + 1 + suffix.count, bytes.count <= idLength + 1 + maximumTagLength + suffix.count,
            bytes[idLength] == UInt8(ascii: "."), Array(bytes.suffix(suffix.count)) == suffix
        else { return nil }
        let id = String(decoding: bytes[0..<idLength], as: UTF8.self)
        guard isID(id) else { return nil }
        let tag = bytes[(idLength + 1)..<(bytes.count - suffix.count)]
        guard let first = tag.first, let last = tag.last, first >= UInt8(ascii: "0"), first <= UInt8(ascii: "9"),
            last != UInt8(ascii: ".")
        else {
            return nil
        }
        var previousDot = false
        for byte in tag {
            let dot = byte == UInt8(ascii: ".")
            let allowed = dot || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
            guard allowed, !(dot && previousDot) else { return nil }
            previousDot = dot
        }
        return (id, String(decoding: tag, as: UTF8.self))
    }

    /// The name of a conflict copy the database keeps: `<id>.<conflict_id>.json`.
    public static func conflictCopyName(id: String, tag: String) -> String {
        "\(id).\(tag).json"
    }

    private static func isLowercaseHex(_ text: String) -> Bool {
        text.utf8.allSatisfy { byte in
            (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f"))
        }
    }
}
