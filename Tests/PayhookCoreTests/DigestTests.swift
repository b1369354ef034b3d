import PayhookCore
import PayhookCrypto
import PayhookTestSupport
import Testing

/// Known answers: FIPS 180 examples for SHA-1/SHA-256, RFC 1321 for MD5, RFC 4231 for HMAC-SHA256.
@Suite struct DigestTests {
    @Test func sha1() {
        #expect(Hex.encode(Digest.sha1(Array("abc".utf8))) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(Hex.encode(Digest.sha1([])) == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
    }

    @Test func sha256() {
        #expect(Hex.encode(Digest.sha256(Array("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test func md5() {
        #expect(Hex.encode(Digest.md5(Array("message digest".utf8))) == "f96b697d7cb7938d525a2f31aaf161d0")
    }

    @Test func hmacSHA256RFC4231() {
        let case1 = Digest.hmacSHA256(key: [UInt8](repeating: 0x0b, count: 20), message: Array("Hi There".utf8))
        #expect(Hex.encode(case1) == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        let case2 = Digest.hmacSHA256(key: Array("Jefe".utf8), message: Array("what do ya want for nothing?".utf8))
        #expect(Hex.encode(case2) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test func constantTimeEquals() {
        let a: [UInt8] = [1, 2, 3, 4]
        #expect(Digest.constantTimeEquals(a, [1, 2, 3, 4]))
        #expect(!Digest.constantTimeEquals(a, [1, 2, 3, 5]))
        #expect(!Digest.constantTimeEquals(a, [0, 2, 3, 4]))
        #expect(!Digest.constantTimeEquals(a, [1, 2, 3]))
        #expect(Digest.constantTimeEquals([], []))
    }

    @Test func hexRoundTripAndCaseInsensitiveDecode() {
        #expect(Hex.decode("00ffA0") == [0x00, 0xff, 0xa0])
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("zz") == nil)
        #expect(Hex.encode([0xde, 0xad]) == "dead")
        #expect(Hex.encode([UInt8]()) == "")
        // Every byte value, at every length up to a few digests, against String(radix:).
        var rng = SeededGenerator(seed: 0x4e7)
        #expect(Hex.encode(Array(0...255)) == (0...255).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined())
        for length in 0..<70 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            #expect(Hex.encode(bytes) == bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined())
        }
    }
}
