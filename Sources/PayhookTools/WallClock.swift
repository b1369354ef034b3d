import Foundation

/// "Now" in Unix milliseconds: the default time of a built or checked callback (tests pin their own).
public enum WallClock {
    public static func milliseconds() -> Int64 {
        Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
    }
}
