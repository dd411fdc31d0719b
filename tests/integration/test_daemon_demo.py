#!/usr/bin/env python3
"""`./run demo` without the package and build steps: tests/demo/demo.sh runs
non-interactively against the build under test, shows the initial report,
the new finding appearing in the daemon's output and its JSON form, stops
cleanly and leaves nothing behind (temp directory, simulator, daemon)."""

import json
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import s3test as h  # noqa: E402

DEMO = os.path.join(h.SRC, "tests", "demo", "demo.sh")
ALERT = "b9000000-0000-4000-8000-0000000000d0"


class Demo(unittest.TestCase):
    def test_demo(self):
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "INVOCATION_ID", "JOURNAL_STREAM")}
        r = subprocess.run([DEMO, os.path.dirname(h.S3MOND)], capture_output=True, text=True,
                           timeout=240, env=env, stdin=subprocess.DEVNULL)
        out = r.stdout
        self.assertEqual(r.returncode, 0, out + r.stderr)
        # the --once report: the plugin summary, then the findings
        self.assertRegex(out, r"\n    S3MOND CRITICAL - 5 findings \(1 confirmed\) in 1 environment \| findings=5;;;0")
        self.assertIn("Exit status 2", out)
        # the daemon: the five initial findings, then the new one, once
        daemon_lines = [l[6:] for l in out.splitlines() if l.startswith("    | ")]
        findings = [l for l in daemon_lines if l.startswith("prod: mailbox ")]
        self.assertEqual(len(findings), 6, daemon_lines)
        self.assertEqual(len([l for l in findings if '"Returns"' in l]), 1)
        self.assertRegex(findings[-1], r'^prod: mailbox "Returns" <returns@contoso.com>: .* confirmed: '
                                       r'workflow "Set email category" \(failed session ')
        # its JSON form
        m = re.search(r"\n    (\{\n.*?\n    \})\n", out, re.S)
        self.assertTrue(m, out)
        f = json.loads(m.group(1))
        self.assertEqual((f["type"], f["id"], f["verdict"]), ("finding", f"prod/tracelog/{ALERT}", "confirmed"))
        self.assertEqual(f["culprits"][0]["name"], "Set email category")
        # a clean stop, and nothing left behind
        self.assertIn("The daemon exited with status 0", out)
        self.assertIn("Where to look next", out)
        tmp = re.search(r"Working in (\S+)", out).group(1)
        self.assertFalse(os.path.exists(tmp), tmp)
        pid = int(re.search(r"The simulator \(pid (\d+)\)", out).group(1))
        try:
            with open(f"/proc/{pid}/cmdline") as c:
                self.assertNotIn("dvsim", c.read(), "the simulator is still running")
        except FileNotFoundError:
            pass


if __name__ == "__main__":
    unittest.main(verbosity=2)
