#!/usr/bin/env python3
"""The test library's own checks must be able to fail: check_exactly_once()
on hand-made runs, the configuration a simulator's addresses make, the
flags Sim hands dvsim (a stub that records them), and s3mond through such a
configuration over HTTPS with a host per environment (skipped with a dvsim
that has no --tls/--env-hosts yet)."""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import s3test as h  # noqa: E402


def f(i):
    return {"type": "finding", "id": f"prod/tracelog/{i}"}


class ExactlyOnce(unittest.TestCase):
    def log(self, runs):
        """runs: [([records], killed)] -> an OutputLog over a real file."""
        wd = h.Workdir()
        self.addCleanup(wd.cleanup)
        log = h.OutputLog(wd.join("out.json"))
        for records, killed in runs:
            with open(log.path, "a") as out:
                for r in records:
                    out.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
            log.end_run(killed)
        return log

    def keys(self, *ids):
        return {("finding", f"prod/tracelog/{i}") for i in ids}

    def test_clean(self):
        s = h.check_exactly_once(self.log([([f(1), f(2)], True), ([f(3)], False)]), self.keys(1, 2, 3))
        self.assertEqual((s["crashes"], s["duplicates"], s["emitted"]), (1, 0, 3))

    def test_in_flight_duplicate_is_allowed(self):
        s = h.check_exactly_once(self.log([([f(1), f(2)], True), ([f(2), f(3)], False)]),
                                 self.keys(1, 2, 3))
        self.assertEqual(s["duplicate_keys"], [("finding", "prod/tracelog/2")])

    def test_lost(self):
        with self.assertRaisesRegex(AssertionError, "lost"):
            h.check_exactly_once(self.log([([f(1)], True), ([], False)]), self.keys(1, 2))

    def test_extra(self):
        with self.assertRaisesRegex(AssertionError, "not expected"):
            h.check_exactly_once(self.log([([f(1), f(9)], False)]), self.keys(1))

    def test_duplicate_not_in_flight(self):
        with self.assertRaisesRegex(AssertionError, "not the one in flight"):
            h.check_exactly_once(self.log([([f(1), f(2)], True), ([f(1)], False)]), self.keys(1, 2))

    def test_duplicate_after_clean_stop(self):
        with self.assertRaisesRegex(AssertionError, "clean stop"):
            h.check_exactly_once(self.log([([f(1)], False), ([f(1)], False)]), self.keys(1))

    def test_same_in_flight_twice_counts_once(self):
        with self.assertRaisesRegex(AssertionError, "not the one in flight"):
            h.check_exactly_once(self.log([([f(1)], True), ([f(2)], True), ([f(1), f(1)], False)]),
                                 self.keys(1, 2))

    def test_torn_line(self):
        with self.assertRaisesRegex(AssertionError, "torn"):
            h.check_exactly_once(self.log([([f(1), '{"type": "find'], True)]), self.keys(1))


class FakeSim(h.Sim):
    """A simulator that never runs: its addresses from an info document, as
    dvsim --info-file writes it with --tls and --env-hosts."""

    def __init__(self, scenario, info):
        super().__init__(scenario, "/nonexistent", start=False)
        self.port, self.info = 8443, info


class ConfigFromSim(unittest.TestCase):
    def setUp(self):
        self.wd = h.Workdir()
        self.addCleanup(self.wd.cleanup)
        self.scenario = h.with_environments(h.fixture("realistic"), ["prod", "test"])

    def sections(self, cfg):
        out, cur = {}, None
        for line in cfg.text().splitlines():
            if line.startswith("["):
                cur = out.setdefault(line.strip("[]"), {})
            elif " = " in line:
                k, v = line.split(" = ", 1)
                cur[k] = v
        return out

    def test_plain_http_path_per_environment(self):
        sim = FakeSim(self.scenario, None)
        s = self.sections(h.Config(self.wd, sim, interval="1s"))
        self.assertEqual(s["s3mond"], {"interval": "1s", "state_directory": self.wd.join("state")})
        self.assertEqual(s["environment prod"]["url"], "http://127.0.0.1:8443/prod")
        self.assertEqual(s["environment prod"]["authority"], "http://127.0.0.1:8443")
        self.assertNotIn("ca_file", s["environment prod"])
        with open(s["environment test"]["client_secret_file"]) as f:
            self.assertEqual(f.read(), self.scenario["environments"][1]["client_secret"])
        self.assertEqual(os.stat(self.wd.join("test.secret")).st_mode & 0o777, 0o600)

    def test_addresses_come_from_the_simulator(self):
        info = {"port": 8443, "authority": "https://127.0.0.1:8443", "ca_file": "/x/ca.pem",
                "admin": "https://127.0.0.1:8443/_admin",
                "environments": {"prod": {"url": "https://127.0.0.2:8443"},
                                 "test": {"url": "https://127.0.0.3:8443/"}}}
        sim = FakeSim(self.scenario, info)
        cfg = h.Config(self.wd, sim, envs={"prod": {}, "test": {"authority": None}}, secret={"prod": "x"})
        s = self.sections(cfg)
        self.assertEqual(s["environment prod"]["url"], "https://127.0.0.2:8443")
        self.assertEqual(s["environment test"]["url"], "https://127.0.0.3:8443")
        self.assertEqual(s["environment prod"]["authority"], "https://127.0.0.1:8443")
        self.assertNotIn("authority", s["environment test"])
        self.assertEqual(s["environment prod"]["ca_file"], "/x/ca.pem")
        self.assertEqual(sim.token_url("t"), "https://127.0.0.1:8443/t/oauth2/v2.0/token")
        self.assertEqual(sim.scope("test"), "https://127.0.0.3:8443/.default")
        with open(cfg.secret_file("prod")) as f:
            self.assertEqual(f.read(), "x")


# dvsim as far as Sim can tell: it records its arguments, then writes the
# port file and (when asked) the info file, as --tls --env-hosts would.
STUB = r"""
import json, os, sys, time
args = sys.argv[1:]
value = lambda flag: args[args.index(flag) + 1] if flag in args else None
with open(value("--port-file") + ".argv", "w") as f:
    json.dump(args, f)
info = value("--info-file")
if info:
    with open(info + ".tmp", "w") as f:
        json.dump({"port": 4321, "authority": "https://127.0.0.1:4321", "ca_file": value("--tls") + "/ca.pem",
                   "admin": "https://127.0.0.1:4321/_admin",
                   "environments": {"prod": {"url": "https://127.0.0.2:4321", "tenant": "t",
                                             "client_id": "c", "address": "127.0.0.2"}}}, f)
with open(value("--port-file") + ".tmp", "w") as f:
    f.write("4321\n")
os.replace(value("--port-file") + ".tmp", value("--port-file"))
if info:
    os.replace(info + ".tmp", info)
time.sleep(60)
"""


class SimOptions(unittest.TestCase):
    """What Sim hands dvsim: today's flags alone, the new ones only when asked."""

    def start(self, **options):
        wd = h.Workdir()
        self.addCleanup(wd.cleanup)
        stub = wd.join("stub.py")
        with open(stub, "w") as f:
            f.write(STUB)
        sim_class = type("StubSim", (h.Sim,), {"program": stub})
        sim = sim_class(h.fixture("realistic"), wd, **options)
        self.addCleanup(sim.kill)
        with open(wd.join("dvsim.port.argv")) as f:
            return sim, json.load(f)

    def test_plain_by_default(self):
        sim, argv = self.start()
        self.assertEqual(argv[:5], ["--port", "0", "--port-file", argv[3], "--quiet"])
        self.assertEqual(argv[5:], ["--scenario", argv[6]])
        self.assertEqual((sim.port, sim.env_url("prod"), sim.ca_file), (4321, "http://127.0.0.1:4321/prod", None))

    def test_new_options_passed_when_asked(self):
        sim, argv = self.start(tls="/x/tls", env_hosts=True, latency="150ms", latency_jitter="20ms",
                               idle_close=5)
        self.assertEqual(argv[7:], ["--tls", "/x/tls", "--env-hosts", "--latency", "150ms",
                                    "--latency-jitter", "20ms", "--idle-close", "5",
                                    "--info-file", argv[-1]])
        self.assertEqual(sim.env_url("prod"), "https://127.0.0.2:4321")
        self.assertEqual((sim.authority, sim.ca_file), ("https://127.0.0.1:4321", "/x/tls/ca.pem"))
        self.assertEqual(sim.admin_url, "https://127.0.0.1:4321/_admin")


def dvsim_has(flag):
    with open(h.DVSIM, encoding="utf-8") as f:
        return flag in f.read()


@unittest.skipUnless(dvsim_has("--info-file") and os.access(h.S3MOND, os.X_OK),
                     "a dvsim with --tls and --env-hosts, and a built s3mond")
class ProductionShape(unittest.TestCase):
    """s3mond --once through a Config of a simulator serving HTTPS, each
    environment on its own address: every finding of each environment."""

    def test_https_and_a_host_per_environment(self):
        realistic = h.fixture("realistic")
        want = {(env, e["alert"]) for env in ("prod", "test") for e in realistic["expected"]}
        for cls in (h.Sim, h.InProcSim):
            with self.subTest(sim=cls.__name__), h.Workdir() as wd:
                sim = cls(h.with_environments(realistic, ["prod", "test"]), wd, tls=wd.join("tls"),
                          env_hosts=True, latency="5ms")
                try:
                    cfg = h.Config(wd, sim)
                    r = h.once(cfg, "--json")
                    stats = sim.stats()
                finally:
                    sim.kill()
                self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
                got = {(x["environment"], x["alert"]["id"]) for x in h.json_lines(r.stdout)}
                self.assertEqual(got, want)
                self.assertIn("ca_file = " + sim.ca_file, cfg.text())
                urls = {sim.env_url(e) for e in ("prod", "test")}
                self.assertEqual(len(urls), 2)
                self.assertTrue(all(u.startswith("https://127.0.0.") for u in urls), urls)
                self.assertGreater(stats["test"]["tls_handshakes"], 0)


class Notify(unittest.TestCase):
    def test_fields(self):
        self.assertEqual(h.fields("RELOADING=1\nMONOTONIC_USEC=5"), {"RELOADING": "1", "MONOTONIC_USEC": "5"})
        with self.assertRaises(ValueError):
            h.fields("READY=1\nnonsense")


if __name__ == "__main__":
    unittest.main(verbosity=2)
