#!/usr/bin/env python3
"""An example payhook consumer that speaks the spool protocol directly, without the payhook binary.

    consumer.py SPOOL [--drain]

The protocol (docs/consumers.md):

1. List SPOOL/new/. Event files are named <id>.json (id: 64 lowercase hex). Ignore every other name.
2. Claim one with os.rename(new/<id>.json, cur/<id>.json). rename(2) is atomic: of several consumers
   renaming the same file exactly one succeeds, the others get FileNotFoundError and move on.
3. Process it. It is yours while it is in cur/.
4. Acknowledge it by deleting cur/<id>.json. To give it back instead, rename it to new/<id>.json.

Never write into new/ or cur/ yourself, never rename an event to another name there (payhook's startup
recovery moves such files to corrupt/), never touch tmp/, ids/ or .lock.

Events are taken oldest first by received_at (RFC 3339 UTC with milliseconds, so the strings sort in time
order). This example polls new/ once a second when it is empty; `payhook queue take --wait` uses inotify.

Environment: OUT, a file each processed event is appended to as one JSON line (default: stdout).
SIGTERM/SIGINT: the event in hand is finished, then the consumer exits 0. With --drain it exits 0 as soon
as new/ is empty.
"""

import json
import os
import re
import signal
import sys
import time

EVENT_NAME = re.compile(r"^[0-9a-f]{64}\.json$")


def no_repeated_members(pairs):
    """json's default keeps the last of two equal names; payhook's readers refuse such a file
    (docs/consumers.md §3), so that no reader sees another event than the server verified."""
    names = [name for name, _ in pairs]
    if len(names) != len(set(names)):
        raise ValueError("a member is repeated")
    return dict(pairs)
POLL_SECONDS = 1.0

stopping = False


def request_stop(signum, frame):
    global stopping
    stopping = True


def handle(event, out):
    """Your business logic. Raise to have the event returned to new/ for a later retry.

    Check event["amount"] and event["order_ref"] against your own order before trusting them, and make this
    idempotent: delivery is at least once.
    """
    out.write(json.dumps(event, ensure_ascii=False, sort_keys=True) + "\n")
    out.flush()


def waiting(spool):
    """Names in new/, oldest received_at first (ties by name)."""
    keyed = []
    for name in os.listdir(os.path.join(spool, "new")):
        if not EVENT_NAME.match(name):
            continue
        try:
            with open(os.path.join(spool, "new", name), "rb") as f:
                received_at = json.load(f).get("received_at", "")
        except FileNotFoundError:
            continue  # another consumer took it meanwhile
        except (ValueError, UnicodeDecodeError, AttributeError):
            received_at = ""  # not a valid event: claimed first and set aside below
        keyed.append((str(received_at), name))
    keyed.sort()
    return [name for _, name in keyed]


def quarantine(spool, relative, reason):
    """Moves a file that is not a valid event to corrupt/, never deleting it. os.link never replaces an
    existing name, unlike os.rename, so an earlier file of the same name in corrupt/ is kept."""
    name = os.path.basename(relative)
    source = os.path.join(spool, relative)
    for suffix in ["", ".%d.%d" % (os.getpid(), time.time_ns())]:
        target = os.path.join(spool, "corrupt", name + suffix)
        try:
            os.link(source, target)
            break
        except FileExistsError:
            continue
    else:
        return
    os.unlink(source)
    print("consumer.py: %s is not a valid event (%s); moved to corrupt/" % (relative, reason), file=sys.stderr)


def consume_one(spool, name, out):
    """Claims and processes one event. Returns False when another consumer claimed it first."""
    try:
        os.rename(os.path.join(spool, "new", name), os.path.join(spool, "cur", name))
    except FileNotFoundError:
        return False  # the rename that succeeded was someone else's
    taken = os.path.join(spool, "cur", name)
    try:
        with open(taken, "rb") as f:
            event = json.loads(f.read().decode("utf-8"), object_pairs_hook=no_repeated_members)
        if not isinstance(event, dict) or event.get("id") + ".json" != name:
            raise ValueError("its id does not match its file name")
    except (ValueError, UnicodeDecodeError, TypeError) as error:
        quarantine(spool, os.path.join("cur", name), error)
        return True
    try:
        handle(event, out)
    except Exception as error:  # the handler's failure: give the event back
        os.rename(taken, os.path.join(spool, "new", name))
        print("consumer.py: %s failed (%s); returned to new/" % (event["id"], error), file=sys.stderr)
        time.sleep(POLL_SECONDS)
        return True
    os.unlink(taken)  # the acknowledgement
    print("consumer.py: processed %s" % event["id"], file=sys.stderr)
    return True


def main(argv):
    args = [a for a in argv[1:] if a != "--drain"]
    drain = "--drain" in argv[1:]
    if len(args) != 1:
        print("usage: consumer.py SPOOL [--drain]", file=sys.stderr)
        return 2
    spool = args[0]
    for folder in ("new", "cur"):
        if not os.path.isdir(os.path.join(spool, folder)):
            print("consumer.py: %s is not a payhook spool (no %s/)" % (spool, folder), file=sys.stderr)
            return 1
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    out = open(os.environ["OUT"], "a", encoding="utf-8") if os.environ.get("OUT") else sys.stdout
    while not stopping:
        names = waiting(spool)
        if not names:
            if drain:
                return 0
            time.sleep(POLL_SECONDS)
            continue
        for name in names:
            if stopping:
                break
            if consume_one(spool, name, out):
                break  # list again, so that events that arrived meanwhile keep their order
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
