import Foundation
import PayhookCore
@testable import PayhookCrypto
import PayhookTestSupport
import Synchronization
import Testing

// The WeChat Pay v3 primitives (docs/protocols.md §7) against the vectors of Fixtures/wechat-v3 (where each
// comes from: Fixtures/wechat-v3/README.md): V3-1 and V3-3 from the SDKs' own tests, V3-4…V3-9 signed with
// the SDK test key, and the Go SDK's certificate-mode notification.
@Suite struct WeChatV3CryptoTests {
    // MARK: fixtures

    struct Vector: Decodable {
        let name: String
        let headers: [String: String]
        let body: String
        let apiv3_key: String
        let plaintext: String
        let message_sha256: String

        var timestamp: String { headers["Wechatpay-Timestamp"] ?? "" }
        var nonce: String { headers["Wechatpay-Nonce"] ?? "" }
        var signatureHeader: String { headers["Wechatpay-Signature"] ?? "" }

        /// `timestamp\nnonce\nbody\n`, the body's bytes exactly as received (docs/protocols.md §7).
        var message: [UInt8] { Self.message(timestamp: Array(timestamp.utf8), nonce: Array(nonce.utf8), body: Array(body.utf8)) }

        static func message(timestamp: [UInt8], nonce: [UInt8], body: [UInt8]) -> [UInt8] {
            timestamp + [0x0a] + nonce + [0x0a] + body + [0x0a]
        }

        var resource: Resource { get throws { try JSONDecoder().decode(Envelope.self, from: Data(body.utf8)).resource } }
    }

    struct Envelope: Decodable { let resource: Resource }
    struct Resource: Decodable {
        let algorithm: String
        let ciphertext: String
        let associated_data: String
        let nonce: String
    }

    struct GeneratedFile: Decodable {
        let public_key_id: String
        let apiv3_key: String
        let vectors: [Vector]
    }

    struct SingleFile: Decodable { let vector: Vector }

    static func fixture(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: repositoryRoot + "/Fixtures/wechat-v3/" + name)))
    }

    static func text(_ name: String) throws -> String { String(decoding: try fixture(name), as: UTF8.self) }

    /// V3-4 … V3-9 by their number.
    static func vector(_ id: String) throws -> Vector {
        if id == "V3-4" { return try JSONDecoder().decode(SingleFile.self, from: Data(try fixture("v3-4.json"))).vector }
        let file = try JSONDecoder().decode(GeneratedFile.self, from: Data(try fixture("gen-vectors.json")))
        return try #require(file.vectors.first { $0.name.hasPrefix(id + " ") }, "no vector \(id)")
    }

    static func publicKey() throws -> RSAPublicKey { try RSAPublicKey(pem: try fixture("wechat_pay_public_key.pem")) }

    static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    static func flipped(_ bytes: [UInt8], at index: Int) -> [UInt8] {
        var copy = bytes
        copy[index] ^= 0x01
        return copy
    }

    /// The ciphertext (with tag) of a vector's resource, base64-decoded.
    static func sealed(_ resource: Resource) throws -> [UInt8] { try #require(Base64.decode(resource.ciphertext)) }

    static let validNotifications = ["V3-4", "V3-5", "V3-6", "V3-7", "V3-8"]

    // MARK: V3-4 … V3-8: genuine notifications in public-key mode

    @Test(arguments: validNotifications)
    func signatureVerifies(id: String) throws {
        let v = try Self.vector(id)
        let key = try Self.publicKey()
        #expect(key.isRSA2048)
        #expect(v.headers["Wechatpay-Serial"] == "PUB_KEY_ID_0000000000000024101100397200000006")
        #expect(v.headers["Wechatpay-Signature-Type"] == "WECHATPAY2-SHA256-RSA2048")
        #expect(Hex.encode(Digest.sha256(v.message)) == v.message_sha256)
        let signature = try #require(Base64.decode(v.signatureHeader))
        #expect(signature.count == 256)
        #expect(Signature.verifyRSASHA256(key: key, message: v.message, signature: signature))
    }

    /// One changed byte anywhere in what is signed, or in the signature, and the signature no longer holds.
    @Test(arguments: validNotifications)
    func oneFlippedByteFails(id: String) throws {
        let v = try Self.vector(id)
        let key = try Self.publicKey()
        let signature = try #require(Base64.decode(v.signatureHeader))
        let (ts, nonce, body) = (Self.bytes(v.timestamp), Self.bytes(v.nonce), Self.bytes(v.body))
        var cases: [(String, [UInt8], [UInt8])] = []
        for index in [0, body.count / 2, body.count - 1] {
            cases.append(("body byte \(index)", Vector.message(timestamp: ts, nonce: nonce, body: Self.flipped(body, at: index)), signature))
        }
        for index in [0, ts.count - 1] {
            cases.append(("timestamp byte \(index)", Vector.message(timestamp: Self.flipped(ts, at: index), nonce: nonce, body: body), signature))
        }
        for index in [0, nonce.count - 1] {
            cases.append(("nonce byte \(index)", Vector.message(timestamp: ts, nonce: Self.flipped(nonce, at: index), body: body), signature))
        }
        for index in [0, 128, 255] {
            cases.append(("signature byte \(index)", v.message, Self.flipped(signature, at: index)))
        }
        // The framing is signed too: without the final newline, or the body alone, nothing verifies.
        cases.append(("no final newline", Array(v.message.dropLast()), signature))
        cases.append(("body alone", body, signature))
        for (label, message, signature) in cases {
            let verified = Signature.verifyRSASHA256(key: key, message: message, signature: signature)
            #expect(!verified, "\(label)")
        }
    }

    @Test(arguments: validNotifications)
    func resourceDecryptsToTheDocumentedPlaintext(id: String) throws {
        let v = try Self.vector(id)
        let r = try v.resource
        #expect(r.algorithm == "AEAD_AES_256_GCM")
        let plain = Cipher.aes256GCMDecrypt(
            key: Self.bytes(v.apiv3_key), nonce: Self.bytes(r.nonce), associatedData: Self.bytes(r.associated_data),
            ciphertextAndTag: try Self.sealed(r))
        #expect(plain == Self.bytes(v.plaintext))
    }

    @Test(arguments: validNotifications)
    func resourceRefusesWrongInputs(id: String) throws {
        let v = try Self.vector(id)
        let r = try v.resource
        let (key, nonce, aad, sealed) = (Self.bytes(v.apiv3_key), Self.bytes(r.nonce), Self.bytes(r.associated_data), try Self.sealed(r))
        func opens(_ key: [UInt8], _ nonce: [UInt8], _ aad: [UInt8], _ sealed: [UInt8]) -> Bool {
            Cipher.aes256GCMDecrypt(key: key, nonce: nonce, associatedData: aad, ciphertextAndTag: sealed) != nil
        }
        #expect(opens(key, nonce, aad, sealed))
        let refused: [(String, Bool)] = [
            ("wrong key", opens(Self.flipped(key, at: 0), nonce, aad, sealed)),
            ("wrong key, last byte", opens(Self.flipped(key, at: 31), nonce, aad, sealed)),
            ("wrong associated data", opens(key, nonce, Self.flipped(aad, at: 0), sealed)),
            ("associated data left out", opens(key, nonce, [], sealed)),
            ("associated data longer", opens(key, nonce, aad + [0x20], sealed)),
            ("wrong nonce", opens(key, Self.flipped(nonce, at: 0), aad, sealed)),
            ("wrong nonce, last byte", opens(key, Self.flipped(nonce, at: 11), aad, sealed)),
            ("tag truncated by one byte", opens(key, nonce, aad, Array(sealed.dropLast()))),
            ("tag removed", opens(key, nonce, aad, Array(sealed.dropLast(16)))),
            ("tag changed", opens(key, nonce, aad, Self.flipped(sealed, at: sealed.count - 1))),
            ("ciphertext changed", opens(key, nonce, aad, Self.flipped(sealed, at: 0))),
            // Lengths the API refuses outright: the key must be 32 bytes and the nonce 12, whatever the content.
            ("16-byte key", opens(Array(key.prefix(16)), nonce, aad, sealed)),
            ("31-byte key", opens(Array(key.prefix(31)), nonce, aad, sealed)),
            ("33-byte key", opens(key + [0], nonce, aad, sealed)),
            ("empty key", opens([], nonce, aad, sealed)),
            ("11-byte nonce", opens(key, Array(nonce.prefix(11)), aad, sealed)),
            ("13-byte nonce", opens(key, nonce + [0], aad, sealed)),
            ("empty nonce", opens(key, [], aad, sealed)),
            ("shorter than a tag", opens(key, nonce, aad, Array(sealed.prefix(15)))),
            ("empty ciphertext", opens(key, nonce, aad, [])),
        ]
        for (label, opened) in refused { #expect(!opened, "\(label)") }
    }

    /// Signing V3-4's message with the test private key gives the vector's signature byte for byte
    /// (RSASSA-PKCS1-v1_5 is deterministic, RFC 8017 §8.2.1), from the PKCS#8 and the PKCS#1 spelling alike.
    @Test(arguments: validNotifications)
    func signingReproducesTheVectorSignature(id: String) throws {
        let v = try Self.vector(id)
        let expected = try #require(Base64.decode(v.signatureHeader))
        #expect(Signature.signRSASHA256(privateKeyPEM: try Self.fixture("wechat_pay_private_key.pem"), message: v.message) == expected)
        #expect(Signature.signRSASHA256(privateKeyPEM: try Self.text("wechat_pay_private_key.pkcs1.pem"), message: v.message) == expected)
    }

    // MARK: V3-9: the signature probe

    /// V3-9 is V3-5 with the first 19 base64 characters of its signature replaced by `WECHATPAY/SIGNTEST/`.
    /// Those characters are base64 too, so the header decodes to 256 bytes; they are simply not a signature.
    @Test func signTestProbeDoesNotVerify() throws {
        let probe = try Self.vector("V3-9")
        let genuine = try Self.vector("V3-5")
        #expect(probe.body == genuine.body && probe.timestamp == genuine.timestamp && probe.nonce == genuine.nonce)
        #expect(probe.signatureHeader.hasPrefix("WECHATPAY/SIGNTEST/"))
        let signature = try #require(Base64.decode(probe.signatureHeader))
        #expect(signature.count == 256)
        let key = try Self.publicKey()
        #expect(!Signature.verifyRSASHA256(key: key, message: probe.message, signature: signature))
        #expect(Signature.verifyRSASHA256(key: key, message: genuine.message, signature: try #require(Base64.decode(genuine.signatureHeader))))
    }

    /// One notification's signature does not verify another's message.
    @Test func signaturesAreNotInterchangeable() throws {
        let key = try Self.publicKey()
        let vectors = try Self.validNotifications.map(Self.vector)
        for (i, a) in vectors.enumerated() {
            for (j, b) in vectors.enumerated() where i != j {
                #expect(!Signature.verifyRSASHA256(key: key, message: a.message, signature: try #require(Base64.decode(b.signatureHeader))))
            }
        }
    }

    // MARK: the Go SDK's certificate-mode notification

    struct GoHeaders: Decodable {
        let nonce: String, timestamp: String, serial: String, signature: String, apiv3Key: String
        enum CodingKeys: String, CodingKey {
            case nonce = "Wechatpay-Nonce", timestamp = "Wechatpay-Timestamp", serial = "Wechatpay-Serial"
            case signature = "Wechatpay-Signature", apiv3Key = "apiv3_key"
        }
    }

    /// The 16-character test APIv3 key of the Go SDK's test; headers.json spells it with a note after it.
    static let goSDKKey = "testMchAPIv3Key0"
    /// The time the Go SDK's test pins its clock to, equal to the notification's timestamp.
    static let goSDKNow: Int64 = 1_624_523_846

    @Test func goSDKCertificateVector() throws {
        let headers = try JSONDecoder().decode(GoHeaders.self, from: Data(try Self.fixture("go-sdk/headers.json")))
        let body = try Self.fixture("go-sdk/body.json")
        #expect(body.count == 568 && body.last == UInt8(ascii: "}"))
        #expect(headers.apiv3Key.hasPrefix(Self.goSDKKey + " "))
        #expect(headers.timestamp == String(Self.goSDKNow))

        let certificate = try X509Certificate(pem: try Self.fixture("go-sdk/wechatpay_certificate.pem"))
        #expect(certificate.serialHex == "D7CE59D1F522D701")
        #expect(certificate.serialHex == headers.serial)
        #expect(certificate.hasSerial(headers.serial))
        #expect(certificate.notBefore == 1_619_513_723)  // 2021-04-27 08:55:23 UTC
        #expect(certificate.notAfter == 1_934_873_723)  // 2031-04-25 08:55:23 UTC
        #expect(certificate.isValid(at: Self.goSDKNow))
        #expect(certificate.publicKey.isRSA2048)

        let message = Vector.message(timestamp: Self.bytes(headers.timestamp), nonce: Self.bytes(headers.nonce), body: body)
        #expect(message.count == 613)
        let signature = try #require(Base64.decode(headers.signature))
        #expect(Signature.verifyRSASHA256(key: certificate.publicKey, message: message, signature: signature))
        let sameKey = try RSAPublicKey(certificatePEM: try Self.text("go-sdk/wechatpay_certificate.pem"))
        #expect(Signature.verifyRSASHA256(key: sameKey, message: message, signature: signature))
        #expect(!Signature.verifyRSASHA256(key: certificate.publicKey, message: Self.flipped(message, at: 300), signature: signature))
        // The other test key does not verify it, nor does this certificate verify the public-key vectors.
        #expect(!Signature.verifyRSASHA256(key: try Self.publicKey(), message: message, signature: signature))
        let v = try Self.vector("V3-5")
        #expect(!Signature.verifyRSASHA256(key: certificate.publicKey, message: v.message, signature: try #require(Base64.decode(v.signatureHeader))))

        let envelope = try JSONDecoder().decode(Envelope.self, from: Data(body))
        let r = envelope.resource
        #expect(r.algorithm == "AEAD_AES_256_GCM")
        let sealed = try Self.sealed(r)
        let key = Self.bytes(Self.goSDKKey)
        #expect(key.count == 16)
        // The production API refuses the 16-byte key; only the test seam opens this one vector.
        #expect(Cipher.aes256GCMDecrypt(key: key, nonce: Self.bytes(r.nonce), associatedData: Self.bytes(r.associated_data), ciphertextAndTag: sealed) == nil)
        let plain = Cipher.testSeamAES128GCMDecrypt(
            key: key, nonce: Self.bytes(r.nonce), associatedData: Self.bytes(r.associated_data), ciphertextAndTag: sealed)
        #expect(plain == (try Self.fixture("go-sdk/plaintext.json")))
        #expect(
            Cipher.testSeamAES128GCMDecrypt(key: key, nonce: Self.bytes(r.nonce), associatedData: Self.bytes("payscorf"), ciphertextAndTag: sealed)
                == nil)
        #expect(Cipher.testSeamAES128GCMDecrypt(key: key + key, nonce: Self.bytes(r.nonce), associatedData: [], ciphertextAndTag: sealed) == nil)
    }

    // MARK: V3-1 and V3-3, the SDK's own primitive tests

    /// V3-1: WeChat Pay's Java SDK AEAD test. GCM is deterministic for a given key and nonce, so encryption
    /// reproduces the ciphertext exactly.
    @Test func v31AEADKnownAnswer() throws {
        let key = Self.bytes("a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb")
        let nonce = Self.bytes("uluk4a9R25RW")
        let aad = Self.bytes("associatedData")
        let sealed = try #require(Base64.decode("ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI="))
        #expect(sealed.count == 7 + 16)
        #expect(Cipher.aes256GCMDecrypt(key: key, nonce: nonce, associatedData: aad, ciphertextAndTag: sealed) == Self.bytes("message"))
        #expect(Cipher.aes256GCMEncrypt(key: key, nonce: nonce, associatedData: aad, plaintext: Self.bytes("message")) == sealed)
    }

    /// V3-3: WeChat Pay's Java SDK RSA verifier test: the message `message`, no newline, and the test merchant
    /// certificate, whose validity ended in 2025; verification itself does not look at dates.
    @Test func v33RSAKnownAnswerWithAnExpiredCertificate() throws {
        let certificate = try X509Certificate(pem: try Self.fixture("merchant_certificate.pem"))
        #expect(certificate.serialHex == "5F1C72E2A8931B72A2E13AF8DEE92471EB397115")
        #expect(certificate.notBefore == 1_652_147_830)  // 2022-05-10 01:57:10 UTC
        #expect(certificate.notAfter == 1_746_755_830)  // 2025-05-09 01:57:10 UTC
        #expect(certificate.isValid(at: 1_700_000_000))
        #expect(!certificate.isValid(at: 1_746_755_831))
        #expect(!certificate.isValid(at: 1_652_147_829))
        #expect(certificate.publicKey.isRSA2048)
        let signature = try #require(
            Base64.decode(
                "Rq+5ZpWV6IHTWE1+9gCrYJKguNgbItpMdlIA+PVCPCdUAKNlohZz7CL7Y8xWDIFJjdGnErMj6Z+Q/h9CF5MV+nAVkqDmBR0uP5ppsUEzco4ijvKHsvI2ro4boSW6vSfQs3W8I4QSI9a0/NFIgvj83Fv27LIYZf7deaFWmEwd1fpAeJRCyoKyBeJPdsjVx0//Lqe6Wze2zVdliLcBvaHCfpd8+rAVGS+FQDeWgHqJ7n/Zy09LmV1/ghs7pO1mdjdD16SHKlysAD3K5hNGUJX/SHrEXEcu1yO1AOb/YvOVkjNh8243rcfXNE5L4ph2XS11vS+2aToKYSOcKUagf0LLaw=="
            ))
        #expect(Signature.verifyRSASHA256(key: certificate.publicKey, message: Self.bytes("message"), signature: signature))
        #expect(!Signature.verifyRSASHA256(key: certificate.publicKey, message: Self.bytes("message\n"), signature: signature))
    }

    // MARK: which keys are RSA-2048

    @Test func rsa2048Detection() throws {
        let wechat = try Self.publicKey()
        #expect(wechat.isRSA && wechat.bits == 2048 && wechat.isRSA2048 && wechat.typeName == "RSA")

        let small = try RSAPublicKey(pem: try Self.text("test-only-rsa1024-public.pem"))
        #expect(small.isRSA && small.bits == 1024 && !small.isRSA2048)

        let ec = try RSAPublicKey(pem: try Self.fixture("test-only-ec-p256-public.pem"))
        #expect(!ec.isRSA && ec.bits == 256 && !ec.isRSA2048 && ec.typeName == "EC")

        let smallCertificate = try X509Certificate(pem: try Self.fixture("test-only-rsa1024-certificate.pem"))
        #expect(smallCertificate.publicKey.isRSA && smallCertificate.publicKey.bits == 1024 && !smallCertificate.publicKey.isRSA2048)
        let ecCertificate = try X509Certificate(pem: try Self.fixture("test-only-ec-p256-certificate.pem"))
        #expect(!ecCertificate.publicKey.isRSA && !ecCertificate.publicKey.isRSA2048 && ecCertificate.publicKey.typeName == "EC")
        #expect(!(try RSAPublicKey(certificatePEM: try Self.fixture("test-only-ec-p256-certificate.pem"))).isRSA)
    }

    /// A key that is not RSA never verifies, whatever the signature; an EC private key signs nothing here.
    @Test func nonRSAKeysNeverVerifyOrSign() throws {
        let ec = try RSAPublicKey(pem: try Self.fixture("test-only-ec-p256-public.pem"))
        for length in [0, 64, 72, 256] {
            #expect(!Signature.verifyRSASHA256(key: ec, message: Self.bytes("m"), signature: [UInt8](repeating: 0x30, count: length)))
        }
        #expect(Signature.signRSASHA256(privateKeyPEM: try Self.fixture("test-only-ec-p256-private-key.pem"), message: Self.bytes("m")) == nil)
    }

    /// The 1024-bit key is still RSA: it verifies its own kind of signature (128 bytes) and refuses a
    /// 2048-bit one by length. Whether 1024 bits is acceptable is the caller's decision (`isRSA2048`).
    @Test func signatureLengthMustBeTheKeysModulusLength() throws {
        let key = try Self.publicKey()
        let v = try Self.vector("V3-4")
        let signature = try #require(Base64.decode(v.signatureHeader))
        for bad in [[], Array(signature.prefix(255)), signature + [0], [0] + signature, Array(signature.prefix(128)), signature + signature] {
            #expect(!Signature.verifyRSASHA256(key: key, message: v.message, signature: bad))
        }
        #expect(!Signature.verifyRSASHA256(key: key, message: v.message, signature: [UInt8](repeating: 0, count: 256)))
        #expect(!Signature.verifyRSASHA256(key: key, message: v.message, signature: [UInt8](repeating: 0xff, count: 256)))
        let small = try RSAPublicKey(pem: try Self.fixture("test-only-rsa1024-public.pem"))
        #expect(!Signature.verifyRSASHA256(key: small, message: v.message, signature: signature))
    }

    // MARK: serial numbers

    @Test func serialComparison() {
        let serial = "D7CE59D1F522D701"
        #expect(X509Certificate.sameSerial(serial, serial))
        #expect(X509Certificate.sameSerial(serial, "d7ce59d1f522d701"))
        #expect(X509Certificate.sameSerial(serial, "d7CE59d1F522d701"))
        #expect(X509Certificate.sameSerial(serial, "00D7CE59D1F522D701"))
        #expect(X509Certificate.sameSerial("0000000000000000000000000000000000000000D7CE59D1F522D701", serial))
        #expect(X509Certificate.sameSerial("0", "0000"))
        #expect(X509Certificate.sameSerial("0A", "a"))
        // Different integers, including a prefix or an extension of the same digits.
        #expect(!X509Certificate.sameSerial(serial, "D7CE59D1F522D702"))
        #expect(!X509Certificate.sameSerial(serial, "D7CE59D1F522D70"))
        #expect(!X509Certificate.sameSerial(serial, "D7CE59D1F522D7010"))
        #expect(!X509Certificate.sameSerial(serial, "5F1C72E2A8931B72A2E13AF8DEE92471EB397115"))
        // Not plain hexadecimal: never the same as anything.
        for bad in ["", " D7CE59D1F522D701", "D7CE59D1F522D701 ", "0xD7CE59D1F522D701", "D7:CE:59:D1:F5:22:D7:01", "-D7CE59D1F522D701",
            "+D7CE59D1F522D701", "D7CE59D1F522D70G", "PUB_KEY_ID_0000000000000024101100397200000006", "D7CE59D1F522D70１", "Ｄ7CE59D1F522D701"]
        {
            #expect(!X509Certificate.sameSerial(serial, bad), "\(bad)")
            #expect(!X509Certificate.sameSerial(bad, bad), "\(bad)")
            #expect(X509Certificate.normalizedSerial(bad) == nil, "\(bad)")
        }
        #expect(X509Certificate.normalizedSerial("00ab") == "AB")
        #expect(X509Certificate.normalizedSerial("000") == "0")
        #expect(X509Certificate.normalizedSerial("5f1c72e2a8931b72a2e13af8dee92471eb397115") == "5F1C72E2A8931B72A2E13AF8DEE92471EB397115")
    }

    /// Serials read from certificates: one whose DER integer starts with a zero nibble (17 bytes,
    /// 0x0A1B…), and the serial 1.
    @Test func serialsReadFromCertificates() throws {
        let long = try X509Certificate(pem: try Self.fixture("test-only-rsa1024-certificate.pem"))
        #expect(long.serialHex == "A1B2C3D4E5F60718293A4B5C6D7E8F901")
        #expect(long.hasSerial("0A1B2C3D4E5F60718293A4B5C6D7E8F901"))
        #expect(long.hasSerial("000a1b2c3d4e5f60718293a4b5c6d7e8f901"))
        #expect(!long.hasSerial("0A1B2C3D4E5F60718293A4B5C6D7E8F9"))
        #expect(long.notAfter - long.notBefore == 3650 * 86_400)
        let one = try X509Certificate(pem: try Self.fixture("test-only-ec-p256-certificate.pem"))
        #expect(one.serialHex == "1")
        #expect(one.hasSerial("01") && one.hasSerial("1") && one.hasSerial("0000000000000000000000000000000000000001"))
        #expect(!one.hasSerial("10"))
    }

    // MARK: malformed input

    /// Every loader, on every kind of wrong input: a thrown CryptoError or nil, never a crash.
    @Test func malformedInputsAreRefused() throws {
        let publicKey = try Self.fixture("wechat_pay_public_key.pem")
        let certificate = try Self.fixture("go-sdk/wechatpay_certificate.pem")
        let privateKey = try Self.fixture("wechat_pay_private_key.pem")
        let header = Self.bytes("-----BEGIN PUBLIC KEY-----\n")
        let footer = Self.bytes("-----END PUBLIC KEY-----\n")
        let bad: [(String, [UInt8])] = [
            ("garbage", Self.bytes("this is not a key")),
            ("NUL bytes", [UInt8](repeating: 0, count: 64)),
            ("no body", header + footer),
            ("no footer", Array(publicKey.dropLast(30))),
            ("half", Array(publicKey.prefix(publicKey.count / 2))),
            ("not base64", header + Self.bytes("!!!!@@@@####$$$$\n") + footer),
            ("base64 of garbage", header + Self.bytes("AAAAAAAAAAAAAAAAAAAAAAAA\n") + footer),
            ("body cut short", header + Array(publicKey.dropFirst(header.count).prefix(200)) + Self.bytes("\n") + footer),
            ("DER without armour", try #require(Base64.decode(String(decoding: publicKey, as: UTF8.self).split(separator: "\n").dropFirst().dropLast().joined()))),
        ]
        for (label, input) in bad {
            #expect(throws: CryptoError.self, "\(label)") { try RSAPublicKey(pem: input) }
            #expect(throws: CryptoError.self, "\(label)") { try RSAPublicKey(certificatePEM: input) }
            #expect(throws: CryptoError.self, "\(label)") { try X509Certificate(pem: input) }
            #expect(Signature.signRSASHA256(privateKeyPEM: input, message: Self.bytes("m")) == nil, "\(label)")
        }
        // Empty or larger than any key file.
        let huge = publicKey + [UInt8](repeating: 0x0a, count: 1 << 20)
        for input in [[], huge] {
            #expect(throws: CryptoError.inputSize) { try RSAPublicKey(pem: input) }
            #expect(throws: CryptoError.inputSize) { try RSAPublicKey(certificatePEM: input) }
            #expect(throws: CryptoError.inputSize) { try X509Certificate(pem: input) }
            #expect(Signature.signRSASHA256(privateKeyPEM: input, message: Self.bytes("m")) == nil)
        }
        #expect(throws: CryptoError.inputSize) { try RSAPublicKey(pem: "") }
        // The right kind of file in the wrong place.
        #expect(throws: CryptoError.malformedPublicKey) { try RSAPublicKey(pem: certificate) }
        #expect(throws: CryptoError.malformedPublicKey) { try RSAPublicKey(pem: privateKey) }
        #expect(throws: CryptoError.malformedCertificate) { try X509Certificate(pem: publicKey) }
        #expect(throws: CryptoError.malformedCertificate) { try X509Certificate(pem: privateKey) }
        #expect(Signature.signRSASHA256(privateKeyPEM: publicKey, message: Self.bytes("m")) == nil)
        #expect(Signature.signRSASHA256(privateKeyPEM: certificate, message: Self.bytes("m")) == nil)
        // An encrypted private key is refused at once: no passphrase is asked for.
        #expect(Signature.signRSASHA256(privateKeyPEM: try Self.fixture("test-only-encrypted-private-key.pem"), message: Self.bytes("m")) == nil)
        // The one genuine input among them still loads after all those failures (no error left queued).
        #expect(try RSAPublicKey(pem: publicKey).isRSA2048)
    }

    /// A file holding several PEM blocks gives the first block of the wanted kind, as OpenSSL's PEM readers do
    /// (a certificate saved after its chain's key, say); a file without one is refused.
    @Test func otherPEMBlocksAreSkipped() throws {
        let publicKey = try Self.fixture("wechat_pay_public_key.pem") + [0x0a]
        let certificate = try Self.fixture("go-sdk/wechatpay_certificate.pem") + [0x0a]
        let ecCertificate = try Self.fixture("test-only-ec-p256-certificate.pem")
        #expect(try RSAPublicKey(pem: certificate + publicKey).isRSA2048)
        #expect(try X509Certificate(pem: publicKey + certificate).serialHex == "D7CE59D1F522D701")
        #expect(try X509Certificate(pem: certificate + ecCertificate).serialHex == "D7CE59D1F522D701")
        #expect(try X509Certificate(pem: ecCertificate + certificate).serialHex == "1")
        #expect(throws: CryptoError.malformedPublicKey) { try RSAPublicKey(pem: certificate + ecCertificate) }
    }

    /// Seeded mutations of real PEM files: each load either throws or gives a usable value, and verifying
    /// with whatever loaded is just true or false.
    @Test func mutatedPEMNeverCrashes() throws {
        var rng = SeededGenerator(seed: 0x7633)
        let inputs = [
            try Self.fixture("wechat_pay_public_key.pem"), try Self.fixture("go-sdk/wechatpay_certificate.pem"),
            try Self.fixture("wechat_pay_private_key.pem"), try Self.fixture("test-only-ec-p256-public.pem"),
        ]
        let v = try Self.vector("V3-4")
        let signature = try #require(Base64.decode(v.signatureHeader))
        var loaded = 0
        for round in 0..<400 {
            var input = inputs[round % inputs.count]
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let index = Int.random(in: 0..<input.count, using: &rng)
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: input[index] = UInt8.random(in: 0...255, using: &rng)
                case 1: input.remove(at: index)
                default: input.insert(UInt8.random(in: 0...255, using: &rng), at: index)
                }
            }
            if let key = try? RSAPublicKey(pem: input) {
                loaded += 1
                _ = Signature.verifyRSASHA256(key: key, message: v.message, signature: signature)
            }
            if let certificate = try? X509Certificate(pem: input) {
                loaded += 1
                _ = certificate.hasSerial("D7CE59D1F522D701")
                _ = Signature.verifyRSASHA256(key: certificate.publicKey, message: v.message, signature: signature)
            }
            _ = Signature.signRSASHA256(privateKeyPEM: input, message: v.message)
        }
        // Some mutations land in the armour lines or are undone by base64's tolerance; most do not load.
        #expect(loaded < 400)
    }

    /// Error texts say what kind of input was wrong and never repeat any of it.
    @Test func errorTextsCarryNoInput() throws {
        let secretLooking = "-----BEGIN PUBLIC KEY-----\nc2VjcmV0LXBhc3N3b3JkLTEyMzQ=\n-----END PUBLIC KEY-----\n"
        for attempt: () throws -> Void in [
            { _ = try RSAPublicKey(pem: secretLooking) }, { _ = try X509Certificate(pem: secretLooking) },
            { _ = try RSAPublicKey(certificatePEM: secretLooking) }, { _ = try RSAPublicKey(pem: try Self.fixture("wechat_pay_private_key.pem")) },
        ] {
            do {
                try attempt()
                Issue.record("loaded")
            } catch let error as CryptoError {
                let text = error.description + String(describing: error)
                #expect(!text.contains("c2VjcmV0"), "\(text)")
                #expect(!text.contains("MIIE"), "\(text)")
            }
        }
    }

    // MARK: round trips

    @Test func encryptDecryptRoundTrip() {
        var rng = SeededGenerator(seed: 0x6c6d)
        for length in [0, 1, 15, 16, 17, 255, 4096] {
            let key = (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let nonce = (0..<12).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let plaintext = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            for aad in [[], Self.bytes("transaction"), [UInt8](repeating: 7, count: 100)] {
                guard let sealed = Cipher.aes256GCMEncrypt(key: key, nonce: nonce, associatedData: aad, plaintext: plaintext) else {
                    Issue.record("encrypt failed at \(length)")
                    continue
                }
                #expect(sealed.count == length + Cipher.gcmTagLength)
                #expect(Cipher.aes256GCMDecrypt(key: key, nonce: nonce, associatedData: aad, ciphertextAndTag: sealed) == plaintext)
                #expect(Cipher.aes256GCMDecrypt(key: key, nonce: nonce, associatedData: aad + [0], ciphertextAndTag: sealed) == nil)
            }
        }
        let key = [UInt8](repeating: 1, count: 32)
        #expect(Cipher.aes256GCMEncrypt(key: Array(key.prefix(16)), nonce: [UInt8](repeating: 0, count: 12), associatedData: [], plaintext: [1]) == nil)
        #expect(Cipher.aes256GCMEncrypt(key: key, nonce: [UInt8](repeating: 0, count: 16), associatedData: [], plaintext: [1]) == nil)
        #expect(Cipher.aes256GCMEncrypt(key: key, nonce: [], associatedData: [], plaintext: [1]) == nil)
    }

    @Test func signVerifyRoundTrip() throws {
        let key = try Self.publicKey()
        let pkcs8 = try Self.fixture("wechat_pay_private_key.pem")
        let pkcs1 = try Self.fixture("wechat_pay_private_key.pkcs1.pem")
        for message in [[], Self.bytes("\n"), Self.bytes("1704081606\nnonce\n{}\n"), [UInt8](repeating: 0xe6, count: 100_000)] {
            let signature = try #require(Signature.signRSASHA256(privateKeyPEM: pkcs8, message: message))
            #expect(signature.count == 256)
            #expect(Signature.verifyRSASHA256(key: key, message: message, signature: signature))
            #expect(Signature.signRSASHA256(privateKeyPEM: pkcs1, message: message) == signature)
            #expect(!Signature.verifyRSASHA256(key: key, message: message + [0], signature: signature))
        }
    }

    /// Keys are shared between request threads (RSAPublicKey is Sendable): many concurrent verifications
    /// of one key give the same answers as one at a time.
    @Test func oneKeyVerifiesConcurrently() throws {
        let key = try Self.publicKey()
        let vectors = try Self.validNotifications.map(Self.vector)
        let cases = try vectors.map { ($0.message, try #require(Base64.decode($0.signatureHeader))) }
        let failures = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: 200) { i in
            let (message, signature) = cases[i % cases.count]
            let tampered = i % 2 == 1
            let ok = Signature.verifyRSASHA256(key: key, message: tampered ? message + [0] : message, signature: signature)
            if ok == tampered { failures.withLock { $0 += 1 } }
        }
        #expect(failures.withLock { $0 } == 0)
    }

    // MARK: an independent implementation

    /// Python's `cryptography` (installed by `make test-deps`) against payhook, both ways: it signs and
    /// encrypts a fresh message for payhook to verify and decrypt, and verifies and decrypts what payhook
    /// made. Not skipped when the package is missing: the test fails and says so.
    static let crossCheck = """
        import base64, json, os, sys
        try:
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import padding
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError:
            print("cryptography is missing: run make test-deps"); sys.exit(3)
        ours = json.load(sys.stdin)
        private = serialization.load_pem_private_key(open(sys.argv[1], "rb").read(), password=None)
        public = private.public_key()
        b = base64.b64decode
        # What payhook made: its signature must verify here and its ciphertext must open here.
        public.verify(b(ours["signature"]), b(ours["message"]), padding.PKCS1v15(), hashes.SHA256())
        opened = AESGCM(b(ours["key"])).decrypt(b(ours["nonce"]), b(ours["sealed"]), b(ours["aad"]))
        assert opened == b(ours["plaintext"]), "payhook's ciphertext opened to something else"
        # Fresh material for payhook.
        message = b"%d\\n%s\\n%s\\n" % (1704081606, os.urandom(16).hex().encode(), json.dumps({"id": os.urandom(8).hex(), "summary": "支付成功"}, ensure_ascii=False).encode())
        key, nonce, aad = os.urandom(32), os.urandom(12), b"transaction"
        plaintext = json.dumps({"mchid": "1900000100", "note": os.urandom(40).hex()}).encode()
        e = lambda x: base64.b64encode(x).decode()
        print(json.dumps({
            "message": e(message),
            "signature": e(private.sign(message, padding.PKCS1v15(), hashes.SHA256())),
            "key": e(key), "nonce": e(nonce), "aad": e(aad), "plaintext": e(plaintext),
            "sealed": e(AESGCM(key).encrypt(nonce, plaintext, aad)),
        }))
        """

    struct Material: Codable {
        let message: String, signature: String, key: String, nonce: String, aad: String, plaintext: String, sealed: String
    }

    @Test(.timeLimit(.minutes(1)))
    func crossCheckWithPythonCryptography() throws {
        var rng = SeededGenerator(seed: 0x7079)
        let random = { (n: Int) in (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) } }
        let privateKeyPath = repositoryRoot + "/Fixtures/wechat-v3/wechat_pay_private_key.pem"
        let message = Self.bytes("1704081606\n\(Hex.encode(random(16)))\n{\"summary\":\"退款成功\"}\n")
        let (key, nonce, aad, plaintext) = (random(32), random(12), Self.bytes("refund"), random(300))
        let ours = Material(
            message: Base64.encode(message),
            signature: Base64.encode(try #require(Signature.signRSASHA256(privateKeyPEM: try Self.fixture("wechat_pay_private_key.pem"), message: message))),
            key: Base64.encode(key), nonce: Base64.encode(nonce), aad: Base64.encode(aad), plaintext: Base64.encode(plaintext),
            sealed: Base64.encode(try #require(Cipher.aes256GCMEncrypt(key: key, nonce: nonce, associatedData: aad, plaintext: plaintext))))

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", Self.crossCheck, privateKeyPath]
        let input = Pipe()
        let output = Pipe()
        let errors = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        input.fileHandleForWriting.write(try JSONEncoder().encode(ours))
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let errorText = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        try #require(process.terminationStatus == 0, "python3 exited \(process.terminationStatus): \(text) \(errorText)")

        let theirs = try JSONDecoder().decode(Material.self, from: data)
        func decoded(_ field: String) throws -> [UInt8] { try #require(Base64.decode(field)) }
        let theirMessage = try decoded(theirs.message)
        let theirSignature = try decoded(theirs.signature)
        let publicKey = try Self.publicKey()
        #expect(Signature.verifyRSASHA256(key: publicKey, message: theirMessage, signature: theirSignature))
        #expect(!Signature.verifyRSASHA256(key: publicKey, message: Self.flipped(theirMessage, at: 3), signature: theirSignature))
        // Deterministic signatures: payhook signing the same message gives Python's bytes.
        #expect(Signature.signRSASHA256(privateKeyPEM: try Self.fixture("wechat_pay_private_key.pem"), message: theirMessage) == theirSignature)
        let opened = Cipher.aes256GCMDecrypt(
            key: try decoded(theirs.key), nonce: try decoded(theirs.nonce), associatedData: try decoded(theirs.aad),
            ciphertextAndTag: try decoded(theirs.sealed))
        #expect(opened == (try decoded(theirs.plaintext)))
        #expect(
            Cipher.aes256GCMDecrypt(
                key: try decoded(theirs.key), nonce: try decoded(theirs.nonce), associatedData: [], ciphertextAndTag: try decoded(theirs.sealed))
                == nil)
    }
}
