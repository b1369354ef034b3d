import Glibc
@_spi(Testing) import PayhookSpool
import Testing

@Suite("Conflicts: fingerprints as bytes, one audit copy per content, caps")
struct SpoolConflictTests {
    /// "é" precomposed (U+00E9) and decomposed ("e" + U+0301): Swift's `String ==` calls them equal (canonical
    /// equivalence), but they are different bytes, so different verified content.
    static let precomposed = "payer Jos\u{E9}"
    static let decomposed = "payer Jose\u{301}"

    @Test("a fingerprint that differs from the ledger's only by Unicode normalization is a conflict, not a duplicate")
    func fingerprintsCompareAsBytes() throws {
        #expect(Self.precomposed == Self.decomposed, "the premise: String == says equal")
        #expect(!Array(Self.precomposed.utf8).elementsEqual(Array(Self.decomposed.utf8)))
        let directory = try TemporaryDirectory()
        let root = directory.spool
        let spool = try openSpool(root)
        defer { spool.close() }
        let original = makeRecord(id: testID(0x900), fingerprint: Self.precomposed, body: "amount 10")
        let variant = makeRecord(id: testID(0x900), fingerprint: Self.decomposed, body: "amount 10")
        #expect(try spool.store(original) == .stored)

        let outcome = try spool.store(variant)
        guard case .conflict = outcome else {
            Issue.record("expected a conflict, got \(outcome)")
            return
        }
        #expect(try names(root + "/conflicts").count == 1)
        let kept = try names(root + "/conflicts").first.map { try contents(root + "/conflicts/" + $0) }
        #expect(kept == variant.bytes)
        // The lazy form, answered from the cached ledger fingerprint, tells them apart too.
        let again = try spool.store(id: variant.id, fingerprint: variant.fingerprint) { variant.bytes }
        #expect(again != .duplicate)
        #expect(try spool.store(original) == .duplicate)
        #expect(try contents(root + "/new/\(original.id).json") == original.bytes)
        #expect(SpoolRecordInfo(id: original.id, fingerprint: Self.precomposed)
            != SpoolRecordInfo(id: original.id, fingerprint: Self.decomposed))
    }
}
