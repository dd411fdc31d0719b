"""s3mond configuration files for simulated environments, with their
secret files."""

import os
import shutil

from .sim import Sim


def write_secret(path, secret, mode=0o600):
    """A secret file of that mode (whatever the umask)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    os.chmod(path, mode)
    return path


class Config:
    """An s3mond configuration file for environments of one or more
    simulators, each with its 0600 secret file beside it.

    Config(workdir, sims, envs=None, name="s3mond.conf", secret=None,
    **settings): settings go to [s3mond] (interval="2s", resolve_after="3s",
    ...; interval 2s and state_directory WORKDIR/state by default; a
    setting set to None is left out). sims: a Sim or a list of them; an
    environment is looked up in each in turn. envs: the environment names
    (default: every environment of every simulator) or a dict name ->
    {key: value} overriding an environment's keys (e.g. {"prod": {"url":
    "http://127.0.0.1:9/prod"}}; None leaves a key out). url, authority and
    ca_file come from the simulator. secret={"prod": "wrong"} writes
    another secret. Change .settings, .envs or .secret, then write() (for
    SIGHUP); write_text() puts anything there (a bad file)."""

    def __init__(self, workdir, sims, envs=None, name="s3mond.conf", secret=None, **settings):
        self.dir = os.fspath(workdir)
        self.sims = [sims] if isinstance(sims, Sim) else list(sims)
        self.path = os.path.join(self.dir, name)
        self.settings = {"interval": "2s", "state_directory": os.path.join(self.dir, "state")}
        self.settings.update(settings)
        if envs is None:
            envs = [n for s in self.sims for n in s.env_names()]
        self.envs = {n: {} for n in envs} if not isinstance(envs, dict) else dict(envs)
        self.secret = dict(secret or {})
        self.write()

    @property
    def sim(self):
        return self.sims[0]

    @property
    def state_dir(self):
        return self.settings["state_directory"]

    def sim_of(self, env):
        for s in self.sims:
            if env in s.env_names():
                return s
        raise KeyError(env)

    def secret_file(self, env):
        return os.path.join(self.dir, f"{env}.secret")

    def env_keys(self, env):
        sim = self.sim_of(env)
        c = sim.credentials(env)
        keys = {"url": sim.env_url(env), "authority": sim.authority,
                "tenant": c["tenant"], "client_id": c["client_id"],
                "client_secret_file": self.secret_file(env)}
        if sim.ca_file:
            keys["ca_file"] = sim.ca_file
        keys.update(self.envs.get(env) or {})
        return keys

    def write(self):
        lines = ["[s3mond]"]
        lines += [f"{k} = {v}" for k, v in self.settings.items() if v is not None]
        for env in self.envs:
            write_secret(self.secret_file(env),
                         self.secret.get(env, self.sim_of(env).credentials(env)["client_secret"]))
            lines += ["", f"[environment {env}]"]
            lines += [f"{k} = {v}" for k, v in self.env_keys(env).items() if v is not None]
        return self.write_text("\n".join(lines) + "\n")

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

    def fresh_state(self):
        """An empty state directory."""
        shutil.rmtree(self.state_dir, ignore_errors=True)
        os.makedirs(self.state_dir)
