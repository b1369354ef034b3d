#!/usr/bin/env python3
"""An independent Alipay, XxPay and Jeepay notifier and checker (test tooling, run by the Swift tests).

Shares no code with payhook: Alipay's RSA2 (SHA256withRSA) and legacy RSA (SHA1withRSA) signatures are made and
checked with Python's `cryptography`, the MD5 `&key=` signature of XxPay and Jeepay with `hashlib`, the forms
with the standard library, from the rules in docs/contract.md §6.2 and §6.3. Keys: Fixtures/alipay (the
test-only key pair signs every fresh Alipay notification), Fixtures/secrets/xxpay.reskey and
Fixtures/secrets/jeepay.appsecret. Nothing this script prints holds a key.

  notifications SEED NOW
      print a JSON object {"cases": [...]} of fresh notifications for the tenants of
      Tests/PayhookServerTests/ProviderCrossCheckTests.swift (its constants must match those below), genuine and
      hostile, in the order they are to be sent. NOW is the server's clock in Unix seconds.

  check KIND KEYFILE [FILE]
      verify one notification, read from FILE or, without FILE (or with `-`), from standard input; exit 0 iff it
      verifies, 1 if it does not (the reason on standard error), 2 on a usage error.
        KIND     alipay | xxpay | jeepay
        KEYFILE  alipay: a PEM Alipay public key, an Alipay public-key certificate, or a private key (its public
                 half is used); xxpay: the merchant's resKey file; jeepay: the app secret file. A secret file may
                 hold several secrets, one a line (rotation): any of them verifies.
        input    one notification on one line: an application/x-www-form-urlencoded body or a query string;
                 a leading `POST ` or `GET `, and anything up to a `?` that holds no `=` (a path or a URL),
                 are skipped, as is a final line break.
      Alipay: `charset` (utf-8 unless it says gbk) decodes the values to the bytes that are signed; `sign_type`
      RSA2 (the default) or RSA; a notification with `trade_status` is checked with `sign` and `sign_type` left
      out of the signed string, one without it with `sign_type` kept, then left out (the SDKs' rsaCheckV2).
      XxPay and Jeepay: MD5 of the non-empty `name=value&` strings sorted case-insensitively, then `key=` and
      the secret, compared to `sign` case-insensitively.
      On success it prints one JSON object: the kind, the rule that verified, and the event payhook should make
      of it (source, tenant, dedupe_key, amount in fen) as far as the fields allow.

Each case of `notifications` is
  {"name", "why", "method", "path", "query": text or null, "body": text, "content_type", "expect": HTTP status,
   "answer": the exact answer body, "outcome": "stored" | "duplicate" | "conflict" | "refused",
   "key": dedupe key text or null, "id": lowercase hex SHA-256 of key or null,
   "event": null, or what the stored event holds: {"source", "tenant", "order_ref", "status", "amount",
            "currency", "verified_with", "dedupe_key", "fields": {name: value}},
   "forged": true when the signature does not verify with the tenant's key (wrong key, wrong rule, a value
             changed after signing, no usable sign), so `check` must fail it}
The target sent is `path`, then `?` and `query` when there is one. Bodies are ASCII (GBK bytes are
percent-encoded, as Alipay sends them).
"""
import base64
import binascii
import datetime
import hashlib
import hmac
import json
import os
import random
import sys
from urllib.parse import quote

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "..", "Fixtures")

# ---- the tenants the Swift test configures ------------------------------------------------------------------
ALIPAY_PATH = "/notify/alipay"
XXPAY_PATH = "/notify/xxpay"
JEEPAY_PATH = "/notify/jeepay"
# RSA2 only, UTF-8 only, seller_id pinned; its keys: A-1's Alipay public key, then the test-only key (rotation).
ALIPAY_APP = "2021000000000001"
ALIPAY_SELLER = "2088000000000001"
# RSA2 and RSA, UTF-8 and GBK; the test-only key only.
ALIPAY_LEGACY_APP = "2016000000000002"
# gateway_notifications = true; the test-only key only.
ALIPAY_GATEWAY_APP = "2021000000000003"
XXPAY_MCH = "20001223"
JEEPAY_MCH = "M1700000000"
JEEPAY_APP = "65a0b1c2d3e4f5a6b7c8d9e0"

BEIJING = datetime.timezone(datetime.timedelta(hours=8))
# The replay window under the default ledger retention, 7 days less a margin of 1 (Sources/PayhookCore/ReplayWindow.swift).
REPLAY_WINDOW_S = 6 * 86400


def fixture_bytes(*parts):
    with open(os.path.join(FIXTURES, *parts), "rb") as f:
        return f.read()


def secret(name):
    return fixture_bytes("secrets", name).decode("utf-8").strip("\r\n")


def dedupe_key(source, *parts):
    """docs/contract.md §4.6: source/part/part/…, each part percent-encoded outside RFC 3986's unreserved set."""
    return "/".join([source] + [quote(p, safe="-._~") for p in parts])


def sha256_hex(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def java_urlencode(data):
    """java.net.URLEncoder: letters, digits and `.-*_` kept, space as `+`, every other byte %XX."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    out = []
    for b in data:
        c = chr(b)
        if c.isascii() and (c.isalnum() or c in ".-*_"):
            out.append(c)
        elif c == " ":
            out.append("+")
        else:
            out.append("%%%02X" % b)
    return "".join(out)


def form(pairs, charset="utf-8"):
    """An application/x-www-form-urlencoded text of (name, value) pairs, the values' bytes in `charset`."""
    return "&".join(java_urlencode(k.encode(charset)) + "=" + java_urlencode(v.encode(charset)) for k, v in pairs)


def parse_form(text):
    """Strict form decoding to bytes: `+` is a space, %XX a byte, a malformed escape or a repeated name refused."""
    pairs = []
    seen = set()
    for piece in text.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        decoded = (percent_decode(name), percent_decode(value))
        if not decoded[0]:
            raise ValueError("empty name")
        if decoded[0] in seen:
            raise ValueError("repeated name %r" % decoded[0][:32])
        seen.add(decoded[0])
        pairs.append(decoded)
    return pairs


def percent_decode(text):
    out = bytearray()
    i = 0
    raw = text.encode("latin-1") if all(ord(c) < 256 for c in text) else text.encode("utf-8")
    while i < len(raw):
        b = raw[i]
        if b == 0x2B:
            out.append(0x20)
        elif b == 0x25:
            hexdigits = raw[i + 1:i + 3]
            if len(hexdigits) != 2 or not all(chr(h) in "0123456789abcdefABCDEF" for h in hexdigits):
                raise ValueError("malformed %-escape")
            out.append(int(hexdigits, 16))
            i += 2
        else:
            out.append(b)
        i += 1
    return bytes(out)


# ---- Alipay -------------------------------------------------------------------------------------------------

ALIPAY_DIGESTS = {"RSA2": hashes.SHA256, "RSA": hashes.SHA1}


def alipay_content(pairs, keep_sign_type=False):
    """The signed string over byte pairs: every parameter but `sign` (and `sign_type` unless kept), empty values
    dropped, sorted by name in byte order, `name=value` joined with `&`."""
    kept = [(k, v) for k, v in pairs if v and k != b"sign" and (keep_sign_type or k != b"sign_type")]
    kept.sort(key=lambda kv: kv[0])
    return b"&".join(k + b"=" + v for k, v in kept)


def alipay_sign(private_key, pairs, charset="utf-8", sign_type="RSA2", keep_sign_type=False):
    message = alipay_content([(k.encode(charset), v.encode(charset)) for k, v in pairs], keep_sign_type)
    return base64.b64encode(private_key.sign(message, padding.PKCS1v15(), ALIPAY_DIGESTS[sign_type]())).decode("ascii")


def alipay_public_key(pem):
    if b"BEGIN CERTIFICATE" in pem:
        return x509.load_pem_x509_certificate(pem).public_key()
    if b"PRIVATE KEY" in pem:
        return serialization.load_pem_private_key(pem, password=None).public_key()
    return serialization.load_pem_public_key(pem)


def fen(yuan):
    """A yuan amount as Alipay writes it, in fen; None for anything but digits with at most two decimals."""
    whole, point, fraction = yuan.partition(".")
    if not whole or not whole.isascii() or not whole.isdigit() or (len(whole) > 1 and whole[0] == "0"):
        return None
    if point and (not 1 <= len(fraction) <= 2 or not fraction.isascii() or not fraction.isdigit()):
        return None
    return int(whole) * 100 + int((fraction + "00")[:2])


# ---- XxPay and Jeepay ---------------------------------------------------------------------------------------

def java_case_insensitive_key(text):
    """Java's String.CASE_INSENSITIVE_ORDER: UTF-16 code units, each upper-cased then lower-cased, compared."""
    units = text.encode("utf-16-be")
    key = []
    for i in range(0, len(units), 2):
        c = chr(int.from_bytes(units[i:i + 2], "big"))
        upper = c.upper() if len(c.upper()) == 1 else c
        lower = upper.lower() if len(upper.lower()) == 1 else upper
        key.append(ord(lower))
    return key


def md5_sign(pairs, key):
    """XxPay's PayDigestUtil.getSign / Jeepay's JeepayKit.getSign: the non-empty `k=v&` strings sorted whole,
    case-insensitively, then `key=` + the secret; MD5, uppercase hex."""
    pieces = [k + "=" + v + "&" for k, v in pairs if v and k != "sign"]
    pieces.sort(key=java_case_insensitive_key)
    return hashlib.md5(("".join(pieces) + "key=" + key).encode("utf-8")).hexdigest().upper()


def md5_sign_byte_order(pairs, key):
    """The same sorted by name in byte order: the wrong rule, for a hostile case."""
    pieces = ["%s=%s&" % (k, v) for k, v in sorted(pairs) if v and k != "sign"]
    return hashlib.md5(("".join(pieces) + "key=" + key).encode("utf-8")).hexdigest().upper()


XXPAY_ENCODED = {"device", "subject", "param1", "param2"}


def xxpay_query(pairs):
    """XXPayUtil.genUrlParams: `k=v&…` unencoded but for device, subject, param1 and param2, which are
    URLEncoder-encoded after signing."""
    parts = []
    for k, v in pairs:
        if k in XXPAY_ENCODED:
            v = java_urlencode(v)
        else:
            assert not any(c in v for c in "&=%+ #?"), (k, v)
        parts.append(k + "=" + v)
    return "&".join(parts)


# ---- cases --------------------------------------------------------------------------------------------------

def case(name, why, path, body="", expect=200, outcome="refused", key=None, event=None, query=None, method="POST",
         content_type="application/x-www-form-urlencoded", forged=False):
    if path == JEEPAY_PATH:
        answer = "SUCCESS" if expect == 200 else "FAIL"
    else:
        answer = "success" if expect == 200 else "fail"
    return {
        "name": name, "why": why, "method": method, "path": path, "query": query, "body": body,
        "content_type": content_type, "expect": expect, "answer": answer, "outcome": outcome, "key": key,
        "id": sha256_hex(key) if key else None, "event": event, "forged": forged,
    }


class Notifier:
    def __init__(self, seed, now):
        self.rng = random.Random(seed)
        self.now = now
        self.serial = 0
        self.private_key = serialization.load_pem_private_key(
            fixture_bytes("alipay", "test-only-alipay-private-key.pem"), password=None)
        # A key no tenant holds, made for this run.
        self.stranger_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.xxpay_key = secret("xxpay.reskey")
        self.jeepay_key = secret("jeepay.appsecret")

    def digits(self, n, prefix=""):
        return prefix + "".join(self.rng.choice("0123456789") for _ in range(n - len(prefix)))

    def order(self, prefix):
        """A fresh order number, so that a case wrongly accepted shows as an event of its own."""
        self.serial += 1
        return "%s%d%03d%s" % (prefix, self.now, self.serial, self.digits(3))

    def beijing(self, seconds):
        return datetime.datetime.fromtimestamp(seconds, BEIJING).strftime("%Y-%m-%d %H:%M:%S")

    # -- Alipay ---------------------------------------------------------------------------------------------

    def trade(self, app=ALIPAY_APP, status="TRADE_SUCCESS", total="0.10", out_trade_no=None, charset="utf-8",
              seller=ALIPAY_SELLER, notify_time=None, **extra):
        """A trade_status_sync notification's parameters, in the order Alipay's A-1 lists them."""
        pairs = [
            ("gmt_create", self.beijing(self.now - 120)), ("charset", charset),
            ("seller_email", "test-only-seller@example.com"), ("subject", "测试商品 1+1 & <礼盒>"),
            ("buyer_id", self.digits(16, "2088")), ("invoice_amount", total),
            ("notify_id", self.digits(34, "2024")),
            ("fund_bill_list", json.dumps([{"amount": total, "fundChannel": "ALIPAYACCOUNT"}], separators=(",", ":"))),
            ("notify_type", "trade_status_sync"), ("trade_status", status), ("receipt_amount", total),
            ("buyer_pay_amount", total), ("sign_type", "RSA2"), ("app_id", app), ("seller_id", seller),
            ("gmt_payment", self.beijing(self.now - 100)),
            ("notify_time", notify_time or self.beijing(self.now - 5)), ("version", "1.0"),
            ("out_trade_no", out_trade_no or self.order("A")), ("total_amount", total),
            ("trade_no", self.digits(28, "2024")), ("auth_app_id", app), ("buyer_logon_id", "tes***@example.com"),
            ("point_amount", "0.00"), ("passback_params", ""),
        ]
        if seller is None:
            pairs = [(k, v) for k, v in pairs if k != "seller_id"]
        return self.update(pairs, extra)

    @staticmethod
    def update(pairs, extra):
        pairs = list(pairs)
        for k, v in extra.items():
            for i, (name, _) in enumerate(pairs):
                if name == k:
                    if v is None:
                        del pairs[i]
                    else:
                        pairs[i] = (k, v)
                    break
            else:
                if v is not None:
                    pairs.append((k, v))
        return pairs

    def signed(self, pairs, charset="utf-8", sign_type="RSA2", keep_sign_type=False, signing_key=None, sign_at=12):
        """The wire body and its `sign`, put at index `sign_at`, somewhere in the middle as Alipay's HashMap order
        puts it."""
        sign = alipay_sign(signing_key or self.private_key, pairs, charset, sign_type, keep_sign_type)
        wire = list(pairs)
        wire.insert(min(sign_at, len(wire)), ("sign", sign))
        return form(wire, charset), sign

    @staticmethod
    def trade_event(pairs, key, verified_with="rsa2", keep_sign_type=False):
        values = dict(pairs)
        fields = {k: v for k, v in pairs if v and k != "sign" and (keep_sign_type or k != "sign_type")}
        return {
            "source": "alipay.trade", "tenant": values["app_id"], "order_ref": values["out_trade_no"],
            "status": values["trade_status"], "amount": fen(values["total_amount"]), "currency": "CNY",
            "verified_with": verified_with, "dedupe_key": key, "fields": fields,
        }

    # -- XxPay ----------------------------------------------------------------------------------------------

    def xxpay(self, status="2", amount="1", out=None, paid_ms=None, **extra):
        pairs = [
            ("payOrderId", self.digits(24, "P0")), ("mchId", XXPAY_MCH), ("mchOrderNo", out or self.order("G")),
            ("channelId", "WX_JSAPI"), ("amount", amount), ("currency", "cny"), ("status", status),
            ("clientIp", "114.112.124.236"), ("device", "WEB"), ("subject", "XXPAY捐助商品 G_0001+"),
            ("channelOrderNo", self.digits(28, "42")), ("param1", ""), ("param2", ""),
            ("paySuccTime", str(paid_ms if paid_ms is not None else self.now * 1000 - 60_000)), ("backType", "2"),
        ]
        return self.update(pairs, extra)

    @staticmethod
    def md5_event(source, tenant, pairs, key, order_name, status_name):
        values = dict(pairs)
        return {
            "source": source, "tenant": tenant, "order_ref": values[order_name], "status": values[status_name],
            "amount": int(values["amount"]), "currency": values.get("currency", "cny").upper() or "CNY",
            "verified_with": "md5", "dedupe_key": key, "fields": {k: v for k, v in pairs if v and k != "sign"},
        }

    # -- Jeepay ---------------------------------------------------------------------------------------------

    def jeepay(self, state="2", amount="100", out=None, req_ms=None, **extra):
        pairs = [
            ("payOrderId", self.digits(19, "P2024")), ("mchNo", JEEPAY_MCH), ("appId", JEEPAY_APP),
            ("mchOrderNo", out or self.order("J")), ("ifCode", "wxpay"), ("wayCode", "WX_JSAPI"), ("amount", amount),
            ("currency", "cny"), ("state", state), ("clientIp", "127.0.0.1"), ("subject", "商品标题 & 说明"),
            ("body", "商品描述 100%"), ("channelOrderNo", self.digits(28, "42")), ("errCode", ""), ("errMsg", ""),
            ("extParam", json.dumps({"uid": "261321239044296704", "vip": 7}, separators=(",", ":"))),
            ("successTime", str(self.now * 1000 - 30_000)), ("createdAt", str(self.now * 1000 - 90_000)),
            ("reqTime", str(req_ms if req_ms is not None else self.now * 1000 - 2_000)),
        ]
        return self.update(pairs, extra)


def alipay_cases(n):
    cases = []
    now = n.now

    def add(name, why, pairs, expect, outcome="refused", key=None, event=None, forged=False, **sign_options):
        body, _ = n.signed(pairs, **sign_options)
        cases.append(case(name, why, ALIPAY_PATH, body, expect, outcome, key, event, forged=forged))
        return body

    def trade_key(pairs):
        v = dict(pairs)
        return dedupe_key("alipay.trade", v["app_id"], v["out_trade_no"], v["trade_status"], v.get("out_biz_no", ""))

    # ---- genuine ----------------------------------------------------------------------------------------------
    first = n.trade(total="88.80")
    first_key = trade_key(first)
    add("UTF-8 RSA2 payment", "TRADE_SUCCESS, Chinese and `+ & <>` in subject, JSON in fund_bill_list, an empty "
        "passback_params (dropped from the string and from fields)", first, 200, "stored", first_key,
        n.trade_event(first, first_key))
    retry = n.update(first, {"notify_time": n.beijing(now - 2), "sign_type": None})
    add("UTF-8 RSA2 payment retried", "the same notification resent later without sign_type (RSA2 by default): a "
        "duplicate", retry, 200, "duplicate", first_key)
    refund = n.update(first, {"out_biz_no": n.order("RF"), "refund_fee": "20.00",
                              "gmt_refund": n.beijing(now - 10), "notify_time": n.beijing(now - 3),
                              "notify_id": n.digits(34, "2024")})
    refund_key = trade_key(refund)
    add("partial refund", "TRADE_SUCCESS again with out_biz_no and a cumulative refund_fee: a new event, keyed by "
        "the refund request", refund, 200, "stored", refund_key, n.trade_event(refund, refund_key))
    second_refund = n.update(refund, {"out_biz_no": n.order("RG"), "refund_fee": "50.00",
                                      "notify_id": n.digits(34, "2024")})
    second_refund_key = trade_key(second_refund)
    add("second partial refund", "another out_biz_no: another event", second_refund, 200, "stored", second_refund_key,
        n.trade_event(second_refund, second_refund_key))
    add("partial refund with another refund_fee", "the first refund's key, refund_fee 30.00: a conflict, kept in "
        "conflicts/", n.update(refund, {"refund_fee": "30.00"}), 200, "conflict", refund_key)
    add("payment with another total_amount", "the first payment's key, total_amount 8.88: a conflict",
        n.update(first, {"total_amount": "8.88"}), 200, "conflict", first_key)

    for status, total in (("TRADE_FINISHED", "20"), ("TRADE_CLOSED", "0.1"), ("WAIT_BUYER_PAY", "123456789.01")):
        p = n.trade(status=status, total=total)
        k = trade_key(p)
        add(status + " " + total, "every trade_status Alipay sends; total_amount " + total + " read as a decimal",
            p, 200, "stored", k, n.trade_event(p, k))

    p = n.trade(charset="UTF-8", total="1.00")
    k = trade_key(p)
    add("charset UTF-8", "the charset's name is case-insensitive", p, 200, "stored", k, n.trade_event(p, k))

    p = n.trade(app=ALIPAY_LEGACY_APP, charset="GBK", total="3.50", seller="2088000000000009",
                subject="支付宝测试商品 GBK（中文）", body="描述：甲乙丙丁 & 其他")
    k = trade_key(p)
    add("GBK RSA2 payment", "charset=GBK: the form's bytes are GBK, percent-encoded, signed over the GBK bytes",
        p, 200, "stored", k, n.trade_event(p, k), charset="GBK")

    p = n.trade(app=ALIPAY_LEGACY_APP, total="0.01", seller="2088000000000009", sign_type="RSA")
    k = trade_key(p)
    add("legacy RSA (SHA1) payment", "sign_type=RSA on a tenant whose sign_types list RSA", p, 200, "stored", k,
        n.trade_event(p, k, verified_with="rsa"), sign_type="RSA")

    p = n.trade(notify_time=n.beijing(now - REPLAY_WINDOW_S))
    k = trade_key(p)
    add("notify_time at the edge of the window", "exactly 6 days old: still inside", p, 200, "stored", k,
        n.trade_event(p, k))

    p = n.trade(seller=None, total="2.00")
    add("no seller_id", "a trade notification always names its seller, so under a pin one naming none is refused",
        p, 400)

    gateway = [
        ("app_id", ALIPAY_GATEWAY_APP), ("charset", "UTF-8"), ("commodity_order_id", n.digits(22, "2024")),
        ("contactor", "测试公司"), ("merchant_pid", n.digits(16, "2088")),
        ("method", "alipay.open.servicemarket.order.notify"), ("name", "测试公司"),
        ("notify_id", n.digits(34, "2024")), ("notify_time", n.beijing(now - 4)),
        ("notify_type", "servicemarket_order_notify"), ("order_item_num", "1"), ("phone", "17800000000"),
        ("service_code", "58621634"), ("sign_type", "RSA2"), ("timestamp", n.beijing(now - 4)),
        ("title", "模版 + 插件"), ("total_price", "0.00"), ("version", "1.0"),
    ]
    notify_id = dict(gateway)["notify_id"]
    gateway_key = dedupe_key("alipay.event", ALIPAY_GATEWAY_APP, "servicemarket_order_notify", notify_id)
    gateway_event = {
        "source": "alipay.event", "tenant": ALIPAY_GATEWAY_APP, "order_ref": dict(gateway)["notify_id"],
        "status": "servicemarket_order_notify", "amount": 0, "currency": "", "verified_with": "rsa2",
        "dedupe_key": gateway_key, "fields": {k: v for k, v in gateway if v and k != "sign"},
    }
    add("open-platform notification", "no trade_status, signed with sign_type kept, to the gateway tenant: "
        "alipay.event, its order_ref the notify_id (it names no order)", gateway, 200, "stored", gateway_key,
        gateway_event, keep_sign_type=True)
    add("open-platform notification retried", "the same notify_id, signed with sign_type left out (also "
        "accepted), another notify_time", n.update(gateway, {"notify_time": n.beijing(now - 1)}), 200, "duplicate",
        gateway_key)

    # ---- hostile: refused, nothing stored ---------------------------------------------------------------------
    p = n.trade()
    body, _ = n.signed(p)
    cases.append(case("tampered total_amount", "total_amount changed after signing", ALIPAY_PATH,
                      body.replace("total_amount=0.10", "total_amount=100.10"), 401, forged=True))
    p = n.trade()
    add("signed with sign_type kept", "a trade notification signed over the string with sign_type in it (the "
        "open-platform rule)", p, 401, forged=True, keep_sign_type=True)
    # Empty values signed: sign the string with `passback_params=` in it.
    p = n.trade()
    message = b"&".join(k.encode() + b"=" + v.encode() for k, v in sorted(p) if k not in ("sign", "sign_type"))
    sig = base64.b64encode(n.private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode("ascii")
    cases.append(case("signed with the empty value", "passback_params= left in the signed string", ALIPAY_PATH,
                      form(p + [("sign", sig)]), 401, forged=True))
    p = n.trade()
    message = b"&".join(k.encode() + b"=" + java_urlencode(v).encode() for k, v in sorted(p)
                        if v and k not in ("sign", "sign_type"))
    sig = base64.b64encode(n.private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode("ascii")
    cases.append(case("signed URL-encoded", "the values signed as they are on the wire, not decoded", ALIPAY_PATH,
                      form(p + [("sign", sig)]), 401, forged=True))
    p = n.trade()
    add("another key", "signed with a key no tenant holds", p, 401, forged=True, signing_key=n.stranger_key)
    p = n.trade()
    cases.append(case("sign missing", "no sign parameter", ALIPAY_PATH, form(p), 401, forged=True))
    cases.append(case("sign not base64", "a sign that is not base64", ALIPAY_PATH,
                      form(n.update(p, {"sign": "not*base64"})), 401, forged=True))
    p = n.trade(sign_type="RSA")
    add("RSA on an RSA2-only tenant", "sign_type=RSA (SHA1) where the tenant lists RSA2 only", p, 401, sign_type="RSA")
    p = n.trade(app=ALIPAY_LEGACY_APP, seller="2088000000000009", sign_type="RSA")
    add("RSA2 signature under sign_type=RSA", "an RSA2 (SHA-256) signature labelled RSA, on the tenant that "
        "accepts both", p, 401, forged=True, sign_type="RSA2")
    p = n.trade(sign_type="SM2")
    add("sign_type SM2", "a sign_type payhook does not know", p, 401, forged=True)
    p = n.trade(app="2021000000000099", seller="2088000000000099")
    add("unknown app_id", "an app_id no tenant has", p, 401)
    add("seller_id not the pinned one", "signed genuinely, naming another seller", n.trade(seller="2088000000000002"),
        400)
    for label, total in (("float", "0.30000000000000004"), ("three decimals", "1.005"), ("exponent", "1e2"),
                         ("exponent with a point", "1.0E1"), ("negative", "-1.00"), ("plus sign", "+1.00"),
                         ("leading zero", "01.00"), ("no whole digits", ".50"), ("trailing point", "1."),
                         ("space", " 1.00"), ("missing", None)):
        add("total_amount " + label, "a signed total_amount that is not yuan with at most two decimals: %r" % total,
            n.trade(total_amount=total), 400)
    for status in ("TRADE_PENDING", "trade_success", "SUCCESS"):
        add("trade_status " + status, "a trade_status Alipay does not send", n.trade(status=status), 400)
    p = n.trade()
    moved = n.update(p, {"subject": "图书&out_biz_no=RF0001"})
    add("moved &out_biz_no= in subject", "subject holding `&out_biz_no=`, which signs as two parameters", moved, 400)
    add("out_trade_no holding =", "a key field holding `=`", n.trade(out_trade_no="A=1"), 400)
    add("out_trade_no of 65 characters", "out_trade_no is at most 64 characters", n.trade(out_trade_no="A" * 65), 400)
    add("refund_fee above total_amount", "a refund larger than the payment", n.trade(
        out_biz_no="RX1", refund_fee="0.11", gmt_refund=n.beijing(now - 10)), 400)
    add("refund_fee with three decimals", "refund_fee is yuan too", n.trade(
        out_biz_no="RX2", refund_fee="0.015", gmt_refund=n.beijing(now - 10)), 400)
    for missing in ("notify_id", "trade_no", "out_trade_no", "notify_time"):
        add("no " + missing, missing + " is required", n.update(n.trade(), {missing: None}), 400)
    add("notify_time just outside the window", "6 days and 1 second old",
        n.trade(notify_time=n.beijing(now - REPLAY_WINDOW_S - 1)), 400)
    add("notify_time not Beijing's format", "notify_time as RFC 3339",
        n.trade(notify_time=datetime.datetime.fromtimestamp(now, BEIJING).isoformat()), 400)
    p = n.trade()
    body, sig = n.signed(p)
    cases.append(case("repeated total_amount", "a second total_amount after the signed one", ALIPAY_PATH,
                      body + "&total_amount=0.01", 400))
    cases.append(case("repeated sign", "a second sign", ALIPAY_PATH, body + "&sign=" + java_urlencode(sig), 400))
    p = n.trade(charset="GBK", subject="测试")
    add("GBK on a UTF-8-only tenant", "charset=GBK named where the tenant's charsets are utf-8 only", p, 400,
        charset="GBK")
    p = n.trade(charset="gb2312")
    add("charset gb2312", "a charset payhook does not read", p, 400)
    p = n.trade(app=ALIPAY_LEGACY_APP, seller="2088000000000009", subject="测试商品")
    body, _ = n.signed(p, charset="GBK")
    cases.append(case("GBK bytes under charset=utf-8", "GBK-encoded values in a form that says utf-8",
                      ALIPAY_PATH, body, 400))
    add("open-platform notification to a trade tenant", "no trade_status, signed with sign_type kept, to a tenant "
        "without gateway_notifications", n.update(gateway, {"app_id": ALIPAY_APP, "notify_id": n.digits(34, "2024")}),
        401, keep_sign_type=True)
    add("open-platform notification without notify_type", "an alipay.event needs notify_type and notify_id",
        n.update(gateway, {"notify_type": None, "notify_id": n.digits(34, "2024")}), 400, keep_sign_type=True)
    cases.append(case("not a form", "a JSON body", ALIPAY_PATH, json.dumps({"app_id": ALIPAY_APP}), 400,
                      content_type="application/json"))
    return cases


def xxpay_cases(n):
    cases = []
    now_ms = n.now * 1000

    def add(name, why, pairs, expect, outcome="refused", key=None, event=None, sign=None, method="POST",
            transport="query", forged=False):
        s = sign if sign is not None else md5_sign(pairs, n.xxpay_key)
        wire = pairs + [("sign", s)]
        if transport == "query":
            cases.append(case(name, why, XXPAY_PATH, "", expect, outcome, key, event, query=xxpay_query(wire),
                              method=method, content_type="", forged=forged))
        else:
            cases.append(case(name, why, XXPAY_PATH, form(wire), expect, outcome, key, event, method=method,
                              forged=forged))

    def key_of(pairs):
        v = dict(pairs)
        return dedupe_key("xxpay.pay", v["mchId"], v["mchOrderNo"], v["status"])

    def event(pairs, key):
        return n.md5_event("xxpay.pay", XXPAY_MCH, pairs, key, "mchOrderNo", "status")

    # ---- genuine ----------------------------------------------------------------------------------------------
    first = n.xxpay(amount="1999")
    first_key = key_of(first)
    add("XxPay payment", "POST, the parameters in the query (subject URL-encoded after signing), empty body, "
        "param1/param2 empty and skipped", first, 200, "stored", first_key, event(first, first_key))
    add("XxPay payment as GET", "the same notification as a GET: a duplicate", first, 200, "duplicate", first_key,
        method="GET")
    add("XxPay payment as a form body", "the same notification in a form body: a duplicate", first, 200, "duplicate",
        first_key, transport="body")
    add("XxPay browser redirect", "backType=1, the buyer's browser with the same result: a duplicate",
        n.update(first, {"backType": "1"}), 200, "duplicate", first_key)
    add("XxPay payment with another amount", "the first payment's key, amount 2000: a conflict",
        n.update(first, {"amount": "2000"}), 200, "conflict", first_key)
    p = n.xxpay(channel_ext="x1", channelId="ALIPAY_PC")
    assert md5_sign(p, n.xxpay_key) != md5_sign_byte_order(p, n.xxpay_key)
    k = key_of(p)
    add("names that sort differently ignoring case", "channel_ext sorts before channelId case-insensitively, after "
        "it in byte order", p, 200, "stored", k, event(p, k))
    p = n.xxpay(param1="a b", param10="c")
    k = key_of(p)
    add("a name that is a prefix of another", "param10=c& sorts before param1=a b& as whole strings", p, 200,
        "stored", k, event(p, k))
    p = n.xxpay(status="-1")
    k = key_of(p)
    add("status -1", "a failed payment is an event too", p, 200, "stored", k, event(p, k))
    p = n.xxpay(status="3", amount="0")
    k = key_of(p)
    add("status 3, amount 0", "business complete, zero fen", p, 200, "stored", k, event(p, k))
    p = n.xxpay()
    k = key_of(p)
    add("lowercase sign", "sign compared case-insensitively", p, 200, "stored", k, event(p, k),
        sign=md5_sign(p, n.xxpay_key).lower())
    p = n.xxpay(paid_ms=now_ms - REPLAY_WINDOW_S * 1000)
    k = key_of(p)
    add("paySuccTime at the edge of the window", "exactly 6 days old", p, 200, "stored", k, event(p, k))

    # ---- hostile ----------------------------------------------------------------------------------------------
    p = n.xxpay()
    add("XxPay wrong key", "signed with another resKey", p, 401, sign=md5_sign(p, "test-only-not-the-reskey"),
        forged=True)
    p = n.xxpay(channel_ext="x1")
    add("XxPay sorted by byte order", "the strings sorted in byte order, not case-insensitively", p, 401,
        sign=md5_sign_byte_order(p, n.xxpay_key), forged=True)
    p = n.xxpay()
    pieces = "".join(sorted((k + "=" + v + "&" for k, v in p), key=java_case_insensitive_key))
    add("XxPay empty values signed", "param1= and param2= in the signed string", p, 401,
        sign=hashlib.md5((pieces + "key=" + n.xxpay_key).encode()).hexdigest().upper(), forged=True)
    p = n.xxpay()
    tampered = md5_sign(p, n.xxpay_key)
    add("XxPay tampered amount", "amount changed after signing", n.update(p, {"amount": "100"}), 401, sign=tampered,
        forged=True)
    p = n.xxpay(mchId="20009999")
    add("XxPay unknown mchId", "an mchId no tenant has", p, 401)
    add("XxPay sign of 31 characters", "sign is 32 hex characters", n.xxpay(), 401, sign="A" * 31, forged=True)
    for status in ("4", "-3", "02", "SUCCESS"):
        add("XxPay status " + status, "status is -2 to 3", n.xxpay(status=status), 400)
    for amount in ("1.00", "-1", "01", "1e2", ""):
        add("XxPay amount %r" % amount, "amount is whole fen", n.xxpay(amount=amount), 400)
    add("XxPay paySuccTime outside the window", "6 days and 1 ms old",
        n.xxpay(paid_ms=now_ms - REPLAY_WINDOW_S * 1000 - 1), 400)
    add("XxPay paySuccTime in seconds", "paySuccTime as a date", n.xxpay(paySuccTime="20240101120000.5"), 400)
    add("XxPay moved &amount= in subject", "subject holding `&amount=`", n.xxpay(subject="礼品&amount=1"), 400)
    add("XxPay mchOrderNo missing", "mchOrderNo is required", n.xxpay(mchOrderNo=""), 400)
    p = n.xxpay()
    wire = p + [("sign", md5_sign(p, n.xxpay_key))]
    cases.append(case("XxPay repeated amount", "amount twice in the query", XXPAY_PATH, "", 400,
                      query=xxpay_query(wire) + "&amount=1", content_type=""))
    cases.append(case("XxPay query and body both", "the query's status repeated in a form body", XXPAY_PATH,
                      "status=2", 400, query=xxpay_query(wire)))
    return cases


def jeepay_cases(n):
    cases = []
    now_ms = n.now * 1000

    def add(name, why, pairs, expect, outcome="refused", key=None, event=None, sign=None, secret_text=None,
            query=False, forged=False):
        s = sign if sign is not None else md5_sign(pairs, secret_text or n.jeepay_key)
        wire = form(pairs + [("sign", s)])
        if query:
            cases.append(case(name, why, JEEPAY_PATH, "", expect, outcome, key, event, query=wire, content_type="",
                              forged=forged))
        else:
            cases.append(case(name, why, JEEPAY_PATH, wire, expect, outcome, key, event, forged=forged))

    def key_of(pairs):
        v = dict(pairs)
        return dedupe_key("jeepay.pay", v["mchNo"], v["mchOrderNo"], v["state"])

    def event(pairs, key):
        return n.md5_event("jeepay.pay", JEEPAY_MCH, pairs, key, "mchOrderNo", "state")

    first = n.jeepay(amount="12345")
    first_key = key_of(first)
    add("Jeepay payment", "POST form, errCode/errMsg empty and skipped, `&` and `%` in values", first, 200, "stored",
        first_key, event(first, first_key))
    add("Jeepay payment resent", "the same payment with a new reqTime (an operator's resend): a duplicate",
        n.update(first, {"reqTime": str(now_ms - 1_000)}), 200, "duplicate", first_key)
    add("Jeepay payment with another amount", "the first payment's key, amount 1: a conflict",
        n.update(first, {"amount": "1"}), 200, "conflict", first_key)
    p = n.jeepay(mch_extra="m1")
    assert md5_sign(p, n.jeepay_key) != md5_sign_byte_order(p, n.jeepay_key)
    k = key_of(p)
    add("Jeepay names that sort differently ignoring case", "mch_extra sorts before mchNo case-insensitively, after "
        "it in byte order", p, 200, "stored", k, event(p, k))
    for state in ("0", "3", "5", "6"):
        p = n.jeepay(state=state)
        k = key_of(p)
        add("Jeepay state " + state, "every state 0 to 6 is an event", p, 200, "stored", k, event(p, k))
    p = n.jeepay()
    k = key_of(p)
    add("Jeepay lowercase sign", "sign compared case-insensitively", p, 200, "stored", k, event(p, k),
        sign=md5_sign(p, n.jeepay_key).lower())

    p = n.jeepay()
    add("Jeepay wrong key", "signed with another app secret", p, 401, secret_text="test-only-not-the-app-secret",
        forged=True)
    p = n.jeepay(mch_extra="m1")
    add("Jeepay sorted by byte order", "the strings sorted in byte order", p, 401,
        sign=md5_sign_byte_order(p, n.jeepay_key), forged=True)
    add("Jeepay another mchNo", "signed with the app's secret, naming another merchant",
        n.jeepay(mchNo="M1700000001"), 401)
    add("Jeepay unknown appId", "an appId no tenant has", n.jeepay(appId="65a0b1c2d3e4f5a6b7c8d9ff"), 401)
    p = n.jeepay()
    s = md5_sign(p, n.jeepay_key)
    add("Jeepay tampered state", "state changed after signing", n.update(p, {"state": "6"}), 401, sign=s, forged=True)
    for state in ("7", "-1", "SUCCESS"):
        add("Jeepay state " + state, "state is 0 to 6", n.jeepay(state=state), 400)
    for amount in ("1.5", "-100", "1e3"):
        add("Jeepay amount %r" % amount, "amount is whole fen", n.jeepay(amount=amount), 400)
    add("Jeepay reqTime outside the window", "6 days and 1 ms old",
        n.jeepay(req_ms=now_ms - REPLAY_WINDOW_S * 1000 - 1), 400)
    add("Jeepay reqTime missing", "reqTime is required", n.jeepay(reqTime=None), 400)
    add("Jeepay moved &state= in body", "body holding `&state=`", n.jeepay(body="描述&state=2"), 400)
    add("Jeepay in the query", "Jeepay posts a form body; a query is not read", n.jeepay(), 400, query=True)
    p = n.jeepay()
    wire = form(p + [("sign", md5_sign(p, n.jeepay_key))])
    cases.append(case("Jeepay repeated state", "state twice", JEEPAY_PATH, wire + "&state=2", 400))
    return cases


def notifications(seed, now):
    n = Notifier(seed, now)
    return {"cases": alipay_cases(n) + xxpay_cases(n) + jeepay_cases(n)}


# ---- check --------------------------------------------------------------------------------------------------

class Refused(Exception):
    pass


def notification_text(raw):
    text = raw.decode("ascii", errors="strict") if raw.isascii() else raw.decode("utf-8")
    text = text.rstrip("\r\n")
    for method in ("POST ", "GET "):
        if text.startswith(method):
            text = text[len(method):].split(" ", 1)[0]
    head, question, rest = text.partition("?")
    if question and "=" not in head:
        text = rest
    return text


def check_alipay(text, key_pem):
    try:
        pairs = parse_form(text)
    except ValueError as error:
        raise Refused("not a strict form: %s" % error)
    raw = dict(pairs)
    charset_name = raw.get(b"charset", b"utf-8").decode("ascii", errors="replace").lower()
    charset = {"utf-8": "utf-8", "utf8": "utf-8", "gbk": "gbk"}.get(charset_name)
    if charset is None:
        raise Refused("charset %r is not utf-8 or gbk" % charset_name)
    try:
        values = {k.decode(charset): v.decode(charset) for k, v in pairs}
    except UnicodeDecodeError:
        raise Refused("a parameter is not valid %s" % charset)
    sign_type = values.get("sign_type", "RSA2")
    if sign_type not in ALIPAY_DIGESTS:
        raise Refused("sign_type %r is not RSA2 or RSA" % sign_type)
    try:
        signature = base64.b64decode(values.get("sign", ""), validate=True)
    except binascii.Error:
        raise Refused("sign is not base64")
    if not signature:
        raise Refused("no sign")
    public_key = alipay_public_key(key_pem)
    trade = "trade_status" in values
    for keep in ([False] if trade else [True, False]):
        try:
            public_key.verify(signature, alipay_content(pairs, keep), padding.PKCS1v15(), ALIPAY_DIGESTS[sign_type]())
        except InvalidSignature:
            continue
        app = values.get("app_id", "")
        result = {"kind": "alipay", "rule": "with sign_type" if keep else "without sign and sign_type",
                  "sign_type": sign_type, "charset": charset}
        if trade:
            key = dedupe_key("alipay.trade", app, values.get("out_trade_no", ""), values["trade_status"],
                             values.get("out_biz_no", ""))
            result["event"] = {"source": "alipay.trade", "tenant": app, "dedupe_key": key,
                               "amount": fen(values.get("total_amount", ""))}
        else:
            key = dedupe_key("alipay.event", app, values.get("notify_type", ""), values.get("notify_id", ""))
            result["event"] = {"source": "alipay.event", "tenant": app, "dedupe_key": key, "amount": 0}
        return result
    raise Refused("sign does not verify (%s)" % sign_type)


def check_md5(kind, text, secrets):
    try:
        pairs = [(k.decode("utf-8"), v.decode("utf-8")) for k, v in parse_form(text)]
    except (ValueError, UnicodeDecodeError) as error:
        raise Refused("not a strict UTF-8 form: %s" % error)
    values = dict(pairs)
    presented = values.get("sign", "").upper().encode("ascii", errors="replace")
    if len(presented) != 32:
        raise Refused("sign is not 32 hexadecimal characters")
    matched = [i for i, s in enumerate(secrets, 1) if hmac.compare_digest(md5_sign(pairs, s).encode(), presented)]
    if not matched:
        raise Refused("sign does not match (%d secret(s) tried)" % len(secrets))
    source, tenant_name, status_name = ("xxpay.pay", "mchId", "status") if kind == "xxpay" else ("jeepay.pay", "mchNo", "state")
    tenant, order, status = values.get(tenant_name, ""), values.get("mchOrderNo", ""), values.get(status_name, "")
    if not tenant:
        raise Refused("no %s" % tenant_name)
    amount = values.get("amount", "")
    return {"kind": kind, "rule": "md5 &key=", "secret": matched[0], "event": {
        "source": source, "tenant": tenant, "dedupe_key": dedupe_key(source, tenant, order, status),
        "amount": int(amount) if amount.isascii() and amount.isdigit() else None}}


def check(arguments):
    if len(arguments) not in (2, 3) or arguments[0] not in ("alipay", "xxpay", "jeepay"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    kind, key_file = arguments[0], arguments[1]
    source = arguments[2] if len(arguments) == 3 else "-"
    raw = sys.stdin.buffer.read() if source == "-" else open(source, "rb").read()
    with open(key_file, "rb") as f:
        key_material = f.read()
    try:
        text = notification_text(raw)
        if kind == "alipay":
            result = check_alipay(text, key_material)
        else:
            secrets = [line.strip() for line in key_material.decode("utf-8").splitlines() if line.strip()]
            result = check_md5(kind, text, secrets)
    except (Refused, UnicodeDecodeError, ValueError) as error:
        print("FAILED: %s" % error, file=sys.stderr)
        sys.exit(1)
    print(json.dumps(result, ensure_ascii=False))


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "check":
        check(sys.argv[2:])
        return
    if len(sys.argv) != 4 or sys.argv[1] != "notifications":
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    print(json.dumps(notifications(int(sys.argv[2]), int(sys.argv[3])), ensure_ascii=False))


if __name__ == "__main__":
    main()
