#!/usr/bin/env python3
"""Long daemon-suite cases (suite "slow", not in ./run test).

- --once's deadline: an environment whose Dataverse answers every query of a
  cycle only after 19 s (each within the request timeout) is given up after
  ONCE_DEADLINE_SEC (50 s) as UNKNOWN and named, while another environment's
  findings are still reported (CRITICAL wins), in human and JSON form."""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import s3test as h  # noqa: E402

REALISTIC = h.fixture("realistic")
DEADLINE = 50


class OnceDeadline(unittest.TestCase):
    def test_slow_environment_is_given_up(self):
        with h.Workdir() as wd, h.Sim(h.with_environments(REALISTIC, ["prod", "slow"]), wd) as sim:
            cfg = h.Config(wd, sim)
            for json_mode in (False, True):
                sim.clear_faults()
                for t in ("tracelogs", "workflows", "processsessions"):
                    sim.fault(target=f"slow/{t}", kind="stall", seconds=19, count=1)
                r = h.once(cfg, *(["--json"] if json_mode else []), timeout=DEADLINE + 60)
                self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
                if json_mode:
                    recs = h.json_lines(r.stdout)
                    self.assertEqual({x["environment"] for x in recs if x["type"] == "finding"}, {"prod"})
                    errors = [x for x in recs if x["type"] == "error"]
                    self.assertEqual([(e["environment"], e["state"], e["message"]) for e in errors],
                                     [("slow", "failing", f"no answer within {DEADLINE} s")])
                else:
                    first = r.stdout.splitlines()[0]
                    self.assertIn(f"in 2 environments; could not check 1: slow (no answer within {DEADLINE} s)", first)
                    self.assertIn("failed_environments=1;;;0", first)
                    self.assertEqual(len(r.stdout.splitlines()), 1 + len(REALISTIC["expected"]))
                self.assertIn(f"slow: no answer within {DEADLINE} s", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
