import Foundation
import PayhookCore
import PayhookSpool
import PayhookUnified
import PayhookWeChat

/// Tells the spool what a stored event file is: its id and the fingerprint of its verified fields.
///
/// The spool itself never parses events (it knows no source); recovery and conflict detection call this.
/// A file that is not a `payhook.event.v1` object with a 64-hex id and string fields is not an event.
///
/// Which fields a source leaves out of its fingerprint is the source's rule; the inspector is handed every
/// source module's list, whatever the config serves, since the spool may hold events of a source no longer
/// configured.
public struct EventInspector: SpoolRecordInspector {
    let transportFields: [String: Set<String>]

    public init(transportFields: [String: Set<String>] = EventInspector.allSources) {
        self.transportFields = transportFields
    }

    /// ``Event/transportFields`` of every source payhook has, by event source.
    public static let allSources = UnifiedSource.transportFields.merging(WeChatSource.transportFields) { a, _ in a }

    public func inspect(_ bytes: [UInt8]) -> SpoolRecordInfo? {
        // JSONReader, not JSONSerialization: every new event is read back once before it is written (the spool
        // checks that its bytes name its own id and fingerprint), and JSONSerialization took four times as long.
        guard let object = JSONReader.parse(bytes), case .object = object,
            object["schema"]?.stringValue == Event.schema,
            let id = object["id"]?.stringValue, id.utf8.count == 64, Hex.decode(id) != nil, id == id.lowercased(),
            let source = object["source"]?.stringValue,
            case .object(let fields)? = object["fields"]
        else { return nil }
        var parameters: [FormParameter] = []
        parameters.reserveCapacity(fields.count)
        for (name, value) in fields {
            guard let text = value.stringValue else { return nil }
            parameters.append(FormParameter(name: name, value: text))
        }
        return SpoolRecordInfo(id: id, fingerprint: Event.fingerprint(of: parameters, excluding: transportFields[source] ?? []))
    }
}
