/// The defence of signed strings without escaping (`a=1&b=2`, signed by Alipay, XxPay and Jeepay): a value
/// holding `&name=` signs the same as two parameters, so a genuine notification could be re-split into
/// another event, or two of its parameters merged into one (docs/protocols.md §9.3, §10.2). Fields that decide
/// an event's identity or amount never hold `&` or `=`, and no other value may hold `&name=` for one of them.
public enum FieldMoves {
    /// The refusal for the first parameter (other than `signParameter`) that breaks the rule; nil when none does.
    public static func refusal(_ parameters: [FormParameter], keyFields: [String], signParameter: String = "sign") -> Refusal? {
        let key = Set(keyFields)
        for parameter in parameters where parameter.name != signParameter {
            if key.contains(parameter.name), parameter.value.utf8.contains(where: { $0 == UInt8(ascii: "&") || $0 == UInt8(ascii: "=") }) {
                return .semantic("\(parameter.name) holds '&' or '=', which no genuine \(parameter.name) does")
            }
            guard parameter.value.utf8.contains(UInt8(ascii: "&")) else { continue }
            // By bytes: String's contains compares characters, and `=` followed by a combining mark (or `&` after
            // a prepended one) is another character, so a moved parameter would go unseen.
            for name in keyFields where parameter.value.utf8.contains(("&" + name + "=").utf8) {
                return .semantic("\(LogText.printable(parameter.name, limit: 32)) holds '&\(name)=': a signed parameter moved inside another's value")
            }
        }
        return nil
    }
}
