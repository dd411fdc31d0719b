#!/usr/bin/env python3
"""The daemon under s3mond.service's restrictions, against dvsim.

usage: test_sandbox.py S3MOND UNIT SOURCE_ROOT [--no-seccomp]

Runs as root in a private mount namespace (nothing on the host changes: a
tmpfs on a fresh directory of /tmp, removed at the end, holds the scratch
tree; /tmp itself stays visible, since the source or build tree may be there). sandbox.py applies what can be
applied without systemd as PID 1 (its docstring lists what and what not):
a DynamicUser-like uid with no passwd entry, a supplementary group that may
write the metrics directory (the README's recipe), umask 077, every mount
read-only except the state and metrics directories, a private /dev and
/proc, no capabilities, no new privileges, and the unit's seccomp filters.
The daemon gets what systemd would give s3mond@prod: $STATE_DIRECTORY (0700,
its own), $CREDENTIALS_DIRECTORY with prod's secret only (the configuration
has a second environment), NOTIFY_SOCKET and WATCHDOG_USEC, `-e prod`.

Checks:
- the sandbox itself: a probe under the same restrictions finds writes
  outside the state and metrics directories refused (EROFS), AF_NETLINK
  refused while getaddrinfo(AI_ADDRCONFIG) still works, @resources and W+X
  mappings refused, /home and other users' processes invisible;
- the daemon, from outside while it runs: its uid, groups, NoNewPrivs, no
  capabilities, seccomp mode 2, and every mount it sees read-only but the
  two directories;
- it reports tests/fixtures/realistic.json's expected findings exactly
  (alerts, verdicts, culprits in order, evidence, notes), says READY=1 and
  pings the watchdog, stops cleanly on SIGTERM (exit 0, STOPPING=1) with
  nothing on stderr but its two notices;
- it wrote its state (prod.state, prod.state.log: mode 0600, its own) and
  metrics (s3mond.prom: 0644, s3mond_up 0 after the stop, 5 findings) and
  nothing else: the rest of the scratch tree is as it was.

--no-seccomp (the sanitizer build: LeakSanitizer needs ptrace, which the
filter denies) runs the daemon without the seccomp filters; the probe keeps
them. Without python3-seccomp (Debian's /usr/bin/python3 has it) the filters
are left out and the test says so.
"""
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

S3MOND, UNIT, SOURCE = (os.path.abspath(a) for a in sys.argv[1:4])
NO_SECCOMP_FOR_DAEMON = "--no-seccomp" in sys.argv[4:]
HERE = os.path.dirname(os.path.abspath(__file__))
SANDBOX = os.path.join(HERE, "sandbox.py")
SCRATCH = None                  # the scratch tmpfs, made by Sandbox.setUpClass
UID_BASE = 61184                # systemd's DynamicUser range starts here

sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import s3test as h  # noqa: E402
from s3test import ns  # noqa: E402
from s3test.proc import status  # noqa: E402

GUARD = h.GUARD                 # seconds: a hang guard, not a measurement


def free_id(base):
    import grp
    import pwd
    for i in range(base, base + 1000):
        try:
            pwd.getpwuid(i)
            continue
        except KeyError:
            pass
        try:
            grp.getgrgid(i)
            continue
        except KeyError:
            return i
    raise RuntimeError("no free id")


def seccomp_python():
    """An interpreter with python3-seccomp: Debian's, or ours."""
    for py in ("/usr/bin/python3", sys.executable):
        if os.path.exists(py) and subprocess.run([py, "-c", "import seccomp"],
                                                 capture_output=True).returncode == 0:
            return py, True
    return sys.executable, False


def listing(root, skip_dirs=()):
    """path -> (mode, uid, gid, size, mtime_ns) below root; skip_dirs: no contents, no size or time."""
    out = {}
    for d, dirs, files in os.walk(root):
        if d in skip_dirs:
            dirs[:] = []
            continue
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            out[p] = (st.st_mode, st.st_uid, st.st_gid)
            if p not in skip_dirs:      # those change: their contents are checked apart
                out[p] += (st.st_size, st.st_mtime_ns)
    return out


def mounts_of(pid):
    """(mount point, read-only) of each mount the process can reach: mounts
    that others hide (the old /dev under the private one) are left out."""
    out = []
    with open("/proc/%d/mountinfo" % pid) as f:
        for line in f:
            fields = line.split()
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            major, minor = (int(x) for x in fields[2].split(":"))
            try:
                seen = os.stat("/proc/%d/root%s" % (pid, point)).st_dev   # in its namespace
            except OSError:
                continue
            if seen == os.makedev(major, minor):
                out.append((point, "ro" in fields[5].split(",")))
    return out


PROBE = r"""
import json, mmap, os, socket
out = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "umask": os.umask(0)}
def attempt(name, fn):
    try:
        fn()
        out[name] = "ok"
    except OSError as e:
        out[name] = e.errno
def write(path):
    open(path, "w").close()
    os.unlink(path)
for name, path in (("write_state", "%(state)s/probe"), ("write_metrics", "%(metrics)s/probe"),
                   ("write_scratch", "%(scratch)s/probe"), ("write_tmp", "/tmp/probe"),
                   ("write_var_tmp", "/var/tmp/probe"), ("write_dev_shm", "/dev/shm/probe"),
                   ("write_etc", "/etc/probe")):
    attempt(name, lambda p=path: write(p))
attempt("netlink", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW).close())
attempt("inet", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close())
attempt("getaddrinfo", lambda: socket.getaddrinfo("localhost", 443, flags=socket.AI_ADDRCONFIG))
attempt("setpriority", lambda: os.setpriority(os.PRIO_PROCESS, 0, 5))
attempt("wx_mapping", lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC))
attempt("home", lambda: os.listdir("/home"))
out["pid1_visible"] = os.path.exists("/proc/1")
out["dev"] = sorted(os.listdir("/dev"))
with open("/proc/self/status") as f:
    st = dict(l.rstrip("\n").split(":\t", 1) for l in f if ":\t" in l)
out.update({k: st[k] for k in ("NoNewPrivs", "Seccomp", "CapEff", "CapBnd")})
print(json.dumps(out))
"""


class Sandbox(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        global SCRATCH
        # Our own tmpfs, on a fresh directory: nothing written reaches the
        # host's disk. Not over /tmp: a clone or build tree may live there.
        SCRATCH = tempfile.mkdtemp(prefix="s3mond-sandbox-", dir="/tmp")
        ns.mount("tmpfs", SCRATCH, "tmpfs", ns.MS_NOSUID | ns.MS_NODEV, "mode=0755")
        cls.addClassCleanup(os.rmdir, SCRATCH)
        cls.addClassCleanup(ns.umount, SCRATCH)
        cls.uid = free_id(UID_BASE + 50)
        cls.metrics_gid = free_id(cls.uid + 1)
        cls.python, cls.have_seccomp = seccomp_python()
        s = SCRATCH
        cls.state, cls.metrics = s + "/state", s + "/metrics"
        cls.creds, cls.etc = s + "/credentials", s + "/etc"
        for d, mode in ((s + "/dev", 0o755), (cls.etc, 0o755), (cls.state, 0o700),
                        (cls.metrics, 0o775), (cls.creds, 0o700)):
            os.mkdir(d)
            os.chmod(d, mode)
        os.chown(cls.state, cls.uid, cls.uid)               # StateDirectory=, StateDirectoryMode=0700
        os.chown(cls.metrics, 0, cls.metrics_gid)           # root:s3mond-metrics 0775, as README says

    def sandbox(self, argv, seccomp=True, **kw):
        cmd = [self.python, SANDBOX, "--unit", UNIT, "--uid", str(self.uid), "--gid", str(self.uid),
               "--groups", str(self.metrics_gid), "--rw", self.state, "--rw", self.metrics,
               "--scratch", SCRATCH]
        if not seccomp or not self.have_seccomp:
            cmd.append("--no-seccomp")
        return cmd + ["--"] + argv

    def test_1_probe(self):
        """The restrictions are real: what they forbid fails."""
        py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
        code = PROBE % {"state": self.state, "metrics": self.metrics, "scratch": SCRATCH}
        r = subprocess.run(self.sandbox([py, "-I", "-c", code]), capture_output=True, text=True,
                           timeout=GUARD)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout)
        print("probe: " + r.stdout.strip())
        print(r.stderr.strip())
        self.assertEqual((out["uid"], out["gid"], out["groups"], out["umask"]),
                         (self.uid, self.uid, [self.metrics_gid], 0o077))
        self.assertEqual((out["write_state"], out["write_metrics"]), ("ok", "ok"))
        for place in ("write_scratch", "write_tmp", "write_var_tmp", "write_dev_shm", "write_etc"):
            self.assertEqual(out[place], 30, place)         # EROFS
        self.assertEqual(out["home"], 13)                   # EACCES
        self.assertFalse(out["pid1_visible"])
        self.assertEqual(out["dev"], ["fd", "full", "null", "random", "shm", "stderr", "stdin",
                                      "stdout", "tty", "urandom", "zero"])
        self.assertEqual((out["NoNewPrivs"], out["CapEff"], out["CapBnd"]),
                         ("1", "0000000000000000", "0000000000000000"))
        self.assertEqual(out["inet"], "ok")
        self.assertEqual(out["getaddrinfo"], "ok")
        if self.have_seccomp:
            self.assertEqual(out["Seccomp"], "2")
            self.assertEqual(out["netlink"], 97)            # EAFNOSUPPORT
            self.assertEqual(out["setpriority"], 1)         # EPERM: @resources
            self.assertEqual(out["wx_mapping"], 1)          # EPERM: MemoryDenyWriteExecute
        else:
            print("NOTE: python3-seccomp is missing: no seccomp filter was applied")

    def test_2_daemon(self):
        fixture = h.fixture("realistic")
        env_fx = fixture["environments"][0]
        sim = h.InProcSim(fixture)
        self.addCleanup(sim.kill)

        # Not a s3test.Config: the secret is found by its name in
        # $CREDENTIALS_DIRECTORY and the state goes to $STATE_DIRECTORY.
        conf = self.etc + "/s3mond.conf"
        with open(conf, "w") as f:
            f.write("[s3mond]\ninterval = 2s\nmetrics_file = %s/s3mond.prom\n\n" % self.metrics)
            f.write("[environment prod]\nurl = %s\nauthority = %s\n"
                    "tenant = %s\nclient_id = %s\nclient_secret_file = prod.secret\n\n"
                    % (sim.env_url("prod"), sim.authority, env_fx["tenant"], env_fx["client_id"]))
            # Another environment of the same file, whose secret this instance lacks.
            f.write("[environment other]\nurl = https://other.crm.dynamics.com\n"
                    "tenant = contoso.onmicrosoft.com\nclient_id = 22222222-2222-2222-2222-222222222222\n"
                    "client_secret_file = other.secret\n")
        os.chmod(conf, 0o644)
        secret = self.creds + "/prod.secret"                # LoadCredential=prod.secret:...
        with open(secret, "w") as f:
            f.write(env_fx["client_secret"] + "\n")
        os.chown(secret, self.uid, self.uid)
        os.chmod(secret, 0o400)
        os.chown(self.creds, self.uid, self.uid)
        os.chmod(self.creds, 0o500)

        notify_path = SCRATCH + "/notify"
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        os.chmod(notify_path, 0o666)
        notify.settimeout(0.2)
        before = listing(SCRATCH, skip_dirs=(self.state, self.metrics))

        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               "HOME": "/", "USER": "s3mond", "LOGNAME": "s3mond", "SHELL": "/usr/sbin/nologin",
               "STATE_DIRECTORY": self.state, "CREDENTIALS_DIRECTORY": self.creds,
               "NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "1000000"}
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if k in os.environ:
                env[k] = os.environ[k]
        argv = self.sandbox([S3MOND, "-c", conf, "-e", "prod", "-o", "json"],
                            seccomp=not NO_SECCOMP_FOR_DAEMON)
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())

        records, datagrams = [], []
        reader = threading.Thread(target=lambda: records.extend(json.loads(l) for l in proc.stdout))
        reader.start()

        # Drain the notify socket all along, as PID 1 does: sd_notify() blocks
        # once its queue (net.unix.max_dgram_qlen) is full.
        stop_receiving = threading.Event()

        def receive():
            while not stop_receiving.is_set():
                try:
                    datagrams.append(notify.recv(4096).decode())
                except socket.timeout:
                    pass
        receiver = threading.Thread(target=receive)
        receiver.start()

        def finish_receiving():
            stop_receiving.set()
            receiver.join()
            notify.close()
        self.addCleanup(finish_receiving)

        def pings():
            return sum(d.count("WATCHDOG=1") for d in datagrams)

        def cycle_done():
            """Five findings out, the metrics written after them, two pings."""
            try:
                with open(prom) as f:
                    text = f.read()
            except FileNotFoundError:
                return False
            counts = re.findall(r'^s3mond_findings_total\{environment="prod",verdict="\w+"\} (\d+)$', text, re.M)
            return len(records) >= 5 and sum(int(c) for c in counts) >= 5 and pings() >= 2

        prom = self.metrics + "/s3mond.prom"
        deadline = time.monotonic() + GUARD
        while time.monotonic() < deadline and proc.poll() is None and not cycle_done():
            time.sleep(0.2)
        if proc.poll() is not None:
            self.fail("s3mond exited early (%d): %s" % (proc.returncode, proc.stderr.read()))
        self.assertTrue(cycle_done(), "no complete cycle within %d s: %d records, %d pings"
                        % (GUARD, len(records), pings()))

        # The process as the kernel sees it.
        st = status(proc.pid)
        print("daemon: Uid %s Gid %s Groups %s NoNewPrivs %s Seccomp %s CapEff %s CapBnd %s"
              % (st["Uid"], st["Gid"], st["Groups"], st["NoNewPrivs"], st["Seccomp"], st["CapEff"], st["CapBnd"]))
        self.assertEqual(st["Uid"].split(), [str(self.uid)] * 4)
        self.assertEqual(st["Groups"].split(), [str(self.metrics_gid)])
        self.assertEqual((st["NoNewPrivs"], st["CapEff"], st["CapPrm"], st["CapBnd"]),
                         ("1", "0000000000000000", "0000000000000000", "0000000000000000"))
        self.assertEqual(st["Seccomp"], "2" if self.have_seccomp and not NO_SECCOMP_FOR_DAEMON else "0")
        writable = sorted(set(p for p, ro in mounts_of(proc.pid) if not ro))
        print("daemon's writable mounts: %s" % writable)
        self.assertTrue(set(writable) <= {self.state, self.metrics, "/proc"}, writable)

        os.kill(proc.pid, signal.SIGTERM)
        try:
            rc = proc.wait(timeout=GUARD)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        reader.join(GUARD)
        time.sleep(0.5)                     # the last datagrams
        stderr = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
        print("stderr:\n" + stderr)
        self.assertEqual(rc, 0, stderr)

        # stderr: the sandbox's own line, then only the daemon's two notices.
        lines = [l for l in stderr.splitlines() if not l.startswith("sandbox: ")]
        self.assertEqual(len(lines), 2, stderr)
        self.assertRegex(lines[0], r"^s3mond: watching 1 environment\(s\), every 2s$")
        self.assertRegex(lines[1], r"^s3mond: Terminated: stopping$")

        # sd_notify through the sandbox.
        self.assertIn("READY=1", datagrams[0] if datagrams else "", datagrams)
        self.assertGreaterEqual(pings(), 2, datagrams)
        self.assertTrue(any("STOPPING=1" in d for d in datagrams), datagrams)

        self.check_findings(fixture["expected"], records)

        # Files: the state and the metrics, with their modes and owner; nothing else.
        state_files = {n: os.lstat(os.path.join(self.state, n)) for n in os.listdir(self.state)}
        self.assertIn("prod.state", state_files)
        self.assertTrue(set(state_files) <= {"prod.state", "prod.state.log"}, sorted(state_files))
        for n, s in state_files.items():
            self.assertEqual((stat.S_IFMT(s.st_mode), stat.S_IMODE(s.st_mode), s.st_uid),
                             (stat.S_IFREG, 0o600, self.uid), n)
        self.assertEqual(sorted(os.listdir(self.metrics)), ["s3mond.prom"])
        s = os.lstat(prom)
        self.assertEqual((stat.S_IMODE(s.st_mode), s.st_uid), (0o644, self.uid))
        with open(prom) as f:
            text = f.read()
        self.assertIn("\ns3mond_up 0\n", text)
        total = sum(int(m) for m in re.findall(r'^s3mond_findings_total\{environment="prod",verdict="\w+"\} (\d+)$',
                                               text, re.M))
        self.assertEqual(total, 5)
        s = os.stat(self.state)
        self.assertEqual((stat.S_IMODE(s.st_mode), s.st_uid), (0o700, self.uid))
        after = listing(SCRATCH, skip_dirs=(self.state, self.metrics))
        self.assertEqual(after, before, "the rest of the scratch tree changed")

    def check_findings(self, expected, records):
        findings = [r for r in records if r.get("type") == "finding"]
        others = [r for r in records if r.get("type") != "finding"]
        self.assertEqual(others, [], "no error or resolved event expected")
        got = {f["alert"]["id"]: f for f in findings}
        self.assertEqual(len(got), len(findings), "one finding per alert")
        self.assertEqual(sorted(got), sorted(e["alert"] for e in expected))
        for e in expected:
            f = got[e["alert"]]
            with self.subTest(alert=e["alert"]):
                self.assertEqual(f["alert"]["source"], e["source"])
                self.assertEqual(f["mailbox"]["id"], e["mailbox"])
                self.assertEqual(f["verdict"], e["verdict"])
                self.assertEqual([c["id"] for c in f["culprits"]], e["culprits"])
                self.assertEqual([c["id"] for c in f["culprits"] if c["evidence"]], e["with_evidence"])
                for c in f["culprits"]:
                    self.assertEqual(sorted(ev["id"] for ev in c["evidence"]), sorted(e["evidence"].get(c["id"], [])))
                for keyword in e.get("notes", []):
                    self.assertTrue(any(keyword.lower() in n.lower() for n in f["notes"]), (keyword, f["notes"]))
        print("%d findings as realistic.json expects" % len(findings))


if __name__ == "__main__":
    ns.reexec_in_namespace(needs=("systemd-analyze",))
    unittest.main(argv=sys.argv[:1], verbosity=2)
