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
extension WeChatSignType: ExpressibleByArgument {}

/// What to build: shared by `sign` and `simulate`.
struct CallbackOptions: ParsableArguments {
    @Argument(help: "unified, wechat-pay or wechat-refund.")
    var kind: CallbackBuilder.Kind

    @Option(name: .long, help: "The TOML config file holding the tenant and its secret.")
    var config: String

    @Option(name: .long, help: "domain_code or mch_id; needed when the config has several tenants of this kind.")
    var tenant: String?

    @Option(name: .long, help: "Amount in fen.")
    var amount: Int64 = 100

    @Option(name: .customLong("order-ref"), help: "requestKey or out_trade_no (default: a fresh unique one).")
    var orderRef: String?

    @Option(name: .customLong("refund-ref"), help: "out_refund_no of a wechat-refund (default: a fresh unique one).")
    var refundRef: String?

    @Option(name: .long, help: "payStatus, result_code or refund_status (default: the success value).")
    var status: String?

    @Option(name: .customLong("field"), help: "NAME=VALUE: add or replace a field (repeatable; for wechat-refund, a field of the encrypted document).")
    var fields: [String] = []

    @Option(name: .customLong("key-index"), help: "Which of the tenant's secrets signs, 1-based in file order.")
    var keyIndex: Int = 1

    @Option(name: .customLong("sign-type"), help: "wechat-pay: MD5 or HMAC-SHA256 (default: the tenant's first accepted, MD5 first).")
    var signType: WeChatSignType?

    @Flag(name: .customLong("omit-sign-type"), help: "wechat-pay: leave sign_type out, as some HMAC notifications do.")
    var omitSignType = false

    @Option(name: .customLong("break"), help: "Break it on purpose: tamper, wrong-key or strip-sign.")
    var breakage: CallbackBuilder.Breakage?

    func validate() throws {
        for field in fields where !field.contains("=") || field.hasPrefix("=") {
            throw ValidationError("--field \(field): expected NAME=VALUE")
        }
        if amount < 0 { throw ValidationError("--amount must not be negative") }
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
        spec.signType = signType
        spec.omitSignType = omitSignType
        spec.breakage = breakage
        return spec
    }

    func build() throws -> CallbackBuilder.Built {
        let loaded: ConfigLoader.Loaded
        do {
            loaded = try ConfigFile.load(path: config)
        } catch {
            for issue in error.issues { Output.err("error: \(issue)") }
            throw ExitCode(1)
        }
        do {
            return try CallbackBuilder.build(spec(), config: loaded.config)
        } catch {
            Output.err("payhook: \(error)")
            throw ExitCode(1)
        }
    }
}

/// `payhook sign KIND`: prints a correctly signed callback (the query string, or the XML body).
struct Sign: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a correctly signed callback: a unified query string or a WeChat XML body.",
        discussion: """
            unified prints the query string: curl "http://127.0.0.1:8080/notify/unified?$(payhook sign unified --config C)"
            wechat-pay and wechat-refund print the XML body: payhook sign wechat-pay --config C | curl --data-binary @- URL
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
            is the sender's success answer, 1 otherwise (as expected with --break).
            """
    )

    @OptionGroup var callback: CallbackOptions

    @Option(name: .long, help: "Where to send it, e.g. http://127.0.0.1:8080/notify/unified (default path: the tenant's).")
    var url: String

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
        let request = built.request(authority: target.authority, path: target.path == "/" ? built.path : target.path)
        let success = built.method == "GET" ? "success" : "<xml><return_code><![CDATA[SUCCESS]]></return_code>"
        let results = Mutex<[Int: String]>([:])
        let failures = Atomic<Int>(0)
        let next = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: concurrency) { _ in
            while true {
                let number = next.add(1, ordering: .relaxed).oldValue + 1
                if number > count { return }
                let line: String
                do {
                    let response = try HTTPClient.exchange(request, host: target.host, port: target.port)
                    let body = String(decoding: response.body, as: UTF8.self)
                    if !(response.status == 200 && body.hasPrefix(success)) { failures.add(1, ordering: .relaxed) }
                    line = "#\(number) \(response.status) \(body)"
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
