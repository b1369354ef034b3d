public import PayhookHTTP

/// Serves one ``Metrics`` at `GET /metrics` and nothing else: the listener of `payhook queue consume
/// --metrics-listen` (docs/metrics.md), on the same libmicrohttpd server and limits as `payhook serve`.
public final class MetricsEndpoint: HTTPHandler {
    public let metrics: Metrics

    public init(metrics: Metrics) {
        self.metrics = metrics
    }

    /// Anything but `GET` or `HEAD /metrics` is answered before a body is read: 404 for another path, 405 for
    /// another method.
    public func head(_ head: HTTPRequestHead) -> HTTPResponse? {
        guard head.path == Router.metricsPath else { return Router.plain(404, "not found\n") }
        guard head.method == "GET" || head.method == "HEAD" else { return Router.plain(405, "method not allowed\n", allow: "GET") }
        return nil
    }

    public func handle(_ request: HTTPRequest) -> HTTPResponse {
        HTTPResponse(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: metrics.render())
    }

    public func refusal(_ status: Int, for head: HTTPRequestHead) -> HTTPResponse {
        Router.plain(status, Router.answerReason(status) + "\n")
    }
}
