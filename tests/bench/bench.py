#!/usr/bin/env python3
"""s3mond benchmarks: one table of ratios measured side by side in one run.

Usage: bench.py BUILD_DIR [--quick] [--only NAME[,NAME...]] [--rounds N]
                [--keep] [--json FILE] [--work DIR]

Targets (tests/bench/README.md explains each):
  backlog   first poll of a big backlog vs the floor (curl fetching the same pages)
  idle      requests and bytes per idle cycle vs the naive poller (naive-poller.sh)
  scale     200 environments x 2,000 mailboxes at 10 s for 5 minutes: RSS, CPU, lateness
  latency   alert inserted -> finding on s3mond's output, 100 alerts at a 5 s interval
  growth    time and memory from 10 to 200 environments, from 1k to 100k alerts

Absolute times on a shared machine are noise: every target is a ratio or a
count measured in the same run, with runs alternated and medians taken. Only
Python 3's standard library, curl and jq are needed. --quick runs scaled-down
versions of everything in a few minutes (S3MOND_BENCH_QUICK=1 does the same).
"""

import argparse
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import s3test as h  # noqa: E402
from s3test.proc import Sampler, cpu_seconds, cpu_seconds_fine  # noqa: E402

GEN = os.path.join(h.SRC, "tests", "dvsim", "gen.py")
FLOOR = os.path.join(HERE, "floor.sh")
NAIVE = os.path.join(HERE, "naive-poller.sh")
TIME = shutil.which("time", path="/usr/bin:/bin")   # GNU time (Debian package "time")


def say(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


# ---- dvsim -----------------------------------------------------------------

def simulator(a, scenario, name):
    """dvsim on gen.py's scenario (path, environments); its admin calls
    may take long (statistics of 200 environments)."""
    path, envs = scenario
    return h.Sim(path, a.work, name, credentials=envs, start_timeout=600, admin_timeout=120)


def first_cycles_done(dv, names):
    """Whether each environment's first cycle fetched its evidence (dvsim's statistics)."""
    stats = dv.stats()
    return all(stats.get(n, {}).get("sets", {}).get("plugintracelogs") for n in names)


def insert_alerts(dv, env, n, seed=7):
    """Insert n mailbox alerts (tracelogs carrying the code) into env, one at a
    time, 0.3-2 s apart: uniform over the phase of a 5 s cycle. Returns
    {finding id: time.time() just before the insert}."""
    rng = random.Random(seed)
    inserted = {}
    for _ in range(n):
        k = rng.randrange(len(env["mailboxes"]))
        t = time.time()
        ids = dv.insert(env["name"], "tracelogs", {
            "level": 2, "text": h.alert_text(env["mailbox_names"][k]),
            "_regardingobjectid_value": env["mailboxes"][k]})
        inserted["%s/tracelog/%s" % (env["name"], ids[0])] = t
        time.sleep(rng.uniform(0.3, 2.0))
    return inserted


def gen(work, name, **kw):
    """Run gen.py; returns (path, scenario environments' credentials)."""
    out = os.path.join(work, name + ".json")
    argv = [sys.executable, GEN, "--out", out, "--no-expected"]
    for k, v in kw.items():
        argv += ["--" + k.replace("_", "-"), str(v)]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        doc = json.load(f)
    envs = [{"name": e["name"], "tenant": e["tenant"], "client_id": e["client_id"],
             "client_secret": e["client_secret"],
             "mailboxes": [m["mailboxid"] for m in e["tables"]["mailboxes"]],
             "mailbox_names": [m["name"] for m in e["tables"]["mailboxes"]]}
            for e in doc["environments"]]
    return out, envs


# ---- s3mond ----------------------------------------------------------------

def setup(a, name, dv, envs, interval):
    """A fresh directory work/NAME with s3mond's configuration for envs
    (their secrets beside it) and an empty state directory."""
    d = os.path.join(a.work, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    cfg = h.Config(d, dv, envs=[e["name"] for e in envs], interval=interval)
    cfg.fresh_state()
    return cfg


def run_timed(argv, stdout, stderr=subprocess.DEVNULL, env=None):
    """Run argv; returns (wall seconds, user+sys CPU seconds, max RSS bytes, rc)."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=stdout, stderr=stderr, env=env)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss * 1024, p.returncode


class Daemon:
    """s3mond in the foreground with -o json; stdout and stderr read by threads
    that timestamp every line on arrival."""

    FINDING = re.compile(rb'^\{"type":"finding","id":"([^"]*)"')
    LATE = re.compile(r"^s3mond: (\S+): cycle (\d+) started ([-0-9.]+) s after due")

    def __init__(self, s3mond, setup, verbose=0, keep_lines=False, on_finding=None, discard=False):
        """discard: stdout goes to wc -l (a consumer costing next to nothing)
        instead of being read here; use saved() to see a cycle end."""
        argv = [s3mond, "-c", setup.path, "-o", "json"] + (["-" + "v" * verbose] if verbose else [])
        self.state_dir = setup.state_dir
        self.findings = 0
        self.first_finding = self.last_finding = None
        self.finding_times = {}         # finding id -> arrival (time.time())
        self.keep_lines = keep_lines
        self.on_finding = on_finding
        self.lateness = []              # (env, cycle, seconds late, arrival time.time())
        self.first_cycle = None         # arrival of the first "cycle N started" line
        self.skipped = 0
        self.stderr_tail = []
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.wc = None
        if discard:
            self.wc = subprocess.Popen(["wc", "-l"], stdin=self.proc.stdout, stdout=subprocess.PIPE)
            self.proc.stdout.close()
        self.threads = [threading.Thread(target=self._read_err, daemon=True)]
        if not discard:
            self.threads.append(threading.Thread(target=self._read_out, daemon=True))
        for t in self.threads:
            t.start()

    @property
    def pid(self):
        return self.proc.pid

    def saved(self, env):
        """Whether env's state snapshot exists: its first cycle has ended."""
        return os.path.exists(os.path.join(self.state_dir, env + ".state"))

    def _read_out(self):
        buf = b""
        fd = self.proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            now = time.monotonic()
            buf += chunk
            lines = buf.split(b"\n")
            buf = lines.pop()
            for line in lines:
                if not line.startswith(b'{"type":"finding"'):
                    continue
                self.findings += 1
                if self.first_finding is None:
                    self.first_finding = now
                self.last_finding = now
                if self.keep_lines:
                    m = self.FINDING.match(line)
                    if m:
                        self.finding_times[m.group(1).decode()] = time.time()
                        if self.on_finding:
                            self.on_finding(m.group(1).decode())

    def _read_err(self):
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            m = self.LATE.match(line)
            if m:
                if self.first_cycle is None:
                    self.first_cycle = time.monotonic()
                self.lateness.append((m.group(1), int(m.group(2)), float(m.group(3)), time.time()))
                continue
            if "previous cycle still running" in line:
                self.skipped += 1
            if " GET " in line or "HTTP 200" in line or ": page " in line:
                continue
            self.stderr_tail.append(line)
            del self.stderr_tail[:-50]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for t in self.threads:
            t.join(10)
        if self.wc:
            self.findings = int(self.wc.communicate()[0].split()[0])  # lines, findings or not
        return self.proc.returncode


def pct(values, p):
    """The p-th percentile (nearest rank) of values."""
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def env_totals(stats, names=None, exclude=("token",)):
    """(requests, bytes) of the Web API buckets of the named environments."""
    req = byt = 0
    for name, e in stats.items():
        if names is not None and name not in names:
            continue
        for s, b in e["sets"].items():
            if s in exclude:
                continue
            req += b["requests"]
            byt += b["bytes_sent"]
    return req, byt


def mib(n):
    return n / (1 << 20)


# ---- results ---------------------------------------------------------------

class Results:
    def __init__(self):
        self.rows = []      # (target, measure, value text, limit text, verdict)
        self.data = {}

    def add(self, target, measure, value, limit=None, ok=None):
        verdict = "" if ok is None else ("PASS" if ok else "FAIL")
        self.rows.append((target, measure, value, limit or "", verdict))

    def table(self):
        head = ("target", "measure", "value", "target", "")
        widths = [max(len(str(r[i])) for r in self.rows + [head]) for i in range(5)]
        out = []
        fmt = "  ".join("%%-%ds" % w for w in widths)
        out.append(fmt % head)
        out.append(fmt % tuple("-" * w for w in widths))
        last = None
        for r in self.rows:
            r = (r[0] if r[0] != last else "",) + r[1:]
            last = r[0] or last
            out.append((fmt % r).rstrip())
        return "\n".join(out)


# ---- 1. backlog --------------------------------------------------------------

def bench_backlog(a, res):
    q = a.quick
    size = dict(mailboxes=500, alerts=2000, workflows=100, steps=100) if q else \
        dict(mailboxes=2000, alerts=20000, workflows=500, steps=500)
    run_backlog(a, res, "backlog", size, a.rounds or (2 if q else 3), daemon=True, target=True)
    # The same with a tenth of the workflows and steps: 10 suspects per alert
    # instead of 100, findings a tenth of the size. Shows what limits the above.
    small = dict(size, workflows=size["workflows"] // 10, steps=size["steps"] // 10)
    run_backlog(a, res, "backlog-small", small, a.rounds or 2, daemon=False, target=False)


def warm_up(a, st, work, name):
    """s3mond --once --json -vv, lines timestamped: the first-page URLs it
    asked for (for the floor), when the last page arrived, when it ended,
    how many findings and bytes it wrote."""
    t0 = time.monotonic()
    p = subprocess.Popen([a.s3mond, "-c", st.path, "--once", "--json", "-vv"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    wc = subprocess.Popen(["wc", "-lc"], stdin=p.stdout, stdout=subprocess.PIPE)
    p.stdout.close()
    urls, last_page = [], None
    for raw in p.stderr:
        line = raw.decode(errors="replace").rstrip("\n")
        m = re.match(r"^s3mond: \S+: (\S+): GET (\S+)$", line)
        if m and "$skiptoken" not in m.group(2):
            urls.append(("annotations " if m.group(1) == "tracelogs" else "") + m.group(2))
        if re.match(r"^s3mond: \S+: \S+: page \d+: ", line):
            last_page = time.monotonic()
    p.wait()
    end = time.monotonic()
    lines, nbytes = (int(x) for x in wc.communicate()[0].split()[:2])
    return dict(urls=urls, findings=lines, out_bytes=nbytes, fetch=(last_page or end) - t0,
                total=end - t0)


def run_backlog(a, res, name, size, rounds, daemon, target):
    say("%s: generating %s" % (name, size))
    scen, envs = gen(a.work, name, envs=1, decoy_ratio=0.9, **size)
    dv = simulator(a, (scen, envs), "dvsim-" + name)
    try:
        st = setup(a, name, dv, envs, interval="1h")
        e = envs[0]
        dv.reset_stats()
        w = warm_up(a, st, a.work, name)
        in_bytes = env_totals(dv.stats())[1]
        urls, expected = w["urls"], w["findings"]
        url_file = os.path.join(a.work, name + ".urls")
        with open(url_file, "w") as f:
            f.write("\n".join(urls) + "\n")
        say("%s: %d findings (%.0f MB of JSON from %.1f MB of pages), %d first-page URLs; %d rounds"
            % (name, expected, w["out_bytes"] / 1e6, in_bytes / 1e6, len(urls), rounds))

        floor_argv = [FLOOR, dv.token_url(e["tenant"]), e["client_id"], st.secret_file(e["name"]),
                      dv.scope(e["name"]), url_file]
        floors, onces, daemons, once_cpu, once_rss, daemon_rss = [], [], [], [], [], []
        dv_cpu_floor, dv_cpu_once = [], []
        for r in range(rounds):
            c0 = cpu_seconds(dv.pid)
            wall, _, _, rc = run_timed(floor_argv, subprocess.DEVNULL)
            dv_cpu_floor.append(cpu_seconds(dv.pid) - c0)
            if rc != 0:
                raise RuntimeError("floor.sh failed (%d)" % rc)
            floors.append(wall)
            c0 = cpu_seconds(dv.pid)
            wall, cpu, rss, n = run_once_counted(a.s3mond, st.path)
            dv_cpu_once.append(cpu_seconds(dv.pid) - c0)
            if n != expected:
                raise RuntimeError("--once gave %d findings, expected %d" % (n, expected))
            onces.append(wall)
            once_cpu.append(cpu)
            once_rss.append(rss)
            line = "%s round %d: floor %.2fs, --once %.2fs (cpu %.2fs, %.0f MiB)" % (
                name, r + 1, floors[-1], onces[-1], once_cpu[-1], mib(once_rss[-1] or 0))
            if daemon:
                # The daemon's first cycle, state and all, to the last finding.
                # The daemon's first cycle, state and all: from its start (the
                # first poll waits up to min(interval, 5 s)) to the snapshot
                # saved at its end, after the findings, their notes, the
                # resolved events.
                st.fresh_state()
                d = Daemon(a.s3mond, st, verbose=2, discard=True)
                s = Sampler([d.pid], 0.5)
                s.start()
                try:
                    h.wait_until(lambda: d.saved(e["name"]) or d.proc.poll() is not None,
                                 3600, interval=0.02, what="the daemon's first cycle")
                    end = time.monotonic()
                finally:
                    s.stop()
                    d.stop()
                if d.findings < expected:
                    raise RuntimeError("daemon gave %d findings, expected %d: %s"
                                       % (d.findings, expected, "\n".join(d.stderr_tail[-5:])))
                daemons.append(end - (d.first_cycle or d.t0))
                daemon_rss.append(s.peak(d.pid, 2) or 0)
                line += ", daemon %.2fs" % daemons[-1]
            say(line)
        f, o = statistics.median(floors), statistics.median(onces)
        pair = [b / a_ for a_, b in zip(floors, onces)]
        label = "%s (%d mailboxes, %d alerts, %d wf, %d steps)" % (
            "backlog" if target else "backlog, 1/10 the suspects", size["mailboxes"], size["alerts"],
            size["workflows"], size["steps"])
        res.add(label, "floor: curl, the same %d queries' pages (median of %d)" % (
            len(urls), rounds), "%.2f s" % f)
        res.add(label, "--once --json to last finding / floor",
                "%.2fx (pairs %s)" % (o / f, " ".join("%.2f" % x for x in pair)),
                "<= 1.5x" if target else None, (o / f <= 1.5) if target else None)
        if daemon:
            dm = statistics.median(daemons)
            res.add(label, "daemon: 1st cycle, to its end / floor", "%.2fx" % (dm / f),
                    "<= 1.5x" if target else None, (dm / f <= 1.5) if target else None)
        res.add(label, "-vv run: pages fetched / floor; then correlate+emit",
                "%.2fx; +%.2f s" % (w["fetch"] / f, w["total"] - w["fetch"]))
        res.add(label, "findings, JSON out / pages in", "%d, %.0f MB / %.1f MB" % (
            expected, w["out_bytes"] / 1e6, in_bytes / 1e6))
        res.add(label, "--once CPU / peak RSS", "%.2f s / %s" % (
            statistics.median(once_cpu), "%.0f MiB" % mib(statistics.median(once_rss))
            if None not in once_rss else "n/a (no GNU time)"))
        if daemon:
            res.add(label, "daemon peak RSS", "%.0f MiB" % mib(statistics.median(daemon_rss)))
        res.add(label, "dvsim CPU: floor / --once", "%.2f s / %.2f s" % (
            statistics.median(dv_cpu_floor), statistics.median(dv_cpu_once)))
        res.data[name] = dict(size=size, findings=expected, floors=floors, onces=onces,
                              daemons=daemons, once_cpu=once_cpu, once_rss=once_rss,
                              daemon_rss=daemon_rss, dvsim_cpu_floor=dv_cpu_floor,
                              dvsim_cpu_once=dv_cpu_once, queries=len(urls), warm_up=w,
                              in_bytes=in_bytes)
    finally:
        dv.stop()


def run_once_counted(s3mond, conf):
    """s3mond --once --json piped to wc -l (a consumer that costs next to
    nothing: a file on a shared disk would measure the disk). Returns (wall
    seconds until s3mond exited, its CPU seconds, its max RSS, lines)."""
    # GNU time reports the peak RSS: our own rusage would count the pages
    # of this Python process the child had between fork and exec.
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        argv = [s3mond, "-c", conf, "--once", "--json"]
        if TIME:
            argv = [TIME, "-f", "%U %S %M", "-o", tf.name] + argv
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        wc = subprocess.Popen(["wc", "-l"], stdin=p.stdout, stdout=subprocess.PIPE)
        p.stdout.close()
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
        out, _ = wc.communicate()
        cpu, rss = ru.ru_utime + ru.ru_stime, None
        if TIME:
            u, sy, m = tf.read().split()[-3:]
            cpu, rss = float(u) + float(sy), int(m) * 1024
    return wall, cpu, rss, int(out.split()[0])


def count_findings(path):
    n = 0
    with open(path, "rb") as f:
        for line in f:
            if line.startswith(b'{"type":"finding"'):
                n += 1
    return n


# ---- 2. idle cost -------------------------------------------------------------

def bench_idle(a, res):
    q = a.quick
    cycles = 5 if q else 10
    interval = 2
    say("idle: generating")
    scen, envs = gen(a.work, "idle", envs=2, mailboxes=2000, alerts=20, workflows=100,
                     steps=100, decoy_ratio=0.9)
    dv = simulator(a, (scen, envs), "dvsim-idle")
    try:
        names = [e["name"] for e in envs]
        st = setup(a, "idle", dv, envs, interval="%ds" % interval)
        d = Daemon(a.s3mond, st)
        try:
            # First cycle: full reads and the backlog's findings; then idle.
            h.wait_until(lambda: first_cycles_done(dv, names) or d.proc.poll() is not None,
                         120, interval=0.1, what="the first cycles")
            time.sleep(interval * 1.5)
            dv.reset_stats()
            c0 = cpu_seconds_fine(d.pid)
            t0 = time.monotonic()
            time.sleep(interval * cycles)
            stats = dv.stats()
            cpu = cpu_seconds_fine(d.pid) - c0
            span = time.monotonic() - t0
        finally:
            d.stop()
        n_cycles = sum(stats[n]["sets"].get("tracelogs", {}).get("requests", 0) for n in names)
        req, byt = env_totals(stats, names)
        sets = sorted({s for n in names for s in stats[n]["sets"]})
        s3_req, s3_bytes = req / n_cycles, byt / n_cycles
        s3_cpu = cpu / n_cycles

        # The naive poller against the same environment, same data.
        dv.reset_stats()
        e = envs[0]
        ncy = 2 if q else 3
        wall, ncpu, _, rc = run_timed([NAIVE, dv.env_url(e["name"]), dv.token_url(e["tenant"]),
                                       e["client_id"], st.secret_file(e["name"]), str(ncy), "0"],
                                      subprocess.DEVNULL)
        if rc != 0:
            raise RuntimeError("naive-poller.sh failed (%d)" % rc)
        stats = dv.stats()
        nreq, nbytes = env_totals(stats, [e["name"]])
        ntok = stats[e["name"]]["sets"].get("token", {}).get("requests", 0)
        n_req, n_bytes, n_cpu = nreq / ncy, nbytes / ncy, ncpu / ncy
        label = "idle cost (2,000 mailboxes, per cycle per env)"
        res.add(label, "s3mond requests per idle cycle", "%.2f (%s)" % (s3_req, ",".join(
            s for s in sets if s != "token")), "<= 2", s3_req <= 2.0001)
        res.add(label, "s3mond bytes per idle cycle / naive poller's",
                "%.0f / %.0f B = %.2f%%" % (s3_bytes, n_bytes, 100 * s3_bytes / n_bytes), "<= 5%",
                s3_bytes / n_bytes <= 0.05)
        res.add(label, "naive poller requests per cycle", "%.0f (+%d token)" % (n_req - 0, ntok // ncy))
        res.add(label, "CPU per cycle: s3mond / naive poller (curl+jq)",
                "%.1f ms / %.0f ms" % (1000 * s3_cpu, 1000 * n_cpu))
        res.data["idle"] = dict(cycles=n_cycles, s3_requests=s3_req, s3_bytes=s3_bytes,
                                s3_cpu=s3_cpu, naive_requests=n_req, naive_bytes=n_bytes,
                                naive_cpu=n_cpu, naive_wall=wall / ncy, span=span)
    finally:
        dv.stop()


# ---- 3. scale (and 5. growth over environments) --------------------------------

def run_fleet(a, dv, envs, name, interval, duration, verbose=2):
    """Run the daemon over envs for duration seconds; returns measurements."""
    st = setup(a, name, dv, envs, interval="%ds" % interval)
    dv.reset_stats()
    dv_c0 = cpu_seconds(dv.pid)
    d = Daemon(a.s3mond, st, verbose=verbose)
    s = Sampler([d.pid, dv.pid], 1.0)
    s.start()
    t0 = d.t0
    try:
        time.sleep(duration)
    finally:
        s.stop()
        t1 = time.monotonic()
        stats = dv.stats()
        rc = d.stop()
    names = {e["name"] for e in envs}
    cpu, span = s.cpu_between(d.pid, t0, t1)
    dv_cpu = cpu_seconds(dv.pid) - dv_c0
    # Steady state: after every environment's first cycle (the full reads).
    firsts = []
    for n in names:
        log = stats.get(n, {}).get("sets", {}).get("tracelogs", {}).get("log", [])
        if len(log) >= 2:
            firsts.append(log[1]["t"])
    steady = None
    if firsts and len(firsts) == len(names):
        # wall clock -> monotonic of the sampler
        wall_to_mono = time.monotonic() - time.time()
        ts = max(firsts) + wall_to_mono
        if t1 - ts > 2 * interval:
            c, sp = s.cpu_between(d.pid, ts, t1)
            dc, _ = s.cpu_between(dv.pid, ts, t1)
            c0, sp0 = s.cpu_between(d.pid, t0, ts)
            dc0, _ = s.cpu_between(dv.pid, t0, ts)
            steady = dict(cpu=c, span=sp, dvsim_cpu=dc, startup_cpu=c0, startup_span=sp0,
                          startup_dvsim_cpu=dc0)
    spacing, spacing_steady = [], []
    cycles = 0
    steady_from = (max(firsts) if firsts and len(firsts) == len(names) else None)
    for n in names:
        log = stats.get(n, {}).get("sets", {}).get("tracelogs", {}).get("log", [])
        cycles += len(log)
        ts = [x["t"] for x in log]
        spacing += [b - c - interval for c, b in zip(ts, ts[1:])]
        if steady_from is not None:
            spacing_steady += [b - c - interval for c, b in zip(ts, ts[1:]) if c >= steady_from]
    late = [x[2] for x in d.lateness]
    # Cycles after every environment's first one ended (its second poll):
    # the first reads everything and overruns its interval by design.
    late_steady = [x[2] for x in d.lateness if steady_from is not None and x[3] > steady_from]
    startup = (steady_from - (time.time() - (time.monotonic() - t0))) if steady_from else None
    return dict(envs=len(envs), duration=span, cpu=cpu, cpu_pct=100 * cpu / span,
                hwm=s.peak(d.pid, 2), rss_peak=s.peak(d.pid, 1),
                rss_end=s.samples[-2][1][d.pid][1] if len(s.samples) > 1 else None,
                dvsim_cpu=dv_cpu, dvsim_pct=100 * dv_cpu / span, steady=steady,
                cycles=cycles, late=late, skipped=d.skipped, spacing=spacing,
                late_steady=late_steady, spacing_steady=spacing_steady, startup=startup,
                requests=env_totals(stats, names)[0], findings=d.findings, rc=rc,
                stderr_tail=d.stderr_tail[-10:])


def fleet_scenario(a, n_envs, mailboxes):
    say("fleet: generating %d environments x %d mailboxes" % (n_envs, mailboxes))
    scen, envs = gen(a.work, "fleet", envs=n_envs, mailboxes=mailboxes, alerts=5,
                     workflows=20, steps=20)
    t0 = time.monotonic()
    dv = simulator(a, (scen, envs), "dvsim-fleet")
    say("fleet: dvsim loaded in %.1f s" % (time.monotonic() - t0))
    return dv, envs


def bench_scale(a, res, dv=None, envs=None):
    q = a.quick
    n_envs, mailboxes, interval, duration = (20, 2000, 10, 60) if q else (200, 2000, 10, 300)
    n_envs = min(a.scale_envs or n_envs, len(envs) if envs else n_envs)
    duration = a.scale_seconds or duration
    own = dv is None
    if own:
        dv, envs = fleet_scenario(a, n_envs, mailboxes)
    try:
        say("scale: %d environments, %d s" % (n_envs, duration))
        m = run_fleet(a, dv, envs[:n_envs], "scale", interval, duration)
        label = "scale (%d envs x %d mailboxes, %d s interval, %d s)" % (
            n_envs, mailboxes, interval, duration)
        hwm = m["hwm"] or 0
        res.add(label, "peak RSS (VmHWM)", "%.1f MiB (end %.1f)" % (mib(hwm), mib(m["rss_end"] or 0)),
                "<= 64 MiB", hwm <= 64 << 20)
        res.add(label, "CPU, whole window (incl. first full reads)", "%.2f%% of a core" % m["cpu_pct"],
                "<= 5%", m["cpu_pct"] <= 5)
        if m["steady"]:
            sd = m["steady"]
            res.add(label, "CPU, steady state (after 1st cycles)", "%.2f%% (%.0f s)" % (
                100 * sd["cpu"] / sd["span"], sd["span"]))
        late, steady = m["late"], m["late_steady"]
        p99 = pct(steady, 99)
        if m["startup"] is not None:
            res.add(label, "start-up: every env's first cycle (full reads) done after",
                    "%.1f s" % m["startup"])
        res.add(label, "lateness after the first cycles p50 / p99 / max (%d)" % len(steady),
                "%.3f / %.3f / %.3f s" % (pct(steady, 50), p99, max(steady)) if steady else "no data",
                "p99 <= 1 s", bool(steady) and p99 <= 1.0 and m["skipped"] == 0)
        if late:
            res.add(label, "lateness, all %d cycles incl. start-up: p99 / max" % len(late),
                    "%.3f / %.3f s" % (pct(late, 99), max(late)))
        res.add(label, "skipped cycles (previous still running)", "%d" % m["skipped"])
        sp = m["spacing_steady"] or m["spacing"]
        if sp:
            res.add(label, "poll spacing - interval (dvsim log, steady) p50/p99",
                    "%+.3f / %+.3f s (jitter +-%.2f)" % (pct(sp, 50), pct(sp, 99), 0.025 * interval))
        sd = m["steady"]
        res.add(label, "CPU in start-up: s3mond / dvsim (bottleneck if ~100%)",
                "%.0f%% / %.0f%%" % (100 * sd["startup_cpu"] / sd["startup_span"],
                                     100 * sd["startup_dvsim_cpu"] / sd["startup_span"]) if sd else "n/a")
        res.add(label, "dvsim CPU: whole window / steady", "%.0f%% / %s" % (
            m["dvsim_pct"], "%.0f%%" % (100 * sd["dvsim_cpu"] / sd["span"]) if sd else "n/a"))
        res.data["scale"] = {k: v for k, v in m.items() if k not in ("late", "spacing", "late_steady",
                                                                   "spacing_steady")}
        res.data["scale"]["late_steady_p50"], res.data["scale"]["late_steady_p99"] = pct(steady, 50), p99
        res.data["scale"]["late_all_p99"] = pct(late, 99)
    finally:
        if own:
            dv.stop()


# ---- 4. latency -----------------------------------------------------------------

def bench_latency(a, res):
    q = a.quick
    n_alerts = 20 if q else 100
    interval = 5
    scen, envs = gen(a.work, "latency", envs=1, mailboxes=2000, alerts=5, workflows=100,
                     steps=100, decoy_ratio=0.9)
    dv = simulator(a, (scen, envs), "dvsim-latency")
    try:
        e = envs[0]
        label = "latency (%d alerts, %d s interval)" % (n_alerts, interval)
        limit = "p99 <= %d s" % (interval + 1)

        # -o json: the finding's line timestamped as it arrives.
        st = setup(a, "latency", dv, envs, interval="%ds" % interval)
        d = Daemon(a.s3mond, st, keep_lines=True)
        try:
            h.wait_until(lambda: first_cycles_done(dv, [e["name"]]) or d.proc.poll() is not None, 120,
                         interval=0.1, what="the first cycle")
            time.sleep(interval)
            inserted = insert_alerts(dv, e, n_alerts)
            h.wait_until(lambda: all(k in d.finding_times for k in inserted) or d.proc.poll() is not None,
                         6 * interval, interval=0.2, what="the findings")
        finally:
            d.stop()
        lat = [d.finding_times[k] - t for k, t in inserted.items() if k in d.finding_times]
        missing = len(inserted) - len(lat)
        p50, p99 = pct(lat, 50), pct(lat, 99)
        res.add(label, "alert inserted -> -o json line, p50 / p99 / max",
                "%.2f / %.2f / %.2f s%s" % (p50, p99, max(lat), ", %d missing" % missing if missing else ""),
                limit, missing == 0 and p99 <= interval + 1)
        res.data["latency_json"] = dict(latencies=lat, missing=missing)

        # -o journal: journald's receive time of the entry, in a private
        # journald (s3test.journald; needs root).
        st = setup(a, "latency-journal", dv, envs, interval="%ds" % interval)
        env_file = os.path.join(a.work, "latency-env.json")
        out_file = os.path.join(a.work, "latency-journal.json")
        with open(env_file, "w") as f:
            json.dump({"sim": dv.address(), "env": e}, f)
        p = subprocess.run([sys.executable, os.path.join(HERE, "latency_journal.py"), a.s3mond,
                            st.path, env_file, str(n_alerts), str(interval), out_file],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if p.returncode == 77:
            res.add(label, "alert inserted -> journal entry", "skipped: " +
                    p.stdout.decode(errors="replace").strip().splitlines()[-1][:60])
        elif p.returncode != 0:
            raise RuntimeError("latency_journal.py failed: %s" % p.stdout.decode(errors="replace")[-300:])
        else:
            with open(out_file) as f:
                r = json.load(f)
            lat, missing = r["latencies"], r["missing"]
            p50, p99 = pct(lat, 50), pct(lat, 99)
            res.add(label, "alert inserted -> journal entry, p50 / p99 / max",
                    "%.2f / %.2f / %.2f s%s" % (p50, p99, max(lat),
                                                ", %d missing" % missing if missing else ""),
                    limit, missing == 0 and p99 <= interval + 1)
            res.data["latency_journal"] = r
    finally:
        dv.stop()


# ---- 5. growth -----------------------------------------------------------------

def bench_growth(a, res, dv=None, envs=None, scale_data=None):
    q = a.quick
    # Environments: the fleet scenario, watched in part, shorter windows.
    counts = (5, 10, 20) if q else (10, 50, 100, 200)
    duration = 40 if q else 90
    interval = 10
    own = dv is None
    if own:
        dv, envs = fleet_scenario(a, max(counts), 2000)
    rows = []
    try:
        for n in counts:
            say("growth: %d environments, %d s" % (n, duration))
            m = run_fleet(a, dv, envs[:n], "growth-%d" % n, interval, duration)
            rows.append(m)
    finally:
        if own:
            dv.stop()
    label = "growth: environments (x 2,000 mailboxes, 10 s)"
    for m in rows:
        sd = m["steady"]
        steady = ("%.2f%%" % (100 * sd["cpu"] / sd["span"])) if sd else "n/a"
        per_cycle = ("%.2f ms/cycle" % (1000 * sd["cpu"] / max(1, sd["span"] / interval * m["envs"]))) \
            if sd else ""
        res.add(label, "%3d envs: peak RSS, CPU whole / steady" % m["envs"],
                "%.1f MiB, %.2f%% / %s (%s)" % (mib(m["hwm"] or 0), m["cpu_pct"], steady, per_cycle))
    res.data["growth_envs"] = [{k: v for k, v in m.items() if k not in ("late", "spacing", "late_steady",
                                                                       "spacing_steady")}
                               for m in rows]

    # Alerts: the backlog with fewer workflows and steps (findings stay small).
    alerts = (500, 2000, 5000) if q else (1000, 10000, 100000)
    label = "growth: alerts (2,000 mailboxes, 50 wf, 50 steps)"
    arows = []
    for n in alerts:
        scen, envs2 = gen(a.work, "growth-alerts", envs=1, mailboxes=2000, alerts=n,
                          workflows=50, steps=50, decoy_ratio=0.9)
        dv2 = simulator(a, (scen, envs2), "dvsim-growth")
        try:
            st = setup(a, "growth-alerts", dv2, envs2, interval="1h")
            c0 = cpu_seconds(dv2.pid)
            wall, cpu, rss, lines = run_once_counted(a.s3mond, st.path)
            dvc = cpu_seconds(dv2.pid) - c0
            d = Daemon(a.s3mond, st, verbose=2, discard=True)
            s = Sampler([d.pid], 0.5)
            s.start()
            try:
                h.wait_until(lambda: d.saved(envs2[0]["name"]) or d.proc.poll() is not None, 3600,
                             interval=0.05, what="the daemon's first cycle")
                dwall = time.monotonic() - (d.first_cycle or d.t0)
            finally:
                s.stop()
                d.stop()
            arows.append(dict(alerts=n, wall=wall, cpu=cpu, rss=rss, dvsim_cpu=dvc, findings=lines,
                              daemon_wall=dwall, daemon_hwm=s.peak(d.pid, 2)))
            say("growth: %d alerts: --once %.2f s wall, %.2f s cpu, %.0f MiB; daemon %.2f s"
                % (n, wall, cpu, mib(rss or 0), dwall))
        finally:
            dv2.stop()
    base = arows[0]
    for m in arows:
        res.add(label, "%6d alerts: --once wall, CPU (x vs %d), RSS; dvsim CPU" % (m["alerts"], base["alerts"]),
                "%.1f s, %.2f s (x%.1f), %.0f MiB; %.1f s" % (m["wall"], m["cpu"], m["cpu"] / base["cpu"],
                                                              mib(m["rss"] or 0), m["dvsim_cpu"]))
        res.add(label, "%6d alerts: daemon 1st cycle wall, peak RSS" % m["alerts"],
                "%.1f s, %.0f MiB" % (m["daemon_wall"], mib(m["daemon_hwm"] or 0)))
    res.data["growth_alerts"] = arows


# ---- main ---------------------------------------------------------------------

def machine():
    info = {"nproc": os.cpu_count(), "kernel": platform.release(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["memory"] = "%.1f GiB" % (int(f.readline().split()[1]) / (1 << 20))
        with open("/proc/loadavg") as f:
            info["load"] = f.read().split()[:3]
    except OSError:
        pass
    return info


TARGETS = ("backlog", "idle", "scale", "latency", "growth")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build", help="meson build directory (holds s3mond)")
    ap.add_argument("--quick", action="store_true", default=bool(os.environ.get("S3MOND_BENCH_QUICK")))
    ap.add_argument("--only", default=",".join(TARGETS))
    ap.add_argument("--rounds", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--work", help="work directory (default: a new one under $TMPDIR)")
    ap.add_argument("--json", help="also write the measurements here")
    ap.add_argument("--scale-envs", type=int, default=0, help="scale: this many environments")
    ap.add_argument("--scale-seconds", type=int, default=0, help="scale: run this long")
    a = ap.parse_args(argv)
    a.s3mond = os.path.abspath(os.path.join(a.build, "s3mond"))
    if not os.access(a.s3mond, os.X_OK):
        ap.error("%s: not built" % a.s3mond)
    for tool in ("curl", "jq"):
        if not shutil.which(tool):
            ap.error("%s is needed (apt-get install %s)" % (tool, tool))
    only = [t.strip() for t in a.only.split(",") if t.strip()]
    for t in only:
        if t not in TARGETS:
            ap.error("unknown target %r" % t)
    a.work = a.work or tempfile.mkdtemp(prefix="s3mond-bench-")
    os.makedirs(a.work, exist_ok=True)
    res = Results()
    info = machine()
    say("work directory %s; %s" % (a.work, "quick" if a.quick else "full"))
    t0 = time.monotonic()
    failed = []
    try:
        fleet = None
        if "scale" in only or "growth" in only:
            n = 20 if a.quick else 200
            fleet = fleet_scenario(a, n, 2000)
        for t in TARGETS:
            if t not in only:
                continue
            t1 = time.monotonic()
            try:
                if t == "backlog":
                    bench_backlog(a, res)
                elif t == "idle":
                    bench_idle(a, res)
                elif t == "scale":
                    bench_scale(a, res, *fleet)
                elif t == "latency":
                    bench_latency(a, res)
                elif t == "growth":
                    bench_growth(a, res, *fleet)
            except Exception as e:  # report and go on with the next target
                say("%s: ERROR %s" % (t, e))
                res.add(t, "error", str(e)[:100], None, False)
                failed.append(t)
            say("%s took %.0f s" % (t, time.monotonic() - t1))
        if fleet:
            fleet[0].stop()
    finally:
        if not a.keep:
            shutil.rmtree(a.work, ignore_errors=True)
    info["load_after"] = machine().get("load")
    print()
    print("s3mond benchmarks (%s) - %s, %s cores, %s, %s, kernel %s, load %s -> %s, %.0f s" % (
        "quick" if a.quick else "full", info.get("date"), info.get("nproc"), info.get("cpu", "?"),
        info.get("memory", "?"), info.get("kernel"), " ".join(info.get("load", [])),
        " ".join(info.get("load_after", [])), time.monotonic() - t0))
    print(res.table())
    verdicts = [r[4] for r in res.rows if r[4]]
    print("%d PASS, %d FAIL" % (verdicts.count("PASS"), verdicts.count("FAIL")))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": info, "quick": a.quick, "rows": res.rows, "data": res.data}, f,
                      indent=1, default=str)
    return 1 if "FAIL" in verdicts else 0


if __name__ == "__main__":
    sys.exit(main())
