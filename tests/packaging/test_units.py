#!/usr/bin/env python3
"""Checks the shipped systemd units: hardening exposure and unit syntax.

Run by meson (suite 'packaging') with the build directory as argument.
systemd-analyze works offline, without a running systemd (TESTING.md).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

BUILD = os.path.abspath(sys.argv.pop(1)) if len(sys.argv) > 1 else os.path.abspath("build")
UNITS = ["s3mond.service", "s3mond@.service"]
MAX_EXPOSURE = 1.5


def analyze(*args):
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True)


def unit_copy(tmp, unit, instance=None):
    """Copy a built unit into tmp, pointing ExecStart at the built binary."""
    with open(os.path.join(BUILD, "systemd", unit)) as f:
        text = f.read()
    text = re.sub(r"^ExecStart=\S+", "ExecStart=" + os.path.join(BUILD, "s3mond"),
                  text, flags=re.M)
    name = unit.replace("@.", "@%s." % instance) if instance else unit
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    if instance:  # the template must sit beside the instance for verify
        shutil.copy(path, os.path.join(tmp, unit))
    return path


@unittest.skipUnless(shutil.which("systemd-analyze"), "systemd-analyze not installed")
class Units(unittest.TestCase):
    def exposure(self, path):
        r = analyze("security", "--offline=yes", path)
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout + r.stderr)
        self.assertIsNotNone(m, r.stdout + r.stderr)
        return float(m.group(1))

    def test_exposure(self):
        with tempfile.TemporaryDirectory() as tmp:
            for unit, inst in (("s3mond.service", None), ("s3mond@.service", "prod")):
                with self.subTest(unit=unit):
                    level = self.exposure(unit_copy(tmp, unit, inst))
                    print("%s exposure %.1f (limit %.1f)" % (unit, level, MAX_EXPOSURE))
                    self.assertLessEqual(level, MAX_EXPOSURE)

    def test_verify(self):
        with tempfile.TemporaryDirectory() as tmp:
            for unit, inst in (("s3mond.service", None), ("s3mond@.service", "prod")):
                with self.subTest(unit=unit):
                    r = analyze("verify", "--man=no", unit_copy(tmp, unit, inst))
                    self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                    self.assertEqual(r.stderr.strip(), "", r.stderr)

    def test_required_settings(self):
        """The settings issue 7 names must stay, whatever the score says."""
        required = ["Type=notify", "WatchdogSec=", "Restart=on-failure", "DynamicUser=yes",
                    "StateDirectory=s3mond", "ConfigurationDirectory=s3mond",
                    "ExecReload=kill -HUP $MAINPID", "CapabilityBoundingSet=\n",
                    "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                    "PrivateDevices=yes", "ProtectKernelTunables=yes",
                    "ProtectKernelModules=yes", "ProtectKernelLogs=yes",
                    "ProtectControlGroups=yes",
                    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
                    "RestrictNamespaces=yes", "LockPersonality=yes",
                    "MemoryDenyWriteExecute=yes", "SystemCallFilter=@system-service",
                    "SystemCallArchitectures=native", "UMask=0077", "PrivateMounts=yes",
                    "RestartPreventExitStatus=78", "StateDirectoryMode=0700"]
        for unit in UNITS:
            with open(os.path.join(BUILD, "systemd", unit)) as f:
                text = f.read()
            for setting in required:
                with self.subTest(unit=unit, setting=setting):
                    self.assertIn(setting, text)
        with open(os.path.join(BUILD, "systemd", "s3mond@.service")) as f:
            self.assertRegex(f.read(), r"ExecStart=\S+/s3mond -e %i\n")

    def test_watchdog_and_state(self):
        """Both units share the state directory (state files are per environment
        and locked) and give the loop's pings room: WatchdogSec at least 2 min."""
        for unit in UNITS:
            with open(os.path.join(BUILD, "systemd", unit)) as f:
                text = f.read()
            with self.subTest(unit=unit):
                self.assertRegex(text, r"\nStateDirectory=s3mond\n")
                m = re.search(r"\nWatchdogSec=(\d+)(min|s)\n", text)
                self.assertIsNotNone(m)
                self.assertGreaterEqual(int(m.group(1)) * (60 if m.group(2) == "min" else 1), 120)


if __name__ == "__main__":
    unittest.main(verbosity=2)
