/// A verified callback, as written to the queue directory (docs/contract.md §5, schema `payhook.event.v1`).
public struct Event: Sendable, Equatable {
    public static let schema = "payhook.event.v1"

    /// Lowercase hex SHA-256 of `dedupeKey`; the file is `new/<id>.json`.
    public var id: String
    /// The kind of event, named by the source that verified it (README, "Events").
    public var source: String
    /// The configured tenant whose secret verified it: the value of the source's routing field.
    public var tenant: String
    /// The merchant's own order number, as the source's sender names it.
    public var orderRef: String
    /// The payment or refund state the callback reports, as the sender spells it.
    public var status: String
    /// Smallest currency unit (fen).
    public var amount: Int64
    public var currency: String
    public var dedupeKey: DedupeKey
    /// The scheme that verified it, named by the source (README, "Events").
    public var verifiedWith: String
    public var receivedAtMilliseconds: Int64
    public var remoteAddress: String
    /// Every verified (or decrypted) field, as received, in the order received. Never `sign`, never a secret.
    public var fields: [FormParameter]
    public var raw: RawRequest
    /// Which of the tenant's secrets verified it (1-based, in file order), for rotation metrics. Not part
    /// of the event file: which secret signed is nobody's business downstream.
    public var secretPosition: Int?
    /// A nested document the source verified or decrypted, kept whole (WeChat Pay v3's decrypted `resource`):
    /// nil for sources whose callbacks are flat, whose files then have no `resource` member.
    public var resource: JSONValue?
    /// What a retry must share with this event to be a duplicate and not a conflict. The source that verified
    /// the event says how (``FingerprintRule``). Not part of the event file: whoever reads an event file back
    /// asks the source's module for its rule, by event source.
    public var fingerprintRule: FingerprintRule = .allFields

    public struct RawRequest: Sendable, Equatable {
        public var method: String
        public var target: String
        public var body: String
        /// Header fields the source's signature covers or names (WeChat Pay v3's `Wechatpay-*`), so the event
        /// can be verified again; empty for sources that sign only the target or the body, whose files then
        /// have no `headers` member.
        public var headers: [FormParameter]
        public init(method: String, target: String, body: String, headers: [FormParameter] = []) {
            self.method = method
            self.target = target
            self.body = body
            self.headers = headers
        }
    }

    public init(
        id: String, source: String, tenant: String, orderRef: String, status: String, amount: Int64,
        currency: String, dedupeKey: DedupeKey, verifiedWith: String, receivedAtMilliseconds: Int64,
        remoteAddress: String, fields: [FormParameter], raw: RawRequest
    ) {
        self.id = id
        self.source = source
        self.tenant = tenant
        self.orderRef = orderRef
        self.status = status
        self.amount = amount
        self.currency = currency
        self.dedupeKey = dedupeKey
        self.verifiedWith = verifiedWith
        self.receivedAtMilliseconds = receivedAtMilliseconds
        self.remoteAddress = remoteAddress
        self.fields = fields
        self.raw = raw
    }

    /// The event file's bytes: one JSON object, keys in the order of docs/contract.md §5, two-space indent, final
    /// newline.
    public func jsonBytes() -> [UInt8] {
        var j = JSONText()
        func key(_ name: String, first: Bool = false) {
            j.raw(first ? "{\n  " : ",\n  ")
            j.string(name)
            j.raw(": ")
        }
        key("schema", first: true); j.string(Self.schema)
        key("id"); j.string(id)
        key("source"); j.string(source)
        key("tenant"); j.string(tenant)
        key("order_ref"); j.string(orderRef)
        key("status"); j.string(status)
        key("amount"); j.integer(amount)
        key("currency"); j.string(currency)
        key("dedupe_key"); j.string(dedupeKey.text)
        key("verified_with"); j.string(verifiedWith)
        key("received_at"); j.string(Timestamp.rfc3339(milliseconds: receivedAtMilliseconds))
        key("remote_addr"); j.string(remoteAddress)
        key("fields")
        if fields.isEmpty {
            j.raw("{}")
        } else {
            for (index, field) in fields.enumerated() {
                j.raw(index == 0 ? "{\n    " : ",\n    ")
                j.string(field.name)
                j.raw(": ")
                j.string(field.value)
            }
            j.raw("\n  }")
        }
        if let resource {
            key("resource")
            j.value(resource, indent: 1)
        }
        key("raw")
        j.raw("{\n    ")
        j.string("method"); j.raw(": "); j.string(raw.method)
        j.raw(",\n    ")
        j.string("target"); j.raw(": "); j.string(raw.target)
        j.raw(",\n    ")
        j.string("body"); j.raw(": "); j.string(raw.body)
        if !raw.headers.isEmpty {
            j.raw(",\n    ")
            j.string("headers"); j.raw(": ")
            for (index, header) in raw.headers.enumerated() {
                j.raw(index == 0 ? "{\n      " : ",\n      ")
                j.string(header.name)
                j.raw(": ")
                j.string(header.value)
            }
            j.raw("\n    }")
        }
        j.raw("\n  }\n}\n")
        return j.bytes
    }

    /// What makes two deliveries of one dedupe key "the same", by the source's ``fingerprintRule``: equal
    /// fingerprints mean a retry, a duplicate; any other difference (another amount, another `orderSn`) is a
    /// conflict (docs/contract.md §4, invariant 5).
    public var fingerprint: String {
        fingerprintRule.fingerprint(fields: fields, resource: resource)
    }

    /// The verified fields compared as a set, leaving out `ignored`, and the resource when there is one.
    ///
    /// The text is unambiguous (JSON strings of the fields sorted by name, then the resource's compact JSON),
    /// so equal fingerprints mean equal verified content. Without a resource it is what it always was, so the
    /// fingerprints of stored events do not change.
    public static func fingerprint(of fields: [FormParameter], excluding ignored: Set<String> = [], resource: JSONValue? = nil) -> String {
        // Runs for every verified callback, duplicates included: the text is built in one buffer of about its
        // final size (names and values, and six bytes of punctuation per field; escapes may add a little).
        var j = JSONText(capacity: fields.reduce(16) { $0 + $1.name.utf8.count + $1.value.utf8.count + 6 })
        j.raw("[")
        // Sorted as positions: sorting a copy of the fields retained and released every name and value at each
        // move, and copied the array. Insertion sort, stable as the standard sort was, so equal names (a source
        // whose format allows them) keep their order and the text stays what it always was; a callback has a
        // few dozen fields at most once verified, far below where that sort would be slow.
        withUnsafeTemporaryAllocation(of: Int.self, capacity: fields.count) { order in
            var count = 0
            for index in fields.indices where ignored.isEmpty || !ignored.contains(fields[index].name) {
                var slot = count
                while slot > 0, fields[index].name.utf8.lexicographicallyPrecedes(fields[order[slot - 1]].name.utf8) {
                    order[slot] = order[slot - 1]
                    slot -= 1
                }
                order[slot] = index
                count += 1
            }
            for position in 0..<count {
                let field = fields[order[position]]
                if position > 0 { j.raw(",") }
                j.raw("[")
                j.string(field.name)
                j.raw(",")
                j.string(field.value)
                j.raw("]")
            }
        }
        j.raw("]")
        if let resource {
            j.raw(",")
            j.value(resource)
        }
        return String(decoding: j.bytes, as: UTF8.self)
    }
}

/// The identity under which callbacks are deduplicated (docs/contract.md §4 "Dedupe keys").
///
/// Its text form is `source/part/part/…`, each part percent-encoded outside RFC 3986's unreserved set, so
/// no choice of field values can make two different keys read alike.
public struct DedupeKey: Sendable, Equatable, Hashable {
    public let source: String
    public let parts: [String]

    public init(source: String, parts: [String]) {
        self.source = source
        self.parts = parts
    }

    public var text: String {
        String(decoding: bytes, as: UTF8.self)
    }

    /// ``text`` as UTF-8, what the event id is the SHA-256 of. Built in one buffer: this runs for every verified
    /// callback, duplicates included.
    public var bytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(source.utf8.count + parts.reduce(0) { $0 + $1.utf8.count + 1 })
        Self.appendEscaped(source, to: &out)
        for part in parts {
            out.append(UInt8(ascii: "/"))
            Self.appendEscaped(part, to: &out)
        }
        return out
    }

    /// Appends `part` percent-encoded outside RFC 3986's unreserved set, with uppercase hex digits.
    static func appendEscaped(_ part: String, to out: inout [UInt8]) {
        for byte in part.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                out.append(byte)
            default:
                out.append(UInt8(ascii: "%"))
                out.append(upperHexDigits[Int(byte >> 4)])
                out.append(upperHexDigits[Int(byte & 0x0f)])
            }
        }
    }

    private static let upperHexDigits = Array("0123456789ABCDEF".utf8)
}
