#!/usr/bin/env python3
"""What an instance of s3mond@.service sees, without systemd: the paths
systemd hands over ($STATE_DIRECTORY, $CREDENTIALS_DIRECTORY) and `-e NAME`.

usage: test_instance.py S3MOND

- s3mond@prod reads the shared configuration (two environments) with only
  prod's credential in $CREDENTIALS_DIRECTORY: it starts, the secret comes
  from there, the state directory is systemd's; the other environment's
  secret is not needed.
- s3mond.service (no -e) needs every secret and says which one is missing.
- A name with no section is a configuration error (exit 78).
"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

S3MOND = os.path.abspath(sys.argv.pop(1))
SECRET = "instance-s3cr3t"

CONFIG = """\
[environment prod]
url = https://contoso.crm.dynamics.com
tenant = contoso.onmicrosoft.com
client_id = 11111111-1111-1111-1111-111111111111
client_secret_file = prod.secret

[environment test]
url = https://contoso-test.crm4.dynamics.com
tenant = contoso.onmicrosoft.com
client_id = 22222222-2222-2222-2222-222222222222
client_secret_file = test.secret
"""


class Instance(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="s3mond-instance.")
        self.addCleanup(shutil.rmtree, self.dir)
        os.mkdir(os.path.join(self.dir, "etc"))
        self.conf = os.path.join(self.dir, "etc", "s3mond.conf")
        with open(self.conf, "w") as f:
            f.write(CONFIG)
        # Like systemd's LoadCredential=prod.secret:...: a directory of the
        # instance's credentials (the ACL for the service user shows as group bits).
        self.creds = os.path.join(self.dir, "credentials")
        os.mkdir(self.creds, 0o500)
        with open(os.path.join(self.creds, "prod.secret"), "w") as f:
            f.write(SECRET + "\n")
        os.chmod(os.path.join(self.creds, "prod.secret"), 0o440)
        os.chmod(self.creds, 0o500)
        self.addCleanup(os.chmod, self.creds, 0o700)

    def run_s3mond(self, *args):
        env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "INVOCATION_ID")}
        env.update(STATE_DIRECTORY="/var/lib/s3mond", CREDENTIALS_DIRECTORY=self.creds)
        r = subprocess.run([S3MOND, "--check-config", "-c", self.conf, *args], env=env,
                           capture_output=True, text=True, timeout=30)
        self.assertNotIn(SECRET, r.stdout + r.stderr)
        return r

    def test_instance_needs_only_its_credential(self):
        r = self.run_s3mond("-e", "prod")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("\nstate_directory = /var/lib/s3mond\n", r.stdout)
        self.assertIn("\n[environment prod]\n", r.stdout)
        self.assertNotIn("[environment test]", r.stdout)
        self.assertIn("\nclient_secret_file = %s/prod.secret\n" % os.path.realpath(self.creds), r.stdout)

    def test_all_environments_need_every_secret(self):
        r = self.run_s3mond()
        self.assertEqual(r.returncode, 78, r.stdout)
        self.assertIn("client_secret_file: cannot open 'test.secret': no such file in $CREDENTIALS_DIRECTORY",
                      r.stderr)

    def test_unknown_instance(self):
        r = self.run_s3mond("-e", "uat")
        self.assertEqual(r.returncode, 78, r.stdout)
        self.assertIn("has no [environment uat] (configured: prod, test)", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
