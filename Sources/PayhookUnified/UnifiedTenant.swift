public import PayhookCore

/// One `[[unified]]` table: a unified pay platform tenant (docs/contract.md §2).
public struct UnifiedTenant: Sendable, Equatable {
    public var path: String
    public var domainCode: String
    /// Every valid secret, in file order; the position that verifies is counted, never the secret.
    public var secrets: [Secret]
    public var signScheme: UnifiedSignScheme
    /// `request_key_pattern`: when set, a verified callback's `requestKey` must match it as a whole. Under
    /// `values-sha1` this is what stops another value of a genuine callback (a `payTime`, an `orderSn`) from
    /// being moved into `requestKey` when the merchant's keys look like those values (README, "The weakness
    /// of values-sha1").
    public var requestKeyPattern: RequestKeyPattern?
    /// Where the table starts in the config file.
    public var line: Int

    public init(
        path: String, domainCode: String, secrets: [Secret], signScheme: UnifiedSignScheme,
        requestKeyPattern: RequestKeyPattern? = nil, line: Int
    ) {
        self.path = path
        self.domainCode = domainCode
        self.secrets = secrets
        self.signScheme = signScheme
        self.requestKeyPattern = requestKeyPattern
        self.line = line
    }
}

/// A compiled `request_key_pattern` (Swift `Regex` syntax), matched against the whole `requestKey`.
public struct RequestKeyPattern: @unchecked Sendable, Equatable, CustomStringConvertible {
    // @unchecked: `Regex<AnyRegexOutput>` is not declared Sendable, but a compiled regex is an immutable value
    // and matching never mutates it; it is only read after the config is loaded.
    public let source: String
    private let regex: Regex<AnyRegexOutput>

    /// Compiles the pattern; throws the compiler's sentence when it is not a valid regular expression.
    public init(_ source: String) throws {
        self.source = source
        self.regex = try Regex(source)
    }

    public func matches(_ text: String) -> Bool {
        (try? regex.wholeMatch(in: text)) != nil
    }

    public var description: String { source }

    public static func == (a: RequestKeyPattern, b: RequestKeyPattern) -> Bool { a.source == b.source }
}
