import Foundation

/// The repository root, from this file's path (Tests/PayhookTestSupport/Paths.swift).
public let repositoryRoot: String = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// The built `payhook` executable: $PAYHOOK_BIN, else next to the test bundle (`swift build` puts both in one
/// folder) or in a folder above it, else the repository's .build/debug/payhook.
public func payhookBinary() throws -> String {
    if let explicit = ProcessInfo.processInfo.environment["PAYHOOK_BIN"] { return explicit }
    let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    var candidates: [String] = []
    var directory = bundle.deletingLastPathComponent()
    for _ in 0..<6 {
        candidates.append(directory.appendingPathComponent("payhook").path)
        directory = directory.deletingLastPathComponent()
    }
    candidates.append(repositoryRoot + "/.build/debug/payhook")
    for candidate in candidates {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: candidate, isDirectory: &isDirectory), !isDirectory.boolValue,
            FileManager.default.isExecutableFile(atPath: candidate)
        {
            return candidate
        }
    }
    throw TestFailure("payhook binary not found near \(bundle.path); run `swift build` or set PAYHOOK_BIN")
}
