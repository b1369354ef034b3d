import Foundation
import PayhookCore
import PayhookHTTP

/// Reads a config file from disk with the process environment: the I/O half of `ConfigLoader`.
public enum ConfigFile {
    public static func load(path: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws(ConfigError) -> ConfigLoader.Loaded {
        let loader = ConfigLoader(
            readFile: readFile, environment: environment,
            checkListen: { text in
                do {
                    _ = try ListenAddress.parse(text)
                    return nil
                } catch {
                    return "listen: \(error)"
                }
            })
        return try loader.load(path: path)
    }

    /// Reads a whole file; the error is the system's sentence ("No such file or directory").
    @Sendable public static func readFile(_ path: String) throws -> [UInt8] {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw FileReadError(message: String(cString: strerror(errno)))
        }
        defer { try? handle.close() }
        do {
            return Array(try handle.readToEnd() ?? Data())
        } catch {
            throw FileReadError(message: String(cString: strerror(EIO)))
        }
    }

    struct FileReadError: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }
}
