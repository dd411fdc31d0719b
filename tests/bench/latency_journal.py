#!/usr/bin/env python3
"""Latency to the journal: alert inserted in dvsim -> s3mond's journal entry.

  latency_journal.py S3MOND CONF SIM_ENV_JSON N_ALERTS INTERVAL OUT_JSON

Run by bench.py, SIM_ENV_JSON saying where the simulator is and which
environment to use. Re-executes itself in a private mount namespace with its
own systemd-journald (s3test.journald: nothing on the host is
touched), runs `s3mond -o journal` against the running dvsim, inserts
N_ALERTS alerts (bench.insert_alerts) once the first cycle is done, and
takes each finding's __REALTIME_TIMESTAMP (when journald received it) minus
the time of its insertion. Writes {"latencies": [...], "missing": N} to
OUT_JSON. Exits 77 when it cannot run (not root, no unshare, no journald).
"""

import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402
from bench import h  # noqa: E402
from s3test import journald  # noqa: E402


def main():
    s3mond, conf, env_file, n_alerts, interval, out_file = sys.argv[1:7]
    n_alerts, interval = int(n_alerts), int(interval)
    with open(env_file) as f:
        given = json.load(f)
    dv, env = h.Sim.attach(**given["sim"]), given["env"]
    journald.reexec_in_namespace()
    with journald.journald(timeout=30) as read:
        d = subprocess.Popen([s3mond, "-c", conf, "-o", "journal"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            h.wait_until(lambda: bench.first_cycles_done(dv, [env["name"]]) or d.poll() is not None,
                         120, interval=0.1, what="the first cycle")
            if d.poll() is not None:
                raise RuntimeError("s3mond exited with %d" % d.returncode)
            time.sleep(interval)
            inserted = bench.insert_alerts(dv, env, n_alerts)
            alert_ids = {k.rsplit("/", 1)[1]: k for k in inserted}
            deadline = time.monotonic() + 6 * interval
            got = {}
            while len(got) < len(inserted) and time.monotonic() < deadline:
                for e in read("SYSLOG_IDENTIFIER=s3mond", "PRIORITY=4"):
                    try:
                        alert = journald.value(e, "S3MOND_ALERT_ID").decode()
                    except (AssertionError, KeyError, ValueError):
                        continue
                    if alert in alert_ids:
                        got[alert_ids[alert]] = int(e["__REALTIME_TIMESTAMP"]) / 1e6
                time.sleep(1)
        finally:
            d.terminate()
            try:
                d.wait(10)
            except subprocess.TimeoutExpired:
                d.kill()
                d.wait()
    lat = [got[k] - t for k, t in inserted.items() if k in got]
    with open(out_file, "w") as f:
        json.dump({"latencies": lat, "missing": len(inserted) - len(lat)}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
