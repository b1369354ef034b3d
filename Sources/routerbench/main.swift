// routerbench: payhook's own CPU per duplicate, without HTTP (bench/README.md, "payhook's own work, without HTTP").
//
//   routerbench CONFIG REQUESTS [ROUNDS]
//
// CONFIG is a payhook config with a spool store (bench/run.py --write-config writes one) whose spool does not
// exist yet; REQUESTS a file of unified callback targets, one per line (bench/.data/requests/unified-*.txt). The
// first 100 are stored once through `Router.handle`, then answered as duplicates ROUNDS × 100 times (default
// 1,000), five times over; it prints the median, fastest and slowest of the five, in microseconds of this thread's
// CPU time per duplicate. Nothing else runs, so back-to-back runs of one build differ by a few per cent, where the
// server under wrk varies by ten; the machine's other load moves both builds alike (bench/tools/routerloop.sh
// alternates them).
import Foundation
import Logging
import PayhookConfig
import PayhookCore
import PayhookHTTP
import PayhookServer
import PayhookSpool
import PayhookSpoolFormat
import PayhookUnified

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("routerbench: \(message)\n".utf8))
    exit(1)
}

let arguments = CommandLine.arguments
guard arguments.count == 3 || arguments.count == 4 else { fail("usage: routerbench CONFIG REQUESTS [ROUNDS]") }
guard let rounds = arguments.count == 4 ? Int(arguments[3]) : 1_000, rounds > 0 else { fail("ROUNDS must be a positive number") }
let config: Config
do {
    config = try ConfigFile.load(path: arguments[1]).config
} catch {
    fail("\(arguments[1]): \(error)")
}
guard config.store == .spool else { fail("the config must use the spool store") }
guard let tenant = config.unified.first else { fail("the config has no [[unified]] tenant") }
guard !FileManager.default.fileExists(atPath: config.spool) else { fail("spool \(config.spool) exists: give a fresh one") }
guard let text = try? String(contentsOfFile: arguments[2], encoding: .utf8) else { fail("cannot read \(arguments[2])") }
let targets = text.split(separator: "\n").prefix(100).map(String.init)
guard !targets.isEmpty else { fail("\(arguments[2]) holds no requests") }

var logger = Logger(label: "routerbench")
logger.logLevel = .warning
let spool: Spool
do {
    spool = try Spool(directory: config.spool, inspector: EventFileInspector.payhook, logger: logger)
} catch {
    fail("cannot open spool \(config.spool): \(error)")
}
let source = UnifiedSource(
    path: tenant.path, tenants: config.unified.filter { $0.path == tenant.path }, maxCallbackAgeMilliseconds: config.maxCallbackAgeMilliseconds)
let router = Router(sources: [tenant.path: source], store: SpoolEventStore(spool), logger: logger)

/// What the listener hands the router for a GET from wrk.
func request(_ target: String) -> HTTPRequest {
    HTTPRequest(
        head: HTTPRequestHead(
            method: "GET", target: target, headers: [(name: "Host", value: "127.0.0.1"), (name: "User-Agent", value: "wrk")],
            remoteAddress: "127.0.0.1", receivedAt: Date()),
        body: [])
}

func threadMicroseconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
    return Double(now.tv_sec) * 1e6 + Double(now.tv_nsec) / 1e3
}

for target in targets {
    let answer = router.handle(request(target))
    guard answer.status == 200 else { fail("storing \(target) was answered \(answer.status)") }
}
// Every duplicate is answered on this thread before `handle` returns: the store answers a duplicate at once.
nonisolated(unsafe) var answered = 0
var perDuplicate: [Double] = []
for _ in 0..<5 {
    answered = 0
    let start = threadMicroseconds()
    for _ in 0..<rounds {
        for target in targets {
            router.handle(request(target)) { make in
                if make().status == 200 { answered += 1 }
            }
        }
    }
    let elapsed = threadMicroseconds() - start
    guard answered == rounds * targets.count else { fail("\(rounds * targets.count - answered) duplicates were not answered success") }
    perDuplicate.append(elapsed / Double(answered))
}
spool.close()
perDuplicate.sort()
print(String(format: "us per duplicate: median %.2f, fastest %.2f, slowest %.2f (%d duplicates each, 5 times)",
             perDuplicate[2], perDuplicate[0], perDuplicate[4], rounds * targets.count))
