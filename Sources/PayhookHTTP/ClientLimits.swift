import PayhookLock

/// What every daemon of one `HTTPServer` shares: the per-address counts behind `maxConnectionsPerIP` when
/// `trustedProxies` is set, and the count of unusable forwarding headers. One instance per server, so a
/// client is counted once whichever listen address it reached (docs/proxy.md).
final class ClientLimits: Sendable {
    struct State: Sendable {
        /// Concurrent requests per forwarded client address (requests from trusted proxies).
        var forwarded: [String: Int] = [:]
        /// Open connections per direct (untrusted) peer address, by connection.
        var direct: [String: Int] = [:]
        var directByConnection: [Int: String] = [:]
        var malformedHeaders = 0
    }

    let trusted: TrustedProxies
    /// 0: no limit.
    let perAddress: Int
    let state = Locked(State())

    init(trusted: TrustedProxies, perAddress: Int) {
        self.trusted = trusted
        self.perAddress = perAddress
    }

    /// Whether payhook, not libmicrohttpd, applies the per-address limit: only with trusted proxies, whose
    /// connections must not count as one address (MHD_OPTION_PER_IP_CONNECTION_LIMIT cannot exempt a peer).
    var ownsPerAddressLimit: Bool { !trusted.isEmpty && perAddress > 0 }

    // MARK: Direct peers, at accept time

    /// The accept policy (MHD_AcceptPolicyCallback): a trusted proxy always gets in; any other peer only
    /// while it has fewer than `perAddress` open connections. The count is kept by `opened`/`closed`
    /// (MHD_OPTION_NOTIFY_CONNECTION), which never miss a connection, so a slot can never leak; two pool
    /// threads accepting from one address at the same instant may both pass, so the limit can be passed by
    /// at most the number of pool threads minus one, for as long as those connections stay open.
    func admits(_ peer: IPAddress) -> Bool {
        if trusted.contains(peer) { return true }
        let key = peer.description
        return state.withLock { ($0.direct[key] ?? 0) < perAddress }
    }

    func opened(_ connection: Int, peer: String) {
        guard ownsPerAddressLimit, let address = IPAddress.parse(peer), !trusted.contains(address) else { return }
        let key = address.description
        state.withLock { state in
            state.direct[key, default: 0] += 1
            state.directByConnection[connection] = key
        }
    }

    func closed(_ connection: Int) {
        guard ownsPerAddressLimit else { return }
        state.withLock { state in
            guard let key = state.directByConnection.removeValue(forKey: connection) else { return }
            let left = (state.direct[key] ?? 1) - 1
            state.direct[key] = left > 0 ? left : nil
        }
    }

    // MARK: Forwarded clients, per request

    /// Takes one of `address`'s request slots; false when it already has `perAddress` requests in flight.
    func acquire(_ address: String) -> Bool {
        guard perAddress > 0 else { return true }
        return state.withLock { state in
            let now = state.forwarded[address] ?? 0
            guard now < perAddress else { return false }
            state.forwarded[address] = now + 1
            return true
        }
    }

    func release(_ address: String) {
        state.withLock { state in
            let left = (state.forwarded[address] ?? 1) - 1
            state.forwarded[address] = left > 0 ? left : nil
        }
    }

    /// Requests in flight from `address` through a trusted proxy.
    func forwardedCount(_ address: String) -> Int {
        state.withLock { $0.forwarded[address] ?? 0 }
    }

    // MARK: Unusable headers

    /// Counts one unusable X-Forwarded-For / X-Real-IP; true for the first one, which alone is logged at
    /// warning level, so a client sending garbage on every request cannot flood the log.
    func countMalformed() -> Bool {
        state.withLock { state in
            state.malformedHeaders += 1
            return state.malformedHeaders == 1
        }
    }

    var malformedHeaders: Int { state.withLock { $0.malformedHeaders } }
}
