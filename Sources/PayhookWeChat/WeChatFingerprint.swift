public import PayhookCore

/// When two WeChat Pay notifications with one dedupe key are the same: the rules by which the spool tells a
/// retry (a duplicate) from a conflict, for events of API v2 and API v3 alike (docs/contract.md §4.5, §4.6).
///
/// A v2 and a v3 notification of one payment share the dedupe key (`wechat.pay/<mchid>/<out_trade_no>/SUCCESS`)
/// but no field name, format or envelope: v2 signs `nonce_str` and `time_end`, v3 carries a notification `id`
/// and `success_time`, and either may be signed anew for each delivery. So both are reduced to the business
/// facts the two APIs share, normalised (amounts in fen, times as Unix milliseconds, an empty value as none),
/// and that record is what must be equal. Anything only one API reports, or the two spell differently for one
/// payment, is not compared: `bank_type` (v2 writes a balance payment `CFT`, v3 `OTHERS`) and the refund's
/// receiving account (free text, worded by each API) are left out, since comparing them would make a
/// genuine pair a conflict.
///
/// A v3 notification in partner or combine mode has a dedupe key no v2 notification has; its whole decrypted
/// resource is compared. Generic v3 events (`wechat.event`) compare their `event_type` and resource.
public enum WeChatFingerprint {
    /// The rule of each event source WeChat Pay events are stored under, for reading stored events back.
    public static let rules: [String: FingerprintRule] = [
        WeChatSource.paySource: payment, WeChatSource.refundSource: refund, WeChatV3Source.eventSource: generic,
    ]

    public static let payment = FingerprintRule(name: "wechat-payment") { fields, resource in
        guard let resource else { return record(paymentV2(fields)) }
        guard resource["mchid"] != nil else { return wholeResource(resource) }
        return record(paymentV3(resource))
    }

    public static let refund = FingerprintRule(name: "wechat-refund") { fields, resource in
        guard let resource else { return record(refundV2(fields)) }
        guard resource["mchid"] != nil else { return wholeResource(resource) }
        return record(refundV3(resource))
    }

    public static let generic = FingerprintRule(name: "wechat-event") { fields, resource in
        let eventType = fields.first { $0.name == "event_type" }?.value ?? ""
        return Event.fingerprint(of: [FormParameter(name: "event_type", value: eventType)], resource: resource ?? .null)
    }

    // MARK: - The business record

    static func paymentV2(_ fields: [FormParameter]) -> [(String, String?)] {
        let v = values(fields)
        return [
            ("appid", v["appid"]), ("sub_appid", v["sub_appid"]), ("sub_mch_id", v["sub_mch_id"]),
            ("openid", v["openid"]), ("sub_openid", v["sub_openid"]), ("trade_type", v["trade_type"]),
            ("transaction_id", v["transaction_id"]), ("attach", v["attach"]),
            ("total", v["total_fee"]), ("currency", v["fee_type"] ?? "CNY"),
            ("success_time", time(v["time_end"], WeChatFields.beijingTime(v["time_end"] ?? "", dashed: false))),
        ]
    }

    static func paymentV3(_ r: JSONValue) -> [(String, String?)] {
        [
            ("appid", text(r["appid"])), ("openid", text(r["payer"]?["openid"])), ("trade_type", text(r["trade_type"])),
            ("transaction_id", text(r["transaction_id"])), ("attach", text(r["attach"])),
            ("total", text(r["amount"]?["total"])), ("currency", text(r["amount"]?["currency"]) ?? "CNY"),
            ("success_time", time(text(r["success_time"]), text(r["success_time"]).flatMap(Timestamp.milliseconds(rfc3339:)))),
        ]
    }

    static func refundV2(_ fields: [FormParameter]) -> [(String, String?)] {
        let v = values(fields)
        return [
            ("out_trade_no", v["out_trade_no"]), ("transaction_id", v["transaction_id"]), ("refund_id", v["refund_id"]),
            ("total", v["total_fee"]), ("refund", v["refund_fee"]),
            ("success_time", time(v["success_time"], WeChatFields.beijingTime(v["success_time"] ?? "", dashed: true))),
        ]
    }

    static func refundV3(_ r: JSONValue) -> [(String, String?)] {
        [
            ("out_trade_no", text(r["out_trade_no"])), ("transaction_id", text(r["transaction_id"])),
            ("refund_id", text(r["refund_id"])), ("total", text(r["amount"]?["total"])), ("refund", text(r["amount"]?["refund"])),
            ("success_time", time(text(r["success_time"]), text(r["success_time"]).flatMap(Timestamp.milliseconds(rfc3339:)))),
        ]
    }

    /// The record as fingerprint text; a missing or empty value is left out, so "no attach" and `"attach":""`
    /// (v2 drops empty elements, v3 writes them) are the same.
    static func record(_ pairs: [(String, String?)]) -> String {
        let kept = pairs.compactMap { name, value in value.flatMap { $0.isEmpty ? nil : FormParameter(name: name, value: $0) } }
        return "wechat:" + Event.fingerprint(of: kept)
    }

    static func wholeResource(_ resource: JSONValue) -> String {
        "resource:" + Event.fingerprint(of: [], resource: resource)
    }

    static func values(_ fields: [FormParameter]) -> [String: String] {
        var values: [String: String] = [:]
        for field in fields { values[field.name] = field.value }
        return values
    }

    /// A string as itself, a number as its text; anything else is no value.
    static func text(_ value: JSONValue?) -> String? {
        switch value {
        case .string(let s)?: return s
        case .number(let n)?: return n
        default: return nil
        }
    }

    /// A time as Unix milliseconds when it parses, else its text marked as such (it then still compares).
    static func time(_ text: String?, _ milliseconds: Int64?) -> String? {
        guard let text, !text.isEmpty else { return nil }
        return milliseconds.map(String.init) ?? "text:" + text
    }
}
