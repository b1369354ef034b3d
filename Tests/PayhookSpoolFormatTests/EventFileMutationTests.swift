import Foundation
import PayhookCore
import PayhookSpoolFormat
import PayhookTestSupport
import Testing

/// The event file parser meets bytes nobody vouches for (a consumer's crash, a disk error, a hand edit, a file
/// dropped into new/): seeded random mutations of a valid file must each be refused with a reason or read as
/// an event that still keeps every rule, never crash. The libFuzzer targets (Fuzz/) cover the request
/// parsers; this is the same property for the file parser, reproducible from its seed.
@Suite("EventFile: mutated files are refused or still valid")
struct EventFileMutationTests {
    static let valid = Sample.event().jsonBytes()

    static func mutate(_ bytes: [UInt8], _ random: inout SeededGenerator) -> [UInt8] {
        var out = bytes
        for _ in 0..<Int.random(in: 1...4, using: &random) {
            let at = out.isEmpty ? 0 : Int.random(in: 0..<out.count, using: &random)
            switch Int.random(in: 0..<6, using: &random) {
            case 0 where !out.isEmpty: out[at] = UInt8.random(in: 0...255, using: &random)
            case 1 where !out.isEmpty: out[at] ^= 1 << UInt8.random(in: 0..<8, using: &random)
            case 2: out.insert(Array("{}[]\",:\\u0 \n9e-".utf8).randomElement(using: &random)!, at: at)
            case 3 where !out.isEmpty: out.remove(at: at)
            case 4: out = Array(out.prefix(at))
            default:
                // A span of the file copied elsewhere in it: repeated members, nested objects, spliced values.
                let start = Int.random(in: 0..<bytes.count, using: &random)
                let span = bytes[start..<min(bytes.count, start + Int.random(in: 1...40, using: &random))]
                out.insert(contentsOf: span, at: min(at, out.count))
            }
        }
        return out
    }

    @Test(arguments: [UInt64(1), 2, 3, 4])
    func mutationsAreRefusedOrStillValid(seed: UInt64) {
        var random = SeededGenerator(seed: seed)
        var refused = 0
        var accepted = 0
        for _ in 0..<5_000 {
            let bytes = Self.mutate(Self.valid, &random)
            do {
                let event = try EventFile.parse(bytes, fileName: EventID.fileName(Sample.event().id))
                accepted += 1
                // Whatever was accepted keeps the rules a reader relies on.
                #expect(event.id.utf8.count == 64 && event.id.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
                #expect(EventFileInspector(fingerprintRules: [:]).inspect(bytes)?.id == event.id)
            } catch {
                refused += 1
                #expect(!error.reason.isEmpty)
            }
        }
        // Both happen: the mutations reach past the first byte, and some (a changed digit, added spaces) keep a
        // valid file.
        #expect(refused > 1_000)
        #expect(accepted > 0)
    }
}
