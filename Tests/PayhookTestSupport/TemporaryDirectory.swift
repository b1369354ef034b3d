import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A fresh directory made by mkdtemp(3) under /tmp, removed with everything in it when the value goes away
/// (or by `remove()`).
public final class TemporaryDirectory: @unchecked Sendable {
    public let path: String

    /// `prefix` names the folder ("/tmp/<prefix>-XXXXXX"), so that one left behind says which tests made it.
    public init(prefix: String = "payhook-test") throws {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw TestFailure("mkdtemp: \(String(cString: strerror(errno)))")
        }
        path = String(cString: made)
    }

    deinit { remove() }

    /// The path of `name` inside it.
    public func file(_ name: String) -> String { path + "/" + name }

    /// Writes `text` to `name` inside it.
    public func write(_ name: String, _ text: String) throws {
        try text.write(toFile: file(name), atomically: false, encoding: .utf8)
    }

    public func remove() { try? FileManager.default.removeItem(atPath: path) }
}
