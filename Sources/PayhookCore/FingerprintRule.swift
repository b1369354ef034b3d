/// How a source tells a retry from a conflict: the text two deliveries of one dedupe key must share to be
/// "the same" (docs/contract.md §4, invariant 5).
///
/// The same rule is applied to a new event and to the stored one read back from its file, so it sees only
/// what an event file keeps: `fields` and, for sources that store a nested document, `resource`. A rule is
/// named, and two rules are equal when their names are: sources publish theirs by event source, and
/// whoever reads a stored event back looks the rule up there.
public struct FingerprintRule: Sendable, Equatable, CustomStringConvertible {
    public let name: String
    private let compute: @Sendable (_ fields: [FormParameter], _ resource: JSONValue?) -> String

    public init(name: String, compute: @escaping @Sendable (_ fields: [FormParameter], _ resource: JSONValue?) -> String) {
        self.name = name
        self.compute = compute
    }

    public func fingerprint(fields: [FormParameter], resource: JSONValue?) -> String {
        compute(fields, resource)
    }

    public static func == (lhs: FingerprintRule, rhs: FingerprintRule) -> Bool { lhs.name == rhs.name }

    public var description: String { name }

    /// Every field, and the resource when there is one.
    public static let allFields = FingerprintRule(name: "all-fields") { fields, resource in
        Event.fingerprint(of: fields, resource: resource)
    }

    /// Every field but `ignored`: fields that identify a delivery rather than the payment (a nonce drawn anew
    /// for each notification), which a retry may change without being a conflict.
    public static func excluding(_ ignored: Set<String>) -> FingerprintRule {
        guard !ignored.isEmpty else { return allFields }
        return FingerprintRule(name: "all-fields-but:" + ignored.sorted().joined(separator: ",")) { fields, resource in
            Event.fingerprint(of: fields, excluding: ignored, resource: resource)
        }
    }
}
