#!/usr/bin/env python3
"""Run a command under the restrictions of s3mond.service that can be had
without systemd as PID 1, then exec it (same pid, same stdio).

usage (as root): sandbox.py --unit UNIT --uid U --gid G [--groups G2,...]
                            --rw DIR [--rw DIR]... --scratch DIR [--no-seccomp]
                            -- COMMAND [ARG]...

In a new private mount namespace (the caller's mounts are untouched):
  ProtectSystem=strict    every mount read-only except the --rw directories
                          (ReadWritePaths=, StateDirectory=): /tmp, /var/tmp
                          and /dev/shm too, which is stricter than PrivateTmp=
  PrivateDevices=yes      a /dev with only null zero full random urandom tty
  ProtectHome=yes         /home, /root, /run/user inaccessible (mode 000)
  ProtectProc=invisible,  a new /proc with hidepid=invisible,subset=pid
  ProcSubset=pid
Then, in this order:
  CapabilityBoundingSet=  every capability dropped from the bounding set
  DynamicUser=yes         setgroups(--groups), setresgid(G), setresuid(U)
  UMask=0077              umask 077
  NoNewPrivileges=yes     PR_SET_NO_NEW_PRIVS
  seccomp (with the python3-seccomp module, unless --no-seccomp): the
  unit's SystemCallFilter= (groups expanded by `systemd-analyze
  syscall-filter`), SystemCallErrorNumber=, SystemCallArchitectures=native,
  RestrictAddressFamilies= (EAFNOSUPPORT), MemoryDenyWriteExecute=,
  LockPersonality=, RestrictNamespaces= (clone3: ENOSYS) as systemd 252
  builds them.
Not applied (they need PID 1 or more namespaces than a test should make):
PrivateUsers=, PrivateTmp='s writable private /tmp, ProtectHostname=,
ProtectClock='s device ACL, DevicePolicy=, KeyringMode=, RemoveIPC=,
RestrictRealtime='s own filter (sched_setscheduler is in @resources anyway),
RestrictSUIDSGID=, LoadCredential='s ramfs (the caller prepares the directory).

Writes "sandbox: ..." lines on stderr only for errors (exit 125) and one line
"sandbox: seccomp: ..." saying what was loaded.
"""
import argparse
import ctypes
import errno
import os
import re
import subprocess
import sys

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 32, 1024, 2048, 4096
MS_MOVE, MS_REC, MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 8192, 16384, 1 << 18, 1 << 21, 1 << 24
MNT_DETACH = 2
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
MOUNT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
               "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME, "strictatime": MS_STRICTATIME}
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.unshare.argtypes = [ctypes.c_int]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def die(msg):
    sys.stderr.write("sandbox: %s\n" % msg)
    sys.exit(125)


def check(r, what):
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, "%s: %s" % (what, os.strerror(e)))


def mount(source, target, fstype=None, flags=0, data=None):
    # mount(2) itself: mount(8) would write the host's /run/mount/utab.
    enc = lambda s: s.encode() if s is not None else None
    check(libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)),
          "mount %s on %s" % (source, target))


def mountinfo():
    """(mount point, per-mount flags, read-only, visible) of every mount.
    Visible: the mount point shows this mount (not one stacked on it, nor a
    mount of a directory that another mount now hides)."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            major, minor = (int(x) for x in fields[2].split(":"))
            opts = fields[5].split(",")
            flags = 0
            for o in opts:
                flags |= MOUNT_FLAGS.get(o, 0)
            try:
                visible = os.stat(point).st_dev == os.makedev(major, minor)
            except OSError:
                visible = False
            out.append((point, flags, "ro" in opts, visible))
    return out


def under(path, top):
    return path == top or path.startswith(top.rstrip("/") + "/")


def remount_ro(skip):
    for point, flags, ro, visible in mountinfo():
        if ro or not visible or skip(point):
            continue
        try:
            mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
        except OSError as e:
            if not under(point, "/sys"):
                raise
            sys.stderr.write("sandbox: left %s as it is: %s\n" % (point, e))


def private_dev(scratch):
    """PrivateDevices=: a small /dev built in a tmpfs (on the empty directory
    SCRATCH/dev), moved over /dev, then read-only like the rest."""
    new = os.path.join(scratch, "dev")
    mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k")
    for node in DEV_NODES:
        path = os.path.join(new, node)
        open(path, "w").close()
        mount("/dev/" + node, path, None, MS_BIND)
    os.mkdir(os.path.join(new, "shm"), 0o1777)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, os.path.join(new, name))
    mount(new, "/dev", None, MS_MOVE)


def restrict_mounts(rw, scratch):
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    for d in rw:                                    # ReadWritePaths=: mounts of their own
        mount(d, d, None, MS_BIND)
    # ProtectSystem=strict: every other mount read-only, one by one.
    keep = lambda p: p in rw or under(p, "/proc")
    remount_ro(keep)
    private_dev(scratch)
    remount_ro(keep)                                # the new /dev and its nodes
    for d in ("/home", "/root", "/run/user"):       # ProtectHome=yes
        if os.path.isdir(d):
            mount("tmpfs", d, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=000,size=4k")
    # ProtectProc=invisible, ProcSubset=pid: a procfs of our own over /proc.
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=invisible,subset=pid")
    left = [p for p, _, ro, visible in mountinfo() if visible and not ro and not keep(p)]
    if left:
        die("still writable: %s" % ", ".join(left))


def unit_settings(path):
    settings = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;[" or "=" not in line:
                continue
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def syscall_groups():
    """{"@group": [names and @subgroups]} from systemd-analyze."""
    out = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True,
                         check=True).stdout
    groups, current = {}, None
    for line in out.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.startswith("    ") and current is not None and not line.strip().startswith("#"):
            current.append(line.strip())
        elif not line.strip():
            current = None
    return groups


def expand(items, groups, seen=None):
    seen = set() if seen is None else seen
    out = set()
    for item in items:
        if item.startswith("@"):
            if item not in seen:
                seen.add(item)
                out |= expand(groups[item], groups, seen)
        else:
            out.add(item)
    return out


def seccomp_filters(unit, groups):
    """Load the unit's seccomp-based settings, one filter each like systemd."""
    import seccomp

    def new_filter(defaction):
        f = seccomp.SyscallFilter(defaction=defaction)
        f.set_attr(seccomp.Attr.API_SYSRAWRC, 1)    # the kernel's errno in errors
        return f

    loaded = []
    families = unit.get("RestrictAddressFamilies", [])
    if families:
        import socket
        allow = {int(getattr(socket, fam)) for fam in " ".join(families).split()}
        f = new_filter(seccomp.ALLOW)
        for fam in range(0, 64):
            if fam not in allow:
                f.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.EQ, fam))
        f.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.GE, 64))
        f.load()
        loaded.append("RestrictAddressFamilies")

    if unit.get("MemoryDenyWriteExecute", ["no"])[-1] == "yes":
        PROT_WRITE, PROT_EXEC, SHM_EXEC = 2, 4, 0o100000
        f = new_filter(seccomp.ALLOW)
        f.add_rule(seccomp.ERRNO(errno.EPERM), "mmap",
                   seccomp.Arg(2, seccomp.MASKED_EQ, PROT_WRITE | PROT_EXEC, PROT_WRITE | PROT_EXEC))
        for name in ("mprotect", "pkey_mprotect"):
            f.add_rule(seccomp.ERRNO(errno.EPERM), name, seccomp.Arg(2, seccomp.MASKED_EQ, PROT_EXEC, PROT_EXEC))
        f.add_rule(seccomp.ERRNO(errno.EPERM), "shmat", seccomp.Arg(2, seccomp.MASKED_EQ, SHM_EXEC, SHM_EXEC))
        f.load()
        loaded.append("MemoryDenyWriteExecute")

    if unit.get("LockPersonality", ["no"])[-1] == "yes":
        f = new_filter(seccomp.ALLOW)
        f.add_rule(seccomp.ERRNO(errno.EPERM), "personality", seccomp.Arg(0, seccomp.NE, 0))  # PER_LINUX
        f.load()
        loaded.append("LockPersonality")

    if unit.get("RestrictNamespaces", ["no"])[-1] == "yes":
        flags = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
                 0x40000000, 0x00000080)            # NEWNS CGROUP UTS IPC USER PID NET TIME
        f = new_filter(seccomp.ALLOW)
        f.add_rule(seccomp.ERRNO(errno.EPERM), "setns")
        for flag in flags:
            for name in ("unshare", "clone"):
                f.add_rule(seccomp.ERRNO(errno.EPERM), name, seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
        f.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")   # flags out of reach: libc falls back to clone
        f.load()
        loaded.append("RestrictNamespaces")

    # Last: once loaded, it refuses seccomp() itself, as under systemd.
    allowed = None
    for value in unit.get("SystemCallFilter", []):
        deny = value.startswith("~")
        names = expand(value.lstrip("~").split(), groups)
        if allowed is None:                         # the first line decides the kind
            allowed = set() if deny else expand(["@default"], groups)
        allowed = allowed - names if deny else allowed | names
    err = getattr(errno, unit.get("SystemCallErrorNumber", ["EPERM"])[-1])
    if allowed is not None:
        f = new_filter(seccomp.ERRNO(err))
        n = 0
        for name in sorted(allowed):
            try:
                f.add_rule(seccomp.ALLOW, name)
                n += 1
            except (RuntimeError, ValueError, OSError):
                pass                                # not a syscall of this architecture
        f.load()
        loaded.append("SystemCallFilter (%d allowed, others errno %d)" % (n, err))
    return loaded


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--unit", required=True)
    ap.add_argument("--uid", type=int, required=True)
    ap.add_argument("--gid", type=int, required=True)
    ap.add_argument("--groups", default="")
    ap.add_argument("--rw", action="append", default=[])
    ap.add_argument("--scratch", required=True)
    ap.add_argument("--no-seccomp", action="store_true")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command:
        die("no command")
    unit = unit_settings(a.unit)
    groups = syscall_groups() if not a.no_seccomp else {}
    rw = [os.path.realpath(d) for d in a.rw]

    check(libc.unshare(CLONE_NEWNS), "unshare")
    try:
        restrict_mounts(rw, os.path.realpath(a.scratch))
    except OSError as e:
        die(str(e))

    cap = 0
    while libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0:
        cap += 1
    if ctypes.get_errno() != errno.EINVAL:
        die("PR_CAPBSET_DROP %d: %s" % (cap, os.strerror(ctypes.get_errno())))
    os.setgroups([int(g) for g in a.groups.split(",") if g])
    os.setresgid(a.gid, a.gid, a.gid)
    os.setresuid(a.uid, a.uid, a.uid)
    os.umask(0o077)
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")
    os.chdir("/")
    if a.no_seccomp:
        sys.stderr.write("sandbox: seccomp: not loaded (--no-seccomp)\n")
    else:
        try:
            loaded = seccomp_filters(unit, groups)
        except ImportError:
            loaded = None
        sys.stderr.write("sandbox: seccomp: %s\n" % (", ".join(loaded) if loaded is not None
                                                     else "not loaded (no python3-seccomp)"))
    sys.stderr.flush()
    try:
        os.execv(command[0], command)
    except OSError as e:
        die("exec %s: %s" % (command[0], e))


if __name__ == "__main__":
    main()
