import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The service manager's readiness protocol, sd_notify(3), spoken without libsystemd: one datagram of
/// `KEY=value` lines to the unix socket named by `$NOTIFY_SOCKET` (docs/deploy.md §3). With `Type=notify`
/// systemd counts payhook started only once it serves, and shows the `STATUS=` line in `systemctl status`.
///
/// Without `$NOTIFY_SOCKET` (not started by systemd, or `Type=simple`) every call does nothing. Sending never
/// blocks and never fails the caller: the protocol is advisory, and a service manager that went away must not
/// stop payhook from serving.
public final class ServiceNotifier: Sendable {
    private let address: sockaddr_un?
    private let length: socklen_t

    /// Reads `$NOTIFY_SOCKET` from `environment`. A path starting with `@` is in the abstract namespace
    /// (sd_notify(3)); anything else that is not an absolute path, or too long for a unix address, is ignored.
    public init(environment: [String: String]) {
        guard let name = environment["NOTIFY_SOCKET"], let first = name.utf8.first,
              first == UInt8(ascii: "/") || first == UInt8(ascii: "@")
        else {
            address = nil
            length = 0
            return
        }
        var unix = sockaddr_un()
        unix.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(name.utf8)
        // Abstract: a leading NUL instead of '@', and the length says where the name ends.
        if first == UInt8(ascii: "@") { bytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: unix.sun_path)
        guard bytes.count < capacity else {
            address = nil
            length = 0
            return
        }
        withUnsafeMutableBytes(of: &unix.sun_path) { path in
            path.copyBytes(from: bytes)
        }
        address = unix
        length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (first == UInt8(ascii: "@") ? 0 : 1))
    }

    /// Whether a service manager asked for notifications.
    public var isActive: Bool { address != nil }

    /// `READY=1` with a status line: startup finished, or a reload finished.
    public func ready(status: String) {
        send("READY=1\nSTATUS=\(Self.line(status))\nMAINPID=\(getpid())")
    }

    /// `RELOADING=1` before a reload, with the monotonic clock sd_notify(3) asks for (`MONOTONIC_USEC`), so
    /// that `Type=notify-reload` managers can tell this reload from an earlier one; `ready` follows.
    public func reloading() {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let microseconds = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
        send("RELOADING=1\nMONOTONIC_USEC=\(microseconds)\nSTATUS=reloading")
    }

    /// `STOPPING=1`: the listener stops accepting and drains.
    public func stopping(status: String) {
        send("STOPPING=1\nSTATUS=\(Self.line(status))")
    }

    /// A status line alone.
    public func status(_ status: String) {
        send("STATUS=\(Self.line(status))")
    }

    /// One line: a newline would start another assignment.
    private static func line(_ text: String) -> String {
        String(text.map { $0.isNewline ? " " : $0 })
    }

    private func send(_ message: String) {
        guard var address else { return }
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return }
        defer { close(descriptor) }
        let bytes = Array(message.utf8)
        _ = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                sendto(descriptor, bytes, bytes.count, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL), raw, length)
            }
        }
    }
}
