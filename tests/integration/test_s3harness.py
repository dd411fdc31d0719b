#!/usr/bin/env python3
"""The harness's own checks must be able to fail: check_exactly_once() on
hand-made runs (no daemon involved)."""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import s3harness as h  # noqa: E402


def f(i):
    return {"type": "finding", "id": f"prod/tracelog/{i}"}


class ExactlyOnce(unittest.TestCase):
    def log(self, runs):
        """runs: [([records], killed)] -> an OutputLog over a real file."""
        wd = h.Workdir()
        self.addCleanup(wd.cleanup)
        log = h.OutputLog(wd.join("out.json"))
        for records, killed in runs:
            with open(log.path, "a") as out:
                for r in records:
                    out.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
            log.end_run(killed)
        return log

    def keys(self, *ids):
        return {("finding", f"prod/tracelog/{i}") for i in ids}

    def test_clean(self):
        s = h.check_exactly_once(self.log([([f(1), f(2)], True), ([f(3)], False)]), self.keys(1, 2, 3))
        self.assertEqual((s["crashes"], s["duplicates"], s["emitted"]), (1, 0, 3))

    def test_in_flight_duplicate_is_allowed(self):
        s = h.check_exactly_once(self.log([([f(1), f(2)], True), ([f(2), f(3)], False)]),
                                 self.keys(1, 2, 3))
        self.assertEqual(s["duplicate_keys"], [("finding", "prod/tracelog/2")])

    def test_lost(self):
        with self.assertRaisesRegex(AssertionError, "lost"):
            h.check_exactly_once(self.log([([f(1)], True), ([], False)]), self.keys(1, 2))

    def test_extra(self):
        with self.assertRaisesRegex(AssertionError, "not expected"):
            h.check_exactly_once(self.log([([f(1), f(9)], False)]), self.keys(1))

    def test_duplicate_not_in_flight(self):
        with self.assertRaisesRegex(AssertionError, "not the one in flight"):
            h.check_exactly_once(self.log([([f(1), f(2)], True), ([f(1)], False)]), self.keys(1, 2))

    def test_duplicate_after_clean_stop(self):
        with self.assertRaisesRegex(AssertionError, "clean stop"):
            h.check_exactly_once(self.log([([f(1)], False), ([f(1)], False)]), self.keys(1))

    def test_same_in_flight_twice_counts_once(self):
        with self.assertRaisesRegex(AssertionError, "not the one in flight"):
            h.check_exactly_once(self.log([([f(1)], True), ([f(2)], True), ([f(1), f(1)], False)]),
                                 self.keys(1, 2))

    def test_torn_line(self):
        with self.assertRaisesRegex(AssertionError, "torn"):
            h.check_exactly_once(self.log([([f(1), '{"type": "find'], True)]), self.keys(1))


if __name__ == "__main__":
    unittest.main(verbosity=2)
