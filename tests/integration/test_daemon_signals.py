#!/usr/bin/env python3
"""The daemon as systemd sees it (DESIGN.md §4, §7): sd_notify through a test
NOTIFY_SOCKET (READY=1, STATUS= per cycle, WATCHDOG=1, RELOADING=1 +
MONOTONIC_USEC, STOPPING=1), SIGHUP with a good and a bad file, SIGTERM and
SIGINT stopping with exit 0 and state saved within 2 s, idle and with a
request stalled in flight."""

import os
import re
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import s3test as h  # noqa: E402

REALISTIC = h.fixture("realistic")
N_EXPECTED = len(REALISTIC["expected"])
STOP_LIMIT = 2.0    # DESIGN.md §4: "SIGTERM/SIGINT stop within 2 s"


def is_status(m):
    return m.startswith("STATUS=")


class Base(unittest.TestCase):
    scenario = REALISTIC
    settings = {"interval": "1s"}

    def setUp(self):
        self.wd = h.Workdir()
        self.addCleanup(self.wd.cleanup)
        self.sim = h.Sim(self.scenario, self.wd)
        self.addCleanup(self.sim.stop)
        self.cfg = h.Config(self.wd, self.sim, **self.settings)

    def daemon(self, **kw):
        kw.setdefault("notify", True)
        d = h.Daemon(self.cfg, **kw)
        self.addCleanup(d.close)
        return d

    def first_cycle(self, d):
        d.notify.until(lambda m: m == "READY=1", what="READY=1")
        d.notify.until(is_status, what="STATUS= after the first cycle")
        d.wait_record(lambda r: r["type"] == "finding", count=N_EXPECTED, what="initial findings")


class Notify(Base):
    def test_notify_sequence(self):
        d = self.daemon(env={"WATCHDOG_USEC": "400000"})
        n = d.notify
        n.until(lambda m: m == "READY=1", what="READY=1")
        statuses = [n.until(is_status, what=f"STATUS= #{i}") for i in range(3)]
        first = statuses[0]
        self.assertRegex(first, r"^STATUS=1 environment: 1 ok, 0 failing; findings: 1 confirmed, "
                                r"3 suspected, 1 unexplained; 5 open, 0 resolved$")
        self.assertEqual(statuses[1], statuses[0])          # idle cycles: the same counts
        n.until(lambda m: m == "WATCHDOG=1", what="WATCHDOG=1")

        d.send_signal(signal.SIGHUP)
        reloading = n.until(lambda m: m.startswith("RELOADING=1"), what="RELOADING=1")
        self.assertRegex(h.fields(reloading).get("MONOTONIC_USEC", ""), r"^[0-9]+$")
        usec = int(h.fields(reloading)["MONOTONIC_USEC"])
        self.assertLess(abs(usec / 1e6 - time.clock_gettime(time.CLOCK_MONOTONIC)), 30)
        n.until(lambda m: m == "READY=1", what="READY=1 after the reload")
        n.until(is_status, what="STATUS= after the reload")
        n.until(lambda m: m == "WATCHDOG=1", what="WATCHDOG=1 after the reload")

        rc = d.stop(signal.SIGTERM)
        self.assertEqual(rc, 0, d.stderr())
        msgs = n.drain()
        self.assertIn("STOPPING=1", msgs)
        seq = [m for m in msgs if m != "WATCHDOG=1" and not is_status(m)]
        seq = [m.split("\n")[0] for m in seq]
        self.assertEqual(seq, ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"], msgs)
        self.assertEqual(msgs.index("READY=1"), 0, "READY=1 comes first")
        self.assertGreaterEqual(msgs.count("WATCHDOG=1"), 2)

    def test_no_watchdog_without_watchdog_usec(self):
        d = self.daemon()
        d.notify.until(lambda m: m == "READY=1")
        for i in range(2):
            d.notify.until(is_status, what=f"STATUS= #{i}")
        rc = d.stop()
        self.assertEqual(rc, 0)
        self.assertNotIn("WATCHDOG=1", d.notify.drain())


class Reload(Base):
    settings = {"interval": "1s"}
    scenario = h.with_environments(REALISTIC, ["prod", "staging"])

    def setUp(self):
        super().setUp()
        self.cfg.envs = {"prod": {}}
        self.cfg.write()

    def test_good_file_adds_environment_and_changes_interval(self):
        d = self.daemon()
        self.first_cycle(d)
        self.assertEqual({f["environment"] for f in d.findings()}, {"prod"})
        # polling every second before the reload
        h.wait_until(lambda: self.sim.requests("prod", "tracelogs") >= 3, what="3 polls of prod")

        self.cfg.envs["staging"] = {}
        self.cfg.settings["interval"] = "3s"
        self.cfg.write()
        d.send_signal(signal.SIGHUP)
        d.notify.until(lambda m: m.startswith("RELOADING=1"), what="RELOADING=1")
        d.notify.until(lambda m: m == "READY=1", what="READY=1 after the reload")
        reloaded = time.monotonic()
        before = self.sim.requests("prod", "tracelogs")

        staging = d.wait_record(lambda r: r["type"] == "finding" and r["environment"] == "staging",
                                count=N_EXPECTED, what="staging's findings after the reload")
        self.assertEqual({f["alert"]["id"] for f in staging}, set(h.expected_by_alert(REALISTIC)))
        # the new interval: prod (kept, with its state: no finding again)
        # polls about every 3 s now, not every second
        time.sleep(max(0, 6.5 - (time.monotonic() - reloaded)))
        polls = self.sim.requests("prod", "tracelogs") - before
        self.assertLessEqual(polls, 4, "prod still polls every second after interval = 3s")
        self.assertGreaterEqual(polls, 1)
        self.assertEqual(len(d.findings(lambda f: f["environment"] == "prod")), N_EXPECTED)
        self.assertIn("configuration reloaded", d.stderr())
        rc = d.stop()
        self.assertEqual(rc, 0, d.stderr())

    def test_bad_file_keeps_old_configuration(self):
        d = self.daemon()
        self.first_cycle(d)
        good = self.cfg.text()
        self.cfg.write_text(good.replace("interval = 1s", "interval = 1s\nresolve_after = soon"))
        d.send_signal(signal.SIGHUP)
        d.notify.until(lambda m: m.startswith("RELOADING=1"), what="RELOADING=1")
        d.notify.until(lambda m: m == "READY=1", what="READY=1 after the failed reload")
        err = h.wait_until(lambda: re.search(r"reload: keeping the running configuration: (.*)",
                                             d.stderr()), what="the reload error")
        self.assertIn(f"{self.cfg.path}:3:", err.group(1))
        self.assertIn("resolve_after", err.group(1))
        # still polling, with the old configuration: a new alert is reported
        polls = self.sim.requests("prod", "tracelogs")
        mb = h.mailbox_row("Returns")
        self.sim.insert("prod", "mailboxes", mb)
        alert = h.alert_row(mb["mailboxid"], "Returns")
        self.sim.insert("prod", "tracelogs", alert)
        f = d.wait_record(lambda r: r["type"] == "finding" and r["alert"]["id"] == alert["tracelogid"],
                          what="a finding after the failed reload")[0]
        self.assertEqual(f["environment"], "prod")
        self.assertGreater(self.sim.requests("prod", "tracelogs"), polls)
        self.assertTrue(d.running())
        # a later good reload is taken
        self.cfg.write_text(good)
        d.send_signal(signal.SIGHUP)
        h.wait_until(lambda: "configuration reloaded" in d.stderr(), what="the good reload")
        rc = d.stop()
        self.assertEqual(rc, 0, d.stderr())


class ReloadEnvironments(Base):
    """Reloads that replace or drop an environment."""
    settings = {"interval": "1s"}
    scenario = h.with_environments(REALISTIC, ["prod", "staging"])

    def reload(self, d):
        d.send_signal(signal.SIGHUP)
        d.notify.until(lambda m: m.startswith("RELOADING=1"), what="RELOADING=1")
        d.notify.until(lambda m: m == "READY=1", what="READY=1 after the reload")
        self.assertNotIn("keeping the running configuration", d.stderr())

    def test_new_secret_keeps_state(self):
        d = self.daemon()
        d.notify.until(lambda m: m == "READY=1")
        d.wait_record(lambda r: r["type"] == "finding", count=2 * N_EXPECTED, what="initial findings")
        # the secret is rotated: a changed connection, so prod's client is
        # replaced, but its state (what was reported) stays
        self.sim.set_env("prod", client_secret="rotated")
        self.cfg.secret["prod"] = "rotated"
        self.cfg.write()
        tokens = self.sim.requests("prod", "token")
        self.reload(d)
        mb = h.mailbox_row("Returns")
        self.sim.insert("prod", "mailboxes", mb)
        alert = h.alert_row(mb["mailboxid"], "Returns")
        self.sim.insert("prod", "tracelogs", alert)
        d.wait_record(lambda r: r["type"] == "finding" and r["alert"]["id"] == alert["tracelogid"],
                      what="a finding with the new secret")
        for i in range(3):
            d.notify.until(is_status, what=f"cycle {i}")
        keys = [h.record_key(r) for r in d.records]
        self.assertEqual(len(keys), len(set(keys)), "nothing reported twice after the reload")
        self.assertEqual(len(keys), 2 * N_EXPECTED + 1, keys)
        self.assertEqual([r for r in d.records if r["type"] == "error"], [])
        self.assertGreater(self.sim.requests("prod", "token"), tokens, "a token with the new secret")
        rc = d.stop()
        self.assertEqual(rc, 0, d.stderr())

    def test_dropped_environment_stops_and_comes_back(self):
        d = self.daemon()
        d.notify.until(lambda m: m == "READY=1")
        d.wait_record(lambda r: r["type"] == "finding", count=2 * N_EXPECTED, what="initial findings")
        self.cfg.envs.pop("staging")
        self.cfg.write()
        self.reload(d)
        time.sleep(0.5)     # a poll that was already on its way
        staging = self.sim.requests("staging")
        prod = self.sim.requests("prod", "tracelogs")
        h.wait_until(lambda: self.sim.requests("prod", "tracelogs") >= prod + 3, what="3 polls of prod")
        self.assertEqual(self.sim.requests("staging"), staging, "staging still polled after its removal")
        self.assertIn("staging.state", self.cfg.state_files())
        # back again: its state is read again, nothing is reported twice
        self.cfg.envs["staging"] = {}
        self.cfg.write()
        before = self.sim.requests("staging", "tracelogs")
        self.reload(d)
        h.wait_until(lambda: self.sim.requests("staging", "tracelogs") >= before + 2,
                     what="staging polled again")
        for i in range(2):
            d.notify.until(is_status, what=f"cycle {i}")
        keys = [h.record_key(r) for r in d.records]
        self.assertEqual(len(keys), len(set(keys)), keys)
        self.assertEqual(len(keys), 2 * N_EXPECTED)
        rc = d.stop()
        self.assertEqual(rc, 0, d.stderr())


class Stop(Base):
    settings = {"interval": "1s"}

    def check_stop(self, d, sig):
        rc = d.stop(sig)
        took = d.stop_seconds
        print(f"  {signal.Signals(sig).name}: exit {rc} after {took:.3f}s", file=sys.stderr)
        self.assertEqual(rc, 0, d.stderr())
        self.assertIn("STOPPING=1", d.notify.drain())
        self.assertLess(took, STOP_LIMIT, f"{signal.Signals(sig).name} took {took:.2f}s")
        # state saved: a restart reports nothing again
        with open(os.path.join(self.cfg.state_dir, "prod.state")) as f:
            state = f.read()
        for alert_id in h.expected_by_alert(REALISTIC):
            self.assertIn(alert_id, state)
        return took

    def restart_reports_nothing(self):
        d = self.daemon()
        d.notify.until(lambda m: m == "READY=1")
        d.notify.until(is_status, what="a cycle after the restart")
        d.notify.until(is_status, what="a second cycle after the restart")
        rc = d.stop()
        self.assertEqual(rc, 0)
        self.assertEqual(d.records, [])

    def test_sigterm_idle(self):
        d = self.daemon()
        self.first_cycle(d)
        d.notify.until(is_status, what="an idle cycle")
        self.check_stop(d, signal.SIGTERM)
        self.restart_reports_nothing()

    def test_sigint_idle(self):
        d = self.daemon()
        self.first_cycle(d)
        self.check_stop(d, signal.SIGINT)
        self.restart_reports_nothing()

    def stalled(self, sig):
        d = self.daemon()
        self.first_cycle(d)
        fid = self.sim.fault(target="prod/tracelogs", kind="stall", seconds=30, duration=120)
        h.wait_until(lambda: any(f.get("id") == fid and f.get("hits", 0) >= 1
                                 for f in self.sim.faults()),
                     what="a stalled tracelogs request")
        time.sleep(0.2)     # the request is in flight, its answer 30 s away
        self.check_stop(d, sig)
        self.sim.clear_faults()

    def test_sigterm_with_request_stalled(self):
        self.stalled(signal.SIGTERM)

    def test_sigint_with_request_stalled(self):
        self.stalled(signal.SIGINT)


if __name__ == "__main__":
    unittest.main(verbosity=2)
