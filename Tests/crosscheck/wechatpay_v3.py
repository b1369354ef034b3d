#!/usr/bin/env python3
"""An independent WeChat Pay API v3 notifier (test tooling, run by the Swift tests).

Shares no code with payhook: the signature (RSASSA-PKCS1-v1_5, SHA-256, over `timestamp\\nnonce\\nbody\\n`)
and the resource encryption (AES-256-GCM under the 32 ASCII bytes of the APIv3 key) are done with Python's
`cryptography`, everything else with the standard library, from the rules in docs/protocols.md §7 and
Fixtures/wechat-v3/README.md.

  notifications SEED NOW   print a JSON object {"cases": [...]} of fresh notifications for the tenants
                           of Tests/PayhookServerTests/WeChatV3CrossCheckTests.swift, genuine and hostile,
                           in the order they are to be sent
  cross SEED NOW           print v2 and v3 notifications of the same payments for merchant 10000100 (the
                           v2 ones signed with wechatpy, the v2 reference the other cross-checks use)
  check FILE               verify a header block + body as `payhook sign wechat-v3-…` prints it (the
                           final line break not part of the body), with the SDK test public key and the
                           APIv3 key; print the event_type and the decrypted resource, exit 1 if it fails

NOW is the server's clock in Unix seconds. Each case is
  {"name", "why", "path", "headers": {name: value}, "extra_headers": [[name, value], ...], "body": text,
   "expect": HTTP status, "answer": "json" | "xml", "outcome": "stored" | "duplicate" | "conflict" | "refused",
   "key": dedupe key text or null, "id": lowercase hex SHA-256 of key, "event": what the stored event holds}
`extra_headers` are sent after `headers` (a header repeated). Bodies are valid UTF-8, sent as their UTF-8 bytes.
"""
import base64
import datetime
import hashlib
import json
import os
import random
import sys
from urllib.parse import quote

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "..", "Fixtures")

# The tenants the Swift test configures (its constants must match these).
V3_PATH = "/notify/wechatpay"
V2_PATH = "/notify/wechat"
MCHID = "1900000100"
APPID = "wxdace645e0bc2cXXX"
PUB_KEY_ID = "PUB_KEY_ID_0000000000000024101100397200000006"
# The APIv3 key of Fixtures/wechat-v3/README.md, and the tenant's second (rotated) key.
APIV3_KEY = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"
APIV3_KEY_ROTATED = "test-only-apiv3-key-rotated-0002"
# A key no tenant holds.
APIV3_KEY_UNKNOWN = "test-only-apiv3-key-unknown-0003"
# A second tenant on the same path, with its own public key (the SDK's merchant certificate's key, whose
# private half nobody here has) and its own APIv3 key.
OTHER_MCHID = "1900000200"
OTHER_PUB_KEY_ID = "PUB_KEY_ID_0000000000000024101100397200000099"
# The v2 demo tenant (Fixtures/demo.toml), which the cross mode's v3 tenant shares its mch_id with.
V2_MCHID = "10000100"
V2_APPID = "wx2421b1c4370ec43b"

BEIJING = datetime.timezone(datetime.timedelta(hours=8))

with open(os.path.join(FIXTURES, "wechat-v3", "wechat_pay_private_key.pem"), "rb") as f:
    PRIVATE_KEY = serialization.load_pem_private_key(f.read(), password=None)


def dedupe_key(source, *parts):
    """docs/contract.md §4.6: source/part/part/…, each part percent-encoded outside RFC 3986's unreserved set."""
    return "/".join([source] + [quote(p, safe="-._~") for p in parts])


def sha256_hex(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def rfc3339(seconds, tz=BEIJING):
    text = datetime.datetime.fromtimestamp(seconds, tz).isoformat(timespec="seconds")
    return text.replace("+00:00", "Z")


def compact(obj, ascii_only=False):
    return json.dumps(obj, ensure_ascii=ascii_only, separators=(",", ":"))


class Notifier:
    def __init__(self, seed, now):
        self.rng = random.Random(seed)
        self.now = now
        self.serial = 0

    def token(self, n, alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"):
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def bytes(self, n):
        return bytes(self.rng.getrandbits(8) for _ in range(n))

    def order(self, prefix="X"):
        """A fresh out_trade_no, so that a case wrongly accepted shows as an event of its own."""
        self.serial += 1
        return "%s%d%04d%s" % (prefix, self.now, self.serial, self.token(4))

    def digits(self, prefix, n):
        return prefix + "".join(self.rng.choice("0123456789") for _ in range(n - len(prefix)))

    # -- resources -------------------------------------------------------------------------------------

    def payment(self, out_trade_no, total=100, **extra):
        r = {
            "mchid": MCHID, "appid": APPID, "out_trade_no": out_trade_no,
            "transaction_id": self.digits("4200000000", 28), "trade_type": "JSAPI", "trade_state": "SUCCESS",
            "trade_state_desc": "支付成功", "bank_type": "OTHERS", "attach": "",
            "success_time": rfc3339(self.now - 60), "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
            "amount": {"total": total, "payer_total": total, "currency": "CNY", "payer_currency": "CNY"},
        }
        r.update(extra)
        return r

    def refund(self, status, refund=40, total=100, out_refund_no=None, **extra):
        r = {
            "mchid": MCHID, "out_trade_no": self.order("O"), "transaction_id": self.digits("4200000000", 28),
            "out_refund_no": out_refund_no or self.order("R"), "refund_id": self.digits("5000000038", 29),
            "refund_status": status, "user_received_account": "支付用户零钱",
            "amount": {"total": total, "refund": refund, "payer_total": total, "payer_refund": refund},
        }
        if status == "SUCCESS":
            r["success_time"] = rfc3339(self.now - 30)
        r.update(extra)
        return r

    # -- the wire --------------------------------------------------------------------------------------

    def envelope(self, event_type, resource_text, key=APIV3_KEY, associated_data="transaction",
                 original_type="transaction", nonce=None, algorithm="AEAD_AES_256_GCM",
                 resource_type="encrypt-resource", summary="支付成功", tamper_tag=False):
        nonce = nonce if nonce is not None else self.token(12, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        sealed = AESGCM(key.encode("ascii")).encrypt(nonce.encode("ascii"), resource_text.encode("utf-8"),
                                                     associated_data.encode("utf-8"))
        if tamper_tag:
            sealed = sealed[:-1] + bytes([sealed[-1] ^ 0x01])
        return {
            "id": "EV-" + self.token(20, "0123456789abcdef"), "create_time": rfc3339(self.now - 5),
            "resource_type": resource_type, "event_type": event_type, "summary": summary,
            "resource": {
                "original_type": original_type, "algorithm": algorithm,
                "ciphertext": base64.b64encode(sealed).decode("ascii"), "associated_data": associated_data,
                "nonce": nonce,
            },
        }

    def sign(self, body_text, timestamp=None, nonce=None, serial=PUB_KEY_ID,
             signature_type="WECHATPAY2-SHA256-RSA2048", lowercase=False, signed_text=None):
        """The headers WeChat Pay sends: the signature over `timestamp\\nnonce\\nbody\\n` (signed_text, when
        given, is signed in place of the body: what a forger who re-serialised the body would produce)."""
        timestamp = str(self.now) if timestamp is None else timestamp
        nonce = nonce or self.token(32)
        message = "%s\n%s\n%s\n" % (timestamp, nonce, body_text if signed_text is None else signed_text)
        signature = PRIVATE_KEY.sign(message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
        headers = {
            "Content-Type": "application/json",
            "Wechatpay-Timestamp": timestamp, "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": base64.b64encode(signature).decode("ascii"), "Wechatpay-Serial": serial,
        }
        if signature_type is not None:
            headers["Wechatpay-Signature-Type"] = signature_type
        if lowercase:
            headers = {k.lower(): v for k, v in headers.items()}
        return headers


def case(name, why, headers, body, expect, outcome="refused", key=None, event=None, path=V3_PATH,
         extra_headers=(), answer=None):
    return {
        "name": name, "why": why, "path": path, "headers": headers, "extra_headers": [list(h) for h in extra_headers],
        "body": body, "expect": expect, "answer": answer or ("xml" if path == V2_PATH else "json"),
        "outcome": outcome, "key": key, "id": sha256_hex(key) if key else None, "event": event,
    }


def pay_event(resource, key, tenant=MCHID, amount=None, order_ref=None):
    return {
        "source": "wechat.pay", "tenant": tenant, "order_ref": order_ref or resource["out_trade_no"], "status": "SUCCESS",
        "amount": resource["amount"]["total"] if amount is None else amount, "currency": "CNY",
        "verified_with": "rsa-sha256", "dedupe_key": key, "resource": resource,
    }


def notifications(seed, now):
    n = Notifier(seed, now)
    cases = []

    def genuine(name, why, event_type, resource, dedupe, event, outcome="stored", ascii_only=False, pretty=False,
                **options):
        resource_text = compact(resource, ascii_only)
        envelope_options = {k: options.pop(k) for k in list(options) if k in ("key", "associated_data", "original_type", "summary")}
        env = n.envelope(event_type, resource_text, **envelope_options)
        body = json.dumps(env, ensure_ascii=ascii_only, indent=2) if pretty else compact(env, ascii_only)
        pad = options.pop("pad", 0)
        if pad:
            # Whitespace between members is JSON; the signature covers it like any other byte.
            body = body[:-1] + " " * (pad - len(body.encode("utf-8"))) + body[-1]
        cases.append(case(name, why, n.sign(body, **options), body, 204, outcome, dedupe, event))
        return body

    # ---- genuine notifications ---------------------------------------------------------------------------
    first = n.payment(n.order("P"), total=100, attach="中文附言 & <标签>")
    first_key = dedupe_key("wechat.pay", MCHID, first["out_trade_no"], "SUCCESS")
    genuine("merchant payment", "TRANSACTION.SUCCESS in merchant mode, Chinese text written raw",
            "TRANSACTION.SUCCESS", first, first_key, pay_event(first, first_key))
    genuine("merchant payment retried", "the same payment signed anew (timestamp, nonce, id), pretty-printed, "
            "Chinese as \\u escapes: a duplicate", "TRANSACTION.SUCCESS", first, first_key, None,
            outcome="duplicate", ascii_only=True, pretty=True)

    p = n.payment(n.order("L"), total=1)
    k = dedupe_key("wechat.pay", MCHID, p["out_trade_no"], "SUCCESS")
    genuine("lowercase header names", "header names are case-insensitive", "TRANSACTION.SUCCESS", p, k,
            pay_event(p, k), lowercase=True)

    p = n.payment(n.order("N"), total=250)
    k = dedupe_key("wechat.pay", MCHID, p["out_trade_no"], "SUCCESS")
    genuine("no Signature-Type", "an absent Wechatpay-Signature-Type means WECHATPAY2-SHA256-RSA2048",
            "TRANSACTION.SUCCESS", p, k, pay_event(p, k), signature_type=None)

    p = n.payment(n.order("K"), total=300)
    k = dedupe_key("wechat.pay", MCHID, p["out_trade_no"], "SUCCESS")
    genuine("rotated APIv3 key", "the resource encrypted with the tenant's second APIv3 key", "TRANSACTION.SUCCESS",
            p, k, pay_event(p, k), key=APIV3_KEY_ROTATED)

    partner = {
        "sp_appid": APPID, "sp_mchid": MCHID, "sub_appid": "wxd678efh567hg6999", "sub_mchid": "1900000109",
        "out_trade_no": n.order("S"), "transaction_id": n.digits("4200000000", 28), "trade_type": "JSAPI",
        "trade_state": "SUCCESS", "trade_state_desc": "支付成功", "bank_type": "CMC", "attach": "",
        "success_time": rfc3339(now - 50),
        "payer": {"sp_openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "sub_openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6p"},
        "amount": {"total": 700, "payer_total": 700, "currency": "CNY", "payer_currency": "CNY"},
    }
    k = dedupe_key("wechat.pay", MCHID, "1900000109", partner["out_trade_no"], "SUCCESS")
    genuine("partner payment", "service-provider mode: sp_mchid is the tenant, sub_mchid joins the key",
            "TRANSACTION.SUCCESS", partner, k, pay_event(partner, k))

    def sub_order(total):
        return {
            "mchid": MCHID, "trade_type": "JSAPI", "trade_state": "SUCCESS", "bank_type": "CMC", "attach": "",
            "success_time": rfc3339(now - 40), "transaction_id": n.digits("4200000000", 28),
            "out_trade_no": n.order("U"), "sub_mchid": "1900000109",
            "amount": {"total_amount": total, "payer_amount": total, "currency": "CNY", "payer_currency": "CNY"},
        }
    combine = {
        "combine_appid": APPID, "combine_mchid": MCHID, "combine_out_trade_no": n.order("C"),
        "scene_info": {"device_id": "POS1:1"}, "sub_orders": [sub_order(100), sub_order(250)],
        "combine_payer_info": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
    }
    k = dedupe_key("wechat.pay", MCHID, combine["combine_out_trade_no"], "SUCCESS")
    genuine("combine payment", "one event for the combined order, its amount the sub-orders' sum",
            "TRANSACTION.SUCCESS", combine, k, pay_event(combine, k, amount=350, order_ref=combine["combine_out_trade_no"]))

    for status, refund_amount in (("SUCCESS", 40), ("ABNORMAL", 60), ("CLOSED", 100)):
        r = n.refund(status, refund=refund_amount)
        k = dedupe_key("wechat.refund", MCHID, r["out_refund_no"], status)
        event = {
            "source": "wechat.refund", "tenant": MCHID, "order_ref": r["out_trade_no"], "status": status,
            "amount": refund_amount, "currency": "CNY", "verified_with": "rsa-sha256", "dedupe_key": k, "resource": r,
        }
        genuine("REFUND." + status, "a refund notification (no appid in it, as WeChat writes them)", "REFUND." + status,
                r, k, event, associated_data="refund", original_type="refund", summary="退款状态改变")

    transfer = {
        "mch_id": MCHID, "out_bill_no": n.order("B"), "transfer_bill_no": n.digits("1330000071100999991182020", 36),
        "state": "SUCCESS", "transfer_amount": 500, "openid": "o-MYE42l80oelYMDE34nYD456Xoy",
        "create_time": rfc3339(now - 120), "update_time": rfc3339(now - 10),
    }
    # Dedupe key parts of a generic event: merchant, event type and the notification id, so the key is only
    # known once the envelope is made.
    env = n.envelope("MCHTRANSFER.BILL.FINISHED", compact(transfer), associated_data="", original_type="mch_payment",
                     summary="商家转账单据终态通知")
    body = compact(env)
    k = dedupe_key("wechat.event", MCHID, "MCHTRANSFER.BILL.FINISHED", env["id"])
    cases.append(case("generic event", "MCHTRANSFER.BILL.FINISHED with mch_id and empty associated_data, kept whole",
                      n.sign(body), body, 204, "stored", k, {
                          "source": "wechat.event", "tenant": MCHID, "order_ref": env["id"],
                          "status": "MCHTRANSFER.BILL.FINISHED", "amount": 0, "currency": "CNY",
                          "verified_with": "rsa-sha256", "dedupe_key": k, "resource": transfer}))

    for offset in (-299, 299):
        p = n.payment(n.order("T"))
        k = dedupe_key("wechat.pay", MCHID, p["out_trade_no"], "SUCCESS")
        genuine("timestamp %+d s" % offset, "within the 300 s clock window", "TRANSACTION.SUCCESS", p, k,
                pay_event(p, k), timestamp=str(now + offset))

    p = n.payment(n.order("W"), total=6000)
    k = dedupe_key("wechat.pay", MCHID, p["out_trade_no"], "SUCCESS")
    big = genuine("60 KB body", "a signed body of 60 KB (whitespace between members), under max_body_bytes",
                  "TRANSACTION.SUCCESS", p, k, pay_event(p, k), pad=60 * 1024)
    assert len(big.encode("utf-8")) == 60 * 1024

    conflict = dict(first)
    conflict["amount"] = dict(first["amount"], total=999, payer_total=999)
    genuine("conflict", "the first payment's key with another amount, correctly signed: success, kept in conflicts/",
            "TRANSACTION.SUCCESS", conflict, first_key, None, outcome="conflict")

    # ---- hostile: refused, nothing stored ----------------------------------------------------------------
    def hostile(name, why, expect, event_type="TRANSACTION.SUCCESS", resource=None, resource_text=None,
                envelope=None, body=None, headers=None, mutate_envelope=None, sign_options=None, extra_headers=(),
                path=V3_PATH, **envelope_options):
        if body is None:
            if envelope is None:
                if resource_text is None:
                    resource_text = compact(resource if resource is not None else n.payment(n.order("H")))
                envelope = n.envelope(event_type, resource_text, **envelope_options)
            if mutate_envelope:
                mutate_envelope(envelope)
            body = compact(envelope)
        if headers is None:
            headers = n.sign(body, **(sign_options or {}))
        cases.append(case(name, why, headers, body, expect, path=path, extra_headers=extra_headers))

    def signed(name, why, expect, body):
        hostile(name, why, expect, body=body)

    env = n.envelope("TRANSACTION.SUCCESS", compact(n.payment(n.order("H"))))
    hostile("re-serialised body", "signed over the compact body, sent pretty-printed", 401,
            body=json.dumps(env, ensure_ascii=False, indent=1), sign_options={"signed_text": compact(env)})
    env = n.envelope("TRANSACTION.SUCCESS", compact(n.payment(n.order("H"))))
    good = compact(env)
    hostile("byte changed after signing", "one byte of the id changed after signing", 401,
            body=good.replace('"EV-', '"EW-', 1), sign_options={"signed_text": good})

    body = compact(n.envelope("TRANSACTION.SUCCESS", compact(n.payment(n.order("H")))))
    probe = n.sign(body)
    probe["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/" + base64.b64encode(n.bytes(200)).decode("ascii")
    hostile("SIGNTEST probe", "WeChat's deliberate bad signature", 401, body=body, headers=probe)
    hostile("unknown serial", "a Wechatpay-Serial no tenant has", 401,
            sign_options={"serial": "PUB_KEY_ID_0000000000000000000000000000000000"})
    hostile("another tenant's serial", "the serial of the other tenant's key; its key does not verify", 401,
            sign_options={"serial": OTHER_PUB_KEY_ID})
    hostile("SM2 signature type", "Wechatpay-Signature-Type WECHATPAY2-SM2-WITH-SM3", 401,
            sign_options={"signature_type": "WECHATPAY2-SM2-WITH-SM3"})
    for offset in (-301, 301):
        hostile("timestamp %+d s" % offset, "outside the 300 s clock window", 401, sign_options={"timestamp": str(now + offset)})
    hostile("non-numeric timestamp", "Wechatpay-Timestamp not Unix seconds", 401, sign_options={"timestamp": rfc3339(now)})
    for missing in ("Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature", "Wechatpay-Serial"):
        body = compact(n.envelope("TRANSACTION.SUCCESS", compact(n.payment(n.order("H")))))
        headers = n.sign(body)
        del headers[missing]
        hostile("missing " + missing, "a signed header absent", 401, body=body, headers=headers)
    body = compact(n.envelope("TRANSACTION.SUCCESS", compact(n.payment(n.order("H")))))
    headers = n.sign(body)
    hostile("repeated Wechatpay-Signature", "two copies of the signature header (the first genuine)", 400, body=body,
            headers=headers, extra_headers=[("Wechatpay-Signature", base64.b64encode(n.bytes(256)).decode("ascii"))])
    body = compact(n.envelope("TRANSACTION.SUCCESS", compact(n.payment(n.order("H")))))
    headers = n.sign(body)
    hostile("repeated identical Wechatpay-Signature", "two identical copies of the genuine signature header", 400,
            body=body, headers=headers, extra_headers=[("Wechatpay-Signature", headers["Wechatpay-Signature"])])

    hostile("GCM tag flipped", "the resource's tag changed before signing", 401, tamper_tag=True)
    hostile("another APIv3 key", "the resource encrypted with a key the tenant does not hold", 401, key=APIV3_KEY_UNKNOWN)
    for length in (11, 13):
        hostile("resource nonce of %d bytes" % length, "resource.nonce must be 12 bytes", 400, nonce=n.token(length))
    hostile("algorithm AEAD_AES_128_GCM", "resource.algorithm other than AEAD_AES_256_GCM", 400, algorithm="AEAD_AES_128_GCM")
    hostile("resource_type other", "resource_type other than encrypt-resource", 400, resource_type="plain-resource")
    for merchant in (OTHER_MCHID, "1900000999"):
        hostile("decrypted mchid " + merchant, "signed and encrypted with this tenant's keys, naming another merchant", 401,
                resource=n.payment(n.order("H"), mchid=merchant))
    hostile("appid mismatch", "an appid other than the one the tenant pins", 401,
            resource=n.payment(n.order("H"), appid="wx0000000000000000"))
    hostile("trade_state NOTPAY", "TRANSACTION.SUCCESS whose trade_state is NOTPAY", 400,
            resource=n.payment(n.order("H"), trade_state="NOTPAY"))
    for label, total in (("a string", "100"), ("a float", 1.5), ("negative", -100)):
        p = n.payment(n.order("H"))
        p["amount"]["total"] = total
        hostile("amount.total " + label, "amount.total must be a non-negative JSON integer", 400, resource=p)
    hostile("refund above total", "amount.refund larger than amount.total", 400, event_type="REFUND.SUCCESS",
            resource=n.refund("SUCCESS", refund=101, total=100), associated_data="refund", original_type="refund")
    hostile("REFUND.SUCCESS with refund_status CLOSED", "the event type and the status disagree", 400,
            event_type="REFUND.SUCCESS", resource=n.refund("CLOSED"), associated_data="refund", original_type="refund")
    hostile("out_trade_no with a space", "out_trade_no is [0-9A-Za-z_-|*@]", 400, resource=n.payment("2024 0101"))
    hostile("out_trade_no of 33 characters", "out_trade_no is at most 32 characters", 400, resource=n.payment("A" * 33))
    hostile("duplicate member in the envelope", "the envelope's id twice", 400,
            body=compact(n.envelope("TRANSACTION.SUCCESS", compact(n.payment(n.order("H"))))).replace(
                '{"id":', '{"id":"EV-00000000000000000000","id":', 1))
    dup = compact(n.payment(n.order("H"))).replace('{"mchid":', '{"out_trade_no":"Z1","mchid":', 1)
    hostile("duplicate member in the resource", "the decrypted resource's out_trade_no twice", 400, resource_text=dup)
    signed("not JSON", "a signed body that is not JSON", 400, "mchid=1900000100&out_trade_no=1&total=100")
    signed("huge nesting", "a signed body of 30000 nested arrays", 400, "[" * 30000 + "]" * 30000)
    p = compact(n.envelope("TRANSACTION.SUCCESS", compact(n.payment(n.order("H")))))
    signed("66 KB body", "a signed body over max_body_bytes (64 KiB): 413 before any parsing", 413,
           p[:-1] + " " * (66 * 1024 - len(p.encode("utf-8"))) + "}")

    # A v3 notification on the v2 path, and a v2 one on the v3 path.
    body = compact(n.envelope("TRANSACTION.SUCCESS", compact(n.payment(n.order("H")))))
    hostile("v3 notification on the v2 path", "JSON with v3 headers posted to [[wechat]]", 400, body=body, path=V2_PATH)
    with open(os.path.join(FIXTURES, "wechat", "pay-md5.xml"), encoding="utf-8") as f:
        v2 = f.read()
    hostile("v2 notification on the v3 path", "a genuine v2 XML notification, no v3 headers", 401, body=v2,
            headers={"Content-Type": "text/xml"})
    hostile("v2 notification signed as v3", "v2 XML with valid v3 signature headers: signed, but not JSON", 400, body=v2)
    return {"cases": cases}


# ---- v2 and v3 of one payment ----------------------------------------------------------------------------

def v2_payment(fields):
    """A v2 payment notification signed by wechatpy (MD5), the reference Tests/crosscheck/wechatpy_check.py uses."""
    from wechatpy.pay.utils import calculate_signature  # noqa: PLC0415 (only this mode needs wechatpy)
    with open(os.path.join(FIXTURES, "secrets", "wechat.key"), encoding="utf-8") as f:
        key = f.read().strip()
    signed = dict(fields)
    signed["sign"] = calculate_signature(fields, key)
    return "<xml>%s</xml>" % "".join("<%s><![CDATA[%s]]></%s>" % (k, v, k) for k, v in signed.items())


def cross(seed, now):
    n = Notifier(seed, now)
    cases = []
    paid_at = now - 90

    def payment(out_trade_no):
        return {
            "out_trade_no": out_trade_no, "transaction_id": n.digits("4200000000", 28), "total": 101, "currency": "CNY",
            "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "appid": V2_APPID, "trade_type": "JSAPI", "bank_type": "CMC",
            "attach": "订单 & <附言>", "paid_at": paid_at,
        }

    def v2(name, pay, outcome, total=None, paid=None):
        fields = {
            "appid": pay["appid"], "mch_id": V2_MCHID, "nonce_str": n.token(32), "result_code": "SUCCESS",
            "return_code": "SUCCESS", "openid": pay["openid"], "trade_type": pay["trade_type"],
            "bank_type": pay["bank_type"], "total_fee": str(total or pay["total"]), "fee_type": pay["currency"],
            "cash_fee": str(total or pay["total"]), "transaction_id": pay["transaction_id"],
            "out_trade_no": pay["out_trade_no"], "attach": pay["attach"], "is_subscribe": "N",
            # yyyyMMddHHmmss, Beijing time.
            "time_end": datetime.datetime.fromtimestamp(paid or pay["paid_at"], BEIJING).strftime("%Y%m%d%H%M%S"),
        }
        key = dedupe_key("wechat.pay", V2_MCHID, pay["out_trade_no"], "SUCCESS")
        event = {"source": "wechat.pay", "tenant": V2_MCHID, "order_ref": pay["out_trade_no"], "status": "SUCCESS",
                 "amount": int(fields["total_fee"]), "currency": "CNY", "verified_with": "md5", "dedupe_key": key}
        cases.append(case(name, "v2 XML signed by wechatpy", {"Content-Type": "text/xml"}, v2_payment(fields), 200,
                          outcome, key, event if outcome == "stored" else None, path=V2_PATH))

    def v3(name, pay, outcome, total=None, success_time=None):
        resource = {
            "mchid": V2_MCHID, "appid": pay["appid"], "out_trade_no": pay["out_trade_no"],
            "transaction_id": pay["transaction_id"], "trade_type": pay["trade_type"], "trade_state": "SUCCESS",
            "trade_state_desc": "支付成功", "bank_type": pay["bank_type"], "attach": pay["attach"],
            "success_time": success_time or rfc3339(pay["paid_at"]), "payer": {"openid": pay["openid"]},
            "amount": {"total": total or pay["total"], "payer_total": total or pay["total"], "currency": pay["currency"],
                       "payer_currency": "CNY"},
        }
        body = compact(n.envelope("TRANSACTION.SUCCESS", compact(resource)))
        key = dedupe_key("wechat.pay", V2_MCHID, pay["out_trade_no"], "SUCCESS")
        event = pay_event(resource, key, tenant=V2_MCHID) if outcome == "stored" else None
        cases.append(case(name, "v3 JSON signed with the SDK test key", n.sign(body), body, 204, outcome, key, event))

    a = payment(n.order("A"))
    v2("v2 then v3: v2", a, "stored")
    v3("v2 then v3: v3", a, "duplicate")
    b = payment(n.order("B"))
    v3("v3 then v2: v3", b, "stored")
    v2("v3 then v2: v2", b, "duplicate")
    c = payment(n.order("C"))
    v2("v2 then v3 of another total: v2", c, "stored")
    v3("v2 then v3 of another total: v3", c, "conflict", total=102)
    d = payment(n.order("D"))
    v3("v3 then v2 of another total: v3", d, "stored")
    v2("v3 then v2 of another total: v2", d, "conflict", total=100)
    e = payment(n.order("E"))
    v2("same instant written in UTC: v2", e, "stored")
    v3("same instant written in UTC: v3", e, "duplicate", success_time=rfc3339(e["paid_at"], datetime.timezone.utc))
    f = payment(n.order("F"))
    v2("one second later: v2", f, "stored")
    v3("one second later: v3", f, "conflict", success_time=rfc3339(f["paid_at"] + 1))
    return {"cases": cases}


def check(path):
    """Verifies a signed capture the way WeChat Pay's own SDKs do, sharing no code with payhook."""
    raw = open(path, "rb").read()
    head, sep, body = raw.partition(b"\n\n")
    if not sep:
        sys.exit("no blank line between the headers and the body")
    if body.endswith(b"\n"):
        body = body[:-1]
    headers = {}
    for line in head.decode("utf-8").split("\n"):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("wechatpay-serial") != PUB_KEY_ID:
        sys.exit("unexpected serial")
    if headers.get("wechatpay-signature-type", "WECHATPAY2-SHA256-RSA2048") != "WECHATPAY2-SHA256-RSA2048":
        sys.exit("unexpected signature type")
    message = headers["wechatpay-timestamp"].encode() + b"\n" + headers["wechatpay-nonce"].encode() + b"\n" + body + b"\n"
    PRIVATE_KEY.public_key().verify(base64.b64decode(headers["wechatpay-signature"]), message, padding.PKCS1v15(), hashes.SHA256())
    envelope = json.loads(body)
    resource = envelope["resource"]
    if envelope["resource_type"] != "encrypt-resource" or resource["algorithm"] != "AEAD_AES_256_GCM":
        sys.exit("unexpected envelope")
    plain = AESGCM(APIV3_KEY.encode()).decrypt(
        resource["nonce"].encode(), base64.b64decode(resource["ciphertext"]), resource.get("associated_data", "").encode())
    print(json.dumps({"event_type": envelope["event_type"], "resource": json.loads(plain)}, ensure_ascii=False))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "check":
        check(sys.argv[2])
        return
    if len(sys.argv) != 4 or sys.argv[1] not in ("notifications", "cross"):
        sys.exit(__doc__)
    seed, now = int(sys.argv[2]), int(sys.argv[3])
    made = notifications(seed, now) if sys.argv[1] == "notifications" else cross(seed, now)
    print(json.dumps(made, ensure_ascii=False))


if __name__ == "__main__":
    main()
