#!/usr/bin/python3
"""What a process can do, for test_systemd.py's hardening check: run once as
s3mond.service itself (its ExecStart replaced by this script in a drop-in,
every other setting of the unit kept) and once outside it, as nobody (the
control). Each observation is a value or an errno name; the test compares
the two and says which option each difference proves.

usage: unit_probe.py OUT.json MARKER SCRATCH_DIR
  MARKER: a name the test created as /tmp/MARKER in the container (PrivateTmp=)
  SCRATCH_DIR: a directory this process may write (its StateDirectory=)

Python standard library only; risky calls (namespaces, personality, ptrace,
a 32-bit system call) run in a forked child.
"""
import ctypes
import errno
import json
import mmap
import os
import signal
import socket
import sys

OUT, MARKER, SCRATCH = sys.argv[1:4]
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
SYS = {"ptrace": 101, "setuid": 105, "personality": 135, "sysfs": 139, "modify_ldt": 154, "adjtimex": 159,
       "syslog": 103, "keyctl": 250, "unshare": 272, "setpriority": 141,
       "sched_setscheduler": 144, "shmget": 29}


def errname(e):
    return errno.errorcode.get(e, str(e))


def sc(name, *args):
    """A raw system call: "ok" (or its value when asked) or the errno name."""
    r = libc.syscall(SYS[name], *args)
    return ("ok", r) if r >= 0 else (errname(ctypes.get_errno()), r)


def in_child(fn):
    """fn() in a forked child: its string result, or how the child died."""
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rd)
        try:
            res = str(fn())
        except Exception as e:  # noqa: BLE001 - reported, never raised
            res = "exception: %s" % e
        os.write(wr, res.encode())
        os._exit(0)
    os.close(wr)
    data = b""
    while True:
        chunk = os.read(rd, 4096)
        if not chunk:
            break
        data += chunk
    os.close(rd)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return "killed by %s" % signal.Signals(os.WTERMSIG(status)).name
    return data.decode()


def attempt(fn):
    try:
        r = fn()
        return "ok" if r is None else r
    except OSError as e:
        return errname(e.errno)


def write_in(d):
    def w():
        p = os.path.join(d, ".s3mond-probe-%d" % os.getpid())
        with open(p, "w"):
            pass
        os.unlink(p)
    return attempt(w)


def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return {k: out.get(k) for k in ("Uid", "Gid", "Groups", "NoNewPrivs", "Seccomp", "Seccomp_filters", "CapInh",
                                    "CapPrm", "CapEff", "CapBnd", "CapAmb", "Umask")}


def mount_of(path):
    """(mount options, super options, fstype) of the topmost mount at path."""
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            a, _, b = line.partition(" - ")
            fields, rest = a.split(), b.split()
            if fields[4] == path:
                found = (fields[5], rest[2] if len(rest) > 2 else "", rest[0])
    return found


def readonly(path):
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError as e:
        return errname(e.errno)


def int80_getpid():
    """i386 getpid through int $0x80 from a file mapped read+exec (allowed
    under MemoryDenyWriteExecute=): the pid, or how it failed."""
    code = os.path.join(SCRATCH, ".s3mond-probe-int80")
    with open(code, "wb") as f:
        f.write(bytes([0xb8, 0x14, 0, 0, 0, 0xcd, 0x80, 0xc3]))   # mov eax, 20; int 0x80; ret
    fd = os.open(code, os.O_RDONLY)
    addr = libc.mmap(None, 4096, mmap.PROT_READ | mmap.PROT_EXEC, mmap.MAP_PRIVATE, fd, 0)
    os.close(fd)
    os.unlink(code)
    if addr in (None, ctypes.c_void_p(-1).value):
        return "mmap: " + errname(ctypes.get_errno())
    r = ctypes.CFUNCTYPE(ctypes.c_int)(addr)()
    return "pid" if r == os.getpid() else "returned %d" % r


def keyring():
    KEYCTL_DESCRIBE, KEY_SPEC_SESSION_KEYRING = 6, -3
    buf = ctypes.create_string_buffer(256)
    r = libc.syscall(SYS["keyctl"], KEYCTL_DESCRIBE, KEY_SPEC_SESSION_KEYRING, buf, 256)
    return buf.value.decode() if r >= 0 else errname(ctypes.get_errno())


def probe():
    o = {"pid": os.getpid(), "uid": os.getuid(), "status": status(), "scratch": SCRATCH}
    o["ns"] = {n: os.readlink("/proc/self/ns/" + n) for n in ("mnt", "uts", "user", "ipc", "net", "cgroup")}
    with open("/proc/self/uid_map") as f:
        o["uid_map"] = " ".join(f.read().split())
    # Files and mounts.
    o["write"] = {d: write_in(d) for d in ("/usr", "/etc", "/var/lib", "/run/lock", "/dev/shm", "/tmp",
                                         "/var/tmp", SCRATCH)}
    o["home"] = {d: attempt(lambda d=d: len(os.listdir(d))) for d in ("/home", "/run/user", "/usr/lib/modules")}
    o["tmp_marker"] = os.path.exists(os.path.join("/tmp", MARKER))
    o["dev"] = sorted(os.listdir("/dev"))
    o["proc"] = {"pid1_visible": os.path.exists("/proc/1"), "meminfo": os.path.exists("/proc/meminfo"),
                 "sys": os.path.exists("/proc/sys"), "kmsg": os.path.exists("/proc/kmsg"),
                 "mount": mount_of("/proc")}
    o["readonly"] = {p: readonly(p) for p in ("/", "/sys", "/sys/fs/cgroup", "/proc/sys")}
    # System calls.
    s = {}
    s["socket_netlink"] = attempt(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).close())
    s["socket_packet"] = attempt(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close())
    s["socket_inet"] = attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close())
    s["socket_inet6"] = attempt(lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close())
    s["socket_unix"] = attempt(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).close())
    s["setpriority"] = sc("setpriority", 0, 0, 19)[0]                       # @resources
    s["adjtimex_read"] = in_child(lambda: sc("adjtimex", ctypes.create_string_buffer(512))[0])  # @clock
    s["sched_fifo"] = in_child(lambda: sc("sched_setscheduler", 0, 1, ctypes.byref(ctypes.c_int(1)))[0])
    s["setuid_self"] = in_child(lambda: sc("setuid", os.getuid())[0])      # @privileged (@setuid)
    s["sysfs"] = sc("sysfs", 3)[0]                                            # @obsolete
    s["modify_ldt_read"] = sc("modify_ldt", 0, ctypes.create_string_buffer(16), 16)[0]  # @cpu-emulation
    s["ptrace_traceme"] = in_child(lambda: sc("ptrace", 0, 0, 0, 0)[0])     # @debug
    s["syslog_size"] = sc("syslog", 10, None, 0)[0]                          # ProtectKernelLogs
    s["unshare_user"] = in_child(lambda: sc("unshare", 0x10000000)[0])      # RestrictNamespaces
    s["unshare_uts"] = in_child(lambda: sc("unshare", 0x04000000)[0])
    s["personality_linux32"] = in_child(lambda: sc("personality", 0x0008)[0])  # LockPersonality
    s["mmap_wx"] = "ok" if libc.mmap(None, 4096, 7, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0) not in (
        None, ctypes.c_void_p(-1).value) else errname(ctypes.get_errno())      # MemoryDenyWriteExecute
    f = os.path.join(SCRATCH, ".s3mond-probe-suid")
    open(f, "w").close()
    s["chmod_suid"] = attempt(lambda: os.chmod(f, 0o4755))                 # RestrictSUIDSGID
    s["chown_self"] = attempt(lambda: os.chown(f, -1, os.getgid()))        # @privileged (@chown)
    os.unlink(f)
    s["int80_getpid"] = in_child(int80_getpid)                              # SystemCallArchitectures=
    s["session_keyring"] = keyring()                                        # KeyringMode=
    shm = sc("shmget", 0, 4096, 0o1000 | 0o600)                             # IPC_PRIVATE, IPC_CREAT
    s["shmget"] = shm[0]
    o["shm_id"] = shm[1] if shm[0] == "ok" else None                        # RemoveIPC=: gone after exit?
    o["syscalls"] = s
    return o


result = probe()
with open(OUT, "w") as fh:
    json.dump(result, fh, indent=1, sort_keys=True)
