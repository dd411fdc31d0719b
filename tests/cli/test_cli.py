#!/usr/bin/env python3
"""Runs the real s3mond binary: --check-config on the shipped example and on
every bad configuration, exit codes, --help width, --version.

usage: test_cli.py S3MOND SOURCE_ROOT VERSION
"""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

S3MOND, SOURCE_ROOT, VERSION = sys.argv[1:4]
CONFIGS = os.path.join(SOURCE_ROOT, "tests", "unit", "configs")
SECRET = "s3cr3t-Value~42"


def run(*args, env=None):
    base = {k: v for k, v in os.environ.items()
            if k not in ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY", "JOURNAL_STREAM", "INVOCATION_ID")}
    base.update(env or {})
    return subprocess.run([S3MOND, *args], env=base, capture_output=True, text=True, timeout=30,
                          check=False)


def write(path, content, mode):
    with open(path, "w", encoding="utf-8") as f:
        f.write(content)
    os.chmod(path, mode)


class Scratch(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="test-cli.")
        # The files tests/unit/configs/README lists (git keeps no modes).
        write(os.path.join(self.dir, "good.secret"), SECRET + "\n", 0o600)
        write(os.path.join(self.dir, "empty.secret"), "", 0o600)
        write(os.path.join(self.dir, "open.secret"), SECRET + "\n", 0o644)
        write(os.path.join(self.dir, "group.secret"), SECRET + "\n", 0o640)
        write(os.path.join(self.dir, "multiline.secret"), SECRET + "\nsecond line\n", 0o600)
        write(os.path.join(self.dir, "ca.pem"), "only opened\n", 0o644)

    def tearDown(self):
        shutil.rmtree(self.dir)

    def example(self):
        conf = os.path.join(self.dir, "s3mond.conf")
        shutil.copy(os.path.join(SOURCE_ROOT, "conf", "s3mond.conf"), conf)
        write(os.path.join(self.dir, "prod.secret"), SECRET + "\n", 0o600)
        return conf

    def assertNoSecret(self, r):
        self.assertNotIn(SECRET, r.stdout + r.stderr)
        self.assertNotIn("s3cr3t", r.stdout + r.stderr)


class CheckConfig(Scratch):
    def test_example_is_accepted_and_masked(self):
        conf = self.example()
        r = run("--check-config", "-c", conf)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNoSecret(r)
        self.assertIn("[environment prod]\n", r.stdout)
        self.assertIn("# client secret: loaded from %s/prod.secret\n" % self.dir, r.stdout)
        self.assertIn("\ninterval = 1m\n", r.stdout)

    def test_dump_loads_again(self):
        conf = self.example()
        first = run("--check-config", "-c", conf)
        dumped = os.path.join(self.dir, "dumped.conf")
        write(dumped, first.stdout, 0o644)
        second = run("--check-config", "-c", dumped)
        self.assertEqual(second.returncode, 0, second.stderr)
        self.assertEqual(first.stdout.split("\n", 1)[1], second.stdout.split("\n", 1)[1])

    def test_credentials_directory_first(self):
        conf = self.example()
        creds = os.path.join(self.dir, "credentials")
        os.mkdir(creds, 0o700)
        write(os.path.join(creds, "prod.secret"), "another-secret\n", 0o440)
        r = run("--check-config", "-c", conf, env={"CREDENTIALS_DIRECTORY": creds})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("client_secret_file = %s/prod.secret\n" % creds, r.stdout)
        self.assertNotIn("another-secret", r.stdout + r.stderr)

    def test_state_directory_from_systemd(self):
        r = run("--check-config", "-c", self.example(), env={"STATE_DIRECTORY": "/var/lib/s3mond/x"})
        self.assertIn("\nstate_directory = /var/lib/s3mond/x\n", r.stdout)

    def test_output_and_environment_options(self):
        conf = self.example()
        r = run("--check-config", "-c", conf, "-e", "prod", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("\noutput = json\n", r.stdout)
        r = run("--check-config", "-c", conf, "-o", "syslog")
        self.assertIn("\noutput = syslog\n", r.stdout)

    def test_unknown_environment(self):
        r = run("--check-config", "-c", self.example(), "-e", "staging")
        self.assertEqual(r.returncode, 78)
        self.assertIn("has no [environment staging] (configured: prod)", r.stderr)

    def test_missing_file(self):
        r = run("--check-config", "-c", os.path.join(self.dir, "nonexistent.conf"))
        self.assertEqual(r.returncode, 78)
        self.assertIn("nonexistent.conf: cannot open: No such file or directory", r.stderr)

    def test_secret_readable_by_others(self):
        conf = self.example()
        os.chmod(os.path.join(self.dir, "prod.secret"), 0o644)
        r = run("--check-config", "-c", conf)
        self.assertEqual(r.returncode, 78)
        with open(conf) as f:
            line = next(i for i, l in enumerate(f, 1) if l.startswith("client_secret_file"))
        self.assertIn("%s:%d: client_secret_file: " % (conf, line), r.stderr)
        self.assertIn("chmod 600 %s/prod.secret" % self.dir, r.stderr)
        self.assertNoSecret(r)

    def test_every_bad_config(self):
        files = sorted(glob.glob(os.path.join(CONFIGS, "bad-*.conf")))
        self.assertGreaterEqual(len(files), 15)
        for source in files:
            with self.subTest(config=os.path.basename(source)):
                with open(source, encoding="utf-8") as f:
                    m = re.match(r"# expect: (\d+) (.+)\n", f.readline())
                self.assertIsNotNone(m, "no '# expect: LINE TEXT' line")
                conf = os.path.join(self.dir, os.path.basename(source))
                shutil.copy(source, conf)
                r = run("--check-config", "-c", conf)
                self.assertEqual(r.returncode, 78, r.stderr)
                self.assertEqual(r.stdout, "")
                prefix = "%s:%s: " % (conf, m.group(1))
                self.assertIn(prefix, r.stderr)
                self.assertIn(m.group(2), r.stderr.split(prefix, 1)[1])
                self.assertNoSecret(r)
        print("%d bad configurations refused with exit 78 and FILE:LINE:" % len(files), file=sys.stderr)

    def test_bad_config_with_once_is_unknown(self):
        conf = os.path.join(self.dir, "bad.conf")
        shutil.copy(os.path.join(CONFIGS, "bad-interval-zero.conf"), conf)
        r = run("--once", "-c", conf)
        self.assertEqual(r.returncode, 3)
        self.assertTrue(r.stdout.startswith("S3MOND UNKNOWN - configuration: %s:4: interval: " % conf),
                        r.stdout)


class CommandLine(unittest.TestCase):
    def test_help_fits_80_columns(self):
        r = run("--help")
        self.assertEqual(r.returncode, 0)
        self.assertEqual(r.stderr, "")
        lines = r.stdout.splitlines()
        self.assertGreater(len(lines), 10)
        for line in lines:
            self.assertLessEqual(len(line), 80, line)
        for option in ("--config", "--environment", "--once", "--since", "--json", "--output",
                       "--check-config", "--probe", "--verbose", "--help", "--version"):
            self.assertIn(option, r.stdout)
        self.assertEqual(run("-h").stdout, r.stdout)

    def test_version(self):
        for option in ("-V", "--version"):
            r = run(option)
            self.assertEqual(r.returncode, 0)
            self.assertEqual(r.stdout, "s3mond %s\n" % VERSION)

    def test_usage_errors_exit_2(self):
        for args, text in ((["--bogus"], "unknown option '--bogus'"),
                           (["-x"], "unknown option '-x'"),
                           (["-c"], "option '-c' needs an argument"),
                           (["--since", "1h"], "--since works only with --once"),
                           (["-o", "file"], "-o: unknown output 'file'"),
                           (["--json", "-o", "syslog"], "--json conflicts with -o syslog"),
                           (["--probe", "--check-config"], "cannot be combined"),
                           (["-e", "a/b"], "-e: 'a/b' is not an environment name"),
                           (["extra"], "unexpected argument 'extra'")):
            with self.subTest(args=args):
                r = run(*args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(text, r.stderr)
                self.assertIn("Try 's3mond --help'.", r.stderr)

    def test_usage_errors_with_once_exit_3(self):
        for args in (["--once", "--bogus"], ["--bogus", "--once"], ["--once", "--since", "soon"]):
            with self.subTest(args=args):
                r = run(*args)
                self.assertEqual(r.returncode, 3, r.stderr)
                self.assertTrue(r.stdout.startswith("S3MOND UNKNOWN - command line: "), r.stdout)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
