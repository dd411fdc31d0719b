"""Running s3mond: to completion (s3mond(), once()) or as a daemon (Daemon),
with sd_notify through a test socket (NotifySocket)."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time

from .base import GUARD, S3MOND
from .proc import Sampler
from .wait import WaitTimeout

# What systemd would hand a service; a test sets them itself or not at all.
SYSTEMD_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "INVOCATION_ID",
                "JOURNAL_STREAM", "S3MOND_TEST_CRASH_AT")


def clean_environ(extra=None):
    """os.environ without systemd's variables, plus extra."""
    env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARS}
    env.update(extra or {})
    return env


def _path(cfg):
    return getattr(cfg, "path", cfg)


def s3mond(args, timeout=120, env=None, **kwargs):
    """Run s3mond to completion; CompletedProcess with text stdout/stderr."""
    return subprocess.run([S3MOND, *args], capture_output=True, text=True, timeout=timeout,
                          env=clean_environ(env), stdin=subprocess.DEVNULL, **kwargs)


def once(cfg, *args, **kwargs):
    """s3mond --once -c CFG ARGS...; CompletedProcess."""
    return s3mond(["--once", "-c", _path(cfg), *args], **kwargs)


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class NotifySocket:
    """A Unix datagram socket standing in for systemd's NOTIFY_SOCKET
    (TESTING.md). .messages holds (monotonic time, text) of every datagram."""

    def __init__(self, workdir):
        self.path = os.path.join(os.fspath(workdir), f"notify-{id(self)}")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []

    def recv(self, timeout=GUARD):
        """The next datagram (text), or None after timeout."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536).decode()
        except (socket.timeout, BlockingIOError):
            return None
        self.messages.append((time.monotonic(), data))
        return data

    def until(self, pred, timeout=GUARD, what="a notify message"):
        """Receive until pred(message) holds; returns that message."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            m = self.recv(max(left, 0.001)) if left > 0 else None
            if m is None:
                raise WaitTimeout(f"no {what} within {timeout:.0f}s; got {self.texts()[-20:]!r}")
            if pred(m):
                return m

    def drain(self):
        """Receive what is still queued; returns every message so far."""
        while self.recv(0.05) is not None:
            pass
        return self.texts()

    def texts(self):
        return [m for _, m in self.messages]

    def close(self):
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def fields(message):
    """An sd_notify datagram as a dict (READY=1\\nSTATUS=... -> {...}); a
    line that is not KEY=VALUE breaks the protocol: ValueError."""
    return dict(line.split("=", 1) for line in message.split("\n") if line)


class Daemon:
    """s3mond running in the foreground: s3mond [-o OUTPUT] [-v...] -c CFG ARGS.

    cfg: a Config or a path. Its files go beside the configuration, named
    after name: NAME.stderr (appended; stderr() is this run's part) and
    NAME.stdout. stdout is read by a thread, copied to NAME.stdout, and
    each line parsed into .records (each with "_t", the time.time() it
    arrived; a line that is not JSON as {"type": "_unparsable", "line"}).
    With stdout_path, stdout is appended to that file instead and not read
    (it survives kill -9 across restarts: see records.OutputLog).
    VmRSS is sampled every 0.25 s into .rss [(time.time(), KiB)].
    notify=True (or a NotifySocket) sets NOTIFY_SOCKET; env adds variables
    (WATCHDOG_USEC, S3MOND_TEST_CRASH_AT, ...); prefix runs it under
    another program (valgrind, setpriv)."""

    RSS_EVERY = 0.25

    def __init__(self, cfg, args=(), output="json", verbose=1, notify=None, env=None,
                 stdout_path=None, name="s3mond", prefix=(), exe=None, start=True):
        self.config_path = _path(cfg)
        self.dir = os.path.dirname(os.path.abspath(self.config_path))
        self.argv = [*prefix, exe or S3MOND, "-c", self.config_path]
        self.argv += (["-o", output] if output else []) + ["-v"] * int(verbose) + list(args)
        self.extra_env = dict(env or {})
        self.stdout_path = stdout_path
        self.out_path = stdout_path or os.path.join(self.dir, name + ".stdout")
        self.stderr_path = os.path.join(self.dir, name + ".stderr")
        self.own_notify = notify is True
        self.notify = NotifySocket(self.dir) if notify is True else notify
        self.records = []
        self.proc = None
        self.stop_seconds = None
        self._cond = threading.Condition()
        self._reader = None
        self._sampler = None
        if start:
            self.start()

    def start(self):
        env = clean_environ({"NOTIFY_SOCKET": self.notify.path} if self.notify else None)
        env.update(self.extra_env)
        self._stderr_file = open(self.stderr_path, "ab")
        self.stderr_offset = self._stderr_file.tell()
        out = open(self.stdout_path, "ab") if self.stdout_path else subprocess.PIPE
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=self._stderr_file, env=env)
        if self.stdout_path:
            out.close()
        else:
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        self._sampler = Sampler([self.proc.pid], self.RSS_EVERY, clock=time.time)
        self._sampler.start()
        return self

    def _read(self):
        with open(self.out_path, "ab") as copy:
            for raw in self.proc.stdout:
                copy.write(raw)
                copy.flush()
                t = time.time()
                line = raw.decode(errors="replace").rstrip("\n")
                try:
                    rec = json.loads(line)
                except ValueError:
                    rec = {"type": "_unparsable", "line": line}
                if isinstance(rec, dict):
                    rec["_t"] = t
                with self._cond:
                    self.records.append(rec)
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def pid(self):
        return self.proc.pid

    @property
    def rss(self):
        """[(time.time(), VmRSS KiB)] sampled so far."""
        return [(t, v // 1024) for t, v in self._sampler.series(self.proc.pid, 1)] if self._sampler else []

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _output_done(self):
        return not self.running() and (self._reader is None or not self._reader.is_alive())

    def stderr(self):
        """What this run wrote to stderr so far."""
        try:
            with open(self.stderr_path, "rb") as f:
                f.seek(self.stderr_offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stderr_tail(self, n=2000):
        return self.stderr()[-n:]

    def snapshot(self, kind=None):
        """A copy of the records so far (of one type)."""
        with self._cond:
            recs = list(self.records)
        return [r for r in recs if kind is None or r.get("type") == kind]

    def findings(self, pred=lambda r: True):
        return [r for r in self.snapshot("finding") if pred(r)]

    def wait_for(self, pred, timeout=GUARD, what="condition"):
        """Wait until pred(records so far) is true and return its value;
        WaitTimeout after timeout, or once the daemon has exited and all
        it wrote is read, saying what it saw."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                v = pred(list(self.records))
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0 or self._output_done():
                    state = "running" if self.running() else f"exited {self.proc.returncode}"
                    raise WaitTimeout(
                        f"{what}: not after {timeout - max(left, 0):.0f}s (s3mond {state}); records "
                        f"{[(r.get('type'), r.get('id')) for r in self.records][-40:]!r}; "
                        f"stderr: {self.stderr_tail(3000)}")
                self._cond.wait(min(left, 0.1))

    def wait_record(self, pred=lambda r: True, count=1, timeout=GUARD, what=None):
        """Wait until count records satisfy pred; returns them (the first count)."""
        hits = lambda recs: [r for r in recs if pred(r)]
        return self.wait_for(lambda recs: len(hits(recs)) >= count and hits(recs)[:count],
                             timeout, what or f"{count} record(s)")

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=GUARD):
        """Send sig and wait; returns the exit status (.stop_seconds: from
        the signal to the exit). Not stopped within timeout: killed, and an
        AssertionError."""
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"s3mond did not stop within {timeout:.0f}s of signal {sig}") from None
        finally:
            self.stop_seconds = time.monotonic() - t0
            self._finish()
        return rc

    def kill9(self):
        """SIGKILL and reap; returns the exit status (-9)."""
        self.proc.kill()
        rc = self.proc.wait()
        self._finish()
        return rc

    def wait(self, timeout=GUARD):
        """Wait for it to exit by itself; returns the exit status."""
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is not None:
                self._finish()

    def _finish(self):
        if self._reader:
            self._reader.join(timeout=GUARD)
            with contextlib.suppress(Exception):
                self.proc.stdout.close()
        if self._sampler:
            self._sampler.stop()
        with contextlib.suppress(Exception):
            self._stderr_file.close()

    def close(self):
        """Kill it if it still runs; release everything (the notify socket
        it made)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc:
            self._finish()
        if self.own_notify and self.notify:
            self.notify.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
