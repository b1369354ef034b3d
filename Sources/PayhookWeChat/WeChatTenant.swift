public import PayhookCore

/// One `[[wechat]]` table: a WeChat Pay merchant receiving v2 notifications (docs/contract.md §2).
public struct WeChatTenant: Sendable, Equatable {
    public var path: String
    public var mchID: String
    /// When set, notifications naming another appid are refused.
    public var appID: String?
    /// Every valid APIv2 key, in file order (rotation).
    public var keys: [Secret]
    /// The signature algorithms accepted for payment notifications.
    public var signTypes: Set<WeChatSignType>
    public var line: Int

    public init(path: String, mchID: String, appID: String?, keys: [Secret], signTypes: Set<WeChatSignType>, line: Int) {
        self.path = path
        self.mchID = mchID
        self.appID = appID
        self.keys = keys
        self.signTypes = signTypes
        self.line = line
    }
}
