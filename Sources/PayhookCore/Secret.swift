/// A secret a tenant verifies with (a signing secret, an API key). Its description is always `***`, so
/// interpolating one into a log line, an error or test output cannot leak it.
public struct Secret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    public let value: String
    public init(_ value: String) { self.value = value }
    public var description: String { "***" }
    public var debugDescription: String { "***" }
}
