#!/usr/bin/env python3
"""Crashes lose no finding and duplicate at most the one in flight (DESIGN.md
§2, §7; daemon/store/state.h "Durability").

- CrashPoints: S3MOND_TEST_CRASH_AT kills the daemon at a chosen point of the
  emit/note/save sequence; a restart must complete the set of findings, with
  exactly the one in flight (if any) emitted twice.
- KillNine: kill -9 at random moments over many restarts while alerts keep
  being inserted, some recur (while open, and after being resolved), and some
  mailboxes recover so findings resolve. The JSON output of every run is
  appended to one file; the union must equal the set a model of the actions
  predicts, each duplicate being the last record of a killed run.

usage: test_daemon_crash.py [unittest args]; S3MOND_KILL_RESTARTS (default 20)
and S3MOND_KILL_SEED pick the number of restarts and the random seed.
"""

import os
import random
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import s3test as h  # noqa: E402

REALISTIC = h.fixture("realistic")
REALISTIC_KEYS = {("finding", f"prod/{e['source']}/{e['alert']}") for e in REALISTIC["expected"]}


class CrashPoints(unittest.TestCase):
    """One crash at a deterministic point, then a clean run."""

    def run_point(self, point, expect_duplicates):
        with h.Workdir() as wd, h.Sim(REALISTIC, wd) as sim:
            cfg = h.Config(wd, sim, interval="1s")
            log = h.OutputLog(wd.join("out.json"))
            d = h.Daemon(cfg, stdout_path=log.path, env={"S3MOND_TEST_CRASH_AT": point})
            try:
                rc = d.wait(timeout=h.GUARD)
            finally:
                d.close()
            self.assertEqual(rc, -signal.SIGKILL, f"{point}: the crash point was not reached: {d.stderr()}")
            first = log.end_run(killed=True)

            d = h.Daemon(cfg, stdout_path=log.path, notify=True)
            try:
                # three full cycles after the restart: what was lost would be back by then
                for i in range(3):
                    d.notify.until(lambda m: m.startswith("STATUS="), what=f"cycle {i} after the restart")
                rc = d.stop()
                self.assertEqual(rc, 0, d.stderr())
                self.assertNotIn("corrupt", d.stderr())
            finally:
                d.close()
            log.end_run(killed=False)
            summary = h.check_exactly_once(log, REALISTIC_KEYS)
            self.assertEqual(summary["duplicates"], expect_duplicates, summary)
            if expect_duplicates:
                self.assertEqual(summary["duplicate_keys"], [h.record_key(first[-1])])
            print(f"\n  {point}: {len(first)} emitted before the crash, "
                  f"{summary['emitted'] - len(first)} after; {summary['duplicates']} duplicate(s)",
                  file=sys.stderr)

    def test_monitor_after_emit_first(self):
        self.run_point("monitor-after-emit", 1)

    def test_monitor_after_emit_third(self):
        self.run_point("monitor-after-emit:3", 1)

    def test_state_log_mid_append(self):
        self.run_point("state-log-mid-append:2", 1)

    def test_state_mid_write(self):
        self.run_point("state-mid-write", 0)

    def test_state_before_rename(self):
        self.run_point("state-before-rename", 0)

    def test_state_after_rename(self):
        self.run_point("state-after-rename", 0)

    def test_state_after_log_truncate(self):
        self.run_point("state-after-log-truncate", 0)


# ---- kill -9 at random --------------------------------------------------------------

WORKFLOW = "c2000000-0000-4000-8000-000000000001"


def chaos_scenario(n_mailboxes):
    mailboxes = [h.mailbox_row(f"Mailbox {i}", mailbox_id=f"a2000000-0000-4000-8000-{i:012d}")
                 for i in range(n_mailboxes)]
    return {"description": "kill -9 test: one real-time workflow, healthy mailboxes, alerts added live",
            "environments": [{
                "name": "prod", "tenant": "contoso.onmicrosoft.com",
                "client_id": "11111111-1111-1111-1111-111111111111", "client_secret": "chaos",
                "tables": {
                    "mailboxes": mailboxes,
                    "workflows": [{"workflowid": WORKFLOW, "name": "Set email category", "category": 0,
                                   "type": 1, "statecode": 1, "mode": 1, "primaryentity": "email",
                                   "triggeroncreate": True, "syncworkflowlogonfailure": True}]}}]}


class Model:
    """What the actions imply the daemon must eventually report."""

    SPACING = 1.2   # seconds between events on one mailbox: dvsim's times are whole seconds

    def __init__(self, sim, rng, mailboxes):
        self.sim, self.rng = sim, rng
        self.mailboxes = [m["mailboxid"] for m in mailboxes]
        self.names = {m["mailboxid"]: m["name"] for m in mailboxes}
        self.last_event = {m: 0.0 for m in self.mailboxes}
        self.recovered_at = {m: 0.0 for m in self.mailboxes}
        self.alerts = {}        # id -> {"mailbox", "generation", "last", "resolved_seen"}
        self.actions = {"new": 0, "recur open": 0, "recover": 0, "reopen": 0}

    def idle_mailboxes(self, now):
        return [m for m in self.mailboxes if now - self.last_event[m] >= self.SPACING]

    def resolvable(self, a):
        return self.recovered_at[a["mailbox"]] > a["last"]

    def act(self):
        now = time.time()
        free = set(self.idle_mailboxes(now))
        if not free:
            return
        choices = ["new"] * 3 + ["recover"]
        open_alerts = [i for i, a in self.alerts.items()
                       if a["mailbox"] in free and not self.resolvable(a) and not a["resolved_seen"]]
        reopenable = [i for i, a in self.alerts.items() if a["mailbox"] in free and a["resolved_seen"]]
        if open_alerts:
            choices.append("recur open")
        if reopenable:
            choices += ["reopen"] * 2
        what = self.rng.choice(choices)
        if what == "new":
            for _ in range(self.rng.choice([1, 1, 2, 3])):
                free = self.idle_mailboxes(time.time())
                if not free:
                    break
                mb = self.rng.choice(free)
                row = h.alert_row(mb, self.names[mb])
                self.sim.insert("prod", "tracelogs", row)
                self.alerts[row["tracelogid"]] = {"mailbox": mb, "generation": 1, "last": time.time(),
                                                  "resolved_seen": False, "history": []}
                self.last_event[mb] = time.time()
        elif what == "recover":
            mb = self.rng.choice(sorted(free))
            self.sim.patch("prod", "mailboxes", mb, lastsuccessfulsynccompletedon="now")
            self.recovered_at[mb] = self.last_event[mb] = time.time()
        else:
            aid = self.rng.choice(open_alerts if what == "recur open" else reopenable)
            a = self.alerts[aid]
            self.sim.patch("prod", "tracelogs", aid, level=2)   # modifiedon moves: it recurs
            if what == "reopen":
                a["history"].append(a["generation"])
                a["generation"] += 1
                a["resolved_seen"] = False
            a["last"] = self.last_event[a["mailbox"]] = time.time()
        self.actions[what] += 1

    def learn(self, durable_records):
        """Resolved records known to be noted (not the last of a killed run)."""
        for r in durable_records:
            if r.get("type") != "resolved":
                continue
            aid, _, gen = r["id"].split("/")[-1].partition("#")
            a = self.alerts.get(aid)
            if a and int(gen or 1) == a["generation"]:
                a["resolved_seen"] = True

    def expected(self):
        keys = set()
        for aid, a in self.alerts.items():
            fid = f"prod/tracelog/{aid}"
            for g in a["history"]:      # closed generations: reported and resolved
                gid = fid if g == 1 else f"{fid}#{g}"
                keys |= {("finding", gid), ("resolved", gid)}
            gid = fid if a["generation"] == 1 else f"{fid}#{a['generation']}"
            keys.add(("finding", gid))
            if self.resolvable(a):
                keys.add(("resolved", gid))
        return keys


class KillNine(unittest.TestCase):
    def test_random_kills(self):
        restarts = int(os.environ.get("S3MOND_KILL_RESTARTS", "20"))
        seed = int(os.environ.get("S3MOND_KILL_SEED", str(int(time.time()))))
        rng = random.Random(seed)
        print(f"\n  seed {seed} (S3MOND_KILL_SEED), {restarts} restarts", file=sys.stderr)
        scenario = chaos_scenario(8)
        with h.Workdir() as wd, h.Sim(scenario, wd) as sim:
            cfg = h.Config(wd, sim, interval="1s", resolve_after="2s", config_refresh="1h",
                           lookback="1h")
            model = Model(sim, rng, scenario["environments"][0]["tables"]["mailboxes"])
            log = h.OutputLog(wd.join("out.json"))
            lifetimes = []
            for run in range(restarts):
                d = h.Daemon(cfg, stdout_path=log.path, verbose=False)
                try:
                    life = rng.uniform(0.1, 2.5)
                    deadline = time.monotonic() + life
                    while time.monotonic() < deadline:
                        model.act()
                        time.sleep(min(rng.uniform(0.05, 0.4), max(0, deadline - time.monotonic())))
                    self.assertTrue(d.running(), f"run {run} died: {d.stderr()}")
                    d.kill9()
                finally:
                    d.close()
                lifetimes.append(life)
                seg = log.end_run(killed=True)
                model.learn(seg[:-1])

            # a last clean run: everything resolvable resolves, nothing else comes
            expected = model.expected()
            d = h.Daemon(cfg, stdout_path=log.path, notify=True, verbose=False)
            try:
                def complete():
                    got = {h.record_key(r) for r in h.read_records(log.path)}
                    return expected <= got
                try:
                    h.wait_until(complete, what="every expected record")
                except TimeoutError:
                    pass        # check_exactly_once says what is missing
                for i in range(4):  # > resolve_after: no further record may come
                    d.notify.until(lambda m: m.startswith("STATUS="), what="a quiet cycle")
                rc = d.stop()
                self.assertEqual(rc, 0, d.stderr())
            finally:
                d.close()
            log.end_run(killed=False)
            summary = h.check_exactly_once(log, expected)
            in_flight = sum(1 for seg, k in zip(log.segments, log.killed) if k and seg)
            print(f"  {summary['crashes']} kills (runs of {min(lifetimes):.1f}-{max(lifetimes):.1f}s, "
                  f"{in_flight} with output); actions {model.actions}; "
                  f"records expected {summary['expected']}, emitted {summary['emitted']}, "
                  f"duplicated {summary['duplicates']}", file=sys.stderr)
            kinds = {k[0] for k in expected}
            self.assertEqual(kinds, {"finding", "resolved"}, "the run exercised findings and resolves")
            self.assertTrue(any("#" in k[1] for k in expected) or model.actions["reopen"] == 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
