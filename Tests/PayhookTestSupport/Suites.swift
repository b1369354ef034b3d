import Testing

/// The parent of the suites that measure time, memory or processes closely enough that another of them running
/// at the same time would distort what they measure: latencies, timeouts and grace periods of a server in
/// this process, this process's resident memory, signals and exits of child processes on deadlines. They run
/// one at a time (each suite also one test at a time), while the rest of the tests run in parallel beside
/// them. A suite joins with `extension MeasuringSuites { @Suite struct … }`, from any test target.
@Suite("Measuring suites, one at a time", .serialized)
public enum MeasuringSuites {}
