#!/usr/bin/env python3
"""Every document a file of this repository cites must be a file of this repository.

Comments and docs cite design documents as `docs/durability.md §6`, `README.md`, `docs/limits.md`.
This check finds every `*.md` name in the tracked text files and fails, listing them, when one names no
file of the repository: relative to the repository's root or to the citing file's folder, or, for a bare
name, as the last part of a tracked path.

    python3 .ci/check-citations.py [ROOT]
"""
import os
import re
import subprocess
import sys

root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".")
files = subprocess.run(["git", "-C", root, "ls-files"], capture_output=True, text=True, check=True).stdout.split()
text_suffixes = (".swift", ".md", ".py", ".sh", ".toml", ".h", ".c", ".lua", ".in", "Makefile", "run")
name = re.compile(r"(?<![\w./-])((?:\.{1,2}/)?[\w./-]*[\w-]\.md)\b")
problems = []
for relative in files:
    if not relative.endswith(text_suffixes) or relative.startswith("Fixtures/"):
        continue
    path = os.path.join(root, relative)
    try:
        text = open(path, encoding="utf-8").read()
    except (UnicodeDecodeError, FileNotFoundError):
        continue
    folder = os.path.dirname(path)
    for number, line in enumerate(text.splitlines(), 1):
        for match in name.finditer(line):
            cited = match.group(1)
            if any(os.path.isfile(os.path.join(base, cited)) for base in (root, folder)):
                continue
            if "/" not in cited and any(f.endswith("/" + cited) for f in files):
                continue
            problems.append(f"{relative}:{number}: {cited} is not a file of this repository")
print("\n".join(problems) if problems else "every cited document is a file of this repository")
sys.exit(1 if problems else 0)
