#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Creation of the listening socket handed to libmicrohttpd with
/// MHD_OPTION_LISTEN_SOCKET. Doing it here instead of letting MHD bind gives
/// full control over the address family, IPV6_V6ONLY, close-on-exec and the
/// error message.
enum ListenSocket {
    /// Resolves `address`, then binds and listens on the first result that
    /// works, IPv4 results first (so "localhost" means 127.0.0.1 where both
    /// exist). Returns the non-blocking, close-on-exec descriptor and the
    /// address the kernel actually bound.
    static func open(_ address: ListenAddress) throws(HTTPServerError) -> (descriptor: Int32, bound: ListenAddress) {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_protocol = Int32(IPPROTO_TCP)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(address.host, String(address.port), &hints, &list)
        guard status == 0, let list else {
            let reason = status == EAI_SYSTEM ? errnoText(errno) : String(cString: gai_strerror(status))
            throw HTTPServerError("cannot listen on \(address): cannot resolve \"\(address.host)\": \(reason)")
        }
        defer { freeaddrinfo(list) }

        var candidates: [UnsafeMutablePointer<addrinfo>] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = list
        while let entry = cursor {
            if entry.pointee.ai_family == AF_INET || entry.pointee.ai_family == AF_INET6 {
                candidates.append(entry)
            }
            cursor = entry.pointee.ai_next
        }
        candidates.sort { ($0.pointee.ai_family == AF_INET ? 0 : 1) < ($1.pointee.ai_family == AF_INET ? 0 : 1) }
        if candidates.isEmpty {
            throw HTTPServerError("cannot listen on \(address): \"\(address.host)\" has no IPv4 or IPv6 address")
        }

        var firstFailure: String?
        for entry in candidates {
            switch bindAndListen(entry.pointee) {
            case .success(let descriptor):
                do {
                    let bound = try localAddress(of: descriptor)
                    return (descriptor, bound)
                } catch {
                    _ = close(descriptor)
                    firstFailure = firstFailure ?? error.message
                }
            case .failure(let reason):
                firstFailure = firstFailure ?? reason
            }
        }
        throw HTTPServerError("cannot listen on \(address): \(firstFailure ?? "no usable address")")
    }

    private enum Outcome {
        case success(Int32)
        case failure(String)
    }

    private static func bindAndListen(_ info: addrinfo) -> Outcome {
        // SOCK_CLOEXEC so that a child process never inherits the listener;
        // SOCK_NONBLOCK because every thread of MHD's pool polls the same
        // socket and a blocking accept() would stall the thread that lost the race.
        let kind = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
        let descriptor = socket(info.ai_family, kind, info.ai_protocol)
        if descriptor < 0 {
            return .failure(errnoText(errno))
        }
        var one: Int32 = 1
        let size = socklen_t(MemoryLayout<Int32>.size)
        // SO_REUSEADDR lets a restarted server bind while old connections sit
        // in TIME_WAIT; on Linux it does not allow two listeners on one port.
        if setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &one, size) != 0 {
            let reason = errnoText(errno)
            _ = close(descriptor)
            return .failure("setsockopt(SO_REUSEADDR) failed: \(reason)")
        }
        // An IPv6 socket takes IPv6 clients only; "::" must not silently also
        // take IPv4 as mapped addresses (the remote address would read
        // "::ffff:1.2.3.4"), whatever net.ipv6.bindv6only says.
        if info.ai_family == AF_INET6,
           setsockopt(descriptor, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, size) != 0 {
            let reason = errnoText(errno)
            _ = close(descriptor)
            return .failure("setsockopt(IPV6_V6ONLY) failed: \(reason)")
        }
        if bind(descriptor, info.ai_addr, info.ai_addrlen) != 0 {
            let reason = errnoText(errno)
            _ = close(descriptor)
            return .failure(reason)
        }
        if listen(descriptor, SOMAXCONN) != 0 {
            let reason = errnoText(errno)
            _ = close(descriptor)
            return .failure("listen() failed: \(reason)")
        }
        return .success(descriptor)
    }

    /// The numeric address and port the socket is bound to (getsockname).
    static func localAddress(of descriptor: Int32) throws(HTTPServerError) -> ListenAddress {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let status = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        if status != 0 {
            throw HTTPServerError("getsockname() failed: \(errnoText(errno))")
        }
        guard let (host, port) = numericHostAndPort(&storage, length: length) else {
            throw HTTPServerError("cannot read the bound address of the listening socket")
        }
        return ListenAddress(host: host, port: port)
    }

    static func numericHostAndPort(_ storage: inout sockaddr_storage, length: socklen_t) -> (String, Int)? {
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        var service = [CChar](repeating: 0, count: Int(NI_MAXSERV))
        let status = withUnsafePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                getnameinfo($0, length, &host, socklen_t(host.count), &service, socklen_t(service.count),
                            NI_NUMERICHOST | NI_NUMERICSERV)
            }
        }
        guard status == 0 else { return nil }
        let hostText = host.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        let serviceText = service.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        guard let port = Int(serviceText) else { return nil }
        return (hostText, port)
    }
}

/// strerror() text for an errno value, e.g. "Address already in use".
func errnoText(_ code: Int32) -> String {
    String(cString: strerror(code))
}
