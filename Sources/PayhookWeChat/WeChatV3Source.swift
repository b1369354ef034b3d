public import PayhookCore
import PayhookCrypto

/// WeChat Pay API v3 notifications: JSON POSTed with the signature in `Wechatpay-*` headers and the result
/// encrypted in `resource` (docs/contract.md §3.3, docs/protocols.md §8).
///
/// One instance serves one configured path. Several tenants may share it: `Wechatpay-Serial` names the key
/// that signed, which narrows the tenants to those that configured it; the APIv3 key that decrypts the
/// resource, and the merchant the resource then names, pick the one. Nothing is verified or decrypted with a
/// key of a tenant the serial does not name.
///
/// The checks run in the order of docs/protocols.md §8.2, on the body's bytes exactly as received, and every
/// refusal of one status carries the same answer text (no oracle about which check failed).
public struct WeChatV3Source: CallbackSource {
    /// Event types other than payments and refunds (`MCHTRANSFER.BILL.FINISHED`, `PAYSCORE.*`, …): stored
    /// whole, so that WeChat does not retry them for a day.
    public static let eventSource = "wechat.event"
    public static let verifiedWith = "rsa-sha256"
    /// The only signature type this source verifies; an absent header means it too (docs/protocols.md §8.2).
    public static let signatureType = "WECHATPAY2-SHA256-RSA2048"
    /// The prefix of WeChat's deliberate bad signatures, sent to probe whether a merchant checks them.
    public static let signTestPrefix = "WECHATPAY/SIGNTEST/"
    public static let resourceType = "encrypt-resource"
    public static let algorithm = "AEAD_AES_256_GCM"

    /// The signed headers, in the spelling the event's `raw.headers` uses.
    public enum Header {
        public static let timestamp = "Wechatpay-Timestamp"
        public static let nonce = "Wechatpay-Nonce"
        public static let signature = "Wechatpay-Signature"
        public static let serial = "Wechatpay-Serial"
        public static let signatureType = "Wechatpay-Signature-Type"
        /// Kept in `raw.headers` in this order.
        public static let all = [timestamp, nonce, signature, serial, signatureType]
    }

    /// Decrypts a resource: AES-256-GCM in production. Tests hand in another to replay a vector whose
    /// key is not a real APIv3 key (the Go SDK's 16-byte one); the configuration never can.
    public typealias Decryptor = @Sendable (_ key: [UInt8], _ nonce: [UInt8], _ associatedData: [UInt8], _ ciphertextAndTag: [UInt8]) -> [UInt8]?

    public static let aes256GCM: Decryptor = { key, nonce, associatedData, ciphertextAndTag in
        Cipher.aes256GCMDecrypt(key: key, nonce: nonce, associatedData: associatedData, ciphertextAndTag: ciphertextAndTag)
    }

    public let path: String
    let tenants: [WeChatV3Tenant]
    /// A notification whose own time (`success_time`) is older than this is refused: the dedupe ledger may no
    /// longer hold its key (README, "Replays and the ledger's retention").
    public let maxCallbackAgeMilliseconds: Int64
    let decrypt: Decryptor

    public init(
        path: String, tenants: [WeChatV3Tenant], maxCallbackAgeMilliseconds: Int64 = ReplayWindow.defaultMaxCallbackAgeMilliseconds,
        decrypt: @escaping Decryptor = WeChatV3Source.aes256GCM
    ) {
        self.path = path
        self.tenants = tenants.filter { $0.path == path }
        self.maxCallbackAgeMilliseconds = maxCallbackAgeMilliseconds
        self.decrypt = decrypt
    }

    public var method: String { "POST" }

    public var kind: String { "wechat_v3" }

    /// 204 and no body: WeChat needs no answer text, and the status decides (docs/protocols.md §8.6).
    public var successAnswer: Answer { Answer(status: 204, contentType: "", body: []) }

    public func failureAnswer(status: Int, reason: String) -> Answer {
        Answer(status: status, contentType: "application/json", body: Self.failureJSON(reason))
    }

    /// `{"code":"FAIL","message":"…"}`; the message is payhook's own short text, kept printable.
    public static func failureJSON(_ reason: String) -> [UInt8] {
        var j = JSONText()
        j.raw("{\"code\":\"FAIL\",\"message\":")
        j.string(LogText.printable(reason, limit: 80))
        j.raw("}")
        return j.bytes
    }

    // MARK: - Verification

    /// The signed headers of one request, each present exactly once.
    public struct SignedHeaders: Sendable, Equatable {
        public var timestamp: String
        public var nonce: String
        public var signature: String
        public var serial: String
        public var signatureType: String?

        /// For senders: `payhook sign` builds the message it signs with ``message(body:)``, the server's own.
        public init(timestamp: String, nonce: String, signature: String, serial: String, signatureType: String?) {
            self.timestamp = timestamp
            self.nonce = nonce
            self.signature = signature
            self.serial = serial
            self.signatureType = signatureType
        }

        /// `timestamp\nnonce\nbody\n`, the body's bytes exactly as received (docs/protocols.md §7.1).
        public func message(body: [UInt8]) -> [UInt8] {
            var message: [UInt8] = []
            message.reserveCapacity(timestamp.utf8.count + nonce.utf8.count + body.count + 3)
            message.append(contentsOf: timestamp.utf8)
            message.append(0x0A)
            message.append(contentsOf: nonce.utf8)
            message.append(0x0A)
            message.append(contentsOf: body)
            message.append(0x0A)
            return message
        }

        /// The headers in `raw.headers`: canonical names, values as received, absent ones left out.
        public var raw: [FormParameter] {
            let values = [timestamp, nonce, signature, serial, signatureType]
            return zip(Header.all, values).compactMap { name, value in value.map { FormParameter(name: name, value: $0) } }
        }
    }

    /// Reads the signed headers: case-insensitive names (RFC 9110 §5.1), each at most once, since which copy of
    /// a repeated signed header WeChat signed cannot be known.
    public static func signedHeaders(_ request: CallbackRequest) -> Result<SignedHeaders, Refusal> {
        var found: [String?] = []
        for name in Header.all {
            let values = request.headerValues(name)
            guard values.count <= 1 else { return .failure(.malformed("\(name) is repeated")) }
            found.append(values.first)
        }
        let missing = zip(Header.all, found).prefix(4).filter { $0.1 == nil || $0.1!.isEmpty }.map(\.0)
        guard missing.isEmpty else {
            return .failure(.badSignature("\(missing.joined(separator: ", ")) missing or empty: not a signed v3 notification"))
        }
        return .success(SignedHeaders(timestamp: found[0]!, nonce: found[1]!, signature: found[2]!, serial: found[3]!, signatureType: found[4]))
    }

    /// The header's Unix seconds: 1 to 12 ASCII digits, nothing else.
    public static func timestampSeconds(_ text: String) -> Int64? {
        guard (1...12).contains(text.utf8.count), text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int64(text)
    }

    /// One tenant whose configured key the serial names, and that key.
    public struct Candidate: Sendable {
        public let tenant: WeChatV3Tenant
        public let key: WeChatV3Tenant.SignatureKey
    }

    /// The tenants on this path that configured the key `serial` names, in config order.
    public func candidates(serial: String) -> [Candidate] {
        tenants.compactMap { tenant in tenant.key(forSerial: serial).map { Candidate(tenant: tenant, key: $0) } }
    }

    public func process(_ request: CallbackRequest, nowMilliseconds: Int64) -> Verdict {
        var notes = SignatureNotes()
        func refused(_ refusal: Refusal, source: String? = nil, tenant: String? = nil) -> Verdict {
            var verdict = Verdict.refused(refusal, source: source ?? kind, tenant: tenant)
            verdict.signature = notes
            return verdict
        }
        let headers: SignedHeaders
        switch Self.signedHeaders(request) {
        case .failure(let refusal): return refused(refusal)
        case .success(let h): headers = h
        }
        if let type = headers.signatureType, type != Self.signatureType {
            return refused(.badSignature("Wechatpay-Signature-Type '\(LogText.printable(type, limit: 40))' is not \(Self.signatureType)"))
        }
        let candidates = candidates(serial: headers.serial)
        // The tenant label once the serial names exactly one merchant: signature failures are then counted by
        // tenant (Verdict's rule: a configured tenant, never request text).
        let merchants = Set(candidates.map(\.tenant.mchID))
        let named = merchants.count == 1 ? merchants.first : nil
        if headers.signature.hasPrefix(Self.signTestPrefix) {
            notes.probe = true
            return refused(.badSignature("Wechatpay-Signature is a WECHATPAY/SIGNTEST/ probe, refused as WeChat Pay expects"), tenant: named)
        }
        guard let first = candidates.first else {
            notes.unknownKeyID = true
            return refused(.badSignature("no [[wechat_v3]] tenant on \(path) has the key Wechatpay-Serial '\(LogText.printable(headers.serial, limit: 64))' names"))
        }
        notes.keyID = first.key.keyID
        guard let timestamp = Self.timestampSeconds(headers.timestamp) else {
            return refused(.badSignature("Wechatpay-Timestamp is not Unix seconds"), tenant: named)
        }
        let skew = timestamp - nowMilliseconds / 1000
        notes.clockSkewSeconds = skew
        guard let signature = Base64.decode(headers.signature), !signature.isEmpty else {
            notes.verified = false
            return refused(.badSignature("Wechatpay-Signature is not base64"), tenant: named)
        }
        let message = headers.message(body: request.body)
        var verified: [Candidate] = []
        var stale = false
        var expired = false
        for candidate in candidates {
            guard abs(skew) <= candidate.tenant.maxClockSkewSeconds else {
                stale = true
                continue
            }
            if let certificate = candidate.key.certificate, !certificate.isValid(at: nowMilliseconds / 1000) {
                expired = true
                continue
            }
            if Signature.verifyRSASHA256(key: candidate.key.key, message: message, signature: signature) { verified.append(candidate) }
        }
        guard !verified.isEmpty else {
            if stale {
                return refused(.badSignature("Wechatpay-Timestamp is \(skew) s from now, beyond max_clock_skew_s"), tenant: named)
            }
            notes.verified = false
            if expired {
                return refused(.badSignature("the platform certificate Wechatpay-Serial names is outside its validity period"), tenant: named)
            }
            return refused(.badSignature("Wechatpay-Signature does not verify with the key Wechatpay-Serial names"), tenant: named)
        }
        notes.verified = true
        notes.keyID = verified[0].key.keyID

        // Signed by WeChat Pay: now the body may be read (docs/protocols.md §8.2, step 7).
        let envelope: WeChatV3Envelope
        switch WeChatV3Envelope.parse(request.body) {
        case .failure(let refusal): return refused(refusal, tenant: named)
        case .success(let e): envelope = e
        }
        let eventSource = WeChatV3Resource.eventSource(of: envelope.eventType)
        // Decrypt with each verified tenant's keys; the merchant the plaintext names must be that tenant.
        var decrypted: (tenant: WeChatV3Tenant, position: Int, resource: JSONValue, serialKeyID: String)?
        var misrouted: String?
        var undecodable = false
        var unnamed = false
        search: for candidate in verified {
            for (index, key) in candidate.tenant.apiV3Keys.enumerated() {
                guard let plain = decrypt(Array(key.value.utf8), envelope.nonce, envelope.associatedData, envelope.ciphertext) else { continue }
                guard let resource = JSONReader.parse(plain), case .object = resource else {
                    undecodable = true
                    continue search
                }
                let merchant = WeChatV3Resource.merchant(of: resource)
                if merchant == nil, eventSource != Self.eventSource {
                    unnamed = true
                    continue search
                }
                guard merchant == nil || merchant == candidate.tenant.mchID else {
                    misrouted = merchant
                    continue search
                }
                decrypted = (candidate.tenant, index + 1, resource, candidate.key.keyID)
                break search
            }
        }
        guard let decrypted else {
            if let misrouted {
                return refused(
                    .unknownTenant("the decrypted merchant '\(LogText.printable(misrouted, limit: 32))' is not the [[wechat_v3]] tenant whose keys verified it"),
                    source: eventSource, tenant: named)
            }
            if undecodable {
                return refused(.semantic("resource decrypts, but not to a JSON object"), source: eventSource, tenant: named)
            }
            if unnamed {
                return refused(.semantic("the decrypted resource names no merchant (mchid, sp_mchid or combine_mchid)"), source: eventSource, tenant: named)
            }
            return refused(.badSignature("resource does not decrypt under the tenant's APIv3 key(s)"), source: eventSource, tenant: named)
        }
        notes.keyID = decrypted.serialKeyID
        let tenant = decrypted.tenant
        let mapped: WeChatV3Resource.Mapped
        switch WeChatV3Resource.map(envelope: envelope, resource: decrypted.resource, tenant: tenant) {
        case .failure(let refusal): return refused(refusal, source: eventSource, tenant: tenant.mchID)
        case .success(let m): mapped = m
        }
        if let time = mapped.businessTime, time < nowMilliseconds - maxCallbackAgeMilliseconds {
            return refused(
                .semantic("success_time is older than the replay window (\(maxCallbackAgeMilliseconds / 86_400_000) days, ledger_retention_days minus one)"),
                source: mapped.source, tenant: tenant.mchID)
        }
        var fields = envelope.fields
        fields.append(FormParameter(name: "wechatpay_serial", value: headers.serial))
        var event = Event(
            id: Hex.encode(Digest.sha256(mapped.key.bytes)), source: mapped.source, tenant: tenant.mchID,
            orderRef: mapped.orderRef, status: mapped.status, amount: mapped.amount, currency: mapped.currency,
            dedupeKey: mapped.key, verifiedWith: Self.verifiedWith, receivedAtMilliseconds: request.receivedAtMilliseconds,
            remoteAddress: request.remoteAddress, fields: fields,
            // The envelope parsed as strict JSON, so the body is valid UTF-8 and this conversion is exact.
            raw: Event.RawRequest(
                method: request.method, target: request.target, body: String(decoding: request.body, as: UTF8.self), headers: headers.raw))
        event.resource = decrypted.resource
        event.secretPosition = decrypted.position
        event.fingerprintRule = WeChatFingerprint.rules[mapped.source] ?? .allFields
        var verdict = Verdict.accepted(event)
        verdict.signature = notes
        return verdict
    }
}
