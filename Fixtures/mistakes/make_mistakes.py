#!/usr/bin/env python3
"""Writes callbacks signed the wrong way, one per common integration mistake, for `payhook verify`.

Each is signed with the demo config's own key, but by a sender that made the mistake in its name.
Run from anywhere: python3 Fixtures/mistakes/make_mistakes.py
"""
import hashlib
import hmac
import os
import sys
from urllib.parse import quote, quote_plus

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "unified"))
import make_samples  # noqa: E402

KEY = open(os.path.join(HERE, "..", "secrets", "wechat.key"), encoding="utf-8").read().strip()
FIELDS = [
    ("appid", "wx2421b1c4370ec43b"), ("attach", "支付测试"), ("bank_type", "CFT"), ("cash_fee", "1"),
    ("device_info", ""), ("fee_type", "CNY"), ("mch_id", "10000100"), ("nonce_str", "5d2b6c2a8db53831f7eda20af46e531c"),
    ("openid", "oUpF8uMEb4qRXf22hE3X68TekukE"), ("out_trade_no", "mistake-1001"), ("result_code", "SUCCESS"),
    ("return_code", "SUCCESS"), ("time_end", "20260101120000"), ("total_fee", "101"), ("trade_type", "JSAPI"),
    ("transaction_id", "4200000000202601010000000001"),
]


def string(fields, key, keep_empty=False, encode=False):
    pairs = sorted((k, v) for k, v in fields if keep_empty or v != "")
    return "&".join(f"{k}={quote(v, safe='') if encode else v}" for k, v in pairs) + "&key=" + key


def md5(s):
    return hashlib.md5(s.encode()).hexdigest().upper()


def hmac256(s, key):
    return hmac.new(key.encode(), s.encode(), hashlib.sha256).hexdigest().upper()


def xml(fields, sign):
    return "<xml>" + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields + [("sign", sign)]) + "</xml>"


def write(name, text):
    with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
        f.write(text + "\n")


def main():
    # device_info is empty; the sender kept it as "device_info=&" in the string.
    write("wechat-empty-value-signed.xml", xml(FIELDS, md5(string(FIELDS, KEY, keep_empty=True))))
    # attach URL-encoded before signing.
    write("wechat-url-encoded-value.xml", xml(FIELDS, md5(string(FIELDS, KEY, encode=True))))
    # sign_type HMAC-SHA256 sent, but left out of the string the sender signed.
    typed = FIELDS + [("sign_type", "HMAC-SHA256")]
    write("wechat-sign-type-not-signed.xml", xml(typed, hmac256(string(FIELDS, KEY), KEY)))
    # Signed with the merchant's APIv3 key (also 32 characters) instead of the APIv2 key.
    v3 = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"
    write("wechat-v3-key-used.xml", xml(FIELDS, md5(string(FIELDS, v3))))
    # Unified: the sender signed payTypeName URL-encoded.
    params = [("money", "100"), ("requestKey", "mistake-2001"), ("payTime", "1767225600000"), ("orderSn", "SN2001"),
              ("payTypeCode", "Wechat"), ("payTypeName", "微信支付"), ("currencyType", "CNY"), ("payStatus", "SUCCESSPAY"),
              ("domainCode", "demo")]
    encoded = [(k, quote_plus(v)) for k, v in params]
    sign = make_samples.values_sha1(encoded, make_samples.secret("demo.secret"))
    write("unified-url-encoded-value.query", make_samples.query(params + [("sign", sign)]))


if __name__ == "__main__":
    main()
