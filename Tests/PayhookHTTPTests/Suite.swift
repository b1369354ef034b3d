import PayhookTestSupport
import Testing

extension MeasuringSuites {
    /// Every test of this module runs one at a time, and never beside another measuring suite: several of them
    /// measure timeouts, grace periods, latencies and this process's memory, which are only meaningful without
    /// the others competing for the two cores.
    @Suite("PayhookHTTP", .serialized)
    enum PayhookHTTPSuite {}
}

/// The name the module's suites extend.
typealias PayhookHTTPSuite = MeasuringSuites.PayhookHTTPSuite
