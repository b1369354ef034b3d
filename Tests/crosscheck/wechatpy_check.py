#!/usr/bin/env python3
"""Cross-checks payhook against independent implementations (test tooling, run by the Swift tests).

  make-wechat N SEED     print N WeChat v2 notifications as a JSON list of bodies: payments signed by
                         wechatpy (MD5 and HMAC-SHA256, with and without sign_type, Chinese text, empty
                         values) and refunds encrypted with `cryptography` (AES-256-ECB, PKCS#7)
  check-wechat-pay FILE  verify a payment body with wechatpy; print its out_trade_no
  check-wechat-refund FILE  decrypt a refund body with wechatpy; print its out_refund_no
  check-unified QUERY    verify a unified query with the Fixtures/unified/make_samples.py rules
Keys are the demo config's (Fixtures/secrets/).
"""
import base64
import hashlib
import json
import os
import random
import sys
from urllib.parse import parse_qsl

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "..", "Fixtures")
sys.path.insert(0, os.path.join(FIXTURES, "unified"))

import make_samples  # noqa: E402
from cryptography.hazmat.primitives import padding  # noqa: E402
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: E402
from wechatpy.pay import WeChatPay  # noqa: E402
from wechatpy.pay.utils import calculate_signature, calculate_signature_hmac  # noqa: E402

MCH_ID = "10000100"
APPID = "wx2421b1c4370ec43b"
KEY = open(os.path.join(FIXTURES, "secrets", "wechat.key"), encoding="utf-8").read().strip()


def cdata(fields, root="xml"):
    return "<%s>%s</%s>" % (root, "".join("<%s><![CDATA[%s]]></%s>" % (k, v, k) for k, v in fields.items()), root)


def payment(rng, i):
    fields = {
        "appid": APPID, "mch_id": MCH_ID, "nonce_str": "%032x" % rng.getrandbits(128),
        "result_code": rng.choice(["SUCCESS", "FAIL"]), "return_code": "SUCCESS", "openid": "oX%d" % i,
        "trade_type": "JSAPI", "bank_type": "CFT", "total_fee": str(rng.randint(1, 10**7)), "fee_type": "CNY",
        "cash_fee": "1", "transaction_id": "42%018d" % i, "out_trade_no": "xcheck-%d-%d" % (rng.getrandbits(32), i),
        "time_end": "20260101120000", "attach": rng.choice(["支付测试", "a&b=c", "", "😀 emoji", "<tag>"]),
        "device_info": "", "coupon_count": "1", "coupon_fee_0": "5", "coupon_id_0": "100",
    }
    hmac = i % 2 == 1
    if hmac and i % 4 == 1:
        fields["sign_type"] = "HMAC-SHA256"
    signed = {k: v for k, v in fields.items()}
    fields["sign"] = calculate_signature_hmac(signed, KEY) if hmac else calculate_signature(signed, KEY)
    return cdata(fields)


def refund(rng, i):
    # Every field of the refund document (README, "WeChat Pay v2 notifications"); success_time only when the refund succeeded.
    refund_fee = rng.randint(1, 9999)
    inner = {
        "out_refund_no": "xref-%d" % i, "out_trade_no": "xorder-%d" % i, "refund_fee": str(refund_fee),
        "total_fee": "10000", "settlement_refund_fee": str(refund_fee), "settlement_total_fee": "10000",
        "refund_status": rng.choice(["SUCCESS", "CHANGE", "REFUNDCLOSE"]),
        "refund_recv_accout": "支付用户零钱", "refund_account": "REFUND_SOURCE_RECHARGE_FUNDS",
        "refund_request_source": "API", "refund_id": "50000408942026010100%09d" % i,
        "transaction_id": "42000012342026010100%08d" % i,
    }
    if inner["refund_status"] == "SUCCESS":
        inner["success_time"] = "2026-01-01 12:00:05"
    plain = cdata(inner, "root").encode("utf-8")
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    key = hashlib.md5(KEY.encode()).hexdigest().encode()
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    req_info = base64.b64encode(enc.update(padded) + enc.finalize()).decode()
    return cdata({"return_code": "SUCCESS", "appid": APPID, "mch_id": MCH_ID, "nonce_str": "n%d" % i, "req_info": req_info})


def main():
    command = sys.argv[1]
    if command == "make-wechat":
        rng = random.Random(int(sys.argv[3]))
        n = int(sys.argv[2])
        print(json.dumps([payment(rng, i) if i % 3 else refund(rng, i) for i in range(n)], ensure_ascii=False))
    elif command == "check-wechat-pay":
        body = open(sys.argv[2], "rb").read()
        pay = WeChatPay(appid=APPID, api_key=KEY, mch_id=MCH_ID)
        import xmltodict
        fields = dict(xmltodict.parse(body)["xml"])
        sign = fields.pop("sign")
        fields = {k: (v or "") for k, v in fields.items()}
        if fields.get("sign_type") == "HMAC-SHA256" or len(sign) == 64:
            ok = calculate_signature_hmac(fields, KEY) == sign
        else:
            ok = pay.parse_payment_result(body) is not None
        print(fields["out_trade_no"] if ok else "MISMATCH")
        sys.exit(0 if ok else 1)
    elif command == "check-wechat-refund":
        pay = WeChatPay(appid=APPID, api_key=KEY, mch_id=MCH_ID)
        result = pay.parse_refund_notify_result(open(sys.argv[2], "rb").read())
        print(result["out_refund_no"])
    elif command == "check-unified":
        params = parse_qsl(sys.argv[2], keep_blank_values=True)
        sign = dict(params)["sign"]
        unsigned = [(k, v) for k, v in params if k != "sign"]
        expected = make_samples.values_sha1(unsigned, make_samples.secret("demo.secret"))
        print("OK" if expected == sign else "MISMATCH")
        sys.exit(0 if expected == sign else 1)
    else:
        sys.exit("unknown command " + command)


if __name__ == "__main__":
    main()
