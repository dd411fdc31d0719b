"""s3harness: shared helpers for tests that run the real s3mond against dvsim.

Python 3 standard library only. Used by the daemon suite (test_daemon_*.py),
and meant for the reliability and benchmark tests too: see README.md in this
directory ("The daemon harness") for a walk-through.

    import s3harness as h

    with h.Workdir() as wd, h.Dvsim(h.fixture("realistic"), wd) as sim:
        cfg = h.Config(wd, sim, interval="2s")           # + 0600 secret files
        r = h.s3mond(["--once", "--json", "-c", cfg.path])
        with h.Daemon(cfg, notify=True) as d:            # -o json, lines collected
            d.wait_record(lambda r: r["type"] == "finding")
            sim.insert("prod", "tracelogs", h.alert_row(...))
            print(sim.requests("prod", "tracelogs"))

Every wait has a bound (a hang guard, raising TimeoutError) rather than being
a measurement; a test that measures time does so explicitly.

Paths: $S3MOND is the s3mond binary (meson passes it), else build/s3mond in
the source tree; $DVSIM is dvsim.py, else tests/dvsim/dvsim.py.
"""

import contextlib
import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
S3MOND = os.environ.get("S3MOND") or os.path.join(SRC, "build", "s3mond")
DVSIM = os.environ.get("DVSIM") or os.path.join(SRC, "tests", "dvsim", "dvsim.py")
FIXTURES = os.path.join(SRC, "tests", "fixtures")

# The error code and texts of the alerts s3mond looks for (DESIGN.md §1).
CODE = -2147220956
CODE_TEXT = "Exchange server returned UnknownIncomingEmailIntegrationError -2147220956 exception."

# Fixed MESSAGE_IDs (daemon/message-ids.h).
MESSAGE_ID = {
    "finding": "2a7beaec32d5419a8a023b1bbb1313dc",
    "resolved": "02dd0e4d610d4d88818a71f0bd6ee892",
    "error": "3996abb830b24ce4bd9179806656ce8c",
}

SKIP = 77   # meson's "skipped"

# Hang guard for waits: generous, sanitizer builds on 2 shared cores are slow.
GUARD = float(os.environ.get("S3HARNESS_GUARD", "60"))


def sanitized():
    """True when S3MOND is an ASan/UBSan build (tests may scale hang guards)."""
    try:
        with open(S3MOND, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


def skip(why):
    print(f"SKIP: {why}", flush=True)
    sys.exit(SKIP)


def wait_until(pred, timeout=GUARD, interval=0.05, what="condition"):
    """Poll pred() until it returns a true value (returned); TimeoutError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# ---- scenarios -----------------------------------------------------------------

def fixture(name):
    """A fixture of tests/fixtures as a dict ("realistic" or "realistic.json")."""
    path = name if os.path.sep in name else os.path.join(
        FIXTURES, name if name.endswith(".json") else name + ".json")
    with open(path) as f:
        return json.load(f)


def with_environments(scenario, names, template=None):
    """A copy of scenario whose environments are clones of one of its own
    (template: a name, default the first) under each of names, so several
    environments share one fixture's rows and credentials."""
    s = copy.deepcopy(scenario)
    envs = {e["name"]: e for e in s["environments"]}
    src = envs[template] if template else s["environments"][0]
    s["environments"] = []
    for n in names:
        e = copy.deepcopy(src)
        e["name"] = n
        s["environments"].append(e)
    return s


def new_id(prefix=None):
    """A fresh GUID string (prefix: replaces its first 8 hex digits, for readable ids)."""
    g = str(uuid.uuid4())
    return prefix + g[8:] if prefix else g


def mailbox_row(name, mailbox_id=None, email=None, **cols):
    """A healthy mailbox (no sync error) for dvsim; cols override."""
    row = {"mailboxid": mailbox_id or new_id(), "name": name,
           "emailaddress": email or f"{name.lower().replace(' ', '.')}@contoso.com",
           "incomingemaildeliverymethod": 2, "enabledforincomingemail": True,
           "statecode": 0, "incomingemailstatus": 2,
           "lastsuccessfulsynccompletedon": "now-2h"}
    row.update(cols)
    return row


def alert_row(mailbox_id, mailbox_name="Support", tracelog_id=None, kind="email", **cols):
    """A tracelogs row carrying -2147220956 against a mailbox, as Dataverse
    writes it: kind "email" (receiving email) or "act" (appointments,
    contacts and tasks). createdon/modifiedon default to dvsim's now."""
    if kind == "email":
        text = (f'An unknown error occurred while receiving email through the mailbox '
                f'"{mailbox_name}". The owner of the associated email server profile '
                f'Microsoft Exchange Online has been notified. The system will try to '
                f'receive email again later.\r\nEmail Server Error Code: {CODE_TEXT}')
    else:
        text = (f'An unknown error occurred while synchronizing appointments, contacts, '
                f'and tasks for the mailbox "{mailbox_name}".\r\nEmail Server Error Code: '
                f'{CODE_TEXT}')
    row = {"tracelogid": tracelog_id or new_id(), "level": 2, "text": text,
           "errordetails": "Error : " + CODE_TEXT,
           "_regardingobjectid_value": mailbox_id,
           "_regardingobjectid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "mailbox",
           "regardingobjecttypecode": "mailbox"}
    row.update(cols)
    return row


def failed_session_row(process_id, at="now-1s", comments="step failed", **cols):
    """A Failed (statuscode 6) processsessions row of a workflow (or activation)."""
    row = {"processsessionid": new_id(), "_processid_value": process_id,
           "statecode": 1, "statuscode": 6, "comments": comments,
           "startedon": at, "completedon": at, "createdon": at}
    row.update(cols)
    return row


def plugin_trace_row(step_id, typename, at="now-1s", entity="email", message="Create", **cols):
    """A synchronous plug-in's exception in plugintracelogs."""
    row = {"plugintracelogid": new_id(), "pluginstepid": step_id, "messagename": message,
           "primaryentity": entity, "mode": 0, "typename": typename,
           "exceptiondetails": "System.InvalidOperationException: boom", "createdon": at}
    row.update(cols)
    return row


# ---- a scratch directory ---------------------------------------------------------

class Workdir:
    """A temporary directory, removed at exit unless $S3HARNESS_KEEP is set
    (then its path is printed, for post-mortems)."""

    def __init__(self, prefix="s3mond-test-"):
        self.path = tempfile.mkdtemp(prefix=prefix)

    def __fspath__(self):
        return self.path

    def join(self, *parts):
        return os.path.join(self.path, *parts)

    def cleanup(self):
        if os.environ.get("S3HARNESS_KEEP"):
            print(f"s3harness: kept {self.path}", file=sys.stderr)
        else:
            shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


def _dir(d):
    return d.path if isinstance(d, Workdir) else os.fspath(d)


# ---- the simulator ---------------------------------------------------------------

class DvsimError(Exception):
    pass


class Dvsim:
    """tests/dvsim/dvsim.py as a child process on a free loopback port.

    scenario: a dict (written to a file in workdir) or a path. The admin API
    is wrapped below; anything else: admin(method, path, body)."""

    def __init__(self, scenario, workdir, log=False, extra_args=(), start=True):
        self.workdir = _dir(workdir)
        if isinstance(scenario, dict):
            self.scenario = scenario
            self.scenario_path = os.path.join(self.workdir, f"scenario-{id(self)}.json")
            with open(self.scenario_path, "w") as f:
                json.dump(scenario, f)
        else:
            self.scenario_path = os.fspath(scenario)
            with open(self.scenario_path) as f:
                self.scenario = json.load(f)
        self.log_path = os.path.join(self.workdir, f"dvsim-{id(self)}.log") if log else None
        self.extra_args = list(extra_args)
        self.proc = None
        self.port = None
        if start:
            self.start()

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, port=None):
        """Start (or restart, on the same port when given) the simulator."""
        port_file = os.path.join(self.workdir, f"dvsim-{id(self)}.port")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(port_file)
        argv = [sys.executable, DVSIM, "--scenario", self.scenario_path,
                "--port", str(port or 0), "--port-file", port_file, *self.extra_args]
        argv += ["--log", self.log_path] if self.log_path else ["--quiet"]
        self.err_path = os.path.join(self.workdir, f"dvsim-{id(self)}.stderr")
        with open(self.err_path, "ab") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        deadline = time.monotonic() + GUARD
        while not os.path.exists(port_file):
            if self.proc.poll() is not None:
                raise DvsimError(f"dvsim exited {self.proc.returncode}: {self._tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise DvsimError(f"dvsim did not listen within {GUARD:.0f}s: {self._tail()}")
            time.sleep(0.05)
        with open(port_file) as f:
            self.port = int(f.read().strip())
        return self

    def _tail(self):
        try:
            with open(self.err_path, errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """Shut down (admin API, then SIGKILL if it lingers). Rows are lost."""
        if not self.running():
            return
        with contextlib.suppress(Exception):
            self.admin("POST", "/_admin/shutdown", timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- admin API --
    def admin(self, method, path, body=None, timeout=30):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raise DvsimError(f"{method} {path}: {e.code} {e.read()[:500]!r}") from None
        return json.loads(raw) if raw else None

    def insert(self, env, set_name, rows):
        """Insert or upsert one row (dict) or several (list). Returns the ids."""
        return self.admin("POST", f"/_admin/{env}/{set_name}", rows)["ids"]

    def patch(self, env, set_name, row_id, **cols):
        """Update columns; modifiedon moves to now unless given (a recurring alert)."""
        return self.admin("PATCH", f"/_admin/{env}/{set_name}/{row_id}", cols)

    def delete(self, env, set_name, row_id=None):
        return self.admin("DELETE", f"/_admin/{env}/{set_name}" + (f"/{row_id}" if row_id else ""))

    def rows(self, env, set_name):
        return self.admin("GET", f"/_admin/{env}/{set_name}")["value"]

    def row(self, env, set_name, row_id):
        return self.admin("GET", f"/_admin/{env}/{set_name}/{row_id}")

    def set_env(self, env, **changes):
        """client_secret, client_id, token_lifetime, deny_read."""
        return self.admin("PATCH", f"/_admin/{env}", changes)

    def fault(self, **spec):
        """Add one fault (README "Faults"): fault(target="prod/tracelogs", kind="503", count=3)."""
        return self.admin("POST", "/_admin/faults", spec)["ids"][0]

    def clear_faults(self):
        self.admin("POST", "/_admin/faults/clear")

    def revoke_tokens(self, env=None):
        self.admin("POST", "/_admin/tokens/revoke", {"env": env} if env else {})

    def stats(self):
        return self.admin("GET", "/_admin/stats")["environments"]

    def reset_stats(self):
        self.admin("POST", "/_admin/stats/reset")

    def requests(self, env, set_name=None):
        """Requests an environment received (in one entity set, or "token")."""
        e = self.stats().get(env, {})
        if set_name is None:
            return e.get("requests", 0)
        return e.get("sets", {}).get(set_name, {}).get("requests", 0)

    def requests_by_set(self, env):
        return {k: v["requests"] for k, v in self.stats().get(env, {}).get("sets", {}).items()}

    def log(self, env, set_name):
        """The request log of one bucket: [{"t", "status", "method", "path", "fault"?}]."""
        return self.stats().get(env, {}).get("sets", {}).get(set_name, {}).get("log", [])

    def credentials(self, env):
        for e in self.scenario["environments"]:
            if e["name"] == env:
                return e
        raise KeyError(env)


# ---- configuration ---------------------------------------------------------------

class Config:
    """An s3mond configuration file for a dvsim, with 0600 secret files.

    Config(workdir, sim, envs=None, **settings): settings go to [s3mond]
    (interval="2s", resolve_after="3s", ...; state_directory defaults to
    WORKDIR/state); envs is a list of environment names of the simulator
    (default all) or a dict name -> {key: value} overriding an environment's
    keys (e.g. {"prod": {"url": "http://127.0.0.1:9/prod"}}); a key set to
    None is left out. secret={"prod": "wrong"} writes another secret.
    write() rewrites the file after changing .settings/.envs (for SIGHUP);
    write_text() puts anything there (a bad file)."""

    def __init__(self, workdir, sim, envs=None, name="s3mond.conf", secret=None, **settings):
        self.dir = _dir(workdir)
        self.sim = sim
        self.path = os.path.join(self.dir, name)
        self.settings = {"interval": "2s", "state_directory": os.path.join(self.dir, "state")}
        self.settings.update(settings)
        if envs is None:
            envs = [e["name"] for e in sim.scenario["environments"]]
        self.envs = {n: {} for n in envs} if not isinstance(envs, dict) else dict(envs)
        self.secret = dict(secret or {})
        self.write()

    @property
    def state_dir(self):
        return self.settings["state_directory"]

    def env_keys(self, name):
        c = self.sim.credentials(name)
        keys = {"url": f"{self.sim.base}/{name}", "authority": self.sim.base,
                "tenant": c["tenant"], "client_id": c["client_id"],
                "client_secret_file": f"{name}.secret"}
        keys.update(self.envs.get(name) or {})
        return keys

    def write(self):
        lines = ["[s3mond]"]
        lines += [f"{k} = {v}" for k, v in self.settings.items() if v is not None]
        for name in self.envs:
            c = self.sim.credentials(name)
            secret_path = os.path.join(self.dir, f"{name}.secret")
            with open(os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                f.write(self.secret.get(name, c["client_secret"]))
            os.chmod(secret_path, 0o600)
            lines += ["", f"[environment {name}]"]
            lines += [f"{k} = {v}" for k, v in self.env_keys(name).items() if v is not None]
        self.write_text("\n".join(lines) + "\n")
        return self.path

    def write_text(self, text):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.path)
        return self.path

    def text(self):
        with open(self.path) as f:
            return f.read()

    def state_files(self):
        try:
            return sorted(os.listdir(self.state_dir))
        except FileNotFoundError:
            return []


def closed_port():
    """A loopback port nothing listens on (for "Dataverse is down")."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- running s3mond --------------------------------------------------------------

def s3mond(args, timeout=120, env=None, **kwargs):
    """Run s3mond to completion; CompletedProcess with text stdout/stderr."""
    e = dict(os.environ)
    e.pop("NOTIFY_SOCKET", None)
    e.pop("INVOCATION_ID", None)
    e.pop("JOURNAL_STREAM", None)
    e.update(env or {})
    return subprocess.run([S3MOND, *args], capture_output=True, text=True, timeout=timeout,
                          env=e, stdin=subprocess.DEVNULL, **kwargs)


def once(cfg, *args, **kwargs):
    """s3mond --once -c CFG ARGS...; CompletedProcess."""
    path = cfg.path if isinstance(cfg, Config) else cfg
    return s3mond(["--once", "-c", path, *args], **kwargs)


def json_lines(text):
    return [json.loads(l) for l in text.splitlines() if l.strip()]


class NotifySocket:
    """A Unix datagram socket standing in for systemd's NOTIFY_SOCKET
    (TESTING.md). messages holds (monotonic time, text) of every datagram."""

    def __init__(self, workdir):
        self.path = os.path.join(_dir(workdir), f"notify-{id(self)}")
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
                raise TimeoutError(f"no {what} within {timeout:.0f}s; got "
                                   f"{[x for _, x in self.messages][-20:]!r}")
            if pred(m):
                return m

    def drain(self):
        while self.recv(0.05) is not None:
            pass
        return [m for _, m in self.messages]

    def texts(self):
        return [m for _, m in self.messages]

    def close(self):
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def fields(message):
    """An sd_notify datagram as a dict (READY=1\\nSTATUS=... -> {...})."""
    return dict(l.split("=", 1) for l in message.split("\n") if "=" in l)


class Daemon:
    """s3mond running as a daemon (foreground) on a Config.

    output="json" (default): stdout is read by a thread; .records is the list
    of parsed records, each with "_t", the time.time() it arrived. With
    stdout_path, stdout is appended to that file instead (nothing is read:
    survives kill -9 across restarts; see read_records()). stderr always goes
    to .stderr_path (appended). notify=True (or a NotifySocket) sets
    NOTIFY_SOCKET; env adds variables (WATCHDOG_USEC, S3MOND_TEST_CRASH_AT...)."""

    def __init__(self, cfg, output="json", args=(), notify=None, env=None, stdout_path=None,
                 verbose=True, start=True):
        self.cfg = cfg
        self.dir = cfg.dir
        self.output = output
        self.args = list(args)
        self.extra_env = dict(env or {})
        self.stdout_path = stdout_path
        self.stderr_path = os.path.join(self.dir, "s3mond.stderr")
        self.verbose = verbose
        self.own_notify = notify is True
        self.notify = NotifySocket(self.dir) if notify is True else notify
        self.records = []
        self.lines = []
        self.proc = None
        self._cond = threading.Condition()
        self._reader = None
        if start:
            self.start()

    def argv(self):
        a = [S3MOND, "-c", self.cfg.path]
        if self.output:
            a += ["-o", self.output]
        if self.verbose:
            a.append("-v")
        return a + self.args

    def start(self):
        env = dict(os.environ)
        for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "INVOCATION_ID",
                  "JOURNAL_STREAM", "S3MOND_TEST_CRASH_AT"):
            env.pop(k, None)
        if self.notify:
            env["NOTIFY_SOCKET"] = self.notify.path
        env.update(self.extra_env)
        self.stderr_file = open(self.stderr_path, "ab")
        self.stderr_offset = self.stderr_file.tell()
        if self.stdout_path:
            out = open(self.stdout_path, "ab")
        else:
            out = subprocess.PIPE
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=self.stderr_file, env=env)
        if self.stdout_path:
            out.close()
        else:
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        return self

    def _read(self):
        for raw in self.proc.stdout:
            t = time.time()
            line = raw.decode(errors="replace").rstrip("\n")
            with self._cond:
                self.lines.append(line)
                if self.output == "json" and line.strip():
                    try:
                        rec = json.loads(line)
                        rec["_t"] = t
                        self.records.append(rec)
                    except ValueError:
                        self.records.append({"type": "_unparsable", "line": line, "_t": t})
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr(self):
        """What this run wrote to stderr so far."""
        with open(self.stderr_path, "rb") as f:
            f.seek(self.stderr_offset)
            return f.read().decode(errors="replace")

    def wait_record(self, pred=lambda r: True, count=1, timeout=GUARD, what=None):
        """Wait until count records satisfy pred; returns them (the first count)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                hits = [r for r in self.records if pred(r)]
                if len(hits) >= count:
                    return hits[:count]
                left = deadline - time.monotonic()
                if left <= 0 or (not self.running() and (self._reader is None or
                                                         not self._reader.is_alive())):
                    raise TimeoutError(
                        f"{what or 'records'}: {len(hits)} of {count} after "
                        f"{timeout:.0f}s (daemon {'running' if self.running() else 'exited %s' % self.proc.returncode});"
                        f" records {[(r.get('type'), r.get('id')) for r in self.records]!r};"
                        f" stderr: {self.stderr()[-3000:]}")
                self._cond.wait(min(left, 0.5))

    def findings(self, pred=lambda r: True):
        return [r for r in self.records if r.get("type") == "finding" and pred(r)]

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=GUARD):
        """Send sig and wait; returns (exit status, seconds from signal to exit)."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=timeout)
        took = time.monotonic() - t0
        self._join()
        return rc, took

    def kill9(self):
        """SIGKILL and reap; returns the exit status (-9)."""
        self.proc.kill()
        rc = self.proc.wait()
        self._join()
        return rc

    def wait(self, timeout=GUARD):
        rc = self.proc.wait(timeout=timeout)
        self._join()
        return rc

    def _join(self):
        if self._reader:
            self._reader.join(timeout=GUARD)
            with contextlib.suppress(Exception):
                self.proc.stdout.close()
        with contextlib.suppress(Exception):
            self.stderr_file.close()

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._join()
        if self.own_notify and self.notify:
            self.notify.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_records(path):
    """The JSON records of a file a Daemon(stdout_path=...) appended to, in
    order; a torn last line (a kill in the middle of a write) is returned as
    {"type": "_torn", "line": ...}."""
    out = []
    with open(path, "rb") as f:
        for raw in f:
            line = raw.decode(errors="replace")
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"type": "_torn", "line": line})
    return out


def record_key(r):
    """What identifies a record for "exactly once": (type, id[, state])."""
    if r.get("type") == "error":
        return ("error", r.get("environment"), r.get("state"), r.get("since"))
    return (r.get("type"), r.get("id"))


def culprit_ids(finding):
    return [c["id"] for c in finding.get("culprits", [])]


def expected_by_alert(scenario):
    """realistic.json-style "expected" entries keyed by alert id."""
    return {e["alert"]: e for e in scenario.get("expected", [])}


# ---- exactly once, across crashes ---------------------------------------------------

class OutputLog:
    """Records appended to one file by successive daemon runs (Daemon(stdout_path=...)),
    cut into segments, one per run: segment i is what run i emitted, and
    killed[i] says whether run i ended by a crash (kill -9, a crash point)
    rather than a clean stop. Call end_run(killed) after each run is reaped."""

    def __init__(self, path):
        self.path = path
        self.segments = []
        self.killed = []
        self._seen = 0
        open(path, "ab").close()

    def end_run(self, killed):
        records = read_records(self.path)
        self.segments.append(records[self._seen:])
        self.killed.append(killed)
        self._seen = len(records)
        return self.segments[-1]

    def records(self):
        return [r for seg in self.segments for r in seg]

    def keys(self):
        return [record_key(r) for r in self.records()]


def check_exactly_once(log, expected_keys):
    """DESIGN.md §7's guarantee over an OutputLog: the union of emitted keys is
    expected_keys (nothing lost, nothing extra), and a key appears again only
    when its previous emission was the last record of a run that crashed (the
    one in flight), so duplicates <= crashes. Returns a summary dict; raises
    AssertionError saying what broke."""
    expected = set(expected_keys)
    problems = []
    torn = [r for r in log.records() if r.get("type") == "_torn"]
    if torn:
        problems.append(f"torn lines: {torn!r}")
    keys = log.keys()
    got = set(keys)
    if got - expected:
        problems.append(f"emitted but not expected: {sorted(got - expected)!r}")
    if expected - got:
        problems.append(f"lost (expected, never emitted): {sorted(expected - got)!r}")
    # where each key's emissions were: (segment, index, is last of a crashed run)
    last_in_flight = set()
    seen = {}
    duplicates = []
    for i, seg in enumerate(log.segments):
        for j, r in enumerate(seg):
            k = record_key(r)
            if k in seen:
                pi, pj = seen[k]
                ok = log.killed[pi] and pj == len(log.segments[pi]) - 1 and (pi, pj) not in last_in_flight
                duplicates.append(k)
                if not ok:
                    problems.append(f"{k!r} emitted again in run {i} although its emission in run "
                                    f"{pi} (record {pj} of {len(log.segments[pi])}, "
                                    f"{'crashed' if log.killed[pi] else 'clean stop'}) was not the one in flight")
                last_in_flight.add((pi, pj))
            seen[k] = (i, j)
    crashes = sum(log.killed)
    if len(duplicates) > crashes:
        problems.append(f"{len(duplicates)} duplicates for {crashes} crashes")
    summary = {"runs": len(log.segments), "crashes": crashes, "expected": len(expected),
               "emitted": len(keys), "distinct": len(got), "duplicates": len(duplicates),
               "duplicate_keys": duplicates}
    if problems:
        raise AssertionError("exactly-once broken: " + "; ".join(problems) + f" ({summary})")
    return summary
