#!/usr/bin/env python3
"""Correctly signed callback sets for payhook's benchmark, one request per line.

unified (GET paths):   gen_requests.py unified -n 200000 --secret S --domain D --route /notify/unified -o paths.txt
    sign = values-sha1 or, with --scheme salted-sha1, the k=v rule (README.md, "The unified pay platform")
wechat (XML bodies):   gen_requests.py wechat -n 50000 --key K --mch-id M --appid A -o bodies.txt
    MD5-signed payment result notifications (README.md, "WeChat Pay v2"); --hmac for HMAC-SHA256

Line i is event i, with requestKey / out_trade_no = PREFIX + i (8 digits), so a spool can be
checked afterwards against exactly the lines that were sent (check_spool.py). Every value is
deterministic, so run.py caches the files and reuses them across runs.

The defaults match the config run.py writes (tenant `bench`, secret `bench-secret`, merchant
1900000109); the signing rules are re-implemented here and share no code with payhook, so a
signing bug in payhook shows up as 401s instead of being mirrored.
"""
import argparse, hashlib, hmac, os, sys
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["unified", "wechat"])
    ap.add_argument("-n", type=int, default=100000)
    ap.add_argument("-o", default="-")
    ap.add_argument("--prefix", default="K")
    ap.add_argument("--secret", default="bench-secret")
    ap.add_argument("--domain", default="bench")
    ap.add_argument("--route", default="/notify/unified")
    ap.add_argument("--scheme", default="values-sha1", choices=["values-sha1", "salted-sha1"])
    ap.add_argument("--key", default="192006250b4c09247ec02edce69f6a2d")
    ap.add_argument("--mch-id", default="1900000109")
    ap.add_argument("--appid", default="wx2421b1c4370ec43b")
    ap.add_argument("--hmac", action="store_true")
    a = ap.parse_args()
    make = unified if a.kind == "unified" else wechat
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


if __name__ == "__main__":
    main()
