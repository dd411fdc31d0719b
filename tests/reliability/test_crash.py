#!/usr/bin/env python3
# test_crash: kill -9 at every state crash point, and unusable state files
# (corrupt, truncated, empty, foreign, newer, a symlink, a directory, a torn or
# garbled journal): s3mond says what happened, keeps running, and reports each
# finding once (at most the one in flight at a kill again).
"""Crash safety and unusable state files.

Crash points (S3MOND_TEST_CRASH_AT=<point>:<n>, see daemon/store/state.h): the first
run is killed at the n-th pass of the point; a second run finishes the job.
Across both runs every expected finding is emitted, none is unexpected, and a
finding the first run emitted comes again only when the kill hit between its
emission and its note (monitor-after-emit, state-log-mid-append): then only
that one, the last the first run emitted (and it does come again: the hook works).

State files: a first run saves the state; the file is then spoiled; a second
run must name the file and say it was moved aside (or what it skipped), keep
running, report the new alert once, and lose nothing. Starting afresh re-reports
the alerts inside the lookback at most once each (state.h documents it); a bad
journal line costs at most the findings it held.
"""

import concurrent.futures
import glob
import json
import os
import signal
import sys
import time
import traceback
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..", "lib")]
import rlib  # noqa: E402
import s3test as h  # noqa: E402

ENV = "prod"

# (point, n, in flight: whether the killed finding may come again)
CRASH_POINTS = [
    ("state-mid-write", 1, False),
    ("state-mid-write", 2, False),
    ("state-before-rename", 1, False),
    ("state-before-rename", 2, False),
    ("state-after-rename", 1, False),
    ("state-after-rename", 2, False),
    ("state-after-log-truncate", 1, False),
    ("state-after-log-truncate", 2, False),
    ("state-log-mid-append", 3, True),
    ("state-log-mid-append", 6, True),
    ("monitor-after-emit", 3, True),
    ("monitor-after-emit", 6, True),
]


def run_pool(fn, items):
    """Run fn(item) -> [problems] concurrently; returns {item: problems}."""
    out = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=rlib.JOBS) as ex:
        futs = {ex.submit(fn, it): it for it in items}
        for fut in concurrent.futures.as_completed(futs):
            it = futs[fut]
            try:
                out[it] = fut.result()
            except Exception as e:  # noqa: BLE001
                out[it] = ["%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc(limit=4))]
            h.log("%-36s %s" % (it if isinstance(it, str) else ":".join(map(str, it[:2])),
                                "FAIL" if out[it] else "ok"))
            for p in out[it]:
                h.log("    " + p)
    return out


def crash_case(item):
    point, n, in_flight = item
    problems = []
    td = h.Workdir("s3mond-crash-")
    with td as tmp:
        rig = rlib.Rig(tmp).start()
        try:
            n_initial = rig.n_expected()
            d1 = rig.daemon(env={"S3MOND_TEST_CRASH_AT": "%s:%d" % (point, n)})
            deadline = time.time() + 40
            inserted = False
            while d1.running() and time.time() < deadline:
                if not inserted and h.findings_count(d1.snapshot()) >= n_initial:
                    time.sleep(0.3)
                    rig.insert_alert()      # a second cycle with a note and a save
                    inserted = True
                time.sleep(0.05)
            rc1 = d1.wait(5) if not d1.running() else None
            if rc1 != -signal.SIGKILL:
                d1.kill9()
                problems.append("the first run was not killed at %s:%d (exit %s)" % (point, n, rc1))
                return problems
            if not inserted:
                rig.insert_alert()
            first = h.keys_of(d1.snapshot())
            expected = rig.expected()
            n_all = sum(len(v) for v in expected.values())

            d2 = rig.daemon()
            d2.wait_for(lambda recs: len(set(first) | set(h.keys_of(recs))) >= n_all,
                        40, "every finding after the restart")
            time.sleep(2.5 * rig.interval)
            rc2 = d2.stop()
            if rc2 != 0:
                problems.append("the second run exited %s" % rc2)
            second = h.keys_of(d2.snapshot())

            union = {}
            for r in d1.snapshot() + d2.snapshot():
                if r.get("type") == "finding":
                    union.setdefault(h.finding_key(r), r)
            counts, fp = h.compare_findings(list(union.values()), expected)
            problems += fp
            for k in set(first):
                if first.count(k) > 1 or second.count(k) > 1:
                    problems.append("%s emitted twice by one run" % (k,))
            again = [k for k in second if k in set(first)]
            if in_flight:
                # emitted, not (wholly) noted: it comes again, and only it
                if again != first[-1:]:
                    problems.append("re-emitted after the kill: %s; expected exactly the one in "
                                    "flight (%s)" % (again, first[-1] if first else None))
            elif again:
                problems.append("re-emitted after the kill: %s (nothing was in flight)" % again)
            if glob.glob(os.path.join(rig.state_dir, "*.tmp")):
                problems.append("a temp snapshot was left behind: %s" % os.listdir(rig.state_dir))
            if not os.path.exists(os.path.join(rig.state_dir, ENV + ".state")):
                problems.append("no snapshot after the second run")
            if problems:
                td.keep = True
        finally:
            rig.stop()
    return problems


# ---- spoiled state files ----------------------------------------------------------

def spoil_garbage(path, tmp):
    with open(path, "wb") as f:
        f.write(b"\x00\xff garbage \x89PNG\r\n" * 20)


def spoil_truncated(path, tmp):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])


def spoil_empty(path, tmp):
    open(path, "wb").close()


def spoil_foreign(path, tmp):
    with open(path) as f:
        st = json.load(f)
    st["environment"] = "another"
    with open(path, "w") as f:
        json.dump(st, f)


def spoil_other_format(path, tmp):
    with open(path, "w") as f:
        json.dump({"format": "something-else", "version": 1, "environment": ENV}, f)


def spoil_newer(path, tmp):
    with open(path) as f:
        st = json.load(f)
    st["version"] = 99
    with open(path, "w") as f:
        json.dump(st, f)


def spoil_wrong_types(path, tmp):
    with open(path) as f:
        st = json.load(f)
    st["open"] = [{"finding_id": 7, "alert_id": None}]
    with open(path, "w") as f:
        json.dump(st, f)


def spoil_symlink(path, tmp):
    outside = os.path.join(tmp, "outside.txt")
    with open(outside, "w") as f:
        f.write("not s3mond's: must stay as it is\n")
    os.unlink(path)
    os.symlink(outside, path)


def spoil_directory(path, tmp):
    os.unlink(path)
    os.mkdir(path)


def spoil_journal_garbage(path, tmp):
    # a valid snapshot, a journal with a valid header and garbage lines
    with open(path) as f:
        serial = json.load(f)["serial"]
    with open(path + ".log", "w") as f:
        f.write(json.dumps({"format": "s3mond-state-log", "version": 1, "environment": ENV,
                            "serial": serial}) + "\n")
        f.write("{not json\n")
        f.write(json.dumps({"op": "finding", "finding_id": 3}) + "\n")
        f.write(json.dumps({"op": "frobnicate"}) + "\n")


def spoil_journal_foreign(path, tmp):
    with open(path + ".log", "w") as f:
        f.write(json.dumps({"format": "s3mond-state-log", "version": 1,
                            "environment": "another", "serial": 1}) + "\n")


# name: (spoiler, words stderr must contain, the old findings may be re-reported)
SPOILED = {
    "garbage": (spoil_garbage, ["unusable", "not valid JSON", "moved it aside"], True),
    "truncated": (spoil_truncated, ["unusable", "not valid JSON", "moved it aside"], True),
    "empty": (spoil_empty, ["unusable", "empty", "moved it aside"], True),
    "foreign": (spoil_foreign, ["unusable", "belongs to environment 'another'"], True),
    "other-format": (spoil_other_format, ["unusable", "not an s3mond state file"], True),
    "newer": (spoil_newer, ["unusable", "newer s3mond"], True),
    "wrong-types": (spoil_wrong_types, ["unusable", "moved it aside"], True),
    "symlink": (spoil_symlink, ["unusable", "moved it aside"], True),
    "directory": (spoil_directory, ["unusable", "not a regular file"], True),
    "journal-garbage": (spoil_journal_garbage, ["unreadable line", "skipped"], False),
    "journal-foreign": (spoil_journal_foreign, ["journal", "unusable", "moved it aside"], False),
}


def spoiled_case(name):
    spoil, words, refresh = SPOILED[name]
    problems = []
    td = h.Workdir("s3mond-state-")
    with td as tmp:
        rig = rlib.Rig(tmp).start()
        try:
            d1 = rig.daemon()
            d1.wait_for(lambda recs: h.findings_count(recs) >= rig.n_expected(), 30,
                        "the first findings")
            time.sleep(1.5 * rig.interval)
            if d1.stop() != 0:
                problems.append("first run did not exit 0")
            path = os.path.join(rig.state_dir, ENV + ".state")
            spoil(path, tmp)
            new_id = rig.insert_alert()
            d2 = rig.daemon()
            d2.wait_for(lambda recs: new_id in {k[1] for k in h.keys_of(recs)}, 30,
                        "the new alert's finding")
            time.sleep(2.5 * rig.interval)
            if not d2.running():
                problems.append("s3mond stopped after meeting the %s state" % name)
            rc = d2.stop()
            if rc != 0:
                problems.append("second run exited %s" % rc)
            err = d2.stderr()
            for w in words + [rig.state_dir]:
                if w not in err:
                    problems.append("stderr does not say %r: %s" % (w, err[-800:]))
            first, second = h.keys_of(d1.snapshot()), h.keys_of(d2.snapshot())
            expected = rig.expected()
            union = {}
            for r in d1.snapshot() + d2.snapshot():
                if r.get("type") == "finding":
                    union.setdefault(h.finding_key(r), r)
            counts, fp = h.compare_findings(list(union.values()), expected)
            problems += fp
            for k in set(first + second):
                if first.count(k) > 1 or second.count(k) > 1:
                    problems.append("%s emitted twice by one run" % (k,))
            again = [k for k in second if k in set(first)]
            if again and not refresh:
                problems.append("re-emitted: %s" % again)
            if name == "symlink":
                with open(os.path.join(tmp, "outside.txt")) as f:
                    if f.read() != "not s3mond's: must stay as it is\n":
                        problems.append("the symlink's target was written to")
            if not refresh and not glob.glob(os.path.join(rig.state_dir, "*.corrupt-*")) \
                    and name != "journal-garbage":
                problems.append("nothing moved aside: %s" % os.listdir(rig.state_dir))
            if refresh and not glob.glob(path + ".corrupt-*"):
                problems.append("the state file was not moved aside: %s" % os.listdir(rig.state_dir))
            if problems:
                td.keep = True
        finally:
            rig.stop()
    return problems


class TestCrash(unittest.TestCase):
    def test_kill_at_every_crash_point(self):
        res = run_pool(crash_case, CRASH_POINTS)
        failed = {"%s:%d" % k[:2]: v for k, v in res.items() if v}
        self.assertEqual(failed, {})

    def test_unusable_state_files(self):
        res = run_pool(spoiled_case, sorted(SPOILED))
        failed = {k: v for k, v in res.items() if v}
        self.assertEqual(failed, {})


if __name__ == "__main__":
    unittest.main(verbosity=2)
