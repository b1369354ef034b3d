public import Foundation

/// Reads a config file from disk with the process environment: the I/O half of `ConfigLoader`.
public enum ConfigFile {
    public static func load(path: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws(ConfigError) -> ConfigLoader.Loaded {
        try ConfigLoader(readFile: readFile, environment: environment, fileMode: fileMode).load(path: path)
    }

    /// A file's permission bits from stat(2), or nil when it cannot be examined.
    @Sendable public static func fileMode(_ path: String) -> UInt32? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return UInt32(info.st_mode) & 0o7777
    }

    /// Reads a whole file; the error is the system's sentence ("No such file or directory", "Is a
    /// directory").
    @Sendable public static func readFile(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileReadError(errno: errno) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n == 0 { return bytes }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileReadError(errno: errno)
            }
            bytes.append(contentsOf: buffer[0..<n])
        }
    }

    struct FileReadError: Error, CustomStringConvertible {
        let errno: Int32
        var description: String { String(cString: strerror(errno)) }
    }
}

extension ConfigLoader {
    /// The system's wall clock, whole Unix seconds: the loader's default `now`.
    @Sendable public static func systemNow() -> Int64 {
        Int64(Date().timeIntervalSince1970.rounded(.down))
    }
}
