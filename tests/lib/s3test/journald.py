"""A real systemd-journald for a test, without touching the host.

Everything happens in a private mount namespace (ns.py; TESTING.md's
recipe): tmpfs over /run/systemd/journal, /run/log and /var/log/journal, a
journald started from /lib/systemd/systemd-journald, and on request a
private /dev whose /dev/log is journald's syslog socket. Nothing at all is
created or changed on the host. tests/lib/README.md shows how a test uses it.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

from . import ns

JOURNALD = "/lib/systemd/systemd-journald"
JOURNAL_SOCKET = "/run/systemd/journal/socket"
SYSLOG_SOCKET = "/run/systemd/journal/dev-log"
# journald falls back to /run/log/journal; without a tmpfs there too, the
# entries of earlier runs come back.
JOURNAL_DIRS = ("/run/systemd/journal", "/run/log", "/var/log/journal")
CATALOG_DIR = "/var/lib/systemd/catalog"
SCRATCH = "/run/log/s3mond-journald-test"   # inside the /run/log tmpfs
JOURNALD_CONF_DIR = "/etc/systemd/journald.conf.d"
DEV_NODES = ("null", "zero", "random", "urandom", "full", "tty")

# Deterministic, quiet, unlimited: no kernel messages, no forwarding, no
# rate limit, nothing persistent.
JOURNALD_CONF = """\
[Journal]
Storage=volatile
ReadKMsg=no
ForwardToSyslog=no
ForwardToKMsg=no
ForwardToConsole=no
ForwardToWall=no
RateLimitIntervalSec=0
RateLimitBurst=0
MaxLevelStore=debug
"""


class RunError(Exception):
    pass


def reexec_in_namespace():
    """ns.reexec_in_namespace(), skipping (77) where there is no journald."""
    ns.reexec_in_namespace(needs=(JOURNALD,))


class _Mounts:
    """The tmpfs and binds made here, undone in reverse order."""

    def __init__(self):
        self.done = []
        self.tmpfs_roots = []

    def mount(self, source, target, fstype=None, flags=0, data=None):
        ns.mount(source, target, fstype, flags, data)
        self.done.append(target)

    def tmpfs_over(self, path):
        """An empty directory at path that exists only in this namespace:
        a tmpfs over path, or over its nearest existing ancestor when path
        does not exist (creating it there would create it on the host)."""
        if any(path == r or path.startswith(r + "/") for r in self.tmpfs_roots):
            os.makedirs(path, exist_ok=True)
            return
        top = path
        while not os.path.isdir(top):
            top = os.path.dirname(top)
        if top == "/":
            raise RuntimeError(f"refusing a tmpfs over / for {path}")
        self.mount("tmpfs", top, "tmpfs", 0, "mode=0755")
        self.tmpfs_roots.append(top)
        os.makedirs(path, exist_ok=True)

    def undo(self):
        errors = []
        while self.done:
            target = self.done.pop()
            try:
                ns.umount(target)
            except OSError as e:
                errors.append(str(e))
        return errors


def _touch(path):
    with open(path, "a"):
        pass


def _private_dev(mounts, scratch):
    """TESTING.md: a tmpfs /dev with the usual nodes bound from the real one
    and /dev/log bound to journald's syslog socket."""
    old = os.path.join(scratch, "dev")
    os.mkdir(old)
    mounts.mount("/dev", old, None, ns.MS_BIND | ns.MS_REC)
    mounts.mount("tmpfs", "/dev", "tmpfs", 0, "mode=0755")
    for node in DEV_NODES:
        if os.path.exists(os.path.join(old, node)):
            _touch(f"/dev/{node}")
            mounts.mount(os.path.join(old, node), f"/dev/{node}", None, ns.MS_BIND)
    if os.path.isdir(os.path.join(old, "shm")):
        os.mkdir("/dev/shm")
        mounts.mount(os.path.join(old, "shm"), "/dev/shm", None, ns.MS_BIND | ns.MS_REC)
    os.symlink("/proc/self/fd", "/dev/fd")
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{i}", f"/dev/{name}")
    _touch("/dev/log")
    mounts.mount(SYSLOG_SOCKET, "/dev/log", None, ns.MS_BIND)


def _install_catalog(mounts, scratch, catalog):
    root = os.path.join(scratch, "catalog-root")
    src = os.path.join(root, "usr/lib/systemd/catalog")
    os.makedirs(src)
    shutil.copy(catalog, src)
    out = subprocess.run(["journalctl", f"--root={root}", "--update-catalog"],
                         capture_output=True, timeout=30)
    if out.returncode != 0 or out.stderr:
        raise RuntimeError(f"journalctl --update-catalog: {out.stderr.decode(errors='replace')}")
    mounts.tmpfs_over(CATALOG_DIR)
    shutil.copy(os.path.join(root, "var/lib/systemd/catalog/database"), CATALOG_DIR)


def _sigterm(signum, frame):
    # Unwind through the finally blocks: kill journald, undo the mounts.
    raise SystemExit(128 + signum)


def _wait_for(paths, proc, log, timeout):
    deadline = time.monotonic() + timeout
    while not all(os.path.exists(p) for p in paths):
        if proc.poll() is not None:
            raise RuntimeError(f"systemd-journald exited {proc.returncode}: {_tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"systemd-journald sockets missing after {timeout}s: {_tail(log)}")
        time.sleep(0.05)


def _tail(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-2000:]
    except OSError:
        return ""


def journalctl(*args, timeout=10.0):
    """journalctl --no-pager -q ARGS; its stdout (bytes)."""
    out = subprocess.run(["journalctl", "--no-pager", "-q", *args],
                         capture_output=True, timeout=timeout)
    if out.returncode != 0:
        raise RunError(f"journalctl {' '.join(args)}: exit {out.returncode}: "
                       f"{out.stderr.decode(errors='replace')}")
    return out.stdout


def read(*matches, count=None, timeout=10.0):
    """The entries matching (journalctl -o json --all), as dicts. With
    count, polls until at least that many match or timeout seconds pass
    (then returns what there is)."""
    deadline = time.monotonic() + timeout
    while True:
        out = journalctl("-o", "json", "--all", *matches, timeout=timeout)
        entries = [json.loads(line) for line in out.splitlines() if line.strip()]
        if count is None or len(entries) >= count or time.monotonic() > deadline:
            return entries
        time.sleep(0.1)


@contextlib.contextmanager
def journald(dev_log=False, catalog=None, timeout=10.0):
    """Mount the tmpfs, start journald, wait for its sockets, yield read().
    dev_log=True: a private /dev whose /dev/log reaches this journald;
    catalog=PATH: that catalog compiled for journalctl -x. On exit journald
    is killed and every mount undone."""
    if not ns.in_private_namespace():
        raise RuntimeError("journald() outside a private mount namespace: "
                           "call reexec_in_namespace() first")
    mounts = _Mounts()
    proc = None
    old_sigterm = signal.signal(signal.SIGTERM, _sigterm)
    try:
        for d in JOURNAL_DIRS:
            mounts.tmpfs_over(d)
        # Our own files (journald's log, the real /dev, the catalog) live in
        # one of those tmpfs, so nothing at all is created on the host.
        scratch = SCRATCH
        os.makedirs(scratch, mode=0o700)
        mounts.tmpfs_over(JOURNALD_CONF_DIR)
        with open(os.path.join(JOURNALD_CONF_DIR, "zz-s3mond-test.conf"), "w") as f:
            f.write(JOURNALD_CONF)
        if catalog:
            _install_catalog(mounts, scratch, catalog)

        log = os.path.join(scratch, "journald.log")
        with open(log, "wb") as logf:
            proc = subprocess.Popen([JOURNALD], stdin=subprocess.DEVNULL, stdout=logf,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=ns.die_with_parent)
        _wait_for([JOURNAL_SOCKET, SYSLOG_SOCKET], proc, log, timeout)
        if dev_log:
            _private_dev(mounts, scratch)
        yield read
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        errors = mounts.undo()
        signal.signal(signal.SIGTERM, old_sigterm)
        if errors:
            print("journald cleanup: " + "; ".join(errors), file=sys.stderr)


@contextlib.contextmanager
def hidden(path):
    """Within the block, path (a directory) looks empty: an empty tmpfs is
    mounted over it, e.g. hidden("/run/systemd/journal") for a journald
    outage. Only inside a private namespace."""
    if not ns.in_private_namespace():
        raise RuntimeError("hidden() outside a private mount namespace")
    ns.mount("tmpfs", path, "tmpfs", 0, "mode=0755")
    try:
        yield
    finally:
        ns.umount(path)


def run(argv, timeout=30.0, check=True, **kwargs):
    """subprocess.run with the output captured and a time bound; RunError
    (with the output) on a non-zero exit when check."""
    kwargs.setdefault("capture_output", True)
    out = subprocess.run(argv, timeout=timeout, **kwargs)
    if check and out.returncode != 0:
        raise RunError(f"{' '.join(map(str, argv))}: exit {out.returncode}\n"
                       f"stdout: {out.stdout!r}\nstderr: {out.stderr!r}")
    return out


def values(entry, field):
    """A field's values as bytes, however journalctl -o json wrote them: a
    string, an array of byte values, or an array of those (a field sent
    several times)."""
    v = entry.get(field)
    if v is None:
        return []
    if isinstance(v, str):
        return [v.encode()]
    if all(isinstance(x, int) for x in v):
        return [bytes(v)]
    return [x.encode() if isinstance(x, str) else bytes(x) for x in v]


def value(entry, field):
    """The field's one value as bytes (AssertionError unless exactly one)."""
    v = values(entry, field)
    if len(v) != 1:
        raise AssertionError(f"{field}: expected one value, got {len(v)}: {v!r:.200}")
    return v[0]
