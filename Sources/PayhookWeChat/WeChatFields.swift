public import PayhookCore

/// The documented shape of WeChat Pay v2 fields, checked after a notification verified (README, "WeChat Pay
/// v2 notifications"; docs/limits.md, "What a WeChat v2 refund notification proves").
///
/// For payment results the signature covers every field, but the signed string `a=1&b=2&…` has no escaping,
/// so `attach=x&bank_type=CFT` in one element signs the same as two elements: fields that never hold `&` or
/// `=` are refused when they do. For refund results nothing is signed at all: `req_info` is AES-256-ECB, whose
/// blocks can be cut and pasted between and within genuine ciphertexts, so the decrypted document must have
/// exactly the documented shape before it is believed.
public enum WeChatFields {
    // MARK: - Character classes

    /// An id WeChat assigns (`transaction_id`, `refund_id`): digits only, 20 to 32 of them.
    ///
    /// The documentation says at most 32; every id in its samples and in real notifications has 28 or 29
    /// digits. The lower bound is what stops a whole 16-byte ciphertext block of digits being moved out of one of
    /// these ids into `out_refund_no`: the id left behind would have at most 16 digits.
    public static func isWeChatID(_ text: String, minimumLength: Int = minimumIDLength) -> Bool {
        let bytes = text.utf8
        return bytes.count >= minimumLength && bytes.count <= 32 && bytes.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
    }

    public static let minimumIDLength = 20

    /// A merchant's own number (`out_trade_no` at most 32, `out_refund_no` at most 64): digits, ASCII letters
    /// and `_ - | * @`, the set WeChat's order and refund APIs accept.
    public static func isMerchantNumber(_ text: String, maxLength: Int) -> Bool {
        let bytes = text.utf8
        guard !bytes.isEmpty, bytes.count <= maxLength else { return false }
        return bytes.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "A")...UInt8(ascii: "Z"):
                return true
            default:
                return "_-|*@".utf8.contains(byte)
            }
        }
    }

    /// True when the text holds a byte that would let it stand for several `name=value` pairs of the signed
    /// string.
    static func holdsSeparator(_ text: String) -> Bool {
        text.utf8.contains { $0 == UInt8(ascii: "&") || $0 == UInt8(ascii: "=") }
    }

    /// True when the text holds markup characters. No documented refund field does; a spliced ciphertext block
    /// that lands across an element boundary leaves them inside a CDATA value.
    static func holdsMarkup(_ text: String) -> Bool {
        text.utf8.contains { $0 == UInt8(ascii: "<") || $0 == UInt8(ascii: ">") }
    }

    // MARK: - Times

    /// `yyyyMMddHHmmss` (`time_end`) or `yyyy-MM-dd HH:mm:ss` (`success_time`), Beijing time, to Unix
    /// milliseconds (``BeijingTime``, shared with Alipay, which writes its times the same way).
    public static func beijingTime(_ text: String, dashed: Bool) -> Int64? {
        BeijingTime.milliseconds(text, dashed: dashed)
    }

    // MARK: - Payment results

    /// Fields of a payment result that are ids, amounts, codes or times, never free text, so never hold `&` or
    /// `=` (README, "WeChat Pay v2 notifications"). `attach`, `err_code_des`, `return_msg` and fields WeChat may add are free text.
    static let structuredPaymentFields: Set<String> = [
        "return_code", "appid", "mch_id", "sub_appid", "sub_mch_id", "device_info", "nonce_str", "sign_type",
        "result_code", "err_code", "openid", "sub_openid", "is_subscribe", "sub_is_subscribe", "trade_type",
        "bank_type", "total_fee", "settlement_total_fee", "fee_type", "cash_fee", "cash_fee_type", "coupon_fee",
        "coupon_count", "transaction_id", "out_trade_no", "time_end",
    ]

    /// `coupon_type_$n`, `coupon_id_$n`, `coupon_fee_$n`: structured too.
    static func isStructuredPaymentField(_ name: String) -> Bool {
        if structuredPaymentFields.contains(name) { return true }
        for prefix in ["coupon_type_", "coupon_id_", "coupon_fee_"] where name.hasPrefix(prefix) {
            let index = name.dropFirst(prefix.count)
            if !index.isEmpty, index.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) { return true }
        }
        return false
    }

    /// What a successful payment result always carries (README, "WeChat Pay v2 notifications"). Requiring them means a field cannot
    /// be folded into a free-text neighbour (`attach=x&bank_type=CFT`) without the notification being refused.
    static let requiredForSuccessfulPayment = [
        "appid", "mch_id", "nonce_str", "result_code", "openid", "trade_type", "bank_type", "total_fee", "cash_fee",
        "transaction_id", "out_trade_no", "time_end",
    ]

    /// Checks the fields of a verified payment result. Returns `time_end` in Unix milliseconds (nil when the
    /// result has none), or the first problem.
    static func checkPayment(_ values: [String: String], elements: [FlatXMLElement]) -> Result<Int64?, SemanticFailure> {
        for element in elements where isStructuredPaymentField(element.name) && holdsSeparator(element.text) {
            return .failure(SemanticFailure("\(element.name) holds '&' or '=', which no such field does (a merged signed string)"))
        }
        if values["result_code"] == "SUCCESS" {
            for name in requiredForSuccessfulPayment where (values[name] ?? "").isEmpty {
                return .failure(SemanticFailure("required field \(name) is missing or empty"))
            }
        }
        if let outTradeNo = values["out_trade_no"], !isMerchantNumber(outTradeNo, maxLength: 32) {
            return .failure(SemanticFailure("out_trade_no is not 1 to 32 of [0-9A-Za-z_-|*@]"))
        }
        // Signed, so no block can have been moved: only the documented bound applies.
        if let transaction = values["transaction_id"], !transaction.isEmpty, !isWeChatID(transaction, minimumLength: 1) {
            return .failure(SemanticFailure("transaction_id is not at most 32 digits"))
        }
        for name in ["cash_fee", "settlement_total_fee", "coupon_fee"] {
            if let amount = values[name], !amount.isEmpty, DecimalDigits.nonNegative(amount) == nil {
                return .failure(SemanticFailure("\(name) is not a non-negative integer"))
            }
        }
        guard let timeEnd = values["time_end"], !timeEnd.isEmpty else { return .success(nil) }
        guard let time = beijingTime(timeEnd, dashed: false) else {
            return .failure(SemanticFailure("time_end is not yyyyMMddHHmmss"))
        }
        return .success(time)
    }

    // MARK: - Refund results

    /// The decrypted refund document, checked field by field.
    public struct Refund: Sendable, Equatable {
        public var outRefundNo: String
        public var outTradeNo: String
        public var status: String
        public var refundFee: Int64
        /// `success_time` in Unix milliseconds; present exactly when the refund succeeded.
        public var successTime: Int64?
    }

    static let refundStatuses: Set<String> = ["SUCCESS", "CHANGE", "REFUNDCLOSE"]
    static let refundAccounts: Set<String> = ["REFUND_SOURCE_RECHARGE_FUNDS", "REFUND_SOURCE_UNSETTLED_FUNDS"]
    static let refundRequestSources: Set<String> = ["API", "VENDOR_PLATFORM"]
    /// Every field the refund notification documents as always present (README, "WeChat Pay v2 notifications").
    public static let requiredRefundFields = [
        "transaction_id", "out_trade_no", "refund_id", "out_refund_no", "total_fee", "refund_fee",
        "settlement_refund_fee", "refund_status", "refund_recv_accout", "refund_account", "refund_request_source",
    ]

    /// Checks a decrypted `req_info` document: every required field present and non-empty, every documented
    /// field in its documented format, no markup in any value. Fields not documented are kept as they are.
    /// (Duplicate elements never get here: FlatXML refuses them.)
    public static func checkRefund(_ fields: [FlatXMLElement]) -> Result<Refund, SemanticFailure> {
        var values: [String: String] = [:]
        for field in fields {
            if holdsMarkup(field.text) { return .failure(SemanticFailure("\(field.name) holds '<' or '>'")) }
            values[field.name] = field.text
        }
        for name in requiredRefundFields where (values[name] ?? "").isEmpty {
            return .failure(SemanticFailure("required field \(name) is missing or empty"))
        }
        let get = { (name: String) in values[name] ?? "" }
        for name in ["transaction_id", "refund_id"] where !isWeChatID(get(name)) {
            return .failure(SemanticFailure("\(name) is not 20 to 32 digits"))
        }
        guard isMerchantNumber(get("out_trade_no"), maxLength: 32) else {
            return .failure(SemanticFailure("out_trade_no is not 1 to 32 of [0-9A-Za-z_-|*@]"))
        }
        guard isMerchantNumber(get("out_refund_no"), maxLength: 64) else {
            return .failure(SemanticFailure("out_refund_no is not 1 to 64 of [0-9A-Za-z_-|*@]"))
        }
        var amounts: [String: Int64] = [:]
        for name in ["total_fee", "refund_fee", "settlement_refund_fee", "settlement_total_fee"] {
            guard let text = values[name] else { continue }
            guard let amount = DecimalDigits.nonNegative(text) else {
                return .failure(SemanticFailure("\(name) is not a non-negative integer number of fen"))
            }
            amounts[name] = amount
        }
        let total = amounts["total_fee"]!, refund = amounts["refund_fee"]!, settlementRefund = amounts["settlement_refund_fee"]!
        guard refund <= total else { return .failure(SemanticFailure("refund_fee is larger than total_fee")) }
        guard settlementRefund <= refund else {
            return .failure(SemanticFailure("settlement_refund_fee is larger than refund_fee"))
        }
        if let settlementTotal = amounts["settlement_total_fee"], settlementTotal > total {
            return .failure(SemanticFailure("settlement_total_fee is larger than total_fee"))
        }
        let status = get("refund_status")
        guard refundStatuses.contains(status) else {
            return .failure(SemanticFailure("refund_status is not SUCCESS, CHANGE or REFUNDCLOSE"))
        }
        guard refundAccounts.contains(get("refund_account")) else {
            return .failure(SemanticFailure("refund_account is not a documented value"))
        }
        guard refundRequestSources.contains(get("refund_request_source")) else {
            return .failure(SemanticFailure("refund_request_source is not API or VENDOR_PLATFORM"))
        }
        var successTime: Int64?
        if let text = values["success_time"] {
            guard let time = beijingTime(text, dashed: true) else {
                return .failure(SemanticFailure("success_time is not yyyy-MM-dd HH:mm:ss"))
            }
            successTime = time
        }
        // WeChat fills success_time when the money has moved; a SUCCESS without it is not a document it sends.
        if status == "SUCCESS", successTime == nil {
            return .failure(SemanticFailure("refund_status SUCCESS without success_time"))
        }
        return .success(Refund(
            outRefundNo: get("out_refund_no"), outTradeNo: get("out_trade_no"), status: status, refundFee: refund,
            successTime: successTime))
    }

    /// One failed field check, as a sentence for the log.
    public struct SemanticFailure: Error, Sendable, Equatable {
        public let message: String
        init(_ message: String) { self.message = message }
    }

    // MARK: - Ciphertext

    /// True when two 16-byte blocks of the ciphertext are equal. A genuine `req_info` never repeats a block (its
    /// plaintext is one short document with distinct tags), while inserting a copy of one of its own blocks is
    /// the cheapest way to splice a new value into an ECB ciphertext.
    public static func repeatsBlock(_ ciphertext: [UInt8]) -> Bool {
        struct Block: Hashable {
            let high: UInt64
            let low: UInt64
        }
        var seen = Set<Block>()
        seen.reserveCapacity(ciphertext.count / 16)
        var offset = 0
        while offset + 16 <= ciphertext.count {
            var high: UInt64 = 0
            var low: UInt64 = 0
            for k in 0..<8 { high = high << 8 | UInt64(ciphertext[offset + k]) }
            for k in 8..<16 { low = low << 8 | UInt64(ciphertext[offset + k]) }
            if !seen.insert(Block(high: high, low: low)).inserted { return true }
            offset += 16
        }
        return false
    }
}
