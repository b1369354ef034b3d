#!/usr/bin/env python3
"""Every target of Package.swift imports exactly the modules it declares, and no file carries a path of the
machine it was made on.

MemberImportVisibility and InternalImportsByDefault make the compiler refuse a module a file uses without
importing it, but not a declared dependency nobody imports, nor an import that only builds because another
dependency brings the module along. This check closes both gaps by reading Package.swift and the imports of
each target's Swift files (docs/architecture.md §1 is the table it keeps true).

    python3 .ci/check-manifest.py [ROOT]
"""
import glob
import os
import re
import subprocess
import sys

root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".")
manifest = open(os.path.join(root, "Package.swift"), encoding="utf-8").read()

# `let name: Target.Dependency = .product(name: "Module", ...)` constants used in dependency lists.
products = dict(re.findall(r'let (\w+): Target\.Dependency = \.product\(name: "(\w+)"', manifest))
# Modules of the platform and the toolchain, never declared.
platform = {"Foundation", "FoundationEssentials", "Glibc", "Musl", "Darwin", "Dispatch", "Synchronization", "Testing"}
# Declared without being imported, on purpose: the executable the process tests run must be built first.
unimported = {("PayhookServerTests", "payhook")}

target = re.compile(
    r'\.(?:target|testTarget|executableTarget)\(\s*name: "(\w+)"(?:,\s*path: "([^"]+)")?(?:,\s*dependencies: \[([^\]]*)\])?')
imported = re.compile(r'^\s*(?:(?:public|package|internal|@testable|@_spi\([^)]*\))\s+)*import (\w+)\s*$')


def header_imports(text):
    """The imports of a file's header: up to its first line that is neither an import, a conditional, a
    comment nor blank (so an `import json` inside a string of Python code does not count)."""
    modules = set()
    for line in text.splitlines():
        stripped = line.strip()
        found = imported.match(line)
        if found:
            modules.add(found.group(1))
        elif stripped and not stripped.startswith(("#if", "#elseif", "#else", "#endif", "//")):
            break
    return modules
problems = []
for match in target.finditer(manifest):
    name, path, dependencies = match.group(1), match.group(2), match.group(3) or ""
    declared = set(re.findall(r'"(\w+)"', dependencies))
    declared |= {products[word] for word in re.findall(r'\b(\w+)\b', dependencies) if word in products}
    folder = path or ("Tests/" if name.endswith("Tests") else "Sources/") + name
    used = set()
    for file in glob.glob(os.path.join(root, folder, "**", "*.swift"), recursive=True):
        used |= header_imports(open(file, encoding="utf-8").read())
    for module in sorted(declared - used):
        if (name, module) not in unimported:
            problems.append(f"{name}: declares {module} but no file imports it")
    for module in sorted(used - declared - platform - {name}):
        problems.append(f"{name}: imports {module} without declaring it")

# Absolute paths of a build machine: home and work folders, the toolchain's install folder.
machine = subprocess.run(
    ["git", "-C", root, "grep", "-nIE", r"(^|[^\w.])/(work|home|Users|opt/swift|root)/[A-Za-z0-9_.-]"],
    capture_output=True, text=True).stdout.splitlines()
problems += [f"{line}: an absolute path of a machine" for line in machine]

print("\n".join(problems) if problems else "every target imports what it declares; no machine paths")
sys.exit(1 if problems else 0)
