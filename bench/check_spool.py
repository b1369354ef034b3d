#!/usr/bin/env python3
"""Checks a payhook spool after one benchmark run against what the load generator sent and
what it was answered. Prints one summary line; exit 1 on any problem.

  check_spool.py SPOOL --lines FILE --kind unified|wechat|wechatv3|alipay|jeepay --wrk RESULT_OUT
      after a wrk run with bench/lua/callbacks.lua (its per-thread accounting)
  check_spool.py SPOOL --lines FILE --kind unified|wechat|wechatv3|alipay|jeepay --ratedrv STATUS_FILE
      after a run of the fixed-rate driver (one status letter per scheduled request)
  check_spool.py SPOOL
      only the structural checks

Structural checks (always): every file in new/ parses as a payhook.event.v1 object, is named
<id>.json with id = sha256(dedupe_key), no dedupe key appears twice, ids/ holds exactly the ids
of new/, and tmp/, conflicts/, corrupt/ and cur/ are empty (payhook has been stopped first).

Against the load (let S = keys sent, A = requests answered with the exact success answer,
E = events in new/):
  * E is a subset of S: nothing was stored that was not sent, and each event has the dedupe key
    and the amount its request implies; for WeChat Pay v3 (--kind wechatv3) the checker decrypts each
    sent resource itself (AES-256-GCM, Python's `cryptography`, --v3-key) to learn them, and each
    event must also keep exactly the body that was sent (raw.body), the source wechat.pay and
    verified_with rsa-sha256; for Alipay and Jeepay (form bodies) likewise the body sent, the source
    alipay.trade / jeepay.pay and verified_with rsa2 / md5;
  * with --ratedrv every request is tracked by index, so the check is exact: each key answered
    success is in E;
  * the success answer is 200 with the source's text, or for v3 204 with no body (callbacks.lua
    counts anything else as bad);
  * with --wrk, wrk cannot tell which request an answer belonged to, so the check is by count:
    each unique-workload request is a distinct key, so E must hold at least A events (a lost
    answered event would have to be made up for by a stored unanswered one, of which there are
    at most sent - answered, the requests in flight when wrk stopped; the summary reports how
    many of those were stored). When E == S, every sent key is stored and the check is exact,
    which is the usual outcome: payhook finishes the requests wrk leaves in flight.
  * any answer other than the exact success answer fails the run.
"""
import argparse, base64, hashlib, json, os, re, sys
from urllib.parse import urlsplit, parse_qsl, quote

UNRESERVED = "-._~"


class V3Opener:
    """Opens the encrypted resource of a gen_requests.py wechatv3 line (AES-256-GCM under the APIv3 key)."""

    def __init__(self, api_v3_key):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415
        self.gcm = AESGCM(api_v3_key.encode())

    def ref(self, line):
        """(out_trade_no, amount.total, body) of one v3 line: `timestamp TAB nonce TAB serial TAB signature TAB body`."""
        body = line.rstrip("\n").split("\t", 4)[4]
        r = json.loads(body)["resource"]
        plain = json.loads(self.gcm.decrypt(r["nonce"].encode(), base64.b64decode(r["ciphertext"]),
                                            r.get("associated_data", "").encode()))
        return plain["out_trade_no"], plain["amount"]["total"], body


# Form-body kinds: (order field, amount field, amount in yuan?, source, status and the rest of the key after the
# order reference, verified_with).
FORM_KINDS = {"alipay": ("out_trade_no", "total_amount", True, "alipay.trade", ["TRADE_SUCCESS", ""], "rsa2"),
              "jeepay": ("mchOrderNo", "amount", False, "jeepay.pay", ["2"], "md5")}


def fen(yuan):
    whole, _, frac = yuan.partition(".")
    return int(whole) * 100 + int((frac + "00")[:2]) if whole.isdigit() and (frac + "0").isdigit() else None


def ref_of_line(line, v3=None, kind=None):
    """(order ref, amount, body or None) of one request line: requestKey/money, out_trade_no/total_fee, or
    for v3 (its opener given) the decrypted resource's out_trade_no/amount.total and the body itself."""
    if v3 is not None:
        return v3.ref(line)
    line = line.strip()
    if kind in FORM_KINDS:
        order, amount, yuan, _, _, _ = FORM_KINDS[kind]
        q = dict(parse_qsl(line, keep_blank_values=True))
        value = q.get(amount, "")
        return q.get(order), (fen(value) if yuan else int(value) if value.isdigit() else None), line
    if line.startswith("<xml>"):
        ref = re.search(r"<out_trade_no><!\[CDATA\[(.*?)\]\]>", line)
        fee = re.search(r"<total_fee><!\[CDATA\[(\d+)\]\]>", line)
        return (ref.group(1) if ref else None, int(fee.group(1)) if fee else None, None)
    q = dict(parse_qsl(urlsplit(line).query))
    return (q.get("requestKey"), int(q["money"]) if q.get("money", "").isdigit() else None, None)


def read_refs(path, indices, v3=None, kind=None):
    """(order ref, amount, body) of the given line indices of a gen_requests.py file."""
    want = set(indices)
    if not want:
        return {}
    top = max(want)
    refs = {}
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i > top:
                break
            if i in want:
                refs[i] = ref_of_line(line, v3, kind)
    if len(refs) != len(want):
        sys.exit(f"check_spool: {path} has fewer lines than were sent")
    return refs


def parse_wrk(path):
    """Per-thread accounting written by callbacks.lua's done()."""
    threads, summary = [], {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "thread":
                t = {"id": int(parts[1])}
                for k, v in zip(parts[2::2], parts[3::2]):
                    t[k] = int(v) if re.fullmatch(r"-?\d+", v) else v
                threads.append(t)
            elif parts[0] in ("summary", "errors", "latency_us"):
                summary[parts[0]] = {k: float(v) for k, v in zip(parts[1::2], parts[2::2])}
            elif parts[0] == "threads":
                summary["threads"] = int(parts[1])
    return threads, summary


def wrk_sets(threads, workload):
    """Indices sent (as a set) and the success-answer count, from the per-thread accounting."""
    T = len(threads)
    sent, ok, bad, wrapped = set(), 0, 0, False
    for t in threads:
        ok += t["ok"]
        bad += t["bad"]
        wrapped |= bool(t["wrapped"])
        if workload.endswith("dup"):
            # the dup set is the first DUP_SET lines, shared by all threads, each starting at its offset
            n = t["lines"]
            for k in range(min(t["sent"], n)):
                sent.add((t["start"] + k) % n)
        else:
            # thread id sends its own lines id, id+T, ... in order
            for k in range(min(t["sent"], t["lines"])):
                sent.add(t["id"] + k * T)
    return sent, ok, bad, wrapped


def expected_key(kind, ref, tenant):
    def enc(s):
        return quote(s, safe=UNRESERVED)
    if kind == "unified":
        return "unified/" + "/".join(enc(p) for p in (tenant, ref, "SUCCESSPAY"))
    if kind in FORM_KINDS:
        _, _, _, source, rest, _ = FORM_KINDS[kind]
        return source + "/" + "/".join(enc(p) for p in [tenant, ref] + rest)
    return "wechat.pay/" + "/".join(enc(p) for p in (tenant, ref, "SUCCESS"))


def structural(spool, problems):
    """Parses every event; returns {order_ref: (dedupe_key, amount, event)}."""
    events, keys = {}, {}
    new = os.path.join(spool, "new")
    names = sorted(os.listdir(new)) if os.path.isdir(new) else []
    for name in names:
        path = os.path.join(new, name)
        try:
            with open(path, "rb") as f:
                ev = json.loads(f.read().decode("utf-8"))
        except Exception as e:  # a torn or foreign file is a failure, whatever the counts say
            problems.append(f"new/{name}: not a JSON event ({e.__class__.__name__})")
            continue
        key = ev.get("dedupe_key")
        if ev.get("schema") != "payhook.event.v1" or not isinstance(key, str):
            problems.append(f"new/{name}: not a payhook.event.v1 event")
            continue
        eid = hashlib.sha256(key.encode("utf-8")).hexdigest()
        if ev.get("id") != eid or name != eid + ".json":
            problems.append(f"new/{name}: id/name do not match sha256(dedupe_key)")
        if key in keys:
            problems.append(f"new/{name}: dedupe key also in {keys[key]}")
        keys[key] = name
        ref = ev.get("order_ref")
        if ref in events:
            problems.append(f"new/{name}: order_ref {ref} stored twice")
        events[ref] = (key, ev.get("amount"), ev)
    ids_dir = os.path.join(spool, "ids")
    ids = set(os.listdir(ids_dir)) if os.path.isdir(ids_dir) else set()
    want_ids = {n[:-5] for n in names if n.endswith(".json")}
    if ids != want_ids:
        problems.append(f"ids/ does not match new/ ({len(ids - want_ids)} extra, {len(want_ids - ids)} missing)")
    for sub in ("tmp", "cur", "conflicts", "corrupt"):
        d = os.path.join(spool, sub)
        left = [n for n in os.listdir(d) if not n.startswith(".")] if os.path.isdir(d) else []
        if left:
            problems.append(f"{sub}/ is not empty ({len(left)} files, e.g. {left[0]})")
    return events


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("spool")
    ap.add_argument("--lines", help="the gen_requests.py file the load was made from")
    ap.add_argument("--kind", choices=["unified", "wechat", "wechatv3", "alipay", "jeepay"], default="unified")
    ap.add_argument("--tenant", help="domainCode, mch_id, app_id or mchNo (default: bench / 1900000109 / v3: "
                    "1900000100 / alipay: 2021000000000001 / jeepay: M1700000000)")
    ap.add_argument("--workload", choices=["unique", "dup", "wechat", "v3unique", "v3dup", "alipayunique",
                                           "alipaydup", "jeepaydup"], default="unique")
    ap.add_argument("--v3-key", default="a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb",
                    help="the APIv3 key that opens the v3 resources (default: Fixtures/wechat-v3's test key)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--wrk", help="RESULT_OUT of callbacks.lua")
    g.add_argument("--ratedrv", help="status file of ratedrv")
    ap.add_argument("--seeded", type=int, default=0,
                    help="the first N lines were also sent before the load, each answered success (run.py checks "
                         "those answers itself), so they must be stored")
    ap.add_argument("--json", help="also write the summary as JSON here")
    a = ap.parse_args()
    tenant = a.tenant or {"unified": "bench", "wechat": "1900000109", "wechatv3": "1900000100",
                          "alipay": "2021000000000001", "jeepay": "M1700000000"}[a.kind]
    v3 = V3Opener(a.v3_key) if a.kind == "wechatv3" else None

    problems = []
    events = structural(a.spool, problems)
    summary = {"events": len(events)}

    if a.wrk or a.ratedrv:
        if a.wrk:
            threads, _ = parse_wrk(a.wrk)
            sent, answered_ok, bad, wrapped = wrk_sets(threads, a.workload)
            total_sent = sum(t["sent"] for t in threads)
            if wrapped:
                problems.append("the request set ran out and wrapped around: generate more lines")
            ok_indices = None
        else:
            status = open(a.ratedrv).read().strip()
            sent = {i for i, c in enumerate(status) if c != "n"}
            ok_indices = {i for i, c in enumerate(status) if c == "o"}
            answered_ok = len(ok_indices)
            bad = sum(1 for c in status if c == "b")
            total_sent = len(sent)
        seeded = set(range(a.seeded))
        info = read_refs(a.lines, sent | seeded, v3, a.kind)
        refs = {i: ref for i, (ref, _, _) in info.items()}
        amounts = {ref: amount for ref, amount, _ in info.values()}
        bodies = {ref: body for ref, _, body in info.values()}
        sent_refs = {refs[i] for i in sent | seeded}
        if bad:
            problems.append(f"{bad} answers were not the exact success answer")
        stored = set(events)
        extra = stored - sent_refs
        if extra:
            problems.append(f"{len(extra)} events were never sent, e.g. {sorted(extra)[:3]}")
        wrong = [r for r in stored & sent_refs if events[r][0] != expected_key(a.kind, r, tenant)]
        if wrong:
            problems.append(f"{len(wrong)} events have a dedupe key their request does not imply, e.g. {events[wrong[0]][0]!r}")
        wrong = [r for r in stored & sent_refs if events[r][1] != amounts[r]]
        if wrong:
            problems.append(f"{len(wrong)} events have another amount than their request, e.g. {wrong[0]}")
        if v3 is not None:
            # The event keeps the notification exactly as sent, and says how it was verified.
            wrong = [r for r in stored & sent_refs if (events[r][2].get("raw") or {}).get("body") != bodies[r]
                     or events[r][2].get("source") != "wechat.pay" or events[r][2].get("verified_with") != "rsa-sha256"]
            if wrong:
                problems.append(f"{len(wrong)} v3 events do not keep the body sent, or name another source or "
                                f"verification, e.g. {wrong[0]}")
        if a.kind in FORM_KINDS:
            _, _, _, source, _, method = FORM_KINDS[a.kind]
            wrong = [r for r in stored & sent_refs if (events[r][2].get("raw") or {}).get("body") != bodies[r]
                     or events[r][2].get("source") != source or events[r][2].get("verified_with") != method]
            if wrong:
                problems.append(f"{len(wrong)} {a.kind} events do not keep the body sent, or name another source "
                                f"or verification, e.g. {wrong[0]}")
        missing = sent_refs - stored
        lost_seeded = {refs[i] for i in seeded} - stored
        if lost_seeded:
            problems.append(f"{len(lost_seeded)} seeded events answered success are not in new/")
        if ok_indices is not None:
            lost = {refs[i] for i in ok_indices} - stored
            if lost:
                problems.append(f"{len(lost)} events answered success are not in new/, e.g. {sorted(lost)[:3]}")
            exact = True
        else:
            # A dup run answers each distinct key many times; a unique run answers each key at most once.
            dup = a.workload.endswith("dup")
            distinct_ok_floor = answered_ok if not dup else (len(sent_refs) if answered_ok else 0)
            if dup:
                # every distinct key was sent in the first pass, long before the run ended
                if missing:
                    problems.append(f"{len(missing)} duplicate-set events missing from new/, e.g. {sorted(missing)[:3]}")
            elif len(stored & sent_refs) < distinct_ok_floor:
                problems.append(f"{answered_ok} requests answered success but only {len(stored & sent_refs)} events stored")
            exact = not missing
        summary.update({
            "sent_requests": total_sent, "distinct_sent": len(sent_refs), "answered_ok": answered_ok,
            "bad_answers": bad, "unanswered_or_lost": len(missing), "exact": exact,
        })

    summary["problems"] = problems
    for p in problems[:20]:
        print(p)
    line = f"{len(events)} events, {len(problems)} problems"
    if "sent_requests" in summary:
        line += (f"; sent {summary['sent_requests']} ({summary['distinct_sent']} distinct), "
                 f"answered success {summary['answered_ok']}, sent but not stored {summary['unanswered_or_lost']}"
                 f"{' (exact)' if summary['exact'] else ' (count check)'}")
    print(line)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(summary, f)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
