// Fuzz target: EventFile.parse, the one definition of a valid event file that the server (before storing and
// in its recovery), the queue commands and `payhook verify` share (Sources/PayhookSpoolFormat/EventFile.swift).
//
// Properties, for any input:
// 1. parse never traps, and a refusal always says why;
// 2. what it accepts is strict JSON that Foundation's independent parser reads too, with the same id,
//    source, amount and field values (so no reader can see another event than payhook does), except where
//    a string holds a raw U+FEFF: Foundation's JSONSerialization on Linux drops one at the start of a string
//    (docs/consumers.md §3), a difference of that reader, not of the file;
// 3. an accepted id is 64 lowercase hex characters, and the file is refused under any other name;
// 4. the spool's inspector accepts exactly what parse accepts, with the same id.

import Foundation
import PayhookCore
import PayhookSpoolFormat

@_cdecl("LLVMFuzzerTestOneInput")
public func eventFileFuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = fuzzBytes(data, size)
    let inspected = EventFileInspector(fingerprintRules: [:]).inspect(bytes)
    let event: EventFile
    do {
        event = try EventFile.parse(bytes)
    } catch {
        if error.reason.isEmpty { violated("a refusal without a reason") }
        if inspected != nil { violated("the inspector accepted what parse refuses", error.reason) }
        return 0
    }
    guard let info = inspected, info.id == event.id else { violated("the inspector disagrees with parse on an accepted file") }

    let hex = event.id.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    if event.id.utf8.count != 64 || !hex { violated("an accepted id is not 64 lowercase hex characters", event.id) }
    if (try? EventFile.parse(bytes, fileName: EventID.fileName(event.id))) == nil {
        violated("refused under its own name")
    }
    let otherID = String(repeating: event.id.hasPrefix("0") ? "1" : "0", count: 64)
    if (try? EventFile.parse(bytes, fileName: EventID.fileName(otherID))) != nil { violated("accepted under another name") }

    let byteOrderMark: [UInt8] = [0xEF, 0xBB, 0xBF]
    if bytes.count >= 3, (0...(bytes.count - 3)).contains(where: { bytes[$0..<$0 + 3].elementsEqual(byteOrderMark) }) {
        return 0
    }
    guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
        violated("accepted what Foundation's JSON parser does not read as an object")
    }
    guard object["id"] as? String == event.id, object["source"] as? String == event.source,
        (object["amount"] as? NSNumber)?.int64Value == event.amount
    else { violated("Foundation reads another id, source or amount") }
    guard let fields = object["fields"] as? [String: String], fields.count == event.fields.count else {
        violated("Foundation reads other fields")
    }
    for field in event.fields where !sameBytes(fields[field.name], field.value) {
        violated("Foundation reads another value", field.name)
    }
    return 0
}

/// Byte for byte: Swift's `==` would take canonically equivalent text as equal.
private func sameBytes(_ a: String?, _ b: String) -> Bool {
    guard let a else { return false }
    return Array(a.utf8) == Array(b.utf8)
}
