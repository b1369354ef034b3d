// Strict RFC 8259 JSON reader. Pure Swift, no Foundation.

/// A parsed JSON value.
public enum JSONValue: Sendable {
    /// Members in document order. Duplicate keys are rejected by the parser.
    case object([(key: String, value: JSONValue)])
    case array([JSONValue])
    case string(String)
    /// The exact number text from the document, validated against the RFC 8259 grammar.
    case number(String)
    case bool(Bool)
    case null
}

extension JSONValue: Equatable {
    /// Structural equality. Strings and keys compare by exact UTF-8 bytes (not Unicode
    /// canonical equivalence, which Swift's `String ==` uses), numbers by their text,
    /// and object members in order.
    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case let (.object(a), .object(b)):
            guard a.count == b.count else { return false }
            for k in a.indices where !(sameUTF8(a[k].key, b[k].key) && a[k].value == b[k].value) {
                return false
            }
            return true
        case let (.array(a), .array(b)):
            return a == b
        case let (.string(a), .string(b)), let (.number(a), .number(b)):
            return sameUTF8(a, b)
        case let (.bool(a), .bool(b)):
            return a == b
        case (.null, .null):
            return true
        default:
            return false
        }
    }
}

extension JSONValue {
    /// The value of the member named `key` (exact UTF-8 match), or nil if this is not
    /// an object or has no such member.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        for member in members where sameUTF8(member.key, key) {
            return member.value
        }
        return nil
    }

    /// The string payload if this is `.string`, otherwise nil.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }
}

/// Exact code-unit comparison, matching how JSON treats names.
@inline(__always)
private func sameUTF8(_ a: String, _ b: String) -> Bool {
    a.utf8.count == b.utf8.count && a.utf8.elementsEqual(b.utf8)
}

public enum JSONReader {
    /// Parses exactly one JSON value (surrounded by optional whitespace: space, tab, LF, CR only).
    /// nil on any error. Containers nested deeper than `maxDepth` are rejected.
    /// Parsing itself never recurses, but destroying or comparing a `JSONValue` recurses
    /// over its nesting, so keep `maxDepth` modest (hundreds, not millions).
    public static func parse(_ bytes: [UInt8], maxDepth: Int = 32) -> JSONValue? {
        bytes.withUnsafeBufferPointer { buffer -> JSONValue? in
            guard let base = buffer.baseAddress, !buffer.isEmpty else { return nil }
            var parser = Parser(buffer: buffer, base: UnsafeRawPointer(base), maxDepth: maxDepth)
            return parser.parseDocument()
        }
    }
}

// MARK: - Parser

private enum ASCII {
    static let quote = UInt8(ascii: "\"")
    static let backslash = UInt8(ascii: "\\")
    static let slash = UInt8(ascii: "/")
    static let comma = UInt8(ascii: ",")
    static let colon = UInt8(ascii: ":")
    static let openBrace = UInt8(ascii: "{")
    static let closeBrace = UInt8(ascii: "}")
    static let openBracket = UInt8(ascii: "[")
    static let closeBracket = UInt8(ascii: "]")
    static let minus = UInt8(ascii: "-")
    static let plus = UInt8(ascii: "+")
    static let dot = UInt8(ascii: ".")
    static let zero = UInt8(ascii: "0")
    static let one = UInt8(ascii: "1")
    static let nine = UInt8(ascii: "9")
    static let lowerE = UInt8(ascii: "e")
}

/// Open container. Kept trivial (no references) so pushing/popping is cheap.
private struct Frame {
    var isObject: Bool
    /// Index into `values` where this container's elements start. Objects store
    /// alternating `.string(key)`, value entries.
    var valueStart: Int
    /// Index into `keyHashes` where this object's key hashes start.
    var hashStart: Int
}

/// Key wrapper for large-object duplicate detection: hashes and compares exact UTF-8
/// bytes, so canonically-equivalent but distinct keys are not treated as duplicates.
private struct ByteKey: Hashable {
    var string: String

    static func == (a: ByteKey, b: ByteKey) -> Bool { sameUTF8(a.string, b.string) }

    func hash(into hasher: inout Hasher) {
        var s = string
        s.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }
}

/// Iterative parser: completed values live on one flat stack and are gathered into a
/// container when it closes, so nesting never uses the call stack.
private struct Parser {
    let buffer: UnsafeBufferPointer<UInt8>
    let base: UnsafeRawPointer
    let end: Int
    let maxDepth: Int
    var i = 0

    var values: [JSONValue] = []
    var frames: [Frame] = []
    /// Hash of each pending object key, used to prefilter duplicate checks.
    var keyHashes: [UInt64] = []
    /// Hash of the most recently parsed string's decoded bytes, if requested.
    var lastStringHash: UInt64 = 0
    var scratch: [UInt8] = []

    /// Objects up to this many members check duplicates pairwise on cached hashes;
    /// larger ones use a seeded hash set to stay O(n) under adversarial keys.
    static let linearKeyLimit = 32

    init(buffer: UnsafeBufferPointer<UInt8>, base: UnsafeRawPointer, maxDepth: Int) {
        self.buffer = buffer
        self.base = base
        self.end = buffer.count
        self.maxDepth = maxDepth
    }

    mutating func parseDocument() -> JSONValue? {
        skipWhitespace()
        // Invariant at the top of this loop: whitespace skipped, a value is expected.
        nextValue: while true {
            guard i < end else { return nil }
            switch buffer[i] {
            case ASCII.openBrace:
                guard frames.count < maxDepth else { return nil }
                i += 1
                skipWhitespace()
                if i < end && buffer[i] == ASCII.closeBrace {
                    i += 1
                    values.append(.object([]))
                } else {
                    openContainer(isObject: true)
                    guard parseMemberKey() else { return nil }
                    continue nextValue
                }
            case ASCII.openBracket:
                guard frames.count < maxDepth else { return nil }
                i += 1
                skipWhitespace()
                if i < end && buffer[i] == ASCII.closeBracket {
                    i += 1
                    values.append(.array([]))
                } else {
                    openContainer(isObject: false)
                    continue nextValue
                }
            case ASCII.quote:
                i += 1
                guard let s = parseString(hashed: false) else { return nil }
                values.append(.string(s))
            case UInt8(ascii: "t"):
                guard consumeLiteral("true") else { return nil }
                values.append(.bool(true))
            case UInt8(ascii: "f"):
                guard consumeLiteral("false") else { return nil }
                values.append(.bool(false))
            case UInt8(ascii: "n"):
                guard consumeLiteral("null") else { return nil }
                values.append(.null)
            default:
                guard let n = parseNumber() else { return nil }
                values.append(.number(n))
            }

            // A value just completed: consume separators and closers until another
            // value is expected or the document ends.
            while true {
                skipWhitespace()
                guard let frame = frames.last else {
                    guard i == end, values.count == 1 else { return nil }
                    return values.removeLast()
                }
                guard i < end else { return nil }
                let c = buffer[i]
                i += 1
                if c == ASCII.comma {
                    skipWhitespace()
                    if frame.isObject {
                        guard parseMemberKey() else { return nil }
                    }
                    continue nextValue
                }
                guard c == (frame.isObject ? ASCII.closeBrace : ASCII.closeBracket),
                      closeContainer()
                else { return nil }
            }
        }
    }

    mutating func openContainer(isObject: Bool) {
        // Most documents nest shallowly and have few members per level; reserving once
        // avoids a chain of small regrowths.
        if frames.capacity == 0 {
            frames.reserveCapacity(8)
            values.reserveCapacity(32)
        }
        if isObject && keyHashes.capacity == 0 { keyHashes.reserveCapacity(32) }
        frames.append(Frame(isObject: isObject, valueStart: values.count, hashStart: keyHashes.count))
    }

    /// Pops the innermost frame and replaces its elements on the value stack with the
    /// finished container. False if an object turns out to have duplicate keys.
    mutating func closeContainer() -> Bool {
        let frame = frames.removeLast()
        let vs = frame.valueStart
        let n = values.count - vs
        if frame.isObject {
            guard keysAreUnique(valueStart: vs, hashStart: frame.hashStart) else { return false }
            keyHashes.removeSubrange(frame.hashStart...)
            var members: [(key: String, value: JSONValue)] = []
            members.reserveCapacity(n / 2)
            // Move entries out instead of copying, leaving trivial `.null`s behind, so
            // no reference counting happens for the transfer.
            values.withUnsafeMutableBufferPointer { stack in
                guard let p = stack.baseAddress else { return }
                var k = vs
                while k + 1 < n + vs {
                    let key = (p + k).move()
                    (p + k).initialize(to: .null)
                    let value = (p + k + 1).move()
                    (p + k + 1).initialize(to: .null)
                    if case .string(let s) = key { members.append((key: s, value: value)) }
                    k += 2
                }
            }
            values.removeSubrange(vs...)
            values.append(.object(members))
        } else {
            let elements = values.withUnsafeMutableBufferPointer { stack -> [JSONValue] in
                guard let p = stack.baseAddress else { return [] }
                return [JSONValue](unsafeUninitializedCapacity: n) { out, count in
                    guard let o = out.baseAddress else { return }
                    o.moveInitialize(from: p + vs, count: n)
                    (p + vs).initialize(repeating: .null, count: n)
                    count = n
                }
            }
            values.removeSubrange(vs...)
            values.append(.array(elements))
        }
        return true
    }

    /// Checks the keys of the object whose entries start at `values[valueStart]`.
    func keysAreUnique(valueStart: Int, hashStart: Int) -> Bool {
        let count = keyHashes.count - hashStart
        if count < 2 { return true }
        func key(_ k: Int) -> String {
            if case .string(let s) = values[valueStart + 2 * k] { return s }
            return ""
        }
        if count <= Self.linearKeyLimit {
            for a in 1..<count {
                let h = keyHashes[hashStart + a]
                for b in 0..<a where keyHashes[hashStart + b] == h && sameUTF8(key(a), key(b)) {
                    return false
                }
            }
            return true
        }
        var seen = Set<ByteKey>(minimumCapacity: count)
        for k in 0..<count where !seen.insert(ByteKey(string: key(k))).inserted {
            return false
        }
        return true
    }

    /// Parses `"key" ws : ws` and pushes the key onto the value stack.
    mutating func parseMemberKey() -> Bool {
        guard i < end, buffer[i] == ASCII.quote else { return false }
        i += 1
        guard let key = parseString(hashed: true) else { return false }
        values.append(.string(key))
        keyHashes.append(lastStringHash)
        skipWhitespace()
        guard i < end, buffer[i] == ASCII.colon else { return false }
        i += 1
        skipWhitespace()
        return true
    }

    /// Cheap prefilter hash for small-object duplicate checks, a word at a time;
    /// collisions fall back to a byte comparison, so quality only affects speed.
    @inline(__always)
    func keyHash(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt64 {
        let k: UInt64 = 0x9E37_79B9_7F4A_7C15
        var h = UInt64(truncatingIfNeeded: bytes.count) &* k
        var n = 0
        if let p = bytes.baseAddress {
            let raw = UnsafeRawPointer(p)
            while bytes.count - n >= 8 {
                h = (h ^ UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: n, as: UInt64.self))) &* k
                h ^= h >> 29
                n += 8
            }
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while n < bytes.count {
            tail |= UInt64(bytes[n]) << shift
            shift += 8
            n += 1
        }
        h = (h ^ tail) &* k
        return h ^ (h >> 32)
    }

    @inline(__always)
    mutating func skipWhitespace() {
        while i < end {
            let c = buffer[i]
            // Every JSON whitespace byte is <= 0x20, so most tokens exit on the first test.
            if c > 0x20 { return }
            guard c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 else { return }
            i += 1
        }
    }

    mutating func consumeLiteral(_ literal: StaticString) -> Bool {
        let n = literal.utf8CodeUnitCount
        guard end - i >= n else { return false }
        let p = literal.utf8Start
        for k in 0..<n where buffer[i + k] != p[k] { return false }
        i += n
        return true
    }

    // MARK: Numbers

    /// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
    mutating func parseNumber() -> String? {
        let start = i
        if i < end && buffer[i] == ASCII.minus { i += 1 }
        guard i < end else { return nil }
        let first = buffer[i]
        if first == ASCII.zero {
            i += 1
        } else if first >= ASCII.one && first <= ASCII.nine {
            i += 1
            skipDigits()
        } else {
            return nil
        }
        if i < end && buffer[i] == ASCII.dot {
            i += 1
            guard skipDigits() > 0 else { return nil }
        }
        // `| 0x20` folds 'E' onto 'e'; no other byte maps there.
        if i < end && buffer[i] | 0x20 == ASCII.lowerE {
            i += 1
            if i < end && (buffer[i] == ASCII.plus || buffer[i] == ASCII.minus) { i += 1 }
            guard skipDigits() > 0 else { return nil }
        }
        return String(decoding: UnsafeBufferPointer(rebasing: buffer[start..<i]), as: UTF8.self)
    }

    @discardableResult @inline(__always)
    mutating func skipDigits() -> Int {
        let start = i
        while i < end && buffer[i] &- ASCII.zero < 10 { i += 1 }
        return i - start
    }

    // MARK: Strings

    /// High bit set in each byte of `w` (little-endian order) that is a quote, a backslash,
    /// a control character or non-ASCII. Borrows can also flag bytes above a flagged one,
    /// but the lowest flagged byte is always exact, which is all the scanner uses.
    @inline(__always)
    static func attentionMask(_ w: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let q = w ^ (ones &* 0x22)
        let b = w ^ (ones &* 0x5C)
        // `w - 0x20` wraps for control bytes. An xor-ed byte is zero exactly at a
        // quote/backslash, so `- 1` wraps there; for non-ASCII bytes the xor keeps the
        // high bit, so `- 1` still has it set (0xA2 is the one byte where `q - 1` clears
        // it, and `b - 1` catches that one).
        return ((w &- ones &* 0x20) | (q &- ones) | (b &- ones)) & (ones &* 0x80)
    }

    /// Parses string contents; `i` is just past the opening quote. On success `i` is
    /// just past the closing quote, and if `hashed`, `lastStringHash` covers the
    /// decoded bytes.
    mutating func parseString(hashed: Bool) -> String? {
        let start = i
        var j = i
        while true {
            // Skip plain ASCII 8 bytes at a time, stopping exactly at the first byte that
            // needs a closer look.
            while end - j >= 8 {
                let mask = Self.attentionMask(UInt64(littleEndian: base.loadUnaligned(fromByteOffset: j, as: UInt64.self)))
                if mask != 0 {
                    j += mask.trailingZeroBitCount >> 3
                    break
                }
                j += 8
            }
            guard j < end else { return nil }
            let c = buffer[j]
            if c == ASCII.quote {
                i = j + 1
                let bytes = UnsafeBufferPointer(rebasing: buffer[start..<j])
                if hashed { lastStringHash = keyHash(bytes) }
                return String(decoding: bytes, as: UTF8.self)
            }
            if c == ASCII.backslash {
                return parseEscapedString(start: start, resumeAt: j, hashed: hashed)
            }
            if c < 0x20 { return nil }
            if c < 0x80 {
                j += 1
            } else {
                let n = utf8SequenceLength(at: j)
                guard n > 0 else { return nil }
                j += n
            }
        }
    }

    /// Slow path for strings containing escapes: decodes into a reused scratch buffer.
    /// `buffer[start..<resumeAt]` has already been validated.
    mutating func parseEscapedString(start: Int, resumeAt: Int, hashed: Bool) -> String? {
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[start..<resumeAt]))
        var j = resumeAt
        while j < end {
            let c = buffer[j]
            if c == ASCII.quote {
                i = j + 1
                if hashed { lastStringHash = scratch.withUnsafeBufferPointer { keyHash($0) } }
                return String(decoding: scratch, as: UTF8.self)
            }
            if c == ASCII.backslash {
                guard end - j >= 2 else { return nil }
                let e = buffer[j + 1]
                j += 2
                switch e {
                case ASCII.quote, ASCII.backslash, ASCII.slash: scratch.append(e)
                case UInt8(ascii: "b"): scratch.append(0x08)
                case UInt8(ascii: "f"): scratch.append(0x0C)
                case UInt8(ascii: "n"): scratch.append(0x0A)
                case UInt8(ascii: "r"): scratch.append(0x0D)
                case UInt8(ascii: "t"): scratch.append(0x09)
                case UInt8(ascii: "u"):
                    guard let unit = hex4(at: j) else { return nil }
                    j += 4
                    var scalar = unit
                    if unit >= 0xD800 && unit <= 0xDBFF {
                        // A high surrogate must be followed directly by an escaped low surrogate.
                        guard end - j >= 6, buffer[j] == ASCII.backslash, buffer[j + 1] == UInt8(ascii: "u"),
                              let low = hex4(at: j + 2), low >= 0xDC00 && low <= 0xDFFF
                        else { return nil }
                        j += 6
                        scalar = 0x10000 &+ ((unit &- 0xD800) << 10) &+ (low &- 0xDC00)
                    } else if unit >= 0xDC00 && unit <= 0xDFFF {
                        return nil
                    }
                    appendUTF8(scalar)
                default:
                    return nil
                }
            } else if c < 0x20 {
                return nil
            } else if c < 0x80 {
                scratch.append(c)
                j += 1
            } else {
                let n = utf8SequenceLength(at: j)
                guard n > 0 else { return nil }
                scratch.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[j..<(j + n)]))
                j += n
            }
        }
        return nil
    }

    /// Four hex digits (either case) at `k`, or nil.
    @inline(__always)
    func hex4(at k: Int) -> UInt32? {
        guard end - k >= 4 else { return nil }
        var v: UInt32 = 0
        for n in k..<(k + 4) {
            let c = buffer[n]
            let digit = c &- ASCII.zero
            let letter = (c | 0x20) &- UInt8(ascii: "a")
            if digit < 10 {
                v = v << 4 | UInt32(digit)
            } else if letter < 6 {
                v = v << 4 | UInt32(letter + 10)
            } else {
                return nil
            }
        }
        return v
    }

    @inline(__always)
    mutating func appendUTF8(_ s: UInt32) {
        if s < 0x80 {
            scratch.append(UInt8(truncatingIfNeeded: s))
        } else if s < 0x800 {
            scratch.append(UInt8(truncatingIfNeeded: 0xC0 | s >> 6))
            scratch.append(UInt8(truncatingIfNeeded: 0x80 | s & 0x3F))
        } else if s < 0x10000 {
            scratch.append(UInt8(truncatingIfNeeded: 0xE0 | s >> 12))
            scratch.append(UInt8(truncatingIfNeeded: 0x80 | s >> 6 & 0x3F))
            scratch.append(UInt8(truncatingIfNeeded: 0x80 | s & 0x3F))
        } else {
            scratch.append(UInt8(truncatingIfNeeded: 0xF0 | s >> 18))
            scratch.append(UInt8(truncatingIfNeeded: 0x80 | s >> 12 & 0x3F))
            scratch.append(UInt8(truncatingIfNeeded: 0x80 | s >> 6 & 0x3F))
            scratch.append(UInt8(truncatingIfNeeded: 0x80 | s & 0x3F))
        }
    }

    /// Length of the well-formed multi-byte UTF-8 sequence starting at `j`, or 0 if it is
    /// ill-formed (bad lead byte, overlong, UTF-16 surrogate, > U+10FFFF, or truncated).
    /// Ranges follow Unicode Table 3-7.
    @inline(__always)
    func utf8SequenceLength(at j: Int) -> Int {
        let b0 = buffer[j]
        let remaining = end - j
        switch b0 {
        case 0xC2...0xDF:
            guard remaining >= 2, buffer[j + 1] & 0xC0 == 0x80 else { return 0 }
            return 2
        case 0xE0...0xEF:
            guard remaining >= 3 else { return 0 }
            let b1 = buffer[j + 1]
            let lo: UInt8 = b0 == 0xE0 ? 0xA0 : 0x80
            let hi: UInt8 = b0 == 0xED ? 0x9F : 0xBF
            guard b1 >= lo, b1 <= hi, buffer[j + 2] & 0xC0 == 0x80 else { return 0 }
            return 3
        case 0xF0...0xF4:
            guard remaining >= 4 else { return 0 }
            let b1 = buffer[j + 1]
            let lo: UInt8 = b0 == 0xF0 ? 0x90 : 0x80
            let hi: UInt8 = b0 == 0xF4 ? 0x8F : 0xBF
            guard b1 >= lo, b1 <= hi, buffer[j + 2] & 0xC0 == 0x80, buffer[j + 3] & 0xC0 == 0x80 else { return 0 }
            return 4
        default:
            return 0
        }
    }
}
