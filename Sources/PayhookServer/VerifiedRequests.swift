import PayhookCore
import PayhookLock

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The accepted verdicts of recent requests, by the request's exact bytes, so that a retry that is the same bytes
/// is not parsed, verified and checked again (docs/architecture.md, "Retries that are the same bytes").
///
/// A verdict is kept only when its source offered it for reuse (``Verdict/reuse``), and given back only for a
/// request with the same method, target, body and named headers, byte for byte, while the clock is inside the
/// verdict's window, and only while the router still serves the sources it came from (`generation`: a reload
/// starts afresh). What the store then makes of the event (stored, duplicate, conflict) is decided again each
/// time, as for any verified event.
///
/// The table is keyed by Swift's `Hasher`, which is seeded at random in each process, so a sender cannot aim
/// requests at one bucket; the bytes are compared in full only when the hashes match.
final class VerifiedRequests: Sendable {
    /// At most this many verdicts, and about this many bytes of them; past either, the table starts afresh. A
    /// retry storm then refills it within one round of retries.
    static let maxEntries = 4096
    static let maxBytes = 16 << 20

    /// One request's bytes as the table's key: each part behind its length, so no two requests share a key.
    struct Key: Hashable, Sendable {
        let bytes: [UInt8]

        init(_ request: CallbackRequest, headers names: [String]) {
            var bytes: [UInt8] = []
            bytes.reserveCapacity(request.method.utf8.count + request.target.utf8.count + request.body.count + 16)
            Self.append(request.method.utf8, to: &bytes)
            Self.append(request.target.utf8, to: &bytes)
            Self.append(request.body, to: &bytes)
            for name in names {
                let values = request.headerValues(name)
                Self.appendLength(values.count, to: &bytes)
                for value in values { Self.append(value.utf8, to: &bytes) }
            }
            self.bytes = bytes
        }

        private static func append(_ part: some Collection<UInt8>, to bytes: inout [UInt8]) {
            appendLength(part.count, to: &bytes)
            bytes.append(contentsOf: part)
        }

        private static func appendLength(_ length: Int, to bytes: inout [UInt8]) {
            withUnsafeBytes(of: UInt64(length).littleEndian) { bytes.append(contentsOf: $0) }
        }

        // The whole buffer at once: `Array`'s own `hash(into:)` feeds the hasher one byte at a time.
        func hash(into hasher: inout Hasher) {
            bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
        }

        static func == (left: Key, right: Key) -> Bool {
            guard left.bytes.count == right.bytes.count else { return false }
            return left.bytes.withUnsafeBytes { l in
                right.bytes.withUnsafeBytes { r in l.count == 0 || memcmp(l.baseAddress!, r.baseAddress!, l.count) == 0 }
            }
        }
    }

    /// A kept verdict: the event as its first request made it, its fingerprint (``Event/fingerprint``, computed
    /// once), what its signature check learnt, and when it holds.
    struct Entry: Sendable {
        let event: Event
        let fingerprint: String
        let signature: SignatureNotes
        let reuse: VerdictReuse
        let generation: UInt64
        let size: Int
    }

    private struct Table {
        var entries: [Key: Entry] = [:]
        var bytes = 0
    }

    private let table = Locked(Table())

    /// The kept verdict for these bytes, if the sources that made it still serve (`generation`) and the clock is
    /// inside its window; an entry outside either is dropped.
    func verdict(for key: Key, generation: UInt64, nowMilliseconds now: Int64) -> Entry? {
        table.withLock { table in
            guard let entry = table.entries[key] else { return nil }
            guard entry.generation == generation, entry.reuse.notBefore <= now, now <= entry.reuse.notAfter else {
                table.entries[key] = nil
                table.bytes -= entry.size
                return nil
            }
            return entry
        }
    }

    /// Keeps an accepted verdict that its source offered for reuse.
    func keep(
        _ key: Key, event: Event, fingerprint: String, signature: SignatureNotes, reuse: VerdictReuse, generation: UInt64
    ) {
        // What the entry holds, roughly: the key, the event's copy of the target and body, its fields, its
        // fingerprint (their names and values again) and its labels.
        let size = key.bytes.count * 4 + event.fields.count * 64 + 512
        let entry = Entry(
            event: event, fingerprint: fingerprint, signature: signature, reuse: reuse, generation: generation, size: size)
        table.withLock { table in
            if let old = table.entries.updateValue(entry, forKey: key) {
                table.bytes -= old.size
            } else if table.entries.count > Self.maxEntries || table.bytes + size > Self.maxBytes {
                table.entries = [key: entry]
                table.bytes = 0
            }
            table.bytes += size
        }
    }

    /// Forgets every verdict (the sources were replaced).
    func removeAll() {
        table.withLock { $0 = Table() }
    }

    /// How many verdicts are kept, for tests.
    var count: Int {
        table.withLock { $0.entries.count }
    }
}
