import CPayhookShim

/// payhook's version, shown by `payhook --version` and in `payhook_build_info`.
public enum PayhookVersion {
    public static let current = "0.1.0"
    /// The git commit the binary was built from, or "unknown" for a build outside the Makefile (docs/deploy.md).
    public static let commit = String(cString: payhook_build_commit())
    /// The day it was built (YYYY-MM-DD, UTC), or "unknown".
    public static let buildDate = String(cString: payhook_build_date())
    /// What `payhook --version` prints after the command's name: `0.1.0 (commit 1ea8276, built 2026-12-04)`.
    public static let description = "\(current) (commit \(commit), built \(buildDate))"
}
