/// How old a callback's own payment time may be: the dedupe ledger's retention less a margin, so a key is never
/// pruned while a replay of its callback would still be accepted (README, "Replays and the ledger's
/// retention"). Every source applies it to its own time field; the config sets the retention.
public enum ReplayWindow {
    /// `ledger_retention_days` when the config file does not set it.
    public static let defaultLedgerRetentionDays = 7
    /// The margin between the ledger's retention and the oldest callback accepted: gc runs daily, and a
    /// ledger entry's age is counted from when it was written, not from the payment.
    public static let marginDays = 1

    /// The oldest payment time a callback may carry under a retention of `retentionDays`, in milliseconds.
    public static func maxCallbackAge(retentionDays: Int) -> Int64 {
        Int64(retentionDays - marginDays) * 86_400_000
    }

    public static let defaultMaxCallbackAgeMilliseconds = maxCallbackAge(retentionDays: defaultLedgerRetentionDays)
}
