import Foundation
public import PayhookConfig
import PayhookCore
import PayhookCrypto
import PayhookSpoolFormat
import PayhookUnified
import PayhookWeChat

/// `payhook verify`: checks one captured callback against a config and explains the outcome: the
/// scheme, the string to sign with every secret shown as `***`, which check failed and, for a signature
/// that does not match, which common mistake would make it match.
///
/// The verdict comes from the same source code the server runs; the explanation is added around it.
public enum Explainer {
    /// Everything on standard input: `payhook verify -` reads its capture there.
    public static func readStandardInput() -> [UInt8] {
        Array(FileHandle.standardInput.readDataToEndOfFile())
    }

    public struct Report: Sendable {
        public var lines: [String] = []
        public var verified = false
        mutating func add(_ line: String) { lines.append(line) }
    }

    /// - Parameter input: a raw query string (optionally `/path?query` or a full URL; an XxPay query or an Alipay
    ///   or Jeepay form body is told by its routing parameter), a WeChat XML body,
    ///   a header block (`Name: value` lines, optionally after a request line, an empty line, then the body:
    ///   how a WeChat Pay v3 notification is captured), or an event file (its `raw` request is checked again).
    /// - Parameter nowMilliseconds: the clock for a capture's time checks; an event file is judged at its own
    ///   `received_at` instead.
    public static func explain(_ input: [UInt8], config: Config, path: String? = nil, nowMilliseconds: Int64 = WallClock.milliseconds()) -> Report {
        var report = Report()
        // The kind is told by the first byte that is not whitespace, but what is checked is the capture exactly
        // as given: trimming it would make verify accept bodies that serve refuses, and the two must agree.
        let first = input.first { !isWhitespace($0) }
        if first == UInt8(ascii: "{") {
            // The one definition of an event file (PayhookSpoolFormat), the one the queue tools and the server's
            // recovery apply: verify never re-checks a file they would have set aside.
            let event: EventFile
            do {
                event = try EventFile.parse(input)
            } catch {
                report.add("input: JSON, but not a payhook event with a raw request (\(error.reason))")
                return report
            }
            let (method, target, body) = (event.raw.method, event.raw.target, event.raw.body)
            report.add("input: event file \(LogText.printable(event.id, limit: 64)) (its raw request is checked again)")
            let (eventPath, query) = split(target)
            // Alipay, XxPay and Jeepay events: ProviderExplainer.swift, judged at their received_at.
            if let explained = providerEvent(event, config: config, path: path, report) { return explained }
            if !event.raw.headers.isEmpty {
                // Only WeChat Pay v3 events keep headers. Their signature covers a timestamp that must be within
                // minutes of "now", so "now" is when the event arrived: judged by the wall clock, every stored v3
                // event would fail five minutes after it was stored.
                guard let receivedAt = Timestamp.milliseconds(rfc3339: event.receivedAt) else {
                    report.add("FAILED: the event's received_at '\(LogText.printable(event.receivedAt))' is not an RFC 3339 time, so its clock window cannot be checked")
                    return report
                }
                let capture = Capture(
                    requestLine: true, method: method, target: target, headers: event.raw.headers.map { (name: $0.name, value: $0.value) },
                    body: Array(body.utf8), keptFinalLineBreak: nil)
                return wechatV3(
                    capture, path: path ?? eventPath, pathOrigin: path == nil ? "the event's raw.target" : "--path", config: config,
                    now: receivedAt, clock: "the event's received_at \(event.receivedAt), not the wall clock: a stored event is judged as of when it arrived",
                    report)
            }
            if method == "GET" { return unified(query ?? "", path: path ?? eventPath, config: config, now: nowMilliseconds, report) }
            return wechat(Array(body.utf8), path: path ?? eventPath, config: config, now: nowMilliseconds, report)
        }
        if first == UInt8(ascii: "<") {
            report.add("input: XML body (\(input.count) bytes)")
            return wechat(input, path: path, config: config, now: nowMilliseconds, report)
        }
        if isHeaderBlock(input) {
            if let explained = providerHeaderBlock(input, config: config, path: path, now: nowMilliseconds, report) { return explained }
            return headerBlock(input, config: config, path: path, now: nowMilliseconds, report)
        }
        // A query capture: a request target cannot hold a raw line break (RFC 9112 §3), so the one line ending a
        // text file has after its last line is not part of it and is dropped. Nothing else is.
        var bytes = input[...]
        if bytes.last == 0x0A { bytes = bytes.dropLast() }
        if bytes.last == 0x0D { bytes = bytes.dropLast() }
        if let offset = bytes.firstIndex(where: { $0 <= 0x20 || $0 == 0x7F }) {
            report.add("input: query string")
            report.add("FAILED: byte \(offset) is whitespace or a control character, which no request target holds (serve never receives this)")
            return report
        }
        var target = String(decoding: bytes, as: UTF8.self)
        if let scheme = target.range(of: "://") {
            target = String(target[scheme.upperBound...].drop { $0 != "/" })
        }
        let (queryPath, query) = target.hasPrefix("/") ? split(target) : (nil, target.hasPrefix("?") ? String(target.dropFirst()) : target)
        // An Alipay or Jeepay form body, or an XxPay query: ProviderExplainer.swift.
        if let explained = providerText(query ?? "", path: path ?? queryPath, config: config, now: nowMilliseconds, report) { return explained }
        report.add("input: query string")
        return unified(query ?? "", path: path ?? queryPath, config: config, now: nowMilliseconds, report)
    }

    /// `explain` of a file whose name says it is a conflict copy of the event `copyID` (`<id>.<tag>.json`, as
    /// the spool names the files in conflicts/ and `payhook queue show` the database's copies): payhook answered
    /// such a callback success but never queued it, since the event stored under that id holds other content, so
    /// "stores it once" would be wrong. The verdict says what the copy is instead; the checks are the same.
    public static func explain(
        _ input: [UInt8], config: Config, path: String? = nil, conflictCopyOf copyID: String,
        nowMilliseconds: Int64 = WallClock.milliseconds()
    ) -> Report {
        var report = explain(input, config: config, path: path, nowMilliseconds: nowMilliseconds)
        guard let event = try? EventFile.parse(input) else { return report }
        guard SpoolBytes.same(event.id, copyID) else {
            report.add("note: the file's name says it is a conflict copy of event \(LogText.printable(copyID, limit: 64)), but it holds event \(LogText.printable(event.id, limit: 64))")
            return report
        }
        if report.verified, let last = report.lines.indices.last, report.lines[last].hasPrefix("verdict: VERIFIED") {
            report.lines[last] = "verdict: VERIFIED, but this is a conflict copy of event \(event.id): a correctly signed "
                + "callback whose id payhook had already stored with other content; payhook answered success and kept "
                + "this copy for audit (conflicts/), never queued it. The stored event is the one `payhook queue show "
                + "\(event.id)` prints; compare the two."
        }
        return report
    }

    static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
    }

    static func split(_ target: String) -> (String, String?) {
        guard let mark = target.firstIndex(of: "?") else { return (target, nil) }
        return (String(target[..<mark]), String(target[target.index(after: mark)...]))
    }

    // MARK: - Unified

    static func unified(_ query: String, path: String?, config: Config, now: Int64, _ report: Report) -> Report {
        var report = report
        report.add("source: unified pay platform (GET query)")
        let parameters: [FormParameter]
        do {
            parameters = try FormQuery.decode(query)
        } catch {
            report.add("FAILED: malformed query: \(error)")
            return report
        }
        let values = Dictionary(parameters.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        guard let domainCode = values["domainCode"], !domainCode.isEmpty else {
            report.add("FAILED: domainCode is missing, so no tenant can be chosen")
            return report
        }
        let candidates = config.unified.filter { $0.domainCode == domainCode && (path == nil || $0.path == path) }
        guard let tenant = candidates.first else {
            report.add("FAILED: no [[unified]] table with domain_code '\(LogText.printable(domainCode))'\(path.map { " on \($0)" } ?? "")")
            return report
        }
        report.add("tenant: domain_code \(tenant.domainCode), path \(tenant.path) (\(config.file):\(tenant.line))")
        report.add("scheme: \(tenant.signScheme.rawValue)")
        report.add("string to sign: \(masked(parameters, scheme: tenant.signScheme, tenant: tenant))")
        report.add("sign: \(values["sign"].map { LogText.printable($0) } ?? "(missing)")")
        if case .success(let match) = UnifiedSource.verify(parameters, sign: values["sign"], tenant: tenant) {
            report.add("signature: OK, secret #\(match.secretPosition) of \(tenant.secrets.count)")
        } else if let sign = values["sign"], let presented = Hex.decode(sign) {
            report.add("signature: does NOT match with any of the tenant's \(tenant.secrets.count) secret(s)")
            for hint in unifiedHints(parameters, presented: presented, tenant: tenant) { report.add("hint: \(hint)") }
        }
        let source = UnifiedSource(path: tenant.path, tenants: [tenant], maxCallbackAgeMilliseconds: config.maxCallbackAgeMilliseconds)
        let request = CallbackRequest(
            method: "GET", target: tenant.path + "?" + query, query: query, body: [], remoteAddress: "-", receivedAtMilliseconds: now)
        return verdict(source.process(request, nowMilliseconds: now).outcome, report)
    }

    /// The string to sign with the secret shown as `***`. Nothing in it depends on the secret: under
    /// `values-sha1` the secret is sorted in among the values, and showing where would tell, run after run,
    /// whether the secret sorts before or after each value; so the values are shown sorted without it, and the
    /// sentence says where it goes.
    static func masked(_ parameters: [FormParameter], scheme: UnifiedSignScheme, tenant: UnifiedTenant) -> String {
        switch scheme {
        case .saltedSHA1:
            let text = String(decoding: UnifiedSigning.saltedMessage(parameters, secret: "\u{0}"), as: UTF8.self)
            return text.replacing("\u{0}", with: "***")
        case .valuesSHA1:
            let values = parameters.filter { $0.name != UnifiedSigning.signParameter && !$0.value.isEmpty }.map(\.value)
                .sorted { UnifiedSigning.utf16Precedes($0, $1) }
            return "these values and the secret *** sorted together by UTF-16 code units, then concatenated "
                + "(where *** falls is not shown): " + values.joined(separator: " | ")
        }
    }

    static func unifiedHints(_ parameters: [FormParameter], presented: [UInt8], tenant: UnifiedTenant) -> [String] {
        var hints: [String] = []
        func matches(_ message: (String) -> [UInt8]) -> Bool {
            tenant.secrets.contains { Digest.constantTimeEquals(Digest.sha1(message($0.value)), presented) }
        }
        let other: UnifiedSignScheme = tenant.signScheme == .valuesSHA1 ? .saltedSHA1 : .valuesSHA1
        if matches({ UnifiedSigning.message(other, parameters, secret: $0) }) {
            hints.append("it matches \(other.rawValue), but the tenant's sign_scheme is \(tenant.signScheme.rawValue)")
        }
        let encoded = parameters.map { FormParameter(name: $0.name, value: UnifiedSigner.encode($0.value)) }
        if matches({ UnifiedSigning.message(tenant.signScheme, encoded, secret: $0) }) {
            hints.append("it matches when the values are signed URL-encoded; the platform signs the decoded values")
        }
        if tenant.signScheme == .saltedSHA1 {
            let withEmpty = parameters.filter { $0.name != UnifiedSigning.signParameter }
                .sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }.map { "\($0.name)=\($0.value)" }.joined(separator: "&")
            if matches({ Array(($0 + withEmpty + $0).utf8) }) {
                hints.append("it matches when empty values are signed; they must be left out")
            }
        }
        if hints.isEmpty {
            hints.append("no common variant matches either: check that the secret in the config is the one the sender uses")
        }
        return hints
    }

    // MARK: - WeChat

    static func wechat(_ body: [UInt8], path: String?, config: Config, now: Int64, _ report: Report) -> Report {
        var report = report
        report.add("source: WeChat Pay v2 (POST XML)")
        let elements: [FlatXMLElement]
        do {
            elements = try FlatXML.parse(body, root: "xml")
        } catch {
            report.add("FAILED: not a flat <xml> notification: \(error)")
            return report
        }
        let values = Dictionary(elements.map { ($0.name, $0.text) }, uniquingKeysWith: { a, _ in a })
        guard let mchID = values["mch_id"], let tenant = config.wechat.first(where: { $0.mchID == mchID && (path == nil || $0.path == path) }) else {
            if values["return_code"] == "FAIL" {
                report.add("return_code FAIL: payhook acknowledges it and queues nothing")
                report.verified = true
                return report
            }
            report.add("FAILED: no [[wechat]] table with mch_id '\(LogText.printable(values["mch_id"] ?? ""))'\(path.map { " on \($0)" } ?? "")")
            return report
        }
        report.add("tenant: mch_id \(tenant.mchID), path \(tenant.path) (\(config.file):\(tenant.line))")
        if let reqInfo = values["req_info"] {
            report.add("kind: refund result; req_info is AES-256-ECB under the MD5 hex of the APIv2 key, PKCS#7")
            if case .failure = WeChatSource.decryptRefund(reqInfo, tenant: tenant), let ciphertext = Base64.decode(reqInfo) {
                let direct = tenant.keys.contains { key in
                    Array(key.value.utf8).count == 32 && Cipher.aes256ECBDecrypt(key: Array(key.value.utf8), ciphertext: ciphertext).flatMap { try? FlatXML.parse($0, root: "root") } != nil
                }
                if direct { report.add("hint: it decrypts with the API key itself as the AES key; the AES key is the MD5 hex of the API key") }
            }
        } else if let sign = values["sign"], !sign.isEmpty {
            report.add("kind: payment result")
            let claimed = WeChatSigning.claimedType(signType: values["sign_type"], sign: sign)
            if case .success(let type) = claimed {
                let why = values["sign_type"].map { $0.isEmpty ? "" : "sign_type \($0)" } ?? ""
                report.add("algorithm: \(type.rawValue) (\(why.isEmpty ? "no sign_type, so from the sign's length \(sign.utf8.count)" : "from \(why)")); accepted: \(tenant.signTypes.map(\.rawValue).sorted().joined(separator: ", "))")
                if !tenant.signTypes.contains(type) && why.isEmpty {
                    report.add("hint: notifications for HMAC-SHA256 orders often carry no sign_type; add \"\(type.rawValue)\" to sign_types if you signed the order that way")
                }
            }
            report.add("string to sign: \(WeChatSigning.stringToSign(elements, key: "***"))")
            report.add("sign: \(LogText.printable(sign, limit: 80))")
            switch WeChatSource.verifyPayment(elements, tenant: tenant) {
            case .success(let match):
                report.add("signature: OK, key #\(match.keyPosition) of \(tenant.keys.count)")
            case .failure(let refusal):
                report.add("signature: \(refusal.reason)")
                if case .success(let type) = claimed, let presented = Hex.decode(sign) {
                    for hint in wechatHints(elements, type: type, presented: presented, tenant: tenant) { report.add("hint: \(hint)") }
                }
            }
        }
        let source = WeChatSource(path: tenant.path, tenants: [tenant], maxCallbackAgeMilliseconds: config.maxCallbackAgeMilliseconds)
        let request = CallbackRequest(method: "POST", target: tenant.path, query: nil, body: body, remoteAddress: "-", receivedAtMilliseconds: now)
        return verdict(source.process(request, nowMilliseconds: now).outcome, report)
    }

    static func wechatHints(_ elements: [FlatXMLElement], type: WeChatSignType, presented: [UInt8], tenant: WeChatTenant) -> [String] {
        var hints: [String] = []
        func matches(_ string: (String) -> String) -> Bool {
            tenant.keys.contains { key in
                let message = Array(string(key.value).utf8)
                let digest = type == .md5 ? Digest.md5(message) : Digest.hmacSHA256(key: Array(key.value.utf8), message: message)
                return Digest.constantTimeEquals(digest, presented)
            }
        }
        func join(_ list: [FlatXMLElement], _ key: String) -> String {
            list.sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }.map { "\($0.name)=\($0.text)" }.joined(separator: "&") + "&key=" + key
        }
        let unsigned = elements.filter { $0.name != WeChatSigning.signElement }
        if matches({ join(unsigned, $0) }) {
            hints.append("it matches when empty values are signed; WeChat leaves empty values out of the string")
        }
        let encoded = unsigned.filter { !$0.text.isEmpty }.map { FlatXMLElement(name: $0.name, text: UnifiedSigner.encode($0.text)) }
        if matches({ join(encoded, $0) }) {
            hints.append("it matches when values are URL-encoded; WeChat signs the raw values")
        }
        let withoutType = unsigned.filter { !$0.text.isEmpty && $0.name != WeChatSigning.signTypeElement }
        if elements.contains(where: { $0.name == WeChatSigning.signTypeElement }) && matches({ join(withoutType, $0) }) {
            hints.append("it matches when sign_type is left out of the string; sign_type is signed like every other field")
        }
        if hints.isEmpty {
            hints.append("no common variant matches either: check that api_key is this merchant's APIv2 key (the APIv3 key is also 32 characters, and signs nothing in v2)")
        }
        return hints
    }

    static func verdict(_ verdict: Verdict.Outcome, _ report: Report) -> Report {
        var report = report
        switch verdict {
        case .accepted(let event):
            report.add("checks: OK")
            report.add("dedupe key: \(event.dedupeKey.text)")
            report.add("event id: \(event.id)")
            report.add("verdict: VERIFIED (payhook answers success and stores it once)")
            report.verified = true
        case .acknowledged(let reason):
            report.add("verdict: acknowledged, not queued (\(reason))")
            report.verified = true
        case .refused(let refusal):
            report.add("verdict: REFUSED with \(refusal.status) (\(refusal.outcome)): \(refusal.reason)")
        }
        return report
    }
}
