#!/usr/bin/env python3
"""sd_notify without systemd: run notify-driver with NOTIFY_SOCKET (and the watchdog
variables) pointing at a datagram socket of ours, send SIGHUP then SIGTERM, and check
the sequence of datagrams and the exit status. Counts and order only, no timings.

usage: test-notify.py NOTIFY-DRIVER
"""
import os
import re
import signal
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import s3test as h  # noqa: E402


class Run:
    """The driver with NOTIFY_SOCKET pointing at a NotifySocket of ours."""

    def __init__(self, driver, env_extra, wrap_pid=False):
        self.wd = h.Workdir(prefix="s3mond-notify-")
        self.notify = h.NotifySocket(self.wd)
        env = h.clean_environ(dict(env_extra, NOTIFY_SOCKET=self.notify.path))
        if wrap_pid:  # WATCHDOG_PID = the driver's own pid: sh execs it in place
            argv = ["sh", "-c", 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$0"', driver]
        else:
            argv = [driver]
        self.proc = subprocess.Popen(argv, env=env)

    def until(self, pred, what):
        return self.notify.until(pred, what=what)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.notify.close()
        self.wd.cleanup()


def scenario(driver, env, wrap_pid, expect_watchdog):
    r = Run(driver, env, wrap_pid)
    try:
        r.until(lambda m: m == "READY=1", "READY=1")
        status = r.until(lambda m: m.startswith("STATUS="), "STATUS=")
        wd = int(re.search(r"watchdog (\d+) us", status).group(1))
        assert wd == (200000 if expect_watchdog else 0), status
        if expect_watchdog:
            for _ in range(2):
                r.until(lambda m: m == "WATCHDOG=1", "WATCHDOG=1")

        r.proc.send_signal(signal.SIGHUP)
        reloading = r.until(lambda m: m.startswith("RELOADING=1"), "RELOADING=1")
        f = h.fields(reloading)
        assert re.fullmatch(r"[0-9]+", f.get("MONOTONIC_USEC", "")), reloading
        r.until(lambda m: m == "READY=1", "READY=1 after the reload")
        if expect_watchdog:  # the loop still turns after the reload
            r.until(lambda m: m == "WATCHDOG=1", "WATCHDOG=1 after the reload")

        r.proc.send_signal(signal.SIGTERM)
        r.until(lambda m: m == "STOPPING=1", "STOPPING=1")
        rc = r.proc.wait(timeout=h.GUARD)
        assert rc == 0, f"driver exited {rc}"
        messages = r.notify.drain()

        # the whole sequence, watchdog pings aside, in order
        seq = [m.split("\n")[0] if m.startswith("RELOADING=1") else m
               for m in messages if m != "WATCHDOG=1"]
        seq = [re.sub(r"^STATUS=.*", "STATUS=", m) for m in seq]
        assert seq == ["READY=1", "STATUS=", "RELOADING=1", "STATUS=", "READY=1", "STOPPING=1"], seq
        pings = messages.count("WATCHDOG=1")
        if expect_watchdog:
            assert pings >= 3, messages
            assert messages.index("WATCHDOG=1") > messages.index("READY=1")
        else:
            assert pings == 0, messages
        return pings
    finally:
        r.close()


def main():
    driver = os.path.abspath(sys.argv[1])
    cases = [
        ("watchdog, WATCHDOG_PID unset", {"WATCHDOG_USEC": "200000"}, False, True),
        ("watchdog, WATCHDOG_PID = the driver", {"WATCHDOG_USEC": "200000"}, True, True),
        ("watchdog for another pid", {"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}, False, False),
        ("no watchdog", {}, False, False),
    ]
    failed = 0
    for name, env, wrap, expect in cases:
        try:
            pings = scenario(driver, env, wrap, expect)
            print(f"ok - {name} ({pings} watchdog pings)")
        except AssertionError as e:
            failed += 1
            print(f"not ok - {name}: {e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
