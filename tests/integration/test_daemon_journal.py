#!/usr/bin/env python3
"""The real daemon into a real systemd-journald (private mount namespace,
s3test.journald), DESIGN.md §3:

- output = journal: realistic.json's findings arrive once each; a new alert
  inserted while the daemon runs (interval 2 s) is in the journal within
  interval + 2 s of its insertion, exactly once, with every field (MESSAGE,
  PRIORITY 4, MESSAGE_ID, SYSLOG_IDENTIFIER, S3MOND_ENVIRONMENT,
  S3MOND_FINDING_ID, S3MOND_MAILBOX_ID, S3MOND_MAILBOX_NAME, S3MOND_ALERT_ID,
  S3MOND_ERROR_CODE, S3MOND_VERDICT, S3MOND_CULPRIT once per culprit), and
  `journalctl MESSAGE_ID=<finding id>` lists every finding;
- output = syslog: the same through syslog(3) and /dev/log
  (_TRANSPORT=syslog, SYSLOG_FACILITY=3), the pairs after the text.

Needs root (mount namespace); skips (77) otherwise."""

import contextlib
import importlib.util
import json
import os
import signal
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import s3test as h  # noqa: E402
from s3test import journald  # noqa: E402

_spec = importlib.util.spec_from_file_location("test_journal", os.path.join(HERE, "test-journal.py"))
test_journal = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_journal)

REALISTIC = h.fixture("realistic")
EXPECTED = h.expected_by_alert(REALISTIC)
INTERVAL = 2
LATENCY_LIMIT = INTERVAL + 2     # the requirement: within interval + 2 s
FINDING = h.MESSAGE_ID["finding"]

SET_EMAIL_CATEGORY = "c1000000-0000-4000-8000-000000000001"
SET_EMAIL_CATEGORY_ACTIVATION = "c1000000-0000-4000-8000-000000000002"
ROUTE_TO_QUEUE = "c1000000-0000-4000-8000-000000000003"
EMAIL_CREATE_STEP = "e1000000-0000-4000-8000-000000000001"
STEP_TYPE = "Contoso.Plugins.EmailCreate"
CULPRITS = [f"workflow:{SET_EMAIL_CATEGORY}:Set email category",
            f"plugin_step:{EMAIL_CREATE_STEP}:Contoso.Plugins.EmailCreate: Create of email",
            f"workflow:{ROUTE_TO_QUEUE}:Route to queue"]
NAMES = {SET_EMAIL_CATEGORY: "Set email category", ROUTE_TO_QUEUE: "Route to queue",
         EMAIL_CREATE_STEP: "Contoso.Plugins.EmailCreate: Create of email"}


def s(b):
    return b.decode()


class Journal(unittest.TestCase):
    output = "journal"

    def setUp(self):
        stack = contextlib.ExitStack()
        self.addCleanup(stack.close)
        self.read = stack.enter_context(journald.journald(dev_log=(self.output == "syslog")))
        self.wd = stack.enter_context(h.Workdir())
        self.sim = stack.enter_context(h.Sim(REALISTIC, self.wd))
        self.cfg = h.Config(self.wd, self.sim, interval=f"{INTERVAL}s")
        self.d = stack.enter_context(h.Daemon(self.cfg, output=self.output, notify=True))

    # -- what an entry says, per transport --
    def entries(self, *matches, count=None, timeout=10.0):
        if self.output == "journal":
            return self.read("SYSLOG_IDENTIFIER=s3mond", "_TRANSPORT=journal", *matches,
                             count=count, timeout=timeout)
        return self.read("SYSLOG_IDENTIFIER=s3mond", "_TRANSPORT=syslog", *matches,
                         count=count, timeout=timeout)

    def findings(self, count=None, timeout=10.0):
        if self.output == "journal":
            return self.entries(f"MESSAGE_ID={FINDING}", count=count, timeout=timeout)
        return self.entries("PRIORITY=4", count=count, timeout=timeout)

    def view(self, e):
        """An entry as {field: [values]} in DESIGN §3's names, whichever transport."""
        if self.output == "journal":
            names = ["MESSAGE", "PRIORITY", "MESSAGE_ID", "SYSLOG_IDENTIFIER", "S3MOND_ENVIRONMENT",
                     "S3MOND_FINDING_ID", "S3MOND_MAILBOX_ID", "S3MOND_MAILBOX_NAME",
                     "S3MOND_ALERT_ID", "S3MOND_ERROR_CODE", "S3MOND_VERDICT", "S3MOND_CULPRIT"]
            return {n: [s(v) for v in journald.values(e, n)] for n in names}
        text, pairs, truncated = test_journal.split_line(e["MESSAGE"])
        self.assertFalse(truncated)
        v = {"MESSAGE": [text], "PRIORITY": [e["PRIORITY"]], "SYSLOG_IDENTIFIER": [e["SYSLOG_IDENTIFIER"]],
             "_TRANSPORT": [e["_TRANSPORT"]], "SYSLOG_FACILITY": [e["SYSLOG_FACILITY"]]}
        keys = {"environment": "S3MOND_ENVIRONMENT", "finding_id": "S3MOND_FINDING_ID",
                "mailbox_id": "S3MOND_MAILBOX_ID", "alert_id": "S3MOND_ALERT_ID",
                "error_code": "S3MOND_ERROR_CODE", "verdict": "S3MOND_VERDICT", "culprit": "S3MOND_CULPRIT",
                "event": "event", "occurrences": "occurrences"}
        v["S3MOND_CULPRIT"] = []
        for k, val in pairs:
            v.setdefault(keys.get(k, k), []).append(val)
        return v

    def ordered(self, v, values):
        """journald keeps a field's repeated values, not their order (it
        sorts an entry's items by where their data sits in the file): over
        the native protocol compare them as a multiset. syslog keeps the
        line's order."""
        return sorted(values) if self.output == "journal" else list(values)

    def check_common(self, v):
        self.assertEqual(v["PRIORITY"], ["4"])
        self.assertEqual(v["SYSLOG_IDENTIFIER"], ["s3mond"])
        self.assertEqual(v["S3MOND_ENVIRONMENT"], ["prod"])
        self.assertEqual(v["S3MOND_ERROR_CODE"], [str(h.CODE)])
        if self.output == "journal":
            self.assertEqual(v["MESSAGE_ID"], [FINDING])
        else:
            self.assertEqual(v["_TRANSPORT"], ["syslog"])
            self.assertEqual(v["SYSLOG_FACILITY"], ["3"])
            self.assertEqual(v["event"], ["finding"])
        self.assertEqual(len(v["MESSAGE"]), 1)
        self.assertTrue(v["MESSAGE"][0].startswith("prod: mailbox "), v["MESSAGE"])

    def test_initial_then_new_alert(self):
        # realistic.json's findings, once each
        initial = self.findings(count=len(EXPECTED), timeout=h.GUARD)
        views = [self.view(e) for e in initial]
        self.assertEqual(sorted(v["S3MOND_ALERT_ID"][0] for v in views), sorted(EXPECTED))
        for v in views:
            e = EXPECTED[v["S3MOND_ALERT_ID"][0]]
            with self.subTest(alert=e["alert"]):
                self.check_common(v)
                self.assertEqual(v["S3MOND_FINDING_ID"], [f"prod/{e['source']}/{e['alert']}"])
                self.assertEqual(v["S3MOND_MAILBOX_ID"], [e["mailbox"]])
                self.assertEqual(v["S3MOND_VERDICT"], [e["verdict"]])
                self.assertEqual(self.ordered(v, [c.split(":")[1] for c in v["S3MOND_CULPRIT"]]),
                                 self.ordered(v, e["culprits"]))
                if e["culprits"]:   # the order (evidence first) is MESSAGE's
                    names = [NAMES[c] for c in e["culprits"]]
                    at = [v["MESSAGE"][0].index(f'"{n}"') for n in names]
                    self.assertEqual(at, sorted(at), v["MESSAGE"][0])
                for c in v["S3MOND_CULPRIT"]:
                    kind, cid, name = c.split(":", 2)
                    self.assertIn(kind, ("workflow", "plugin_step"))
                    self.assertEqual(name, NAMES[cid])
                    self.assertIn(f'"{name}"', v["MESSAGE"][0])
                self.assertIn(e["verdict"], v["MESSAGE"][0])

        # idle: then a new alert, with a failed session and a plug-in trace just before it
        self.d.notify.until(lambda m: m.startswith("STATUS="), what="a cycle")
        mb = h.mailbox_row("Returns")
        self.sim.insert("prod", "mailboxes", mb)
        self.sim.insert("prod", "processsessions", h.failed_session_row(SET_EMAIL_CATEGORY_ACTIVATION))
        self.sim.insert("prod", "plugintracelogs", h.plugin_trace_row(EMAIL_CREATE_STEP, STEP_TYPE))
        alert = h.alert_row(mb["mailboxid"], "Returns")
        inserted = time.time()
        self.sim.insert("prod", "tracelogs", alert)
        aid = alert["tracelogid"]
        new = self.entries(f"{'S3MOND_ALERT_ID' if self.output == 'journal' else 'PRIORITY'}="
                           f"{aid if self.output == 'journal' else 4}",
                           count=len(EXPECTED) + 1 if self.output == "syslog" else 1, timeout=h.GUARD)
        new = [e for e in new if self.view(e)["S3MOND_ALERT_ID"] == [aid]]
        self.assertEqual(len(new), 1, "the new finding reached the journal")
        latency = int(new[0]["__REALTIME_TIMESTAMP"]) / 1e6 - inserted
        print(f"\n  {self.output}: alert inserted -> journal entry in {latency:.2f}s "
              f"(interval {INTERVAL}s, limit {LATENCY_LIMIT}s)", file=sys.stderr)
        self.assertLessEqual(latency, LATENCY_LIMIT)

        v = self.view(new[0])
        self.check_common(v)
        self.assertEqual(v["S3MOND_FINDING_ID"], [f"prod/tracelog/{aid}"])
        self.assertEqual(v["S3MOND_ALERT_ID"], [aid])
        self.assertEqual(v["S3MOND_MAILBOX_ID"], [mb["mailboxid"]])
        self.assertEqual(v["S3MOND_VERDICT"], ["confirmed"])
        self.assertEqual(self.ordered(v, v["S3MOND_CULPRIT"]), self.ordered(v, CULPRITS))
        if self.output == "journal":
            self.assertEqual(v["S3MOND_MAILBOX_NAME"], ["Returns"])
            self.assertIsInstance(new[0]["S3MOND_CULPRIT"], list, "sent once per culprit")
            # the whole finding rides along as JSON, culprits in their order
            j = json.loads(journald.value(new[0], "S3MOND_JSON"))
            self.assertEqual(j["id"], f"prod/tracelog/{aid}")
            self.assertEqual(h.culprit_ids(j), [c.split(":")[1] for c in CULPRITS])
        msg = v["MESSAGE"][0]
        self.assertTrue(msg.startswith(f'prod: mailbox "Returns" <{mb["emailaddress"]}>: '
                                       f'UnknownIncomingEmailIntegrationError -2147220956 confirmed: '), msg)
        for name in NAMES.values():
            self.assertIn(f'"{name}"', msg)

        # exactly once, over a few more cycles; every finding listed by MESSAGE_ID
        for i in range(3):
            self.d.notify.until(lambda m: m.startswith("STATUS="), what=f"cycle {i} after the alert")
        views = [self.view(e) for e in self.findings()]
        ids = [v["S3MOND_FINDING_ID"][0] for v in views]
        self.assertEqual(len(ids), len(EXPECTED) + 1, ids)
        self.assertEqual(len(set(ids)), len(ids), ids)
        if self.output == "journal":
            listed = journald.journalctl(f"MESSAGE_ID={FINDING}", "-o", "cat").decode().splitlines()
            self.assertEqual(len(listed), len(EXPECTED) + 1, listed)
            self.assertEqual(sorted(listed), sorted(v["MESSAGE"][0] for v in views))
        else:
            self.assertEqual(self.read("SYSLOG_IDENTIFIER=s3mond", "_TRANSPORT=journal"), [],
                             "nothing through the native protocol")
        rc = self.d.stop(signal.SIGTERM)
        self.assertEqual(rc, 0, self.d.stderr())


    def test_journald_outage_loses_nothing(self):
        """journald unreachable while a new alert comes: the finding is not
        noted as reported, so it comes once journald is back, once."""
        if self.output != "journal":
            self.skipTest("syslog(3) cannot tell a lost line")
        self.findings(count=len(EXPECTED), timeout=h.GUARD)
        with journald.hidden("/run/systemd/journal"):
            mb = h.mailbox_row("Returns")
            self.sim.insert("prod", "mailboxes", mb)
            alert = h.alert_row(mb["mailboxid"], "Returns")
            self.sim.insert("prod", "tracelogs", alert)
            h.wait_until(lambda: "could not emit finding" in self.d.stderr(), what="a failed emit")
            self.d.notify.until(lambda m: m.startswith("STATUS="), what="a cycle during the outage")
        new = self.entries(f"S3MOND_ALERT_ID={alert['tracelogid']}", count=1, timeout=h.GUARD)
        for i in range(3):
            self.d.notify.until(lambda m: m.startswith("STATUS="), what=f"cycle {i} after the outage")
        new = self.entries(f"S3MOND_ALERT_ID={alert['tracelogid']}")
        self.assertEqual(len(new), 1)
        ids = [journald.value(e, "S3MOND_FINDING_ID") for e in self.findings()]
        self.assertEqual(len(ids), len(EXPECTED) + 1)
        self.assertEqual(len(set(ids)), len(ids))
        rc = self.d.stop(signal.SIGTERM)
        self.assertEqual(rc, 0, self.d.stderr())


class Syslog(Journal):
    output = "syslog"


if __name__ == "__main__":
    journald.reexec_in_namespace()
    unittest.main(verbosity=2)
