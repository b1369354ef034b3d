#!/usr/bin/env python3
"""Checks what `payhook sign alipay|xxpay|jeepay` prints, with code that shares nothing with payhook (test
tooling, run by Tests/PayhookServerTests/ProviderToolTests.swift).

  check alipay FILE [PUBLIC_KEY_PEM]  FILE holds the form body Alipay POSTs; the RSA signature (sign_type RSA2:
                                      SHA256withRSA, RSA: SHA1withRSA) is verified with `cryptography` over
                                      every non-empty parameter but sign and sign_type, sorted by name, joined
                                      as name=value with &. The key defaults to
                                      Fixtures/alipay/test-only-alipay-public-key.pem.
  check xxpay FILE                    FILE holds the query string XxPay puts on its POST; MD5 with the resKey of
                                      Fixtures/secrets/xxpay.reskey.
  check jeepay FILE                   FILE holds the form body Jeepay POSTs; MD5 with the app secret of the
                                      demo tenant its appId names (Fixtures/demo.toml, Fixtures/secrets/).

The MD5 rule of both: every non-empty "name=value&" but sign, sorted by Java's
String.CASE_INSENSITIVE_ORDER, then "key=" and the secret; uppercase hex. Prints the parameters as a JSON
object and exits 0 when the signature verifies; prints why not and exits 1 otherwise. Never prints a secret
or the signature it expected.
"""
import base64
import hashlib
import hmac
import json
import os
import sys
from urllib.parse import parse_qsl

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "..", "Fixtures")
JEEPAY_SECRETS = {
    "65a0b1c2d3e4f5a6b7c8d9e0": "jeepay.appsecret",
    "68219e426e70ed6a5e4229b6": "jeepay-j1.appsecret",
}


def secret(name):
    with open(os.path.join(FIXTURES, "secrets", name), encoding="utf-8") as f:
        return f.read().splitlines()[0].strip()


def parameters(text):
    pairs = parse_qsl(text.strip(), keep_blank_values=True, strict_parsing=True, encoding="utf-8", errors="strict")
    names = [name for name, _ in pairs]
    if len(names) != len(set(names)):
        fail("a parameter is repeated")
    return dict(pairs)


def fail(reason):
    print(reason)
    sys.exit(1)


def check_alipay(params, key_file):
    sign = params.get("sign")
    if not sign:
        fail("no sign")
    digest = {"RSA2": hashes.SHA256(), "RSA": hashes.SHA1()}.get(params.get("sign_type", "RSA2"))
    if digest is None:
        fail("sign_type is neither RSA2 nor RSA")
    content = "&".join(
        "%s=%s" % (name, params[name])
        for name in sorted(params)  # code point order, which is UTF-8 byte order
        if name not in ("sign", "sign_type") and params[name] != "")
    with open(key_file, "rb") as f:
        key = serialization.load_pem_public_key(f.read())
    try:
        key.verify(base64.b64decode(sign, validate=True), content.encode("utf-8"), padding.PKCS1v15(), digest)
    except (InvalidSignature, ValueError):
        fail("the RSA signature does not verify")


def java_case_insensitive(text):
    """Java's CASE_INSENSITIVE_ORDER key: UTF-16 code units, each upper- then lower-cased."""
    units = text.encode("utf-16-be")
    key = []
    for i in range(0, len(units), 2):
        unit = (units[i] << 8) | units[i + 1]
        char = chr(unit) if not 0xD800 <= unit <= 0xDFFF else None
        if char is not None and len(char.upper()) == 1 and len(char.upper().lower()) == 1:
            unit = ord(char.upper().lower())
        key.append(unit)
    return key


def check_md5(params, key):
    sign = params.get("sign")
    if not sign:
        fail("no sign")
    pieces = sorted(("%s=%s&" % (k, v) for k, v in params.items() if k != "sign" and v != ""), key=java_case_insensitive)
    expected = hashlib.md5(("".join(pieces) + "key=" + key).encode("utf-8")).hexdigest().upper()
    if not hmac.compare_digest(expected, sign.upper()):
        fail("the MD5 signature does not match")


def main(argv):
    if len(argv) < 3 or argv[0] != "check" or argv[1] not in ("alipay", "xxpay", "jeepay"):
        print(__doc__)
        return 2
    kind, path = argv[1], argv[2]
    with open(path, encoding="utf-8") as f:
        params = parameters(f.read())
    if kind == "alipay":
        check_alipay(params, argv[3] if len(argv) > 3 else os.path.join(FIXTURES, "alipay", "test-only-alipay-public-key.pem"))
    elif kind == "xxpay":
        check_md5(params, secret("xxpay.reskey"))
    else:
        name = JEEPAY_SECRETS.get(params.get("appId", ""))
        if name is None:
            fail("appId names no demo jeepay tenant")
        check_md5(params, secret(name))
    print(json.dumps(params, ensure_ascii=False, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
