import PayhookCore
import PayhookLock

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The verdicts of recent requests that proved to be retries, by the request's exact bytes, so that the next
/// retry that is the same bytes is answered as a duplicate without being parsed, verified and checked again
/// (docs/architecture.md, "Retries that are the same bytes").
///
/// A verdict is kept only when its source offered it for reuse (``Verdict/reuse``) and the store answered its
/// request as a duplicate. It is given back only for a request with the same method, target, body and named
/// headers, byte for byte, while the clock is inside the verdict's window, and only while the router still
/// serves the sources it came from (`generation`: a reload starts afresh). Even then it only answers a retry
/// whose event the store holds durably with the same fingerprint (``EventStore/isStoredDuplicate(id:fingerprint:)``);
/// otherwise the request is verified and stored as any other.
///
/// The table is keyed by Swift's `Hasher`, which is seeded at random in each process, so a sender cannot aim
/// requests at one bucket; the bytes are compared in full only when the hashes match.
final class VerifiedRequests: Sendable {
    /// At most this many verdicts, and about this many bytes of them; past either, the table starts afresh. A
    /// retry storm then refills it within one round of retries.
    static let maxEntries = 4096
    static let maxBytes = 8 << 20

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

    /// A kept verdict, reduced to what answering a duplicate needs: the event's labels and fingerprint
    /// (``Event/fingerprint``), what its signature check learnt, and when it holds. A class, so that a lookup
    /// hands out one reference: the listener threads on every core touch the reference counts of what it holds.
    final class Entry: Sendable {
        let labels: EventLabels
        let fingerprint: String
        let signature: SignatureNotes
        let reuse: VerdictReuse
        let generation: UInt64
        let size: Int

        init(labels: EventLabels, fingerprint: String, signature: SignatureNotes, reuse: VerdictReuse, generation: UInt64, size: Int) {
            self.labels = labels
            self.fingerprint = fingerprint
            self.signature = signature
            self.reuse = reuse
            self.generation = generation
            self.size = size
        }
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

    /// Keeps the verdict of a request the store found to be a duplicate, which its source offered for reuse.
    func keep(
        _ key: Key, labels: EventLabels, fingerprint: String, signature: SignatureNotes, reuse: VerdictReuse, generation: UInt64
    ) {
        // What the entry holds, roughly: the key, the fingerprint, the labels and the table's own overhead.
        let size = key.bytes.count + fingerprint.utf8.count + labels.tenant.utf8.count + 320
        let entry = Entry(labels: labels, fingerprint: fingerprint, signature: signature, reuse: reuse, generation: generation, size: size)
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
