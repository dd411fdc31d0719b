#!/usr/bin/env python3
"""s3mond's units run by a real systemd (252, the machine's own as PID 1 of a
throw-away container booted by nspawn-boot.sh), from the installed package,
against dvsim running there as a unit.

usage (as root): test_systemd.py SOURCE_ROOT WORKDIR   (the package: build-deb.sh in WORKDIR)

Exits 77 (skip) with the reason when no container can be booted here.
dvsim speaks HTTPS (s3mond's ca_file = its CA) when it has --tls, plain
HTTP on loopback otherwise (dvsim_endpoint.py; the log says which). PID 1
logs at debug level, so the notifications it accepts from s3mond (READY=1,
STATUS=, RELOADING=1, STOPPING=1) are in the container's journal.

Checks, in order (each names what it expected and what it saw):
  setup                       the package installed, dvsim started, secrets
                              written (root's, mode 0600)
  credential-required         without the LoadCredential= drop-in the unit
                              fails with 78, naming the unreadable secret,
                              and is not restarted
  start-ready                 with the drop-in README gives: `systemctl
                              start` returns once s3mond is active, PID 1
                              got READY=1 from the main PID (Type=notify)
  status-line                 `systemctl status` shows the STATUS= line
                              with the fixture's finding counts
  journal-findings            one entry per expected finding, with
                              MESSAGE_ID, PRIORITY 4 and every S3MOND_* field
                              of DESIGN §3, values as the fixture says; no
                              secret anywhere in the journal
  catalog-text                `journalctl -x` shows the catalog's text
  credential-delivered        $CREDENTIALS_DIRECTORY holds the secrets,
                              owned by the service's user
  state-dynamic-user          /var/lib/s3mond -> private/s3mond, 0700, the
                              state files 0600, all owned by a DynamicUser=
                              uid that /etc/passwd does not know
  hardening-seen-from-outside the main process: no new privileges, seccomp
                              filters, no capabilities, umask 077, its own
                              mount, UTS and user namespaces, read-only /,
                              private /tmp, /proc hidepid=invisible,subset=pid
  reload-good                 `systemctl reload` reads a file with a second
                              environment: RELOADING=1, same PID, both polled
  reload-bad                  a broken file: the error names FILE:LINE, the
                              old configuration goes on (a new alert of the
                              second environment is still reported)
  watchdog-restart            WatchdogSec=2s (a drop-in), SIGSTOP: PID 1
                              kills it (SIGABRT) and restarts it; a new
                              alert after the restart is reported; no
                              finding reached the journal twice
  stop-clean                  `systemctl stop`: STOPPING=1, exit 0, result
                              success
  hardening-probe             unit_probe.py run as s3mond.service (ExecStart
                              replaced in a drop-in) and as nobody outside:
                              each hardening option of the unit, with what
                              proves it or why the container cannot show it
  template-instance           s3mond@prod: `-e prod`, only prod's secret, one
                              environment polled; a new alert of prod is
                              reported, one of test is not; nothing twice
"""
import json
import os
import re
import shutil
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ctlib  # noqa: E402
import dvsim_endpoint  # noqa: E402
from ctlib import FINDING_ID, expect  # noqa: E402

SOURCE, WORK = (os.path.abspath(a) for a in sys.argv[1:3])
DEB = ctlib.build_debs(SOURCE, WORK)[0]
ctlib.boot(__file__)
HERE = os.path.dirname(os.path.abspath(__file__))
SRV = "/srv/s3mond-test"                     # in the container
FIXTURE = os.path.join(SOURCE, "tests", "fixtures", "realistic.json")
CONF = "/etc/s3mond/s3mond.conf"
CA = "/etc/s3mond/dvsim-ca.pem"
DROPIN = "/etc/systemd/system/s3mond.service.d"
TEST_ENV = {"name": "test", "tenant": "contoso-test.onmicrosoft.com",
            "client_id": "22222222-2222-4222-8222-222222222222", "client_secret": "dvsim-test-env-secret",
            "tables": {}}
MARKER = "s3mond-probe-marker-%d" % os.getpid()
DYNAMIC_UIDS = range(61184, 65520)      # systemd's DynamicUser= range
# The fields DESIGN.md §3 lists for a finding (S3MOND_CULPRIT: once per culprit).
FIELDS = ("S3MOND_ENVIRONMENT", "S3MOND_FINDING_ID", "S3MOND_MAILBOX_ID", "S3MOND_MAILBOX_NAME",
          "S3MOND_ALERT_ID", "S3MOND_ERROR_CODE", "S3MOND_VERDICT", "S3MOND_CULPRIT")

ct = ctlib.Container()
checks = ctlib.Checks("systemd")
with open(FIXTURE) as f:
    fixture = json.load(f)
EXPECTED = fixture["expected"]
SECRETS = {"prod": fixture["environments"][0]["client_secret"], "test": TEST_ENV["client_secret"]}
s = {}                                   # what the checks learn, for the next ones


def as_list(v):
    return v if isinstance(v, list) else [v]


def main_pid(unit="s3mond"):
    return ct.show(unit, "MainPID")["MainPID"]


def notifications(pid, tag, since_cursor=None):
    """The notification messages PID 1 accepted from pid that carry tag."""
    args = ["_PID=1"] + (["--after-cursor", since_cursor] if since_cursor else [])
    pat = re.compile(r"Got notification message from PID %s \((.*)\)" % pid)
    return [m.group(1) for e in ct.journal(*args) for m in [pat.search(e.get("MESSAGE", ""))]
            if m and tag in m.group(1)]


def cursor():
    entries = ct.journal("-n", "1")
    return entries[-1]["__CURSOR"] if entries else None


def findings(*match):
    return ct.journal("MESSAGE_ID=" + FINDING_ID, *match)


def once_each(entries):
    ids = [e["S3MOND_FINDING_ID"] for e in entries]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    expect(not twice, "findings in the journal more than once: %s" % twice)
    return len(ids)


def unit_says(unit, text, since=None):
    """The unit's entries containing text: its processes' and PID 1's about
    it. Filtered here: `journalctl -u` (and a UNIT= match) missed some of
    PID 1's entries that carry UNIT=, such as "Watchdog timeout"."""
    name = unit if "." in unit else unit + ".service"
    args = ["--after-cursor", since] if since else ["-u", name]
    return [e for e in ct.journal(*args) if name in (e.get("UNIT"), e.get("_SYSTEMD_UNIT"))
            and text in str(e.get("MESSAGE", ""))]


def conf_text(envs, interval="2s"):
    text = "[s3mond]\ninterval = %s\n\n" % interval
    for name in envs:
        text += dvsim_endpoint.environment_section(name, s["dvsim"], name + ".secret") + "\n"
    return text


def admin_post(path, row):
    """A row into dvsim through its admin API (in the container: its loopback)."""
    argv = ["curl", "-sS", "-f", "-m", "20", "-H", "Content-Type: application/json", "--data-binary", "@-"]
    if s["dvsim"].get("ca_file"):
        argv += ["--cacert", CA]
    ct.run(*argv, s["dvsim"]["admin"] + path, input=json.dumps(row))


def admin_get(path):
    argv = ["curl", "-sS", "-f", "-m", "20"]
    if s["dvsim"].get("ca_file"):
        argv += ["--cacert", CA]
    return json.loads(ct.out(*argv, s["dvsim"]["admin"] + path))


def transport():
    """How s3mond reached dvsim: HTTPS with ca_file (counted by dvsim), or HTTP."""
    url = s["dvsim"]["environments"]["prod"]["url"]
    if not s["tls"]:
        expect(url.startswith("http://127."), "prod's url %s" % url)
        return "plain HTTP on loopback (this dvsim has no --tls)"
    expect(url.startswith("https://") and "ca_file = %s" % CA in ct.read(CONF),
           "dvsim speaks HTTPS but s3mond.conf has url %s and no ca_file %s" % (url, CA))
    prod = admin_get("/stats")["environments"]["prod"]
    shakes = prod.get("tls_handshakes")
    expect(shakes is None or shakes >= 1, "dvsim counted %r TLS handshakes from prod" % shakes)
    return "HTTPS to %s, ca_file %s%s" % (url, CA, "" if shakes is None else ", %d TLS handshake(s)" % shakes)


def new_alert(env, name):
    """A mailbox and its UnknownIncomingEmailIntegrationError alert; the alert id."""
    mailbox, alert = str(uuid.uuid4()), str(uuid.uuid4())
    admin_post("/%s/mailboxes" % env, {
        "mailboxid": mailbox, "name": name, "emailaddress": "%s@contoso.com" % name.lower(),
        "incomingemaildeliverymethod": 2, "incomingemailstatus": 2, "statecode": 0,
        "lastsuccessfulsynccompletedon": "now-1h"})
    admin_post("/%s/tracelogs" % env, {
        "tracelogid": alert, "level": 2, "regardingobjecttypecode": "mailbox",
        "_regardingobjectid_value": mailbox,
        "text": "An unknown error occurred while receiving email through the mailbox \"%s\". The system "
                "will try to receive email again later.\r\nEmail Server Error Code: Exchange server returned "
                "UnknownIncomingEmailIntegrationError -2147220956 exception." % name})
    return alert


def wait_finding(alert, unit="s3mond.service"):
    return ct.wait_for("the finding of alert %s in %s's journal" % (alert, unit),
                       lambda: findings("S3MOND_ALERT_ID=" + alert, "_SYSTEMD_UNIT=" + unit))


def wait_status(unit, pattern, what):
    rx = re.compile(pattern)
    return ct.wait_for("%s: StatusText matching %r (last: %r)" % (what, pattern, s.get("last_status")),
                       lambda: _status_matches(unit, rx))


def _status_matches(unit, rx):
    s["last_status"] = ct.show(unit, "StatusText")["StatusText"]
    return rx.search(s["last_status"]) and s["last_status"]


def proc_status(pid):
    """/proc/PID/status of a process of the container (PID as it sees it)."""
    out = {}
    with open(ct.path("/proc/%s/status" % pid)) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


# ---------------------------------------------------------------------------
def setup():
    # dvsim and what the tests need in the container, copied (the source
    # tree may sit on a mount the container does not see).
    shutil.copytree(os.path.join(SOURCE, "tests", "dvsim"), ct.path(SRV + "/dvsim"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    ct.copy_in(FIXTURE, SRV + "/realistic.json")
    ct.write(SRV + "/test-env.json", json.dumps({"description": "test_systemd.py: a second environment",
                                                 "environments": [TEST_ENV]}))
    ct.copy_in(os.path.join(HERE, "unit_probe.py"), SRV + "/unit_probe.py", 0o755)
    scenarios = [SRV + "/realistic.json", SRV + "/test-env.json"]
    tls = dvsim_endpoint.supports_tls(os.path.join(SOURCE, "tests", "dvsim", "dvsim.py"))
    s["tls"] = tls
    print("dvsim: " + dvsim_endpoint.describe(tls), flush=True)
    ct.run("mkdir", "-p", SRV + "/run")
    ct.run("systemd-run", "--unit=dvsim", "--property=Type=exec", "--",
           *dvsim_endpoint.command(SRV + "/dvsim/dvsim.py", scenarios, SRV + "/run", tls, "/usr/bin/python3"))
    ct.wait_for("dvsim.service ready", lambda: dvsim_endpoint.ready(SRV + "/run", tls, ct.root))
    data = dvsim_endpoint.info(SRV + "/run", tls, scenarios, ct.root)
    if data.get("ca_file"):
        ct.copy_in(ct.path(data["ca_file"]), CA)
        data["ca_file"] = CA
    s["dvsim"] = data

    # PID 1 at debug level: the notifications it accepts get logged; no
    # rate limit in the container's journald, so that none is dropped.
    ct.write("/etc/systemd/journald.conf.d/zz-test.conf", "[Journal]\nRateLimitBurst=0\n")
    ct.run("systemctl", "restart", "systemd-journald")
    ct.run("systemd-analyze", "log-level", "debug")
    out = ct.install_deb(DEB)
    expect("Setting up s3mond" in out, "apt did not set up s3mond:\n" + out[-1500:])
    for env, secret in SECRETS.items():
        ct.write("/etc/s3mond/%s.secret" % env, secret + "\n", 0o600)
    ct.write(CONF, conf_text(["prod"]))
    return "dvsim over %s; s3mond %s installed" % ("HTTPS" if tls else "HTTP", ctlib.deb_field(DEB, "Version"))


def credential_required():
    r = ct.run("systemctl", "start", "s3mond", check=False)
    expect(r.returncode != 0, "s3mond started without its credential")
    st = ct.show("s3mond", "Result", "ExecMainStatus", "NRestarts", "ActiveState")
    expect(st["ExecMainStatus"] == "78" and st["Result"] == "exit-code" and st["NRestarts"] == "0",
           "without LoadCredential=: %s (exit 78, result exit-code, no restart expected)" % st)
    said = [e for e in unit_says("s3mond", "client_secret_file: cannot ")
            if "/etc/s3mond/prod.secret: Permission denied" in e["MESSAGE"]]
    expect(said, "no message naming the unreadable secret:\n" + ct.unit_log("s3mond"))
    ct.run("systemctl", "reset-failed", "s3mond")
    return "exit 78, %s" % said[0]["MESSAGE"]


def start_ready():
    # README's drop-in, as `systemctl edit s3mond` would write it.
    ct.write(DROPIN + "/credentials.conf", "[Service]\nLoadCredential=prod.secret:/etc/s3mond/prod.secret\n"
             "LoadCredential=test.secret:/etc/s3mond/test.secret\n")
    ct.daemon_reload()
    s["cursor0"] = cursor()
    ct.run("systemctl", "start", "s3mond")
    st = ct.show("s3mond", "ActiveState", "SubState", "Type", "MainPID", "NotifyAccess")
    expect((st["ActiveState"], st["SubState"], st["Type"]) == ("active", "running", "notify"),
           "after systemctl start: %s\n%s" % (st, ct.unit_log("s3mond")))
    ready = notifications(st["MainPID"], "READY=1", s["cursor0"])
    expect(ready, "PID 1 logged no READY=1 from the main PID %s" % st["MainPID"])
    s["pid"] = st["MainPID"]
    return "active (running), Type=notify, PID 1 got (%s) from PID %s" % (ready[0], st["MainPID"])


def status_line():
    n = {v: sum(1 for e in EXPECTED if e["verdict"] == v) for v in ("confirmed", "suspected", "unexplained")}
    want = (r"^1 environment: 1 ok, 0 failing; findings: %d confirmed, %d suspected, %d unexplained; %d open, "
            r"0 resolved$" % (n["confirmed"], n["suspected"], n["unexplained"], len(EXPECTED)))
    text = wait_status("s3mond", want, "the first cycle")
    out = ct.run("systemctl", "status", "--no-pager", "-n", "0", "s3mond", check=False).stdout
    expect('Status: "%s"' % text in out, "systemctl status shows no Status line %r:\n%s" % (text, out))
    return 'Status: "%s"' % text


def journal_findings():
    got = findings("_SYSTEMD_UNIT=s3mond.service")
    by_alert = {e["S3MOND_ALERT_ID"]: e for e in got}
    expect(sorted(by_alert) == sorted(x["alert"] for x in EXPECTED) and len(got) == len(EXPECTED),
           "findings for alerts %s (%d entries), expected %s" % (sorted(by_alert), len(got),
                                                                 sorted(x["alert"] for x in EXPECTED)))
    uid = int(proc_status(s["pid"])["Uid"].split()[0])
    for x in EXPECTED:
        e = by_alert[x["alert"]]
        want_fields = FIELDS if x["culprits"] else FIELDS[:-1]
        missing = [f for f in want_fields if f not in e]
        expect(not missing, "finding of %s lacks %s" % (x["alert"], missing))
        expect(x["culprits"] or "S3MOND_CULPRIT" not in e, "unexplained finding %s names culprits" % x["alert"])
        seen = {"env": e["S3MOND_ENVIRONMENT"], "mailbox": e["S3MOND_MAILBOX_ID"], "verdict": e["S3MOND_VERDICT"],
                "code": e["S3MOND_ERROR_CODE"], "priority": e["PRIORITY"], "ident": e["SYSLOG_IDENTIFIER"],
                "culprits": sorted(c.split(":")[1] for c in as_list(e.get("S3MOND_CULPRIT", [])))}
        want = {"env": "prod", "mailbox": x["mailbox"], "verdict": x["verdict"], "code": "-2147220956",
                "priority": "4", "ident": "s3mond", "culprits": sorted(x["culprits"])}
        expect(seen == want, "finding of alert %s: %s, expected %s" % (x["alert"], seen, want))
        expect(e["S3MOND_FINDING_ID"].startswith("prod") and e["S3MOND_MAILBOX_NAME"],
               "finding id %r, mailbox name %r" % (e["S3MOND_FINDING_ID"], e["S3MOND_MAILBOX_NAME"]))
        expect(int(e["_UID"]) == uid, "finding logged by uid %s, the service runs as %d" % (e["_UID"], uid))
    everything = ct.out("journalctl", "--no-pager", "-o", "export")
    leaked = [env for env, secret in SECRETS.items() if secret in everything]
    expect(not leaked, "the client secret of %s is in the journal" % leaked)
    return "%d findings, every field, values as realistic.json expects; no secret in the journal; %s" % (
        len(got), transport())


def catalog_text():
    out = ct.out("journalctl", "--no-pager", "-x", "-n", "1", "MESSAGE_ID=" + FINDING_ID)
    for text in ("Subject: A mailbox cannot receive mail: synchronous custom code failed in Dataverse",
                 "Defined-By: s3mond", "What to do: for a real-time workflow"):
        expect(text in out, "journalctl -x lacks %r:\n%s" % (text, out))
    return "journalctl -x: " + re.search(r"Subject: .*", out).group(0)


def credential_delivered():
    environ = ct.read("/proc/%s/environ" % s["pid"], binary=True).split(b"\0")
    env = dict(v.decode().split("=", 1) for v in environ if b"=" in v)
    cdir = env.get("CREDENTIALS_DIRECTORY")
    expect(cdir == "/run/credentials/s3mond.service", "CREDENTIALS_DIRECTORY=%r" % cdir)
    names = sorted(os.listdir(ct.path(cdir)))
    expect(names == ["prod.secret", "test.secret"], "credentials: %s" % names)
    uid = int(proc_status(s["pid"])["Uid"].split()[0])
    st = os.stat(ct.path(cdir + "/prod.secret"))
    # systemd 252: the files belong to the service's user, read-only.
    expect(st.st_uid == uid and (st.st_mode & 0o777) == 0o400,
           "prod.secret: uid %d mode %o (the service's uid %d, 0400 expected)" % (st.st_uid, st.st_mode & 0o777, uid))
    expect(ct.read(cdir + "/prod.secret") == SECRETS["prod"] + "\n", "the credential is not the secret")
    expect((os.stat(ct.path("/etc/s3mond/prod.secret")).st_mode & 0o777) == 0o600,
           "the source secret is not 0600")
    return "%s holds %s (0400, the service's uid); the token worked" % (cdir, ", ".join(names))


def state_dynamic_user():
    uid = int(proc_status(s["pid"])["Uid"].split()[0])
    expect(uid in DYNAMIC_UIDS, "the service runs as uid %d, not a DynamicUser= uid" % uid)
    passwd = ct.read("/etc/passwd")
    expect(not re.search(r"^[^:]*:[^:]*:%d:" % uid, passwd, re.M), "uid %d is in /etc/passwd" % uid)
    link = ct.path("/var/lib/s3mond")
    expect(os.path.islink(link) and os.readlink(link) == "private/s3mond",
           "/var/lib/s3mond is not a link to private/s3mond")
    priv = os.stat(ct.path("/var/lib/private"))
    expect(priv.st_uid == 0 and (priv.st_mode & 0o777) == 0o700, "/var/lib/private: uid %d mode %o"
           % (priv.st_uid, priv.st_mode & 0o777))
    d = ct.path("/var/lib/private/s3mond")
    st = os.stat(d)
    expect(st.st_uid == uid and (st.st_mode & 0o777) == 0o700,
           "/var/lib/private/s3mond: uid %d mode %o" % (st.st_uid, st.st_mode & 0o777))
    files = sorted(os.listdir(d))
    expect("prod.state" in files, "no prod.state in /var/lib/private/s3mond: %s" % files)
    for n in files:
        fs = os.stat(os.path.join(d, n))
        expect(fs.st_uid == uid and (fs.st_mode & 0o777) == 0o600,
               "%s: uid %d mode %o" % (n, fs.st_uid, fs.st_mode & 0o777))
    user = ct.run("getent", "passwd", str(uid), check=False).stdout.strip()
    return "uid %d (%s), /var/lib/private/s3mond: %s" % (uid, user or "no NSS entry", " ".join(files))


def hardening_outside(unit="s3mond"):
    pid = main_pid(unit)
    st = proc_status(pid)
    got = {k: st[k] for k in ("NoNewPrivs", "Seccomp", "CapEff", "CapPrm", "CapBnd", "CapAmb", "Umask")}
    want = {"NoNewPrivs": "1", "Seccomp": "2", "CapEff": "0" * 16, "CapPrm": "0" * 16, "CapBnd": "0" * 16,
            "CapAmb": "0" * 16, "Umask": "0077"}
    expect(got == want, "%s's main process: %s, expected %s" % (unit, got, want))
    expect(int(st.get("Seccomp_filters", "0")) >= 1, "no seccomp filter")
    same = [n for n in ("mnt", "uts", "user") if os.readlink(ct.path("/proc/%s/ns/%s" % (pid, n))) ==
            os.readlink(ct.path("/proc/1/ns/%s" % n))]
    expect(not same, "%s shares the %s namespace(s) of PID 1" % (unit, same))
    mounts = {}
    with open(ct.path("/proc/%s/mountinfo" % pid)) as f:
        for line in f:
            a, _, b = line.partition(" - ")
            fl = a.split()
            mounts[fl[4]] = (fl[5], b.split()[0], b.split()[2] if len(b.split()) > 2 else "", fl[3])
    problems = []
    if not mounts["/"][0].startswith("ro"):
        problems.append("/ is %s" % mounts["/"][0])
    for d in ("/tmp", "/var/tmp"):
        if "/systemd-private-" not in mounts.get(d, ("", "", "", ""))[3]:
            problems.append("no private %s" % d)
    if "hidepid=invisible" not in mounts["/proc"][2] or "subset=pid" not in mounts["/proc"][2]:
        problems.append("/proc: %s" % mounts["/proc"][2])
    if mounts.get("/dev", ("", "", ""))[1] != "tmpfs":
        problems.append("/dev is not a private tmpfs")
    # Writable mounts: the state directory and the private /tmp, /var/tmp;
    # besides, ConfigurationDirectory= (/etc/s3mond, root's, 0755: not the
    # user's to write), /dev's pseudo-file systems, and nspawn's own
    # /run/host entries (overmounted read-only).
    rw = sorted(m for m, v in mounts.items() if not v[0].startswith("ro") and not m.startswith(("/proc", "/dev/"))
                and m not in ("/tmp", "/var/tmp", "/etc/s3mond") and not m.startswith("/run/host/"))
    if rw != ["/var/lib/private/s3mond"]:
        problems.append("writable mounts besides /tmp, /var/tmp: %s" % rw)
    expect(not problems, "%s's mounts: %s" % (unit, "; ".join(problems)))
    return "PID %s: NoNewPrivs 1, Seccomp 2 (%s filters), no capabilities, umask 0077, own mnt/uts/user " \
           "namespaces, / read-only, writable only %s and a private /tmp" % (pid, st["Seccomp_filters"], rw[0])


def reload_good():
    ct.write(CONF, conf_text(["prod", "test"]))
    c = cursor()
    ct.run("systemctl", "reload", "s3mond")
    said = ct.wait_for("'configuration reloaded' in the journal",
                       lambda: unit_says("s3mond", "configuration reloaded from %s: 2 environment(s)" % CONF, c))
    expect(main_pid() == s["pid"], "the main PID changed on reload")
    expect(notifications(s["pid"], "RELOADING=1", c), "PID 1 logged no RELOADING=1")
    wait_status("s3mond", r"^2 environments: 2 ok, 0 failing", "after the reload")
    return said[0]["MESSAGE"]


def reload_bad():
    ct.write(CONF, conf_text(["prod", "test"]).replace("interval = 2s", "interval = 2s\nlookback = soon"))
    c = cursor()
    ct.run("systemctl", "reload", "s3mond")
    said = ct.wait_for("the refused reload in the journal",
                       lambda: unit_says("s3mond", "reload: keeping the running configuration: %s:3:" % CONF, c))
    st = ct.show("s3mond", "ActiveState", "MainPID")
    expect(st == {"ActiveState": "active", "MainPID": s["pid"]}, "after a bad reload: %s" % st)
    alert = new_alert("test", "Reload")
    wait_finding(alert)
    ct.write(CONF, conf_text(["prod", "test"]))       # the good file again, for the restarts to come
    return "%s; a new alert of 'test' still reported" % said[0]["MESSAGE"]


def watchdog_restart():
    ct.write(DROPIN + "/watchdog.conf", "[Service]\nWatchdogSec=2s\n")
    ct.daemon_reload()
    ct.run("systemctl", "restart", "s3mond")      # WATCHDOG_USEC is given at exec
    pid = main_pid()
    expect(ct.show("s3mond", "WatchdogUSec")["WatchdogUSec"] == "2s", "the drop-in's WatchdogSec= is not in effect")
    wait_status("s3mond", r"^2 environments: 2 ok", "the restarted daemon's first cycle")
    restarts = int(ct.show("s3mond", "NRestarts")["NRestarts"])
    c = cursor()
    ct.run("kill", "-STOP", pid)
    new = ct.wait_for("a new main PID after the watchdog fired",
                      lambda: (lambda p: p not in ("0", pid) and ct.show("s3mond", "ActiveState")["ActiveState"]
                               == "active" and p)(main_pid()), guard=90)
    expect(unit_says("s3mond", "Watchdog timeout", c), "PID 1 logged no watchdog timeout:\n" + ct.unit_log("s3mond"))
    killed = unit_says("s3mond", "Main process exited, code=killed, status=6/ABRT", c)
    expect(killed, "the hung process was not killed with SIGABRT:\n" + ct.unit_log("s3mond"))
    got = int(ct.show("s3mond", "NRestarts")["NRestarts"])
    expect(got == restarts + 1, "NRestarts %d, expected %d" % (got, restarts + 1))
    s["pid"] = new
    alert = new_alert("prod", "Watchdog")
    wait_finding(alert)
    wait_status("s3mond", r"^2 environments: 2 ok", "a cycle after the new finding")
    n = once_each(findings())
    os.unlink(ct.path(DROPIN + "/watchdog.conf"))
    ct.daemon_reload()
    return "SIGSTOPped PID %s killed (ABRT) and restarted as %s; new alert reported; %d findings, none twice" \
        % (pid, new, n)


def stop_clean():
    c = cursor()
    pid = main_pid()
    ct.run("systemctl", "stop", "s3mond")
    st = ct.show("s3mond", "ActiveState", "Result", "ExecMainCode", "ExecMainStatus")
    expect(st == {"ActiveState": "inactive", "Result": "success", "ExecMainCode": "1", "ExecMainStatus": "0"},
           "after systemctl stop: %s (inactive, success, exited 0 expected)" % st)
    expect(notifications(pid, "STOPPING=1", c), "PID 1 logged no STOPPING=1 from PID %s" % pid)
    expect(unit_says("s3mond", "Terminated: stopping", c), "s3mond did not say it was stopping")
    return "STOPPING=1, exited 0, result success"


# option -> (observation, what the unit must show, what proves it) for the probe.
def probe_table(inside, control, shm_gone, control_shm_left):
    si, sc = inside["syscalls"], control["syscalls"]
    rows = []

    def row(option, ok, seen, note="", apart=True):
        """apart=False: the container cannot show this option's effect apart
        from the others (note says why); ok then checks what can be seen."""
        rows.append((option, ok, seen, note, apart))

    row("DynamicUser=yes", inside["uid"] in DYNAMIC_UIDS, "uid %d" % inside["uid"])
    row("UMask=0077", inside["status"]["Umask"] == "0077", "Umask %s (control %s)"
        % (inside["status"]["Umask"], control["status"]["Umask"]))
    row("CapabilityBoundingSet=", inside["status"]["CapBnd"] == "0" * 16,
        "CapBnd %s (control %s)" % (inside["status"]["CapBnd"], control["status"]["CapBnd"]))
    row("AmbientCapabilities=", inside["status"]["CapAmb"] == "0" * 16, "CapAmb %s" % inside["status"]["CapAmb"],
        "empty is also the default")
    row("NoNewPrivileges=yes", inside["status"]["NoNewPrivs"] == "1",
        "NoNewPrivs %s (control %s)" % (inside["status"]["NoNewPrivs"], control["status"]["NoNewPrivs"]))
    system = ("/usr", "/etc", "/var/lib", "/run/lock", "/dev/shm")
    row("ProtectSystem=strict, ReadOnlyPaths=/run /dev/shm",
        all(inside["write"][d] == "EROFS" and control["write"][d] != "EROFS" for d in system)
        and inside["write"][inside["scratch"]] == "ok",
        "write in %s: %s (control %s); in %s: %s" % (
            ", ".join(system), "/".join(sorted({inside["write"][d] for d in system})),
            "/".join(sorted({control["write"][d] for d in system})), inside["scratch"],
            inside["write"][inside["scratch"]]))
    row("ProtectHome=yes", inside["home"]["/home"] in ("EACCES", "EPERM") and isinstance(control["home"]["/home"], int),
        "/home: %s (control %s)" % (inside["home"]["/home"], control["home"]["/home"]))
    row("PrivateTmp=yes", not inside["tmp_marker"] and control["tmp_marker"] and inside["write"]["/tmp"] == "ok",
        "/tmp/%s seen: %s (control %s), /tmp writable: %s" % (MARKER, inside["tmp_marker"], control["tmp_marker"],
                                                                inside["write"]["/tmp"]))
    row("PrivateDevices=yes", "console" not in inside["dev"] and "console" in control["dev"]
        and set(inside["dev"]) >= {"null", "zero", "urandom"},
        "/dev: %s (control has %d entries, console among them)" % (" ".join(inside["dev"]), len(control["dev"])))
    row("PrivateUsers=yes", inside["ns"]["user"] != control["ns"]["user"] and inside["uid_map"] != control["uid_map"],
        "uid_map %r (control %r)" % (inside["uid_map"], control["uid_map"]))
    row("PrivateMounts=yes", inside["ns"]["mnt"] != control["ns"]["mnt"], "%s (control %s)"
        % (inside["ns"]["mnt"], control["ns"]["mnt"]), "a mount namespace of its own (implied by the options above)")
    row("ProtectHostname=yes", inside["ns"]["uts"] != control["ns"]["uts"],
        "%s (control %s)" % (inside["ns"]["uts"], control["ns"]["uts"]))
    row("ProtectClock=yes", si["adjtimex_read"] == "EPERM" and sc["adjtimex_read"] == "ok",
        "adjtimex(read): %s (control %s)" % (si["adjtimex_read"], sc["adjtimex_read"]))
    row("ProtectKernelTunables=yes", inside["readonly"]["/sys"] is True,
        "/sys read-only: %s (control %s); /proc/sys: %s" % (inside["readonly"]["/sys"], control["readonly"]["/sys"],
                                                           "hidden" if not inside["proc"]["sys"] else "visible"),
        *(("",) if control["readonly"]["/sys"] is False else ("the container's /sys is read-only already", False)))
    row("ProtectKernelModules=yes", inside["home"]["/usr/lib/modules"] in ("EACCES", "EPERM")
        and isinstance(control["home"]["/usr/lib/modules"], int),
        "/usr/lib/modules: %s (control %s)" % (inside["home"]["/usr/lib/modules"], control["home"]["/usr/lib/modules"]))
    row("ProtectKernelLogs=yes", si["syslog_size"] == "EPERM" and not inside["proc"]["kmsg"] and "kmsg" not in inside["dev"],
        "syslog(2): %s (control %s), /proc/kmsg hidden" % (si["syslog_size"], sc["syslog_size"]),
        *(("",) if sc["syslog_size"] == "ok" else
          ("syslog(2) is refused to the control too (kernel.dmesg_restrict=1); /proc/kmsg and /dev/kmsg are "
           "absent anyway (ProcSubset=pid, PrivateDevices=)", False)))
    row("ProtectControlGroups=yes", inside["readonly"]["/sys/fs/cgroup"] is True,
        "/sys/fs/cgroup read-only: %s (control %s)" % (inside["readonly"]["/sys/fs/cgroup"],
                                                       control["readonly"]["/sys/fs/cgroup"]),
        *(("",) if control["readonly"]["/sys/fs/cgroup"] is False else
          ("the container's /sys/fs/cgroup is read-only already", False)))
    row("ProtectProc=invisible", not inside["proc"]["pid1_visible"] and control["proc"]["pid1_visible"]
        and "hidepid=invisible" in inside["proc"]["mount"][1],
        "/proc/1 visible: %s (control %s); %s" % (inside["proc"]["pid1_visible"], control["proc"]["pid1_visible"],
                                                  inside["proc"]["mount"][1]))
    row("ProcSubset=pid", not inside["proc"]["meminfo"] and control["proc"]["meminfo"],
        "/proc/meminfo visible: %s (control %s)" % (inside["proc"]["meminfo"], control["proc"]["meminfo"]))
    row("RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        si["socket_netlink"] == "EAFNOSUPPORT" and sc["socket_netlink"] == "ok" and si["socket_packet"] == "EAFNOSUPPORT"
        and all(si[k] == "ok" for k in ("socket_inet", "socket_inet6", "socket_unix")),
        "netlink %s (control %s), packet %s (control %s), inet/inet6/unix ok"
        % (si["socket_netlink"], sc["socket_netlink"], si["socket_packet"], sc["socket_packet"]))
    row("RestrictNamespaces=yes", si["unshare_user"] == "EPERM" and sc["unshare_user"] == "ok",
        "unshare(CLONE_NEWUSER): %s (control %s)" % (si["unshare_user"], sc["unshare_user"]))
    row("RestrictRealtime=yes", si["sched_fifo"] == "EPERM",
        "SCHED_FIFO: %s (control %s)" % (si["sched_fifo"], sc["sched_fifo"]),
        *(("",) if sc["sched_fifo"] == "ok" else
          ("the container cannot raise RLIMIT_RTPRIO (no CAP_SYS_RESOURCE), so SCHED_FIFO is refused to the "
           "control too", False)))
    row("RestrictSUIDSGID=yes", si["chmod_suid"] == "EPERM" and sc["chmod_suid"] == "ok",
        "chmod 4755 of its own file: %s (control %s)" % (si["chmod_suid"], sc["chmod_suid"]))
    row("LockPersonality=yes", si["personality_linux32"] == "EPERM" and sc["personality_linux32"] == "ok",
        "personality(PER_LINUX32): %s (control %s)" % (si["personality_linux32"], sc["personality_linux32"]))
    row("MemoryDenyWriteExecute=yes", si["mmap_wx"] == "EPERM" and sc["mmap_wx"] == "ok",
        "mmap(W|X): %s (control %s)" % (si["mmap_wx"], sc["mmap_wx"]))
    row("RemoveIPC=yes", shm_gone and control_shm_left,
        "its SysV segment removed at exit: %s (control's left: %s)" % (shm_gone, control_shm_left))
    row("KeyringMode=private", si["session_keyring"] == "EPERM" or (
        si["session_keyring"].endswith(";_ses") and sc["session_keyring"] != si["session_keyring"]),
        "session keyring: %s (control %r)" % (si["session_keyring"], sc["session_keyring"]),
        *(("keyctl(2) is outside @system-service: SystemCallFilter= refuses it, so no keyring can be reached to "
           "tell private from shared", False) if si["session_keyring"] == "EPERM" else
          ("an anonymous keyring, not the user's",)))
    row("DevicePolicy=closed", set(inside["dev"]) <= {"char", "core", "fd", "full", "log", "mqueue", "null", "ptmx", "pts",
                                                      "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom",
                                                      "zero", "hugepages"},
        "no device node but the pseudo-devices", "PrivateDevices= leaves no real device to try, and the "
        "container's systemd gets no devices cgroup controller (no resource control there)", False)
    row("SystemCallArchitectures=native", si["int80_getpid"] != "pid",
        "i386 getpid via int 0x80: %s (control %s)" % (si["int80_getpid"], sc["int80_getpid"]),
        *(("",) if sc["int80_getpid"] == "pid" else
          ("the kernel has no 32-bit system call entry (the control dies the same way): only the filter's "
           "presence is seen", False)))
    deny = {"setpriority": "@resources", "ptrace_traceme": "@debug", "sysfs": "@obsolete",
            "modify_ldt_read": "@cpu-emulation", "setuid_self": "@privileged", "chown_self": "@privileged (@chown)"}
    row("SystemCallFilter=@system-service ~...", all(si[k] == "EPERM" and sc[k] == "ok" for k in deny),
        ", ".join("%s %s: %s (control %s)" % (g, k, si[k], sc[k]) for k, g in deny.items()),
        "SystemCallErrorNumber=EPERM: refused calls fail with EPERM")
    return rows


def hardening_probe():
    ct.write("/tmp/" + MARKER, "outside\n")
    if not ct.exists("/usr/lib/modules"):     # so that there is something to hide
        ct.run("mkdir", "-p", "/usr/lib/modules/s3mond-test")
    ct.write(DROPIN + "/zz-probe.conf", "[Service]\nType=oneshot\nExecStart=\nExecStart=/usr/bin/python3 "
             "%s/unit_probe.py ${STATE_DIRECTORY}/probe.json %s ${STATE_DIRECTORY}\nRestart=no\nWatchdogSec=0\n"
             % (SRV, MARKER))
    ct.daemon_reload()
    try:
        ct.run("systemctl", "start", "s3mond")
        inside = json.loads(ct.read("/var/lib/private/s3mond/probe.json"))
        os.unlink(ct.path("/var/lib/private/s3mond/probe.json"))
    finally:
        os.unlink(ct.path(DROPIN + "/zz-probe.conf"))
        ct.daemon_reload()
    ct.run("mkdir", "-p", "-m", "1777", "/tmp/probe-control")
    ct.run("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
           "/usr/bin/python3", SRV + "/unit_probe.py", "/tmp/probe-control/control.json", MARKER, "/tmp/probe-control")
    control = json.loads(ct.read("/tmp/probe-control/control.json"))
    segments = [l.split()[1] for l in ct.out("cat", "/proc/sysvipc/shm").splitlines()[1:]]
    shm_gone = inside["shm_id"] is not None and str(inside["shm_id"]) not in segments
    control_left = control["shm_id"] is not None and str(control["shm_id"]) in segments
    if control["shm_id"] is not None:
        ct.run("ipcrm", "-m", str(control["shm_id"]), check=False)
    rows = probe_table(inside, control, shm_gone, control_left)
    s["probe_rows"] = rows
    print("hardening of s3mond.service, seen from inside (control: the same probe as nobody outside):")
    for option, ok, seen, note, apart in rows:
        print("  %-4s %-44s %s%s" % ("ok" if ok else "FAIL", option, seen,
                                     (" [%s%s]" % ("" if apart else "not provable apart here: ", note)) if note else ""))
    failed = [r[0] for r in rows if not r[1]]
    expect(not failed, "not in effect: %s" % failed)
    caveats = [r[0].split("=")[0] for r in rows if not r[4]]
    return "%d options in effect%s" % (len(rows), ("; not provable apart here: " + ", ".join(caveats)) if caveats else "")


def template_instance():
    ct.write("/etc/systemd/system/s3mond@.service.d/credentials.conf",
             "[Service]\nLoadCredential=%i.secret:/etc/s3mond/%i.secret\n")
    ct.daemon_reload()
    c = cursor()
    ct.run("systemctl", "start", "s3mond@prod")
    st = ct.show("s3mond@prod", "ActiveState", "SubState", "MainPID", "ExecStart")
    expect((st["ActiveState"], st["SubState"]) == ("active", "running"),
           "s3mond@prod: %s\n%s" % (st, ct.unit_log("s3mond@prod")))
    expect("argv[]=/usr/sbin/s3mond -e prod " in st["ExecStart"], "ExecStart: %s" % st["ExecStart"])
    creds = sorted(os.listdir(ct.path("/run/credentials/s3mond@prod.service")))
    expect(creds == ["prod.secret"], "s3mond@prod's credentials: %s" % creds)
    expect(unit_says("s3mond@prod", "watching 1 environment(s)", c), "s3mond@prod does not watch one environment")
    wait_status("s3mond@prod", r"^1 environment: 1 ok, 0 failing", "s3mond@prod's first cycle")
    mine, other = new_alert("prod", "Instance"), new_alert("test", "NotMine")
    wait_finding(mine, "s3mond@prod.service")
    # Two more cycles: the other environment's alert would be in by then.
    pid = main_pid("s3mond@prod")
    c2 = cursor()
    ct.wait_for("two more STATUS updates of s3mond@prod", lambda: len(notifications(pid, "STATUS=", c2)) >= 2)
    expect(not findings("S3MOND_ALERT_ID=" + other), "s3mond@prod reported environment test's alert")
    envs = {e["S3MOND_ENVIRONMENT"] for e in findings("_SYSTEMD_UNIT=s3mond@prod.service")}
    expect(envs == {"prod"}, "s3mond@prod reported environments %s" % envs)
    note = hardening_outside("s3mond@prod")
    n = once_each(findings())
    ct.run("systemctl", "stop", "s3mond@prod")
    return "-e prod, prod.secret only, one environment; its new alert reported, test's not; %d findings in all, " \
           "none twice; %s" % (n, note.split(":")[0])


sys.exit(checks.run_all(
    ("setup", setup, "fatal"),
    ("credential-required", credential_required),
    ("start-ready", start_ready, "fatal"),
    ("status-line", status_line),
    ("journal-findings", journal_findings),
    ("catalog-text", catalog_text),
    ("credential-delivered", credential_delivered),
    ("state-dynamic-user", state_dynamic_user),
    ("hardening-seen-from-outside", hardening_outside),
    ("reload-good", reload_good),
    ("reload-bad", reload_bad),
    ("watchdog-restart", watchdog_restart),
    ("stop-clean", stop_clean),
    ("hardening-probe", hardening_probe),
    ("template-instance", template_instance),
))
