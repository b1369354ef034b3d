#!/usr/bin/env python3
"""payhook's benchmark: payhook against a do-nothing nginx, in the same run, on loopback.

  python3 bench/run.py [--quick] [--binary PATH] [options]      (what `make bench` runs)

Builds payhook in release mode (unless --binary is given), installs wrk, nginx and a C compiler
if missing, then:
  1. measures this file system's durable-file ceiling (bench/tools/fileceil.c);
  2. offers unique events at a fixed rate (bench/tools/ratedrv.c, open loop) for the p99 target,
     on the disk as the probe found it (see bench/README.md, "What a run does"), and makes the
     same flushes at that rate with nothing else (bench/tools/flushfloor.c), then again with
     payhook's other CPU burnt beside them: the floor under that p99 on this machine;
  3. for each repetition, connection count, workload: drives a fresh nginx and a fresh payhook
     per spool location (disk, tmpfs) with wrk and bench/lua/callbacks.lua, recording answers/s,
     latency percentiles, CPU seconds per 1,000 answers and peak RSS, and checks the spool of
     every payhook run against what was sent and answered (bench/check_spool.py); the WeChat Pay
     v3 workloads are also set against v2's, and the Alipay and Jeepay ones against the unified
     source's, in tables of their own; then the PostgreSQL workloads asked for (bench/postgres.py);
  4. prints the tables with medians and the targets, writes them to bench/results/latest.md,
     and only then deletes the disk spools (see README: deletes slow ext4 file creation).
Exits 1 if any run failed its spool check or could not be measured, 0 otherwise; targets
missed are reported, not fatal, unless --fail-on-targets.
"""
import argparse
import datetime
import fcntl
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import postgres as pgbench_part  # bench/postgres.py: the PostgreSQL store's workloads and pgbench

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Events in flight in flushfloor's closed loop: the closed-loop runs' connections at the targets' count.
CLOSED_LOOP_WORKERS = 64

WECHAT_OK = ("<xml><return_code><![CDATA[SUCCESS]]></return_code>"
             "<return_msg><![CDATA[OK]]></return_msg></xml>")
UNIFIED_SECRET = "bench-secret"
WECHAT_KEY = "192006250b4c09247ec02edce69f6a2d"
MCH_ID = "1900000109"
APPID = "wx2421b1c4370ec43b"
# WeChat Pay API v3: the test material of Fixtures/wechat-v3/README.md, and gen_requests.py's merchant.
V3_PATH = "/notify/wechatpay"
V3_MCH_ID = "1900000100"
V3_KEY = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"
V3_KEY_ID = "PUB_KEY_ID_0000000000000024101100397200000006"
V3_PUBLIC_KEY = os.path.join(REPO, "Fixtures", "wechat-v3", "wechat_pay_public_key.pem")
# WeChat Pay allows 300 s between Wechatpay-Timestamp and the receiver's clock. A v3 set is signed once,
# with the time of its generation, and then used for the whole run (a full run takes 20 minutes and more),
# so the bench's tenant allows an hour; the check is one subtraction and comparison either way, so the
# cost per request is the same. A cached set is reused only while it stays well inside this window
# (v3_set_fresh).
V3_CLOCK_SKEW_S = 3600
# Alipay: the test-only key pair of Fixtures/alipay (gen_requests.py signs with its private half). Jeepay: an
# app of the bench's own, its secret made up here.
ALIPAY_PATH = "/notify/alipay"
ALIPAY_APP_ID = "2021000000000001"
ALIPAY_PUBLIC_KEY = os.path.join(REPO, "Fixtures", "alipay", "test-only-alipay-public-key.pem")
JEEPAY_PATH = "/notify/jeepay"
JEEPAY_MCH_NO = "M1700000000"
JEEPAY_APP_ID = "65a0b1c2d3e4f5a6b7c8d9e0"
JEEPAY_KEY = "bench-jeepay-app-secret"

WORKLOADS = {
    "unique": {"lines": "unified", "kind": "unified", "expect": "success",
               "what": "unified callbacks, each a new event"},
    "dup": {"lines": "unified", "kind": "unified", "expect": "success",
            "what": "unified callbacks cycling over DUP_SET events: after the first pass all duplicates"},
    "wechat": {"lines": "wechat", "kind": "wechat", "expect": WECHAT_OK,
               "what": "WeChat payment notifications (XML POST, MD5), each a new event"},
    "v3unique": {"lines": "wechatv3", "kind": "wechatv3", "expect": "", "status": 204,
                 "what": "WeChat Pay v3 notifications (JSON POST, RSA-2048 + AES-256-GCM), each a new event"},
    "v3dup": {"lines": "wechatv3", "kind": "wechatv3", "expect": "", "status": 204,
              "what": "WeChat Pay v3 notifications cycling over --v3-dup-set events (default: one), all duplicates"},
    "alipayunique": {"lines": "alipay", "kind": "alipay", "expect": "success",
                     "what": "Alipay trade notifications (form POST, RSA2), each a new event"},
    "alipaydup": {"lines": "alipay", "kind": "alipay", "expect": "success",
                  "what": "Alipay trade notifications cycling over DUP_SET events, all duplicates after the first pass"},
    "jeepaydup": {"lines": "jeepay", "kind": "jeepay", "expect": "SUCCESS",
                  "what": "Jeepay notifications (form POST, MD5) cycling over DUP_SET events, all duplicates"},
}
DUP_WORKLOADS = ("dup", "v3dup", "alipaydup", "jeepaydup")
# The tables that set a workload against another of the same run, payhook only: (title, {workload: reference},
# which of make_report's descriptions). v3 against v2: WeChat Pay v2 for new events, the unified duplicates for
# duplicates (there is no v2 duplicates workload). Alipay and Jeepay against the unified source.
COMPARISONS = [
    ("WeChat Pay v3 against v2", {"v3unique": "wechat", "v3dup": "dup"}, "v3"),
    ("Alipay and Jeepay against the unified source", {"alipayunique": "unique", "alipaydup": "dup",
                                                      "jeepaydup": "dup"}, "alipay"),
]

# Reference figures quoted in the issue, measured elsewhere on this kind of machine.
def default_threads():
    """payhook's own `threads` default on the spool on this machine (Config.defaultThreads): two per core, 8 to 64."""
    return min(64, max(8, 2 * (os.cpu_count() or 1)))


def listener_threads(args):
    """The threads payhook's listener runs with in the spool runs, and libmicrohttpd alone with it."""
    return args.payhook_threads or default_threads()


def threads_shown(args):
    if args.payhook_threads:
        return f"`threads = {args.payhook_threads}`"
    return f"`threads` its default ({default_threads()} here)"


QUOTED_FLASK_UNIQUE = 1450
QUOTED_BATCHED_CEILING = 14000
QUOTED_SINGLE_CEILING = 2200


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# set-up


def ensure_tools(args):
    """wrk, nginx and a C compiler, from Debian's packages when missing; Python's `cryptography` (pip, as
    `make test-deps` installs it) when a v3 workload is to be generated and checked."""
    if any(WORKLOADS[w]["kind"] in ("wechatv3", "alipay") for w in args.workloads):
        try:
            import cryptography  # noqa: F401, PLC0415
        except ImportError:
            if args.no_install:
                sys.exit("bench: the v3 and Alipay workloads need Python's cryptography and --no-install given")
            log("installing Python's cryptography (v3 and Alipay request sets)")
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                            "cryptography"], check=True)
    need = []
    if not shutil.which("wrk"):
        need.append("wrk")
    if not shutil.which("nginx"):
        need.append("nginx-light")
    if not shutil.which("cc"):
        need += ["gcc", "libc6-dev"]
    pg_server = False
    if args.pg_workloads:
        try:
            pgbench_part.pg_cluster.find_bindir()
        except pgbench_part.pg_cluster.PGError:
            need += ["postgresql", "postgresql-contrib"]  # initdb, pg_ctl, pgbench (as make test-deps installs them)
            pg_server = True
    if not need:
        return
    if args.no_install:
        sys.exit(f"bench: missing {' '.join(need)} and --no-install given")
    log(f"installing {' '.join(need)}")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if pg_server:
        # Only the server's binaries: Debian would otherwise create and start a cluster of its own
        # (the Makefile's test-deps does the same).
        os.makedirs("/etc/postgresql-common", exist_ok=True) if not sudo else subprocess.run(
            sudo + ["mkdir", "-p", "/etc/postgresql-common"], check=True)
        if not os.path.exists("/etc/postgresql-common/createcluster.conf"):
            subprocess.run(sudo + ["sh", "-c", "echo 'create_main_cluster = false' > "
                                   "/etc/postgresql-common/createcluster.conf"], check=True)
    subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(sudo + ["apt-get", "install", "-y", "-qq"] + need, check=True, env=env)
    # Debian's package may start nginx as a service (where no policy-rc.d forbids it); the
    # benchmark runs its own nginx in the foreground and wants nothing else listening.
    if "nginx-light" in need and os.path.exists("/run/nginx.pid"):
        subprocess.run(sudo + ["nginx", "-s", "quit"], check=False)


def build_payhook(args):
    if args.binary:
        path = os.path.abspath(args.binary)
    else:
        # The binary `make release` makes and the package ships (the Swift standard library linked in, the
        # build's commit stamped), not a plain `swift build -c release`: with the standard library shared, each
        # payhook process is about 6 MiB larger (README, "Performance"), so RSS would not be what ships.
        path = os.path.join(REPO, ".build", "dist", "payhook")
        if not args.no_build:
            log("make release")
            # its progress goes to stderr with ours: stdout carries only the report; SWIFT passes through
            subprocess.run(["make", "release"], cwd=REPO, check=True, stdout=sys.stderr)
    if not os.access(path, os.X_OK):
        sys.exit(f"bench: no payhook binary at {path}")
    return path


def source_revision(binary):
    """The commit the binary was built from, as far as its checkout tells (read-only git calls)."""
    d = os.path.dirname(binary)
    while d != "/" and not os.path.exists(os.path.join(d, ".git")):
        d = os.path.dirname(d)
    if d == "/":
        return "unknown (not inside a git checkout)"
    git = ["git", "--no-optional-locks", "-C", d]
    head = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(git + ["status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    where = "this repository" if os.path.realpath(d) == os.path.realpath(REPO) else "another checkout"
    return f"{head or '?'} of {where}" + (" plus uncommitted changes" if dirty else "")


def shown(path):
    """A path for the committed report: relative to the repository when inside it, so that the report carries
    no machine's absolute paths; otherwise only that it is elsewhere."""
    real, repo = os.path.realpath(path), os.path.realpath(REPO)
    if real == repo or real.startswith(repo + os.sep):
        return os.path.relpath(real, repo)
    return f"(outside the repository)/{os.path.basename(real)}"


def compile_tools(work):
    out = os.path.join(work, "bin")
    os.makedirs(out, exist_ok=True)
    built = {}
    for name, extra in (("ratedrv", ["-lm"]), ("fileceil", ["-pthread"]), ("flushfloor", ["-pthread"]),
                        ("mhdmin", ["-lmicrohttpd"])):
        src = os.path.join(BENCH, "tools", name + ".c")
        exe = os.path.join(out, name)
        newest = max(os.path.getmtime(src), os.path.getmtime(os.path.join(BENCH, "tools", "common.h")))
        if not os.path.exists(exe) or os.path.getmtime(exe) < newest:
            subprocess.run(["cc", "-O2", "-Wall", "-o", exe, src] + extra, check=True)
        built[name] = exe
    return built


def v3_set_fresh(generated, budget_s, margin_s=600):
    """Whether a v3 set signed at Unix time `generated` stays inside V3_CLOCK_SKEW_S for the next budget_s
    seconds plus margin_s (by default ten minutes, for the generation itself, the report and a late start)."""
    return 0 <= time.time() - generated and time.time() + budget_s + margin_s - generated <= V3_CLOCK_SKEW_S


def v3_request_set(work, lines_needed, budget_s):
    """A v3 set at least lines_needed long whose timestamps stay fresh for the run (see V3_CLOCK_SKEW_S),
    cached as wechatv3-N-T.txt (T: the Unix time it was signed at); stale or smaller sets are deleted."""
    d = os.path.join(work, "requests")
    os.makedirs(d, exist_ok=True)
    have = sorted((int(m.group(1)), int(m.group(2)), f) for f in os.listdir(d)
                  if (m := re.fullmatch(r"wechatv3-(\d+)-(\d+)\.txt", f)))
    fit = [(n, t, f) for n, t, f in have if n >= lines_needed and v3_set_fresh(t, budget_s)]
    if fit:
        n, t, f = fit[0]
        log(f"v3 requests: reusing {f} (signed {time.time() - t:.0f} s ago)")
        chosen = f
    else:
        t = int(time.time())
        chosen = f"wechatv3-{lines_needed}-{t}.txt"
        log(f"generating {lines_needed} signed v3 requests (RSA-2048 and AES-256-GCM, Wechatpay-Timestamp {t}; "
            f"cached in {d} while fresh)")
        started = time.time()
        subprocess.run([sys.executable, os.path.join(BENCH, "gen_requests.py"), "selftest"], check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run([sys.executable, os.path.join(BENCH, "gen_requests.py"), "wechatv3", "-n", str(lines_needed),
                        "--prefix", "V", "--mch-id", V3_MCH_ID, "--v3-key", V3_KEY, "--serial", V3_KEY_ID,
                        "--timestamp", str(t), "-o", os.path.join(d, chosen)], check=True)
        log(f"v3 requests generated in {time.time() - started:.1f} s")
    for _, _, f in have:
        if f != chosen:
            os.remove(os.path.join(d, f))
    return os.path.join(d, chosen), int(chosen.rsplit("-", 1)[1][:-4])


def request_sets(work, lines_needed, extra=None):
    """Cached gen_requests.py files, at least lines_needed long; `extra` {kind: lines} adds the Alipay and Jeepay
    sets the selected workloads need (their lines are deterministic too)."""
    d = os.path.join(work, "requests")
    os.makedirs(d, exist_ok=True)
    sets = {}
    wanted = [("unified", "U", lines_needed), ("wechat", "W", lines_needed)]
    wanted += [(kind, {"alipay": "A", "jeepay": "J"}[kind], n) for kind, n in (extra or {}).items()]
    for kind, prefix, needed in wanted:
        have = sorted((int(m.group(1)), f) for f in os.listdir(d)
                      if (m := re.fullmatch(rf"{kind}-(\d+)\.txt", f)))
        fit = [f for n, f in have if n >= needed]
        if fit:
            sets[kind] = os.path.join(d, fit[0])
            continue
        path = os.path.join(d, f"{kind}-{needed}.txt")
        log(f"generating {needed} signed {kind} requests (once; cached in {d})")
        started = time.time()
        cmd = [sys.executable, os.path.join(BENCH, "gen_requests.py"), kind, "-n", str(needed),
               "--prefix", prefix, "-o", path]
        if kind == "wechat":
            cmd += ["--mch-id", MCH_ID, "--appid", APPID, "--key", WECHAT_KEY]
        elif kind == "alipay":
            cmd += ["--app-id", ALIPAY_APP_ID]
        elif kind == "jeepay":
            cmd += ["--mch-no", JEEPAY_MCH_NO, "--app-id", JEEPAY_APP_ID, "--key", JEEPAY_KEY]
        else:
            cmd += ["--secret", UNIFIED_SECRET, "--domain", "bench"]
        subprocess.run(cmd, check=True)
        if kind == "alipay":
            log(f"alipay requests signed in {time.time() - started:.1f} s")
        for n, f in have:  # smaller sets are now useless
            os.remove(os.path.join(d, f))
        sets[kind] = path
    return sets


def mount_info(path):
    """The device, file-system type and mount options of the file system holding `path`, for the report. Not
    its mount point, nor the subdirectory findmnt shows in brackets for a bind mount: those are absolute paths
    of the machine the run was made on."""
    r = subprocess.run(["findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "-T", path],
                       capture_output=True, text=True)
    fields = r.stdout.split()
    if fields:
        fields[0] = fields[0].split("[", 1)[0]
    return " ".join(fields) or "unknown"


def setup_tmpfs(work):
    """A private tmpfs for the spool-on-tmpfs runs; /dev/shm if mounting is not permitted.

    The mount point is under the temporary directory ($TMPDIR, else /tmp). The note returned for the report
    does not name it: it holds this run's pid and the machine's temporary directory, neither of which means
    anything to a reader of a committed report."""
    prefix = os.path.join(tempfile.gettempdir(), "payhook-bench-tmpfs.")
    # Unmount tmpfs left behind by runs that were killed before their clean-up.
    try:
        for line in open("/proc/mounts"):
            target = line.split()[1]
            m = re.fullmatch(re.escape(prefix) + r"(\d+)", target)
            if m and not os.path.exists(f"/proc/{m.group(1)}"):
                subprocess.run(["umount", target], check=False)
                os.rmdir(target)
    except OSError:
        pass
    mnt = f"{prefix}{os.getpid()}"
    os.makedirs(mnt, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2g,mode=0700", "tmpfs", mnt],
                       capture_output=True, text=True)
    if r.returncode == 0:
        return mnt, True, "a private tmpfs mounted for the run (size=2g)"
    os.rmdir(mnt)
    alt = f"/dev/shm/payhook-bench.{os.getpid()}"
    os.makedirs(alt, exist_ok=True)
    why = r.stderr.strip().replace(mnt, "the mount point")
    return alt, False, f"/dev/shm: mounting a private tmpfs failed: {why}"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------------------------------------
# process accounting


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
            total += int(rest[11]) + int(rest[12])  # utime, stime
        except (OSError, IndexError):
            pass
    return total / CLK_TCK


def key_values(text):
    """The "name number" lines a bench tool prints (fileceil, flushfloor), as a dict."""
    return {k: float(v) for k, v in (line.split() for line in text.splitlines() if len(line.split()) == 2)}


def steal_ms_since(before):
    """Host steal time since `before` (a steal_seconds() reading), in ms; None when unknown."""
    now = steal_seconds()
    return (now - before) * 1000 if now is not None and before is not None else None


def steal_seconds():
    """CPU time the hypervisor ran something else while this machine's CPUs wanted to run (the `steal`
    column of /proc/stat, all CPUs together): on the development VM the host takes it when the VM flushes
    and computes at once, and the fixed-rate tail follows it (bench/README.md, "The fixed-rate floor")."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def peak_rss_mib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


# One home for it: the test cluster's helper (Tests/crash/pg_cluster.py), which the PostgreSQL workloads load.
children_of = pgbench_part.pg_cluster.children_of


# ---------------------------------------------------------------------------------------------
# servers


def write_payhook_config(rundir, spool, threads, v3=False, alipay=False, jeepay=False, store=None):
    """payhook's benchmark configuration, with its secrets, in rundir; returns the config file's path.
    Also used by bench/tools/profile.sh (python3 bench/run.py --write-config DIR SPOOL THREADS). With v3,
    also a [[wechat_v3]] tenant, with alipay an [[alipay]] one, with jeepay a [[jeepay]] one (only then: a
    binary from before those tables would refuse the config)."""
    os.makedirs(os.path.join(rundir, "secrets"), exist_ok=True)
    with open(os.path.join(rundir, "secrets", "bench.secret"), "w") as f:
        f.write(UNIFIED_SECRET + "\n")
    with open(os.path.join(rundir, "secrets", "wechat.key"), "w") as f:
        f.write(WECHAT_KEY + "\n")
    cfg = os.path.join(rundir, "payhook.toml")
    with open(cfg, "w") as f:
        f.write(f'''listen = "127.0.0.1:0"
spool = "{spool}"
max_connections = 1024
max_connections_per_ip = 1024   # all the load comes from 127.0.0.1
{f"threads = {threads}" if threads else "# threads: payhook's default for the store"}
log_level = "warning"
shutdown_grace_s = 5
# The request sets carry fixed payment times (gen_requests.py), so the replay window must cover them.
ledger_retention_days = 36500
[[unified]]
path = "/notify/unified"
domain_code = "bench"
secret_file = "secrets/bench.secret"
[[wechat]]
path = "/notify/wechat"
mch_id = "{MCH_ID}"
appid = "{APPID}"
api_key_file = "secrets/wechat.key"
''')
        if v3:
            os.makedirs(os.path.join(rundir, "keys"), exist_ok=True)
            shutil.copyfile(V3_PUBLIC_KEY, os.path.join(rundir, "keys", "wechatpay_pub.pem"))
            with open(os.path.join(rundir, "secrets", "v3.key"), "w") as k:
                k.write(V3_KEY + "\n")
            f.write(f'''[[wechat_v3]]
path = "{V3_PATH}"
mch_id = "{V3_MCH_ID}"
api_v3_key_file = "secrets/v3.key"
public_key_file = "keys/wechatpay_pub.pem"
public_key_id = "{V3_KEY_ID}"
# WeChat's window is 300 s; the bench signs its v3 set once per run (V3_CLOCK_SKEW_S in bench/run.py).
max_clock_skew_s = {V3_CLOCK_SKEW_S}
''')
        if alipay:
            os.makedirs(os.path.join(rundir, "keys"), exist_ok=True)
            shutil.copyfile(ALIPAY_PUBLIC_KEY, os.path.join(rundir, "keys", "alipay_pub.pem"))
            f.write(f'''[[alipay]]
path = "{ALIPAY_PATH}"
app_id = "{ALIPAY_APP_ID}"
alipay_public_key_file = "keys/alipay_pub.pem"
''')
        if jeepay:
            with open(os.path.join(rundir, "secrets", "jeepay.key"), "w") as k:
                k.write(JEEPAY_KEY + "\n")
            f.write(f'''[[jeepay]]
path = "{JEEPAY_PATH}"
mch_no = "{JEEPAY_MCH_NO}"
app_id = "{JEEPAY_APP_ID}"
key_file = "secrets/jeepay.key"
''')
        if store:  # a [store] table (bench/postgres.py), last so that it follows every other table
            f.write(store)
    return cfg


class Payhook:
    def __init__(self, binary, rundir, spool, threads, tables=(), store=None, env=None):
        self.rundir = rundir
        self.spool = spool
        os.makedirs(rundir, exist_ok=True)
        cfg = write_payhook_config(rundir, spool, threads, v3="v3" in tables, alipay="alipay" in tables,
                                   jeepay="jeepay" in tables, store=store)
        self.log_path = os.path.join(rundir, "payhook.log")
        self.logf = open(self.log_path, "w")
        # env: the variable [store] url_env names (the conninfo never goes into the config or a log)
        self.proc = subprocess.Popen([binary, "serve", "--config", cfg], stdout=subprocess.PIPE,
                                     stderr=self.logf, text=True, env=dict(os.environ, **(env or {})))
        ready = {}

        def reader():
            for line in self.proc.stdout:
                m = re.search(r"payhook listening on (\S+):(\d+) ", line)
                if m and "port" not in ready:
                    ready["port"] = int(m.group(2))
                self.logf.write("stdout: " + line)

        threading.Thread(target=reader, daemon=True).start()
        deadline = time.time() + 30
        while "port" not in ready:
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError(f"payhook did not start; see {shown(self.log_path)}")
            time.sleep(0.02)
        self.port = ready["port"]
        self.pids = [self.proc.pid]

    def metrics(self):
        out = {}
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return out
        for line in text.splitlines():
            m = re.match(r'payhook_requests_total\{.*outcome="(\w+)"\} (\d+)', line)
            if m:
                out[m.group(1)] = out.get(m.group(1), 0) + int(m.group(2))
            m = re.match(r"payhook_inflight_requests (\d+)", line)
            if m:
                out["_inflight"] = int(m.group(1))
        return out

    def settle(self):
        """Waits (at most 3 s) until the requests wrk left in flight are finished: nothing in
        flight but the scrape itself, and the counters unchanged over 100 ms (requests still
        queued in the listener are not in flight yet)."""
        last = None
        for _ in range(30):
            m = self.metrics()
            if m.get("_inflight", 0) <= 1 and m == last:
                return m
            last = m
            time.sleep(0.1)
        return last or {}

    def stop(self):
        """SIGTERM, as an operator would; True if payhook exited 0 in time, else self.stop_problem
        says what happened instead."""
        self.stop_problem = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.stop_problem = "payhook did not stop within 20 s of SIGTERM (killed)"
        if not self.logf.closed:
            self.logf.close()
        code = self.proc.returncode
        if code != 0 and not self.stop_problem:
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
            fatal = ""
            try:
                with open(self.log_path, errors="replace") as f:
                    fatal = next((l.strip() for l in f if re.search(r"fatal|crash|panic", l, re.I)), "")
            except OSError:
                pass
            self.stop_problem = f"payhook {how} on SIGTERM" + (f": {fatal[:160]}" if fatal else "")
        return code == 0


class Reference:
    """A reference server started as a child process on a free loopback port; `stop_signal` ends it."""

    stop_signal = signal.SIGTERM

    def start(self, argv, rundir, log_name, what):
        self.logf = open(os.path.join(rundir, log_name), "w")
        self.proc = subprocess.Popen(argv, stdout=self.logf, stderr=self.logf)
        deadline = time.time() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    raise RuntimeError(f"{what} did not start; see {shown(os.path.join(rundir, log_name))}")
                time.sleep(0.02)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.logf.closed:
            self.logf.close()
        return True


class Nginx(Reference):
    stop_signal = signal.SIGQUIT  # graceful: finish, then exit

    def __init__(self, rundir):
        self.prefix = rundir
        os.makedirs(rundir, exist_ok=True)
        self.port = free_port()
        with open(os.path.join(BENCH, "nginx.conf.in")) as f:
            conf = f.read().replace("@PREFIX@", rundir).replace("@PORT@", str(self.port))
        cfg = os.path.join(rundir, "nginx.conf")
        with open(cfg, "w") as f:
            f.write(conf)
        self.start(["nginx", "-p", rundir + "/", "-c", cfg, "-g", "daemon off;"], rundir, "nginx.stderr", "nginx")
        for _ in range(100):  # workers are forked just after the socket is bound
            kids = children_of(self.proc.pid)
            if len(kids) >= 2:
                break
            time.sleep(0.02)
        self.pids = [self.proc.pid] + kids


class Mhdmin(Reference):
    """libmicrohttpd answering success and doing nothing else (bench/tools/mhdmin.c), with payhook's
    listener flags and thread count: the ceiling libmicrohttpd itself sets, between nginx and payhook."""

    def __init__(self, binary, rundir, threads):
        os.makedirs(rundir, exist_ok=True)
        self.port = free_port()
        self.start([binary, str(self.port), str(threads)], rundir, "mhdmin.stderr", "mhdmin")
        self.pids = [self.proc.pid]


# ---------------------------------------------------------------------------------------------
# one measurement


def parse_wrk_result(path):
    threads, summary = [], {}
    with open(path) as f:
        for line in f:
            p = line.split()
            if not p:
                continue
            if p[0] == "thread":
                t = {"id": int(p[1])}
                for k, v in zip(p[2::2], p[3::2]):
                    t[k] = int(v) if re.fullmatch(r"-?\d+", v) else v
                threads.append(t)
            elif p[0] in ("summary", "errors", "latency_us"):
                summary[p[0]] = {k: float(v) for k, v in zip(p[1::2], p[2::2])}
    return threads, summary


def run_wrk(ctx, server, port, workload, conns, duration, rundir, max_lines, lines_path=None, wrk_threads=2):
    w = WORKLOADS[workload]
    T = min(wrk_threads, conns)  # two cores: more wrk threads only steal CPU from the server
    out = os.path.join(rundir, "wrk-result.txt")
    env = dict(os.environ, WORKLOAD=workload, LINES=lines_path or ctx["sets"][w["lines"]], WRK_THREADS=str(T),
               MAX_LINES=str(max_lines), DUP_SET=str(dup_set(ctx, workload)), EXPECT_BODY=w["expect"],
               EXPECT_STATUS=str(w.get("status", 200)), WECHAT_PATH="/notify/wechat", V3_PATH=V3_PATH,
               ALIPAY_PATH=ALIPAY_PATH, JEEPAY_PATH=JEEPAY_PATH, RESULT_OUT=out)
    cmd = ["wrk", f"-t{T}", f"-c{conns}", f"-d{duration}s", "--timeout", "10s",
           "-s", os.path.join(BENCH, "lua", "callbacks.lua"), f"http://127.0.0.1:{port}"]
    cpu0 = cpu_seconds(server.pids)
    with open(os.path.join(rundir, "wrk.stdout"), "w") as so:
        r = subprocess.run(cmd, env=env, stdout=so, stderr=subprocess.STDOUT, timeout=duration + 120)
    cpu1 = cpu_seconds(server.pids)
    if r.returncode != 0 or not os.path.exists(out):
        raise RuntimeError(f"wrk failed (exit {r.returncode}); see {shown(os.path.join(rundir, 'wrk.stdout'))}")
    threads, summary = parse_wrk_result(out)
    ok = sum(t["ok"] for t in threads)
    bad = sum(t["bad"] for t in threads)
    answered = ok + bad
    firsts = [t["first_us"] for t in threads if t["first_us"] > 0]
    lasts = [t["last_us"] for t in threads if t["last_us"] > 0]
    window = (max(lasts) - min(firsts)) / 1e6 if firsts and lasts else 0
    lat = summary.get("latency_us", {})
    errs = summary.get("errors", {})
    # A connection whose request is never answered stops counting in wrk's statistics: its wait
    # is in no percentile. So look for wrk threads that went silent well before the end while
    # still having requests out, and report them as stalls.
    stalls = []
    end = max(lasts) if lasts else 0
    for t in threads:
        gap = (end - t["last_us"]) / 1e6 if t["last_us"] else window
        waiting = t["sent"] - t["ok"] - t["bad"]
        if waiting > 0 and gap > max(0.5, duration / 4):
            stalls.append(f"wrk thread {t['id']}: {waiting} requests unanswered for the last {gap:.1f}s "
                          f"(stalled connections; wrk's percentiles leave them out)")
    return {
        "rps": answered / window if window > 0 else 0.0,
        "ok_rps": ok / window if window > 0 else 0.0,
        "wrk_rps": summary["summary"]["requests"] / (summary["summary"]["duration_us"] / 1e6),
        "p50_ms": lat.get("p50", 0) / 1000, "p90_ms": lat.get("p90", 0) / 1000,
        "p99_ms": lat.get("p99", 0) / 1000, "max_ms": lat.get("max", 0) / 1000,
        "answered": answered, "ok": ok, "bad": bad,
        "sent": sum(t["sent"] for t in threads),
        "wrapped": any(t["wrapped"] for t in threads),
        "socket_errors": int(errs.get("connect", 0) + errs.get("read", 0) + errs.get("write", 0)),
        "timeouts": int(errs.get("timeout", 0)),
        "first_bad": next((f"{t['badstatus']} {t['badbody']}" for t in threads if t["bad"]), None),
        "cpu_s": cpu1 - cpu0,
        "cpu_per_1k": (cpu1 - cpu0) / answered * 1000 if answered else None,
        "window_s": window, "wrk_result": out, "stalls": stalls,
    }


def dup_set(ctx, workload):
    """Distinct events a duplicates workload cycles over."""
    return ctx["args"].v3_dup_set if workload == "v3dup" else ctx["args"].dup_set


def seed_duplicates(ctx, port, workload):
    """Stores the duplicate set before the clock starts, one request at a time, so the dup
    workload measures answering duplicates, not the first DUP_SET durable writes (which on a slow
    disk would take a good part of a short run)."""
    import http.client
    w = WORKLOADS[workload]
    n = dup_set(ctx, workload)
    with open(ctx["sets"][w["lines"]], encoding="utf-8") as f:
        lines = [next(f).rstrip("\n") for _ in range(n)]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for line in lines:
        if w["kind"] == "wechatv3":
            ts, nonce, serial, sig, body = line.split("\t", 4)
            conn.request("POST", V3_PATH, body=body.encode("utf-8"), headers={
                "Content-Type": "application/json", "Wechatpay-Timestamp": ts, "Wechatpay-Nonce": nonce,
                "Wechatpay-Serial": serial, "Wechatpay-Signature": sig,
                "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048"})
        elif w["kind"] in ("alipay", "jeepay"):
            conn.request("POST", ALIPAY_PATH if w["kind"] == "alipay" else JEEPAY_PATH, body=line.encode("ascii"),
                         headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
        else:
            conn.request("GET", line)
        r = conn.getresponse()
        body = r.read()
        if r.status != w.get("status", 200) or body != w["expect"].encode():
            raise RuntimeError(f"seeding the duplicate set: {r.status} {body[:60]!r}")
    conn.close()


def check_spool(ctx, spool, rundir, workload, wrk_result=None, status=None):
    w = WORKLOADS[workload]
    out = os.path.join(rundir, "check.json")
    cmd = [sys.executable, os.path.join(BENCH, "check_spool.py"), spool, "--lines", ctx["sets"][w["lines"]],
           "--kind", w["kind"], "--workload", workload, "--json", out]
    cmd += ["--wrk", wrk_result] if wrk_result else ["--ratedrv", status]
    if w["kind"] == "wechatv3":
        cmd += ["--tenant", V3_MCH_ID, "--v3-key", V3_KEY]
    elif w["kind"] in ("alipay", "jeepay"):
        cmd += ["--tenant", ALIPAY_APP_ID if w["kind"] == "alipay" else JEEPAY_MCH_NO]
    if workload in DUP_WORKLOADS:
        cmd += ["--seeded", str(dup_set(ctx, workload))]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    with open(os.path.join(rundir, "check.txt"), "w") as f:
        f.write(r.stdout + r.stderr)
    try:
        with open(out) as f:
            res = json.load(f)
    except (OSError, ValueError):
        res = {"problems": [f"check_spool.py crashed: {r.stderr.strip()[-300:]}"]}
    res["ok"] = r.returncode == 0 and not res.get("problems")
    res["line"] = (r.stdout.strip().splitlines() or ["?"])[-1]
    return res


def measure(ctx, rep, conns, workload, server_kind, spool_kind):
    """One run: a fresh server, one wrk run, accounting, spool check. Returns a record."""
    args = ctx["args"]
    run_id = f"r{rep}-c{conns}-{workload}-{server_kind}" + (f"-{spool_kind}" if spool_kind else "")
    rundir = os.path.join(ctx["rundir"], run_id)
    os.makedirs(rundir, exist_ok=True)
    rec = {"id": run_id, "rep": rep, "conns": conns, "workload": workload, "server": server_kind,
           "spool": spool_kind, "failed": None, "notes": []}
    server = None
    try:
        v3 = WORKLOADS[workload]["kind"] == "wechatv3"
        lines = ctx["v3_lines"] if v3 else ctx["lines"]
        if v3 and not v3_set_fresh(ctx["v3_signed_at"], args.duration, margin_s=30):
            raise RuntimeError(f"the v3 request set was signed {time.time() - ctx['v3_signed_at']:.0f} s ago, too "
                               f"close to max_clock_skew_s = {V3_CLOCK_SKEW_S}: start the benchmark again")
        if server_kind == "nginx":
            server = Nginx(rundir)
            max_lines = min(args.nginx_lines, lines)
        elif server_kind == "mhdmin":
            server = Mhdmin(ctx["tools"]["mhdmin"], rundir, listener_threads(args))
            max_lines = min(args.nginx_lines, lines)
        else:
            spool = os.path.join(ctx["spool_roots"][spool_kind], run_id)
            rec["spool_dir"] = spool
            server = Payhook(ctx["binary"], rundir, spool, args.payhook_threads, tables=ctx["tables"])
            max_lines = lines
        if workload in DUP_WORKLOADS:
            seed_duplicates(ctx, server.port, workload)
        rec.update(run_wrk(ctx, server, server.port, workload, conns, args.duration, rundir, max_lines))
        rec["rss_mib"] = peak_rss_mib(server.pids)
        if server_kind == "payhook":
            rec["metrics"] = server.settle()
            if not server.stop():
                rec["failed"] = server.stop_problem
            chk = check_spool(ctx, rec["spool_dir"], rundir, workload, wrk_result=rec["wrk_result"])
            rec["check"] = chk
            if rec["wrapped"]:
                rec["failed"] = ("request set exhausted (raise --v3-lines-per-second)" if v3 else
                                 "request set exhausted (raise --lines-per-second)")
            elif not chk["ok"]:
                rec["failed"] = "spool check: " + "; ".join(chk.get("problems", [])[:3])
            elif rec["metrics"].get("accepted") is not None and rec["metrics"]["accepted"] != chk.get("events"):
                rec["notes"].append(f"metrics accepted={rec['metrics'].get('accepted')} vs {chk.get('events')} files")
            if spool_kind == "tmpfs":  # tmpfs deletes cost nothing; keep RAM free
                shutil.rmtree(rec["spool_dir"], ignore_errors=True)
        else:
            server.stop()
            if rec["bad"]:
                rec["failed"] = f"{server_kind} gave {rec['bad']} unexpected answers ({rec['first_bad']})"
        if rec.get("bad") and not rec["failed"]:
            rec["failed"] = f"{rec['bad']} answers were not the success answer (first: {rec['first_bad']})"
        rec["notes"] += rec.get("stalls", [])
        if rec.get("socket_errors"):
            rec["notes"].append(f"{rec['socket_errors']} socket errors")
        if rec.get("timeouts"):
            rec["notes"].append(f"{rec['timeouts']} wrk timeouts (>10 s)")
    except Exception as e:  # noqa: BLE001 - one broken run must not lose the others' results
        rec["failed"] = f"{type(e).__name__}: {e}"
    finally:
        if server:  # also on an interrupt: no server may outlive its run
            server.stop()
    return rec


def measure_rate(ctx, rep, server_kind):
    """One fixed-rate run of unique unified events against a fresh server (payhook: disk spool)."""
    args = ctx["args"]
    run_id = f"rate{rep}-{server_kind}"
    rundir = os.path.join(ctx["rundir"], run_id)
    os.makedirs(rundir, exist_ok=True)
    rec = {"id": run_id, "rep": rep, "server": server_kind, "failed": None, "notes": []}
    server = None
    try:
        if server_kind == "nginx":
            server = Nginx(rundir)
        else:
            spool = os.path.join(ctx["spool_roots"]["disk"], run_id)
            server = Payhook(ctx["binary"], rundir, spool, args.payhook_threads, tables=ctx["tables"])
        out, status = os.path.join(rundir, "ratedrv.json"), os.path.join(rundir, "ratedrv.status")
        cmd = [ctx["tools"]["ratedrv"], "--port", str(server.port), "--lines", ctx["sets"]["unified"],
               "--rate", str(args.rate), "--duration", str(args.rate_duration), "--conns", str(args.rate_conns),
               "--expect", "success", "--drain", "10", "--out", out, "--status", status]
        cpu0, steal0 = cpu_seconds(server.pids), steal_seconds()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.rate_duration + 60)
        cpu1, rec["steal_ms"] = cpu_seconds(server.pids), steal_ms_since(steal0)
        if r.returncode != 0:
            raise RuntimeError(f"ratedrv failed: {r.stderr.strip()[-300:]}")
        with open(out) as f:
            res = json.load(f)
        rec.update(res)
        rec["cpu_per_1k"] = (cpu1 - cpu0) / res["ok"] * 1000 if res["ok"] else None
        rec["rss_mib"] = peak_rss_mib(server.pids)
        if server_kind == "payhook":
            if not server.stop():
                rec["failed"] = server.stop_problem
            chk = check_spool(ctx, spool, rundir, "unique", status=status)
            rec["check"] = chk
            if not chk["ok"]:
                rec["failed"] = "spool check: " + "; ".join(chk.get("problems", [])[:3])
        else:
            server.stop()
        if res["bad"] and not rec["failed"]:
            rec["failed"] = f"{res['bad']} answers were not the success answer"
        if res["failed"] or res["unanswered"]:
            rec["notes"].append(f"{res['failed']} dropped, {res['unanswered']} unanswered (count as infinite latency)")
    except Exception as e:  # noqa: BLE001
        rec["failed"] = f"{type(e).__name__}: {e}"
    finally:
        if server:
            server.stop()
    return rec


def measure_floor(ctx, rep, burn=None):
    """The spool's flushes alone at the fixed rate (bench/tools/flushfloor.c), on the disk payhook's rate runs
    use; with `burn` (cores, possibly 0) of CPU work beside them, the "floor+cpu" row, else the bare one."""
    args = ctx["args"]
    loaded = burn is not None
    run_id = f"rate{rep}-floor" + ("-cpu" if loaded else "")
    rec = {"id": run_id, "rep": rep, "server": "floor+cpu" if loaded else "floor", "failed": None, "notes": [],
           "burn": burn}
    try:
        cmd = [ctx["tools"]["flushfloor"], os.path.join(ctx["spool_roots"]["disk"], run_id), str(args.rate),
               str(args.rate_duration), str(args.rate_conns), f"{burn or 0:.3f}"]
        before, steal0 = resource.getrusage(resource.RUSAGE_CHILDREN), steal_seconds()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.rate_duration + 60)
        after, rec["steal_ms"] = resource.getrusage(resource.RUSAGE_CHILDREN), steal_ms_since(steal0)
        if r.returncode != 0:
            raise RuntimeError(f"flushfloor failed: {r.stderr.strip()[-300:]}")
        rec.update(key_values(r.stdout))
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        rec["cpu_per_1k"] = cpu / (args.rate * args.rate_duration) * 1000
    except Exception as e:  # noqa: BLE001
        rec["failed"] = f"{type(e).__name__}: {e}"
    return rec


# ---------------------------------------------------------------------------------------------
# reporting


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=0, unit=""):
    if v is None:
        return "—"
    if isinstance(v, float) and v == float("inf"):
        return "∞"
    if digits == 0:
        return f"{v:,.0f}{unit}"
    return f"{v:,.{digits}f}{unit}"


def ratio(a, b):
    return a / b if a is not None and b else None


def cell(records, **key):
    rs = [r for r in records if all(r.get(k) == v for k, v in key.items())]
    good = [r for r in rs if not r["failed"]]
    if not good:
        return {"n": 0, "runs": len(rs), "failed": [r for r in rs if r["failed"]]}
    return {
        "n": len(good), "runs": len(rs), "failed": [r for r in rs if r["failed"]],
        "rps": med([r["rps"] for r in good]),
        "rps_min": min(r["rps"] for r in good), "rps_max": max(r["rps"] for r in good),
        "p50": med([r["p50_ms"] for r in good]), "p99": med([r["p99_ms"] for r in good]),
        "cpu": med([r["cpu_per_1k"] for r in good]),
        "rss": max(r["rss_mib"] for r in good),
        "exact": all(r.get("check", {}).get("exact", True) for r in good),
        "stalled": sum(1 for r in good if r.get("stalls")),
        "events": med([r.get("check", {}).get("events") for r in good]),
        "notes": sorted({n for r in rs for n in r["notes"]}),
    }


def check_text(c):
    if c["runs"] == 0:
        return "—"
    bad = len(c["failed"])
    if bad:
        return f"**FAIL** ({bad}/{c['runs']} runs)"
    text = f"ok {c['n']}/{c['runs']}" + ("" if c["exact"] else " (count)")
    if c.get("stalled"):
        text += f", **{c['stalled']} stalled**"
    return text


def make_report(ctx, records, rate_records, started, ended):
    args = ctx["args"]
    L = []
    L.append("# payhook benchmark results")
    L.append("")
    L.append(f"- when: {started:%Y-%m-%d %H:%M} to {ended:%H:%M} UTC ({'quick' if args.quick else 'full'} mode)")
    L.append(f"- payhook: `{shown(ctx['binary'])}` ({ctx['version']}), built from {ctx['head']}")
    L.append(f"- machine: {os.cpu_count()} CPUs, {platform.release()}, load average at start {ctx['load0']}, "
             f"at end {' '.join(open('/proc/loadavg').read().split()[:3])}")
    L.append(f"- disk spool: {shown(ctx['spool_roots']['disk'])} on {ctx['disk_dev']}")
    L.append(f"- tmpfs spool: {ctx['tmpfs_note']}")
    L.append(f"- load: wrk 4.1 (`-t min(2,C) -cC -d{args.duration}s`, bench/lua/callbacks.lua), "
             f"{args.reps} repetitions interleaved, a fresh server per run; payhook {threads_shown(args)}; "
             f"nginx 1.22 `worker_processes 2`, `return 200` with the same answer (v3: `return 204`, no body)")
    if ctx.get("v3"):
        L.append(f"- WeChat Pay v3 requests: signed once for the run by bench/gen_requests.py (RSA-2048 PKCS#1 v1.5 "
                 f"SHA-256 over the raw body, resource AES-256-GCM), Wechatpay-Timestamp = the time of signing, "
                 f"{fmt(ctx['v3_age_at_start'])} s before the measurements began; the bench's `[[wechat_v3]]` tenant has "
                 f"`max_clock_skew_s = {V3_CLOCK_SKEW_S}` (WeChat's window is 300 s) so that one set lasts the run; "
                 f"v3dup cycles over {args.v3_dup_set} notification(s), {args.v3_lines_per_second:,} v3 lines per "
                 f"second of a run")
    if ctx.get("alipay"):
        L.append(f"- Alipay requests: signed by bench/gen_requests.py with the test-only key of Fixtures/alipay "
                 f"(RSA2: RSA-2048 PKCS#1 v1.5 SHA-256 over the sorted parameters), the bench's `[[alipay]]` tenant "
                 f"holding its public half; a fixed notify_time inside the bench's replay window, so the set is "
                 f"cached like the unified one")
    fc = ctx.get("fileceil") or {}
    L.append(f"- durable-file ceiling of the disk spool's file system (bench/tools/fileceil.c, 1 KiB files, "
             f"{args.fileceil_seconds}s each): one at a time {fmt(fc.get('single'))} files/s, batched "
             f"(B=64, 2 threads) {fmt(fc.get('batched'))} files/s (quoted for a quiet machine: ~{QUOTED_SINGLE_CEILING:,} "
             f"and ~{QUOTED_BATCHED_CEILING:,}); 32 concurrent writers, each fsyncing its own file: "
             f"{fmt(fc.get('concurrent'))} files/s")
    L.append(f"- fsync latency on that file system, same probe: one writer alone, file "
             f"{fmt(fc.get('single_file_fsync_p50_ms'), 2)} / {fmt(fc.get('single_file_fsync_p99_ms'), 2)} ms (p50 / p99), "
             f"directory {fmt(fc.get('single_dir_fsync_p50_ms'), 2)} / {fmt(fc.get('single_dir_fsync_p99_ms'), 2)} ms; "
             f"32 concurrent writers, file {fmt(fc.get('concurrent_fsync_p50_ms'), 2)} / "
             f"{fmt(fc.get('concurrent_fsync_p99_ms'), 2)} ms. A store waits for three flushes one after the other "
             f"(its file, then new/, then ids/), so these bound its latency from below")
    fl = ctx.get("flushloop") or {}
    if fl.get("closed_rate"):
        L.append(f"- the spool's three flushes alone in a closed loop (bench/tools/flushfloor.c, {CLOSED_LOOP_WORKERS} events "
                 f"in flight, each worker starting its next event once the last one's batch is durable, no HTTP): "
                 f"{fmt(fl['closed_rate'])} events/s, p50 / p99 {fmt(fl.get('p50_ms'), 2)} / {fmt(fl.get('p99_ms'), 2)} ms: "
                 f"what any store that keeps the spool's order of flushes reaches here with as many callbacks "
                 f"waiting as the closed-loop runs have")
    fp = ctx.get("flushpipe") or {}
    if fp.get("closed_rate"):
        L.append(f"- the same with the two directory flushes pipelined (`flushfloor -p`: the next batch's fsync of new/ "
                 f"while the last one's fsync of ids/ runs, the most overlap that order allows; the spool does not do "
                 f"it): {fmt(fp['closed_rate'])} events/s, p50 / p99 {fmt(fp.get('p50_ms'), 2)} / "
                 f"{fmt(fp.get('p99_ms'), 2)} ms")
    L.append("")

    # ---- the main table
    L.append("## Closed loop (wrk): medians of the runs")
    L.append("")
    L.append("req/s = answers per second over the load window (median, with min–max); p50/p99 = wrk's latency "
             "percentiles; CPU = CPU seconds (user+sys, all the server's processes) per 1,000 answers; RSS = peak "
             "resident set (VmHWM; nginx: master + workers summed), max over the runs; ratio = payhook / nginx "
             "for the same workload and connections (higher is better for req/s, lower for the others). check = "
             "spool verified after every payhook run: ok n/m, \"(count)\" where the check was by count (see README).")
    L.append("")
    L.append("| conns | workload | spool | payhook req/s | nginx req/s | ratio | payhook p50 / p99 ms | nginx p50 / p99 ms "
             "| ratio p99 | payhook CPU s/1k | nginx CPU s/1k | ratio | payhook RSS MiB | nginx RSS MiB | ratio | check |")
    L.append("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for c in args.connections:
        for w in args.workloads:
            n = cell(records, conns=c, workload=w, server="nginx")
            for s in args.spools:
                p = cell(records, conns=c, workload=w, server="payhook", spool=s)
                if p["runs"] == 0 and n["runs"] == 0:
                    continue
                prange = f" ({fmt(p.get('rps_min'))}–{fmt(p.get('rps_max'))})" if p["n"] > 1 else ""
                nstall = f" ({n['stalled']} stalled)" if n.get("stalled") else ""
                L.append(f"| {c} | {w} | {s} | {fmt(p.get('rps'))}{prange} | {fmt(n.get('rps'))}{nstall} | "
                         f"{fmt(ratio(p.get('rps'), n.get('rps')), 3)} | "
                         f"{fmt(p.get('p50'), 2)} / {fmt(p.get('p99'), 2)} | {fmt(n.get('p50'), 2)} / {fmt(n.get('p99'), 2)} | "
                         f"{fmt(ratio(p.get('p99'), n.get('p99')), 1)} | "
                         f"{fmt(p.get('cpu'), 3)} | {fmt(n.get('cpu'), 3)} | {fmt(ratio(p.get('cpu'), n.get('cpu')), 1)} | "
                         f"{fmt(p.get('rss'), 1)} | {fmt(n.get('rss'), 1)} | {fmt(ratio(p.get('rss'), n.get('rss')), 2)} | "
                         f"{check_text(p)} |")
    L.append("")

    # ---- durability cost
    if "disk" in args.spools and "tmpfs" in args.spools:
        L.append("## Cost of durability: the same payhook on disk and on tmpfs (fsync is free on tmpfs)")
        L.append("")
        L.append("| conns | workload | tmpfs req/s | disk req/s | disk / tmpfs | tmpfs p99 ms | disk p99 ms |")
        L.append("|---:|---|---:|---:|---:|---:|---:|")
        for c in args.connections:
            for w in args.workloads:
                t = cell(records, conns=c, workload=w, server="payhook", spool="tmpfs")
                d = cell(records, conns=c, workload=w, server="payhook", spool="disk")
                if t["runs"] or d["runs"]:
                    L.append(f"| {c} | {w} | {fmt(t.get('rps'))} | {fmt(d.get('rps'))} | "
                             f"{fmt(ratio(d.get('rps'), t.get('rps')), 3)} | {fmt(t.get('p99'), 2)} | {fmt(d.get('p99'), 2)} |")
        L.append("")

    # ---- one workload against another: v3 against v2, Alipay and Jeepay against unified
    def paired(key, c, s, a_workload, b_workload):
        """The median over the repetitions of a_workload's value / b_workload's (same connections and spool)."""
        values = []
        for rep in range(1, args.reps + 1):
            a = [r for r in records if r["rep"] == rep and r["conns"] == c and r["workload"] == a_workload
                 and r["server"] == "payhook" and r["spool"] == s and not r["failed"]]
            b = [r for r in records if r["rep"] == rep and r["conns"] == c and r["workload"] == b_workload
                 and r["server"] == "payhook" and r["spool"] == s and not r["failed"]]
            if a and b and a[0].get(key) and b[0].get(key):
                values.append(a[0][key] / b[0][key])
        return med(values)

    for title, against, family in COMPARISONS:
        pairs = [(x, ref) for x, ref in against.items() if x in args.workloads and ref in args.workloads]
        if not pairs:
            continue
        L.append(f"## {title}, from this run")
        L.append("")
        if family == "v3":
            L.append("v3unique (v3 notifications, each a new event: RSA-2048 verify, AES-256-GCM decrypt, JSON, one "
                     "durable event) against wechat (WeChat Pay v2 XML notifications, MD5, each a new event); v3dup "
                     f"({args.v3_dup_set} v3 notification(s) answered over and over: the verify and the decrypt run for "
                     f"every request, then the ledger says duplicate) against dup ({args.dup_set} unified GET callbacks "
                     "over and over: there is no v2 duplicates workload).")
        else:
            L.append("alipayunique (Alipay trade notifications, form POSTs of about 1 KB, each a new event: form "
                     "decoding, the sorted signed string, one RSA-2048 SHA-256 verify, one durable event) against "
                     f"unique (unified GET callbacks, SHA-1, each a new event); alipaydup ({args.dup_set} Alipay "
                     "notifications over and over, the same bytes each time, so after its second delivery each is "
                     "answered from its kept verdict without the RSA verify, as a unified retry is) and jeepaydup "
                     f"({args.dup_set} Jeepay form notifications, MD5, the same way) against dup "
                     f"({args.dup_set} unified callbacks over and over).")
        L.append("req/s and CPU s/1k as in the first table (CPU from /proc/PID/stat, user + system, per 1,000 "
                 "answers), medians of the runs; ratio = workload / reference of those medians, and, in brackets, "
                 "the median of the per-repetition ratios (the two workloads of one repetition ran minutes apart at "
                 "most, so they share more of the machine's noise). For req/s higher is better; for CPU lower.")
        L.append("")
        L.append("| conns | spool | workload | reference | runs | req/s | reference req/s | ratio | "
                 "CPU s/1k | reference CPU s/1k | ratio |")
        L.append("|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for c in args.connections:
            for s in args.spools:
                for x, ref in pairs:
                    a = cell(records, conns=c, workload=x, server="payhook", spool=s)
                    b = cell(records, conns=c, workload=ref, server="payhook", spool=s)
                    if a["runs"] == 0 and b["runs"] == 0:
                        continue
                    pr, pc = paired("rps", c, s, x, ref), paired("cpu_per_1k", c, s, x, ref)
                    L.append(f"| {c} | {s} | {x} | {ref} | {a['n']} / {b['n']} | {fmt(a.get('rps'))} | "
                             f"{fmt(b.get('rps'))} | {fmt(ratio(a.get('rps'), b.get('rps')), 3)}"
                             f"{f' ({fmt(pr, 3)})' if pr is not None else ''} | {fmt(a.get('cpu'), 3)} | "
                             f"{fmt(b.get('cpu'), 3)} | {fmt(ratio(a.get('cpu'), b.get('cpu')), 2)}"
                             f"{f' ({fmt(pc, 2)})' if pc is not None else ''} |")
        L.append("")

    # ---- libmicrohttpd alone
    if any(r["server"] == "mhdmin" for r in records):
        L.append("## libmicrohttpd alone: what the HTTP library costs before payhook does anything")
        L.append("")
        L.append("The duplicates workload against bench/tools/mhdmin.c, libmicrohttpd answering `success` with "
                 f"payhook's listener flags and `threads = {listener_threads(args)}` (payhook's), and nothing else. Between it and "
                 "payhook lies payhook's own work per request: for these retries, which are the same bytes each "
                 "time, the kept verdict's lookup, the ledger `stat`, metrics and the log check (docs/architecture.md, "
                 "\"Retries that are the same bytes\"); between it and nginx, libmicrohttpd's.")
        L.append("")
        L.append("| conns | nginx req/s | libmicrohttpd alone req/s | payhook req/s | alone / nginx | "
                 "payhook / alone | CPU s/1k nginx | alone | payhook |")
        L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for c in args.connections:
            n = cell(records, conns=c, workload="dup", server="nginx")
            a = cell(records, conns=c, workload="dup", server="mhdmin")
            p = cell(records, conns=c, workload="dup", server="payhook", spool="disk")
            if p["runs"] == 0:  # duplicates write nothing, so a tmpfs-only run says the same
                p = cell(records, conns=c, workload="dup", server="payhook", spool="tmpfs")
            if a["runs"] == 0:
                continue
            L.append(f"| {c} | {fmt(n.get('rps'))} | {fmt(a.get('rps'))} | {fmt(p.get('rps'))} | "
                     f"{fmt(ratio(a.get('rps'), n.get('rps')), 3)} | {fmt(ratio(p.get('rps'), a.get('rps')), 3)} | "
                     f"{fmt(n.get('cpu'), 3)} | {fmt(a.get('cpu'), 3)} | {fmt(p.get('cpu'), 3)} |")
        L.append("")

    # ---- fixed rate
    L.append(f"## Fixed rate: {args.rate:,} unique events/s offered, open loop (bench/tools/ratedrv.c)")
    L.append("")
    L.append(f"{args.rate_duration}s per run, up to {args.rate_conns} keep-alive connections; latency from each request's "
             "scheduled send time (no coordinated omission); a request not answered success counts as infinitely "
             "slow. Payhook's spool on disk; medians of the runs, max = worst run; driver late = how far the "
             "driver's own timer ran behind the schedule (must stay far below the latencies); steal = CPU time the "
             "host took from this machine during the run (/proc/stat, both CPUs, median).")
    L.append("")
    L.append("The flushes rows make no HTTP request: bench/tools/flushfloor.c offers the same events at the same rate "
             "to the spool's steps alone (an unnamed 1 KiB file written and fsynced by one of "
             f"{args.rate_conns} workers, one committer linking each batch into new/, fsync, into ids/, fsync), on "
             "the same disk, latency from each event's due time. \"+ payhook's other CPU\" burns beside them the CPU "
             "payhook spent in that repetition beyond what the flushes alone cost (median shown; its CPU column "
             "includes the burn).")
    L.append("")
    L.append("| server | runs | achieved/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | driver late max ms | CPU s/1k | RSS MiB | steal ms | check |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    rate_cells = {}
    for sk in ("payhook", "nginx", "floor", "floor+cpu"):
        rs = [r for r in rate_records if r["server"] == sk]
        good = [r for r in rs if not r["failed"]]
        inf = float("inf")

        def m(key):
            return med([(inf if r.get(key) is None else r[key]) for r in good]) if good else None
        cellr = {"p99": m("p99_ms"), "n": len(good), "runs": len(rs), "failed": [r for r in rs if r["failed"]],
                 "burn": m("burn")}
        rate_cells[sk] = cellr
        if sk.startswith("floor") and not rs:
            continue
        chk = "—" if sk != "payhook" else check_text({"runs": len(rs), "n": len(good), "failed": cellr["failed"],
                                                      "exact": True})
        name = {"floor": "the flushes alone", "floor+cpu": f"the flushes + payhook's other CPU ({fmt(m('burn'), 2)} cores)"}
        rss = [r["rss_mib"] for r in good if r.get("rss_mib")]
        L.append(f"| {name.get(sk, sk)} | {len(good)}/{len(rs)} | {fmt(m('achieved_rate'))} | {fmt(m('p50_ms'), 2)} | "
                 f"{fmt(m('p90_ms'), 2)} | {fmt(m('p99_ms'), 2)} | {fmt(m('p999_ms'), 2)} | "
                 f"{fmt(max((inf if r.get('max_ms') is None else r['max_ms']) for r in good) if good else None, 1)} | "
                 f"{fmt(max(r['driver_max_lag_ms'] for r in good) if good else None, 2)} | {fmt(m('cpu_per_1k'), 3)} | "
                 f"{fmt(max(rss) if rss else None, 1)} | {fmt(m('steal_ms'))} | {chk} |")
    L.append("")

    # ---- targets
    tc = 64 if 64 in args.connections else max(args.connections)
    L.append(f"## Targets (closed-loop ones at {tc} connections, spool on disk, ratios from this run)")
    L.append("")
    L.append("| target | measured | verdict |")
    L.append("|---|---:|---|")
    verdicts = []

    def target(name, value, ok, shown):
        v = "—" if value is None else ("PASS" if ok else "FAIL")
        verdicts.append(v)
        L.append(f"| {name} | {shown} | {v} |")

    # Each row from this run alone: a ratio against a reference measured in the same run, so that the shared
    # machine's noise moves both sides (bench/README.md, "Targets").
    dp = cell(records, conns=tc, workload="dup", server="payhook", spool="disk")
    dn = cell(records, conns=tc, workload="dup", server="nginx")
    dm = cell(records, conns=tc, workload="dup", server="mhdmin")
    up = cell(records, conns=tc, workload="unique", server="payhook", spool="disk")
    u = up.get("rps")
    p99 = rate_cells["payhook"]["p99"]
    floor_lines = []
    rss = [r["rss_mib"] for r in records + rate_records if r["server"] == "payhook" and r.get("rss_mib")]
    peak = max(rss) if rss else None

    r = ratio(dp.get("rps"), dn.get("rps"))
    target("duplicates / nginx ≥ 0.5×", r, r is not None and r >= 0.5,
           f"{fmt(dp.get('rps'))} / {fmt(dn.get('rps'))} = {fmt(r, 3)}×")
    r = ratio(dp.get("cpu"), dm.get("cpu"))
    target("payhook CPU per duplicate / libmicrohttpd alone ≤ 2×", r, r is not None and r <= 2,
           f"{fmt(dp.get('cpu'), 3)} / {fmt(dm.get('cpu'), 3)} ms = {fmt(r, 2)}×")
    r = ratio(u, fc.get("concurrent"))
    target("unique durable events / the 32-writer fsync probe ≥ 0.7×", r, r is not None and r >= 0.7,
           f"{fmt(u)} / {fmt(fc.get('concurrent'))} = {fmt(r, 3)}×")
    fl = ctx.get("flushloop") or {}
    if fl.get("closed_rate") and fc.get("concurrent"):
        floor_lines.append(f"- The spool's three flushes alone, closed loop, {CLOSED_LOOP_WORKERS} in flight (bench/tools/flushfloor.c, "
                           f"right after the probe): {fmt(fl['closed_rate'])} events/s = "
                           f"{fmt(ratio(fl['closed_rate'], fc['concurrent']), 3)}× the 32-writer probe; payhook's unique "
                           f"events are {fmt(ratio(u, fl['closed_rate']), 3)}× of that.")
    fp = ctx.get("flushpipe") or {}
    if fp.get("closed_rate") and fc.get("concurrent"):
        floor_lines.append(f"- The same flushes with the two directory fsyncs pipelined (`flushfloor -p`): "
                           f"{fmt(fp['closed_rate'])} events/s = {fmt(ratio(fp['closed_rate'], fc['concurrent']), 3)}× "
                           f"the probe.")
    # A store waits for three flushes in a row at least (its file, new/, ids/), so three of the probe's lone
    # fsyncs are its floor: the target is that nothing but the disk adds to the tail.
    floor = fc.get("single_file_fsync_p99_ms")
    r = ratio(p99, floor)
    target(f"p99 at {args.rate:,} unique events/s offered (disk) ≤ 3× the probe's fsync p99 (one writer alone)", r,
           r is not None and r <= 3, f"{fmt(p99, 2)} / {fmt(floor, 2)} ms = {fmt(r, 1)}×")
    bare, loaded = rate_cells["floor"], rate_cells["floor+cpu"]
    if bare["n"]:
        r = ratio(bare["p99"], floor)
        floor_lines.append(f"- The same flushes at the same rate with nothing else (fixed-rate table): p99 {fmt(bare['p99'], 2)} ms "
                           f"= {fmt(r, 1)}× the probe's lone fsync p99, so the p99 row's bound is "
                           f"{'within' if r is not None and r <= 3 else 'beyond'} what this disk gives the flushes alone"
                           + (f"; with payhook's other CPU ({fmt(loaded['burn'], 2)} cores) burnt beside them: p99 "
                              f"{fmt(loaded['p99'], 2)} ms, against payhook's {fmt(p99, 2)} ms." if loaded["n"] else "."))
    target("peak RSS ≤ 64 MiB (max over every payhook run)", peak, peak is not None and peak <= 64,
           f"{fmt(peak, 1)} MiB")
    L.append("")
    if floor_lines:
        L.extend(floor_lines)
        L.append("")
    L.append("Earlier targets, absolute or against quoted figures, kept for comparison with older runs:")
    L.append("")
    L.append("| target | measured | verdict |")
    L.append("|---|---:|---|")
    target("unique durable events ≥ 10,000/s", u, u is not None and u >= 10000, f"{fmt(u)}/s")
    target(f"unique ≥ 7× Flask/gunicorn (~{QUOTED_FLASK_UNIQUE:,}/s, quoted, not measured here)", u,
           u is not None and u >= 7 * QUOTED_FLASK_UNIQUE, f"{fmt(ratio(u, QUOTED_FLASK_UNIQUE), 2)}×")
    if fc.get("batched"):
        target("unique ≥ 0.7× batched file ceiling measured in this run (fileceil)", u,
               u is not None and u >= 0.7 * fc["batched"], f"{fmt(ratio(u, fc['batched']), 3)}× of {fmt(fc['batched'])}/s")
    target(f"p99 ≤ 10 ms at {args.rate:,} unique events/s offered", p99, p99 is not None and p99 <= 10,
           f"{fmt(p99, 2)} ms")
    L.append("")

    failed = [r for r in records + rate_records if r["failed"]]
    L.append("## Runs")
    L.append("")
    total = len(records) + len(rate_records)
    L.append(f"{total} runs, {len(failed)} failed, {ctx['skipped']} skipped for the time limit. "
             f"Per-run data: {shown(ctx['rundir'])}/runs.json (not committed).")
    for r in failed:
        L.append(f"- **FAILED** {r['id']}: {r['failed']}")
    notes = sorted({f"{r['id']}: {n}" for r in records + rate_records for n in r["notes"]})
    for n in notes[:30]:
        L.append(f"- note {n}")
    L.append("")
    L.append("A stalled run (check column) had wrk connections left without an answer for a large part of "
             "the run; wrk's percentiles leave such requests out, so its p99 understates them.")
    L.append("")
    L.append("Caveats: wrk and the server share the machine's cores, so compare ratios within one run, not "
             "absolute numbers across runs; other jobs on a shared machine add noise (see the load average "
             "above). Disk spools are deleted only after all measurements (ext4 here slows file creation "
             "for minutes after mass deletes).")
    return "\n".join(L) + "\n", failed, verdicts


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 64 connections, 2 s runs (≈3-4 min)")
    ap.add_argument("--binary", help="payhook to measure (default: make release and use .build/dist/payhook)")
    ap.add_argument("--no-build", action="store_true", help="use .build/dist/payhook as it is")
    ap.add_argument("--no-install", action="store_true", help="never apt-get install missing tools")
    ap.add_argument("--workdir", default=os.path.join(BENCH, ".data"),
                    help="request sets, tools, run logs and the disk spools (default bench/.data)")
    ap.add_argument("--connections", help="comma-separated (full: 1,16,64,256; quick: 64)")
    ap.add_argument("--workloads", default="unique,dup,wechat,v3unique,v3dup,alipayunique,alipaydup,jeepaydup,"
                                          "pgunique,pgdup,pgtwo",
                    help="comma-separated; the postgres ones (bench/postgres.py): pgbench (the two pgbench references "
                         "alone), pgunique, pgdup, pgtwo (each brings the pgbench reference it is compared with)")
    ap.add_argument("--spools", default="disk,tmpfs")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=int, help="seconds per wrk run (full 4, quick 2)")
    ap.add_argument("--dup-set", type=int, default=100, help="distinct events the dup workload cycles over")
    ap.add_argument("--v3-dup-set", type=int, default=1,
                    help="distinct v3 notifications the v3dup workload cycles over (default 1: one notification)")
    ap.add_argument("--payhook-threads", type=int,
                    help="listener threads of the payhook on the spool, and of libmicrohttpd alone (default: payhook's "
                         "own: two per core, 8 to 64)")
    ap.add_argument("--pg-threads", type=int,
                    help="threads of the payhook on postgres (default: payhook's own default for that store: two per core, 4 to 64)")
    ap.add_argument("--pg-connections", type=int,
                    help="[store] connections for the PostgreSQL workloads (default: payhook's, one writer session)")
    ap.add_argument("--rate", type=int, default=2000, help="events/s offered in the fixed-rate test")
    ap.add_argument("--rate-duration", type=int, help="seconds per fixed-rate run (full 6, quick 3)")
    ap.add_argument("--rate-conns", type=int, default=64)
    ap.add_argument("--rate-reps", type=int, default=3)
    ap.add_argument("--fileceil-seconds", type=float, default=2.0)
    ap.add_argument("--lines-per-second", type=int, default=40000,
                    help="unique requests prepared per second of a run: above payhook's best rate, or the run fails")
    ap.add_argument("--v3-lines-per-second", type=int, default=40000,
                    help="v3 requests prepared per second of a run (each costs an RSA signature to make): above "
                         "payhook's best v3 rate, or the run fails")
    ap.add_argument("--nginx-lines", type=int, default=40000,
                    help="lines wrk loads for nginx (it may repeat them: nothing is stored)")
    ap.add_argument("--max-minutes", type=float,
                    help="stop starting closed-loop runs after this long (default: full 4, quick 0.8 per workload)")
    ap.add_argument("--no-mhdmin", action="store_true",
                    help="skip the libmicrohttpd-alone reference (bench/tools/mhdmin.c) in the duplicates runs")
    ap.add_argument("--keep-spools", action="store_true", help="do not delete the disk spools at the end")
    ap.add_argument("--fail-on-targets", action="store_true", help="exit 3 when a target is missed")
    ap.add_argument("--output", default=os.path.join(BENCH, "results", "latest.md"))
    args = ap.parse_args()
    args.connections = [int(c) for c in (args.connections or ("64" if args.quick else "1,16,64,256")).split(",")]
    args.workloads = [w for w in args.workloads.split(",") if w]
    args.pg_workloads = [w for w in args.workloads if w in pgbench_part.PG_WORKLOADS]
    args.workloads = [w for w in args.workloads if w not in pgbench_part.PG_WORKLOADS]
    args.spools = [s for s in args.spools.split(",") if s]
    args.duration = args.duration or (2 if args.quick else 4)
    args.rate_duration = args.rate_duration or (3 if args.quick else 6)
    # One unit of time per spool workload and per PostgreSQL cell of a repetition (pgtwo brings pgunique, its
    # reference, so it is two cells), so that a PostgreSQL-only run gets all its repetitions.
    args.max_minutes = args.max_minutes or (0.8 if args.quick else 4.0) * max(
        1, len(args.workloads) + len(pgbench_part.plan_for(args.pg_workloads, 1)))
    if any(w not in WORKLOADS for w in args.workloads) or any(s not in ("disk", "tmpfs") for s in args.spools):
        sys.exit("bench: unknown workload or spool")
    if args.reps < 1 or args.duration < 1 or args.duration > 60 or args.rate_duration > 120:
        sys.exit("bench: reps ≥ 1, 1 ≤ duration ≤ 60, rate-duration ≤ 120")
    if args.dup_set < 1 or args.v3_dup_set < 1 or args.v3_lines_per_second < 1:
        sys.exit("bench: --dup-set, --v3-dup-set and --v3-lines-per-second must be ≥ 1")

    started = datetime.datetime.now(datetime.timezone.utc)
    ensure_tools(args)
    binary = build_payhook(args)
    work = os.path.abspath(args.workdir)
    os.makedirs(work, exist_ok=True)
    # One run at a time per work folder: a second one would delete the first one's spools under it (the stale
    # spools below) and measure a machine the first one loads. The lock goes with the process.
    lock = open(os.path.join(work, ".lock"), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(f"bench: another run is using {shown(work)} (it holds .lock there); wait until it has ended")
    ctx = {"args": args, "binary": binary, "skipped": 0,
           "load0": " ".join(open("/proc/loadavg").read().split()[:3])}
    ctx["version"] = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip() or "?"
    ctx["head"] = source_revision(binary)
    ctx["tools"] = compile_tools(work)
    ctx["lines"] = args.lines_per_second * args.duration
    kinds = {WORKLOADS[w]["kind"] for w in args.workloads}
    extra = {}
    if "alipay" in kinds:
        # alipaydup alone needs only its DUP_SET lines, and nginx at most --nginx-lines
        unique = any(w == "alipayunique" for w in args.workloads)
        extra["alipay"] = max(ctx["lines"] if unique else min(args.nginx_lines, 10000), args.dup_set)
    if "jeepay" in kinds:
        extra["jeepay"] = max(args.dup_set, 1000)
    ctx["sets"] = request_sets(work, max(ctx["lines"], args.rate * args.rate_duration, args.nginx_lines, args.dup_set),
                               extra)
    ctx["v3"] = "wechatv3" in kinds
    ctx["alipay"] = "alipay" in kinds
    ctx["tables"] = {name for name, on in (("v3", ctx["v3"]), ("alipay", ctx["alipay"]), ("jeepay", "jeepay" in kinds))
                     if on}
    if ctx["v3"]:
        ctx["v3_lines"] = args.v3_lines_per_second * args.duration
        budget = args.max_minutes * 60 + 60 + args.rate_reps * 4 * (args.rate_duration + 15)
        ctx["sets"]["wechatv3"], ctx["v3_signed_at"] = v3_request_set(
            work, max(ctx["v3_lines"], args.v3_dup_set), budget)

    # Spools of an earlier, interrupted run: deleting them now slows this run's disk numbers, so
    # say so in the report rather than hide it.
    disk_root = os.path.join(work, "spools")
    stale = os.path.exists(disk_root) and os.listdir(disk_root)
    if stale:
        log(f"deleting spools left by an earlier run in {disk_root}: disk numbers of this run may be depressed")
        shutil.rmtree(disk_root)
    os.makedirs(disk_root)
    ctx["rundir"] = os.path.join(work, "last-run")
    shutil.rmtree(ctx["rundir"], ignore_errors=True)
    os.makedirs(ctx["rundir"])
    tmpfs_root, mounted, ctx["tmpfs_note"] = setup_tmpfs(work) if "tmpfs" in args.spools else (None, False, "not used")
    ctx["spool_roots"] = {"disk": disk_root, "tmpfs": tmpfs_root}
    ctx["disk_dev"] = mount_info(disk_root) + (" — stale spools were deleted just before this run" if stale else "")
    records, rate_records = [], []
    if ctx["v3"]:
        ctx["v3_age_at_start"] = time.time() - ctx["v3_signed_at"]

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    interrupted = False
    try:
        fcdir = os.path.join(disk_root, "fileceil")
        os.makedirs(fcdir)
        log(f"file ceiling probe on {ctx['disk_dev']}")
        r = subprocess.run([ctx["tools"]["fileceil"], fcdir, str(args.fileceil_seconds), "64", "2"],
                           capture_output=True, text=True, timeout=120)
        ctx["fileceil"] = key_values(r.stdout)
        # The spool's own order of flushes with nothing else, closed loop, as many in flight as the closed-loop
        # runs have callbacks: the bound those flushes set on unique events here, beside the raw device's. Then
        # the same with the two directory flushes pipelined (flushfloor -p): the most overlap that order allows,
        # which the spool does not use; shown so that a run tells whether it would have paid here.
        for key, flags in (("flushloop", []), ("flushpipe", ["-p"])):
            r = subprocess.run([ctx["tools"]["flushfloor"]] + flags + [os.path.join(fcdir, key), "0",
                                str(args.fileceil_seconds), str(CLOSED_LOOP_WORKERS)], capture_output=True, text=True,
                               timeout=120)
            if r.returncode == 0:
                ctx[key] = key_values(r.stdout)
            else:
                log(f"flushfloor {' '.join(flags)} (closed loop) failed: {r.stderr.strip()[-300:]}")
        if ctx["fileceil"].get("single", 0) < QUOTED_SINGLE_CEILING / 3:
            log(f"warning: only {ctx['fileceil'].get('single', 0):.0f} durable files/s one at a time "
                f"(~{QUOTED_SINGLE_CEILING} on a quiet machine): busy disk or recent mass deletes")

        # The fixed-rate test runs right after the probe, before the closed-loop runs: its p99 is judged against
        # the probe's fsync p99, so both must meet the disk in the same state. After the closed-loop runs (a few
        # hundred thousand files written) this VM's disk is throttled and ext4 reuses freshly freed inodes
        # slowly, and the p99 measured then is that state's, not payhook's (bench/README.md, "Targets").
        # Each repetition also makes the spool's flushes alone at the same rate, then again with as much CPU
        # burnt beside them as payhook spent beyond them in this repetition: what the disk and the host give any
        # store that keeps the promise (bench/README.md, "The fixed-rate floor").
        def measured(rec):
            rate_records.append(rec)
            log(f"[rate {rec['rep']}] {rec['server']}: " + (f"p99 {rec.get('p99_ms')} ms, steal {fmt(rec.get('steal_ms'))} ms"
                                                          if not rec["failed"] else f"FAILED: {rec['failed']}"))
            return rec

        for rep in range(1, args.rate_reps + 1):
            mine = measured(measure_rate(ctx, rep, "payhook"))
            bare = measured(measure_floor(ctx, rep))
            if not mine["failed"] and mine.get("cpu_per_1k") and not bare["failed"]:
                extra = (mine["cpu_per_1k"] - bare["cpu_per_1k"]) * args.rate / 1000
                measured(measure_floor(ctx, rep, min(2.0, max(0.0, extra))))
            measured(measure_rate(ctx, rep, "nginx"))

        plan = []
        for rep in range(1, args.reps + 1):
            for c in args.connections:
                for w in args.workloads:
                    plan.append((rep, c, w, "nginx", None))
                    if w == "dup" and not args.no_mhdmin:
                        plan.append((rep, c, w, "mhdmin", None))
                    for s in args.spools:
                        plan.append((rep, c, w, "payhook", s))
        deadline = time.time() + args.max_minutes * 60
        for i, (rep, c, w, sk, spk) in enumerate(plan):
            if time.time() > deadline:
                ctx["skipped"] = len(plan) - i
                log(f"time limit ({args.max_minutes} min) reached: skipping the last {ctx['skipped']} runs")
                break
            rec = measure(ctx, rep, c, w, sk, spk)
            records.append(rec)
            summary = (f"{rec.get('rps', 0):,.0f} req/s p99 {rec.get('p99_ms', 0):.2f} ms"
                       if not rec["failed"] else f"FAILED: {rec['failed']}")
            chk = rec.get("check", {}).get("line", "")
            log(f"[{i + 1}/{len(plan)}] {rec['id']}: {summary}{'; ' + chk if chk else ''}")
        if args.pg_workloads:
            # PostgreSQL (bench/postgres.py): one private cluster for the run, a fresh database per cell.
            log("starting a private PostgreSQL cluster (fsync on)")
            ctx["pg"] = pgbench_part.Cluster(binary, work)
            pa = argparse.Namespace(**vars(args))
            pa.workloads = args.pg_workloads
            cells = pgbench_part.plan(pa)
            for i, (rep, c, w) in enumerate(cells):
                if time.time() > deadline:
                    ctx["skipped"] += len(cells) - i
                    log(f"time limit reached: skipping the last {len(cells) - i} postgres runs")
                    break
                rec = pgbench_part.measure_pg(ctx, sys.modules[__name__], rep, w, c)
                records.append(rec)
                summary = (f"{rec.get('rps', 0):,.0f} req/s p99 {rec.get('p99_ms') or 0:.2f} ms"
                           if not rec["failed"] else f"FAILED: {rec['failed']}")
                chk = rec.get("check", {}).get("line", "")
                log(f"[pg {i + 1}/{len(cells)}] {rec['id']}: {summary}{'; ' + chk if chk else ''}")
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: reporting what was measured")
    finally:
        ended = datetime.datetime.now(datetime.timezone.utc)
        with open(os.path.join(ctx["rundir"], "runs.json"), "w") as f:
            json.dump({"records": records, "rate": rate_records, "fileceil": ctx.get("fileceil"), "flushloop": ctx.get("flushloop")}, f, indent=1,
                      default=str)
        spool_records = [r for r in records if r["server"] != "postgres"]
        try:
            report, failed, verdicts = make_report(ctx, spool_records, rate_records, started, ended)
            if ctx.get("pg"):
                pg_text, pg_failed, pg_verdicts = pgbench_part.report(ctx, records, med)
                report += pg_text
                failed += pg_failed
                verdicts += pg_verdicts
        finally:
            if ctx.get("pg"):  # the private cluster never outlives the run, whatever failed
                ctx["pg"].close()
        sys.stdout.write(report)
        sys.stdout.flush()
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            f.write(report)
        log(f"report written to {args.output}")
        if mounted:
            subprocess.run(["umount", tmpfs_root], check=False)
            os.rmdir(tmpfs_root)
        elif tmpfs_root:
            shutil.rmtree(tmpfs_root, ignore_errors=True)
        if args.keep_spools:
            log(f"disk spools kept in {disk_root} (--keep-spools)")
        else:
            t = time.time()
            n = 0
            for root, dirs, files in os.walk(disk_root):
                n += len(files)
            shutil.rmtree(disk_root, ignore_errors=True)
            log(f"deleted the disk spools ({n:,} files, {time.time() - t:.1f}s) after measuring; file creation "
                f"on this ext4 may be slow for a few minutes: wait before measuring again")
    if failed:
        log(f"{len(failed)} runs FAILED (see the report)")
        sys.exit(1)
    if interrupted:
        sys.exit(130)
    if args.fail_on_targets and "FAIL" in verdicts:
        sys.exit(3)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--write-config"] and len(sys.argv) == 5:
        print(write_payhook_config(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    else:
        main()
