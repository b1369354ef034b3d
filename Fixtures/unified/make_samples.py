#!/usr/bin/env python3
"""Writes the signed sample callbacks in this folder (one raw query string per file).

An implementation of both unified signing rules independent of payhook's Swift code (docs/protocols.md
§2.3 values-sha1, §2.4 salted-sha1 over decoded values), so the tests that verify these samples
check one implementation against another. Run from anywhere: python3 Fixtures/unified/make_samples.py
"""
import hashlib
import os
from urllib.parse import quote_plus

HERE = os.path.dirname(os.path.abspath(__file__))


def secret(name):
    with open(os.path.join(HERE, "..", "secrets", name), encoding="utf-8") as f:
        return f.read().strip()


def values_sha1(params, key):
    values = [v for k, v in params if k != "sign" and v != ""] + [key]
    # Java String.compareTo order: UTF-16 code units.
    values.sort(key=lambda s: s.encode("utf-16-be"))
    return hashlib.sha1("".join(values).encode("utf-8")).hexdigest()


def salted_sha1(params, key):
    pairs = sorted((k, v) for k, v in params if k != "sign" and v != "")
    pairs.sort(key=lambda kv: kv[0].encode("utf-8"))
    text = key + "&".join(f"{k}={v}" for k, v in pairs) + key
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def query(params):
    return "&".join(f"{k}={quote_plus(v)}" for k, v in params)


def write(name, params):
    with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
        f.write(query(params) + "\n")


def base(**changes):
    params = [
        ("money", "100"),
        ("requestKey", "demo-order-1001"),
        ("payTime", "1767225600000"),
        ("orderSn", "20260101000000000001"),
        ("payTypeCode", "Wechat"),
        ("payTypeName", "微信支付"),
        ("currencyType", "CNY"),
        ("payStatus", "SUCCESSPAY"),
        ("domainCode", "demo"),
    ]
    return [(k, changes.get(k, v)) for k, v in params]


def signed(params, sign):
    return params + [("sign", sign(params))]


def main():
    demo = secret("demo.secret")
    sibling = secret("sibling.secret")
    vs = lambda p: values_sha1(p, demo)

    success = signed(base(), vs)
    write("success.query", success)
    # A retry of the same payment from another platform server: same values, other parameter order.
    write("duplicate.query", list(reversed(success)))
    # The same order refunded later: a new event (payStatus is part of the dedupe key).
    write("refund.query", signed(base(payStatus="SUCCESSREFUND", payTime="1767312000000", orderSn="20260102000000000002"), vs))
    # money changed after signing: must be refused with 401 and store nothing.
    write("tampered.query", [("money", "10000") if k == "money" else (k, v) for k, v in success])
    # Correctly signed, same dedupe key as success.query, other amount: kept for audit as a conflict.
    write("conflict.query", signed(base(money="999"), vs))
    # The second demo tenant, signed with the sibling platform's rule.
    write("sibling.query", signed(base(domainCode="sibling", requestKey="sibling-order-7"), lambda p: salted_sha1(p, sibling)))


if __name__ == "__main__":
    main()
