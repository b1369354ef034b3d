import Foundation
import PayhookCore
import PayhookCrypto
import PayhookTestSupport
import PayhookWeChat
import Testing

/// WeChatV3Source.process on the signed notifications of Fixtures/wechat-v3 (V3-4 … V3-8, README there), with
/// the clock at each one's own timestamp.
@Suite struct WeChatV3SourceTests {
    static let path = "/notify/wechatpay"
    static let apiV3Key = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"
    static let publicKeyID = "PUB_KEY_ID_0000000000000024101100397200000006"

    struct Vector {
        var headers: [(name: String, value: String)]
        var body: [UInt8]
        var timestamp: Int64
    }

    /// Every vector of v3-4.json and gen-vectors.json by the name before its first space (`V3-5`).
    static func vectors() throws -> [String: Vector] {
        func read(_ name: String) throws -> Any {
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: repositoryRoot + "/Fixtures/wechat-v3/" + name)))
        }
        let single = try #require((try read("v3-4.json") as? [String: Any])?["vector"] as? [String: Any])
        let generated = try #require((try read("gen-vectors.json") as? [String: Any])?["vectors"] as? [[String: Any]])
        var vectors: [String: Vector] = [:]
        for vector in [single] + generated {
            let name = try #require(vector["name"] as? String)
            let headers = try #require(vector["headers"] as? [String: String])
            let body = try #require(vector["body"] as? String)
            let timestamp = try #require(headers["Wechatpay-Timestamp"].flatMap { Int64($0) })
            vectors[String(name.prefix { $0 != " " })] = Vector(
                headers: headers.map { ($0.key, $0.value) }, body: Array(body.utf8), timestamp: timestamp)
        }
        return vectors
    }

    static func source(mchID: String = "1900000100", appID: String? = nil) throws -> WeChatV3Source {
        let pem = try String(contentsOfFile: repositoryRoot + "/Fixtures/wechat-v3/wechat_pay_public_key.pem", encoding: .utf8)
        let tenant = WeChatV3Tenant(
            path: path, mchID: mchID, appID: appID, apiV3Keys: [Secret(apiV3Key)],
            publicKey: .init(id: publicKeyID, key: try RSAPublicKey(pem: pem)))
        return WeChatV3Source(path: path, tenants: [tenant])
    }

    /// A notification as WeChat Pay sends it at `now` (Unix seconds): `plaintext` encrypted under the APIv3 key
    /// in an envelope of `eventType`, signed with the SDK test private key (Fixtures/wechat-v3/README.md).
    static func notification(eventType: String, plaintext: [UInt8], now: Int64) throws -> Vector {
        let nonce = "uluk4a9R25RW"
        let sealed = try #require(Cipher.aes256GCMEncrypt(
            key: Array(apiV3Key.utf8), nonce: Array(nonce.utf8), associatedData: Array("transaction".utf8), plaintext: plaintext))
        var j = JSONText()
        j.raw("{\"id\":\"EV-2018022511223320873\",\"create_time\":\"2024-01-01T12:00:06+08:00\",\"resource_type\":\"encrypt-resource\",\"event_type\":")
        j.string(eventType)
        j.raw(",\"resource\":{\"original_type\":\"transaction\",\"algorithm\":\"AEAD_AES_256_GCM\",\"ciphertext\":")
        j.string(Base64.encode(sealed))
        j.raw(",\"associated_data\":\"transaction\",\"nonce\":\"\(nonce)\"}}")
        let body = j.bytes
        let headerNonce = "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"
        let message = Array("\(now)\n\(headerNonce)\n".utf8) + body + [0x0A]
        let key = try String(contentsOfFile: repositoryRoot + "/Fixtures/wechat-v3/wechat_pay_private_key.pem", encoding: .utf8)
        let signature = try #require(Signature.signRSASHA256(privateKeyPEM: key, message: message))
        let headers = [
            ("Wechatpay-Timestamp", "\(now)"), ("Wechatpay-Nonce", headerNonce), ("Wechatpay-Signature", Base64.encode(signature)),
            ("Wechatpay-Serial", publicKeyID),
        ]
        return Vector(headers: headers.map { (name: $0.0, value: $0.1) }, body: body, timestamp: now)
    }

    static func process(_ vector: Vector, _ source: WeChatV3Source) -> Verdict.Outcome {
        let request = CallbackRequest(
            method: "POST", target: path, query: nil, headers: vector.headers, body: vector.body, remoteAddress: "127.0.0.1",
            receivedAtMilliseconds: vector.timestamp * 1000)
        return source.process(request, nowMilliseconds: vector.timestamp * 1000).outcome
    }

    @Test(arguments: [("V3-4", "wechat.pay", 100), ("V3-5", "wechat.refund", 40), ("V3-6", "wechat.refund", 60)])
    func merchantVectorsAreAccepted(name: String, source eventSource: String, amount: Int64) throws {
        let vector = try #require(try Self.vectors()[name])
        guard case .accepted(let event) = Self.process(vector, try Self.source()) else {
            Issue.record("\(name) refused: \(Self.process(vector, try Self.source()))")
            return
        }
        #expect(event.source == eventSource)
        #expect(event.amount == amount)
        #expect(event.id == Hex.encode(Digest.sha256(Array(event.dedupeKey.text.utf8))))
    }

    /// A tenant that pins its appid still receives its refunds: a v3 refund resource names no appid (V3-5,
    /// V3-6), so only a payment, which always names one, must name the pinned one. Refunds were refused 401
    /// ("the appid does not match the tenant's appid") before this was fixed.
    @Test func aPinnedAppIDDoesNotRefuseRefunds() throws {
        let vectors = try Self.vectors()
        let pinned = try Self.source(appID: "wxdace645e0bc2cXXX")
        for name in ["V3-4", "V3-5", "V3-6"] {
            let outcome = Self.process(try #require(vectors[name]), pinned)
            guard case .accepted = outcome else {
                Issue.record("\(name) refused under a pinned appid: \(outcome)")
                continue
            }
        }
        // A payment naming another appid is still refused.
        let other = Self.process(try #require(vectors["V3-4"]), try Self.source(appID: "wx0000000000000000"))
        guard case .refused(.unknownTenant) = other else {
            Issue.record("V3-4 under another pinned appid: \(other)")
            return
        }
    }
}
