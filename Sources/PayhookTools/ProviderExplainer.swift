import Foundation
import PayhookAlipay
import PayhookConfig
import PayhookCore
import PayhookCrypto
import PayhookSpoolFormat
import PayhookUnified
import PayhookXxPay

/// `payhook verify` for Alipay, XxPay and Jeepay notifications: a form body, a query (XxPay puts its parameters
/// there), a header block around either, or a stored event of `alipay.trade`, `alipay.event`, `xxpay.pay` or
/// `jeepay.pay`.
///
/// The explanation walks the source's checks in the source's order (Sources/PayhookAlipay/AlipaySource.swift,
/// Sources/PayhookXxPay/XxPaySource.swift, JeepaySource.swift): the tenant the routing parameter picks (with the
/// configured ones when none does), the charset and `sign_type`, the exact string signed (for MD5, with the secret
/// shown as `***`), the result with each key, the hints that match when it fails, and the verdict, which is the
/// source's own. Nothing the secrets determine is shown: no secret, no expected signature.
extension Explainer {
    enum Provider: String {
        case alipay, xxpay, jeepay
    }

    /// The provider whose routing parameter the form or query names: `app_id` is Alipay's, `mchId` XxPay's,
    /// `appId` (with `mchNo`) Jeepay's; the unified platform's `domainCode` is none of them. Failing that, the
    /// provider whose table has `path`, so that a form without its routing parameter is explained as its
    /// source refuses it. nil for anything else.
    static func provider(query: String?, body: [UInt8], path: String?, config: Config) -> Provider? {
        var names = Set<String>()
        for text in [query ?? "", String(decoding: body, as: UTF8.self)] {
            for pair in text.split(separator: "&") {
                names.insert(String(pair.prefix { $0 != "=" }))
            }
        }
        if names.contains("domainCode") { return nil }
        if names.contains("app_id") { return .alipay }
        if names.contains("mchId") { return .xxpay }
        if names.contains("appId") || names.contains("mchNo") { return .jeepay }
        guard let path else { return nil }
        if config.alipay.contains(where: { $0.path == path }) { return .alipay }
        if config.xxpay.contains(where: { $0.path == path }) { return .xxpay }
        if config.jeepay.contains(where: { $0.path == path }) { return .jeepay }
        return nil
    }

    /// The event sources these explanations re-check.
    static let providerSources: [String: Provider] = [
        AlipaySource.tradeSource: .alipay, AlipaySource.eventSource: .alipay, XxPaySource.sourceName: .xxpay,
        JeepaySource.sourceName: .jeepay,
    ]

    /// One request to explain, however it was captured.
    struct ProviderRequest {
        var method: String
        /// The path it was sent to, when the capture says (a request line, an event's `raw.target`, `--path`).
        var path: String?
        var query: String?
        var body: [UInt8]
        /// Where "now" comes from, for the lines that compare times with it.
        var clock: String
    }

    /// A header block (an HTTP request as captured) holding one of these notifications; nil when it is not one,
    /// and the other explanations then read it.
    static func providerHeaderBlock(_ input: [UInt8], config: Config, path: String?, now: Int64, _ report: Report) -> Report? {
        guard case .success(let capture) = parseHeaderBlock(input),
            !capture.headers.contains(where: { $0.name.lowercased().hasPrefix("wechatpay-") })
        else { return nil }
        var targetPath: String?
        var query: String?
        if var target = capture.target {
            if let scheme = target.range(of: "://") { target = String(target[scheme.upperBound...].drop { $0 != "/" }) }
            (targetPath, query) = split(target)
        }
        guard let kind = provider(query: query, body: capture.body, path: path ?? targetPath, config: config) else { return nil }
        var report = report
        report.add(
            "input: header block\(capture.requestLine ? " after a request line" : "") (\(capture.headers.count) header(s); "
                + "body \(capture.body.count) bytes, \(capture.bodyNote))")
        let request = ProviderRequest(
            method: capture.method, path: path ?? targetPath, query: query, body: capture.body, clock: "the wall clock")
        return explainProvider(kind, request, config: config, now: now, report)
    }

    /// A query-string capture (or a form body, which looks the same) of one of these notifications; nil when it is
    /// not one. XxPay's parameters are read as the query of a POST with an empty body, as XxPay sends them; Alipay's
    /// and Jeepay's as the form body they POST.
    static func providerText(_ text: String, path: String?, config: Config, now: Int64, _ report: Report) -> Report? {
        guard let kind = provider(query: text, body: [], path: path, config: config) else { return nil }
        var report = report
        let request: ProviderRequest
        if kind == .xxpay {
            report.add("input: query string (checked as the query of a POST with an empty body, as XxPay sends it)")
            request = ProviderRequest(method: "POST", path: path, query: text, body: [], clock: "the wall clock")
        } else {
            report.add("input: form body (\(text.utf8.count) bytes, checked as the body of a POST)")
            request = ProviderRequest(method: "POST", path: path, query: nil, body: Array(text.utf8), clock: "the wall clock")
        }
        return explainProvider(kind, request, config: config, now: now, report)
    }

    /// A stored event of one of these sources, judged as of its `received_at`: its notification time was inside
    /// the replay window then, and a re-check later must not fail only because time went on.
    static func providerEvent(_ event: EventFile, config: Config, path: String?, _ report: Report) -> Report? {
        guard let kind = providerSources[event.source] else { return nil }
        var report = report
        guard let receivedAt = Timestamp.milliseconds(rfc3339: event.receivedAt) else {
            report.add("FAILED: the event's received_at '\(LogText.printable(event.receivedAt))' is not an RFC 3339 time, so its times cannot be checked")
            return report
        }
        let (eventPath, query) = split(event.raw.target)
        let request = ProviderRequest(
            method: event.raw.method, path: path ?? eventPath, query: query, body: Array(event.raw.body.utf8),
            clock: "the event's received_at \(event.receivedAt), not the wall clock: a stored event is judged as of when it arrived")
        return explainProvider(kind, request, config: config, now: receivedAt, report)
    }

    static func explainProvider(_ kind: Provider, _ request: ProviderRequest, config: Config, now: Int64, _ report: Report) -> Report {
        switch kind {
        case .alipay: return alipay(request, config: config, now: now, report)
        case .xxpay, .jeepay: return merchantMD5(kind, request, config: config, now: now, report)
        }
    }

    /// The tenants on `path` (all of them without one), and what to call that in a sentence.
    static func onPath<T>(_ tenants: [T], _ path: String?, _ tenantPath: (T) -> String) -> (tenants: [T], place: String) {
        guard let path else { return (tenants, "") }
        return (tenants.filter { tenantPath($0) == path }, " on \(LogText.printable(path))")
    }

    static func days(_ milliseconds: Int64) -> Int64 { milliseconds / 86_400_000 }

    /// How old a time the sender wrote is against "now", and whether the replay window still takes it.
    static func age(_ name: String, _ time: Int64, shown: String, now: Int64, clock: String, config: Config) -> String {
        let window = config.maxCallbackAgeMilliseconds
        let age = now - time
        let when = age >= 0 ? "\(days(age)) day(s) before now" : "\(days(-age)) day(s) after now"
        return "\(name): \(shown), \(when) (now from \(clock)); the replay window is \(days(window)) day(s) (ledger_retention_days minus one)"
            + (time < now - window ? ": OUTSIDE, so payhook refuses it as a possible replay" : ": inside")
    }

    // MARK: - Alipay

    static func alipay(_ request: ProviderRequest, config: Config, now: Int64, _ report: Report) -> Report {
        var report = report
        report.add("source: Alipay (POST form, RSA2 or RSA over the sorted parameters)")
        guard !config.alipay.isEmpty else {
            report.add("FAILED: the config has no [[alipay]] table")
            return report
        }
        guard request.method == "POST" else {
            report.add("FAILED: the method is \(LogText.printable(request.method)); serve answers 405 to anything but POST on an [[alipay]] path")
            return report
        }
        if let query = request.query, !query.isEmpty {
            report.add("note: the query (\(query.utf8.count) bytes) is not read: Alipay signs the form body only")
        }
        let raw: [RawFormParameter]
        do {
            raw = try FormQuery.decodeBytes(request.body)
        } catch {
            report.add("FAILED: the form body is malformed: \(error)")
            return report
        }
        guard let appIDBytes = raw.first(where: { $0.name == Array("app_id".utf8) })?.value, !appIDBytes.isEmpty else {
            report.add("FAILED: parameter 'app_id' is missing, so no tenant can be chosen")
            return report
        }
        let appID = String(decoding: appIDBytes, as: UTF8.self)
        let (candidates, place) = onPath(config.alipay, request.path) { $0.path }
        guard let tenant = candidates.first(where: { $0.appID == appID }) else {
            let known = candidates.map(\.appID)
            report.add(
                "FAILED: no [[alipay]] table with app_id '\(LogText.printable(appID, limit: 32))'\(place); the configured app_ids\(place): "
                    + (known.isEmpty ? "none" : known.joined(separator: ", ")))
            guard let first = candidates.first else { return report }
            let source = AlipaySource(path: first.path, tenants: config.alipay, maxCallbackAgeMilliseconds: config.maxCallbackAgeMilliseconds)
            let callback = CallbackRequest(method: "POST", target: first.path, query: nil, body: request.body, remoteAddress: "-", receivedAtMilliseconds: now)
            return verdict(source.process(callback, nowMilliseconds: now).outcome, report)
        }
        report.add("tenant: app_id \(tenant.appID), path \(tenant.path)\(tenant.line > 0 ? " (\(config.file):\(tenant.line))" : "")")
        report.add("keys: \(tenant.keys.count) Alipay public key(s): \(tenant.keys.map(\.label).joined(separator: "; "))")
        let source = AlipaySource(path: tenant.path, tenants: config.alipay, maxCallbackAgeMilliseconds: config.maxCallbackAgeMilliseconds)
        let callback = CallbackRequest(
            method: "POST", target: request.path ?? tenant.path, query: nil, body: request.body, remoteAddress: "-", receivedAtMilliseconds: now)
        func finish(_ report: Report) -> Report {
            verdict(source.process(callback, nowMilliseconds: now).outcome, report)
        }

        // 1. The charset, which says how the bytes are read as text (they are verified as sent).
        let accepted = tenant.charsets.map(\.rawValue).sorted().joined(separator: ", ")
        let named = raw.first { $0.name == Array("charset".utf8) }.map { String(decoding: $0.value, as: UTF8.self) }
        report.add("charset: \(named.map { "'\(LogText.printable($0, limit: 32))'" } ?? "not given, so utf-8"); the tenant's charsets: \(accepted)")
        let form: AlipaySource.Form
        do {
            form = try AlipaySource.readForm(raw, allowed: tenant.charsets)
        } catch {
            report.add("FAILED: \(error.reason)")
            if let named, let known = TextCharset(name: named), !tenant.charsets.contains(known) {
                report.add("hint: add \"\(known.rawValue)\" to the tenant's charsets if the app's orders are created with charset=\(named)")
            }
            return finish(report)
        }

        // 2. Which rule: a trade notification, or an open-platform one.
        let status = form.value("trade_status")
        let trade = status != nil || !tenant.gatewayNotifications
        if let status {
            report.add("kind: trade notification (trade_status \(LogText.printable(status, limit: 32))): signed over every non-empty parameter but sign and sign_type, sorted by name (rule v1)")
        } else if tenant.gatewayNotifications {
            report.add("kind: open-platform notification (no trade_status; gateway_notifications = true): tried with sign_type kept in the signed string (rule v2), then without (rule v1)")
        } else {
            report.add("kind: no trade_status, so not a trade notification; the tenant's gateway_notifications is false, so it is checked as a trade notification (rule v1) and its fields will fail the trade checks")
        }

        // 3. sign_type.
        let typeName = form.value(AlipaySigning.signTypeParameter)
        let acceptedTypes = tenant.signTypes.map(\.rawValue).sorted().joined(separator: ", ")
        guard let type = AlipaySignType(rawValue: typeName ?? AlipaySignType.rsa2.rawValue) else {
            report.add("FAILED: sign_type '\(LogText.printable(typeName ?? "", limit: 16))' is not RSA2 or RSA, the two Alipay signs with")
            return finish(report)
        }
        report.add("sign_type: \(typeName == nil ? "not given, so RSA2" : type.rawValue) (\(type == .rsa2 ? "SHA256withRSA" : "SHA1withRSA")); the tenant's sign_types: \(acceptedTypes)")
        if !tenant.signTypes.contains(type) {
            report.add("FAILED: sign_type \(type.rawValue) is not in the tenant's sign_types")
            report.add("hint: add \"\(type.rawValue)\" to sign_types if this app really signs with \(type.rawValue) (apps created before 2018 may); otherwise the sender is not configured as the tenant says")
            return finish(report)
        }

        // 4. sign itself.
        guard let sign = form.value(AlipaySigning.signParameter), !sign.isEmpty else {
            report.add("FAILED: parameter 'sign' is missing")
            return finish(report)
        }
        guard let signature = Base64.decode(sign) else {
            report.add("FAILED: sign is not base64 (\(sign.utf8.count) characters)")
            if sign.contains(" ") {
                report.add("hint: it holds spaces: a '+' of the base64 reached the body unescaped and was read as a space; the sender must percent-encode the value (%2B)")
            }
            return finish(report)
        }
        report.add("sign: \(sign.utf8.count) base64 characters, \(signature.count) bytes (an RSA-2048 signature has 256)")

        // 5. The string signed, and RSA with each key under each rule tried.
        let rules: [AlipaySigning.Rule] = trade ? [.withoutSignType] : [.withSignType, .withoutSignType]
        var verified = false
        for rule in rules {
            let content = AlipaySigning.content(form.raw, rule: rule)
            report.add("string signed (rule \(rule.rawValue)): \"\(shownShortened(content, head: 1200, tail: 200))\" (\(content.count) bytes, SHA-256 \(Hex.encode(Digest.sha256(content))))")
            for (index, key) in tenant.keys.enumerated() {
                let good = Signature.verifyRSA(type.digest, key: key.key, message: content, signature: signature)
                report.add("\(type.rawValue): \(good ? "verifies" : "does NOT verify") with key #\(index + 1) of \(tenant.keys.count) (\(key.label))")
                if good { verified = true }
            }
            if verified { break }
        }
        if !verified {
            for hint in alipayHints(form, signature: signature, type: type, tenant: tenant, trade: trade, config: config) { report.add("hint: \(hint)") }
            return finish(report)
        }

        // 6. What the signature cannot say: the seller and the time.
        if let expected = tenant.sellerID {
            let seller = form.value("seller_id")
            report.add("seller_id: \(seller.map { LogText.printable($0, limit: 32) } ?? "not given"); the tenant's seller_id \(expected): \(seller == nil || seller == expected ? "accepted" : "NOT the same")")
        }
        if let text = form.value("notify_time") {
            if let time = BeijingTime.milliseconds(text, dashed: true) {
                report.add(age("notify_time", time, shown: "\(text) Beijing time", now: now, clock: request.clock, config: config))
            } else {
                report.add("notify_time: '\(LogText.printable(text, limit: 32))' is not yyyy-MM-dd HH:mm:ss")
            }
        }
        return finish(report)
    }

    /// When RSA fails: the variants that would have verified, tried with the tenant's keys (and, for a wrong
    /// tenant, the other apps' keys), each named; or what else to check.
    static func alipayHints(
        _ form: AlipaySource.Form, signature: [UInt8], type: AlipaySignType, tenant: AlipayTenant, trade: Bool, config: Config
    ) -> [String] {
        var hints: [String] = []
        func verifies(_ content: [UInt8], _ digest: AlipaySignType, _ keys: [AlipayTenant.Key]) -> Bool {
            AlipaySigning.verify(content: content, signature: signature, type: digest, keys: keys) != nil
        }
        let v1 = AlipaySigning.content(form.raw, rule: .withoutSignType)
        let v2 = AlipaySigning.content(form.raw, rule: .withSignType)
        let other: AlipaySignType = type == .rsa2 ? .rsa : .rsa2
        if verifies(v1, other, tenant.keys) || (!trade && verifies(v2, other, tenant.keys)) {
            hints.append("it verifies as \(other.rawValue) (\(other == .rsa2 ? "SHA256withRSA" : "SHA1withRSA")): sign_type says \(type.rawValue), but the sender signed with the other algorithm")
        }
        if trade && verifies(v2, type, tenant.keys) {
            hints.append(
                form.value("trade_status") == nil
                    ? "it verifies with sign_type kept in the signed string (rule v2): an open-platform notification; set gateway_notifications = true on the tenant to accept those"
                    : "it verifies with sign_type kept in the signed string (rule v2), which Alipay's trade notifications never do: the sender signed it like an open-platform notification")
        }
        // Empty values are left out of the signed string; a sender that kept them signed another string.
        var withEmpty: [UInt8] = []
        let kept = form.raw.filter { $0.name != Array(AlipaySigning.signParameter.utf8) && $0.name != Array(AlipaySigning.signTypeParameter.utf8) }
            .sorted { $0.name.lexicographicallyPrecedes($1.name) }
        for (index, parameter) in kept.enumerated() {
            if index > 0 { withEmpty.append(UInt8(ascii: "&")) }
            withEmpty += parameter.name + [UInt8(ascii: "=")] + parameter.value
        }
        if withEmpty != v1 && verifies(withEmpty, type, tenant.keys) {
            hints.append("it verifies when empty values are signed; Alipay leaves empty values out of the string")
        }
        for other in config.alipay where other.appID != tenant.appID && (verifies(v1, type, other.keys) || verifies(v2, type, other.keys)) {
            hints.append("it verifies with the key of [[alipay]] app_id \(other.appID): the notification names app_id \(tenant.appID), so the sender or the tables mix up the two apps")
        }
        if hints.isEmpty {
            hints.append("no common variant verifies either: a signed value changed after signing (the body must be the bytes exactly as sent), or another key signed it; check that alipay_public_key_file holds Alipay's public key for this app (not the app's own public key, and not another app's)")
        }
        return hints
    }

    // MARK: - XxPay and Jeepay

    static func merchantMD5(_ kind: Provider, _ request: ProviderRequest, config: Config, now: Int64, _ report: Report) -> Report {
        var report = report
        let xxpay = kind == .xxpay
        report.add(
            xxpay
                ? "source: XxPay (POST, parameters in the query and an empty body; MD5 with the merchant's resKey)"
                : "source: Jeepay (POST form; MD5 with the app secret)")
        let table = xxpay ? "[[xxpay]]" : "[[jeepay]]"
        guard xxpay ? !config.xxpay.isEmpty : !config.jeepay.isEmpty else {
            report.add("FAILED: the config has no \(table) table")
            return report
        }
        let methods = xxpay ? ["POST", "GET"] : ["POST"]
        guard methods.contains(request.method) else {
            report.add("FAILED: the method is \(LogText.printable(request.method)); serve answers 405 to anything but \(methods.joined(separator: " or ")) on a \(table) path")
            return report
        }

        // The parameters, strictly, as the source reads them: the query's (XxPay only), then the body's.
        var parameters: [FormParameter] = []
        do {
            if xxpay, let query = request.query { parameters = try FormQuery.decode(query) }
            if !request.body.isEmpty {
                guard let body = String(validating: request.body, as: UTF8.self) else {
                    report.add("FAILED: the body is not UTF-8")
                    return report
                }
                for parameter in try FormQuery.decode(body) {
                    if parameters.contains(where: { $0.name == parameter.name }) {
                        report.add("FAILED: parameter '\(LogText.printable(parameter.name, limit: 32))' is in both the query and the body")
                        return report
                    }
                    parameters.append(parameter)
                }
            }
        } catch {
            report.add("FAILED: malformed parameters: \(error)")
            return report
        }
        if !xxpay, let query = request.query, !query.isEmpty {
            report.add("note: the query (\(query.utf8.count) bytes) is not read: Jeepay signs the form body only")
        }
        if xxpay {
            let fromQuery = request.query.map { !$0.isEmpty } ?? false
            report.add("parameters: \(parameters.count), from the \(fromQuery && !request.body.isEmpty ? "query and the body" : fromQuery ? "query" : "body")")
        }
        let values = Dictionary(parameters.map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first })

        // The tenant.
        let routing = xxpay ? "mchId" : "appId"
        guard let id = values[routing], !id.isEmpty else {
            report.add("FAILED: parameter '\(routing)' is missing, so no tenant can be chosen")
            return report
        }
        let secrets: [Secret]
        let tenantPath: String
        let others: [(String, [Secret])]
        if xxpay {
            let (candidates, place) = onPath(config.xxpay, request.path) { $0.path }
            guard let tenant = candidates.first(where: { $0.mchID == id }) else {
                let known = candidates.map(\.mchID)
                report.add("FAILED: no [[xxpay]] table with mch_id '\(LogText.printable(id, limit: 32))'\(place); the configured mch_ids\(place): \(known.isEmpty ? "none" : known.joined(separator: ", "))")
                guard let first = candidates.first else { return report }
                let source = XxPaySource(path: first.path, tenants: config.xxpay, maxCallbackAgeMilliseconds: config.maxCallbackAgeMilliseconds)
                return verdict(source.process(unrouted(request, first.path, now), nowMilliseconds: now).outcome, report)
            }
            report.add("tenant: mch_id \(tenant.mchID), path \(tenant.path)\(tenant.line > 0 ? " (\(config.file):\(tenant.line))" : "")")
            (secrets, tenantPath) = (tenant.keys, tenant.path)
            others = config.xxpay.filter { $0.mchID != tenant.mchID }.map { ("[[xxpay]] mch_id \($0.mchID)", $0.keys) }
        } else {
            let (candidates, place) = onPath(config.jeepay, request.path) { $0.path }
            guard let tenant = candidates.first(where: { $0.appID == id }) else {
                let known = candidates.map { "\($0.appID) (mch_no \($0.mchNo))" }
                report.add("FAILED: no [[jeepay]] table with app_id '\(LogText.printable(id, limit: 32))'\(place); the configured app_ids\(place): \(known.isEmpty ? "none" : known.joined(separator: ", "))")
                guard let first = candidates.first else { return report }
                let source = JeepaySource(path: first.path, tenants: config.jeepay, maxCallbackAgeMilliseconds: config.maxCallbackAgeMilliseconds)
                return verdict(source.process(unrouted(request, first.path, now), nowMilliseconds: now).outcome, report)
            }
            report.add("tenant: app_id \(tenant.appID) of mch_no \(tenant.mchNo), path \(tenant.path)\(tenant.line > 0 ? " (\(config.file):\(tenant.line))" : "")")
            (secrets, tenantPath) = (tenant.keys, tenant.path)
            others = config.jeepay.filter { $0.appID != tenant.appID }.map { ("[[jeepay]] app_id \($0.appID) (mch_no \($0.mchNo))", $0.keys) }
            let mchNo = values["mchNo"]
            report.add("mchNo: \(mchNo.map { LogText.printable($0, limit: 32) } ?? "not given"); the tenant's mch_no \(tenant.mchNo): \(mchNo == tenant.mchNo ? "the same" : "NOT the same, so payhook refuses it")")
        }
        let source: any CallbackSource = xxpay
            ? XxPaySource(path: tenantPath, tenants: config.xxpay, maxCallbackAgeMilliseconds: config.maxCallbackAgeMilliseconds)
            : JeepaySource(path: tenantPath, tenants: config.jeepay, maxCallbackAgeMilliseconds: config.maxCallbackAgeMilliseconds)
        let target = (request.path ?? tenantPath) + (request.query.map { "?" + $0 } ?? "")
        let callback = CallbackRequest(
            method: request.method, target: target, query: request.query, body: request.body, remoteAddress: "-", receivedAtMilliseconds: now)
        func finish(_ report: Report) -> Report {
            verdict(source.process(callback, nowMilliseconds: now).outcome, report)
        }

        // The string signed, with the secret as ***: nothing in it depends on the secret but its tail.
        let masks = Array(repeating: "***", count: secrets.count).joined(separator: ", ")
        report.add("string to sign: \(String(decoding: MD5KeySigning.message(parameters, secret: Array("***".utf8)), as: UTF8.self))")
        report.add("rule: every non-empty name=value& but sign, sorted ignoring case (Java's CASE_INSENSITIVE_ORDER), then key= and the \(xxpay ? "resKey" : "app secret"); MD5, uppercase hex")
        guard let sign = values[MD5KeySigning.signParameter], !sign.isEmpty else {
            report.add("FAILED: parameter 'sign' is missing")
            return finish(report)
        }
        report.add("sign: \(LogText.printable(sign, limit: 80))")
        guard sign.utf8.count == 32, let presented = Hex.decode(sign) else {
            report.add("FAILED: sign is not 32 hexadecimal characters (an MD5 is)")
            return finish(report)
        }
        switch MD5KeySigning.verify(parameters, sign: sign, secrets: secrets) {
        case .success(let position):
            report.add("signature: OK, secret #\(position) of \(secrets.count) (\(masks))")
        case .failure:
            report.add("signature: does NOT match with any of the tenant's \(secrets.count) secret(s) (\(masks))")
            for hint in md5Hints(parameters, presented: presented, secrets: secrets, others: others, xxpay: xxpay) { report.add("hint: \(hint)") }
            return finish(report)
        }

        // What the signature cannot say: the time, against the replay window.
        let timeName = xxpay ? "paySuccTime" : "reqTime"
        if let text = values[timeName] {
            if let time = DecimalDigits.nonNegative(text) {
                report.add(age(timeName, time, shown: "\(text) (\(Timestamp.rfc3339(milliseconds: time)))", now: now, clock: request.clock, config: config))
            } else {
                report.add("\(timeName): '\(LogText.printable(text, limit: 32))' is not epoch milliseconds")
            }
        }
        return finish(report)
    }

    /// The request as sent to `path`, for the verdict of a source that found no tenant for it.
    static func unrouted(_ request: ProviderRequest, _ path: String, _ now: Int64) -> CallbackRequest {
        CallbackRequest(
            method: request.method, target: path + (request.query.map { "?" + $0 } ?? ""), query: request.query, body: request.body,
            remoteAddress: "-", receivedAtMilliseconds: now)
    }

    /// When MD5 does not match: the common variants, tried with the tenant's secrets (and the other tenants'),
    /// compared in constant time and never shown.
    static func md5Hints(
        _ parameters: [FormParameter], presented: [UInt8], secrets: [Secret], others: [(String, [Secret])], xxpay: Bool
    ) -> [String] {
        var hints: [String] = []
        func matches(_ secrets: [Secret], _ message: ([UInt8]) -> [UInt8]) -> Bool {
            secrets.contains { Digest.constantTimeEquals(Digest.md5(message(Array($0.value.utf8))), presented) }
        }
        func joined(_ pieces: [[UInt8]], _ secret: [UInt8]) -> [UInt8] {
            pieces.reduce(into: [UInt8]()) { $0 += $1 } + Array("key=".utf8) + secret
        }
        func piece(_ name: String, _ value: String) -> [UInt8] { Array("\(name)=\(value)&".utf8) }
        let signed = parameters.filter { $0.name != MD5KeySigning.signParameter }
        let nonEmpty = signed.filter { !$0.value.isEmpty }
        let caseSensitive = nonEmpty.map { piece($0.name, $0.value) }.sorted { $0.lexicographicallyPrecedes($1) }
        if matches(secrets, { joined(caseSensitive, $0) }) {
            hints.append("it matches when the strings are sorted case-sensitively (byte order); XxPay and Jeepay sort them ignoring case")
        }
        let withEmpty = MD5KeySigning.signedPrefix(signed, keepingEmpty: true)
        if signed.count != nonEmpty.count && matches(secrets, { withEmpty + $0 }) {
            hints.append("it matches when empty values are signed; they are left out of the string")
        }
        let encoded = MD5KeySigning.signedPrefix(nonEmpty.map { FormParameter(name: $0.name, value: UnifiedSigner.encode($0.value)) })
        if matches(secrets, { encoded + $0 }) {
            hints.append("it matches when the values are signed URL-encoded; the sender signs the decoded values")
        }
        for (name, otherSecrets) in others where matches(otherSecrets, { MD5KeySigning.message(parameters, secret: $0) }) {
            hints.append("it matches a secret of \(name): the notification names another tenant than the one whose secret signed it, or the key files are swapped")
        }
        if hints.isEmpty {
            hints.append(
                xxpay
                    ? "no common variant matches either: check that key_file holds the merchant's resKey (XxPay signs notifications with resKey, not the reqKey of requests), and that no value changed after signing"
                    : "no common variant matches either: check that key_file holds this appId's app secret (each app of a merchant has its own), and that no value changed after signing")
        }
        return hints
    }
}
