"""What s3mond reported, checked: against a fixture's or the oracle's
expected findings, and "exactly once" across crashes (docs/design.md §7)."""

import json
import time

from .sim import dvsim_module, env_of, oracle_module

# Fixed MESSAGE_IDs of the records (daemon/output/message-ids.h).
MESSAGE_ID = {
    "finding": "2a7beaec32d5419a8a023b1bbb1313dc",
    "resolved": "02dd0e4d610d4d88818a71f0bd6ee892",
    "error": "3996abb830b24ce4bd9179806656ce8c",
}


def culprit_ids(finding):
    return [c["id"] for c in finding.get("culprits", [])]


def expected_by_alert(scenario):
    """A fixture's "expected" entries keyed by alert id."""
    return {e["alert"]: e for e in scenario.get("expected", [])}


def finding_key(f):
    return (f.get("environment"), f.get("alert", {}).get("id"))


def keys_of(records):
    """(environment, alert id) of each finding record, in order."""
    return [finding_key(r) for r in records if r.get("type") == "finding"]


def findings_count(records):
    return sum(1 for r in records if r.get("type") == "finding")


def error_events(records, env):
    return [r for r in records if r.get("type") == "error" and r.get("environment") == env]


def expected_findings(scenario, env_name, now=None, **oracle_args):
    """The oracle's findings for one environment of a scenario (absolute times)."""
    now = time.time() if now is None else now
    sim = dvsim_module().Simulator()
    sim.load({"environments": [env_of(scenario, env_name)]}, "expected")
    return oracle_module().findings(sim.envs[env_name], now, **oracle_args)


def compare_findings(records, expected_by_env):
    """The finding records against the oracle's, {env: [expected]}.
    Returns (counts, problems): counts = {"expected", "emitted",
    "duplicated", "lost", "unexpected", "wrong"}; problems, one sentence each."""
    findings = [r for r in records if r.get("type") == "finding"]
    problems = []
    seen = {}
    for f in findings:
        seen.setdefault(finding_key(f), []).append(f)
    expected = {(env, e["alert"]): e for env, exp in expected_by_env.items() for e in exp}
    dup = sum(len(v) - 1 for v in seen.values() if len(v) > 1)
    for k, v in seen.items():
        if len(v) > 1:
            problems.append("finding for %s/%s emitted %d times" % (k[0], k[1], len(v)))
    lost = [k for k in expected if k not in seen]
    problems += ["finding for %s/%s never emitted" % k for k in lost]
    unexpected = [k for k in seen if k not in expected]
    problems += ["unexpected finding for %s/%s (%s)" % (k[0], k[1], seen[k][0].get("verdict"))
                 for k in unexpected]
    wrong = 0
    for k, e in expected.items():
        if k not in seen:
            continue
        f = seen[k][0]
        culprits = culprit_ids(f)
        evidence = {c["id"]: sorted(ev["id"] for ev in c.get("evidence", []))
                    for c in f.get("culprits", []) if c.get("evidence")}
        want_ev = {c: sorted(ids) for c, ids in e.get("evidence", {}).items()}
        bad = []
        if f.get("verdict") != e["verdict"]:
            bad.append("verdict %s, expected %s" % (f.get("verdict"), e["verdict"]))
        if f.get("alert", {}).get("source") != e["source"]:
            bad.append("source %s, expected %s" % (f.get("alert", {}).get("source"), e["source"]))
        if culprits != e["culprits"]:
            bad.append("culprits %s, expected %s" % (culprits, e["culprits"]))
        if evidence != want_ev:
            bad.append("evidence %s, expected %s" % (evidence, want_ev))
        if bad:
            wrong += 1
            problems.append("finding %s/%s: %s" % (k[0], k[1], "; ".join(bad)))
    counts = {"expected": len(expected), "emitted": len(findings), "duplicated": dup,
              "lost": len(lost), "unexpected": len(unexpected), "wrong": wrong}
    return counts, problems


# ---- exactly once, across crashes ---------------------------------------------

def read_records(path):
    """The JSON records of a file a Daemon(stdout_path=...) appended to, in
    order; a torn last line (a kill in the middle of a write) is returned as
    {"type": "_torn", "line": ...}."""
    out = []
    with open(path, "rb") as f:
        for raw in f:
            line = raw.decode(errors="replace")
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"type": "_torn", "line": line})
    return out


def record_key(r):
    """What identifies a record for "exactly once": (type, id), an error
    event by its environment, state and start."""
    if r.get("type") == "error":
        return ("error", r.get("environment"), r.get("state"), r.get("since"))
    return (r.get("type"), r.get("id"))


class OutputLog:
    """Records appended to one file by successive daemon runs (Daemon(stdout_path=...)),
    cut into segments, one per run: segment i is what run i emitted, and
    killed[i] says whether run i ended by a crash (kill -9, a crash point)
    rather than a clean stop. Call end_run(killed) after each run is reaped."""

    def __init__(self, path):
        self.path = path
        self.segments = []
        self.killed = []
        self._seen = 0
        open(path, "ab").close()

    def end_run(self, killed):
        records = read_records(self.path)
        self.segments.append(records[self._seen:])
        self.killed.append(killed)
        self._seen = len(records)
        return self.segments[-1]

    def records(self):
        return [r for seg in self.segments for r in seg]

    def keys(self):
        return [record_key(r) for r in self.records()]


def check_exactly_once(log, expected_keys):
    """docs/design.md §7's guarantee over an OutputLog: the union of emitted
    keys is expected_keys (nothing lost, nothing extra), and a key appears
    again only when its previous emission was the last record of a run that
    crashed (the one in flight), so duplicates <= crashes. Returns a
    summary dict; raises AssertionError saying what broke."""
    expected = set(expected_keys)
    problems = []
    torn = [r for r in log.records() if r.get("type") == "_torn"]
    if torn:
        problems.append(f"torn lines: {torn!r}")
    keys = log.keys()
    got = set(keys)
    if got - expected:
        problems.append(f"emitted but not expected: {sorted(got - expected)!r}")
    if expected - got:
        problems.append(f"lost (expected, never emitted): {sorted(expected - got)!r}")
    # where each key's emissions were: (segment, index, is last of a crashed run)
    last_in_flight = set()
    seen = {}
    duplicates = []
    for i, seg in enumerate(log.segments):
        for j, r in enumerate(seg):
            k = record_key(r)
            if k in seen:
                pi, pj = seen[k]
                ok = log.killed[pi] and pj == len(log.segments[pi]) - 1 and (pi, pj) not in last_in_flight
                duplicates.append(k)
                if not ok:
                    problems.append(f"{k!r} emitted again in run {i} although its emission in run "
                                    f"{pi} (record {pj} of {len(log.segments[pi])}, "
                                    f"{'crashed' if log.killed[pi] else 'clean stop'}) was not the one in flight")
                last_in_flight.add((pi, pj))
            seen[k] = (i, j)
    crashes = sum(log.killed)
    if len(duplicates) > crashes:
        problems.append(f"{len(duplicates)} duplicates for {crashes} crashes")
    summary = {"runs": len(log.segments), "crashes": crashes, "expected": len(expected),
               "emitted": len(keys), "distinct": len(got), "duplicates": len(duplicates),
               "duplicate_keys": duplicates}
    if problems:
        raise AssertionError("exactly-once broken: " + "; ".join(problems) + f" ({summary})")
    return summary
