# rlib: small helpers shared by the reliability and security suites: dvsim as a
# child process (stop/restart on the same port), s3mond as a child process with
# its records and memory sampled, configurations, and the expected findings.
"""Helpers for tests/reliability.

Environment (set by meson.build; defaults work from the source tree after
`meson setup build`):
  S3MOND        the daemon binary
  DVSIM         tests/dvsim/dvsim.py
  FIXTURES      tests/fixtures
  S3MOND_SANITIZE  meson's b_sanitize ("none" or e.g. "address,undefined")
"""

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.normpath(os.path.join(HERE, "..", ".."))
S3MOND = os.environ.get("S3MOND", os.path.join(SRC, "build", "s3mond"))
DVSIM = os.environ.get("DVSIM", os.path.join(SRC, "tests", "dvsim", "dvsim.py"))
FIXTURES = os.environ.get("FIXTURES", os.path.join(SRC, "tests", "fixtures"))
SANITIZE = os.environ.get("S3MOND_SANITIZE", "none")
SANITIZED = SANITIZE not in ("", "none")

sys.path.insert(0, os.path.dirname(DVSIM))
import dvsim  # noqa: E402
import oracle  # noqa: E402

CODE_TEXT = ("An unknown error occurred while receiving email through the mailbox \"%s\". "
             "The owner of the associated email server profile Microsoft Exchange Online "
             "has been notified. The system will try to receive email again later.\r\n"
             "Email Server Error Code: Exchange server returned "
             "UnknownIncomingEmailIntegrationError -2147220956 exception.")


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, flush=True)


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(t)))


def new_guid():
    return dvsim.new_guid()


# ---- scenarios ---------------------------------------------------------------

def load_fixture(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as f:
        return json.load(f)


def absolutize(scenario, now=None):
    """A copy of SCENARIO whose relative datetimes ("now-5m") are absolute, so
    that a restarted dvsim loads the very same rows."""
    now = time.time() if now is None else now
    out = copy.deepcopy(scenario)
    for env in out.get("environments", []):
        for set_name, rows in env.get("tables", {}).items():
            cols = dvsim.TABLES_BY_SET[set_name].cols
            for row in rows:
                for k, v in list(row.items()):
                    col = cols.get(k)
                    if col is not None and col.kind == "dt" and isinstance(v, str) \
                            and v.startswith("now"):
                        row[k] = iso(dvsim.parse_time(v, now))
    return out


def env_of(scenario, name):
    for e in scenario["environments"]:
        if e["name"] == name:
            return e
    raise KeyError(name)


def renamed_env(env, name, secret=None):
    e = copy.deepcopy(env)
    e["name"] = name
    if secret is not None:
        e["client_secret"] = secret
    return e


def expected_findings(scenario, env_name, now=None, **oracle_args):
    """The oracle's findings for one environment of SCENARIO (absolute times)."""
    now = time.time() if now is None else now
    sim = dvsim.Simulator()
    sim.load({"environments": [env_of(scenario, env_name)]}, "expected")
    return oracle.findings(sim.envs[env_name], now, **oracle_args)


def new_alert_rows(mailbox_id="a1000000-0000-4000-8000-000000000001", mailbox_name="Support",
                   process_id="c1000000-0000-4000-8000-000000000002",
                   step_id="e1000000-0000-4000-8000-000000000001", at=None):
    """A fresh alert on MAILBOX with a failed session of PROCESS_ID and a plug-in
    trace of STEP_ID a few seconds before it (realistic.json's ids): {set: [rows]}."""
    at = time.time() if at is None else at
    rows = {"tracelogs": [{
        "tracelogid": new_guid(), "level": 2, "text": CODE_TEXT % mailbox_name,
        "errordetails": "Error : Exchange server returned UnknownIncomingEmailIntegrationError "
                        "-2147220956 exception.",
        "_regardingobjectid_value": mailbox_id,
        "_regardingobjectid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "mailbox",
        "regardingobjecttypecode": "mailbox",
        "createdon": iso(at - 1), "modifiedon": iso(at)}]}
    if process_id:
        rows["processsessions"] = [{
            "processsessionid": new_guid(), "name": "injected", "_processid_value": process_id,
            "statecode": 1, "statuscode": 6, "errorcode": -2147220891,
            "comments": "injected failure", "startedon": iso(at - 4), "completedon": iso(at - 3),
            "createdon": iso(at - 4), "modifiedon": iso(at - 3)}]
    if step_id:
        rows["plugintracelogs"] = [{
            "plugintracelogid": new_guid(), "pluginstepid": step_id, "messagename": "Create",
            "primaryentity": "email", "mode": 0, "typename": "Contoso.Plugins.EmailCreate",
            "exceptiondetails": "injected exception", "createdon": iso(at - 2)}]
    return rows


# ---- dvsim ----------------------------------------------------------------------

class Dvsim:
    """dvsim.py as a child process. Its scenario (absolute times) and every row
    inserted through insert() are kept, so restart() brings back the same data
    on the same port."""

    def __init__(self, scenario, workdir, name="dvsim", token_lifetime=None):
        self.scenario = copy.deepcopy(scenario)
        self.workdir = workdir
        self.name = name
        self.port = 0
        self.proc = None
        self.token_lifetime = token_lifetime
        self.old_stats = []     # stats of earlier lives (before restarts)
        self.stderr_path = os.path.join(workdir, name + ".stderr")

    @property
    def base(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self, timeout=30):
        path = os.path.join(self.workdir, self.name + ".json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.scenario, f)
        port_file = os.path.join(self.workdir, self.name + ".port")
        try:
            os.unlink(port_file)
        except FileNotFoundError:
            pass
        argv = [sys.executable, DVSIM, "--scenario", path, "--port", str(self.port),
                "--port-file", port_file, "--quiet"]
        if self.token_lifetime:
            argv += ["--token-lifetime", str(self.token_lifetime)]
        err = open(self.stderr_path, "ab")
        deadline = time.time() + timeout
        while True:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
            while time.time() < deadline and not os.path.exists(port_file) \
                    and self.proc.poll() is None:
                time.sleep(0.05)
            if os.path.exists(port_file):
                break
            # the old port may still be held for a moment after a kill: try again
            if self.proc.poll() is None or time.time() >= deadline:
                err.close()
                self.kill()
                raise RuntimeError("dvsim did not start: see %s" % self.stderr_path)
            time.sleep(0.2)
        err.close()
        with open(port_file) as f:
            self.port = int(f.read().strip())
        return self

    def kill(self):
        """Stop hard (connections close at once: the clients see resets/refusals)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                self.old_stats.append(self.stats())
            except OSError:
                pass
        self.kill()

    def restart(self):
        self.start()

    def admin(self, method, path, body=None, timeout=30):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + "/_admin/" + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            raise RuntimeError("dvsim admin %s %s: %s %s" % (method, path, e.code, e.read()[:300]))

    def add_fault(self, spec):
        return self.admin("POST", "faults", spec)["ids"]

    def clear_faults(self):
        self.admin("POST", "faults/clear")

    def revoke(self, env=None):
        return self.admin("POST", "tokens/revoke", {"env": env} if env else {})

    def insert(self, env, rows_by_set, offline=False):
        """Insert rows ({set: [rows]}, absolute times) now, and into the kept scenario
        (OFFLINE: only there, for the next start). Evidence goes in before the alerts
        (tracelogs, mailboxes last): a poll between two inserts must not see an alert
        whose evidence is not there yet."""
        e = env_of(self.scenario, env)
        last = ("mailboxes", "tracelogs")
        for set_name in sorted(rows_by_set, key=lambda k: (k in last, last.index(k) if k in last else 0)):
            rows = rows_by_set[set_name]
            if not offline:
                self.admin("POST", "%s/%s" % (env, set_name), rows)
            e.setdefault("tables", {}).setdefault(set_name, []).extend(copy.deepcopy(rows))

    def stats(self):
        return self.admin("GET", "stats")

    def all_stats(self):
        """Stats of every life of this simulator (restarts included), newest last."""
        out = list(self.old_stats)
        if self.proc and self.proc.poll() is None:
            out.append(self.stats())
        return out

    def request_log(self, env, sets=None):
        """Every logged request of ENV (all lives), sorted by time, each with its
        "set" added; SETS limits the buckets (e.g. ["tracelogs"], ["token"])."""
        out = []
        for st in self.all_stats():
            e = st.get("environments", {}).get(env, {})
            for set_name, b in e.get("sets", {}).items():
                if sets is not None and set_name not in sets:
                    continue
                for entry in b.get("log", []):
                    entry = dict(entry)
                    entry["set"] = set_name
                    out.append(entry)
        out.sort(key=lambda x: x["t"])
        return out

    def env_config(self, env_name, secret_file, **extra):
        e = env_of(self.scenario, env_name)
        lines = ["[environment %s]" % env_name,
                 "url = %s/%s" % (self.base, env_name),
                 "authority = %s" % self.base,
                 "tenant = %s" % e["tenant"],
                 "client_id = %s" % e["client_id"],
                 "client_secret_file = %s" % secret_file]
        lines += ["%s = %s" % kv for kv in extra.items()]
        return "\n".join(lines) + "\n"


# ---- configuration ----------------------------------------------------------------

def write_secret(path, secret, mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    os.chmod(path, mode)
    return path


def write_config(workdir, envs, main=None, name="s3mond.conf"):
    """ENVS: [(dvsim, env name, {extra env keys})]; MAIN: [s3mond] keys.
    Writes one secret file per environment (mode 0600) and the configuration."""
    keys = {"interval": "2s", "output": "json",
            "state_directory": os.path.join(workdir, "state")}
    keys.update(main or {})
    text = "[s3mond]\n" + "".join("%s = %s\n" % kv for kv in keys.items() if kv[1] is not None)
    for sim, env_name, extra in envs:
        secret = env_of(sim.scenario, env_name)["client_secret"]
        sf = write_secret(os.path.join(workdir, env_name + ".secret"), secret)
        text += "\n" + sim.env_config(env_name, sf, **(extra or {}))
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


# ---- the daemon -------------------------------------------------------------------

def read_rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class Daemon:
    """s3mond as a child process: JSON records from stdout (with their arrival
    time), stderr to a file, VmRSS sampled every RSS_EVERY seconds."""

    RSS_EVERY = 0.25

    def __init__(self, config, workdir, args=(), env=None, exe=None, prefix=(), name="s3mond"):
        self.argv = list(prefix) + [exe or S3MOND, "-c", config] + list(args)
        self.workdir = workdir
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.records = []
        self.raw = []
        self.rss = []           # (time, KiB)
        self.lock = threading.Lock()
        self.proc = None
        self.stderr_path = os.path.join(workdir, name + ".stderr")
        self.stdout_path = os.path.join(workdir, name + ".stdout")
        self._stop = threading.Event()

    def start(self):
        self.err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.err, env=self.env)
        self.pid = self.proc.pid
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.sampler = threading.Thread(target=self._sample, daemon=True)
        self.sampler.start()
        return self

    def _read(self):
        with open(self.stdout_path, "ab") as out:
            for line in self.proc.stdout:
                out.write(line)
                out.flush()
                now = time.time()
                with self.lock:
                    self.raw.append(line)
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        rec = {"type": "_unparsable", "line": line.decode("utf-8", "replace")}
                    if isinstance(rec, dict):
                        rec["_t"] = now
                    self.records.append(rec)

    def _sample(self):
        while not self._stop.is_set() and self.proc.poll() is None:
            kib = read_rss_kib(self.pid)
            if kib is not None:
                with self.lock:
                    self.rss.append((time.time(), kib))
            self._stop.wait(self.RSS_EVERY)

    def snapshot(self, kind=None):
        with self.lock:
            recs = list(self.records)
        return [r for r in recs if kind is None or r.get("type") == kind]

    def wait_for(self, pred, timeout, what="condition"):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if pred(self.snapshot()):
                return True
            if self.proc.poll() is not None:
                raise AssertionError("s3mond exited (%s) while waiting for %s; stderr: %s"
                                     % (self.proc.returncode, what, self.stderr_tail()))
            time.sleep(0.1)
        raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            raise AssertionError("s3mond did not stop within %ss of signal %d" % (timeout, sig))
        finally:
            self._finish()
        return rc

    def _finish(self):
        self._stop.set()
        self.reader.join(10)
        self.sampler.join(5)
        self.err.close()
        self.proc.stdout.close()

    def wait_exit(self, timeout=60):
        try:
            return self.proc.wait(timeout)
        finally:
            self._finish()

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stderr_tail(self, n=2000):
        return self.stderr_text()[-n:]


# ---- checking findings ------------------------------------------------------------

def finding_key(f):
    return (f.get("environment"), f.get("alert", {}).get("id"))


def compare_findings(records, expected_by_env):
    """Compare the finding records with the oracle's expectations.
    Returns (counts, problems): counts = {"expected", "emitted", "duplicated",
    "lost", "unexpected", "wrong"}; problems is a list of sentences."""
    findings = [r for r in records if r.get("type") == "finding"]
    problems = []
    seen = {}
    for f in findings:
        seen.setdefault(finding_key(f), []).append(f)
    expected = {}
    for env, exp in expected_by_env.items():
        for e in exp:
            expected[(env, e["alert"])] = e
    dup = sum(len(v) - 1 for v in seen.values() if len(v) > 1)
    for k, v in seen.items():
        if len(v) > 1:
            problems.append("finding for %s/%s emitted %d times" % (k[0], k[1], len(v)))
    lost = [k for k in expected if k not in seen]
    for k in lost:
        problems.append("finding for %s/%s never emitted" % k)
    unexpected = [k for k in seen if k not in expected]
    for k in unexpected:
        problems.append("unexpected finding for %s/%s (%s)" % (k[0], k[1], seen[k][0].get("verdict")))
    wrong = 0
    for k, e in expected.items():
        if k not in seen:
            continue
        f = seen[k][0]
        culprits = [c["id"] for c in f.get("culprits", [])]
        evidence = {c["id"]: sorted(ev["id"] for ev in c.get("evidence", []))
                    for c in f.get("culprits", []) if c.get("evidence")}
        want_ev = {c: sorted(ids) for c, ids in e.get("evidence", {}).items()}
        bad = []
        if f.get("verdict") != e["verdict"]:
            bad.append("verdict %s, expected %s" % (f.get("verdict"), e["verdict"]))
        if f.get("alert", {}).get("source") != e["source"]:
            bad.append("source %s, expected %s" % (f.get("alert", {}).get("source"), e["source"]))
        if culprits != e["culprits"]:
            bad.append("culprits %s, expected %s" % (culprits, e["culprits"]))
        if evidence != want_ev:
            bad.append("evidence %s, expected %s" % (evidence, want_ev))
        if bad:
            wrong += 1
            problems.append("finding %s/%s: %s" % (k[0], k[1], "; ".join(bad)))
    counts = {"expected": len(expected), "emitted": len(findings), "duplicated": dup,
              "lost": len(lost), "unexpected": len(unexpected), "wrong": wrong}
    return counts, problems


def error_events(records, env):
    return [r for r in records if r.get("type") == "error" and r.get("environment") == env]


def scan_for(paths, needles):
    """[(path, needle)] for each file under PATHS (files or directories) that
    contains one of NEEDLES (bytes)."""
    hits = []
    for p in paths:
        files = []
        if os.path.isdir(p):
            for root, _dirs, names in os.walk(p):
                files += [os.path.join(root, n) for n in names]
        elif os.path.exists(p):
            files.append(p)
        for fp in files:
            try:
                with open(fp, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            for n in needles:
                if n and n in data:
                    hits.append((fp, n))
    return hits


class TempDir:
    """A temporary directory removed on success, kept (and named) on failure."""

    def __init__(self, prefix):
        self.path = tempfile.mkdtemp(prefix=prefix)
        self.keep = False

    def __enter__(self):
        return self.path

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None or self.keep or os.environ.get("RELIAB_KEEP"):
            log("kept", self.path)
        else:
            shutil.rmtree(self.path, ignore_errors=True)
        return False


# ---- a rig: one simulator, its environments, a state directory, daemons --------------

class Rig:
    """dvsim with FIXTURE's environments (absolute times) and s3mond runs
    against it, all under TMP. For tests that restart the daemon."""

    def __init__(self, tmp, fixture="realistic.json", interval=1, state_dir=None, main=None,
                 env_extra=None, scenario=None):
        self.tmp = tmp
        self.scenario = rlib_scenario = scenario or absolutize(load_fixture(fixture))
        self.envs = [e["name"] for e in rlib_scenario["environments"]]
        self.sim = Dvsim(rlib_scenario, tmp, "dvsim")
        self.state_dir = state_dir or os.path.join(tmp, "state")
        self.main = {"interval": "%ds" % interval, "state_directory": self.state_dir}
        self.main.update(main or {})
        self.env_extra = env_extra or {}
        self.interval = interval
        self.runs = []
        self.config = None

    def start(self):
        self.sim.start()
        self.config = write_config(self.tmp, [(self.sim, e, self.env_extra.get(e))
                                              for e in self.envs], self.main)
        return self

    def daemon(self, args=("-v",), env=None, name=None, **kw):
        d = Daemon(self.config, self.tmp, list(args), env=env,
                   name=name or "s3mond-%d" % (len(self.runs) + 1), **kw)
        self.runs.append(d)
        return d.start()

    def expected(self, **oracle_args):
        return {e: expected_findings(self.sim.scenario, e, **oracle_args) for e in self.envs}

    def n_expected(self):
        return sum(len(v) for v in self.expected().values())

    def insert_alert(self, env=None, **kw):
        rows = new_alert_rows(at=time.time() - 1, **kw)
        self.sim.insert(env or self.envs[0], rows)
        return rows["tracelogs"][0]["tracelogid"]

    def all_records(self):
        out = []
        for d in self.runs:
            out += d.snapshot()
        return out

    def stop(self):
        for d in self.runs:
            if d.proc and d.alive():
                d.proc.kill()
                d.wait_exit()
        self.sim.kill()


def findings_count(recs):
    return sum(1 for r in recs if r.get("type") == "finding")


def keys_of(recs):
    return [finding_key(r) for r in recs if r.get("type") == "finding"]


class InProcDvsim(Dvsim):
    """dvsim served from a thread of this process (for tests that reach into it,
    e.g. to mangle its answers). Not restartable."""

    def start(self, timeout=30):
        self.sim = dvsim.Simulator(self.token_lifetime or dvsim.DEFAULT_TOKEN_LIFETIME)
        self.sim.load(copy.deepcopy(self.scenario), self.name)
        self.server = dvsim.start_in_thread(self.sim)
        self.port = self.sim.port
        return self

    def kill(self):
        if getattr(self, "server", None):
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def stop(self):
        self.kill()

    def all_stats(self):
        return [self.stats()] if getattr(self, "server", None) else []
