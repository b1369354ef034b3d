// Fuzz target: the MD5 `&key=` family of merchant notifications (Sources/PayhookXxPay): XxPaySource,
// JeepaySource and MD5KeySigning.
//
// Tenants hold the keys of Fixtures/secrets: XxPay's merchant 20001223 (xxpay.reskey, after a rotated-out key)
// and two Jeepay apps (jeepay-j1.appsecret; jeepay.appsecret after a rotated-out key). The replay window is
// nine years, so the vectors of Fixtures/xxpay and Fixtures/jeepay verify as they are. Every input is used
// three ways.
//
// 1. Raw, as an XxPay notification (the input's length modulo 3 picks an empty POST with the input as its
//    query, a GET, or a POST with the input as its form body) and as a Jeepay form body: process never traps
//    and gives exactly the verdict an independent reading of the rules gives (strict form decoding, the routing
//    field, the MD5 over the non-empty `name=value&` strings sorted ignoring ASCII case and `key=` + secret,
//    compared in either case, then the moved-parameter, status, order, amount and time checks), with the
//    documented status and a reason. An accepted event: MD5KeySigning.verify succeeds with the tenant's keys at
//    the event's key position, the dedupe key is [mchId, mchOrderNo, status] or [mchNo, mchOrderNo, state], id
//    = SHA-256 of the key's text, amount >= 0, fields = the non-empty parameters but `sign`, raw.body = the
//    body.
// 2. Wherever the input's parameters carry a sign: the sign with its letters' case flipped verifies exactly as
//    the sign does (the same key position, or not at all).
// 3. As the parameters of a notification (decoded, or split loosely; now and then with `&name=` of a key
//    field put inside a value), routed to a tenant and signed with one of its keys by an independent signer, sent in a fuzz-chosen encoding, order, sign case and request form
//    (query, GET, body, or split between query and body): the verdict the rules give, never unverified; one
//    character of one signed value changed is never accepted nor gets past the signature.
//
// Messages never print a secret or an expected sign.

import Foundation
import PayhookCore
import PayhookCrypto
import PayhookXxPay

private let xxPath = "/notify/xxpay"
private let jeePath = "/notify/jeepay"
/// 2026-01-03T00:00:00Z, the clock of the other targets.
private let now: Int64 = 1_767_398_400_000
/// Nine years: back to January 2017, before the XxPay vector's paySuccTime.
private let window: Int64 = 9 * 365 * 86_400_000

private let secrets = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fixtures/secrets")
private func secret(_ name: String) -> Secret {
    guard let data = try? Data(contentsOf: secrets.appendingPathComponent(name)) else { fatalError("cannot read Fixtures/secrets/\(name)") }
    var text = String(decoding: data, as: UTF8.self)
    while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
    return Secret(text)
}

private let xxTenant = XxPayTenant(path: xxPath, mchID: "20001223", keys: [Secret("rotated-out-reskey"), secret("xxpay.reskey")], line: 1)
private let jeeTenants = [
    JeepayTenant(path: jeePath, mchNo: "M1747033666", appID: "68219e426e70ed6a5e4229b6", keys: [secret("jeepay-j1.appsecret")], line: 2),
    JeepayTenant(
        path: jeePath, mchNo: "M1700000000", appID: "65a0b1c2d3e4f5a6b7c8d9e0", keys: [Secret("rotated-out-appsecret"), secret("jeepay.appsecret")],
        line: 3),
]
/// Tenants of other paths: the sources must not know them.
private let xxElsewhere = XxPayTenant(path: "/elsewhere", mchID: "20001224", keys: [Secret("elsewhere")], line: 4)
private let jeeElsewhere = JeepayTenant(path: "/elsewhere", mchNo: "M1", appID: "elsewhere-app", keys: [Secret("elsewhere")], line: 5)
private let xxSource = XxPaySource(path: xxPath, tenants: [xxTenant, xxElsewhere], maxCallbackAgeMilliseconds: window)
private let jeeSource = JeepaySource(path: jeePath, tenants: jeeTenants + [jeeElsewhere], maxCallbackAgeMilliseconds: window)

private let xxStates: Set<String> = ["-2", "-1", "0", "1", "2", "3"]
private let jeeStates: Set<String> = ["0", "1", "2", "3", "4", "5", "6"]
/// The key fields of each source as their comments list them: no other value may re-split into one.
private let xxKeyFields = ["mchId", "mchOrderNo", "status", "amount", "payOrderId", "channelOrderNo", "paySuccTime", "currency"]
private let jeeKeyFields = ["mchNo", "appId", "mchOrderNo", "state", "amount", "payOrderId", "channelOrderNo", "successTime", "currency", "reqTime"]

@_cdecl("LLVMFuzzerTestOneInput")
public func md5NotifyFuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = fuzzBytes(data, size)
    var choices = Choices(bytes)
    let text = String(decoding: bytes, as: UTF8.self)
    let xxRequest: CallbackRequest
    switch bytes.count % 3 {
    case 0: xxRequest = request(xxPath, method: "POST", query: text, body: [])
    case 1: xxRequest = request(xxPath, method: "GET", query: text, body: [])
    default: xxRequest = request(xxPath, method: "POST", query: nil, body: bytes)
    }
    checkXxPay(xxRequest, reading: "raw")
    checkJeepay(request(jeePath, method: "POST", query: nil, body: bytes), reading: "raw")
    let decoded = try? FormQuery.decode(text)
    if let decoded { checkSignCase(decoded, choices: &choices) }
    checkSigned(decoded ?? looseFields(text), choices: &choices)
    return 0
}

private func request(_ path: String, method: String, query: String?, body: [UInt8]) -> CallbackRequest {
    CallbackRequest(
        method: method, target: path + (query.map { "?" + $0 } ?? ""), query: query,
        headers: body.isEmpty ? [] : [(name: "Content-Type", value: "application/x-www-form-urlencoded")], body: body,
        remoteAddress: "127.0.0.1", receivedAtMilliseconds: now)
}

private func sameBytes(_ a: String, _ b: String) -> Bool { a.utf8.elementsEqual(b.utf8) }

private func contains(_ haystack: String, _ needle: String) -> Bool {
    firstRange(of: Array(needle.utf8), in: Array(haystack.utf8)) != nil
}

// MARK: - The signature, independently

/// Java's String.CASE_INSENSITIVE_ORDER restricted to ASCII letters (MD5KeySigning's documented reading): UTF-16
/// units compared with A-Z taken as a-z; a prefix first.
private func caseInsensitiveOrder(_ a: String, _ b: String) -> Int {
    let x = Array(a.utf16), y = Array(b.utf16)
    func fold(_ u: UInt16) -> UInt16 { (0x41...0x5A).contains(u) ? u + 0x20 : u }
    for i in 0..<min(x.count, y.count) where fold(x[i]) != fold(y[i]) { return fold(x[i]) < fold(y[i]) ? -1 : 1 }
    return x.count == y.count ? 0 : (x.count < y.count ? -1 : 1)
}

/// `name=value&` for every non-empty value but sign's, sorted (stably, as Java's object sort is), then `key=` and
/// the secret.
private func message(_ params: [FormParameter], secret: Secret) -> [UInt8] {
    let pieces = params.filter { !sameBytes($0.name, "sign") && !$0.value.isEmpty }.map { $0.name + "=" + $0.value + "&" }
    let order = pieces.indices.sorted { i, j in
        let c = caseInsensitiveOrder(pieces[i], pieces[j])
        return c != 0 ? c < 0 : i < j
    }
    return order.flatMap { Array(pieces[$0].utf8) } + Array("key=".utf8) + Array(secret.value.utf8)
}

private func signFor(_ params: [FormParameter], secret: Secret) -> [UInt8] { Digest.md5(message(params, secret: secret)) }

/// 32 hex digits in either case, as bytes.
private func presented(_ sign: String) -> [UInt8]? {
    let b = Array(sign.utf8)
    guard b.count == 32 else { return nil }
    func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x41 + 10
        case 0x61...0x66: return c - 0x61 + 10
        default: return nil
        }
    }
    var out: [UInt8] = []
    for i in stride(from: 0, to: 32, by: 2) {
        guard let h = nibble(b[i]), let l = nibble(b[i + 1]) else { return nil }
        out.append(h << 4 | l)
    }
    return out
}

/// The 1-based position of the first secret `sign` is the signature of, with every secret tried.
private func matchingKey(_ params: [FormParameter], sign: String?, keys: [Secret]) -> Int? {
    guard let sign, let bytes = presented(sign) else { return nil }
    return keys.firstIndex { signFor(params, secret: $0) == bytes }.map { $0 + 1 }
}

/// A value standing for several `name=value&` strings: a key field holding `&` or `=`, or any value holding
/// `&name=` for a key field, by bytes.
private func movesParameter(_ params: [FormParameter], keyFields: [String]) -> Bool {
    for p in params where !sameBytes(p.name, "sign") {
        if keyFields.contains(where: { sameBytes($0, p.name) }), p.value.utf8.contains(where: { $0 == UInt8(ascii: "&") || $0 == UInt8(ascii: "=") }) {
            return true
        }
        if keyFields.contains(where: { contains(p.value, "&" + $0 + "=") }) { return true }
    }
    return false
}

// MARK: - The verdict the rules give

private struct Expected {
    var outcome: Outcome
    var tenant: String? = nil
    var params: [FormParameter] = []
    var keys: [Secret] = []
    var position = 0
    var keyParts: [String] = []
    var amount: Int64 = 0
    var currency = ""
}

/// Query then body, strictly (FormQuery's rules, which the query-decoder target holds to their own
/// transcription); a name in both is repeated. nil: malformed.
private func parameters(_ request: CallbackRequest, query: Bool) -> [FormParameter]? {
    var params: [FormParameter] = []
    if query, let text = request.query {
        guard let decoded = try? FormQuery.decode(text) else { return nil }
        params = decoded
    }
    if !request.body.isEmpty {
        guard let text = String(validating: request.body, as: UTF8.self), let decoded = try? FormQuery.decode(text) else { return nil }
        for p in decoded {
            if params.contains(where: { $0.name == p.name }) { return nil }
            params.append(p)
        }
    }
    return params.isEmpty ? nil : params
}

private func value(_ params: [FormParameter], _ name: String) -> String? {
    params.last { sameBytes($0.name, name) }?.value
}

/// Digits only, no leading zero, at most 18 (Support's isAmount): amounts in fen and epoch milliseconds.
private func number(_ text: String?) -> Int64? {
    guard isAmount(text) else { return nil }
    return Int64(text!)
}

private func currencyCode(_ text: String?) -> String {
    guard let text, !text.isEmpty else { return "CNY" }
    return String(decoding: text.utf8.map { (0x61...0x7A).contains($0) ? $0 - 0x20 : $0 }, as: UTF8.self)
}

private func expectedXxPay(_ request: CallbackRequest) -> Expected {
    guard let params = parameters(request, query: true) else { return Expected(outcome: .malformed) }
    guard let mchID = value(params, "mchId"), !mchID.isEmpty else { return Expected(outcome: .malformed) }
    guard sameBytes(mchID, xxTenant.mchID) else { return Expected(outcome: .unknownTenant) }
    var result = Expected(outcome: .badSignature, tenant: xxTenant.mchID, params: params, keys: xxTenant.keys)
    guard let position = matchingKey(params, sign: value(params, "sign"), keys: xxTenant.keys) else { return result }
    result.position = position
    result.outcome = .semantic
    guard !movesParameter(params, keyFields: xxKeyFields) else { return result }
    let status = value(params, "status") ?? ""
    guard xxStates.contains(where: { sameBytes($0, status) }) else { return result }
    guard let order = value(params, "mchOrderNo"), !order.isEmpty, !(value(params, "payOrderId") ?? "").isEmpty else { return result }
    guard let amount = number(value(params, "amount")), let paid = number(value(params, "paySuccTime")), paid >= now - window else { return result }
    result.outcome = .accepted
    result.keyParts = [xxTenant.mchID, order, status]
    result.amount = amount
    result.currency = currencyCode(value(params, "currency"))
    return result
}

private func expectedJeepay(_ request: CallbackRequest) -> Expected {
    guard let params = parameters(request, query: false) else { return Expected(outcome: .malformed) }
    guard let appID = value(params, "appId"), !appID.isEmpty else { return Expected(outcome: .malformed) }
    guard let tenant = jeeTenants.first(where: { sameBytes($0.appID, appID) }) else { return Expected(outcome: .unknownTenant) }
    var result = Expected(outcome: .badSignature, tenant: tenant.mchNo, params: params, keys: tenant.keys)
    guard let position = matchingKey(params, sign: value(params, "sign"), keys: tenant.keys) else { return result }
    result.position = position
    result.outcome = .unknownTenant
    guard let mchNo = value(params, "mchNo"), sameBytes(mchNo, tenant.mchNo) else { return result }
    result.outcome = .semantic
    guard !movesParameter(params, keyFields: jeeKeyFields) else { return result }
    let state = value(params, "state") ?? ""
    guard jeeStates.contains(where: { sameBytes($0, state) }) else { return result }
    guard let order = value(params, "mchOrderNo"), !order.isEmpty, !(value(params, "payOrderId") ?? "").isEmpty else { return result }
    guard let amount = number(value(params, "amount")) else { return result }
    if let success = value(params, "successTime"), number(success) == nil { return result }
    guard let made = number(value(params, "reqTime")), made >= now - window else { return result }
    result.outcome = .accepted
    result.keyParts = [tenant.mchNo, order, state]
    result.amount = amount
    result.currency = currencyCode(value(params, "currency"))
    return result
}

// MARK: - 1. Verdicts and events

@discardableResult
private func checkXxPay(_ request: CallbackRequest, reading: String) -> Outcome {
    let verdict = xxSource.process(request, nowMilliseconds: now)
    check(verdict, expected: expectedXxPay(request), request: request, source: XxPaySource.sourceName, reading: "xxpay, \(reading)")
    return Outcome(verdict.outcome)
}

@discardableResult
private func checkJeepay(_ request: CallbackRequest, reading: String) -> Outcome {
    let verdict = jeeSource.process(request, nowMilliseconds: now)
    check(verdict, expected: expectedJeepay(request), request: request, source: JeepaySource.sourceName, reading: "jeepay, \(reading)")
    return Outcome(verdict.outcome)
}

private func check(_ verdict: Verdict, expected: Expected, request: CallbackRequest, source: String, reading: String) {
    let outcome = Outcome(verdict.outcome)
    if outcome != expected.outcome { violated("the verdict differs from the rules (\(reading))", "\(outcome) instead of \(expected.outcome)") }
    if case .refused(let refusal) = verdict.outcome {
        if refusal.reason.isEmpty { violated("a refusal without a reason (\(reading))") }
        let status = [Outcome.malformed: 400, .semantic: 400, .unknownTenant: 401, .badSignature: 401][outcome]
        if refusal.status != status { violated("a refusal with another status than its kind's (\(reading))", "\(refusal.status)") }
    }
    if verdict.tenant != expected.tenant { violated("the tenant label is not the tenant the notification named (\(reading))", verdict.tenant ?? "nil") }
    if verdict.source != source { violated("the source label is not the path's source (\(reading))", verdict.source) }
    guard case .accepted(let event) = verdict.outcome else { return }
    let keyText = event.dedupeKey.text
    if event.id != Hex.encode(Digest.sha256(Array(keyText.utf8))) { violated("an event id that is not the SHA-256 of its dedupe key", keyText) }
    if event.amount < 0 || event.amount != expected.amount { violated("the amount is not the notification's fen", "\(event.amount)") }
    guard event.source == source, event.dedupeKey.source == source, event.dedupeKey.parts.count == expected.keyParts.count,
        zip(event.dedupeKey.parts, expected.keyParts).allSatisfy(sameBytes), sameBytes(event.tenant, expected.keyParts[0]),
        sameBytes(event.orderRef, expected.keyParts[1]), sameBytes(event.status, expected.keyParts[2])
    else { violated("the dedupe key is not the documented one (\(reading))", keyText) }
    if !sameBytes(event.currency, expected.currency) { violated("the currency is not the notification's in upper case", event.currency) }
    if event.fields.contains(where: { sameBytes($0.name, "sign") }) { violated("sign is among the event's fields") }
    let fields = expected.params.filter { !sameBytes($0.name, "sign") && !$0.value.isEmpty }
    guard event.fields.count == fields.count, zip(event.fields, fields).allSatisfy({ sameBytes($0.name, $1.name) && sameBytes($0.value, $1.value) })
    else { violated("the event's fields are not the signed parameters (\(reading))", keyText) }
    if Array(event.raw.body.utf8) != request.body { violated("raw.body is not the body as received") }
    if event.verifiedWith != "md5" { violated("verified_with is not md5", event.verifiedWith) }
    if event.secretPosition != expected.position { violated("the key position is not the one that signed", "\(event.secretPosition.map(String.init) ?? "nil")") }
    guard case .success(let position) = MD5KeySigning.verify(expected.params, sign: value(expected.params, "sign"), secrets: expected.keys),
        position == expected.position
    else { violated("an accepted notification that MD5KeySigning.verify does not verify with the tenant's keys (\(reading))") }
}

// MARK: - 2. The sign's letter case

private func flippedCase(_ text: String) -> String {
    String(decoding: text.utf8.map { (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) ? $0 ^ 0x20 : $0 }, as: UTF8.self)
}

private func same(_ a: Result<Int, Refusal>, _ b: Result<Int, Refusal>) -> Bool {
    switch (a, b) {
    case (.success(let x), .success(let y)): return x == y
    case (.failure, .failure): return true
    default: return false
    }
}

private func checkSignCase(_ params: [FormParameter], choices: inout Choices) {
    guard let sign = value(params, "sign") else { return }
    let keySets = [xxTenant.keys] + jeeTenants.map(\.keys)
    let keys = keySets[choices.below(keySets.count)]
    let original = MD5KeySigning.verify(params, sign: sign, secrets: keys)
    if !same(original, MD5KeySigning.verify(params, sign: flippedCase(sign), secrets: keys)) {
        violated("a sign with its letters' case flipped does not verify as the sign does")
    }
    let documented = matchingKey(params, sign: sign, keys: keys)
    switch original {
    case .success(let position) where position == documented: break
    case .failure where documented == nil: break
    default: violated("MD5KeySigning.verify disagrees with the documented rule on a sign")
    }
}

// MARK: - 3. Correctly signed notifications

/// The input's parameters when it does not decode: split on `&` and the first `=`, taken as text as they are,
/// empty and repeated names dropped.
private func looseFields(_ text: String) -> [FormParameter] {
    var out: [FormParameter] = []
    for piece in text.utf8.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
        let eq = piece.firstIndex(of: UInt8(ascii: "=")) ?? piece.endIndex
        let name = String(decoding: piece[..<eq], as: UTF8.self)
        let value = eq < piece.endIndex ? String(decoding: piece[piece.index(after: eq)...], as: UTF8.self) : ""
        guard !name.isEmpty, !out.contains(where: { $0.name == name }) else { continue }
        out.append(FormParameter(name: name, value: value))
    }
    return out
}

private func setting(_ params: inout [FormParameter], _ name: String, to value: String, choices: inout Choices) {
    if let index = params.firstIndex(where: { sameBytes($0.name, name) }) {
        params[index] = FormParameter(name: name, value: value)
    } else {
        params.insert(FormParameter(name: name, value: value), at: choices.below(params.count + 1))
    }
}

private func checkSigned(_ input: [FormParameter], choices: inout Choices) {
    var params = input.filter { !sameBytes($0.name, "sign") }
    let xxpay = choices.flag()
    let keys: [Secret]
    if xxpay {
        setting(&params, "mchId", to: xxTenant.mchID, choices: &choices)
        keys = xxTenant.keys
    } else {
        let named = value(params, "appId").flatMap { id in jeeTenants.first { sameBytes($0.appID, id) } }
        let tenant = named ?? jeeTenants[choices.below(jeeTenants.count)]
        setting(&params, "appId", to: tenant.appID, choices: &choices)
        // Now and then the input's own mchNo, which is another merchant's unless it happens to be this one's.
        if choices.below(8) != 0 { setting(&params, "mchNo", to: tenant.mchNo, choices: &choices) }
        keys = tenant.keys
    }
    // Now and then a value holding `&name=` for a key field, somewhere among its own characters: refused as
    // semantic whatever follows (MD5KeySigning.checkMoves).
    if choices.below(4) == 0, !params.isEmpty {
        let target = choices.below(params.count)
        let fields = xxpay ? xxKeyFields : jeeKeyFields
        var scalars = Array(params[target].value.unicodeScalars)
        scalars.insert(contentsOf: ("&" + fields[choices.below(fields.count)] + "=").unicodeScalars, at: choices.below(scalars.count + 1))
        var moved = String.UnicodeScalarView()
        moved.append(contentsOf: scalars)
        params[target] = FormParameter(name: params[target].name, value: String(moved))
    }
    if choices.flag() {
        for i in stride(from: params.count - 1, to: 0, by: -1) { params.swapAt(i, choices.below(i + 1)) }
    }
    // Signed in the order sent: names equal but for case tie, and Java's sort keeps them in map order.
    var sign = Hex.encode(signFor(params, secret: keys[choices.below(keys.count)]))
    switch choices.below(3) {
    case 0: sign = sign.uppercased()
    case 1: break
    default: sign = String(decoding: sign.utf8.map { choices.flag() && $0 >= 0x61 ? $0 - 0x20 : $0 }, as: UTF8.self)
    }
    params.insert(FormParameter(name: "sign", value: sign), at: choices.below(params.count + 1))
    let encoding = FormEncoding.allCases[choices.below(FormEncoding.allCases.count)]
    let form = choices.below(4)
    func send(_ params: [FormParameter]) -> CallbackRequest {
        let whole = formQuery(params, encoding: encoding)
        if !xxpay { return request(jeePath, method: "POST", query: nil, body: Array(whole.utf8)) }
        switch form {
        case 0: return request(xxPath, method: "POST", query: whole, body: [])
        case 1: return request(xxPath, method: "GET", query: whole, body: [])
        case 2: return request(xxPath, method: "POST", query: nil, body: Array(whole.utf8))
        default:
            // Split between the query and the body.
            let cut = params.count / 2
            return request(
                xxPath, method: "POST", query: formQuery(Array(params[..<cut]), encoding: encoding),
                body: Array(formQuery(Array(params[cut...]), encoding: encoding).utf8))
        }
    }
    let sent = send(params)
    let outcome = xxpay ? checkXxPay(sent, reading: "signed") : checkJeepay(sent, reading: "signed")
    if outcome == .badSignature { violated("a notification signed with the tenant's key under the documented rule was refused as unverified") }
    if outcome == .malformed { violated("a signed notification encoded by the documented rules was refused as malformed") }

    // One character of one signed value changed: never accepted, never past the signature.
    let signed = params.indices.filter { !sameBytes(params[$0].name, "sign") && !params[$0].value.isEmpty }
    guard !signed.isEmpty else { return }
    let target = signed[choices.below(signed.count)]
    var scalars = Array(params[target].value.unicodeScalars)
    let position = choices.below(scalars.count)
    let replacement = Unicode.Scalar(UInt8(0x21 + choices.below(94)))
    scalars[position] = scalars[position] == replacement ? (replacement == "a" ? "b" : "a") : replacement
    var tampered = params
    var changed = String.UnicodeScalarView()
    changed.append(contentsOf: scalars)
    tampered[target] = FormParameter(name: params[target].name, value: String(changed))
    let forged = send(tampered)
    let result = (xxpay ? xxSource.process(forged, nowMilliseconds: now) : jeeSource.process(forged, nowMilliseconds: now)).outcome
    switch result {
    case .accepted, .refused(.semantic):
        violated("a notification with one character of a signed value changed got past the signature", "\(Outcome(result))")
    default: break
    }
}
