/// libpq connection strings, as far as payhook needs to read them itself: only to tell whether one carries a
/// password, so that a config file never does (docs/contract.md §7). Everything else is libpq's business.
public enum ConnectionString {
    /// Whether `text` carries a password: in a URL's user information (`postgresql://user:secret@host/db`), in
    /// a URL parameter named `password` (percent-encoded or not, any case), or as a `password=` keyword.
    ///
    /// It errs on the side of yes: whatever libpq reads a password from (`PQconninfoParse`), this says yes to
    /// (the `conninfo` fuzz target checks that against libpq itself); it may also say yes to a string libpq
    /// would refuse.
    public static func holdsPassword(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        for scheme in ["postgresql://", "postgres://"] where bytes.starts(with: Array(scheme.utf8)) {
            return uriHoldsPassword(bytes[scheme.utf8.count...])
        }
        return keywordsHoldPassword(bytes)
    }

    /// `[user[:password]@][hosts][/db][?name=value&…]`. libpq looks for the user information up to the first
    /// `/` only (a `?` before it does not end it), and takes the user from the password at a `:`; parameters
    /// follow a `?`. Read more widely than that: any `@` before the first `/` with a `:` before it, and any
    /// piece after a `?` or `&` named `password`.
    private static func uriHoldsPassword(_ rest: ArraySlice<UInt8>) -> Bool {
        let authority = rest[..<(rest.firstIndex(of: UInt8(ascii: "/")) ?? rest.endIndex)]
        if let at = authority.lastIndex(of: UInt8(ascii: "@")), authority[..<at].contains(UInt8(ascii: ":")) {
            return true
        }
        guard let question = rest.firstIndex(of: UInt8(ascii: "?")) else { return false }
        for piece in rest[(question + 1)...].split(omittingEmptySubsequences: false, whereSeparator: { $0 == UInt8(ascii: "&") || $0 == UInt8(ascii: "?") }) {
            let name = piece.split(separator: UInt8(ascii: "="), maxSplits: 1, omittingEmptySubsequences: false).first ?? []
            if isPassword(percentDecoded(name)) { return true }
        }
        return false
    }

    /// `key = value` pairs separated by white space; a key ends at white space or `=`.
    private static func keywordsHoldPassword(_ bytes: [UInt8]) -> Bool {
        let key = Array("password".utf8)
        var index = 0
        while index + key.count <= bytes.count {
            let atStart = index == 0 || isSpace(bytes[index - 1]) || bytes[index - 1] == UInt8(ascii: "'")
            if atStart && isPassword(bytes[index..<(index + key.count)]) {
                var next = index + key.count
                while next < bytes.count && isSpace(bytes[next]) { next += 1 }
                if next < bytes.count && bytes[next] == UInt8(ascii: "=") { return true }
            }
            index += 1
        }
        return false
    }

    private static func isPassword<C: Collection<UInt8>>(_ name: C) -> Bool {
        name.count == 8 && zip(name, "password".utf8).allSatisfy { $0 | 0x20 == $1 }
    }

    private static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || (0x09...0x0D).contains(byte)
    }

    private static func percentDecoded<C: Collection<UInt8>>(_ text: C) -> [UInt8] {
        var out: [UInt8] = []
        var iterator = Array(text)[...]
        while let byte = iterator.popFirst() {
            if byte == UInt8(ascii: "%"), iterator.count >= 2, let high = hexValue(iterator[iterator.startIndex]),
                let low = hexValue(iterator[iterator.startIndex + 1])
            {
                out.append(high << 4 | low)
                iterator = iterator.dropFirst(2)
            } else {
                out.append(byte)
            }
        }
        return out
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
