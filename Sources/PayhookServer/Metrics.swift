import Foundation
public import PayhookCore
import PayhookLock
import Prometheus

/// payhook's metrics, exposed at `/metrics` in the Prometheus text format (version 0.0.4,
/// https://prometheus.io/docs/instrumenting/exposition_formats/), written by swift-prometheus's
/// `PrometheusCollectorRegistry`.
///
/// Each instance owns its registry instead of bootstrapping swift-metrics' process-wide `MetricsSystem`: one
/// process may run several servers (the tests do), and each must count only its own requests.
///
/// Label values come only from the config (source, tenant) or from fixed sets (outcome, position), never
/// from request text, so a hostile sender cannot grow the series without bound.
public final class Metrics: Sendable {
    /// Upper bounds of the request latency histogram, in seconds.
    public static let latencyBuckets: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]

    // Computed: MetricNameDescriptor is not Sendable, and one is only needed when a series is first made.
    static var requestsName: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "payhook", metricName: "requests", unitName: "total",
            helpText: "Callback requests by source, tenant and outcome.")
    }
    static var positionsName: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "payhook", metricName: "verified_secret_position", unitName: "total",
            helpText: "Accepted callbacks by the position of the secret that verified them (1 = first line).")
    }
    static var latencyName: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "payhook", metricName: "request_duration", unitName: "seconds",
            helpText: "Time from the request's arrival to its answer, by route (unified, wechat).")
    }
    static var storageErrorsName: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "payhook", metricName: "storage_errors", unitName: "total",
            helpText: "Failures to store an event, by error.")
    }

    /// Three label values: source, tenant, and outcome or position.
    struct SeriesKey: Hashable {
        var source: String
        var tenant: String
        var third: String
    }

    /// The registry's handles by label values. The registry's `make…` checks the name, the label names and
    /// the help text and then looks the series up under its own lock on every call: called per request, that
    /// was about 21,000 instructions for the counter and the histogram, and a duplicate callback cost 253k
    /// instructions instead of the 235k it cost with the earlier hand-written exposition (callgrind, 2,000
    /// keep-alive duplicates less a 1-request run). Looked up here, a duplicate costs 233k.
    struct Handles {
        var requests: [SeriesKey: Counter] = [:]
        var secretPositions: [SeriesKey: Counter] = [:]
        var latency: [String: ValueHistogram] = [:]  // route
        var storageErrors: [String: Counter] = [:]  // errno name
        /// Counters of the signature notes, by metric name and label values.
        var signature: [[String]: Counter] = [:]
        var clockSkew: [String: ValueHistogram] = [:]  // route
    }

    /// A metric read at scrape time, a gauge or a counter kept by someone else.
    struct Reading {
        var name: String
        var help: String
        var isCounter: Bool
        var read: @Sendable () -> [(labels: [(String, String)], value: Double)]
    }

    /// A series the registry holds for a reading, by metric name and flattened label pairs.
    struct ReadingKey: Hashable {
        var name: String
        var labels: [String]
    }

    enum ReadingSeries {
        case gauge(Gauge)
        case counter(Counter)
    }

    private let registry = PrometheusCollectorRegistry()
    private let handles = Locked(Handles())
    private let readings = Locked<[Reading]>([])
    /// The series the last scrape set from the readings, so that one a reading no longer returns (a spool
    /// folder that is gone) is unregistered rather than left at its last value. Holding this lock across a
    /// whole scrape also keeps scrapes one at a time: each sets the readings' series, then emits, and two
    /// interleaved could emit a counter between another's reset and its increment.
    private let readingSeries = Locked<[ReadingKey: ReadingSeries]>([:])

    /// Run at the start of each scrape, before any reading: work that several readings share (the queue census).
    private let scrapeHooks = Locked<[@Sendable () -> Void]>([])

    /// Histograms kept by someone else, read at scrape time as value → how many observations had it.
    private let externalHistograms: Locked<[(name: String, help: String, bounds: [Double], read: @Sendable () -> [Int: Int])]> = Locked([])

    public init() {}

    /// One request's outcome. `tenant` must be a configured tenant or "" (unknown). `route` is the kind
    /// of path it came to (`unified`, `wechat`), the latency histogram's label.
    public func request(source: String, tenant: String, outcome: String, route: String, seconds: Double?) {
        let key = SeriesKey(source: source, tenant: tenant, third: outcome)
        let (counter, histogram) = handles.withLock { h -> (Counter, ValueHistogram?) in
            let counter = h.requests[key] ?? {
                let made = registry.makeCounter(
                    descriptor: Self.requestsName, labels: [("source", source), ("tenant", tenant), ("outcome", outcome)])
                h.requests[key] = made
                return made
            }()
            guard seconds != nil else { return (counter, nil) }
            let histogram = h.latency[route] ?? {
                let made = registry.makeValueHistogram(
                    descriptor: Self.latencyName, labels: [("route", route)], buckets: Self.latencyBuckets)
                h.latency[route] = made
                return made
            }()
            return (counter, histogram)
        }
        counter.increment()
        if let seconds, let histogram { histogram.record(seconds) }
    }

    /// Which secret position verified an accepted callback: rotation progress.
    public func verified(source: String, tenant: String, position: Int) {
        let key = SeriesKey(source: source, tenant: tenant, third: String(position))
        handles.withLock { h in
            h.secretPositions[key] ?? {
                let made = registry.makeCounter(
                    descriptor: Self.positionsName, labels: [("source", source), ("tenant", tenant), ("position", key.third)])
                h.secretPositions[key] = made
                return made
            }()
        }.increment()
    }

    static let clockSkewBuckets: [Double] = [1, 2, 5, 10, 30, 60, 120, 300, 600, 3600]

    /// What a source learnt about the key a request named (``SignatureNotes``): checks by key id and result,
    /// signature probes, unknown key ids, and the sender's clock skew. `route` is the path's kind; `keyID`
    /// comes from the config, never from the request.
    public func signature(_ notes: SignatureNotes, source route: String, tenant: String) {
        if let keyID = notes.keyID, let verified = notes.verified {
            count(
                "signature_key_checks", "Signatures checked with a configured key, by the key's id (a public key id or a platform certificate serial) and result.",
                [("route", route), ("tenant", tenant), ("key_id", keyID), ("result", verified ? "verified" : "failed")])
        }
        if notes.probe {
            count("signature_probes", "Deliberate bad signatures the sender probes with (WeChat Pay's WECHATPAY/SIGNTEST/), refused.", [("route", route), ("tenant", tenant)])
        }
        if notes.unknownKeyID {
            count("unknown_key_ids", "Requests naming a key (Wechatpay-Serial) no tenant on the path has configured.", [("route", route)])
        }
        if let skew = notes.clockSkewSeconds {
            let histogram = handles.withLock { h in
                h.clockSkew[route] ?? {
                    let made = registry.makeValueHistogram(
                        descriptor: MetricNameDescriptor(
                            namespace: "payhook", metricName: "clock_skew", unitName: "seconds",
                            helpText: "Distance between the sender's signing time and payhook's clock, by route."),
                        labels: [("route", route)], buckets: Self.clockSkewBuckets)
                    h.clockSkew[route] = made
                    return made
                }()
            }
            histogram.record(Double(skew.magnitude))
        }
    }

    private func count(_ name: String, _ help: String, _ labels: [(String, String)]) {
        let key = [name] + labels.map(\.1)
        handles.withLock { h in
            h.signature[key] ?? {
                let made = registry.makeCounter(
                    descriptor: MetricNameDescriptor(namespace: "payhook", metricName: name, unitName: "total", helpText: help), labels: labels)
                h.signature[key] = made
                return made
            }()
        }.increment()
    }

    /// A failure to store, by errno name (`ENOSPC`, `EIO`, …) or `other`.
    public func storageError(_ kind: String) {
        handles.withLock { h in
            h.storageErrors[kind] ?? {
                let made = registry.makeCounter(descriptor: Self.storageErrorsName, labels: [("error", kind)])
                h.storageErrors[kind] = made
                return made
            }()
        }.increment()
    }

    /// Registers a metric read at each scrape: a gauge, or (`type: "counter"`) a counter kept by someone
    /// else. Every sample of one name has the same label names, or none, and no two metrics share a name:
    /// the registry stops the process otherwise.
    public func gauge(
        _ name: String, help: String, type: String = "gauge",
        read: @escaping @Sendable () -> [(labels: [(String, String)], value: Double)]
    ) {
        readings.withLock { $0.append(Reading(name: name, help: help, isCounter: type == "counter", read: read)) }
    }

    /// Registers work to do once at the start of every scrape, before the readings are read, one scrape at a
    /// time: what several readings share is fetched there once.
    public func onScrape(_ hook: @escaping @Sendable () -> Void) {
        scrapeHooks.withLock { $0.append(hook) }
    }

    /// Registers `payhook_build_info`, always 1, whose labels say what is running.
    public func buildInfo() {
        gauge("payhook_build_info", help: "Always 1; the labels say what is running.") {
            [([("version", PayhookVersion.current), ("commit", PayhookVersion.commit), ("schema", Event.schema)], 1)]
        }
    }

    /// Registers a histogram kept by someone else (e.g. the spool's commit batch sizes), rendered with the
    /// cumulative `le` buckets of `bounds` plus +Inf, `_sum` and `_count`.
    public func histogram(_ name: String, help: String, bounds: [Double], read: @escaping @Sendable () -> [Int: Int]) {
        externalHistograms.withLock { $0.append((name, help, bounds, read)) }
    }

    /// The exposition text.
    public func render() -> String {
        let readings = self.readings.withLock { $0 }
        let external = externalHistograms.withLock { $0 }
        let hooks = scrapeHooks.withLock { $0 }
        var out = readingSeries.withLock { series in
            for hook in hooks { hook() }
            var seen = Set<ReadingKey>()
            for reading in readings {
                for sample in reading.read() {
                    let key = ReadingKey(name: reading.name, labels: sample.labels.flatMap { [$0.0, $0.1] })
                    seen.insert(key)
                    let made = series[key] ?? {
                        let name = MetricNameDescriptor(metricName: reading.name, unitName: "", helpText: reading.help)
                        let made: ReadingSeries =
                            reading.isCounter
                            ? .counter(registry.makeCounter(descriptor: name, labels: sample.labels))
                            : .gauge(registry.makeGauge(descriptor: name, labels: sample.labels))
                        series[key] = made
                        return made
                    }()
                    switch made {
                    case .gauge(let gauge):
                        gauge.set(to: sample.value)
                    case .counter(let counter):
                        // A counter kept elsewhere is copied in whole: the registry's counters only go up.
                        counter.reset()
                        if sample.value == sample.value.rounded(), sample.value >= 0, sample.value < 0x1p63 {
                            counter.increment(by: Int64(sample.value))  // printed as an integer
                        } else if sample.value > 0 {
                            counter.increment(by: sample.value)
                        }
                    }
                }
            }
            for (key, stale) in series where !seen.contains(key) {
                switch stale {
                case .gauge(let gauge): registry.unregisterGauge(gauge)
                case .counter(let counter): registry.unregisterCounter(counter)
                }
                series[key] = nil
            }
            return registry.emitToString()
        }
        // The registry's histograms are fed one observation at a time and print `le` as a Double ("1.0");
        // these are snapshots kept elsewhere, rendered here with the integer bounds they count ("1").
        for histogram in external {
            let observed = histogram.read()
            out += "# HELP \(histogram.name) \(histogram.help)\n# TYPE \(histogram.name) histogram\n"
            out += Self.histogramLines(
                histogram.name, labels: [], bounds: histogram.bounds,
                cumulative: histogram.bounds.map { bound in
                    UInt64(observed.filter { Double($0.key) <= bound }.values.reduce(0, +))
                },
                sum: Double(observed.reduce(0) { $0 + $1.key * $1.value }),
                count: UInt64(observed.values.reduce(0, +)))
        }
        return out
    }

    /// The sample lines of one histogram series: a cumulative `_bucket` per bound and +Inf, `_sum`, `_count`.
    static func histogramLines(
        _ name: String, labels: [(String, String)], bounds: [Double], cumulative: [UInt64], sum: Double, count: UInt64
    ) -> String {
        var out = ""
        for (bound, inBucket) in zip(bounds, cumulative) {
            out += "\(name)_bucket\(Self.labels(labels + [("le", Self.number(bound))])) \(inBucket)\n"
        }
        out += "\(name)_bucket\(Self.labels(labels + [("le", "+Inf")])) \(count)\n"
        out += "\(name)_sum\(Self.labels(labels)) \(Self.number(sum))\n"
        out += "\(name)_count\(Self.labels(labels)) \(count)\n"
        return out
    }

    static func labels(_ pairs: [(String, String)]) -> String {
        guard !pairs.isEmpty else { return "" }
        return "{" + pairs.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",") + "}"
    }

    /// Label values escape backslash, double quote and newline (exposition format).
    static func escape(_ value: String) -> String {
        value.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"").replacing("\n", with: "\\n")
    }

    static func number(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }
}
