#!/bin/bash
# Boot a real systemd (the host's own, as PID 1 of a container) in a throw-away systemd-nspawn
# container: a tmpfs overlay of the host's "/" in a private mount namespace, loopback-only network.
# Then run CMD on the host with the exported function `ct` (= nsenter into the container), halt,
# and clean up. Nothing the container writes reaches the host's disk.
#   usage:  nspawn-boot.sh CMD [ARGS...]      (as root; installs systemd-container if missing)
#   env:    BASE=/tmp/nspawn-boot  TARGET=multi-user.target  KEEP_LOG=1 (keep the console log)
#   inside CMD:  ct systemctl start x.service;  ct journalctl -u x -o json;  ct sh -c 'cat > F' < F
#                $CT_ROOT is the container's root as seen from the host (write files there too).
# Boot takes about 1 s; shutdown and cleanup about 0.3 s.
# (s3mond's copy of the project's shared tools/nspawn-boot.sh: a fresh clone runs its tests with it.)
# Limits: no resource control (MemoryMax=, CPUQuota=, TasksMax= are ignored: the host's cgroup v1
# controllers are not delegated); some capabilities are absent (sys_resource, sys_time, ...), so
# LimitNOFILE= is clamped to the host's hard limit. Every sandboxing option of a hardened unit works
# (ProtectSystem=strict, SystemCallFilter=, RestrictAddressFamilies=, MemoryDenyWriteExecute=,
# DynamicUser=, LoadCredential=, WatchdogSec=, ...).
set -euo pipefail
BASE=${BASE:-/tmp/nspawn-boot}
TARGET=${TARGET:-multi-user.target}
ID=ct$$
W=$BASE/$ID                 # console log + tmpfs mountpoint (mounted only in the private namespace)
CG=nspawn-boot-$ID          # our own sub-cgroup in the name=systemd (v1) and unified (v2) hierarchies
[ "$(id -u)" = 0 ] || { echo "nspawn-boot.sh: must run as root" >&2; exit 1; }
command -v systemd-nspawn >/dev/null ||
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends systemd-container >/dev/null
NSPAWN= CT_PID=
cleanup() {
  set +e
  if [ -n "$NSPAWN" ] && kill -0 "$NSPAWN" 2>/dev/null; then
    kill -TERM "$NSPAWN"                                 # nspawn -> SIGRTMIN+3 -> clean halt
    for _ in $(seq 100); do kill -0 "$NSPAWN" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$NSPAWN" 2>/dev/null; then
      [ -n "${CT_PID:-}" ] && kill -KILL "$CT_PID"       # killing the namespace's init ends it all
      kill -KILL "$NSPAWN"
    fi
  fi
  [ -n "$NSPAWN" ] && wait "$NSPAWN" 2>/dev/null
  for h in systemd unified; do
    [ ! -d "/sys/fs/cgroup/$h/$CG" ] || find "/sys/fs/cgroup/$h/$CG" -depth -type d -exec rmdir {} \;
  done
  [ -z "${KEEP_LOG:-}" ] || cp "$W/console.log" "$BASE/console-$ID.log"
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
mkdir -p "$W/fs"
for h in systemd unified; do mkdir -p "/sys/fs/cgroup/$h/$CG"; done

# Services of the host image that must not start inside the container.
MASK="postgresql.service prometheus-node-exporter.service exim4.service nagios4.service
 rsyslog.service console-getty.service getty@tty1.service systemd-timesyncd.service
 e2scrub_reap.service apt-daily-upgrade.timer apt-daily.timer dpkg-db-backup.timer
 e2scrub_all.timer exim4-base.timer fstrim.timer man-db.timer"

T0=$(date +%s.%N)
# pdeathsig: if this script is killed, nspawn still gets SIGTERM and halts the container
setpriv --pdeathsig TERM unshare --mount --propagation private bash -euc '
  W=$1 CG=$2 TARGET=$3 ID=$4; shift 4
  echo $$ > /sys/fs/cgroup/unified/$CG/cgroup.procs
  echo $$ > /sys/fs/cgroup/systemd/$CG/cgroup.procs
  mount -t tmpfs -o mode=755 tmpfs "$W/fs"
  mkdir "$W/fs/upper" "$W/fs/work" "$W/fs/root"
  mount -t overlay overlay -o "lowerdir=/,upperdir=$W/fs/upper,workdir=$W/fs/work" "$W/fs/root"
  R=$W/fs/root
  for u in "$@"; do ln -sf /dev/null "$R/etc/systemd/system/$u"; done
  systemd-id128 new > "$R/etc/machine-id"               # its own journal directory
  mkdir -p /run/systemd && mount -t tmpfs tmpfs /run/systemd   # keep nspawn state off the host
  exec systemd-nspawn --quiet -D "$R" --boot --register=no --keep-unit --private-network \
       -M "$ID" --console=read-only -- systemd.unit=$TARGET
' launcher "$W" "$CG" "$TARGET" "$ID" $MASK > "$W/console.log" 2>&1 &
NSPAWN=$!

# the container's PID 1: a child of nspawn whose NSpid ends in 1 and that runs systemd
for _ in $(seq 300); do
  for p in $(pgrep -P "$NSPAWN" || true); do
    if grep -qE '^NSpid:\s+[0-9]+\s+1$' /proc/$p/status 2>/dev/null &&
       [ "$(readlink /proc/$p/exe 2>/dev/null)" = /usr/lib/systemd/systemd ]; then CT_PID=$p; fi
  done
  [ -n "$CT_PID" ] && break
  kill -0 "$NSPAWN" 2>/dev/null || { cat "$W/console.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$CT_PID" ] || { echo "nspawn-boot.sh: the container did not start" >&2; cat "$W/console.log" >&2; exit 1; }
export CT_PID
export CT_ROOT=/proc/$CT_PID/root
ct() { nsenter -t "$CT_PID" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin TERM=dumb SYSTEMD_PAGER= "$@"; }
export -f ct
st=
for _ in $(seq 600); do
  st=$(ct systemctl is-system-running 2>/dev/null || true)
  case "$st" in running|degraded) break;; esac
  sleep 0.1
done
echo "nspawn-boot.sh: container $ID is $st after $(python3 -c "print(round($(date +%s.%N)-$T0,2))") s" >&2
[ "$st" = degraded ] && ct systemctl --failed --no-legend >&2
rc=0; "$@" || rc=$?
trap - EXIT; cleanup
exit $rc
