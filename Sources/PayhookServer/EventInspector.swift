import PayhookSpool
public import PayhookSpoolFormat
import PayhookUnified
import PayhookWeChat

/// The spool's inspector of payhook's own events: it tells the spool what a stored event file is, its id and the
/// fingerprint of its verified fields. The spool itself never parses events (it knows no source); recovery and
/// conflict detection call this. What a valid event file is has one definition, `EventFile` in
/// PayhookSpoolFormat, shared with the queue tools.
extension EventFileInspector {
    /// ``Event/transportFields`` of every source payhook has, by event source: handed over whatever the config
    /// serves, since the spool may hold events of a source no longer configured.
    public static let allSources = UnifiedSource.transportFields.merging(WeChatSource.transportFields) { a, _ in a }

    /// The inspector the server opens its spool with.
    public static let payhook = EventFileInspector(transportFields: allSources)
}
