import Foundation
import PayhookCore
import PayhookSpool

/// Tells the spool what a stored event file is: its id and the fingerprint of its verified fields.
///
/// The spool itself never parses events (it knows no source); recovery and conflict detection call this.
/// A file that is not a `payhook.event.v1` object with a 64-hex id and string fields is not an event.
public struct EventInspector: SpoolRecordInspector {
    public init() {}

    public func inspect(_ bytes: [UInt8]) -> SpoolRecordInfo? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
            object["schema"] as? String == Event.schema,
            let id = object["id"] as? String, id.utf8.count == 64, Hex.decode(id) != nil, id == id.lowercased(),
            let source = object["source"] as? String,
            let fields = object["fields"] as? [String: Any]
        else { return nil }
        var parameters: [FormParameter] = []
        for (name, value) in fields {
            guard let text = value as? String else { return nil }
            parameters.append(FormParameter(name: name, value: text))
        }
        return SpoolRecordInfo(id: id, fingerprint: Event.fingerprint(of: parameters, source: source))
    }
}
