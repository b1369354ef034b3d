// Fuzz target: WeChat Pay API v3 notifications (Sources/PayhookWeChat/WeChatV3Source.swift and
// WeChatV3Resource.swift): the envelope parser, the mapping of a decrypted resource to an event, and the whole
// request path with the signature made to pass.
//
// Every input is used four ways.
//
// 1. As a body for WeChatV3Envelope.parse: never traps; a body that is not a JSON object is refused as
//    malformed, anything else that is refused says why; an accepted envelope has the documented shape (a
//    12-byte nonce, a ciphertext of at least a GCM tag, an id of at most 64 bytes without control characters,
//    an upper-case dotted event type, encrypt-resource).
// 2. As a decrypted resource (after JSONReader.parse) for WeChatV3Resource.map under each kind of event, as it
//    is and with one leaf value replaced by a hostile one (-1, 1.5, "100", …): never traps, a refusal says why,
//    and what is accepted agrees with an independent reading of the resource (the dedupe key's parts, the
//    status, the amount as the integer the JSON wrote, a refund no larger than its total, a combine payment the
//    sum of its sub-orders).
// 3. As a body signed with the test private key (Fixtures/wechat-v3/wechat_pay_private_key.pem) in the
//    headers WeChat sends: WeChatV3Source.process refuses exactly as the envelope parser does when that
//    refuses; the same request with the signature or the body changed by one byte is refused as unverified.
// 4. As a plaintext encrypted under the tenant's APIv3 key in an envelope of a fuzz-chosen event type, signed:
//    process gives exactly what the resource rules give (not JSON, or a payment or refund naming no merchant:
//    refused as semantic; another merchant:
//    unknown tenant; else map's refusal, or an event).
//
// Every accepted event: id = SHA-256 of its dedupe key's text, amount >= 0, the tenant's merchant, the body as
// received, and its file (jsonBytes) parses back with EventFile.parse to the same id, dedupe key and
// resource, and to the same fingerprint under the WeChat fingerprint rule of its source.

import Foundation
import PayhookCore
import PayhookCrypto
import PayhookSpoolFormat
import PayhookWeChat

private let path = "/notify/wechatpay"
private let mchID = "1900000100"
/// The APIv3 key of Fixtures/wechat-v3/README.md.
private let apiV3Key = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"
private let keyID = "PUB_KEY_ID_0000000000000024101100397200000006"
/// V3-4's timestamp (Fixtures/wechat-v3/v3-4.json): the clock, and the time every request is signed at.
private let nowSeconds: Int64 = 1_704_081_606
private let now = nowSeconds * 1000

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fixtures/wechat-v3")
private let privateKeyPEM: [UInt8] = {
    guard let data = try? Data(contentsOf: fixtures.appendingPathComponent("wechat_pay_private_key.pem")) else {
        fatalError("cannot read Fixtures/wechat-v3/wechat_pay_private_key.pem")
    }
    return Array(data)
}()
private let tenant: WeChatV3Tenant = {
    guard let pem = try? String(contentsOf: fixtures.appendingPathComponent("wechat_pay_public_key.pem"), encoding: .utf8),
        let key = try? RSAPublicKey(pem: pem)
    else { fatalError("cannot read Fixtures/wechat-v3/wechat_pay_public_key.pem") }
    return WeChatV3Tenant(path: path, mchID: mchID, apiV3Keys: [Secret(apiV3Key)], publicKey: .init(id: keyID, key: key))
}()
private let source = WeChatV3Source(path: path, tenants: [tenant])

private let eventTypes = [
    "TRANSACTION.SUCCESS", "REFUND.SUCCESS", "REFUND.ABNORMAL", "REFUND.CLOSED", "MCHTRANSFER.BILL.FINISHED",
]

/// An envelope of each event type, for mapping resources without the crypto.
private let envelopes: [String: WeChatV3Envelope] = {
    var envelopes: [String: WeChatV3Envelope] = [:]
    for eventType in eventTypes {
        let body = envelopeJSON(eventType: eventType, id: "EV-fuzz", nonce: "uluk4a9R25RW", associatedData: "transaction",
                                ciphertext: [UInt8](repeating: 0, count: 16))
        guard case .success(let envelope) = WeChatV3Envelope.parse(body) else { fatalError("fixed envelope refused") }
        envelopes[eventType] = envelope
    }
    return envelopes
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func wechatV3Fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = fuzzBytes(data, size)
    var choices = Choices(bytes)
    let envelope = checkEnvelope(bytes)
    let document = JSONReader.parse(bytes)
    if let document, case .object = document {
        for eventType in eventTypes { checkMap(document, eventType: eventType) }
        // And with one value swapped for one a sender might write instead (a negative or fractional amount, a
        // number as a string, an empty text, another status): byte mutations reach those rarely.
        let variant = replacingOneLeaf(document, choices: &choices)
        for eventType in eventTypes { checkMap(variant, eventType: eventType) }
    }
    checkSignedBody(bytes, envelope: envelope, choices: &choices)
    checkEncryptedPlaintext(bytes, document: document, choices: &choices)
    return 0
}

// MARK: - 1. The envelope

private func checkEnvelope(_ bytes: [UInt8]) -> Result<WeChatV3Envelope, Refusal> {
    let result = WeChatV3Envelope.parse(bytes)
    switch result {
    case .failure(let refusal):
        if refusal.reason.isEmpty { violated("an envelope refusal without a reason") }
        let isObject: Bool
        if case .object? = JSONReader.parse(bytes) { isObject = true } else { isObject = false }
        if !isObject, refusal != .malformed(refusal.reason) { violated("a body that is not a JSON object was not refused as malformed", "\(refusal)") }
        if isObject, case .malformed = refusal { violated("a JSON object refused as malformed", refusal.reason) }
    case .success(let envelope):
        guard let document = JSONReader.parse(bytes), case .object = document else { violated("an envelope accepted from a body that is not a JSON object") }
        guard case .string(let id)? = document["id"], sameBytes(id, envelope.id), (1...64).contains(id.utf8.count),
            !id.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F })
        else { violated("the envelope's id is not the body's, or not 1 to 64 bytes without control characters", envelope.id) }
        guard case .string(let eventType)? = document["event_type"], sameBytes(eventType, envelope.eventType),
            (1...64).contains(eventType.utf8.count),
            eventType.utf8.allSatisfy({ (0x41...0x5A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2E || $0 == 0x5F })
        else { violated("the event type is not the body's upper-case dotted name", envelope.eventType) }
        guard document["resource_type"] == .string("encrypt-resource"), let resource = document["resource"], case .object = resource,
            resource["algorithm"] == .string("AEAD_AES_256_GCM")
        else { violated("accepted another resource_type or algorithm") }
        guard case .string(let nonce)? = resource["nonce"], envelope.nonce == Array(nonce.utf8), envelope.nonce.count == 12 else {
            violated("the nonce is not the resource's 12 bytes")
        }
        guard case .string(let encoded)? = resource["ciphertext"], Base64.decode(encoded) == envelope.ciphertext,
            envelope.ciphertext.count >= 16
        else { violated("the ciphertext is not the resource's, or shorter than a GCM tag") }
        let associatedData: [UInt8]
        switch resource["associated_data"] {
        case nil, .null?: associatedData = []
        case .string(let text)?: associatedData = Array(text.utf8)
        default: violated("accepted a non-string associated_data")
        }
        if envelope.associatedData != associatedData { violated("the associated data is not the resource's") }
    }
    return result
}

// MARK: - 2. The resource rules, read independently

/// Digits only, no leading zero, within Int64: an amount in fen is a JSON integer, never a string, a fraction,
/// an exponent or negative.
private func fen(_ value: JSONValue?) -> Int64? {
    guard case .number(let text)? = value, !text.isEmpty, text.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
        text == "0" || !text.hasPrefix("0")
    else { return nil }
    return Int64(text)
}

private func isOrderNumber(_ value: JSONValue?, max: Int) -> Bool {
    guard case .string(let text)? = value, (1...max).contains(text.utf8.count) else { return false }
    return text.utf8.allSatisfy { byte in
        (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || "_-|*@".utf8.contains(byte)
    }
}

private func text(_ value: JSONValue?) -> String? {
    if case .string(let s)? = value { return s }
    return nil
}

private let replacements: [JSONValue] = [
    .number("-1"), .number("-0"), .number("0"), .number("1.5"), .number("1e2"), .number("100"), .number("9223372036854775807"),
    .number("9223372036854775808"), .string("100"), .string(""), .string("SUCCESS"), .string("CLOSED"), .string("NOTPAY"),
    .string("1900000100"), .string("1900000200"), .string("A B"), .string(String(repeating: "9", count: 33)), .null, .bool(true),
    .object([]), .array([]),
]

/// The document with one of its leaves (a number, string, bool or null anywhere in it) replaced.
private func replacingOneLeaf(_ document: JSONValue, choices: inout Choices) -> JSONValue {
    func leaves(_ value: JSONValue) -> Int {
        switch value {
        case .object(let members): return members.reduce(0) { $0 + leaves($1.value) }
        case .array(let items): return items.reduce(0) { $0 + leaves($1) }
        default: return 1
        }
    }
    let count = leaves(document)
    guard count > 0 else { return document }
    var target = choices.below(count)
    let replacement = replacements[choices.below(replacements.count)]
    func replace(_ value: JSONValue) -> JSONValue {
        switch value {
        case .object(let members): return .object(members.map { ($0.key, replace($0.value)) })
        case .array(let items): return .array(items.map(replace))
        default:
            defer { target -= 1 }
            return target == 0 ? replacement : value
        }
    }
    return replace(document)
}

private func checkMap(_ resource: JSONValue, eventType: String) {
    let envelope = envelopes[eventType]!
    switch WeChatV3Resource.map(envelope: envelope, resource: resource, tenant: tenant) {
    case .failure(let refusal):
        if refusal.reason.isEmpty { violated("a resource refusal without a reason") }
    case .success(let mapped):
        checkMapped(mapped, resource: resource, eventType: eventType, envelopeID: envelope.id)
    }
}

private func checkMapped(_ mapped: WeChatV3Resource.Mapped, resource r: JSONValue, eventType: String, envelopeID: String) {
    if mapped.amount < 0 { violated("a negative amount", "\(mapped.amount)") }
    if mapped.key.source != mapped.source { violated("the dedupe key is not of the mapped source", mapped.key.text) }
    if mapped.orderRef.isEmpty { violated("an empty order_ref") }
    if mapped.currency.utf8.count != 3 || !mapped.currency.utf8.allSatisfy({ (0x41...0x5A).contains($0) }) {
        violated("a currency that is not three upper-case letters", mapped.currency)
    }
    let partner = r["sp_mchid"] != nil
    let sub = partner ? [text(r["sub_mchid"]) ?? ""] : []
    switch eventType {
    case "TRANSACTION.SUCCESS" where r["combine_mchid"] != nil:
        guard case .array(let orders)? = r["sub_orders"], !orders.isEmpty else { violated("a combine payment without sub-orders") }
        var sum: Int64 = 0
        for order in orders {
            guard let amount = fen(order["amount"]?["total_amount"]) else { violated("a sub-order without an integer total_amount") }
            sum += amount
        }
        guard mapped.source == "wechat.pay", mapped.amount == sum, mapped.status == "SUCCESS", isOrderNumber(r["combine_out_trade_no"], max: 32),
            mapped.key.parts == [mchID, text(r["combine_out_trade_no"])!, "SUCCESS"]
        else { violated("a combine payment mapped otherwise than its resource says", mapped.key.text) }
    case "TRANSACTION.SUCCESS":
        guard mapped.source == "wechat.pay", r["trade_state"] == .string("SUCCESS"), mapped.status == "SUCCESS",
            let total = fen(r["amount"]?["total"]), mapped.amount == total, isOrderNumber(r["out_trade_no"], max: 32),
            mapped.orderRef == text(r["out_trade_no"]), mapped.key.parts == [mchID] + sub + [mapped.orderRef, "SUCCESS"]
        else { violated("a payment mapped otherwise than its resource says", mapped.key.text) }
    case "REFUND.SUCCESS", "REFUND.ABNORMAL", "REFUND.CLOSED":
        let status = String(eventType.dropFirst("REFUND.".count))
        guard mapped.source == "wechat.refund", r["refund_status"] == .string(status), mapped.status == status,
            let total = fen(r["amount"]?["total"]), let refund = fen(r["amount"]?["refund"]), refund <= total,
            mapped.amount == refund, isOrderNumber(r["out_refund_no"], max: 64), isOrderNumber(r["out_trade_no"], max: 32),
            mapped.orderRef == text(r["out_trade_no"]), mapped.key.parts == [mchID] + sub + [text(r["out_refund_no"])!, status]
        else { violated("a refund mapped otherwise than its resource says", mapped.key.text) }
        if status == "SUCCESS", mapped.businessTime == nil { violated("a successful refund without success_time") }
    default:
        // The merchant a generic event names (process has checked it is the tenant's), else the tenant.
        let named = ["sp_mchid", "combine_mchid", "mchid", "mch_id"].lazy.compactMap { text(r[$0]) }.first
        guard mapped.source == "wechat.event", mapped.amount == 0, mapped.status == eventType,
            mapped.key.parts == [named ?? mchID, eventType, envelopeID]
        else { violated("a generic event mapped otherwise than its envelope says", mapped.key.text) }
    }
}

// MARK: - 3 and 4. Whole requests, signed

/// The envelope JSON WeChat sends, with the given resource parts.
private func envelopeJSON(eventType: String, id: String, nonce: String, associatedData: String, ciphertext: [UInt8]) -> [UInt8] {
    var j = JSONText()
    j.raw("{\"id\":"); j.string(id)
    j.raw(",\"create_time\":\"2024-01-01T12:00:06+08:00\",\"resource_type\":\"encrypt-resource\",\"event_type\":"); j.string(eventType)
    j.raw(",\"summary\":\"fuzz\",\"resource\":{\"original_type\":\"transaction\",\"algorithm\":\"AEAD_AES_256_GCM\",\"ciphertext\":")
    j.string(Base64.encode(ciphertext))
    j.raw(",\"associated_data\":"); j.string(associatedData)
    j.raw(",\"nonce\":"); j.string(nonce)
    j.raw("}}")
    return j.bytes
}

/// A request as WeChat sends it: the signature over `timestamp\nnonce\nbody\n` in the Wechatpay-* headers,
/// their names in either spelling, Signature-Type present or not.
private func signedRequest(_ body: [UInt8], choices: inout Choices) -> CallbackRequest {
    let nonce = "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"
    let timestamp = String(nowSeconds)
    let message = Array(timestamp.utf8) + [0x0A] + Array(nonce.utf8) + [0x0A] + body + [0x0A]
    guard let signature = Signature.signRSASHA256(privateKeyPEM: privateKeyPEM, message: message) else { violated("signing failed") }
    var headers = [
        ("Wechatpay-Timestamp", timestamp), ("Wechatpay-Nonce", nonce), ("Wechatpay-Signature", Base64.encode(signature)),
        ("Wechatpay-Serial", keyID),
    ]
    if choices.flag() { headers.append(("Wechatpay-Signature-Type", "WECHATPAY2-SHA256-RSA2048")) }
    if choices.flag() { headers = headers.map { ($0.0.lowercased(), $0.1) } }
    return CallbackRequest(
        method: "POST", target: path, query: nil, headers: headers.map { (name: $0.0, value: $0.1) }, body: body,
        remoteAddress: "127.0.0.1", receivedAtMilliseconds: now)
}

private func checkSignedBody(_ bytes: [UInt8], envelope: Result<WeChatV3Envelope, Refusal>, choices: inout Choices) {
    let request = signedRequest(bytes, choices: &choices)
    let outcome = source.process(request, nowMilliseconds: now).outcome
    if case .failure(let refusal) = envelope, outcome != .refused(refusal) {
        violated("a signed body the envelope parser refuses got another verdict", "\(refusal) vs \(outcome)")
    }
    if case .accepted(let event) = outcome { checkEvent(event, request: request) }

    // One byte of the signature or of the body changed: never verifies.
    var forged = request
    if choices.flag() || bytes.isEmpty {
        let index = forged.headers.firstIndex { $0.name.lowercased() == "wechatpay-signature" }!
        var signature = Base64.decode(forged.headers[index].value)!
        let position = choices.below(signature.count)
        signature[position] ^= UInt8(1 + choices.below(255))
        forged.headers[index].value = Base64.encode(signature)
    } else {
        let position = choices.below(forged.body.count)
        forged.body[position] ^= UInt8(1 + choices.below(255))
    }
    guard case .refused(.badSignature) = source.process(forged, nowMilliseconds: now).outcome else {
        violated("a request with one byte of its signature or body changed was not refused as unverified")
    }
}

private func checkEncryptedPlaintext(_ plaintext: [UInt8], document: JSONValue?, choices: inout Choices) {
    let eventType = eventTypes[choices.below(eventTypes.count)]
    let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789".utf8)
    let nonce = String(decoding: (0..<12).map { _ in alphabet[choices.below(alphabet.count)] }, as: UTF8.self)
    let associatedData = ["transaction", "refund", ""][choices.below(3)]
    guard let sealed = Cipher.aes256GCMEncrypt(
        key: Array(apiV3Key.utf8), nonce: Array(nonce.utf8), associatedData: Array(associatedData.utf8), plaintext: plaintext)
    else { violated("encryption failed") }
    let body = envelopeJSON(eventType: eventType, id: "EV-2018022511223320873", nonce: nonce, associatedData: associatedData, ciphertext: sealed)
    let request = signedRequest(body, choices: &choices)
    let outcome = source.process(request, nowMilliseconds: now).outcome

    guard let document, case .object = document else {
        guard case .refused(.semantic) = outcome else { violated("a resource that is not a JSON object was not refused as semantic", "\(outcome)") }
        return
    }
    let merchant = WeChatV3Resource.merchant(of: document)
    let generic = WeChatV3Resource.eventSource(of: eventType) == WeChatV3Source.eventSource
    if merchant == nil, !generic {
        // Opened under the tenant's key, so the tenant's, in a shape WeChat does not send (docs/protocols.md §8.2, step 9).
        guard case .refused(.semantic) = outcome else { violated("a payment or refund naming no merchant was not refused as semantic", "\(outcome)") }
        return
    }
    guard merchant == mchID || merchant == nil else {
        guard case .refused(.unknownTenant) = outcome else { violated("a resource of another merchant was not refused as unknown tenant", "\(outcome)") }
        return
    }
    guard case .success(let envelope) = WeChatV3Envelope.parse(body) else { violated("the harness's own envelope was refused") }
    switch WeChatV3Resource.map(envelope: envelope, resource: document, tenant: tenant) {
    case .failure(let refusal):
        if outcome != .refused(refusal) { violated("process and map disagree on a refusal", "\(refusal) vs \(outcome)") }
    case .success(let mapped):
        checkMapped(mapped, resource: document, eventType: eventType, envelopeID: envelope.id)
        if let time = mapped.businessTime, time < now - source.maxCallbackAgeMilliseconds {
            guard case .refused(.semantic) = outcome else { violated("a resource older than the replay window was not refused", "\(outcome)") }
            return
        }
        guard case .accepted(let event) = outcome else { violated("a resource map accepts was refused by process", "\(outcome)") }
        guard event.source == mapped.source, event.dedupeKey == mapped.key, event.amount == mapped.amount,
            event.status == mapped.status, event.orderRef == mapped.orderRef, event.resource == document
        else { violated("the event does not carry what map made of the resource", "\(event.dedupeKey.text)") }
        checkEvent(event, request: request)
    }
}

/// What every accepted event must be, and its file read back.
private func checkEvent(_ event: Event, request: CallbackRequest) {
    let keyText = event.dedupeKey.text
    if event.id != Hex.encode(Digest.sha256(Array(keyText.utf8))) { violated("an event id that is not the SHA-256 of its dedupe key", keyText) }
    if event.amount < 0 { violated("an accepted event with a negative amount") }
    if event.tenant != mchID { violated("an event of another tenant", event.tenant) }
    if event.verifiedWith != "rsa-sha256" { violated("verified_with is not rsa-sha256") }
    if !sameBytes(event.raw.body, String(decoding: request.body, as: UTF8.self)) || Array(event.raw.body.utf8) != request.body {
        violated("raw.body is not the body as received")
    }
    guard let rule = WeChatFingerprint.rules[event.source] else { violated("no fingerprint rule for the event's source", event.source) }
    if event.fingerprintRule != rule { violated("the event's fingerprint rule is not its source's", event.fingerprintRule.name) }
    let file: EventFile
    do {
        file = try EventFile.parse(event.jsonBytes())
    } catch {
        violated("the event's own file does not parse", error.reason)
    }
    guard file.id == event.id, sameBytes(file.dedupeKey, keyText), file.source == event.source, file.amount == event.amount,
        file.resource == event.resource
    else { violated("the event file reads back as another event", keyText) }
    if !sameBytes(file.fingerprint(by: rule), event.fingerprint) {
        violated("the stored file's fingerprint differs from the live event's: every retry would be a conflict", keyText)
    }
}

/// Byte for byte: Swift's `==` would take canonically equivalent text as equal.
private func sameBytes(_ a: String, _ b: String) -> Bool {
    a.utf8.elementsEqual(b.utf8)
}
