"""A private PostgreSQL cluster for the crash harness and the benchmark (Python 3 standard library only).

initdb into a fresh temporary folder, a unix socket there and no TCP port, so nothing else on the machine can
reach it and nothing of the machine's own PostgreSQL is touched. It uses Debian's `postgresql` package
(`make test-deps`; `pg_config --bindir`, or $PAYHOOK_TEST_PG_BINDIR as Tests/PayhookTestSupport/TestPostgres.swift
reads it). initdb refuses to run as root, so as root every server binary runs as the `postgres` user through
`runuser`.

fsync stays ON (PostgreSQL's default) unless asked otherwise: the crash harness tests durability and the
benchmark must pay what a real deployment pays.

    c = PGCluster().start()
    c.conninfo                  # host=DIR port=N user=postgres dbname=postgres
    c.psql("SELECT 1")          # -> stdout text (tuples only, unaligned)
    c.kill9()                   # the postmaster and every child, SIGKILL: a crash of the whole server
    c.start()                   # crash recovery replays the WAL
    c.stop(); c.remove()
"""
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time


class PGError(Exception):
    """The cluster could not be set up, started or queried."""


def find_bindir():
    env = os.environ.get("PAYHOOK_TEST_PG_BINDIR")
    if env:
        return env
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and os.path.exists(os.path.join(out.stdout.strip(), "initdb")):
            return out.stdout.strip()
    except OSError:
        pass
    # pg_config may come from libpq-dev alone, whose bindir has no server: look for the server package's.
    base = "/usr/lib/postgresql"
    if os.path.isdir(base):
        for version in sorted(os.listdir(base), key=lambda v: int(v) if v.isdigit() else 0, reverse=True):
            candidate = os.path.join(base, version, "bin")
            if os.path.exists(os.path.join(candidate, "initdb")):
                return candidate
    raise PGError("PostgreSQL's server binaries (initdb, pg_ctl) were not found: `make test-deps` installs them")


def children_of(pid):
    """Pids whose parent is pid, from /proc (a postmaster's backends and auxiliary processes)."""
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return kids


class PGCluster:
    def __init__(self, fsync=True, max_connections=300, settings=None, prefix="payhook-pg-"):
        self.bindir = find_bindir()
        self.as_postgres = os.getuid() == 0
        self.dir = tempfile.mkdtemp(prefix=prefix)
        if self.as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        os.chmod(self.dir, 0o700)
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        # A port number is only the socket's name here (no TCP), but two clusters in one folder would collide.
        self.port = 20000 + random.SystemRandom().randrange(20000)
        self.started = False
        self._run("initdb", "-N", "-D", self.data, "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-instructions")
        conf = {"listen_addresses": "''", "unix_socket_directories": f"'{self.dir}'", "port": str(self.port),
                "max_connections": str(max_connections), "fsync": "on" if fsync else "off"}
        conf.update(settings or {})
        # Appended as the postgres user may own the file and we may not be able to write it otherwise.
        text = "".join(f"{k} = {v}\n" for k, v in conf.items())
        with open(os.path.join(self.data, "postgresql.conf"), "a", encoding="utf-8") as f:
            f.write("\n# payhook private cluster (Tests/crash/pg_cluster.py)\n" + text)
        self.fsync = fsync

    # --- plumbing ---------------------------------------------------------------------------------------
    def _argv(self, tool, *args):
        argv = [os.path.join(self.bindir, tool), *args]
        return ["runuser", "-u", "postgres", "--", *argv] if self.as_postgres else argv

    def _run(self, tool, *args, timeout=120, check=True):
        r = subprocess.run(self._argv(tool, *args), capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise PGError(f"{tool} {' '.join(args[:2])} failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-600:]}")
        return r

    @property
    def conninfo(self):
        return f"host={self.dir} port={self.port} user=postgres dbname=postgres"

    def tool(self, name):
        """The full path of one of the cluster's client tools (pgbench, psql)."""
        return os.path.join(self.bindir, name)

    # --- life cycle -------------------------------------------------------------------------------------
    def start(self, timeout=120):
        self._run("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", str(int(timeout)), "start",
                  timeout=timeout + 30)
        self.started = True
        return self

    def postmaster_pid(self):
        try:
            with open(os.path.join(self.data, "postmaster.pid"), encoding="ascii") as f:
                return int(f.readline().strip())
        except (OSError, ValueError):
            return None

    def stop(self, mode="fast"):
        if self.postmaster_pid() is not None:
            self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop", check=False, timeout=120)
        self.started = False

    def kill9(self):
        """A crash of the whole server: SIGKILL to the postmaster and to each of its children by pid (a backend
        left alive would still hold the shared memory, and the next start would refuse to run beside it)."""
        pid = self.postmaster_pid()
        if pid is None:
            raise PGError("kill9: no postmaster.pid")
        kids = children_of(pid)
        for p in [pid] + kids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not any(_alive(p) for p in [pid] + kids):
                break
            time.sleep(0.02)
        else:
            raise PGError(f"kill9: postmaster {pid} or a child still alive after 30 s")
        # The postmaster was started by pg_ctl and belongs to init, which reaps it when it gets round to it.
        # Until then its pid still answers kill(pid, 0) and the next postmaster would take it for a running
        # one ("lock file postmaster.pid already exists"): wait for the zombie to go, for a while.
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.02)
        self.started = False
        return pid

    def restart_after_crash(self, timeout=120):
        """Starts again after kill9(): the stale postmaster.pid names a dead process, which pg_ctl accepts."""
        return self.start(timeout)

    def remove(self):
        if self.postmaster_pid() is not None:
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- queries ----------------------------------------------------------------------------------------
    def psql(self, sql, timeout=300, check=True):
        """Runs sql with psql (tuples only, unaligned, `|` between columns, stop at the first error). As root it
        runs as root: trust authentication over the socket needs no OS user match, and root can reach the socket."""
        r = subprocess.run([self.tool("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", self.conninfo,
                            "-c", sql], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise PGError(f"psql failed ({r.returncode}): {r.stderr.strip()[-600:]}")
        return r.stdout

    def psql_lines(self, sql, timeout=300):
        return [line for line in self.psql(sql, timeout=timeout).splitlines() if line]

    def ready(self):
        r = subprocess.run([self.tool("pg_isready"), "-q", "-h", self.dir, "-p", str(self.port)],
                           capture_output=True, timeout=30)
        return r.returncode == 0


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
