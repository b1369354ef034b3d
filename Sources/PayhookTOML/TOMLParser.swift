// A recursive-descent scanner over the Unicode scalars of a TOML 1.0 document.
// Every read is bounds-checked through `peek`, and nesting is limited by
// `TOML.maximumDepth`, so no input can make it trap or exhaust the stack.

struct TOMLParser {
    private let scalars: [Unicode.Scalar]
    private var index = 0
    private var line = 1
    /// Index of the first scalar of the current line, for column numbers.
    private var lineStart = 0
    private let root = TOMLTableBuilder(line: 1, origin: .root)

    init(_ text: String) {
        scalars = Array(text.unicodeScalars)
        // A byte-order mark is not content; skipping it keeps columns as editors show them.
        if scalars.first == "\u{FEFF}" {
            index = 1
            lineStart = 1
        }
    }

    // MARK: Document

    /// The table that key/value lines currently fill, and how deep it is nested.
    private struct Section {
        let table: TOMLTableBuilder
        let depth: Int
    }

    mutating func parseDocument() throws(TOMLError) -> TOMLTable {
        var section = Section(table: root, depth: 0)
        while true {
            skipWhitespace()
            guard let next = peek() else { break }
            switch next {
            case "#", "\n", "\r":
                try finishLine(after: "comment")
            case "[":
                section = try parseHeader()
                try finishLine(after: "table header")
            default:
                try parseKeyValue(into: section.table, depth: section.depth)
                try finishLine(after: "value")
            }
        }
        return root.frozen()
    }

    /// TOML 1.0 §Spec: after a key/value pair or header, only whitespace and a comment may
    /// follow before the newline.
    private mutating func finishLine(after construct: String) throws(TOMLError) {
        skipWhitespace()
        if peek() == "#" { try skipComment() }
        guard let next = peek() else { return }
        if next == "\n" || next == "\r" {
            try consumeNewline()
            return
        }
        throw failure("expected end of line after \(construct), found \(TOMLSyntax.describe(next))")
    }

    /// `[a.b]` or `[[a.b]]`.
    private mutating func parseHeader() throws(TOMLError) -> Section {
        let headerLine = line
        index += 1
        let isArray = peek() == "["
        if isArray { index += 1 }
        skipWhitespace()
        let key = try parseKey()
        skipWhitespace()
        guard peek() == "]" else {
            throw failure("expected '\(isArray ? "]]" : "]")' to close the table header, found \(describe(peek()))")
        }
        index += 1
        if isArray {
            // TOML 1.0 ABNF: `]]` is one token, with no whitespace inside.
            guard peek() == "]" else {
                throw failure("expected ']]' to close the array-of-tables header, found \(describe(peek()))")
            }
            index += 1
        }
        let table =
            isArray
            ? try TOMLTree.appendArrayTable(key, line: headerLine, root: root)
            : try TOMLTree.defineTable(key, line: headerLine, root: root)
        return Section(table: table, depth: key.count)
    }

    /// `key = value`, where the key may be dotted.
    private mutating func parseKeyValue(into table: TOMLTableBuilder, depth: Int) throws(TOMLError) {
        let key = try parseKey()
        skipWhitespace()
        guard peek() == "=" else {
            throw failure("expected '=' after key '\(TOMLTree.display(key[...]))', found \(describe(peek()))")
        }
        index += 1
        skipWhitespace()
        // The target is resolved first so that a duplicate key is reported at the key, even
        // when the value that follows is also malformed.
        let parent = try TOMLTree.parentForKeyValue(key, in: table)
        let node = try parseValue(depth: depth + key.count)
        guard let last = key.last else { return }
        parent.append(.init(key: last.name, keyLine: last.position.line, item: .value(node)))
    }

    // MARK: Keys

    /// TOML 1.0 §Keys: bare or quoted parts joined by dots, with optional whitespace around dots.
    private mutating func parseKey() throws(TOMLError) -> [TOMLKeyPart] {
        var parts: [TOMLKeyPart] = []
        while true {
            let start = position
            let name: String
            switch peek() {
            case "\""?:
                if peek(1) == "\"" && peek(2) == "\"" {
                    throw failure("a multi-line string cannot be used as a key")
                }
                name = try parseBasicString()
            case "'"?:
                if peek(1) == "'" && peek(2) == "'" {
                    throw failure("a multi-line string cannot be used as a key")
                }
                name = try parseLiteralString()
            case let scalar? where TOMLSyntax.isBareKeyCharacter(scalar):
                let from = index
                while let next = peek(), TOMLSyntax.isBareKeyCharacter(next) { index += 1 }
                name = String(String.UnicodeScalarView(scalars[from..<index]))
            default:
                throw failure("expected a key, found \(describe(peek()))")
            }
            parts.append(TOMLKeyPart(name: name, position: start))
            if parts.count > TOML.maximumDepth {
                throw failure("key has more than \(TOML.maximumDepth) dotted parts", at: start)
            }
            skipWhitespace()
            guard peek() == "." else { return parts }
            index += 1
            skipWhitespace()
        }
    }

    // MARK: Values

    private mutating func parseValue(depth: Int) throws(TOMLError) -> TOMLNode {
        let start = position
        guard depth <= TOML.maximumDepth else {
            throw failure("value is nested more than \(TOML.maximumDepth) levels deep")
        }
        let value: TOMLValue
        switch peek() {
        case "\""?:
            let isMultiline = peek(1) == "\"" && peek(2) == "\""
            value = .string(isMultiline ? try parseMultilineBasicString() : try parseBasicString())
        case "'"?:
            let isMultiline = peek(1) == "'" && peek(2) == "'"
            value = .string(isMultiline ? try parseMultilineLiteralString() : try parseLiteralString())
        case "["?:
            value = try parseArray(depth: depth)
        case "{"?:
            value = try parseInlineTable(depth: depth)
        default:
            value = try parseUnquotedValue()
        }
        return TOMLNode(value: value, line: start.line)
    }

    /// Numbers, booleans and date-times.
    private mutating func parseUnquotedValue() throws(TOMLError) -> TOMLValue {
        let start = position
        let from = index
        skipValueCharacters()
        // TOML 1.0 §Offset Date-Time: "you may replace the T delimiter between date and time with
        // a space character", so `1979-05-27 07:32:00` is one value.
        if index - from == 10, peek() == " ", TOMLSyntax.isDigit(peek(1)),
            TOMLLiteral.isFullDateShape(asciiBytes(from..<index))
        {
            index += 1
            skipValueCharacters()
        }
        guard index > from else {
            switch peek() {
            case nil, "\n"?, "\r"?, "#"?, ","?, "]"?, "}"?:
                throw failure("missing value")
            default:
                throw failure("expected a value, found \(describe(peek()))")
            }
        }
        do {
            return try TOMLLiteral.value(asciiBytes(from..<index))
        } catch {
            throw failure(error.message, at: start)
        }
    }

    private mutating func skipValueCharacters() {
        while let next = peek(), TOMLSyntax.isValueCharacter(next) { index += 1 }
    }

    /// The scanned range as bytes; callers only pass ranges of ASCII value characters.
    private func asciiBytes(_ range: Range<Int>) -> [UInt8] {
        scalars[range].map { UInt8(truncatingIfNeeded: $0.value) }
    }

    /// TOML 1.0 §Array: values separated by commas, a trailing comma allowed, newlines and
    /// comments allowed anywhere between elements.
    private mutating func parseArray(depth: Int) throws(TOMLError) -> TOMLValue {
        let open = position
        index += 1
        var elements: [TOMLNode] = []
        while true {
            try skipWhitespaceCommentsAndNewlines()
            guard let next = peek() else { throw failure("unterminated array", at: open) }
            if next == "]" {
                index += 1
                return .array(elements)
            }
            elements.append(try parseValue(depth: depth + 1))
            try skipWhitespaceCommentsAndNewlines()
            switch peek() {
            case nil:
                throw failure("unterminated array", at: open)
            case ","?:
                index += 1
            case "]"?:
                index += 1
                return .array(elements)
            case let other?:
                throw failure("expected ',' or ']' after array element, found \(TOMLSyntax.describe(other))")
            }
        }
    }

    /// TOML 1.0 §Inline Table: `{ k = v, … }` on one line, no trailing comma. Values inside may
    /// still span lines if their own syntax allows it (arrays, multi-line strings).
    private mutating func parseInlineTable(depth: Int) throws(TOMLError) -> TOMLValue {
        let open = position
        index += 1
        let table = TOMLTableBuilder(line: open.line, origin: .root)
        skipWhitespace()
        if peek() == "}" {
            index += 1
            return .table(table.frozen())
        }
        while true {
            skipWhitespace()
            if isAtEndOfLine { throw failure("unterminated inline table", at: open) }
            let key = try parseKey()
            skipWhitespace()
            guard peek() == "=" else {
                if isAtEndOfLine { throw failure("unterminated inline table", at: open) }
                throw failure("expected '=' after key '\(TOMLTree.display(key[...]))', found \(describe(peek()))")
            }
            index += 1
            skipWhitespace()
            let parent = try TOMLTree.parentForKeyValue(key, in: table)
            let node = try parseValue(depth: depth + key.count)
            if let last = key.last {
                parent.append(.init(key: last.name, keyLine: last.position.line, item: .value(node)))
            }
            skipWhitespace()
            switch peek() {
            case ","?:
                let comma = position
                index += 1
                skipWhitespace()
                if peek() == "}" {
                    throw failure("trailing comma is not allowed in an inline table", at: comma)
                }
            case "}"?:
                index += 1
                return .table(table.frozen())
            case nil, "\n"?, "\r"?:
                throw failure("unterminated inline table", at: open)
            case let other?:
                throw failure("expected ',' or '}' in inline table, found \(TOMLSyntax.describe(other))")
            }
        }
    }

    private var isAtEndOfLine: Bool {
        switch peek() {
        case nil, "\n"?, "\r"?: true
        default: false
        }
    }

    // MARK: Strings

    /// TOML 1.0 §String, basic string: `"…"` with escapes, on one line.
    private mutating func parseBasicString() throws(TOMLError) -> String {
        let open = position
        index += 1
        var text = String.UnicodeScalarView()
        while true {
            guard let next = peek() else { throw failure("unterminated string", at: open) }
            switch next {
            case "\"":
                index += 1
                return String(text)
            case "\\":
                try appendEscape(to: &text, open: open)
            case "\n":
                throw failure("unterminated string", at: open)
            case "\r" where peek(1) == "\n":
                throw failure("unterminated string", at: open)
            default:
                try rejectControl(next, in: "a string")
                text.append(next)
                index += 1
            }
        }
    }

    /// TOML 1.0 §String, multi-line basic string: `"""…"""`.
    private mutating func parseMultilineBasicString() throws(TOMLError) -> String {
        let open = position
        index += 3
        try trimNewlineAfterOpeningDelimiter()
        var text = String.UnicodeScalarView()
        while true {
            guard let next = peek() else { throw failure("unterminated multi-line string", at: open) }
            switch next {
            case "\"":
                if closeMultiline(quote: "\"", into: &text) { return String(text) }
            case "\\":
                if isLineEndingBackslash() {
                    // TOML 1.0 §String: a line-ending backslash trims all whitespace and newlines up to
                    // the next non-whitespace character or closing delimiter.
                    index += 1
                    while let scalar = peek() {
                        if scalar == " " || scalar == "\t" {
                            index += 1
                        } else if scalar == "\n" || scalar == "\r" {
                            try consumeNewline()
                        } else {
                            break
                        }
                    }
                } else {
                    try appendEscape(to: &text, open: open)
                }
            case "\n", "\r":
                try consumeNewline()
                text.append("\n")
            default:
                try rejectControl(next, in: "a string")
                text.append(next)
                index += 1
            }
        }
    }

    /// TOML 1.0 §String, literal string: `'…'`, no escapes, on one line.
    private mutating func parseLiteralString() throws(TOMLError) -> String {
        let open = position
        index += 1
        let from = index
        while true {
            guard let next = peek() else { throw failure("unterminated string", at: open) }
            switch next {
            case "'":
                let text = String(String.UnicodeScalarView(scalars[from..<index]))
                index += 1
                return text
            case "\n":
                throw failure("unterminated string", at: open)
            case "\r" where peek(1) == "\n":
                throw failure("unterminated string", at: open)
            default:
                try rejectControl(next, in: "a literal string")
                index += 1
            }
        }
    }

    /// TOML 1.0 §String, multi-line literal string: `'''…'''`, no escapes.
    private mutating func parseMultilineLiteralString() throws(TOMLError) -> String {
        let open = position
        index += 3
        try trimNewlineAfterOpeningDelimiter()
        var text = String.UnicodeScalarView()
        while true {
            guard let next = peek() else { throw failure("unterminated multi-line string", at: open) }
            switch next {
            case "'":
                if closeMultiline(quote: "'", into: &text) { return String(text) }
            case "\n", "\r":
                try consumeNewline()
                text.append("\n")
            default:
                try rejectControl(next, in: "a literal string")
                text.append(next)
                index += 1
            }
        }
    }

    /// TOML 1.0 §String: "A newline immediately following the opening delimiter will be trimmed."
    private mutating func trimNewlineAfterOpeningDelimiter() throws(TOMLError) {
        if peek() == "\n" || peek() == "\r" {
            try consumeNewline()
        }
    }

    /// At a run of quotes inside a multi-line string: one or two quotes are content; three
    /// close the string, and up to two more right before them are content too (TOML 1.0 §String:
    /// `""""a""""` style strings may end with one or two quotes).
    private mutating func closeMultiline(quote: Unicode.Scalar, into text: inout String.UnicodeScalarView) -> Bool {
        var run = 0
        while run < 5, peek(run) == quote { run += 1 }
        if run < 3 {
            for _ in 0..<run { text.append(quote) }
            index += run
            return false
        }
        for _ in 0..<(run - 3) { text.append(quote) }
        index += run
        return true
    }

    /// A backslash followed only by spaces or tabs up to the end of the line.
    private func isLineEndingBackslash() -> Bool {
        var offset = 1
        while peek(offset) == " " || peek(offset) == "\t" { offset += 1 }
        return peek(offset) == "\n" || (peek(offset) == "\r" && peek(offset + 1) == "\n")
    }

    /// TOML 1.0 §String: the escapes of TOML 1.0 are exactly \b \t \n \f \r \" \\ \uXXXX and
    /// \UXXXXXXXX, and the code point must be a Unicode scalar value (no surrogates).
    private mutating func appendEscape(
        to text: inout String.UnicodeScalarView, open: TOMLSourcePosition
    ) throws(TOMLError) {
        let backslash = position
        let from = index
        guard let kind = peek(1) else { throw failure("unterminated string", at: open) }
        let simple: Unicode.Scalar?
        switch kind {
        case "b": simple = "\u{08}"
        case "t": simple = "\t"
        case "n": simple = "\n"
        case "f": simple = "\u{0C}"
        case "r": simple = "\r"
        case "\"": simple = "\""
        case "\\": simple = "\\"
        case "u", "U": simple = nil
        default:
            if kind == "\n" || kind == "\r" || TOMLSyntax.isControl(kind) || kind == " " {
                throw failure("invalid escape sequence: '\\' followed by \(describe(kind))", at: backslash)
            }
            throw failure("invalid escape sequence '\\\(kind)'", at: backslash)
        }
        index += 2
        if let simple {
            text.append(simple)
            return
        }
        let digitCount = kind == "u" ? 4 : 8
        var code: UInt32 = 0
        for _ in 0..<digitCount {
            guard let scalar = peek(), let digit = TOMLSyntax.hexValue(scalar) else {
                throw failure("escape '\\\(kind)' needs exactly \(digitCount) hexadecimal digits", at: backslash)
            }
            code = code << 4 | digit
            index += 1
        }
        guard let scalar = Unicode.Scalar(code) else {
            let written = String(String.UnicodeScalarView(scalars[from..<index]))
            throw failure("escape '\(written)' is not a valid Unicode scalar value", at: backslash)
        }
        text.append(scalar)
    }

    private func rejectControl(_ scalar: Unicode.Scalar, in place: String) throws(TOMLError) {
        if scalar == "\r" {
            throw failure("carriage return is not followed by a line feed")
        }
        if TOMLSyntax.isControl(scalar) {
            throw failure("control character \(TOMLSyntax.codePoint(scalar)) is not allowed in \(place)")
        }
    }

    // MARK: Whitespace, comments, newlines

    private mutating func skipWhitespace() {
        while peek() == " " || peek() == "\t" { index += 1 }
    }

    private mutating func skipWhitespaceCommentsAndNewlines() throws(TOMLError) {
        while let next = peek() {
            switch next {
            case " ", "\t": index += 1
            case "#": try skipComment()
            case "\n", "\r": try consumeNewline()
            default: return
            }
        }
    }

    /// Skips a comment up to (not including) the end of the line.
    private mutating func skipComment() throws(TOMLError) {
        index += 1
        while let next = peek(), next != "\n", next != "\r" {
            if TOMLSyntax.isControl(next) {
                throw failure("control character \(TOMLSyntax.codePoint(next)) is not allowed in a comment")
            }
            index += 1
        }
    }

    /// Consumes LF or CRLF. TOML 1.0 §Spec: a newline is LF or CRLF; a lone CR is invalid.
    private mutating func consumeNewline() throws(TOMLError) {
        if peek() == "\r" {
            guard peek(1) == "\n" else { throw failure("carriage return is not followed by a line feed") }
            index += 1
        }
        index += 1
        line += 1
        lineStart = index
    }

    // MARK: Positions

    private func peek(_ offset: Int = 0) -> Unicode.Scalar? {
        let target = index + offset
        return target < scalars.count ? scalars[target] : nil
    }

    private var position: TOMLSourcePosition {
        TOMLSourcePosition(line: line, column: index - lineStart + 1)
    }

    private func describe(_ scalar: Unicode.Scalar?) -> String {
        TOMLSyntax.describe(scalar)
    }

    private func failure(_ message: String) -> TOMLError {
        failure(message, at: position)
    }

    private func failure(_ message: String, at place: TOMLSourcePosition) -> TOMLError {
        TOMLError(line: place.line, column: place.column, message: message)
    }
}
