/// A problem found while parsing a TOML document, with the position where it was detected.
///
/// Positions are 1-based. Columns count Unicode scalars from the start of the line, so a
/// tab or a multi-byte character each count as one column.
public struct TOMLError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The 1-based line of the problem.
    public let line: Int
    /// The 1-based column of the problem, counted in Unicode scalars.
    public let column: Int
    /// One sentence describing the problem, such as `duplicate key 'path'`.
    public let message: String

    /// Creates an error at the given 1-based position.
    public init(line: Int, column: Int, message: String) {
        self.line = line
        self.column = column
        self.message = message
    }

    /// The position and message, for example `line 3, column 7: duplicate key 'path'`.
    public var description: String {
        "line \(line), column \(column): \(message)"
    }
}

/// A parsed TOML value.
public indirect enum TOMLValue: Sendable, Equatable {
    /// A basic, literal or multi-line string, with escapes resolved.
    case string(String)
    /// A decimal, hexadecimal, octal or binary integer.
    case integer(Int64)
    /// A floating-point number, including `inf` and `nan`.
    case float(Double)
    /// `true` or `false`.
    case boolean(Bool)
    /// An offset date-time, local date-time, local date or local time.
    ///
    /// The text is validated (field ranges, days per month, leap years) and kept exactly as
    /// written in the source, e.g. `1979-05-27T07:32:00-08:00` or `07:32:00`.
    case datetime(String)
    /// An array, or an array of tables created by `[[header]]` sections.
    case array([TOMLNode])
    /// A table created by a `[header]`, by dotted keys, or written inline.
    case table(TOMLTable)
}

/// A value together with the source line where it starts.
public struct TOMLNode: Sendable, Equatable {
    /// The value.
    public let value: TOMLValue
    /// The 1-based line where the value starts. For a table created by a `[header]` or
    /// `[[header]]` this is the header's line, and an array of tables starts at its first
    /// `[[header]]`; for a table implied by a dotted key or a dotted header, it is the line
    /// where the table was first implied.
    public let line: Int

    /// Creates a node.
    public init(value: TOMLValue, line: Int) {
        self.value = value
        self.line = line
    }
}

/// One key of a table, with the line of the key and its value.
public struct TOMLEntry: Sendable, Equatable {
    /// The key, unquoted and unescaped. A dotted key `a.b = 1` produces an entry `a` whose
    /// value is a table holding an entry `b`.
    public let key: String
    /// The 1-based line of the key. For a table created by a `[header]` or `[[header]]`
    /// this is the header's line.
    public let keyLine: Int
    /// The value and the line where it starts.
    public let node: TOMLNode

    /// Creates an entry.
    public init(key: String, keyLine: Int, node: TOMLNode) {
        self.key = key
        self.keyLine = keyLine
        self.node = node
    }
}

/// A TOML table: keys in source order, each with its source line.
public struct TOMLTable: Sendable, Equatable {
    /// The 1-based line of the table's header: 1 for the root table, the line of the
    /// opening `{` for an inline table, and the line where it was first implied for a
    /// table created implicitly by a dotted key or a dotted header. A table that was
    /// implied first (`[a.b]`) and defined later by its own header (`[a]`) takes the line
    /// of that header.
    public let line: Int
    /// The keys of the table in the order they first appear in the source.
    public var entries: [TOMLEntry]

    /// Creates a table.
    public init(line: Int, entries: [TOMLEntry] = []) {
        self.line = line
        self.entries = entries
    }

    /// The value stored under `key`, or `nil` if the table has no such key.
    ///
    /// Lookup is linear in the number of keys, which suits configuration-sized tables.
    public subscript(key: String) -> TOMLNode? {
        entry(key)?.node
    }

    /// The entry stored under `key` (which also carries the key's line), or `nil`.
    public func entry(_ key: String) -> TOMLEntry? {
        entries.first { $0.key == key }
    }

    /// The keys of the table in source order.
    public var keys: [String] {
        entries.map(\.key)
    }
}

/// Entry point of the TOML 1.0 parser.
public enum TOML {
    /// The deepest nesting of tables and arrays that `parse` accepts. Every dotted key
    /// part, header part, array and inline table counts as one level.
    public static let maximumDepth = 128

    /// Parses a complete TOML 1.0 document.
    ///
    /// Both LF and CRLF line endings are accepted; a leading byte-order mark is ignored.
    /// Newlines inside multi-line strings are returned as LF.
    ///
    /// - Returns: The root table, whose `line` is 1.
    /// - Throws: `TOMLError` with the line and column of the first problem found.
    public static func parse(_ text: String) throws(TOMLError) -> TOMLTable {
        var parser = TOMLParser(text)
        return try parser.parseDocument()
    }
}
