"""Shared by test_deb.py and test_systemd.py: a real systemd 252 booted by
nspawn-boot.sh in a throw-away container (a tmpfs overlay of the host's "/"
in a private mount namespace: nothing reaches the host's disk), named
checks, and the package's installation there.

A test script calls boot(__file__) first: outside the container it
re-runs itself through nspawn-boot.sh (which exports CT_PID and CT_ROOT)
and exits with its status, or 77 (skip) with the reason when no container
can be booted here. Inside, Container() talks to it.

Python standard library only.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NSPAWN_BOOT = os.path.join(HERE, "nspawn-boot.sh")
GUARD = 60          # seconds: a hang guard for waits, never a measurement
INSIDE = "S3MOND_CT_MARKER"
FINDING_ID = "2a7beaec32d5419a8a023b1bbb1313dc"
RESOLVED_ID = "02dd0e4d610d4d88818a71f0bd6ee892"
ERROR_ID = "3996abb830b24ce4bd9179806656ce8c"
MESSAGE_IDS = (FINDING_ID, RESOLVED_ID, ERROR_ID)


def skip(why):
    print("SKIP: " + why, flush=True)
    sys.exit(77)


def preflight():
    """Outside the container: skip (77) where none can be booted."""
    if os.environ.get(INSIDE):
        return
    if os.geteuid() != 0:
        skip("needs root: systemd-nspawn boots the container")
    for tool in ("unshare", "nsenter", "setpriv"):
        if not shutil.which(tool):
            skip("%s is missing" % tool)
    if not os.path.isdir("/run/systemd/system") and not os.path.exists("/usr/lib/systemd/systemd"):
        skip("no systemd on this machine to boot")


def boot(script):
    """Outside: run `script` (with this process's arguments) in a fresh
    container and exit with its status, or skip (77) with the reason when
    no container boots. Inside: return."""
    if os.environ.get(INSIDE):
        with open(os.environ[INSIDE], "w") as f:
            f.write("started\n")
        return
    preflight()
    fd, marker = tempfile.mkstemp(prefix="s3mond-ct.")
    os.close(fd)
    os.unlink(marker)
    t0 = time.monotonic()
    r = subprocess.run([NSPAWN_BOOT, sys.executable, os.path.abspath(script)] + sys.argv[1:],
                       env=dict(os.environ, **{INSIDE: marker}), stderr=subprocess.PIPE, text=True)
    took = time.monotonic() - t0
    sys.stdout.flush()
    sys.stderr.write(r.stderr)
    if not os.path.exists(marker):
        lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
        skip("systemd-nspawn cannot boot a container here (nspawn-boot.sh exit %d%s)"
             % (r.returncode, ": " + " | ".join(lines[-5:]) if lines else ""))
    os.unlink(marker)
    print("%s: %.1f s in all, boot and halt included" % (os.path.basename(script), took), flush=True)
    sys.exit(r.returncode)


def build_debs(source, work):
    """The package and the one a version up, as build-deb.sh makes them in
    work (nocheck; shared by the suites: it rebuilds only when a file of
    the tree changed, one caller at a time). Skips where they cannot be
    built; an error of the build fails the test."""
    preflight()
    missing = [t for t in ("dpkg-buildpackage", "dh", "dpkg-deb", "flock") if not shutil.which(t)]
    if missing:
        skip("%s not installed (apt-get install dpkg-dev debhelper)" % " ".join(missing))
    r = subprocess.run([os.path.join(HERE, "build-deb.sh"), "--quiet", "--nocheck", "--next", source, work],
                       capture_output=True, text=True)
    sys.stderr.write(r.stderr)
    if r.returncode != 0:
        print("build-deb.sh failed (exit %d): see above" % r.returncode, flush=True)
        sys.exit(1)
    deb, nxt = r.stdout.split()[-2:]
    return deb, nxt


class Failure(Exception):
    """A check failed; the message says what was expected and what was seen."""


class Container:
    PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

    def __init__(self):
        self.pid = os.environ["CT_PID"]
        self.root = os.environ["CT_ROOT"]
        # A Docker-made host image carries a policy-rc.d that forbids every
        # service action of maintainer scripts (exit 101); a machine that
        # boots systemd has none. The container is such a machine.
        self.policy_rc_d = self.exists("/usr/sbin/policy-rc.d")
        if self.policy_rc_d:
            os.unlink(self.path("/usr/sbin/policy-rc.d"))
            print("container: removed the host image's /usr/sbin/policy-rc.d (Docker's 'exit 101')", flush=True)

    def run(self, *argv, input=None, check=True, env=(), timeout=GUARD * 3):
        cmd = ["nsenter", "-t", self.pid, "-a", "env", "-i", "PATH=" + self.PATH, "TERM=dumb",
               "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0", "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive",
               *env, *argv]
        r = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise Failure("`%s` in the container exited %d: %s"
                          % (" ".join(argv), r.returncode, (r.stderr.strip() or r.stdout.strip())[-3000:]))
        return r

    def out(self, *argv, **kw):
        return self.run(*argv, **kw).stdout

    def path(self, p):
        return self.root + p

    def write(self, p, text, mode=0o644):
        os.makedirs(os.path.dirname(self.path(p)), exist_ok=True)
        with open(self.path(p), "w") as f:
            f.write(text)
        os.chmod(self.path(p), mode)

    def read(self, p, binary=False):
        with open(self.path(p), "rb" if binary else "r") as f:
            return f.read()

    def exists(self, p):
        return os.path.lexists(self.path(p))

    def copy_in(self, src, dst, mode=0o644):
        os.makedirs(os.path.dirname(self.path(dst)), exist_ok=True)
        shutil.copyfile(src, self.path(dst))
        os.chmod(self.path(dst), mode)

    def show(self, unit, *props):
        text = self.out("systemctl", "show", unit, "-p", ",".join(props))
        return dict(l.split("=", 1) for l in text.splitlines() if "=" in l)

    def journal(self, *match):
        text = self.out("journalctl", "--no-pager", "-o", "json", *match)
        return [json.loads(l) for l in text.splitlines() if l.strip()]

    def unit_log(self, unit, lines=30):
        return self.run("journalctl", "--no-pager", "-o", "short-monotonic", "-n", str(lines), "-u", unit,
                        check=False).stdout

    def wait_for(self, what, pred, guard=GUARD, step=0.2):
        """Poll pred() until it returns something true; its value. The
        guard only stops a hang: the message says what never happened."""
        deadline = time.monotonic() + guard
        while True:
            v = pred()
            if v:
                return v
            if time.monotonic() > deadline:
                raise Failure("%s: not within %d s" % (what, guard))
            time.sleep(step)

    def daemon_reload(self):
        self.run("systemctl", "daemon-reload")

    def apt_install(self, *args):
        """apt-get install in the container, offline (its lists and archive
        cache are the host's)."""
        return self.run("apt-get", "install", "-y", "--no-install-recommends", *args,
                        env=("DEBIAN_PRIORITY=critical",))

    def install_deb(self, deb, *extra):
        """`apt install ./NAME.deb` of a .deb copied into /tmp under its
        canonical name; apt's output."""
        name = deb_filename(deb)
        self.copy_in(deb, "/tmp/" + name)
        return self.run("sh", "-c", 'cd /tmp && apt-get install -y --no-install-recommends "$@" ./"$0"', name,
                        *extra).stdout


def deb_field(deb, field):
    return subprocess.run(["dpkg-deb", "-f", deb, field], capture_output=True, text=True,
                          check=True).stdout.strip()


def deb_filename(deb):
    return "%s_%s_%s.deb" % (deb_field(deb, "Package"), deb_field(deb, "Version"),
                             deb_field(deb, "Architecture"))


class Checks:
    """Named checks, each with a clear failure message, run in order; a
    summary with their times at the end."""

    def __init__(self, title):
        self.title = title
        self.results = []
        self.t0 = time.monotonic()

    def run(self, name, fn, fatal=False):
        print("--- %s" % name, flush=True)
        t = time.monotonic()
        try:
            note = fn()
            status, detail = "ok", note or ""
        except subprocess.CalledProcessError as e:
            status, detail = "FAIL", "`%s` exited %d: %s" % (" ".join(e.cmd), e.returncode, (e.stderr or "").strip())
        except (Failure, AssertionError, subprocess.TimeoutExpired, OSError, KeyError, ValueError) as e:
            status, detail = "FAIL", "%s: %s" % (type(e).__name__, e) if not isinstance(e, Failure) else str(e)
        took = time.monotonic() - t
        self.results.append((name, status, took, detail))
        print("check %s: %s (%.1f s)%s" % (name, status, took, (": " + detail) if detail else ""), flush=True)
        if status != "ok" and fatal:
            raise SystemExit(self.finish("stopped after %s failed: the checks after it need it" % name))
        return status == "ok"

    def run_all(self, *steps):
        """Each (name, function[, "fatal"]) in order; the exit status."""
        for name, fn, *fatal in steps:
            self.run(name, fn, fatal=bool(fatal))
        return self.finish()

    def finish(self, why=""):
        failed = [r for r in self.results if r[1] != "ok"]
        print("\n%s: %d checks, %d failed, %.1f s in the container%s"
              % (self.title, len(self.results), len(failed), time.monotonic() - self.t0,
                 "; " + why if why else ""))
        for name, status, took, detail in self.results:
            print("  %-36s %-4s %5.1f s" % (name, status, took))
        for name, status, took, detail in failed:
            print("FAILED %s: %s" % (name, detail))
        return 1 if failed else 0


def expect(cond, message):
    if not cond:
        raise Failure(message)
