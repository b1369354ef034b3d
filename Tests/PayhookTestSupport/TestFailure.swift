/// A failure a test throws in its own words (a missing binary, a refused connection, a malformed reply).
public struct TestFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
