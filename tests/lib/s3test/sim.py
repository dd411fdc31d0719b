"""The Dataverse simulator (tests/dvsim) under a test's control.

Sim runs dvsim.py as a child process on a free loopback port; InProcSim
serves it from a thread of the test itself (for tests that reach into it).
Both answer the same questions: where each environment's Web API is
(env_url), where tokens come from (authority, token_url), which CA to trust
(ca_file, with tls=), and they wrap the admin API (/_admin: rows, faults,
tokens, statistics). Configurations (config.py) take every URL from here,
so a test never builds one from a port.

Options passed through to dvsim, only when asked (today's default is plain
HTTP, every environment under 127.0.0.1:PORT/<name>):
  tls=DIR          HTTPS, DIR/ca.pem the test CA (s3mond's ca_file)
  env_hosts=True   each environment on its own loopback address
  latency="150ms", latency_jitter="20ms"   added to each request
  idle_close=SECS  the server closes idle keep-alive connections
With tls or env_hosts the URLs come from dvsim's --info-file.
"""

import contextlib
import copy
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from .base import DVSIM, FIXTURES, GUARD, iso

_modules = {}


def _import(name):
    if name not in _modules:
        d = os.path.dirname(os.path.abspath(DVSIM))
        if d not in sys.path:
            sys.path.insert(0, d)
        _modules[name] = __import__(name)
    return _modules[name]


def dvsim_module():
    """tests/dvsim/dvsim.py as a module (for InProcSim and for tests that
    change how it answers)."""
    return _import("dvsim")


def oracle_module():
    """tests/dvsim/oracle.py: the findings a fixture should give."""
    return _import("oracle")


# ---- scenarios ---------------------------------------------------------------

def fixture(name):
    """A fixture of tests/fixtures as a dict: "realistic", "realistic.json",
    "transport/nul.json" or a path."""
    path = name if os.path.isabs(name) else os.path.join(
        FIXTURES, name if name.endswith(".json") else name + ".json")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def env_of(scenario, name):
    """The environment called name of a scenario."""
    for e in scenario["environments"]:
        if e["name"] == name:
            return e
    raise KeyError(name)


def renamed_env(env, name, secret=None):
    """A copy of a scenario's environment under another name (and secret)."""
    e = copy.deepcopy(env)
    e["name"] = name
    if secret is not None:
        e["client_secret"] = secret
    return e


def with_environments(scenario, names, template=None):
    """A copy of scenario whose environments are clones of one of its own
    (template: a name, default the first) under each of names, so several
    environments share one fixture's rows and credentials."""
    s = copy.deepcopy(scenario)
    src = env_of(s, template) if template else s["environments"][0]
    s["environments"] = [renamed_env(src, n) for n in names]
    return s


def absolutize(scenario, now=None):
    """A copy of scenario whose relative datetimes ("now-5m") are absolute,
    so that a restarted simulator loads the very same rows."""
    dvsim = dvsim_module()
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


def closed_port():
    """A loopback port nothing listens on (for "Dataverse is down")."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- the simulator -----------------------------------------------------------

class SimError(RuntimeError):
    pass


def _options_argv(opts):
    argv = []
    for key, value in opts.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return argv


class Sim:
    """dvsim.py as a child process on a free loopback port.

    scenario: a dict, a file, or a list of files. A dict is kept
    (.scenario) and written again at each start, with the rows given to
    insert_sets(): so start() after stop()/kill() brings back the same data
    on the same port. credentials: [{"name", "tenant", "client_id",
    "client_secret"}] when the scenario is a big file the test already read.
    name: the prefix of its files in workdir (scenario, port, stderr;
    InProcSim has none and needs no workdir)."""

    program = DVSIM

    def __init__(self, scenario, workdir=None, name="dvsim", token_lifetime=None, tls=None,
                 env_hosts=False, latency=None, latency_jitter=None, idle_close=None, args=(),
                 credentials=None, start=True, start_timeout=GUARD, admin_timeout=30):
        self.workdir = os.fspath(workdir) if workdir is not None else None
        self.name = name
        if isinstance(scenario, dict):
            self._scenario, self.files = copy.deepcopy(scenario), None
        else:
            self._scenario = None
            self.files = [os.fspath(scenario)] if isinstance(scenario, (str, os.PathLike)) \
                else [os.fspath(s) for s in scenario]
        self._credentials = {c["name"]: c for c in credentials} if credentials else None
        self.options = {"token_lifetime": token_lifetime, "tls": tls, "env_hosts": env_hosts,
                        "latency": latency, "latency_jitter": latency_jitter,
                        "idle_close": idle_close}
        self.args = list(args)
        self.admin_timeout = admin_timeout
        self.stderr_path = os.path.join(self.workdir, name + ".stderr") if workdir is not None else None
        self.proc = None
        self.port = 0
        self.info = None
        self.old_stats = []     # stats of earlier lives (before restarts)
        if start:
            self.start(timeout=start_timeout)

    @classmethod
    def attach(cls, port, info=None, tls=None):
        """A Sim for a simulator another process runs: address() there."""
        sim = cls({"environments": []}, tls=tls, start=False)
        sim.port, sim.info = port, info
        return sim

    def address(self):
        """What attach() needs, as JSON (for a child process)."""
        return {"port": self.port, "info": self.info, "tls": self.options["tls"]}

    # -- the scenario and the environments' addresses --
    @property
    def scenario(self):
        if self._scenario is None:      # loaded only when asked: files can be big
            envs = []
            for path in self.files:
                with open(path, encoding="utf-8") as f:
                    envs += json.load(f).get("environments", [])
            self._scenario = {"environments": envs}
        return self._scenario

    def credentials(self, env):
        """The scenario's environment (name, tenant, client_id, client_secret, ...)."""
        if self._credentials is not None:
            return self._credentials[env]
        return env_of(self.scenario, env)

    def env_names(self):
        if self._credentials is not None:
            return list(self._credentials)
        return [e["name"] for e in self.scenario["environments"]]

    @property
    def base(self):
        """The simulator's own origin: tokens, /_admin, path-prefixed environments."""
        return f"{self._scheme()}://127.0.0.1:{self.port}"

    def _scheme(self):
        return "https" if self.options["tls"] else "http"

    @property
    def authority(self):
        """What s3mond's authority key names: the token endpoint's origin."""
        return self.info["authority"] if self.info else self.base

    @property
    def ca_file(self):
        """The CA to trust (s3mond's ca_file), None over plain HTTP."""
        return self.info.get("ca_file") if self.info else None

    @property
    def admin_url(self):
        return self.info["admin"].rstrip("/") if self.info else self.base + "/_admin"

    def env_url(self, env):
        """An environment's URL (s3mond's url key); its Web API is below
        /api/data/v9.2."""
        if self.info and env in self.info.get("environments", {}):
            return self.info["environments"][env]["url"].rstrip("/")
        return f"{self.base}/{env}"

    def token_url(self, tenant):
        return f"{self.authority}/{tenant}/oauth2/v2.0/token"

    def scope(self, env):
        return self.env_url(env) + "/.default"

    # -- the process --
    def _write_scenario(self):
        if self.files is not None:
            return self.files
        path = os.path.join(self.workdir, self.name + ".json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self._scenario, f)
        return [path]

    def start(self, timeout=GUARD):
        """Start the simulator, or start it again on the port it had."""
        port_file = os.path.join(self.workdir, self.name + ".port")
        info_file = os.path.join(self.workdir, self.name + ".info.json")
        for f in (port_file, info_file):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f)
        wants_info = bool(self.options["tls"] or self.options["env_hosts"])
        argv = [sys.executable, self.program, "--port", str(self.port), "--port-file", port_file, "--quiet"]
        for path in self._write_scenario():
            argv += ["--scenario", path]
        argv += _options_argv(self.options) + self.args
        if wants_info:
            argv += ["--info-file", info_file]
        ready = info_file if wants_info else port_file
        deadline = time.monotonic() + timeout
        with open(self.stderr_path, "ab") as err:
            while True:
                self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
                while time.monotonic() < deadline and not os.path.exists(ready) \
                        and self.proc.poll() is None:
                    time.sleep(0.05)
                if os.path.exists(ready):
                    break
                # a restart: the old port may still be held for a moment after a kill
                again = self.port and self.proc.poll() is not None and time.monotonic() < deadline
                if not again:
                    rc = self.proc.poll()
                    self.kill()
                    raise SimError((f"dvsim exited {rc}" if rc is not None else
                                    f"dvsim did not listen within {timeout:.0f}s") + f": {self._tail()}")
                time.sleep(0.2)
        if wants_info:
            with open(info_file) as f:
                self.info = json.load(f)
            self.port = int(self.info["port"])
        else:
            with open(port_file) as f:
                self.port = int(f.read().strip())
        return self

    def _tail(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _keep_stats(self):
        if self.running():
            with contextlib.suppress(OSError, SimError, ValueError):
                self.old_stats.append(self.stats())

    def stop(self):
        """Shut down cleanly (admin API, then SIGKILL if it lingers). Rows
        it was given are lost unless inserted with insert_sets()."""
        if not self.running():
            return
        with contextlib.suppress(Exception):
            self.admin("POST", "shutdown", timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self, keep_stats=False):
        """Stop hard: connections close at once, clients see resets and
        refusals. keep_stats: ask for its statistics first, for
        request_log() after a restart."""
        if keep_stats:
            self._keep_stats()
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- the admin API --
    def admin(self, method, path, body=None, timeout=None):
        """One admin call: path below /_admin ("faults", "prod/tracelogs");
        JSON in and out; SimError on an HTTP error."""
        timeout = timeout or self.admin_timeout
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.admin_url}/{path.lstrip('/')}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self._ssl_context()) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raise SimError(f"dvsim admin {method} {path}: {e.code} {e.read()[:500]!r}") from None
        return json.loads(raw) if raw else None

    def _ssl_context(self):
        if not self.admin_url.startswith("https:"):
            return None
        import ssl
        return ssl.create_default_context(cafile=self.ca_file)

    def insert(self, env, set_name, rows):
        """Insert or upsert one row (dict) or several (list). Returns the ids."""
        return self.admin("POST", f"{env}/{set_name}", rows)["ids"]

    def insert_sets(self, env, rows_by_set, offline=False):
        """Insert {set: [rows]} (absolute times) and keep them for the next
        start (offline: only keep them, the simulator being down). Evidence
        goes in before the alerts (tracelogs, mailboxes last): a poll between
        two inserts must not see an alert whose evidence is not there yet."""
        e = env_of(self.scenario, env)
        last = ("mailboxes", "tracelogs")
        for set_name in sorted(rows_by_set, key=lambda k: (k in last, last.index(k) if k in last else 0)):
            rows = rows_by_set[set_name]
            if not offline:
                self.insert(env, set_name, rows)
            e.setdefault("tables", {}).setdefault(set_name, []).extend(copy.deepcopy(rows))

    def patch(self, env, set_name, row_id, **cols):
        """Update columns; modifiedon moves to now unless given (a recurring alert)."""
        return self.admin("PATCH", f"{env}/{set_name}/{row_id}", cols)

    def delete(self, env, set_name, row_id=None):
        return self.admin("DELETE", f"{env}/{set_name}" + (f"/{row_id}" if row_id else ""))

    def rows(self, env, set_name):
        return self.admin("GET", f"{env}/{set_name}")["value"]

    def row(self, env, set_name, row_id):
        return self.admin("GET", f"{env}/{set_name}/{row_id}")

    def set_env(self, env, **changes):
        """client_secret, client_id, token_lifetime, deny_read."""
        return self.admin("PATCH", env, changes)

    def fault(self, **spec):
        """Add one fault (tests/dvsim/README.md "Faults"), e.g.
        fault(target="prod/tracelogs", kind="503", count=3); returns its id."""
        return self.admin("POST", "faults", spec)["ids"][0]

    def faults(self):
        return self.admin("GET", "faults")["faults"]

    def clear_faults(self):
        self.admin("POST", "faults/clear")

    def revoke_tokens(self, env=None):
        self.admin("POST", "tokens/revoke", {"env": env} if env else {})

    def stats(self):
        """/_admin/stats' environments: {env: {"requests", "sets": {set:
        {"requests", "bytes_sent", "log": [...]}}}}."""
        return self.admin("GET", "stats")["environments"]

    def reset_stats(self):
        self.admin("POST", "stats/reset")

    def requests(self, env, set_name=None):
        """Requests an environment received (in one entity set, or "token")."""
        e = self.stats().get(env, {})
        if set_name is None:
            return e.get("requests", 0)
        return e.get("sets", {}).get(set_name, {}).get("requests", 0)

    def requests_by_set(self, env):
        return {k: v["requests"] for k, v in self.stats().get(env, {}).get("sets", {}).items()}

    def log(self, env, set_name):
        """The request log of one bucket of this life: [{"t", "status",
        "method", "path", "fault"?}]."""
        return self.stats().get(env, {}).get("sets", {}).get(set_name, {}).get("log", [])

    def all_stats(self):
        """Stats of every life of this simulator (restarts included), newest last."""
        return self.old_stats + ([self.stats()] if self.running() else [])

    def request_log(self, env, sets=None):
        """Every logged request of env over all lives, by time, each with its
        "set"; sets limits the buckets (e.g. ["tracelogs"], ["token"])."""
        out = []
        for st in self.all_stats():
            for set_name, b in st.get(env, {}).get("sets", {}).items():
                if sets is not None and set_name not in sets:
                    continue
                out += [dict(entry, set=set_name) for entry in b.get("log", [])]
        out.sort(key=lambda x: x["t"])
        return out


class InProcSim(Sim):
    """dvsim served from a thread of this process: .sim is its Simulator
    (tokens, request log, answers a test may change). Not restartable."""

    def start(self, timeout=GUARD):
        dvsim = dvsim_module()
        self.sim = dvsim.Simulator(self.options["token_lifetime"] or dvsim.DEFAULT_TOKEN_LIFETIME)
        self.sim.load(copy.deepcopy(self.scenario), self.name)
        kw = {k: v for k, v in self.options.items() if k != "token_lifetime" and v not in (None, False)}
        for k in ("latency", "latency_jitter"):     # "150ms" as on the command line: seconds
            if isinstance(kw.get(k), str):
                kw[k] = dvsim.parse_latency(kw[k])
        self.server = dvsim.start_in_thread(self.sim, **kw)
        self.port = self.sim.port
        info = getattr(self.sim, "info", None)
        self.info = (info() if callable(info) else info) if kw else None
        return self

    @property
    def pid(self):
        return os.getpid()

    def running(self):
        return getattr(self, "server", None) is not None

    def kill(self, keep_stats=False):
        if keep_stats:
            self._keep_stats()
        if self.running():
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def stop(self):
        self.kill()
