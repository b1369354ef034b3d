// Fuzz target: Alipay asynchronous notifications (Sources/PayhookAlipay) and the PayhookCore pieces they are
// read with: FormQuery.decodeBytes, TextCharset, DecimalDigits.fen(yuan:) and BeijingTime.
//
// One app (two tenants of it, gateway_notifications off and on; the input's length picks which: odd is on),
// sign_types RSA2 and RSA, charsets utf-8 and gbk, its seller_id, and two keys in rotation: Fixtures/alipay's
// a1 key first, then the test-only public key (Fixtures/alipay/test-only-alipay-public-key.pem) whose private
// half signs everything here. Every input is used three ways.
//
// 1. As a notification body, raw: process never traps and gives exactly the verdict an independent reading
//    of the rules gives (strict form decoding to bytes, app_id, charset, sign and sign_type, RSA over the
//    sorted non-empty parameters without sign, and without sign_type for trade notifications, then the
//    moved-parameter, seller_id, notify_time and trade or open-platform checks), with the documented status
//    and a reason. An accepted event: amount >= 0 (total_amount in fen; 0 for open-platform events), the dedupe
//    key [app_id, out_trade_no, trade_status, out_biz_no or ""] or [app_id, notify_type, notify_id], id =
//    SHA-256 of the key's text, fields = the signed parameters in wire order and never `sign`, raw.body = the
//    input, the second key's position, and its signature re-checked over AlipaySigning.content of the raw
//    bytes with the test key.
// 2. As the parameters of a notification (decoded, or split loosely when they do not decode; now and then
//    with `&name=` of a key field put inside a value), given the tenant's app_id and a fuzz-chosen sign_type, signed with the test-only private key
//    (Fixtures/alipay/test-only-alipay-private-key.pem) under the rule its kind uses, and sent in a
//    fuzz-chosen encoding and order: the same verdict as the independent reading, never unverified while its
//    sign_type is RSA2, RSA or absent; one byte of one signed value changed is never accepted nor gets past
//    the signature.
// 3. As text for the core pieces (the input, each form value, and values built from the input's choices):
//    TextCharset.gbk.decode agrees with iconv(3) given room enough and decodes its own re-encoding to the
//    same text; TextCharset.utf8.decode is UTF-8 validation; TextCharset(name:) knows exactly the ASCII
//    spellings utf-8, utf8 and gbk in any letter case; fen(yuan:) agrees with the rule as written (digits, no
//    leading zero, at most 15 of them, at most two decimals after a point with digits on both sides) and
//    what it accepts, printed back as yuan with two decimals, reads back to the same fen; BeijingTime agrees
//    with an independent calendar and prints back what it accepted.
//
// With PAYHOOK_FUZZ_WRITE_SEEDS=<folder> in the environment the binary writes its signed seed notifications
// (trade, refund, closed, RSA, GBK, open-platform under both rules) into that folder and exits: fuzz.sh does
// this for every run, so the seeds always match the test key and this target's tenant.

import Foundation
import Glibc
import PayhookAlipay
import PayhookCore
import PayhookCrypto

private let path = "/notify/alipay"
private let appID = "2021004100000001"
private let sellerID = "2088000000000002"
/// 2026-01-03T00:00:00Z, the clock of the other targets; the seeds were notified a minute before.
private let now: Int64 = 1_767_398_400_000
private let window = ReplayWindow.defaultMaxCallbackAgeMilliseconds

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fixtures/alipay")
private func fixture(_ name: String) -> [UInt8] {
    guard let data = try? Data(contentsOf: fixtures.appendingPathComponent(name)) else { fatalError("cannot read Fixtures/alipay/\(name)") }
    return Array(data)
}
private let privateKeyPEM = fixture("test-only-alipay-private-key.pem")
private let testKey: RSAPublicKey = {
    guard let key = try? RSAPublicKey(pem: fixture("test-only-alipay-public-key.pem")) else { fatalError("test-only public key unreadable") }
    return key
}()
private let oldKey: RSAPublicKey = {
    guard let key = try? RSAPublicKey(pem: fixture("a1-alipay-public-key.pem")) else { fatalError("a1 public key unreadable") }
    return key
}()
private let keys: [AlipayTenant.Key] = [.init(label: "a1-alipay-public-key.pem", key: oldKey), .init(label: "test-only", key: testKey)]

private func tenant(gateway: Bool) -> AlipayTenant {
    AlipayTenant(
        path: path, appID: appID, sellerID: sellerID, keys: keys, signTypes: [.rsa2, .rsa], charsets: [.utf8, .gbk],
        gatewayNotifications: gateway, line: 1)
}
/// The same app on another path, trusting the other way: neither source may use it.
private let elsewhere = AlipayTenant(path: "/elsewhere", appID: appID, keys: [keys[0]], gatewayNotifications: true, line: 2)
private let tradeSource = AlipaySource(path: path, tenants: [tenant(gateway: false), elsewhere])
private let gatewaySource = AlipaySource(path: path, tenants: [tenant(gateway: true), elsewhere])

private let tradeStates: Set<String> = ["WAIT_BUYER_PAY", "TRADE_SUCCESS", "TRADE_FINISHED", "TRADE_CLOSED"]
/// AlipaySource.keyFields as its comment lists them: the fields no other value may re-split into.
private let keyFields = [
    "app_id", "out_trade_no", "trade_status", "out_biz_no", "total_amount", "trade_no", "refund_fee", "seller_id",
    "notify_id", "notify_type", "notify_time",
]

@_cdecl("LLVMFuzzerInitialize")
public func alipayInitialize(_ argc: UnsafeMutablePointer<Int32>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> Int32 {
    if let folder = ProcessInfo.processInfo.environment["PAYHOOK_FUZZ_WRITE_SEEDS"] {
        writeSeeds(to: folder)
        exit(0)
    }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func alipayFuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = fuzzBytes(data, size)
    var choices = Choices(bytes)
    let gateway = bytes.count % 2 == 1
    let decoded = decodeForm(bytes)
    checkRaw(bytes, gateway: gateway)
    checkSigned(decoded ?? looseForm(bytes), gateway: gateway, choices: &choices)
    var texts: [[UInt8]] = [bytes]
    for parameter in decoded ?? [] { texts.append(parameter.value) }
    checkCharsets(texts)
    checkYuan(texts, choices: &choices)
    checkBeijingTime(texts, choices: &choices)
    return 0
}

// MARK: - Reading a form, independently

private struct RawParam {
    var name: [UInt8]
    var value: [UInt8]
}

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

private func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case 0x30...0x39: return c - 0x30
    case 0x41...0x46: return c - 0x41 + 10
    case 0x61...0x66: return c - 0x61 + 10
    default: return nil
    }
}

/// application/x-www-form-urlencoded as the strict rules say: printable ASCII only, `+` a space, `%XX` a byte,
/// empty pieces skipped; an escape that is not two hex digits, another byte, an empty name or a repeated name
/// (by bytes) is malformed.
private func decodeForm(_ body: [UInt8]) -> [RawParam]? {
    func component(_ raw: ArraySlice<UInt8>) -> [UInt8]? {
        var out: [UInt8] = []
        var i = raw.startIndex
        while i < raw.endIndex {
            let c = raw[i]
            if c == UInt8(ascii: "%") {
                guard i + 2 < raw.endIndex, let h = hexValue(raw[i + 1]), let l = hexValue(raw[i + 2]) else { return nil }
                out.append(h << 4 | l)
                i += 3
            } else if c == UInt8(ascii: "+") {
                out.append(0x20)
                i += 1
            } else if (0x21...0x7E).contains(c) {
                out.append(c)
                i += 1
            } else {
                return nil
            }
        }
        return out
    }
    var out: [RawParam] = []
    for piece in body.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
        let eq = piece.firstIndex(of: UInt8(ascii: "="))
        guard let name = component(eq.map { piece[..<$0] } ?? piece[...]), !name.isEmpty,
            let value = component(eq.map { piece[($0 + 1)...] } ?? [])
        else { return nil }
        if out.contains(where: { $0.name == name }) { return nil }
        out.append(RawParam(name: name, value: value))
    }
    return out
}

/// Parameters out of any bytes, for signing: split on `&` and the first `=`, valid escapes decoded and the rest
/// kept as it is, empty and repeated names dropped.
private func looseForm(_ body: [UInt8]) -> [RawParam] {
    func component(_ raw: ArraySlice<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        var i = raw.startIndex
        while i < raw.endIndex {
            if raw[i] == UInt8(ascii: "%"), i + 2 < raw.endIndex, let h = hexValue(raw[i + 1]), let l = hexValue(raw[i + 2]) {
                out.append(h << 4 | l)
                i += 3
            } else {
                out.append(raw[i] == UInt8(ascii: "+") ? 0x20 : raw[i])
                i += 1
            }
        }
        return out
    }
    var out: [RawParam] = []
    for piece in body.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
        let eq = piece.firstIndex(of: UInt8(ascii: "="))
        let name = component(eq.map { piece[..<$0] } ?? piece[...])
        guard !name.isEmpty, !out.contains(where: { $0.name == name }) else { continue }
        out.append(RawParam(name: name, value: component(eq.map { piece[($0 + 1)...] } ?? [])))
    }
    return out
}

/// Percent-encodes bytes: only what must be (`%`, `&`, `=`, `+` and bytes outside printable ASCII, space as `+`
/// or `%20`), or everything in upper- or lowercase hex.
private func encodeComponent(_ raw: [UInt8], style: Int) -> [UInt8] {
    let digits = Array((style == 2 ? "0123456789abcdef" : "0123456789ABCDEF").utf8)
    var out: [UInt8] = []
    for byte in raw {
        if style == 0, byte == 0x20 {
            out.append(UInt8(ascii: "+"))
        } else if style == 0, (0x21...0x7E).contains(byte), !"%&=+".utf8.contains(byte) {
            out.append(byte)
        } else {
            out += [UInt8(ascii: "%"), digits[Int(byte >> 4)], digits[Int(byte & 15)]]
        }
    }
    return out
}

private func encodeForm(_ params: [RawParam], style: Int) -> [UInt8] {
    var out: [UInt8] = []
    for (index, param) in params.enumerated() {
        if index > 0 { out.append(UInt8(ascii: "&")) }
        out += encodeComponent(param.name, style: style) + [UInt8(ascii: "=")] + encodeComponent(param.value, style: style)
    }
    return out
}

/// iconv(3) from one charset to another with room for anything (four bytes out per byte in), nil when the input
/// is not valid in `from`.
private func iconvConvert(_ input: [UInt8], from: String, to: String) -> [UInt8]? {
    let converter = iconv_open(to, from)
    guard converter != iconv_t(bitPattern: -1) else { fatalError("iconv has no \(from) to \(to)") }
    defer { iconv_close(converter) }
    var source = input.map { CChar(bitPattern: $0) }
    var target = [CChar](repeating: 0, count: input.count * 4 + 16)
    var sourceLeft = source.count
    var targetLeft = target.count
    let result = source.withUnsafeMutableBufferPointer { inBuffer in
        target.withUnsafeMutableBufferPointer { outBuffer in
            var inPointer = inBuffer.baseAddress
            var outPointer = outBuffer.baseAddress
            return iconv(converter, &inPointer, &sourceLeft, &outPointer, &targetLeft)
        }
    }
    guard result != -1, sourceLeft == 0 else { return nil }
    return target[0..<(target.count - targetLeft)].map { UInt8(bitPattern: $0) }
}

private enum Charset { case utf8, gbk }

/// The charset a name spells: utf-8, utf8 or gbk with ASCII letters in any case; nothing else.
private func charsetNamed(_ name: [UInt8]) -> Charset? {
    let lowered = name.map { (0x41...0x5A).contains($0) ? $0 | 0x20 : $0 }
    if lowered == bytes("utf-8") || lowered == bytes("utf8") { return .utf8 }
    if lowered == bytes("gbk") { return .gbk }
    return nil
}

private func text(_ raw: [UInt8], in charset: Charset) -> String? {
    switch charset {
    case .utf8: return String(validating: raw, as: UTF8.self)
    case .gbk:
        // ASCII is itself in GBK (iconv agrees; checkCharsets compares the two on every input).
        if raw.allSatisfy({ $0 < 0x80 }) { return String(decoding: raw, as: UTF8.self) }
        return iconvConvert(raw, from: "GBK", to: "UTF-8").flatMap { String(validating: $0, as: UTF8.self) }
    }
}

/// The signed string: non-empty values, without `sign` (and without `sign_type` under the trade rule), sorted
/// by name bytes, `name=value` joined with `&`.
private func signedContent(_ params: [RawParam], withSignType: Bool) -> [UInt8] {
    let kept = params.filter { !$0.value.isEmpty && $0.name != bytes("sign") && (withSignType || $0.name != bytes("sign_type")) }
    let sorted = kept.sorted { $0.name.lexicographicallyPrecedes($1.name) }
    var out: [UInt8] = []
    for (index, param) in sorted.enumerated() {
        if index > 0 { out.append(UInt8(ascii: "&")) }
        out += param.name + [UInt8(ascii: "=")] + param.value
    }
    return out
}

private func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
    firstRange(of: needle, in: haystack) != nil
}

// MARK: - Amounts and times, independently

/// `(0|[1-9][0-9]{0,14})(\.[0-9]{1,2})?` in fen.
private func yuanFen(_ text: [UInt8]) -> Int64? {
    let isDigit = { (c: UInt8) in (0x30...0x39).contains(c) }
    var whole = text[...]
    var fraction: ArraySlice<UInt8> = []
    if let point = text.firstIndex(of: UInt8(ascii: ".")) {
        whole = text[..<point]
        fraction = text[(point + 1)...]
        guard (1...2).contains(fraction.count), fraction.allSatisfy(isDigit) else { return nil }
    }
    guard (1...15).contains(whole.count), whole.allSatisfy(isDigit), whole.count == 1 || whole.first != 0x30 else { return nil }
    guard let units = Int64(String(decoding: whole, as: UTF8.self)) else { return nil }
    let cents = fraction.isEmpty ? 0 : Int64(String(decoding: fraction, as: UTF8.self))! * (fraction.count == 1 ? 10 : 1)
    return units * 100 + cents
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's days_from_civil).
private func daysFromCivil(_ y0: Int64, _ m: Int64, _ d: Int64) -> Int64 {
    let y = m <= 2 ? y0 - 1 : y0
    let era = (y >= 0 ? y : y - 399) / 400
    let yoe = y - era * 400
    let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    return era * 146_097 + doe - 719_468
}

/// `yyyy-MM-dd HH:mm:ss` (or `yyyyMMddHHmmss`) in Beijing time, a real date of year 2000 or later, in Unix ms.
private func beijing(_ text: [UInt8], dashed: Bool) -> Int64? {
    let layout = dashed ? Array("dddd-dd-dd dd:dd:dd".utf8) : Array("dddddddddddddd".utf8)
    guard text.count == layout.count else { return nil }
    var digits: [Int64] = []
    for (c, l) in zip(text, layout) {
        if l == UInt8(ascii: "d") {
            guard (0x30...0x39).contains(c) else { return nil }
            digits.append(Int64(c - 0x30))
        } else if c != l {
            return nil
        }
    }
    func number(_ from: Int, _ count: Int) -> Int64 { digits[from..<(from + count)].reduce(0) { $0 * 10 + $1 } }
    let (y, mo, d, h, mi, s) = (number(0, 4), number(4, 2), number(6, 2), number(8, 2), number(10, 2), number(12, 2))
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
    let days: [Int64] = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    guard y >= 2000, (1...12).contains(mo), d >= 1, d <= days[Int(mo - 1)], h < 24, mi < 60, s < 60 else { return nil }
    return (daysFromCivil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - 8 * 3600) * 1000
}

// MARK: - The verdict the rules give

private struct Expected {
    var outcome: Outcome
    /// The tenant label: nil until app_id named this app.
    var tenant: String?
    /// The event source, once the notification showed its kind.
    var source: String?
    // For an acceptance:
    var withSignType = false
    var type = AlipaySignType.rsa2
    var content: [UInt8] = []
    var signature: [UInt8] = []
    var fields: [(String, String)] = []
    var keyParts: [String] = []
    var orderRef = ""
    var status = ""
    var amount: Int64 = 0
}

private func expectedVerdict(_ body: [UInt8], gateway: Bool) -> Expected {
    guard let params = decodeForm(body) else { return Expected(outcome: .malformed) }
    func raw(_ name: String) -> [UInt8]? { params.first { $0.name == bytes(name) }?.value }
    guard let app = raw("app_id"), !app.isEmpty else { return Expected(outcome: .malformed) }
    guard app == bytes(appID) else { return Expected(outcome: .unknownTenant) }
    var result = Expected(outcome: .malformed, tenant: appID)
    var charset = Charset.utf8
    if let named = raw("charset") {
        guard let known = charsetNamed(named) else { return result }
        charset = known
    }
    var texts: [(String, String)] = []
    for param in params {
        guard let name = text(param.name, in: charset), let value = text(param.value, in: charset) else { return result }
        texts.append((name, value))
    }
    // Every name the rules read is ASCII, the same bytes in both charsets.
    func value(_ name: String) -> String? { texts.first { $0.0.utf8.elementsEqual(name.utf8) }?.1 }
    let trade = value("trade_status") != nil || !gateway
    let source = trade ? AlipaySource.tradeSource : AlipaySource.eventSource
    result.source = source
    result.outcome = .badSignature
    guard let sign = value("sign"), !sign.isEmpty, let signature = Base64.decode(sign) else { return result }
    let typeName = value("sign_type") ?? "RSA2"
    let type: AlipaySignType
    if typeName.utf8.elementsEqual("RSA2".utf8) {
        type = .rsa2
    } else if typeName.utf8.elementsEqual("RSA".utf8) {
        type = .rsa
    } else {
        return result
    }
    var verified: Bool?
    for withSignType in trade ? [false] : [true, false] {
        let content = signedContent(params, withSignType: withSignType)
        if Signature.verifyRSA(type.digest, key: testKey, message: content, signature: signature) {
            verified = withSignType
            result.content = content
            break
        }
    }
    guard let withSignType = verified else { return result }
    result.withSignType = withSignType
    result.type = type
    result.signature = signature
    result.outcome = .semantic
    for (name, text) in texts where name != "sign" {
        let valueBytes = bytes(text)
        if keyFields.contains(name), valueBytes.contains(UInt8(ascii: "&")) || valueBytes.contains(UInt8(ascii: "=")) { return result }
        if keyFields.contains(where: { contains(valueBytes, bytes("&" + $0 + "=")) }) { return result }
    }
    // Under the pin a trade notification must name the seller; an open-platform one only if it names one.
    let seller = value("seller_id")
    if trade || seller != nil, !(seller ?? "").utf8.elementsEqual(sellerID.utf8) { return result }
    guard let notified = value("notify_time").flatMap({ beijing(bytes($0), dashed: true) }), notified >= now - window else { return result }
    if trade {
        let status = value("trade_status") ?? ""
        guard tradeStates.contains(where: { $0.utf8.elementsEqual(status.utf8) }) else { return result }
        for name in ["out_trade_no", "trade_no", "notify_id"] where (value(name) ?? "").isEmpty { return result }
        let orderRef = value("out_trade_no")!
        guard orderRef.utf8.count <= 64, let total = value("total_amount").flatMap({ yuanFen(bytes($0)) }) else { return result }
        if let refund = value("refund_fee") {
            guard let refunded = yuanFen(bytes(refund)), refunded <= total else { return result }
        }
        result.keyParts = [appID, orderRef, status, value("out_biz_no") ?? ""]
        result.orderRef = orderRef
        result.status = status
        result.amount = total
    } else {
        let type = value("notify_type") ?? "", id = value("notify_id") ?? ""
        guard !type.isEmpty, !id.isEmpty else { return result }
        result.keyParts = [appID, type, id]
        // The notification id when no order is named: order_ref is never empty (schema/event.v1.schema.json).
        result.orderRef = value("out_trade_no").flatMap { $0.isEmpty ? nil : $0 } ?? id
        result.status = type
        result.amount = 0
    }
    result.fields = texts.filter { !$0.1.isEmpty && $0.0 != "sign" && (withSignType || $0.0 != "sign_type") }
    result.outcome = .accepted
    return result
}

// MARK: - 1 and 2. Notifications, raw and signed

private func request(_ body: [UInt8]) -> CallbackRequest {
    CallbackRequest(
        method: "POST", target: path, query: nil, headers: [(name: "Content-Type", value: "application/x-www-form-urlencoded; charset=utf-8")],
        body: body, remoteAddress: "127.0.0.1", receivedAtMilliseconds: now)
}

/// Processes `body` and checks the verdict against the rules; returns both.
@discardableResult
private func check(_ body: [UInt8], gateway: Bool, reading: String) -> (Verdict, Expected) {
    let verdict = (gateway ? gatewaySource : tradeSource).process(request(body), nowMilliseconds: now)
    let expected = expectedVerdict(body, gateway: gateway)
    let outcome = Outcome(verdict.outcome)
    if outcome != expected.outcome {
        violated("the verdict differs from the rules (\(reading))", "\(verdict.outcome) instead of \(expected.outcome)")
    }
    if case .refused(let refusal) = verdict.outcome {
        if refusal.reason.isEmpty { violated("a refusal without a reason") }
        let status = [Outcome.malformed: 400, .semantic: 400, .unknownTenant: 401, .badSignature: 401][outcome]
        if refusal.status != status { violated("a refusal with another status than its kind's", "\(refusal.status) for \(refusal)") }
    }
    if verdict.tenant != expected.tenant { violated("the tenant label is not the app the notification named", "\(verdict.tenant ?? "nil")") }
    if let source = expected.source, verdict.source != source { violated("the source label is not the notification's kind", verdict.source) }
    if case .accepted(let event) = verdict.outcome { checkEvent(event, body: body, expected: expected, gateway: gateway) }
    return (verdict, expected)
}

private func sameBytes(_ a: String, _ b: String) -> Bool { a.utf8.elementsEqual(b.utf8) }

private func checkEvent(_ event: Event, body: [UInt8], expected: Expected, gateway: Bool) {
    let keyText = event.dedupeKey.text
    if event.id != Hex.encode(Digest.sha256(Array(keyText.utf8))) { violated("an event id that is not the SHA-256 of its dedupe key", keyText) }
    if event.amount < 0 { violated("an accepted event with a negative amount") }
    if event.amount != expected.amount { violated("the amount is not total_amount in fen", "\(event.amount) vs \(expected.amount)") }
    guard event.dedupeKey.source == expected.source, event.source == expected.source,
        event.dedupeKey.parts.count == expected.keyParts.count,
        zip(event.dedupeKey.parts, expected.keyParts).allSatisfy(sameBytes)
    else { violated("the dedupe key is not the documented one", keyText) }
    guard sameBytes(event.tenant, appID), sameBytes(event.orderRef, expected.orderRef), sameBytes(event.status, expected.status),
        event.currency == (expected.source == AlipaySource.tradeSource ? "CNY" : "")
    else { violated("the event's tenant, order_ref, status or currency is not the notification's", keyText) }
    if event.fields.contains(where: { $0.name == "sign" }) { violated("sign is among the event's fields") }
    guard event.fields.count == expected.fields.count,
        zip(event.fields, expected.fields).allSatisfy({ sameBytes($0.name, $1.0) && sameBytes($0.value, $1.1) })
    else { violated("the event's fields are not the signed parameters", keyText) }
    if Array(event.raw.body.utf8) != body { violated("raw.body is not the body as received") }
    if event.verifiedWith != expected.type.rawValue.lowercased() { violated("verified_with is not the sign_type", event.verifiedWith) }
    if event.secretPosition != 2 { violated("the key position is not the test key's", "\(event.secretPosition.map(String.init) ?? "nil")") }
    guard let rule = AlipaySource.fingerprintRules[event.source], event.fingerprintRule == rule else {
        violated("the event's fingerprint rule is not its source's", event.fingerprintRule.name)
    }
    // The acceptance really verifies: the production signed string of the raw bytes, with the test key.
    guard let raw = try? FormQuery.decodeBytes(body) else { violated("an accepted body does not decode") }
    let content = AlipaySigning.content(raw, rule: expected.withSignType ? .withSignType : .withoutSignType)
    if content != expected.content { violated("AlipaySigning.content differs from the signed string as documented") }
    guard Signature.verifyRSA(expected.type.digest, key: testKey, message: content, signature: expected.signature),
        AlipaySigning.verify(content: content, signature: expected.signature, type: expected.type, keys: keys) == 2
    else { violated("an accepted notification whose signature does not verify") }
}

private func checkRaw(_ body: [UInt8], gateway: Bool) {
    check(body, gateway: gateway, reading: "raw")
}

private func checkSigned(_ input: [RawParam], gateway: Bool, choices: inout Choices) {
    var params = input.filter { $0.name != bytes("sign") }
    if let index = params.firstIndex(where: { $0.name == bytes("app_id") }) {
        params[index].value = bytes(appID)
    } else {
        params.insert(RawParam(name: bytes("app_id"), value: bytes(appID)), at: choices.below(params.count + 1))
    }
    let typeIndex = params.firstIndex { $0.name == bytes("sign_type") }
    switch choices.below(5) {
    case 0: if let typeIndex { params[typeIndex].value = bytes("RSA2") }
    case 1: if let typeIndex { params[typeIndex].value = bytes("RSA") } else { params.append(RawParam(name: bytes("sign_type"), value: bytes("RSA"))) }
    case 2: if let typeIndex { params.remove(at: typeIndex) }
    default: break  // as the input has it
    }
    // Now and then a value holding `&name=` for a key field, somewhere among its own bytes: refused as semantic
    // whatever follows (AlipaySource.checkMoves).
    if choices.below(4) == 0, !params.isEmpty {
        let target = choices.below(params.count)
        params[target].value.insert(contentsOf: bytes("&" + keyFields[choices.below(keyFields.count)] + "="), at: choices.below(params[target].value.count + 1))
    }
    let typeValue = params.first { $0.name == bytes("sign_type") }?.value
    let validType = typeValue == nil || typeValue == bytes("RSA2") || typeValue == bytes("RSA")
    let type: AlipaySignType = typeValue == bytes("RSA") ? .rsa : .rsa2
    let trade = !gateway || params.contains { $0.name == bytes("trade_status") }
    let withSignType = !trade && choices.flag()
    guard let signature = Signature.signRSA(type.digest, privateKeyPEM: privateKeyPEM, message: signedContent(params, withSignType: withSignType))
    else { violated("signing with the test-only key failed") }
    params.insert(RawParam(name: bytes("sign"), value: bytes(Base64.encode(signature))), at: choices.below(params.count + 1))
    if choices.flag() {
        for i in stride(from: params.count - 1, to: 0, by: -1) { params.swapAt(i, choices.below(i + 1)) }
    }
    let style = choices.below(3)
    let body = encodeForm(params, style: style)
    let (verdict, expected) = check(body, gateway: gateway, reading: "signed")
    if validType, case .refused(.badSignature(let reason)) = verdict.outcome {
        violated("a notification signed with the test key under its rule was refused as unverified", reason)
    }

    // One byte of one signed value changed: never accepted, never past the signature.
    guard expected.outcome != .malformed else { return }
    let signed = params.indices.filter { i in
        !params[i].value.isEmpty && params[i].name != bytes("sign") && (withSignType || params[i].name != bytes("sign_type"))
    }
    guard !signed.isEmpty else { return }
    var tampered = params
    let target = signed[choices.below(signed.count)]
    let position = choices.below(tampered[target].value.count)
    tampered[target].value[position] ^= UInt8(1 + choices.below(255))
    let outcome = (gateway ? gatewaySource : tradeSource).process(request(encodeForm(tampered, style: style)), nowMilliseconds: now).outcome
    switch outcome {
    case .accepted, .refused(.semantic):
        violated("a notification with one byte of a signed value changed got past the signature", "\(Outcome(outcome))")
    default: break
    }
}

// MARK: - 3. The core pieces

private func checkCharsets(_ texts: [[UInt8]]) {
    for raw in texts {
        let decoded = TextCharset.gbk.decode(raw)
        let reference = iconvConvert(raw, from: "GBK", to: "UTF-8").flatMap { String(validating: $0, as: UTF8.self) }
        switch (decoded, reference) {
        case (nil, nil): break
        case (let d?, let r?) where sameBytes(d, r): break
        default:
            violated("TextCharset.gbk.decode differs from iconv", "\(decoded == nil ? "refused" : "decoded") \(raw.count) bytes iconv \(reference == nil ? "refuses" : "decodes")")
        }
        if let decoded {
            guard let again = iconvConvert(bytes(decoded), from: "UTF-8", to: "GBK"), let back = TextCharset.gbk.decode(again), sameBytes(back, decoded)
            else { violated("GBK text re-encoded does not decode to itself") }
        }
        let utf8 = TextCharset.utf8.decode(raw)
        let valid = String(validating: raw, as: UTF8.self)
        if (utf8 == nil) != (valid == nil) || (utf8 != nil && !sameBytes(utf8!, valid!)) { violated("TextCharset.utf8.decode is not UTF-8 validation") }
        let name = String(decoding: raw, as: UTF8.self)
        let named = TextCharset(name: name)
        let expected: TextCharset? = charsetNamed(raw).map { $0 == .gbk ? .gbk : .utf8 }
        if named != expected { violated("TextCharset(name:) reads a charset name otherwise than utf-8, utf8 or gbk in ASCII letters", LogText.printable(name, limit: 40)) }
    }
}

private let digitBytes = Array("0123456789".utf8)

/// A yuan amount around the rule's edges: 0 to 17 whole digits, maybe a leading zero, 0 to 3 decimals, maybe a
/// sign, an exponent, a second point or a space.
private func nearYuan(_ choices: inout Choices) -> [UInt8] {
    var out: [UInt8] = []
    switch choices.below(10) {
    case 0: out.append(UInt8(ascii: "-"))
    case 1: out.append(UInt8(ascii: "+"))
    case 2: out.append(UInt8(ascii: " "))
    default: break
    }
    let whole = [0, 1, 1, 2, 3, 14, 15, 15, 16, 17][choices.below(10)]
    for i in 0..<whole { out.append(digitBytes[i == 0 && choices.below(4) != 0 ? 1 + choices.below(9) : choices.below(10)]) }
    if choices.below(4) != 0 {
        out.append(UInt8(ascii: "."))
        for _ in 0..<[0, 1, 2, 2, 3][choices.below(5)] { out.append(digitBytes[choices.below(10)]) }
    }
    switch choices.below(12) {
    case 0: out += bytes("e2")
    case 1: out += bytes("E-1")
    case 2: out += bytes(".5")
    case 3: out.append(UInt8(ascii: " "))
    default: break
    }
    return out
}

private func checkYuan(_ texts: [[UInt8]], choices: inout Choices) {
    var candidates = texts.filter { $0.count <= 64 }
    candidates.append(nearYuan(&choices))
    for raw in candidates {
        let text = String(decoding: raw, as: UTF8.self)
        let fen = DecimalDigits.fen(yuan: text)
        // The reference reads the bytes; text that is not UTF-8 (repaired with U+FFFD) is not an amount either way.
        let reference = String(validating: raw, as: UTF8.self) == nil ? nil : yuanFen(raw)
        if fen != reference { violated("fen(yuan:) differs from the rule as written", "\(LogText.printable(text, limit: 40)): \(fen.map(String.init) ?? "nil") vs \(reference.map(String.init) ?? "nil")") }
        guard let fen else { continue }
        if raw.contains(where: { "eE+- ".utf8.contains($0) }) { violated("fen(yuan:) accepted a sign, exponent or space", text) }
        if fen < 0 { violated("fen(yuan:) gave a negative amount", text) }
        let cents = fen % 100
        let printed = "\(fen / 100)." + (cents < 10 ? "0" : "") + "\(cents)"
        if DecimalDigits.fen(yuan: printed) != fen { violated("fen(yuan:) of its own result printed as yuan is another amount", printed) }
        let decimals = raw.firstIndex(of: UInt8(ascii: ".")).map { raw.count - $0 - 1 } ?? 0
        if decimals > 2 { violated("fen(yuan:) accepted three or more decimals", text) }
        let canonical = text + (decimals == 0 ? ".00" : decimals == 1 ? "0" : "")
        if !sameBytes(printed, canonical) { violated("fen(yuan:) read an amount as another one", "\(text) -> \(printed)") }
    }
}

/// A time near the calendar's edges, dashed or compact.
private func nearTime(_ choices: inout Choices) -> ([UInt8], Bool) {
    let years = [1999, 2000, 2001, 2024, 2026, 2100, 2400, 9999]
    let year = choices.flag() ? years[choices.below(years.count)] : 2000 + choices.below(8000)
    let month = choices.below(14), hour = choices.below(25), minute = choices.below(61), second = choices.below(61)
    let day = [0, 1, 28, 29, 30, 31, 32][choices.below(7)]
    func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
    let dashed = choices.flag()
    let text = dashed ? "\(year)-\(two(month))-\(two(day)) \(two(hour)):\(two(minute)):\(two(second))"
        : "\(year)\(two(month))\(two(day))\(two(hour))\(two(minute))\(two(second))"
    return (bytes(text), dashed)
}

private func checkBeijingTime(_ texts: [[UInt8]], choices: inout Choices) {
    var candidates = texts.filter { $0.count <= 64 }.flatMap { [($0, true), ($0, false)] }
    candidates.append(nearTime(&choices))
    for (raw, dashed) in candidates {
        let text = String(decoding: raw, as: UTF8.self)
        let milliseconds = BeijingTime.milliseconds(text, dashed: dashed)
        let reference = String(validating: raw, as: UTF8.self) == nil ? nil : beijing(raw, dashed: dashed)
        if milliseconds != reference {
            violated("BeijingTime differs from the calendar", "\(LogText.printable(text, limit: 40)): \(milliseconds.map(String.init) ?? "nil") vs \(reference.map(String.init) ?? "nil")")
        }
        if let milliseconds, !sameBytes(BeijingTime.text(milliseconds: milliseconds, compact: !dashed), text) {
            violated("BeijingTime does not print back the time it read", text)
        }
    }
}

// MARK: - Seeds

/// Signed notifications for this target's tenant: written by fuzz.sh into each run's corpus.
private func writeSeeds(to folder: String) {
    let gbkSubject: [UInt8] = [0xB2, 0xE2, 0xCA, 0xD4, 0xC9, 0xCC, 0xC6, 0xB7]  // 测试商品 in GBK
    func trade(_ status: String, signType: String?, charset: String = "utf-8", extra: [(String, String)] = []) -> [RawParam] {
        var fields: [(String, String)] = [
            ("gmt_create", "2026-01-03 07:58:50"), ("charset", charset), ("seller_email", "merchant@example.com"),
            ("subject", "语雀空间 500人规模"), ("buyer_id", "2088102534368455"), ("invoice_amount", "0.10"),
            ("notify_id", "2026010300222075850068450512345678"),
            ("fund_bill_list", #"[{"amount":"0.10","fundChannel":"ALIPAYACCOUNT"}]"#), ("notify_type", "trade_status_sync"),
            ("trade_status", status), ("receipt_amount", "0.10"), ("buyer_pay_amount", "0.10"), ("app_id", appID),
            ("seller_id", sellerID), ("gmt_payment", "2026-01-03 07:58:58"), ("notify_time", "2026-01-03 07:59:00"),
            ("version", "1.0"), ("out_trade_no", "20260103075850-564-57"), ("total_amount", "0.10"),
            ("trade_no", "2026010322001468450512505578"), ("auth_app_id", appID), ("buyer_logon_id", "xud***@126.com"),
            ("point_amount", "0.00"),
        ]
        if let signType { fields.append(("sign_type", signType)) }
        fields += extra
        return fields.map { RawParam(name: bytes($0.0), value: bytes($0.1)) }
    }
    let gateway: [RawParam] = [
        ("app_id", appID), ("charset", "UTF-8"), ("commodity_order_id", "2026010300000018079639"), ("contactor", "技术支持测试的公司"),
        ("merchant_pid", "2088721996721370"), ("method", "alipay.open.servicemarket.order.notify"), ("name", "技术支持测试的公司"),
        ("notify_id", "2026010300222102023008121054923345"), ("notify_time", "2026-01-03 07:59:00"),
        ("notify_type", "servicemarket_order_notify"), ("order_item_num", "1"), ("order_ticket", "29b1c37d99ab48c5bd5bdaeaeaefbB37"),
        ("order_time", "2026-01-03 07:58:40"), ("service_code", "58621634"), ("sign_type", "RSA2"), ("timestamp", "2026-01-03 07:59:00"),
        ("title", "麦禾商城模版"), ("total_price", "0.00"), ("version", "1.0"),
    ].map { RawParam(name: bytes($0.0), value: bytes($0.1)) }
    var gbk = trade("TRADE_SUCCESS", signType: "RSA2", charset: "gbk")
    gbk[gbk.firstIndex { $0.name == bytes("subject") }!].value = gbkSubject
    // name, parameters, sign_type's digest, the rule (sign_type signed too), gateway tenant, encoding style
    let seeds: [(String, [RawParam], AlipaySignType, Bool, Bool, Int)] = [
        ("trade-success-rsa2", trade("TRADE_SUCCESS", signType: "RSA2"), .rsa2, false, false, 0),
        ("trade-success-gbk", gbk, .rsa2, false, false, 0),
        ("trade-finished-rsa", trade("TRADE_FINISHED", signType: "RSA"), .rsa, false, false, 1),
        ("trade-refund", trade("TRADE_SUCCESS", signType: "RSA2", extra: [("out_biz_no", "R20260103-1"), ("refund_fee", "0.05"), ("gmt_refund", "2026-01-03 07:58:59.120")]), .rsa2, false, false, 0),
        ("trade-closed-no-sign-type", trade("TRADE_CLOSED", signType: nil, charset: "UTF-8"), .rsa2, false, false, 2),
        ("trade-wait-gateway-tenant", trade("WAIT_BUYER_PAY", signType: "RSA2"), .rsa2, false, true, 0),
        ("open-platform-sign-type-signed", gateway, .rsa2, true, true, 0),
        ("open-platform-sign-type-unsigned", gateway, .rsa2, false, true, 0),
    ]
    for (name, params, type, withSignType, gatewayTenant, style) in seeds {
        guard let signature = Signature.signRSA(type.digest, privateKeyPEM: privateKeyPEM, message: signedContent(params, withSignType: withSignType))
        else { fatalError("signing a seed failed") }
        var all = params
        all.insert(RawParam(name: bytes("sign"), value: bytes(Base64.encode(signature))), at: min(4, all.count))
        var body = encodeForm(all, style: style)
        // The length's parity picks the tenant; an empty trailing piece changes it without changing the form.
        if (body.count % 2 == 1) != gatewayTenant { body.append(UInt8(ascii: "&")) }
        guard expectedVerdict(body, gateway: gatewayTenant).outcome == .accepted else { fatalError("seed \(name) is not accepted") }
        guard FileManager.default.createFile(atPath: folder + "/" + name, contents: Data(body)) else { fatalError("cannot write seed \(name)") }
    }
}
