#!/usr/bin/env bash
# Builds payhook's libFuzzer targets into .build-fuzz/ and runs each one for a bounded time.
#
#   Fuzz/fuzz.sh [--seconds N] [--build-only] [--keep-corpus] [target…]
#
# Targets: query-decoder unified-verifier wechat-xml refund-decryptor event-file wechat-v3 alipay md5-notify
# conninfo forwarded queue-time
# (default: all of them).
# Exits non-zero if a build fails or any target finds a crash or property violation; the crash input's
# path is printed (it is kept under .build-fuzz/artifacts/, which git ignores).
#
# The seed corpus is copied from Fixtures/ (and Fuzz/Seeds/) into a fresh temporary directory for every
# run, so what the fuzzer generates never lands in the repository.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/.build-fuzz
SWIFTC=${SWIFTC:-swiftc}

ALL_TARGETS=(query-decoder unified-verifier wechat-xml refund-decryptor event-file wechat-v3 alipay md5-notify conninfo forwarded queue-time)
SECONDS_PER_TARGET=60
BUILD_ONLY=0
KEEP_CORPUS=0
TARGETS=()

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) SECONDS_PER_TARGET=${2:?--seconds needs a number}; shift 2 ;;
        --seconds=*) SECONDS_PER_TARGET=${1#--seconds=}; shift ;;
        --build-only) BUILD_ONLY=1; shift ;;
        --keep-corpus) KEEP_CORPUS=1; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "fuzz.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) TARGETS+=("$1"); shift ;;
    esac
done
# libFuzzer reads -max_total_time=0 as "no limit", so 0 is refused rather than passed on.
case "$SECONDS_PER_TARGET" in ''|*[!0-9]*|0) echo "fuzz.sh: --seconds needs a whole number above 0" >&2; exit 2 ;; esac
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL_TARGETS[@]}")
for t in "${TARGETS[@]}"; do
    case " ${ALL_TARGETS[*]} " in *" $t "*) ;; *) echo "fuzz.sh: unknown target '$t' (known: ${ALL_TARGETS[*]})" >&2; exit 2 ;; esac
done

# Per target: its source, the payhook modules it links (dependents first, for the static linker), its
# dictionary. Seeds are chosen in seed_corpus below.
target_source() {
    case "$1" in
        query-decoder) echo QueryDecoder ;; unified-verifier) echo UnifiedVerifier ;;
        wechat-xml) echo WeChatXML ;; refund-decryptor) echo RefundDecryptor ;;
        event-file) echo EventFile ;; wechat-v3) echo WeChatV3 ;;
        alipay) echo Alipay ;; md5-notify) echo MD5Notify ;; conninfo) echo ConnInfo ;;
        forwarded) echo Forwarded ;; queue-time) echo QueueTime ;;
    esac
}
target_modules() {
    case "$1" in
        query-decoder) echo PayhookCore ;;
        unified-verifier) echo PayhookUnified PayhookCrypto PayhookCore ;;
        wechat-xml|refund-decryptor) echo PayhookWeChat PayhookCrypto PayhookCore ;;
        event-file) echo PayhookSpoolFormat PayhookCore CPayhookShim ;;
        wechat-v3) echo PayhookWeChat PayhookSpoolFormat PayhookCrypto PayhookCore CPayhookShim ;;
        alipay) echo PayhookAlipay PayhookCrypto PayhookCore ;;
        md5-notify) echo PayhookXxPay PayhookCrypto PayhookCore ;;
        conninfo) echo PayhookCore ;;
        forwarded) echo PayhookHTTP PayhookCore ;;
        queue-time) echo PayhookStore PayhookCore ;;
    esac
}
# Longest input libFuzzer may generate. Real queries are about 300 bytes, so 1 KiB leaves room for
# every structure while keeping the (linear) decoder fast; bodies keep libFuzzer's default of 4 KiB,
# enough for a 257th child.
target_max_len() {
    case "$1" in
        query-decoder|unified-verifier|md5-notify|conninfo|forwarded) echo 1024 ;;
        queue-time) echo 64 ;;
        event-file) echo 8192 ;;
        *) echo 4096 ;;
    esac
}
target_dictionary() {
    case "$1" in
        query-decoder|unified-verifier) echo "$ROOT/Fuzz/Dictionaries/query.dict" ;;
        wechat-xml|refund-decryptor) echo "$ROOT/Fuzz/Dictionaries/xml.dict" ;;
        event-file) echo "$ROOT/Fuzz/Dictionaries/json.dict" ;;
        wechat-v3) echo "$ROOT/Fuzz/Dictionaries/wechat-v3.dict" ;;
        alipay) echo "$ROOT/Fuzz/Dictionaries/alipay.dict" ;;
        md5-notify) echo "$ROOT/Fuzz/Dictionaries/md5-notify.dict" ;;
        conninfo) echo "$ROOT/Fuzz/Dictionaries/conninfo.dict" ;;
        forwarded) echo "$ROOT/Fuzz/Dictionaries/forwarded.dict" ;;
        queue-time) echo "$ROOT/Fuzz/Dictionaries/queue-time.dict" ;;
    esac
}

# ---------------------------------------------------------------------------------------------------
# Build
#
# Each payhook module is compiled once, as its own module (so `public import PayhookCore` and friends
# resolve exactly as under SwiftPM, and nothing under Sources/ is copied or edited), into a static
# library instrumented for libFuzzer coverage and AddressSanitizer. -O keeps Swift's overflow and bounds
# traps (only -Ounchecked drops them) while running several times faster than -Onone. lld is used
# because gold warns about every ASan helper symbol it cannot export.

SWIFT_FLAGS=(-swift-version 6 -O -g -sanitize=fuzzer,address -parse-as-library -use-ld=lld)
# The system-library module maps for OpenSSL and libpq (the conninfo target's reference), and wherever
# pkg-config says their headers live.
CRYPTO_INCLUDES=(-I "$ROOT/Sources/COpenSSL" -I "$ROOT/Sources/CLibPQ" -I "$ROOT/Sources/CPayhookShim/include")
read -r -a CRYPTO_CFLAGS <<<"$(pkg-config --cflags-only-I libcrypto 2>/dev/null || true)"
read -r -a CRYPTO_LIBS <<<"$(pkg-config --libs libcrypto 2>/dev/null || echo -lcrypto)"
read -r -a PQ_CFLAGS <<<"$(pkg-config --cflags-only-I libpq 2>/dev/null || true)"
for flag in "${CRYPTO_CFLAGS[@]}" "${PQ_CFLAGS[@]}"; do [ -n "$flag" ] && CRYPTO_INCLUDES+=(-Xcc "$flag"); done

module_deps() {
    case "$1" in
        PayhookCore|PayhookCrypto) ;;
        PayhookUnified|PayhookWeChat|PayhookAlipay|PayhookXxPay) echo PayhookCore PayhookCrypto ;;
        PayhookSpoolFormat) echo PayhookCore CPayhookShim ;;
        PayhookStore) echo PayhookCore ;;
    esac
}

# True when $1 is missing or older than any later argument (files or directories of sources).
stale() {
    local out=$1; shift
    [ -e "$out" ] || return 0
    [ -n "$(find "$@" "$ROOT/Fuzz/fuzz.sh" -newer "$out" -print -quit 2>/dev/null)" ]
}

# The C shim (Sources/CPayhookShim): compiled with clang, uninstrumented, into a static library; its module map
# is found through the include folder.
build_shim() {
    local lib=$OUT/lib/libCPayhookShim.a
    stale "$lib" "$ROOT/Sources/CPayhookShim" || return 0
    echo "fuzz.sh: compiling CPayhookShim"
    "${CLANG:-clang}" -O1 -c "$ROOT/Sources/CPayhookShim/shim.c" -I "$ROOT/Sources/CPayhookShim/include" -o "$OUT/lib/shim.o"
    rm -f "$lib"
    ar rcs "$lib" "$OUT/lib/shim.o"
}

# The Swift files a module is compiled from: all of Sources/<module>, except for PayhookHTTP, whose
# forwarding rules (TrustedProxies.swift and the two files it uses) are compiled without the listener, which
# needs libmicrohttpd and swift-log.
module_sources() {
    case "$1" in
        PayhookHTTP) printf '%s\n' "$ROOT/Sources/PayhookHTTP/TrustedProxies.swift" "$ROOT/Sources/PayhookHTTP/ListenAddress.swift" "$ROOT/Sources/PayhookHTTP/LogText.swift" ;;
        *) printf '%s\n' "$ROOT/Sources/$1"/*.swift ;;
    esac
}

build_module() {
    local module=$1 deps=() d sources=()
    read -r -a deps <<<"$(module_deps "$module")"
    local lib=$OUT/lib/lib$module.a inputs=("$ROOT/Sources/$module")
    for d in "${deps[@]}"; do [ -n "$d" ] && inputs+=("$OUT/lib/lib$d.a"); done
    stale "$lib" "${inputs[@]}" || return 0
    echo "fuzz.sh: compiling $module"
    mapfile -t sources < <(module_sources "$module")
    "$SWIFTC" "${SWIFT_FLAGS[@]}" -wmo -num-threads 2 -module-name "$module" \
        -I "$OUT/modules" "${CRYPTO_INCLUDES[@]}" \
        -emit-module -emit-module-path "$OUT/modules/$module.swiftmodule" \
        -emit-library -static -o "$lib" "${sources[@]}"
}

build_target() {
    local target=$1 source modules=() m
    source=$(target_source "$target")
    read -r -a modules <<<"$(target_modules "$target")"
    local bin=$OUT/bin/$target inputs=("$ROOT/Fuzz/Targets/$source.swift" "$ROOT/Fuzz/Support") libs=()
    for m in "${modules[@]}"; do inputs+=("$OUT/lib/lib$m.a"); libs+=(-l"$m"); done
    stale "$bin" "${inputs[@]}" || return 0
    echo "fuzz.sh: linking $target"
    "$SWIFTC" "${SWIFT_FLAGS[@]}" -module-name "Fuzz$source" \
        -I "$OUT/modules" "${CRYPTO_INCLUDES[@]}" \
        "$ROOT/Fuzz/Targets/$source.swift" "$ROOT/Fuzz/Support"/*.swift \
        -L "$OUT/lib" "${libs[@]}" "${CRYPTO_LIBS[@]}" $([ "$target" = conninfo ] && echo -lpq) -o "$bin"
}

# Runs the given commands (one per argument, each a function call) two at a time, the machine's core
# count in CI; fails if any of them failed.
in_parallel() {
    local pids=() failed=0 cmd pid
    for cmd in "$@"; do
        $cmd &
        pids+=($!)
        if [ ${#pids[@]} -ge 2 ]; then
            wait "${pids[0]}" || failed=1
            pids=("${pids[@]:1}")
        fi
    done
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    return $failed
}

needed_modules=()
for t in "${TARGETS[@]}"; do
    for m in $(target_modules "$t"); do
        case " ${needed_modules[*]} " in *" $m "*) ;; *) needed_modules+=("$m") ;; esac
    done
done
has_module() { case " ${needed_modules[*]} " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

mkdir -p "$OUT/lib" "$OUT/modules" "$OUT/bin" "$OUT/logs" "$OUT/artifacts"
build_started=$(date +%s)
# Layer by layer: the C shim, Core and Crypto depend on nothing; Unified, WeChat, Alipay and XxPay on Core and Crypto, the spool
# format on Core and the shim; targets on modules.
layer=()
has_module CPayhookShim && layer+=("build_shim")
for m in PayhookCore PayhookCrypto PayhookHTTP; do has_module "$m" && layer+=("build_module $m"); done
in_parallel "${layer[@]}" || { echo "fuzz.sh: build failed" >&2; exit 1; }
layer=()
for m in PayhookUnified PayhookWeChat PayhookAlipay PayhookXxPay PayhookSpoolFormat PayhookStore; do has_module "$m" && layer+=("build_module $m"); done
[ ${#layer[@]} -eq 0 ] || in_parallel "${layer[@]}" || { echo "fuzz.sh: build failed" >&2; exit 1; }
layer=()
for t in "${TARGETS[@]}"; do layer+=("build_target $t"); done
in_parallel "${layer[@]}" || { echo "fuzz.sh: build failed" >&2; exit 1; }
echo "fuzz.sh: build took $(( $(date +%s) - build_started )) s"

[ "$BUILD_ONLY" = 0 ] || exit 0

# ---------------------------------------------------------------------------------------------------
# Seeds and runs

WORK=$(mktemp -d "${TMPDIR:-/tmp}/payhook-fuzz.XXXXXX")
if [ "$KEEP_CORPUS" = 1 ]; then
    trap 'echo "fuzz.sh: corpus kept in $WORK"' EXIT
else
    trap 'rm -rf "$WORK"' EXIT
fi

# Copies the fixtures that fit a target into its working corpus directory $2.
seed_corpus() {
    local target=$1 dir=$2 f n=0
    case "$target" in
        query-decoder|unified-verifier)
            for f in "$ROOT"/Fixtures/unified/*.query "$ROOT"/Fixtures/mistakes/*.query; do cp "$f" "$dir/"; done ;;
        wechat-xml)
            # Fuzz/Seeds/xml adds what the fixtures lack: character data with references, a declaration,
            # a byte order mark, whitespace and self-closing children (the fixtures are all CDATA).
            for f in "$ROOT"/Fixtures/wechat/*.xml "$ROOT"/Fixtures/mistakes/*.xml "$ROOT"/Fuzz/Seeds/xml/*; do cp "$f" "$dir/"; done ;;
        refund-decryptor)
            # The raw half of the target reads its input as req_info itself: seed it with the real ones.
            for f in "$ROOT"/Fixtures/wechat/*.xml; do
                if grep -q '<req_info>' "$f"; then
                    n=$((n + 1))
                    sed -n 's/.*<req_info><!\[CDATA\[\([^]]*\)\]\]><\/req_info>.*/\1/p' "$f" | tr -d '\n' >"$dir/req_info-$n"
                fi
            done
            # The structured half reads an input as fields: notifications and decrypted documents.
            for f in "$ROOT"/Fixtures/wechat/*.xml "$ROOT"/Fuzz/Seeds/refund/*; do cp "$f" "$dir/"; done ;;
        event-file)
            # Event files as payhook serve wrote them, one per source.
            for f in "$ROOT"/Fuzz/Seeds/event/*; do cp "$f" "$dir/"; done ;;
        wechat-v3)
            # Each input is read as a body and as a decrypted resource: the vectors' bodies and plaintexts (JSON
            # strings on one line each in Fixtures/wechat-v3, whose only escape is \"), the Go SDK's, and a
            # generic event's resource, which the fixtures lack (Fuzz/Seeds/wechat-v3).
            for f in "$ROOT"/Fixtures/wechat-v3/v3-4.json "$ROOT"/Fixtures/wechat-v3/gen-vectors.json; do
                sed -n 's/^ *"\(body\|plaintext\)": "\(.*\)",\{0,1\}$/\2/p' "$f" | sed 's/\\"/"/g' | {
                    while IFS= read -r line; do
                        n=$((n + 1))
                        printf '%s' "$line" >"$dir/$(basename "$f" .json)-$n"
                    done
                }
            done
            cp "$ROOT/Fixtures/wechat-v3/go-sdk/body.json" "$dir/go-sdk-body.json"
            cp "$ROOT/Fixtures/wechat-v3/go-sdk/plaintext.json" "$dir/go-sdk-plaintext.json"
            for f in "$ROOT"/Fuzz/Seeds/wechat-v3/*; do cp "$f" "$dir/"; done ;;
        alipay)
            # Notifications signed with the test-only key for the target's own tenant, written by the target
            # itself (trade, refund, closed, RSA, GBK, open-platform under both rules), and the real ones of
            # Fixtures/alipay (another app's: the raw reading refuses them, the signed one re-signs them), each
            # at both length parities, which pick the tenant with gateway notifications off or on.
            PAYHOOK_FUZZ_WRITE_SEEDS=$dir "$OUT/bin/alipay" >/dev/null
            for f in "$ROOT"/Fixtures/alipay/*.form; do
                cp "$f" "$dir/"
                { cat "$f"; printf '&'; } >"$dir/$(basename "$f")-amp"
            done ;;
        md5-notify)
            # The XxPay and Jeepay vectors, each at the three lengths modulo 3 that pick the request's form (an
            # empty POST with the query, a GET, a form body): empty trailing pieces change nothing else.
            for f in "$ROOT"/Fixtures/xxpay/*.query "$ROOT"/Fixtures/jeepay/*.form; do
                cp "$f" "$dir/"
                { cat "$f"; printf '&'; } >"$dir/$(basename "$f")-amp"
                { cat "$f"; printf '&&'; } >"$dir/$(basename "$f")-amp2"
            done ;;
        conninfo)
            # Connection strings without a password, in both of libpq's forms (Fuzz/Seeds/conninfo).
            for f in "$ROOT"/Fuzz/Seeds/conninfo/*; do cp "$f" "$dir/"; done ;;
        forwarded)
            # Header lists as nginx sends them, addresses and CIDR blocks (Fuzz/Seeds/forwarded).
            for f in "$ROOT"/Fuzz/Seeds/forwarded/*; do cp "$f" "$dir/"; done ;;
        queue-time)
            # Dates, date-times, RFC 3339 times and durations as operators type them, a DST gap and a 29 February
            # that does not exist (Fuzz/Seeds/queue-time).
            for f in "$ROOT"/Fuzz/Seeds/queue-time/*; do cp "$f" "$dir/"; done ;;
    esac
}

# "key: value" from libFuzzer's final stats, or from its last status line ("cov: 123").
stat_value() { grep -o "^stat::$2: *[0-9]*" "$1" | tail -1 | grep -o '[0-9]*$' || true; }
status_value() { grep -E '^#[0-9]+' "$1" | grep -o "$2: [0-9]*" | tail -1 | grep -o '[0-9]*$' || true; }

# A 16 MiB quarantine instead of 256: Swift allocates constantly, and recycling memory sooner halves the
# page-fault time; use-after-free is still caught within that window. Callers' settings win.
export ASAN_OPTIONS=${ASAN_OPTIONS:-quarantine_size_mb=16}
# Swift's own crash backtracer copies stack memory in a way ASan reports as a stack-buffer-underflow,
# which buries the real finding; libFuzzer and ASan print everything needed.
export SWIFT_BACKTRACE=${SWIFT_BACKTRACE:-enable=no}

failures=0
run_started=$(date +%s)
for t in "${TARGETS[@]}"; do
    corpus=$WORK/$t
    artifacts=$OUT/artifacts/$t
    log=$OUT/logs/$t.log
    mkdir -p "$corpus" "$artifacts"
    seed_corpus "$t" "$corpus"
    seeds=$(find "$corpus" -type f | wc -l)
    echo "fuzz.sh: $t for ${SECONDS_PER_TARGET} s ($seeds seeds, log $log)"
    rc=0
    # CPU time as well as libFuzzer's wall-clock exec/s: on a shared CI machine the two differ a lot.
    TIMEFORMAT='%U %S'
    { time "$OUT/bin/$t" "$corpus" \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=5 -rss_limit_mb=2048 -max_len="$(target_max_len "$t")" \
        -dict="$(target_dictionary "$t")" -artifact_prefix="$artifacts/" -print_final_stats=1 \
        >"$log" 2>&1 || rc=$?; } 2>"$WORK/$t.time"
    runs=$(stat_value "$log" number_of_executed_units)
    cpu=$(awk '{ printf "%.1f", $1 + $2 }' "$WORK/$t.time")
    printf 'fuzz.sh: %-17s runs %s, %s exec/s (%s per CPU second), cov %s, ft %s, corpus %s -> %s\n' "$t" \
        "${runs:-?}" "$(stat_value "$log" average_exec_per_sec)" \
        "$(awk -v r="${runs:-0}" -v c="$cpu" 'BEGIN { if (c > 0) printf "%d", r / c; else print "?" }')" \
        "$(status_value "$log" cov | grep . || echo ?)" "$(status_value "$log" ft | grep . || echo ?)" \
        "$seeds" "$(find "$corpus" -type f | wc -l)"
    if [ "$rc" -ne 0 ]; then
        failures=$((failures + 1))
        echo "fuzz.sh: $t FAILED (exit $rc):" >&2
        # The violated property (Swift's "Fatal error: fuzz property violated: …"), or the sanitizer's or
        # libFuzzer's report with its first stack frames.
        grep -a -E 'Fatal error|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|^ *#[0-9]+ 0x|SUMMARY:' "$log" \
            | cut -c1-400 | head -25 >&2 || true
        crash=$(grep -o 'Test unit written to .*' "$log" | sed 's/^Test unit written to //' | tail -1)
        if [ -n "$crash" ]; then
            echo "fuzz.sh: $t crash input: $crash (replay: $OUT/bin/$t $crash)" >&2
        fi
    fi
done
echo "fuzz.sh: ran ${#TARGETS[@]} target(s) in $(( $(date +%s) - run_started )) s, $failures failed"
[ "$failures" -eq 0 ]
