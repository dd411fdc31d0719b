"""A real systemd-journald for tests, without touching the host.

Everything happens in a private mount namespace (TESTING.md's recipe): tmpfs
over /run/systemd/journal, /run/log and /var/log/journal, a journald started
from /lib/systemd/systemd-journald, and on request a private /dev whose
/dev/log is journald's syslog socket. Nothing at all is created or changed
on the host.

A test script uses it like this::

    import journald_ns

    journald_ns.reexec_in_namespace()   # first: re-runs this script under
                                        # `unshare -m --propagation private`
    with journald_ns.journald(dev_log=True) as read:
        journald_ns.run([daemon, "--once"], timeout=30)
        entries = read("SYSLOG_IDENTIFIER=s3mond", count=3)
        for e in entries:
            print(journald_ns.value(e, "MESSAGE"))       # bytes
            journald_ns.values(e, "S3MOND_CULPRIT")       # list of bytes

API:

``reexec_in_namespace()``
    Unless already in a private mount namespace, replace this process by
    itself run under ``unshare -m --propagation private``. Exits with 77
    (meson's "skipped") when that is impossible (not root, no unshare, no
    systemd-journald).

``journald(dev_log=False, catalog=None, timeout=10.0)``
    Context manager. Mounts the tmpfs, starts journald, waits for its
    sockets, and yields ``read``. With ``dev_log=True``, /dev is replaced by
    a tmpfs holding null, zero, random, urandom, full, tty, fd, stdin,
    stdout, stderr, shm and log (bound to journald's syslog socket), so
    syslog(3) reaches this journald. With ``catalog=PATH``, that catalog
    file is compiled into a private /var/lib/systemd/catalog/database, so
    ``journalctl -x`` explains entries with it. On exit journald is killed
    and every mount undone. Refuses to run outside a private namespace.

``read(*matches, count=None, timeout=10.0)``
    ``journalctl -o json --all`` with the given matches (``"FIELD=value"``,
    ``"+"``; same field ORs, different fields AND), returning the entries as
    dicts. With ``count``, polls until at least that many entries match or
    ``timeout`` seconds pass (then returns what there is).

``run(argv, timeout=30.0, check=True, **kwargs)``
    ``subprocess.run`` inside the namespace, output captured, bounded in
    time; raises ``RunError`` (with the output) on a non-zero exit when
    ``check``.

``hidden(path)``
    Context manager: within it, directory ``path`` looks empty (a tmpfs
    over it), e.g. ``hidden("/run/systemd/journal")`` to make journald
    unreachable for a while.

``journalctl(*args, timeout=10.0)``
    Runs journalctl with the given arguments; returns its stdout (bytes).

``values(entry, field)`` / ``value(entry, field)``
    A field's values as bytes, whatever journalctl chose: a string, an array
    of byte values (non-UTF-8 or binary), or an array of either (a field
    sent several times). ``value`` asserts there is exactly one.
"""

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time

SKIP = 77
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

# Set by reexec_in_namespace(): the mount namespace we came from.
NS_ENV = "S3MOND_OUTER_MNT_NS"

PR_SET_PDEATHSIG = 1
MS_BIND = 4096
MS_REC = 16384
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


class RunError(Exception):
    pass


def _mount(source, target, fstype=None, flags=0, data=None):
    # mount(2) directly: mount(8) would record the mount in the host's
    # /run/mount/utab.
    enc = lambda s: s.encode() if s is not None else None
    if _libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def _umount(target):
    if _libc.umount2(target.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {target}: {os.strerror(err)}")


def _mnt_ns(pid="self"):
    return os.readlink(f"/proc/{pid}/ns/mnt")


def in_private_namespace():
    """True when this process's mount namespace is not the one it was
    started from (reexec_in_namespace() records that one) nor PID 1's, and
    its root mount propagates nothing back."""
    try:
        own = _mnt_ns()
        outer = [os.environ.get(NS_ENV)]
        try:
            outer.append(_mnt_ns(1))
        except OSError:
            pass    # hidden from us in some sandboxes
        outer = [o for o in outer if o]
        if not outer or own in outer:
            return False
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if fields[4] == "/":
                    optional = fields[6:fields.index("-")]
                    return not any(o.startswith("shared:") for o in optional)
    except OSError:
        return False
    return False


def _skip(why):
    print(f"SKIP: {why}", flush=True)
    sys.exit(SKIP)


def reexec_in_namespace():
    if in_private_namespace():
        return
    if os.environ.get(NS_ENV):
        # We did re-exec, yet the namespace is not private: never go on.
        _skip("unshare did not give a private mount namespace")
    if os.geteuid() != 0:
        _skip("needs root (mount namespace, journald)")
    unshare = shutil.which("unshare")
    if not unshare:
        _skip("unshare(1) not found")
    if not os.access(JOURNALD, os.X_OK):
        _skip(f"{JOURNALD} not found")
    probe = subprocess.run([unshare, "-m", "--propagation", "private", "true"],
                           capture_output=True, timeout=10)
    if probe.returncode != 0:
        _skip(f"unshare -m fails here: {probe.stderr.decode(errors='replace').strip()}")
    env = dict(os.environ, **{NS_ENV: _mnt_ns()})
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(unshare, [unshare, "-m", "--propagation", "private", "--",
                        sys.executable, *sys.argv], env)


class _Mounts:
    """The tmpfs and binds made here, undone in reverse order."""

    def __init__(self):
        self.done = []
        self.tmpfs_roots = []

    def mount(self, source, target, fstype=None, flags=0, data=None):
        _mount(source, target, fstype, flags, data)
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
                _umount(target)
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
    mounts.mount("/dev", old, None, MS_BIND | MS_REC)
    mounts.mount("tmpfs", "/dev", "tmpfs", 0, "mode=0755")
    for node in DEV_NODES:
        if os.path.exists(os.path.join(old, node)):
            _touch(f"/dev/{node}")
            mounts.mount(os.path.join(old, node), f"/dev/{node}", None, MS_BIND)
    if os.path.isdir(os.path.join(old, "shm")):
        os.mkdir("/dev/shm")
        mounts.mount(os.path.join(old, "shm"), "/dev/shm", None, MS_BIND | MS_REC)
    os.symlink("/proc/self/fd", "/dev/fd")
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{i}", f"/dev/{name}")
    _touch("/dev/log")
    mounts.mount(SYSLOG_SOCKET, "/dev/log", None, MS_BIND)


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


def _die_with_parent():
    # If the test is killed (meson's timeout), journald must not outlive it
    # and keep the namespace alive.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


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
    out = subprocess.run(["journalctl", "--no-pager", "-q", *args],
                         capture_output=True, timeout=timeout)
    if out.returncode != 0:
        raise RunError(f"journalctl {' '.join(args)}: exit {out.returncode}: "
                       f"{out.stderr.decode(errors='replace')}")
    return out.stdout


def read(*matches, count=None, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        out = journalctl("-o", "json", "--all", *matches, timeout=timeout)
        entries = [json.loads(line) for line in out.splitlines() if line.strip()]
        if count is None or len(entries) >= count or time.monotonic() > deadline:
            return entries
        time.sleep(0.1)


@contextlib.contextmanager
def journald(dev_log=False, catalog=None, timeout=10.0):
    if not in_private_namespace():
        raise RuntimeError("journald_ns.journald() outside a private mount namespace: "
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
                                    preexec_fn=_die_with_parent)
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
            print("journald_ns cleanup: " + "; ".join(errors), file=sys.stderr)


@contextlib.contextmanager
def hidden(path):
    """Within the block, path (a directory) looks empty: an empty tmpfs is
    mounted over it, e.g. hidden("/run/systemd/journal") for a journald
    outage. Only inside journald()'s namespace."""
    if not in_private_namespace():
        raise RuntimeError("journald_ns.hidden() outside a private mount namespace")
    _mount("tmpfs", path, "tmpfs", 0, "mode=0755")
    try:
        yield
    finally:
        _umount(path)


def run(argv, timeout=30.0, check=True, **kwargs):
    kwargs.setdefault("capture_output", True)
    out = subprocess.run(argv, timeout=timeout, **kwargs)
    if check and out.returncode != 0:
        raise RunError(f"{' '.join(map(str, argv))}: exit {out.returncode}\n"
                       f"stdout: {out.stdout!r}\nstderr: {out.stderr!r}")
    return out


def values(entry, field):
    v = entry.get(field)
    if v is None:
        return []
    if isinstance(v, str):
        return [v.encode()]
    if all(isinstance(x, int) for x in v):
        return [bytes(v)]
    return [x.encode() if isinstance(x, str) else bytes(x) for x in v]


def value(entry, field):
    v = values(entry, field)
    if len(v) != 1:
        raise AssertionError(f"{field}: expected one value, got {len(v)}: {v!r:.200}")
    return v[0]
