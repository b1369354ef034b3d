#!/bin/bash
# routerloop.sh: payhook's own CPU per duplicate, without HTTP (Sources/routerbench/main.swift).
#
#   bench/tools/routerloop.sh [REPEAT [BINARY...]]
#
# Without BINARY it builds .build/release/routerbench and runs it REPEAT times (default 3). With several
# BINARYs (copies of routerbench built from different commits) it alternates them REPEAT times, so that each
# pair of measurements shares the machine's state. Each run gets a fresh spool in /dev/shm and the bench's
# config and unified request set (bench/.data/requests, written by `make bench`). Prints one line per run.
set -euo pipefail
repeat=${1:-3}
shift || true
repo=$(cd "$(dirname "$0")/../.." && pwd)
# A glob, not ls: under pipefail a failing ls would end the script before this message.
sets=("$repo"/bench/.data/requests/unified-*.txt)
[ -e "${sets[0]}" ] || { echo "routerloop.sh: no request sets in bench/.data/requests: run make bench once" >&2; exit 1; }
lines=${sets[0]}
binaries=("$@")
if [ ${#binaries[@]} -eq 0 ]; then
  (cd "$repo" && swift build -c release --product routerbench >&2)
  binaries=("$repo/.build/release/routerbench")
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/payhook-routerloop.XXXXXX")
spool=/dev/shm/payhook-routerloop.$$
trap 'rm -rf "$work" "$spool"' EXIT
config=$(python3 "$repo/bench/run.py" --write-config "$work" "$spool" 2)
for round in $(seq "$repeat"); do
  for binary in "${binaries[@]}"; do
    rm -rf "$spool"
    result=$("$binary" "$config" "$lines")
    echo "$binary run $round: $result"
  done
done
