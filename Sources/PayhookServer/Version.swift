/// payhook's version, shown by `payhook --version` and in `payhook_build_info`.
public enum PayhookVersion {
    public static let current = "0.1.0"
}
