/// One decoded `name=value` pair of a query string.
public struct FormParameter: Sendable, Equatable {
    public let name: String
    public let value: String
    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// One `name=value` pair of a form, percent-decoded to bytes but not yet read as text (``FormQuery/decodeBytes(_:)``).
public struct RawFormParameter: Sendable, Equatable {
    public let name: [UInt8]
    public let value: [UInt8]
    public init(name: [UInt8], value: [UInt8]) {
        self.name = name
        self.value = value
    }
}

/// Why a query string was refused. Every case is a 400 ("malformed") on the wire.
public enum FormQueryError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `%` not followed by two hex digits.
    case badEscape(parameter: String)
    /// The decoded bytes are not UTF-8.
    case notUTF8(parameter: String)
    /// A byte that may not appear unencoded in a query (control characters, space, non-ASCII).
    case badCharacter(parameter: String)
    /// `=value` with no name.
    case emptyName
    /// The same name twice: which one was signed is ambiguous, so neither is trusted.
    case repeatedName(String)

    public var description: String {
        switch self {
        case .badEscape(let p): return "malformed percent-escape in parameter \(Self.show(p))"
        case .notUTF8(let p): return "parameter \(Self.show(p)) does not decode to UTF-8"
        case .badCharacter(let p): return "parameter \(Self.show(p)) contains a character that must be percent-encoded"
        case .emptyName: return "a parameter has an empty name"
        case .repeatedName(let n): return "parameter \(Self.show(n)) appears more than once"
        }
    }

    // Names come from the request: keep them short and printable in messages and logs.
    private static func show(_ raw: String) -> String {
        "'" + LogText.printable(raw) + "'"
    }
}

/// Decodes `application/x-www-form-urlencoded` query strings strictly.
///
/// Rules (WHATWG URL "application/x-www-form-urlencoded parsing", tightened for signed callbacks; see
/// docs/protocols.md §2.2): pairs are split on `&`, the first `=` separates name and value, `+` is a space,
/// `%XX` is a byte and the decoded bytes must be UTF-8. Unlike a browser, a broken escape, invalid UTF-8,
/// a raw control or non-ASCII character, or a repeated name is an error rather than something to guess
/// around: the platform's Java `URLEncoder` never produces them, and guessing would mean verifying a
/// signature over something other than what was sent. Empty pairs (`a=1&&b=2`, a trailing `&`) carry no
/// data and are skipped.
public enum FormQuery {
    public static func decode(_ query: String) throws(FormQueryError) -> [FormParameter] {
        try pairs(Array(query.utf8), decode: decodeComponent, text: { $0 }).map { FormParameter(name: $0.name, value: $0.value) }
    }

    /// Splits `bytes` into decoded pairs, refusing empty and repeated names: the one loop behind ``decode(_:)``
    /// and ``decodeBytes(_:)``, which differ only in what a decoded component is.
    private static func pairs<Component: Hashable & Collection>(
        _ bytes: [UInt8], decode: (_ raw: ArraySlice<UInt8>, _ label: ArraySlice<UInt8>) throws(FormQueryError) -> Component,
        text: (Component) -> String
    ) throws(FormQueryError) -> [(name: Component, value: Component)] {
        var result: [(name: Component, value: Component)] = []
        // Sized once from the separators (an upper bound: empty pairs are skipped), not grown pair by pair.
        result.reserveCapacity(min(bytes.reduce(1) { $1 == UInt8(ascii: "&") ? $0 + 1 : $0 }, 256))
        // Repeated names are found by comparing with the names so far: a callback has a dozen or so, and
        // comparing short strings is cheaper than hashing them. Past `linearLimit` names a set takes over, so
        // that a query of thousands of names costs linear time, not quadratic.
        var seen: Set<Component>?
        var start = 0
        while start < bytes.count {
            let end = bytes[start...].firstIndex(of: UInt8(ascii: "&")) ?? bytes.count
            defer { start = end + 1 }
            guard end > start else { continue }
            let piece = bytes[start..<end]
            let rawName: ArraySlice<UInt8>
            let rawValue: ArraySlice<UInt8>
            if let eq = piece.firstIndex(of: UInt8(ascii: "=")) {
                rawName = piece[piece.startIndex..<eq]
                rawValue = piece[(eq + 1)...]
            } else {
                rawName = piece
                rawValue = []
            }
            let name = try decode(rawName, rawName)
            guard !name.isEmpty else { throw .emptyName }
            let value = try decode(rawValue, rawName)
            if seen == nil, result.count == linearLimit {
                seen = Set(result.map(\.name))
            }
            if seen != nil {
                guard seen!.insert(name).inserted else { throw .repeatedName(text(name)) }
            } else if result.contains(where: { $0.name == name }) {
                throw .repeatedName(text(name))
            }
            result.append((name: name, value: value))
        }
        return result
    }

    /// How many names are checked for repeats by comparison before a set is used.
    static let linearLimit = 32

    /// Like ``decode(_:)`` but leaves the decoded names and values as bytes, for senders whose text is in a
    /// charset the request itself names (Alipay's `charset` parameter, which may say GBK): the caller picks the
    /// charset from a parameter, verifies the signature over these bytes, and only then turns them into text
    /// with ``TextCharset``. The same strict rules: bad escapes, raw bytes outside printable ASCII, empty names
    /// and repeated names are errors; only UTF-8 is not checked.
    public static func decodeBytes(_ query: some Collection<UInt8>) throws(FormQueryError) -> [RawFormParameter] {
        try pairs(Array(query), decode: decodeComponentBytes, text: { String(decoding: $0, as: UTF8.self) })
            .map { RawFormParameter(name: $0.name, value: $0.value) }
    }

    static func decodeComponentBytes(_ raw: ArraySlice<UInt8>, label rawLabel: ArraySlice<UInt8>) throws(FormQueryError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        var index = raw.startIndex
        while index < raw.endIndex {
            let c = raw[index]
            switch c {
            case UInt8(ascii: "+"):
                out.append(UInt8(ascii: " "))
                index += 1
            case UInt8(ascii: "%"):
                guard raw.distance(from: index, to: raw.endIndex) >= 3,
                    let high = Hex.value(raw[index + 1]), let low = Hex.value(raw[index + 2])
                else { throw .badEscape(parameter: String(decoding: rawLabel, as: UTF8.self)) }
                out.append(high << 4 | low)
                index += 3
            case 0x21...0x7e:
                out.append(c)
                index += 1
            default:
                throw .badCharacter(parameter: String(decoding: rawLabel, as: UTF8.self))
            }
        }
        return out
    }

    /// `label` is the parameter's raw name, for the error message only.
    static func decodeComponent(_ raw: ArraySlice<UInt8>, label rawLabel: ArraySlice<UInt8>) throws(FormQueryError) -> String {
        var label: String { String(decoding: rawLabel, as: UTF8.self) }
        // Most components (amounts, keys, codes) are printable ASCII with nothing to decode: their text is
        // their bytes, which are valid UTF-8 by construction.
        if !raw.contains(where: { $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "%") || !(0x21...0x7e).contains($0) }) {
            return String(decoding: raw, as: UTF8.self)
        }
        let out = try decodeComponentBytes(raw, label: rawLabel)
        // Only escaped bytes can be outside ASCII, so only then is there UTF-8 to validate.
        guard out.contains(where: { $0 >= 0x80 }) else { return String(decoding: out, as: UTF8.self) }
        guard let text = String(validating: out, as: UTF8.self) else { throw .notUTF8(parameter: label) }
        return text
    }
}
