#!/usr/bin/env python3
"""`s3mond --once` as a service check of a real Nagios Core (Debian's
nagios4-core), DESIGN.md §4: a private nagios.cfg in a temp directory (no web
UI, no notifications, the check result reaper every second), a host whose
check always succeeds and a service running `s3mond --once -c CFG` against
dvsim with realistic.json. The test forces the service check through the
external command file (SCHEDULE_FORCED_SVC_CHECK) and reads what Nagios
recorded in status.dat: current_state 2 (CRITICAL), plugin_output (the
summary line), performance_data and long_plugin_output (one line per
finding).

Skips (77) when nagios4 is not installed. Everything lives in a temp
directory; Nagios runs in the foreground as a child and is stopped at the end."""

import grp
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import s3test as h  # noqa: E402

NAGIOS = shutil.which("nagios4") or ("/usr/sbin/nagios4" if os.access("/usr/sbin/nagios4", os.X_OK) else None)
REALISTIC = h.fixture("realistic")

NAGIOS_CFG = """\
# A private Nagios for one test: everything under {dir}
log_file={dir}/nagios.log
cfg_file={dir}/objects.cfg
object_cache_file={dir}/objects.cache
precached_object_file={dir}/objects.precache
status_file={dir}/status.dat
status_update_interval=1
state_retention_file={dir}/retention.dat
retain_state_information=0
use_retained_program_state=0
lock_file={dir}/nagios.lock
temp_file={dir}/nagios.tmp
temp_path={dir}
check_result_path={dir}/checkresults
check_result_reaper_frequency=1
max_check_result_reaper_time=5
illegal_macro_output_chars=`~$&|'"<>
check_external_commands=1
command_file={dir}/nagios.cmd
query_socket={dir}/nagios.qh
nagios_user={user}
nagios_group={group}
use_syslog=0
log_rotation_method=n
enable_notifications=0
enable_event_handlers=0
enable_flap_detection=0
execute_service_checks=1
execute_host_checks=1
accept_passive_service_checks=0
process_performance_data=0
interval_length=1
max_service_check_spread=600
max_host_check_spread=600
service_check_timeout=120
host_check_timeout=30
check_for_orphaned_services=0
check_for_updates=0
bare_update_check=1
"""

OBJECTS_CFG = """\
define timeperiod {{
    timeperiod_name  always
    alias            always
    sunday           00:00-24:00
    monday           00:00-24:00
    tuesday          00:00-24:00
    wednesday        00:00-24:00
    thursday         00:00-24:00
    friday           00:00-24:00
    saturday         00:00-24:00
}}
define contact {{
    contact_name                  nobody
    host_notifications_enabled    0
    service_notifications_enabled 0
    host_notification_period      always
    service_notification_period   always
    host_notification_options     n
    service_notification_options  n
    host_notification_commands    always-ok
    service_notification_commands always-ok
}}
define command {{
    command_name  always-ok
    command_line  /bin/true
}}
define command {{
    command_name  check-s3mond
    command_line  {s3mond} --once -c {config}
}}
define host {{
    host_name              dataverse
    address                127.0.0.1
    check_command          always-ok
    max_check_attempts     1
    check_interval         600
    check_period           always
    contacts               nobody
    notification_interval  0
    notification_period    always
}}
define service {{
    host_name              dataverse
    service_description    s3mond
    check_command          check-s3mond
    max_check_attempts     1
    check_interval         600
    retry_interval         600
    check_period           always
    contacts               nobody
    notification_interval  0
    notification_period    always
}}
"""


def parse_status(text):
    """status.dat: blocks `name {\\n\\tkey=value\\n\\t}`; returns [(name, {key: value})]."""
    blocks, cur, name = [], None, None
    for line in text.splitlines():
        s = line.strip()
        if s.endswith("{"):
            name, cur = s[:-1].strip(), {}
        elif s == "}" and cur is not None:
            blocks.append((name, cur))
            cur = None
        elif cur is not None and "=" in s:
            k, v = s.split("=", 1)
            cur[k] = v
    return blocks


class Nagios(unittest.TestCase):
    def setUp(self):
        if not NAGIOS:
            h.skip("nagios4 is not installed (Debian package nagios4-core)")
        self.wd = h.Workdir(prefix="s3mond-nagios-")
        self.addCleanup(self.wd.cleanup)
        self.sim = h.Sim(REALISTIC, self.wd)
        self.addCleanup(self.sim.stop)
        self.cfg = h.Config(self.wd, self.sim)

    def start_nagios(self):
        d = self.wd.join("nagios")
        os.makedirs(os.path.join(d, "checkresults"))
        # Nagios drops to nagios_user and runs checks as that user. As root,
        # run it as Debian's "nagios" like a real installation, and hand it
        # the temp directory (config, 0600 secret, Nagios' own files);
        # otherwise as ourselves.
        try:
            pw = pwd.getpwnam("nagios") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
        except KeyError:
            pw = pwd.getpwuid(os.geteuid())
        user, group = pw.pw_name, grp.getgrgid(pw.pw_gid).gr_name
        with open(os.path.join(d, "nagios.cfg"), "w") as f:
            f.write(NAGIOS_CFG.format(dir=d, user=user, group=group))
        with open(os.path.join(d, "objects.cfg"), "w") as f:
            f.write(OBJECTS_CFG.format(s3mond=h.S3MOND, config=self.cfg.path))
        if pw.pw_uid != os.geteuid():
            for root, dirs, files in os.walk(self.wd.path):
                for n in [root] + [os.path.join(root, x) for x in dirs + files]:
                    os.lchown(n, pw.pw_uid, pw.pw_gid)
        self.user = user
        verify = subprocess.run([NAGIOS, "-v", os.path.join(d, "nagios.cfg")], capture_output=True,
                                text=True, timeout=60)
        self.assertEqual(verify.returncode, 0, verify.stdout + verify.stderr)
        self.nagios_dir = d
        self.nagios_out = open(os.path.join(d, "nagios.stdout"), "wb")
        self.addCleanup(self.nagios_out.close)
        self.nagios = subprocess.Popen([NAGIOS, os.path.join(d, "nagios.cfg")], stdin=subprocess.DEVNULL,
                                       stdout=self.nagios_out, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self.addCleanup(self.stop_nagios)

    def stop_nagios(self):
        if self.nagios.poll() is None:
            os.killpg(self.nagios.pid, signal.SIGTERM)
            try:
                self.nagios.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.nagios.pid, signal.SIGKILL)
                self.nagios.wait()
        # the workers belong to the same process group
        try:
            os.killpg(self.nagios.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def nagios_log(self):
        try:
            with open(os.path.join(self.nagios_dir, "nagios.log"), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def service_status(self):
        try:
            with open(os.path.join(self.nagios_dir, "status.dat"), errors="replace") as f:
                text = f.read()
        except FileNotFoundError:
            return None
        for name, b in parse_status(text):
            if name == "servicestatus" and b.get("service_description") == "s3mond":
                return b
        return None

    def test_service_check_under_nagios(self):
        self.start_nagios()
        cmd = os.path.join(self.nagios_dir, "nagios.cmd")
        h.wait_until(lambda: self.service_status() is not None and os.path.exists(cmd),
                     what=f"Nagios up (status.dat, {cmd}); log: {self.nagios_log()}")
        self.assertEqual(self.service_status()["has_been_checked"], "0", "no check before we ask")
        asked = int(time.time())
        with open(cmd, "w") as f:
            f.write(f"[{asked}] SCHEDULE_FORCED_SVC_CHECK;dataverse;s3mond;{asked}\n")
        st = h.wait_until(lambda: (lambda b: b if b and b.get("has_been_checked") == "1" else None)(
                          self.service_status()), timeout=120,
                          what=f"the forced check in status.dat; log: {self.nagios_log()}")

        expected = h.once(self.cfg)     # what the plugin says by itself, for comparison
        lines = expected.stdout.splitlines()
        summary, perf = lines[0].split(" | ", 1)
        print(f"\n  Nagios (checks as {self.user}): state {st['current_state']}, output {st['plugin_output']!r}, "
              f"perfdata {st['performance_data']!r}, took {st.get('check_execution_time')}s",
              file=sys.stderr)
        self.assertEqual(st["current_state"], "2", st)
        self.assertEqual(st["plugin_output"], summary)
        self.assertTrue(st["plugin_output"].startswith("S3MOND CRITICAL - 5 findings (1 confirmed) in 1 environment"))
        self.assertEqual(st["performance_data"], perf)
        self.assertRegex(st["performance_data"], r"^findings=5;;;0 confirmed=1;;;0 ")
        self.assertGreaterEqual(int(st["last_check"]), asked)
        long_output = st["long_plugin_output"].split("\\n")
        self.assertEqual(len(long_output), 5, st["long_plugin_output"])
        self.assertEqual(sorted(long_output), sorted(lines[1:]))
        for line in long_output:
            self.assertRegex(line, r'^prod: mailbox "[^"]+"')
        self.assertIn("SERVICE ALERT: dataverse;s3mond;CRITICAL", self.nagios_log())


if __name__ == "__main__":
    unittest.main(verbosity=2)
