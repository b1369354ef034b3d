/// One child of the root element: its name and its decoded text (character data and CDATA sections,
/// concatenated, references decoded, nothing trimmed or normalised).
public struct FlatXMLElement: Sendable, Equatable {
    public let name: String
    public let text: String

    public init(name: String, text: String) {
        self.name = name
        self.text = text
    }
}

/// Why a body was refused by `FlatXML.parse`. Every case means "not one flat root element of text
/// elements"; callers answer 400 without looking at any value.
public enum FlatXMLError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The bytes are not well-formed UTF-8 (overlong forms, surrogates, truncated sequences, > U+10FFFF).
    case notUTF8
    /// A C0 control character other than TAB, CR and LF, or U+FFFE / U+FFFF: not an XML 1.0 `Char`.
    case illegalCharacter
    /// `<!DOCTYPE` somewhere in the body (any letter case).
    case doctype
    /// `<!ENTITY` somewhere in the body (any letter case).
    case entityDeclaration
    /// A processing instruction (`<?…?>`) other than the XML declaration at the very start.
    case processingInstruction
    /// A comment (`<!-- … -->`).
    case comment
    /// Another `<!` construct (`<!ELEMENT`, `<!ATTLIST`, CDATA outside a child element, …).
    case unsupportedMarkup
    /// The leading `<?xml …?>` declaration is not `version="1.0"` with optional encoding/standalone.
    case badDeclaration
    /// The declaration names an encoding other than UTF-8.
    case unsupportedEncoding
    /// An element name that is not `[A-Za-z_][A-Za-z0-9_.:-]*`.
    case invalidName
    /// An element name longer than `FlatXML.maxNameLength` bytes.
    case nameTooLong
    /// More than `FlatXML.maxChildren` children.
    case tooManyElements
    /// The root element is not the one the caller asked for.
    case wrongRoot(expected: String, found: String)
    /// The root or a child carries attributes.
    case attributes(element: String)
    /// A child contains markup: an element, or a `<` that starts neither CDATA nor its end tag.
    case nested(element: String)
    /// The same child name twice: which one was signed would be ambiguous.
    case duplicate(element: String)
    /// `&name;` where `name` is not one of the five predefined entities.
    case unknownEntity
    /// A bare `&`, or a character reference that is malformed or names a character XML does not allow.
    case invalidReference
    /// Anything else that is not well-formed: truncation, mismatched end tags, text outside elements, …
    case malformed(String)

    /// Input ends before the document is complete.
    public static let truncated = FlatXMLError.malformed("input ends before the document is complete")
    /// Zero bytes, or only a byte order mark.
    public static let emptyInput = FlatXMLError.malformed("empty input")
    /// Something other than a start tag (or, after the declaration, whitespace) before the root element.
    public static let contentBeforeRoot = FlatXMLError.malformed("content before the root element")
    /// Non-whitespace character data (or CDATA) directly inside the root element.
    public static let textInRoot = FlatXMLError.malformed("text directly inside the root element")
    /// A second element after the root element ended.
    public static let secondRoot = FlatXMLError.malformed("more than one root element")
    /// Non-whitespace after the root element ended.
    public static let contentAfterRoot = FlatXMLError.malformed("content after the root element")
    /// An end tag whose name is not the open element's.
    public static let mismatchedEndTag = FlatXMLError.malformed("end tag does not match the open element")
    /// An end tag where no element is open.
    public static let strayEndTag = FlatXMLError.malformed("end tag without a start tag")
    /// A start or end tag that is not closed properly (`<a/x>`, `</a b>`).
    public static let malformedTag = FlatXMLError.malformed("malformed tag")
    /// `]]>` in character data (XML 1.0 §2.4).
    public static let cdataEndInText = FlatXMLError.malformed("']]>' in character data")

    /// One short sentence in printable ASCII; names from the input are cut short, so it is safe to log.
    public var description: String {
        switch self {
        case .notUTF8: return "body is not valid UTF-8"
        case .illegalCharacter: return "body contains a control character or another character XML 1.0 forbids"
        case .doctype: return "body contains a DOCTYPE declaration (refused, XXE defence)"
        case .entityDeclaration: return "body contains an ENTITY declaration (refused, XXE defence)"
        case .processingInstruction: return "body contains a processing instruction"
        case .comment: return "body contains a comment"
        case .unsupportedMarkup: return "body contains a '<!' construct other than CDATA inside a child element"
        case .badDeclaration: return "the XML declaration is malformed"
        case .unsupportedEncoding: return "the XML declaration names an encoding other than UTF-8"
        case .invalidName: return "an element name is invalid"
        case .nameTooLong: return "an element name is longer than \(FlatXML.maxNameLength) bytes"
        case .tooManyElements: return "the root element has more than \(FlatXML.maxChildren) children"
        case .wrongRoot(let expected, let found):
            return "root element is \(Self.show(found)) but \(Self.show(expected)) was expected"
        case .attributes(let element): return "element \(Self.show(element)) has attributes"
        case .nested(let element): return "element \(Self.show(element)) contains markup instead of text"
        case .duplicate(let element): return "element \(Self.show(element)) appears more than once"
        case .unknownEntity: return "body references an entity other than the five predefined ones"
        case .invalidReference: return "an '&' does not start a valid entity or character reference"
        case .malformed(let reason): return "malformed XML: " + Self.printable(reason, limit: 64)
        }
    }

    // Names come from the request (or from a caller): quoted, printable ASCII, short, so a hostile body
    // can neither forge log lines nor flood them.
    private static func show(_ name: String) -> String {
        "'" + printable(name, limit: 24) + "'"
    }

    private static func printable(_ text: String, limit: Int) -> String {
        var out = ""
        var count = 0
        for scalar in text.unicodeScalars {
            if count == limit { return out + "..." }
            let keep = scalar.value >= 0x20 && scalar.value < 0x7F
            out.unicodeScalars.append(keep ? scalar : "?")
            count += 1
        }
        return out
    }
}

/// A strict reader for WeChat Pay v2 notification bodies and the decrypted refund `req_info`.
///
/// It accepts exactly one shape — an optional `<?xml version="1.0" encoding="UTF-8"?>`, then one root
/// element without attributes whose content is child elements (separated only by whitespace) that hold
/// text or CDATA — and refuses everything else as a whole, before any value can be used (docs/contract.md §3,
/// docs/protocols.md §3.2). There is no DTD support at all, so no entity can be declared, expanded or fetched.
///
/// Pure Swift over bytes, one forward pass per phase, no recursion: work is linear in the input size and
/// no input can make it trap.
public enum FlatXML {
    /// Longest accepted element name, in bytes. Real names are at most about 25 bytes.
    public static let maxNameLength = 64
    /// Most children accepted under the root. WeChat sends about 30.
    public static let maxChildren = 256

    /// Parses `<root><a>text</a><b><![CDATA[text]]></b>…</root>` and returns the children in document order.
    ///
    /// - Parameters:
    ///   - bytes: the body exactly as received (UTF-8; a leading byte order mark is skipped).
    ///   - root: the required root element name: `"xml"` for notifications, `"root"` for decrypted `req_info`.
    /// - Returns: every child as (name, text), names unique, text exact (no trimming, no newline normalisation).
    /// - Throws: `FlatXMLError` for anything but that shape; never a partial result.
    public static func parse(_ bytes: [UInt8], root: String) throws(FlatXMLError) -> [FlatXMLElement] {
        // First line of defence (docs/protocols.md §3.2, CVE-2018-13439): WeChat never sends a DTD, so any
        // DOCTYPE or ENTITY declaration, wherever it is and however it is cased, refuses the whole body
        // before a single tag is read. This also rules out entity-expansion bombs.
        try screenDeclarations(bytes)
        // Second: the whole body must be UTF-8 made of XML 1.0 characters (XML 1.0 §2.2), so later phases
        // work on bytes and only ever cut strings at ASCII delimiters.
        try validateCharacters(bytes)
        var reader = FlatXMLReader(bytes: bytes)
        return try reader.document(root: Array(root.utf8))
    }

    // MARK: - Phase 1: DOCTYPE / ENTITY screen

    private static func screenDeclarations(_ b: [UInt8]) throws(FlatXMLError) {
        let doctype = Array("doctype".utf8)
        let entity = Array("entity".utf8)
        var i = 0
        while i + 1 < b.count {
            if b[i] == XMLByte.lt && b[i + 1] == XMLByte.bang {
                if lowercaseMatch(b, doctype, at: i + 2) { throw .doctype }
                if lowercaseMatch(b, entity, at: i + 2) { throw .entityDeclaration }
            }
            i += 1
        }
    }

    /// True when `b[at...]` starts with `word` (lowercase ASCII letters), ignoring ASCII case.
    private static func lowercaseMatch(_ b: [UInt8], _ word: [UInt8], at: Int) -> Bool {
        guard at >= 0, b.count - at >= word.count else { return false }
        for k in 0..<word.count where b[at + k] | 0x20 != word[k] {
            return false
        }
        return true
    }

    // MARK: - Phase 2: UTF-8 and XML characters

    // Well-formed UTF-8 per Unicode Table 3-7 (no overlong forms, no surrogates, nothing above U+10FFFF);
    // every scalar must be an XML 1.0 `Char`: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF].
    private static func validateCharacters(_ b: [UInt8]) throws(FlatXMLError) {
        var i = 0
        let n = b.count
        while i < n {
            let c0 = b[i]
            if c0 < 0x80 {
                if c0 < 0x20 && c0 != 0x09 && c0 != 0x0A && c0 != 0x0D { throw .illegalCharacter }
                i += 1
                continue
            }
            let length: Int
            var low: UInt8 = 0x80
            var high: UInt8 = 0xBF
            switch c0 {
            case 0xC2...0xDF: length = 2
            case 0xE0: length = 3; low = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: length = 3
            case 0xED: length = 3; high = 0x9F  // excludes the surrogates D800-DFFF
            case 0xF0: length = 4; low = 0x90
            case 0xF1...0xF3: length = 4
            case 0xF4: length = 4; high = 0x8F  // nothing above U+10FFFF
            default: throw .notUTF8  // continuation byte, C0/C1 overlong lead, F5-FF
            }
            guard n - i >= length else { throw .notUTF8 }
            let c1 = b[i + 1]
            guard c1 >= low && c1 <= high else { throw .notUTF8 }
            for k in 2..<max(2, length) {
                guard b[i + k] & 0xC0 == 0x80 else { throw .notUTF8 }
            }
            // U+FFFE and U+FFFF (EF BF BE / EF BF BF) are not XML characters.
            if c0 == 0xEF && c1 == 0xBF && b[i + 2] >= 0xBE { throw .illegalCharacter }
            i += length
        }
    }
}

// MARK: - Phase 3: structure

private enum XMLByte {
    static let tab: UInt8 = 0x09
    static let lf: UInt8 = 0x0A
    static let cr: UInt8 = 0x0D
    static let space: UInt8 = 0x20
    static let bang: UInt8 = 0x21  // !
    static let quote: UInt8 = 0x22  // "
    static let hash: UInt8 = 0x23  // #
    static let amp: UInt8 = 0x26  // &
    static let apostrophe: UInt8 = 0x27  // '
    static let slash: UInt8 = 0x2F  // /
    static let semicolon: UInt8 = 0x3B  // ;
    static let lt: UInt8 = 0x3C  // <
    static let equals: UInt8 = 0x3D  // =
    static let gt: UInt8 = 0x3E  // >
    static let question: UInt8 = 0x3F  // ?
    static let rbracket: UInt8 = 0x5D  // ]
    static let x: UInt8 = 0x78  // x

    static func lowercased(_ c: UInt8) -> UInt8 {
        c >= 0x41 && c <= 0x5A ? c + 0x20 : c
    }

    static func isWhitespace(_ c: UInt8) -> Bool {
        c == space || c == tab || c == lf || c == cr
    }

    static func isLetter(_ c: UInt8) -> Bool {
        (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
    }

    static func isDigit(_ c: UInt8) -> Bool {
        c >= 0x30 && c <= 0x39
    }

    // XML 1.0 §2.3 Name, restricted to ASCII (every WeChat field name is ASCII); a name starts with a
    // letter or `_`.
    static func isNameStart(_ c: UInt8) -> Bool {
        isLetter(c) || c == 0x5F
    }

    static func isNameChar(_ c: UInt8) -> Bool {
        isNameStart(c) || isDigit(c) || c == 0x2D || c == 0x2E || c == 0x3A  // - . :
    }
}

private enum XMLLiteral {
    static let bom: [UInt8] = [0xEF, 0xBB, 0xBF]
    static let declarationStart = Array("<?xml".utf8)
    static let declarationEnd = Array("?>".utf8)
    static let cdataStart = Array("<![CDATA[".utf8)
    static let cdataEnd = Array("]]>".utf8)
    static let commentStart = Array("<!--".utf8)
    static let version = Array("version".utf8)
    static let encoding = Array("encoding".utf8)
    static let standalone = Array("standalone".utf8)
    static let version10 = Array("1.0".utf8)
    static let utf8 = Array("utf-8".utf8)
    static let yes = Array("yes".utf8)
    static let no = Array("no".utf8)
}

/// Forward-only cursor over the validated body. Every read is bounds-checked through `peek`, every
/// loop advances `i`, and nothing is re-scanned, so work is linear and no input traps.
private struct FlatXMLReader {
    let b: [UInt8]
    var i = 0

    init(bytes: [UInt8]) {
        b = bytes
    }

    func peek(_ offset: Int = 0) -> UInt8? {
        let at = i + offset
        return at < b.count ? b[at] : nil
    }

    func matches(_ literal: [UInt8]) -> Bool {
        guard b.count - i >= literal.count else { return false }
        for k in 0..<literal.count where b[i + k] != literal[k] {
            return false
        }
        return true
    }

    /// True when the input ends inside what could still have become `literal`: the error is truncation.
    func endsInside(_ literal: [UInt8]) -> Bool {
        let left = b.count - i
        guard left < literal.count else { return false }
        for k in 0..<left where b[i + k] != literal[k] {
            return false
        }
        return true
    }

    /// Skips XML whitespace (space, tab, CR, LF); returns whether there was any.
    @discardableResult
    mutating func skipWhitespace() -> Bool {
        let start = i
        while let c = peek(), XMLByte.isWhitespace(c) { i += 1 }
        return i > start
    }

    // MARK: Document

    mutating func document(root: [UInt8]) throws(FlatXMLError) -> [FlatXMLElement] {
        if matches(XMLLiteral.bom) { i += XMLLiteral.bom.count }
        guard i < b.count else { throw .emptyInput }

        // XML 1.0 §2.8: `prolog ::= XMLDecl? Misc*`, and Misc includes whitespace. The declaration may only
        // stand at the very start (after whitespace `<?xml` is a reserved processing-instruction target and is
        // refused as one), while whitespace before the root element is well-formed with or without it.
        if isDeclarationStart() {
            try declaration()
        }
        skipWhitespace()
        guard let c = peek() else { throw .truncated }
        guard c == XMLByte.lt else { throw .contentBeforeRoot }
        try markupOutsideChildren(misplacedText: .contentBeforeRoot)
        guard let next = peek(1) else { throw .truncated }
        if next == XMLByte.slash { throw .strayEndTag }
        i += 1

        let (name, selfClosing) = try startTag()
        guard b[name].elementsEqual(root) else {
            throw .wrongRoot(expected: String(decoding: root, as: UTF8.self), found: string(name))
        }
        guard !selfClosing else {
            try trailer()
            return []
        }
        let children = try rootContent(root: root)
        try trailer()
        return children
    }

    /// At a `<` outside any child: refuses comments, other `<!` constructs and processing instructions.
    /// A CDATA section here is character data in the wrong place, reported as `misplacedText`.
    func markupOutsideChildren(misplacedText: FlatXMLError) throws(FlatXMLError) {
        switch peek(1) {
        case XMLByte.bang:
            if matches(XMLLiteral.commentStart) { throw .comment }
            if endsInside(XMLLiteral.commentStart) || endsInside(XMLLiteral.cdataStart) { throw .truncated }
            if matches(XMLLiteral.cdataStart) { throw misplacedText }
            throw .unsupportedMarkup
        case XMLByte.question:
            throw .processingInstruction
        default:
            return
        }
    }

    /// Only whitespace may follow the root element.
    mutating func trailer() throws(FlatXMLError) {
        skipWhitespace()
        guard let c = peek() else { return }
        guard c == XMLByte.lt else { throw .contentAfterRoot }
        try markupOutsideChildren(misplacedText: .contentAfterRoot)
        throw .secondRoot
    }

    // MARK: XML declaration

    /// `<?xml` followed by whitespace, `?` or the end: the declaration (possibly broken), not a PI such as
    /// `<?xml-stylesheet`.
    func isDeclarationStart() -> Bool {
        guard matches(XMLLiteral.declarationStart) else { return false }
        guard let next = peek(XMLLiteral.declarationStart.count) else { return true }
        return XMLByte.isWhitespace(next) || next == XMLByte.question
    }

    /// `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>`: version required and `1.0`,
    /// encoding optional and UTF-8 (any case), standalone optional; in that order (XML 1.0 §2.8, §4.3.3).
    mutating func declaration() throws(FlatXMLError) {
        i += XMLLiteral.declarationStart.count
        var spaced = skipWhitespace()
        guard spaced, let version = try pseudoAttribute(XMLLiteral.version) else { throw .badDeclaration }
        guard b[version].elementsEqual(XMLLiteral.version10) else { throw .badDeclaration }
        spaced = skipWhitespace()
        if spaced, let encoding = try pseudoAttribute(XMLLiteral.encoding) {
            // Encoding names are case-insensitive (XML 1.0 §4.3.3); only UTF-8 is accepted (§1.1).
            guard b[encoding].map(XMLByte.lowercased).elementsEqual(XMLLiteral.utf8) else { throw .unsupportedEncoding }
            spaced = skipWhitespace()
        }
        if spaced, let standalone = try pseudoAttribute(XMLLiteral.standalone) {
            guard b[standalone].elementsEqual(XMLLiteral.yes) || b[standalone].elementsEqual(XMLLiteral.no) else {
                throw .badDeclaration
            }
            skipWhitespace()
        }
        guard matches(XMLLiteral.declarationEnd) else { throw .badDeclaration }
        i += XMLLiteral.declarationEnd.count
    }

    /// `name S? = S? ("value" | 'value')`; nil when the next bytes are not `name`. Returns the value's range.
    mutating func pseudoAttribute(_ name: [UInt8]) throws(FlatXMLError) -> Range<Int>? {
        guard matches(name) else { return nil }
        i += name.count
        skipWhitespace()
        guard peek() == XMLByte.equals else { throw .badDeclaration }
        i += 1
        skipWhitespace()
        guard let quote = peek(), quote == XMLByte.quote || quote == XMLByte.apostrophe else { throw .badDeclaration }
        i += 1
        let start = i
        while let c = peek(), c != quote {
            guard c != XMLByte.lt else { throw .badDeclaration }
            i += 1
        }
        guard peek() == quote else { throw .badDeclaration }
        let value = start..<i
        i += 1
        return value
    }

    // MARK: Tags

    /// Reads a name at `i`; returns its byte range.
    mutating func name() throws(FlatXMLError) -> Range<Int> {
        guard let first = peek() else { throw .truncated }
        guard XMLByte.isNameStart(first) else { throw .invalidName }
        let start = i
        i += 1
        while let c = peek(), XMLByte.isNameChar(c) {
            i += 1
            // Checked while reading, so a megabyte-long "name" is refused after 65 bytes.
            if i - start > FlatXML.maxNameLength { throw .nameTooLong }
        }
        return start..<i
    }

    /// After `<`: `name>`, `name/>`, `name />`. Whitespace followed by anything else is an attribute.
    mutating func startTag() throws(FlatXMLError) -> (name: Range<Int>, selfClosing: Bool) {
        let name = try name()
        let spaced = skipWhitespace()
        guard let c = peek() else { throw .truncated }
        switch c {
        case XMLByte.gt:
            i += 1
            return (name, false)
        case XMLByte.slash:
            guard let next = peek(1) else { throw .truncated }
            guard next == XMLByte.gt else { throw .malformedTag }
            i += 2
            return (name, true)
        default:
            // No attributes anywhere: WeChat sends none, and `<xml attr="…">` would be a place to smuggle data.
            if spaced { throw .attributes(element: string(name)) }
            throw .invalidName
        }
    }

    /// After `</`: `name S? >` (XML 1.0 §3.1 ETag), which must close `open`.
    mutating func endTag(closing open: ArraySlice<UInt8>) throws(FlatXMLError) {
        let name = try name()
        skipWhitespace()
        guard let c = peek() else { throw .truncated }
        guard c == XMLByte.gt else { throw .malformedTag }
        i += 1
        guard b[name].elementsEqual(open) else { throw .mismatchedEndTag }
    }

    // MARK: Root and children

    /// Children separated by whitespace, up to the root's end tag.
    mutating func rootContent(root: [UInt8]) throws(FlatXMLError) -> [FlatXMLElement] {
        var children: [FlatXMLElement] = []
        var seen = Set<String>()
        while true {
            // Whitespace between children is not data (WxJava #1671 bodies have newlines there).
            skipWhitespace()
            guard let c = peek() else { throw .truncated }
            guard c == XMLByte.lt else { throw .textInRoot }
            try markupOutsideChildren(misplacedText: .textInRoot)
            guard let next = peek(1) else { throw .truncated }
            if next == XMLByte.slash {
                i += 2
                try endTag(closing: root[...])
                return children
            }
            i += 1
            let (name, selfClosing) = try startTag()
            let nameString = string(name)
            guard children.count < FlatXML.maxChildren else { throw .tooManyElements }
            // A duplicated name makes "the" value ambiguous between the signer and us (docs/protocols.md §3.2).
            guard seen.insert(nameString).inserted else { throw .duplicate(element: nameString) }
            let text = selfClosing ? "" : try childText(of: name)
            children.append(FlatXMLElement(name: nameString, text: text))
        }
    }

    /// Character data and CDATA sections up to `</name>`, concatenated and decoded.
    mutating func childText(of name: Range<Int>) throws(FlatXMLError) -> String {
        var text: [UInt8] = []
        while let c = peek() {
            switch c {
            case XMLByte.lt:
                guard let next = peek(1) else { throw .truncated }
                switch next {
                case XMLByte.slash:
                    i += 2
                    try endTag(closing: b[name])
                    // The whole body was validated as UTF-8 and every cut is at an ASCII delimiter or a
                    // complete encoded scalar, so this decoding never repairs anything.
                    return String(decoding: text, as: UTF8.self)
                case XMLByte.bang:
                    if matches(XMLLiteral.cdataStart) {
                        try cdata(into: &text)
                    } else if matches(XMLLiteral.commentStart) {
                        // WeChat never sends comments; refusing them keeps "text" meaning one thing.
                        throw .comment
                    } else if endsInside(XMLLiteral.cdataStart) || endsInside(XMLLiteral.commentStart) {
                        throw .truncated
                    } else {
                        throw .unsupportedMarkup
                    }
                case XMLByte.question:
                    throw .processingInstruction
                default:
                    // A child element, or a raw `<` (XML 1.0 §2.4 forbids it in character data).
                    throw .nested(element: string(name))
                }
            case XMLByte.amp:
                try reference(into: &text)
            case XMLByte.rbracket:
                if matches(XMLLiteral.cdataEnd) { throw .cdataEndInText }
                text.append(c)
                i += 1
            default:
                text.append(c)
                i += 1
            }
        }
        throw .truncated
    }

    /// `<![CDATA[…]]>`: the bytes in between, verbatim (XML 1.0 §2.7).
    mutating func cdata(into text: inout [UInt8]) throws(FlatXMLError) {
        i += XMLLiteral.cdataStart.count
        while i < b.count {
            if b[i] == XMLByte.rbracket && matches(XMLLiteral.cdataEnd) {
                i += XMLLiteral.cdataEnd.count
                return
            }
            text.append(b[i])
            i += 1
        }
        throw .truncated
    }

    // MARK: References

    /// At `&`: one of the five predefined entities (XML 1.0 §4.6) or a character reference (§4.1).
    /// No other entity can exist because no DTD is accepted, so any other name is refused rather than
    /// silently turned into "" (docs/protocols.md §3.2: an unresolved entity would drop a field out of the
    /// string-to-sign).
    mutating func reference(into text: inout [UInt8]) throws(FlatXMLError) {
        i += 1
        guard let c = peek() else { throw .truncated }
        if c == XMLByte.hash {
            i += 1
            try characterReference(into: &text)
            return
        }
        guard XMLByte.isNameStart(c) else { throw .invalidReference }
        let start = i
        while let n = peek(), XMLByte.isNameChar(n), i - start < FlatXML.maxNameLength { i += 1 }
        guard let end = peek() else { throw .truncated }
        guard end == XMLByte.semicolon else { throw .invalidReference }
        let replacement: UInt8
        switch String(decoding: b[start..<i], as: UTF8.self) {
        case "lt": replacement = XMLByte.lt
        case "gt": replacement = XMLByte.gt
        case "amp": replacement = XMLByte.amp
        case "quot": replacement = XMLByte.quote
        case "apos": replacement = XMLByte.apostrophe
        default: throw .unknownEntity
        }
        i += 1
        text.append(replacement)
    }

    /// After `&#`: `[0-9]+;` or `x[0-9a-fA-F]+;`, naming an XML `Char` (so not 0, not a surrogate, not a
    /// C0 control other than TAB/CR/LF, not U+FFFE/U+FFFF, not above U+10FFFF).
    mutating func characterReference(into text: inout [UInt8]) throws(FlatXMLError) {
        var radix: UInt32 = 10
        if peek() == XMLByte.x {
            radix = 16
            i += 1
        }
        // Saturates just above U+10FFFF, so no number of digits can overflow.
        var value: UInt32 = 0
        var digits = 0
        while let c = peek(), let digit = Self.digitValue(c, radix: radix) {
            value = min(value * radix + digit, 0x11_0000)
            digits += 1
            i += 1
        }
        guard let end = peek() else { throw .truncated }
        guard digits > 0, end == XMLByte.semicolon else { throw .invalidReference }
        i += 1
        let isXMLChar =
            value == 0x9 || value == 0xA || value == 0xD
            || (0x20...0xD7FF).contains(value) || (0xE000...0xFFFD).contains(value)
            || (0x1_0000...0x10_FFFF).contains(value)
        guard isXMLChar, let scalar = Unicode.Scalar(value) else { throw .invalidReference }
        text.append(contentsOf: String(Character(scalar)).utf8)
    }

    static func digitValue(_ c: UInt8, radix: UInt32) -> UInt32? {
        switch c {
        case 0x30...0x39: return UInt32(c - 0x30)
        case 0x41...0x46 where radix == 16: return UInt32(c - 0x41 + 10)
        case 0x61...0x66 where radix == 16: return UInt32(c - 0x61 + 10)
        default: return nil
        }
    }

    // MARK: Helpers

    /// Names are ASCII by construction (`XMLByte.isNameChar`).
    func string(_ range: Range<Int>) -> String {
        String(decoding: b[range], as: UTF8.self)
    }
}
