public import PayhookCore

/// The outer JSON of a v3 notification, read only after its signature verified (docs/protocols.md §8.3).
public struct WeChatV3Envelope: Sendable, Equatable {
    public var id: String
    public var eventType: String
    /// The envelope's members kept in the event's `fields`, as received: `id`, `create_time`, `event_type`,
    /// `resource_type`, `summary`, and the resource's `original_type` and (when not empty) `associated_data`.
    public var fields: [FormParameter]
    public var nonce: [UInt8]
    public var associatedData: [UInt8]
    /// Base64-decoded `ciphertext`: the ciphertext with the 16-byte GCM tag after it.
    public var ciphertext: [UInt8]

    /// Longest `id` and `event_type` accepted; WeChat documents at most 36 and 32 characters.
    static let maximumNameLength = 64

    public static func parse(_ body: [UInt8]) -> Result<WeChatV3Envelope, Refusal> {
        guard let document = JSONReader.parse(body), case .object = document else {
            return .failure(.malformed("body is not a JSON object"))
        }
        func string(_ value: JSONValue?, _ name: String) -> Result<String, Refusal> {
            guard case .string(let text)? = value, !text.isEmpty else { return .failure(.semantic("\(name) is missing, empty or not a string")) }
            return .success(text)
        }
        let id: String, createTime: String, eventType: String, resourceType: String
        switch (string(document["id"], "id"), string(document["create_time"], "create_time"),
                string(document["event_type"], "event_type"), string(document["resource_type"], "resource_type")) {
        case (.success(let a), .success(let b), .success(let c), .success(let d)): (id, createTime, eventType, resourceType) = (a, b, c, d)
        case (.failure(let r), _, _, _), (_, .failure(let r), _, _), (_, _, .failure(let r), _), (_, _, _, .failure(let r)): return .failure(r)
        }
        guard id.utf8.count <= maximumNameLength, !id.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) else {
            return .failure(.semantic("id is longer than \(maximumNameLength) bytes or holds a control character"))
        }
        guard eventType.utf8.count <= maximumNameLength,
            eventType.utf8.allSatisfy({ ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E || $0 == 0x5F })
        else { return .failure(.semantic("event_type is not an upper-case dotted name")) }
        guard Timestamp.milliseconds(rfc3339: createTime) != nil else {
            return .failure(.semantic("create_time is not an RFC 3339 time"))
        }
        guard resourceType == WeChatV3Source.resourceType else {
            return .failure(.semantic("resource_type is not \(WeChatV3Source.resourceType)"))
        }
        guard let resource = document["resource"], case .object = resource else {
            return .failure(.semantic("resource is missing or not an object"))
        }
        guard resource["algorithm"]?.stringValue == WeChatV3Source.algorithm else {
            return .failure(.semantic("resource.algorithm is not \(WeChatV3Source.algorithm)"))
        }
        guard let nonce = resource["nonce"]?.stringValue, nonce.utf8.count == 12 else {
            return .failure(.semantic("resource.nonce is not 12 bytes"))
        }
        // Absent and empty are the same associated data (docs/protocols.md §7.1).
        let associatedData: String
        switch resource["associated_data"] {
        case nil, .null?: associatedData = ""
        case .string(let text)?: associatedData = text
        default: return .failure(.semantic("resource.associated_data is not a string"))
        }
        guard let encoded = resource["ciphertext"]?.stringValue, let ciphertext = Base64.decode(encoded), ciphertext.count >= 16 else {
            return .failure(.semantic("resource.ciphertext is not base64 of at least a GCM tag"))
        }
        var fields = [
            FormParameter(name: "id", value: id), FormParameter(name: "create_time", value: createTime),
            FormParameter(name: "event_type", value: eventType), FormParameter(name: "resource_type", value: resourceType),
        ]
        if let summary = document["summary"]?.stringValue, !summary.isEmpty { fields.append(FormParameter(name: "summary", value: summary)) }
        if let originalType = resource["original_type"]?.stringValue, !originalType.isEmpty {
            fields.append(FormParameter(name: "original_type", value: originalType))
        }
        if !associatedData.isEmpty { fields.append(FormParameter(name: "associated_data", value: associatedData)) }
        return .success(WeChatV3Envelope(
            id: id, eventType: eventType, fields: fields, nonce: Array(nonce.utf8), associatedData: Array(associatedData.utf8),
            ciphertext: ciphertext))
    }
}

/// What a decrypted v3 resource becomes: the event source, dedupe key and headline values of
/// docs/contract.md §3.3, after the semantic checks of docs/protocols.md §8.4.
public enum WeChatV3Resource {
    public static let paymentEvent = "TRANSACTION.SUCCESS"
    public static let refundEvents: Set<String> = ["REFUND.SUCCESS", "REFUND.ABNORMAL", "REFUND.CLOSED"]
    /// Every `trade_state` WeChat documents; a `TRANSACTION.SUCCESS` must carry `SUCCESS`.
    public static let tradeStates: Set<String> = ["SUCCESS", "REFUND", "NOTPAY", "CLOSED", "REVOKED", "USERPAYING", "PAYERROR"]
    public static let refundStatuses: Set<String> = ["SUCCESS", "CLOSED", "ABNORMAL"]
    /// Sub-orders a combine payment may hold.
    static let maximumSubOrders = 50

    public static func eventSource(of eventType: String) -> String {
        if eventType == paymentEvent { return WeChatSource.paySource }
        if refundEvents.contains(eventType) { return WeChatSource.refundSource }
        return WeChatV3Source.eventSource
    }

    /// The merchant whose keys the resource belongs to: the service provider in partner mode, the combine
    /// merchant of a combine payment, else the merchant (`mch_id` in some non-payment events).
    public static func merchant(of resource: JSONValue) -> String? {
        for name in ["sp_mchid", "combine_mchid", "mchid", "mch_id"] {
            if let value = resource[name]?.stringValue { return value }
        }
        return nil
    }

    public struct Mapped: Sendable, Equatable {
        public var source: String
        public var key: DedupeKey
        public var orderRef: String
        public var status: String
        public var amount: Int64
        public var currency: String
        /// When the money moved (`success_time`), for the replay window; nil when the resource has none.
        public var businessTime: Int64?
    }

    public static func map(envelope: WeChatV3Envelope, resource: JSONValue, tenant: WeChatV3Tenant) -> Result<Mapped, Refusal> {
        do {
            return .success(try mapChecked(envelope: envelope, resource: resource, tenant: tenant))
        } catch {
            return .failure(error)
        }
    }

    static func mapChecked(envelope: WeChatV3Envelope, resource r: JSONValue, tenant: WeChatV3Tenant) throws(Refusal) -> Mapped {
        let source = eventSource(of: envelope.eventType)
        if let pinned = tenant.appID {
            let named = ["sp_appid", "combine_appid", "appid"].lazy.compactMap { r[$0]?.stringValue }.first
            // A payment always names its appid; a refund resource has none (Fixtures/wechat-v3/gen-vectors.json,
            // V3-5 and V3-6), nor do most other events, so those are refused only when they name another one.
            if source == WeChatSource.paySource || named != nil, named != pinned {
                throw .unknownTenant("the appid does not match the tenant's appid")
            }
        }
        switch source {
        case WeChatSource.paySource:
            if r["combine_mchid"] != nil { return try combine(r, tenant: tenant) }
            return try payment(r, tenant: tenant)
        case WeChatSource.refundSource:
            return try refund(r, eventType: envelope.eventType, tenant: tenant)
        default:
            let merchant = merchant(of: r) ?? tenant.mchID
            let orderRef = r["out_trade_no"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 } ?? envelope.id
            return Mapped(
                source: source, key: DedupeKey(source: source, parts: [merchant, envelope.eventType, envelope.id]),
                orderRef: orderRef, status: envelope.eventType, amount: 0, currency: "CNY", businessTime: nil)
        }
    }

    // MARK: - Payments

    static func payment(_ r: JSONValue, tenant: WeChatV3Tenant) throws(Refusal) -> Mapped {
        let partner = r["sp_mchid"] != nil
        var parts = [tenant.mchID]
        if partner { parts.append(try merchantNumber(r["sub_mchid"], "sub_mchid")) }
        let outTradeNo = try orderNumber(r["out_trade_no"], "out_trade_no", maxLength: 32)
        _ = try wechatID(r["transaction_id"], "transaction_id")
        let state = try member(r["trade_state"], "trade_state", in: tradeStates)
        guard state == "SUCCESS" else { throw .semantic("TRANSACTION.SUCCESS with trade_state \(state)") }
        let total = try fen(r["amount"]?["total"], "amount.total")
        if r["amount"]?["payer_total"] != nil { _ = try fen(r["amount"]?["payer_total"], "amount.payer_total") }
        let currency = try currencyCode(r["amount"]?["currency"], "amount.currency")
        let time = try successTime(r["success_time"], required: true)
        parts += [outTradeNo, state]
        return Mapped(
            source: WeChatSource.paySource, key: DedupeKey(source: WeChatSource.paySource, parts: parts), orderRef: outTradeNo,
            status: state, amount: total, currency: currency, businessTime: time)
    }

    static func combine(_ r: JSONValue, tenant: WeChatV3Tenant) throws(Refusal) -> Mapped {
        let combineOutTradeNo = try orderNumber(r["combine_out_trade_no"], "combine_out_trade_no", maxLength: 32)
        guard case .array(let orders)? = r["sub_orders"], !orders.isEmpty, orders.count <= maximumSubOrders else {
            throw .semantic("sub_orders is not an array of 1 to \(maximumSubOrders) orders")
        }
        var total: Int64 = 0
        var currency: String?
        var latest: Int64?
        for (index, order) in orders.enumerated() {
            let at = "sub_orders[\(index)]."
            guard case .object = order else { throw .semantic("sub_orders[\(index)] is not an object") }
            _ = try merchantNumber(order["mchid"], at + "mchid")
            _ = try orderNumber(order["out_trade_no"], at + "out_trade_no", maxLength: 32)
            _ = try wechatID(order["transaction_id"], at + "transaction_id")
            // The notification is of the combined order's success, and its amount is the sub-orders' sum: a
            // sub-order that is not paid would be counted as money received.
            let state = try member(order["trade_state"], at + "trade_state", in: tradeStates)
            guard state == "SUCCESS" else { throw .semantic("TRANSACTION.SUCCESS with \(at)trade_state \(state)") }
            let amount = try fen(order["amount"]?["total_amount"], at + "amount.total_amount")
            let code = try currencyCode(order["amount"]?["currency"], at + "amount.currency")
            guard currency == nil || currency == code else { throw .semantic("sub_orders mix currencies") }
            currency = code
            let (sum, overflow) = total.addingReportingOverflow(amount)
            guard !overflow else { throw .semantic("the sub_orders' total_amount overflows") }
            total = sum
            if let time = try successTime(order["success_time"], required: false) { latest = max(latest ?? time, time) }
        }
        return Mapped(
            source: WeChatSource.paySource,
            key: DedupeKey(source: WeChatSource.paySource, parts: [tenant.mchID, combineOutTradeNo, "SUCCESS"]),
            orderRef: combineOutTradeNo, status: "SUCCESS", amount: total, currency: currency ?? "CNY", businessTime: latest)
    }

    // MARK: - Refunds

    static func refund(_ r: JSONValue, eventType: String, tenant: WeChatV3Tenant) throws(Refusal) -> Mapped {
        let partner = r["sp_mchid"] != nil
        var parts = [tenant.mchID]
        if partner { parts.append(try merchantNumber(r["sub_mchid"], "sub_mchid")) }
        let outTradeNo = try orderNumber(r["out_trade_no"], "out_trade_no", maxLength: 32)
        let outRefundNo = try orderNumber(r["out_refund_no"], "out_refund_no", maxLength: 64)
        _ = try wechatID(r["transaction_id"], "transaction_id")
        _ = try wechatID(r["refund_id"], "refund_id")
        let status = try member(r["refund_status"], "refund_status", in: refundStatuses)
        guard eventType == "REFUND." + status else { throw .semantic("\(eventType) with refund_status \(status)") }
        let total = try fen(r["amount"]?["total"], "amount.total")
        let refund = try fen(r["amount"]?["refund"], "amount.refund")
        guard refund <= total else { throw .semantic("amount.refund is larger than amount.total") }
        for name in ["payer_total", "payer_refund"] where r["amount"]?[name] != nil {
            _ = try fen(r["amount"]?[name], "amount." + name)
        }
        let currency = try currencyCode(r["amount"]?["currency"], "amount.currency")
        let time = try successTime(r["success_time"], required: status == "SUCCESS")
        parts += [outRefundNo, status]
        return Mapped(
            source: WeChatSource.refundSource, key: DedupeKey(source: WeChatSource.refundSource, parts: parts),
            orderRef: outTradeNo, status: status, amount: refund, currency: currency, businessTime: time)
    }

    // MARK: - Field rules

    static func orderNumber(_ value: JSONValue?, _ name: String, maxLength: Int) throws(Refusal) -> String {
        guard let text = value?.stringValue, WeChatFields.isMerchantNumber(text, maxLength: maxLength) else {
            throw .semantic("\(name) is not 1 to \(maxLength) of [0-9A-Za-z_-|*@]")
        }
        return text
    }

    /// A merchant number (`mchid`, `sub_mchid`): 1 to 32 digits.
    static func merchantNumber(_ value: JSONValue?, _ name: String) throws(Refusal) -> String {
        guard let text = value?.stringValue, WeChatFields.isWeChatID(text, minimumLength: 1) else {
            throw .semantic("\(name) is not 1 to 32 digits")
        }
        return text
    }

    /// An id WeChat assigns (`transaction_id`, `refund_id`): digits, 20 to 32 of them.
    static func wechatID(_ value: JSONValue?, _ name: String) throws(Refusal) -> String {
        guard let text = value?.stringValue, WeChatFields.isWeChatID(text) else { throw .semantic("\(name) is not 20 to 32 digits") }
        return text
    }

    static func member(_ value: JSONValue?, _ name: String, in allowed: Set<String>) throws(Refusal) -> String {
        guard let text = value?.stringValue, allowed.contains(text) else { throw .semantic("\(name) is not one of \(allowed.sorted().joined(separator: ", "))") }
        return text
    }

    /// An amount in fen: a JSON integer (no sign, fraction or exponent; never a string or a float).
    static func fen(_ value: JSONValue?, _ name: String) throws(Refusal) -> Int64 {
        guard case .number(let text)? = value, let amount = DecimalDigits.nonNegative(text) else {
            throw .semantic("\(name) is not a non-negative integer number of fen")
        }
        return amount
    }

    /// An ISO 4217 code (three upper-case letters); CNY when absent.
    static func currencyCode(_ value: JSONValue?, _ name: String) throws(Refusal) -> String {
        guard let value else { return "CNY" }
        guard let text = value.stringValue, text.utf8.count == 3, text.utf8.allSatisfy({ $0 >= 0x41 && $0 <= 0x5A }) else {
            throw .semantic("\(name) is not a three-letter currency code")
        }
        return text
    }

    static func successTime(_ value: JSONValue?, required: Bool) throws(Refusal) -> Int64? {
        guard let value, value != .null else {
            if required { throw .semantic("success_time is missing") }
            return nil
        }
        guard let text = value.stringValue, let time = Timestamp.milliseconds(rfc3339: text) else {
            throw .semantic("success_time is not an RFC 3339 time")
        }
        return time
    }
}
