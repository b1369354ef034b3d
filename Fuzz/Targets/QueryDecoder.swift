// Fuzz target: FormQuery.decode, the strict query decoder every unified callback goes through.
//
// Properties, for any input:
// 1. decode never traps;
// 2. it agrees exactly with `referenceDecode`, a direct transcription of the documented rules (same
//    parameters, or an error of the same kind);
// 3. anything accepted has only printable ASCII on the wire, one parameter per non-empty `&` piece,
//    non-empty unique names;
// 4. every decoded list, re-encoded by an independent encoder (minimal escaping, or everything escaped
//    in upper- or lowercase hex), decodes back to itself, byte for byte.

import PayhookCore

@_cdecl("LLVMFuzzerTestOneInput")
public func queryDecoderFuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = fuzzBytes(data, size)
    // The listener hands sources a String; invalid UTF-8 arrives repaired, so fuzz that same path.
    let query = String(decoding: bytes, as: UTF8.self)

    let actual: Result<[FormParameter], FormQueryError>
    do {
        actual = .success(try FormQuery.decode(query))
    } catch {
        actual = .failure(error)
    }

    let expected = referenceDecode(Array(query.utf8))
    switch (actual, expected) {
    case (.success(let got), .success(let want)):
        if !exactly(got, want) { violated("decode differs from the documented rules", "\(got) vs \(want)") }
    case (.failure(let error), .failure(let kind)):
        if ReferenceError(error) != kind { violated("decode refused for another reason than the rules give", "\(error) vs \(kind)") }
    case (.success(let got), .failure(let kind)):
        violated("decode accepted what the rules refuse", "\(kind): \(got)")
    case (.failure(let error), .success):
        violated("decode refused what the rules accept", "\(error)")
    }

    guard case .success(let parameters) = actual else { return 0 }
    if let bad = query.utf8.first(where: { !(0x21...0x7e).contains($0) }) {
        violated("a query with an unencoded byte was accepted", "0x\(String(bad, radix: 16))")
    }
    let pieces = query.utf8.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true).count
    if parameters.count != pieces { violated("one parameter per non-empty piece", "\(parameters.count) for \(pieces)") }
    if Set(parameters.map(\.name)).count != parameters.count || parameters.contains(where: { $0.name.isEmpty }) {
        violated("names must be non-empty and unique")
    }
    // One encoder per input, picked from its bytes: over a run every encoder meets every shape.
    var choices = Choices(bytes)
    let encoding = FormEncoding.allCases[choices.below(FormEncoding.allCases.count)]
    let again = formQuery(parameters, encoding: encoding)
    guard let decoded = try? FormQuery.decode(again) else { violated("re-encoded query refused", "\(encoding): \(again)") }
    if !exactly(decoded, parameters) { violated("re-encoded query decodes differently", "\(encoding): \(again)") }
    return 0
}

/// The error kinds of the documented rules; the parameter named in a message is not compared.
enum ReferenceError: Error, Equatable {
    case badEscape, notUTF8, badCharacter, emptyName, repeatedName

    init(_ error: FormQueryError) {
        switch error {
        case .badEscape: self = .badEscape
        case .notUTF8: self = .notUTF8
        case .badCharacter: self = .badCharacter
        case .emptyName: self = .emptyName
        case .repeatedName: self = .repeatedName
        }
    }
}

/// The README's and FormQuery's documented rules, applied in their stated order: pairs split on `&`
/// (empty ones skipped), the first `=` splits name from value, `+` is a space, `%XX` a byte, printable
/// ASCII other than those kept, anything else refused, the name decoded before the value, the bytes
/// must be UTF-8, names non-empty and not repeated.
func referenceDecode(_ query: [UInt8]) -> Result<[FormParameter], ReferenceError> {
    var out: [FormParameter] = []
    var pieces: [[UInt8]] = [[]]
    for byte in query {
        if byte == UInt8(ascii: "&") { pieces.append([]) } else { pieces[pieces.count - 1].append(byte) }
    }
    for piece in pieces where !piece.isEmpty {
        let eq = piece.firstIndex(of: UInt8(ascii: "=")) ?? piece.count
        let rawName = Array(piece[..<eq])
        let rawValue = eq < piece.count ? Array(piece[(eq + 1)...]) : []
        let name: String
        switch component(rawName) {
        case .failure(let kind): return .failure(kind)
        case .success(let text): name = text
        }
        if name.isEmpty { return .failure(.emptyName) }
        let value: String
        switch component(rawValue) {
        case .failure(let kind): return .failure(kind)
        case .success(let text): value = text
        }
        // Repeated means equal as Swift strings (canonical equivalence), as the sources key their
        // dictionaries: two spellings of one name would otherwise collide there.
        if out.contains(where: { $0.name == name }) { return .failure(.repeatedName) }
        out.append(FormParameter(name: name, value: value))
    }
    return .success(out)
}

private func component(_ raw: [UInt8]) -> Result<String, ReferenceError> {
    var bytes: [UInt8] = []
    var k = 0
    while k < raw.count {
        let c = raw[k]
        if c == UInt8(ascii: "%") {
            guard k + 2 < raw.count, let high = hexDigit(raw[k + 1]), let low = hexDigit(raw[k + 2]) else {
                return .failure(.badEscape)
            }
            bytes.append(high * 16 + low)
            k += 3
        } else if c == UInt8(ascii: "+") {
            bytes.append(UInt8(ascii: " "))
            k += 1
        } else if c > 0x20 && c < 0x7f {
            bytes.append(c)
            k += 1
        } else {
            return .failure(.badCharacter)
        }
    }
    guard let text = String(validating: bytes, as: UTF8.self) else { return .failure(.notUTF8) }
    return .success(text)
}

private func hexDigit(_ c: UInt8) -> UInt8? {
    switch c {
    case 0x30...0x39: return c - 0x30
    case 0x41...0x46: return c - 0x41 + 10
    case 0x61...0x66: return c - 0x61 + 10
    default: return nil
    }
}
