#!/bin/bash
# profile.sh: where payhook's CPU goes under load, by perf(1) sampling.
#
#   bench/tools/profile.sh WORKLOAD SPOOL_PARENT [THREADS]
#
# WORKLOAD is unique, dup or wechat (as in bench/run.py); SPOOL_PARENT is where the spool goes
# (a directory on the disk to measure, or /dev/shm); THREADS defaults to payhook's default, 32.
# It starts .build/release/payhook (build it first) on a fresh spool, drives it with wrk -t2 -c64
# for 6 s (bench/lua/callbacks.lua over the request sets bench/run.py generated in
# bench/.data/requests), records 4 s of it with perf record -g at 2 kHz, and prints the share of
# samples by kind of work (bench/tools/perf_breakdown.py). The spool is left in place: deleting
# many files slows file creation on ext4 for minutes (bench/README.md); remove it when done.
set -euo pipefail
workload=${1:?usage: profile.sh WORKLOAD SPOOL_PARENT [THREADS]}
parent=${2:?usage: profile.sh WORKLOAD SPOOL_PARENT [THREADS]}
threads=${3:-32}
repo=$(cd "$(dirname "$0")/../.." && pwd)
binary=$repo/.build/release/payhook
requests=$repo/bench/.data/requests
command -v perf >/dev/null || { echo "profile.sh: perf is not installed (linux-perf)" >&2; exit 1; }
[ -x "$binary" ] || { echo "profile.sh: build first: swift build -c release" >&2; exit 1; }
case $workload in
  unique|dup) sets=("$requests"/unified-*.txt) ;;
  wechat) sets=("$requests"/wechat-*.txt) ;;
  *) echo "profile.sh: WORKLOAD must be unique, dup or wechat" >&2; exit 2 ;;
esac
# A glob, not ls: under pipefail a failing ls would end the script before this message.
[ -e "${sets[0]}" ] || { echo "profile.sh: no request sets in $requests: run make bench once" >&2; exit 1; }
lines=${sets[0]}

work=$(mktemp -d "${TMPDIR:-/tmp}/payhook-profile.XXXXXX")
spool=$parent/payhook-profile.$$.$(date +%s)
config=$(python3 "$repo/bench/run.py" --write-config "$work" "$spool" "$threads")
"$binary" serve --config "$config" > "$work/out.txt" 2> "$work/err.txt" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  port=$(sed -nE 's/.*listening on [^ ]*:([0-9]+) .*/\1/p' "$work/out.txt" | head -1)
  [ -n "$port" ] && break
  sleep 0.05
done
[ -n "${port:-}" ] || { echo "profile.sh: payhook did not start; see $work/err.txt" >&2; exit 1; }
url=http://127.0.0.1:$port
drive() { # WORKLOAD THREADS CONNECTIONS SECONDS MAX_LINES
  WORKLOAD=$1 LINES=$lines WRK_THREADS=$2 MAX_LINES=$5 EXPECT_BODY=success RESULT_OUT=$work/wrk-$1.txt \
    wrk -t"$2" -c"$3" -d"$4"s -s "$repo/bench/lua/callbacks.lua" "$url"
}
# Duplicates: the first 100 events are stored once, then sent over and over.
[ "$workload" = dup ] && drive unique 1 1 1 100 > /dev/null
perf record -F 2000 -g -o "$work/perf.data" -p "$server" -- sleep 4 > /dev/null 2>&1 &
recorder=$!
sleep 0.5
drive "$workload" 2 64 6 150000 | grep -E "Requests/sec|Latency"
wait $recorder
perf script -i "$work/perf.data" -F comm,tid,ip,sym,dso 2> /dev/null > "$work/perf.txt"
python3 "$repo/bench/tools/perf_breakdown.py" "$work/perf.txt"
echo "perf data: $work/perf.data (perf report -i ...); spool left in $spool"
