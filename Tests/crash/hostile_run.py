#!/usr/bin/env python3
"""Hostile-client run: `payhook serve` under a long flood of hostile requests, watched from outside.

Why: the in-process hostile tests (Tests/PayhookHTTPTests/HostileClientTests.swift, PoolExhaustionTests.swift)
send a few thousand requests; a leak of a few kilobytes per request only shows over many more, and only the
real binary shows what an operator sees: its RSS, its `payhook_inflight_requests` gauge and how it stops.

Each phase starts the binary on a fresh temporary spool with its own config (README.md "Configuration"), runs
its flood, and ends the server with SIGTERM, which must exit 0 within --exit-limit seconds (a request the
server never ended would hold the stop for the whole shutdown_grace_s).

Phases (--phase NAME, repeatable; default: all, in this order):
  many-args  requests whose query has more arguments than the connection's memory pool can hold. libmicrohttpd
             0.9.75 closes them without an answer and without its request-completed callback
             (Sources/PayhookHTTP/Contexts.swift, RequestContext). After a warm-up the RSS is sampled during and
             after the flood; it must stay within --rss-bound-mib of the warmed-up baseline, the in-flight gauge
             must be back to 0 within 3 s of the flood, and a valid request must still be answered.
  conflicts  validly signed variants of genuine callbacks: under values-sha1 a renamed parameter keeps the
             signature and changes the verified fields, so each is a conflict. Every one must be answered
             `success`, conflicts/ must hold no more than max_conflicts_per_event copies per event and
             max_conflicts in all (README.md "Defences against attacks"), new/ exactly the genuine events,
             payhook_conflicts_total must count the rest as dropped, and RSS, the in-flight gauge and
             /healthz must hold as above.
  v3-refusals  WeChat Pay API v3 notifications (docs/protocols.md §8) that must all be refused, in turn: a
             signature that is random bytes, a genuine signature over another body, a WECHATPAY/SIGNTEST/
             probe, a correctly signed notification whose Wechatpay-Timestamp is 400 s old, and a correctly
             signed body nested far deeper than the JSON reader's limit. Headers are signed when each request
             is made, with Python's `cryptography` and the test key of Fixtures/wechat-v3. One genuine
             notification is stored (204) before the flood; afterwards every refusal must have been answered
             with its status (401; 400 for the nesting), new/ must still hold only that one event and tmp/,
             ids/ beyond it and conflicts/ nothing, payhook_signature_probes_total must count every probe, and
             RSS, the in-flight gauge and /healthz must hold as above.
  alipay-refusals  Alipay trade notifications (Sources/PayhookAlipay/AlipaySource.swift) to refuse, in turn: random
             bytes as `sign`, a genuine signature over another total_amount, an app_id no tenant has, a repeated
             parameter, a malformed percent-escape, a notification correctly signed in GBK to a tenant that reads
             UTF-8 only, a Content-Length 64 times max_body_bytes, a body just under max_body_bytes of thousands of
             parameters (whose sign no longer verifies), a correctly signed notify_time 30 days old, and a correctly
             signed subject holding `&out_biz_no=`. Signed with Python's `cryptography` and the test-only key of
             Fixtures/alipay. One genuine notification is stored (`success`) first; each refusal must be answered
             with its status (401 for signatures and tenants, 400 for the form and the checks after the signature,
             413 for the size) and the body `fail`, and the spool, RSS, in-flight gauge and /healthz must hold as in
             v3-refusals.
  md5-refusals  the same for XxPay (parameters in the query of a POST with an empty body) and Jeepay (a form body)
             in alternation (Sources/PayhookXxPay/): a random sign, a sign that is not 32 hex digits, a tampered
             amount, an unknown merchant or app, a name repeated (for XxPay in the query and again in a form body),
             a malformed escape, bytes that are not UTF-8, a correctly signed value holding `&mchOrderNo=`, a
             correctly signed paySuccTime or reqTime 30 days old, a Content-Length far over max_body_bytes, and
             another merchant's key (Jeepay: an appId whose mchNo is not the tenant's). XxPay must answer `fail`,
             Jeepay `FAIL`, with the status of each kind; one genuine notification of each is stored first.

A phase is a function taking a Server and the options and returning a list of failure sentences; to add one,
write it and list it in PHASES.

Exit status: 0 when every phase held; 1 when a check failed (each printed as one sentence); 2 when the run
itself could not be done (binary missing, server did not start, time budget --seconds used up before the
flood was sent). Python 3.11 standard library, and `cryptography` for the v3-refusals and alipay-refusals phases
(make test-deps); only loopback (127.0.0.1) is used.
"""
import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
LISTENING = re.compile(r"^payhook listening on 127\.0\.0\.1:(\d+) spool (.+)$")
GRACE_S = 10
MIB = 1024 * 1024
SECRET = "hostile-run-secret"
CONFLICTS_PER_EVENT = 4
CONFLICTS_TOTAL = 100


class RunError(Exception):
    """The run itself could not be done (exit 2)."""


def write_config(path, clients, extra=""):
    # A unified tenant needs path, domain_code and a secret (README.md "Configuration"); an inline secret only
    # adds a startup warning. The per-address limit leaves room for every flood thread plus the probes.
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"""listen = "127.0.0.1:0"
spool = "spool"
threads = 4
max_connections = 64
max_connections_per_ip = {max(32, clients + 8)}
connection_memory_limit_bytes = 32768
shutdown_grace_s = {GRACE_S}
max_conflicts_per_event = {CONFLICTS_PER_EVENT}
max_conflicts = {CONFLICTS_TOTAL}

[[unified]]
path = "/notify/unified"
domain_code = "hostile"
secret = "{SECRET}"
{extra}""")


class Server:
    """One life of `payhook serve` on a fresh spool in `workdir`."""

    def __init__(self, binary, workdir, name, clients, extra=""):
        self.workdir = workdir
        self.config = os.path.join(workdir, f"{name}.toml")
        write_config(self.config, clients, extra)
        self.err_path = os.path.join(workdir, f"{name}.stderr")
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen([binary, "serve", "--config", self.config,
                                          "--spool", os.path.join(workdir, f"spool-{name}")],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                         close_fds=True)
        line = self.proc.stdout.readline().decode("utf-8", "replace").strip()
        m = LISTENING.match(line)
        if not m:
            self.kill()
            raise RunError(f"payhook did not start (first line {line!r}); stderr:\n{self.stderr_tail()}")
        self.port = int(m.group(1))

    def rss(self):
        """VmRSS of the server process in bytes (proc(5), /proc/PID/status)."""
        with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RunError("no VmRSS line in /proc/PID/status")

    def exchange(self, data, timeout=3.0):
        """Sends `data` on a new connection and reads until the server closes it; returns the status code of
        the answer, or None when the connection ended without one."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            received = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    received += chunk
            except (ConnectionResetError, socket.timeout):
                pass
        m = re.match(rb"HTTP/1\.[01] (\d{3}) ", received)
        return int(m.group(1)) if m else None

    def answer(self, data, timeout=3.0):
        """Like exchange(), but (status, body) of the answer; (None, b"") when the connection ended without one."""
        received = b""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    received += chunk
            except (ConnectionResetError, socket.timeout):
                pass
        head, _, body = received.partition(b"\r\n\r\n")
        m = re.match(rb"HTTP/1\.[01] (\d{3}) ", head)
        return (int(m.group(1)), body) if m else (None, b"")

    def get(self, path):
        """Status and body of GET `path` (Connection: close)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            received = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        m = re.match(rb"HTTP/1\.[01] (\d{3}) ", head)
        return (int(m.group(1)) if m else None), body.decode("utf-8", "replace")

    def inflight(self):
        """payhook_inflight_requests less the /metrics request that reads it (it counts itself: its request
        line arrived and it is not answered yet)."""
        status, body = self.get("/metrics")
        for line in body.splitlines():
            if line.startswith("payhook_inflight_requests"):
                return int(float(line.split()[-1])) - 1
        raise RunError(f"/metrics (status {status}) has no payhook_inflight_requests line")

    def stop(self, limit):
        """SIGTERM; returns a failure sentence, or None when it exited 0 within `limit` seconds."""
        os.kill(self.proc.pid, signal.SIGTERM)
        started = time.monotonic()
        try:
            code = self.proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            self.kill()
            return f"payhook was still running {limit:.0f} s after SIGTERM (shutdown_grace_s is {GRACE_S})"
        took = time.monotonic() - started
        if code != 0:
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"status {code}"
            return f"payhook exited with {how} after SIGTERM, not 0"
        print(f"  SIGTERM: exit 0 after {took:.2f} s")
        return None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()

    def stderr_tail(self, lines=8):
        with open(self.err_path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        return "\n".join("    " + line for line in text.splitlines()[-lines:])


class RSSSampler:
    """Samples the server's RSS every `interval` seconds on its own thread and keeps the peak."""

    def __init__(self, server, interval=0.1):
        self.server = server
        self.interval = interval
        self.peak = server.rss()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopped.wait(self.interval):
            try:
                self.peak = max(self.peak, self.server.rss())
            except (OSError, RunError):
                return

    def stop(self):
        self.stopped.set()
        self.thread.join(timeout=5)
        return self.peak


def flood(server, requests, clients, deadline, make):
    """Sends `requests` requests made by make(i) from `clients` threads, each on a new connection, until all are
    sent or `deadline` (time.monotonic) passes. Returns (sent, answered: {status: count}, connect errors)."""
    lock = threading.Lock()
    state = {"next": 0, "sent": 0, "errors": 0, "answers": {}}

    def client():
        while time.monotonic() < deadline:
            with lock:
                i = state["next"]
                if i >= requests:
                    return
                state["next"] += 1
            try:
                status = server.exchange(make(i))
            except OSError:
                with lock:
                    state["errors"] += 1
                continue
            with lock:
                state["sent"] += 1
                if status is not None:
                    state["answers"][status] = state["answers"].get(status, 0) + 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return state["sent"], state["answers"], state["errors"]


def measured_flood(server, args, deadline, warm, make):
    """Sends `warm` requests, so that the allocator's arenas and MHD's pools reach their working size, takes the
    RSS baseline, then sends the measured flood of --requests, numbered after the warm-up's (so that a phase whose
    requests are all different sends new ones) while a sampler keeps the peak RSS. Returns (baseline, sampler,
    seconds the flood took, flood's result)."""
    flood(server, warm, args.clients, deadline, make)
    time.sleep(0.5)
    baseline = server.rss()
    sampler = RSSSampler(server)
    started = time.monotonic()
    result = flood(server, args.requests, args.clients, deadline, lambda i: make(i + warm))
    return baseline, sampler, time.monotonic() - started, result


def settled_inflight(server, seconds=3):
    """The in-flight gauge once it is 0, or after `seconds`: every request must be ended once its connection is
    gone, and the last closes may take a moment."""
    settle_until = time.monotonic() + seconds
    inflight = server.inflight()
    while inflight != 0 and time.monotonic() < settle_until:
        time.sleep(0.05)
        inflight = server.inflight()
    return inflight


# ----------------------------------------------------------------------------------------------------------
# Phases
# ----------------------------------------------------------------------------------------------------------

def many_args_request(i):
    # 1,000 arguments in a 15 kB target: the target fits the 32 KiB memory pool, the arguments' records do not.
    query = "&".join(f"k{n}=v{i % 10}vvvvvvvvv" for n in range(1000))
    return f"GET /notify/unified?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def phase_many_args(server, args, deadline):
    failures = []
    warm = min(1000, max(100, args.requests // 10))
    baseline, sampler, took, (sent, answers, errors) = measured_flood(server, args, deadline, warm, many_args_request)
    inflight_during = server.inflight() if sent else 0
    if sent + errors < args.requests:
        sampler.stop()
        raise RunError(f"many-args: the time budget ran out after {sent} of {args.requests} requests")
    if errors:
        failures.append(f"many-args: {errors} of {args.requests} connections to the server failed")
    inflight = settled_inflight(server)
    time.sleep(0.3)
    after = server.rss()
    peak = max(sampler.stop(), after)
    growth = peak - baseline
    status, _ = server.get("/healthz")
    print(f"  many-args: {sent} requests in {took:.1f} s ({sent / max(took, 1e-9):.0f}/s), answers {answers or 'none'}, "
          f"connect errors {errors}; RSS baseline {baseline / MIB:.1f} MiB, peak +{growth / MIB:.1f} MiB, "
          f"after +{(after - baseline) / MIB:.1f} MiB; in flight right after the flood {inflight_during}, "
          f"3 s later {inflight}; /healthz {status}")
    if growth > args.rss_bound_mib * MIB:
        failures.append(f"many-args: the server's RSS grew by {growth / MIB:.1f} MiB over its warmed-up baseline of "
                        f"{baseline / MIB:.1f} MiB during {sent} requests (bound {args.rss_bound_mib} MiB)")
    if inflight != 0:
        failures.append(f"many-args: payhook_inflight_requests was still {inflight} (not counting the /metrics "
                        f"request itself) 3 s after the flood, not 0")
    if status != 200:
        failures.append(f"many-args: GET /healthz after the flood answered {status}, not 200")
    return failures


def values_sha1(params, secret):
    """README "The unified pay platform": the non-empty values and the secret, sorted by UTF-16 code units
    (UTF-16BE bytes sort the same way), concatenated, SHA-1, hex. Written here from the rule, not from payhook."""
    values = [v for k, v in params if k != "sign" and v != ""] + [secret]
    return hashlib.sha1("".join(sorted(values, key=lambda v: v.encode("utf-16-be"))).encode()).hexdigest()


GENUINE_EVENTS = 40


def genuine_params(n):
    # Paid an hour ago: inside the replay window (README "Replays and the ledger's retention").
    pay_time = int(time.time() * 1000) - 3600 * 1000
    return [("money", str(100 + n)), ("requestKey", f"hostile-order-{n}"), ("payTime", str(pay_time)),
            ("orderSn", f"2026{n:016d}"), ("payTypeCode", "Wechat"), ("payTypeName", "WX"),
            ("currencyType", "CNY"), ("payStatus", "SUCCESSPAY"), ("domainCode", "hostile")]


def conflict_request(genuine, i):
    """Variant i: the genuine callback of event i % GENUINE_EVENTS with orderSn renamed to a name of its own
    (the same values, so the same signature, and other verified fields)."""
    params, sign = genuine[i % GENUINE_EVENTS]
    renamed = [(f"orderSn{i}" if k == "orderSn" else k, v) for k, v in params]
    query = "&".join(f"{k}={v}" for k, v in renamed + [("sign", sign)])
    return f"GET /notify/unified?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()


def phase_conflicts(server, args, deadline):
    failures = []
    genuine = []
    for n in range(GENUINE_EVENTS):
        params = genuine_params(n)
        sign = values_sha1(params, SECRET)
        query = "&".join(f"{k}={v}" for k, v in params + [("sign", sign)])
        status, body = server.get(f"/notify/unified?{query}")
        if status != 200 or body != "success":
            raise RunError(f"conflicts: the genuine callback {n} was answered {status} {body!r}, not 200 success")
        genuine.append((params, sign))
    warm = min(500, max(50, args.requests // 20))
    baseline, sampler, took, (sent, answers, errors) = measured_flood(
        server, args, deadline, warm, lambda i: conflict_request(genuine, i))
    if sent + errors < args.requests:
        sampler.stop()
        raise RunError(f"conflicts: the time budget ran out after {sent} of {args.requests} requests")
    inflight = settled_inflight(server)
    after = server.rss()
    growth = max(sampler.stop(), after) - baseline
    spool = os.path.join(server.workdir, "spool-conflicts")
    copies = [name for name in os.listdir(os.path.join(spool, "conflicts")) if not name.startswith(".")]
    per_event = {}
    for name in copies:
        per_event[name[:64]] = per_event.get(name[:64], 0) + 1
    events = [name for name in os.listdir(os.path.join(spool, "new")) if name.endswith(".json")]
    status, _ = server.get("/healthz")
    _, metrics = server.get("/metrics")
    dropped = next((int(float(line.split()[-1])) for line in metrics.splitlines()
                    if line.startswith('payhook_conflicts_total{disposition="dropped"}')), None)
    print(f"  conflicts: {sent} signed variants in {took:.1f} s ({sent / max(took, 1e-9):.0f}/s), answers {answers or 'none'}; "
          f"{len(copies)} audit copies (most for one event {max(per_event.values(), default=0)}), {len(events)} events, "
          f"{dropped} counted as dropped; RSS baseline {baseline / MIB:.1f} MiB, peak +{growth / MIB:.1f} MiB; "
          f"in flight 3 s later {inflight}; /healthz {status}")
    if answers.get(200, 0) != sent or errors:
        failures.append(f"conflicts: of {args.requests} signed variants {answers.get(200, 0)} were answered 200, "
                        f"{errors} could not connect; every one must be answered success")
    if len(copies) > CONFLICTS_TOTAL or max(per_event.values(), default=0) > CONFLICTS_PER_EVENT:
        failures.append(f"conflicts: conflicts/ holds {len(copies)} copies, {max(per_event.values(), default=0)} for "
                        f"one event; the caps are {CONFLICTS_TOTAL} and {CONFLICTS_PER_EVENT}")
    if len(events) != GENUINE_EVENTS:
        failures.append(f"conflicts: new/ holds {len(events)} events, not the {GENUINE_EVENTS} genuine ones")
    if dropped is None or dropped < sent + warm - len(copies):
        failures.append(f"conflicts: payhook_conflicts_total counts {dropped} dropped, fewer than the "
                        f"{sent + warm - len(copies)} variants that were not kept")
    failures += aftermath("conflicts", args, sent, growth, inflight, status)
    return failures


def aftermath(name, args, sent, growth, inflight, status):
    """What every flood phase requires of the server afterwards: its RSS within the bound, nothing left in
    flight 3 s later, and /healthz answering 200."""
    failures = []
    if growth > args.rss_bound_mib * MIB:
        failures.append(f"{name}: the server's RSS grew by {growth / MIB:.1f} MiB during {sent} requests "
                        f"(bound {args.rss_bound_mib} MiB)")
    if inflight != 0:
        failures.append(f"{name}: payhook_inflight_requests was still {inflight} 3 s after the flood, not 0")
    if status != 200:
        failures.append(f"{name}: GET /healthz after the flood answered {status}, not 200")
    return failures


# WeChat Pay API v3: the test material of Fixtures/wechat-v3/README.md.
V3_PATH = "/notify/wechatpay"
V3_MCH_ID = "1900000100"
V3_API_KEY = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"
V3_KEY_ID = "PUB_KEY_ID_0000000000000024101100397200000006"
V3_FIXTURES = os.path.join(REPO, "Fixtures", "wechat-v3")
V3_KINDS = ["bad-signature", "tampered-body", "signtest-probe", "stale-timestamp", "deep-nesting"]
V3_EXPECTED = {"bad-signature": 401, "tampered-body": 401, "signtest-probe": 401, "stale-timestamp": 401,
               "deep-nesting": 400}


def v3_table(workdir):
    """A [[wechat_v3]] tenant for the v3-refusals phase, its APIv3 key in a file of the work directory."""
    key_file = os.path.join(workdir, "v3.key")
    with open(key_file, "w", encoding="ascii") as f:
        f.write(V3_API_KEY + "\n")
    return (f'\n[[wechat_v3]]\npath = "{V3_PATH}"\nmch_id = "{V3_MCH_ID}"\napi_v3_key_file = {json.dumps(key_file)}\n'
            f'public_key_file = {json.dumps(os.path.join(V3_FIXTURES, "wechat_pay_public_key.pem"))}\n'
            f'public_key_id = "{V3_KEY_ID}"\n')


def rsa_signer(pem_path, phase):
    """The private key of a PEM file, PKCS#1 v1.5 padding and SHA-256, from Python's `cryptography` (no code
    shared with payhook), for the phases that sign RSA notifications."""
    try:
        from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import padding  # noqa: PLC0415
    except ImportError:
        raise RunError(f"{phase} needs the Python package cryptography (make test-deps), or leave the phase out "
                       "with --phase") from None
    with open(pem_path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), None), padding.PKCS1v15(), hashes.SHA256()


class V3:
    """Signs v3 notifications (Python's `cryptography`, no code shared with payhook): AES-256-GCM for the
    resource, RSASSA-PKCS1-v1_5 SHA-256 over `timestamp\\nnonce\\nbody\\n` for the headers."""

    def __init__(self):
        self.key, self.pkcs1, self.sha256 = rsa_signer(os.path.join(V3_FIXTURES, "wechat_pay_private_key.pem"),
                                                       "v3-refusals")
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415
        self.gcm = AESGCM(V3_API_KEY.encode())

    def body(self, n):
        """A TRANSACTION.SUCCESS notification for order hostile-v3-n, paid a minute ago."""
        paid = time.strftime("%Y-%m-%dT%H:%M:%S+08:00", time.gmtime(time.time() - 60 + 8 * 3600))
        plain = {"mchid": V3_MCH_ID, "appid": "wxdace645e0bc2cXXX", "out_trade_no": f"hostile-v3-{n}",
                 "transaction_id": "42%026d" % n, "trade_type": "JSAPI", "trade_state": "SUCCESS",
                 "bank_type": "OTHERS", "attach": "", "success_time": paid, "payer": {"openid": "oHostile"},
                 "amount": {"total": 100 + n, "payer_total": 100 + n, "currency": "CNY", "payer_currency": "CNY"}}
        nonce = "%012d" % n
        sealed = self.gcm.encrypt(nonce.encode(), json.dumps(plain, separators=(",", ":")).encode(), b"transaction")
        return json.dumps({"id": f"EV-hostile-{n}", "create_time": paid, "resource_type": "encrypt-resource",
                           "event_type": "TRANSACTION.SUCCESS", "summary": "ok",
                           "resource": {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                                        "ciphertext": base64.b64encode(sealed).decode(),
                                        "associated_data": "transaction", "nonce": nonce}},
                          separators=(",", ":")).encode()

    def sign(self, timestamp, nonce, body):
        message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
        return base64.b64encode(self.key.sign(message, self.pkcs1, self.sha256)).decode()

    def request(self, body, timestamp=None, signature=None, nonce=None):
        timestamp = str(int(time.time()) if timestamp is None else timestamp)
        nonce = nonce or os.urandom(16).hex()
        signature = signature or self.sign(timestamp, nonce, body)
        head = (f"POST {V3_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"Wechatpay-Timestamp: {timestamp}\r\nWechatpay-Nonce: {nonce}\r\nWechatpay-Serial: {V3_KEY_ID}\r\n"
                f"Wechatpay-Signature: {signature}\r\nWechatpay-Signature-Type: WECHATPAY2-SHA256-RSA2048\r\n\r\n")
        return head.encode() + body

    def hostile(self, i):
        """Request i of the flood: kind V3_KINDS[i % 5], each against order hostile-v3-(1 + i), never stored."""
        kind = V3_KINDS[i % len(V3_KINDS)]
        body = self.body(1 + i)
        if kind == "bad-signature":
            return self.request(body, signature=base64.b64encode(os.urandom(256)).decode())
        if kind == "tampered-body":
            timestamp, nonce = str(int(time.time())), os.urandom(16).hex()
            # The envelope's own text changed after signing (the amount is inside the ciphertext).
            tampered = body.replace(b'"summary":"ok"', b'"summary":"OK"')
            assert tampered != body
            return self.request(tampered, timestamp, self.sign(timestamp, nonce, body), nonce)
        if kind == "signtest-probe":
            return self.request(body, signature="WECHATPAY/SIGNTEST/" + base64.b64encode(os.urandom(256)).decode())
        if kind == "stale-timestamp":
            return self.request(body, timestamp=int(time.time()) - 400)
        # Far deeper than JSONReader's maxDepth (Sources/PayhookCore/JSONReader.swift), under max_body_bytes.
        depth = 10000 + i % 10000
        return self.request(b'{"id":"EV-deep","resource":' + b"[" * depth + b"]" * depth + b"}")


def phase_v3_refusals(server, args, deadline):
    failures = []
    v3 = server.v3
    genuine = v3.request(v3.body(0))
    status = server.exchange(genuine)
    if status != 204:
        raise RunError(f"v3-refusals: the genuine v3 notification was answered {status}, not 204")
    # Each kind's answers counted apart: the flood's own counter only knows statuses.
    lock = threading.Lock()
    by_kind = {kind: {} for kind in V3_KINDS}

    def make(i):
        return i, v3.hostile(i)

    def exchange(item):
        i, data = item
        got = server.exchange(data)
        with lock:
            answers = by_kind[V3_KINDS[i % len(V3_KINDS)]]
            answers[got] = answers.get(got, 0) + 1
        return got

    class Counting:
        """The server, with each answer also counted by kind (flood() calls exchange(make(i)))."""
        def __getattr__(self, name):
            return getattr(server, name)

        def exchange(self, item):
            return exchange(item)

    warm = min(500, max(50, args.requests // 20))
    baseline, sampler, took, (sent, answers, errors) = measured_flood(Counting(), args, deadline, warm, make)
    if sent + errors < args.requests:
        sampler.stop()
        raise RunError(f"v3-refusals: the time budget ran out after {sent} of {args.requests} requests")
    inflight = settled_inflight(server)
    after = server.rss()
    growth = max(sampler.stop(), after) - baseline
    spool = os.path.join(server.workdir, "spool-v3-refusals")
    listing = {sub: [n for n in os.listdir(os.path.join(spool, sub)) if not n.startswith(".")]
               for sub in ("new", "ids", "tmp", "conflicts", "corrupt")}
    status, _ = server.get("/healthz")
    _, metrics = server.get("/metrics")
    probes = sum(int(float(line.split()[-1])) for line in metrics.splitlines()
                 if line.startswith("payhook_signature_probes_total{"))
    probes_sent = sum(1 for i in range(warm + args.requests) if V3_KINDS[i % len(V3_KINDS)] == "signtest-probe")
    print(f"  v3-refusals: {sent} hostile v3 notifications in {took:.1f} s ({sent / max(took, 1e-9):.0f}/s), answers "
          f"{answers or 'none'}; by kind {by_kind}; new/ {len(listing['new'])}, tmp/ {len(listing['tmp'])}, "
          f"conflicts/ {len(listing['conflicts'])}; probes counted {probes} of {probes_sent}; RSS baseline "
          f"{baseline / MIB:.1f} MiB, peak +{growth / MIB:.1f} MiB; in flight 3 s later {inflight}; /healthz {status}")
    for kind, got in by_kind.items():
        wrong = {k: v for k, v in got.items() if k != V3_EXPECTED[kind]}
        if wrong:
            failures.append(f"v3-refusals: {kind} requests were answered {wrong}, not only {V3_EXPECTED[kind]}")
    if errors:
        failures.append(f"v3-refusals: {errors} of {args.requests} connections to the server failed")
    if len(listing["new"]) != 1 or len(listing["ids"]) != 1 or listing["tmp"] or listing["conflicts"] or listing["corrupt"]:
        failures.append(f"v3-refusals: the spool holds new/ {len(listing['new'])}, ids/ {len(listing['ids'])}, tmp/ "
                        f"{len(listing['tmp'])}, conflicts/ {len(listing['conflicts'])}, corrupt/ "
                        f"{len(listing['corrupt'])}; only the one genuine event may be stored")
    if probes != probes_sent:
        failures.append(f"v3-refusals: payhook_signature_probes_total counts {probes} probes, {probes_sent} were sent")
    failures += aftermath("v3-refusals", args, sent, growth, inflight, status)
    return failures


# ----------------------------------------------------------------------------------------------------------
# Alipay, XxPay and Jeepay (Sources/PayhookAlipay/AlipaySource.swift, Sources/PayhookXxPay/)
# ----------------------------------------------------------------------------------------------------------

ALIPAY_PATH = "/notify/alipay"
ALIPAY_APP = "2021000000000001"
ALIPAY_FIXTURES = os.path.join(REPO, "Fixtures", "alipay")
XXPAY_PATH, XXPAY_MCH = "/notify/xxpay", "20001223"
JEEPAY_PATH, JEEPAY_MCH, JEEPAY_APP = "/notify/jeepay", "M1700000000", "65a0b1c2d3e4f5a6b7c8d9e0"
# Made up for this run and written to its work directory only; never printed.
XXPAY_KEY = "hostile-xxpay-reskey-" + "x" * 20
JEEPAY_KEY = "hostile-jeepay-appsecret-" + "j" * 20
MAX_BODY = 65536  # payhook's default max_body_bytes, which write_config leaves as it is
STALE_MS = 30 * 86400 * 1000  # older than the replay window (ledger_retention_days 7 by default, minus one)


def merchant_tables(workdir):
    """An [[alipay]] tenant with the test-only public key of Fixtures/alipay, an [[xxpay]] and a [[jeepay]] tenant
    with secrets in files of the work directory. Charsets and sign types are left at their defaults (UTF-8, RSA2)."""
    for name, key in (("xxpay.key", XXPAY_KEY), ("jeepay.key", JEEPAY_KEY)):
        with open(os.path.join(workdir, name), "w", encoding="ascii") as f:
            f.write(key + "\n")
    public = os.path.join(ALIPAY_FIXTURES, "test-only-alipay-public-key.pem")
    return (f'\n[[alipay]]\npath = "{ALIPAY_PATH}"\napp_id = "{ALIPAY_APP}"\n'
            f'alipay_public_key_file = {json.dumps(public)}\n'
            f'\n[[xxpay]]\npath = "{XXPAY_PATH}"\nmch_id = "{XXPAY_MCH}"\n'
            f'key_file = {json.dumps(os.path.join(workdir, "xxpay.key"))}\n'
            f'\n[[jeepay]]\npath = "{JEEPAY_PATH}"\nmch_no = "{JEEPAY_MCH}"\napp_id = "{JEEPAY_APP}"\n'
            f'key_file = {json.dumps(os.path.join(workdir, "jeepay.key"))}\n')


def quoted(items):
    from urllib.parse import quote  # noqa: PLC0415
    return "&".join(f"{k}={quote(v, safe='')}" for k, v in items)


def post(path, body, content_type="application/x-www-form-urlencoded", length=None):
    """A POST on its own connection; `length` declares another Content-Length than the body's."""
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body) if length is None else length}\r\n\r\n").encode() + body


def huge_post(path):
    """A Content-Length far over max_body_bytes, and the first 16 KiB of the body: payhook refuses it from the
    header (413) without reading the body."""
    return post(path, b"x=" + b"y" * (16384 - 2), length=64 * MAX_BODY)


def many_params(signed_items):
    """A genuine notification's parameters plus enough made-up ones to fill the body just under max_body_bytes,
    its sign left as it was (so it no longer verifies): the parser, the sort and the signed string at their
    largest."""
    extra, size = [], len(quoted(signed_items))
    n = 0
    while size + 30 < MAX_BODY - 64:
        pair = (f"p{n:05d}", "v" * 16)
        extra.append(pair)
        size += len(pair[0]) + len(pair[1]) + 2
        n += 1
    return signed_items[:-1] + extra + signed_items[-1:]


class Alipay:
    """Alipay trade notifications signed with Python's `cryptography` and Fixtures/alipay's test-only key (RSA2:
    RSASSA-PKCS1-v1_5 SHA-256 over the sorted `name=value` pairs, without sign and sign_type)."""

    def __init__(self):
        self.key, self.pkcs1, self.sha256 = rsa_signer(
            os.path.join(ALIPAY_FIXTURES, "test-only-alipay-private-key.pem"), "alipay-refusals")

    def sign(self, params, encoding="utf-8"):
        text = "&".join(f"{k}={v}" for k, v in sorted(params) if v and k not in ("sign", "sign_type"))
        return base64.b64encode(self.key.sign(text.encode(encoding), self.pkcs1, self.sha256)).decode()

    @staticmethod
    def params(n, app_id=ALIPAY_APP, notify_ms=None, subject="hostile"):
        """A TRADE_SUCCESS of order hostile-ali-n, notified a minute ago (Beijing time)."""
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime((notify_ms or time.time() * 1000 - 60000) / 1000 + 8 * 3600))
        return [("notify_time", at), ("notify_type", "trade_status_sync"), ("notify_id", "%032x" % n),
                ("charset", "utf-8"), ("version", "1.0"), ("sign_type", "RSA2"), ("app_id", app_id),
                ("trade_no", "2026%024d" % n), ("out_trade_no", f"hostile-ali-{n}"), ("trade_status", "TRADE_SUCCESS"),
                ("total_amount", "%d.%02d" % (1 + n // 100, n % 100)), ("subject", subject), ("gmt_payment", at)]

    def signed(self, params):
        return params + [("sign", self.sign(params))]


ALIPAY_KINDS = ["bad-signature", "tampered", "unknown-app", "repeated-name", "malformed-escape",
                "gbk-not-configured", "huge-body", "many-params", "stale", "moved-field"]
ALIPAY_EXPECTED = {"bad-signature": 401, "tampered": 401, "unknown-app": 401, "repeated-name": 400,
                   "malformed-escape": 400, "gbk-not-configured": 400, "huge-body": 413, "many-params": 401,
                   "stale": 400, "moved-field": 400}


def alipay_hostile(ali, i):
    """Request i of the Alipay flood: kind ALIPAY_KINDS[i % 10], against order hostile-ali-(1 + i), never stored."""
    kind = ALIPAY_KINDS[i % len(ALIPAY_KINDS)]
    n = 1 + i
    params = ali.params(n)
    if kind == "bad-signature":
        return kind, post(ALIPAY_PATH, quoted(params + [("sign", base64.b64encode(os.urandom(256)).decode())]).encode())
    if kind == "tampered":
        signed = ali.signed(params)
        return kind, post(ALIPAY_PATH, quoted([(k, "999.00" if k == "total_amount" else v) for k, v in signed]).encode())
    if kind == "unknown-app":
        return kind, post(ALIPAY_PATH, quoted(ali.signed(ali.params(n, app_id="2021000000009999"))).encode())
    if kind == "repeated-name":
        return kind, post(ALIPAY_PATH, (quoted(ali.signed(params)) + f"&out_trade_no=hostile-ali-x{n}").encode())
    if kind == "malformed-escape":
        body = quoted(ali.signed(params)).replace("subject=hostile", "subject=host%G1le" if n % 2 else "subject=host%4")
        return kind, post(ALIPAY_PATH, body.encode())
    if kind == "gbk-not-configured":
        # Correctly signed over the GBK bytes, as a GBK merchant's notification is: the tenant accepts UTF-8 only.
        from urllib.parse import quote  # noqa: PLC0415
        gbk = [(k, "gbk" if k == "charset" else "测试订单" if k == "subject" else v) for k, v in params]
        sign = ali.sign(gbk, encoding="gbk")
        body = "&".join(f"{k}={quote(v.encode('gbk'), safe='')}" for k, v in gbk + [("sign", sign)])
        return kind, post(ALIPAY_PATH, body.encode())
    if kind == "huge-body":
        return kind, huge_post(ALIPAY_PATH)
    if kind == "many-params":
        return kind, post(ALIPAY_PATH, quoted(many_params(ali.signed(params))).encode())
    if kind == "stale":
        return kind, post(ALIPAY_PATH, quoted(ali.signed(ali.params(n, notify_ms=time.time() * 1000 - STALE_MS))).encode())
    # A value holding `&out_biz_no=`: the signed string cannot tell it from a parameter of its own.
    return kind, post(ALIPAY_PATH, quoted(ali.signed(ali.params(n, subject=f"x&out_biz_no=R{n}"))).encode())


def md5_sign(params, secret):
    """XxPay's and Jeepay's MD5 (Sources/PayhookXxPay/MD5KeySigning.swift), written here from the rule."""
    pieces = sorted((f"{k}={v}&" for k, v in params if v != "" and k != "sign"), key=str.lower)
    return hashlib.md5(("".join(pieces) + "key=" + secret).encode()).hexdigest().upper()


def xxpay_params(n, mch=XXPAY_MCH, paid_ms=None, subject="hostile"):
    paid = int(time.time() * 1000) - 60000 if paid_ms is None else int(paid_ms)
    return [("payOrderId", "P%014d" % n), ("mchId", mch), ("mchOrderNo", f"hostile-xx-{n}"), ("channelId", "WX_NATIVE"),
            ("amount", str(100 + n)), ("currency", "cny"), ("status", "2"), ("subject", subject),
            ("paySuccTime", str(paid)), ("backType", "2")]


def jeepay_params(n, app=JEEPAY_APP, mch=JEEPAY_MCH, req_ms=None, subject="hostile"):
    req = int(time.time() * 1000) - 60000 if req_ms is None else int(req_ms)
    return [("payOrderId", "P%016d" % n), ("mchNo", mch), ("appId", app), ("mchOrderNo", f"hostile-jee-{n}"),
            ("ifCode", "wxpay"), ("wayCode", "WX_NATIVE"), ("amount", str(100 + n)), ("currency", "cny"),
            ("state", "2"), ("subject", subject), ("successTime", str(req - 1000)), ("reqTime", str(req))]


MD5_KINDS = ["bad-signature", "not-hex-sign", "tampered", "unknown-tenant", "repeated-name", "malformed-escape",
             "not-utf8", "moved-field", "stale", "huge-body", "other-merchant"]
MD5_EXPECTED = {"bad-signature": 401, "not-hex-sign": 401, "tampered": 401, "unknown-tenant": 401,
                "repeated-name": 400, "malformed-escape": 400, "not-utf8": 400, "moved-field": 400, "stale": 400,
                "huge-body": 413, "other-merchant": 401}


def md5_hostile(i):
    """Request i of the XxPay/Jeepay flood: even i to XxPay (parameters in the query of a POST with an empty
    body), odd i to Jeepay (a form body); kind MD5_KINDS[(i // 2) % 11]. Returns (source, kind, bytes)."""
    kind = MD5_KINDS[(i // 2) % len(MD5_KINDS)]
    n = 1 + i
    xx = i % 2 == 0
    source = "xxpay" if xx else "jeepay"
    secret = XXPAY_KEY if xx else JEEPAY_KEY
    make = xxpay_params if xx else jeepay_params

    def signed(params):
        return params + [("sign", md5_sign(params, secret))]

    def send(items, raw=None):
        text = raw if raw is not None else quoted(items)
        if xx:
            return (f"POST {XXPAY_PATH}?{text} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                    f"Content-Length: 0\r\n\r\n").encode()
        return post(JEEPAY_PATH, text.encode())

    params = make(n)
    if kind == "bad-signature":
        return source, kind, send(params + [("sign", os.urandom(16).hex().upper())])
    if kind == "not-hex-sign":
        return source, kind, send(params + [("sign", "Z" * 32 if n % 4 < 2 else "ABC")])
    if kind == "tampered":
        return source, kind, send([(k, "99999" if k == "amount" else v) for k, v in signed(params)])
    if kind == "unknown-tenant":
        other = xxpay_params(n, mch="99990000") if xx else jeepay_params(n, app="ffffffffffffffffffffffff")
        return source, kind, send(signed(other))
    if kind == "repeated-name":
        if xx:
            # A name in the query and again in a form body: which copy was signed cannot be known.
            head = (f"POST {XXPAY_PATH}?{quoted(signed(params))} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                    f"Content-Type: application/x-www-form-urlencoded\r\n")
            body = f"mchOrderNo=hostile-xx-y{n}".encode()
            return source, kind, (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        return source, kind, send(None, raw=quoted(signed(params)) + f"&mchOrderNo=hostile-jee-y{n}")
    if kind == "malformed-escape":
        return source, kind, send(None, raw=quoted(signed(params)).replace("subject=hostile", "subject=hos%ZZtile"))
    if kind == "not-utf8":
        return source, kind, send(None, raw=quoted(signed(params)).replace("subject=hostile", "subject=hos%C3%28tile"))
    if kind == "moved-field":
        return source, kind, send(signed(make(n, subject=f"x&mchOrderNo=hostile-moved-{n}")))
    if kind == "stale":
        old = time.time() * 1000 - STALE_MS
        return source, kind, send(signed(xxpay_params(n, paid_ms=old) if xx else jeepay_params(n, req_ms=old)))
    if kind == "huge-body":
        return source, kind, huge_post(XXPAY_PATH if xx else JEEPAY_PATH)
    # other-merchant: Jeepay's appId routes, and the mchNo it names must be that app's merchant; XxPay's tenant is
    # its mchId alone, so its other-merchant is signed with another merchant's key.
    if xx:
        return source, kind, send(params + [("sign", md5_sign(params, JEEPAY_KEY))])
    return source, kind, send(signed(jeepay_params(n, mch="M1799999999")))


def refusal_phase(server, args, deadline, name, genuine, make, expected):
    """The shared flood of the merchant phases. `genuine`: (request bytes, success body) stored before the flood;
    `make(i)` -> (label, bytes), label = (source, kind); `expected`: {label: (status, body)}. Every answer must be
    its label's; afterwards the spool holds the genuine events only, and RSS, in-flight and /healthz hold."""
    failures = []
    for data, success in genuine:
        status, body = server.answer(data)
        if (status, body) != (200, success):
            raise RunError(f"{name}: a genuine notification was answered {status} {body[:40]!r}, not 200 {success!r}")
    lock = threading.Lock()
    by_label = {}

    class Counting:
        """The server, with each answer also counted by label (flood() calls exchange(make(i)))."""
        def __getattr__(self, attr):
            return getattr(server, attr)

        def exchange(self, item):
            label, data = item
            got = server.answer(data)
            with lock:
                seen = by_label.setdefault(label, {})
                seen[got] = seen.get(got, 0) + 1
            return got[0]

    warm = min(500, max(50, args.requests // 20))
    baseline, sampler, took, (sent, answers, errors) = measured_flood(Counting(), args, deadline, warm, make)
    if sent + errors < args.requests:
        sampler.stop()
        raise RunError(f"{name}: the time budget ran out after {sent} of {args.requests} requests")
    inflight = settled_inflight(server)
    after = server.rss()
    growth = max(sampler.stop(), after) - baseline
    spool = os.path.join(server.workdir, f"spool-{name}")
    listing = {sub: [n for n in os.listdir(os.path.join(spool, sub)) if not n.startswith(".")]
               for sub in ("new", "ids", "tmp", "conflicts", "corrupt")}
    status, _ = server.get("/healthz")
    shown = {"/".join(label): {f"{k[0]} {k[1].decode(errors='replace')}": v for k, v in got.items()}
             for label, got in sorted(by_label.items())}
    print(f"  {name}: {sent} hostile notifications in {took:.1f} s ({sent / max(took, 1e-9):.0f}/s), answers "
          f"{answers or 'none'}; by kind {shown}; new/ {len(listing['new'])}, tmp/ {len(listing['tmp'])}, "
          f"conflicts/ {len(listing['conflicts'])}; RSS baseline {baseline / MIB:.1f} MiB, peak +{growth / MIB:.1f} MiB; "
          f"in flight 3 s later {inflight}; /healthz {status}")
    for label, want in expected.items():
        got = by_label.get(label, {})
        wrong = {f"{k[0]} {k[1][:20]!r}": v for k, v in got.items() if k != want}
        if wrong:
            failures.append(f"{name}: {'/'.join(label)} requests were answered {wrong}, not only {want[0]} {want[1]!r}")
        if not got:
            failures.append(f"{name}: no {'/'.join(label)} request was answered at all")
    if errors:
        failures.append(f"{name}: {errors} of {args.requests} connections to the server failed")
    want = len(genuine)
    if (len(listing["new"]) != want or len(listing["ids"]) != want or listing["tmp"] or listing["conflicts"]
            or listing["corrupt"]):
        failures.append(f"{name}: the spool holds new/ {len(listing['new'])}, ids/ {len(listing['ids'])}, tmp/ "
                        f"{len(listing['tmp'])}, conflicts/ {len(listing['conflicts'])}, corrupt/ "
                        f"{len(listing['corrupt'])}; only the {want} genuine events may be stored")
    failures += aftermath(name, args, sent, growth, inflight, status)
    return failures


def phase_alipay_refusals(server, args, deadline):
    ali = Alipay()
    genuine = [(post(ALIPAY_PATH, quoted(ali.signed(ali.params(0))).encode()), b"success")]
    expected = {("alipay", kind): (status, b"fail") for kind, status in ALIPAY_EXPECTED.items()}
    return refusal_phase(server, args, deadline, "alipay-refusals", genuine,
                         lambda i: (("alipay", ALIPAY_KINDS[i % len(ALIPAY_KINDS)]), alipay_hostile(ali, i)[1]),
                         expected)


def phase_md5_refusals(server, args, deadline):
    def send_xx(params):
        return (f"POST {XXPAY_PATH}?{quoted(params)} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                f"Content-Length: 0\r\n\r\n").encode()
    xx, jee = xxpay_params(0), jeepay_params(0)
    genuine = [(send_xx(xx + [("sign", md5_sign(xx, XXPAY_KEY))]), b"success"),
               (post(JEEPAY_PATH, quoted(jee + [("sign", md5_sign(jee, JEEPAY_KEY))]).encode()), b"SUCCESS")]
    expected = {}
    for kind, status in MD5_EXPECTED.items():
        expected[("xxpay", kind)] = (status, b"fail")
        expected[("jeepay", kind)] = (status, b"FAIL")

    def make(i):
        source, kind, data = md5_hostile(i)
        return (source, kind), data
    return refusal_phase(server, args, deadline, "md5-refusals", genuine, make, expected)


PHASES = {
    "many-args": phase_many_args,
    "conflicts": phase_conflicts,
    "v3-refusals": phase_v3_refusals,
    "alipay-refusals": phase_alipay_refusals,
    "md5-refusals": phase_md5_refusals,
}
MERCHANT_PHASES = ("alipay-refusals", "md5-refusals")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--binary", default=os.path.join(REPO, ".build", "debug", "payhook"))
    p.add_argument("--phase", action="append", choices=list(PHASES),
                   help="phase to run (repeatable; default: all, in order)")
    p.add_argument("--requests", type=int, default=20000, help="requests per phase's flood (default 20000)")
    p.add_argument("--seconds", type=float, default=300, help="time budget for the whole run (default 300)")
    p.add_argument("--clients", type=int, default=4, help="client threads (default 4)")
    p.add_argument("--rss-bound-mib", type=float, default=30, help="largest RSS growth allowed (default 30)")
    p.add_argument("--exit-limit", type=float, default=3, help="seconds SIGTERM may take (default 3)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args()
    if args.requests < 1 or args.clients < 1 or args.seconds <= 0:
        p.error("--requests, --clients and --seconds must be positive")
    binary = os.path.abspath(args.binary)
    if not os.access(binary, os.X_OK):
        print(f"hostile run: {binary} is not an executable; build it first (swift build)", file=sys.stderr)
        return 2

    deadline = time.monotonic() + args.seconds
    workdir = tempfile.mkdtemp(prefix="payhook-hostile-")
    failures = []
    code = 0
    try:
        for name in args.phase or list(PHASES):
            print(f"hostile run: phase {name}: {args.requests} requests from {args.clients} threads")
            v3 = V3() if name == "v3-refusals" else None
            extra = v3_table(workdir) if v3 else merchant_tables(workdir) if name in MERCHANT_PHASES else ""
            server = Server(binary, workdir, name, args.clients, extra=extra)
            server.v3 = v3
            try:
                failures += PHASES[name](server, args, deadline)
                stopped = server.stop(args.exit_limit)
                if stopped:
                    failures.append(f"{name}: {stopped}")
            finally:
                server.kill()
            if failures:
                print(f"  server stderr (last lines):\n{server.stderr_tail()}", file=sys.stderr)
                break
    except RunError as e:
        print(f"hostile run: could not complete: {e}", file=sys.stderr)
        code = 2
    for failure in failures:
        print(f"hostile run FAILED: {failure}", file=sys.stderr)
    if failures:
        code = 1
    if code == 0 and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"hostile run: work directory kept: {workdir}", file=sys.stderr)
    if code == 0:
        print("hostile run: every phase held")
    return code


if __name__ == "__main__":
    sys.exit(main())
