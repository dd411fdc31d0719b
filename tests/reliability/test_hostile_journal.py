#!/usr/bin/env python3
# test_hostile_journal: the hostile scenario through a real journald (native
# protocol and syslog(3)) in a private mount namespace: every field stays valid
# and no value can forge another field or another entry.
"""Hostile data end to end into journald (`-o journal` and `-o syslog`).

For each output, s3mond runs against dvsim serving hostile.py's scenario until
every finding is in the journal. Checks: one entry per finding (the
finding MESSAGE_ID), PRIORITY 4 on each; MESSAGE one line of valid UTF-8
without control characters; S3MOND_MAILBOX_NAME carries the name exactly
(journald is binary-safe: the newline and "PRIORITY=0" inside the name stay in
that one field), the NUL and lone surrogates as U+FFFD; no entry has a field
forged from a value (S3MOND_VERDICT=none, PRIORITY=0). Needs root (77 without).
"""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..", "lib")]
import hostile  # noqa: E402
import s3test as h  # noqa: E402
from s3test import journald  # noqa: E402

journald.reexec_in_namespace()

FINDING_ID = h.MESSAGE_ID["finding"]
ENV = "hostile"
CONTROL = set(range(0x20)) | {0x7f}

problems = []


def check(cond, what):
    if not cond:
        problems.append(what)


def run(output, read, tmp, sc):
    sim = h.Sim(sc, tmp, "dvsim-" + output)
    try:
        conf = h.Config(tmp, sim, name=output + ".conf", interval="1s", output=output,
                        state_directory=os.path.join(tmp, "state-" + output))
        expected = h.expected_findings(sim.scenario, ENV)
        d = h.Daemon(conf, output=None, verbose=0, name="s3mond-" + output)
        matches = ["SYSLOG_IDENTIFIER=s3mond", "S3MOND_ENVIRONMENT=" + ENV] if output == "journal" \
            else ["SYSLOG_IDENTIFIER=s3mond", "_TRANSPORT=syslog"]
        entries = read(*matches, count=len(expected), timeout=60)
        time.sleep(2)
        rc = d.stop()
        check(rc == 0, "%s: s3mond exited %s: %s" % (output, rc, d.stderr_tail()))
        entries = read(*matches)
        return entries, expected
    finally:
        sim.kill()


def main():
    sc = hostile.scenario()
    names = hostile.mailbox_names(sc)
    names[hostile.NUL_MB] = hostile.NUL_NAME_OUT
    with journald.journald(dev_log=True) as read:
        td = h.Workdir("s3mond-hostile-journal-")
        with td as tmp:
            # native protocol: structured fields
            entries, expected = run("journal", read, tmp, sc)
            findings = [e for e in entries
                        if journald.value(e, "MESSAGE_ID") == FINDING_ID.encode()]
            check(len(findings) == len(expected),
                  "journal: %d finding entries, expected %d" % (len(findings), len(expected)))
            for e in findings:
                msg = journald.value(e, "MESSAGE")
                check(msg.decode("utf-8", "replace").encode() == msg, "MESSAGE not UTF-8: %r" % msg[:200])
                check(not (set(msg) & CONTROL), "control byte in MESSAGE: %r" % msg[:300])
                check(journald.values(e, "PRIORITY") == [b"4"],
                      "PRIORITY %r" % journald.values(e, "PRIORITY"))
                check(len(journald.values(e, "S3MOND_VERDICT")) == 1 and
                      journald.value(e, "S3MOND_VERDICT") in (b"confirmed", b"suspected",
                                                                b"unexplained"),
                      "S3MOND_VERDICT forged: %r" % journald.values(e, "S3MOND_VERDICT"))
                mb = journald.value(e, "S3MOND_MAILBOX_ID").decode()
                want = names.get(mb)
                got = journald.values(e, "S3MOND_MAILBOX_NAME")
                if want is None:
                    check(got in ([], [b""]), "a name for the nameless mailbox: %r" % got)
                else:
                    check(got == [want.encode()], "S3MOND_MAILBOX_NAME of %s: %r, expected %r" % (
                        mb, [g[:80] for g in got], want[:80]))
                for c in journald.values(e, "S3MOND_CULPRIT"):
                    check(c.startswith(b"workflow:") or c.startswith(b"plugin_step:"),
                          "S3MOND_CULPRIT %r" % c[:100])
            # syslog(3): one line each, facility daemon
            entries, expected = run("syslog", read, tmp, sc)
            lines = [journald.value(e, "MESSAGE") for e in entries]
            lines = [m for m in lines if b"-2147220956" in m]
            check(len(lines) == len(expected),
                  "syslog: %d finding lines, expected %d" % (len(lines), len(expected)))
            for m in lines:
                check(not (set(m) & CONTROL), "control byte in a syslog line: %r" % m[:300])
                check(m.decode("utf-8", "replace").encode() == m, "syslog line not UTF-8")
            if problems:
                td.keep = True
    for p in problems:
        print("FAIL:", p)
    print("%d passed, %d failed" % (0 if problems else 1, 1 if problems else 0))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
