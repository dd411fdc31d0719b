"""A process's CPU and memory from /proc, and a thread that samples them."""

import os
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of pid in seconds (10 ms ticks), None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def cpu_seconds_fine(pid):
    """Time pid's main thread spent on a CPU, seconds, from schedstat
    (nanoseconds); cpu_seconds() where there is no schedstat."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, IndexError, ValueError):
        return cpu_seconds(pid)


def status(pid):
    """/proc/PID/status as {field: value text}."""
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def memory(pid):
    """(VmRSS, VmHWM) of pid in bytes, or (None, None) when it is gone."""
    try:
        st = status(pid)
        return tuple(int(st[k].split()[0]) * 1024 if k in st else None for k in ("VmRSS", "VmHWM"))
    except (OSError, ValueError):
        return None, None


class Sampler(threading.Thread):
    """Samples CPU seconds, VmRSS and VmHWM of some pids every period
    seconds, until stop(): .samples is [(clock(), {pid: (cpu, rss, hwm)})]."""

    def __init__(self, pids, period=1.0, clock=time.monotonic):
        super().__init__(daemon=True)
        self.pids = list(pids)
        self.period = period
        self.clock = clock
        self.samples = []
        self.stop_event = threading.Event()

    def sample(self):
        self.samples.append((self.clock(), {p: (cpu_seconds(p),) + memory(p) for p in self.pids}))

    def run(self):
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(self.period)

    def stop(self):
        """Stop sampling, with one last sample."""
        self.stop_event.set()
        if self.is_alive():
            self.join()
        self.sample()

    def cpu_between(self, pid, t0, t1):
        """(CPU seconds of pid, seconds) between the samples nearest t0 and t1."""
        pts = [(t, s[pid][0]) for t, s in self.samples if s[pid][0] is not None]
        a = min(pts, key=lambda p: abs(p[0] - t0))
        b = min(pts, key=lambda p: abs(p[0] - t1))
        return b[1] - a[1], b[0] - a[0]

    def series(self, pid, index):
        """[(t, value)] of one measure (0 CPU, 1 VmRSS, 2 VmHWM), gaps left out."""
        return [(t, s[pid][index]) for t, s in self.samples if s[pid][index] is not None]

    def peak(self, pid, index):
        vals = [v for _, v in self.series(pid, index)]
        return max(vals) if vals else None
