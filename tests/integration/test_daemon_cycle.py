#!/usr/bin/env python3
"""The daemon's cycle as the simulator sees it (DESIGN.md §2, §6, §7): idle
cycles cost at most 2 requests per environment, the workflow/step cache is
refreshed every config_refresh (a full read every few refreshes), a new alert
is reported after one refresh and one evidence fetch, a recovered mailbox
gets one "resolved" record and a later recurrence opens finding "#2", and an
environment whose Dataverse fails yields one failing and one recovered
"error" record while another keeps its schedule."""

import os
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import s3test as h  # noqa: E402

REALISTIC = h.fixture("realistic")
N_EXPECTED = len(REALISTIC["expected"])
BILLING_ACT = "prod/tracelog/b1000000-0000-4000-8000-000000000004"


class Base(unittest.TestCase):
    envs = ["prod"]
    settings = {}

    def setUp(self):
        self.wd = h.Workdir()
        self.addCleanup(self.wd.cleanup)
        self.sim = h.Sim(h.with_environments(REALISTIC, self.envs), self.wd)
        self.addCleanup(self.sim.stop)
        settings = dict({"interval": "1s"}, **self.settings)
        if settings.get("metrics_file") == "METRICS":
            settings["metrics_file"] = self.wd.join("s3mond.prom")
        self.cfg = h.Config(self.wd, self.sim, **settings)
        self.d = h.Daemon(self.cfg)
        self.addCleanup(self.d.close)
        self.d.wait_record(lambda r: r["type"] == "finding", count=N_EXPECTED * len(self.envs),
                           what="the initial findings")

    def stop(self):
        rc = self.d.stop()
        self.assertEqual(rc, 0, self.d.stderr())

    def polls(self, env, n):
        """Wait until env (a name or a list) has been polled n more times (tracelogs requests)."""
        envs = [env] if isinstance(env, str) else env
        start = {e: self.sim.requests(e, "tracelogs") for e in envs}
        h.wait_until(lambda: all(self.sim.requests(e, "tracelogs") >= start[e] + n for e in envs),
                     what=f"{n} polls of {env}")

    def new_alert(self, env="prod", name="Returns"):
        mb = h.mailbox_row(name)
        self.sim.insert(env, "mailboxes", mb)
        a = h.alert_row(mb["mailboxid"], name)
        self.sim.insert(env, "tracelogs", a)
        return mb, a


class IdleCost(Base):
    envs = ["prod", "staging", "dev"]
    settings = {"config_refresh": "1h", "metrics_file": "METRICS"}

    def prom(self):
        """The Prometheus textfile as {(name, labels): value}."""
        out = {}
        with open(self.cfg.settings["metrics_file"]) as f:
            for line in f:
                if line.startswith("#") or not line.strip():
                    continue
                key, value = line.rsplit(" ", 1)
                out[key] = float(value)
        return out

    def test_idle_cycles_cost_two_requests(self):
        self.polls(self.envs, 1)    # every environment is past its first cycle
        self.sim.reset_stats()
        self.polls(self.envs, 5)
        time.sleep(0.3)             # let answers in flight be counted
        report = []
        for e in self.envs:
            by_set = self.sim.requests_by_set(e)
            cycles = by_set.get("tracelogs", 0)
            total = sum(by_set.values())
            report.append(f"{e}: {total} requests in {cycles} cycles ({total / cycles:.2f}/cycle) {by_set}")
            self.assertEqual(set(by_set), {"tracelogs", "mailboxes"}, by_set)
            self.assertLessEqual(abs(by_set["mailboxes"] - cycles), 1, by_set)
            self.assertLessEqual(total, 2 * cycles + 1, by_set)
            # mailboxes are read by delta (modifiedon), never whole again
            for entry in self.sim.log(e, "mailboxes"):
                self.assertIn("modifiedon ge ", urllib.parse.unquote(entry["path"]))
        print("\n  " + "\n  ".join(report), file=sys.stderr)
        self.assertEqual(len(self.d.findings()), N_EXPECTED * len(self.envs))
        # the metrics file says the same
        m = self.prom()
        self.assertEqual(m["s3mond_up"], 1)
        for e in self.envs:
            self.assertGreaterEqual(m[f's3mond_polls_total{{environment="{e}"}}'], 5)
            self.assertEqual(m[f's3mond_poll_errors_total{{environment="{e}"}}'], 0)
            self.assertEqual(m[f's3mond_open_findings{{environment="{e}"}}'], N_EXPECTED)
            for verdict, n in (("confirmed", 1), ("suspected", 3), ("unexplained", 1)):
                self.assertEqual(m[f's3mond_findings_total{{environment="{e}",verdict="{verdict}"}}'], n)
        self.stop()
        self.assertEqual(self.prom()["s3mond_up"], 0)


class ConfigRefresh(Base):
    settings = {"config_refresh": "3s"}

    def test_refresh_every_config_refresh_full_every_fourth(self):
        self.sim.reset_stats()
        self.polls("prod", 16)
        time.sleep(0.3)
        log = self.sim.log("prod", "workflows")
        steps = self.sim.log("prod", "sdkmessageprocessingsteps")
        cycles = self.sim.requests("prod", "tracelogs")
        times = [x["t"] for x in log]
        gaps = [b - a for a, b in zip(times, times[1:])]
        print(f"\n  {len(log)} refreshes in {cycles} cycles; gaps {['%.1f' % g for g in gaps]}",
              file=sys.stderr)
        self.assertEqual(len(steps), len(log), "workflows and steps are refreshed together")
        # every 3 s, on cycles 1 s apart: never more often than 2 s (whole
        # seconds), never later than refresh + one interval (+ jitter)
        self.assertGreaterEqual(len(log), 3)
        for g in gaps:
            self.assertGreater(g, 1.9)
            self.assertLess(g, 4.6)
        # deltas by modifiedon, a full read (no filter on modifiedon) every 4th
        full = ["modifiedon ge " not in urllib.parse.unquote(x["path"]) for x in log]
        self.assertIn(True, full, "a full read among the refreshes")
        self.assertIn(False, full, "delta reads among the refreshes")
        for i, f in enumerate(full):
            if f:
                later = full[i + 1:i + 4]
                self.assertNotIn(True, later, f"full reads too close: {full}")
        self.stop()

    def test_new_alert_refreshes_then_fetches_evidence_once(self):
        self.sim.reset_stats()
        mb, a = self.new_alert()
        self.sim.insert("prod", "processsessions",
                        h.failed_session_row("c1000000-0000-4000-8000-000000000002"))
        f = self.d.wait_record(lambda r: r["type"] == "finding" and r["alert"]["id"] == a["tracelogid"])[0]
        self.assertEqual(f["verdict"], "confirmed")
        self.assertEqual(h.culprit_ids(f)[0], "c1000000-0000-4000-8000-000000000001")
        by_set = self.sim.requests_by_set("prod")
        self.assertEqual(by_set.get("processsessions"), 1, by_set)
        self.assertEqual(by_set.get("plugintracelogs"), 1, by_set)
        self.assertGreaterEqual(by_set.get("workflows", 0), 1, by_set)
        self.stop()


class Resolve(Base):
    settings = {"resolve_after": "3s", "config_refresh": "1h"}

    def test_resolved_once_then_reopened_as_generation_two(self):
        mb, a = self.new_alert()
        fid = f"prod/tracelog/{a['tracelogid']}"
        first = self.d.wait_record(lambda r: r.get("id") == fid)[0]
        self.assertEqual(first["type"], "finding")
        # it recurs while open: counted, not reported again
        time.sleep(1.1)
        self.sim.patch("prod", "tracelogs", a["tracelogid"], level=2)
        self.polls("prod", 3)
        self.assertEqual(len([r for r in self.d.records if r.get("id") == fid]), 1)
        # the mailbox receives mail again after the last alert
        time.sleep(1.1)
        self.sim.patch("prod", "mailboxes", mb["mailboxid"], lastsuccessfulsynccompletedon="now")
        resolved = self.d.wait_record(lambda r: r["type"] == "resolved" and r["id"] == fid,
                                      what="the resolved record")[0]
        self.assertEqual(resolved["id"], fid)
        self.assertEqual(resolved["environment"], "prod")
        self.assertEqual(resolved["mailbox"]["id"], mb["mailboxid"])
        self.assertEqual(resolved["occurrences"], 2)
        at = lambda s: time.mktime(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))
        self.assertGreaterEqual(at(resolved["resolved_at"]) - at(resolved["last_alert_at"]), 3)
        self.polls("prod", 3)
        self.assertEqual(self.records(), [("finding", fid), ("resolved", fid)])

        # a recurrence after "resolved" opens a new finding
        self.sim.patch("prod", "tracelogs", a["tracelogid"], level=2)
        second = self.d.wait_record(lambda r: r.get("id") == fid + "#2", what="finding #2")[0]
        self.assertEqual(second["type"], "finding")
        self.assertEqual(second["alert"]["id"], a["tracelogid"])
        self.polls("prod", 4)   # > resolve_after: not resolved, the mailbox is failing again
        self.assertEqual(self.records(), [("finding", fid), ("resolved", fid), ("finding", fid + "#2")])
        self.stop()

    def records(self):
        """The records after the initial findings."""
        return [h.record_key(r) for r in self.d.records[N_EXPECTED:]]

    def test_act_finding_resolves_on_act_status_not_on_email(self):
        """Billing receives email fine (that must not resolve its
        appointments/contacts/tasks alert); its ACT status turning Success
        does."""
        self.polls("prod", 5)   # > resolve_after with incoming email healthy
        self.assertEqual(self.records(), [])
        self.sim.patch("prod", "mailboxes", "a1000000-0000-4000-8000-000000000004", actstatus=1)
        resolved = self.d.wait_record(lambda r: r["type"] == "resolved" and r["id"] == BILLING_ACT,
                                      what="Billing's ACT finding resolved")[0]
        self.assertEqual(resolved["mailbox"]["name"], "Billing")
        self.assertEqual(self.records(), [("resolved", BILLING_ACT)])
        self.stop()


class Outage(Base):
    envs = ["prod", "staging"]
    settings = {"config_refresh": "1h"}

    def test_one_error_per_outage_other_environment_unaffected(self):
        self.polls("staging", 1)
        fault_started = time.time()
        self.sim.fault(target="staging", kind="503", duration=5)
        failing = self.d.wait_record(lambda r: r["type"] == "error", what="the failing record")[0]
        self.assertEqual(failing["environment"], "staging")
        self.assertEqual(failing["state"], "failing")
        # prod keeps its schedule and reports a new alert during the outage
        mb, a = self.new_alert("prod")
        self.d.wait_record(lambda r: r["type"] == "finding" and r["alert"]["id"] == a["tracelogid"])
        recovered = self.d.wait_record(lambda r: r["type"] == "error" and r["state"] == "recovered",
                                       what="the recovered record")[0]
        self.assertEqual(recovered["environment"], "staging")
        self.assertGreaterEqual(recovered["failures"], 2)
        self.polls("staging", 2)
        errors = [r for r in self.d.records if r["type"] == "error"]
        self.assertEqual([e["state"] for e in errors], ["failing", "recovered"], errors)
        prod = [x["t"] for x in self.sim.log("prod", "tracelogs") if x["t"] >= fault_started - 1]
        gaps = [b - a for a, b in zip(prod, prod[1:])]
        print(f"\n  prod polls during staging's outage: gaps {['%.2f' % g for g in gaps]}",
              file=sys.stderr)
        self.assertGreaterEqual(len(prod), 5)
        self.assertLess(max(gaps), 1.5, "prod's schedule slipped during staging's outage")
        # no finding twice, staging's state survived the outage
        keys = [h.record_key(r) for r in self.d.records]
        self.assertEqual(len(keys), len(set(keys)), keys)
        self.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
