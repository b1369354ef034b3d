import Testing

/// Every test of this module runs one at a time: several of them measure
/// timeouts and grace periods, which are only meaningful without the others
/// competing for the two cores.
@Suite("PayhookHTTP", .serialized)
enum PayhookHTTPSuite {}
