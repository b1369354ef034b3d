// Fuzz target: UnifiedSource.process, the unified platform's verifier (decode, tenant, signature,
// semantic checks, event).
//
// Every input is used twice.
//
// As the raw query: process never traps, and its verdict is exactly the one `expectedVerdict` derives
// from the README's rules with an independently written string-to-sign (malformed, unknown tenant, bad
// signature, semantic refusal or accepted); an accepted event carries exactly the signed fields.
//
// As the fields of a callback: the input's parameters (decoded, or split loosely when they do not
// decode) get the chosen tenant's domainCode and are signed with one of its secrets, then sent in a
// fuzz-chosen encoding, parameter order and sign case. That callback must be accepted, or refused only
// for a semantic reason, exactly when the semantic rules say so. Changing one hex digit of its sign to
// another value, or one character to a non-hex one, must never verify.

import PayhookCore
import PayhookCrypto
import PayhookUnified

private let path = "/notify/unified"
/// 2026-01-03T00:00:00Z: after every fixture's payTime, so the seeds verify and pass the checks.
private let now: Int64 = 1_767_398_400_000
/// Six days: the default ledger retention of seven days less the one-day margin.
private let replayWindow: Int64 = 6 * 86_400_000
private let earliestPayTime: Int64 = 946_684_800_000  // 2000-01-01T00:00:00Z
private let futureSlack: Int64 = 86_400_000  // one day

private let tenants = [
    // As in Fixtures/demo.toml, so the fixture callbacks verify.
    UnifiedTenant(path: path, domainCode: "demo", secrets: [Secret("demo-secret-rotate-me")], signScheme: .valuesSHA1, line: 1),
    UnifiedTenant(path: path, domainCode: "sibling", secrets: [Secret("sibling-demo-salt")], signScheme: .saltedSHA1, line: 2),
    // Rotation, and a secret that sorts differently by UTF-16 units than by scalars (U+FF5E vs U+1F600).
    UnifiedTenant(
        path: path, domainCode: "rotating", secrets: [Secret("old-secret"), Secret("new-secret-～😀")], signScheme: .valuesSHA1,
        line: 3),
    // Configured for another path: this source must not know it.
    UnifiedTenant(path: "/elsewhere", domainCode: "elsewhere", secrets: [Secret("x")], signScheme: .valuesSHA1, line: 4),
]
private let source = UnifiedSource(path: path, tenants: tenants)
private let tenantsHere = tenants.filter { $0.path == path }

@_cdecl("LLVMFuzzerTestOneInput")
public func unifiedVerifierFuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = fuzzBytes(data, size)
    let query = String(decoding: bytes, as: UTF8.self)
    // Decoded once here for both halves: the decoder is most of the cost, and has its own target.
    let decoded = try? FormQuery.decode(query)
    checkRawQuery(query, decoded: decoded)
    var choices = Choices(bytes)
    checkSignedCallback(fields(of: query, decoded: decoded), choices: &choices)
    return 0
}

// MARK: - Raw query

private func checkRawQuery(_ query: String, decoded: [FormParameter]?) {
    let verdict = source.process(request(query), nowMilliseconds: now).outcome
    let expected = expectedOutcome(decoded)
    if Outcome(verdict) != expected { violated("verdict differs from the documented rules", "\(verdict) instead of \(expected)") }
    if case .accepted(let event) = verdict, let decoded {
        checkEvent(event, parameters: decoded, query: query)
    }
}

private func expectedOutcome(_ decoded: [FormParameter]?) -> Outcome {
    guard let parameters = decoded else { return .malformed }
    let values = fieldMap(parameters)
    guard let domainCode = values["domainCode"], !domainCode.isEmpty else { return .malformed }
    guard let tenant = tenantsHere.first(where: { $0.domainCode == domainCode }) else { return .unknownTenant }
    guard let sign = values["sign"], let presented = hexBytes(sign), presented.count == 20 else { return .badSignature }
    let verifies = tenant.secrets.contains { secret in
        Digest.sha1(stringToSign(parameters, secret: secret.value, scheme: tenant.signScheme)) == presented
    }
    guard verifies else { return .badSignature }
    return semanticallyValid(parameters, scheme: tenant.signScheme) ? .accepted : .semantic
}

// MARK: - Correctly signed callbacks

/// The input's parameters without `sign`: decoded when the query decodes, else split loosely (raw text
/// between `&` and `=`), so that inputs the decoder refuses still become callbacks to sign.
private func fields(of query: String, decoded: [FormParameter]?) -> [FormParameter] {
    if let decoded {
        return decoded.filter { $0.name != "sign" }
    }
    var out: [FormParameter] = []
    for piece in query.utf8.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
        let eq = piece.firstIndex(of: UInt8(ascii: "=")) ?? piece.endIndex
        let name = String(decoding: piece[..<eq], as: UTF8.self)
        let value = eq < piece.endIndex ? String(decoding: piece[piece.index(after: eq)...], as: UTF8.self) : ""
        // A repeated name would make the callback malformed rather than signed: keep the first.
        guard !name.isEmpty, name != "sign", !out.contains(where: { $0.name == name }) else { continue }
        out.append(FormParameter(name: name, value: value))
    }
    return out
}

private func checkSignedCallback(_ input: [FormParameter], choices: inout Choices) {
    var parameters = input
    // The tenant the input names, else one picked by the input; its domainCode goes into the callback.
    let named = fieldMap(parameters)["domainCode"].flatMap { code in tenantsHere.first { $0.domainCode == code } }
    let tenant = named ?? tenantsHere[choices.below(tenantsHere.count)]
    if let index = parameters.firstIndex(where: { $0.name == "domainCode" }) {
        parameters[index] = FormParameter(name: "domainCode", value: tenant.domainCode)
    } else {
        parameters.insert(FormParameter(name: "domainCode", value: tenant.domainCode), at: choices.below(parameters.count + 1))
    }
    let secret = tenant.secrets[choices.below(tenant.secrets.count)].value
    let sign = lowercaseHex(Digest.sha1(stringToSign(parameters, secret: secret, scheme: tenant.signScheme)))
    // README: `sign` is accepted in either case.
    let presentedSign = choices.flag() ? sign.uppercased() : sign
    let signIndex = choices.below(parameters.count + 1)
    let encoding = FormEncoding.allCases[choices.below(FormEncoding.allCases.count)]

    func send(_ sign: String) -> (Verdict.Outcome, String) {
        var all = parameters
        all.insert(FormParameter(name: "sign", value: sign), at: signIndex)
        let query = formQuery(all, encoding: encoding)
        return (source.process(request(query), nowMilliseconds: now).outcome, query)
    }

    let (verdict, query) = send(presentedSign)
    let valid = semanticallyValid(parameters, scheme: tenant.signScheme)
    switch verdict {
    case .accepted(let event):
        if !valid { violated("a callback failing the semantic checks was accepted", query) }
        checkEvent(event, parameters: parameters, query: query)
    case .refused(.semantic):
        if valid { violated("a correctly signed, semantically valid callback was refused as semantic", query) }
    default:
        violated("a correctly signed callback was refused for a non-semantic reason", "\(verdict) for \(query)")
    }

    // One hex digit changed to another value: the 20 presented bytes differ, so nothing may verify.
    var digits = Array(sign.utf8)
    let position = choices.below(digits.count)
    let old = Int(hexValue(digits[position])!)
    digits[position] = Array("0123456789abcdef".utf8)[(old + 1 + choices.below(15)) % 16]
    let (flipped, flippedQuery) = send(String(decoding: digits, as: UTF8.self))
    guard case .refused(.badSignature) = flipped else {
        violated("a sign with one hex digit changed was not refused as a bad signature", "\(flipped) for \(flippedQuery)")
    }
    // One character changed to something that is not hex at all.
    digits = Array(sign.utf8)
    digits[position] = Array("gG-+ %zZ".utf8)[choices.below(8)]
    let (broken, brokenQuery) = send(String(decoding: digits, as: UTF8.self))
    guard case .refused(.badSignature) = broken else {
        violated("a sign with a non-hex character was not refused as a bad signature", "\(broken) for \(brokenQuery)")
    }
}

// MARK: - The rules, written from the README

/// values-sha1: every non-empty value except `sign`'s, plus the secret, sorted by UTF-16 code units,
/// concatenated. salted-sha1: `name=value` of every non-empty parameter except `sign`, sorted by name,
/// joined with `&`, the secret before and after.
private func stringToSign(_ parameters: [FormParameter], secret: String, scheme: UnifiedSignScheme) -> [UInt8] {
    let signed = parameters.filter { $0.name != "sign" && !$0.value.isEmpty }
    switch scheme {
    case .valuesSHA1:
        let values = (signed.map(\.value) + [secret]).sorted { Array($0.utf16).lexicographicallyPrecedes(Array($1.utf16)) }
        return values.flatMap { Array($0.utf8) }
    case .saltedSHA1:
        let pairs = signed.sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
            .map { Array($0.name.utf8) + [UInt8(ascii: "=")] + Array($0.value.utf8) }
        var out = Array(secret.utf8)
        for (index, pair) in pairs.enumerated() { out += (index == 0 ? [] : [UInt8(ascii: "&")]) + pair }
        return out + Array(secret.utf8)
    }
}

/// README: the documented checks, the replay window (the default retention of 7 days minus one), and under
/// values-sha1 no other parameter carrying requestKey's value.
private func semanticallyValid(_ parameters: [FormParameter], scheme: UnifiedSignScheme) -> Bool {
    let values = fieldMap(parameters)
    let required = ["money", "requestKey", "payTime", "payStatus", "domainCode", "currencyType", "payTypeCode"]
    guard required.allSatisfy({ !(values[$0] ?? "").isEmpty }) else { return false }
    guard isAmount(values["money"]) else { return false }
    guard isAmount(values["payTime"]), let payTime = Int64(values["payTime"]!),
        payTime >= earliestPayTime, payTime <= now + futureSlack, payTime >= now - replayWindow
    else { return false }
    if scheme == .valuesSHA1 {
        let key = values["requestKey"]!
        if parameters.contains(where: { $0.name != "requestKey" && $0.value.utf8.elementsEqual(key.utf8) }) { return false }
    }
    let statuses = ["NOTPAY", "SUCCESSPAY", "FAILUREPAY", "NOTREFUND", "WAITREFUND", "SUCCESSREFUND", "FAILUREREFUND", "CLOSED"]
    guard statuses.contains(where: { $0.utf8.elementsEqual(values["payStatus"]!.utf8) }) else { return false }
    guard ["CNY", "USD"].contains(where: { $0.utf8.elementsEqual(values["currencyType"]!.utf8) }) else { return false }
    return ["Wechat", "Alipay", "ChinapayOld", "Paypal"].contains { $0.utf8.elementsEqual(values["payTypeCode"]!.utf8) }
}

/// An accepted event must carry exactly what was signed, and the documented key and id.
private func checkEvent(_ event: Event, parameters: [FormParameter], query: String) {
    let values = fieldMap(parameters)
    let signed = parameters.filter { $0.name != "sign" && !$0.value.isEmpty }
    let domainCode = values["domainCode"]!, requestKey = values["requestKey"]!, payStatus = values["payStatus"]!
    let key = DedupeKey(source: "unified", parts: [domainCode, requestKey, payStatus])
    let tenant = tenantsHere.first { $0.domainCode == domainCode }
    guard exactly(event.fields, signed), event.amount == Int64(values["money"]!), event.tenant == domainCode,
        event.orderRef == requestKey, event.status == payStatus, event.currency == values["currencyType"],
        event.dedupeKey == key, event.id == lowercaseHex(Digest.sha256(Array(key.text.utf8))),
        event.verifiedWith == tenant?.signScheme.rawValue, event.source == "unified",
        event.raw.target == path + "?" + query
    else { violated("the accepted event does not match the signed callback", "\(event) for \(query)") }
}

// MARK: - Helpers

private func request(_ query: String) -> CallbackRequest {
    CallbackRequest(
        method: "GET", target: path + "?" + query, query: query, body: [], remoteAddress: "127.0.0.1",
        receivedAtMilliseconds: now)
}

private func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case 0x30...0x39: return c - 0x30
    case 0x41...0x46: return c - 0x41 + 10
    case 0x61...0x66: return c - 0x61 + 10
    default: return nil
    }
}

private func hexBytes(_ text: String) -> [UInt8]? {
    let digits = Array(text.utf8)
    guard digits.count % 2 == 0 else { return nil }
    var out: [UInt8] = []
    for k in stride(from: 0, to: digits.count, by: 2) {
        guard let high = hexValue(digits[k]), let low = hexValue(digits[k + 1]) else { return nil }
        out.append(high << 4 | low)
    }
    return out
}

private func lowercaseHex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    return String(decoding: bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0f)]] }, as: UTF8.self)
}
