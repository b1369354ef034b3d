public import PayhookCore

/// Reads the parameters of an XxPay or Jeepay notification, strictly (FormQuery's rules: UTF-8, no repeated
/// name, no malformed escape).
enum MerchantNotifyForm {
    /// The query's parameters, then the body's; a name in both is as repeated as a name twice in one, since
    /// which copy was signed cannot be known.
    static func read(_ request: CallbackRequest, query: Bool) throws(Refusal) -> [FormParameter] {
        var parameters: [FormParameter] = []
        do {
            if query, let text = request.query { parameters = try FormQuery.decode(text) }
            if !request.body.isEmpty {
                guard let body = String(validating: request.body, as: UTF8.self) else {
                    throw Refusal.malformed("the body is not UTF-8")
                }
                for parameter in try FormQuery.decode(body) {
                    if parameters.contains(where: { $0.name == parameter.name }) {
                        throw Refusal.malformed(FormQueryError.repeatedName(parameter.name).description + " (query and body)")
                    }
                    parameters.append(parameter)
                }
            }
        } catch let error as FormQueryError {
            throw .malformed(error.description)
        } catch let error as Refusal {
            throw error
        } catch {
            throw .malformed("\(error)")
        }
        guard !parameters.isEmpty else { throw .malformed("the notification holds no parameters") }
        return parameters
    }

    static func values(_ parameters: [FormParameter]) -> [String: String] {
        var values: [String: String] = [:]
        for parameter in parameters { values[parameter.name] = parameter.value }
        return values
    }

    /// Epoch milliseconds as XxPay and Jeepay write times (`paySuccTime`, `reqTime`).
    static func milliseconds(_ text: String?) -> Int64? {
        text.flatMap(DecimalDigits.nonNegative)
    }
}
