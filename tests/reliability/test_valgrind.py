#!/usr/bin/env python3
# test_valgrind: s3mond under valgrind memcheck for 1,000+ cycles against dvsim,
# through findings, faults, token renewals and a reload: no leak, no invalid access.
"""s3mond under valgrind (suite slow; run from the plain build).

20 environments (realistic.json, renamed env00..env19), interval 1 s, -o json
with a metrics file, under `valgrind --leak-check=full --error-exitcode=99
--errors-for-leak-kinds=definite,indirect`. While it runs: new alerts with
evidence arrive, faults hit (429, 500, reset, invalid JSON, truncated bodies,
401s, a failing token endpoint, a foreign nextLink), tokens are revoked, the
configuration is reloaded (SIGHUP). Once the metrics file counts at least 1,000
polls the faults stop, the last findings arrive, and SIGTERM ends it. Pass:
valgrind reports no error (definitely and indirectly lost 0, no invalid
read/write, no uninitialised use), s3mond exits 0, and every expected finding
was reported once (evidence lists aside: see below).
"""

import os
import re
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import s3test as h  # noqa: E402

N_ENVS = int(os.environ.get("VALGRIND_ENVS", "20"))
MIN_POLLS = int(os.environ.get("VALGRIND_POLLS", "1000"))

FAULTS = [
    {"kind": "429", "retry_after": 1, "count": 2, "target": "tracelogs"},
    {"kind": "500", "duration": 3, "target": "mailboxes"},
    {"kind": "reset", "count": 3, "target": "processsessions"},
    {"kind": "invalid_json", "count": 2, "target": "plugintracelogs"},
    {"kind": "truncated", "count": 2, "target": "tracelogs"},
    {"kind": "401", "count": 1, "target": "mailboxes"},
    {"kind": "503", "duration": 3, "target": "token"},
    {"kind": "foreign_nextlink", "count": 1, "target": "tracelogs"},
    {"kind": "huge", "mb": 70, "count": 1, "target": "mailboxes"},
    {"kind": "wrong_content_type", "count": 2, "target": "workflows"},
]


def polls(metrics):
    try:
        with open(metrics) as f:
            text = f.read()
    except OSError:
        return 0
    return sum(int(float(m)) for m in re.findall(r"^s3mond_polls_total\{[^}]*\} (\S+)$", text, re.M))


def main():
    if not shutil.which("valgrind"):
        print("skipped: no valgrind")
        return 77
    if h.sanitized():
        print("skipped: valgrind runs on the plain build, not under sanitizers")
        return 77
    td = h.Workdir("s3mond-valgrind-")
    with td as tmp:
        base = h.absolutize(h.fixture("realistic.json"))["environments"][0]
        names = ["env%02d" % i for i in range(N_ENVS)]
        sc = {"environments": [h.renamed_env(base, n) for n in names]}
        sim = h.Sim(sc, tmp)
        metrics = os.path.join(tmp, "s3mond.prom")
        conf = h.Config(tmp, sim, interval="1s", metrics_file=metrics, config_refresh="5s")
        vlog = os.path.join(tmp, "valgrind.log")
        prefix = ["valgrind", "--quiet", "--leak-check=full", "--show-leak-kinds=definite,indirect",
                  "--errors-for-leak-kinds=definite,indirect", "--error-exitcode=99",
                  "--track-origins=yes", "--log-file=" + vlog]
        t0 = time.time()
        d = h.Daemon(conf, verbose=0, prefix=prefix)
        rc = None
        try:
            step = 0
            last_event = time.time()
            deadline = time.time() + 600
            while polls(metrics) < MIN_POLLS and time.time() < deadline and d.running():
                time.sleep(0.5)
                if time.time() - last_event < 2:
                    continue
                last_event = time.time()
                env = names[step % N_ENVS]
                f = dict(FAULTS[step % len(FAULTS)])
                f["target"] = "%s/%s" % (env, f["target"])
                sim.fault(**f)
                sim.insert_sets(env, h.new_alert_rows(at=time.time() - 1))
                if step % 7 == 3:
                    sim.revoke_tokens(names[(step * 3) % N_ENVS])
                if step == 10:
                    d.proc.send_signal(signal.SIGHUP)
                step += 1
            n_polls = polls(metrics)
            # no more trouble: what is still in flight arrives, then stop
            sim.clear_faults()
            n_expected = sum(len(h.expected_findings(sim.scenario, n)) for n in names)
            try:
                d.wait_for(lambda r: h.findings_count(r) >= n_expected, 60, "the last findings")
            except AssertionError as e:
                h.log(str(e))
            time.sleep(2)
            rc = d.stop(timeout=60)
        finally:
            sim.kill()
        elapsed = time.time() - t0
        with open(vlog, errors="replace") as f:
            report = f.read()
        expected = {n: h.expected_findings(sim.scenario, n) for n in names}
        counts, problems = h.compare_findings(d.snapshot(), expected)
        h.log("%d polls of %d environments in %.0f s under valgrind; %d findings (%d expected, "
            "%d duplicated); exit %s" % (n_polls, N_ENVS, elapsed, counts["emitted"],
                                         counts["expected"], counts["duplicated"], rc))
        failed = False
        if report.strip():
            print("valgrind reported:\n" + report[-20000:])
            failed = True
        if rc != 0:
            print("s3mond under valgrind exited %s (99: valgrind found errors)\n%s" % (
                rc, d.stderr_tail(3000)))
            failed = True
        if n_polls < MIN_POLLS:
            print("only %d polls, expected %d" % (n_polls, MIN_POLLS))
            failed = True
        # Evidence inserted later lands near earlier alerts of the same environment
        # (the oracle, asked at the end, counts it; s3mond rightly did not have it
        # yet): compare everything but the evidence lists.
        bad = [p for p in problems if not (": evidence " in p and "verdict" not in p and
                                           "culprits" not in p)]
        if bad:
            print("\n".join(bad[:20]))
            failed = True
        if failed:
            td.keep = True
        print("%d passed, %d failed" % (0 if failed else 1, 1 if failed else 0))
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
