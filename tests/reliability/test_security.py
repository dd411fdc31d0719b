#!/usr/bin/env python3
# test_security: secrets never leave the process; the configuration cannot
# weaken transport security; foreign nextLinks are refused; files get the modes
# they must have; the process is not dumpable.
"""Security checks of s3mond, end to end. Runs in a private mount namespace
with its own journald (s3test.journald), so the journal is an artifact too;
root needed (77 otherwise).

TestSecrets: a distinctive client secret; s3mond as a daemon (-o json, then
  -o journal), --once, --once --json, --probe, --check-config and a SIGHUP
  reload, all at -v -v, through a token revocation, a failing token endpoint,
  5xx answers, and a run with a wrong secret. Every artifact (stdout, stderr,
  journal entries, state directory, metrics file, dvsim's request log) is
  grepped for the secrets (raw and URL-encoded) and every bearer token dvsim
  issued: none may appear.
TestDumpable: s3mond run as an unprivileged user is not dumpable (its
  /proc/<pid> files belong to root), so no core file can hold the secret.
TestConfigRefusals: a secret file readable by group or others; http:// to a
  non-loopback host (url, authority, token_url); any key that would turn TLS
  verification off (none exists: each is an unknown key); exit 78, file:line.
TestTls: a server with a certificate the system does not trust gets no HTTP
  request at all (no token request, so no secret, leaves the process).
TestForeignNextLink: an @odata.nextLink to another host is refused with one
  failing/recovered error pair, and that host never sees a connection.
TestFileModes: under umask 077 and umask 000, the state directory is 0700,
  state files 0600 and the metrics file 0644.
"""

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import unittest
from urllib.parse import quote

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import s3test as h  # noqa: E402
from s3test import journald  # noqa: E402

journald.reexec_in_namespace()

ENV = "prod"
SECRET = "Zq9-s3cr3t+/=!%s" % os.urandom(6).hex()
WRONG = "Wr0ng-s3cr3t+/=!%s" % os.urandom(6).hex()
JOURNAL = contextlib.ExitStack()
READ = None


def setUpModule():
    global READ
    READ = JOURNAL.enter_context(journald.journald())


def tearDownModule():
    JOURNAL.close()


def fixture_with_secret(secret=SECRET):
    sc = h.absolutize(h.fixture("realistic.json"))
    sc["environments"][0]["client_secret"] = secret
    return sc


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, timeout=120, **kw)


def scan_for(paths, needles):
    """[(path, needle)] for each file under paths (files or directories)
    that contains one of needles (bytes)."""
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
            hits += [(fp, n) for n in needles if n and n in data]
    return hits


class TestSecrets(unittest.TestCase):
    def test_no_secret_or_token_in_any_artifact(self):
        td = h.Workdir("s3mond-secrets-")
        with td as tmp:
            sim = h.InProcSim(fixture_with_secret(), tmp)
            reqlog_path = os.path.join(tmp, "dvsim-requests.log")
            sim.sim.log = open(reqlog_path, "a")
            metrics = os.path.join(tmp, "metrics", "s3mond.prom")
            os.mkdir(os.path.dirname(metrics))
            conf = h.Config(tmp, sim, interval="1s", metrics_file=metrics)
            artifacts = [tmp.path]
            try:
                # the daemon, -o json then -o journal, through trouble
                for output in ("json", "journal"):
                    d = h.Daemon(conf, output=output, verbose=2, name="daemon-" + output)
                    if output == "json":
                        d.wait_for(lambda r: h.findings_count(r) >= 5, 30, "findings")
                    else:
                        time.sleep(2.5)
                    sim.revoke_tokens(ENV)
                    sim.fault(target=ENV + "/token", kind="503", count=2)
                    time.sleep(3)
                    sim.fault(target=ENV + "/tracelogs", kind="500", duration=3)
                    sim.fault(target=ENV + "/token", kind="401", count=1)
                    sim.revoke_tokens(ENV)
                    time.sleep(5)
                    d.proc.send_signal(signal.SIGHUP)
                    time.sleep(2)
                    self.assertEqual(d.stop(), 0, d.stderr_tail())
                    if output == "json":
                        self.assertTrue(d.snapshot("error"), "no error record was produced")
                # one-shot modes
                for name, args in (("once", ["--once"]), ("once-json", ["--once", "--json"]),
                                   ("probe", ["--probe"]), ("check", ["--check-config"])):
                    p = run([h.S3MOND, "-c", conf.path, "-v", "-v"] + args)
                    for stream, data in (("stdout", p.stdout), ("stderr", p.stderr)):
                        with open(os.path.join(tmp, "%s.%s" % (name, stream)), "wb") as f:
                            f.write(data)
                    self.assertIn(p.returncode, (0, 1, 2), "%s: %s" % (name, p.stderr[-500:]))
                # a wrong secret: refused by the token endpoint, still never printed
                wrong = os.path.join(tmp, "wrong.conf")
                text = conf.text().replace(conf.secret_file(ENV), os.path.join(tmp, "wrong.secret"))
                with open(wrong, "w") as f:
                    f.write(text)
                h.write_secret(os.path.join(tmp, "wrong.secret"), WRONG)
                for name, args in (("wrong-once", ["--once"]), ("wrong-probe", ["--probe"])):
                    p = run([h.S3MOND, "-c", wrong, "-v", "-v"] + args)
                    self.assertEqual(p.returncode, 3 if name == "wrong-once" else p.returncode)
                    for stream, data in (("stdout", p.stdout), ("stderr", p.stderr)):
                        with open(os.path.join(tmp, "%s.%s" % (name, stream)), "wb") as f:
                            f.write(data)
                d = h.Daemon(wrong, verbose=2, name="daemon-wrong")
                d.wait_for(lambda r: any(x.get("type") == "error" for x in r), 30, "an error record")
                self.assertEqual(d.stop(), 0)
            finally:
                stats = sim.admin("GET", "stats")
                tokens = list(sim.sim.tokens)
                sim.sim.log.close()
                sim.kill()
            with open(os.path.join(tmp, "dvsim-stats.json"), "w") as f:
                json.dump(stats, f)
            entries = READ("SYSLOG_IDENTIFIER=s3mond")
            self.assertTrue(entries, "nothing reached the journal")
            with open(os.path.join(tmp, "journal.json"), "w") as f:
                for e in entries:
                    f.write(json.dumps(e) + "\n")
            self.assertTrue(tokens, "dvsim issued no token")
            self.assertTrue(os.path.exists(metrics))
            self.assertTrue(os.listdir(os.path.join(tmp, "state")))
            # the secret files themselves are the only place the secrets may be
            for n in (ENV + ".secret", "wrong.secret", "dvsim.json"):
                p = os.path.join(tmp, n)
                if os.path.exists(p):
                    os.unlink(p)
            needles = [s.encode() for s in (SECRET, WRONG, quote(SECRET, safe=""),
                                             quote(WRONG, safe=""))]
            needles += [t.encode() for t in tokens]
            hits = scan_for(artifacts, needles)
            h.log("scanned %d files for %d needles (%d tokens)" % (
                sum(len(f) for _r, _d, f in os.walk(tmp)), len(needles), len(tokens)))
            self.assertEqual(hits, [], "secrets or tokens found in artifacts")


class TestDumpable(unittest.TestCase):
    def test_not_dumpable(self):
        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            self.skipTest("no user nobody")
        if not shutil.which("setpriv"):
            self.skipTest("no setpriv")
        td = h.Workdir("s3mond-dumpable-")
        with td as tmp:
            os.chmod(tmp, 0o755)
            sim = h.Sim(fixture_with_secret(), tmp)
            try:
                conf = h.Config(tmp, sim, interval="1s")
                os.chown(conf.secret_file(ENV), nobody.pw_uid, nobody.pw_gid)
                os.mkdir(os.path.join(tmp, "state"), 0o700)
                os.chown(os.path.join(tmp, "state"), nobody.pw_uid, nobody.pw_gid)
                prefix = ["setpriv", "--reuid=%d" % nobody.pw_uid, "--regid=%d" % nobody.pw_gid,
                          "--clear-groups"]
                d = h.Daemon(conf, verbose=0, prefix=prefix)
                d.wait_for(lambda r: h.findings_count(r) >= 5, 30, "findings")
                # a control: the same user's ordinary process owns its /proc files
                ctl = subprocess.Popen(prefix + ["sleep", "5"])
                time.sleep(0.3)
                try:
                    ctl_uid = os.stat("/proc/%d/status" % ctl.pid).st_uid
                    uid = os.stat("/proc/%d/status" % d.pid).st_uid
                finally:
                    ctl.kill()
                    ctl.wait()
                self.assertEqual(d.stop(), 0)
                self.assertEqual(ctl_uid, nobody.pw_uid)
                self.assertEqual(uid, 0, "s3mond is dumpable: a core dump could hold the secret")
            finally:
                sim.kill()


class TestConfigRefusals(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.td = h.Workdir("s3mond-refusals-")
        cls.tmp = cls.td.path

    @classmethod
    def tearDownClass(cls):
        cls.td.__exit__(None, None, None)

    def config(self, env_lines, main_lines=(), secret_mode=0o600):
        secret = h.write_secret(os.path.join(self.tmp, "s.secret"), SECRET, secret_mode)
        text = "[s3mond]\nstate_directory = %s/state\n%s\n[environment prod]\n" % (
            self.tmp, "\n".join(main_lines))
        keys = {"url": "http://127.0.0.1:9/prod", "authority": "http://127.0.0.1:9",
                "tenant": "contoso.onmicrosoft.com",
                "client_id": "11111111-1111-1111-1111-111111111111", "client_secret_file": secret}
        extra = []
        for line in env_lines:
            k, _, v = line.partition("=")
            if k.strip() in keys:
                keys[k.strip()] = v.strip()
            else:
                extra.append(line)
        text += "".join("%s = %s\n" % kv for kv in keys.items()) + "\n".join(extra) + "\n"
        path = os.path.join(self.tmp, "t.conf")
        with open(path, "w") as f:
            f.write(text)
        return path

    def check(self, path, ok, *words):
        p = run([h.S3MOND, "-c", path, "--check-config"])
        err = p.stderr.decode("utf-8", "replace")
        if ok:
            self.assertEqual(p.returncode, 0, err)
        else:
            self.assertEqual(p.returncode, 78, err)
            self.assertIn(path + ":", err)
            for w in words:
                self.assertIn(w, err)
        self.assertNotIn(SECRET.encode(), p.stdout + p.stderr)

    def test_secret_file_mode(self):
        for mode, ok in ((0o600, True), (0o400, True), (0o640, False), (0o604, False),
                         (0o644, False), (0o660, False), (0o666, False)):
            with self.subTest(mode=oct(mode)):
                self.check(self.config([], secret_mode=mode), ok, "chmod 600")

    def test_plain_http_only_to_loopback(self):
        for key, url, ok in (("url", "http://contoso.crm.dynamics.com", False),
                             ("url", "HTTP://CONTOSO.CRM.DYNAMICS.COM/", False),
                             ("url", "http://127.0.0.1.nip.io", False),
                             ("url", "http://10.0.0.1:8080/prod", False),
                             ("url", "http://[::ffff:7f00:1]/prod", False),
                             ("authority", "http://login.microsoftonline.com", False),
                             ("token_url", "http://evil.example/t/oauth2/v2.0/token", False),
                             ("url", "http://127.0.0.2:8080/prod", True),
                             ("url", "http://localhost:8080/prod", True),
                             ("url", "http://[::1]:8080/prod", True),
                             ("url", "https://contoso.crm.dynamics.com", True)):
            with self.subTest(key=key, url=url):
                self.check(self.config(["%s = %s" % (key, url)]), ok, "http://")

    def test_tls_verification_cannot_be_turned_off(self):
        for section, line in (("env", "insecure = true"), ("env", "ssl_verify = false"),
                              ("env", "tls_verify = no"), ("env", "verify_peer = 0"),
                              ("env", "ssl_verifypeer = 0"), ("env", "ssl_verifyhost = 0"),
                              ("env", "insecure_skip_verify = yes"),
                              ("main", "insecure = true"), ("main", "tls_verify = off")):
            with self.subTest(line=line, section=section):
                path = self.config([line] if section == "env" else [],
                                   [line] if section == "main" else [])
                self.check(path, False, "unknown key")


class TestTls(unittest.TestCase):
    @unittest.skipUnless(shutil.which("openssl"), "no openssl for a test certificate")
    def test_untrusted_certificate_gets_no_request(self):
        td = h.Workdir("s3mond-tls-")
        with td as tmp:
            key, cert = os.path.join(tmp, "k.pem"), os.path.join(tmp, "c.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                            "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                            "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            srv = socket.socket()
            srv.bind(("127.0.0.1", 0))
            srv.listen(16)
            port = srv.getsockname()[1]
            seen = {"handshakes": 0, "requests": 0}

            def serve():
                while True:
                    try:
                        conn, _ = srv.accept()
                    except OSError:
                        return
                    try:
                        with ctx.wrap_socket(conn, server_side=True) as tls:
                            seen["handshakes"] += 1
                            tls.settimeout(5)
                            if tls.recv(65536):
                                seen["requests"] += 1
                    except (OSError, ssl.SSLError):
                        conn.close()
            threading.Thread(target=serve, daemon=True).start()
            secret = h.write_secret(os.path.join(tmp, "s.secret"), SECRET)
            conf = os.path.join(tmp, "tls.conf")
            with open(conf, "w") as f:
                f.write("[s3mond]\nstate_directory = %s/state\n[environment prod]\n"
                        "url = https://127.0.0.1:%d/prod\nauthority = https://127.0.0.1:%d\n"
                        "tenant = contoso.onmicrosoft.com\n"
                        "client_id = 11111111-1111-1111-1111-111111111111\n"
                        "client_secret_file = %s\n" % (tmp, port, port, secret))
            p = run([h.S3MOND, "-c", conf, "--once", "-v", "-v"])
            srv.close()
            self.assertEqual(p.returncode, 3, p.stdout + p.stderr)
            self.assertIn(b"certificate", p.stdout + p.stderr)
            self.assertEqual(seen["handshakes"], 0, "a TLS session was established")
            self.assertEqual(seen["requests"], 0, "an HTTP request went to an untrusted server")


class TestForeignNextLink(unittest.TestCase):
    def test_foreign_next_link_refused(self):
        td = h.Workdir("s3mond-nextlink-")
        with td as tmp:
            sim = h.Sim(fixture_with_secret(), tmp)
            other = socket.socket()
            other.bind(("127.0.0.2", sim.port))
            other.listen(16)
            other.settimeout(0.2)
            connections = []

            def accept():
                while True:
                    try:
                        c, _ = other.accept()
                        connections.append(c.recv(4096))
                        c.close()
                    except socket.timeout:
                        continue
                    except OSError:
                        return
            threading.Thread(target=accept, daemon=True).start()
            try:
                conf = h.Config(tmp, sim, interval="1s")
                d = h.Daemon(conf)
                d.wait_for(lambda r: h.findings_count(r) >= 5, 30, "findings")
                sim.fault(target=ENV + "/tracelogs", kind="foreign_nextlink", duration=3)
                d.wait_for(lambda r: [e.get("state") for e in h.error_events(r, ENV)] ==
                           ["failing", "recovered"], 30, "failing then recovered")
                time.sleep(1.5)
                self.assertEqual(d.stop(), 0)
            finally:
                sim.kill()
                other.close()
            self.assertEqual(connections, [], "a request went to the foreign host")
            failing = h.error_events(d.snapshot(), ENV)[0]
            self.assertIn("refusing an @odata.nextLink to another origin", failing["message"])
            self.assertIn("127.0.0.2", failing["message"])
            counts, problems = h.compare_findings(d.snapshot(),
                                                  {ENV: h.expected_findings(sim.scenario, ENV)})
            self.assertEqual(problems, [])


class TestFileModes(unittest.TestCase):
    def test_modes_under_any_umask(self):
        for umask in (0o077, 0o000):
            with self.subTest(umask=oct(umask)):
                td = h.Workdir("s3mond-modes-")
                with td as tmp:
                    sim = h.Sim(fixture_with_secret(), tmp)
                    try:
                        state = os.path.join(tmp, "state")       # created by s3mond
                        metrics = os.path.join(tmp, "s3mond.prom")
                        conf = h.Config(tmp, sim, interval="1s", metrics_file=metrics)
                        old = os.umask(umask)
                        try:
                            d = h.Daemon(conf, verbose=0)
                        finally:
                            os.umask(old)
                        d.wait_for(lambda r: h.findings_count(r) >= 5, 30, "findings")
                        time.sleep(1.5)
                        self.assertEqual(d.stop(), 0)
                    finally:
                        sim.kill()
                    modes = {n: os.stat(os.path.join(state, n)).st_mode & 0o7777
                             for n in os.listdir(state)}
                    self.assertEqual(os.stat(state).st_mode & 0o7777, 0o700)
                    self.assertEqual(modes, {"prod.state": 0o600, "prod.state.log": 0o600})
                    self.assertEqual(os.stat(metrics).st_mode & 0o7777, 0o644)


if __name__ == "__main__":
    unittest.main(verbosity=2)
