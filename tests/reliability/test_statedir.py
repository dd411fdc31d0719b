#!/usr/bin/env python3
# test_statedir: a full and a read-only state directory, each made in a private
# mount namespace (unshare -m) so nothing shows outside the test.
"""State directory trouble: full disk and read-only.

Runs itself again inside `unshare -m --propagation private` (root needed;
exit 77 = skipped otherwise). Inside:

full: the state directory is a 256 KiB tmpfs filled to the last block. s3mond
  starts, reports the findings once, says "No space left on device" and keeps
  running (the notes stay in memory), once, not every cycle; a new alert is
  reported once; space comes back, the next cycle saves and says so; a restart
  reports nothing again.
read-only: a first run saves the state; the directory is then bind-mounted
  read-only. A second run reads the state (reports nothing again), reports a new
  alert once, says "Read-only file system" and keeps running.
"""

import contextlib
import errno
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..", "lib")]
import rlib  # noqa: E402
import s3test as h  # noqa: E402
from s3test import ns  # noqa: E402


def fill(directory):
    """Write filler files until the file system has no block left."""
    for name, chunk in (("filler", 65536), ("filler2", 1)):
        fd = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * chunk)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
        finally:
            os.close(fd)


def check_once(problems, recs, expected):
    counts, fp = h.compare_findings(recs, expected)
    problems += fp
    return counts


def case_full(tmp):
    problems = []
    state = os.path.join(tmp, "state")
    os.mkdir(state)
    ns.mount("tmpfs", state, "tmpfs", 0, "size=256k,mode=0700")
    fill(state)
    rig = rlib.Rig(tmp, state_dir=state).start()
    try:
        d1 = rig.daemon()
        d1.wait_for(lambda r: h.findings_count(r) >= rig.n_expected(), 30, "the findings")
        time.sleep(2.5 * rig.interval)
        new_id = rig.insert_alert()
        d1.wait_for(lambda r: new_id in {k[1] for k in h.keys_of(r)}, 30, "the new finding")
        time.sleep(2.5 * rig.interval)
        if not d1.running():
            problems.append("s3mond stopped on a full disk")
        err = d1.stderr()
        if "No space left on device" not in err or "state not saved" not in err:
            problems.append("stderr does not say the state could not be saved: %s" % err[-600:])
        check_once(problems, d1.snapshot(), rig.expected())
        # space again: the next cycle saves
        for f in ("filler", "filler2"):
            os.unlink(os.path.join(state, f))
        deadline = time.time() + 20
        while time.time() < deadline and not os.path.exists(os.path.join(state, "prod.state")):
            time.sleep(0.2)
        if not os.path.exists(os.path.join(state, "prod.state")):
            problems.append("no snapshot once space came back: %s" % os.listdir(state))
        rc = d1.stop()
        if rc != 0:
            problems.append("s3mond exited %s" % rc)
        err = d1.stderr()
        # once per outage, not once per cycle
        for words, n in (("state not saved (will retry", 1), ("state saved again", 1)):
            if err.count(words) != n:
                problems.append("stderr says %r %d times, expected %d" % (words, err.count(words), n))
        d2 = rig.daemon()
        time.sleep(3.5 * rig.interval)
        d2.stop()
        if h.keys_of(d2.snapshot()):
            problems.append("reported again after the restart: %s" % h.keys_of(d2.snapshot()))
    finally:
        rig.stop()
        with contextlib.suppress(OSError):    # not mounted: the case failed before
            ns.umount(state)
    return problems


def case_readonly(tmp):
    problems = []
    state = os.path.join(tmp, "state")
    rig = rlib.Rig(tmp, state_dir=state).start()
    try:
        d1 = rig.daemon()
        d1.wait_for(lambda r: h.findings_count(r) >= rig.n_expected(), 30, "the findings")
        time.sleep(1.5 * rig.interval)
        d1.stop()
        ns.mount(state, state, None, ns.MS_BIND)
        ns.mount(None, state, None, ns.MS_REMOUNT | ns.MS_BIND | ns.MS_RDONLY)
        try:
            open(os.path.join(state, "probe"), "w").close()
            problems.append("the bind mount is not read-only")
        except OSError:
            pass
        new_id = rig.insert_alert()
        d2 = rig.daemon()
        d2.wait_for(lambda r: new_id in {k[1] for k in h.keys_of(r)}, 30, "the new finding")
        time.sleep(2.5 * rig.interval)
        if not d2.running():
            problems.append("s3mond stopped on a read-only state directory")
        rc = d2.stop()
        if rc != 0:
            problems.append("s3mond exited %s" % rc)
        err = d2.stderr()
        if "Read-only file system" not in err:
            problems.append("stderr does not say the directory is read-only: %s" % err[-600:])
        if err.count("state not saved (will retry") != 1:
            problems.append("the save failure was reported %d times, expected once" %
                            err.count("state not saved (will retry"))
        again = [k for k in h.keys_of(d2.snapshot()) if k[1] != new_id]
        if again:
            problems.append("reported again from a read-only state: %s" % again)
        check_once(problems, d1.snapshot() + d2.snapshot(), rig.expected())
    finally:
        rig.stop()
        with contextlib.suppress(OSError):    # not mounted: the case failed before
            ns.umount(state)
    return problems


def main():
    ns.reexec_in_namespace()
    failed = 0
    for name, fn in (("full", case_full), ("read-only", case_readonly)):
        td = h.Workdir("s3mond-statedir-")
        with td as tmp:
            t0 = time.time()
            problems = fn(tmp)
            h.log("%-10s %s (%.0f s)" % (name, "FAIL" if problems else "ok", time.time() - t0))
            for p in problems:
                h.log("    " + p)
            if problems:
                td.keep = True
                failed += 1
    print("%d passed, %d failed" % (2 - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
