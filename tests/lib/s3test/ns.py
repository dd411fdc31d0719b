"""A private mount namespace for a test, and mount(2) without mount(8).

A test that mounts (a tmpfs for journald, a full or read-only state
directory, a sandbox) first calls reexec_in_namespace(): unless it already
runs in a private mount namespace, the script is executed again under
`unshare -m --propagation private`, so nothing it mounts is seen outside,
not even when it is killed. mount() and umount() call the system calls
directly: mount(8) would record the mounts in the host's /run/mount/utab.
"""

import ctypes
import os
import shutil
import subprocess
import sys

from .base import skip

# Set by reexec_in_namespace(): the mount namespace we came from.
NS_ENV = "S3MOND_OUTER_MNT_NS"

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC = 32, 4096, 16384
MNT_DETACH = 2
PR_SET_PDEATHSIG = 1

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def mount(source, target, fstype=None, flags=0, data=None):
    enc = lambda s: s.encode() if s is not None else None
    if libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def umount(target):
    """Detach target (lazily, like umount -l)."""
    if libc.umount2(target.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {target}: {os.strerror(err)}")


def _mnt_ns(pid="self"):
    return os.readlink(f"/proc/{pid}/ns/mnt")


def in_private_namespace():
    """True when this process's mount namespace is neither the one it was
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


def reexec_in_namespace(needs=()):
    """Unless already in a private mount namespace, replace this process by
    itself run under `unshare -m --propagation private` (same arguments).
    Exits 77 (skipped) when that is impossible: not root, no unshare, or one
    of needs (programs: names or paths) missing. Call it first, before
    starting threads or children."""
    if in_private_namespace():
        return
    if os.environ.get(NS_ENV):
        # We did re-exec, yet the namespace is not private: never go on.
        skip("unshare did not give a private mount namespace")
    if os.geteuid() != 0:
        skip("needs root (a private mount namespace)")
    unshare = shutil.which("unshare")
    if not unshare:
        skip("unshare(1) not found")
    for program in needs:
        if not shutil.which(program):
            skip(f"{program} not found")
    probe = subprocess.run([unshare, "-m", "--propagation", "private", "true"],
                           capture_output=True, timeout=10)
    if probe.returncode != 0:
        skip(f"unshare -m fails here: {probe.stderr.decode(errors='replace').strip()}")
    env = dict(os.environ, **{NS_ENV: _mnt_ns()})
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(unshare, [unshare, "-m", "--propagation", "private", "--",
                        sys.executable, os.path.abspath(sys.argv[0]), *sys.argv[1:]], env)


def die_with_parent():
    """For preexec_fn: the child gets SIGKILL when the test dies, so it
    cannot keep the namespace (and its mounts) alive."""
    libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
