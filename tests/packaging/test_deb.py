#!/usr/bin/env python3
"""The Debian package installed, upgraded, removed and purged with apt, in a
throw-away container booted by nspawn-boot.sh (never on the host).

usage (as root): test_deb.py SOURCE_ROOT WORKDIR

The package comes from build-deb.sh in WORKDIR (DEB_BUILD_OPTIONS=nocheck),
with the same tree one changelog version up for the upgrade; WORKDIR/cache
keeps the .debs of the runtime libraries (from the host's apt cache, else
`apt-get download`) across runs.

Checks, in order:
- lintian: lintian-check.sh (no error, no warning, every override with its
  reason and still needed).
- package-metadata: the version is meson's project version; the newer
  package sorts after it; Depends names the package of every library the
  binary links (what ${shlibs:Depends} gives); the file list; the conffile;
  the maintainer scripts enable s3mond.service, never the template.
- docs-match-package: README's table of what the package installs names
  exactly the package's files, and s3mond(8) as packaged (FILES) gives the
  paths the package uses.
- clean-system: in the container, the runtime libraries s3mond links (all
  but libc6 and libsystemd0, which systemd itself needs) and whatever
  depends on them are removed, and the catalog knows no s3mond message.
- apt-install-pulls-libraries: `apt install ./s3mond_*.deb` brings them back
  (from the archive cache: the container is offline) and the binary runs.
- installed-state: the units are installed, s3mond.service enabled but not
  started, the template neither; the conffile; the man pages; systemd's
  trigger put the catalog's three messages into journalctl's database.
- autopkgtest-smoke: debian/tests/smoke (the autopkgtest), run as
  autopkgtest runs it: in a copy of the source tree, with AUTOPKGTEST_TMP,
  and nothing on stderr (its control file allows none).
- configure-and-start: the administrator's edits (README: the example
  edited, the secret as a LoadCredential= drop-in), `systemctl start`:
  active, and its state directory /var/lib/private/s3mond exists.
- upgrade-keeps-configuration: `apt install` of the newer package keeps the
  edited /etc/s3mond/s3mond.conf byte for byte (no .dpkg-* file either) and
  restarts the running service (new main PID).
- upgrade-restarts-instances: with s3mond@prod running instead, a
  reinstall restarts it and leaves s3mond.service stopped.
- remove-stops-everything: `apt remove` stops the instance; the
  configuration and the state stay.
- purge-removes-configuration-and-state: `apt purge` removes
  /etc/s3mond/s3mond.conf, /var/lib/private/s3mond, the /var/lib/s3mond
  link and the enablement; the administrator's secret and drop-ins stay.
"""
import glob
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ctlib  # noqa: E402
from ctlib import expect  # noqa: E402

SOURCE, WORK = (os.path.abspath(a) for a in sys.argv[1:3])
DEB, NEXT_DEB = ctlib.build_debs(SOURCE, WORK)
CACHE = os.path.join(WORK, "cache")
ctlib.boot(__file__)
KEEP = {"libc6", "libsystemd0"}       # systemd (PID 1 in the container) needs them
SECRET = "deb-test-secret-0123456789"
EDIT = "# edited by test_deb.py: the administrator's configuration\n"
os.makedirs(CACHE, exist_ok=True)
ct = ctlib.Container()
checks = ctlib.Checks("deb")
state = {}


def host(*argv):
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def meson_version():
    with open(os.path.join(SOURCE, "meson.build")) as f:
        return re.search(r"version\s*:\s*'([^']+)'", f.read()).group(1)


def needed_packages():
    """soname -> the installed package that provides it, for the libraries
    the packaged binary links (DT_NEEDED)."""
    tmp = os.path.join(CACHE, "extract")
    shutil.rmtree(tmp, ignore_errors=True)
    host("dpkg-deb", "-x", DEB, tmp)
    sonames = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                         host("readelf", "-d", os.path.join(tmp, "usr/sbin/s3mond")))
    shutil.rmtree(tmp)
    cache = host("ldconfig", "-p")
    out = {}
    for so in sonames:
        m = re.search(r"^\s*%s \(libc6,x86-64\) => (\S+)$" % re.escape(so), cache, re.M) or \
            re.search(r"^\s*%s \([^)]*\) => (\S+)$" % re.escape(so), cache, re.M)
        expect(m, "ldconfig -p does not know %s" % so)
        path = os.path.realpath(m.group(1))
        owner = None
        for p in (path, m.group(1), "/usr" + path if not path.startswith("/usr") else path[4:]):
            r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
            if r.returncode == 0:
                owner = r.stdout.split(":")[0].strip()
                break
        expect(owner, "no installed package owns %s (%s)" % (so, path))
        out[so] = owner
    return out


def depends_names(deb):
    return {d.strip().split()[0].split(":")[0] for alt in ctlib.deb_field(deb, "Depends").split(",")
            for d in alt.split("|")}


EXPECTED_FILES = {
    "/etc/s3mond/s3mond.conf", "/lib/systemd/system/s3mond.service", "/lib/systemd/system/s3mond@.service",
    "/usr/lib/systemd/catalog/s3mond.catalog", "/usr/sbin/s3mond", "/usr/share/doc/s3mond/README.md.gz",
    "/usr/share/doc/s3mond/changelog.Debian.gz", "/usr/share/doc/s3mond/copyright",
    "/usr/share/man/man5/s3mond.conf.5.gz", "/usr/share/man/man8/s3mond.8.gz", "/usr/share/s3mond/s3mond.conf",
    "/usr/share/lintian/overrides/s3mond",
}


def lintian():
    r = subprocess.run([os.path.join(ctlib.HERE, "lintian-check.sh"), SOURCE, DEB], capture_output=True, text=True)
    print(r.stdout, end="")
    expect(r.returncode == 0, "lintian-check.sh exited %d:\n%s%s" % (r.returncode, r.stdout, r.stderr))
    infos = [l for l in r.stdout.splitlines() if l[:2] in ("I:", "P:")]
    return "no error, no warning; %d info/pedantic tag(s); %s" % (
        len(infos), "; ".join(l for l in r.stdout.splitlines() if l.startswith("override ")))


def package_metadata():
    version = ctlib.deb_field(DEB, "Version")
    nxt = ctlib.deb_field(NEXT_DEB, "Version")
    expect(version.rsplit("-", 1)[0] == meson_version(),
           "debian/changelog's version %s is not meson.build's %s (add a changelog entry)"
           % (version, meson_version()))
    expect(subprocess.run(["dpkg", "--compare-versions", nxt, "gt", version]).returncode == 0,
           "the upgrade package's version %s does not sort after %s" % (nxt, version))
    needed = needed_packages()
    state["needed"] = needed
    deps = depends_names(DEB)
    missing = {so: p for so, p in needed.items() if p not in deps}
    expect(not missing, "Depends (%s) lacks the package of linked libraries: %s"
           % (ctlib.deb_field(DEB, "Depends"), missing))
    listing = host("dpkg-deb", "-c", DEB)
    files = {l.split(None, 5)[5].lstrip(".").split(" -> ")[0] for l in listing.splitlines()
             if not l.startswith("d")}
    expect(files == EXPECTED_FILES, "the package's files differ: extra %s, missing %s"
           % (sorted(files - EXPECTED_FILES), sorted(EXPECTED_FILES - files)))
    modes = {l.split(None, 5)[5].lstrip("."): l.split()[0] for l in listing.splitlines()}
    expect(modes["/usr/sbin/s3mond"] == "-rwxr-xr-x" and modes["/etc/s3mond/s3mond.conf"] == "-rw-r--r--",
           "modes: %s" % {k: modes[k] for k in ("/usr/sbin/s3mond", "/etc/s3mond/s3mond.conf")})
    ctl = os.path.join(CACHE, "control")
    shutil.rmtree(ctl, ignore_errors=True)
    host("dpkg-deb", "-e", DEB, ctl)
    with open(os.path.join(ctl, "conffiles")) as f:
        conffiles = f.read().split()
    expect(conffiles == ["/etc/s3mond/s3mond.conf"], "conffiles: %s" % conffiles)
    with open(os.path.join(ctl, "postinst")) as f:
        postinst = f.read()
    expect("deb-systemd-helper enable 's3mond.service'" in postinst, "postinst does not enable s3mond.service")
    expect("s3mond@.service" not in postinst, "postinst names the template s3mond@.service")
    expect(not re.search(r"deb-systemd-invoke (start|restart) ", postinst),
           "postinst starts the service at installation (dh_installsystemd --no-start expected)")
    with open(os.path.join(ctl, "postrm")) as f:
        expect("/var/lib/private/s3mond" in f.read(), "postrm does not remove the state on purge")
    shutil.rmtree(ctl)
    return "%s -> %s; Depends: %s" % (version, nxt, ctlib.deb_field(DEB, "Depends"))


def readme_package_paths():
    """The paths of README's table of what the package installs (Installing)."""
    with open(os.path.join(SOURCE, "README.md")) as f:
        text = f.read()
    start = text.index("The package installs:")
    table = text[start:text.index("\n\n", text.index("| path |", start))]
    paths = []
    for line in table.splitlines()[3:]:
        cell = line.split("|")[1]
        base = None
        for p in re.findall(r"`([^`]+)`", cell):
            if p.startswith("/"):
                base = os.path.dirname(p.rstrip("/"))
                paths.append(p)
            else:                               # man5/s3mond.conf.5.gz: beside the previous one
                paths.append(os.path.join(os.path.dirname(base), p))
    return paths


def docs_match_package():
    listed = readme_package_paths()
    covered = lambda f: any(f == p or (p.endswith("/") and f.startswith(p)) for p in listed)
    unlisted = sorted(f for f in EXPECTED_FILES if not covered(f))
    absent = sorted(p for p in listed if not any(f == p or (p.endswith("/") and f.startswith(p))
                                                 for f in EXPECTED_FILES))
    expect(not unlisted and not absent, "README's package table: files it does not list %s, paths it lists "
                                        "that the package lacks %s" % (unlisted, absent))
    tmp = os.path.join(CACHE, "extract-man")
    shutil.rmtree(tmp, ignore_errors=True)
    host("dpkg-deb", "-x", DEB, tmp)
    page = host("man", "-l", os.path.join(tmp, "usr/share/man/man8/s3mond.8.gz"))
    shutil.rmtree(tmp)
    files = re.sub(r"\s+", " ", page[page.index("\nFILES\n"):page.index("\nEXAMPLES\n")])
    missing = [p for p in ("/etc/s3mond/s3mond.conf", "/usr/share/s3mond/s3mond.conf", "/var/lib/s3mond/",
                           "/var/lib/private/s3mond", "/lib/systemd/system", "/usr/lib/systemd/catalog/s3mond.catalog",
                           "conffile", "apt purge s3mond") if p not in files]
    expect(not missing, "s3mond(8) as packaged lacks %s in FILES" % missing)
    return "README lists the %d files; s3mond(8) FILES gives /etc, /usr/share, the units, the catalog" % len(
        EXPECTED_FILES)


def archive_debs(pkgs):
    """The .deb of each package's installed version, into the container's
    archive cache: from the host's cache, else downloaded into CACHE."""
    os.makedirs(CACHE, exist_ok=True)
    notes = []
    for p in pkgs:
        version = host("dpkg-query", "-W", "-f", "${Version}", p)
        arch = host("dpkg-query", "-W", "-f", "${Architecture}", p)
        name = "%s_%s_%s.deb" % (p, version.replace(":", "%3a"), arch)
        found = [f for f in (os.path.join("/var/cache/apt/archives", name), os.path.join(CACHE, name))
                 if os.path.exists(f)]
        if not found:
            r = subprocess.run(["apt-get", "download", "%s=%s" % (p, version)], cwd=CACHE,
                               capture_output=True, text=True, timeout=300)
            expect(r.returncode == 0 and os.path.exists(os.path.join(CACHE, name)),
                   "cannot get %s's .deb (%s) from the apt cache or the mirror: %s"
                   % (p, name, r.stderr.strip()[-500:]))
            found = [os.path.join(CACHE, name)]
            notes.append("downloaded %s" % name)
        ct.copy_in(found[0], "/var/cache/apt/archives/" + name)
    return notes


def clean_system():
    libs = sorted(set(state["needed"].values()) - KEEP)
    expect(libs, "no removable runtime library: the check would prove nothing")
    r = ct.run("apt-get", "-s", "remove", *libs)
    gone = re.findall(r"^Remv (\S+)", r.stdout, re.M)
    expect("systemd" not in gone and "apt" not in gone and "dpkg" not in gone,
           "removing %s would remove systemd, apt or dpkg" % libs)
    notes = archive_debs(libs)
    ct.run("dpkg", "--remove", "--force-depends", *gone)
    still = [p for p in libs if ct.run("dpkg-query", "-W", "-f", "${db:Status-Status}", p,
                                       check=False).stdout == "installed"]
    expect(not still, "still installed: %s" % still)
    catalog = ct.out("journalctl", "--list-catalog")
    known = [m for m in ctlib.MESSAGE_IDS if m in catalog]
    expect(not known, "the catalog already knows %s before the installation: the trigger check would "
                      "prove nothing" % known)
    state["libs"] = libs
    return "removed %d packages: %s and what depends on them%s" % (
        len(gone), " ".join(libs), ("; " + ", ".join(notes)) if notes else "")


def apt_install_pulls_libraries():
    out = ct.install_deb(DEB)
    new = re.search(r"The following NEW packages will be installed:\n((?:\s+.*\n)+)", out)
    new = set(new.group(1).split()) if new else set()
    expect(set(state["libs"]) <= new and "s3mond" in new,
           "apt installed %s, expected s3mond and %s:\n%s" % (sorted(new), state["libs"], out[-2000:]))
    for p in state["libs"]:
        expect(ct.out("dpkg-query", "-W", "-f", "${db:Status-Status}", p) == "installed", "%s not installed" % p)
    ldd = ct.out("ldd", "/usr/sbin/s3mond")
    expect("not found" not in ldd, "ldd /usr/sbin/s3mond:\n" + ldd)
    v = ct.out("/usr/sbin/s3mond", "--version")
    expect(v.startswith("s3mond "), "s3mond --version: %r" % v)
    return "apt pulled %s; %s" % (" ".join(sorted(new - {"s3mond"})), v.strip())


def installed_state():
    expect(ct.out("systemctl", "is-enabled", "s3mond.service").strip() == "enabled",
           "s3mond.service is not enabled")
    active = ct.run("systemctl", "is-active", "s3mond.service", check=False).stdout.strip()
    expect(active == "inactive", "s3mond.service is %s after the installation (not started expected: "
                                 "the example has no secret)" % active)
    wants = glob.glob(ct.path("/etc/systemd/system/*.wants/s3mond@*"))
    expect(not wants, "the template is enabled: %s" % wants)
    tmpl = ct.run("systemctl", "is-enabled", "s3mond@.service", check=False).stdout.strip()
    expect(tmpl == "disabled", "systemctl is-enabled s3mond@.service: %s (disabled expected)" % tmpl)
    conffiles = ct.out("dpkg-query", "-W", "-f", "${Conffiles}", "s3mond")
    expect("/etc/s3mond/s3mond.conf" in conffiles, "dpkg does not list the conffile: %r" % conffiles)
    expect(ct.read("/etc/s3mond/s3mond.conf") == ct.read("/usr/share/s3mond/s3mond.conf"),
           "the conffile is not the example")
    for page, want in ((("8", "s3mond"), "/usr/share/man/man8/s3mond.8.gz"),
                       (("5", "s3mond.conf"), "/usr/share/man/man5/s3mond.conf.5.gz")):
        got = ct.out("man", "-w", *page).strip()
        expect(got == want, "man -w %s: %s" % (" ".join(page), got))
    catalog = ct.out("journalctl", "--list-catalog")
    missing = [m for m in ctlib.MESSAGE_IDS if m not in catalog]
    expect(not missing, "systemd's catalog trigger did not add %s" % missing)
    return "enabled, inactive; template disabled; catalog has the 3 messages"


def autopkgtest_smoke():
    src = "/srv/s3mond-src"
    for d in ("debian/tests", "tests/dvsim", "tests/fixtures", "tests/packaging"):
        shutil.copytree(os.path.join(SOURCE, d), ct.path(os.path.join(src, d)),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    ct.run("mkdir", "-p", "/tmp/autopkgtest-tmp")
    r = ct.run("sh", "-c", "cd %s && AUTOPKGTEST_TMP=/tmp/autopkgtest-tmp debian/tests/smoke" % src, check=False)
    expect(r.returncode == 0 and not r.stderr.strip(),
           "debian/tests/smoke: exit %d\nstdout:\n%s\nstderr:\n%s" % (r.returncode, r.stdout, r.stderr))
    return "; ".join(l for l in r.stdout.splitlines() if l.startswith(("dvsim:", "s3mond --once")))


def configure_and_start():
    conf = ct.read("/etc/s3mond/s3mond.conf")
    expect("# interval = 60s" in conf, "the example has no '# interval = 60s' line to edit")
    # Nothing listens on 127.0.0.1:9: the daemon runs, its polls fail.
    conf = conf.replace("# interval = 60s", "interval = 5s")
    conf = re.sub(r"^url = .*$", "url = http://127.0.0.1:9/prod", conf, flags=re.M)
    conf = conf.replace("[s3mond]\n", "[s3mond]\n" + EDIT, 1)
    ct.write("/etc/s3mond/s3mond.conf", conf)
    state["conf"] = ct.read("/etc/s3mond/s3mond.conf", binary=True)
    ct.write("/etc/s3mond/prod.secret", SECRET + "\n", 0o600)
    for unit, name in (("s3mond.service", "prod.secret"), ("s3mond@.service", "%i.secret")):
        ct.write("/etc/systemd/system/%s.d/credentials.conf" % unit,
                 "[Service]\nLoadCredential=%s:/etc/s3mond/%s\n" % (name, name))
    ct.daemon_reload()
    ct.run("systemctl", "start", "s3mond")
    st = ct.show("s3mond", "ActiveState", "SubState", "MainPID")
    expect(st["ActiveState"] == "active", "s3mond.service is %s after start:\n%s" % (st, ct.unit_log("s3mond")))
    state["pid"] = st["MainPID"]
    expect(os.path.islink(ct.path("/var/lib/s3mond")) and
           os.readlink(ct.path("/var/lib/s3mond")) == "private/s3mond" and
           os.path.isdir(ct.path("/var/lib/private/s3mond")),
           "no /var/lib/s3mond -> private/s3mond state directory")
    return "active, main PID %s" % state["pid"]


def upgrade_keeps_configuration():
    out = ct.install_deb(NEXT_DEB)
    nxt = ctlib.deb_field(NEXT_DEB, "Version")
    got = ct.out("dpkg-query", "-W", "-f", "${Version}", "s3mond")
    expect(got == nxt, "installed version %s after the upgrade, expected %s:\n%s" % (got, nxt, out[-1500:]))
    expect(ct.read("/etc/s3mond/s3mond.conf", binary=True) == state["conf"],
           "the edited /etc/s3mond/s3mond.conf changed in the upgrade")
    leftovers = glob.glob(ct.path("/etc/s3mond/*.dpkg-*"))
    expect(not leftovers, "dpkg left %s" % leftovers)
    st = ct.show("s3mond", "ActiveState", "MainPID")
    expect(st["ActiveState"] == "active" and st["MainPID"] != state["pid"],
           "s3mond.service after the upgrade: %s (active with a new main PID expected: try-restart)" % st)
    return "%s, configuration kept, restarted (PID %s -> %s)" % (nxt, state["pid"], st["MainPID"])


def upgrade_restarts_instances():
    ct.run("systemctl", "stop", "s3mond")
    ct.run("systemctl", "start", "s3mond@prod")
    before = ct.show("s3mond@prod", "ActiveState", "MainPID")
    expect(before["ActiveState"] == "active", "s3mond@prod: %s\n%s" % (before, ct.unit_log("s3mond@prod")))
    ct.install_deb(NEXT_DEB, "--reinstall")
    after = ct.show("s3mond@prod", "ActiveState", "MainPID")
    expect(after["ActiveState"] == "active" and after["MainPID"] != before["MainPID"],
           "s3mond@prod after the reinstall: %s, before %s (restarted expected)" % (after, before))
    main = ct.run("systemctl", "is-active", "s3mond", check=False).stdout.strip()
    expect(main == "inactive", "s3mond.service is %s after the reinstall (it was stopped)" % main)
    return "s3mond@prod PID %s -> %s; s3mond.service left stopped" % (before["MainPID"], after["MainPID"])


def remove_stops_everything():
    ct.run("apt-get", "remove", "-y", "s3mond")
    active = ct.run("systemctl", "is-active", "s3mond@prod", "s3mond", check=False).stdout.split()
    expect(active == ["inactive", "inactive"], "after apt remove: s3mond@prod, s3mond: %s" % active)
    expect(not ct.exists("/usr/sbin/s3mond"), "/usr/sbin/s3mond is still there")
    expect(ct.read("/etc/s3mond/s3mond.conf", binary=True) == state["conf"], "remove touched the configuration")
    expect(os.path.isdir(ct.path("/var/lib/private/s3mond")), "remove deleted the state")
    st = ct.out("dpkg-query", "-W", "-f", "${db:Status-Abbrev}", "s3mond").strip()
    expect(st == "rc", "dpkg status %r after remove (rc expected)" % st)
    return "stopped; configuration and state kept (rc)"


def purge_removes_configuration_and_state():
    ct.run("apt-get", "purge", "-y", "s3mond")
    left = [p for p in ("/etc/s3mond/s3mond.conf", "/var/lib/private/s3mond", "/var/lib/s3mond",
                        "/etc/systemd/system/multi-user.target.wants/s3mond.service") if ct.exists(p)]
    expect(not left, "still there after apt purge: %s" % left)
    r = ct.run("dpkg-query", "-W", "-f", "${db:Status-Abbrev}", "s3mond", check=False)
    expect(r.returncode != 0 or r.stdout.strip() in ("", "un", "pn"), "dpkg still knows s3mond: %r" % r.stdout)
    kept = [p for p in ("/etc/s3mond/prod.secret", "/etc/systemd/system/s3mond.service.d/credentials.conf")
            if ct.exists(p)]
    expect(len(kept) == 2, "purge removed the administrator's files: only %s left" % kept)
    expect(os.path.isdir(ct.path("/var/lib/private")), "purge removed systemd's /var/lib/private")
    return "conffile, state, link, enablement gone; the administrator's secret and drop-in kept"


sys.exit(checks.run_all(
    ("lintian", lintian),
    ("package-metadata", package_metadata, "fatal"),
    ("docs-match-package", docs_match_package),
    ("clean-system", clean_system, "fatal"),
    ("apt-install-pulls-libraries", apt_install_pulls_libraries, "fatal"),
    ("installed-state", installed_state),
    ("autopkgtest-smoke", autopkgtest_smoke),
    ("configure-and-start", configure_and_start, "fatal"),
    ("upgrade-keeps-configuration", upgrade_keeps_configuration),
    ("upgrade-restarts-instances", upgrade_restarts_instances),
    ("remove-stops-everything", remove_stops_everything),
    ("purge-removes-configuration-and-state", purge_removes_configuration_and_state),
))
