#!/usr/bin/env python3
"""Crash harness for payhook: SIGKILL under load, graceful SIGTERM under load, and an ALICE-style checker.

What it does (docs/durability.md §10.2, §10.6 "Graceful shutdown", §8; docs/contract.md §3, §4):

  1. Generates a pool of correctly signed callbacks, deterministically from --seed, with an implementation
     that shares no code with payhook: unified queries with Fixtures/unified/make_samples.py's signing rules,
     WeChat payment results signed here (MD5 / HMAC-SHA256, checked against wechatpy when it is installed),
     WeChat refund results encrypted here (AES-256-ECB through `cryptography`, or the openssl command), and
     WeChat Pay API v3 payment and refund notifications (JSON, resource AES-256-GCM-encrypted at pool time,
     headers RSA-signed with `cryptography` when each request is sent, so that Wechatpay-Timestamp is always
     fresh; success is 204 with no body), Alipay trade notifications (form POSTs, RSA2 with `cryptography` and the
     test-only key of Fixtures/alipay), XxPay notifications (MD5 `&key=`, parameters in the query of a POST with an
     empty body, some retries as GET) and Jeepay notifications (form POSTs, MD5 `&key=`, answered `SUCCESS`).
     Each dedupe key has one or more variants: byte-different deliveries of the same content (duplicates)
     and, for a few keys, a correctly signed delivery with other content (a conflict, docs/contract.md §4.5).
     A handful of requests made by `payhook sign` itself are mixed in.
  2. Kill phase: starts `payhook serve` on a fresh spool, drives it with --clients concurrent clients, logs
     `ACK <event-id>` only after a complete success answer, sends SIGKILL after a random 0.05-1.5 s, checks the
     crashed spool, predicts what recovery must repair, restarts on the same spool, checks that the recovery
     notice says exactly that, and re-sends a mix of unacknowledged and acknowledged requests first. Some
     cycles first kill a server while it starts (mostly in the middle of recovery).
  3. Graceful phase: SIGTERM under load; the server must exit 0 within shutdown_grace_s plus a margin; while it
     runs, a second `payhook serve` on the same spool must exit 1 naming the holder's pid.
  4. Final phase: re-sends acknowledged duplicates (all must succeed and create nothing), stops with SIGTERM,
     runs the full checker, then starts once more: recovery must have nothing to repair.
  Phases 2-4 run on one spool per --kills-per-spool kills (the graceful rounds are shared out among them).
  --store postgres (PostgresHarness; Tests/crash/README.md "PostgreSQL mode"): the same against [store] kind =
  "postgres" on a private cluster (pg_cluster.py, fsync on), --instances payhook processes per kill cycle on one
  database, and in --db-crashes percent of the cycles a SIGKILL of the database server under load; the checker
  reads the ledger, queue and conflict tables with psql.

Exit status: 0 when every check held, 1 on any violation (each printed with what was seen), 2 on bad usage or
when the harness itself could not run. On failure the working directory (spool, ACK log, server logs) is
kept and its path printed. Python 3.11 standard library; wechatpy and cryptography are used when present (the
v3 and Alipay notifications need cryptography: without it they are left out, and the run says so).
"""
import argparse
import base64
import collections
import hashlib
import hmac
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from urllib.parse import parse_qsl, quote

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))

WECHAT_SUCCESS = (
    b"<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"
)
UNIFIED_SUCCESS = b"success"
V3_SUCCESS_STATUS = 204  # and no body (docs/protocols.md §8.6)
# Alipay and XxPay stop retrying on `success`, Jeepay on `SUCCESS` (Sources/PayhookAlipay/AlipaySource.swift,
# Sources/PayhookXxPay/XxPaySource.swift, Sources/PayhookXxPay/JeepaySource.swift).
SUCCESS_ANSWERS = {"unified": UNIFIED_SUCCESS, "alipay.trade": b"success", "xxpay.pay": b"success",
                   "jeepay.pay": b"SUCCESS"}
FORM = "application/x-www-form-urlencoded; charset=utf-8"
# The `verified_with` each of these sources writes (Sources/PayhookAlipay/AlipaySigning.swift, AlipaySignType;
# Sources/PayhookXxPay/XxPaySource.swift and JeepaySource.swift).
VERIFIED_WITH = {"alipay.trade": "rsa2", "xxpay.pay": "md5", "jeepay.pay": "md5"}
# Key.api of those sources' keys, and the name the figures give each.
FAMILIES = {"alipay": ("Alipay", "alipay.trade"), "xxpay": ("XxPay", "xxpay.pay"), "jeepay": ("Jeepay", "jeepay.pay")}
EVENT_SCHEMA = "payhook.event.v1"
HEX64 = re.compile(r"^[0-9a-f]{64}$")
EVENT_NAME = re.compile(r"^([0-9a-f]{64})\.json$")
LISTENING = re.compile(r"^payhook listening on 127\.0\.0\.1:(\d+) spool (.+)$")
LOCKED = "in use by another payhook (pid {pid})"
# Fields a WeChat retry may change without being a conflict (README "WeChat Pay v2 notifications").
# Alipay: a retry carries a new notify_time; XxPay: backType says who sent it (pay center or the buyer's
# browser); Jeepay: reqTime is when the notification was made (the fingerprint rules of
# Sources/PayhookAlipay/AlipaySource.swift and Sources/PayhookXxPay/XxPaySource.swift, JeepaySource.swift).
TRANSPORT_FIELDS = {"wechat.pay": {"nonce_str", "sign_type"}, "alipay.trade": {"notify_time"},
                    "xxpay.pay": {"backType"}, "jeepay.pay": {"reqTime"}}
# A socket timeout per request: far above a healthy answer, well under request_deadline_s.
REQUEST_TIMEOUT_S = 10.0
MAX_SHOWN = 5



LOGFMT_PAIR = re.compile(r'([^\s=]+)=("(?:[^"\\]|\\.)*"|\S+)')


def logfmt_fields(line):
    """The key=value pairs of one of payhook's text log lines (logfmt, README "Operating it"): quoted values
    unescaped (\\" and \\\\, and \\xNN for every byte outside printable ASCII)."""
    fields = {}
    for key, value in LOGFMT_PAIR.findall(line):
        if value.startswith('"'):
            raw = value[1:-1].encode("ascii", "replace")
            value = re.sub(rb"\\(x[0-9a-f]{2}|.)",
                           lambda m: bytes([int(m.group(1)[1:], 16)]) if len(m.group(1)) == 3 else m.group(1), raw)
            value = value.decode("utf-8", "replace")
        fields[key] = value
    return fields


class HarnessError(Exception):
    """The harness could not do its job (not a finding about payhook)."""


# ----------------------------------------------------------------------------------------------------------
# Independent signing (no code shared with payhook's Swift sources)
# ----------------------------------------------------------------------------------------------------------

def load_make_samples(repo):
    """Fixtures/unified/make_samples.py: the repository's independent implementation of both unified rules."""
    sys.dont_write_bytecode = True  # leave no __pycache__ in Fixtures/
    sys.path.insert(0, os.path.join(repo, "Fixtures", "unified"))
    try:
        import make_samples  # noqa: PLC0415
    finally:
        sys.path.pop(0)
    return make_samples


def first_secret(table, base, prefix):
    """The first secret of a [[unified]] / [[wechat]] table: any listed secret verifies (README)."""
    if f"{prefix}_file" in table:
        with open(os.path.join(base, table[f"{prefix}_file"]), encoding="utf-8") as f:
            text = f.read()
    elif f"{prefix}_env" in table:
        text = os.environ.get(table[f"{prefix}_env"], "")
    else:
        text = table.get(prefix, "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise HarnessError(f"no secret found for tenant {table}")
    return lines[0]


def load_config(path):
    with open(path, "rb") as f:
        cfg = tomllib.load(f)
    base = os.path.dirname(os.path.abspath(path))
    unified = [
        {"path": t["path"], "domain": t["domain_code"], "scheme": t.get("sign_scheme", "values-sha1"),
         "secret": first_secret(t, base, "secret")}
        for t in cfg.get("unified", [])
    ]
    wechat = [
        {"path": t["path"], "mch_id": t["mch_id"], "appid": t.get("appid", "wx2421b1c4370ec43b"),
         "key": first_secret(t, base, "api_key"), "sign_types": t.get("sign_types", ["MD5", "HMAC-SHA256"])}
        for t in cfg.get("wechat", [])
    ]
    if not unified or not wechat:
        raise HarnessError(f"{path}: the harness needs at least one [[unified]] and one [[wechat]] tenant")
    wechat_v3 = [
        {"path": t["path"], "mch_id": t["mch_id"], "appid": t.get("appid", V3_APPID),
         "key": first_secret(t, base, "api_v3_key"), "serial": t.get("public_key_id", V3_KEY_ID),
         "public_key_file": os.path.join(base, t["public_key_file"]) if "public_key_file" in t else None}
        for t in cfg.get("wechat_v3", [])
    ]
    alipay = []
    for t in cfg.get("alipay", []):
        files = t.get("alipay_public_key_file", [])
        alipay.append({"path": t["path"], "app_id": t["app_id"], "seller_id": t.get("seller_id"),
                       "key_files": [os.path.join(base, n) for n in ([files] if isinstance(files, str) else files)],
                       "sign_types": t.get("sign_types", ["RSA2"]),
                       "charsets": [c.lower() for c in t.get("charsets", ["utf-8"])]})
    xxpay = [{"path": t["path"], "mch_id": t["mch_id"], "key": first_secret(t, base, "key")}
             for t in cfg.get("xxpay", [])]
    jeepay = [{"path": t["path"], "mch_no": t["mch_no"], "app_id": t["app_id"], "key": first_secret(t, base, "key")}
              for t in cfg.get("jeepay", [])]
    return {
        "unified": unified,
        "wechat": wechat,
        "wechat_v3": wechat_v3,
        "alipay": alipay,
        "xxpay": xxpay,
        "jeepay": jeepay,
        "grace": float(cfg.get("shutdown_grace_s", 10)),
        "per_ip": int(cfg.get("max_connections_per_ip", 32)),
    }


def wechat_sign(fields, key, algorithm):
    """WeChat Pay v2: non-empty fields but sign, names in byte order, `&key=`, MD5 or HMAC-SHA256, upper hex."""
    pairs = sorted(((k, v) for k, v in fields.items() if k != "sign" and v != ""), key=lambda kv: kv[0].encode())
    text = "&".join(f"{k}={v}" for k, v in pairs) + "&key=" + key
    if algorithm == "MD5":
        return hashlib.md5(text.encode("utf-8")).hexdigest().upper()
    return hmac.new(key.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest().upper()


def cdata(items, root="xml"):
    return "<%s>%s</%s>" % (root, "".join("<%s><![CDATA[%s]]></%s>" % (k, v, k) for k, v in items), root)


def parse_cdata(text):
    return dict(re.findall(r"<(\w+)><!\[CDATA\[(.*?)\]\]></\1>", text, re.S))


class AES256ECB:
    """AES-256-ECB with PKCS#7 for WeChat refunds: `cryptography` when installed, else the openssl command.

    ECB encrypts each block on its own, so many messages go through one openssl call and are split again.
    """

    def __init__(self, api_key):
        self.key = hashlib.md5(api_key.encode("utf-8")).hexdigest().encode("ascii")
        try:
            from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: PLC0415
            self.cipher = Cipher(algorithms.AES(self.key), modes.ECB())
            self.backend = "cryptography"
        except ImportError:
            self.cipher = None
            if shutil.which("openssl") is None:
                raise HarnessError("WeChat refunds need the Python package `cryptography` or the openssl command")
            self.backend = "openssl"

    def _run(self, data, decrypt):
        if self.cipher is not None:
            op = self.cipher.decryptor() if decrypt else self.cipher.encryptor()
            return op.update(data) + op.finalize()
        args = ["openssl", "enc", "-aes-256-ecb", "-nopad", "-K", self.key.hex()] + (["-d"] if decrypt else [])
        done = subprocess.run(args, input=data, capture_output=True, timeout=60, check=False)
        if done.returncode != 0:
            raise HarnessError(f"openssl enc failed: {done.stderr.decode(errors='replace')}")
        return done.stdout

    def encrypt_many(self, plaintexts):
        padded = []
        for plain in plaintexts:
            n = 16 - len(plain) % 16
            padded.append(plain + bytes([n]) * n)
        out = self._run(b"".join(padded), decrypt=False)
        result, offset = [], 0
        for p in padded:
            result.append(out[offset:offset + len(p)])
            offset += len(p)
        return result

    def decrypt(self, ciphertext):
        plain = self._run(ciphertext, decrypt=True)
        return plain[:-plain[-1]]


# WeChat Pay API v3: the appid the pool's payments name when the [[wechat_v3]] table pins none, and the key id
# when it names none (the test material of Fixtures/wechat-v3/README.md, which Fixtures/demo.toml serves).
V3_APPID = "wxdace645e0bc2cXXX"
V3_KEY_ID = "PUB_KEY_ID_0000000000000024101100397200000006"
V3_SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"


class V3Signer:
    """WeChat Pay v3 with Python's `cryptography` (no code shared with payhook): AES-256-GCM for resources, and
    RSASSA-PKCS1-v1_5 SHA-256 over `timestamp\\nnonce\\nbody\\n` for the Wechatpay-* headers (docs/protocols.md
    §7.1). Signing happens when a request is sent, so a delivery made minutes after the pool was built, after
    kills and restarts, is still inside max_clock_skew_s."""

    def __init__(self, private_key_path):
        from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import padding  # noqa: PLC0415
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415
        with open(private_key_path, "rb") as f:
            self.key = serialization.load_pem_private_key(f.read(), None)
        self.AESGCM, self.pkcs1, self.sha256 = AESGCM, padding.PKCS1v15(), hashes.SHA256()
        self.counter = 0
        self.lock = threading.Lock()
        self.signed = 0

    def seal(self, api_v3_key, nonce, plaintext, associated_data):
        sealed = self.AESGCM(api_v3_key.encode()).encrypt(nonce.encode(), plaintext, associated_data.encode())
        return base64.b64encode(sealed).decode("ascii")

    def open(self, api_v3_key, nonce, ciphertext, associated_data):
        return self.AESGCM(api_v3_key.encode()).decrypt(nonce.encode(), base64.b64decode(ciphertext),
                                                        associated_data.encode())

    def headers(self, body, serial):
        """Fresh Wechatpay-* headers for one delivery of `body` (bytes)."""
        with self.lock:
            self.counter += 1
            self.signed += 1
            n = self.counter
        timestamp = str(int(time.time()))
        nonce = "%s%026d" % (os.urandom(3).hex(), n)
        message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
        signature = base64.b64encode(self.key.sign(message, self.pkcs1, self.sha256)).decode("ascii")
        return {"Wechatpay-Timestamp": timestamp, "Wechatpay-Nonce": nonce, "Wechatpay-Serial": serial,
                "Wechatpay-Signature": signature, "Wechatpay-Signature-Type": V3_SIGNATURE_TYPE}


class AlipaySigner:
    """Alipay's RSA2 with Python's `cryptography` (no code shared with payhook): base64 of RSASSA-PKCS1-v1_5
    SHA-256 over every non-empty parameter but `sign` and `sign_type`, sorted by name, `name=value` joined with
    `&` (Sources/PayhookAlipay/AlipaySigning.swift). PKCS#1 v1.5 is deterministic, so a delivery's bytes are
    fixed at pool time."""

    def __init__(self, private_key_path):
        from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import padding  # noqa: PLC0415
        with open(private_key_path, "rb") as f:
            self.key = serialization.load_pem_private_key(f.read(), None)
        self.pkcs1, self.sha256 = padding.PKCS1v15(), hashes.SHA256()

    @staticmethod
    def content(params):
        return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if v and k not in ("sign", "sign_type"))

    def sign(self, params):
        return base64.b64encode(self.key.sign(self.content(params).encode("utf-8"), self.pkcs1, self.sha256)).decode()

    def pairs_with(self, tenant):
        """Whether one of the tenant's alipay_public_key_file keys (PEM public keys or certificates) is this
        private key's public half."""
        from cryptography import x509  # noqa: PLC0415
        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
        mine = self.key.public_key().public_numbers()
        for path in tenant["key_files"]:
            try:
                with open(path, "rb") as f:
                    text = f.read()
            except OSError:
                continue
            for m in re.finditer(rb"-----BEGIN ([A-Z ]+)-----.*?-----END \1-----", text, re.S):
                try:
                    if m.group(1) == b"PUBLIC KEY":
                        key = serialization.load_pem_public_key(m.group(0))
                    elif m.group(1) == b"CERTIFICATE":
                        key = x509.load_pem_x509_certificate(m.group(0)).public_key()
                    else:
                        continue
                    if key.public_numbers() == mine:
                        return True
                except (ValueError, TypeError, AttributeError):
                    continue
        return False


def md5_key_sign(params, secret):
    """XxPay's and Jeepay's MD5 (Sources/PayhookXxPay/MD5KeySigning.swift): every non-empty `name=value&` but
    sign, the strings sorted case-insensitively, then `key=` and the secret, upper-case hex."""
    pieces = sorted((f"{k}={v}&" for k, v in params.items() if v != "" and k != "sign"), key=str.lower)
    return hashlib.md5(("".join(pieces) + "key=" + secret).encode("utf-8")).hexdigest().upper()


def form(items, plus=False):
    """A form body or query from (name, value) pairs, every byte outside unreserved percent-encoded (with
    `plus`, spaces as `+`, as Java's URLEncoder writes them)."""
    from urllib.parse import quote_plus  # noqa: PLC0415
    enc = quote_plus if plus else (lambda v: quote(v, safe=""))
    return "&".join(f"{k}={enc(v)}" for k, v in items)


def dedupe_key(source, parts):
    """`source/part/part`, each part percent-encoded outside RFC 3986 unreserved (README "Events")."""
    return "/".join(quote(p, safe="-._~") for p in [source] + list(parts))


def event_id(key_text):
    return hashlib.sha256(key_text.encode("utf-8")).hexdigest()


def content_class(source, fields):
    """What makes two deliveries the same content: the fields but the transport ones (README, conflicts)."""
    ignored = TRANSPORT_FIELDS.get(source, set())
    return json.dumps(sorted((k, v) for k, v in fields.items() if k not in ignored), ensure_ascii=False)


# ----------------------------------------------------------------------------------------------------------
# The request pool
# ----------------------------------------------------------------------------------------------------------

class Variant:
    """One delivery: exact request bytes and the fields payhook must store for it. A v3 delivery also has the
    decrypted resource payhook must keep (`resource`) and the key id its headers are signed for (`v3_serial`);
    its headers are made when it is sent (V3Signer.headers), and its content is the whole resource, which is
    at least as strict as payhook's own comparison (WeChatFingerprint)."""
    __slots__ = ("method", "target", "body", "fields", "content", "label", "amount", "resource", "v3_serial",
                 "content_type")

    def __init__(self, method, target, body, fields, source, label, amount, resource=None, v3_serial=None,
                 content_type="text/xml"):
        self.method, self.target, self.body, self.fields = method, target, body, fields
        self.resource, self.v3_serial, self.content_type = resource, v3_serial, content_type
        self.content = (content_class(source, fields) if resource is None
                        else "v3:" + json.dumps(resource, ensure_ascii=False, sort_keys=True))
        self.label, self.amount = label, amount


class Key:
    """One dedupe key, its expected event id, and the deliveries the harness may send for it."""
    __slots__ = ("index", "source", "tenant", "status", "order_ref", "key_text", "id", "variants", "success",
                 "success_status", "acked", "sends", "origin", "pos", "api")

    def __init__(self, index, source, tenant, status, order_ref, parts, variants, origin="python", api="v2"):
        self.index, self.source, self.tenant, self.status, self.order_ref = index, source, tenant, status, order_ref
        self.key_text = dedupe_key(source, parts)
        self.id = event_id(self.key_text)
        self.variants = variants
        self.api = api
        # The success answer: `success` (unified, Alipay, XxPay), `SUCCESS` (Jeepay), the SUCCESS XML (WeChat v2),
        # or for WeChat Pay v3 204 with no body.
        self.success_status = V3_SUCCESS_STATUS if api == "v3" else 200
        self.success = b"" if api == "v3" else SUCCESS_ANSWERS.get(source, WECHAT_SUCCESS)
        self.acked = False
        self.sends = 0
        self.origin = origin

    @property
    def has_conflict(self):
        return len({v.content for v in self.variants}) > 1


# An hour ago: payhook refuses payment times older than its replay window (ledger_retention_days minus one
# day, README "Replays and the ledger's retention") and later than a day from now.
PAY_TIME_BASE = int(time.time() * 1000) - 3600 * 1000
# The same moment as WeChat writes it: Beijing time (UTC+8).
BEIJING_NOW = time.gmtime(PAY_TIME_BASE // 1000 + 8 * 3600)
TIME_END = time.strftime("%Y%m%d%H%M%S", BEIJING_NOW)
SUCCESS_TIME = time.strftime("%Y-%m-%d %H:%M:%S", BEIJING_NOW)
SUCCESS_TIME_V3 = time.strftime("%Y-%m-%dT%H:%M:%S+08:00", BEIJING_NOW)  # RFC 3339, as v3 writes it
UNIFIED_STATUSES = ["SUCCESSPAY", "SUCCESSPAY", "SUCCESSPAY", "FAILUREPAY", "SUCCESSREFUND", "NOTPAY", "CLOSED",
                    "WAITREFUND", "FAILUREREFUND", "NOTREFUND"]
PAY_TYPES = [("Wechat", "微信支付"), ("Alipay", "支付宝"), ("ChinapayOld", "银联"), ("Paypal", "PayPal")]
# Values whose dedupe-key parts need percent-encoding, so the harness's own key computation is exercised.
ODD_SUFFIXES = ["", "", "", "", "/a b", "+订单", "~x.y_z", "%25", "&k=v", "é"]


class PoolBuilder:
    def __init__(self, cfg, seed, make_samples, aes, v3signer=None, alipay_signer=None, alipay_tenant=None,
                 kinds=("xxpay", "jeepay")):
        self.cfg, self.ms, self.aes, self.signer = cfg, make_samples, aes, v3signer
        self.alipay_signer, self.alipay_tenant, self.kinds = alipay_signer, alipay_tenant, set(kinds)
        self.rng = random.Random(f"payhook-crash-pool-{seed}")
        self.seed = seed
        self.keys = []
        self.key_texts = set()
        self.refund_jobs = []  # (key index, variant index, plaintext, outer fields) encrypted in one batch

    def _add(self, key):
        if key.key_text in self.key_texts:
            return False
        self.key_texts.add(key.key_text)
        self.keys.append(key)
        return True

    def _dups(self):
        r = self.rng.random()
        return 2 if r < 0.10 else 1 if r < 0.40 else 0

    def _conflict(self):
        return self.rng.random() < 0.04

    # unified --------------------------------------------------------------------------------------------
    def _unified_sign(self, tenant, params):
        if tenant["scheme"] == "salted-sha1":
            return self.ms.salted_sha1(params, tenant["secret"])
        return self.ms.values_sha1(params, tenant["secret"])

    def _unified_variant(self, tenant, params, label, reorder=False, upper=False):
        sign = self._unified_sign(tenant, params)
        signed = params + [("sign", sign.upper() if upper else sign)]
        if reorder:
            signed = signed[:]
            self.rng.shuffle(signed)
        target = tenant["path"] + "?" + self.ms.query(signed)
        fields = {k: v for k, v in params if k != "sign" and v != ""}
        return Variant("GET", target, b"", fields, "unified", label, int(dict(params)["money"]))

    def unified(self, i, reuse=None):
        rng = self.rng
        if reuse is not None:
            tenant, request_key = reuse
        else:
            tenant = rng.choice(self.cfg["unified"])
            request_key = f"ck{self.seed}-u{i}" + rng.choice(ODD_SUFFIXES)
        status = rng.choice(UNIFIED_STATUSES)
        code, name = rng.choice(PAY_TYPES)
        money = rng.randint(0, 10**7)

        def params(amount):
            return [("money", str(amount)), ("requestKey", request_key), ("payTime", str(PAY_TIME_BASE + i * 1000)),
                    ("orderSn", f"SN{self.seed}{i:09d}"), ("payTypeCode", code), ("payTypeName", name),
                    ("currencyType", rng.choice(["CNY", "USD"]) if i % 7 == 0 else "CNY"), ("payStatus", status),
                    ("domainCode", tenant["domain"])]
        base = params(money)
        variants = [self._unified_variant(tenant, base, "original")]
        for _ in range(self._dups()):
            # A platform retry: same values, another parameter order, sometimes the sign in upper case.
            variants.append(self._unified_variant(tenant, base, "retry", reorder=True, upper=rng.random() < 0.3))
        if self._conflict():
            variants.append(self._unified_variant(tenant, params(money + 1), "conflict"))
        key = Key(i, "unified", tenant["domain"], status, request_key, [tenant["domain"], request_key, status],
                  variants)
        if self._add(key):
            return (tenant, request_key)
        return None

    # WeChat payment results ----------------------------------------------------------------------------
    def _pay_variant(self, tenant, fields, algorithm, with_sign_type, label, reorder=False):
        fields = dict(fields)
        fields["nonce_str"] = "%032x" % self.rng.getrandbits(128)
        if with_sign_type:
            fields["sign_type"] = algorithm
        items = list(fields.items())
        if reorder:
            self.rng.shuffle(items)
        sign = wechat_sign(fields, tenant["key"], algorithm)
        body = cdata(items + [("sign", sign)]).encode("utf-8")
        stored = {k: v for k, v in fields.items() if v != ""}
        return Variant("POST", tenant["path"], body, stored, "wechat.pay", label, int(fields["total_fee"]))

    def pay(self, i, reuse=None):
        rng = self.rng
        tenant = self.cfg["wechat"][0] if reuse is None else reuse[0]
        suffix = rng.choice(["", "", "", "_x", "-y", "|z", "*a", "@b"])
        out_trade_no = reuse[1] if reuse else f"ck{self.seed}p{i}" + suffix
        result = rng.choice(["SUCCESS", "SUCCESS", "SUCCESS", "FAIL"])
        fee = rng.randint(1, 10**7)
        fields = {
            "appid": tenant["appid"], "mch_id": tenant["mch_id"], "result_code": result, "return_code": "SUCCESS",
            "openid": f"oCrash{i}", "trade_type": "JSAPI", "bank_type": "CFT", "total_fee": str(fee),
            "fee_type": "CNY", "cash_fee": str(fee), "transaction_id": "42%020d" % i, "out_trade_no": out_trade_no,
            "time_end": TIME_END,
            "attach": rng.choice(["支付测试", "a&b=c", "", "😀 emoji", "<tag>", "x y"]),
            "device_info": "",
        }
        accepted = tenant["sign_types"]
        algorithm = rng.choice(accepted)
        first = self._pay_variant(tenant, fields, algorithm, rng.random() < 0.6, "original")
        variants = [first]
        for _ in range(self._dups()):
            # A WeChat retry: a fresh nonce_str, possibly signed the other way, elements in another order.
            other = rng.choice(accepted)
            variants.append(self._pay_variant(tenant, fields, other, other == "MD5" or rng.random() < 0.5, "retry",
                                              reorder=True))
        if self._conflict():
            changed = dict(fields, total_fee=str(fee + 1))
            variants.append(self._pay_variant(tenant, changed, algorithm, True, "conflict"))
        key = Key(i, "wechat.pay", tenant["mch_id"], result, out_trade_no, [tenant["mch_id"], out_trade_no, result],
                  variants)
        if self._add(key):
            self._wechatpy_check(first)
            return (tenant, out_trade_no)
        return None

    checked_with_wechatpy = 0
    wechatpy_missing = False

    def _wechatpy_check(self, variant):
        """Cross-checks the first payments against wechatpy, when installed: two implementations must agree."""
        if self.checked_with_wechatpy >= 50 or self.wechatpy_missing:
            return
        try:
            from wechatpy.pay.utils import calculate_signature, calculate_signature_hmac  # noqa: PLC0415
        except ImportError:
            self.wechatpy_missing = True
            return
        all_fields = parse_cdata(variant.body.decode("utf-8"))
        sign = all_fields.pop("sign")
        key = self.cfg["wechat"][0]["key"]
        hmac_type = all_fields.get("sign_type") == "HMAC-SHA256" or len(sign) == 64
        expected = calculate_signature_hmac(all_fields, key) if hmac_type else calculate_signature(all_fields, key)
        if expected != sign:
            raise HarnessError(f"the harness's WeChat signature disagrees with wechatpy's for {variant.body!r}")
        self.checked_with_wechatpy += 1

    # WeChat refund results -----------------------------------------------------------------------------
    def refund(self, i, reuse=None):
        rng = self.rng
        tenant = self.cfg["wechat"][0] if reuse is None else reuse[0]
        out_refund_no = reuse[1] if reuse else f"ck{self.seed}r{i}" + rng.choice(["", "", "", "_x", "-y"])
        status = rng.choice(["SUCCESS", "SUCCESS", "CHANGE", "REFUNDCLOSE"])
        fee = rng.randint(1, 99999)
        ids = rng.randrange(10**20, 10**21)

        def inner(amount):
            # Every field of WeChat's refund document (README, "WeChat Pay v2 notifications"); success_time only
            # for a refund that succeeded.
            fields = {
                "out_refund_no": out_refund_no, "out_trade_no": f"ck{self.seed}o{i}", "refund_fee": str(amount),
                "total_fee": "100000", "settlement_refund_fee": str(amount), "refund_status": status,
                "refund_recv_accout": "支付用户零钱", "refund_account": "REFUND_SOURCE_RECHARGE_FUNDS",
                # Ids shaped like WeChat's (29 and 28 digits), not zero-padded: a run of 32 equal characters
                # would encrypt to two equal blocks, which payhook refuses as an ECB splice.
                "refund_id": "50%06d%021d" % (i, ids), "transaction_id": "42%06d%020d" % (i, ids // 10),
                "refund_request_source": "API",
            }
            if status == "SUCCESS":
                fields["success_time"] = SUCCESS_TIME
            return fields
        contents = [("original", inner(fee))]
        contents += [("retry", inner(fee)) for _ in range(self._dups())]
        if self._conflict():
            contents.append(("conflict", inner(fee + 1)))
        key = Key(i, "wechat.refund", tenant["mch_id"], status, f"ck{self.seed}o{i}",
                  [tenant["mch_id"], out_refund_no, status], [])
        if not self._add(key):
            return None
        for label, fields in contents:
            plain = cdata(fields.items(), "root").encode("utf-8")
            outer = [("return_code", "SUCCESS"), ("appid", tenant["appid"]), ("mch_id", tenant["mch_id"]),
                     ("nonce_str", "%032x" % rng.getrandbits(128))]
            key.variants.append(
                Variant("POST", tenant["path"], b"", fields, "wechat.refund", label, int(fields["refund_fee"])))
            self.refund_jobs.append((key, len(key.variants) - 1, plain, outer))
        return (tenant, out_refund_no)

    def finish_refunds(self):
        if not self.refund_jobs:
            return
        ciphertexts = self.aes.encrypt_many([plain for _, _, plain, _ in self.refund_jobs])
        for (key, vi, _, outer), ct in zip(self.refund_jobs, ciphertexts):
            body = cdata(outer + [("req_info", base64.b64encode(ct).decode("ascii"))]).encode("utf-8")
            key.variants[vi].body = body
        self.refund_jobs = []

    # WeChat Pay API v3 notifications ----------------------------------------------------------------------
    def _v3_variant(self, tenant, event_type, summary, original_type, plaintext, label, amount, envelope_id,
                    create_time):
        """One v3 delivery: the envelope around `plaintext` encrypted under a fresh GCM nonce, so that every
        delivery has other body bytes (headers are signed only when it is sent)."""
        nonce = "%012x" % self.rng.getrandbits(48)
        plain = json.dumps(plaintext, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        envelope = {"id": envelope_id, "create_time": create_time, "resource_type": "encrypt-resource",
                    "event_type": event_type, "summary": summary,
                    "resource": {"original_type": original_type, "algorithm": "AEAD_AES_256_GCM",
                                 "ciphertext": self.signer.seal(tenant["key"], nonce, plain, original_type),
                                 "associated_data": original_type, "nonce": nonce}}
        body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        # What payhook keeps in `fields`: the envelope's members, as received, and the key id that signed.
        fields = {"id": envelope_id, "create_time": create_time, "event_type": event_type,
                  "resource_type": "encrypt-resource", "summary": summary, "original_type": original_type,
                  "associated_data": original_type, "wechatpay_serial": tenant["serial"]}
        return Variant("POST", tenant["path"], body, fields, "wechat.pay", label, amount, resource=plaintext,
                       v3_serial=tenant["serial"])

    def v3_notification(self, i, reuse=None):
        """A v3 TRANSACTION.SUCCESS (about 3 in 4) or REFUND.* notification: retries re-encrypt the same resource
        (same notification id), a conflict changes the amount."""
        rng = self.rng
        tenant = self.cfg["wechat_v3"][0] if reuse is None else reuse[0]
        create_time = SUCCESS_TIME_V3
        envelope_id = "EV-%s-%d-%08x" % (self.seed, i, rng.getrandbits(32))
        refund = reuse is not None and reuse[2] == "refund" or reuse is None and rng.random() < 0.25
        if not refund:
            out_trade_no = reuse[1] if reuse else f"ck{self.seed}v{i}" + rng.choice(["", "", "_x", "-y", "|z", "*a", "@b"])
            total = rng.randint(1, 10**7)

            def plain(amount):
                return {"mchid": tenant["mch_id"], "appid": tenant["appid"], "out_trade_no": out_trade_no,
                        "transaction_id": "42%026d" % i, "trade_type": "JSAPI", "trade_state": "SUCCESS",
                        "trade_state_desc": "支付成功", "bank_type": "OTHERS",
                        "attach": rng.choice(["", "支付测试", "a&b=c", "😀 emoji"]), "success_time": SUCCESS_TIME_V3,
                        "payer": {"openid": f"oCrashV3{i}"},
                        "amount": {"total": amount, "payer_total": amount, "currency": "CNY", "payer_currency": "CNY"}}
            source, status, order_ref, parts = "wechat.pay", "SUCCESS", out_trade_no, None
            event_type, summary, original_type = "TRANSACTION.SUCCESS", "支付成功", "transaction"
            amount_of = lambda p: p["amount"]["total"]  # noqa: E731
            made = (tenant, out_trade_no, "pay")
        else:
            out_refund_no = reuse[1] if reuse else f"ck{self.seed}w{i}" + rng.choice(["", "", "_x", "-y"])
            status = rng.choice(["SUCCESS", "SUCCESS", "ABNORMAL", "CLOSED"])
            total = rng.randint(1, 99999)
            out_trade_no = reuse[3] if reuse else f"ck{self.seed}vo{i}"

            def plain(amount):
                p = {"mchid": tenant["mch_id"], "out_trade_no": out_trade_no, "transaction_id": "42%026d" % i,
                     "out_refund_no": out_refund_no, "refund_id": "50%028d" % i, "refund_status": status,
                     "user_received_account": "支付用户零钱",
                     "amount": {"total": 100000, "refund": amount, "payer_total": 100000, "payer_refund": amount}}
                if status == "SUCCESS":
                    p["success_time"] = SUCCESS_TIME_V3
                return p
            source, order_ref = "wechat.refund", out_trade_no
            event_type, summary, original_type = "REFUND." + status, "退款状态", "refund"
            amount_of = lambda p: p["amount"]["refund"]  # noqa: E731
            made = (tenant, out_refund_no, "refund", out_trade_no)
        parts = [tenant["mch_id"], out_trade_no if source == "wechat.pay" else out_refund_no, status]
        base = plain(total)
        variants = [self._v3_variant(tenant, event_type, summary, original_type, base, "original", amount_of(base),
                                     envelope_id, create_time)]
        for _ in range(self._dups()):
            variants.append(self._v3_variant(tenant, event_type, summary, original_type, base, "retry",
                                             amount_of(base), envelope_id, create_time))
        if self._conflict():
            changed = plain(total + 1)
            variants.append(self._v3_variant(tenant, event_type, summary, original_type, changed, "conflict",
                                             amount_of(changed), envelope_id, create_time))
        for v in variants:
            v.content = source + v.content  # a refund's and a payment's resources never compare
        key = Key(i, source, tenant["mch_id"], status, order_ref, parts, variants, api="v3")
        return made if self._add(key) else None

    # Alipay trade notifications ---------------------------------------------------------------------------
    def _alipay_variant(self, tenant, params, label, amount, reorder=False, plus=False):
        """One delivery: the form in the given (or a shuffled) order, `sign` somewhere in it, values
        percent-encoded (`plus`: spaces as `+`). `fields` are what payhook keeps: every non-empty parameter but
        `sign` and `sign_type` (the trade rule leaves sign_type out of the signed string)."""
        items = list(params.items())
        if reorder:
            self.rng.shuffle(items)
        items.insert(self.rng.randrange(len(items) + 1) if reorder else len(items),
                     ("sign", self.alipay_signer.sign(params)))
        body = form(items, plus).encode("ascii")
        fields = {k: v for k, v in params.items() if v != "" and k not in ("sign", "sign_type")}
        return Variant("POST", tenant["path"], body, fields, "alipay.trade", label, amount, content_type=FORM)

    def alipay_notification(self, i, reuse=None):
        """A trade_status_sync notification of the test-only app: about one in four a refund (out_biz_no,
        refund_fee), the rest payments in one of Alipay's four trade states. Retries carry a later notify_time,
        other parameter orders and sometimes `+` for spaces; a conflict changes total_amount."""
        rng = self.rng
        tenant = self.alipay_tenant
        if reuse is not None:
            out_trade_no, fen, trade_no = reuse[1], reuse[2], reuse[3]
        else:
            # No `&` or `=`: payhook refuses them in the key fields (AlipaySource.keyFields).
            out_trade_no = f"ck{self.seed}a{i}" + rng.choice(["", "", "", "/a b", "+订单", "~x.y_z", "%25", "é"])
            fen = rng.randint(1, 10**7)
            trade_no = "2026%024d" % i
        refund = rng.random() < 0.25
        status = ("TRADE_SUCCESS" if rng.random() < 0.6 else "TRADE_CLOSED") if refund else rng.choice(
            ["TRADE_SUCCESS", "TRADE_SUCCESS", "TRADE_SUCCESS", "TRADE_FINISHED", "WAIT_BUYER_PAY", "TRADE_CLOSED"])
        out_biz_no = f"ck{self.seed}ar{i}" + rng.choice(["", "", "-1", " 2"]) if refund else ""
        refund_fen = rng.randint(1, fen) if refund else 0
        notify_id = "%032x" % rng.getrandbits(128)
        # One spelling per key: another spelling of the same amount is another value, so a conflict.
        spell = rng.choice(["%d.%02d", "%d.%02d", "short"])

        def yuan(amount):
            if spell == "short" and amount % 100 == 0:
                return str(amount // 100)
            return "%d.%02d" % (amount // 100, amount % 100)

        def params(total, notify_time):
            p = {"gmt_create": SUCCESS_TIME, "charset": "utf-8", "seller_email": "seller@example.com",
                 "subject": rng_subject, "sign_type": "RSA2", "buyer_id": "2088%012d" % (i % 10**12),
                 "invoice_amount": yuan(total), "notify_id": notify_id, "fund_bill_list": rng_bills,
                 "notify_type": "trade_status_sync", "trade_status": status, "receipt_amount": yuan(total),
                 "buyer_pay_amount": yuan(total), "app_id": tenant["app_id"], "notify_time": notify_time,
                 "point_amount": "0.00", "total_amount": yuan(total), "trade_no": trade_no, "auth_app_id":
                 tenant["app_id"], "buyer_logon_id": "159****0000", "out_trade_no": out_trade_no, "version": "1.0",
                 "passback_params": rng_passback}
            if status != "WAIT_BUYER_PAY":
                p["gmt_payment"] = SUCCESS_TIME
            p["seller_id"] = tenant["seller_id"] or "2088%012d" % 1
            if refund:
                p.update(out_biz_no=out_biz_no, refund_fee=yuan(refund_fen), gmt_refund=SUCCESS_TIME)
            return p
        rng_subject = rng.choice(["测试订单", "a&b=c", "😀 emoji", "x y+z", "<tag>", "plain"])
        rng_bills = rng.choice(['[{"amount":"1.00","fundChannel":"ALIPAYACCOUNT"}]', ""])
        rng_passback = rng.choice(["", "", "k=v", "支付宝"])
        first = params(fen, SUCCESS_TIME)
        variants = [self._alipay_variant(tenant, first, "original", fen)]
        for n in range(self._dups()):
            later = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(PAY_TIME_BASE // 1000 + 8 * 3600 + 120 * (n + 1)))
            variants.append(self._alipay_variant(tenant, params(fen, later), "retry", fen, reorder=True,
                                                 plus=rng.random() < 0.5))
        if self._conflict():
            variants.append(self._alipay_variant(tenant, params(fen + 1, SUCCESS_TIME), "conflict", fen + 1))
        key = Key(i, "alipay.trade", tenant["app_id"], status, out_trade_no,
                  [tenant["app_id"], out_trade_no, status, out_biz_no], variants, api="alipay")
        return (tenant, out_trade_no, fen, trade_no) if self._add(key) else None

    # XxPay and Jeepay (MD5 `&key=`) -------------------------------------------------------------------------
    def _xxpay_variant(self, tenant, params, label, reorder=False, lower=False, method="POST"):
        """XxPay puts the parameters in the query of a POST with an empty body (Sources/PayhookXxPay/XxPaySource.swift); its
        documentation says GET, which some retries use. `sign` in either case verifies."""
        sign = md5_key_sign(params, tenant["key"])
        items = list(params.items()) + [("sign", sign.lower() if lower else sign)]
        if reorder:
            self.rng.shuffle(items)
        fields = {k: v for k, v in params.items() if v != ""}
        return Variant(method, tenant["path"] + "?" + form(items), b"", fields, "xxpay.pay", label,
                       int(params["amount"]), content_type=FORM if method == "POST" else None)

    def xxpay_notification(self, i, reuse=None):
        rng = self.rng
        tenant = rng.choice(self.cfg["xxpay"]) if reuse is None else reuse[0]
        order = reuse[1] if reuse else f"ck{self.seed}x{i}" + rng.choice(["", "", "", "/a b", "+订单", "%25", "é"])
        status = rng.choice(["2", "2", "2", "3"]) if reuse is None else rng.choice(["2", "3", "-1"])
        fee = rng.randint(1, 10**7)

        def params(amount, back_type):
            return {"payOrderId": "P%s%012d" % (self.seed, i), "mchId": tenant["mch_id"], "mchOrderNo": order,
                    "channelId": rng_channel, "amount": str(amount), "currency": "cny", "status": status,
                    "clientIp": "127.0.0.1", "device": "WEB", "subject": rng_subject,
                    "channelOrderNo": "42%020d" % i, "param1": rng_param, "param2": "",
                    "paySuccTime": str(PAY_TIME_BASE + i), "backType": back_type}
        rng_channel = rng.choice(["WX_NATIVE", "ALIPAY_PC", "WX_JSAPI"])
        rng_subject = rng.choice(["测试商品", "a b", "x+y", "plain"])
        rng_param = rng.choice(["", "p1", "参数"])
        variants = [self._xxpay_variant(tenant, params(fee, "2"), "original")]
        for _ in range(self._dups()):
            variants.append(self._xxpay_variant(tenant, params(fee, rng.choice(["1", "2"])), "retry", reorder=True,
                                                lower=rng.random() < 0.3,
                                                method="GET" if rng.random() < 0.3 else "POST"))
        if self._conflict():
            variants.append(self._xxpay_variant(tenant, params(fee + 1, "2"), "conflict"))
        key = Key(i, "xxpay.pay", tenant["mch_id"], status, order, [tenant["mch_id"], order, status], variants,
                  api="xxpay")
        return (tenant, order) if self._add(key) else None

    def _jeepay_variant(self, tenant, params, label, reorder=False, plus=False):
        items = list(params.items()) + [("sign", md5_key_sign(params, tenant["key"]))]
        if reorder:
            self.rng.shuffle(items)
        body = form(items, plus).encode("ascii")
        fields = {k: v for k, v in params.items() if v != ""}
        return Variant("POST", tenant["path"], body, fields, "jeepay.pay", label, int(params["amount"]),
                       content_type=FORM)

    def jeepay_notification(self, i, reuse=None):
        """A merchant payment notification of one of the config's Jeepay apps; retries carry a later reqTime
        (an operator's re-send from Jeepay's console), another order and sometimes `+` for spaces."""
        rng = self.rng
        tenant = rng.choice(self.cfg["jeepay"]) if reuse is None else reuse[0]
        order = reuse[1] if reuse else f"ck{self.seed}j{i}" + rng.choice(["", "", "", "/a b", "+订单", "~x", "é"])
        state = rng.choice(["2", "2", "2", "3"]) if reuse is None else rng.choice(["2", "5", "6"])
        fee = rng.randint(1, 10**7)

        def params(amount, req_time):
            p = {"payOrderId": "P%s%014d" % (self.seed, i), "mchNo": tenant["mch_no"], "appId": tenant["app_id"],
                 "mchOrderNo": order, "ifCode": "wxpay", "wayCode": rng_way, "amount": str(amount),
                 "currency": "cny", "state": state, "clientIp": "127.0.0.1", "subject": rng_subject,
                 "body": rng_body, "channelOrderNo": "42%020d" % i, "errCode": "", "errMsg": "",
                 "extParam": rng_ext, "createdAt": str(PAY_TIME_BASE + i - 5000), "reqTime": str(req_time)}
            if state == "2":
                p["successTime"] = str(PAY_TIME_BASE + i)
            return p
        rng_way = rng.choice(["WX_NATIVE", "ALI_QR", "WX_JSAPI"])
        rng_subject = rng.choice(["测试商品", "a b", "x+y", "plain"])
        rng_body = rng.choice(["商品描述", "a&b=c", "body"])
        rng_ext = rng.choice(["", "", "ext"])
        variants = [self._jeepay_variant(tenant, params(fee, PAY_TIME_BASE + i + 1000), "original")]
        for n in range(self._dups()):
            variants.append(self._jeepay_variant(tenant, params(fee, PAY_TIME_BASE + i + 61000 * (n + 1)), "retry",
                                                 reorder=True, plus=rng.random() < 0.5))
        if self._conflict():
            variants.append(self._jeepay_variant(tenant, params(fee + 1, PAY_TIME_BASE + i + 1000), "conflict"))
        key = Key(i, "jeepay.pay", tenant["mch_no"], state, order, [tenant["mch_no"], order, state], variants,
                  api="jeepay")
        return (tenant, order) if self._add(key) else None

    def build(self, size):
        # The share of fresh keys each kind gets; kinds the config (or the Python packages) cannot serve are
        # left out and the others share their part.
        weights = [("unified", 0.30, self.unified), ("wechat.pay", 0.18, self.pay),
                   ("wechat.refund", 0.12, self.refund)]
        if self.signer is not None and self.cfg["wechat_v3"]:
            weights.append(("v3", 0.15, self.v3_notification))
        if self.alipay_signer is not None and self.alipay_tenant is not None:
            weights.append(("alipay", 0.12, self.alipay_notification))
        if self.cfg["xxpay"] and "xxpay" in self.kinds:
            weights.append(("xxpay", 0.065, self.xxpay_notification))
        if self.cfg["jeepay"] and "jeepay" in self.kinds:
            weights.append(("jeepay", 0.065, self.jeepay_notification))
        total = sum(w for _, w, _ in weights)
        recent = {kind: [] for kind, _, _ in weights}
        i = 0
        attempts = 0
        while len(self.keys) < size and attempts < size * 3:
            attempts += 1
            r = self.rng.random() * total
            for kind, w, maker in weights:
                if r < w:
                    break
                r -= w
            # Sometimes the same order in another state: a new key for the same order reference.
            reuse = self.rng.choice(recent[kind]) if recent[kind] and self.rng.random() < 0.15 else None
            made = maker(i, reuse)
            i += 1
            if made is not None:
                recent[kind] = (recent[kind] + [made])[-20:]
        self.finish_refunds()
        return self.keys


def payhook_signed(binary, config, seed, count, aes, start_index):
    """A few callbacks made by `payhook sign` itself (about 0.15 s per call in a debug build, so only a few)."""
    keys = []
    timings = []
    kinds = ["unified-demo", "wechat-pay", "wechat-refund", "unified-sibling"]
    cfg = load_config(config)
    unified_tenants = {t["domain"]: t for t in cfg["unified"]}
    for j in range(count):
        kind = kinds[j % len(kinds)]
        ref = f"ck{seed}-ps{j}"
        if kind.startswith("unified"):
            domain = kind.split("-")[1]
            if domain not in unified_tenants:
                domain = cfg["unified"][0]["domain"]
            args = ["unified", "--tenant", domain, "--order-ref", ref, "--amount", str(100 + j)]
        elif kind == "wechat-pay":
            args = ["wechat-pay", "--order-ref", ref, "--amount", str(100 + j)]
        else:
            args = ["wechat-refund", "--order-ref", ref, "--refund-ref", ref + "-r", "--amount", str(100 + j)]
        started = time.monotonic()
        done = subprocess.run([binary, "sign"] + args + ["--config", config], capture_output=True, timeout=60,
                              check=False)
        timings.append(time.monotonic() - started)
        if done.returncode != 0:
            raise HarnessError(f"payhook sign {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
        text = done.stdout.decode("utf-8").strip()
        index = start_index + j
        if kind.startswith("unified"):
            params = parse_qsl(text, keep_blank_values=True)
            values = dict(params)
            tenant = unified_tenants[values["domainCode"]]
            fields = {k: v for k, v in params if k != "sign" and v != ""}
            variant = Variant("GET", tenant["path"] + "?" + text, b"", fields, "unified", "payhook-sign",
                              int(values["money"]))
            parts = [values["domainCode"], values["requestKey"], values["payStatus"]]
            keys.append(Key(index, "unified", values["domainCode"], values["payStatus"], values["requestKey"], parts,
                            [variant], origin="payhook sign"))
        elif kind == "wechat-pay":
            values = parse_cdata(text)
            fields = {k: v for k, v in values.items() if k != "sign" and v != ""}
            tenant = cfg["wechat"][0]
            variant = Variant("POST", tenant["path"], text.encode("utf-8"), fields, "wechat.pay", "payhook-sign",
                              int(values["total_fee"]))
            parts = [values["mch_id"], values["out_trade_no"], values["result_code"]]
            keys.append(Key(index, "wechat.pay", values["mch_id"], values["result_code"], values["out_trade_no"],
                            parts, [variant], origin="payhook sign"))
        else:
            values = parse_cdata(text)
            plain = aes.decrypt(base64.b64decode(values["req_info"])).decode("utf-8")
            m = re.fullmatch(r"<root>(.*)</root>", plain, re.S)
            if not m:
                raise HarnessError(f"payhook sign wechat-refund: req_info does not decrypt to <root>: {plain!r}")
            fields = parse_cdata(plain)
            tenant = cfg["wechat"][0]
            variant = Variant("POST", tenant["path"], text.encode("utf-8"), fields, "wechat.refund", "payhook-sign",
                              int(fields["refund_fee"]))
            parts = [values["mch_id"], fields["out_refund_no"], fields["refund_status"]]
            keys.append(Key(index, "wechat.refund", values["mch_id"], fields["refund_status"], fields["out_trade_no"],
                            parts, [variant], origin="payhook sign"))
    return keys, timings


# ----------------------------------------------------------------------------------------------------------
# HTTP client
# ----------------------------------------------------------------------------------------------------------

def send(port, variant, timeout=REQUEST_TIMEOUT_S):
    """Sends one request on its own connection. Returns (status, body) for a complete answer, or
    (None, reason) when there was none: refused, reset, cut short or timed out. A body counts as complete only
    with a Content-Length it matches, so an answer cut by SIGKILL is never taken for a success."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Connection": "close"}
        if variant.method == "POST":
            if variant.content_type:
                headers["Content-Type"] = variant.content_type
            conn.request("POST", variant.target, body=variant.body, headers=headers)
        else:
            conn.request("GET", variant.target, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        length = resp.getheader("Content-Length")
        if length is None or not length.isdigit() or int(length) != len(data):
            return None, f"incomplete answer (Content-Length {length}, {len(data)} bytes)"
        return resp.status, data
    except (OSError, http.client.HTTPException) as e:
        return None, type(e).__name__
    finally:
        conn.close()


def send_v3(port, variant, signer, timeout=REQUEST_TIMEOUT_S):
    """Sends one v3 delivery, its Wechatpay-* headers signed now, on its own connection. Returns (status, body)
    for a complete answer, else (None, reason). http.client takes a header block cut short by the connection's
    end for a complete one, and v3's success answer (204) has no body whose length could show the cut, so the
    answer is read raw, to the connection's end (Connection: close): complete means a status line and a header
    block ended by an empty line, then exactly Content-Length bytes of body (none for a 204)."""
    headers = signer.headers(variant.body, variant.v3_serial)
    head = (f"POST {variant.target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(variant.body)}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(head.encode("ascii") + variant.body)
            received = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
    except TimeoutError:
        return None, "TimeoutError"
    except OSError as e:
        return None, type(e).__name__
    header, sep, body = received.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", header)
    if not sep or not m:
        return None, f"incomplete answer ({len(received)} bytes, no complete header block)"
    status = int(m.group(1))
    length = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", header)
    if status == 204:
        if length and int(length.group(1)) != 0 or body:
            return status, b"(204 with a body) " + body[:100]
        return status, b""
    if length is None or int(length.group(1)) != len(body):
        return None, f"incomplete answer (Content-Length {length.group(1) if length else None}, {len(body)} bytes)"
    return status, body


# ----------------------------------------------------------------------------------------------------------
# The server under test
# ----------------------------------------------------------------------------------------------------------

class Server:
    """One `payhook serve` process; stdout and stderr go to files in the work directory."""

    def __init__(self, h, label):
        self.h = h
        h.starts += 1
        self.n = h.starts
        self.label = label
        self.out_path = os.path.join(h.logs, f"serve-{self.n:04d}-{label}.stdout")
        self.err_path = os.path.join(h.logs, f"serve-{self.n:04d}-{label}.stderr")
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(h.serve_argv(), env=h.serve_env(),
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err, close_fds=True)
        self.port = None
        h.servers.append(self)

    @property
    def pid(self):
        return self.proc.pid

    def stdout(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_ready(self, timeout):
        """Waits for the `payhook listening on …` line; recovery has finished by then (docs/durability.md §8)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            first = self.stdout().split("\n", 1)
            if len(first) == 2:
                self.port = self.h.parse_listening(first[0])
                return self.port
            if self.proc.poll() is not None:
                raise HarnessError(f"payhook serve #{self.n} exited with {self.proc.returncode} before listening:\n"
                                   + tail(self.stderr()))
            time.sleep(0.005)
        self.kill()
        raise HarnessError(f"payhook serve #{self.n} did not print its listening line within {timeout} s")

    def kill(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise HarnessError(f"payhook serve #{self.n} (pid {self.pid}) survived SIGKILL for 30 s") from None

    def recovery_lines(self):
        return [line for line in self.stderr().splitlines() if "spool recovery:" in line]

    def relinked_lines(self):
        return re.findall(r"recovery relinked (\S+) to ids/([0-9a-f]{64})", self.stderr())


def tail(text, lines=15):
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


# ----------------------------------------------------------------------------------------------------------
# Spool inspection (the checker)
# ----------------------------------------------------------------------------------------------------------

FOLDERS = ["tmp", "new", "cur", "ids", "conflicts", "corrupt"]


def scan(spool):
    """{folder: {name: (inode, nlink, is_regular_file)}}; dotfiles (.lock) are the implementation's own."""
    snapshot = {}
    for folder in FOLDERS:
        entries = {}
        with os.scandir(os.path.join(spool, folder)) as it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                entries[entry.name] = (st.st_ino, st.st_nlink, entry.is_file(follow_symlinks=False))
        snapshot[folder] = entries
    return snapshot


class Harness:
    def __init__(self, args):
        self.args = args
        self.repo = os.path.abspath(args.repo)
        self.binary = os.path.abspath(args.binary or os.path.join(self.repo, ".build", "debug", "payhook"))
        self.config = os.path.abspath(args.config or os.path.join(self.repo, "Fixtures", "demo.toml"))
        if not os.access(self.binary, os.X_OK):
            raise HarnessError(f"payhook binary not found or not executable: {self.binary} "
                               f"(build it, or pass --binary)")
        self.cfg = load_config(self.config)
        if args.clients > self.cfg["per_ip"]:
            raise HarnessError(f"--clients {args.clients} exceeds max_connections_per_ip {self.cfg['per_ip']}")
        self.workdir = tempfile.mkdtemp(prefix="payhook-crash-")
        self.logs = os.path.join(self.workdir, "logs")
        os.mkdir(self.logs)
        # WeChat Pay v3 needs a [[wechat_v3]] tenant and `cryptography` to sign.
        self.signer, self.v3_note = None, None
        if args.no_v3:
            self.v3_note = "left out (--no-v3)"
        elif not self.cfg["wechat_v3"]:
            self.v3_note = f"left out: {self.config} has no [[wechat_v3]] table"
        else:
            try:
                self.signer = V3Signer(args.v3_private_key or os.path.join(
                    self.repo, "Fixtures", "wechat-v3", "wechat_pay_private_key.pem"))
            except ImportError:
                self.v3_note = "left out: the Python package cryptography is not installed (make test-deps)"
        # Alipay needs `cryptography` and an [[alipay]] tenant whose public key pairs with the private key.
        self.alipay_signer, self.alipay_tenant, self.alipay_note = None, None, None
        key_path = args.alipay_private_key or os.path.join(self.repo, "Fixtures", "alipay",
                                                           "test-only-alipay-private-key.pem")
        if args.no_alipay:
            self.alipay_note = "left out (--no-alipay)"
        elif not self.cfg["alipay"]:
            self.alipay_note = f"left out: {self.config} has no [[alipay]] table"
        else:
            try:
                self.alipay_signer = AlipaySigner(key_path)
            except ImportError:
                self.alipay_note = "left out: the Python package cryptography is not installed (make test-deps)"
            if self.alipay_signer is not None:
                self.alipay_tenant = next(
                    (t for t in self.cfg["alipay"] if "RSA2" in t["sign_types"]
                     and any(c in ("utf-8", "utf8") for c in t["charsets"]) and self.alipay_signer.pairs_with(t)),
                    None)
                if self.alipay_tenant is None:
                    self.alipay_note = (f"left out: no [[alipay]] tenant of {self.config} accepts RSA2 in UTF-8 with "
                                        f"the public half of {os.path.relpath(key_path, self.repo)}")
        self.spool = self.ack_path = self.ack_file = None
        self.segment = 0
        self.started = time.monotonic()
        self.deadline = self.started + args.seconds
        # Two generators, so that kill times do not depend on how many picks the clients made meanwhile.
        self.rng = random.Random(f"payhook-crash-run-{args.seed}")
        self.timing = random.Random(f"payhook-crash-timing-{args.seed}")
        self.servers = []
        self.lock = threading.Lock()
        self.violations = []
        self.violation_kinds = collections.Counter()
        self.starts = 0
        # Figures.
        self.kills = 0
        self.startup_kills = 0
        self.startup_kills_before_ready = 0
        self.last_ready_s = 0.2
        self.graceful_stops = 0
        self.graceful_exit_times = []
        self.lock_refusals = 0
        self.requests = 0
        self.successes = 0
        self.no_answer = 0
        self.dropped_live = 0
        self.timeouts = 0
        self.refused_while_stopping = 0
        self.resent_after_ack = 0
        self.resent_after_ack_ok = 0
        self.concurrent_duplicates = 0
        self.recovery_expected = 0
        self.recovery_seen = []
        self.removed_tmp_total = 0
        self.relinked_total = 0
        self.keys, self.fresh = [], 0
        self.v3_requests = 0
        self.v3_successes = 0
        self.family_requests = collections.Counter()  # Alipay, XxPay, Jeepay: requests and success answers
        self.family_successes = collections.Counter()
        self.totals = collections.Counter()  # per-spool figures, summed
        self.db_down_answers = collections.Counter()  # postgres mode: {503: n, None: n} while the database was down
        self.new_segment_state()

    def new_segment_state(self):
        """Per-spool state: what was acknowledged on this spool, what to re-send to it."""
        self.parsed = {}  # new/ name -> inode whose content was already checked (published files never change)
        self.stored_variant = {}
        self.acked_list = []
        self.unacked = IndexedSet()
        self.priority = collections.deque()
        self.retry_after_kill = []

    def open_segment(self, n):
        """A fresh spool and ACK log. Each spool gets --kills-per-spool kills, then its final check: recovery
        re-reads every event in new/ at each start and nothing consumes them here, so one endless spool would
        make every cycle slower than the last."""
        if self.ack_file is not None:
            self.ack_file.close()
        self.segment = n
        self.spool = os.path.join(self.workdir, f"spool-{n}")
        self.ack_path = os.path.join(self.workdir, f"acks-{n}.log")
        self.ack_file = open(self.ack_path, "a", encoding="ascii")
        with self.lock:
            self.new_segment_state()

    # --- the store under test (overridden by PostgresHarness) --------------------------------------------
    listening = LISTENING

    def serve_argv(self):
        return [self.binary, "serve", "--config", self.config, "--listen", "127.0.0.1:0", "--spool", self.spool]

    def serve_env(self):
        return None  # inherit

    def parse_listening(self, line):
        """The port of a `payhook listening on …` line, after checking it names this harness's store."""
        m = self.listening.match(line)
        if not m:
            raise HarnessError(f"unexpected first stdout line of payhook serve: {line!r}")
        if os.path.realpath(m.group(2)) != os.path.realpath(self.spool):
            raise HarnessError(f"payhook serve reports spool {m.group(2)}, not {self.spool}")
        return int(m.group(1))

    def scan_store(self):
        return scan(self.spool)

    def read_event(self, folder, name):
        """The exact bytes of a stored event (raises FileNotFoundError when it is gone)."""
        with open(os.path.join(self.spool, folder, name), "rb") as f:
            return f.read()

    def drop_store(self):
        shutil.rmtree(self.spool)

    # --- output -----------------------------------------------------------------------------------------
    def say(self, text):
        print(text, flush=True)

    def violation(self, text):
        # Up to MAX_SHOWN of each kind are printed (a kind: the text without ids, numbers and quoted values), so
        # that one repeated failure does not hide a different one.
        kind = re.sub(r"b?'[^']*'|\"[^\"]*\"|[0-9a-f]{64}|\d+", "…", text)[:160]
        with self.lock:
            self.violations.append(text)
            self.violation_kinds[kind] += 1
            count = self.violation_kinds[kind]
        if count <= MAX_SHOWN:
            print(f"VIOLATION: {text}", flush=True)
        elif count == MAX_SHOWN + 1:
            print(f"(further violations of this kind are counted, not shown: {kind})", flush=True)

    def remaining(self):
        return self.deadline - time.monotonic()

    def check_budget(self, what):
        if self.remaining() <= 0:
            raise HarnessError(f"time budget of {self.args.seconds} s exhausted during {what} "
                               f"(after {self.kills} kills); raise --seconds or lower --kills")

    # --- pool -------------------------------------------------------------------------------------------
    def build_pool(self):
        started = time.monotonic()
        self.aes = AES256ECB(self.cfg["wechat"][0]["key"])
        kinds = [k for k in ("xxpay", "jeepay") if not getattr(self.args, "no_" + k)]
        builder = PoolBuilder(self.cfg, self.args.seed, load_make_samples(self.repo), self.aes, self.signer,
                              self.alipay_signer, self.alipay_tenant, kinds)
        keys = builder.build(self.args.pool)
        python_time = time.monotonic() - started
        signed, timings = payhook_signed(self.binary, self.config, self.args.seed, self.args.payhook_signed, self.aes,
                                         len(keys))
        # Mix payhook's own callbacks in at seeded positions among the fresh keys.
        for key in signed:
            keys.insert(self.rng.randrange(min(len(keys), 2000) + 1), key)
        self.keys = keys
        self.by_id = {}
        for position, k in enumerate(keys):
            k.pos = position
            if k.id in self.by_id:
                raise HarnessError(f"two pool keys share id {k.id}: {k.key_text!r} and {self.by_id[k.id].key_text!r}")
            self.by_id[k.id] = k
        variants = sum(len(k.variants) for k in keys)
        conflicts = sum(1 for k in keys if k.has_conflict)
        kinds = collections.Counter(k.source + (" v3" if k.api == "v3" else "") for k in keys)
        per_sign = (sum(timings) / len(timings)) if timings else 0.0
        cross = (f", {builder.checked_with_wechatpy} payments cross-checked with wechatpy"
                 if builder.checked_with_wechatpy else "")
        alipay = (f"RSA2 with cryptography for app {self.alipay_tenant['app_id']}" if self.alipay_tenant
                  else self.alipay_note)
        left_out = "".join(f"; {k} left out (--no-{k})" for k in ("xxpay", "jeepay") if getattr(self.args, "no_" + k))
        self.say(f"pool: {len(keys)} keys ({', '.join(f'{v} {s}' for s, v in sorted(kinds.items()))}), "
                 f"{variants} requests, {conflicts} keys with a conflicting variant; generated in {python_time:.2f} s "
                 f"in Python (refunds via {self.aes.backend}"
                 f"{cross}; v3 {'resources sealed with cryptography, headers signed when sent' if self.signer else self.v3_note}; "
                 f"Alipay {alipay}{left_out}); "
                 f"{len(signed)} from `payhook sign` at {per_sign * 1000:.0f} ms each "
                 f"(the pool that way would take {per_sign * variants:.0f} s)")
        self.fresh = 0

    # --- work selection ---------------------------------------------------------------------------------
    def next_job(self):
        """(key, variant index, was acked at pick time, concurrent?) chosen with the seeded generator."""
        with self.lock:
            if self.priority:
                return self.priority.popleft()
            r = self.rng.random()
            if r < 0.6 and self.fresh < len(self.keys):
                key = self.keys[self.fresh]
                self.fresh += 1
                self.unacked.add(key.pos)
                if len(key.variants) > 1 and self.rng.random() < 0.3:
                    # Another delivery of the same key at the same moment, from another client (docs/durability.md §4 races).
                    self.priority.append((key, self.rng.randrange(1, len(key.variants)), False, True))
                return (key, 0, False, False)
            if r < 0.8 and len(self.unacked):
                key = self.key_at(self.unacked.choice(self.rng))
                return (key, self.rng.randrange(len(key.variants)), False, False)
            if self.acked_list:
                key = self.rng.choice(self.acked_list)
                return (key, self.rng.randrange(len(key.variants)), True, False)
            if self.fresh < len(self.keys):
                key = self.keys[self.fresh]
                self.fresh += 1
                self.unacked.add(key.pos)
                return (key, 0, False, False)
            return None

    def key_at(self, pool_position):
        return self.keys[pool_position]

    def prime_resends(self):
        """After a restart: first the requests a kill left without an answer, then acknowledged ones again,
        then others never acknowledged (docs/durability.md §10.2 step 5)."""
        with self.lock:
            jobs = self.retry_after_kill[-4 * self.args.clients:]
            self.retry_after_kill = []
            for _ in range(min(len(self.acked_list), self.args.clients)):
                key = self.rng.choice(self.acked_list)
                jobs.append((key, self.rng.randrange(len(key.variants)), True, False))
            for _ in range(min(len(self.unacked), self.args.clients)):
                key = self.key_at(self.unacked.choice(self.rng))
                jobs.append((key, self.rng.randrange(len(key.variants)), False, False))
            self.priority.extend(jobs)

    # --- load -------------------------------------------------------------------------------------------
    def send(self, port, variant):
        if variant.v3_serial is not None:
            return send_v3(port, variant, self.signer)
        return send(port, variant)

    def record(self, job, status, body, phase):
        key, vi, was_acked, concurrent = job
        variant = key.variants[vi]
        with self.lock:
            self.requests += 1
            key.sends += 1
            if concurrent:
                self.concurrent_duplicates += 1
            if was_acked:
                self.resent_after_ack += 1
            if key.api == "v3":
                self.v3_requests += 1
            elif key.api in FAMILIES:
                self.family_requests[key.api] += 1
            if status == key.success_status and body == key.success:
                self.successes += 1
                if key.api == "v3":
                    self.v3_successes += 1
                elif key.api in FAMILIES:
                    self.family_successes[key.api] += 1
                if was_acked:
                    self.resent_after_ack_ok += 1
                if not key.acked:
                    key.acked = True
                    self.acked_list.append(key)
                    self.unacked.discard(key.pos)
                    # The ACK log is what the checker trusts (the "stdout at crash time" of ALICE, docs/durability.md §10.1).
                    self.ack_file.write(f"ACK {key.id}\n")
                    self.ack_file.flush()
                return
            if phase.get("db_down") and status in (None, 503):
                # The database is down (postgres mode): payhook must refuse with 503, or the connection may
                # die with a statement in flight; never success for what it could not store.
                self.db_down_answers[status] += 1
                self.retry_after_kill.append(job)
                return
            if status is None:
                self.no_answer += 1
                if phase.get("stopping_since") is None:
                    # Failed before any kill or stop was sent: the running server dropped a valid request.
                    # Not a durability violation (the sender retries), but counted; the final re-send, with
                    # no kill at all, reports it as one.
                    self.dropped_live += 1
                if body == "TimeoutError" or body == "timeout":
                    self.timeouts += 1
                self.retry_after_kill.append(job)
                return
            if phase.get("stopping_since") is not None and status == 503 and phase.get("graceful"):
                self.refused_while_stopping += 1
                self.retry_after_kill.append(job)
                return
        self.violation(
            f"a correctly signed {key.source} request ({variant.label} delivery of key {key.key_text!r}, made by "
            f"{key.origin}) got {status} {body[:200]!r} instead of the success answer"
            + (" (it was re-sent after its key had been acknowledged)" if was_acked else ""))

    def client(self, port, stop, phase):
        ports = port if isinstance(port, list) else [port]
        turn = random.Random(threading.get_ident()).randrange(len(ports))
        while not stop.is_set() and self.remaining() > 0 and phase["sent"] < self.args.max_requests_per_cycle:
            if phase.get("paused"):
                time.sleep(0.01)  # postgres mode: senders quiet while the database is down
                continue
            job = self.next_job()
            if job is None:
                time.sleep(0.01)
                continue
            with self.lock:
                phase["sent"] += 1
            turn += 1  # the next request goes to the next instance: a key's deliveries meet on several
            status, body = self.send(ports[turn % len(ports)], job[0].variants[job[1]])
            self.record(job, status, body, phase)
            if status == 503 and phase.get("db_down"):
                time.sleep(0.02)  # as a sender would back off: don't burn the pool on a database that is down
            if status is None and stop.is_set():
                break
            if status is None:
                time.sleep(0.005)  # the server is gone: don't spin until the main thread notices

    def run_load(self, port, phase):
        stop = threading.Event()
        threads = [threading.Thread(target=self.client, args=(port, stop, phase), daemon=True)
                   for _ in range(self.args.clients)]
        for t in threads:
            t.start()
        return stop, threads

    def join(self, stop, threads):
        stop.set()
        for t in threads:
            t.join(timeout=REQUEST_TIMEOUT_S + 5)
            if t.is_alive():
                raise HarnessError("a client thread did not finish within its request timeout")

    # --- checks -----------------------------------------------------------------------------------------
    def read_acks(self):
        """The ACK log as written to disk, not the in-memory state: what a sender was told."""
        acked = set()
        with open(self.ack_path, encoding="ascii") as f:
            for n, line in enumerate(f, 1):
                m = re.fullmatch(r"ACK ([0-9a-f]{64})\n", line)
                if not m:
                    raise HarnessError(f"{self.ack_path}:{n}: malformed line {line!r}")
                acked.add(m.group(1))
        return acked

    def check_event_file(self, folder, name, where):
        """A published file must be a complete payhook.event.v1 event of a key this harness sent, with the exact
        content of one of that key's deliveries (no partial, unparsable or foreign file, docs/contract.md §4.3)."""
        try:
            data = self.read_event(folder, name)
        except FileNotFoundError:
            self.violation(f"{where}: {folder}/{name} vanished while nothing but payhook's recovery ran")
            return None
        try:
            event = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            self.violation(f"{where}: {folder}/{name} ({len(data)} bytes) is not UTF-8 JSON: {e}")
            return None
        if not isinstance(event, dict) or event.get("schema") != EVENT_SCHEMA:
            self.violation(f"{where}: {folder}/{name} is not a {EVENT_SCHEMA} object")
            return None
        eid, key_text = event.get("id"), event.get("dedupe_key")
        stem = name[:-5] if folder != "conflicts" else name.split(".")[0]
        if eid != stem:
            self.violation(f"{where}: {folder}/{name} holds id {eid!r}, not its name")
            return None
        if not isinstance(key_text, str) or event_id(key_text) != eid:
            self.violation(f"{where}: {folder}/{name}: sha256(dedupe_key {key_text!r}) is not its id")
            return None
        key = self.by_id.get(eid)
        if key is None:
            self.violation(f"{where}: {folder}/{name} is an event for {key_text!r}, a key the harness never sent")
            return None
        if key_text != key.key_text:
            self.violation(f"{where}: {folder}/{name} has dedupe_key {key_text!r}, expected {key.key_text!r}")
            return None
        fields = event.get("fields")
        raw = event.get("raw") or {}
        matching = [v for v in key.variants
                    if v.fields == fields and raw.get("method") == v.method and raw.get("target") == v.target
                    and raw.get("body", "").encode("utf-8") == (v.body if v.method == "POST" else b"")
                    # v3: the decrypted resource kept whole, and the headers of the key id that signed
                    and (v.resource is None or event.get("resource") == v.resource
                         and (raw.get("headers") or {}).get("Wechatpay-Serial") == v.v3_serial)]
        if not matching:
            self.violation(f"{where}: {folder}/{name}: fields/raw match none of the {len(key.variants)} deliveries "
                           f"sent for {key.key_text!r}: fields {fields!r}")
            return None
        v = matching[0]
        expected = {"source": key.source, "tenant": key.tenant, "status": key.status, "amount": v.amount,
                    "order_ref": key.order_ref}
        if key.source in VERIFIED_WITH:
            expected["verified_with"] = VERIFIED_WITH[key.source]
        for field, value in expected.items():
            if event.get(field) != value:
                self.violation(f"{where}: {folder}/{name}: {field} is {event.get(field)!r}, expected {value!r}")
                return None
        return v

    def check_spool(self, where, recovered, full=False):
        """Invariants that hold at every instant (after SIGKILL too), and after recovery (`recovered`).

        Any instant: every acknowledged id is in new/ and ids/ as one inode; every ids/ entry is a second link of
        its event in new/ (docs/durability.md §3 "an entry in ids/ implies its event was durably published"; link count ≥ 2 since no
        consumer runs); every file in new/ is a complete event; nothing in corrupt/ or cur/.
        After recovery (docs/durability.md §8): tmp/ is empty and every event in new/ has its ledger entry.
        Returns the snapshot.
        """
        snap = self.scan_store()
        new, ids = snap["new"], snap["ids"]
        for name, (ino, nlink, regular) in ids.items():
            if not HEX64.match(name) or not regular:
                self.violation(f"{where}: unexpected ids/{name}")
                continue
            event = new.get(name + ".json")
            if event is None:
                self.violation(f"{where}: ids/{name} marks a key seen but new/{name}.json does not exist "
                               f"(link count {nlink}); a retry of it would be answered duplicate and lost")
            elif event[0] != ino:
                self.violation(f"{where}: ids/{name} (inode {ino}) and new/{name}.json (inode {event[0]}) are "
                               f"different files")
            elif nlink < 2:
                self.violation(f"{where}: ids/{name} has link count {nlink}")
        for name, (ino, nlink, regular) in new.items():
            m = EVENT_NAME.match(name)
            if not m or not regular:
                self.violation(f"{where}: unexpected new/{name} (visible to consumers)")
                continue
            if recovered and m.group(1) not in ids:
                self.violation(f"{where}: new/{name} has no ids/ entry after recovery (an orphan: its key is not "
                               f"marked seen, so a retry would fail with EEXIST)")
            if full or self.parsed.get(name) != ino:
                if self.check_event_file("new", name, where) is not None:
                    self.parsed[name] = ino
        for folder in ("cur", "corrupt"):
            for name in snap[folder]:
                self.violation(f"{where}: {folder}/{name} exists (no consumer runs, and nothing should be corrupt)")
        if recovered and snap["tmp"]:
            self.violation(f"{where}: tmp/ is not empty after recovery: {sorted(snap['tmp'])[:5]}")
        missing = [i for i in self.read_acks() if i + ".json" not in new or i not in ids]
        for eid in missing[:20]:
            key = self.by_id.get(eid)
            self.violation(f"{where}: acknowledged event {eid} ({key.key_text if key else '?'}) is "
                           f"{'missing from new/' if eid + '.json' not in new else 'missing from ids/'}")
        return snap

    def expect_recovery(self, snap):
        """What recovery must repair, read from the spool left by the dead server (nothing else touches it)."""
        removed = sum(1 for (_, _, regular) in snap["tmp"].values() if regular)
        relink = sorted(EVENT_NAME.match(n).group(1) for n in snap["new"]
                        if EVENT_NAME.match(n) and EVENT_NAME.match(n).group(1) not in snap["ids"])
        return removed, relink

    def check_recovery_notice(self, server, expected, where):
        """Recovery must log one notice saying what it repaired, and none when there was nothing (docs/durability.md §8)."""
        removed, relink = expected
        lines = server.recovery_lines()
        relinked_logged = sorted(i for _, i in server.relinked_lines())
        if removed == 0 and not relink:
            if lines:
                self.violation(f"{where}: recovery logged {lines[0]!r} but the spool needed no repair")
            return
        self.recovery_expected += 1
        self.removed_tmp_total += removed
        self.relinked_total += len(relink)
        if len(lines) != 1:
            self.violation(f"{where}: expected one recovery notice (remove {removed} tmp file(s), relink "
                           f"{len(relink)} ledger entr(y/ies)), the server logged {len(lines)}: {lines[:3]}")
            return
        line = lines[0]
        fields = logfmt_fields(line)
        self.recovery_seen.append(fields.get("msg", line).split("spool recovery:", 1)[-1].strip())
        m_removed = re.search(r"removed (\d+) temporary files?", line)
        m_relinked = re.search(r"relinked (\d+) ledger entr", line)
        got_removed = int(m_removed.group(1)) if m_removed else 0
        got_relinked = int(m_relinked.group(1)) if m_relinked else 0
        if fields.get("level") != "notice":
            self.violation(f"{where}: the recovery summary is not logged at notice level: {line!r}")
        if "quarantined" in line:
            self.violation(f"{where}: recovery quarantined files after a process crash: {line!r}")
        if got_removed != removed or got_relinked != len(relink) or relinked_logged != relink:
            self.violation(f"{where}: recovery logged {line!r} (relinked {relinked_logged}), but the killed "
                           f"server left {removed} file(s) in tmp/ and {len(relink)} event(s) without ledger "
                           f"entry {relink}")

    # --- phases -----------------------------------------------------------------------------------------
    def start(self, label, previous_snapshot):
        """Starts a server on the spool and checks recovery against what the previous one left behind."""
        expected = self.expect_recovery(previous_snapshot) if previous_snapshot is not None else (0, [])
        server = Server(self, label)
        spawned = time.monotonic()
        server.wait_ready(timeout=max(10.0, min(120.0, self.remaining())))
        self.last_ready_s = time.monotonic() - spawned
        where = f"after start #{server.n} ({label})"
        self.check_recovery_notice(server, expected, where)
        # Nothing has been sent yet, so the spool is exactly what recovery left (docs/durability.md §8).
        self.check_spool(where, recovered=True)
        return server

    def kill_cycle(self, previous):
        server = self.start("kill", previous)
        self.prime_resends()
        phase = {"sent": 0, "stopping_since": None}
        stop, threads = self.run_load(server.port, phase)
        time.sleep(self.timing.uniform(self.args.min_load, self.args.max_load))
        with self.lock:
            phase["stopping_since"] = time.monotonic()  # before the signal: later failures may be the kill's
        os.kill(server.pid, signal.SIGKILL)
        server.kill()  # reaps it
        self.join(stop, threads)
        self.kills += 1
        if server.proc.returncode != -signal.SIGKILL:
            self.violation(f"kill #{self.kills}: payhook exited with {server.proc.returncode} before the SIGKILL")
        # Nothing runs on the spool now: check the state the crash left (every invariant but tmp/ and relinks).
        return self.check_spool(f"after kill #{self.kills}", recovered=False)

    def startup_kill(self):
        """SIGKILL while the server starts, usually in the middle of recovery (which re-reads every event): the
        next start must still repair everything, whatever recovery had already done (docs/durability.md §8: idempotent)."""
        server = Server(self, "startup-kill")
        time.sleep(self.timing.uniform(0, self.last_ready_s))
        server.kill()
        self.startup_kills += 1
        if not self.listening.match(server.stdout().split("\n", 1)[0]):
            self.startup_kills_before_ready += 1
        return self.check_spool(f"after startup kill #{self.startup_kills}", recovered=False)

    def graceful_round(self, previous, n):
        """SIGTERM under load (docs/durability.md §10.6): exit 0 within shutdown_grace_s + margin, nothing acknowledged lost; while
        it runs, a second payhook on the same spool refuses to start (docs/durability.md §8 step 1, the lock)."""
        where = f"graceful round {n}"
        server = self.start("graceful", previous)
        self.prime_resends()
        phase = {"sent": 0, "stopping_since": None, "graceful": True}
        stop, threads = self.run_load(server.port, phase)
        time.sleep(self.timing.uniform(self.args.min_load, self.args.max_load))
        self.check_lock(server, where)
        time.sleep(self.timing.uniform(self.args.min_load, self.args.max_load) / 2)
        with self.lock:
            phase["stopping_since"] = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)
        limit = self.cfg["grace"] + self.args.exit_margin
        started = time.monotonic()
        try:
            server.proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            self.violation(f"{where}: payhook did not exit within {limit:.0f} s of SIGTERM (shutdown_grace_s "
                           f"{self.cfg['grace']:.0f} + {self.args.exit_margin:.0f}); killed it")
            server.kill()
        took = time.monotonic() - started
        self.join(stop, threads)
        self.graceful_stops += 1
        self.graceful_exit_times.append(took)
        if server.proc.returncode != 0:
            self.violation(f"{where}: payhook exited with {server.proc.returncode} after SIGTERM, not 0:\n"
                           + tail(server.stderr()))
        log = server.stderr()
        if "drained=false" in log:
            # Our requests take milliseconds, so a request still running at shutdown_grace_s means a hung store.
            self.violation(f"{where}: payhook stopped with requests still in flight after shutdown_grace_s:\n"
                           + tail(log))
        snap = self.check_spool(f"after graceful stop {n}", recovered=False)
        # A drained stop finished every store it started, so there is nothing for recovery to repair; the next
        # start checks that its log agrees (no recovery notice).
        removed, relink = self.expect_recovery(snap)
        if removed or relink:
            self.violation(f"{where}: a graceful stop left {removed} file(s) in tmp/ and {len(relink)} event(s) "
                           f"without ledger entry")
        return snap

    def check_lock(self, server, where):
        second = subprocess.Popen(
            [self.binary, "serve", "--config", self.config, "--listen", "127.0.0.1:0", "--spool", self.spool],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = second.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            # It is serving on a spool another payhook holds: exactly what the lock must prevent.
            os.kill(second.pid, signal.SIGKILL)
            out, err = second.communicate(timeout=30)
            self.violation(f"{where}: a second payhook serve on the same spool was still running after 20 s "
                           f"(stdout {out.decode('utf-8', 'replace').strip()[:200]!r}); killed it")
            return
        err = err.decode("utf-8", "replace")
        expected = LOCKED.format(pid=server.pid)
        if second.returncode != 1 or expected not in err or "listening" in out.decode("utf-8", "replace"):
            self.violation(f"{where}: a second payhook serve on the same spool exited {second.returncode}; expected "
                           f"1 with {expected!r}; stderr: {err.strip()[:300]!r}")
        else:
            self.lock_refusals += 1
        if server.proc.poll() is not None:
            self.violation(f"{where}: the first payhook exited ({server.proc.returncode}) after the second tried")
            return
        with open(os.path.join(self.spool, ".lock"), encoding="ascii", errors="replace") as f:
            holder = f.read().strip()
        if holder != str(server.pid):
            self.violation(f"{where}: .lock says {holder!r} after the refused start, the holder is {server.pid}")
        # The first keeps serving: a fresh connection gets an answer (an acknowledged key, so nothing new).
        with self.lock:
            key = self.rng.choice(self.acked_list) if self.acked_list else None
        if key is not None:
            status, body = self.send(server.port, key.variants[0])
            if status != key.success_status or body != key.success:
                self.violation(f"{where}: after the refused second start, the running payhook answered "
                               f"{status} {body!r} to an acknowledged duplicate")

    def final_phase(self, previous):
        """No more kills: duplicates of acknowledged keys get success and create nothing; then a SIGTERM stop,
        the full checker, and one more start whose recovery must have nothing to repair (idempotence, docs/durability.md §10.6)."""
        server = self.start("final", previous)
        before = self.scan_store()
        with self.lock:
            acked = list(self.acked_list)
        sample = self.rng.sample(acked, min(len(acked), self.args.final_resends))
        jobs = collections.deque()
        for key in sample:
            stored = self.stored_variant.get(key.id)
            if stored is None:
                continue  # already reported by the checker
            # Only deliveries with the stored event's content: any other one rightly adds an audit copy in
            # conflicts/ (whichever delivery of a key arrived first is the one stored).
            same = [i for i, v in enumerate(key.variants) if v.content == stored.content]
            jobs.append((key, self.rng.choice(same), True, False))
        self.final_resent = len(jobs)
        lock = threading.Lock()
        failures = []

        def worker():
            while True:
                with lock:
                    if not jobs or self.remaining() <= 0:
                        return
                    job = jobs.popleft()
                status, body = self.send(server.port, job[0].variants[job[1]])
                self.record(job, status, body, {"stopping_since": None})
                if status != job[0].success_status or body != job[0].success:
                    failures.append((job[0].key_text, status, body))
        threads = [threading.Thread(target=worker, daemon=True) for _ in range(self.args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=max(30.0, self.remaining()))
        for key_text, status, body in failures[:10]:
            if status is None:
                self.violation(f"final re-send: acknowledged {key_text!r} got no answer ({body}) from a running "
                               f"server")
        after = self.scan_store()
        # A duplicate writes nothing at all (docs/durability.md §1.2), not even a temporary file.
        for folder in ("tmp", "new", "ids", "conflicts"):
            added = sorted(set(after[folder]) - set(before[folder]))
            if added:
                self.violation(f"final re-send of {self.final_resent} acknowledged duplicates created {folder}/ "
                               f"entries: {added[:5]}")
        os.kill(server.pid, signal.SIGTERM)
        try:
            server.proc.wait(timeout=self.cfg["grace"] + self.args.exit_margin)
        except subprocess.TimeoutExpired:
            self.violation("final SIGTERM: payhook did not exit in time; killed it")
            server.kill()
        if server.proc.returncode != 0:
            self.violation(f"final SIGTERM: payhook exited with {server.proc.returncode}, not 0")
        snap = self.check_spool("final check", recovered=True, full=True)
        self.check_schema(snap)
        self.check_conflicts(snap)
        self.check_once_per_key(snap)
        # One more start: after a clean stop recovery must find nothing to repair and log no notice.
        again = self.start("idempotence", snap)
        os.kill(again.pid, signal.SIGTERM)
        try:
            again.proc.wait(timeout=self.cfg["grace"] + self.args.exit_margin)
        except subprocess.TimeoutExpired:
            self.violation("last SIGTERM: payhook did not exit in time; killed it")
            again.kill()
        if again.proc.returncode != 0:
            self.violation(f"last SIGTERM (idle server): exit code {again.proc.returncode}, not 0")
        return self.check_spool("after the last start", recovered=True)

    def check_schema(self, snap):
        """Every event file, written under kills, against schema/event.v1.schema.json, with the independent
        `jsonschema` package when it is installed (make test-deps)."""
        try:
            from jsonschema import Draft202012Validator  # noqa: PLC0415
        except ImportError:
            self.schema_checked = None
            return
        with open(os.path.join(self.repo, "schema", "event.v1.schema.json"), encoding="utf-8") as f:
            schema = json.load(f)
        # A source the pool sent that the schema does not list is a schema lagging behind the code: a violation.
        listed = set(schema.get("properties", {}).get("source", {}).get("enum", []))
        for source in sorted({k.source for k in self.keys} - listed):
            self.violation(f"final check: schema/event.v1.schema.json does not list source {source}")
        validator = Draft202012Validator(schema)
        checked = 0
        for folder in ("new", "conflicts"):
            for name in snap[folder]:
                errors = sorted(validator.iter_errors(json.loads(self.read_event(folder, name))), key=str)
                if errors:
                    self.violation(f"final check: {folder}/{name} does not match the event schema: "
                                   f"{errors[0].message}")
                checked += 1
        self.totals.update(schema_checked=checked)

    def check_conflicts(self, snap):
        """conflicts/ holds audit copies only of deliveries whose content differs from the stored event: a
        duplicate with equal content must never create one (docs/contract.md §4.5)."""
        self.conflict_files = 0
        for name in snap["conflicts"]:
            v = self.check_event_file("conflicts", name, "final check")
            if v is None:
                continue
            self.conflict_files += 1
            eid = name.split(".")[0]
            stored = self.stored_variant.get(eid)
            if stored is None:
                self.violation(f"final check: conflicts/{name} for an id with no event in new/")
            elif stored.content == v.content:
                self.violation(f"final check: conflicts/{name} has the same content as new/{eid}.json: a duplicate "
                               f"was kept as a conflict")

    def check_once_per_key(self, snap):
        per_key = collections.Counter()
        for name in snap["new"]:
            m = EVENT_NAME.match(name)
            if not m:
                continue
            key = self.by_id.get(m.group(1))
            if key is None:
                continue
            per_key[key.key_text] += 1
        for key_text, count in per_key.items():
            if count > 1:
                self.violation(f"final check: {count} events for key {key_text!r}")

    def run(self):
        a = self.args
        spools = -(-a.kills // a.kills_per_spool)
        self.say(f"crash test: seed {a.seed}, {a.kills} kills on {spools} spool(s), {a.graceful_rounds} graceful "
                 f"rounds, {a.clients} clients, load {a.min_load}-{a.max_load} s, budget {a.seconds:.0f} s\n"
                 f"binary {self.binary}\nwork directory {self.workdir}")
        self.build_pool()
        progress_every = max(1, min(a.kills, a.kills_per_spool) // 5)
        for n in range(spools):
            self.open_segment(n)
            kills = min(a.kills_per_spool, a.kills - self.kills)
            rounds = a.graceful_rounds // spools + (1 if n < a.graceful_rounds % spools else 0)
            self.run_segment(n, kills, rounds, progress_every)
            if self.violations and not a.keep_going:
                break

    def run_segment(self, n, kills, rounds, progress_every):
        a = self.args
        snap = None
        for k in range(kills):
            self.check_budget("the kill phase")
            if k > 0 and self.timing.random() < a.startup_kills / 100:
                snap = self.startup_kill()
            snap = self.kill_cycle(snap)
            if self.kills % progress_every == 0 or a.verbose:
                self.say(f"  spool {n} kill {self.kills}/{a.kills}: {self.requests} requests, "
                         f"{len(self.acked_list)} acked on this spool, {len(snap['new'])} events, "
                         f"{len(snap['tmp'])} in tmp/, {time.monotonic() - self.started:.0f} s")
            if self.violations and not a.keep_going:
                return
        for r in range(1, rounds + 1):
            self.check_budget("the graceful phase")
            snap = self.graceful_round(snap, self.graceful_stops + 1)
            if self.violations and not a.keep_going:
                return
        self.check_budget("the final phase")
        # Which delivery each stored event came from, for the re-sends and the conflict check.
        self.stored_variant = {}
        for name in self.scan_store()["new"]:
            m = EVENT_NAME.match(name)
            if m:
                v = self.check_event_file("new", name, f"spool {n} final check")
                if v is not None:
                    self.stored_variant[m.group(1)] = v
        snap = self.final_phase(snap)
        self.tally(snap)
        if not self.violations and not self.args.keep:
            self.drop_store()  # checked; the figures are kept, tens of thousands of links need not be

    def tally(self, snap):
        """Adds this spool's figures to the run's, from the ACK log on disk and the spool."""
        self.tallied = self.segment
        acked = self.read_acks()
        new, ids = snap["new"], snap["ids"]
        verified = sum(1 for i in acked if i + ".json" in new and i in ids and new[i + ".json"][0] == ids[i][0])
        acked_v3 = sum(1 for i in acked if i in self.by_id and self.by_id[i].api == "v3")
        self.totals.update(spools=1, acked=len(acked), verified=verified, events=len(new),
                           conflicts=len(snap["conflicts"]), acked_v3=acked_v3)
        for family in FAMILIES:
            mine = [i for i in acked if i in self.by_id and self.by_id[i].api == family]
            self.totals["acked_" + family] += len(mine)
            self.totals["verified_" + family] += sum(
                1 for i in mine if i + ".json" in new and i in ids and new[i + ".json"][0] == ids[i][0])
        self.say(f"  spool {self.segment} checked: {len(acked)} acknowledged, {verified} verified, {len(new)} events, "
                 f"{len(snap['conflicts'])} conflict copies, {getattr(self, 'final_resent', 0)} acknowledged "
                 f"duplicates re-sent at the end")

    def report(self):
        if (self.spool and getattr(self, "tallied", None) != self.segment and os.path.isdir(self.spool)
                and self.ack_file is not None):
            # The run stopped inside this spool's cycle: count what is there, for the figures only.
            self.ack_file.flush()
            self.tally(self.scan_store())
        t = self.totals
        wall = time.monotonic() - self.started
        exit_times = self.graceful_exit_times
        lines = [
            "",
            "figures:",
            f"  kills                {self.kills} under load "
            f"(SIGKILL after {self.args.min_load}-{self.args.max_load} s) "
            f"+ {self.startup_kills} during start-up ({self.startup_kills_before_ready} before the listening line), "
            f"on {t['spools']} spool(s)",
            f"  graceful stops       {self.graceful_stops} under load (exit 0 within "
            f"{max(exit_times) if exit_times else 0:.2f} s at most; limit "
            f"{self.cfg['grace'] + self.args.exit_margin:.0f} s); second-server lock refusals {self.lock_refusals}",
            f"  server starts        {self.starts}",
            f"  requests             {self.requests} (success {self.successes}; no answer {self.no_answer}, of which "
            f"{self.dropped_live} before any kill or stop and {self.timeouts} timeouts; 503 while stopping "
            f"{self.refused_while_stopping})",
            f"  concurrent dups      {self.concurrent_duplicates}",
            (f"  WeChat Pay v3        {sum(1 for k in self.keys if k.api == 'v3')} pool keys; {self.v3_requests} "
             f"requests (204 {self.v3_successes}), each signed when sent; {t['acked_v3']} acknowledged ids"
             if self.signer else f"  WeChat Pay v3        {self.v3_note}"),
            *(f"  {name:<20} {sum(1 for k in self.keys if k.api == family)} pool keys; {self.family_requests[family]} "
              f"requests ({SUCCESS_ANSWERS[source].decode()} {self.family_successes[family]}); "
              f"{t['acked_' + family]} acknowledged ids, {t['verified_' + family]} verified"
              for family, (name, source) in FAMILIES.items()),
            f"  re-sent after ACK    {self.resent_after_ack} (success {self.resent_after_ack_ok}; the rest met a kill "
            f"or a stop)",
            f"  acknowledged         {t['acked']} distinct event ids in the ACK logs",
            f"  verified             {t['verified']} (once in new/, ids/ the same inode, content of a delivery sent)",
            f"  events in spools     {t['events']} ({t['events'] - t['verified']} stored but never acknowledged: "
            f"answer lost to a kill or stop)",
            f"  conflicts kept       {t['conflicts']} audit copies (each differs from the stored event)",
            f"  schema               {t['schema_checked']} event files valid against schema/event.v1.schema.json"
            if t["schema_checked"] else "  schema               not checked (jsonschema is not installed, or the "
            "final check was not reached)",
            f"  recovery             {self.recovery_expected} starts had something to repair (removed "
            f"{self.removed_tmp_total} tmp files, relinked {self.relinked_total} ledger entries); "
            f"{len(self.recovery_seen)} notices seen, each matching the spool",
        ]
        if self.listening is not LISTENING:
            # postgres mode: no spool recovery, no lock; the database's figures follow (PostgresHarness.report)
            lines = [line for line in lines if not line.startswith("  recovery")]
        for line in collections.Counter(self.recovery_seen).most_common(None if self.args.verbose else 4):
            lines.append(f"    \"spool recovery: {line[0]}\" x{line[1]}")
        if self.kills and not self.recovery_expected and self.listening is LISTENING:
            lines.append("    note: no kill left anything to repair, so recovery's repairs were not exercised")
        if self.keys and self.fresh >= len(self.keys):
            lines.append(f"    note: all {len(self.keys)} pool keys were used; later load was re-sends only "
                         f"(raise --pool)")
        lines.append(f"  wall time            {wall:.1f} s")
        self.say("\n".join(lines))
        return t["verified"], t["acked"]


# ----------------------------------------------------------------------------------------------------------
# --store postgres: the same load and kills against the PostgreSQL store, and crashes of the database itself
# ----------------------------------------------------------------------------------------------------------

PG_LISTENING = re.compile(r"^payhook listening on 127\.0\.0\.1:(\d+) store postgres$")
PG_URL_ENV = "PAYHOOK_CRASH_PG_URL"  # the config names it (url_env); the value never appears in a log or file


class PostgresHarness(Harness):
    """The harness with `[store] kind = "postgres"`: a private cluster (fsync on: durability is under test), one
    fresh database per "spool" segment, --instances payhook processes sharing it under load and all SIGKILLed
    together, and in --db-crashes percent of the cycles a SIGKILL of the whole PostgreSQL server under that
    load: payhook must answer 503 while it is down and succeed again by itself once it is back. The checker
    reads the tables with psql: every acknowledged id is a ledger row holding the exact bytes of one delivery's
    event (the spool checker's event checks, run on those bytes), each row not acknowledged by a consumer has
    exactly one queue row, and so on (check_spool below)."""

    listening = PG_LISTENING

    def __init__(self, args):
        super().__init__(args)
        sys.path.insert(0, HERE)
        try:
            import pg_cluster  # noqa: PLC0415 - only postgres mode needs it
        finally:
            sys.path.pop(0)
        self.pg = pg_cluster
        self.cluster = None
        self.dbname = None
        self.db_crashes = 0
        self.db_resume_times = []
        self.db_healthz_503 = 0
        self.quiet_db_crashes = 0
        self.instances = args.instances
        self.events = {}  # (folder, name) -> bytes, from the last check
        self.queue_rows = 0
        self.serve_config = self.write_config()
        try:
            self.cluster = pg_cluster.PGCluster(fsync=True, prefix="payhook-crash-pg-")
            self.cluster.start()
        except (pg_cluster.PGError, OSError, subprocess.SubprocessError) as e:
            raise HarnessError(f"could not start a private PostgreSQL cluster: {e}") from None
        if self.cluster.psql("SHOW fsync").strip() != "on":
            raise HarnessError("the private cluster runs with fsync off: durability would not be tested")

    def write_config(self):
        """The --config with `[store] kind = "postgres"` appended, in the work directory. Its relative paths
        (secret files, keys) are relative to the config's folder, so every entry of that folder is linked
        beside the copy."""
        folder = os.path.join(self.workdir, "config")
        os.mkdir(folder)
        base = os.path.dirname(self.config)
        for entry in os.listdir(base):
            if entry != os.path.basename(self.config):
                os.symlink(os.path.join(base, entry), os.path.join(folder, entry))
        with open(self.config, encoding="utf-8") as f:
            text = f.read()
        if re.search(r"(?m)^\s*\[store\]", text):
            raise HarnessError(f"{self.config} has a [store] table already; --store postgres writes its own")
        path = os.path.join(folder, "postgres.toml")
        with open(path, "w", encoding="utf-8") as f:
            # timeout_s well under the harness's REQUEST_TIMEOUT_S: a store waiting on a dead database gives up
            # and answers 503 before the client would count it as no answer at all.
            f.write(text + f'\n[store]\nkind = "postgres"\nurl_env = "{PG_URL_ENV}"\ntimeout_s = 4\n')
        return path

    # --- the store hooks ----------------------------------------------------------------------------------
    def conninfo(self):
        return f"{self.cluster.conninfo.rsplit(' dbname=', 1)[0]} dbname={self.dbname}"

    def serve_argv(self):
        return [self.binary, "serve", "--config", self.serve_config, "--listen", "127.0.0.1:0"]

    def serve_env(self):
        return dict(os.environ, **{PG_URL_ENV: self.conninfo()})

    def parse_listening(self, line):
        m = self.listening.match(line)
        if not m:
            raise HarnessError(f"unexpected first stdout line of payhook serve: {line!r}")
        return int(m.group(1))

    def psql(self, sql):
        r = subprocess.run([self.cluster.tool("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            "-d", self.conninfo(), "-c", sql], capture_output=True, text=True, timeout=300,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise HarnessError(f"psql failed ({r.returncode}): {r.stderr.strip()[-400:]}")
        return [line for line in r.stdout.splitlines() if line]

    def open_segment(self, n):
        """A fresh database per segment (the spool mode's fresh spool), migrated with `payhook db migrate`."""
        super().open_segment(n)
        self.spool = None
        self.dbname = f"payhook_crash_{n}"
        self.cluster.psql(f"CREATE DATABASE {self.dbname}")
        r = subprocess.run([self.binary, "db", "migrate", "--config", self.serve_config], env=self.serve_env(),
                           capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise HarnessError(f"payhook db migrate failed ({r.returncode}): {r.stderr.strip()[-400:]}")
        self.events = {}

    def drop_store(self):
        self.cluster.psql(f"DROP DATABASE {self.dbname}")

    def read_event(self, folder, name):
        data = self.events.get((folder, name))
        if data is None:
            raise FileNotFoundError(name)
        return data

    def scan_store(self):
        """The tables in the spool snapshot's shape ({folder: {name: (inode, nlink, regular)}}), so that the
        figures and the final phase's before/after comparison work unchanged: a ledger row is new/<id>.json
        and ids/<id> (one "inode"), a conflict copy conflicts/<id>.<conflict_id>; the exact event bytes go to
        self.events for read_event. A row that fails a table-level check is reported here."""
        rows = self.psql(
            "SELECT json_build_object('id', encode(l.id, 'hex'), 'key', l.dedupe_key, 'source', l.source, "
            "'tenant', l.tenant, 'order_ref', l.order_ref, 'status', l.status, 'amount', l.amount, "
            "'seen', l.seen_count, 'acked', l.acked_at IS NOT NULL, "
            "'queue', (SELECT coalesce(json_agg(q.state), '[]'::json) FROM payhook_queue q WHERE q.id = l.id), "
            "'event', encode(l.event, 'base64')) FROM payhook_ledger l")
        conflicts = self.psql("SELECT json_build_object('id', encode(c.id, 'hex'), 'n', c.conflict_id, "
                              "'event', encode(c.event, 'base64')) FROM payhook_conflict c")
        orphans = self.psql("SELECT encode(q.id, 'hex') FROM payhook_queue q "
                            "LEFT JOIN payhook_ledger l ON l.id = q.id WHERE l.id IS NULL")
        self.queue_rows = int(self.psql("SELECT count(*) FROM payhook_queue")[0])
        snap = {folder: {} for folder in FOLDERS}
        events = {}
        self.ledger = {}
        for line in rows:
            row = json.loads(line)
            eid = row["id"]
            events[("new", eid + ".json")] = base64.b64decode(row.pop("event"))
            self.ledger[eid] = row
            snap["new"][eid + ".json"] = (eid, 2, True)
            snap["ids"][eid] = (eid, 2, True)
        for line in conflicts:
            row = json.loads(line)
            name = f"{row['id']}.{row['n']}"
            events[("conflicts", name)] = base64.b64decode(row["event"])
            snap["conflicts"][name] = (name, 1, True)
        self.events = events
        self.queue_orphans = orphans
        return snap

    # --- checks -------------------------------------------------------------------------------------------
    def check_spool(self, where, recovered, full=False):
        """At any instant (after SIGKILLs of payhook and of the database too): every acknowledged id is a ledger
        row; each row's bytes are a complete event of a key sent, with the content of one of its deliveries
        (check_event_file), and its columns agree with them; a row not acknowledged by a consumer has exactly
        one queue row, in state new (no consumer runs), and no queue row lacks its ledger row. `recovered` has
        no meaning here: the database's own recovery has run before it answers."""
        acked = self.read_acks()  # first: whatever was acknowledged by now must be in what is read next
        snap = self.scan_store()
        for eid, row in self.ledger.items():
            name = eid + ".json"
            data = self.events[("new", name)]
            if full or self.parsed.get(name) != data:
                if self.check_event_file("new", name, where) is None:
                    continue
                self.parsed[name] = data
                event = json.loads(data)
                for column, field in (("key", "dedupe_key"), ("source", "source"), ("tenant", "tenant"),
                                      ("order_ref", "order_ref"), ("status", "status"), ("amount", "amount")):
                    if row[column] != event.get(field):
                        self.violation(f"{where}: ledger row {eid}: column {column} is {row[column]!r}, its event "
                                       f"says {event.get(field)!r}")
            if row["seen"] < 1:
                self.violation(f"{where}: ledger row {eid} has seen_count {row['seen']}")
            if row["acked"]:
                self.violation(f"{where}: ledger row {eid} is marked acknowledged, but no consumer runs")
            elif row["queue"] != ["new"]:
                self.violation(f"{where}: ledger row {eid} (not acknowledged) has queue rows {row['queue']}, "
                               f"expected exactly one in state new")
        for eid in self.queue_orphans[:5]:
            self.violation(f"{where}: payhook_queue row {eid} has no ledger row")
        missing = sorted(i for i in acked if i not in self.ledger)
        for eid in missing[:20]:
            key = self.by_id.get(eid)
            self.violation(f"{where}: acknowledged event {eid} ({key.key_text if key else '?'}) is not in "
                           f"payhook_ledger")
        return snap

    def start(self, label, previous_snapshot):
        """A server on the segment's database; nothing to recover on payhook's side (the database did)."""
        server = Server(self, label)
        spawned = time.monotonic()
        server.wait_ready(timeout=max(10.0, min(120.0, self.remaining())))
        self.last_ready_s = time.monotonic() - spawned
        return server

    def check_lock(self, server, where):
        """No lock here: instances share the database. A second instance must start beside the first and answer
        an acknowledged duplicate `success`; it then stops with SIGTERM, exit 0, and the first still serves."""
        second = self.start("second", None)
        try:
            with self.lock:
                key = self.rng.choice(self.acked_list) if self.acked_list else None
            for s in (second, server):
                if key is not None:
                    status, body = self.send(s.port, key.variants[0])
                    if status != key.success_status or body != key.success:
                        self.violation(f"{where}: with two instances on one database, payhook #{s.n} answered "
                                       f"{status} {body!r} to an acknowledged duplicate")
            self.lock_refusals += 1  # counted as "second instances served" in this mode
        finally:
            os.kill(second.pid, signal.SIGTERM)
            try:
                second.proc.wait(timeout=self.cfg["grace"] + self.args.exit_margin)
            except subprocess.TimeoutExpired:
                self.violation(f"{where}: the second instance did not exit after SIGTERM; killed it")
                second.kill()
        if second.proc.returncode != 0:
            self.violation(f"{where}: the second instance exited {second.proc.returncode} after SIGTERM")

    def healthz(self, port):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz", headers={"Connection": "close"})
            status = conn.getresponse().status
            conn.close()
            return status
        except (OSError, http.client.HTTPException):
            return None

    def kill_cycle(self, previous):
        """--instances servers on one database under load, then SIGKILL to them all. In --db-crashes percent of
        the cycles the PostgreSQL server is first SIGKILLed under that load: while it is down every answer must
        be 503 (or none, for a statement cut off); once it is back each payhook must answer /healthz 200 and
        store again, by itself, within --db-resume seconds."""
        servers = [self.start("kill", None) for _ in range(self.instances)]
        self.prime_resends()
        phase = {"sent": 0, "stopping_since": None}
        stop, threads = self.run_load([s.port for s in servers], phase)
        time.sleep(self.timing.uniform(self.args.min_load, self.args.max_load))
        # Exactly --db-crashes percent of the cycles, spread evenly (not drawn: a short run must get its share).
        p = self.args.db_crashes / 100
        if int((self.kills + 1) * p) > int(self.kills * p):
            self.crash_database(servers, phase)
            time.sleep(self.timing.uniform(self.args.min_load, self.args.max_load))
        with self.lock:
            phase["stopping_since"] = time.monotonic()
        for s in servers:
            os.kill(s.pid, signal.SIGKILL)
        for s in servers:
            s.kill()
        self.join(stop, threads)
        self.kills += 1
        for s in servers:
            if s.proc.returncode != -signal.SIGKILL:
                self.violation(f"kill #{self.kills}: payhook #{s.n} exited with {s.proc.returncode} before the "
                               f"SIGKILL:\n" + tail(s.stderr()))
        return self.check_spool(f"after kill #{self.kills}", recovered=False)

    def crash_database(self, servers, phase):
        """Every other crash is a quiet one: the senders pause before the kill and resume only once the database
        is back, so that the sessions payhook had open are still in its pool, broken; from the restart on, every
        answer must be success (a 503 then is a violation: payhook refusing with its database up). The others
        crash it under load, and allow 503s until each instance's /healthz says 200 again."""
        where = f"database crash {self.db_crashes + 1}"
        quiet = self.db_crashes % 2 == 0
        with self.lock:
            phase["db_down"] = True
            phase["paused"] = quiet
        if quiet:
            time.sleep(0.3)  # requests in flight finish (answers take milliseconds)
        try:
            self.cluster.kill9()
        except self.pg.PGError as e:
            raise HarnessError(str(e)) from None
        self.db_crashes += 1
        # While it is down: every instance says so on /healthz, and a callback is refused, never answered
        # success (the load's own answers are checked in record()).
        for s in servers:
            status = self.healthz(s.port)
            if status == 503:
                self.db_healthz_503 += 1
            else:
                self.violation(f"{where}: payhook #{s.n} answered /healthz {status} while the database was down")
        time.sleep(self.timing.uniform(0.1, 0.5))
        try:
            self.cluster.restart_after_crash()
        except self.pg.PGError as e:
            raise HarnessError(f"PostgreSQL did not restart after its crash: {e}") from None
        back = time.monotonic()
        with self.lock:
            before = self.successes
            if quiet:
                phase["db_down"] = phase["paused"] = False
                self.quiet_db_crashes += 1
        # Answers already on their way may still be 503s from the outage, and each pooled session to the dead
        # server fails once before it is replaced: db_down stays set until every instance is healthy again.
        deadline = back + self.args.db_resume
        pending = [] if quiet else list(servers)
        while pending and time.monotonic() < deadline:
            pending = [s for s in pending if self.healthz(s.port) != 200]
            if pending:
                time.sleep(0.05)
        for s in pending:
            self.violation(f"{where}: payhook #{s.n} did not answer /healthz 200 within {self.args.db_resume:.0f} s "
                           f"of the database's restart")
        while time.monotonic() < deadline:
            with self.lock:
                if self.successes > before:
                    break
            time.sleep(0.02)
        else:
            self.violation(f"{where}: no callback was answered success within {self.args.db_resume:.0f} s of the "
                           f"database's restart")
        self.db_resume_times.append(time.monotonic() - back)
        # From here on a 503 is a violation again (record()); give answers in flight a moment to land first.
        time.sleep(0.2)
        with self.lock:
            phase["db_down"] = False
        if quiet:
            for s in servers:
                status = self.healthz(s.port)
                if status != 200:
                    self.violation(f"{where}: payhook #{s.n} answered /healthz {status} after the database was back "
                                   f"and callbacks were stored again")
        for s in servers:
            if s.proc.poll() is not None:
                self.violation(f"{where}: payhook #{s.n} exited ({s.proc.returncode}) when its database crashed; "
                               f"it must keep serving and answer 503 instead:\n" + tail(s.stderr()))

    def report(self):
        result = super().report()
        times = self.db_resume_times
        self.say(f"  postgres             {self.instances} instance(s) per kill cycle on one database; {self.db_crashes} "
                 f"database crashes (SIGKILL of the postmaster and its children), {self.quiet_db_crashes} of them "
                 f"with the senders quiet until it was back; /healthz 503 while "
                 f"down {self.db_healthz_503}x; answers while down: 503 {self.db_down_answers[503]}, none "
                 f"{self.db_down_answers[None]}; back to /healthz 200 and a success within "
                 f"{max(times) if times else 0:.2f} s at most (limit {self.args.db_resume:.0f} s)")
        return result

    def close(self):
        if self.cluster is not None:
            self.cluster.remove()


class IndexedSet:
    """A set with O(1) add, discard and seeded random choice (for picking re-sends)."""

    def __init__(self):
        self.items, self.pos = [], {}

    def __len__(self):
        return len(self.items)

    def add(self, x):
        if x not in self.pos:
            self.pos[x] = len(self.items)
            self.items.append(x)

    def discard(self, x):
        i = self.pos.pop(x, None)
        if i is None:
            return
        last = self.items.pop()
        if i < len(self.items):
            self.items[i] = last
            self.pos[last] = i

    def choice(self, rng):
        return self.items[rng.randrange(len(self.items))]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=100, help="SIGKILLs under load (default 100)")
    p.add_argument("--graceful-rounds", type=int, default=3, help="SIGTERMs under load, each with a lock check")
    p.add_argument("--kills-per-spool", type=int, default=25,
                   help="kills on one spool before its final check and a fresh spool (default 25)")
    p.add_argument("--startup-kills", type=float, default=10,
                   help="percent of cycles that first kill a starting server, mostly mid-recovery (default 10)")
    p.add_argument("--clients", type=int, default=8, help="concurrent client threads (default 8)")
    p.add_argument("--seed", type=int, default=1, help="makes pool, picks and kill times reproducible")
    p.add_argument("--seconds", type=float, default=900, help="time budget for the whole run; exceeding it fails")
    p.add_argument("--pool", type=int, default=0,
                   help="distinct dedupe keys generated before the loop (default: 500 per kill or stop + 2000)")
    p.add_argument("--payhook-signed", type=int, default=8, help="requests made by `payhook sign` mixed in")
    p.add_argument("--min-load", type=float, default=0.05, help="least load before a kill or stop (s)")
    p.add_argument("--max-load", type=float, default=1.5, help="most load before a kill or stop (s)")
    p.add_argument("--final-resends", type=int, default=500, help="acknowledged duplicates re-sent at the end")
    p.add_argument("--max-requests-per-cycle", type=int, default=50000, help="bound on requests per server life")
    p.add_argument("--exit-margin", type=float, default=5.0, help="seconds allowed beyond shutdown_grace_s")
    p.add_argument("--no-v3", action="store_true",
                   help="leave WeChat Pay v3 notifications out (for a binary that does not know [[wechat_v3]])")
    p.add_argument("--v3-private-key",
                   help="PEM key that signs v3 notifications (default: Fixtures/wechat-v3/wechat_pay_private_key.pem, "
                        "the pair of the public key Fixtures/demo.toml's [[wechat_v3]] table names)")
    p.add_argument("--no-alipay", action="store_true",
                   help="leave Alipay notifications out (for a binary that does not know [[alipay]])")
    p.add_argument("--alipay-private-key",
                   help="PEM key that signs Alipay notifications (default: "
                        "Fixtures/alipay/test-only-alipay-private-key.pem); they go to the first [[alipay]] tenant "
                        "whose alipay_public_key_file holds its public half")
    p.add_argument("--no-xxpay", action="store_true", help="leave XxPay notifications out")
    p.add_argument("--no-jeepay", action="store_true", help="leave Jeepay notifications out")
    p.add_argument("--store", choices=("spool", "postgres"), default="spool",
                   help="the store under test: a spool (default) or [store] kind = \"postgres\" on a private "
                        "PostgreSQL cluster this harness starts (Tests/crash/pg_cluster.py)")
    p.add_argument("--instances", type=int, default=2,
                   help="postgres: payhook processes sharing the database in each kill cycle (default 2)")
    p.add_argument("--db-crashes", type=float, default=30,
                   help="postgres: percent of kill cycles that first SIGKILL the database server under load "
                        "(default 30)")
    p.add_argument("--db-resume", type=float, default=30,
                   help="postgres: seconds payhook may take to store again after the database is back (default 30)")
    p.add_argument("--binary", help="payhook executable (default: REPO/.build/debug/payhook)")
    p.add_argument("--config", help="config file (default: REPO/Fixtures/demo.toml)")
    p.add_argument("--repo", default=REPO, help="repository root, for Fixtures/ (default: this file's ../..)")
    p.add_argument("--keep", action="store_true", help="keep the work directory even when every check held")
    p.add_argument("--keep-going", action="store_true", help="continue after a violation")
    p.add_argument("--verbose", action="store_true", help="a progress line per kill")
    args = p.parse_args()
    if args.pool == 0:
        args.pool = min(60000, 500 * (args.kills + args.graceful_rounds) + 2000)
    if (args.kills < 1 or args.clients < 1 or args.pool < 10 or args.kills_per_spool < 1
            or not 0 < args.min_load <= args.max_load or args.instances < 1):
        p.error("need --kills ≥ 1, --clients ≥ 1, --pool ≥ 10, --kills-per-spool ≥ 1 "
                "and 0 < --min-load ≤ --max-load")

    try:
        h = (PostgresHarness if args.store == "postgres" else Harness)(args)
    except HarnessError as e:
        print(f"crash test: {e}", file=sys.stderr)
        return 2
    error = None
    try:
        h.run()
    except HarnessError as e:
        error = str(e)
    except KeyboardInterrupt:
        error = "interrupted"
    except Exception:  # noqa: BLE001 - a harness bug: say so, keep the evidence, stop the servers
        import traceback  # noqa: PLC0415
        error = "internal error in the harness:\n" + traceback.format_exc()
    finally:
        # Leave no payhook behind: only the processes this harness started, by their own pid.
        for server in h.servers:
            if server.proc.poll() is None:
                try:
                    server.kill()
                except HarnessError as e:
                    print(f"crash test: {e}", file=sys.stderr)
    try:
        verified, acked = h.report()
    except Exception as e:  # noqa: BLE001 - the report must not hide the original problem
        print(f"crash test: could not compute figures: {e}", file=sys.stderr)
        verified, acked = 0, 0
    if h.ack_file is not None:
        h.ack_file.close()
    if isinstance(h, PostgresHarness):
        # The cluster goes with the run (its data folder is not kept: the checks read it while it ran).
        try:
            h.close()
        except Exception as e:  # noqa: BLE001 - cleaning up must not hide the verdict
            print(f"crash test: could not remove the private cluster: {e}", file=sys.stderr)
    if error:
        print(f"crash test: ERROR: {error}", file=sys.stderr)
    if h.violations:
        print(f"crash test: FAIL: {len(h.violations)} violation(s); first:\n  {h.violations[0]}\nby kind:",
              file=sys.stderr)
        for kind, count in h.violation_kinds.most_common(10):
            print(f"  {count:6d}  {kind}", file=sys.stderr)
    if error or h.violations:
        print(f"crash test: work directory kept: {h.workdir} (spool-N/, acks-N.log, logs/)", file=sys.stderr)
        return 1 if h.violations else 2
    if verified != acked or h.totals["spools"] != -(-args.kills // args.kills_per_spool):
        print(f"crash test: FAIL: {acked - verified} acknowledged events not verified, "
              f"{h.totals['spools']} spools checked", file=sys.stderr)
        print(f"crash test: work directory kept: {h.workdir}", file=sys.stderr)
        return 1
    if args.keep:
        print(f"crash test: work directory kept: {h.workdir}")
    else:
        shutil.rmtree(h.workdir, ignore_errors=True)
    print(f"crash test: PASS ({time.monotonic() - h.started:.1f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
