public import ArgumentParser
import Dispatch
import Foundation
import PayhookConfig
import PayhookCore
import PayhookTools
import PayhookWeChat
import Synchronization

extension CallbackBuilder.Kind: ExpressibleByArgument {}
extension CallbackBuilder.Breakage: ExpressibleByArgument {}

/// `--sign-type`: WeChat v2's algorithms for wechat-pay, Alipay's `sign_type` for alipay; which fits which kind
/// is ``CallbackBuilder/signTypeProblem(_:for:)``'s to say.
enum SignTypeOption: String, CaseIterable, ExpressibleByArgument {
    case md5 = "MD5"
    case hmacSHA256 = "HMAC-SHA256"
    case rsa2 = "RSA2"
    case rsa = "RSA"
}

/// What to build: shared by `sign` and `simulate`.
struct CallbackOptions: ParsableArguments {
    @Argument(help: "unified, wechat-pay, wechat-refund, wechat-v3-pay, wechat-v3-refund, alipay, xxpay or jeepay.")
    var kind: CallbackBuilder.Kind

    @Option(name: .long, help: "The TOML config file holding the tenant and its secret.")
    var config: String

    @Option(name: .long, help: "domain_code, mch_id (wechat, xxpay) or app_id (alipay, jeepay); needed when the config has several tenants of this kind.")
    var tenant: String?

    @Option(name: .long, help: "Amount in fen (alipay writes it as yuan with two decimals: 100 is total_amount=1.00).")
    var amount: Int64 = 100

    @Option(name: .customLong("order-ref"), help: "requestKey, out_trade_no or (xxpay, jeepay) mchOrderNo (default: a fresh unique one).")
    var orderRef: String?

    @Option(name: .customLong("refund-ref"), help: "out_refund_no of a wechat-refund or wechat-v3-refund (default: a fresh unique one); for alipay, makes a refund notification: out_biz_no is this, refund_fee (all refunded so far) is --amount as yuan, total_amount is --amount too unless --field total_amount=... gives the trade's larger total, and trade_status stays TRADE_SUCCESS as for a partial refund (--status TRADE_CLOSED for a full one).")
    var refundRef: String?

    @Option(name: .long, help: "payStatus, result_code, refund_status or (v3) trade_state / refund_status, which a v3 refund's event_type follows; alipay trade_status, xxpay status, jeepay state (default: the success value: TRADE_SUCCESS, 2, 2).")
    var status: String?

    @Option(name: .customLong("field"), help: "NAME=VALUE: add or replace a field (repeatable; for wechat-refund, a field of the encrypted document; for the v3 kinds, a top-level member of the decrypted resource, NAME:=JSON for a non-string value).")
    var fields: [String] = []

    @Option(name: .customLong("key-index"), help: "Which of the tenant's secrets signs (v3: which APIv3 key encrypts; xxpay: which resKey; jeepay: which app secret), 1-based in file order.")
    var keyIndex: Int = 1

    @Option(name: .customLong("sign-type"), help: "wechat-pay: MD5 or HMAC-SHA256 (default: the tenant's first accepted, MD5 first); alipay: RSA2 (SHA256withRSA, the default) or RSA (SHA1withRSA).")
    var signType: SignTypeOption?

    @Flag(name: .customLong("omit-sign-type"), help: "wechat-pay: leave sign_type out, as some HMAC notifications do.")
    var omitSignType = false

    @Option(name: .customLong("break"), help: "Break it on purpose: tamper, wrong-key or strip-sign; for the v3 kinds signtest, stale, wrong-key, wrong-serial or tampered.")
    var breakage: CallbackBuilder.Breakage?

    @Option(name: .customLong("private-key"), help: "v3 kinds and alipay (required): a PEM file with the RSA private key that signs in WeChat Pay's or Alipay's place, the pair of the tenant's public key. Never printed.")
    var privateKey: String?

    @Option(name: .long, help: "v3 kinds: the Wechatpay-Serial to send (default: the tenant's public key id, else its first platform certificate's serial).")
    var serial: String?

    func validate() throws {
        for field in fields where !field.contains("=") || field.hasPrefix("=") {
            throw ValidationError("--field \(field): expected NAME=VALUE")
        }
        if amount < 0 { throw ValidationError("--amount must not be negative") }
        if let breakage, let problem = breakage.problem(for: kind) { throw ValidationError(problem) }
        if kind.isWeChatV3 {
            if privateKey == nil { throw ValidationError("\(kind.rawValue) needs --private-key FILE: the RSA private key that signs in WeChat Pay's place") }
            if signType != nil || omitSignType { throw ValidationError("--sign-type and --omit-sign-type are for wechat-pay; \(kind.rawValue) is always signed with RSA") }
        } else if kind == .alipay {
            if privateKey == nil { throw ValidationError("alipay needs --private-key FILE: the RSA private key that signs in Alipay's place") }
            if serial != nil { throw ValidationError("--serial is for wechat-v3-pay and wechat-v3-refund, not alipay") }
        } else if privateKey != nil || serial != nil {
            throw ValidationError("--private-key and --serial are for wechat-v3-pay and wechat-v3-refund, not \(kind.rawValue) (alipay takes --private-key too)")
        }
        if let signType, let problem = CallbackBuilder.signTypeProblem(signType.rawValue, for: kind) { throw ValidationError(problem) }
        if omitSignType && [.alipay, .xxpay, .jeepay].contains(kind) {
            throw ValidationError("--omit-sign-type is for wechat-pay, not \(kind.rawValue)")
        }
        if refundRef != nil && (kind == .xxpay || kind == .jeepay) {
            throw ValidationError("--refund-ref is for wechat-refund, wechat-v3-refund and alipay; \(kind.rawValue) notifies payments only")
        }
    }

    func spec() -> CallbackBuilder.Spec {
        var spec = CallbackBuilder.Spec(kind: kind)
        spec.tenant = tenant
        spec.amount = amount
        spec.orderRef = orderRef
        spec.refundRef = refundRef
        spec.status = status
        spec.fields = fields.map { field in
            let parts = field.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return FormParameter(name: String(parts[0]), value: parts.count > 1 ? String(parts[1]) : "")
        }
        spec.keyPosition = keyIndex
        if let signType { spec.setSignType(named: signType.rawValue) }
        spec.omitSignType = omitSignType
        spec.breakage = breakage
        spec.serial = serial
        return spec
    }

    func build() throws -> CallbackBuilder.Built {
        let loaded = try ConfigFile.loadOrExit(config)
        var spec = spec()
        if let privateKey {
            // Read here and handed on as a Secret; no message below quotes the file's content.
            do {
                spec.privateKey = Secret(String(decoding: try ConfigFile.readFile(privateKey), as: UTF8.self))
            } catch {
                Output.err("payhook: cannot read --private-key \(privateKey): \(error)")
                throw ExitCode(1)
            }
        }
        let built: CallbackBuilder.Built
        do {
            built = try CallbackBuilder.build(spec, config: loaded.config)
        } catch {
            Output.err("payhook: \(error)")
            throw ExitCode(1)
        }
        for warning in built.warnings { Output.err("warning: \(warning)") }
        return built
    }
}

/// `payhook sign KIND`: prints a correctly signed callback (the query string, the XML body, or a v3 header block).
struct Sign: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a correctly signed callback: a unified query string, a WeChat XML body, a WeChat Pay v3 notification, or an Alipay, XxPay or Jeepay notification.",
        // The examples are short lines of their own so that the help's line wrapping never splits one: each can
        // be pasted into a shell as printed (CommandLineTests runs them all against a real server).
        discussion: """
            unified and xxpay print the query string (XxPay puts it on a POST with an empty body); wechat-pay and \
            wechat-refund print the XML body; alipay and jeepay print the form body they POST (alipay signs with \
            the RSA private key given, in Alipay's place, never printed).

            wechat-v3-pay and wechat-v3-refund print the signed headers, one "Name: value" line each \
            (Wechatpay-Timestamp, -Nonce, -Signature, -Serial, -Signature-Type), an empty line, then the JSON body \
            exactly as signed. The body has no line break of its own: the one final line break printed after it is \
            not part of it, and payhook verify, given this output, takes exactly that one line break off. \
            payhook simulate sends such a notification straight to a URL. payhook verify --config C FILE checks \
            any of them.

            Examples, from the repository's root while make run serves the demo config on 127.0.0.1:8080; each \
            line pastes into a shell as it is:
              q=$(payhook sign unified --config Fixtures/demo.toml --tenant demo)
              curl "http://127.0.0.1:8080/notify/unified?$q"
              payhook sign wechat-pay --config Fixtures/demo.toml > pay.xml
              curl --data-binary @pay.xml http://127.0.0.1:8080/notify/wechat
              payhook sign alipay --config Fixtures/demo.toml --tenant 2021000000000001 \\
                --private-key Fixtures/alipay/test-only-alipay-private-key.pem > a.form
              curl --data @a.form http://127.0.0.1:8080/notify/alipay
              q=$(payhook sign xxpay --config Fixtures/demo.toml)
              curl -X POST "http://127.0.0.1:8080/notify/xxpay?$q"
              payhook sign jeepay --config Fixtures/demo.toml \\
                --tenant 65a0b1c2d3e4f5a6b7c8d9e0 > j.form
              curl --data @j.form http://127.0.0.1:8080/notify/jeepay
              payhook sign wechat-v3-pay --config Fixtures/demo.toml \\
                --private-key Fixtures/wechat-v3/wechat_pay_private_key.pem > n.txt
              payhook verify --config Fixtures/demo.toml n.txt
              payhook simulate wechat-v3-pay --config Fixtures/demo.toml \\
                --private-key Fixtures/wechat-v3/wechat_pay_private_key.pem \\
                --url http://127.0.0.1:8080/notify/wechatpay
            """
    )

    @OptionGroup var callback: CallbackOptions

    func run() throws {
        Output.out(try callback.build().printable)
    }
}

/// `payhook simulate KIND --url URL`: sends a signed callback and shows each answer.
struct Simulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send a correctly signed (or deliberately broken) callback to a URL and show the answers.",
        discussion: """
            Prints one line per request: its number, the HTTP status and the body. Exits 0 when every answer \
            is the sender's success answer (for the v3 kinds: status 204 or 200), 1 otherwise (as expected with \
            --break). With --count, every request is the same signed callback, so all but the first are duplicates.
            """
    )

    @OptionGroup var callback: CallbackOptions

    @Option(name: .long, help: "Where to send it, e.g. http://127.0.0.1:8080/notify/unified or https://pay.example.com/notify/unified (default path: the tenant's).")
    var url: String

    @Option(name: .long, help: ArgumentHelp("For an https:// URL: trust only the certificates in this PEM file (a private CA, or the server's self-signed certificate) instead of the system's.", valueName: "file"))
    var cacert: String?

    @Option(name: .long, help: "Send the same callback this many times (duplicates).")
    var count: Int = 1

    @Option(name: .long, help: "How many of them at once.")
    var concurrency: Int = 1

    func validate() throws {
        guard count >= 1, count <= 100_000 else { throw ValidationError("--count must be between 1 and 100000") }
        guard concurrency >= 1, concurrency <= 256 else { throw ValidationError("--concurrency must be between 1 and 256") }
    }

    func run() throws {
        let built = try callback.build()
        let target: HTTPClient.Target
        do {
            target = try HTTPClient.Target(url: url)
        } catch {
            Output.err("payhook: \(error)")
            throw ExitCode(1)
        }
        if cacert != nil && !target.tls {
            Output.err("payhook: --cacert is for https:// URLs; \(url) is plain HTTP")
            throw ExitCode(2)
        }
        let request = built.request(authority: target.authority, path: target.path == "/" ? built.path : target.path)
        let results = Mutex<[Int: String]>([:])
        let failures = Atomic<Int>(0)
        let next = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: concurrency) { _ in
            while true {
                let number = next.add(1, ordering: .relaxed).oldValue + 1
                if number > count { return }
                let line: String
                do {
                    let response = try HTTPClient.exchange(request, to: target, trustFile: cacert)
                    let body = String(decoding: response.body, as: UTF8.self)
                    if !built.isSuccess(status: response.status, body: response.body) { failures.add(1, ordering: .relaxed) }
                    // A v3 success is 204 with no body: the line is then the status alone.
                    line = body.isEmpty ? "#\(number) \(response.status)" : "#\(number) \(response.status) \(body)"
                } catch {
                    failures.add(1, ordering: .relaxed)
                    line = "#\(number) error \(error)"
                }
                results.withLock { $0[number] = line }
            }
        }
        for (_, line) in results.withLock({ $0 }).sorted(by: { $0.key < $1.key }) { Output.out(line) }
        let failed = failures.load(ordering: .relaxed)
        Output.err("sent \(count), \(count - failed) answered success, \(failed) not")
        if failed > 0 { throw ExitCode(1) }
    }
}
