public import PayhookCore

/// The unified pay platform's signature schemes (docs/protocols.md §2.3, §2.4; docs/contract.md §3).
public enum UnifiedSignScheme: String, Sendable, CaseIterable {
    /// The platform's real rule: sorted values plus the secret, concatenated, SHA-1.
    case valuesSHA1 = "values-sha1"
    /// The sibling payment center's rule: `secret + name=value&… + secret`, SHA-1.
    case saltedSHA1 = "salted-sha1"
}

/// Builds the exact bytes each scheme hashes. Pure, so tests and `payhook verify` can show them.
public enum UnifiedSigning {
    /// The parameter carrying the signature; never part of what is signed.
    public static let signParameter = "sign"

    /// `values-sha1`: the decoded value of every parameter except `sign`, empty ones dropped, plus the
    /// secret, sorted by UTF-16 code units (Java `String.compareTo`, which the platform uses; Swift's `<`
    /// orders by scalars and equates canonically-equivalent strings, docs/protocols.md §2.2), concatenated
    /// with no separator, as UTF-8.
    public static func valuesMessage(_ parameters: [FormParameter], secret: String) -> [UInt8] {
        // This runs for every callback and every secret of the tenant, duplicates included. The values are
        // copied once into `pool` and the sort moves their byte ranges, not strings (sorting strings retained
        // and released them at every step, bench/results/profiles.md); `pool` and the message are each
        // allocated once at their final size.
        var size = secret.utf8.count
        var count = 1
        for parameter in parameters where parameter.name != signParameter && !parameter.value.isEmpty {
            size += parameter.value.utf8.count
            count += 1
        }
        var pool: [UInt8] = []
        pool.reserveCapacity(size)
        return withUnsafeTemporaryAllocation(of: Range<Int>.self, capacity: count) { buffer in
            var spans = buffer
            var filled = 0
            func add(_ text: String) {
                let start = pool.count
                pool.append(contentsOf: text.utf8)
                spans[filled] = start..<pool.count
                filled += 1
            }
            for parameter in parameters where parameter.name != signParameter && !parameter.value.isEmpty {
                add(parameter.value)
            }
            add(secret)
            return pool.withUnsafeBufferPointer { bytes in
                spans.sort { utf16Precedes(UnsafeBufferPointer(rebasing: bytes[$0]), UnsafeBufferPointer(rebasing: bytes[$1])) }
                var out: [UInt8] = []
                out.reserveCapacity(size)
                for span in spans { out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[span])) }
                return out
            }
        }
    }

    /// `salted-sha1`: `name=value` of every non-empty parameter except `sign`, sorted by name in byte
    /// order, joined with `&`, with the secret before and after (docs/protocols.md §2.4, vector S-1 "raw").
    public static func saltedMessage(_ parameters: [FormParameter], secret: String) -> [UInt8] {
        let pairs = parameters.filter { $0.name != signParameter && !$0.value.isEmpty }
            .sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
            .map { "\($0.name)=\($0.value)" }
        return Array((secret + pairs.joined(separator: "&") + secret).utf8)
    }

    public static func message(_ scheme: UnifiedSignScheme, _ parameters: [FormParameter], secret: String) -> [UInt8] {
        switch scheme {
        case .valuesSHA1: return valuesMessage(parameters, secret: secret)
        case .saltedSHA1: return saltedMessage(parameters, secret: secret)
        }
    }

    /// Java `String.compareTo` order: lexicographic over UTF-16 code units.
    ///
    /// Compared over the UTF-8 bytes, which Swift's native strings hold (walking `utf16` transcodes every
    /// character). UTF-8 byte order is code-point order, and that agrees with UTF-16 order except between a
    /// character from U+E000 to U+FFFF (UTF-8 lead byte 0xEE or 0xEF) and one above U+FFFF (lead byte 0xF0
    /// to 0xF4), which UTF-16 writes as surrogates (0xD800 to 0xDFFF) and so puts first (The Unicode Standard,
    /// §5.17 "Binary Order"). The first differing bytes tell whether that case is met:
    /// before them both strings are equal, so a difference inside a character compares two characters of the
    /// same lead byte, where all orders agree. Only then are the UTF-16 code units compared.
    public static func utf16Precedes(_ a: String, _ b: String) -> Bool {
        var a = a, b = b
        return a.withUTF8 { x in b.withUTF8 { y in utf16Precedes(x, y) } }
    }

    /// The same over two texts' UTF-8 bytes, which must be valid UTF-8.
    static func utf16Precedes(_ x: UnsafeBufferPointer<UInt8>, _ y: UnsafeBufferPointer<UInt8>) -> Bool {
        let common = min(x.count, y.count)
        var index = 0
        while index < common, x[index] == y[index] { index += 1 }
        guard index < common else { return x.count < y.count }
        let (p, q) = (x[index], y[index])
        if (p >= 0xF0 && (0xEE...0xEF).contains(q)) || (q >= 0xF0 && (0xEE...0xEF).contains(p)) {
            return String(decoding: x, as: UTF8.self).utf16.lexicographicallyPrecedes(String(decoding: y, as: UTF8.self).utf16)
        }
        return p < q
    }
}

/// The values of a callback that the checks read, picked out in one pass over its parameters. A callback carries
/// about a dozen, and this runs for every one, duplicates included: a dictionary of all of them hashed every
/// name, and a few short names compare for less (bench/results/profiles.md). Names are unique, since
/// ``FormQuery`` refuses a repeated one.
public struct UnifiedValues: Sendable, Equatable {
    public var domainCode: String?
    public var sign: String?
    public var money: String?
    public var requestKey: String?
    public var payTime: String?
    public var payStatus: String?
    public var currencyType: String?
    public var payTypeCode: String?

    public init(_ parameters: [FormParameter]) {
        for parameter in parameters {
            switch parameter.name {
            case "domainCode": domainCode = parameter.value
            case UnifiedSigning.signParameter: sign = parameter.value
            case "money": money = parameter.value
            case "requestKey": requestKey = parameter.value
            case "payTime": payTime = parameter.value
            case "payStatus": payStatus = parameter.value
            case "currencyType": currencyType = parameter.value
            case "payTypeCode": payTypeCode = parameter.value
            default: break
            }
        }
    }
}

/// The semantic checks a verified unified callback must pass (docs/contract.md §3).
///
/// `values-sha1` signs values but not names, so a signature survives values being moved between fields
/// (docs/protocols.md §2.3: swapping `money` and `payTime` keeps it). These checks make such a swap fail.
public enum UnifiedFields {
    public static let payStatuses: Set<String> = [
        "NOTPAY", "SUCCESSPAY", "FAILUREPAY", "NOTREFUND", "WAITREFUND", "SUCCESSREFUND", "FAILUREREFUND", "CLOSED",
    ]
    public static let currencyTypes: Set<String> = ["CNY", "USD"]
    public static let payTypeCodes: Set<String> = ["Wechat", "Alipay", "ChinapayOld", "Paypal"]
    /// Fields every callback must carry, non-empty (docs/protocols.md §2.1).
    public static let required: [(name: String, value: @Sendable (UnifiedValues) -> String?)] = [
        ("money", { $0.money }), ("requestKey", { $0.requestKey }), ("payTime", { $0.payTime }),
        ("payStatus", { $0.payStatus }), ("domainCode", { $0.domainCode }), ("currencyType", { $0.currencyType }),
        ("payTypeCode", { $0.payTypeCode }),
    ]

    /// The earliest plausible `payTime`: 2000-01-01T00:00:00Z. Anything earlier is not a millisecond time
    /// (a value in seconds, or an amount moved into the field).
    public static let earliestPayTime = Timestamp.milliseconds(year: 2000, month: 1, day: 1)
    /// How far in the future `payTime` may be, for clock skew between the platform and us.
    public static let payTimeFutureSlackMilliseconds: Int64 = 24 * 3600 * 1000

    /// What the checks read of a callback that passed them.
    public struct Checked: Sendable, Equatable {
        /// The amount in fen.
        public let money: Int64
        /// `payTime`, Unix milliseconds: the clock readings at which the checks pass follow from it.
        public let payTime: Int64
    }

    /// Checks one verified callback. Returns its amount and `payTime`, or the first failed check as a sentence.
    ///
    /// - Parameter maxAgeMilliseconds: the replay window: a `payTime` older than this before now is refused, since
    ///   the dedupe ledger may no longer hold its key (README, "Replays and the ledger's retention").
    public static func check(
        _ values: UnifiedValues, nowMilliseconds: Int64, maxAgeMilliseconds: Int64
    ) -> Result<Checked, SemanticError> {
        for (name, value) in required where (value(values) ?? "").isEmpty {
            return .failure(SemanticError("required parameter '\(name)' is missing or empty"))
        }
        guard let money = values.money.flatMap(DecimalDigits.nonNegative) else {
            return .failure(SemanticError("money must be a non-negative integer number of fen"))
        }
        guard let payTime = values.payTime.flatMap(DecimalDigits.nonNegative),
            payTime >= earliestPayTime, payTime <= nowMilliseconds + payTimeFutureSlackMilliseconds
        else {
            return .failure(SemanticError("payTime must be an epoch-millisecond time between 2000-01-01 and now"))
        }
        guard payTime >= nowMilliseconds - maxAgeMilliseconds else {
            return .failure(SemanticError(
                "payTime is older than the replay window (\(maxAgeMilliseconds / 86_400_000) days, ledger_retention_days minus one)"))
        }
        guard let status = values.payStatus, payStatuses.contains(status) else {
            return .failure(SemanticError("payStatus is not one of \(payStatuses.sorted().joined(separator: ", "))"))
        }
        guard let currency = values.currencyType, currencyTypes.contains(currency) else {
            return .failure(SemanticError("currencyType is not one of \(currencyTypes.sorted().joined(separator: ", "))"))
        }
        guard let code = values.payTypeCode, payTypeCodes.contains(code) else {
            return .failure(SemanticError("payTypeCode is not one of \(payTypeCodes.sorted().joined(separator: ", "))"))
        }
        return .success(Checked(money: money, payTime: payTime))
    }

    public struct SemanticError: Error, Sendable, Equatable {
        public let message: String
        init(_ message: String) { self.message = message }
    }
}
