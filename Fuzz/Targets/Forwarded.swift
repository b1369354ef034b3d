// Fuzz target: the X-Forwarded-For / X-Real-IP rules behind `trusted_proxies` (docs/proxy.md), and the IP and
// CIDR parsing they rest on. Header values come from any client a trusted proxy forwards, so they are hostile.
//
// Properties, for any input:
// 1. nothing traps;
// 2. an accepted IP address prints canonically and parses back to the same bytes; an accepted CIDR block
//    contains its own network and parses back from its description;
// 3. from an untrusted peer the headers are never read (`.direct`), whatever they hold;
// 4. from a trusted peer the answer is exactly what an independent reading of the rules gives: the
//    X-Forwarded-For fields in order as one comma list of bare addresses (spaces and tabs around each),
//    right-most untrusted (else left-most) taken, reading only as far as that one; without it, one X-Real-IP;
//    anything unreadable that the reading reaches: malformed.

import PayhookHTTP

@_cdecl("LLVMFuzzerTestOneInput")
public func forwardedFuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = fuzzBytes(data, size)
    // The listener hands header values over as Strings (MHD's bytes, repaired as UTF-8): fuzz that same path.
    let text = String(decoding: bytes, as: UTF8.self)

    if let address = IPAddress.parse(text) {
        let printed = address.description
        guard let again = IPAddress.parse(printed), again == address, again.description == printed else {
            violated("an address does not print back canonically", printed)
        }
    }
    if let block = try? CIDRBlock.parse(text) {
        if !block.contains(block.network) { violated("a block does not contain its network", "\(block)") }
        guard let again = try? CIDRBlock.parse(block.description), again == block else {
            violated("a block does not parse back from its description", "\(block)")
        }
    }

    // Lines are header fields; the first byte of each picks its name (so mutations reach every mix of them).
    var headers: [(name: String, value: String)] = []
    for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
        let names = ["X-Forwarded-For", "x-forwarded-for", "X-Real-IP", "X-REAL-IP", "Via"]
        let pick = Int(line.utf8.first ?? 0) % names.count
        headers.append((name: names[pick], value: String(line.dropFirst())))
    }
    let trusted = TrustedProxies([try! CIDRBlock.parse("127.0.0.1/32"), try! CIDRBlock.parse("10.0.0.0/8"),
                                  try! CIDRBlock.parse("::1/128"), try! CIDRBlock.parse("fd00::/8")])

    if trusted.clientAddress(peer: "192.0.2.1", headers: headers) != .direct {
        violated("an untrusted peer's headers were read")
    }
    let actual = trusted.clientAddress(peer: "127.0.0.1", headers: headers)
    let expected = reference(headers, trusted: trusted)
    if actual != expected { violated("the forwarded address differs from the rules", "\(actual) vs \(expected)") }
    return 0
}

/// The rules of docs/proxy.md, read independently: names compared case-insensitively as ASCII.
private func reference(_ headers: [(name: String, value: String)], trusted: TrustedProxies) -> ForwardedAddress {
    func lower(_ text: String) -> [UInt8] {
        text.utf8.map { $0 >= 0x41 && $0 <= 0x5a ? $0 + 0x20 : $0 }
    }
    let forwarded = headers.filter { lower($0.name) == Array("x-forwarded-for".utf8) }.map(\.value)
    let realIP = headers.filter { lower($0.name) == Array("x-real-ip".utf8) }.map(\.value)
    func element(_ raw: [UInt8]) -> IPAddress? {
        var slice = raw[...]
        while let first = slice.first, first == 0x20 || first == 0x09 { slice = slice.dropFirst() }
        while let last = slice.last, last == 0x20 || last == 0x09 { slice = slice.dropLast() }
        return IPAddress.parse(String(decoding: slice, as: UTF8.self))
    }
    if !forwarded.isEmpty {
        // Every element, unparsed, in order; then read from the right only as far as the client.
        var pieces: [[UInt8]] = []
        for value in forwarded {
            var piece: [UInt8] = []
            for byte in Array(value.utf8) + [0x2c] {
                if byte == 0x2c {
                    pieces.append(piece)
                    piece = []
                } else {
                    piece.append(byte)
                }
            }
        }
        var index = pieces.count - 1
        while true {
            guard let address = element(pieces[index]) else { return .malformed(header: "X-Forwarded-For") }
            if !trusted.contains(address) || index == 0 { return .forwarded(address) }
            index -= 1
        }
    }
    if realIP.count == 1, let address = element(Array(realIP[0].utf8)) { return .forwarded(address) }
    return realIP.isEmpty ? .absent : .malformed(header: "X-Real-IP")
}
