import Foundation
import PayhookCore
import PayhookSpoolFormat
import PayhookTestSupport
import Testing

/// A fresh folder (the shared ``TemporaryDirectory``), removed when the value goes, with byte-level helpers.
final class Scratch {
    let directory: TemporaryDirectory
    var path: String { directory.path }

    init() throws {
        directory = try TemporaryDirectory(prefix: "payhook-format-test")
    }

    func file(_ relative: String) -> String { directory.file(relative) }

    func write(_ relative: String, _ bytes: [UInt8]) throws {
        guard FileManager.default.createFile(atPath: file(relative), contents: Data(bytes)) else {
            throw ScratchError("create \(relative)")
        }
    }

    func read(_ relative: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: file(relative))))
    }

    func names(_ relative: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: file(relative))) ?? []).sorted()
    }
}

struct ScratchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Event files for the tests, written by the server's own writer (`Event.jsonBytes`).
enum Sample {
    static func event(
        id: String = String(repeating: "ab", count: 32), amount: Int64 = 100,
        fields: [FormParameter] = [FormParameter(name: "money", value: "100"), FormParameter(name: "requestKey", value: "order-1")]
    ) -> Event {
        Event(
            id: id, source: "unified", tenant: "demo", orderRef: "order-1", status: "SUCCESSPAY", amount: amount,
            currency: "CNY", dedupeKey: DedupeKey(source: "unified", parts: ["demo", "order-1", "SUCCESSPAY"]),
            verifiedWith: "values-sha1", receivedAtMilliseconds: 1_795_833_290_123, remoteAddress: "127.0.0.1",
            fields: fields, raw: Event.RawRequest(method: "GET", target: "/notify/unified?money=100", body: "")
        )
    }

    static func bytes(id: String = String(repeating: "ab", count: 32)) -> [UInt8] {
        event(id: id).jsonBytes()
    }

    /// The sample's text with `member`'s line (`  "member": …,`) replaced by `replacement` (nothing: removed).
    static func editing(_ member: String, to replacement: String?, id: String = String(repeating: "ab", count: 32)) -> [UInt8] {
        let text = String(decoding: bytes(id: id), as: UTF8.self)
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let index = lines.firstIndex(where: { $0.hasPrefix("  \"\(member)\":") }) else { return Array(text.utf8) }
        if let replacement {
            lines[index] = "  " + replacement + (lines[index].hasSuffix(",") ? "," : "")
        } else {
            lines.remove(at: index)
        }
        return Array(lines.joined(separator: "\n").utf8)
    }
}
