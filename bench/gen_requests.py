#!/usr/bin/env python3
"""Correctly signed callback sets for payhook's benchmark, one request per line.

unified (GET paths):   gen_requests.py unified -n 200000 --secret S --domain D --route /notify/unified -o paths.txt
    sign = values-sha1 or, with --scheme salted-sha1, the k=v rule (README.md, "The unified pay platform")
wechat (XML bodies):   gen_requests.py wechat -n 50000 --key K --mch-id M --appid A -o bodies.txt
    MD5-signed payment result notifications (README.md, "WeChat Pay v2"); --hmac for HMAC-SHA256
wechatv3 (JSON + headers): gen_requests.py wechatv3 -n 30000 --mch-id 1900000100 -o v3.txt
    TRANSACTION.SUCCESS notifications of WeChat Pay API v3 (docs/protocols.md §8): the resource encrypted
    with AES-256-GCM under the APIv3 key (--v3-key), `timestamp\nnonce\nbody\n` signed with RSASSA-PKCS1-v1_5
    SHA-256 by --private-key (Fixtures/wechat-v3/wechat_pay_private_key.pem). Needs Python's `cryptography`.
    One line: `timestamp TAB nonce TAB serial TAB signature TAB body`. Every timestamp is the time of
    generation (--timestamp to pin it), so a set is only accepted within payhook's max_clock_skew_s of it.
alipay (form bodies):  gen_requests.py alipay -n 80000 --app-id 2021000000000001 -o alipay.txt
    TRADE_SUCCESS trade notifications of Alipay (Sources/PayhookAlipay/AlipaySource.swift): a form body as
    Alipay POSTs it, `sign` = base64 RSASSA-PKCS1-v1_5 SHA-256 (RSA2) over the sorted `name=value` pairs
    without sign and sign_type, by --private-key (Fixtures/alipay/test-only-alipay-private-key.pem). Needs
    Python's `cryptography`; signed in one process per CPU. Deterministic (fixed notify_time), so a set is
    cached like the others.
jeepay (form bodies):  gen_requests.py jeepay -n 1000 --mch-no M1700000000 --app-id 65a0b1c2d3e4f5a6b7c8d9e0 -o j.txt
    Jeepay payment notifications (Sources/PayhookXxPay/JeepaySource.swift), MD5 `&key=` with --key
selftest:              gen_requests.py selftest
    rebuilds Fixtures/wechat-v3/v3-4.json with the wechatv3 code (same body bytes, same signature) and
    checks that it verifies under wechat_pay_public_key.pem; exit 1 if anything differs

Line i is event i, with requestKey / out_trade_no / mchOrderNo = PREFIX + i (8 digits), so a spool can be
checked afterwards against exactly the lines that were sent (check_spool.py). Every value but the v3
timestamps (and with them the v3 signatures and times) is deterministic, so run.py caches the files and
reuses them across runs; a v3 set only while its timestamps are fresh enough (run.py, V3_CLOCK_SKEW_S).

The defaults match the config run.py writes (tenant `bench`, secret `bench-secret`, merchant
1900000109; v3: merchant 1900000100, the APIv3 key and public key id of Fixtures/wechat-v3/README.md);
the signing rules are re-implemented here and share no code with payhook, so a
signing bug in payhook shows up as 401s instead of being mirrored.
"""
import argparse, base64, hashlib, hmac, json, os, sys, time
from urllib.parse import quote

PAY_TYPE_NAME = "\u5fae\u4fe1\u652f\u4ed8"  # 微信支付


def values_sha1(params, secret):
    vals = [v for k, v in params.items() if k != "sign" and v != ""] + [secret]
    vals.sort(key=lambda s: s.encode("utf-16-be"))  # Java String.compareTo order
    return hashlib.sha1("".join(vals).encode()).hexdigest()


def salted_sha1(params, secret):
    s = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign" and v != "")
    return hashlib.sha1((secret + s + secret).encode()).hexdigest()


def unified(i, a):
    p = {"money": str(100 + i % 9900), "requestKey": f"{a.prefix}{i:08d}",
         "payTime": str(1700000000000 + i * 1000), "orderSn": f"S{i:012d}",
         "payTypeCode": "Wechat", "payTypeName": PAY_TYPE_NAME, "currencyType": "CNY",
         "payStatus": "SUCCESSPAY", "domainCode": a.domain}
    p["sign"] = (salted_sha1 if a.scheme == "salted-sha1" else values_sha1)(p, a.secret)
    return a.route + "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in p.items())


def wechat(i, a):
    p = {"appid": a.appid, "mch_id": a.mch_id, "nonce_str": f"n{i:016d}", "result_code": "SUCCESS",
         "return_code": "SUCCESS", "openid": "oUpF8uMEb4qRXf22hE3X68TekukE", "trade_type": "JSAPI",
         "bank_type": "CFT", "total_fee": str(100 + i % 9900), "cash_fee": str(100 + i % 9900),
         "fee_type": "CNY", "transaction_id": f"42000{i:023d}", "out_trade_no": f"{a.prefix}{i:08d}",
         "time_end": "20261122120000", "attach": "\u652f\u4ed8\u6d4b\u8bd5"}
    if a.hmac:
        p["sign_type"] = "HMAC-SHA256"
    s = "&".join(f"{k}={v}" for k, v in sorted(p.items()) if v != "") + "&key=" + a.key
    p["sign"] = (hmac.new(a.key.encode(), s.encode(), hashlib.sha256).hexdigest() if a.hmac
                 else hashlib.md5(s.encode()).hexdigest()).upper()
    return "<xml>" + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in p.items()) + "</xml>"


# ---- WeChat Pay API v3 (docs/protocols.md §8) -------------------------------------------------------------
# Test material of Fixtures/wechat-v3/README.md ("From WeChat Pay's official SDKs", "Signed with the SDK test key").
HERE = os.path.dirname(os.path.abspath(__file__))
V3_FIXTURES = os.path.join(os.path.dirname(HERE), "Fixtures", "wechat-v3")
V3_KEY = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"
V3_SERIAL = "PUB_KEY_ID_0000000000000024101100397200000006"
V3_PRIVATE_KEY = os.path.join(V3_FIXTURES, "wechat_pay_private_key.pem")
PAY_SUCCESS = "\u652f\u4ed8\u6210\u529f"  # 支付成功
BEIJING = 8 * 3600


def beijing_rfc3339(unix):
    return time.strftime("%Y-%m-%dT%H:%M:%S+08:00", time.gmtime(unix + BEIJING))


def v3_plaintext(mch_id, appid, out_trade_no, transaction_id, success_time, openid, total):
    """The decrypted resource of a merchant-mode TRANSACTION.SUCCESS, members in WeChat's order."""
    return {"mchid": mch_id, "appid": appid, "out_trade_no": out_trade_no, "transaction_id": transaction_id,
            "trade_type": "JSAPI", "trade_state": "SUCCESS", "trade_state_desc": PAY_SUCCESS, "bank_type": "OTHERS",
            "attach": "", "success_time": success_time, "payer": {"openid": openid},
            "amount": {"total": total, "payer_total": total, "currency": "CNY", "payer_currency": "CNY"}}


def compact(value):
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class V3Signer:
    """Encrypts resources and signs notifications with Python's `cryptography` (no code shared with payhook)."""

    def __init__(self, api_v3_key=V3_KEY, private_key=V3_PRIVATE_KEY, serial=V3_SERIAL):
        from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import padding  # noqa: PLC0415
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415
        if len(api_v3_key.encode()) != 32:
            sys.exit("gen_requests: an APIv3 key is 32 bytes")
        self.gcm = AESGCM(api_v3_key.encode())
        with open(private_key, "rb") as f:
            self.key = serialization.load_pem_private_key(f.read(), None)
        self.sha256, self.pkcs1 = hashes.SHA256(), padding.PKCS1v15()
        self.serial = serial

    def body(self, event_id, create_time, plaintext, gcm_nonce, associated_data="transaction"):
        """The notification's JSON, its resource encrypted: AES-256-GCM, base64(ciphertext ‖ 16-byte tag)."""
        sealed = self.gcm.encrypt(gcm_nonce.encode(), compact(plaintext).encode(), associated_data.encode())
        return compact({"id": event_id, "create_time": create_time, "resource_type": "encrypt-resource",
                        "event_type": "TRANSACTION.SUCCESS", "summary": PAY_SUCCESS,
                        "resource": {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                                     "ciphertext": base64.b64encode(sealed).decode(),
                                     "associated_data": associated_data, "nonce": gcm_nonce}})

    def sign(self, timestamp, nonce, body):
        """base64 RSASSA-PKCS1-v1_5 SHA-256 over `timestamp\\nnonce\\nbody\\n`, the body's UTF-8 bytes."""
        message = f"{timestamp}\n{nonce}\n".encode() + body.encode() + b"\n"
        return base64.b64encode(self.key.sign(message, self.pkcs1, self.sha256)).decode()


def wechatv3(i, a, signer):
    ts = a.timestamp
    plain = v3_plaintext(a.mch_id, a.appid, f"{a.prefix}{i:08d}", f"42000{i:023d}", beijing_rfc3339(ts - 1),
                         "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", 100 + i % 9900)
    body = signer.body(f"EV-{a.prefix}{i:016d}", beijing_rfc3339(ts), plain, f"g{i:011d}")
    nonce = f"N{i:031d}"
    return "\t".join([str(ts), nonce, signer.serial, signer.sign(ts, nonce, body), body])


# ---- Alipay (Sources/PayhookAlipay/AlipaySigning.swift) and Jeepay (Sources/PayhookXxPay/MD5KeySigning.swift) ---
ALIPAY_PRIVATE_KEY = os.path.join(os.path.dirname(HERE), "Fixtures", "alipay", "test-only-alipay-private-key.pem")
ALIPAY_TIME = "2026-11-22 12:00:00"  # Beijing time, as Alipay writes it; the bench's replay window covers it
SUBJECT = "\u6d4b\u8bd5\u8ba2\u5355"  # 测试订单


def form(params):
    """An application/x-www-form-urlencoded body, every byte outside unreserved percent-encoded."""
    return "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())


class AlipaySigner:
    def __init__(self, private_key=ALIPAY_PRIVATE_KEY):
        from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import padding  # noqa: PLC0415
        with open(private_key, "rb") as f:
            self.key = serialization.load_pem_private_key(f.read(), None)
        self.sha256, self.pkcs1 = hashes.SHA256(), padding.PKCS1v15()

    def sign(self, params):
        text = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if v != "" and k not in ("sign", "sign_type"))
        return base64.b64encode(self.key.sign(text.encode(), self.pkcs1, self.sha256)).decode()


def alipay(i, a, signer):
    """A trade_status_sync TRADE_SUCCESS notification with the parameters of a real one (Fixtures/alipay's
    a1-yuque-trade.form has the same names), about 1 KB as a form."""
    amount = 100 + i % 9900
    yuan = "%d.%02d" % (amount // 100, amount % 100)
    p = {"gmt_create": ALIPAY_TIME, "charset": "utf-8", "seller_email": "seller@example.com", "subject": SUBJECT,
         "sign_type": "RSA2", "buyer_id": "2088102177846880", "invoice_amount": yuan,
         "notify_id": f"2026112200222120000{i:013d}",
         "fund_bill_list": '[{"amount":"%s","fundChannel":"ALIPAYACCOUNT"}]' % yuan,
         "notify_type": "trade_status_sync", "trade_status": "TRADE_SUCCESS", "receipt_amount": yuan,
         "buyer_pay_amount": yuan, "app_id": a.app_id, "notify_time": ALIPAY_TIME, "point_amount": "0.00",
         "total_amount": yuan, "trade_no": f"2026112222001446880{i:09d}", "auth_app_id": a.app_id,
         "buyer_logon_id": "159****0000", "gmt_payment": ALIPAY_TIME, "seller_id": "2088102177296610",
         "out_trade_no": f"{a.prefix}{i:08d}", "version": "1.0"}
    p["sign"] = signer.sign(p)
    return form(p)


def _alipay_chunk(job):
    """One worker's share of an Alipay set (the RSA signature dominates)."""
    start, stop, a = job
    signer = AlipaySigner(a.private_key)
    return [alipay(i, a, signer) for i in range(start, stop)]


def jeepay(i, a):
    amount = str(100 + i % 9900)
    p = {"payOrderId": f"P{i:020d}", "mchNo": a.mch_no, "appId": a.app_id, "mchOrderNo": f"{a.prefix}{i:08d}",
         "ifCode": "wxpay", "wayCode": "WX_NATIVE", "amount": amount, "currency": "cny", "state": "2",
         "clientIp": "127.0.0.1", "subject": SUBJECT, "body": SUBJECT, "channelOrderNo": f"42000{i:023d}",
         "errCode": "", "errMsg": "", "extParam": "", "createdAt": "1795320000000", "successTime": "1795320001000",
         "reqTime": "1795320002000"}
    pieces = sorted((f"{k}={v}&" for k, v in p.items() if v != ""), key=str.lower)
    p["sign"] = hashlib.md5(("".join(pieces) + "key=" + a.key).encode()).hexdigest().upper()
    return form(p)


def _v3_chunk(job):
    """One worker's share of a v3 set (RSA signing dominates: ~1-2 ms a line)."""
    start, stop, a = job
    signer = V3Signer(a.v3_key, a.private_key, a.serial)
    return [wechatv3(i, a, signer) for i in range(start, stop)]


def selftest():
    """Rebuilds V3-4 of Fixtures/wechat-v3/v3-4.json from its values: the same body bytes and signature
    (PKCS#1 v1.5 signing and GCM under a given nonce are deterministic), a signature that verifies under the
    public key, and a resource that decrypts back to the vector's plaintext."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    with open(os.path.join(V3_FIXTURES, "v3-4.json"), encoding="utf-8") as f:
        v = json.load(f)["vector"]
    h = v["headers"]
    signer = V3Signer(v["apiv3_key"])
    plain = json.loads(v["plaintext"])
    rebuilt_plain = v3_plaintext(plain["mchid"], plain["appid"], plain["out_trade_no"], plain["transaction_id"],
                                 plain["success_time"], plain["payer"]["openid"], plain["amount"]["total"])
    env = json.loads(v["body"])
    body = signer.body(env["id"], env["create_time"], rebuilt_plain, env["resource"]["nonce"])
    problems = []
    if compact(rebuilt_plain) != v["plaintext"]:
        problems.append("the plaintext differs from the vector's")
    if body != v["body"]:
        problems.append("the body differs from the vector's")
    if h["Wechatpay-Serial"] != V3_SERIAL:
        problems.append("the vector names another key id")
    sig = signer.sign(int(h["Wechatpay-Timestamp"]), h["Wechatpay-Nonce"], body)
    if sig != h["Wechatpay-Signature"]:
        problems.append("the signature differs from the vector's")
    with open(os.path.join(V3_FIXTURES, "wechat_pay_public_key.pem"), "rb") as f:
        public = serialization.load_pem_public_key(f.read())
    message = f"{h['Wechatpay-Timestamp']}\n{h['Wechatpay-Nonce']}\n{v['body']}\n".encode()
    if hashlib.sha256(message).hexdigest() != v["message_sha256"]:
        problems.append("the signed message's SHA-256 differs from the vector's")
    try:
        public.verify(base64.b64decode(sig), message, signer.pkcs1, signer.sha256)
    except Exception:  # noqa: BLE001 - cryptography's InvalidSignature
        problems.append("the signature does not verify under wechat_pay_public_key.pem")
    res = env["resource"]
    opened = signer.gcm.decrypt(res["nonce"].encode(), base64.b64decode(res["ciphertext"]),
                                res["associated_data"].encode())
    if opened.decode() != v["plaintext"]:
        problems.append("the vector's resource does not decrypt to its plaintext")
    for p in problems:
        print("selftest:", p)
    print("selftest: V3-4 rebuilt byte for byte" if not problems else "selftest: FAILED")
    return 1 if problems else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["unified", "wechat", "wechatv3", "alipay", "jeepay", "selftest"])
    ap.add_argument("-n", type=int, default=100000)
    ap.add_argument("-o", default="-")
    ap.add_argument("--prefix", default="K")
    ap.add_argument("--secret", default="bench-secret")
    ap.add_argument("--domain", default="bench")
    ap.add_argument("--route", default="/notify/unified")
    ap.add_argument("--scheme", default="values-sha1", choices=["values-sha1", "salted-sha1"])
    ap.add_argument("--key", default="192006250b4c09247ec02edce69f6a2d")
    ap.add_argument("--mch-id", help="default 1900000109 (wechat), 1900000100 (wechatv3)")
    ap.add_argument("--appid", help="default wx2421b1c4370ec43b (wechat), wxdace645e0bc2cXXX (wechatv3)")
    ap.add_argument("--hmac", action="store_true")
    ap.add_argument("--v3-key", default=V3_KEY, help="wechatv3: the APIv3 key (32 bytes)")
    ap.add_argument("--private-key", help="wechatv3, alipay: PEM private key that signs (default: "
                    "Fixtures/wechat-v3/wechat_pay_private_key.pem, Fixtures/alipay/test-only-alipay-private-key.pem)")
    ap.add_argument("--app-id", help="alipay: app_id (default 2021000000000001); jeepay: appId "
                    "(default 65a0b1c2d3e4f5a6b7c8d9e0)")
    ap.add_argument("--mch-no", default="M1700000000", help="jeepay: mchNo")
    ap.add_argument("--serial", default=V3_SERIAL, help="wechatv3: Wechatpay-Serial, the public key's id")
    ap.add_argument("--timestamp", type=int, help="wechatv3: Wechatpay-Timestamp of every line (default: now)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="wechatv3, alipay: signing processes")
    a = ap.parse_args()
    if a.kind == "selftest":
        sys.exit(selftest())
    v3 = a.kind == "wechatv3"
    a.mch_id = a.mch_id or ("1900000100" if v3 else "1900000109")
    a.appid = a.appid or ("wxdace645e0bc2cXXX" if v3 else "wx2421b1c4370ec43b")
    a.private_key = a.private_key or (ALIPAY_PRIVATE_KEY if a.kind == "alipay" else V3_PRIVATE_KEY)
    a.app_id = a.app_id or ("65a0b1c2d3e4f5a6b7c8d9e0" if a.kind == "jeepay" else "2021000000000001")
    if v3:
        write_v3(a)
        return
    if a.kind == "alipay":
        write_parallel(a, _alipay_chunk)
        return
    make = {"unified": unified, "wechat": wechat, "jeepay": jeepay}[a.kind]
    # Written to a temporary name and renamed, so an interrupted generation never leaves a short
    # file that a later run would take for a complete cached set.
    if a.o == "-":
        for i in range(a.n):
            sys.stdout.write(make(i, a) + "\n")
        return
    tmp = a.o + ".part"
    with open(tmp, "w", encoding="utf-8") as out:
        for i in range(a.n):
            out.write(make(i, a) + "\n")
    os.replace(tmp, a.o)


def write_v3(a):
    """The v3 set, signed in --jobs processes, written in line order (to a .part file, then renamed)."""
    a.timestamp = a.timestamp or int(time.time())
    write_parallel(a, _v3_chunk)


def write_parallel(a, chunk):
    """A set whose lines `chunk` makes 2,000 at a time in --jobs processes, written in line order (to a .part
    file, then renamed)."""
    step = 2000
    jobs = [(s, min(s + step, a.n), a) for s in range(0, a.n, step)]
    out = sys.stdout if a.o == "-" else open(a.o + ".part", "w", encoding="utf-8")
    try:
        if a.jobs > 1 and len(jobs) > 1:
            import multiprocessing  # noqa: PLC0415
            with multiprocessing.Pool(a.jobs) as pool:
                for lines in pool.imap(chunk, jobs):
                    out.write("\n".join(lines) + "\n")
        else:
            for job in jobs:
                out.write("\n".join(chunk(job)) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    if a.o != "-":
        os.replace(a.o + ".part", a.o)


if __name__ == "__main__":
    main()
