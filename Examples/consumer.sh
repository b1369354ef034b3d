#!/bin/sh
# An example payhook consumer in POSIX shell, built on `payhook queue take` / `ack` / `nack`.
#
#   consumer.sh SPOOL
#
# It claims the oldest waiting event (take renames new/<id>.json to cur/<id>.json: the rename that succeeds
# owns it, so any number of consumers can run), hands it to handle(), then acknowledges it (ack deletes it
# from cur/) or, when handle() fails, returns it to new/ (nack counts a failed attempt) and pauses.
# Waiting uses inotify inside `payhook queue take --wait`, not polling.
#
# For retries with backoff, dead letters and parallelism, `payhook queue consume --exec CMD` does all of this
# in one process; this script shows the protocol step by step.
#
# Environment:
#   PAYHOOK       the payhook executable (default: payhook on PATH)
#   OUT           where handle() appends each processed event (default: stdout)
#   IDLE_TIMEOUT  exit 0 once no event arrived for this long (e.g. 5s); default: wait for ever
#   RETRY_PAUSE   seconds to pause after a failed event before taking the next one (default 5)
#
# Stop it with SIGTERM or SIGINT: the event in hand is finished first. A consumer killed outright leaves its
# event in cur/, where `payhook queue requeue --older-than DURATION` finds it.
set -eu

spool=${1:?usage: consumer.sh SPOOL}
payhook=${PAYHOOK:-payhook}
out=${OUT:-/dev/stdout}
stopping=

# Your business logic. $1 is the event file (cur/<id>.json), a payhook.event.v1 JSON object; it is yours until
# acked. Exit non-zero to have it retried. Check `amount` and `order_ref` against your own order before
# trusting it: the signature proves only that the values came from the payment platform.
handle() {
    # Here: append the event to $OUT as one line. A real consumer would update its orders database, in a way
    # that tolerates seeing the same event twice (delivery is at least once).
    tr -d '\n' < "$1" >> "$out"
    echo >> "$out"
}

trap 'stopping=1' TERM INT

while [ -z "$stopping" ]; do
    # --allow-empty: "nothing arrived" is exit 0 with no output, so that exit 1 means a real error.
    path=$("$payhook" queue take --spool "$spool" --wait ${IDLE_TIMEOUT:+--timeout "$IDLE_TIMEOUT"} \
        --allow-empty --format path) || exit 1
    if [ -z "$path" ]; then
        # Idle for IDLE_TIMEOUT, or take was interrupted by a signal.
        [ -n "${IDLE_TIMEOUT:-}" ] && exit 0
        continue
    fi
    id=$(basename "$path" .json)
    if handle "$path"; then
        "$payhook" queue ack --spool "$spool" "$id" > /dev/null
        echo "consumer.sh: processed $id" >&2
    else
        "$payhook" queue nack --spool "$spool" --reason "handler failed" "$id" > /dev/null
        echo "consumer.sh: $id failed; returned to new/" >&2
        sleep "${RETRY_PAUSE:-5}"
    fi
done
exit 0
