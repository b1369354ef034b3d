public import PayhookCore

/// One `[[xxpay]]` table: a merchant of an XxPay pay center (docs/contract.md §3.5).
public struct XxPayTenant: Sendable, Equatable {
    public var path: String
    /// `mchId`: the routing value, and the merchant every notification must name.
    public var mchID: String
    /// The merchant's resKey (XxPay signs notifications with it, not with the reqKey of requests), one per
    /// line of the file for rotation.
    public var keys: [Secret]
    public var line: Int

    public init(path: String, mchID: String, keys: [Secret], line: Int = 0) {
        self.path = path
        self.mchID = mchID
        self.keys = keys
        self.line = line
    }
}

/// One `[[jeepay]]` table: one app of a Jeepay merchant (docs/contract.md §3.5).
public struct JeepayTenant: Sendable, Equatable {
    public var path: String
    /// `mchNo`: the merchant, the tenant in events and metrics.
    public var mchNo: String
    /// `appId`: with `mchNo`, the route; a merchant may have several apps, each with its own secret.
    public var appID: String
    /// The app secret, one per line for rotation.
    public var keys: [Secret]
    public var line: Int

    public init(path: String, mchNo: String, appID: String, keys: [Secret], line: Int = 0) {
        self.path = path
        self.mchNo = mchNo
        self.appID = appID
        self.keys = keys
        self.line = line
    }
}
