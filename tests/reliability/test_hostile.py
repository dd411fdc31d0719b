#!/usr/bin/env python3
# test_hostile: hostile and odd data end to end (JSON and stderr outputs,
# --once, the queries s3mond sends), and a 100k-row tracelog read.
"""Hostile and odd data (see hostile.py for the data).

TestHostile: one s3mond run (-o json) against an in-process dvsim whose answers
are mangled; then --once and an -o stderr run. Checks: every output line is
valid UTF-8 and (for JSON) valid JSON; the findings equal the oracle's, once
each; names come out exactly (NUL and lone surrogates as U+FFFD); no request
s3mond sent holds a quote (none of its queries needs a string literal, so an
id or name can never change one) nor any piece of the injection attempt; a row
with a hostile id is skipped with a warning that stays on one line without
control characters; the stderr and --once outputs carry no control character.

TestOtherHostileFixtures: tests/fixtures/hostile.json and transport/nul.json
end to end: findings exact, no error record (a NUL no longer fails its page).

TestBigPage: 100,000 tracelog rows of level 2 (250 of them alerts) read through
20 pages of 5000 following @odata.nextLink; every alert reported once.
"""

import json
import os
import subprocess
import sys
import time
import unittest
from urllib.parse import unquote

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..", "lib")]
import hostile  # noqa: E402
import s3test as h  # noqa: E402

ENV = "hostile"
CONTROL = [bytes([c]) for c in range(0x20) if c not in (0x0a,)] + [b"\x7f", b"\xc2\x85"]


def strict_lines(data):
    """The lines of DATA (split at \n only: U+2028 may stand in a JSON string)
    decoded strictly as UTF-8 (raises on ill-formed)."""
    return [x for x in data.decode("utf-8", "strict").split("\n") if x]


class TestHostile(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.td = h.Workdir("s3mond-hostile-")
        cls.tmp = cls.td.path
        cls.sc = hostile.scenario()
        cls.orig = hostile.mangle(h.dvsim_module())
        cls.sim = h.InProcSim(cls.sc, cls.tmp)
        cls.conf = h.Config(cls.tmp, cls.sim, interval="1s")
        cls.expected = {ENV: h.expected_findings(cls.sc, ENV)}
        n = len(cls.expected[ENV])
        cls.daemon = d = h.Daemon(cls.conf)
        try:
            d.wait_for(lambda r: h.findings_count(r) >= n, 60, "the hostile findings")
            time.sleep(3)
        finally:
            cls.rc = d.stop()
        with open(d.out_path, "rb") as f:
            cls.stdout = f.read()
        cls.stderr = open(d.stderr_path, "rb").read()

    @classmethod
    def tearDownClass(cls):
        h.dvsim_module().run_collection = cls.orig
        cls.sim.kill()
        cls.td.__exit__(None, None, None)

    def test_exit_status(self):
        self.assertEqual(self.rc, 0, self.stderr[-2000:])

    def test_json_lines_are_valid(self):
        lines = strict_lines(self.stdout)
        self.assertTrue(lines)
        for line in lines:
            rec = json.loads(line)
            self.assertIn(rec["type"], ("finding", "resolved", "error"))
        self.assertFalse([r for r in self.daemon.records if r.get("type") == "_unparsable"])

    def test_findings_exact(self):
        counts, problems = h.compare_findings(self.daemon.records, self.expected)
        self.assertEqual(problems, [])
        self.assertEqual(counts["emitted"], len(self.expected[ENV]))

    def test_names_come_out_exactly(self):
        names = hostile.mailbox_names(self.sc)
        names[hostile.NUL_MB] = hostile.NUL_NAME_OUT
        seen = 0
        for f in self.daemon.snapshot("finding"):
            mb = f["mailbox"]
            want = names.get(mb["id"])
            if want is None:
                self.assertNotIn("name", {k for k, v in mb.items() if v})
                continue
            self.assertEqual(mb.get("name"), want, "mailbox %s" % mb["id"])
            seen += 1
        self.assertGreaterEqual(seen, 5)
        wf = {w["workflowid"]: w.get("name") for w in self.sc["environments"][0]["tables"]["workflows"]}
        for f in self.daemon.snapshot("finding"):
            for c in f["culprits"]:
                if c["kind"] == "workflow" and wf.get(c["id"]):
                    self.assertEqual(c["name"], wf[c["id"]])

    def test_no_query_injection(self):
        paths = [e["path"] for e in self.sim.request_log(ENV) if e["set"] != "token"]
        self.assertGreater(len(paths), 5)
        for p in paths:
            q = unquote(p)
            self.assertNotIn("'", q, "a string literal in a query: %s" % q)
            for piece in ("or 1 eq 1", "c7000000-0000-4000-8000-000000000009", "\x1b"):
                self.assertNotIn(piece, q)
        # the evidence query did go out, with the real ids only
        sessions = [unquote(p) for p in paths if "/processsessions" in p]
        self.assertTrue(sessions)
        self.assertIn("c7000000-0000-4000-8000-000000000002", sessions[0])

    def test_hostile_rows_skipped_on_one_clean_line(self):
        err = strict_lines(self.stderr)
        skipped = [line for line in err if "skipped" in line]
        self.assertTrue(skipped, "no warning for the rows with a hostile id")
        for line in err:
            self.assertTrue(line.startswith("s3mond: "), "a diagnostic line was broken: %r" % line)
        for c in CONTROL:
            self.assertNotIn(c, self.stderr.replace(b"\n", b""), "control byte %r on stderr" % c)

    def test_stderr_output_and_once(self):
        # -o stderr: the interactive form, one clean line per record
        conf = h.Config(self.tmp, self.sim, name="stderr.conf", interval="1s", output="stderr",
                        state_directory=os.path.join(self.tmp, "state-stderr"))
        d = h.Daemon(conf, output=None, verbose=0, name="stderr-run")
        time.sleep(4)
        self.assertEqual(d.stop(), 0)
        out = open(d.stderr_path, "rb").read()
        lines = strict_lines(out)
        self.assertGreaterEqual(sum(1 for x in lines if "hostile" in x), len(self.expected[ENV]))
        for c in CONTROL:
            self.assertNotIn(c, out.replace(b"\n", b""), "control byte %r in -o stderr" % c)
        # --once: the monitoring-plugin report
        p = subprocess.run([h.S3MOND, "-c", self.conf.path, "--once"], capture_output=True, timeout=120)
        self.assertEqual(p.returncode, 2, p.stderr[-1000:])
        lines = strict_lines(p.stdout)
        self.assertTrue(lines[0].startswith("S3MOND CRITICAL - %d findings" % len(self.expected[ENV])),
                        lines[0])
        self.assertEqual(len(lines), 1 + len(self.expected[ENV]), lines[:3])
        for c in CONTROL:
            self.assertNotIn(c, p.stdout.replace(b"\n", b""), "control byte %r in --once" % c)
        p = subprocess.run([h.S3MOND, "-c", self.conf.path, "--once", "--json"], capture_output=True,
                           timeout=120)
        recs = [json.loads(x) for x in strict_lines(p.stdout)]
        self.assertEqual(len([r for r in recs if r.get("type") == "finding"]), len(self.expected[ENV]))


class TestOtherHostileFixtures(unittest.TestCase):
    """hostile.json (names at their maximum length, a ~130 KB exception) and
    transport/nul.json (a NUL inside the evidence's exception) end to end."""

    def run_fixture(self, name):
        td = h.Workdir("s3mond-fixture-")
        with td as tmp:
            sc = h.absolutize(h.fixture(name))
            sim = h.Sim(sc, tmp)
            try:
                envs = [e["name"] for e in sc["environments"]]
                conf = h.Config(tmp, sim, interval="1s")
                expected = {e: h.expected_findings(sim.scenario, e) for e in envs}
                n = sum(len(v) for v in expected.values())
                d = h.Daemon(conf)
                try:
                    d.wait_for(lambda r: h.findings_count(r) >= n, 60, "%s's findings" % name)
                    time.sleep(2.5)
                finally:
                    rc = d.stop()
                self.assertEqual(rc, 0, d.stderr_tail())
                counts, problems = h.compare_findings(d.records, expected)
                self.assertEqual(problems, [])
                self.assertEqual([r for r in d.records if r.get("type") in ("error", "_unparsable")], [])
                with open(d.out_path, "rb") as f:
                    strict_lines(f.read())
                return d.snapshot("finding")
            finally:
                sim.kill()

    def test_hostile_json(self):
        self.run_fixture("hostile.json")

    def test_nul_in_evidence_is_replaced_not_lost(self):
        findings = self.run_fixture(os.path.join("transport", "nul.json"))
        errors = [ev.get("error", "") for f in findings for c in f["culprits"]
                  for ev in c.get("evidence", [])]
        self.assertTrue(any(e.startswith("NUL\ufffdinside") for e in errors),
                        "the NUL should read U+FFFD, the text around it kept: %r" %
                        [e[:40] for e in errors])


class TestBigPage(unittest.TestCase):
    ROWS = 100000
    ALERTS = 250

    def test_100k_tracelogs_through_next_links(self):
        td = h.Workdir("s3mond-bigpage-")
        with td as tmp:
            sc = h.absolutize(h.fixture("realistic.json"))
            env = sc["environments"][0]
            now = time.time()
            mailboxes = [m["mailboxid"] for m in env["tables"]["mailboxes"]]
            rows = []
            for i in range(self.ROWS):
                at = now - 60 - (i * 80000.0 / self.ROWS)
                alert = i % (self.ROWS // self.ALERTS) == 7
                rows.append({
                    "tracelogid": "b9%06x-0000-4000-8000-%012x" % (i // 65536, i),
                    "level": 2 + (i % 2),
                    "text": h.alert_text("Support") if alert else "Mailbox sync warning %d" % i,
                    "_regardingobjectid_value": mailboxes[i % len(mailboxes)],
                    "createdon": h.iso(at - 5), "modifiedon": h.iso(at)})
            env["tables"]["tracelogs"] = rows
            sim = h.Sim(sc, tmp, start_timeout=120)
            try:
                conf = h.Config(tmp, sim, interval="5s")
                expected = {"prod": h.expected_findings(sim.scenario, "prod")}
                n = len(expected["prod"])
                self.assertGreaterEqual(n, self.ALERTS)
                d = h.Daemon(conf)
                try:
                    d.wait_for(lambda r: h.findings_count(r) >= n, 300, "%d findings" % n)
                    time.sleep(6)
                finally:
                    rc = d.stop()
                self.assertEqual(rc, 0, d.stderr_tail())
                counts, problems = h.compare_findings(d.records, expected)
                self.assertEqual(problems[:5], [])
                log = sim.request_log("prod", ["tracelogs"])
                pages = [e for e in log if "skiptoken" in e["path"]]
                self.assertGreaterEqual(len(pages), self.ROWS // 5000 - 1)
                peak = max(k for _t, k in d.rss)
                h.log("100k rows: %d findings, %d tracelogs requests (%d with a $skiptoken), "
                         "peak VmRSS %d KiB" % (counts["emitted"], len(log), len(pages), peak))
            finally:
                sim.kill()


if __name__ == "__main__":
    unittest.main(verbosity=2)
