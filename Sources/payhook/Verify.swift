import ArgumentParser
import PayhookConfig
import PayhookStore
import PayhookTools

/// `payhook verify --config FILE CAPTURE`: checks one captured callback offline and explains the result.
struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a captured callback against a config and explain why it does or does not verify.",
        discussion: """
            CAPTURE is a file (or - for standard input) holding the raw query string (optionally /path?query or \
            a full URL), a form body, a WeChat XML body, a header block, or a payhook event file. Secrets are always shown as \
            ***. Exits 0 when payhook would accept it, 1 otherwise.

            A header block is how a WeChat Pay v3 notification is captured: "Name: value" lines (names in any \
            case), optionally after a request line "POST /path HTTP/1.1" whose path then picks the tenants, an \
            empty line, then the body. With a Content-Length header the body is that many bytes; without one, \
            exactly one final line break is taken off (the one payhook sign prints after the body) and the \
            output says so. The clock window is checked against the wall clock; for an event file, against its \
            received_at, so a stored notification verifies again later. A file named as a conflict copy \
            (<id>.<tag>.json, as in the spool's conflicts/ or saved from queue show of a copy) whose event has that \
            id is said to be one: payhook answered it success but kept it for audit, never queued it.

            Alipay, XxPay and Jeepay notifications are told by their routing parameter (app_id, mchId, appId): \
            an Alipay or Jeepay form body or an XxPay query string as a file of its own, either inside a captured \
            HTTP request, or a stored event of alipay.trade, alipay.event, xxpay.pay or jeepay.pay. The output \
            names the tenant (or lists the configured ones when none matches), the charset and sign_type with \
            the tenant's accepted ones, the exact string signed (MD5 secrets as ***), the result with each key \
            and, when it fails, the variants that would have verified. An event is judged as of its received_at.
            """
    )

    @Option(name: .long, help: "The TOML config file.")
    var config: String

    @Option(name: .long, help: "Only consider tenants on this path (for a header block or an event file: instead of the path it names).")
    var path: String?

    @Argument(help: "The captured request: a file, or - for standard input.")
    var capture: String

    func run() throws {
        let loaded = try ConfigFile.loadOrExit(config)
        let input: [UInt8]
        do {
            input = capture == "-" ? Explainer.readStandardInput() : try ConfigFile.readFile(capture)
        } catch {
            Output.err("payhook: cannot read \(capture): \(error)")
            throw ExitCode(1)
        }
        // A conflict copy (conflicts/<id>.<tag>.json) verifies like its event, but was never queued: say so.
        let name = capture.split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? capture
        let report: Explainer.Report
        if let copy = QueueReference.conflictCopy(named: name) {
            report = Explainer.explain(input, config: loaded.config, path: path, conflictCopyOf: copy.id)
        } else {
            report = Explainer.explain(input, config: loaded.config, path: path)
        }
        for line in report.lines { Output.out(line) }
        if !report.verified { throw ExitCode(1) }
    }
}
