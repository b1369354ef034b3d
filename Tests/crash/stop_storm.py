#!/usr/bin/env python3
"""Stop storm: many short lives of `payhook serve`, each ended by SIGTERM in the middle of connection churn.

Why (docs/durability.md §10.6 "Graceful shutdown"): a graceful stop is the one moment the listener's threads and the
signal path touch the same libmicrohttpd state. With MHD_USE_EPOLL and a thread pool, libmicrohttpd 0.9.75's
MHD_quiesce_daemon removes the listen socket from every worker's epoll set while a worker may be removing it
too (it drops the socket whenever its share of max_connections is full, and again once it sees the quiesce
flag), and MHD_PANICs on the losing epoll_ctl: "Failed to remove listen FD from epoll set", then abort(). The
listener runs on poll(2) for that reason (Sources/CMicroHTTPD/shim.h); the bench met the abort once in about 75
stops before. Tests/PayhookHTTPTests/StopStormTests.swift is the in-process regression test for that race (on
epoll it aborts within a few dozen stops); this harness puts the whole binary through the same storm: signal
handling, drain, spool and exit status.

Each round, on a fresh spool:
  * a config with --threads listener threads and max_connections = threads: every accept fills a worker's share
    and every close frees it, so the workers keep dropping and re-adding the listen socket;
  * --clients threads, each opening a new connection per request (GET /healthz, a correctly signed unified
    callback with a unique requestKey, or one with a bad signature) and closing it;
  * after a random --min-load .. --max-load seconds, SIGTERM. payhook must exit 0 within shutdown_grace_s plus
    --exit-margin, and every callback it answered "success" must be in new/ with its ids/ entry (same inode).

Exit status: 0 when every round held, 1 on a failed round (its stderr tail and work directory are printed),
2 on bad usage. Python 3.11 standard library.
"""
import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import crash_test as ct  # noqa: E402  the same independent signer, client and spool rules

GRACE_S = 5


def write_config(path, repo, threads):
    secrets = os.path.join(repo, "Fixtures", "secrets")
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"""listen = "127.0.0.1:0"
spool = "spool"
threads = {threads}
max_connections = {threads}
max_connections_per_ip = {threads}
shutdown_grace_s = {GRACE_S}

[[unified]]
path = "/notify/unified"
domain_code = "demo"
secret_file = "{os.path.join(secrets, "demo.secret")}"
sign_scheme = "values-sha1"
""")


class Round:
    def __init__(self, storm, n):
        self.storm = storm
        self.n = n
        self.acked = []
        self.answers = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def request(self, rng, port, i):
        s = self.storm
        pick = rng.random()
        if pick < 0.3:
            return ct.send(port, ct.Variant("GET", "/healthz", b"", {}, "health", "health", 0), timeout=10), None
        key = f"storm{s.args.seed}-r{self.n}-{i}"
        params = [("money", str(rng.randint(1, 10**6))), ("requestKey", key), ("payTime", str(int(time.time() * 1000) - 60_000)),
                  ("orderSn", f"SN{self.n}-{i}"), ("payTypeCode", "Wechat"), ("payTypeName", "微信支付"),
                  ("currencyType", "CNY"), ("payStatus", "SUCCESSPAY"), ("domainCode", "demo")]
        sign = s.ms.values_sha1(params, s.secret)
        if pick < 0.4:
            sign = ("0" if sign[0] != "0" else "1") + sign[1:]  # a forgery: must be refused, stores nothing
        target = "/notify/unified?" + s.ms.query(params + [("sign", sign)])
        answer = ct.send(port, ct.Variant("GET", target, b"", {}, "unified", "storm", 0), timeout=10)
        forged = pick < 0.4
        return answer, (None if forged else ct.event_id(ct.dedupe_key("unified", ["demo", key, "SUCCESSPAY"])))

    def client(self, port, seed):
        rng = random.Random(seed)
        i = 0
        while not self.stop.is_set():
            i += 1
            (status, body), event = self.request(rng, port, f"{seed}-{i}")
            if status is None:
                continue
            with self.lock:
                self.answers += 1
                if event is not None and status == 200 and body == ct.UNIFIED_SUCCESS:
                    self.acked.append(event)


class Storm:
    def __init__(self, args):
        self.args = args
        self.repo = os.path.abspath(args.repo)
        self.binary = os.path.abspath(args.binary)
        self.ms = ct.load_make_samples(self.repo)
        with open(os.path.join(self.repo, "Fixtures", "secrets", "demo.secret"), encoding="utf-8") as f:
            self.secret = next(line.strip() for line in f if line.strip())
        self.workdir = tempfile.mkdtemp(prefix="payhook-storm-")
        self.config = os.path.join(self.workdir, "storm.toml")
        write_config(self.config, self.repo, args.threads)
        self.timing = random.Random(f"payhook-storm-{args.seed}")
        self.failures = []
        self.exit_times = []
        self.answers = 0
        self.acked = 0

    def round(self, n):
        spool = os.path.join(self.workdir, f"spool-{n}")
        err_path = os.path.join(self.workdir, f"serve-{n}.stderr")
        with open(err_path, "wb") as err:
            proc = subprocess.Popen([self.binary, "serve", "--config", self.config, "--spool", spool],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, close_fds=True)
        try:
            line = proc.stdout.readline().decode("utf-8", "replace").strip()
            m = ct.LISTENING.match(line)
            if not m:
                proc.kill()
                proc.wait()
                return self.fail(n, f"no listening line (got {line!r})", err_path)
            port = int(m.group(1))
            r = Round(self, n)
            threads = [threading.Thread(target=r.client, args=(port, f"{self.args.seed}-{n}-{c}"), daemon=True)
                       for c in range(self.args.clients)]
            for t in threads:
                t.start()
            time.sleep(self.timing.uniform(self.args.min_load, self.args.max_load))
            os.kill(proc.pid, signal.SIGTERM)
            started = time.monotonic()
            limit = GRACE_S + self.args.exit_margin
            try:
                code = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                r.stop.set()
                return self.fail(n, f"still running {limit:.0f} s after SIGTERM", err_path)
            self.exit_times.append(time.monotonic() - started)
            r.stop.set()
            for t in threads:
                t.join(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        self.answers += r.answers
        self.acked += len(r.acked)
        if code != 0:
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"status {code}"
            return self.fail(n, f"payhook exited with {how} after SIGTERM, not 0", err_path)
        missing = []
        for event in r.acked:
            try:
                stored = os.stat(os.path.join(spool, "new", event + ".json"))
                ledger = os.stat(os.path.join(spool, "ids", event))
                if stored.st_ino != ledger.st_ino:
                    missing.append(f"{event} (ids/ is another inode)")
            except FileNotFoundError:
                missing.append(event)
        if missing:
            return self.fail(n, f"{len(missing)} acknowledged event(s) not stored: {missing[:3]}", err_path)
        shutil.rmtree(spool, ignore_errors=True)
        if self.args.verbose:
            print(f"  round {n}: {r.answers} answers, {len(r.acked)} acknowledged, exit after "
                  f"{self.exit_times[-1]:.2f} s")
        return True

    def fail(self, n, what, err_path):
        with open(err_path, "rb") as f:
            log = f.read().decode("utf-8", "replace")
        # A crash's last lines are its backtrace; the reason (e.g. libmicrohttpd's "Fatal error in …") comes first.
        reasons = [line for line in log.splitlines() if "error" in line.lower()][:3]
        self.failures.append(f"round {n}: {what}\n" + ct.tail("\n".join(reasons), 3) + "\n" + ct.tail(log, 5))
        print(f"stop storm: round {n}: {what}", file=sys.stderr)
        return False


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--binary", default=os.path.join(ct.REPO, ".build", "debug", "payhook"))
    p.add_argument("--repo", default=ct.REPO)
    p.add_argument("--rounds", type=int, default=60, help="server lives, each ended by SIGTERM (default 60)")
    p.add_argument("--threads", type=int, default=4, help="listener threads (default 4)")
    p.add_argument("--clients", type=int, default=12, help="client threads (default 12)")
    p.add_argument("--min-load", type=float, default=0.05, help="least load before SIGTERM (s)")
    p.add_argument("--max-load", type=float, default=0.4, help="most load before SIGTERM (s)")
    p.add_argument("--exit-margin", type=float, default=5.0, help="seconds allowed beyond shutdown_grace_s")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep-going", action="store_true", help="run every round even after a failure")
    p.add_argument("--verbose", action="store_true", help="a line per round")
    args = p.parse_args()
    if args.rounds < 1 or not 2 <= args.threads <= 256 or args.clients < 1 or not 0 < args.min_load <= args.max_load:
        p.error("need --rounds ≥ 1, 2 ≤ --threads ≤ 256, --clients ≥ 1 and 0 < --min-load ≤ --max-load")
    if not os.access(args.binary, os.X_OK):
        print(f"stop storm: payhook binary not found or not executable: {args.binary}", file=sys.stderr)
        return 2
    storm = Storm(args)
    started = time.monotonic()
    done = 0
    for n in range(1, args.rounds + 1):
        done = n
        if not storm.round(n) and not args.keep_going:
            break
    wall = time.monotonic() - started
    times = sorted(storm.exit_times)
    print(f"stop storm: {done} SIGTERMs under load ({args.threads} listener threads, {args.clients} clients), "
          f"{storm.answers} answers, {storm.acked} acknowledged and stored; exit took at most "
          f"{times[-1] if times else 0:.2f} s; {wall:.1f} s in all")
    if storm.failures:
        print(f"stop storm: FAIL: {len(storm.failures)} round(s); first:\n  {storm.failures[0]}", file=sys.stderr)
        print(f"stop storm: work directory kept: {storm.workdir}", file=sys.stderr)
        return 1
    shutil.rmtree(storm.workdir, ignore_errors=True)
    print("stop storm: PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
