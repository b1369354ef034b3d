#!/usr/bin/env python3
"""The release binary, `make install`, the systemd unit and the Debian package (docs/deploy.md).

    python3 Tests/packaging/package_test.py [--skip-build] [--skip-deb]

Runs `make release` (incremental: quick when it is current), then checks, printing PASS or FAIL for each:

- the stripped binary links only Debian's system libraries, never a library of the Swift toolchain, and runs
  with an empty environment;
- `payhook --version` names the version, the commit and the build day, and the build changed no tracked file
  and left `.build/debug` alone;
- `make install` into a DESTDIR puts the binary, the man pages, the completions, the unit and the example
  config where docs/deploy.md §1 says, and keeps an existing /etc/payhook/payhook.toml;
- the unit has the lines docs/deploy.md §3 explains and `systemd-analyze verify` accepts it;
- `make deb` builds a package that installs, runs, checks its own example config, and leaves nothing behind
  after `dpkg -r` and `dpkg -P` but what docs/deploy.md §2 says purge keeps (needs root, as in CI);
- without apt-get and dpkg, `make build` and `make release` stop with one sentence naming the libraries
  pkg-config cannot find.

Everything happens in a temporary folder, and the package, its user and its state folder are removed even when
a check fails. Exit status 0 when every check passed, 1 otherwise.
"""
import argparse
import datetime
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIST = os.path.join(ROOT, ".build", "dist")
BINARY = os.path.join(DIST, "payhook")
UNIT_INSTALLED = "/usr/lib/systemd/system/payhook.service"
SECRET = "/etc/payhook/unified.secret"

# What the binary may name in its dynamic section (readelf's NEEDED): the C library and its parts, the C++ and
# GCC runtime the static Swift runtime needs, and the C libraries of docs/architecture.md §1 (GnuTLS for the
# listener's certificate callback).
ALLOWED_NEEDED = {
    "libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1", "libutil.so.1",
    "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1", "libstdc++.so.6", "libgcc_s.so.1",
    "libmicrohttpd.so.12", "libgnutls.so.30", "libcrypto.so.3", "libpq.so.5",
}
# Lines the unit must hold (docs/deploy.md §3); ExecStart is checked on its own.
UNIT_LINES = [
    "Type=notify", "NotifyAccess=main", "Restart=on-failure", "User=payhook", "StateDirectory=payhook",
    "ExecReload=/bin/kill -HUP $MAINPID", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
    "NoNewPrivileges=yes", "ProtectKernelTunables=yes", "ProtectControlGroups=yes",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "CapabilityBoundingSet=",
    "SystemCallFilter=@system-service",
]

results = []


def report(name, ok, detail=""):
    results.append(ok)
    line = f"{'PASS' if ok else 'FAIL'}: {name}"
    if detail:
        line += f" ({detail})"
    print(line, flush=True)
    return ok


def run(args, check=False, **kwargs):
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    result = subprocess.run(args, **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return result


def make(*targets, env=None, check=True):
    return run(["make", "--no-print-directory", "-C", ROOT, *targets], check=check, env=env)


def tracked_state():
    """What git says about tracked files, to show a build changed none."""
    return run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"]).stdout


def debug_binary_stamp():
    path = os.path.join(ROOT, ".build", "debug", "payhook")
    try:
        info = os.stat(path)
        return (info.st_mtime_ns, info.st_size)
    except FileNotFoundError:
        return None


def expected_commit():
    head = run(["git", "-C", ROOT, "rev-parse", "--short=7", "HEAD"])
    if head.returncode != 0:
        return "unknown"
    dirty = run(["git", "-C", ROOT, "diff", "--quiet", "HEAD", "--"]).returncode != 0
    return head.stdout.strip() + ("-dirty" if dirty else "")


def source_version():
    text = open(os.path.join(ROOT, "Sources", "PayhookServer", "Version.swift"), encoding="utf-8").read()
    return re.search(r'static let current = "([^"]+)"', text).group(1)


def toolchain_root():
    swift = shutil.which("swift")
    if not swift:
        return None
    # <root>/usr/bin/swift
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(swift))))


# 1. The release build: static Swift runtime, only Debian's libraries.
def check_release(skip_build):
    before_tracked, before_debug = tracked_state(), debug_binary_stamp()
    if not skip_build:
        started = time.monotonic()
        make("release")
        print(f"make release: {time.monotonic() - started:.0f} s", flush=True)
    report("make release left the stripped binary in .build/dist", os.access(BINARY, os.X_OK))
    report("the build changed no tracked file", tracked_state() == before_tracked)
    report(".build/debug's payhook untouched by the release build", debug_binary_stamp() == before_debug)

    symbols = run(["readelf", "-S", BINARY], check=True).stdout
    report("the binary is stripped", ".symtab" not in symbols and ".debug_info" not in symbols)

    dynamic = run(["readelf", "-d", BINARY], check=True).stdout
    needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic))
    report("it links only the C library, the C++ runtime, libmicrohttpd, GnuTLS, libcrypto and libpq",
           bool(needed) and needed <= ALLOWED_NEEDED, f"NEEDED: {' '.join(sorted(needed))}")
    # SwiftPM always adds $ORIGIN (the binary's own folder); nothing else, and never a build or toolchain folder.
    runpaths = re.findall(r"\((?:RPATH|RUNPATH)\)\s+Library r(?:un)?path: \[([^\]]*)\]", dynamic)
    report("its only RUNPATH is $ORIGIN", all(path == "$ORIGIN" for path in runpaths), " ".join(runpaths))

    # ldd lists every library the loader would map, each library's own dependencies too: each must resolve,
    # none may come from the toolchain, and each must belong to an installed Debian package.
    ldd = run(["env", "-i", "/usr/bin/ldd", BINARY])
    lines = [line.strip() for line in ldd.stdout.splitlines() if line.strip()]
    paths = []
    for line in lines:
        match = re.match(r"(\S+)(?: => (\S+))? \(0x[0-9a-f]+\)$", line)
        if match and match.group(1) != "linux-vdso.so.1":
            paths.append(match.group(2) or match.group(1))
    report("ldd resolves every library in an empty environment",
           ldd.returncode == 0 and "not found" not in ldd.stdout and len(paths) >= len(needed),
           f"{len(paths)} libraries")
    root = toolchain_root()
    swiftish = [p for p in paths if (root and os.path.realpath(p).startswith(root + os.sep))
                or re.search(r"libswift|libFoundation|libdispatch|libBlocksRuntime|lib_Foundation", p)]
    report("no library of the Swift toolchain (libswiftCore, libFoundation, ...)", not swiftish, " ".join(swiftish))
    # dpkg -S knows each path as its package ships it: with merged /usr, /usr/lib/… may be known as /lib/….
    unowned = []
    for path in sorted({os.path.realpath(p) for p in paths}):
        candidates = {path, re.sub(r"^/usr/", "/", path), "/usr" + path if not path.startswith("/usr/") else path}
        if not any(run(["dpkg", "-S", candidate]).returncode == 0 for candidate in candidates):
            unowned.append(path)
    report("every library comes from an installed Debian package", not unowned, " ".join(unowned))

    clean = run(["env", "-i", BINARY, "--version"])
    report("the binary runs with an empty environment", clean.returncode == 0, clean.stderr.strip())


# 2. --version.
def check_version():
    out = run([BINARY, "--version"]).stdout.strip()
    match = re.fullmatch(r"payhook (\S+) \(commit (\S+), built (\S+)\)", out)
    report("--version reads `payhook VERSION (commit C, built YYYY-MM-DD)`", bool(match), out)
    if not match:
        return
    report("its version is Version.swift's", match.group(1) == source_version(), match.group(1))
    report("its commit is the checkout's", match.group(2) == expected_commit(),
           f"{match.group(2)}, expected {expected_commit()}")
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    today = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch
             else datetime.datetime.now(datetime.timezone.utc)).strftime("%Y-%m-%d")
    # A build that ran just before midnight UTC may say yesterday.
    yesterday = (datetime.datetime.strptime(today, "%Y-%m-%d") - datetime.timedelta(days=1)).strftime("%Y-%m-%d")
    report("its build day is today (UTC)", match.group(3) in (today, yesterday), match.group(3))


# 3. make install.
def check_install(temp):
    stage = os.path.join(temp, "stage")
    make("install", f"DESTDIR={stage}", "PREFIX=/usr/local")
    at = lambda *parts: os.path.join(stage, *parts)  # noqa: E731
    binary = at("usr/local/bin/payhook")
    report("install: the binary in PREFIX/bin, executable", os.access(binary, os.X_OK)
           and run([binary, "--version"]).stdout == run([BINARY, "--version"]).stdout)
    pages = sorted(os.listdir(at("usr/local/share/man/man1"))) if os.path.isdir(at("usr/local/share/man/man1")) else []
    subcommands = {"serve", "check-config", "sign", "simulate", "verify", "queue", "db"}
    report("install: one man page for payhook and each command",
           "payhook.1" in pages and all(f"payhook.{c}.1" in pages or f"payhook-{c}.1" in pages for c in subcommands),
           " ".join(pages[:12]))
    page = open(at("usr/local/share/man/man1/payhook.1"), encoding="utf-8").read() if "payhook.1" in pages else ""
    report("install: the man page is mdoc naming payhook", ".Dt PAYHOOK 1" in page and ".Sh NAME" in page)
    bash = at("usr/local/share/bash-completion/completions/payhook")
    zsh = at("usr/local/share/zsh/site-functions/_payhook")
    fish = at("usr/local/share/fish/vendor_completions.d/payhook.fish")
    report("install: bash completion, valid bash", os.path.isfile(bash) and "check-config" in open(bash).read()
           and run(["bash", "-n", bash]).returncode == 0)
    report("install: zsh completion", os.path.isfile(zsh) and open(zsh).read().startswith("#compdef payhook"))
    report("install: fish completion", os.path.isfile(fish)
           and re.search(r"^complete -c '?payhook'? .*check-config", open(fish).read(), re.M))
    example = open(os.path.join(ROOT, "packaging", "payhook.example.toml"), encoding="utf-8").read()
    report("install: the example config in share/doc/payhook",
           os.path.isfile(at("usr/local/share/doc/payhook/payhook.example.toml")))
    config = at("etc/payhook/payhook.toml")
    report("install: /etc/payhook/payhook.toml from the example", os.path.isfile(config)
           and open(config).read() == example)
    with open(config, "a") as f:
        f.write("# the admin's edit\n")
    make("install", f"DESTDIR={stage}", "PREFIX=/usr/local")
    report("install again: an existing /etc/payhook/payhook.toml is kept", "# the admin's edit" in open(config).read())
    unit = at("usr/local/lib/systemd/system/payhook.service")
    report("install: the unit in PREFIX/lib/systemd/system", os.path.isfile(unit))
    return stage, unit


# 4. The unit.
def check_unit(stage, unit):
    text = open(unit, encoding="utf-8").read()
    lines = {line.strip() for line in text.splitlines()}
    missing = [line for line in UNIT_LINES if line not in lines]
    report("unit: the service, user, state and hardening lines of docs/deploy.md §3", not missing, ", ".join(missing))
    report("unit: ExecStart runs the installed binary on /etc/payhook/payhook.toml",
           "ExecStart=/usr/local/bin/payhook serve --config /etc/payhook/payhook.toml" in lines)
    report("unit: LimitNOFILE set", any(re.fullmatch(r"LimitNOFILE=\d+", line) for line in lines))

    # systemd-analyze verify loads the unit beside the machine's own units and checks that ExecStart's binary
    # exists and is executable. A copy whose ExecStart names the staged binary is checked, so that works before
    # anything is installed and without a running systemd. (With --root=STAGE it would look for
    # sysinit.target and /bin/kill below the stage too, and fail without saying why.) --man=no: the
    # Documentation= man page is not installed on this machine.
    checked = os.path.join(os.path.dirname(stage), "payhook.service")
    with open(checked, "w") as f:
        f.write(text.replace("/usr/local/bin/payhook", os.path.join(stage, "usr/local/bin/payhook")))
    verify_unit("unit: systemd-analyze verify accepts it, without a warning", checked)
    # The same with a mistake in it, so the check above is known to look at the unit.
    broken = os.path.join(os.path.dirname(stage), "payhook-broken.service")
    with open(broken, "w") as f:
        f.write(open(checked).read().replace("ProtectSystem=strict", "ProtectSystem=sometimes"))
    refused = run(["systemd-analyze", "verify", "--man=no", broken])
    report("unit: systemd-analyze verify complains about a bad value", f"{broken}:" in refused.stdout + refused.stderr
           and "Failed to parse" in refused.stdout + refused.stderr)

    security = run(["systemd-analyze", "security", "--offline=yes", checked])
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", security.stdout)
    report("unit: systemd-analyze security rates its exposure at most 2.0 (OK)",
           bool(score) and float(score.group(1)) <= 2.0, score.group(0) if score else security.stderr.strip()[:300])


def verify_unit(name, path):
    verify = run(["systemd-analyze", "verify", "--man=no", path])
    noise = [line for line in (verify.stdout + verify.stderr).splitlines() if line.strip()]
    report(name, verify.returncode == 0 and not noise, " | ".join(noise)[:600])


# 5. The Debian package.
def check_deb(temp):
    if os.geteuid() != 0:
        report("deb: installing the package needs root (CI runs as root)", False)
        return
    if run(["dpkg-query", "-W", "payhook"]).returncode == 0:
        report("deb: no payhook package installed before the test", False, "remove it first; the test would replace it")
        return
    user_existed = has_user("payhook")
    state_existed = os.path.exists("/var/lib/payhook")
    etc_existed = os.path.exists("/etc/payhook")
    try:
        make("deb")
        debs = [name for name in os.listdir(DIST) if name.startswith("payhook_") and name.endswith(".deb")]
        deb = os.path.join(DIST, f"payhook_{source_version()}_{run(['dpkg', '--print-architecture']).stdout.strip()}.deb")
        report("deb: make deb built the package", os.path.isfile(deb), " ".join(debs))
        info = run(["dpkg-deb", "--field", deb, "Depends"]).stdout
        report("deb: Depends names libc6, libmicrohttpd12, libgnutls30, libssl3 and libpq5",
               all(re.search(rf"\b{name}\b", info) for name in ("libc6", "libmicrohttpd12", "libgnutls30", "libssl3", "libpq5")), info.strip())
        conffiles = run(["dpkg-deb", "--ctrl-tarfile", deb], text=False).stdout
        report("deb: /etc/payhook/payhook.toml is a conffile", b"/etc/payhook/payhook.toml" in conffiles)
        contents = run(["dpkg-deb", "--contents", deb], check=True).stdout
        files = [line.split()[-1].lstrip(".") for line in contents.splitlines() if not line.startswith("d")]

        installed = run(["dpkg", "-i", deb])
        report("deb: dpkg -i installs it", installed.returncode == 0, installed.stderr.strip()[-600:])
        version = run(["/usr/bin/payhook", "--version"])
        report("deb: /usr/bin/payhook --version", version.returncode == 0
               and version.stdout == run([BINARY, "--version"]).stdout, version.stdout.strip())
        # The example's one live table needs its secret file, which the admin writes (docs/deploy.md §2).
        check = run(["/usr/bin/payhook", "check-config", "--config", "/etc/payhook/payhook.toml"])
        report("deb: check-config on the installed example, before its secret exists, names the missing file",
               check.returncode == 1 and "unified.secret" in check.stderr, check.stderr.strip()[:300])
        with open(SECRET, "w") as f:
            f.write("0123456789abcdef0123456789abcdef\n")
        check = run(["/usr/bin/payhook", "check-config", "--config", "/etc/payhook/payhook.toml"])
        report("deb: payhook check-config accepts the installed example config once its secret is there",
               check.returncode == 0 and "1 [[unified]]" in check.stdout, (check.stdout + check.stderr).strip()[:300])
        os.unlink(SECRET)
        report("deb: the payhook system user exists", has_user("payhook") and pwd.getpwnam("payhook").pw_uid < 1000)
        etc = os.stat("/etc/payhook")
        report("deb: /etc/payhook is root:payhook 0750", etc.st_uid == 0 and etc.st_gid == pwd.getpwnam("payhook").pw_gid
               and stat.S_IMODE(etc.st_mode) == 0o750, oct(stat.S_IMODE(etc.st_mode)))
        report("deb: the unit is installed and not enabled", os.path.isfile(UNIT_INSTALLED)
               and not os.path.exists("/etc/systemd/system/multi-user.target.wants/payhook.service"))
        verify_unit("deb: systemd-analyze verify accepts the installed unit as it is", UNIT_INSTALLED)
        check_example_tables(temp)

        removed = run(["dpkg", "-r", "payhook"])
        left = [f for f in files if os.path.lexists(f) and f != "/etc/payhook/payhook.toml"]
        report("deb: dpkg -r removes every file but the conffile", removed.returncode == 0 and not left
               and os.path.isfile("/etc/payhook/payhook.toml"), " ".join(left))
        purged = run(["dpkg", "-P", "payhook"])
        left = [f for f in files if os.path.lexists(f)]
        report("deb: dpkg -P leaves no file of the package, nor /etc/payhook", purged.returncode == 0 and not left
               and not os.path.exists("/etc/payhook") and run(["dpkg-statoverride", "--list", "/etc/payhook"]).returncode != 0,
               " ".join(left))
        report("deb: purge keeps the payhook user and /var/lib/payhook (docs/deploy.md §2)",
               has_user("payhook") and os.path.isdir("/var/lib/payhook"))
    finally:
        if os.path.exists(SECRET):
            os.unlink(SECRET)
        if run(["dpkg-query", "-W", "payhook"]).returncode == 0:
            run(["dpkg", "-P", "payhook"])
        if not user_existed and has_user("payhook"):
            run(["userdel", "payhook"])
            run(["groupdel", "payhook"])
        if not state_existed and os.path.exists("/var/lib/payhook"):
            shutil.rmtree("/var/lib/payhook", ignore_errors=True)
        if not etc_existed and os.path.exists("/etc/payhook"):
            shutil.rmtree("/etc/payhook", ignore_errors=True)


def check_example_tables(temp):
    """The example's commented [[wechat]] table is valid once uncommented and given its key."""
    text = open("/etc/payhook/payhook.toml", encoding="utf-8").read()
    folder = os.path.join(temp, "example")
    os.makedirs(folder)
    for name in ("unified.secret", "wechat.key"):
        with open(os.path.join(folder, name), "w") as f:
            f.write("0123456789abcdef0123456789abcdef\n")
    lines, keep = [], False
    for line in text.splitlines():
        table = re.match(r"#\[\[(\w+)\]\]$", line)
        if table:
            keep = table.group(1) == "wechat"
            lines.append(line[1:] if keep else line)
            continue
        if keep and re.match(r"#[a-z_]", line):
            lines.append(line[1:])
            continue
        keep = keep and line.startswith("#")
        lines.append(line)
    config = os.path.join(folder, "payhook.toml")
    with open(config, "w") as f:
        f.write("\n".join(lines).replace('"/var/lib/payhook/spool"', '"spool"') + "\n")
    check = run(["/usr/bin/payhook", "check-config", "--config", config])
    report("deb: the example's [[wechat]] table checks out once uncommented",
           check.returncode == 0 and "1 [[unified]], 1 [[wechat]]" in check.stdout, (check.stdout + check.stderr).strip()[:300])


def has_user(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


# 6. A machine without apt-get and dpkg.
def check_non_debian(temp):
    # Every command of the machine but apt's and dpkg's.
    bin_dir = os.path.join(temp, "bin")
    os.makedirs(bin_dir)
    for folder in ("/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        for name in os.listdir(folder) if os.path.isdir(folder) else []:
            target = os.path.join(bin_dir, name)
            if re.match(r"(apt|dpkg)", name) or os.path.lexists(target):
                continue
            os.symlink(os.path.join(folder, name), target)
    swift = shutil.which("swift")
    if swift and not os.path.lexists(os.path.join(bin_dir, "swift")):
        os.symlink(swift, os.path.join(bin_dir, "swift"))
    empty = os.path.join(temp, "no-pkgconfig")
    os.makedirs(empty)
    env = {"PATH": bin_dir, "HOME": temp, "PKG_CONFIG_LIBDIR": empty, "PKG_CONFIG_PATH": ""}
    for target in ("build", "release"):
        result = make(target, env=env, check=False)
        message = result.stderr.strip()
        report(f"no apt-get/dpkg, no libraries: make {target} fails with one sentence naming them",
               result.returncode != 0 and "libmicrohttpd gnutls libcrypto libpq" in message and "pkg-config" in message
               and "dpkg" not in message and "apt" not in message.replace("docs/deploy.md", "")
               and message.count("\n") <= 1, message[:300])
    env_found = dict(env, PKG_CONFIG_LIBDIR="")
    del env_found["PKG_CONFIG_LIBDIR"]
    found = make("system-libs", env=env_found, check=False)
    report("no apt-get/dpkg, libraries present: the check passes", found.returncode == 0, found.stderr.strip()[:300])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-build", action="store_true", help="check the binary already in .build/dist")
    parser.add_argument("--skip-deb", action="store_true", help="leave out the Debian package (needs root)")
    options = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="payhook-package-") as temp:
        steps = [("release", lambda: check_release(options.skip_build)), ("version", check_version)]
        staged = {}
        steps.append(("install", lambda: staged.update(zip(("stage", "unit"), check_install(temp)))))
        steps.append(("unit", lambda: check_unit(staged["stage"], staged["unit"])))
        if not options.skip_deb:
            steps.append(("deb", lambda: check_deb(temp)))
        steps.append(("non-debian", lambda: check_non_debian(temp)))
        for name, step in steps:
            try:
                step()
            except Exception as error:  # a step that cannot run is a failure of that step, and the rest still run
                report(f"{name}: could not run", False, str(error)[-600:])
                if name == "release":
                    break
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed, {time.monotonic() - started:.0f} s")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
