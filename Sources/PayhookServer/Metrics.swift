import Foundation
import PayhookLock

/// payhook's metrics, exposed at `/metrics` in the Prometheus text format (version 0.0.4,
/// https://prometheus.io/docs/instrumenting/exposition_formats/).
///
/// Label values come only from the config (source, tenant) or from fixed sets (outcome, position), never
/// from request text, so a hostile sender cannot grow the series without bound.
public final class Metrics: Sendable {
    /// Upper bounds of the request latency histogram, in seconds.
    public static let latencyBuckets: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]

    struct Histogram {
        var buckets: [UInt64]
        var sum: Double = 0
        var count: UInt64 = 0
        init(_ bounds: Int) { buckets = [UInt64](repeating: 0, count: bounds) }
    }

    struct State {
        var requests: [[String]: UInt64] = [:]  // [source, tenant, outcome]
        var secretPositions: [[String]: UInt64] = [:]  // [source, tenant, position]
        var latency: [String: Histogram] = [:]  // source
        var storageErrors: [String: UInt64] = [:]  // errno name
    }

    private let state = Locked(State())
    /// Gauges read at scrape time: each returns its current samples (label set, value).
    private let gauges: Locked<[(name: String, help: String, type: String, read: @Sendable () -> [(labels: [(String, String)], value: Double)])]> = Locked([])

    /// Histograms kept by someone else, read at scrape time as value → how many observations had it.
    private let externalHistograms: Locked<[(name: String, help: String, bounds: [Double], read: @Sendable () -> [Int: Int])]> = Locked([])

    public init() {}

    /// One request's outcome. `tenant` must be a configured tenant or "" (unknown). `route` is the kind
    /// of path it came to (`unified`, `wechat`), the latency histogram's label.
    public func request(source: String, tenant: String, outcome: String, route: String, seconds: Double?) {
        state.withLock { s in
            s.requests[[source, tenant, outcome], default: 0] += 1
            guard let seconds else { return }
            var histogram = s.latency[route] ?? Histogram(Self.latencyBuckets.count)
            for (index, bound) in Self.latencyBuckets.enumerated() where seconds <= bound { histogram.buckets[index] += 1 }
            histogram.sum += seconds
            histogram.count += 1
            s.latency[route] = histogram
        }
    }

    /// Which secret position verified an accepted callback: rotation progress.
    public func verified(source: String, tenant: String, position: Int) {
        state.withLock { $0.secretPositions[[source, tenant, String(position)], default: 0] += 1 }
    }

    /// A failure to store, by errno name (`ENOSPC`, `EIO`, …) or `other`.
    public func storageError(_ kind: String) {
        state.withLock { $0.storageErrors[kind, default: 0] += 1 }
    }

    /// Registers a metric read at each scrape: a gauge, or a counter kept by someone else.
    public func gauge(
        _ name: String, help: String, type: String = "gauge",
        read: @escaping @Sendable () -> [(labels: [(String, String)], value: Double)]
    ) {
        gauges.withLock { $0.append((name, help, type, read)) }
    }

    /// Registers a histogram kept by someone else (e.g. the spool's commit batch sizes), rendered with the
    /// cumulative `le` buckets of `bounds` plus +Inf, `_sum` and `_count`.
    public func histogram(_ name: String, help: String, bounds: [Double], read: @escaping @Sendable () -> [Int: Int]) {
        externalHistograms.withLock { $0.append((name, help, bounds, read)) }
    }

    /// The exposition text.
    public func render() -> String {
        let s = state.withLock { $0 }
        var out = ""
        out += "# HELP payhook_requests_total Callback requests by source, tenant and outcome.\n"
        out += "# TYPE payhook_requests_total counter\n"
        for (key, value) in s.requests.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
            out += "payhook_requests_total\(Self.labels([("source", key[0]), ("tenant", key[1]), ("outcome", key[2])])) \(value)\n"
        }
        out += "# HELP payhook_verified_secret_position_total Accepted callbacks by the position of the secret that verified them (1 = first line).\n"
        out += "# TYPE payhook_verified_secret_position_total counter\n"
        for (key, value) in s.secretPositions.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
            out += "payhook_verified_secret_position_total\(Self.labels([("source", key[0]), ("tenant", key[1]), ("position", key[2])])) \(value)\n"
        }
        out += "# HELP payhook_request_duration_seconds Time from the request's arrival to its answer, by route (unified, wechat).\n"
        out += "# TYPE payhook_request_duration_seconds histogram\n"
        for (route, histogram) in s.latency.sorted(by: { $0.key < $1.key }) {
            out += Self.histogramLines(
                "payhook_request_duration_seconds", labels: [("route", route)], bounds: Self.latencyBuckets,
                cumulative: histogram.buckets, sum: histogram.sum, count: histogram.count)
        }
        out += "# HELP payhook_storage_errors_total Failures to store an event, by error.\n"
        out += "# TYPE payhook_storage_errors_total counter\n"
        for (kind, value) in s.storageErrors.sorted(by: { $0.key < $1.key }) {
            out += "payhook_storage_errors_total\(Self.labels([("error", kind)])) \(value)\n"
        }
        for histogram in externalHistograms.withLock({ $0 }) {
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
        for gauge in gauges.withLock({ $0 }) {
            out += "# HELP \(gauge.name) \(gauge.help)\n# TYPE \(gauge.name) \(gauge.type)\n"
            for sample in gauge.read() {
                out += "\(gauge.name)\(Self.labels(sample.labels)) \(Self.number(sample.value))\n"
            }
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
