#!/usr/bin/env python3
# test_faults: the fault matrix. Every case runs its own two simulators (the
# faulted environment "prod" and a control environment "ctrl"), its own s3mond
# and temp dir, so cases run concurrently.
"""Fault matrix: s3mond against dvsim faults, per request kind.

Each case:
  1. dvsim A serves "prod", dvsim B serves "ctrl" (both realistic.json, absolute
     times); s3mond watches both (interval 2 s unless the case says otherwise),
     findings as JSON lines on stdout; the initial findings of both arrive;
  2. the fault is armed on prod's requests of one kind (tracelogs, mailboxes,
     processsessions, plugintracelogs, token — token faults revoke prod's tokens
     so that a token request is needed) and a new alert with evidence is
     inserted into prod at the same moment;
  3. once the fault is over, the new finding and (for an outage) the recovery
     are awaited, then two more cycles, then SIGTERM.
Checks (each case fails on any of them):
  - findings over the run equal the oracle's, per environment: none lost, none
    twice, none unexpected, same verdict, culprits and evidence;
  - error records: exactly one "failing" then one "recovered" for an outage,
    none when the client rides the fault out, never any for ctrl;
  - after a 429 no request of prod (of that kind: API or token) starts before
    Retry-After (seconds, or the HTTP-date) has passed; no retry storm;
  - the "500-backoff" case: retries spaced by a growing backoff;
  - ctrl's poll schedule shows no gap (max gap <= interval * 1.025 + 2.5 s:
    faults last 5 s, so a loop they blocked shows a gap of 5 s or more;
    the slack absorbs timer delay on a loaded 2-core machine);
  - VmRSS after the fault comes back near its level before it;
  - s3mond exits 0 on SIGTERM (under ASan/LSan: no error, no leak).

Usage: test_faults.py [--suite fast|slow|all] [--jobs N] [--only SUBSTR]
                      [--report FILE.md] [--json FILE.json]
"""

import argparse
import concurrent.futures
import json
import math
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..", "lib")]
import rlib  # noqa: E402
import s3test as h  # noqa: E402

PROD, CTRL = "prod", "ctrl"
TARGETS = {
    "tracelogs": "tracelogs",
    "mailboxes": "mailboxes",
    "sessions": "processsessions",
    "traces": "plugintracelogs",
    "token": "token",
}
API_SETS = ["tracelogs", "mailboxes", "workflows", "processsessions", "sdkmessageprocessingsteps",
            "plugintracelogs", "WhoAmI", "other"]
D = 5   # seconds a fault lasts in the fast cases (> interval + retry budget: an outage)

# A fault kind: the dvsim fault spec (without target), what s3mond should show:
#   outage: True (one failing + one recovered), False (none), None (either)
#   ra: Retry-After check ("seconds" or "date", value)
FAULT_KINDS = {
    "429": dict(spec={"kind": "429", "retry_after": 2, "duration": D}, outage=True,
                ra=("seconds", 2)),
    "429-date": dict(spec={"kind": "429", "retry_after_date": 2, "duration": D}, outage=True,
                     ra=("date", 2)),
    "500": dict(spec={"kind": "500", "duration": D}, outage=True),
    "503": dict(spec={"kind": "503", "duration": D}, outage=True),
    "reset": dict(spec={"kind": "reset", "duration": D}, outage=True),
    "invalid_json": dict(spec={"kind": "invalid_json", "duration": D}, outage=True),
    "truncated": dict(spec={"kind": "truncated", "duration": D}, outage=True),
    # over the client's cap (64 MiB a page, 1 MiB a token answer): refused unread
    "huge": dict(spec={"kind": "huge", "mb": 70, "duration": D}, outage=True),
    "wrong_content_type": dict(spec={"kind": "wrong_content_type", "duration": D}, outage=True),
    # a Web API request meets a revoked token once: renewed, no outage
    "401": dict(spec={"kind": "401", "count": 1}, outage=False, token_requests=1),
}


class Case:
    def __init__(self, name, target, kind, spec=None, outage=None, ra=None, suite="fast",
                 interval=2, down=None, token_requests=None, backoff=False, settle=None):
        self.name = name
        self.target = target        # key of TARGETS, or "*" (the whole simulator)
        self.kind = kind
        self.spec = spec
        self.outage = outage
        self.ra = ra
        self.suite = suite
        self.interval = interval
        self.down = down            # seconds prod's simulator is down (refused)
        self.token_requests = token_requests
        self.backoff = backoff
        self.window = (spec or {}).get("duration") or down or (spec or {}).get("seconds") or 0
        self.settle = settle


def build_cases():
    cases = []
    for target in TARGETS:
        for kind, k in FAULT_KINDS.items():
            spec = dict(k["spec"])
            outage, token_requests = k["outage"], k.get("token_requests")
            if target == "token":
                if kind == "huge":
                    spec["mb"] = 2
                if kind == "401":
                    # the token endpoint itself refuses (401 invalid_client) for a while
                    spec = {"kind": "401", "duration": D}
                    outage, token_requests = True, None
            spec["target"] = "%s/%s" % (PROD, TARGETS[target])
            cases.append(Case("%s/%s" % (target, kind), target, kind, spec, outage, k.get("ra"),
                              token_requests=token_requests))
    # the whole simulator down (connection refused), then back on the same port
    cases.append(Case("*/refused", "*", "refused", down=6, outage=True))
    # retries spaced by a growing backoff: interval 8 s -> budget and cap 8 s
    cases.append(Case("tracelogs/500-backoff", "tracelogs", "500",
                      {"kind": "500", "duration": 12, "target": "prod/tracelogs"},
                      outage=True, interval=8, backoff=True))
    # slow: a minute down; a 30 s stall of each kind; a long Retry-After
    cases.append(Case("*/refused-60s", "*", "refused", down=60, outage=True, suite="slow"))
    for target in TARGETS:
        cases.append(Case("%s/stall-30s" % target, target, "stall",
                          {"kind": "stall", "seconds": 30, "count": 1,
                           "target": "%s/%s" % (PROD, TARGETS[target])},
                          outage=None, suite="slow"))
    cases.append(Case("tracelogs/429-ra-20s", "tracelogs", "429",
                      {"kind": "429", "retry_after": 20, "count": 1, "target": "prod/tracelogs"},
                      outage=True, ra=("seconds", 20), suite="slow"))
    return cases


# ---- one case -------------------------------------------------------------------

class CaseFailure(AssertionError):
    pass


def rss_check(daemon, t_arm, t_end):
    """(warm KiB, peak KiB after arming, end KiB, problem or None)."""
    samples = daemon.rss
    before = [k for t, k in samples if t_arm - 2 <= t <= t_arm]
    after = [k for t, k in samples if t > t_arm]
    tail = [k for t, k in samples if t >= t_end - 1.5]
    if not before or not after or not tail:
        return None, None, None, None
    warm, peak, end = max(before), max(after), max(tail)
    # glibc keeps some freed memory; ASan keeps a quarantine of freed blocks.
    slack = 16 * 1024 if h.sanitized() else 2 * 1024
    problem = None
    if end > warm + slack:
        problem = "VmRSS grew from %d KiB before the fault to %d KiB at the end (slack %d KiB)" % (
            warm, end, slack)
    return warm, peak, end, problem


def gaps(times):
    return [b - a for a, b in zip(times, times[1:])]


def run_case(case, tmp):
    problems = []
    result = {"case": case.name, "target": case.target, "fault": case.kind, "suite": case.suite}
    fixture = h.absolutize(h.fixture("realistic.json"))
    prod_env = h.env_of(fixture, "prod")
    a = b = daemon = None
    try:
        a = h.Sim({"environments": [prod_env]}, tmp, "dvsim-prod")
        b = h.Sim({"environments": [h.renamed_env(prod_env, CTRL)]}, tmp, "dvsim-ctrl")
        conf = h.Config(tmp, [a, b], interval="%ds" % case.interval)
        daemon = h.Daemon(conf)
        initial = {env: h.expected_findings(sim.scenario, env) for sim, env in
                   ((a, PROD), (b, CTRL))}
        n_initial = sum(len(v) for v in initial.values())
        daemon.wait_for(lambda recs: sum(r.get("type") == "finding" for r in recs) >= n_initial,
                        30 + 2 * case.interval, "the initial findings")
        time.sleep(min(case.interval, 2) + 0.5)     # let the cycle end and the memory settle

        # arm: the fault (for token faults: no valid token either), then a new
        # alert with evidence, so that the fault meets the alert's cycle
        t_arm = time.time()
        rows = h.new_alert_rows(at=t_arm - 1)
        if case.kind == "refused":
            a.kill(keep_stats=True)
            a.insert_sets(PROD, rows, offline=True)     # there when it comes back
            time.sleep(case.down)
            a.start()
        else:
            a.fault(**case.spec)
            if case.target == "token":
                a.revoke_tokens(PROD)
            a.insert_sets(PROD, rows)
        t_fault_end = time.time() if case.kind == "refused" else t_arm + case.window

        final = {PROD: h.expected_findings(a.scenario, PROD),
                 CTRL: h.expected_findings(b.scenario, CTRL)}
        new_ids = {f["alert"] for f in final[PROD]} - {f["alert"] for f in initial[PROD]}

        def recovered(recs):
            got = {r.get("alert", {}).get("id") for r in recs
                   if r.get("type") == "finding" and r.get("environment") == PROD}
            if not new_ids <= got or time.time() < t_fault_end:
                return False
            errs = h.error_events(recs, PROD)
            return not errs or errs[-1].get("state") == "recovered"
        daemon.wait_for(recovered, case.window + 40 + 4 * case.interval,
                        "the new finding and the recovery")
        time.sleep(2 * case.interval + 0.5)         # duplicates would show up now
        t_end = time.time()
        rc = daemon.stop()
        if rc != 0:
            problems.append("s3mond exited %s on SIGTERM" % rc)
        records = daemon.snapshot()

        # findings
        counts, fp = h.compare_findings(records, final)
        problems += fp
        result.update(counts)
        result["new_alerts"] = len(new_ids)

        # error records
        errs = [r.get("state") for r in h.error_events(records, PROD)]
        result["error_records"] = errs
        if case.outage is True and errs != ["failing", "recovered"]:
            problems.append("prod error records %s, expected one failing then one recovered" % errs)
        if case.outage is False and errs:
            problems.append("prod error records %s, expected none" % errs)
        if case.outage is None and errs not in ([], ["failing", "recovered"]):
            problems.append("prod error records %s, expected none or failing+recovered" % errs)
        rec = [r for r in h.error_events(records, PROD) if r.get("state") == "recovered"]
        result["failed_polls"] = rec[0].get("failures") if rec else 0
        if h.error_events(records, CTRL):
            problems.append("ctrl reported errors: %s" % h.error_events(records, CTRL))

        # what the simulator saw
        sets = ["token"] if case.target == "token" else (
            API_SETS if case.target == "*" else [TARGETS[case.target]])
        prod_log = a.request_log(PROD)
        target_log = [e for e in prod_log if e["set"] in sets]
        result["injected"] = sum(1 for e in target_log if e.get("fault"))
        if case.kind == "refused":
            result["injected"] = "down %ds" % case.down
        elif case.kind == "stall":
            result["injected"] = 1
        elif result["injected"] == 0:
            problems.append("the fault was never hit (dvsim logged no faulted request)")
        in_window = [e for e in target_log if t_arm <= e["t"] <= t_fault_end + 0.5]
        per_interval = 4 if case.target != "token" else 3
        storm_cap = per_interval * (math.ceil(case.window / case.interval) + 2)
        if case.kind not in ("refused", "stall") and len(in_window) > storm_cap:
            problems.append("%d requests during the %ss fault (cap %d): a retry storm" % (
                len(in_window), case.window, storm_cap))

        if case.ra:
            problems += check_retry_after(case, prod_log)
        if case.backoff:
            problems += check_backoff([e for e in target_log if e["status"] == 500])
        if case.token_requests is not None:
            n = sum(1 for e in prod_log if e["set"] == "token" and e["t"] >= t_arm)
            if n != case.token_requests:
                problems.append("%d token requests after the fault, expected %d" % (
                    n, case.token_requests))

        # ctrl keeps its schedule
        ctrl_t = [e["t"] for e in b.request_log(CTRL, ["tracelogs"])]
        g = gaps(ctrl_t)
        result["ctrl_max_gap"] = round(max(g), 2) if g else None
        limit = case.interval * 1.025 + 2.5
        if not g or max(g) > limit:
            problems.append("ctrl's tracelogs polls have a gap of %s s (limit %.2f): %s" % (
                result["ctrl_max_gap"], limit, [round(x, 2) for x in g]))

        # memory
        warm, peak, end, mp = rss_check(daemon, t_arm, t_end)
        result["rss_kib"] = [warm, peak, end]
        if mp:
            problems.append(mp)
    except Exception as e:  # noqa: BLE001 - a broken case is a failed case, with words
        problems.append("%s: %s" % (type(e).__name__, e))
        problems.append(traceback.format_exc(limit=3))
        if daemon and daemon.proc and daemon.running():
            daemon.proc.kill()
    finally:
        for sim in (a, b):
            if sim:
                sim.kill()
    result["problems"] = problems
    if problems and daemon:
        result["stderr_tail"] = daemon.stderr_tail(1500)
    return result


def check_retry_after(case, prod_log):
    """No request of the throttled kind starts inside the Retry-After pause."""
    kind, ra = case.ra
    sets = ["token"] if case.target == "token" else API_SETS
    log_ = [e for e in prod_log if e["set"] in sets]
    problems = []
    for i, e in enumerate(log_):
        if e["status"] != 429:
            continue
        resume = e["t"] + ra if kind == "seconds" else math.floor(e["t"] + ra)
        for later in log_[i + 1:]:
            # requests already on their way when the 429 arrived may land just after it
            if later["t"] <= e["t"] + 0.25:
                continue
            if later["t"] < resume - 0.05:
                problems.append("a %s request %.2f s after a 429 with Retry-After %s %s" % (
                    later["set"], later["t"] - e["t"], ra, kind))
            break
    return problems


def check_backoff(failed):
    """The first retries of a failing query: gaps in [0.5,1], [1,2], [2,4] s
    (base 1 s doubling, jittered into [d/2, d]), each at least the previous."""
    problems = []
    t = [e["t"] for e in failed]
    g = gaps(t)[:3]
    if len(g) < 3:
        return ["only %d failed attempts seen, expected at least 4" % len(t)]
    for i, x in enumerate(g):
        lo, hi = 0.5 * 2 ** i, 2 ** i
        if x < lo - 0.05 or x > hi + 0.5:
            problems.append("retry %d came %.2f s after the previous, expected %.1f..%.1f s" % (
                i + 1, x, lo, hi))
        if i and x < g[i - 1] - 0.05:
            problems.append("backoff shrank: gaps %s" % [round(y, 2) for y in g])
    return problems


# ---- the matrix -------------------------------------------------------------------

def matrix_markdown(results, elapsed, jobs):
    lines = ["| case | faults injected | failed polls | error records | findings expected | "
             "emitted | duplicated | lost | result |",
             "|---|---|---|---|---|---|---|---|---|"]
    tot = {"expected": 0, "emitted": 0, "duplicated": 0, "lost": 0, "injected": 0}
    for r in results:
        errs = r.get("error_records", [])
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["case"], r.get("injected", "?"), r.get("failed_polls", "?"),
            "+".join(errs) if errs else "none", r.get("expected", "?"), r.get("emitted", "?"),
            r.get("duplicated", "?"), r.get("lost", "?"), "FAIL" if r["problems"] else "ok"))
        for k in ("expected", "emitted", "duplicated", "lost"):
            tot[k] += r.get(k, 0) or 0
        if isinstance(r.get("injected"), int):
            tot["injected"] += r["injected"]
    lines.append("| **total: %d cases, %d failed** | %d | | | %d | %d | %d | %d | |" % (
        len(results), sum(1 for r in results if r["problems"]), tot["injected"],
        tot["expected"], tot["emitted"], tot["duplicated"], tot["lost"]))
    lines.append("")
    lines.append("%d cases in %.0f s wall time, %d at a time (build: %s)." % (
        len(results), elapsed, jobs, "sanitizers " + h.SANITIZE if h.sanitized() else "plain"))
    return "\n".join(lines) + "\n"


FAULT_LABELS = [
    ("429", "429, Retry-After: 2 (seconds)"),
    ("429-date", "429, Retry-After: HTTP-date +2 s"),
    ("500", "500"),
    ("503", "503"),
    ("reset", "connection reset"),
    ("invalid_json", "invalid JSON"),
    ("truncated", "truncated body"),
    ("huge", "huge body (70 MB; token: 2 MB)"),
    ("wrong_content_type", "wrong content type (text/html)"),
    ("401", "401: token revoked (token: endpoint refuses)"),
]


def pivot_markdown(results):
    """The fast matrix as fault x request kind; each cell "result injected/failed polls"."""
    by = {r["case"]: r for r in results}
    targets = list(TARGETS)
    lines = ["| fault (5 s; 401 once) | " + " | ".join(targets) + " |",
             "|---|" + "---|" * len(targets)]
    for kind, label in FAULT_LABELS:
        cells = []
        for t in targets:
            r = by.get("%s/%s" % (t, kind))
            cells.append("" if r is None else "%s %s/%s" % (
                "FAIL" if r["problems"] else "ok", r.get("injected", "?"), r.get("failed_polls", "?")))
        lines.append("| %s | %s |" % (label, " | ".join(cells)))
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", choices=["fast", "slow", "all"], default="fast")
    ap.add_argument("--jobs", type=int, default=rlib.JOBS)
    ap.add_argument("--only", help="run the cases whose name contains this")
    ap.add_argument("--report", help="write the matrix as Markdown here")
    ap.add_argument("--json", help="write the results as JSON here")
    args = ap.parse_args()

    cases = [c for c in build_cases() if args.suite in ("all", c.suite)]
    if args.only:
        cases = [c for c in cases if args.only in c.name]
    # the long ones first, so they overlap the short ones
    cases.sort(key=lambda c: -(c.window * 2 + c.interval * 4))
    h.log("%d cases, %d at a time" % (len(cases), args.jobs))
    t0 = time.time()
    results = {}

    def one(case):
        td = h.Workdir("s3mond-fault-")
        with td as tmp:
            r = run_case(case, tmp)
            if r["problems"]:       # keep the directory for a post-mortem
                td.keep = True
                r["tmp"] = tmp.path
                with open(tmp.join("result.json"), "w") as f:
                    json.dump(r, f, indent=1)
        return r

    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as ex:
        futs = {ex.submit(one, c): c for c in cases}
        for fut in concurrent.futures.as_completed(futs):
            c = futs[fut]
            r = fut.result()
            results[c.name] = r
            h.log("%-28s %s  findings %s/%s dup %s  errors %s  injected %s  rss %s  ctrl gap %s" % (
                c.name, "FAIL" if r["problems"] else "ok  ", r.get("emitted"), r.get("expected"),
                r.get("duplicated"), r.get("error_records"), r.get("injected"), r.get("rss_kib"),
                r.get("ctrl_max_gap")))
            for p in r["problems"]:
                h.log("    " + p)
            if r["problems"] and r.get("stderr_tail"):
                h.log("    s3mond stderr (tail):\n" + r["stderr_tail"])
    elapsed = time.time() - t0
    ordered = [results[c.name] for c in sorted(cases, key=lambda c: (c.suite, c.target, c.name))]
    md = matrix_markdown(ordered, elapsed, args.jobs)
    if any("/" in r["case"] and r["case"].split("/")[1] in dict(FAULT_LABELS) for r in ordered):
        md = pivot_markdown(ordered) + "\n(cells: result, faults injected / failed polls)\n\n" + md
    print(md)
    if args.report:
        with open(args.report, "w") as f:
            f.write(md)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(ordered, f, indent=1)
    failed = sum(1 for r in ordered if r["problems"])
    print("%d passed, %d failed" % (len(ordered) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
