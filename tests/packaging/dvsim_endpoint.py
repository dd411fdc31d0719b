"""How the packaging tests start dvsim and point s3mond at it: the one place
that knows whether the simulator speaks HTTPS.

Two forms of tests/dvsim/dvsim.py:
- HTTPS (its help mentions --tls): `--tls DIR --env-hosts --info-file F`.
  DIR/ca.pem is the test CA (s3mond's ca_file); each environment listens on
  its own loopback address (127.0.0.2, ...) with its Web API at the root; F
  is written once dvsim listens: {"port", "authority", "ca_file", "admin",
  "environments": {NAME: {"url", "tenant", "client_id", "address"}}}.
- plain HTTP on 127.0.0.1 (otherwise): one port (--port-file), environment
  NAME at http://127.0.0.1:PORT/NAME, the token endpoint and the admin API
  (/_admin) on the same port.
Either way info() returns the HTTPS form's shape, so a test reads one
structure. The files dvsim writes are read through `root` (a container's
root seen from the host, or "" here).

Python standard library only.
"""
import json
import os
import subprocess


def supports_tls(dvsim, python="python3"):
    """True when this dvsim has the HTTPS options."""
    r = subprocess.run([python, dvsim, "--help"], capture_output=True, text=True, timeout=60)
    return r.returncode == 0 and "--tls" in r.stdout


def describe(tls):
    return ("HTTPS (dvsim --tls: its own CA as s3mond's ca_file, one loopback address per environment)"
            if tls else "plain HTTP on 127.0.0.1 (this dvsim has no --tls)")


def command(dvsim, scenarios, workdir, tls, python="python3"):
    """dvsim's command line; workdir (as dvsim sees it) receives its files."""
    argv = [python, dvsim, "--port", "0", "--quiet"]
    for s in scenarios:
        argv += ["--scenario", s]
    if tls:
        argv += ["--tls", os.path.join(workdir, "tls"), "--env-hosts",
                 "--info-file", os.path.join(workdir, "info.json")]
    else:
        argv += ["--port-file", os.path.join(workdir, "port")]
    return argv


def _host(path, root):
    return root + path if root else path


def ready(workdir, tls, root=""):
    name = "info.json" if tls else "port"
    return os.path.exists(_host(os.path.join(workdir, name), root))


def scenario_environments(scenario_files, root=""):
    """NAME -> the scenario's environment (tenant, client_id, client_secret, ...)."""
    envs = {}
    for f in scenario_files:
        with open(_host(f, root)) as fh:
            for e in json.load(fh)["environments"]:
                envs[e["name"]] = e
    return envs


def info(workdir, tls, scenario_files, root=""):
    """What s3mond needs, in the HTTPS form's shape; ca_file None for HTTP."""
    if tls:
        with open(_host(os.path.join(workdir, "info.json"), root)) as f:
            data = json.load(f)
        data.setdefault("ca_file", os.path.join(workdir, "tls", "ca.pem"))
        admin = data["admin"].rstrip("/")
        data["admin"] = admin if admin.endswith("/_admin") else admin + "/_admin"
        return data
    with open(_host(os.path.join(workdir, "port"), root)) as f:
        port = int(f.read().strip())
    base = "http://127.0.0.1:%d" % port
    envs = {name: {"url": "%s/%s" % (base, name), "tenant": e["tenant"], "client_id": e["client_id"],
                   "address": "127.0.0.1"}
            for name, e in scenario_environments(scenario_files, root).items()}
    return {"port": port, "authority": base, "ca_file": None, "admin": base + "/_admin",
            "environments": envs}


def environment_section(name, data, secret_file):
    """An [environment NAME] section of s3mond.conf for dvsim's NAME."""
    e = data["environments"][name]
    lines = ["[environment %s]" % name,
             "url = %s" % e["url"],
             "authority = %s" % e.get("authority", data["authority"]),
             "tenant = %s" % e["tenant"],
             "client_id = %s" % e["client_id"],
             "client_secret_file = %s" % secret_file]
    if data.get("ca_file"):
        lines.append("ca_file = %s" % data["ca_file"])
    return "\n".join(lines) + "\n"
