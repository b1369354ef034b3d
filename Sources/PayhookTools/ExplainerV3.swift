import Foundation
import PayhookConfig
import PayhookCore
import PayhookCrypto
import PayhookWeChat

/// `payhook verify` for WeChat Pay API v3 notifications, and for captures that come with their headers.
///
/// A v3 notification is signed in its headers, so a capture of one is a header block: `Name: value` lines
/// (names in any case), optionally after a request line `POST /path HTTP/1.1`, then an empty line and the
/// body; or a stored event, whose `raw.headers` keeps the signed ones. The explanation walks the server's
/// checks in the server's order (docs/protocols.md §8.2), and the verdict at the end is
/// ``WeChatV3Source/process(_:nowMilliseconds:)``'s own.
extension Explainer {
    /// One captured request.
    struct Capture {
        /// Whether the capture named its method and target (a request line, or an event's `raw`).
        var requestLine: Bool
        var method: String
        var target: String?
        var headers: [(name: String, value: String)]
        var body: [UInt8]
        /// When one final line break was taken off the body (see ``parseHeaderBlock(_:)``): the body with it,
        /// to say so if only that body verifies.
        var keptFinalLineBreak: [UInt8]?
        /// How the body's end was found, for the input line.
        var bodyNote = ""
    }

    // MARK: - Reading a header block

    /// Why a header block cannot be read: one sentence.
    struct CaptureProblem: Error {
        let reason: String
    }

    /// Whether `input` starts like a header block: its first line is a request line, or a header whose name is
    /// followed by `:` and not by `//` (which would make it a URL, a query capture), and a line follows it.
    static func isHeaderBlock(_ input: [UInt8]) -> Bool {
        guard let end = input.firstIndex(of: 0x0A) else { return false }
        var line = input[..<end]
        if line.last == 0x0D { line = line.dropLast() }
        if requestLine(line) != nil { return true }
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex,
            line[..<colon].allSatisfy(isTokenByte)
        else { return false }
        return !line[(colon + 1)...].starts(with: Array("//".utf8))
    }

    /// `METHOD SP target SP HTTP/x` (RFC 9112 §3), as method and target.
    static func requestLine(_ line: ArraySlice<UInt8>) -> (method: String, target: String)? {
        let parts = line.split(separator: 0x20, omittingEmptySubsequences: false)
        guard parts.count == 3, (1...16).contains(parts[0].count), parts[0].allSatisfy({ $0 >= 0x41 && $0 <= 0x5A }),
            !parts[1].isEmpty, parts[2].starts(with: Array("HTTP/".utf8))
        else { return nil }
        return (String(decoding: parts[0], as: UTF8.self), String(decoding: parts[1], as: UTF8.self))
    }

    /// A header name's characters (RFC 9110 §5.6.2 tchar).
    static func isTokenByte(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
            || Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
    }

    /// Reads a header block. Lines end in LF or CRLF; the header block ends at the first empty line, and the body
    /// is everything after it, but for its end:
    ///
    /// - with a `Content-Length` header, the body is exactly that many bytes, as a server reads it;
    /// - without one, exactly one final line break (LF) is taken off when there is one. A text file ends in
    ///   one, and `payhook sign` prints one after the body it signed; a v3 body is compact JSON and never ends
    ///   in a line break of its own. Should a sender have signed one, the explanation says that only the body
    ///   with it verifies.
    static func parseHeaderBlock(_ input: [UInt8]) -> Result<Capture, CaptureProblem> {
        var capture = Capture(requestLine: false, method: "POST", target: nil, headers: [], body: [])
        var index = input.startIndex
        var number = 0
        while true {
            guard let end = input[index...].firstIndex(of: 0x0A) else {
                return .failure(CaptureProblem(reason: "no empty line ends the header block, so the capture has no body"))
            }
            number += 1
            var line = input[index..<end]
            if line.last == 0x0D { line = line.dropLast() }
            index = end + 1
            if line.isEmpty { break }
            if number == 1, let (method, target) = requestLine(line) {
                capture.requestLine = true
                capture.method = method
                capture.target = target
                continue
            }
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex, line[..<colon].allSatisfy(isTokenByte) else {
                return .failure(CaptureProblem(reason: "line \(number) of the header block is not a 'Name: value' header"))
            }
            let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 }
            let value = line[(colon + 1)...].drop(while: isSpace).reversed().drop(while: isSpace).reversed()
            capture.headers.append((String(decoding: line[..<colon], as: UTF8.self), String(decoding: value, as: UTF8.self)))
        }
        let rest = Array(input[index...])
        let lengths = capture.headers.filter { $0.name.lowercased() == "content-length" }.map(\.value)
        if lengths.count > 1 { return .failure(CaptureProblem(reason: "Content-Length is repeated")) }
        if let text = lengths.first {
            guard let length = Int(text), length >= 0, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
                return .failure(CaptureProblem(reason: "Content-Length '\(LogText.printable(text))' is not a number of bytes"))
            }
            guard rest.count >= length else {
                return .failure(CaptureProblem(reason: "the body has \(rest.count) bytes, fewer than its Content-Length \(length)"))
            }
            capture.body = Array(rest.prefix(length))
            capture.bodyNote = rest.count == length
                ? "its end from Content-Length"
                : "its end from Content-Length; the \(rest.count - length) byte(s) after it are not part of it"
        } else if rest.last == 0x0A {
            capture.body = Array(rest.dropLast())
            capture.keptFinalLineBreak = rest
            capture.bodyNote = "the file's final line break is not part of it"
        } else {
            capture.body = rest
            capture.bodyNote = "no final line break"
        }
        return .success(capture)
    }

    /// A header block: a v3 notification unless it is plainly another kind (no `Wechatpay-*` header, and a GET
    /// or an XML body), which the other explanations then check with the body and target found here.
    static func headerBlock(_ input: [UInt8], config: Config, path: String?, now: Int64, _ report: Report) -> Report {
        var report = report
        let capture: Capture
        switch parseHeaderBlock(input) {
        case .failure(let problem):
            report.add("input: header block")
            report.add("FAILED: \(problem.reason)")
            return report
        case .success(let parsed): capture = parsed
        }
        report.add(
            "input: header block\(capture.requestLine ? " after a request line" : "") (\(capture.headers.count) header(s); "
                + "body \(capture.body.count) bytes, \(capture.bodyNote))")
        var targetPath: String?
        var query: String?
        if var target = capture.target {
            if let scheme = target.range(of: "://") { target = String(target[scheme.upperBound...].drop { $0 != "/" }) }
            (targetPath, query) = split(target)
        }
        let signed = capture.headers.contains { $0.name.lowercased().hasPrefix("wechatpay-") }
        if !signed && capture.method == "GET" {
            return unified(query ?? "", path: path ?? targetPath, config: config, now: now, report)
        }
        if !signed && capture.body.first(where: { !isWhitespace($0) }) == UInt8(ascii: "<") {
            return wechat(capture.body, path: path ?? targetPath, config: config, now: now, report)
        }
        let origin = path != nil ? "--path" : (targetPath != nil ? "the request line" : nil)
        return wechatV3(
            capture, path: path ?? targetPath, pathOrigin: origin, config: config, now: now,
            clock: "the wall clock: a capture older than the window fails here though it may have passed when it arrived", report)
    }

    // MARK: - The v3 explanation

    static func wechatV3(
        _ capture: Capture, path: String?, pathOrigin: String?, config: Config, now: Int64, clock: String, _ report: Report
    ) -> Report {
        var report = report
        report.add("source: WeChat Pay v3 (POST JSON, signed in its Wechatpay-* headers)")
        let v3Paths = config.wechatV3.reduce(into: [String]()) { paths, tenant in
            if !paths.contains(tenant.path) { paths.append(tenant.path) }
        }
        guard !v3Paths.isEmpty else {
            report.add("FAILED: the config has no [[wechat_v3]] table")
            return report
        }
        let serialHeader = CallbackRequest(
            method: capture.method, target: "", query: nil, headers: capture.headers, body: [], remoteAddress: "-", receivedAtMilliseconds: now
        ).headerValues(WeChatV3Source.Header.serial).first

        // The path: the server asks only the tenants on the path the request came to.
        let chosen: String
        if let path {
            guard v3Paths.contains(path) else {
                report.add("FAILED: no [[wechat_v3]] tenant is on \(LogText.printable(path)) (from \(pathOrigin ?? "--path")); the config's v3 paths: \(v3Paths.joined(separator: ", "))")
                return report
            }
            chosen = path
            report.add("path: \(path) (from \(pathOrigin ?? "--path"))")
        } else if v3Paths.count == 1 {
            chosen = v3Paths[0]
            report.add("path: \(chosen) (the config's only [[wechat_v3]] path; give --path to choose another)")
        } else {
            let knowing = v3Paths.first { path in
                serialHeader.map { serial in config.wechatV3.contains { $0.path == path && $0.key(forSerial: serial) != nil } } ?? false
            }
            chosen = knowing ?? v3Paths[0]
            report.add("path: \(chosen) (not in the capture: the first [[wechat_v3]] path \(knowing != nil ? "whose tenants know the serial" : "of the config"); give --path to choose)")
        }
        let source = WeChatV3Source(path: chosen, tenants: config.wechatV3, maxCallbackAgeMilliseconds: config.maxCallbackAgeMilliseconds)
        // A capture without a request line was sent to the path chosen, as far as the event's raw.target goes.
        let request = CallbackRequest(
            method: capture.method, target: capture.target ?? chosen, query: nil, headers: capture.headers, body: capture.body,
            remoteAddress: "-", receivedAtMilliseconds: now)
        func finish(_ report: Report) -> Report {
            verdict(source.process(request, nowMilliseconds: now).outcome, report)
        }
        guard capture.method == "POST" else {
            report.add("FAILED: the method is \(LogText.printable(capture.method)); serve answers 405 to anything but POST on a [[wechat_v3]] path")
            return report
        }

        // 1. The signed headers.
        let found = WeChatV3Source.Header.all.compactMap { name in
            capture.headers.first { $0.name.lowercased() == name.lowercased() }?.name
        }
        report.add("headers: \(found.isEmpty ? "no Wechatpay-* header" : found.joined(separator: ", ")) found")
        let headers: WeChatV3Source.SignedHeaders
        switch WeChatV3Source.signedHeaders(request) {
        case .failure(let refusal):
            report.add("FAILED: \(refusal.reason)")
            return finish(report)
        case .success(let h): headers = h
        }

        // 2. The signature type.
        if let type = headers.signatureType {
            guard type == WeChatV3Source.signatureType else {
                report.add("FAILED: signature type '\(LogText.printable(type))' is not \(WeChatV3Source.signatureType), the only one payhook verifies")
                return finish(report)
            }
            report.add("signature type: \(type)")
        } else {
            report.add("signature type: not sent, which means \(WeChatV3Source.signatureType)")
        }

        // 3. The serial, the tenants that configured the key it names, and that key.
        let candidates = source.candidates(serial: headers.serial)
        let shownSerial = LogText.printable(headers.serial, limit: 80)
        for candidate in candidates {
            report.add("serial: \(shownSerial) names \(describe(candidate.key, now: now)) of mch_id \(candidate.tenant.mchID)\(place(candidate.tenant, config))")
        }
        if headers.signature.hasPrefix(WeChatV3Source.signTestPrefix) {
            report.add("signature: a \(WeChatV3Source.signTestPrefix) probe, not a signature: WeChat Pay sends these on purpose to see whether a receiver checks signatures, and refusing it is the right answer")
            return finish(report)
        }
        guard !candidates.isEmpty else {
            let known = config.wechatV3.filter { $0.path == chosen }.flatMap(\.keyIDs)
            report.add("FAILED: serial \(shownSerial) names no key of the [[wechat_v3]] tenants on \(chosen); their keys: \(known.isEmpty ? "none" : known.joined(separator: ", "))")
            return finish(report)
        }

        // 4. The timestamp against now and each tenant's window.
        guard let timestamp = WeChatV3Source.timestampSeconds(headers.timestamp) else {
            report.add("FAILED: Wechatpay-Timestamp '\(LogText.printable(headers.timestamp))' is not Unix seconds")
            return finish(report)
        }
        let skew = timestamp - now / 1000
        let windows = Set(candidates.map(\.tenant.maxClockSkewSeconds)).sorted()
        let inside = candidates.contains { abs(skew) <= $0.tenant.maxClockSkewSeconds }
        report.add(
            "timestamp: \(timestamp) (\(Timestamp.rfc3339(milliseconds: timestamp * 1000))); now \(now / 1000), from \(clock); "
                + "skew \(skew) s; window ±\(windows.map(String.init).joined(separator: " / ±")) s (max_clock_skew_s): "
                + (inside ? "inside" : "OUTSIDE, so payhook refuses it whatever the signature"))

        // 5. The exact string signed.
        let message = headers.message(body: capture.body)
        report.add(
            "string signed: \"\(shown(Array(headers.timestamp.utf8)))\\n\(shown(Array(headers.nonce.utf8)))\\n\(shownShortened(capture.body))\\n\" "
                + "(\(message.count) bytes, SHA-256 \(Hex.encode(Digest.sha256(message))))")

        // 6. RSA with each key the serial names.
        guard let signature = Base64.decode(headers.signature), !signature.isEmpty else {
            report.add("FAILED: Wechatpay-Signature is not base64")
            return finish(report)
        }
        report.add("signature: \(headers.signature.utf8.count) base64 characters, \(signature.count) bytes (an RSA-2048 signature has 256)")
        var verified: [WeChatV3Source.Candidate] = []
        for candidate in candidates {
            let good = Signature.verifyRSASHA256(key: candidate.key.key, message: message, signature: signature)
            var notes: [String] = []
            if abs(skew) > candidate.tenant.maxClockSkewSeconds { notes.append("not used: the timestamp is outside this tenant's window") }
            if let certificate = candidate.key.certificate, !certificate.isValid(at: now / 1000) {
                notes.append("not used: the certificate is outside its validity period")
            }
            report.add("RSA: \(good ? "verifies" : "does NOT verify") with \(candidate.key.keyID) of mch_id \(candidate.tenant.mchID)\(notes.isEmpty ? "" : " (\(notes.joined(separator: "; ")))")")
            if good && notes.isEmpty { verified.append(candidate) }
        }
        guard !verified.isEmpty else {
            let anyGood = candidates.contains { Signature.verifyRSASHA256(key: $0.key.key, message: message, signature: signature) }
            if !anyGood {
                let withLineBreak = capture.keptFinalLineBreak.map { headers.message(body: $0) }
                if let withLineBreak, candidates.contains(where: { Signature.verifyRSASHA256(key: $0.key.key, message: withLineBreak, signature: signature) }) {
                    report.add("hint: it verifies when the capture's final line break is part of the body: the sender signed a body ending in a line break, or the capture needs a Content-Length header")
                } else {
                    report.add("hint: the body, Wechatpay-Timestamp or Wechatpay-Nonce changed after signing (the body must be the bytes exactly as sent), or another key signed it than the one the serial names")
                }
            }
            return finish(report)
        }

        // 7. The envelope, read only now that WeChat Pay signed it.
        let envelope: WeChatV3Envelope
        switch WeChatV3Envelope.parse(capture.body) {
        case .failure(let refusal):
            report.add("FAILED: envelope: \(refusal.reason)")
            return finish(report)
        case .success(let e): envelope = e
        }
        let fields = Dictionary(envelope.fields.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        report.add(
            "envelope: id \(LogText.printable(envelope.id)), event_type \(envelope.eventType), resource_type \(WeChatV3Source.resourceType), "
                + "\(WeChatV3Source.algorithm), associated_data '\(LogText.printable(fields["associated_data"] ?? ""))', "
                + "nonce \(envelope.nonce.count) bytes, ciphertext \(envelope.ciphertext.count) bytes with its 16-byte tag")

        // 8. Which APIv3 key opens the resource; the keys themselves are never shown.
        var opened: (tenant: WeChatV3Tenant, resource: JSONValue)?
        var decryptedAny = false
        search: for candidate in verified {
            let tenant = candidate.tenant
            let masks = Array(repeating: "***", count: tenant.apiV3Keys.count).joined(separator: ", ")
            for (index, key) in tenant.apiV3Keys.enumerated() {
                guard let plain = WeChatV3Source.aes256GCM(Array(key.value.utf8), envelope.nonce, envelope.associatedData, envelope.ciphertext) else { continue }
                decryptedAny = true
                report.add("resource: decrypts with APIv3 key #\(index + 1) of \(tenant.apiV3Keys.count) (\(masks)) of mch_id \(tenant.mchID)")
                guard let resource = JSONReader.parse(plain), case .object = resource else {
                    report.add("FAILED: the decrypted resource is not a JSON object")
                    continue search
                }
                let merchant = WeChatV3Resource.merchant(of: resource)
                report.add("merchant: the resource names \(merchant.map { LogText.printable($0) } ?? "no merchant"); the tenant is mch_id \(tenant.mchID): \(merchant == tenant.mchID ? "the same" : "NOT the same")")
                if merchant == tenant.mchID || (merchant == nil && WeChatV3Resource.eventSource(of: envelope.eventType) == WeChatV3Source.eventSource) {
                    opened = (tenant, resource)
                    break search
                }
                continue search
            }
            report.add("resource: does not decrypt with any of mch_id \(tenant.mchID)'s \(tenant.apiV3Keys.count) APIv3 key(s) (\(masks))")
        }
        if !decryptedAny {
            report.add("hint: check that the tenant's APIv3 key is the one set in the merchant platform (32 characters; the APIv2 key opens nothing in v3), and that the resource was not changed")
        }

        // 9. What the resource says, by the source's own rules.
        if let (tenant, resource) = opened {
            switch WeChatV3Resource.map(envelope: envelope, resource: resource, tenant: tenant) {
            case .failure(let refusal):
                report.add("FAILED: resource: \(refusal.reason)")
            case .success(let mapped):
                report.add("resource checks: OK: \(mapped.source), order \(LogText.printable(mapped.orderRef)), status \(mapped.status), \(mapped.amount) \(mapped.currency)")
                if let time = mapped.businessTime {
                    let age = (now - time) / 86_400_000
                    let window = config.maxCallbackAgeMilliseconds / 86_400_000
                    report.add("success_time: \(Timestamp.rfc3339(milliseconds: time)), \(age) day(s) before now; the replay window is \(window) day(s)\(time < now - config.maxCallbackAgeMilliseconds ? ": OUTSIDE" : "")")
                }
            }
        }
        return finish(report)
    }

    /// The key a serial named, for people: the public key by id, or the certificate with its validity at `now`.
    static func describe(_ key: WeChatV3Tenant.SignatureKey, now: Int64) -> String {
        guard let certificate = key.certificate else { return "the WeChat Pay public key \(key.keyID)" }
        let valid = certificate.isValid(at: now / 1000)
        return "the platform certificate \(certificate.serialHex), valid \(Timestamp.rfc3339(milliseconds: certificate.notBefore * 1000)) "
            + "to \(Timestamp.rfc3339(milliseconds: certificate.notAfter * 1000)) (\(valid ? "valid" : "NOT valid") now)"
    }

    static func place(_ tenant: WeChatV3Tenant, _ config: Config) -> String {
        tenant.line > 0 ? " (\(config.file):\(tenant.line))" : ""
    }

    // MARK: - Showing bytes

    /// Bytes as the inside of a quoted string: UTF-8 text as is, `"` and `\` escaped, line breaks and other
    /// control characters as escapes (`\n`, `\u{1B}`), and bytes that are not UTF-8 as `\xFF`. What was signed
    /// is shown exactly, so a stray CR or a BOM is seen.
    static func shown(_ bytes: [UInt8]) -> String {
        guard let text = String(validating: bytes, as: UTF8.self) else {
            return bytes.map { byte in
                byte < 0x80 ? shown([byte]) : "\\x" + Hex.encode([byte]).uppercased()
            }.joined()
        }
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.value == 0x2028 || scalar.value == 0x2029 || scalar.value == 0xFEFF:
                out += "\\u{\(String(scalar.value, radix: 16, uppercase: true))}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// ``shown(_:)``, with the middle of a long body left out (cut at UTF-8 character boundaries) and how many
    /// bytes that was.
    static func shownShortened(_ bytes: [UInt8], head: Int = 160, tail: Int = 48) -> String {
        guard bytes.count > head + tail + 32 else { return shown(bytes) }
        var start = head
        while start > 0, bytes[start] & 0xC0 == 0x80 { start -= 1 }
        var end = bytes.count - tail
        while end < bytes.count, bytes[end] & 0xC0 == 0x80 { end += 1 }
        return shown(Array(bytes[..<start])) + "[… \(end - start) bytes not shown …]" + shown(Array(bytes[end...]))
    }
}
