// Character classes, and the unquoted values of TOML 1.0: booleans, integers, floats and
// date-times. These work on ASCII bytes because every character they accept is ASCII.

/// Character classes and message helpers shared by the scanner and the tree.
enum TOMLSyntax {
    /// TOML 1.0 §Keys: bare keys are ASCII letters, ASCII digits, underscores and dashes.
    static func isBareKeyCharacter(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "A"..."Z", "a"..."z", "0"..."9", "_", "-": true
        default: false
        }
    }

    /// TOML 1.0 §Comment, §String: U+0000–U+0008, U+000A–U+001F and U+007F are not allowed
    /// literally in comments and strings. Tab is. Newlines are handled by the callers.
    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        (scalar.value < 0x20 && scalar != "\t") || scalar.value == 0x7F
    }

    /// Characters that can make up an unquoted value: numbers, booleans, date-times.
    static func isValueCharacter(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "A"..."Z", "a"..."z", "0"..."9", "_", "-", "+", ".", ":": true
        default: false
        }
    }

    static func isDigit(_ scalar: Unicode.Scalar?) -> Bool {
        guard let scalar else { return false }
        return scalar >= "0" && scalar <= "9"
    }

    static func hexValue(_ scalar: Unicode.Scalar) -> UInt32? {
        switch scalar {
        case "0"..."9": scalar.value - 0x30
        case "a"..."f": scalar.value - 0x61 + 10
        case "A"..."F": scalar.value - 0x41 + 10
        default: nil
        }
    }

    /// `U+0007` style notation.
    static func codePoint(_ scalar: Unicode.Scalar) -> String {
        let hex = String(scalar.value, radix: 16, uppercase: true)
        return "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
    }

    /// How a character is named in a message.
    static func describe(_ scalar: Unicode.Scalar?) -> String {
        guard let scalar else { return "end of input" }
        if scalar == "\n" { return "end of line" }
        if isControl(scalar) { return codePoint(scalar) }
        return "'\(scalar)'"
    }

    /// Keeps quoted source text in messages to a readable length.
    static func shortened(_ text: String, limit: Int = 60) -> String {
        guard text.unicodeScalars.count > limit else { return text }
        var view = String.UnicodeScalarView(text.unicodeScalars.prefix(limit))
        view.append("…")
        return String(view)
    }
}

/// A problem in an unquoted value; the scanner adds the position of the value.
struct TOMLLiteralError: Error {
    let message: String
}

/// Parses unquoted values.
enum TOMLLiteral {
    private static let zero = UInt8(ascii: "0")
    private static let nine = UInt8(ascii: "9")
    private static let underscore = UInt8(ascii: "_")
    private static let plus = UInt8(ascii: "+")
    private static let minus = UInt8(ascii: "-")
    private static let dot = UInt8(ascii: ".")
    private static let colon = UInt8(ascii: ":")

    /// Classifies and converts an unquoted value. `bytes` are ASCII.
    static func value(_ bytes: [UInt8]) throws(TOMLLiteralError) -> TOMLValue {
        let text = String(decoding: bytes, as: UTF8.self)
        if text == "true" { return .boolean(true) }
        if text == "false" { return .boolean(false) }
        if looksLikeDateTime(bytes) {
            try validateDateTime(bytes, text: text)
            return .datetime(text)
        }
        guard let first = bytes.first,
            isDigit(first) || first == plus || first == minus || first == dot
                || text == "inf" || text == "nan"
        else {
            throw TOMLLiteralError(message: "invalid value '\(TOMLSyntax.shortened(text))'; strings must be quoted")
        }
        return try number(bytes, text: text)
    }

    private static func isDigit(_ byte: UInt8) -> Bool {
        byte >= zero && byte <= nine
    }

    private static func digitValue(_ byte: UInt8, radix: Int64) -> Int64? {
        let value: Int64
        switch byte {
        case zero...nine: value = Int64(byte - zero)
        case UInt8(ascii: "a")...UInt8(ascii: "f"): value = Int64(byte - UInt8(ascii: "a")) + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): value = Int64(byte - UInt8(ascii: "A")) + 10
        default: return nil
        }
        return value < radix ? value : nil
    }

    // MARK: Numbers

    private static func number(_ bytes: [UInt8], text: String) throws(TOMLLiteralError) -> TOMLValue {
        func invalid(_ reason: String) -> TOMLLiteralError {
            TOMLLiteralError(message: "invalid number '\(TOMLSyntax.shortened(text))': \(reason)")
        }
        var start = 0
        var negative = false
        if let first = bytes.first, first == plus || first == minus {
            negative = first == minus
            start = 1
        }
        let body = bytes[start...]
        // TOML 1.0 §Float: inf and nan are always lowercase and may carry a sign.
        if body.elementsEqual("inf".utf8) { return .float(negative ? -.infinity : .infinity) }
        if body.elementsEqual("nan".utf8) { return .float(negative ? -.nan : .nan) }

        if body.count >= 2, body[start] == zero {
            let radix: Int64?
            switch body[start + 1] {
            case UInt8(ascii: "x"): radix = 16
            case UInt8(ascii: "o"): radix = 8
            case UInt8(ascii: "b"): radix = 2
            default: radix = nil
            }
            if let radix {
                // TOML 1.0 §Integer: prefixed integers take no sign (and may have leading zeros).
                if start != 0 { throw invalid("a sign is not allowed on hexadecimal, octal or binary integers") }
                let digits = bytes[(start + 2)...]
                try checkDigitGroups(digits, radix: radix, invalid: invalid)
                return .integer(try accumulate(digits, radix: radix, negative: false, invalid: invalid))
            }
        }

        // TOML 1.0 §Integer, §Float: decimal digits, optional fraction, optional exponent.
        var index = start
        let integerStart = index
        index = scanDigitGroup(bytes, from: index)
        let integerPart = bytes[integerStart..<index]
        guard !integerPart.isEmpty else { throw invalid("expected a digit") }
        try checkDigitGroups(integerPart, radix: 10, invalid: invalid)
        if integerPart.count > 1 && integerPart.first == zero {
            throw invalid("leading zeros are not allowed")
        }
        var isFloat = false
        if index < bytes.count, bytes[index] == dot {
            index += 1
            let fractionStart = index
            index = scanDigitGroup(bytes, from: index)
            guard index > fractionStart else { throw invalid("a decimal point must be followed by digits") }
            try checkDigitGroups(bytes[fractionStart..<index], radix: 10, invalid: invalid)
            isFloat = true
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            if index < bytes.count, bytes[index] == plus || bytes[index] == minus { index += 1 }
            let exponentStart = index
            index = scanDigitGroup(bytes, from: index)
            guard index > exponentStart else { throw invalid("an exponent must have digits") }
            try checkDigitGroups(bytes[exponentStart..<index], radix: 10, invalid: invalid)
            isFloat = true
        }
        guard index == bytes.count else { throw invalid("unexpected '\(Unicode.Scalar(bytes[index]))'") }

        if isFloat {
            let plain = String(decoding: bytes.filter { $0 != underscore }, as: UTF8.self)
            guard let value = Double(plain) else { throw invalid("not a valid float") }
            return .float(value)
        }
        return .integer(try accumulate(integerPart, radix: 10, negative: negative, invalid: invalid))
    }

    /// Advances over digits and underscores.
    private static func scanDigitGroup(_ bytes: [UInt8], from start: Int) -> Int {
        var index = start
        while index < bytes.count, isDigit(bytes[index]) || bytes[index] == underscore {
            index += 1
        }
        return index
    }

    /// TOML 1.0 §Integer: "each underscore must be surrounded by at least one digit on each side".
    private static func checkDigitGroups(
        _ digits: ArraySlice<UInt8>, radix: Int64, invalid: (String) -> TOMLLiteralError
    ) throws(TOMLLiteralError) {
        guard !digits.isEmpty else { throw invalid("expected a digit") }
        var previousWasDigit = false
        for byte in digits {
            if byte == underscore {
                guard previousWasDigit else { throw invalid("'_' must be between digits") }
                previousWasDigit = false
            } else if digitValue(byte, radix: radix) != nil {
                previousWasDigit = true
            } else {
                throw invalid("'\(Unicode.Scalar(byte))' is not a digit in base \(radix)")
            }
        }
        guard previousWasDigit else { throw invalid("'_' must be between digits") }
    }

    /// TOML 1.0 §Integer: values that do not fit in 64 bits must be rejected, not wrapped.
    private static func accumulate(
        _ digits: ArraySlice<UInt8>, radix: Int64, negative: Bool, invalid: (String) -> TOMLLiteralError
    ) throws(TOMLLiteralError) -> Int64 {
        var value: Int64 = 0
        for byte in digits {
            guard let digit = digitValue(byte, radix: radix) else { continue }  // underscores
            let (shifted, overflowA) = value.multipliedReportingOverflow(by: radix)
            // Accumulating negative values directly lets Int64.min parse without overflow.
            let (next, overflowB) =
                negative
                ? shifted.subtractingReportingOverflow(digit)
                : shifted.addingReportingOverflow(digit)
            if overflowA || overflowB { throw invalid("it does not fit in a 64-bit signed integer") }
            value = next
        }
        return value
    }

    // MARK: Date-times

    /// `1979-05-27…` or `07:32…`. Anything else unquoted is a number, boolean or error.
    static func looksLikeDateTime(_ bytes: [UInt8]) -> Bool {
        if bytes.count >= 5, bytes[0..<4].allSatisfy(isDigit), bytes[4] == minus { return true }
        if bytes.count >= 3, isDigit(bytes[0]), isDigit(bytes[1]), bytes[2] == colon { return true }
        return false
    }

    /// Whether the first 10 bytes have the shape `YYYY-MM-DD`; used by the scanner to decide
    /// whether a following space separates a date from a time (TOML 1.0 §Offset Date-Time).
    static func isFullDateShape(_ bytes: [UInt8]) -> Bool {
        bytes.count == 10 && bytes[0..<4].allSatisfy(isDigit) && bytes[4] == minus
            && isDigit(bytes[5]) && isDigit(bytes[6]) && bytes[7] == minus && isDigit(bytes[8]) && isDigit(bytes[9])
    }

    /// TOML 1.0 §Offset Date-Time … §Local Time, following RFC 3339. Seconds are required in
    /// TOML 1.0; fractional seconds of any precision are allowed.
    private static func validateDateTime(_ bytes: [UInt8], text: String) throws(TOMLLiteralError) {
        func invalid(_ reason: String) -> TOMLLiteralError {
            TOMLLiteralError(message: "invalid date-time '\(TOMLSyntax.shortened(text))': \(reason)")
        }
        if bytes[2] == colon {
            let end = try validateTime(bytes, from: 0, invalid: invalid)
            guard end == bytes.count else { throw invalid("unexpected text after the time") }
            return
        }
        try validateDate(bytes, invalid: invalid)
        if bytes.count == 10 { return }
        let separator = bytes[10]
        guard separator == UInt8(ascii: "T") || separator == UInt8(ascii: "t") || separator == UInt8(ascii: " ") else {
            throw invalid("expected 'T' or a space between date and time")
        }
        var index = try validateTime(bytes, from: 11, invalid: invalid)
        guard index < bytes.count else { return }
        let offset = bytes[index]
        if offset == UInt8(ascii: "Z") || offset == UInt8(ascii: "z") {
            index += 1
        } else if offset == plus || offset == minus {
            guard let hour = twoDigits(bytes, at: index + 1), index + 3 < bytes.count, bytes[index + 3] == colon,
                let minute = twoDigits(bytes, at: index + 4)
            else { throw invalid("a time offset must look like +HH:MM") }
            guard hour <= 23, minute <= 59 else { throw invalid("time offset out of range") }
            index += 6
        } else {
            throw invalid("expected 'Z' or a +HH:MM offset")
        }
        guard index == bytes.count else { throw invalid("unexpected text after the time offset") }
    }

    private static func validateDate(
        _ bytes: [UInt8], invalid: (String) -> TOMLLiteralError
    ) throws(TOMLLiteralError) {
        guard bytes.count >= 10, let yearHigh = twoDigits(bytes, at: 0), let yearLow = twoDigits(bytes, at: 2),
            bytes[4] == minus, let month = twoDigits(bytes, at: 5), bytes[7] == minus,
            let day = twoDigits(bytes, at: 8)
        else { throw invalid("a date must look like YYYY-MM-DD") }
        let year = yearHigh * 100 + yearLow
        guard (1...12).contains(month) else { throw invalid("month must be 01 to 12") }
        let isLeap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let daysInMonth = [31, isLeap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
        guard day >= 1 && day <= daysInMonth else { throw invalid("day is out of range for the month") }
    }

    /// Validates `HH:MM:SS[.fraction]` starting at `start`; returns the index after it.
    private static func validateTime(
        _ bytes: [UInt8], from start: Int, invalid: (String) -> TOMLLiteralError
    ) throws(TOMLLiteralError) -> Int {
        guard let hour = twoDigits(bytes, at: start), start + 2 < bytes.count, bytes[start + 2] == colon,
            let minute = twoDigits(bytes, at: start + 3), start + 5 < bytes.count, bytes[start + 5] == colon,
            let second = twoDigits(bytes, at: start + 6)
        else { throw invalid("a time must look like HH:MM:SS") }
        // RFC 3339 §5.6 allows second 60 for leap seconds.
        guard hour <= 23, minute <= 59, second <= 60 else { throw invalid("time out of range") }
        var index = start + 8
        if index < bytes.count, bytes[index] == dot {
            index += 1
            let fractionStart = index
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
            guard index > fractionStart else { throw invalid("fractional seconds need digits") }
        }
        return index
    }

    private static func twoDigits(_ bytes: [UInt8], at index: Int) -> Int? {
        guard index >= 0, index + 1 < bytes.count, isDigit(bytes[index]), isDigit(bytes[index + 1]) else { return nil }
        return Int(bytes[index] - zero) * 10 + Int(bytes[index + 1] - zero)
    }
}
