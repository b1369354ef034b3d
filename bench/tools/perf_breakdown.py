#!/usr/bin/env python3
"""Shares of perf samples by kind of work, from `perf script -F comm,tid,ip,sym,dso` output.

    python3 bench/tools/perf_breakdown.py perf.txt

Each sample counts once, for the first kind (in the order below) whose pattern matches a frame of
its call chain: system calls by what they do, then payhook's own stages. Samples matching none
are "other", split by whether the sampled instruction was in the kernel. A second table gives the
shares by shared object (the sampled instruction's library).
"""
import collections
import re
import sys

KINDS = [
    ("fsync (record files and directories)", r"do_fsync|__x64_sys_fsync"),
    ("link into new/ and ids/", r"do_linkat|__x64_sys_link\b"),
    ("create and write the tmp/ file", r"do_sys_openat2|ksys_write|__x64_sys_write\b"),
    ("unlink the tmp/ name", r"do_unlinkat"),
    ("stat of the ledger entry", r"newfstatat|vfs_fstatat"),
    ("TCP send (with the loopback delivery to the client)", r"sendmsg"),
    ("TCP receive", r"__libc_recv|recvfrom"),
    ("poll(2) in the listener threads", r"\b__poll\b|do_sys_poll"),
    ("futex: thread hand-offs", r"futex"),
    ("callback source: decode, verify, dedupe key, event", r"SourceV7process"),
    ("event JSON, fingerprints and their checks", r"jsonBytes|validateBytes|EventV11fingerprint|JSONReader"),
    ("router: metrics, logging, answer", r"RouterC6handle"),
    ("HTTP callbacks: request context, headers", r"PayhookHTTP9Callbacks"),
]


def samples(path):
    current = []
    with open(path, errors="replace") as f:
        for line in f:
            if not line.strip():
                if current:
                    yield current
                current = []
            elif not line[0].isspace():
                if current:
                    yield current
                current = [line.strip()]
            else:
                current.append(line.strip())
    if current:
        yield current


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: perf_breakdown.py PERF_SCRIPT_OUTPUT")
    kinds = collections.Counter()
    objects = collections.Counter()
    total = 0
    for sample in samples(sys.argv[1]):
        total += 1
        frames = sample[1:]
        chain = " ".join(frames)
        for name, pattern in KINDS:
            if re.search(pattern, chain):
                kinds[name] += 1
                break
        else:
            kinds["other, in the kernel" if frames and "[kernel" in frames[0] else "other, in user space"] += 1
        found = re.search(r"\(([^)]*)\)\s*$", frames[0]) if frames else None
        objects[found.group(1).rsplit("/", 1)[-1] if found else "?"] += 1
    if not total:
        sys.exit("no samples")
    print(f"{total} samples")
    print("\n| kind of work | share of samples |\n|---|---:|")
    for name, count in kinds.most_common():
        print(f"| {name} | {100 * count / total:.1f}% |")
    print("\n| shared object | share of samples |\n|---|---:|")
    for name, count in objects.most_common(8):
        print(f"| {name} | {100 * count / total:.1f}% |")


if __name__ == "__main__":
    main()
