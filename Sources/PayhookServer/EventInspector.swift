import PayhookSpool

/// Tells the spool what a stored event file is: its id and the fingerprint of its verified fields.
///
/// The spool itself never parses events (it knows no source); recovery and conflict detection call this. What a
/// valid event file is has one definition, `EventFile` in PayhookSpoolFormat, shared with the queue tools.
public typealias EventInspector = EventFileInspector
