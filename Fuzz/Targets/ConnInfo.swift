// Fuzz target: ConnectionString.holdsPassword, the check that keeps database passwords out of config files
// (docs/contract.md §7).
//
// Properties, for any input:
// 1. holdsPassword never traps;
// 2. whenever libpq itself (PQconninfoParse, the parser the connection uses) reads a password out of the
//    string, holdsPassword says so: no spelling (percent-encoding, case, quoting, spacing, URL shape) gets a
//    password past the config check.

import CLibPQ
import PayhookCore

@_cdecl("LLVMFuzzerTestOneInput")
public func connInfoFuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    // The config reader hands the check a String; C sees it up to its first NUL.
    let text = String(decoding: fuzzBytes(data, size).prefix { $0 != 0 }, as: UTF8.self)
    let ours = ConnectionString.holdsPassword(text)
    var error: UnsafeMutablePointer<CChar>?
    guard let options = PQconninfoParse(text, &error) else {
        if let error { PQfreemem(error) }
        return 0
    }
    defer { PQconninfoFree(options) }
    var option = options
    while let keyword = option.pointee.keyword {
        if String(cString: keyword) == "password", option.pointee.val != nil, !ours {
            violated("libpq reads a password the config check misses", text)
        }
        option += 1
    }
    return 0
}
