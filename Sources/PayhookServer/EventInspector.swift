public import PayhookCore
import PayhookSpool
public import PayhookSpoolFormat
import PayhookUnified
import PayhookWeChat
import PayhookAlipay
import PayhookXxPay

/// The spool's inspector of payhook's own events: it tells the spool what a stored event file is, its id and the
/// fingerprint of its verified fields. The spool itself never parses events (it knows no source); recovery and
/// conflict detection call this. What a valid event file is has one definition, `EventFile` in
/// PayhookSpoolFormat, shared with the queue tools.
extension EventFileInspector {
    /// ``Event/fingerprintRule`` of every source payhook has, by event source: handed over whatever the config
    /// serves, since the spool may hold events of a source no longer configured. WeChat Pay v2 and v3 write
    /// the same event sources under one rule, so that the two APIs' notifications of one payment are one event.
    public static let allSources = [
        UnifiedSource.fingerprintRules, WeChatFingerprint.rules, AlipaySource.fingerprintRules, XxPaySource.fingerprintRules,
        JeepaySource.fingerprintRules,
    ].reduce(into: [String: FingerprintRule]()) { all, rules in all.merge(rules) { a, _ in a } }

    /// The inspector the server opens its spool with.
    public static let payhook = EventFileInspector(fingerprintRules: allSources)
}
