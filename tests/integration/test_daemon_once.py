#!/usr/bin/env python3
"""s3mond --once and --probe against dvsim (DESIGN.md §4): the monitoring-plugin
exit codes 0/1/2/3, the report's shape (summary line with performance data,
then one line per finding), --json equal to realistic.json's "expected", no
state written; --probe passing, naming a missing privilege, refusing a wrong
secret."""

import os
import re
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import s3test as h  # noqa: E402

REALISTIC = h.fixture("realistic")
SUMMARY_RE = re.compile(
    r"^S3MOND (OK|WARNING|CRITICAL|UNKNOWN) - (\d+) findings? \((\d+) confirmed\) "
    r"in (\d+) environments?(?:; could not check .*)? \| (.*)$")


def perfdata(text):
    """'a=1;;;0 b=2;;;0' -> {'a': 1, 'b': 2} (Nagios plugin guidelines)."""
    out = {}
    for item in text.split():
        label, rest = item.split("=", 1)
        out[label] = int(rest.split(";")[0])
    return out


class Realistic(unittest.TestCase):
    """Read-only checks on one simulator loaded with realistic.json."""

    @classmethod
    def setUpClass(cls):
        cls.wd = h.Workdir()
        cls.sim = h.Sim(REALISTIC, cls.wd)
        cls.cfg = h.Config(cls.wd, cls.sim)

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()
        cls.wd.cleanup()

    def test_critical_report_in_plugin_shape(self):
        r = h.once(self.cfg)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        lines = r.stdout.splitlines()
        m = SUMMARY_RE.match(lines[0])
        self.assertTrue(m, lines[0])
        self.assertEqual(m.group(1, 2, 3, 4), ("CRITICAL", "5", "1", "1"))
        self.assertEqual(perfdata(m.group(5)),
                         {"findings": 5, "confirmed": 1, "suspected": 3, "unexplained": 1,
                          "failed_environments": 0})
        # Nagios' long output: one line per finding, each naming environment and mailbox
        self.assertEqual(len(lines), 6, r.stdout)
        mailboxes = {"Support", "Sales", "Info", "Billing", "Helpdesk"}
        for line in lines[1:]:
            self.assertTrue(line.startswith("prod: mailbox "), line)
            self.assertNotIn("|", line)
        self.assertEqual({re.search(r'mailbox "([^"]+)"', l).group(1) for l in lines[1:]}, mailboxes)
        support = next(l for l in lines[1:] if '"Support"' in l)
        self.assertIn("confirmed", support)
        self.assertIn('workflow "Set email category"', support)
        self.assertIn('plug-in step "Contoso.Plugins.EmailCreate: Create of email"', support)

    def test_json_equals_expected(self):
        r = h.once(self.cfg, "--json")
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        records = h.json_lines(r.stdout)
        self.assertTrue(all(x["type"] == "finding" for x in records), records)
        got = {x["alert"]["id"]: x for x in records}
        self.assertEqual(len(got), len(records), "one finding per alert")
        expected = h.expected_by_alert(REALISTIC)
        self.assertEqual(set(got), set(expected))
        for alert_id, e in expected.items():
            f = got[alert_id]
            with self.subTest(alert=alert_id):
                self.assertEqual(f["alert"]["source"], e["source"])
                self.assertEqual(f["id"], f"prod/{e['source']}/{alert_id}")
                self.assertEqual(f["environment"], "prod")
                self.assertEqual(f["mailbox"]["id"], e["mailbox"])
                self.assertEqual(f["verdict"], e["verdict"])
                self.assertEqual(h.culprit_ids(f), e["culprits"])
                self.assertEqual(f["alert"]["code"], h.CODE)
                self.assertEqual(f["occurrences"], 1)
                for c in f["culprits"]:
                    ev = [x["id"] for x in c["evidence"]]
                    self.assertEqual(ev, e["evidence"].get(c["id"], []), c["name"])
                notes = " ".join(f["notes"]).lower()
                for kw in e["notes"]:
                    self.assertIn(kw.lower(), notes)
                self.assertTrue(f["remedy"])

    def test_writes_no_state(self):
        r = h.once(self.cfg)
        self.assertEqual(r.returncode, 2)
        self.assertFalse(os.path.exists(self.cfg.state_dir) and os.listdir(self.cfg.state_dir),
                         self.cfg.state_files())

    def test_since_narrows_the_window(self):
        # every alert of the fixture is older than a minute
        r = h.once(self.cfg, "--since", "1m")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertTrue(r.stdout.startswith("S3MOND OK - 0 findings (0 confirmed) in 1 environment |"),
                        r.stdout)
        self.assertEqual(len(r.stdout.splitlines()), 1)

    def test_probe_ok(self):
        r = h.s3mond(["--probe", "-c", self.cfg.path])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("prod: connection and token: OK", r.stdout)
        for t in ("mailboxes", "tracelogs", "workflows", "processsessions",
                  "sdkmessageprocessingsteps", "sdkmessages", "sdkmessagefilters",
                  "plugintypes", "plugintracelogs"):
            self.assertIn(f"prod: {t}: readable", r.stdout)
        self.assertRegex(r.stdout, r"prod: clock: OK")
        self.assertTrue(r.stdout.rstrip().endswith("prod: OK"), r.stdout)


class ExitCodes(unittest.TestCase):
    """Each of 0/1/3 (2 above) on its own simulator or configuration."""

    def setUp(self):
        self.wd = h.Workdir()
        self.addCleanup(self.wd.cleanup)

    def sim(self, scenario=REALISTIC):
        s = h.Sim(scenario, self.wd)
        self.addCleanup(s.stop)
        return s

    def assertUnknown(self, r, *words):
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        first = r.stdout.splitlines()[0]
        self.assertTrue(first.startswith("S3MOND UNKNOWN - "), r.stdout)
        for w in words:
            self.assertIn(w, first)
        secret = REALISTIC["environments"][0]["client_secret"]
        self.assertNotIn(secret, r.stdout + r.stderr)
        return first

    def test_ok_when_nothing_is_wrong(self):
        env = dict(REALISTIC["environments"][0], name="quiet", tables={})
        sim = self.sim({"environments": [env]})
        r = h.once(h.Config(self.wd, sim))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stdout.splitlines(),
                         ["S3MOND OK - 0 findings (0 confirmed) in 1 environment | findings=0;;;0 "
                          "confirmed=0;;;0 suspected=0;;;0 unexplained=0;;;0 failed_environments=0;;;0"])

    def test_warning_when_nothing_is_confirmed(self):
        sim = self.sim()
        # take the evidence away: Support's alert is then only suspected
        sim.delete("prod", "processsessions", "d1000000-0000-4000-8000-000000000001")
        sim.delete("prod", "plugintracelogs", "f4000000-0000-4000-8000-000000000001")
        r = h.once(h.Config(self.wd, sim))
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        m = SUMMARY_RE.match(r.stdout.splitlines()[0])
        self.assertEqual(m.group(1, 2, 3), ("WARNING", "5", "0"))
        self.assertEqual(perfdata(m.group(5))["suspected"], 4)

    def test_unknown_wrong_secret(self):
        sim = self.sim()
        r = h.once(h.Config(self.wd, sim, secret={"prod": "not-the-secret"}))
        first = self.assertUnknown(r, "could not check 1: prod")
        self.assertIn("invalid_client", first)
        self.assertEqual(perfdata(first.split(" | ", 1)[1])["failed_environments"], 1)

    def test_unknown_dataverse_down(self):
        sim = self.sim()
        # the default interval (60s) sets the daemon's retry budget; --once
        # gives up after 10 s so a monitoring system gets UNKNOWN in time
        cfg = h.Config(self.wd, sim, interval=None)
        port = h.closed_port()
        cfg.envs["prod"] = {"url": f"http://127.0.0.1:{port}/prod",
                            "authority": f"http://127.0.0.1:{port}"}
        cfg.write()
        r = h.once(cfg)
        first = self.assertUnknown(r, "could not check 1: prod")
        self.assertIn("(retry budget 10 s)", first)

    def test_unknown_config_error(self):
        sim = self.sim()
        cfg = h.Config(self.wd, sim)
        cfg.write_text(cfg.text().replace("interval = 2s", "interval = often"))
        r = h.once(cfg)
        first = self.assertUnknown(r, "configuration")
        self.assertRegex(first, re.escape(cfg.path) + r":2: ")
        self.assertEqual(len(r.stdout.splitlines()), 1)

    def test_one_failing_environment_among_good_ones(self):
        # A confirmed finding elsewhere wins over UNKNOWN (CRITICAL), and the
        # failure is still named in the summary.
        sim = self.sim(h.with_environments(REALISTIC, ["prod", "staging"]))
        r = h.once(h.Config(self.wd, sim, secret={"staging": "wrong"}))
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        first = r.stdout.splitlines()[0]
        self.assertIn("in 2 environments; could not check 1: staging", first)

    def test_probe_names_missing_privilege(self):
        sim = self.sim()
        sim.set_env("prod", deny_read=["plugintracelogs"])
        r = h.s3mond(["--probe", "-c", h.Config(self.wd, sim).path])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        line = next(l for l in r.stdout.splitlines() if l.startswith("prod: plugintracelogs:"))
        self.assertIn("FAIL", line)
        self.assertIn("Read privilege", line)
        self.assertIn("Plug-in Trace Log", line)
        self.assertIn("prod: tracelogs: readable", r.stdout)
        self.assertTrue(r.stdout.rstrip().endswith("prod: FAILED"), r.stdout)

    def test_probe_wrong_secret(self):
        sim = self.sim()
        r = h.s3mond(["--probe", "-c", h.Config(self.wd, sim, secret={"prod": "nope"}).path])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"prod: connection and token: FAIL: .*(secret|invalid_client)")
        self.assertNotIn("readable", r.stdout)
        self.assertNotIn(REALISTIC["environments"][0]["client_secret"], r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
