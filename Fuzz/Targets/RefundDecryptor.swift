// Fuzz target: WeChatSource.decryptRefund, the refund notification's req_info decryptor (strict base64,
// AES-256-ECB under the MD5-hex of the APIv2 key, strict PKCS#7, strict flat <root> document), and the
// refund path of WeChatSource.process around it.
//
// Every input is used twice.
//
// As req_info itself: decryptRefund never traps; text that is not canonical base64 is refused as
// malformed (and canonical base64 re-encodes to the same text); whatever decrypts, decrypts the same
// with the right key placed after a wrong one (rotation), and re-encrypted decrypts to the same fields.
//
// Read loosely as refund fields: serialised as the inner <root> document, encrypted under the key
// derived as the README says and base64-encoded, it decrypts to exactly those fields (as does what
// WeChatSigner.reqInfo makes of them) when they have the documented shape (WeChatFields.checkRefund) and
// the ciphertext repeats no block, and is refused as unverified (401) otherwise; refused under a tenant
// with other keys; with one ciphertext byte changed it never decrypts to those fields. Wrapped in a
// notification, WeChatSource accepts it exactly when it decrypts, else refuses it as unverified, and the
// event carries the fields.

import PayhookCore
import PayhookCrypto
import PayhookWeChat

private let apiKey = "192006250b4c09247ec02edce69f6a2d"
private let mchID = "10000100"
private let appID = "wx2421b1c4370ec43b"
private let tenant = WeChatTenant(
    path: "/notify/wechat", mchID: mchID, appID: appID, keys: [Secret(apiKey)], signTypes: [.md5], line: 1)
/// Rotation: the right key in second place.
private let rotating = WeChatTenant(
    path: "/notify/wechat", mchID: mchID, appID: appID, keys: [Secret("an-older-key-no-longer-in-use-00"), Secret(apiKey)],
    signTypes: [.md5], line: 1)
private let stranger = WeChatTenant(
    path: "/notify/wechat", mchID: mchID, appID: appID, keys: [Secret("someone-else's-key")], signTypes: [.md5], line: 1)
private let source = WeChatSource(path: "/notify/wechat", tenants: [tenant])

/// README: the AES key is the 32 ASCII characters of the lowercase hex MD5 of the APIv2 key.
private let aesKey: [UInt8] = {
    let digits = Array("0123456789abcdef".utf8)
    return Digest.md5(Array(apiKey.utf8)).flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0f)]] }
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func refundDecryptorFuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = fuzzBytes(data, size)
    var choices = Choices(bytes)
    checkRawReqInfo(bytes, choices: &choices)
    checkEncryptedFields(looseElements(bytes), choices: &choices)
    return 0
}

private func checkRawReqInfo(_ bytes: [UInt8], choices: inout Choices) {
    let reqInfo = String(decoding: bytes, as: UTF8.self)
    let result = WeChatSource.decryptRefund(reqInfo, tenant: tenant)
    guard let ciphertext = Base64.decode(reqInfo) else {
        guard case .failure(.malformed) = result else { violated("req_info that is not base64 was not refused as malformed", "\(result)") }
        return
    }
    // Strict base64: one spelling per byte string, so decode then encode gives the same text back.
    if Base64.encode(ciphertext) != reqInfo { violated("base64 accepted a non-canonical spelling", reqInfo) }
    if ciphertext.isEmpty || ciphertext.count % 16 != 0 {
        guard case .failure(.malformed) = result else { violated("req_info that is not whole AES blocks was not refused as malformed") }
        return
    }
    if case .failure(.malformed) = result { violated("whole AES blocks refused as malformed") }
    let rotated = WeChatSource.decryptRefund(reqInfo, tenant: rotating)
    guard case .success(let fields) = result else { return }
    checkFlatInvariants(fields, input: Cipher.aes256ECBDecrypt(key: aesKey, ciphertext: ciphertext) ?? [])
    guard case .success(let rotatedFields) = rotated, exactly(rotatedFields, fields) else {
        violated("req_info decrypts under the key alone but not with an older key listed first")
    }
    let again = encrypt(flatDocument(fields, root: "root", choices: &choices))
    // Another serialisation may, rarely, line a repeated run of text up into two equal blocks.
    if WeChatFields.repeatsBlock(Base64.decode(again) ?? []) { return }
    guard case .success(let reparsed) = WeChatSource.decryptRefund(again, tenant: tenant), exactly(reparsed, fields) else {
        violated("decrypted fields, encrypted again, do not decrypt to the same fields", again)
    }
}

/// Whether a document of these fields, under this ciphertext, is one payhook believes came from WeChat.
private func believable(_ fields: [FlatXMLElement], _ ciphertext: [UInt8]) -> Bool {
    (try? WeChatFields.checkRefund(fields).get()) != nil && !WeChatFields.repeatsBlock(ciphertext)
}

private func checkEncryptedFields(_ fields: [FlatXMLElement], choices: inout Choices) {
    let plaintext = flatDocument(fields, root: "root", choices: &choices)
    let ciphertext = Cipher.aes256ECBEncrypt(key: aesKey, plaintext: plaintext)!
    let reqInfo = Base64.encode(ciphertext)
    let signedReqInfo = WeChatSigner.reqInfo(fields, key: apiKey)
    if believable(fields, ciphertext) {
        guard case .success(let decrypted) = WeChatSource.decryptRefund(reqInfo, tenant: tenant), exactly(decrypted, fields) else {
            violated("encrypted fields do not decrypt to themselves", String(decoding: plaintext, as: UTF8.self))
        }
    } else if case .success = WeChatSource.decryptRefund(reqInfo, tenant: tenant) {
        violated("a document WeChat does not write (or a repeated block) was believed", String(decoding: plaintext, as: UTF8.self))
    }
    if believable(fields, Base64.decode(signedReqInfo) ?? []) {
        guard case .success(let signed) = WeChatSource.decryptRefund(signedReqInfo, tenant: tenant), exactly(signed, fields) else {
            violated("WeChatSigner.reqInfo does not decrypt to its own fields", String(decoding: plaintext, as: UTF8.self))
        }
    }
    guard case .failure(.badSignature) = WeChatSource.decryptRefund(reqInfo, tenant: stranger) else {
        violated("req_info decrypted under a tenant holding other keys")
    }

    // One ciphertext byte changed: ECB garbles that 16-byte block (or breaks the padding), so the same
    // fields can only come back if the parser ignores part of what it was given.
    var tampered = ciphertext
    let position = choices.below(tampered.count)
    tampered[position] ^= UInt8(1 + choices.below(255))
    if case .success(let fromTampered) = WeChatSource.decryptRefund(Base64.encode(tampered), tenant: tenant),
        exactly(fromTampered, fields)
    {
        violated("a changed ciphertext byte decrypted to the same fields", "byte \(position) of \(reqInfo)")
    }

    checkRefundNotification(fields, reqInfo: reqInfo, valid: believable(fields, ciphertext), choices: &choices)
}

private func checkRefundNotification(_ fields: [FlatXMLElement], reqInfo: String, valid: Bool, choices: inout Choices) {
    let outer = [
        FlatXMLElement(name: "return_code", text: "SUCCESS"), FlatXMLElement(name: "appid", text: appID),
        FlatXMLElement(name: "mch_id", text: mchID), FlatXMLElement(name: "nonce_str", text: "TeqClE3i0mvn3DrK"),
        FlatXMLElement(name: "req_info", text: reqInfo),
    ]
    let body = flatDocument(outer, root: "xml", choices: &choices)
    let request = CallbackRequest(
        method: "POST", target: "/notify/wechat", query: nil, body: body, remoteAddress: "127.0.0.1", receivedAtMilliseconds: 0)
    let verdict = source.process(request, nowMilliseconds: 0).outcome
    let values = fieldMap(fields)
    switch verdict {
    case .accepted(let event):
        // Checked independently of WeChatFields: the fields every dedupe key and amount depend on.
        if !valid || (values["out_refund_no"] ?? "").isEmpty || !isAmount(values["refund_fee"])
            || !["SUCCESS", "CHANGE", "REFUNDCLOSE"].contains(where: { $0.utf8.elementsEqual((values["refund_status"] ?? "").utf8) }) {
            violated("a refund failing the checks was accepted", "\(values)")
        }
        let expectedFields = fields.map { FormParameter(name: $0.name, value: $0.text) }
        guard event.source == "wechat.refund", exactly(event.fields, expectedFields), event.amount == Int64(values["refund_fee"]!),
            event.status == values["refund_status"], event.orderRef == values["out_trade_no"], event.tenant == mchID,
            event.dedupeKey == DedupeKey(source: "wechat.refund", parts: [mchID, values["out_refund_no"]!, values["refund_status"]!])
        else { violated("the accepted refund event does not carry the decrypted fields", "\(event)") }
    case .refused(.badSignature):
        if valid { violated("a refund of the documented shape was refused as unverified", "\(values)") }
    default:
        violated("a correctly encrypted refund was refused for another reason than verification", "\(verdict)")
    }
}

private func encrypt(_ plaintext: [UInt8]) -> String {
    Base64.encode(Cipher.aes256ECBEncrypt(key: aesKey, plaintext: plaintext)!)
}
