"""The PostgreSQL part of the benchmark (bench/run.py, bench/README.md "PostgreSQL").

One private cluster per run (Tests/crash/pg_cluster.py: initdb in a temporary folder, unix socket only, fsync on,
PostgreSQL's defaults otherwise but max_connections = 300), a fresh migrated database per measurement, and:

- `pgbench` (unique / dup): the bare store statement of Sources/PayhookPostgres/PostgresEventStore.swift, read
  from that file at run time so that the reference never drifts from what payhook runs, at 64 clients
  (`pgbench -n -M prepared -c 64 -j 2 -T secs`). Its parameters become pgbench expressions: a random key per
  transaction for unique, one of DUP_SET keys for duplicates (stored before the clock starts). The event bytes
  are made on the server from the key (about as long as a bench event), so pgbench sends less per call than
  payhook does: a stricter reference, not a looser one.
- payhook on postgres: the spool workloads' own wrk runs (unique, dup) against a payhook whose config has
  `[store] kind = "postgres"`; afterwards the ledger is exported into a spool-shaped folder and the spool's own
  checker (check_spool.py) judges it, so every event answered success must be a row, exactly once, with bytes
  that hold the request sent.
- two payhook instances on one database, the unique lines shared out between them (one wrk per instance, 32
  connections each, at the same time) against one instance with 64 connections; the two wrk runs' accounting
  is merged into one (merge_wrk) so that the same checker judges the ledger exactly.
"""
import base64
import os
import re
import shutil
import subprocess
import sys
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(REPO, "Tests", "crash"))
import pg_cluster  # noqa: E402

STORE_SWIFT = os.path.join(REPO, "Sources", "PayhookPostgres", "PostgresEventStore.swift")
URL_ENV = "PAYHOOK_BENCH_PG_URL"
PG_WORKLOADS = ("pgbench", "pgunique", "pgdup", "pgtwo")
# Targets (the issue's): payhook against pgbench's rate of the same statement, measured in the same run.
TARGET_UNIQUE = 0.7
TARGET_DUP = 0.7
TARGET_P99_MS = 50.0


def store_statement():
    """PostgresEventStore.storeStatement, from the Swift source (a multi-line string literal)."""
    with open(STORE_SWIFT, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r'static let storeStatement = """\n(.*?)\n\s*"""', text, re.S)
    if not m:
        raise RuntimeError(f"storeStatement not found in {STORE_SWIFT}")
    return m.group(1)


def pgbench_sql(prefix, key_expr):
    """The store statement with each $n replaced by a pgbench expression of the key `key_expr`."""
    key = f"('{prefix}' || {key_expr})"
    values = {
        1: f"sha256(convert_to({key}, 'UTF8'))",                       # id: 32 bytes
        2: f"('unified/bench/' || {key})",                             # dedupe_key
        3: "'unified'", 4: "'bench'", 5: key, 6: "'SUCCESS'", 7: "100", 8: "'CNY'",
        9: "convert_to('bench-fingerprint', 'UTF8')",                    # same content: a duplicate, never a conflict
        10: f"convert_to(repeat('x', 700) || {key}, 'UTF8')",          # event bytes, made server-side
        11: "1767225600000", 12: "'pgbench'", 13: "16", 14: "1000",
    }
    sql = store_statement()
    # Highest numbers first so that $1 does not eat the start of $10..$14; the ::type casts stay in place.
    for n in sorted(values, reverse=True):
        sql = sql.replace(f"${n}::", f"({values[n]})::")
    if "$" in sql:
        raise RuntimeError("a parameter of the store statement was left unreplaced")
    return sql.strip() + ";\n"


class Cluster:
    def __init__(self, binary, workdir):
        self.binary = binary
        self.pg = pg_cluster.PGCluster(fsync=True, prefix="payhook-bench-pg-")
        self.pg.start()
        self.settings = {k: self.pg.psql(f"SHOW {k}").strip()
                         for k in ("server_version", "fsync", "synchronous_commit", "shared_buffers", "wal_sync_method")}
        self.n = 0

    def conninfo(self, db):
        return f"host={self.pg.dir} port={self.pg.port} user=postgres dbname={db}"

    def fresh_db(self, config):
        """A new database with payhook's schema (payhook db migrate), so that every run starts from empty tables."""
        self.n += 1
        db = f"bench_{self.n}"
        self.pg.psql(f"CREATE DATABASE {db}")
        env = dict(os.environ, **{URL_ENV: self.conninfo(db)})
        r = subprocess.run([self.binary, "db", "migrate", "--config", config], env=env, capture_output=True,
                           text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"payhook db migrate failed: {r.stderr.strip()[-300:]}")
        return db

    def drop(self, db):
        self.pg.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", check=False)

    def psql(self, db, sql):
        # The SQL on stdin: a seed of DUP_SET statements is too long for an argument.
        r = subprocess.run([self.pg.tool("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d",
                            self.conninfo(db), "-f", "-"], input=sql, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"psql: {r.stderr.strip()[-300:]}")
        return r.stdout

    def close(self):
        self.pg.remove()


def run_pgbench(cluster, config, rundir, dup, clients, seconds, dup_set):
    """pgbench on the store statement; returns {rps, p50_ms, p99_ms, ...}."""
    db = cluster.fresh_db(config)
    try:
        script = os.path.join(rundir, "store.sql")
        with open(script, "w") as f:
            if dup:
                f.write(f"\\set r random(1, {dup_set})\n" + pgbench_sql("d", ":r"))
            else:
                f.write("\\set r random(1, 9000000000000000000)\n" + pgbench_sql("u", ":r"))
        if dup:  # the duplicate set is stored before the clock starts, as the spool's dup workload does
            seed = pgbench_sql("d", "'{}'")
            cluster.psql(db, "".join(seed.replace("'{}'", f"'{i}'") for i in range(1, dup_set + 1)))
        os.chmod(rundir, 0o777)  # pgbench writes its per-transaction log here (runs as the caller)
        cmd = [cluster.pg.tool("pgbench"), "-n", "-M", "prepared", "-c", str(clients), "-j", "2", "-T", str(seconds),
               "-l", "--log-prefix", os.path.join(rundir, "pgbench_log"), "-f", script,
               "-h", cluster.pg.dir, "-p", str(cluster.pg.port), "-U", "postgres", db]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
        with open(os.path.join(rundir, "pgbench.out"), "w") as f:
            f.write(r.stdout + r.stderr)
        if r.returncode != 0:
            raise RuntimeError(f"pgbench failed ({r.returncode}): {r.stderr.strip()[-300:]}")
        m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", r.stdout)
        failed = re.search(r"number of failed transactions: (\d+)", r.stdout)
        lat = []
        for name in os.listdir(rundir):
            if name.startswith("pgbench_log"):
                with open(os.path.join(rundir, name)) as f:
                    lat.extend(int(line.split()[2]) for line in f if line.strip())
        lat.sort()
        pct = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1000 if lat else None)
        rows = int(cluster.psql(db, "SELECT count(*) FROM payhook_ledger").strip())
        return {"rps": float(m.group(1)) if m else 0.0, "p50_ms": pct(0.50), "p99_ms": pct(0.99),
                "transactions": len(lat), "failed_tx": int(failed.group(1)) if failed else 0, "rows": rows}
    finally:
        cluster.drop(db)


def export_ledger(cluster, db, spool):
    """The ledger as a spool the spool's checker reads: new/<id>.json holding each row's exact event bytes and
    ids/<id>; tmp/, cur/, conflicts/ and corrupt/ empty, unless a row is a conflict copy or is in no queue row
    (no consumer runs, so each row must have exactly one, in state new): those go to conflicts/, which the
    checker requires to be empty."""
    for sub in ("new", "ids", "tmp", "cur", "conflicts", "corrupt"):
        os.makedirs(os.path.join(spool, sub), exist_ok=True)
    out = cluster.psql(db, "SELECT encode(l.id, 'hex') || ' ' || "
                           "(SELECT count(*) FROM payhook_queue q WHERE q.id = l.id AND q.state = 'new') || ' ' || "
                           "translate(encode(l.event, 'base64'), E'\\n', '') FROM payhook_ledger l")
    rows = 0
    for line in out.splitlines():
        if not line:
            continue
        eid, queued, b64 = line.split(" ", 2)
        rows += 1
        folder = "new" if queued == "1" else "conflicts"
        with open(os.path.join(spool, folder, eid + ".json"), "wb") as f:
            f.write(base64.b64decode(b64))
        if folder == "new":
            open(os.path.join(spool, "ids", eid), "wb").close()
    copies = int(cluster.psql(db, "SELECT count(*) FROM payhook_conflict").strip())
    for i in range(copies):
        open(os.path.join(spool, "conflicts", f"copy-{i}"), "wb").close()
    return rows


def merge_wrk(rundir, first, second):
    """The two instances' wrk accounting as one run of two threads over the whole line set (see measure_pg):
    the second run's thread 0 becomes thread 1, which is what check_spool.py reads thread k of T = 2 to have
    sent (lines k, k + 2, ...)."""
    out = os.path.join(rundir, "wrk-result-merged.txt")
    with open(out, "w") as w:
        for n, path in enumerate((first, second)):
            with open(path) as f:
                for line in f:
                    parts = line.split()
                    if parts and parts[0] == "thread":
                        parts[1] = str(int(parts[1]) + n)
                        w.write(" ".join(parts) + "\n")
                    elif n == 0 and parts:
                        w.write(line)
    return out


def store_toml(connections=None):
    # connections: payhook's default writer sessions (group commit) unless --pg-connections says otherwise;
    # timeout_s: the default.
    extra = f"connections = {connections}\n" if connections else ""
    return f'[store]\nkind = "postgres"\nurl_env = "{URL_ENV}"\n' + extra


def measure_pg(ctx, run, rep, workload, conns):
    """One postgres cell. `run` holds run.py's helpers (Payhook, run_wrk, seed_duplicates, check_spool)."""
    args = ctx["args"]
    cluster = ctx["pg"]
    rid = f"r{rep}-c{conns}-{workload}"
    rundir = os.path.join(ctx["rundir"], rid)
    os.makedirs(rundir, exist_ok=True)
    rec = {"id": rid, "rep": rep, "conns": conns, "workload": workload, "server": "postgres", "spool": None,
           "failed": None, "notes": []}
    servers = []
    db = None
    try:
        if workload in ("pgbench-unique", "pgbench-dup"):
            config = run.write_payhook_config(os.path.join(rundir, "cfg"), os.path.join(rundir, "unused-spool"),
                                              args.pg_threads, store=store_toml(args.pg_connections))
            rec.update(run_pgbench(cluster, config, rundir, workload == "pgbench-dup", conns, args.duration,
                                   args.dup_set))
            if rec["failed_tx"]:
                rec["failed"] = f"pgbench: {rec['failed_tx']} failed transactions"
            return rec
        base = "dup" if workload == "pgdup" else "unique"
        config = run.write_payhook_config(os.path.join(rundir, "cfg"), os.path.join(rundir, "unused-spool"),
                                          args.pg_threads, store=store_toml(args.pg_connections))
        db = cluster.fresh_db(config)
        env = {URL_ENV: cluster.conninfo(db)}
        count = 2 if workload == "pgtwo" else 1
        for i in range(count):
            servers.append(run.Payhook(ctx["binary"], os.path.join(rundir, f"payhook-{i}"),
                                       os.path.join(rundir, "unused-spool"), args.pg_threads,
                                       store=store_toml(args.pg_connections), env=env))
        if base == "dup":
            run.seed_duplicates(ctx, servers[0].port, "dup")
        # Where the work went, for comparing one instance with two: CPU of the cluster's processes and of the
        # payhook(s), and the database's committed transactions (how well group commit batched), per 1,000
        # answers. The statistics reach pg_stat_database within a second of a session going idle.
        pg_pids = lambda: [cluster.pg.postmaster_pid()] + pg_cluster.children_of(cluster.pg.postmaster_pid())
        ph_pids = lambda: [pid for s in servers for pid in s.pids]
        commits = lambda: int(cluster.psql(db, "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").strip())
        before = (run.cpu_seconds(pg_pids()), run.cpu_seconds(ph_pids()), commits(), run.steal_seconds())
        if count == 1:
            rec.update(run.run_wrk(ctx, servers[0], servers[0].port, base, conns, args.duration, rundir, ctx["lines"]))
        else:
            # The same client as for one instance: two wrk threads in all (one per instance, each with half the
            # connections), so the client takes no more of the two cores than it does against one instance. The
            # unique lines are shared out so that both instances store new events and the two wrk runs' accounting
            # merges into one of two threads over the whole set (merge_wrk): line i goes to instance i % 2, so
            # instance i's one wrk thread sends exactly the lines 2k + i of the set.
            with open(ctx["sets"]["unified"], encoding="utf-8") as f:
                lines = [next(f) for _ in range(ctx["lines"] - ctx["lines"] % 2)]
            half = len(lines) // 2
            results = [None, None]

            def one(i):
                d = os.path.join(rundir, f"wrk-{i}")
                os.makedirs(d, exist_ok=True)
                path = os.path.join(d, "lines.txt")
                with open(path, "w", encoding="utf-8") as f:
                    f.writelines(line for n, line in enumerate(lines) if n % 2 == i)
                try:
                    results[i] = run.run_wrk(ctx, servers[i], servers[i].port, base, conns // 2, args.duration, d,
                                             half, lines_path=path, wrk_threads=1)
                except Exception as e:  # noqa: BLE001
                    results[i] = {"error": str(e)}
            threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for r in results:
                if "error" in r:
                    raise RuntimeError(r["error"])
            a, b = results
            rec.update({"rps": a["rps"] + b["rps"], "rps_each": [a["rps"], b["rps"]],
                        "p50_ms": max(a["p50_ms"], b["p50_ms"]), "p99_ms": max(a["p99_ms"], b["p99_ms"]),
                        "ok": a["ok"] + b["ok"], "bad": a["bad"] + b["bad"], "first_bad": a["first_bad"] or b["first_bad"],
                        "wrapped": a["wrapped"] or b["wrapped"], "stalls": a["stalls"] + b["stalls"],
                        "socket_errors": a["socket_errors"] + b["socket_errors"], "timeouts": a["timeouts"] + b["timeouts"],
                        "cpu_per_1k": None})
        pg_cpu, ph_cpu, steal = run.cpu_seconds(pg_pids()), run.cpu_seconds(ph_pids()), run.steal_seconds()
        time.sleep(1.5)
        answered = rec["ok"] + rec["bad"]
        if answered:
            rec.update({"pg_cpu_per_1k": (pg_cpu - before[0]) / answered * 1000,
                        "all_payhook_cpu_per_1k": (ph_cpu - before[1]) / answered * 1000,
                        "commits_per_1k": (commits() - before[2]) / answered * 1000,
                        "steal_ms_per_1k": (steal - before[3]) / answered * 1e6
                        if steal is not None and before[3] is not None else None})
        for s in servers:
            s.settle()
            if not s.stop():
                rec["failed"] = s.stop_problem
        # On the run's tmpfs when there is one: a ledger of tens of thousands of rows written out as files (and
        # deleted) on the disk would leave this VM's disk throttled for the spool runs of a later bench run.
        spool = os.path.join(ctx.get("spool_roots", {}).get("tmpfs") or rundir, f"{rid}-ledger-as-spool")
        rows = export_ledger(cluster, db, spool)
        rec["rows"] = rows
        if count == 1:
            chk = run.check_spool(ctx, spool, rundir, base, wrk_result=rec["wrk_result"])
        else:
            chk = run.check_spool(ctx, spool, rundir, base, wrk_result=merge_wrk(rundir, a["wrk_result"], b["wrk_result"]))
        rec["check"] = chk
        shutil.rmtree(spool, ignore_errors=True)
        if rec.get("wrapped"):
            rec["failed"] = "request set exhausted (raise --lines-per-second)"
        elif not chk["ok"]:
            rec["failed"] = "ledger check: " + "; ".join(chk.get("problems", [])[:3])
        if rec.get("bad") and not rec["failed"]:
            rec["failed"] = f"{rec['bad']} answers were not the success answer (first: {rec['first_bad']})"
        rec["notes"] += rec.get("stalls", [])
    except Exception as e:  # noqa: BLE001 - one broken run must not lose the others' results
        rec["failed"] = f"{type(e).__name__}: {e}"
    finally:
        for s in servers:
            s.stop()
        if db:
            cluster.drop(db)
    return rec


def plan(args):
    """(rep, conns, workload) cells, in the order they run inside each repetition."""
    return plan_for(args.workloads, args.reps)


def plan_for(workloads, reps):
    """The cells of ``plan`` for these workloads (each brings its reference, so one workload may be several)."""
    cells = []
    wanted = [w for w in workloads if w in PG_WORKLOADS]
    for rep in range(1, reps + 1):
        if "pgbench" in wanted or "pgunique" in wanted:
            cells.append((rep, 64, "pgbench-unique"))
        if "pgunique" in wanted or "pgtwo" in wanted:
            cells.append((rep, 64, "pgunique"))
        if "pgbench" in wanted or "pgdup" in wanted:
            cells.append((rep, 64, "pgbench-dup"))
        if "pgdup" in wanted:
            cells.append((rep, 64, "pgdup"))
        if "pgtwo" in wanted:
            cells.append((rep, 64, "pgtwo"))
    return cells


def report(ctx, records, med):
    """The PostgreSQL section of the report: (markdown, failed records, verdicts)."""
    pg = [r for r in records if r["server"] == "postgres"]
    spool = [r for r in records if r["server"] == "payhook" and r["conns"] == 64 and not r["failed"]]
    ok = [r for r in pg if not r["failed"]]

    def cells(workload):
        return [r for r in ok if r["workload"] == workload]

    def m(workload, key="rps"):
        return med([r.get(key) for r in cells(workload)])

    def span(workload):
        v = [r["rps"] for r in cells(workload)]
        return f"{med(v):,.0f} ({min(v):,.0f}–{max(v):,.0f})" if v else "—"

    def per_rep_ratio(a, b):
        """Median over the repetitions of a/b within each repetition (minutes apart at most: shared noise)."""
        by_rep = {}
        for r in ok:
            by_rep.setdefault(r["rep"], {})[r["workload"]] = r["rps"]
        v = [x[a] / x[b] for x in by_rep.values() if a in x and b in x and x[b]]
        return (med(v), min(v), max(v)) if v else (None, None, None)

    def ratio_text(t):
        return f"{t[0]:.2f} ({t[1]:.2f}–{t[2]:.2f})" if t[0] is not None else "—"

    def p99(workload):
        v = m(workload, "p99_ms")
        return f"{v:.1f}" if v is not None else "—"

    verdicts = []
    L = ["", "## PostgreSQL store", ""]
    pgc = ctx["pg"]
    st = pgc.settings
    L.append(f"- a private cluster started for this run (Tests/crash/pg_cluster.py): PostgreSQL {st['server_version']}, "
             f"unix socket, fsync {st['fsync']}, synchronous_commit {st['synchronous_commit']}, shared_buffers "
             f"{st['shared_buffers']}, wal_sync_method {st['wal_sync_method']} (defaults but max_connections = 300), "
             f"data in a temporary folder on the machine's /tmp; a fresh database migrated by `payhook db migrate` per run")
    L.append(f"- pgbench: `pgbench -n -M prepared -c 64 -j 2 -T {ctx['args'].duration}` on the store statement read "
             f"from Sources/PayhookPostgres/PostgresEventStore.swift (bench/postgres.py); p99 from its "
             f"per-transaction log")
    sessions = (f"`[store] connections = {ctx['args'].pg_connections}`" if ctx['args'].pg_connections
                else "the default two writer sessions (group commit)")
    threads = (f"`threads = {ctx['args'].pg_threads}`" if ctx['args'].pg_threads
               else "`threads` unset (payhook's default on PostgreSQL: two per core, 4 to 64)")
    L.append(f"- payhook: the spool workloads' wrk runs, {threads}, {sessions}; "
             f"after each run the ledger is exported and judged by check_spool.py")
    L.append("")
    L.append("| run, 64 connections | req/s median (min–max) | p99 ms | ratio (median of per-repetition ratios) | target | met |")
    L.append("|---|---:|---:|---:|---|---|")

    def row(name, workload, ratio=None, target=None, met=None):
        L.append(f"| {name} | {span(workload)} | {p99(workload)} | {ratio or '—'} | {target or '—'} | {met or '—'} |")
        if met:
            verdicts.append("PASS" if met.startswith("yes") else "FAIL")

    def judge(value, ok_if):
        return "—" if value is None else ("yes" if ok_if(value) else "**no**")

    row("pgbench: store statement, unique keys (reference)", "pgbench-unique")
    row("pgbench: store statement, duplicates (reference)", "pgbench-dup")
    if cells("pgunique"):
        t = per_rep_ratio("pgunique", "pgbench-unique")
        v = m("pgunique", "p99_ms")
        row("payhook on postgres: unique events", "pgunique", ratio_text(t) + " of pgbench unique",
            f"≥ {TARGET_UNIQUE}× pgbench; p99 ≤ {TARGET_P99_MS:.0f} ms",
            "yes" if (t[0] or 0) >= TARGET_UNIQUE and v is not None and v <= TARGET_P99_MS else
            f"**no** (ratio {judge(t[0], lambda x: x >= TARGET_UNIQUE)}, p99 {judge(v, lambda x: x <= TARGET_P99_MS)})")
    if cells("pgdup"):
        t = per_rep_ratio("pgdup", "pgbench-dup")
        v = m("pgdup", "p99_ms")
        row("payhook on postgres: duplicates", "pgdup", ratio_text(t) + " of pgbench duplicates",
            f"≥ {TARGET_DUP}× pgbench dup; p99 ≤ {TARGET_P99_MS:.0f} ms",
            "yes" if (t[0] or 0) >= TARGET_DUP and v is not None and v <= TARGET_P99_MS else
            f"**no** (ratio {judge(t[0], lambda x: x >= TARGET_DUP)}, p99 {judge(v, lambda x: x <= TARGET_P99_MS)})")
    if cells("pgtwo"):
        t = per_rep_ratio("pgtwo", "pgunique")
        row("two payhook instances, one database: unique events (2 × 32 connections, one wrk thread each, summed)", "pgtwo",
            ratio_text(t) + " of one instance", "two ≥ one", "yes" if (t[0] or 0) >= 1.0 else "**no**")
    for workload, name in (("unique", "unique"), ("dup", "duplicates")):
        for s in ("disk", "tmpfs"):
            v = [r["rps"] for r in spool if r["workload"] == workload and r["spool"] == s]
            p = med([r.get("p99_ms") for r in spool if r["workload"] == workload and r["spool"] == s])
            if v:
                ref = m("pgunique" if workload == "unique" else "pgdup")
                L.append(f"| spool ({s}), same run: {name} | {med(v):,.0f} ({min(v):,.0f}–{max(v):,.0f}) | "
                         f"{p:.1f} | " + (f"postgres / spool {ref / med(v):.2f}" if ref else "—") + " | — | — |")
    L.append("")
    two = [r for r in cells("pgtwo") if r.get("rps_each")]
    if two:
        L.append("pgtwo per instance (req/s): " + "; ".join(
            f"rep {r['rep']}: {r['rps_each'][0]:,.0f} + {r['rps_each'][1]:,.0f}" for r in two))
        L.append("")
    shares = [w for w in ("pgunique", "pgtwo", "pgdup") if any(r.get("commits_per_1k") is not None for r in cells(w))]
    if shares:
        L.append("Where the work went (medians over the runs, per 1,000 answers): CPU seconds of the payhook "
                 "instance(s), CPU seconds of the cluster's processes, the database's committed transactions "
                 "(group commit folds many events into one), and the CPU time the host took from this machine "
                 "meanwhile (steal in /proc/stat: on the development VM it grows when the VM flushes and computes "
                 "at once, bench/README.md \"The fixed-rate floor\").")
        L.append("")
        L.append("| run | payhook CPU s/1k | PostgreSQL CPU s/1k | commits / 1k answers | host steal ms / 1k answers |")
        L.append("|---|---:|---:|---:|---:|")
        for w in shares:
            cell = lambda key, digits: "—" if m(w, key) is None else f"{m(w, key):.{digits}f}"
            L.append(f"| {w} | {cell('all_payhook_cpu_per_1k', 3)} | {cell('pg_cpu_per_1k', 3)} | "
                     f"{cell('commits_per_1k', 0)} | {cell('steal_ms_per_1k', 1)} |")
        L.append("")
    failed = [r for r in pg if r["failed"]]
    for r in failed:
        L.append(f"- FAILED {r['id']}: {r['failed']}")
    if failed:
        L.append("")
    return "\n".join(L) + "\n", failed, verdicts
